//! [`GpuOptimizer`]: the fused kernels stepping a caller's own wgpu buffers.

use std::num::NonZeroU64;

use crate::checkpoint::{Checkpoint, SavedParam};
use crate::context::read_buffer;
use crate::cpu_optimizer::ParamId;
use crate::error::{Error, Result};
use crate::kernel::{NORM_ELEMS, SCALAR_CANDIDATES, WORKGROUP_SIZE};
use crate::optim::{Algorithm, MAX_STATES};
use crate::schedule::Schedule;
use crate::scheduler::{GroupId, StepScheduler};

/// How many steps may be recorded between two `queue.submit` calls.
///
/// Each step's scalars go to their own slot of a ring in the group's uniform buffer (written with
/// `queue.write_buffer`, which lands at the next submit), so up to this many steps recorded into
/// one or several encoders before a submit each still see their own scalars.
pub const UNIFORM_SLOTS: u64 = 64;

#[derive(Debug)]
struct GpuGroup {
    pipeline: usize,
    uniform: wgpu::Buffer,
}

/// One binding-sized part of a registered parameter: its bind group and its grids.
#[derive(Debug)]
struct Window {
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
    /// The `norms` entry point's grid: each invocation sums `NORM_ELEMS` elements.
    norm_workgroups: (u32, u32),
}

#[derive(Debug)]
struct GpuParam {
    group: usize,
    len: u64,
    param: wgpu::Buffer,
    /// The registered bytes of `param`.
    param_range: std::ops::Range<u64>,
    grad: wgpu::Buffer,
    grad_offset: u64,
    states: [Option<wgpu::Buffer>; MAX_STATES],
    windows: Vec<Window>,
}

/// Bytes between two tensors' norm pairs in the norms buffer (`NORM_STRIDE` floats in
/// `shaders/reduce.wgsl`), so each pair can be bound alone at an aligned offset.
const NORM_STRIDE_BYTES: u64 = 256;

/// The per-tensor norm machinery of optimizers with [`Algorithm::NORMS`]: every window's
/// partial sums in one buffer, a table of each tensor's partials, the norms, and the reduction
/// that turns one into the other in one dispatch.
#[derive(Debug)]
struct NormStage {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    /// Rebuilt whenever a tensor is registered (never per step).
    buffers: Option<NormBuffers>,
}

#[derive(Debug)]
struct NormBuffers {
    partials: wgpu::Buffer,
    norms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
}

/// A pipeline per set of option flags: `main`, and `norms` for [`Algorithm::NORMS`].
#[derive(Debug)]
struct Pipelines {
    flags: Vec<(&'static str, bool)>,
    main: wgpu::ComputePipeline,
    norms: Option<wgpu::ComputePipeline>,
}

/// An optimizer whose step is one fused compute dispatch per registered parameter buffer.
///
/// Built from the caller's `Device` and `Queue`; the caller registers its own parameter and
/// gradient buffers (f32, `STORAGE` usage) and calls [`GpuOptimizer::step`] to record an update
/// into its own `CommandEncoder`: no submit, no readback, no allocation. The optimizer owns only
/// its state buffers, pipelines (one per distinct set of option flags, built once) and one small
/// uniform ring per parameter group.
///
/// ```no_run
/// # fn demo(device: &wgpu::Device, queue: &wgpu::Queue, param: &wgpu::Buffer, grad: &wgpu::Buffer)
/// # -> wgpu_optim::Result<()> {
/// use wgpu_optim::{AdamW, GpuOptimizer};
/// let mut opt = GpuOptimizer::new(device, queue, AdamW { lr: 3e-4, ..Default::default() })?;
/// let group = opt.default_group();
/// opt.register(group, param, grad)?;
/// let mut encoder = device.create_command_encoder(&Default::default());
/// // ... forward and backward passes write `grad` ...
/// opt.step(&mut encoder);
/// queue.submit([encoder.finish()]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GpuOptimizer<O: Algorithm> {
    device: wgpu::Device,
    queue: wgpu::Queue,
    scheduler: StepScheduler<O>,
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: Vec<Pipelines>,
    groups: Vec<GpuGroup>,
    params: Vec<GpuParam>,
    norm_stage: Option<NormStage>,
    /// `[global gradient norm, clipping coefficient]`, read by every update (binding 11).
    grad_control: wgpu::Buffer,
    /// Global-norm gradient clipping and loss scaling, when either is on.
    clip: Option<ClipStage>,
    /// GradScaler's state: scale, growth tracker, skipped steps, whether the last step was skipped.
    scaler: wgpu::Buffer,
    /// One slot's worth of scalars, assembled here each step (allocated once).
    scratch: Vec<u8>,
    /// Bound in place of the states these options do not keep; never read or written.
    placeholders: [wgpu::Buffer; MAX_STATES],
    slot_stride: u64,
}

/// A storage-buffer layout entry for an `array<f32>` binding.
pub(crate) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    storage_entry_of(binding, read_only, 4)
}

/// A storage-buffer layout entry whose elements are `element_size` bytes.
fn storage_entry_of(
    binding: u32,
    read_only: bool,
    element_size: u64,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(element_size),
        },
        count: None,
    }
}

