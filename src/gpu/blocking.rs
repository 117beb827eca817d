//! The blocking API of [`GpuOptimizer`] on native targets: each method waits, with `pollster`,
//! for its `_async` twin, which holds the work and the docs. A browser cannot block its one
//! thread, so on wasm32 only the `_async` methods exist.
//!
//! On native targets every one of these futures is ready at once or after a blocking device
//! poll (wgpu's error scopes answer synchronously there), so the wait is never a spin.

use pollster::block_on;

use crate::ema::Ema;
use crate::error::Result;
use crate::gpu::{GpuOptimizer, MatmulTiles};
use crate::host::checkpoint::Checkpoint;
use crate::host::grad_stage::{LossScale, LossScaleState};
use crate::host::{GroupId, ParamId};
use crate::optim::Algorithm;
use crate::precision::Precision;
use crate::quant::Blocks;

impl<O: Algorithm> GpuOptimizer<O> {
    /// An optimizer on `device` whose first parameter group (group 0) uses `config`: blocks on
    /// [`GpuOptimizer::new_async`].
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: O) -> Result<Self> {
        block_on(Self::new_async(device, queue, config))
    }

    /// Adds a parameter group: blocks on [`GpuOptimizer::add_param_group_async`].
    pub fn add_param_group(&mut self, config: O) -> Result<GroupId> {
        block_on(self.add_param_group_async(config))
    }

    /// Replaces a group's hyperparameters: blocks on
    /// [`GpuOptimizer::set_group_config_async`].
    pub fn set_group_config(&mut self, group: GroupId, config: O) -> Result<()> {
        block_on(self.set_group_config_async(group, config))
    }

    /// Sets a group's base learning rate: blocks on [`GpuOptimizer::set_lr_async`].
    pub fn set_lr(&mut self, group: GroupId, lr: f64) -> Result<()> {
        block_on(self.set_lr_async(group, lr))
    }

    /// Registers whole f32 buffers: blocks on [`GpuOptimizer::register_async`].
    pub fn register(
        &mut self,
        group: GroupId,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Result<ParamId> {
        block_on(self.register_async(group, param, grad))
    }

    /// Registers f32 slices: blocks on [`GpuOptimizer::register_slices_async`].
    pub fn register_slices(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
    ) -> Result<ParamId> {
        block_on(self.register_slices_async(group, param, grad))
    }

    /// Registers f32 slices of a tensor of `shape`: blocks on
    /// [`GpuOptimizer::register_with_shape_async`].
    pub fn register_with_shape(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
        shape: &[usize],
    ) -> Result<ParamId> {
        block_on(self.register_with_shape_async(group, param, grad, shape))
    }

    /// Registers a tensor stored as `precision` says: blocks on
    /// [`GpuOptimizer::register_typed_async`].
    pub fn register_typed(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
        shape: &[usize],
        precision: Precision,
    ) -> Result<ParamId> {
        block_on(self.register_typed_async(group, param, grad, shape, precision))
    }

    /// Registers f32 master weights with a 16-bit copy: blocks on
    /// [`GpuOptimizer::register_master_async`].
    pub fn register_master(
        &mut self,
        group: GroupId,
        slices: (
            wgpu::BufferSlice<'_>,
            wgpu::BufferSlice<'_>,
            wgpu::BufferSlice<'_>,
        ),
        shape: &[usize],
        precision: Precision,
    ) -> Result<ParamId> {
        block_on(self.register_master_async(group, slices, shape, precision))
    }

    /// Unregisters a parameter: blocks on [`GpuOptimizer::unregister_async`].
    pub fn unregister(&mut self, param: ParamId) -> Result<()> {
        block_on(self.unregister_async(param))
    }

    /// Records one step over this step's gradient slices: as
    /// [`GpuOptimizer::step_with_async`], blocking only when a slice not seen before needs its
    /// bind groups built (a warm loop neither waits nor allocates).
    pub fn step_with(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        grads: &[wgpu::BufferSlice<'_>],
    ) -> Result<()> {
        self.rebind_grads(grads)?;
        self.step(encoder);
        Ok(())
    }

    /// Binds this step's gradient slices: as [`GpuOptimizer::rebind_grads_async`], blocking
    /// only when a slice not seen before needs its bind groups built.
    pub fn rebind_grads(&mut self, grads: &[wgpu::BufferSlice<'_>]) -> Result<()> {
        if self.rebind_warm(grads)? {
            return Ok(());
        }
        block_on(self.rebind_grads_async(grads))
    }

    /// Turns gradient accumulation on or off: blocks on
    /// [`GpuOptimizer::set_accumulation_async`].
    pub fn set_accumulation(&mut self, every: u32) -> Result<()> {
        block_on(self.set_accumulation_async(every))
    }

    /// Keeps (or stops keeping) an average of the weights: blocks on
    /// [`GpuOptimizer::set_ema_async`].
    pub fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        block_on(self.set_ema_async(ema))
    }

    /// Turns global-norm clipping on or off: blocks on
    /// [`GpuOptimizer::set_max_grad_norm_async`].
    pub fn set_max_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        block_on(self.set_max_grad_norm_async(max_norm))
    }

    /// Turns loss scaling on or off: blocks on [`GpuOptimizer::set_loss_scale_async`].
    pub fn set_loss_scale(&mut self, scale: Option<LossScale>) -> Result<()> {
        block_on(self.set_loss_scale_async(scale))
    }

    /// Sets Muon's matrix-multiply tiles: blocks on
    /// [`GpuOptimizer::set_matmul_tiles_async`].
    pub fn set_matmul_tiles(&mut self, tiles: MatmulTiles) -> Result<()> {
        block_on(self.set_matmul_tiles_async(tiles))
    }

    /// Reads a state back: blocks on [`GpuOptimizer::read_state_async`].
    pub fn read_state(&self, param: ParamId, name: &str) -> Result<Option<Vec<f32>>> {
        block_on(self.read_state_async(param, name))
    }

    /// Reads a quantized state's codes and scales back: blocks on
    /// [`GpuOptimizer::read_quantized_state_async`].
    pub fn read_quantized_state(&self, param: ParamId, name: &str) -> Result<Option<Blocks>> {
        block_on(self.read_quantized_state_async(param, name))
    }

    /// Reads a running gradient sum back: blocks on [`GpuOptimizer::read_grad_sum_async`].
    pub fn read_grad_sum(&self, param: ParamId) -> Result<Option<Vec<f32>>> {
        block_on(self.read_grad_sum_async(param))
    }

    /// Reads a parameter's average back: blocks on [`GpuOptimizer::read_ema_async`].
    pub fn read_ema(&self, param: ParamId) -> Result<Option<Vec<f32>>> {
        block_on(self.read_ema_async(param))
    }

    /// Reads GradScaler's state back: blocks on [`GpuOptimizer::read_loss_scale_async`].
    pub fn read_loss_scale(&self) -> Result<LossScaleState> {
        block_on(self.read_loss_scale_async())
    }

    /// Reads the last step's global gradient norm back: blocks on
    /// [`GpuOptimizer::read_grad_norm_async`].
    pub fn read_grad_norm(&self) -> Result<f32> {
        block_on(self.read_grad_norm_async())
    }

    /// All optimizer state, read back: blocks on [`GpuOptimizer::checkpoint_async`].
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        block_on(self.checkpoint_async())
    }

    /// Saves [`GpuOptimizer::checkpoint`] to `path` (through a temporary file and a rename).
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        self.checkpoint()?.save(path)
    }

    /// Restores a checkpoint: blocks on [`GpuOptimizer::restore_async`].
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        block_on(self.restore_async(checkpoint))
    }

    /// Reads a checkpoint file and [`GpuOptimizer::restore`]s it.
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<()> {
        self.restore(&Checkpoint::load(path)?)
    }
}
