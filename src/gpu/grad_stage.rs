//! Clipping and loss scaling on a [`GpuOptimizer`]: turning the gradient stage on and off,
//! GradScaler's state on the device, and the norm read back when asked.

use crate::context::read_buffer_async;
use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::gpu::grad_passes::{GradBuffers, GradPasses, NO_CLIP};
use crate::gpu::scopes::ErrorScopes;
use crate::host::grad_stage::{GradStage, LossScale, LossScaleState};
use crate::optim::Algorithm;

impl<O: Algorithm> GpuOptimizer<O> {
    /// Turns global-norm gradient clipping on with `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_(params, max_norm)` before each step), or off with `None`.
    ///
    /// Each step then computes, on the device, the 2-norm of all registered gradients together
    /// and the coefficient `min(1, max_norm / (norm + 1e-6))`, and every update multiplies its
    /// gradient by it; the gradient buffers are not rewritten. The norm is kept on the device:
    /// [`GpuOptimizer::read_grad_norm`] reads it back when asked.
    ///
    /// `max_norm = f64::INFINITY` computes and keeps the norm without clipping (torch's
    /// coefficient is then 1): the updates are exactly those without clipping.
    pub async fn set_max_grad_norm_async(&mut self, max_norm: Option<f64>) -> Result<()> {
        let stage = self.registry.with_max_norm(max_norm)?;
        self.configure_grad_stage(stage).await
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
    pub async fn set_loss_scale_async(&mut self, scale: Option<LossScale>) -> Result<()> {
        let stage = self.registry.with_loss_scale(scale)?;
        self.configure_grad_stage(stage).await?;
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
    pub async fn read_loss_scale_async(&self) -> Result<LossScaleState> {
        let s = read_buffer_async(&self.device, &self.queue, &self.scaler).await?;
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
    pub(super) async fn configure_grad_stage(&mut self, stage: GradStage) -> Result<()> {
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
        if let Err(e) = scopes.check(|| "gradient-stage kernels".to_string()).await {
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
    pub async fn read_grad_norm_async(&self) -> Result<f32> {
        Ok(read_buffer_async(&self.device, &self.queue, &self.grad_control).await?[0])
    }

    /// The buffer holding `[global gradient norm, clipping coefficient]` after each step, for
    /// callers who copy it out asynchronously.
    pub fn grad_control_buffer(&self) -> &wgpu::Buffer {
        &self.grad_control
    }
}
