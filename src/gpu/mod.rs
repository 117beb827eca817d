//! [`GpuOptimizer`]: the fused kernels stepping a caller's own wgpu buffers.
//!
//! - `commands`: where a step's calls go (a compute pass, or a list replayed directly);
//! - `geometry`: grids, windows and partial-sum layouts (numbers only);
//! - `pipelines`: the kernel's modules, layouts and pipelines, cached per flag set;
//! - `scalars`: the per-step scalar tables;
//! - `param`, `register`: a registered parameter; registration, state allocation and bind
//!   groups;
//! - `scopes`: wgpu error scopes around what allocates or compiles;
//! - `reduce`: the deterministic per-tensor norm reduction;
//! - `factors`: Adafactor's factored tensors (dimensions, row-factor means, pass grids);
//! - `grad_passes`, `grad_stage`: clipping's and loss scaling's passes on the device, and the
//!   methods that turn them on and off;
//! - `groups`: changing a group's options, learning rate and frozen state between steps;
//! - `muon`: Muon's Newton–Schulz iteration (the tiled multiply, batches of matrices).

mod accumulate;
#[cfg(not(target_arch = "wasm32"))]
mod blocking;
mod commands;
mod ema;
mod factors;
mod geometry;
mod grad_passes;
mod grad_stage;
mod groups;
mod muon;
mod pairwise;
mod param;
mod pipelines;
mod rebind;
mod reduce;
mod register;
mod scalars;
mod scopes;

use crate::abi::bindings::update;
use crate::context::read_bytes_async;
use crate::error::{Error, Result};
use crate::host::checkpoint::Checkpoint;
use crate::host::loop_control::{EMA, GRAD_SUM, MicroBatch};
use crate::host::registry::Registry;
use crate::host::scheduler::StepScheduler;
use crate::host::{GroupId, ParamId};
use crate::kernel::{GradAccess, Width, from_records, records};
use crate::optim::{Algorithm, MAX_STATES, Pass};
use crate::precision::Precision;
use crate::quant::Blocks;
use crate::schedule::Schedule;

use commands::Commands;
pub use commands::DirectCalls;
// The tooling's (native only).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use geometry::{groups_of, window_ranges_in};
use grad_passes::{GradBuffers, GradPasses, NO_CLIP};
pub use muon::MatmulTiles;
use muon::{NsBatches, NsStage};
use param::GpuParam;
use pipelines::{FACTOR_PASSES, Form, Kernels};
#[cfg(test)]
pub(crate) use pipelines::{group0, scalars_binding, scalars_size};
use reduce::{NormBuffers, NormStage};
use scalars::ScalarTables;
use scopes::ErrorScopes;