/// Workgroup counts covering `len` elements: a 1-D grid while it fits the per-dimension limit,
/// else a 2-D grid whose rows the kernel's `element_index` walks.
pub(crate) fn grid(len: u64, max_per_dim: u32) -> (u32, u32) {
    let groups = len.div_ceil(u64::from(WORKGROUP_SIZE));
    let x = groups.min(u64::from(max_per_dim));
    let y = groups.div_ceil(x.max(1));
    (x as u32, y as u32)
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// An optimizer on `device` whose first parameter group (group 0) uses `config`.
    ///
    /// Compiles the kernel and builds the pipeline for group 0's flags.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: O) -> Result<Self> {
        let scheduler = StepScheduler::new(config)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Each slot holds SCALAR_CANDIDATES scalars: for the step count as is, and for each
        // number of steps the device may have skipped under loss scaling.
        let scalars_size = std::mem::size_of::<O::Scalars>() as u64 * u64::from(SCALAR_CANDIDATES);
        let align = u64::from(device.limits().min_uniform_buffer_offset_alignment);
        let slot_stride = scalars_size.div_ceil(align) * align;
        let module = crate::kernel::create_module(device, &O::KERNEL);
        let mut entries = vec![
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: NonZeroU64::new(scalars_size),
                },
                count: None,
            },
            storage_entry(1, false),
            storage_entry(2, true),
        ];
        entries.extend((0..O::STATE_NAMES.len()).map(|s| storage_entry(3 + s as u32, false)));
        entries.push(storage_entry(GRAD_CONTROL_BINDING, true));
        if O::NORMS {
            entries.extend([
                storage_entry_of(PARTIALS_BINDING, false, 8),
                storage_entry(NORMS_BINDING, true),
            ]);
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(O::KERNEL.name),
            entries: &entries,
        });
        let norm_stage = O::NORMS.then(|| NormStage::new(device));
        let grad_control = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim gradient control"),
                contents: bytemuck::cast_slice(&NO_CLIP),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            },
        );
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(O::KERNEL.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let placeholders = std::array::from_fn(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim unused state"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        let mut this = Self {
            device: device.clone(),
            queue: queue.clone(),
            scheduler,
            module,
            layout,
            pipeline_layout,
            pipelines: Vec::new(),
            groups: Vec::new(),
            params: Vec::new(),
            norm_stage,
            grad_control,
            clip: None,
            scaler: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim loss scale"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            scratch: vec![0; scalars_size as usize],
            placeholders,
            slot_stride,
        };
        let first = this.scheduler.groups()[0].clone();
        this.push_group(&first);
        checked(scope, || format!("{} kernel", O::KERNEL.name))?;
        Ok(this)
    }

    /// The pipelines for `config`'s flags (and whether clipping is on), built on first use.
    fn pipeline_for(&mut self, config: &O) -> usize {
        let mut flags = config.flags();
        flags.push((
            "CLIP",
            self.clip.as_ref().is_some_and(|c| c.max_norm.is_some()),
        ));
        flags.push((
            "UNSCALE",
            self.clip.as_ref().is_some_and(|c| c.scale.is_some()),
        ));
        if let Some(i) = self.pipelines.iter().position(|p| p.flags == flags) {
            return i;
        }
        let mut constants: Vec<(&str, f64)> = vec![("WG", f64::from(WORKGROUP_SIZE))];
        if O::NORMS {
            constants.push(("NORM_ELEMS", f64::from(NORM_ELEMS)));
        }
        constants.extend(flags.iter().map(|&(k, v)| (k, if v { 1.0 } else { 0.0 })));
        let entry = |name: &str| {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(O::KERNEL.name),
                    layout: Some(&self.pipeline_layout),
                    module: &self.module,
                    entry_point: Some(name),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        };
        let pipelines = Pipelines {
            main: entry("main"),
            norms: O::NORMS.then(|| entry("norms")),
            flags,
        };
        self.pipelines.push(pipelines);
        self.pipelines.len() - 1
    }

    /// Points every group at the pipelines for its flags and the current clipping setting.
    fn repipe_groups(&mut self) {
        let configs = self.scheduler.groups().to_vec();
        for (g, config) in configs.iter().enumerate() {
            self.groups[g].pipeline = self.pipeline_for(config);
        }
    }

    fn push_group(&mut self, config: &O) {
        let pipeline = self.pipeline_for(config);
        let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim scalars"),
            size: UNIFORM_SLOTS * self.slot_stride,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.groups.push(GpuGroup { pipeline, uniform });
    }

    /// Group 0, the group the optimizer was built with.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// Adds a parameter group with its own hyperparameters, as a PyTorch param group.
    pub fn add_param_group(&mut self, config: O) -> Result<GroupId> {
        config.validate()?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipelines = self.pipelines.len();
        self.push_group(&config);
        if let Err(e) = checked(scope, || {
            format!("{} pipeline for {config:?}", O::KERNEL.name)
        }) {
            self.groups.pop();
            self.pipelines.truncate(pipelines);
            return Err(e);
        }
        self.scheduler.add_group(config)
    }

    /// Sets (or removes) the learning-rate schedule applied to every group's base rate.
    pub fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.scheduler.set_schedule(schedule)
    }

    /// The step scheduler: step count, groups and learning rates.
    pub fn scheduler(&self) -> &StepScheduler<O> {
        &self.scheduler
    }

    fn check_slice(&self, which: &'static str, slice: &wgpu::BufferSlice<'_>) -> Result<()> {
        let buffer = slice.buffer();
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::MissingStorageUsage {
                which,
                usage: buffer.usage(),
            });
        }
        let size = slice.size();
        if size == 0 || !size.is_multiple_of(4) {
            return Err(Error::BadBufferSize { which, size });
        }
        let alignment = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        if !slice.offset().is_multiple_of(alignment) {
            return Err(Error::MisalignedSlice {
                which,
                offset: slice.offset(),
                alignment,
            });
        }
        Ok(())
    }

    /// Registers a parameter buffer and its gradient buffer in `group`, and allocates the
    /// parameter's optimizer state (zeros, or the optimizer's initial value).
    ///
    /// Both buffers hold f32 values, need `STORAGE` usage and must have the same size; a buffer
    /// may be registered as a parameter only once, and never as its own gradient. Nothing is
    /// allocated unless every check passes. See [`GpuOptimizer::register_slices`] for parts of
    /// buffers.
    pub fn register(
        &mut self,
        group: GroupId,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Result<ParamId> {
        self.register_slices(group, param.slice(..), grad.slice(..))
    }

    /// Registers a range of a parameter buffer and the matching range of a gradient buffer,
    /// with optimizer state for that range only: a tensor inside a caller's arena, or the shard
    /// of a flat buffer that this data-parallel worker owns (ZeRO-1).
    ///
    /// Both slices hold the same whole number of f32 values and start at a multiple of the
    /// device's `min_storage_buffer_offset_alignment` (256 bytes on most adapters). A range of
    /// a buffer may be registered as a parameter only once (disjoint ranges of one buffer may
    /// each be), and a gradient may not overlap its parameter. Slices larger than the device's
    /// `max_storage_buffer_binding_size` are bound in windows, one dispatch each.
    pub fn register_slices(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
    ) -> Result<ParamId> {
        let config = self.scheduler.group(group)?.clone();
        self.check_slice("param", &param)?;
        self.check_slice("grad", &grad)?;
        if param.size() != grad.size() {
            return Err(Error::LengthMismatch {
                param: param.size() / 4,
                grad: grad.size() / 4,
            });
        }
        let range = |s: &wgpu::BufferSlice<'_>| s.offset()..s.offset() + s.size();
        let overlaps =
            |a: &std::ops::Range<u64>, b: &std::ops::Range<u64>| a.start < b.end && b.start < a.end;
        let param_range = range(&param);
        if param.buffer() == grad.buffer() && overlaps(&param_range, &range(&grad)) {
            return Err(Error::AliasedBuffer(format!(
                "gradient bytes {:?} overlap their parameter's bytes {param_range:?} in the same buffer",
                range(&grad)
            )));
        }
        if let Some(i) = self
            .params
            .iter()
            .position(|p| p.param == *param.buffer() && overlaps(&p.param_range, &param_range))
        {
            return Err(Error::AliasedBuffer(format!(
                "parameter bytes {param_range:?} overlap those of parameter {i}, already registered"
            )));
        }
        let len = param.size() / 4;
        let states: [Option<wgpu::Buffer>; MAX_STATES] = std::array::from_fn(|slot| {
            (slot < O::STATE_NAMES.len() && config.uses_state(slot)).then(|| {
                let desc = wgpu::BufferDescriptor {
                    label: Some(O::STATE_NAMES[slot]),
                    size: len * 4,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                };
                // wgpu zero-fills new buffers; only a non-zero start needs an upload.
                let init = config.initial_state(slot);
                if init == 0.0 {
                    self.device.create_buffer(&desc)
                } else {
                    wgpu::util::DeviceExt::create_buffer_init(
                        &self.device,
                        &wgpu::util::BufferInitDescriptor {
                            label: desc.label,
                            contents: bytemuck::cast_slice(&vec![init; len as usize]),
                            usage: desc.usage,
                        },
                    )
                }
            })
        });
        self.params.push(GpuParam {
            group: group.0,
            len,
            param: param.buffer().clone(),
            param_range,
            grad: grad.buffer().clone(),
            grad_offset: grad.offset(),
            states,
            windows: Vec::new(),
        });
        if O::NORMS {
            // Every tensor's partials and norms live in shared buffers, which grow.
            self.rebuild_norms();
        } else {
            let last = self.params.len() - 1;
            self.params[last].windows = self.build_windows(last, None);
        }
        self.rebuild_clip();
        Ok(ParamId(self.params.len() - 1))
    }

    /// Bind groups and grids of parameter `index`'s windows; with `norms`, bound to the shared
    /// norm buffers, this parameter's partials starting at the given byte offset.
    fn build_windows(&self, index: usize, norms: Option<(&NormBuffers, u64)>) -> Vec<Window> {
        let p = &self.params[index];
        let limits = self.device.limits();
        let binding = |buffer, offset, size| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: NonZeroU64::new(size),
            })
        };
        let mut partials_at = norms.map_or(0, |n| n.1);
        window_ranges(p.len, &limits)
            .into_iter()
            .map(|(start, n)| {
                let workgroups = grid(n, limits.max_compute_workgroups_per_dimension);
                let norm_workgroups = norm_grid(n, &limits);
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: whole(
                            &self.groups[p.group].uniform,
                            std::mem::size_of::<O::Scalars>() as u64 * u64::from(SCALAR_CANDIDATES),
                        ),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: binding(&p.param, p.param_range.start + start * 4, n * 4),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: binding(&p.grad, p.grad_offset + start * 4, n * 4),
                    },
                ];
                for (slot, state) in p.states.iter().enumerate().take(O::STATE_NAMES.len()) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: 3 + slot as u32,
                        resource: match state {
                            Some(b) => binding(b, start * 4, n * 4),
                            None => whole(&self.placeholders[slot], 16),
                        },
                    });
                }
                entries.push(wgpu::BindGroupEntry {
                    binding: GRAD_CONTROL_BINDING,
                    resource: self.grad_control.as_entire_binding(),
                });
                if let Some((buffers, _)) = norms {
                    let size = partials_size(norm_workgroups);
                    entries.push(wgpu::BindGroupEntry {
                        binding: PARTIALS_BINDING,
                        resource: binding(&buffers.partials, partials_at, size),
                    });
                    entries.push(wgpu::BindGroupEntry {
                        binding: NORMS_BINDING,
                        resource: binding(&buffers.norms, index as u64 * NORM_STRIDE_BYTES, 8),
                    });
                    partials_at += size;
                }
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(O::KERNEL.name),
                    layout: &self.layout,
                    entries: &entries,
                });
                Window {
                    bind_group,
                    workgroups,
                    norm_workgroups,
                }
            })
            .collect()
    }

    /// Lays out every tensor's partial sums, recreates the shared norm buffers and the tensor
    /// table, and rebinds every window to them.
    fn rebuild_norms(&mut self) {
        let Some(stage) = &self.norm_stage else {
            return;
        };
        let (table, starts, bytes) = self.partial_layout();
        let buffers = stage.buffers(&self.device, &table, bytes, self.params.len());
        let windows: Vec<Vec<Window>> = (0..self.params.len())
            .map(|i| self.build_windows(i, Some((&buffers, starts[i]))))
            .collect();
        for (p, w) in self.params.iter_mut().zip(windows) {
            p.windows = w;
        }
        if let Some(stage) = &mut self.norm_stage {
            stage.buffers = Some(buffers);
        }
    }

    /// Where each tensor's per-workgroup partial sums go in a shared buffer: the tensor table
    /// (first partial, partial count, in `vec2<f32>` units), each tensor's first byte, and the
    /// bytes in all. Windows' partials start at bindable offsets; the zero padding between them
    /// adds nothing to the sums.
    fn partial_layout(&self) -> (Vec<[u32; 2]>, Vec<u64>, u64) {
        let limits = self.device.limits();
        let mut table = Vec::with_capacity(self.params.len());
        let mut starts = Vec::with_capacity(self.params.len());
        let mut at = 0u64;
        for p in &self.params {
            starts.push(at);
            let first = at;
            for (_, n) in window_ranges(p.len, &limits) {
                at += partials_size(norm_grid(n, &limits));
            }
            table.push([(first / 8) as u32, ((at - first) / 8) as u32]);
        }
        (table, starts, at)
    }

    /// Turns global-norm gradient clipping on with `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_(params, max_norm)` before each step), or off with `None`.
    ///
    /// Each step then computes, on the device, the 2-norm of all registered gradients together
    /// and the coefficient `min(1, max_norm / (norm + 1e-6))`, and every update multiplies its
    /// gradient by it; the gradient buffers are not rewritten. The norm is kept on the device:
    /// [`GpuOptimizer::read_grad_norm`] reads it back when asked.
    pub fn set_max_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        if let Some(m) = max_norm
            && !(m.is_finite() && m > 0.0)
        {
            return Err(Error::InvalidHyperparameter {
                name: "max_norm",
                value: m,
                reason: "must be finite and > 0",
            });
        }
        let scale = self.clip.as_ref().and_then(|c| c.scale);
        self.configure_grad_stage(max_norm.map(|m| m as f32), scale)
    }

    /// Turns loss scaling on (as `torch.amp.GradScaler` with a fused optimizer) or off.
    ///
    /// The caller multiplies its loss by the current scale, which lives on the device in
    /// [`GpuOptimizer::loss_scale_buffer`] (bind it in your loss kernel). Each step then
    /// unscales every gradient by `1 / scale` inside the update and, if any gradient is inf or
    /// NaN, skips the whole step on the device: parameters, states and the optimizer's step
    /// count (and so its bias corrections) stay as they were. The scale then backs off or grows
    /// as GradScaler's does. [`GpuOptimizer::read_loss_scale`] reads the state back when asked.
    ///
    /// The learning-rate schedule keeps following the calls to `step`, as a PyTorch scheduler
    /// stepped every iteration does. Step-dependent scalars are exact for up to
    /// `SCALAR_CANDIDATES - 1` (15) skipped steps in a run; past that, the scalars of 15 skips are
    /// used, which differ from PyTorch's only while bias corrections are still far from 1 (or,
    /// for Adagrad, with `lr_decay`).
    pub fn set_loss_scale(&mut self, scale: Option<LossScale>) -> Result<()> {
        if let Some(s) = &scale {
            s.validate()?;
            let init = [s.init_scale as f32, 0.0, 0.0, 0.0];
            self.queue
                .write_buffer(&self.scaler, 0, bytemuck::cast_slice(&init));
        }
        let max_norm = self.clip.as_ref().and_then(|c| c.max_norm);
        self.configure_grad_stage(max_norm, scale)
    }

    /// The buffer holding the loss scale (f32 at offset 0), for the caller's loss kernel.
    pub fn loss_scale_buffer(&self) -> &wgpu::Buffer {
        &self.scaler
    }

    /// GradScaler's state after the last step, read back from the device (waits for the GPU).
    pub fn read_loss_scale(&self) -> Result<LossScaleState> {
        let s = read_buffer(&self.device, &self.queue, &self.scaler)?;
        Ok(LossScaleState {
            scale: s[0],
            growth_tracker: s[1] as u64,
            skipped_steps: s[2] as u64,
            last_step_skipped: s[3] != 0.0,
        })
    }

    /// Creates, reconfigures or drops the gradient stage for clipping at `max_norm` and loss
    /// scaling `scale`, then repoints the pipelines and rebuilds the stage's bind groups.
    fn configure_grad_stage(
        &mut self,
        max_norm: Option<f32>,
        scale: Option<LossScale>,
    ) -> Result<()> {
        if max_norm.is_none() && scale.is_none() {
            self.clip = None;
            self.queue
                .write_buffer(&self.grad_control, 0, bytemuck::cast_slice(&NO_CLIP));
            self.repipe_groups();
            return Ok(());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut stage = match self.clip.take() {
            Some(stage) => stage,
            None => ClipStage::new(&self.device),
        };
        stage.max_norm = max_norm;
        stage.scale = scale;
        self.clip = Some(stage);
        self.repipe_groups();
        if let Err(e) = checked(scope, || "gradient-norm kernels".to_string()) {
            self.clip = None;
            self.repipe_groups();
            return Err(e);
        }
        self.rebuild_clip();
        Ok(())
    }

    /// The global gradient norm of the last step (0 before any clipped step), read back from the
    /// device: this waits for the GPU, so ask only when you log it.
    pub fn read_grad_norm(&self) -> Result<f32> {
        Ok(read_buffer(&self.device, &self.queue, &self.grad_control)?[0])
    }

    /// The buffer holding `[global gradient norm, clipping coefficient]` after each step, for
    /// callers who copy it out asynchronously.
    pub fn grad_control_buffer(&self) -> &wgpu::Buffer {
        &self.grad_control
    }

    /// Rebuilds the clipping stage's buffers and bind groups for the registered gradients.
    fn rebuild_clip(&mut self) {
        if self.clip.is_none() || self.params.is_empty() {
            return;
        }
        let (table, starts, bytes) = self.partial_layout();
        let limits = self.device.limits();
        let Some(clip) = &self.clip else { return };
        let buffers = clip
            .reduce
            .buffers(&self.device, &table, bytes, self.params.len());
        let scale = clip.scale.unwrap_or_default();
        let params = GradParams {
            max_norm: clip.max_norm.unwrap_or(0.0),
            tensors: self.params.len() as u32,
            norm_stride: (NORM_STRIDE_BYTES / 4) as u32,
            clip: u32::from(clip.max_norm.is_some()),
            unscale: u32::from(clip.scale.is_some()),
            growth_factor: scale.growth_factor as f32,
            backoff_factor: scale.backoff_factor as f32,
            growth_interval: scale.growth_interval,
        };
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            &self.device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim gradient stage parameters"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let mut windows = Vec::new();
        for (p, &start) in self.params.iter().zip(&starts) {
            let mut at = start;
            for (first, n) in window_ranges(p.len, &limits) {
                let workgroups = norm_grid(n, &limits);
                let size = partials_size(workgroups);
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim gradient norm"),
                    layout: &clip.sumsq_layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &p.grad,
                                offset: p.grad_offset + first * 4,
                                size: NonZeroU64::new(n * 4),
                            }),
                        },
                        wgpu::BindGroupEntry {
                            binding: PARTIALS_BINDING,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &buffers.partials,
                                offset: at,
                                size: NonZeroU64::new(size),
                            }),
                        },
                        wgpu::BindGroupEntry {
                            binding: 14,
                            resource: uniform.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 15,
                            resource: self.scaler.as_entire_binding(),
                        },
                    ],
                });
                windows.push((bind_group, workgroups));
                at += size;
            }
        }
        let finalize = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim gradient norm"),
            layout: &clip.finalize_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 12,
                    resource: buffers.norms.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 13,
                    resource: self.grad_control.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 14,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 15,
                    resource: self.scaler.as_entire_binding(),
                },
            ],
        });
        if let Some(clip) = &mut self.clip {
            clip.built = Some(ClipBuffers {
                norms: buffers,
                windows,
                finalize,
            });
        }
    }

    /// Records one optimizer step into `encoder`, in a compute pass of its own.
    ///
    /// No submit, no readback, no allocation: the step's scalars are written to the next slot of
    /// each group's uniform ring with `queue.write_buffer` (they land at the next submit; see
    /// [`UNIFORM_SLOTS`]), then one dispatch per parameter buffer is recorded.
    pub fn step(&mut self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            // No label: wgpu copies a label into a new String on every pass.
            label: None,
            timestamp_writes: None,
        });
        self.record(&mut pass);
    }

    /// As [`GpuOptimizer::step`], recording into a compute pass the caller has begun (for
    /// example one with timestamp writes, or one it shares with its own dispatches).
    pub fn record(&mut self, pass: &mut wgpu::ComputePass<'_>) {
        let t = self.scheduler.advance();
        let offset = (t % UNIFORM_SLOTS) * self.slot_stride;
        // Under loss scaling, candidate j is the step count after j skipped steps; the kernels
        // pick by the device's count of skips. Otherwise only candidate 0 is read.
        let candidates = if self.clip.as_ref().is_some_and(|c| c.scale.is_some()) {
            SCALAR_CANDIDATES as usize
        } else {
            1
        };
        let size = std::mem::size_of::<O::Scalars>();
        for (g, group) in self.groups.iter().enumerate() {
            for j in 0..candidates {
                let state_step = t.saturating_sub(j as u64).max(1);
                let scalars = self.scheduler.scalars_at(g, t, state_step);
                self.scratch[j * size..(j + 1) * size]
                    .copy_from_slice(bytemuck::bytes_of(&scalars));
            }
            self.queue
                .write_buffer(&group.uniform, offset, &self.scratch[..candidates * size]);
        }
        if let Some(ClipStage {
            sumsq,
            finalize,
            reduce,
            built: Some(built),
            ..
        }) = &self.clip
        {
            // The global gradient norm and clipping coefficient, before any update reads them.
            pass.set_pipeline(sumsq);
            for (bind_group, (x, y)) in &built.windows {
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
            pass.set_pipeline(&reduce.pipeline);
            pass.set_bind_group(0, &built.norms.bind_group, &[]);
            pass.dispatch_workgroups(built.norms.workgroups.0, built.norms.workgroups.1, 1);
            pass.set_pipeline(finalize);
            pass.set_bind_group(0, &built.finalize, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        if let Some(NormStage {
            pipeline: reduce,
            buffers: Some(norms),
            ..
        }) = &self.norm_stage
        {
            // Per-workgroup partial sums of every tensor, then every tensor's norms in one
            // dispatch, then the updates that read them.
            self.dispatch_all(pass, offset, true, |p| p.norms.as_ref());
            pass.set_pipeline(reduce);
            pass.set_bind_group(0, &norms.bind_group, &[]);
            pass.dispatch_workgroups(norms.workgroups.0, norms.workgroups.1, 1);
        }
        self.dispatch_all(pass, offset, false, |p| Some(&p.main));
    }

    /// One dispatch per window of every parameter, with the pipeline `entry` picks for its group
    /// (over the `norms` grid when `norms`).
    fn dispatch_all(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        offset: u64,
        norms: bool,
        entry: impl Fn(&Pipelines) -> Option<&wgpu::ComputePipeline>,
    ) {
        let mut bound = usize::MAX;
        for p in &self.params {
            let index = self.groups[p.group].pipeline;
            let Some(pipeline) = entry(&self.pipelines[index]) else {
                continue;
            };
            if index != bound {
                pass.set_pipeline(pipeline);
                bound = index;
            }
            for w in &p.windows {
                let (x, y) = if norms {
                    w.norm_workgroups
                } else {
                    w.workgroups
                };
                pass.set_bind_group(0, &w.bind_group, &[offset as u32]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
    }

    /// Dispatches one step records: one per registered parameter, or one per window for
    /// parameters larger than one storage binding; twice that plus one reduction for
    /// optimizers with per-tensor norms; plus, with clipping, one per window, a reduction and
    /// a final dispatch for the global norm.
    pub fn dispatches_per_step(&self) -> usize {
        let updates: usize = self.params.iter().map(|p| p.windows.len()).sum();
        let clip = match &self.clip {
            Some(ClipStage { built: Some(b), .. }) => b.windows.len() + 2,
            _ => 0,
        };
        if O::NORMS && !self.params.is_empty() {
            clip + 2 * updates + 1
        } else {
            clip + updates
        }
    }

    /// The buffer holding state `name` (PyTorch's key) of `param`, if these options keep it.
    pub fn state_buffer(&self, param: ParamId, name: &str) -> Option<&wgpu::Buffer> {
        let slot = O::STATE_NAMES.iter().position(|&n| n == name)?;
        self.params.get(param.0)?.states[slot].as_ref()
    }

    /// All optimizer state: step, groups, schedule, and every parameter's state buffers (read
    /// back from the GPU, waiting for it; not for the hot path).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut params = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mut states = Vec::new();
            for (slot, buffer) in p.states.iter().enumerate() {
                if let Some(b) = buffer {
                    states.push((
                        O::STATE_NAMES[slot].to_string(),
                        read_buffer(&self.device, &self.queue, b)?,
                    ));
                }
            }
            params.push(SavedParam {
                group: p.group,
                len: p.len as usize,
                states,
            });
        }
        Checkpoint::capture(&self.scheduler, params)
    }

    /// Saves [`GpuOptimizer::checkpoint`] to `path` (through a temporary file and a rename).
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        self.checkpoint()?.save(path)
    }

    /// Restores a checkpoint taken from an optimizer with the same groups (and option flags) and
    /// the same parameters registered in the same order, on either backend. Everything is
    /// checked first: on error the optimizer is exactly as it was. The state is written with
    /// `queue.write_buffer`, so it lands at the next submit, before the next step runs.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let registered: Vec<(usize, usize)> = self
            .params
            .iter()
            .map(|p| (p.group, p.len as usize))
            .collect();
        let checkpoint = checkpoint.clone().in_binding_order::<O>();
        let groups = checkpoint.check_fits(self.scheduler.groups(), &registered)?;
        for (p, saved) in self.params.iter().zip(&checkpoint.params) {
            for (name, data) in &saved.states {
                let slot = O::STATE_NAMES.iter().position(|n| n == name);
                if let Some(buffer) = slot.and_then(|s| p.states[s].as_ref()) {
                    self.queue
                        .write_buffer(buffer, 0, bytemuck::cast_slice(data));
                }
            }
        }
        self.scheduler
            .restore(groups, checkpoint.schedule, checkpoint.step);
        Ok(())
    }

    /// Reads a checkpoint file and [`GpuOptimizer::restore`]s it.
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<()> {
        self.restore(&Checkpoint::load(path)?)
    }

    /// Reads state `name` of `param` back to the host (waits for the GPU; not for the hot path).
    pub fn read_state(&self, param: ParamId, name: &str) -> Result<Option<Vec<f32>>> {
        self.state_buffer(param, name)
            .map(|b| read_buffer(&self.device, &self.queue, b))
            .transpose()
    }
}

/// Binding of the gradient control (`grad_control` in `shaders/common.wgsl`) in every update.
const GRAD_CONTROL_BINDING: u32 = 11;
/// The gradient control while clipping is off: norm 0, coefficient 1.
const NO_CLIP: [f32; 8] = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];

