//! The update kernel's modules, layouts and pipelines: one pipeline per set of option flags,
//! gradient access and [`Form`] actually used, built on first use and cached.

use std::marker::PhantomData;

use crate::abi::bindings::{Binding, update};
use crate::kernel::{
    EMA_WEIGHT_BYTES, EXTENT_BYTES, GradAccess, NORM_ELEMS, SCALAR_CANDIDATES, Storage,
    VEC_PER_INVOCATION, Width, compute_pipeline, create_module_for, pipeline_layout,
};
use crate::optim::{Algorithm, Pass};
use crate::precision::Precision;

/// State slots of an [`Algorithm::FACTORED`] optimizer that hold factors, not elementwise values
/// (Adafactor's row and column second moments).
pub(crate) const FACTOR_SLOTS: usize = 2;

/// The passes over a factored tensor before the norms, in order: the row factor, the column
/// factor, then each matrix's mean of the row factor.
pub(crate) const FACTOR_PASSES: [&str; 3] = ["rows", "cols", "stats"];

/// Bytes of one step's scalars as the kernel binds them: every candidate, then for single-pass
/// kernels the step's counter and the average's weights (`StepUniform` in `kernel::storage`).
pub(crate) fn scalars_size<O: Algorithm>() -> u64 {
    let candidates = std::mem::size_of::<O::Scalars>() as u64 * u64::from(SCALAR_CANDIDATES);
    candidates
        + if O::KERNEL.single_pass {
            COUNTER_BYTES + EMA_WEIGHT_BYTES
        } else {
            0
        }
}

/// The group-1 binding of `O`'s kernel: its scalars, in `StepUniform` for single-pass kernels.
pub(crate) fn scalars_binding<O: Algorithm>() -> Binding {
    if O::KERNEL.single_pass {
        update::STEP_UNIFORM
    } else {
        update::SCALARS
    }
}

/// Bytes of the step counter after the candidates' scalars (a `vec4<u32>`).
pub(crate) const COUNTER_BYTES: u64 = 16;

/// The group-0 bindings of `O`'s kernel with its gradient declared for `access`, over tensors
/// of `precision`, with the average of the weights when `ema`.
pub(crate) fn group0<O: Algorithm>(
    access: GradAccess,
    precision: Precision,
    ema: bool,
) -> Vec<Binding> {
    let grad = match access {
        GradAccess::ReadOnly => update::GRAD,
        GradAccess::Shared => update::GRAD.read_write(),
    };
    let mut bindings = vec![update::PARAM, grad];
    if precision.copy.is_some() {
        bindings.push(update::PARAM_COPY);
    }
    bindings.extend(O::STATE_NAMES.iter().enumerate().map(|(slot, &name)| {
        if O::FACTORED && slot < FACTOR_SLOTS {
            update::factor_state(slot, name)
        } else {
            update::state(slot, name)
        }
    }));
    bindings.push(update::GRAD_CONTROL);
    if O::NORMS {
        bindings.extend([update::PARTIALS, update::NORMS]);
    }
    if O::FACTORED {
        bindings.push(update::FACTORS);
    }
    if O::ORTHOGONAL {
        bindings.extend([update::ORTHO, update::ORTHO_NEXT, update::LR_RATIOS]);
    }
    if Storage::f32(access, Width::Vec4).with(precision).packed() {
        bindings.push(update::EXTENT);
    }
    if precision.quant.is_some() {
        bindings.push(update::QMAPS);
    }
    if ema {
        bindings.push(update::EMA);
    }
    bindings
}

/// Bytes of the uniform `binding` of group 0 for tensors of `precision`.
fn uniform_size(binding: &Binding, precision: Precision) -> u64 {
    match precision.quant {
        Some(q) if *binding == update::QMAPS => q.uniform_bytes().len() as u64,
        _ => EXTENT_BYTES,
    }
}

/// Which part of a tensor a pipeline updates, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    /// `vec4<f32>`, [`VEC_PER_INVOCATION`] per invocation: every whole vector of a tensor
    /// whose bytes start 16-byte aligned.
    Vec4,
    /// `f32`, one workgroup: the last `len % 4` elements after the [`Form::Vec4`] body.
    Tail,
    /// `f32`, one per invocation: all of a tensor that does not start 16-byte aligned.
    Scalar,
    /// `vec4<f32>`, one per invocation, one workgroup per block: a tensor whose state is
    /// quantized (`shaders/blockwise.wgsl`).
    Blocks,
}

