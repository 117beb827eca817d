//! The gradient stage's passes on the device (`shaders/grad_norm.wgsl`): per-workgroup Σg² of
//! every gradient window, per-tensor norms by the shared reduction, then the global norm, the
//! clipping coefficient and GradScaler's update, into the gradient control every update reads.

use crate::abi::bindings::{grad_norm, update};
use crate::abi::uniforms::GradParams;
use crate::context::read_buffer;
use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::gpu::geometry::{
    NORM_STRIDE_BYTES, norm_grid, partial_layout, partials_size, window_ranges,
};
use crate::gpu::param::GpuParam;
use crate::gpu::reduce::{NormBuffers, NormStage};
use crate::gpu::scopes::ErrorScopes;
use crate::host::grad_stage::{GradStage, LossScale, LossScaleState};
use crate::kernel::{GradAccess, Kernel, NORM_ELEMS, WORKGROUP_SIZE, create_module};
use crate::optim::Algorithm;

const GRAD_NORM: Kernel = Kernel {
    name: "grad_norm",
    source: include_str!("../../shaders/grad_norm.wgsl"),
};

/// The gradient control while no gradient stage runs: norm 0, coefficient 1, scale 1.
pub(super) const NO_CLIP: [f32; 8] = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];

/// The stage's pipelines, built once when clipping or loss scaling is first turned on.
#[derive(Debug)]
pub(super) struct GradPasses {
    sumsq: wgpu::ComputePipeline,
    sumsq_layout: wgpu::BindGroupLayout,
    finalize: wgpu::ComputePipeline,
    finalize_layout: wgpu::BindGroupLayout,
    reduce: NormStage,
}

/// The stage's buffers and bind groups for the registered gradients (rebuilt on registration,
/// never per step).
#[derive(Debug)]
pub(super) struct GradBuffers {
    norms: NormBuffers,
    windows: Vec<(wgpu::BindGroup, (u32, u32))>,
    finalize: wgpu::BindGroup,
}

impl GradPasses {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = create_module(device, &GRAD_NORM, GradAccess::ReadOnly);
        let params_size = std::mem::size_of::<GradParams>() as u64;
        let layout = |entries: &[crate::abi::bindings::Binding]| {
            let entries: Vec<_> = entries
                .iter()
                .map(|b| b.layout_entry(params_size))
                .collect();
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(GRAD_NORM.name),
                entries: &entries,
            })
        };
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
        let sumsq_layout = layout(&grad_norm::SUMSQ);
        let finalize_layout = layout(&grad_norm::FINALIZE);
        Self {
            sumsq: pipeline("sumsq", &sumsq_layout),
            finalize: pipeline("finalize", &finalize_layout),
            sumsq_layout,
            finalize_layout,
            reduce: NormStage::new(device),
        }
    }

    /// Buffers and bind groups of `stage` over every registered gradient, or `None` while
    /// nothing is registered.
    pub fn build(
        &self,
        device: &wgpu::Device,
        stage: &GradStage,
        params: &[GpuParam],
        control: &wgpu::Buffer,
        scaler: &wgpu::Buffer,
    ) -> Option<GradBuffers> {
        if params.is_empty() {
            return None;
        }
        let limits = device.limits();
        let (table, starts, bytes) = partial_layout(params.iter().map(|p| p.len), &limits);
        let norms = self.reduce.buffers(device, &table, bytes);
        let scale = stage.loss_scale.unwrap_or_default();
        let uniform = GradParams {
            max_norm: stage.max_norm.unwrap_or(0.0),
            tensors: params.len() as u32,
            norm_stride: (NORM_STRIDE_BYTES / 4) as u32,
            clip: u32::from(stage.max_norm.is_some()),
            unscale: u32::from(stage.loss_scale.is_some()),
            growth_factor: scale.growth_factor as f32,
            backoff_factor: scale.backoff_factor as f32,
            growth_interval: scale.growth_interval,
        };
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim gradient stage parameters"),
                contents: bytemuck::bytes_of(&uniform),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let mut windows = Vec::new();
        for (p, &start) in params.iter().zip(&starts) {
            let mut at = start;
            for (first, n) in window_ranges(p.len, &limits) {
                let workgroups = norm_grid(n, &limits);
                let size = partials_size(workgroups);
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim gradient norm"),
                    layout: &self.sumsq_layout,
                    entries: &[
                        update::GRAD.entry(&p.grad, p.grad_offset + first * 4, n * 4),
                        update::PARTIALS.entry(&norms.partials, at, size),
                        grad_norm::PARAMS.whole(&uniform),
                        grad_norm::SCALER.whole(scaler),
                    ],
                });
                windows.push((bind_group, workgroups));
                at += size;
            }
        }
        let finalize = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim gradient norm"),
            layout: &self.finalize_layout,
            entries: &[
                grad_norm::TENSOR_NORMS.whole(&norms.norms),
                grad_norm::CONTROL.whole(control),
                grad_norm::PARAMS.whole(&uniform),
                grad_norm::SCALER.whole(scaler),
            ],
        });
        Some(GradBuffers {
            norms,
            windows,
            finalize,
        })
    }

    /// Records the stage: the global gradient norm and clipping coefficient (and loss
    /// scaling's check and update), before any update reads them.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, built: &GradBuffers) {
        pass.set_pipeline(&self.sumsq);
        for (bind_group, (x, y)) in &built.windows {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*x, *y, 1);
        }
        built.norms.record(pass, &self.reduce);
        pass.set_pipeline(&self.finalize);
        pass.set_bind_group(0, &built.finalize, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
}