/// `GradParams` in `shaders/grad_norm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GradParams {
    max_norm: f32,
    tensors: u32,
    norm_stride: u32,
    clip: u32,
    unscale: u32,
    growth_factor: f32,
    backoff_factor: f32,
    growth_interval: u32,
}

/// Loss scaling as `torch.amp.GradScaler`; `Default` is GradScaler's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    /// The scale to start from (65536).
    pub init_scale: f64,
    /// Factor the scale grows by after `growth_interval` steps without inf or NaN (2).
    pub growth_factor: f64,
    /// Factor the scale shrinks by after a step with inf or NaN (0.5).
    pub backoff_factor: f64,
    /// Steps without inf or NaN before the scale grows (2000).
    pub growth_interval: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl LossScale {
    /// Checks GradScaler's ranges: a positive finite scale, growth > 1, backoff in (0, 1),
    /// interval > 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, reason| {
            Err(Error::InvalidHyperparameter {
                name,
                value,
                reason,
            })
        };
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return bad("init_scale", self.init_scale, "must be finite and > 0");
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return bad(
                "growth_factor",
                self.growth_factor,
                "must be finite and > 1",
            );
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return bad("backoff_factor", self.backoff_factor, "must be in (0, 1)");
        }
        if self.growth_interval == 0 {
            return bad("growth_interval", 0.0, "must be > 0");
        }
        Ok(())
    }
}

