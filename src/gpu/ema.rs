//! The average of the weights on the device: its buffers, turning it on and off (which
//! rebuilds the update pipelines with the average's store, `kernel::Storage::ema`), reading
//! it, and swapping it with the parameters (`shaders/swap.wgsl`).

use crate::abi::bindings::swap;
use crate::context::read_bytes_async;
use crate::ema::Ema;
use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::gpu::commands::Commands;
use crate::gpu::pairwise::PairPass;
use crate::gpu::param::GpuParam;
use crate::gpu::pipelines::Kernels;
use crate::gpu::scopes::ErrorScopes;
use crate::host::ParamId;
use crate::optim::Algorithm;

/// The swap pass over every parameter and its average, and the copy that starts an average.
#[derive(Debug)]
pub(super) struct Swapper(PairPass);

impl Swapper {
    fn new(device: &wgpu::Device) -> Self {
        let wgsl = include_str!("../../shaders/swap.wgsl");
        let modes: [&[(&str, f64)]; 2] = [&[("MODE", 0.0)], &[("MODE", 1.0)]];
        Self(PairPass::new(device, "swap", wgsl, swap::ALL, &modes))
    }

    /// Adds `p`, whose average is kept.
    pub fn push(&mut self, device: &wgpu::Device, p: &GpuParam) {
        if let Some(ema) = &p.ema {
            self.0
                .push(device, (&p.param, p.param_range.start), ema, p.len);
        }
    }

    /// Drops the last parameter (a registration that failed).
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// Drops parameter `index` (unregistered).
    pub fn remove(&mut self, index: usize) {
        self.0.remove(index);
    }

    /// Records the swap of every parameter with its average.
    pub fn record(&self, pass: &mut impl Commands) {
        self.0.record(pass, 0, |_| true);
    }

    /// Records the copy of each parameter `select`ed (by index) into its average.
    pub fn record_copy(&self, pass: &mut impl Commands, select: impl Fn(usize) -> bool) {
        self.0.record(pass, 1, select);
    }
}

/// A zeroed average for a parameter of `len` values.
pub(super) fn ema_buffer(device: &wgpu::Device, len: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-optim average of the weights"),
        size: len * 4,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// Keeps (or, with `None`, drops) an exponential moving average of the weights, as
    /// `torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`
    /// updated after every optimizer step (optax's `ema`; [`Ema::warmup`] for timm's warm-up).
    ///
    /// The update is fused into the update kernel, which stores each new parameter and then
    /// its average: 8 bytes per parameter more per step, no extra pass, no readback. Each
    /// average starts as a copy of its parameter (as `AveragedModel` copies the model), taken
    /// by the next step before it updates (one copy pass, that step only; also for parameters
    /// registered later, and for frozen groups); the first update after this call copies
    /// again, later ones do `lerp(ema, param, 1 - decay)` with torch's formula. Steps skipped
    /// by loss scaling and frozen groups' steps do not update it. For the elementwise optimizers (not LAMB, LARS, Adafactor or
    /// Schedule-Free, an [`crate::Error::InvalidOptions`]) over f32 parameters or master
    /// weights; under loss scaling, set it before the first step.
    ///
    /// Turning it on or off rebuilds the update pipelines (once, not per step); changing
    /// its options restarts it. On any error nothing changes.
    pub async fn set_ema_async(&mut self, ema: Option<Ema>) -> Result<()> {
        let on = ema.is_some();
        // Checked before anything is built.
        let mut registry = self.registry.clone();
        registry.set_ema(ema)?;
        if on != self.kernels.ema {
            self.rebuild_for_ema(on).await?;
        }
        self.registry = registry;
        self.tables.invalidate();
        Ok(())
    }

    /// Rebuilds the update pipelines, the averages' buffers (zeroed) and every window's bind
    /// group with (`on`) or without the average, in an error scope; on error nothing changes.
    pub(super) async fn rebuild_for_ema(&mut self, on: bool) -> Result<()> {
        let scopes = ErrorScopes::push(&self.device);
        let old_kernels = std::mem::replace(&mut self.kernels, Kernels::new(&self.device, on));
        let old_emas: Vec<_> = self
            .params
            .iter_mut()
            .map(|p| {
                let ema = on.then(|| ema_buffer(&self.device, p.len));
                std::mem::replace(&mut p.ema, ema)
            })
            .collect();
        self.repipe();
        let windows: Vec<_> = (0..self.params.len())
            .map(|i| self.build_windows(i, None, None))
            .collect();
        let swapper = on.then(|| {
            let mut s = Swapper::new(&self.device);
            for p in &self.params {
                s.push(&self.device, p);
            }
            s
        });
        if let Err(e) = scopes
            .check(|| format!("the average of {} parameters", self.params.len()))
            .await
        {
            self.kernels = old_kernels;
            for (p, old) in self.params.iter_mut().zip(old_emas) {
                p.ema = old;
            }
            self.repipe();
            return Err(e);
        }
        for (p, w) in self.params.iter_mut().zip(windows) {
            p.windows = w;
        }
        self.swapper = swapper;
        Ok(())
    }

    /// Parameter `param`'s average of its weights, read back (waiting for the device; not for
    /// the hot path): zeros before its first update, the trained weights while swapped in.
    pub async fn read_ema_async(&self, param: ParamId) -> Result<Option<Vec<f32>>> {
        let Some(buffer) = self.ema_buffer(param) else {
            return Ok(None);
        };
        let bytes = read_bytes_async(&self.device, &self.queue, buffer).await?;
        Ok(Some(bytemuck::pod_collect_to_vec(&bytes)))
    }

    /// The buffer holding parameter `param`'s average (f32, its length), while one is kept:
    /// bind it to evaluate with the average without swapping.
    pub fn ema_buffer(&self, param: ParamId) -> Option<&wgpu::Buffer> {
        self.params.get(param.0)?.ema.as_ref()
    }

    /// Swaps the average into the parameter buffers, recorded into `encoder` (to evaluate
    /// with it, as one would load `AveragedModel`'s weights), or back when already swapped;
    /// the next [`GpuOptimizer::step`] swaps back first. An [`crate::Error::InvalidOptions`]
    /// without an average, before a step has copied it, or for parameters with a 16-bit copy
    /// (which the forward pass reads: bind [`GpuOptimizer::ema_buffer`] instead).
    pub fn swap_ema(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.registry.check_swap()?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgpu-optim swap average"),
            timestamp_writes: None,
        });
        self.record_swap(&mut pass);
        Ok(())
    }

    /// Whether the parameters hold the average (swapped in).
    pub fn is_ema_swapped(&self) -> bool {
        self.registry.ema_swapped
    }

    /// Records the swap and flips the flag.
    pub(super) fn record_swap(&mut self, pass: &mut impl Commands) {
        if let Some(s) = &self.swapper {
            s.record(pass);
            self.registry.ema_swapped = !self.registry.ema_swapped;
        }
    }

    /// The average's buffer and swap windows for the parameter just registered (inside its
    /// error scope), while one is kept.
    pub(super) fn average_new_param(&mut self) {
        let device = &self.device;
        if let (Some(s), Some(p)) = (&mut self.swapper, self.params.last()) {
            s.push(device, p);
        }
    }
}
