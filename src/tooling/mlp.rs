//! A small MLP trained on the GPU with this crate's optimizers: the proof that the crate steps a
//! real wgpu training stack, used by `examples/train_mlp.rs` and `wgpu-optim compare`.
//!
//! 2 → 64 → 64 → 3, ReLU, softmax cross-entropy, on a synthetic 3-class spiral; forward and
//! backward in WGSL (`shaders/mlp.wgsl`), full-batch, deterministic. The parameters and
//! gradients live in two [`ArenaLayout`] buffers; each tensor is registered with the optimizer
//! as its own slice, so LAMB and LARS see per-tensor norms.

use crate::abi::bindings::mlp;
use crate::abi::uniforms::Dims;
use crate::arena::ArenaLayout;
use crate::context::GpuContext;
use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::kernel::{GradAccess, Kernel, Width, compute_pipeline, create_module, pipeline_layout};
use crate::optim::{AdamW, Algorithm, Muon};
use crate::precision::{Dtype, Precision};
use crate::rng::SplitMix;
use crate::schedule::Schedule;

/// Width of the hidden layers.
pub const HIDDEN: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 3;
/// The tensors, in arena order, with their lengths: `w1` is `[HIDDEN, 2]`, `w2`
/// `[HIDDEN, HIDDEN]`, `w3` `[CLASSES, HIDDEN]`, row-major.
pub const TENSORS: [(&str, usize); 6] = [
    ("w1", HIDDEN * 2),
    ("b1", HIDDEN),
    ("w2", HIDDEN * HIDDEN),
    ("b2", HIDDEN),
    ("w3", CLASSES * HIDDEN),
    ("b3", CLASSES),
];

/// Each tensor's shape, in [`TENSORS`] order: the weights are matrices, the biases vectors.
pub const SHAPES: [&[usize]; 6] = [
    &[HIDDEN, 2],
    &[HIDDEN],
    &[HIDDEN, HIDDEN],
    &[HIDDEN],
    &[CLASSES, HIDDEN],
    &[CLASSES],
];

const MLP: Kernel = Kernel::new("mlp", include_str!("../../shaders/mlp.wgsl"));

/// The 3-class spiral (as in Stanford's CS231n): `per_class` points per arm, radius 0 to 1,
/// angle noise 0.2. Flattened as `x, y, label` per point.
pub fn spiral(per_class: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(per_class * CLASSES * 3);
    for class in 0..CLASSES {
        for i in 0..per_class {
            let r = i as f64 / (per_class - 1).max(1) as f64;
            let t = (class as f64 + r) * 4.0 + rng.normal() * 0.2;
            out.extend([(r * t.sin()) as f32, (r * t.cos()) as f32, class as f32]);
        }
    }
    out
}

/// PyTorch's default `nn.Linear` initialization, U(-1/√fan_in, 1/√fan_in) for weights and
/// biases, packed into the arena.
pub fn init_params(layout: &ArenaLayout, seed: u64) -> Result<Vec<f32>> {
    let mut rng = SplitMix(seed);
    let fan_in = [2, 2, HIDDEN, HIDDEN, HIDDEN, HIDDEN];
    let tensors: Vec<Vec<f32>> = TENSORS
        .iter()
        .zip(fan_in)
        .map(|(&(_, n), fan)| {
            let bound = 1.0 / (fan as f64).sqrt();
            (0..n)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect()
        })
        .collect();
    let views: Vec<&[f32]> = tensors.iter().map(Vec::as_slice).collect();
    layout.pack(&views)
}

/// The network, its data and its training buffers on one device.
#[derive(Debug)]
pub struct Mlp {
    /// Where each tensor lives in the parameter and gradient buffers.
    pub layout: ArenaLayout,
    /// The parameter arena, of [`Mlp::param_dtype`] values.
    pub params: wgpu::Buffer,
    /// The parameters' dtype: f32, or bf16 (read exactly by the forward and backward passes).
    pub param_dtype: Dtype,
    /// The gradient arena, written by [`Mlp::record_gradients`].
    pub grads: wgpu::Buffer,
    samples: u32,
    stats: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    sample: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    stats_pipeline: wgpu::ComputePipeline,
}

impl Mlp {
    /// The network on `ctx` with `data` (from [`spiral`]) and weights from `seed`.
    pub fn new(ctx: &GpuContext, data: &[f32], seed: u64) -> Result<Self> {
        Self::with_params(ctx, data, seed, Dtype::F32)
    }