/// GradScaler's state on the device, as [`GpuOptimizer::read_loss_scale`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaleState {
    /// The scale for the next step's loss.
    pub scale: f32,
    /// Steps without inf or NaN since the scale last changed.
    pub growth_tracker: u64,
    /// Steps skipped so far for inf or NaN gradients.
    pub skipped_steps: u64,
    /// Whether the last step was skipped.
    pub last_step_skipped: bool,
}

const GRAD_NORM: crate::kernel::Kernel = crate::kernel::Kernel {
    name: "grad_norm",
    source: include_str!("../shaders/grad_norm.wgsl"),
};

/// Global-norm gradient clipping: per-workgroup Σg² of every gradient, per-tensor norms by the
/// shared reduction, then the global norm and coefficient.
#[derive(Debug)]
struct ClipStage {
    max_norm: Option<f32>,
    scale: Option<LossScale>,
    sumsq: wgpu::ComputePipeline,
    sumsq_layout: wgpu::BindGroupLayout,
    finalize: wgpu::ComputePipeline,
    finalize_layout: wgpu::BindGroupLayout,
    reduce: NormStage,
    /// Rebuilt whenever a tensor is registered (never per step).
    built: Option<ClipBuffers>,
}

#[derive(Debug)]
struct ClipBuffers {
    norms: NormBuffers,
    windows: Vec<(wgpu::BindGroup, (u32, u32))>,
    finalize: wgpu::BindGroup,
}