/// An optimizer whose step is one fused compute dispatch per registered parameter buffer.
///
/// Built from the caller's `Device` and `Queue`; the caller registers its own parameter and
/// gradient buffers (`STORAGE` usage; f32, or bf16 and f16 through
/// [`GpuOptimizer::register_typed`]) and calls [`GpuOptimizer::step`] to record an update
/// into its own `CommandEncoder`: no submit, no readback. The optimizer
/// owns only its state buffers, pipelines (one per distinct set of option flags, built once)
/// and a small table of per-step scalars: a new one, one buffer and one bind group, every few
/// hundred steps is the only allocation a step makes.
///
/// Any number of steps may be recorded before one `queue.submit`, into one encoder or several:
/// each step reads scalars written when its table was created, never overwritten.
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
    /// Groups, schedule, step, registered parameters and the gradient stage's settings.
    registry: Registry<O>,
    kernels: Kernels<O>,
    tables: ScalarTables,
    params: Vec<GpuParam>,
    /// The per-tensor norm reduction of optimizers with [`Algorithm::NORMS`].
    norm_stage: Option<NormStage>,
    /// Every tensor's partial sums and norms for it (rebuilt on registration).
    norm_buffers: Option<NormBuffers>,
    /// `[global gradient norm, clipping coefficient, 1 / scale, skipped, skips so far]`, read
    /// by every update.
    grad_control: wgpu::Buffer,
    /// Clipping's and loss scaling's pipelines, once either has been on.
    grad_passes: Option<GradPasses>,
    /// Their buffers over the registered gradients, while either is on.
    grad_buffers: Option<GradBuffers>,
    /// GradScaler's state: scale, growth tracker, skipped steps, whether the last step was skipped.
    scaler: wgpu::Buffer,
    /// Bound in place of the states these options do not keep; never read or written.
    placeholders: [wgpu::Buffer; MAX_STATES],
    /// The code maps of quantized state ([`crate::quant`]), by [`crate::Quant`], made at the
    /// first registration that needs one.
    qmaps: [Option<wgpu::Buffer>; 2],
    /// Register every parameter with the `f32` kernels (benchmarks and tests of that path).
    scalar_only: bool,
    /// Gradient accumulation's pass and running sums, while it is on.
    accumulator: Option<accumulate::Accumulator>,
    /// The swap of the parameters with their average, while one is kept.
    swapper: Option<ema::Swapper>,
    /// The Newton–Schulz multiplies of [`Algorithm::ORTHOGONAL`] optimizers.
    ns_stage: Option<NsStage>,
    /// Their batches over the registered matrices (rebuilt with the norm buffers).
    ns_batches: Option<NsBatches>,
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// An optimizer on `device` whose first parameter group (group 0) uses `config`.
    ///
    /// Compiles the kernel and builds the pipeline for group 0's flags. On native targets
    /// [`GpuOptimizer::new`] blocks on this.
    pub async fn new_async(device: &wgpu::Device, queue: &wgpu::Queue, config: O) -> Result<Self> {
        let registry = Registry::new(config.clone())?;
        let scopes = ErrorScopes::push(device);
        let storage = |label, contents: &[u8], size| {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if !contents.is_empty() {
                queue.write_buffer(&buffer, 0, contents);
            }
            buffer
        };
        let grad_control = storage(
            "wgpu-optim gradient control",
            bytemuck::cast_slice(&NO_CLIP),
            32,
        );
        let scaler = storage("wgpu-optim loss scale", &[], 16);
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
            registry,
            kernels: Kernels::new(device, false),
            tables: ScalarTables::new::<O>(device),
            params: Vec::new(),
            norm_stage: O::NORMS.then(|| NormStage::new(device)),
            norm_buffers: None,
            grad_control,
            grad_passes: None,
            grad_buffers: None,
            scaler,
            placeholders,
            qmaps: [None, None],
            scalar_only: false,
            accumulator: None,
            swapper: None,
            ns_stage: O::ORTHOGONAL.then(|| NsStage::new(device, MatmulTiles::for_device(device))),
            ns_batches: None,
        };
        this.pipeline_for(&config, (GradAccess::ReadOnly, Precision::F32), Form::Vec4);
        scopes
            .check(|| format!("{} kernel", O::KERNEL.name))
            .await?;
        Ok(this)
    }

    /// The pipelines for `config`'s flags, the gradient stage's, the tensors' access and
    /// precision, and `form`, built on first use.
    fn pipeline_for(&mut self, config: &O, tensors: (GradAccess, Precision), form: Form) -> usize {
        let stage = self.registry.grad_stage;
        let mut flags = config.flags();
        flags.push(("CLIP", stage.max_norm.is_some_and(f32::is_finite)));
        flags.push(("UNSCALE", stage.loss_scale.is_some()));
        self.kernels.pipelines(&self.device, flags, tensors, form)
    }

    /// The body and tail pipelines of a parameter of `len` elements in a group with `config`.
    fn pipelines_for(
        &mut self,
        config: &O,
        access: (GradAccess, Precision),
        width: Width,
        len: u64,
    ) -> (usize, Option<usize>) {
        if access.1.quant.is_some() {
            return (self.pipeline_for(config, access, Form::Blocks), None);
        }
        match width {
            Width::Vec4 => (
                self.pipeline_for(config, access, Form::Vec4),
                (!len.is_multiple_of(4)).then(|| self.pipeline_for(config, access, Form::Tail)),
            ),
            Width::Scalar => (self.pipeline_for(config, access, Form::Scalar), None),
        }
    }

    /// Points every parameter at the pipelines for its group's flags and the gradient stage.
    fn repipe(&mut self) {
        // Cached gradient bindings hold pipelines and bind groups of the old choice.
        self.forget_grad_bindings();
        for i in 0..self.params.len() {
            let config = self.registry.scheduler.groups()[self.params[i].group].clone();
            let p = &self.params[i];
            let (access, width, len) = ((p.access, p.precision), p.width, p.len);
            (self.params[i].pipeline, self.params[i].tail) =
                self.pipelines_for(&config, access, width, len);
        }
        // The iteration's coefficients are in its batches' multiplies.
        self.refresh_iteration();
    }

    /// Registers later parameters with the `f32` kernels only, one element per invocation, as
    /// for a parameter that does not start 16-byte aligned: for measuring and testing that
    /// path on adapters where every binding is aligned.
    #[doc(hidden)]
    pub fn set_scalar_only(&mut self, on: bool) {
        self.scalar_only = on;
    }

    /// Group 0, the group the optimizer was built with.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// Adds a parameter group with its own hyperparameters, as a PyTorch param group.
    pub async fn add_param_group_async(&mut self, config: O) -> Result<GroupId> {
        config.validate()?;
        self.tables.check_groups(
            self.registry.scheduler.groups().len() + 1,
            &self.device.limits(),
        )?;
        let scopes = ErrorScopes::push(&self.device);
        let pipelines = self.kernels.len();
        self.pipeline_for(&config, (GradAccess::ReadOnly, Precision::F32), Form::Vec4);
        if let Err(e) = scopes
            .check(|| format!("{} pipeline for {config:?}", O::KERNEL.name))
            .await
        {
            self.kernels.truncate(pipelines);
            return Err(e);
        }
        self.tables.invalidate();
        self.registry.scheduler.add_group(config)
    }

    /// Sets (or removes) the learning-rate schedule applied to every group's base rate.
    pub fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.registry.scheduler.set_schedule(schedule)?;
        self.tables.invalidate();
        Ok(())
    }

    /// The step scheduler: step count, groups and learning rates.
    pub fn scheduler(&self) -> &StepScheduler<O> {
        &self.registry.scheduler
    }

    /// Records one optimizer step into `encoder`, in a compute pass of its own.
    ///
    /// No submit, no readback: the step's scalars come from the current scalar table (a new
    /// one, one small buffer, is created every few hundred steps, or after the groups, the
    /// schedule or loss scaling change), then the dispatches are recorded.
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
        self.record_into(pass);
    }

    /// Records one step's calls, as [`GpuOptimizer::record`] would make them, into a list
    /// that replays them with no logic of this crate in between (the bench's measure of what
    /// wgpu alone costs). The step counts as taken: its scalars are the next step's.
    #[doc(hidden)]
    pub fn capture_step(&mut self) -> DirectCalls {
        let mut calls = DirectCalls::default();
        self.record_into(&mut calls);
        calls
    }

    fn record_into(&mut self, pass: &mut impl Commands) {
        if self.registry.ema_swapped {
            // The trained weights back in the parameters before anything reads them.
            self.record_swap(pass);
        }
        if let (Some(micro), Some(a)) = (self.registry.accumulation.next(), &self.accumulator) {
            // A micro-batch adds its gradients to the sums; the last also steps, with them.
            a.record(pass, micro);
            self.registry.accumulation.advance();
            if micro != MicroBatch::Last {
                return;
            }
        }
        if self.registry.ema_fresh() {
            // Averages still to start from their parameters: copied before the update.
            if let Some(s) = &self.swapper {
                let registered = self.registry.params();
                s.record_copy(pass, |i| registered[i].ema_fresh);
            }
            self.registry.mark_ema_copied();
        }
        let t = self.registry.scheduler.advance();
        let candidates = self.registry.grad_stage.candidates();
        let (scalars, offset) = self.tables.at(
            &self.device,
            &self.kernels.scalars_layout,
            &self.registry.scheduler,
            candidates,
            t,
        );
        let registered = self.registry.params();
        let (params, kernels) = (&self.params, &self.kernels);
        if O::EVAL_MODE {
            // A step in evaluation mode first brings the training point back, as train()
            // would; then the parameters not stepped yet start their state from themselves.
            if self.registry.eval_mode {
                let stepped = |i: usize| !registered[i].fresh;
                let entry = Entry::Pass(Pass::ToTrain);
                dispatch_all(params, kernels, pass, scalars, &offset, entry, stepped);
            }
            let fresh = |i: usize| registered[i].fresh;
            let entry = Entry::Pass(Pass::Init);
            dispatch_all(params, kernels, pass, scalars, &offset, entry, fresh);
        }
        if let (Some(passes), Some(built)) = (&self.grad_passes, &self.grad_buffers) {
            passes.record(pass, built);
        }
        // Frozen groups' tensors are not updated.
        let every = |i: usize| !self.registry.is_frozen(params[i].group);
        if O::FACTORED {
            // Every factored tensor's row factors, column factors, then the means of its rows.
            for k in 0..FACTOR_PASSES.len() {
                let entry = Entry::Factor(k);
                dispatch_all(params, kernels, pass, scalars, &offset, entry, every);
            }
        }
        if let (Some(stage), Some(norms)) = (&self.norm_stage, &self.norm_buffers) {
            // Per-workgroup partial sums of every tensor, then every tensor's norms in one
            // dispatch, then the updates that read them.
            dispatch_all(params, kernels, pass, scalars, &offset, Entry::Norms, every);
            norms.record(pass, stage);
        }
        if let (Some(stage), Some(ns)) = (&self.ns_stage, &self.ns_batches) {
            // Batch by batch (they share the iteration's scratch): its matrices normalized,
            // their iteration, then their updates.
            let groups = self.registry.scheduler.groups();
            for (j, batch) in ns.batches.iter().enumerate() {
                if self.registry.is_frozen(batch.group) {
                    continue;
                }
                let steps = groups[batch.group].newton_schulz().map_or(0, |n| n.steps);
                let mine = |i: usize| ns.slots[i].0 == j;
                dispatch_all(
                    params,
                    kernels,
                    pass,
                    scalars,
                    &offset,
                    Entry::Normalize,
                    mine,
                );
                ns.record(pass, stage, j, steps);
                dispatch_all(params, kernels, pass, scalars, &offset, Entry::Main, mine);
            }
        } else {
            dispatch_all(params, kernels, pass, scalars, &offset, Entry::Main, every);
        }
        if O::EVAL_MODE {
            self.registry.eval_mode = false;
            self.registry.mark_stepped();
        }
    }

    /// Switches the parameters to the evaluation point, recorded into `encoder`, as
    /// `optimizer.eval()` does for Schedule-Free (x = lerp(y, z, 1 - 1/β₁)); nothing when
    /// already in evaluation mode. Parameters not stepped yet are left as they are (they have
    /// no z yet, as in schedulefree). The next [`GpuOptimizer::step`] switches back first.
    ///
    /// An [`Error::InvalidOptions`](crate::Error::InvalidOptions) for optimizers without an
    /// evaluation mode ([`Algorithm::EVAL_MODE`]).
    pub fn eval(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.registry.check_eval_mode()?;
        if !self.registry.eval_mode {
            self.switch(encoder, Pass::ToEval);
            self.registry.eval_mode = true;
        }
        Ok(())
    }

    /// Switches the parameters back to the training point, recorded into `encoder`, as
    /// `optimizer.train()` does (y = lerp(x, z, 1 - β₁)); nothing when already in training
    /// mode.
    pub fn train(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.registry.check_eval_mode()?;
        if self.registry.eval_mode {
            self.switch(encoder, Pass::ToTrain);
            self.registry.eval_mode = false;
        }
        Ok(())
    }

    /// Whether the parameters hold the evaluation point ([`GpuOptimizer::eval`]).
    pub fn is_eval_mode(&self) -> bool {
        self.registry.eval_mode
    }

    /// Records `pass` over every stepped parameter.
    fn switch(&mut self, encoder: &mut wgpu::CommandEncoder, which: Pass) {
        let t = self.registry.scheduler.steps_taken();
        if t == 0 {
            // Nothing has been stepped: no parameter has a z.
            return;
        }
        let candidates = self.registry.grad_stage.candidates();
        let (scalars, offset) = self.tables.at(
            &self.device,
            &self.kernels.scalars_layout,
            &self.registry.scheduler,
            candidates,
            t,
        );
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        let registered = self.registry.params();
        let stepped = |i: usize| !registered[i].fresh;
        let entry = Entry::Pass(which);
        dispatch_all(
            &self.params,
            &self.kernels,
            &mut pass,
            scalars,
            &offset,
            entry,
            stepped,
        );
    }

    /// Dispatches one step records: one per registered parameter, or one per window for
    /// parameters larger than one storage binding, and one more for the scalar tail of a
    /// vec4-stepped parameter whose length is not a multiple of 4 (a parameter of 1 to 3
    /// elements has only the tail); twice that plus one reduction for optimizers with
    /// per-tensor norms; plus, with clipping or loss scaling, as many again for the gradients'
    /// sums, a reduction and a final dispatch for the global norm; plus three for each tensor
    /// Adafactor factors (its rows, columns and row-factor means); plus, for Muon, one
    /// `normalize` per matrix (as many as its updates) and `3 · ns_steps` multiplies per batch
    /// of same-shaped matrices in a group that is not frozen; plus, with gradient
    /// accumulation, one per gradient window for the pass every call records (the calls
    /// that only accumulate record that pass alone).
    pub fn dispatches_per_step(&self) -> usize {
        let updates: usize = self
            .params
            .iter()
            .filter(|p| !self.registry.is_frozen(p.group))
            .flat_map(|p| &p.windows)
            .map(|w| usize::from(w.grids.body.0 > 0) + usize::from(w.grids.tail))
            .sum();
        let stage = self
            .grad_buffers
            .as_ref()
            .map_or(0, GradBuffers::dispatches)
            + self
                .params
                .iter()
                .filter_map(|p| p.factors.as_ref())
                .map(|f| {
                    (0..FACTOR_PASSES.len())
                        .filter(|&k| f.grid(k).0 > 0)
                        .count()
                })
                .sum::<usize>();
        let accumulate = self
            .accumulator
            .as_ref()
            .map_or(0, accumulate::Accumulator::dispatches);
        // Muon: each matrix normalized (as many as its updates), and each batch's iteration.
        let iteration: usize = self.ns_batches.as_ref().map_or(0, |ns| {
            let groups = self.registry.scheduler.groups();
            ns.batches
                .iter()
                .filter(|b| !self.registry.is_frozen(b.group))
                .map(|b| {
                    NsBatches::dispatches(groups[b.group].newton_schulz().map_or(0, |n| n.steps))
                })
                .sum::<usize>()
                + updates
        });
        if O::NORMS && !self.params.is_empty() {
            accumulate + stage + iteration + 2 * updates + 1
        } else {
            accumulate + stage + updates
        }
    }

    /// The buffer holding state `name` (PyTorch's key) of `param`, if these options keep it,
    /// in the tensor's state dtype (16-bit values two per word; a quantized state as block
    /// records, each block's codes then its f32 scale).
    pub fn state_buffer(&self, param: ParamId, name: &str) -> Option<&wgpu::Buffer> {
        let slot = self.registry.state_slot(param, name)?;
        self.params.get(param.0)?.states[slot].as_ref()
    }

    /// Reads state `name` of `param` back to the host as the f32 values it stores (waits for
    /// the GPU; not for the hot path).
    pub async fn read_state_async(&self, param: ParamId, name: &str) -> Result<Option<Vec<f32>>> {
        let Some(slot) = self.registry.state_slot(param, name) else {
            return Ok(None);
        };
        self.read_slot(param.0, slot).await.map(Some)
    }

    /// Reads the codes and block scales of state `name` of `param` back to the host, if it is
    /// quantized ([`Precision::quant`]; [`GpuOptimizer::read_state`] gives the values they
    /// stand for). Waits for the GPU; not for the hot path.
    pub async fn read_quantized_state_async(
        &self,
        param: ParamId,
        name: &str,
    ) -> Result<Option<Blocks>> {
        let Some(slot) = self.registry.state_slot(param, name) else {
            return Ok(None);
        };
        self.read_blocks(param.0, slot).await
    }

    /// The codes and scales of state `slot` of parameter `index`, if it is quantized.
    async fn read_blocks(&self, index: usize, slot: usize) -> Result<Option<Blocks>> {
        let p = &self.params[index];
        let (Some(buffer), Some(q)) = (p.states[slot].as_ref(), p.precision.quant) else {
            return Ok(None);
        };
        let bytes = read_bytes_async(&self.device, &self.queue, buffer).await?;
        from_records(q, &bytes, p.len).map(Some).ok_or_else(|| {
            Error::Readback(format!(
                "state buffer of {} bytes holds fewer than {} values' blocks",
                bytes.len(),
                p.len
            ))
        })
    }

    /// The values of state `slot` of parameter `index`, decoded from its dtype (a quantized
    /// state's, from its codes and scales).
    async fn read_slot(&self, index: usize, slot: usize) -> Result<Vec<f32>> {
        let p = &self.params[index];
        let Some(buffer) = p.states[slot].as_ref() else {
            return Ok(Vec::new());
        };
        if let (Some(q), Some(blocks)) = (p.precision.quant, self.read_blocks(index, slot).await?) {
            return Ok(crate::quant::dequantize(q, O::QUANT_MAPS[slot], &blocks));
        }
        let r = &self.registry.params()[index];
        let len = self.registry.scheduler.groups()[r.group].state_len(slot, &r.shape) as usize;
        let bytes = read_bytes_async(&self.device, &self.queue, buffer).await?;
        p.precision.state.decode(&bytes, len).ok_or_else(|| {
            Error::Readback(format!(
                "state buffer of {} bytes holds fewer than {len} values",
                bytes.len()
            ))
        })
    }

    /// All optimizer state: step, groups, schedule, gradient stage (with loss scaling's state),
    /// and every parameter's state buffers (read back from the GPU, waiting for it; not for the
    /// hot path). The step count includes every step recorded, so submit them all first.
    pub async fn checkpoint_async(&self) -> Result<Checkpoint> {
        let loss_scale = match self.registry.grad_stage.loss_scale {
            Some(_) => Some(self.read_loss_scale_async().await?),
            None => None,
        };
        let mut saved = Vec::with_capacity(self.params.len());
        for i in 0..self.params.len() {
            let (mut values, mut quantized) = (Vec::new(), Vec::new());
            for s in self.registry.slots(i) {
                let name = O::STATE_NAMES[s].to_string();
                match self.read_blocks(i, s).await? {
                    Some(blocks) => quantized.push((name, blocks)),
                    None if self.params[i].states[s].is_some() => {
                        values.push((name, self.read_slot(i, s).await?));
                    }
                    None => {}
                }
            }
            // By name: the average, then the pending gradient sum.
            let mut tensors = Vec::new();
            if let Some(ema) = self.read_ema_async(ParamId(i)).await? {
                tensors.push((EMA.to_string(), ema));
            }
            let pending = self.registry.accumulation.pending > 0;
            if let Some(a) = self.accumulator.as_ref().filter(|_| pending) {
                let bytes = read_bytes_async(&self.device, &self.queue, &a.sums[i]).await?;
                tensors.push((GRAD_SUM.to_string(), bytemuck::pod_collect_to_vec(&bytes)));
            }
            saved.push((values, quantized, tensors));
        }
        self.registry
            .capture(|i| Ok(std::mem::take(&mut saved[i])), loss_scale)
    }

    /// Restores a checkpoint taken from an optimizer with the same groups (and option flags) and
    /// the same parameters registered in the same order, on either backend: states, step,
    /// schedule, clipping, and loss scaling with its state. Everything is checked first: on
    /// error the optimizer is exactly as it was.
    ///
    /// The state is written with `queue.write_buffer`, so it lands at the start of the next
    /// submit, ahead of every command in it: submit the steps recorded before the restore
    /// first.
    pub async fn restore_async(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let mut plan = self.registry.plan_restore(checkpoint)?;
        // The pass and sums for the saved count of micro-batches, built before anything changes.
        let every = plan.accumulation.every;
        let accumulator = if every == self.registry.accumulation.every {
            None
        } else {
            Some(self.build_accumulator(every).await?)
        };
        let ema = plan.ema.is_some();
        let rebuilt_ema = ema != self.kernels.ema;
        if rebuilt_ema {
            self.rebuild_for_ema(ema).await?;
        }
        if let Err(e) = self.configure_grad_stage(plan.grad_stage).await {
            if rebuilt_ema {
                // Back to the kernels this optimizer had (a device error either way).
                self.rebuild_for_ema(!ema).await.ok();
            }
            return Err(e);
        }
        if let Some(a) = accumulator {
            self.accumulator = a;
            self.forget_grad_bindings();
        }
        if let Some(state) = &plan.loss_scale {
            self.write_loss_scale(state);
        }
        let saved = std::mem::take(&mut plan.states)
            .into_iter()
            .zip(std::mem::take(&mut plan.quantized));
        for (p, (values, blocks)) in self.params.iter().zip(saved) {
            for ((buffer, data), blocks) in p.states.iter().zip(&values).zip(&blocks) {
                let bytes = match (p.precision.quant, blocks) {
                    (Some(q), Some(blocks)) => records(q, blocks),
                    _ => p.precision.state.encode(data),
                };
                if let Some(buffer) = buffer {
                    self.queue.write_buffer(buffer, 0, &bytes);
                }
            }
        }
        for (i, tensors) in std::mem::take(&mut plan.loop_tensors)
            .into_iter()
            .enumerate()
        {
            for (name, values) in tensors {
                // The saved sum while micro-batches are pending (otherwise the first one
                // overwrites whatever the buffer holds), and the saved average.
                let buffer = match name.as_str() {
                    GRAD_SUM => self.accumulator.as_ref().map(|a| &a.sums[i]),
                    EMA => self.params[i].ema.as_ref(),
                    _ => None,
                };
                if let Some(b) = buffer {
                    self.queue.write_buffer(b, 0, bytemuck::cast_slice(&values));
                }
            }
        }
        self.registry.commit(plan);
        self.tables.invalidate();
        // The saved groups' Newton–Schulz coefficients, where they differ from these.
        self.refresh_iteration();
        Ok(())
    }
}

