//! [`CpuOptimizer`]: the CPU reference behind the same API as the GPU optimizer.

use crate::cpu::{NORM_CHUNK, add_partials, grad_norm, norms_from_sums};
use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::host::checkpoint::Checkpoint;
use crate::host::grad_stage::{LossScale, LossScaleState, state_step};
use crate::host::loop_control::{Accumulation, EMA, GRAD_SUM, MicroBatch};
use crate::host::registry::Registry;
use crate::host::scheduler::StepScheduler;
use crate::host::{GroupId, ParamId};
use crate::optim::{Algorithm, MAX_STATES, Pass, States, sub_states};
use crate::plateau::Plateau;
use crate::precision::Precision;
use crate::quant::{self, Blocks};
use crate::schedule::Schedule;

/// An optimizer running the CPU reference ([`crate::cpu`]) on host slices.
///
/// It owns the optimizer state; the caller owns parameters and gradients and passes them to
/// [`CpuOptimizer::step`] in registration order.
#[derive(Debug, Clone)]
pub struct CpuOptimizer<O: Algorithm> {
    registry: Registry<O>,
    /// Each parameter's state buffers by slot (empty where its options keep none): the values
    /// the next step loads (a quantized state's values are those its codes stand for).
    states: Vec<[Vec<f32>; MAX_STATES]>,
    /// Each parameter's quantized states as stored ([`Precision::quant`]), by slot.
    quantized: Vec<[Option<Blocks>; MAX_STATES]>,
    threads: usize,
    last_grad_norm: Option<f32>,
    /// GradScaler's state while loss scaling is on.
    scaler: Option<LossScaleState>,
    /// Each parameter's running gradient sum while accumulation is on (empty otherwise).
    grad_sums: Vec<Vec<f32>>,
    /// Each parameter's average of its weights while one is kept (empty otherwise).
    emas: Vec<Vec<f32>>,
}

/// Rounds a parameter and its states to their dtypes after an update stored them in f32: the
/// kernels round each value once when storing it, and an elementwise update stores each once.
/// A quantized state is quantized instead (`quantized`, by slot), and takes the values its codes
/// stand for; the update already used the exact ones, as the kernels do.
///
/// `step` is the optimizer's step count, which stochastic rounding's random bits depend on.
fn round_stored<O: Algorithm>(
    precision: Precision,
    param: &mut [f32],
    (states, quantized): (
        &mut [Vec<f32>; MAX_STATES],
        &mut [Option<Blocks>; MAX_STATES],
    ),
    step: u64,
) {
    precision.round_param(param, step);
    for (slot, state) in states.iter_mut().enumerate() {
        match (precision.quant, &mut quantized[slot]) {
            (Some(q), Some(blocks)) => {
                let map = O::QUANT_MAPS[slot];
                *blocks = quant::quantize(q, map, state);
                *state = quant::dequantize(q, map, blocks);
            }
            _ => precision.state.round_all(state),
        }
    }
}

/// Parameters shorter than this are stepped on the calling thread whatever the thread count.
pub const PARALLEL_MIN_LEN: usize = 1 << 16;

/// `param`, `grad` and each state cut into consecutive pieces of `piece` elements (the last
/// shorter); a state these options do not keep stays empty in every piece.
fn pieces<'a>(
    piece: usize,
    param: &'a mut [f32],
    grad: &'a [f32],
    states: States<'a>,
) -> Vec<(&'a mut [f32], &'a [f32], States<'a>)> {
    let mut state_chunks = states.map(|v| {
        let empty = v.is_empty();
        (empty, v.chunks_mut(piece))
    });
    param
        .chunks_mut(piece)
        .zip(grad.chunks(piece))
        .map(|(p, g)| {
            let mine: States<'a> = std::array::from_fn(|k| {
                let (empty, it) = &mut state_chunks[k];
                if *empty {
                    &mut []
                } else {
                    it.next().unwrap_or_default()
                }
            });
            (p, g, mine)
        })
        .collect()
}

