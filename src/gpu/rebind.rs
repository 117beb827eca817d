//! Gradients that move: a step over this step's gradient slices, for frameworks that hand out
//! a fresh gradient tensor each step (often a slice of a pooled buffer).
//!
//! Every bind group that names a parameter's gradient (its update windows', the gradient
//! stage's, the accumulation pass's) is built for one slice. A slice seen before is found in a
//! small per-parameter cache of those bind groups, keyed by buffer and offset, and exchanged in
//! place: a warm loop over a pool creates no bind group and allocates nothing. A slice not
//! seen before (a cache miss) builds them: one bind group per binding window of the update,
//! plus one per window for the gradient stage and for accumulation when they are on, and the
//! update pipelines for the gradient's access if it newly shares its parameter's buffer.
//! The cache is emptied whenever those bind groups are rebuilt for other reasons (a new
//! registration, the gradient stage turned on, accumulation, the average of the weights).

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::gpu::geometry::partial_layout;
use crate::gpu::param::Window;
use crate::gpu::scopes::ErrorScopes;
use crate::kernel::{GradAccess, Width};
use crate::optim::Algorithm;

/// Gradient slices remembered per parameter besides the one bound now.
pub(super) const CACHED_GRADS: usize = 4;

/// Everything bound to one gradient slice of a parameter, kept for when the slice comes back.
#[derive(Debug)]
pub(crate) struct GradBinding {
    grad: wgpu::Buffer,
    grad_offset: u64,
    access: GradAccess,
    pipeline: usize,
    tail: Option<usize>,
    windows: Vec<Window>,
    /// The gradient stage's bind groups of its windows (empty while the stage is off).
    norm_windows: Vec<wgpu::BindGroup>,
    /// The accumulation pass's (empty while it is off).
    accumulate: Vec<(wgpu::BindGroup, (u32, u32))>,
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// Records one step, as [`GpuOptimizer::step`], reading this step's gradients from `grads`:
    /// one slice per registered parameter, in registration order, each as the gradient it was
    /// registered with (the same dtype and length, `STORAGE` usage, at an aligned offset, not
    /// overlapping its parameter). Later steps keep reading these slices until given others.
    ///
    /// Each parameter remembers the bind groups of its last few slices, so a loop over a pool
    /// of gradient buffers creates no bind group once warm; a slice not seen before builds
    /// them (see the module docs for what a miss costs). Every slice is checked before
    /// anything changes: a bad one is an error and nothing is recorded.
    pub async fn step_with_async(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        grads: &[wgpu::BufferSlice<'_>],
    ) -> Result<()> {
        self.rebind_grads_async(grads).await?;
        self.step(encoder);
        Ok(())
    }

    /// Binds `grads` (one slice per registered parameter) as the gradients of the steps
    /// recorded from now on, checked as [`GpuOptimizer::step_with`] checks them.
    pub async fn rebind_grads_async(&mut self, grads: &[wgpu::BufferSlice<'_>]) -> Result<()> {
        if self.rebind_warm(grads)? {
            return Ok(());
        }
        // Slices not seen before are built first, so a failure leaves every binding as it was.
        let mut built = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            built.push(match self.cached(i, g) {
                None => Some(self.build_binding(i, g).await?),
                Some(_) => None,
            });
        }
        for (i, g) in grads.iter().enumerate() {
            let fresh = built.get_mut(i).and_then(Option::take);
            self.bind_grad(i, g, fresh);
        }
        Ok(())
    }

    /// Checks `grads` and, when every slice is bound or cached (a warm loop: nothing to build,
    /// nothing to wait for, nothing allocated), binds them and returns `true`; `false` when
    /// some slice needs its bind groups built, with nothing changed.
    pub(super) fn rebind_warm(&mut self, grads: &[wgpu::BufferSlice<'_>]) -> Result<bool> {
        if grads.len() != self.params.len() {
            return Err(Error::StepShape(format!(
                "{} gradient slices for {} registered parameters",
                grads.len(),
                self.params.len()
            )));
        }
        for (i, g) in grads.iter().enumerate() {
            self.check_moved_grad(i, g)?;
        }
        if (0..grads.len()).any(|i| self.cached(i, &grads[i]).is_none()) {
            return Ok(false);
        }
        for (i, g) in grads.iter().enumerate() {
            self.bind_grad(i, g, None);
        }
        Ok(true)
    }

    /// Where parameter `index` has `slice` bound: `Some(None)` now, `Some(Some(k))` in its
    /// cache at `k`, `None` nowhere.
    fn cached(&self, index: usize, slice: &wgpu::BufferSlice<'_>) -> Option<Option<usize>> {
        let p = &self.params[index];
        let is = |buffer: &wgpu::Buffer, offset: u64| {
            buffer == slice.buffer() && offset == slice.offset()
        };
        if is(&p.grad, p.grad_offset) {
            return Some(None);
        }
        p.grad_cache
            .iter()
            .position(|b| is(&b.grad, b.grad_offset))
            .map(Some)
    }

    /// Checks `slice` as parameter `index`'s gradient.
    fn check_moved_grad(&self, index: usize, slice: &wgpu::BufferSlice<'_>) -> Result<()> {
        let p = &self.params[index];
        self.check_slice("grad", slice)?;
        let expected = p.precision.grad.buffer_bytes(p.len);
        if slice.size() != expected {
            return Err(Error::StepShape(format!(
                "gradient {index} has {} bytes, its parameter's gradient {expected}",
                slice.size()
            )));
        }
        if p.width == Width::Vec4 && !slice.offset().is_multiple_of(16) {
            return Err(Error::MisalignedSlice {
                which: "grad",
                offset: slice.offset(),
                alignment: 16,
            });
        }
        let range = slice.offset()..slice.offset() + slice.size();
        let overlaps = |r: &Range<u64>| r.start < range.end && range.start < r.end;
        let own =
            std::iter::once((&p.param, &p.param_range)).chain(p.copy.iter().map(|(b, r)| (b, r)));
        for (buffer, r) in own {
            if buffer == slice.buffer() && overlaps(r) {
                return Err(Error::AliasedBuffer(format!(
                    "gradient {index}'s bytes {range:?} overlap its parameter's or copy's bytes {r:?}"
                )));
            }
        }
        Ok(())
    }

    /// Binds `slice` (checked) as parameter `index`'s gradient: from the cache, or `built`
    /// for it (a slice neither bound, cached nor built stays unbound).
    fn bind_grad(
        &mut self,
        index: usize,
        slice: &wgpu::BufferSlice<'_>,
        built: Option<GradBinding>,
    ) {
        let mut binding = match (self.cached(index, slice), built) {
            (Some(None), _) | (None, None) => return,
            (Some(Some(k)), _) => self.params[index].grad_cache.remove(k),
            (None, Some(b)) => b,
        };
        self.exchange(index, &mut binding);
        // The slice bound until now, most recent last.
        let cache = &mut self.params[index].grad_cache;
        if cache.len() == CACHED_GRADS {
            cache.remove(0);
        }
        cache.push(binding);
    }

    /// Builds everything bound to `slice` as parameter `index`'s gradient, in an error scope.
    async fn build_binding(
        &mut self,
        index: usize,
        slice: &wgpu::BufferSlice<'_>,
    ) -> Result<GradBinding> {
        let p = &self.params[index];
        let shared =
            p.param == *slice.buffer() || p.copy.as_ref().is_some_and(|(b, _)| b == slice.buffer());
        let access = if shared {
            GradAccess::Shared
        } else {
            GradAccess::ReadOnly
        };
        let config = self.registry.scheduler.groups()[p.group].clone();
        let (precision, width, len) = (p.precision, p.width, p.len);
        let scopes = ErrorScopes::push(&self.device);
        let pipelines = self.kernels.len();
        let (pipeline, tail) = self.pipelines_for(&config, (access, precision), width, len);
        let mut binding = GradBinding {
            grad: slice.buffer().clone(),
            grad_offset: slice.offset(),
            access,
            pipeline,
            tail,
            windows: Vec::new(),
            norm_windows: Vec::new(),
            accumulate: Vec::new(),
        };
        // Built from the parameter with the new gradient in place, then put back.
        self.exchange_grad(index, &mut binding);
        let norms = self
            .norm_buffers
            .as_ref()
            .map(|n| (n, self.partials_start(index)));
        let windows = self.build_windows(index, norms, self.ns_batches.as_ref());
        let p = &self.params[index];
        let norm_windows = match (&self.grad_passes, &self.grad_buffers) {
            (Some(passes), Some(built)) => {
                passes.tensor_bind_groups(&self.device, built, &self.scaler, (index, p))
            }
            _ => Vec::new(),
        };
        let accumulate = match &self.accumulator {
            Some(a) => a.windows_for(&self.device, p, index),
            None => Vec::new(),
        };
        self.exchange_grad(index, &mut binding);
        if let Err(e) = scopes
            .check(|| format!("the bind groups of a new gradient of parameter {index}"))
            .await
        {
            self.kernels.truncate(pipelines);
            return Err(e);
        }
        binding.windows = windows;
        binding.norm_windows = norm_windows;
        binding.accumulate = accumulate;
        Ok(binding)
    }

    /// Exchanges parameter `index`'s gradient fields (buffer, offset, access, pipelines) with
    /// `binding`'s.
    fn exchange_grad(&mut self, index: usize, binding: &mut GradBinding) {
        let p = &mut self.params[index];
        std::mem::swap(&mut p.grad, &mut binding.grad);
        std::mem::swap(&mut p.grad_offset, &mut binding.grad_offset);
        std::mem::swap(&mut p.access, &mut binding.access);
        std::mem::swap(&mut p.pipeline, &mut binding.pipeline);
        std::mem::swap(&mut p.tail, &mut binding.tail);
    }

    /// Exchanges everything bound to parameter `index`'s gradient with `binding`.
    fn exchange(&mut self, index: usize, binding: &mut GradBinding) {
        self.exchange_grad(index, binding);
        std::mem::swap(&mut self.params[index].windows, &mut binding.windows);
        if let Some(built) = &mut self.grad_buffers {
            built.exchange(index, &mut binding.norm_windows);
        }
        if let Some(a) = &mut self.accumulator {
            a.exchange(index, &mut binding.accumulate);
        }
    }

    /// Where parameter `index`'s partial sums start in the shared norm buffers
    /// ([`Algorithm::NORMS`]).
    fn partials_start(&self, index: usize) -> u64 {
        let tensors = self.params.iter().map(|p| (p.len, p.width));
        partial_layout(tensors, &self.device.limits()).1[index]
    }

    /// Forgets every parameter's cached gradient bindings (their bind groups were rebuilt, or
    /// their pipelines moved).
    pub(super) fn forget_grad_bindings(&mut self) {
        for p in &mut self.params {
            p.grad_cache.clear();
        }
    }
}