impl ClipStage {
    fn new(device: &wgpu::Device) -> Self {
        let module = crate::kernel::create_module(device, &GRAD_NORM);
        let pipeline = |entry: &str, layout: &wgpu::BindGroupLayout| {
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(GRAD_NORM.name),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(GRAD_NORM.name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[
                        ("WG", f64::from(WORKGROUP_SIZE)),
                        ("NORM_ELEMS", f64::from(NORM_ELEMS)),
                    ],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        };
        let params_entry = wgpu::BindGroupLayoutEntry {
            binding: 14,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(std::mem::size_of::<GradParams>() as u64),
            },
            count: None,
        };
        let sumsq_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(GRAD_NORM.name),
            entries: &[
                storage_entry(2, true),
                storage_entry_of(PARTIALS_BINDING, false, 8),
                params_entry,
                storage_entry(15, false),
            ],
        });
        let finalize_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(GRAD_NORM.name),
            entries: &[
                storage_entry(12, true),
                storage_entry(13, false),
                params_entry,
                storage_entry(15, false),
            ],
        });
        Self {
            max_norm: None,
            scale: None,
            sumsq: pipeline("sumsq", &sumsq_layout),
            finalize: pipeline("finalize", &finalize_layout),
            sumsq_layout,
            finalize_layout,
            reduce: NormStage::new(device),
            built: None,
        }
    }
}

