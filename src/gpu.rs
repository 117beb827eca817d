//! [`GpuOptimizer`]: the fused kernels stepping a caller's own wgpu buffers.

use std::num::NonZeroU64;

use crate::checkpoint::{Checkpoint, SavedParam};
use crate::context::read_buffer;
use crate::cpu_optimizer::ParamId;
use crate::error::{Error, Result};
use crate::kernel::WORKGROUP_SIZE;
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

/// One binding-sized part of a registered parameter: its bind group and its grid.
#[derive(Debug)]
struct Window {
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
}

#[derive(Debug)]
struct GpuParam {
    group: usize,
    len: usize,
    param: wgpu::Buffer,
    /// The registered bytes of `param`.
    param_range: std::ops::Range<u64>,
    states: [Option<wgpu::Buffer>; MAX_STATES],
    windows: Vec<Window>,
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
    pipelines: Vec<(Vec<(&'static str, bool)>, wgpu::ComputePipeline)>,
    groups: Vec<GpuGroup>,
    params: Vec<GpuParam>,
    /// Bound in place of the states these options do not keep; never read or written.
    placeholders: [wgpu::Buffer; MAX_STATES],
    slot_stride: u64,
}

pub(crate) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(4),
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
        let scalars_size = std::mem::size_of::<O::Scalars>() as u64;
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
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(O::KERNEL.name),
            entries: &entries,
        });
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
            placeholders,
            slot_stride,
        };
        let first = this.scheduler.groups()[0].clone();
        this.push_group(&first);
        checked(scope, || format!("{} kernel", O::KERNEL.name))?;
        Ok(this)
    }

    /// The pipeline for `config`'s flags, built on first use.
    fn pipeline_for(&mut self, config: &O) -> usize {
        let flags = config.flags();
        if let Some(i) = self.pipelines.iter().position(|(f, _)| *f == flags) {
            return i;
        }
        let mut constants: Vec<(&str, f64)> = vec![("WG", f64::from(WORKGROUP_SIZE))];
        constants.extend(flags.iter().map(|&(k, v)| (k, if v { 1.0 } else { 0.0 })));
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(O::KERNEL.name),
                layout: Some(&self.pipeline_layout),
                module: &self.module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.pipelines.push((flags, pipeline));
        self.pipelines.len() - 1
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
        let limits = self.device.limits();
        let mut windows = Vec::new();
        for (start, n) in window_ranges(len, &limits) {
            let at = |base: u64| {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: param.buffer(),
                    offset: base + start * 4,
                    size: NonZeroU64::new(n * 4),
                })
            };
            let mut entries = vec![
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: whole(
                        &self.groups[group.0].uniform,
                        std::mem::size_of::<O::Scalars>() as u64,
                    ),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: at(param.offset()),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: grad.buffer(),
                        offset: grad.offset() + start * 4,
                        size: NonZeroU64::new(n * 4),
                    }),
                },
            ];
            for (slot, state) in states.iter().enumerate().take(O::STATE_NAMES.len()) {
                let resource = match state {
                    Some(b) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b,
                        offset: start * 4,
                        size: NonZeroU64::new(n * 4),
                    }),
                    None => whole(&self.placeholders[slot], 16),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: 3 + slot as u32,
                    resource,
                });
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(O::KERNEL.name),
                layout: &self.layout,
                entries: &entries,
            });
            windows.push(Window {
                bind_group,
                workgroups: grid(n, limits.max_compute_workgroups_per_dimension),
            });
        }
        self.params.push(GpuParam {
            group: group.0,
            len: len as usize,
            param: param.buffer().clone(),
            param_range,
            states,
            windows,
        });
        Ok(ParamId(self.params.len() - 1))
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
        for (g, group) in self.groups.iter().enumerate() {
            let scalars = self.scheduler.scalars(g, t);
            self.queue
                .write_buffer(&group.uniform, offset, bytemuck::bytes_of(&scalars));
        }
        let mut bound = usize::MAX;
        for p in &self.params {
            let pipeline = self.groups[p.group].pipeline;
            if pipeline != bound {
                pass.set_pipeline(&self.pipelines[pipeline].1);
                bound = pipeline;
            }
            for w in &p.windows {
                pass.set_bind_group(0, &w.bind_group, &[offset as u32]);
                pass.dispatch_workgroups(w.workgroups.0, w.workgroups.1, 1);
            }
        }
    }

    /// Dispatches one step records: one per registered parameter, or one per window for
    /// parameters larger than one storage binding.
    pub fn dispatches_per_step(&self) -> usize {
        self.params.iter().map(|p| p.windows.len()).sum()
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
                len: p.len,
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
        let registered: Vec<(usize, usize)> =
            self.params.iter().map(|p| (p.group, p.len)).collect();
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
