//! Gradient accumulation on the device (`shaders/accumulate.wgsl`): each registered gradient's
//! running sum, the pass over every gradient window a call records, and the methods that turn
//! it on and report it.

use crate::abi::bindings::accumulate;
use crate::context::read_bytes_async;
use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::gpu::commands::Commands;
use crate::gpu::pairwise::PairPass;
use crate::gpu::param::GpuParam;
use crate::gpu::scopes::ErrorScopes;
use crate::host::ParamId;
use crate::host::loop_control::{Accumulation, MicroBatch};
use crate::optim::Algorithm;

/// The accumulation pass for `every` micro-batches per step (one pipeline per
/// [`MicroBatch`]) and every parameter's running sum.
#[derive(Debug)]
pub(super) struct Accumulator {
    pass: PairPass,
    /// Per registered parameter, its running sum (f32, its length).
    pub sums: Vec<wgpu::Buffer>,
}

impl Accumulator {
    /// Pipelines for `every` micro-batches per step, and no parameters yet.
    fn new(device: &wgpu::Device, every: u32) -> Self {
        let k = f64::from(every);
        let modes = [MicroBatch::First, MicroBatch::Add, MicroBatch::Last]
            .map(|m| [("MODE", f64::from(m.mode())), ("K", k)]);
        let constants: Vec<&[(&str, f64)]> = modes.iter().map(|c| &c[..]).collect();
        let wgsl = include_str!("../../shaders/accumulate.wgsl");
        let pass = PairPass::new(device, "accumulate", wgsl, accumulate::ALL, &constants);
        Self {
            pass,
            sums: Vec::new(),
        }
    }

    /// Adds `p`'s running sum and its gradient windows' bind groups.
    fn push(&mut self, device: &wgpu::Device, p: &GpuParam) {
        let sum = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim gradient sum"),
            size: p.len * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.pass
            .push(device, (&p.grad, p.grad_offset), &sum, p.len);
        self.sums.push(sum);
    }

    /// Drops the last parameter's sum (a registration that failed).
    pub fn pop(&mut self) {
        self.sums.pop();
        self.pass.pop();
    }

    /// Parameter `index`'s (`p`'s) windows over the gradient it holds now.
    pub fn windows_for(
        &self,
        device: &wgpu::Device,
        p: &GpuParam,
        index: usize,
    ) -> Vec<(wgpu::BindGroup, (u32, u32))> {
        let grad = (&p.grad, p.grad_offset);
        self.pass
            .windows_for(device, grad, &self.sums[index], p.len)
    }

    /// Exchanges parameter `index`'s windows with `windows`.
    pub fn exchange(&mut self, index: usize, windows: &mut Vec<(wgpu::BindGroup, (u32, u32))>) {
        self.pass.exchange(index, windows);
    }

    /// Drops parameter `index`'s sum (unregistered).
    pub fn remove(&mut self, index: usize) {
        self.sums.remove(index);
        self.pass.remove(index);
    }

    /// Records one micro-batch over every gradient.
    pub fn record(&self, pass: &mut impl Commands, micro: MicroBatch) {
        self.pass.record(pass, micro.mode() as usize, |_| true);
    }

    /// Dispatches one micro-batch records.
    pub fn dispatches(&self) -> usize {
        self.pass.dispatches()
    }
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// Accumulates gradients over `every` micro-batches per optimizer step, as calling
    /// PyTorch's `(loss / every).backward()` `every` times before one `optimizer.step()`
    /// (1, the default, steps on every call).
    ///
    /// Then [`GpuOptimizer::step`] records, on each call, one pass adding every registered
    /// gradient divided by `every` to a running sum the optimizer keeps (f32, 4 bytes per
    /// parameter); the `every`-th call adds its own and writes the whole sum into the
    /// gradient buffers (what `p.grad` holds at PyTorch's step), then steps with it: the
    /// schedule, the step count, clipping and loss scaling all see one step per `every` calls.
    /// Nothing is read back. The division is the device's f32 division: correctly rounded
    /// where the device's is (lavapipe's and llvmpipe's are, so the GPU matches the CPU bit
    /// for bit; WGSL allows 2.5 ULP), exact on any device for powers of two.
    ///
    /// Only between steps (no micro-batch pending), and for f32 gradients
    /// ([`crate::Error::UnsupportedPrecision`] otherwise); on any error nothing changes.
    pub async fn set_accumulation_async(&mut self, every: u32) -> Result<()> {
        self.registry
            .check_accumulation(every, |i| self.params[i].precision)?;
        if self.registry.accumulation.pending != 0 {
            // The registry's own check, with its message.
            return self.registry.set_accumulation(every);
        }
        let accumulator = self.build_accumulator(every).await?;
        self.registry.set_accumulation(every)?;
        self.accumulator = accumulator;
        self.forget_grad_bindings();
        Ok(())
    }

    /// The pass and zeroed sums for `every` micro-batches per step over the parameters
    /// registered (`None` for 1), in an error scope.
    pub(super) async fn build_accumulator(&self, every: u32) -> Result<Option<Accumulator>> {
        if every <= 1 {
            return Ok(None);
        }
        let scopes = ErrorScopes::push(&self.device);
        let mut a = Accumulator::new(&self.device, every);
        for p in &self.params {
            a.push(&self.device, p);
        }
        scopes
            .check(|| format!("gradient sums for {} parameters", self.params.len()))
            .await?;
        Ok(Some(a))
    }

    /// Micro-batches per step and those summed toward the next.
    pub fn accumulation(&self) -> Accumulation {
        self.registry.accumulation
    }

    /// Parameter `param`'s running gradient sum while accumulation is on, read back (waiting
    /// for the device; not for the hot path). Meaningful while micro-batches are pending.
    pub async fn read_grad_sum_async(&self, param: ParamId) -> Result<Option<Vec<f32>>> {
        let Some(a) = &self.accumulator else {
            return Ok(None);
        };
        let Some(buffer) = a.sums.get(param.0) else {
            return Ok(None);
        };
        let bytes = read_bytes_async(&self.device, &self.queue, buffer).await?;
        Ok(Some(bytemuck::pod_collect_to_vec(&bytes)))
    }

    /// Adds the running sum of the parameter just registered (inside its error scope).
    pub(super) fn accumulate_new_param(&mut self) {
        if let (Some(a), Some(p)) = (&mut self.accumulator, self.params.last()) {
            a.push(&self.device, p);
        }
    }
}