/// Which entry point of the kernel a dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The update.
    Main,
    /// The per-tensor partial sums of [`Algorithm::NORMS`] optimizers, over the `norms` grid.
    Norms,
    /// A [`Pass`] of [`Algorithm::EVAL_MODE`] optimizers, over the update's grid.
    Pass(Pass),
    /// Factor pass `k` ([`FACTOR_PASSES`]) of [`Algorithm::FACTORED`] optimizers, over its own
    /// grid, for factored tensors only (one window each).
    Factor(usize),
    /// The division of an [`Algorithm::ORTHOGONAL`] update by its norm, over the update's grid.
    Normalize,
}

/// One dispatch per window of every parameter `select`ed (by index) with its body pipelines'
/// `entry` point, then one per window with a tail, with its tail pipelines. Bodies and tails
/// touch disjoint elements, so all the bodies go first and pipelines change as seldom as
/// possible.
fn dispatch_all<O: Algorithm>(
    params: &[GpuParam],
    kernels: &Kernels<O>,
    pass: &mut impl Commands,
    scalars: &wgpu::BindGroup,
    offset: &impl Fn(usize) -> u32,
    entry: Entry,
    select: impl Fn(usize) -> bool,
) {
    let (mut pipeline, mut group) = (usize::MAX, usize::MAX);
    for tail in [false, true] {
        for (i, p) in params.iter().enumerate() {
            let index = if tail { p.tail } else { Some(p.pipeline) };
            let Some(index) = index.filter(|_| select(i)) else {
                continue;
            };
            let pipelines = kernels.get(index);
            let compute = match entry {
                Entry::Main => Some(&pipelines.main),
                Entry::Norms => pipelines.norms.as_ref(),
                Entry::Pass(which) => pipelines.pass(which),
                Entry::Factor(k) => pipelines.factor_passes.get(k),
                Entry::Normalize => pipelines.normalize.as_ref(),
            };
            let Some(compute) = compute else {
                continue;
            };
            for w in &p.windows {
                let (x, y) = match (entry, tail) {
                    (Entry::Factor(_), true) => continue,
                    (Entry::Factor(k), false) => match &p.factors {
                        Some(f) => f.grid(k),
                        None => continue,
                    },
                    (_, true) if w.grids.tail => (1, 1),
                    (_, true) => continue,
                    (Entry::Norms, false) => w.grids.norms,
                    (_, false) => w.grids.body,
                };
                if x == 0 {
                    // Fewer than 4 elements: the tail is all there is.
                    continue;
                }
                if index != pipeline {
                    pass.set_pipeline(compute);
                    pipeline = index;
                    group = usize::MAX;
                }
                if p.group != group {
                    pass.set_bind_group(update::SCALARS.group, scalars, Some(offset(p.group)));
                    group = p.group;
                }
                pass.set_bind_group(update::PARAM.group, &w.bind_group, None);
                pass.dispatch(x, y);
            }
        }
    }
}