impl GradBuffers {
    /// Dispatches the stage records per step.
    pub fn dispatches(&self) -> usize {
        self.windows.len() + 2
    }
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// Turns global-norm gradient clipping on with `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_(params, max_norm)` before each step), or off with `None`.
    ///
    /// Each step then computes, on the device, the 2-norm of all registered gradients together
    /// and the coefficient `min(1, max_norm / (norm + 1e-6))`, and every update multiplies its
    /// gradient by it; the gradient buffers are not rewritten. The norm is kept on the device:
    /// [`GpuOptimizer::read_grad_norm`] reads it back when asked.
    pub fn set_max_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        let stage = self.registry.with_max_norm(max_norm)?;
        self.configure_grad_stage(stage)
    }

    /// Turns loss scaling on (as `torch.amp.GradScaler` with a fused optimizer) or off.
    ///
    /// The caller multiplies its loss by the current scale, which lives on the device in
    /// [`GpuOptimizer::loss_scale_buffer`] (bind it in your loss kernel). Each step then
    /// unscales every gradient by `1 / scale` inside the update and, if any gradient is inf or
    /// NaN, skips the whole step on the device: parameters, states and the optimizer's step
    /// count (and so its bias corrections) stay as they were. The scale then backs off or grows
    /// as GradScaler's does. [`GpuOptimizer::read_loss_scale`] reads the state back when asked;
    /// checkpoints save and restore it. Turning it on writes the initial scale with
    /// `queue.write_buffer`, which lands at the start of the next submit: submit the steps
    /// recorded before this call first.
    ///
    /// The learning-rate schedule keeps following the calls to `step`, as a PyTorch scheduler
    /// stepped every iteration does. Step-dependent scalars are exact for up to
    /// `SCALAR_CANDIDATES - 1` (15) skipped steps in a run; past that, the scalars of 15 skips are
    /// used, which differ from PyTorch's only while bias corrections are still far from 1 (or,
    /// for Adagrad, with `lr_decay`).
    pub fn set_loss_scale(&mut self, scale: Option<LossScale>) -> Result<()> {
        let stage = self.registry.with_loss_scale(scale)?;
        self.configure_grad_stage(stage)?;
        if let Some(s) = &scale {
            self.write_loss_scale(&LossScaleState::initial(s));
        }
        Ok(())
    }

    /// Writes GradScaler's state to the device (it lands at the next submit).
    pub(super) fn write_loss_scale(&self, state: &LossScaleState) {
        let words = [
            state.scale,
            state.growth_tracker as f32,
            state.skipped_steps as f32,
            if state.last_step_skipped { 1.0 } else { 0.0 },
        ];
        self.queue
            .write_buffer(&self.scaler, 0, bytemuck::cast_slice(&words));
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

    /// Makes `stage` the gradient stage: builds its pipelines the first time, repoints every
    /// parameter's pipelines (`CLIP` and `UNSCALE` are pipeline constants) and rebuilds the
    /// stage's bind groups. On error the optimizer is as it was.
    pub(super) fn configure_grad_stage(&mut self, stage: GradStage) -> Result<()> {
        if stage == self.registry.grad_stage && (self.grad_buffers.is_some() || !stage.is_on()) {
            return Ok(());
        }
        let before = self.registry.grad_stage;
        let pipelines = self.kernels.len();
        let scopes = ErrorScopes::push(&self.device);
        let built_passes = self.grad_passes.is_none() && stage.is_on();
        if built_passes {
            self.grad_passes = Some(GradPasses::new(&self.device));
        }
        self.registry.grad_stage = stage;
        self.repipe();
        let buffers = self.build_grad_stage();
        if let Err(e) = scopes.check(|| "gradient-stage kernels".to_string()) {
            self.registry.grad_stage = before;
            if built_passes {
                self.grad_passes = None;
            }
            self.kernels.truncate(pipelines);
            self.repipe();
            return Err(e);
        }
        self.grad_buffers = buffers;
        if !stage.is_on() {
            self.queue
                .write_buffer(&self.grad_control, 0, bytemuck::cast_slice(&NO_CLIP));
        }
        // The number of scalar candidates per step follows loss scaling.
        self.tables.invalidate();
        Ok(())
    }

    /// The gradient stage's buffers over the registered gradients, while it is on.
    pub(super) fn build_grad_stage(&self) -> Option<GradBuffers> {
        let stage = &self.registry.grad_stage;
        if !stage.is_on() {
            return None;
        }
        self.grad_passes.as_ref()?.build(
            &self.device,
            stage,
            &self.params,
            &self.grad_control,
            &self.scaler,
        )
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
}