/// Binding of a window's partial sums in a `NORMS` kernel (one `vec2<f32>` per workgroup).
const PARTIALS_BINDING: u32 = 6;
/// Binding of the tensor's norm pair in a `NORMS` kernel.
const NORMS_BINDING: u32 = 7;

/// The `norms` entry point's grid over `len` elements: `NORM_ELEMS` per invocation.
fn norm_grid(len: u64, limits: &wgpu::Limits) -> (u32, u32) {
    grid(
        len.div_ceil(u64::from(NORM_ELEMS)),
        limits.max_compute_workgroups_per_dimension,
    )
}

/// Bytes of partial sums a window with `workgroups` needs: one `vec2<f32>` per workgroup,
/// rounded up so the next window's start is a bindable offset.
fn partials_size(workgroups: (u32, u32)) -> u64 {
    let bytes = u64::from(workgroups.0) * u64::from(workgroups.1) * 8;
    bytes.div_ceil(NORM_STRIDE_BYTES) * NORM_STRIDE_BYTES
}

const REDUCE: crate::kernel::Kernel = crate::kernel::Kernel {
    name: "reduce",
    source: include_str!("../shaders/reduce.wgsl"),
};

impl NormStage {
    fn new(device: &wgpu::Device) -> Self {
        let module = crate::kernel::create_module(device, &REDUCE);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(REDUCE.name),
            entries: &[
                storage_entry_of(8, true, 8),
                storage_entry_of(9, true, 8),
                storage_entry(10, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(REDUCE.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(REDUCE.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("reduce"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[
                    ("WG", f64::from(WORKGROUP_SIZE)),
                    ("NORM_STRIDE", (NORM_STRIDE_BYTES / 4) as f64),
                ],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        Self {
            layout,
            pipeline,
            buffers: None,
        }
    }

    /// Fresh partials (`partials_bytes`, zeroed), norms and table buffers for `tensors`
    /// tensors, and the reduction's bind group over them.
    fn buffers(
        &self,
        device: &wgpu::Device,
        table: &[[u32; 2]],
        partials_bytes: u64,
        tensors: usize,
    ) -> NormBuffers {
        let storage = |label, size| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let partials = storage("wgpu-optim partial sums", partials_bytes.max(8));
        let norms = storage("wgpu-optim norms", tensors as u64 * NORM_STRIDE_BYTES);
        let table = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim tensor table"),
                contents: bytemuck::cast_slice(table),
                usage: wgpu::BufferUsages::STORAGE,
            },
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(REDUCE.name),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 8,
                    resource: table.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 9,
                    resource: partials.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 10,
                    resource: norms.as_entire_binding(),
                },
            ],
        });
        let max = device.limits().max_compute_workgroups_per_dimension;
        let x = (tensors as u32).min(max);
        NormBuffers {
            partials,
            norms,
            bind_group,
            workgroups: (x, (tensors as u32).div_ceil(x.max(1))),
        }
    }
}