/// One step of `config` over one parameter, spread over `threads` threads in contiguous pieces
/// (on the calling thread for [`Algorithm::FACTORED`] optimizers, whose state is not
/// elementwise).
///
/// Elementwise updates are bit-identical to one call. Optimizers with per-tensor norms (LAMB,
/// LARS) run their `norms` stage in pieces of whole [`NORM_CHUNK`]s, each chunk summed from
/// zero and the chunks' sums added in order, exactly as [`Algorithm::cpu_step`] sums them on
/// one thread; then the update, in the same pieces. So any thread count gives the same bits.
fn step_chunked<O: Algorithm>(
    config: &O,
    s: &O::Scalars,
    param: &mut [f32],
    grad: &[f32],
    states: States<'_>,
    threads: usize,
) {
    let len = param.len();
    if threads <= 1 || len < PARALLEL_MIN_LEN || O::FACTORED {
        config.cpu_step(s, param, grad, states);
        return;
    }
    if !O::NORMS {
        let pieces = pieces(len.div_ceil(threads), param, grad, states);
        std::thread::scope(|scope| {
            for (p, g, mine) in pieces {
                scope.spawn(move || config.cpu_step(s, p, g, mine));
            }
        });
        return;
    }
    let piece = len.div_ceil(threads).div_ceil(NORM_CHUNK) * NORM_CHUNK;
    let mut pieces = pieces(piece, param, grad, states);
    let partials: Vec<(f64, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter_mut()
            .map(|(p, g, mine)| {
                let (p, g): (&[f32], &[f32]) = (p, g);
                scope.spawn(move || {
                    (0..p.len())
                        .step_by(NORM_CHUNK)
                        .map(|at| {
                            let r = at..(at + NORM_CHUNK).min(p.len());
                            let chunk_states = sub_states(mine, r.clone());
                            config.cpu_norms(s, &p[r.clone()], &g[r], chunk_states)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let norms = norms_from_sums(add_partials(partials));
    std::thread::scope(|scope| {
        for (p, g, mine) in pieces {
            scope.spawn(move || config.cpu_apply(s, norms, p, g, mine));
        }
    });
}

/// `len` zeros for a parameter of `shape`, or [`Error::OutOfMemory`].
fn zeros(len: usize, shape: &[usize]) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| Error::OutOfMemory {
        what: format!("the gradient sum of a parameter of shape {shape:?}"),
        message: e.to_string(),
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

impl<O: Algorithm> CpuOptimizer<O> {
    /// An optimizer whose first parameter group (group 0) uses `config`.
    pub fn new(config: O) -> Result<Self> {
        Ok(Self {
            registry: Registry::new(config)?,
            states: Vec::new(),
            quantized: Vec::new(),
            grad_sums: Vec::new(),
            emas: Vec::new(),
            threads: 1,
            last_grad_norm: None,
            scaler: None,
        })
    }

    /// Group 0, the group the optimizer was built with.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// Adds a parameter group with its own hyperparameters.
    pub fn add_param_group(&mut self, config: O) -> Result<GroupId> {
        self.registry.scheduler.add_group(config)
    }

    /// Sets the learning-rate schedule (see [`StepScheduler::set_schedule`]).
    pub fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.registry.scheduler.set_schedule(schedule)
    }

    /// Spreads each large parameter's step over `threads` threads (1, the default, steps on the
    /// calling thread). Results are bit-identical whatever the count. On wasm32, which has no
    /// threads, every step runs on the calling thread whatever `threads` says.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = if cfg!(target_arch = "wasm32") {
            1
        } else {
            threads.max(1)
        };
    }

    /// The step scheduler: step count, groups and learning rates.
    pub fn scheduler(&self) -> &StepScheduler<O> {
        &self.registry.scheduler
    }

    /// Registers a parameter of `len` elements in `group`, allocating its state.
    pub fn register(&mut self, group: GroupId, len: usize) -> Result<ParamId> {
        self.register_inner(group, len, None, Precision::F32)
    }

    /// Registers a parameter of `shape` (row-major) in `group`, allocating its state: as
    /// [`CpuOptimizer::register`], for optimizers whose state follows the shape (Adafactor's
    /// factored moments of a matrix). The shape's product must be positive.
    pub fn register_with_shape(&mut self, group: GroupId, shape: &[usize]) -> Result<ParamId> {
        self.register_typed(group, shape, Precision::F32)
    }

    /// As [`CpuOptimizer::register_with_shape`], for a tensor stored as `precision` says (see
    /// [`crate::GpuOptimizer::register_typed`]). The caller keeps 16-bit parameters and
    /// gradients as the f32 values they are ([`crate::Dtype::round`] gives them; each step
    /// checks), and each step rounds the parameter and the states to their dtypes when it
    /// stores them, exactly as the kernels do (stochastically with [`Precision::stochastic`],
    /// from the same random bits). The states are held as f32 values their dtype represents. A
    /// master-weights copy ([`Precision::with_copy`]) is the caller's to take: the kernels write
    /// the parameter rounded to nearest even, [`crate::Dtype::round`] of each value here.
    /// Quantized moments ([`Precision::quant`]) are quantized after each step with the kernels'
    /// rule ([`crate::quant::quantize`]), their codes and scales kept
    /// ([`CpuOptimizer::quantized_state`]) and their values those the codes stand for.
    pub fn register_typed(
        &mut self,
        group: GroupId,
        shape: &[usize],
        precision: Precision,
    ) -> Result<ParamId> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let len = len.ok_or_else(|| Error::ShapeMismatch {
            shape: shape.to_vec(),
            len: u64::MAX,
        })?;
        self.register_inner(group, len, Some(shape), precision)
    }

    fn register_inner(
        &mut self,
        group: GroupId,
        len: usize,
        shape: Option<&[usize]>,
        precision: Precision,
    ) -> Result<ParamId> {
        let (config, shape) = self
            .registry
            .check_register(group, len as u64, shape, precision)?;
        let precision = precision.for_len(len as u64);
        let mut states: [Vec<f32>; MAX_STATES] = Default::default();
        let mut quantized: [Option<Blocks>; MAX_STATES] = Default::default();
        for (slot, state) in states.iter_mut().enumerate() {
            let n = config.state_len(slot, &shape) as usize;
            if let (Some(q), true) = (precision.quant, n > 0) {
                // Zero codes and scales, as a zero-filled buffer holds (every optimizer with a
                // map starts its state at zero).
                let blocks = Blocks::zeros(q, n as u64);
                *state = quant::dequantize(q, O::QUANT_MAPS[slot], &blocks);
                quantized[slot] = Some(blocks);
            } else if n > 0 {
                state.try_reserve_exact(n).map_err(|e| Error::OutOfMemory {
                    what: format!(
                        "state {} of a parameter of shape {shape:?}",
                        O::STATE_NAMES[slot]
                    ),
                    message: e.to_string(),
                })?;
                state.resize(n, precision.state.round(config.initial_state(slot)));
            }
        }
        let sum = if self.registry.accumulation.is_on() {
            zeros(len, &shape)?
        } else {
            Vec::new()
        };
        let ema = if self.registry.scheduler.ema().is_some() {
            zeros(len, &shape)?
        } else {
            Vec::new()
        };
        self.states.push(states);
        self.quantized.push(quantized);
        self.grad_sums.push(sum);
        self.emas.push(ema);
        Ok(self.registry.push(group, shape, precision))
    }

    /// Unregisters parameter `param`, freeing its state (see
    /// [`crate::GpuOptimizer::unregister`]: later parameters' ids decrease by one).
    pub fn unregister(&mut self, param: ParamId) -> Result<()> {
        self.registry.check_unregister(param)?;
        let i = param.0;
        self.states.remove(i);
        self.quantized.remove(i);
        self.grad_sums.remove(i);
        self.emas.remove(i);
        self.registry.remove(param);
        Ok(())
    }

    /// Replaces group `group`'s hyperparameters from the next step on (see
    /// [`crate::GpuOptimizer::set_group_config`]); on error nothing changes.
    pub fn set_group_config(&mut self, group: GroupId, config: O) -> Result<()> {
        self.registry.check_group_config(group, &config)?;
        self.registry.scheduler.replace_group(group.0, config);
        Ok(())
    }

    /// Sets group `group`'s base learning rate from the next step on (see
    /// [`crate::GpuOptimizer::set_lr`]).
    pub fn set_lr(&mut self, group: GroupId, lr: f64) -> Result<()> {
        let config = self.registry.config_with_lr(group, lr)?;
        self.set_group_config(group, config)
    }

    /// Sets (or removes) the plateau reduction (see [`crate::GpuOptimizer::set_plateau`]).
    pub fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        self.registry.scheduler.set_plateau(plateau)
    }

    /// Reports a metric to the plateau reduction (see [`crate::GpuOptimizer::report_metric`]).
    pub fn report_metric(&mut self, metric: f64) -> Result<bool> {
        Ok(!self.registry.report_metric(metric)?.is_empty())
    }

    /// Accumulates gradients over `every` calls of [`CpuOptimizer::step`] per optimizer step
    /// (1 turns it off), as [`crate::GpuOptimizer::set_accumulation`] does.
    pub fn set_accumulation(&mut self, every: u32) -> Result<()> {
        self.registry
            .check_accumulation(every, |i| self.registry.params()[i].precision)?;
        let sums = if every > 1 {
            self.registry
                .params()
                .iter()
                .map(|r| zeros(r.len() as usize, &r.shape))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![Vec::new(); self.registry.params().len()]
        };
        self.registry.set_accumulation(every)?;
        self.grad_sums = sums;
        Ok(())
    }

    /// Keeps (or, with `None`, drops) an average of the weights, updated by every step from
    /// the next one on (see [`crate::GpuOptimizer::set_ema`]).
    pub fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        let kept = self.registry.scheduler.ema().is_some();
        // New buffers when turning it on or off; kept (and copied over at the next step, as
        // the GPU's) when only the options change.
        let emas = match (ema.is_some(), kept) {
            (true, true) => None,
            (true, false) => Some(
                self.registry
                    .params()
                    .iter()
                    .map(|r| zeros(r.len() as usize, &r.shape))
                    .collect::<Result<Vec<_>>>()?,
            ),
            (false, _) => Some(vec![Vec::new(); self.registry.params().len()]),
        };
        self.registry.set_ema(ema)?;
        if let Some(emas) = emas {
            self.emas = emas;
        }
        Ok(())
    }

    /// Parameter `param`'s average of its weights, while one is kept (zeros before its first
    /// update; the trained weights while swapped in).
    pub fn ema(&self, param: ParamId) -> Option<&[f32]> {
        self.emas
            .get(param.0)
            .filter(|e| !e.is_empty())
            .map(Vec::as_slice)
    }

    /// Swaps the average into `params` for evaluation, or back (see
    /// [`crate::GpuOptimizer::swap_ema`]); the next step swaps back first.
    pub fn swap_ema(&mut self, params: &mut [&mut [f32]]) -> Result<()> {
        self.registry.check_swap()?;
        self.check_shapes(params, None)?;
        self.swap(params);
        Ok(())
    }

    /// Whether the parameters hold the average (swapped in).
    pub fn is_ema_swapped(&self) -> bool {
        self.registry.ema_swapped
    }

    fn swap(&mut self, params: &mut [&mut [f32]]) {
        for (p, e) in params.iter_mut().zip(&mut self.emas) {
            p.swap_with_slice(e);
        }
        self.registry.ema_swapped = !self.registry.ema_swapped;
    }

    /// Micro-batches per step and those summed toward the next.
    pub fn accumulation(&self) -> Accumulation {
        self.registry.accumulation
    }

    /// Freezes or unfreezes group `group` (see [`crate::GpuOptimizer::set_frozen`]).
    pub fn set_frozen(&mut self, group: GroupId, frozen: bool) -> Result<()> {
        self.registry.set_frozen(group, frozen)
    }

    /// Whether group `group` is frozen.
    pub fn is_frozen(&self, group: GroupId) -> bool {
        self.registry.is_frozen(group.0)
    }

    /// One optimizer step over every registered parameter.
    ///
    /// `params[i]` and `grads[i]` belong to the `i`-th registered parameter. Shapes are checked
    /// before anything is written, so a bad call changes nothing.
    ///
    /// Under [`CpuOptimizer::set_accumulation`], only every k-th call steps; the others add
    /// their gradients to the running sums (see [`crate::GpuOptimizer::set_accumulation`]).
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) -> Result<()> {
        self.check_shapes(params, Some(grads))?;
        if self.registry.ema_swapped {
            // The trained weights back first, on every call, as the GPU optimizer's step does.
            self.swap(params);
        }
        let Some(micro) = self.registry.accumulation.next() else {
            return self.apply(params, grads);
        };
        let k = self.registry.accumulation.every;
        for (sum, g) in self.grad_sums.iter_mut().zip(grads) {
            crate::cpu::accumulate(micro.mode(), k, g, sum);
        }
        self.registry.accumulation.advance();
        if micro != MicroBatch::Last {
            return Ok(());
        }
        let sums = std::mem::take(&mut self.grad_sums);
        let summed: Vec<&[f32]> = sums.iter().map(Vec::as_slice).collect();
        let applied = self.apply(params, &summed);
        self.grad_sums = sums;
        applied
    }

    /// The step itself, with this step's gradients (checked).
    fn apply(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) -> Result<()> {
        if self.registry.ema_fresh() {
            // Averages still to start from their parameters: copied before the update.
            for (i, r) in self.registry.params().iter().enumerate() {
                if r.ema_fresh {
                    self.emas[i].copy_from_slice(params[i]);
                }
            }
            self.registry.mark_ema_copied();
        }
        let t = self.registry.scheduler.advance();
        if O::EVAL_MODE {
            // As the GPU optimizer: back to the training point first, then the state of the
            // parameters not stepped yet from themselves; whether or not the step is skipped.
            if self.registry.eval_mode {
                self.run_pass(Pass::ToTrain, params, t);
                self.registry.eval_mode = false;
            }
            self.run_pass(Pass::Init, params, t);
            self.registry.mark_stepped();
        }
        // The gradient stage, as grad_norm.wgsl: unscale by 1 / scale, skip the step on any inf
        // or NaN, then clip every gradient by the global norm's coefficient.
        let stage = self.registry.grad_stage;
        let (mut adjusted, found_inf) = match self.scaler {
            Some(st) => {
                let (unscaled, found_inf) = grad_norm::unscale(grads, 1.0 / st.scale);
                (Some(unscaled), found_inf)
            }
            None => (None, false),
        };
        if let Some(max_norm) = stage.max_norm {
            let source: Vec<&[f32]> = match &adjusted {
                Some(a) => a.iter().map(Vec::as_slice).collect(),
                None => grads.to_vec(),
            };
            let total = grad_norm::global_norm(&source);
            self.last_grad_norm = Some(total);
            // An infinite max_norm logs the norm and leaves the gradients as they are.
            if max_norm.is_finite() {
                adjusted = Some(grad_norm::scaled(
                    &source,
                    grad_norm::clip_coefficient(max_norm, total),
                ));
            }
        }
        let mut skipped = 0;
        if let (Some(config), Some(st)) = (&stage.loss_scale, &mut self.scaler) {
            st.update(config, found_inf);
            if found_inf {
                return Ok(());
            }
            skipped = st.candidate();
        }
        let state_step = state_step(t, skipped);
        let scheduler = &self.registry.scheduler;
        let registered = self.registry.params();
        let all = self.states.iter_mut().zip(&mut self.quantized);
        for (i, (r, (states, quantized))) in registered.iter().zip(all).enumerate() {
            if self.registry.is_frozen(r.group) {
                continue;
            }
            let s = scheduler.scalars_at(r.group, t, state_step);
            let slices = states.each_mut().map(|v| v.as_mut_slice());
            let grad = adjusted.as_ref().map_or(grads[i], |c| c[i].as_slice());
            let config = &scheduler.groups()[r.group];
            if O::ORTHOGONAL {
                let dims = [r.shape[0], r.shape[1]];
                config.cpu_matrix_step(&s, dims, self.threads, params[i], grad, slices);
            } else {
                step_chunked(config, &s, params[i], grad, slices, self.threads);
            }
            round_stored::<O>(r.precision, params[i], (states, quantized), t);
            if let Some(ema) = self.emas.get_mut(i).filter(|e| !e.is_empty()) {
                crate::ema::update(ema, params[i], scheduler.ema_weight(state_step));
            }
        }
        Ok(())
    }

    /// Switches the parameters to the evaluation point, as `optimizer.eval()` does for
    /// Schedule-Free (see [`crate::GpuOptimizer::eval`]); nothing when already in evaluation
    /// mode. Lengths are checked first.
    pub fn eval(&mut self, params: &mut [&mut [f32]]) -> Result<()> {
        self.registry.check_eval_mode()?;
        self.check_shapes(params, None)?;
        if !self.registry.eval_mode {
            let t = self.registry.scheduler.steps_taken();
            self.run_pass(Pass::ToEval, params, t);
            self.registry.eval_mode = true;
        }
        Ok(())
    }

    /// Switches the parameters back to the training point, as `optimizer.train()` does.
    pub fn train(&mut self, params: &mut [&mut [f32]]) -> Result<()> {
        self.registry.check_eval_mode()?;
        self.check_shapes(params, None)?;
        if self.registry.eval_mode {
            let t = self.registry.scheduler.steps_taken();
            self.run_pass(Pass::ToTrain, params, t);
            self.registry.eval_mode = false;
        }
        Ok(())
    }

    /// Whether the parameters hold the evaluation point ([`CpuOptimizer::eval`]).
    pub fn is_eval_mode(&self) -> bool {
        self.registry.eval_mode
    }

    /// `pass` over the fresh parameters ([`Pass::Init`]) or the stepped ones (the others), with
    /// the scalars of step `t` (none before the first step: nothing is stepped then).
    fn run_pass(&mut self, pass: Pass, params: &mut [&mut [f32]], t: u64) {
        if t == 0 {
            return;
        }
        let scheduler = &self.registry.scheduler;
        let all = self.states.iter_mut().zip(&mut self.quantized);
        for (i, (r, (states, quantized))) in self.registry.params().iter().zip(all).enumerate() {
            if r.fresh != (pass == Pass::Init) {
                continue;
            }
            let s = scheduler.scalars_at(r.group, t, t);
            let slices = states.each_mut().map(|v| v.as_mut_slice());
            scheduler.groups()[r.group].cpu_pass(pass, &s, params[i], slices);
            round_stored::<O>(r.precision, params[i], (states, quantized), t);
        }
    }

    /// Checks one parameter (and gradient) per registered parameter, each of its length.
    fn check_shapes(&self, params: &[&mut [f32]], grads: Option<&[&[f32]]>) -> Result<()> {
        let registered = self.registry.params();
        let grads_len = grads.map_or(registered.len(), <[_]>::len);
        if params.len() != registered.len() || grads_len != registered.len() {
            return Err(Error::StepShape(format!(
                "{} parameters are registered, got {} parameters and {grads_len} gradients",
                registered.len(),
                params.len(),
            )));
        }
        for (i, r) in registered.iter().enumerate() {
            let len = r.len() as usize;
            let grad_len = grads.map_or(len, |g| g[i].len());
            if params[i].len() != len || grad_len != len {
                return Err(Error::StepShape(format!(
                    "parameter {i} has {len} elements, got a parameter of {} and a gradient of {grad_len}",
                    params[i].len(),
                )));
            }
            Precision::check_held("param", r.precision.param, params[i])?;
            if let Some(g) = grads {
                Precision::check_held("grad", r.precision.grad, g[i])?;
            }
        }
        Ok(())
    }

    /// Turns global-norm gradient clipping on with `max_norm` or off with `None`, as
    /// [`crate::GpuOptimizer::set_max_grad_norm`].
    pub fn set_max_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        self.registry.grad_stage = self.registry.with_max_norm(max_norm)?;
        Ok(())
    }

    /// Turns loss scaling on or off, as [`crate::GpuOptimizer::set_loss_scale`].
    pub fn set_loss_scale(&mut self, scale: Option<LossScale>) -> Result<()> {
        self.registry.grad_stage = self.registry.with_loss_scale(scale)?;
        self.scaler = scale.as_ref().map(LossScaleState::initial);
        Ok(())
    }

    /// The loss-scaling state, when loss scaling is on.
    pub fn loss_scale(&self) -> Option<LossScaleState> {
        self.scaler
    }

    /// The global gradient norm of the last clipped step.
    pub fn last_grad_norm(&self) -> Option<f32> {
        self.last_grad_norm
    }

    /// All optimizer state: step, groups, schedule, gradient stage (with loss scaling's state),
    /// and every parameter's state buffers.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.registry.capture(
            |i| {
                let (mut values, mut quantized) = (Vec::new(), Vec::new());
                for s in self.registry.slots(i) {
                    let name = O::STATE_NAMES[s].to_string();
                    match &self.quantized[i][s] {
                        Some(blocks) => quantized.push((name, blocks.clone())),
                        None => values.push((name, self.states[i][s].clone())),
                    }
                }
                let pending = self.registry.accumulation.pending > 0;
                let kept = self.registry.scheduler.ema().is_some();
                let tensors = [
                    kept.then(|| (EMA.to_string(), self.emas[i].clone())),
                    pending.then(|| (GRAD_SUM.to_string(), self.grad_sums[i].clone())),
                ];
                Ok((values, quantized, tensors.into_iter().flatten().collect()))
            },
            self.scaler,
        )
    }

    /// Saves [`CpuOptimizer::checkpoint`] to `path` (through a temporary file and a rename).
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        self.checkpoint()?.save(path)
    }

    /// Restores a checkpoint taken from an optimizer with the same groups (and option flags) and
    /// the same parameters registered in the same order, on either backend: states, step,
    /// schedule, clipping and loss scaling with its state. Everything is checked first: on
    /// error the optimizer is exactly as it was.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let mut plan = self.registry.plan_restore(checkpoint)?;
        let saved = std::mem::take(&mut plan.states)
            .into_iter()
            .zip(std::mem::take(&mut plan.quantized));
        let registered = self.registry.params();
        let mine = self.states.iter_mut().zip(&mut self.quantized);
        for ((r, (values, quantized)), (data, blocks)) in registered.iter().zip(mine).zip(saved) {
            for (slot, (data, blocks)) in data.into_iter().zip(blocks).enumerate() {
                match (r.precision.quant, blocks) {
                    (Some(q), Some(blocks)) if quantized[slot].is_some() => {
                        values[slot] = quant::dequantize(q, O::QUANT_MAPS[slot], &blocks);
                        quantized[slot] = Some(blocks);
                    }
                    _ if !values[slot].is_empty() && quantized[slot].is_none() => {
                        values[slot] = data;
                    }
                    _ => {}
                }
            }
        }
        let on = plan.accumulation.is_on();
        let (mut sums, mut emas) = (Vec::new(), Vec::new());
        for (r, tensors) in registered
            .iter()
            .zip(std::mem::take(&mut plan.loop_tensors))
        {
            let mut sum = None;
            let mut ema = Vec::new();
            for (name, v) in tensors {
                match name.as_str() {
                    GRAD_SUM => sum = Some(v),
                    EMA => ema = v,
                    _ => {}
                }
            }
            sums.push(match sum {
                Some(v) => v,
                None if on => zeros(r.len() as usize, &r.shape)?,
                None => Vec::new(),
            });
            emas.push(ema);
        }
        self.grad_sums = sums;
        self.emas = emas;
        self.scaler = plan.loss_scale;
        self.registry.commit(plan);
        Ok(())
    }

    /// Reads a checkpoint file and [`CpuOptimizer::restore`]s it.
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<()> {
        self.restore(&Checkpoint::load(path)?)
    }

    /// State `name` (PyTorch's key, e.g. `exp_avg`) of parameter `param`, if these options keep it.
    pub fn state(&self, param: ParamId, name: &str) -> Option<&[f32]> {
        let slot = self.registry.state_slot(param, name)?;
        Some(&self.states[param.0][slot])
    }

    /// The codes and block scales of state `name` of `param`, if it is quantized
    /// ([`Precision::quant`]; [`CpuOptimizer::state`] gives the values they stand for).
    pub fn quantized_state(&self, param: ParamId, name: &str) -> Option<&Blocks> {
        let slot = self.registry.state_slot(param, name)?;
        self.quantized[param.0][slot].as_ref()
    }
}