    /// As [`Mlp::new`], its parameters stored as `param_dtype` (f32 or bf16; the gradients are
    /// f32). A bf16 arena places each tensor at the f32 arena's element offsets, which the
    /// layout aligns for 2-byte values too.
    pub fn with_params(
        ctx: &GpuContext,
        data: &[f32],
        seed: u64,
        param_dtype: Dtype,
    ) -> Result<Self> {
        if !matches!(param_dtype, Dtype::F32 | Dtype::Bf16) {
            return Err(crate::error::Error::InvalidOptions(format!(
                "the MLP reads f32 or bf16 parameters, not {param_dtype}"
            )));
        }
        let device = &ctx.device;
        let lens: Vec<u64> = TENSORS.iter().map(|t| t.1 as u64).collect();
        // Offsets aligned for 2-byte values: twice the f32 alignment in elements.
        let alignment = 2 * u64::from(device.limits().min_storage_buffer_offset_alignment);
        let layout = ArenaLayout::new(&lens, alignment)?;
        let samples = (data.len() / 3) as u32;
        let params = ctx.upload_as("mlp params", param_dtype, &init_params(&layout, seed)?);
        let grads = ctx.upload("mlp grads", &vec![0.0; layout.len() as usize]);
        let storage = |label, size: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let per_sample = storage(
            "mlp per-sample gradients",
            u64::from(samples) * layout.size(),
        );
        let sample_stats = storage("mlp per-sample loss", u64::from(samples) * 8);
        let stats = storage("mlp stats", 8);
        let data_buf = ctx.upload("mlp data", data);
        let mut offsets = [0u32; TENSORS.len()];
        for (i, o) in offsets.iter_mut().enumerate() {
            *o = layout.range(i)?.start as u32;
        }
        let dims = Dims {
            samples,
            arena: layout.len() as u32,
            offsets,
        };
        let dims_buf = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("mlp dims"),
                contents: bytemuck::bytes_of(&dims),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let module = create_module(device, &MLP, GradAccess::ReadOnly, Width::Scalar);
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("mlp"),
            entries: &mlp::ALL.map(|b| b.layout_entry(std::mem::size_of::<Dims>() as u64)),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("mlp"),
            layout: &bgl,
            entries: &[
                &dims_buf,
                &params,
                &data_buf,
                &per_sample,
                &sample_stats,
                &grads,
                &stats,
            ]
            .into_iter()
            .zip(mlp::ALL)
            .map(|(b, binding)| binding.whole(b))
            .collect::<Vec<_>>(),
        });
        let layout_all = pipeline_layout(device, "mlp", &[&bgl]);
        let bf16 = [(
            "PARAMS_BF16",
            f64::from(u8::from(param_dtype == Dtype::Bf16)),
        )];
        let pipeline =
            |entry: &str| compute_pipeline(device, "mlp", &layout_all, &module, entry, &bf16);
        Ok(Self {
            layout,
            params,
            param_dtype,
            grads,
            samples,
            stats,
            bind_group,
            sample: pipeline("sample"),
            reduce: pipeline("reduce"),
            stats_pipeline: pipeline("stats_main"),
        })
    }

    /// Registers each tensor's parameter and gradient slices with `opt`, in `TENSORS` order,
    /// stored as `precision` says (its parameter dtype must be [`Mlp::param_dtype`], its
    /// gradient f32).
    pub fn register<O: Algorithm>(
        &self,
        opt: &mut GpuOptimizer<O>,
        precision: Precision,
    ) -> Result<()> {
        for (i, &(_, len)) in TENSORS.iter().enumerate() {
            let grad = self.layout.byte_range(i)?;
            let start = self.layout.range(i)?.start * self.param_dtype.bytes();
            let param = start..start + self.param_dtype.buffer_bytes(len as u64);
            opt.register_typed(
                opt.default_group(),
                self.params.slice(param),
                self.grads.slice(grad),
                &[len],
                precision,
            )?;
        }
        Ok(())
    }

    /// Tensor `i`'s ([`TENSORS`] order) parameter and gradient slices, for f32 parameters.
    pub fn slices(&self, i: usize) -> Result<(wgpu::BufferSlice<'_>, wgpu::BufferSlice<'_>)> {
        let range = self.layout.byte_range(i)?;
        Ok((self.params.slice(range.clone()), self.grads.slice(range)))
    }

    /// Records the forward and backward passes (the loss, the accuracy and the full-batch
    /// gradient into [`Mlp::grads`]) into `encoder`.
    pub fn record_gradients(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.set_pipeline(&self.sample);
        pass.dispatch_workgroups(self.samples.div_ceil(64), 1, 1);
        pass.set_pipeline(&self.reduce);
        pass.dispatch_workgroups((self.layout.len() as u32).div_ceil(64), 1, 1);
        pass.set_pipeline(&self.stats_pipeline);
        pass.dispatch_workgroups(1, 1, 1);
    }

    /// The mean loss and the accuracy of the last [`Mlp::record_gradients`] (waits for the GPU).
    pub fn read_stats(&self, ctx: &GpuContext) -> Result<(f32, f32)> {
        let s = ctx.read(&self.stats)?;
        Ok((s[0], s[1]))
    }
}