impl Form {
    fn width(self) -> Width {
        match self {
            Form::Vec4 | Form::Blocks => Width::Vec4,
            Form::Tail | Form::Scalar => Width::Scalar,
        }
    }

    /// The pipeline constants that select this form.
    fn constants(self) -> [(&'static str, f64); 2] {
        match self {
            Form::Vec4 => [("VPI", f64::from(VEC_PER_INVOCATION)), ("TAIL", 0.0)],
            Form::Tail => [("VPI", 1.0), ("TAIL", 1.0)],
            Form::Scalar | Form::Blocks => [("VPI", 1.0), ("TAIL", 0.0)],
        }
    }
}

/// One way of declaring the tensors (the gradient's access and the dtypes): its modules (one
/// per [`Width`]), its group-0 layout and pipeline layout.
#[derive(Debug)]
struct Variant {
    access: GradAccess,
    precision: Precision,
    vec4: wgpu::ShaderModule,
    /// None over quantized state, which is stepped at vec4 width only.
    scalar: Option<wgpu::ShaderModule>,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

/// The pipelines for one set of flags, gradient access and form: `main`, `norms` for
/// [`Algorithm::NORMS`], and one per [`Pass`] for [`Algorithm::EVAL_MODE`].
#[derive(Debug)]
pub(super) struct Pipelines {
    flags: Vec<(&'static str, bool)>,
    access: GradAccess,
    precision: Precision,
    form: Form,
    pub main: wgpu::ComputePipeline,
    pub norms: Option<wgpu::ComputePipeline>,
    /// `normalize`, for [`Algorithm::ORTHOGONAL`].
    pub normalize: Option<wgpu::ComputePipeline>,
    /// In [`Pass::ALL`] order; empty without [`Algorithm::EVAL_MODE`].
    passes: Vec<wgpu::ComputePipeline>,
    /// In [`FACTOR_PASSES`] order, at `f32` width; empty without [`Algorithm::FACTORED`].
    pub factor_passes: Vec<wgpu::ComputePipeline>,
}

impl Pipelines {
    /// The pipeline of `pass`, for [`Algorithm::EVAL_MODE`] optimizers.
    pub fn pass(&self, pass: Pass) -> Option<&wgpu::ComputePipeline> {
        let index = Pass::ALL.iter().position(|&p| p == pass)?;
        self.passes.get(index)
    }
}

/// Every module, layout and pipeline of `O`'s kernel this optimizer has needed.
#[derive(Debug)]
pub(super) struct Kernels<O: Algorithm> {
    /// Group 1: the step's entry of the scalar table.
    pub scalars_layout: wgpu::BindGroupLayout,
    /// One per [`GradAccess`] and [`Precision`] in use, built on first use.
    variants: Vec<Variant>,
    pipelines: Vec<Pipelines>,
    /// Every module updates the average of the weights (`kernel::Storage::ema`).
    pub ema: bool,
    _algorithm: PhantomData<O>,
}

impl<O: Algorithm> Kernels<O> {
    /// No modules or pipelines yet; each built later updates the average of the weights when
    /// `ema`.
    pub fn new(device: &wgpu::Device, ema: bool) -> Self {
        let scalars_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(O::KERNEL.name),
            entries: &[scalars_binding::<O>().layout_entry(scalars_size::<O>())],
        });
        Self {
            scalars_layout,
            variants: Vec::new(),
            pipelines: Vec::new(),
            ema,
            _algorithm: PhantomData,
        }
    }