/// `(first element, elements)` of each window a buffer of `len` f32 values is bound in: no
/// larger than one storage binding, starting at offsets the device can bind, and no more
/// elements than a 2-D grid within the per-dimension workgroup limit covers.
pub(crate) fn window_ranges(len: u64, limits: &wgpu::Limits) -> Vec<(u64, u64)> {
    let align = u64::from(limits.min_storage_buffer_offset_alignment) / 4;
    let per_dim = u64::from(limits.max_compute_workgroups_per_dimension);
    let window = (limits.max_storage_buffer_binding_size / 4)
        .min(per_dim * per_dim * u64::from(WORKGROUP_SIZE));
    let window = (window / align * align).max(align);
    (0..len.div_ceil(window))
        .map(|k| (k * window, window.min(len - k * window)))
        .collect()
}

/// Turns a validation error wgpu caught in `scope` into [`Error::Gpu`].
fn checked(scope: wgpu::ErrorScopeGuard, what: impl FnOnce() -> String) -> Result<()> {
    match pollster::block_on(scope.pop()) {
        None => Ok(()),
        Some(e) => Err(Error::Gpu {
            what: what(),
            message: e.to_string(),
        }),
    }
}

/// The first `size` bytes of `buffer`, as a binding.
pub(crate) fn whole(buffer: &wgpu::Buffer, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: NonZeroU64::new(size),
    })
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grid_covers_every_element_and_respects_the_limit() {
        assert_eq!(grid(1, 65535), (1, 1));
        assert_eq!(grid(256, 65535), (1, 1));
        assert_eq!(grid(257, 65535), (2, 1));
        let (x, y) = grid(100_000_000, 65535);
        assert!(x <= 65535);
        assert!(u64::from(x) * u64::from(y) * 256 >= 100_000_000);
    }
}