/// One training run's record.
#[derive(Debug, Clone)]
pub struct Training {
    /// `(step, mean loss before that step's update)` at every logged step.
    pub losses: Vec<(u64, f32)>,
    /// Mean loss after the last step.
    pub final_loss: f32,
    /// Train accuracy after the last step.
    pub accuracy: f32,
}

/// Trains a fresh network on `data` with `config` (and `schedule`) for `steps` full-batch steps,
/// its parameters and optimizer state stored as `precision` says (f32 gradients), reading the
/// loss back every `log_every` steps (and only then); `log` sees each reading.
#[allow(clippy::too_many_arguments)] // the run's knobs, passed straight through
pub fn train<O: Algorithm>(
    ctx: &GpuContext,
    data: &[f32],
    config: O,
    schedule: Option<Schedule>,
    (steps, log_every): (u64, u64),
    precision: Precision,
    log: impl FnMut(u64, f32, f32),
) -> Result<Training> {
    let mlp = Mlp::with_params(ctx, data, 42, precision.param)?;
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config)?;
    opt.set_schedule(schedule)?;
    mlp.register(&mut opt, precision)?;
    fit(ctx, &mlp, (steps, log_every), log, |encoder| {
        opt.step(encoder)
    })
}

/// Trains a fresh network on `data` as the Muon authors recommend: its weight matrices with
/// `muon`, its biases with `adamw`, both optimizers recording their steps into each step's one
/// encoder after the backward pass (no extra submit, no readback but the logged loss).
pub fn train_muon(
    ctx: &GpuContext,
    data: &[f32],
    muon: Muon,
    adamw: AdamW,
    steps: (u64, u64),
    log: impl FnMut(u64, f32, f32),
) -> Result<Training> {
    let mlp = Mlp::new(ctx, data, 42)?;
    let mut matrices = GpuOptimizer::new(&ctx.device, &ctx.queue, muon)?;
    let mut vectors = GpuOptimizer::new(&ctx.device, &ctx.queue, adamw)?;
    for (i, shape) in SHAPES.iter().enumerate() {
        let (param, grad) = mlp.slices(i)?;
        if shape.len() == 2 {
            let group = matrices.default_group();
            matrices.register_with_shape(group, param, grad, shape)?;
        } else {
            let group = vectors.default_group();
            vectors.register_slices(group, param, grad)?;
        }
    }
    fit(ctx, &mlp, steps, log, |encoder| {
        matrices.step(encoder);
        vectors.step(encoder);
    })
}

/// `steps` full-batch steps of `mlp`, each `step` recorded after the backward pass into one
/// encoder, reading the loss back every `log_every` steps (and only then).
fn fit(
    ctx: &GpuContext,
    mlp: &Mlp,
    (steps, log_every): (u64, u64),
    mut log: impl FnMut(u64, f32, f32),
    mut step_into: impl FnMut(&mut wgpu::CommandEncoder),
) -> Result<Training> {
    let mut losses = Vec::new();
    for step in 0..steps {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        mlp.record_gradients(&mut encoder);
        step_into(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        if step % log_every.max(1) == 0 {
            let (loss, acc) = mlp.read_stats(ctx)?;
            losses.push((step, loss));
            log(step, loss, acc);
        }
    }
    // The stats of the final parameters: one more forward pass, no step.
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    mlp.record_gradients(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    let (final_loss, accuracy) = mlp.read_stats(ctx)?;
    Ok(Training {
        losses,
        final_loss,
        accuracy,
    })
}

/// [`train`] with an optimizer chosen by name (see [`crate::tooling::bench::VARIANTS`]), with its
/// defaults but for the learning rate.
#[allow(clippy::too_many_arguments)] // the run's knobs, passed straight through
pub fn train_variant(
    ctx: &GpuContext,
    data: &[f32],
    name: &str,
    lr: Option<f64>,
    schedule: Option<Schedule>,
    steps: (u64, u64),
    precision: Precision,
    log: impl FnMut(u64, f32, f32),
) -> Result<Training> {
    let mut config = crate::tooling::bench::variant(name)?;
    if let Some(lr) = lr {
        config = config.with_lr(lr);
    }
    train_any(ctx, data, config, schedule, steps, precision, log)
}

/// [`train`] with any optimizer's configuration.
pub fn train_any(
    ctx: &GpuContext,
    data: &[f32],
    config: crate::tooling::bench::AnyConfig,
    schedule: Option<Schedule>,
    steps: (u64, u64),
    precision: Precision,
    log: impl FnMut(u64, f32, f32),
) -> Result<Training> {
    crate::tooling::bench::with_config!(config, c => train(ctx, data, c, schedule, steps, precision, log))
}