    /// The index of the variant for `access` and `precision`, built on first use.
    fn variant_index(
        &mut self,
        device: &wgpu::Device,
        access: GradAccess,
        precision: Precision,
    ) -> usize {
        if let Some(i) = self
            .variants
            .iter()
            .position(|v| v.access == access && v.precision == precision)
        {
            return i;
        }
        let module = |width| {
            let storage = Storage::f32(access, width)
                .with(precision)
                .with_ema(self.ema);
            // Single-pass kernels' states are generated; the others declare their own.
            let states = if O::KERNEL.single_pass {
                O::STATE_NAMES
            } else {
                &[]
            };
            create_module_for(device, &O::KERNEL, states, O::QUANT_MAPS, &storage)
        };
        let vec4 = module(Width::Vec4);
        let scalar = precision.quant.is_none().then(|| module(Width::Scalar));
        let entries: Vec<_> = group0::<O>(access, precision, self.ema)
            .iter()
            .map(|b| b.layout_entry(uniform_size(b, precision)))
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(O::KERNEL.name),
            entries: &entries,
        });
        let pipeline_layout =
            pipeline_layout(device, O::KERNEL.name, &[&layout, &self.scalars_layout]);
        self.variants.push(Variant {
            access,
            precision,
            vec4,
            scalar,
            layout,
            pipeline_layout,
        });
        self.variants.len() - 1
    }

    /// The group-0 layout for `access` and `precision` (built by [`Kernels::pipelines`]).
    pub fn layout(&self, access: GradAccess, precision: Precision) -> &wgpu::BindGroupLayout {
        let precision = precision.kernel_key();
        let v = self
            .variants
            .iter()
            .find(|v| v.access == access && v.precision == precision);
        &v.expect("a registered tensor's pipelines were built first")
            .layout
    }

    /// The index of the pipelines for `flags`, `access`, `precision` and `form`, built on
    /// first use.
    pub fn pipelines(
        &mut self,
        device: &wgpu::Device,
        flags: Vec<(&'static str, bool)>,
        (access, precision): (GradAccess, Precision),
        form: Form,
    ) -> usize {
        let precision = precision.kernel_key();
        if let Some(i) = self.pipelines.iter().position(|p| {
            p.flags == flags && p.access == access && p.precision == precision && p.form == form
        }) {
            return i;
        }
        let index = self.variant_index(device, access, precision);
        let v = &self.variants[index];
        let module = match (form.width(), &v.scalar) {
            (Width::Scalar, Some(scalar)) => scalar,
            _ => &v.vec4,
        };
        let mut constants: Vec<(&str, f64)> = form.constants().to_vec();
        if O::NORMS {
            constants.push(("NORM_ELEMS", f64::from(NORM_ELEMS)));
        }
        constants.extend(flags.iter().map(|&(k, on)| (k, if on { 1.0 } else { 0.0 })));
        let entry_with = |name: &str, extra: &[(&'static str, f64)]| {
            let mut all = constants.clone();
            all.extend_from_slice(extra);
            compute_pipeline(
                device,
                O::KERNEL.name,
                &v.pipeline_layout,
                module,
                name,
                &all,
            )
        };
        let entry = |name: &str| entry_with(name, &[]);
        let pipelines = Pipelines {
            main: entry("main"),
            norms: O::NORMS.then(|| entry("norms")),
            normalize: O::ORTHOGONAL.then(|| entry("normalize")),
            passes: if O::EVAL_MODE {
                Pass::ALL
                    .iter()
                    .map(|p| entry_with("outside_step", &[("PASS", f64::from(p.constant()))]))
                    .collect()
            } else {
                Vec::new()
            },
            factor_passes: if O::FACTORED {
                // One row or column per workgroup or invocation, whatever the tensor's form.
                let mut scalar: Vec<(&str, f64)> = Form::Scalar.constants().to_vec();
                scalar.extend_from_slice(&constants[2..]);
                FACTOR_PASSES
                    .iter()
                    .map(|name| {
                        let layout = &v.pipeline_layout;
                        let module = v.scalar.as_ref().unwrap_or(&v.vec4);
                        compute_pipeline(device, O::KERNEL.name, layout, module, name, &scalar)
                    })
                    .collect()
            } else {
                Vec::new()
            },
            flags,
            access,
            precision,
            form,
        };
        self.pipelines.push(pipelines);
        self.pipelines.len() - 1
    }

    /// Pipelines `index` (as returned by [`Kernels::pipelines`]).
    pub fn get(&self, index: usize) -> &Pipelines {
        &self.pipelines[index]
    }

    /// Forgets pipelines from `len` on (a failed build).
    pub fn truncate(&mut self, len: usize) {
        self.pipelines.truncate(len);
    }

    /// Pipelines built so far.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }
}
