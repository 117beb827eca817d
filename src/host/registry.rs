//! [`Registry`]: the bookkeeping both optimizers embed: parameter groups and the schedule (in a
//! [`StepScheduler`]), registered parameters, state lookup by name, the gradient stage's
//! settings and loss-scaling state, and checkpoint capture and restore.

use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::host::checkpoint::{Checkpoint, SavedLossScale, SavedParam};
use crate::host::grad_stage::{GradStage, LossScale, LossScaleState, validate_max_norm};
use crate::host::loop_control::{Accumulation, LoopControl, SavedEma, SavedPlateau};
use crate::host::scheduler::StepScheduler;
use crate::host::{GroupId, ParamId};
use crate::optim::{Algorithm, MAX_STATES};
use crate::plateau::{Plateau, PlateauState};
use crate::precision::{Dtype, Precision};
use crate::quant::Blocks;
use crate::schedule::Schedule;

/// A parameter's saved states: the unquantized ones' values and the quantized ones' codes and
/// scales, each by name in binding order; and its loop tensors (the running gradient sum).
pub(crate) type SavedStates = (
    Vec<(String, Vec<f32>)>,
    Vec<(String, Blocks)>,
    Vec<(String, Vec<f32>)>,
);

/// One registered parameter, as both backends know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    /// Its group's index.
    pub group: usize,
    /// Its shape (`[len]` unless registered with one).
    pub shape: Vec<usize>,
    /// Its average of the weights is still to be copied from it, at the next step (the
    /// average was just set, or it was registered since).
    pub ema_fresh: bool,
    /// Not stepped yet, for [`Algorithm::EVAL_MODE`] optimizers: its first step starts its
    /// state from it ([`crate::Pass::Init`]).
    pub fresh: bool,
    /// The dtypes of its parameter, gradient and states.
    pub precision: Precision,
}

impl Registered {
    /// Its length in elements (the product of its shape).
    pub fn len(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Groups, schedule, step, parameters and the gradient stage, host side.
#[derive(Debug, Clone)]
pub(crate) struct Registry<O: Algorithm> {
    pub scheduler: StepScheduler<O>,
    params: Vec<Registered>,
    pub grad_stage: GradStage,
    /// The parameters hold the evaluation point ([`Algorithm::EVAL_MODE`] optimizers).
    pub eval_mode: bool,
    /// The frozen groups, in increasing order: their updates are skipped, their state kept.
    frozen: Vec<usize>,
    /// Gradient accumulation's micro-batches per step and the count toward the next.
    pub accumulation: Accumulation,
    /// The parameters hold the average of the weights, swapped in for evaluation.
    pub ema_swapped: bool,
}

/// A checked restore, ready to apply: nothing is changed until [`Registry::commit`].
#[derive(Debug)]
pub(crate) struct Restore<O: Algorithm> {
    groups: Vec<O>,
    schedule: Option<Schedule>,
    plateau: Option<(Plateau, PlateauState)>,
    /// The average of the weights, the step it started after, and whether it was swapped in.
    pub ema: Option<(Ema, u64, bool)>,
    /// The parameters whose average was still to be copied.
    ema_fresh: Vec<usize>,
    step: u64,
    /// The gradient stage the checkpoint was saved with.
    pub grad_stage: GradStage,
    /// Loss scaling's state, when on.
    pub loss_scale: Option<LossScaleState>,
    /// Per parameter, each state slot's saved values (empty where the options keep none, or
    /// where the state is quantized).
    pub states: Vec<[Vec<f32>; MAX_STATES]>,
    /// Per parameter, each quantized state slot's saved codes and scales.
    pub quantized: Vec<[Option<Blocks>; MAX_STATES]>,
    /// Per parameter, its saved loop tensors by name (the running gradient sum).
    pub loop_tensors: Vec<Vec<(String, Vec<f32>)>>,
    /// Gradient accumulation as saved.
    pub accumulation: Accumulation,
    eval_mode: bool,
    fresh: Vec<usize>,
    frozen: Vec<usize>,
}

impl<O: Algorithm> Registry<O> {
    /// Group 0 uses `config`; nothing registered; no gradient stage.
    pub fn new(config: O) -> Result<Self> {
        Ok(Self {
            scheduler: StepScheduler::new(config)?,
            params: Vec::new(),
            grad_stage: GradStage::default(),
            eval_mode: false,
            frozen: Vec::new(),
            accumulation: Accumulation::default(),
            ema_swapped: false,
        })
    }

    /// Whether group `group` is frozen.
    pub fn is_frozen(&self, group: usize) -> bool {
        self.frozen.binary_search(&group).is_ok()
    }

    /// Freezes (or unfreezes) group `group`.
    pub fn set_frozen(&mut self, group: GroupId, frozen: bool) -> Result<()> {
        self.scheduler.group(group)?;
        match (self.frozen.binary_search(&group.0), frozen) {
            (Err(at), true) => self.frozen.insert(at, group.0),
            (Ok(at), false) => {
                self.frozen.remove(at);
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks `config` as group `group`'s new hyperparameters: valid, and keeping the same
    /// states for every parameter of the group (a state cannot appear or vanish mid-run).
    pub fn check_group_config(&self, group: GroupId, config: &O) -> Result<()> {
        let old = self.scheduler.group(group)?;
        config.validate()?;
        crate::host::scheduler::check_cycled(self.scheduler.schedule(), config)?;
        if let Some(option) = old.fixed_for_a_run(config) {
            return Err(Error::InvalidOptions(format!(
                "{} keeps {option} for a run: the host rebuilds a value accumulated over the \
                 steps taken from it, so changing it would rewrite them",
                O::NAME
            )));
        }
        for (i, p) in self.params.iter().enumerate() {
            if p.group != group.0 {
                continue;
            }
            for (slot, name) in O::STATE_NAMES.iter().enumerate() {
                let (was, now) = (
                    old.state_len(slot, &p.shape),
                    config.state_len(slot, &p.shape),
                );
                if (was > 0) != (now > 0) {
                    return Err(Error::InvalidOptions(format!(
                        "the new options of group {} {} state {name} for parameter {i}, \
                         already registered: options that add or drop a state are set before \
                         registering",
                        group.0,
                        if now > 0 { "add" } else { "drop" }
                    )));
                }
            }
        }
        Ok(())
    }

    /// Group `group`'s hyperparameters with the base learning rate `lr` (checked).
    pub fn config_with_lr(&self, group: GroupId, lr: f64) -> Result<O> {
        if !lr.is_finite() {
            return Err(Error::InvalidHyperparameter {
                name: "lr",
                value: lr,
                reason: "must be finite",
            });
        }
        let mut v = serde_json::to_value(self.scheduler.group(group)?)
            .map_err(|e| Error::InvalidOptions(format!("cannot set the learning rate: {e}")))?;
        v["lr"] = serde_json::Value::from(lr);
        let config: O = serde_json::from_value(v).map_err(|e| {
            Error::InvalidOptions(format!("{} takes no learning rate {lr}: {e}", O::NAME))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reports `metric` to the plateau reduction ([`StepScheduler::set_plateau`]); returns the
    /// groups whose base rate it lowered now. Without a reduction set, an
    /// [`Error::InvalidOptions`] and nothing changes.
    pub fn report_metric(&mut self, metric: f64) -> Result<Vec<usize>> {
        let Some((&plateau, &state)) = self.scheduler.plateau() else {
            return Err(Error::InvalidOptions(
                "a metric was reported with no plateau reduction set (set_plateau)".into(),
            ));
        };
        let (next, reduce) = plateau.observe(state, metric);
        let mut lowered = Vec::new();
        if reduce {
            for (g, config) in self.scheduler.groups().iter().enumerate() {
                if let Some(lr) = plateau.reduced(config.lr()) {
                    lowered.push((g, self.config_with_lr(GroupId(g), lr)?));
                }
            }
        }
        self.scheduler.set_plateau_state(next);
        Ok(lowered
            .into_iter()
            .map(|(g, config)| {
                self.scheduler.replace_group(g, config);
                g
            })
            .collect())
    }

    /// Checks `every` micro-batches per step for the parameters registered, whose precisions
    /// `precision(i)` gives: at least one, and f32 gradients wherever more than one.
    pub fn check_accumulation(
        &self,
        every: u32,
        precision: impl Fn(usize) -> Precision,
    ) -> Result<()> {
        Accumulation::check_every(every)?;
        if every > 1 {
            (0..self.params.len()).try_for_each(|i| check_accumulated::<O>(precision(i)))?;
        }
        Ok(())
    }

    /// Turns accumulation over `every` micro-batches per step on (or, with 1, off), checked
    /// as [`Registry::check_accumulation`]; only between steps (no micro-batch pending), else
    /// an [`Error::InvalidOptions`].
    pub fn set_accumulation(&mut self, every: u32) -> Result<()> {
        self.check_accumulation(every, |i| self.params[i].precision)?;
        if self.accumulation.pending != 0 {
            return Err(Error::InvalidOptions(format!(
                "accumulation changed with {} of {} micro-batches summed: change it after a step",
                self.accumulation.pending, self.accumulation.every
            )));
        }
        self.accumulation = Accumulation { every, pending: 0 };
        Ok(())
    }

    /// Sets (or removes) the average of the weights from the next step on, checked as
    /// [`Registry::check_ema`]; not while it is swapped into the parameters.
    pub fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        if let Some(e) = &ema {
            self.check_ema(e)?;
            let start = self.scheduler.steps_taken();
            if self.grad_stage.loss_scale.is_some() && start > 0 {
                return Err(Error::InvalidOptions(format!(
                    "under loss scaling, the average is set before the first step (now {start})"
                )));
            }
        }
        if self.ema_swapped {
            return Err(Error::InvalidOptions(
                "the average is swapped into the parameters: swap it back first".into(),
            ));
        }
        // Every average starts from its parameter, copied at the next step.
        let on = ema.is_some();
        for p in &mut self.params {
            p.ema_fresh = on;
        }
        self.scheduler.set_ema(ema);
        Ok(())
    }

    /// Whether any average is still to be copied from its parameter.
    pub fn ema_fresh(&self) -> bool {
        self.params.iter().any(|p| p.ema_fresh)
    }

    /// Marks every average copied (the step recorded the copies).
    pub fn mark_ema_copied(&mut self) {
        for p in &mut self.params {
            p.ema_fresh = false;
        }
    }

    /// Checks that the average can be swapped with the parameters: it is kept and has been
    /// updated (a step has been taken since it was set).
    ///
    /// Parameters with a 16-bit copy are refused: the forward pass reads the copy, which a
    /// swap of the f32 master weights would leave as it is (bind the average's buffer
    /// instead).
    pub fn check_swap(&self) -> Result<()> {
        let refuse = |why: &str| Err(Error::InvalidOptions(why.to_string()));
        if self.scheduler.ema().is_none() {
            return refuse("no average of the weights is kept (set_ema)");
        }
        if self.ema_fresh() {
            return refuse(
                "the average has no value yet: it is copied from the weights at the next step",
            );
        }
        if let Some(i) = self.params.iter().position(|p| p.precision.copy.is_some()) {
            return Err(Error::InvalidOptions(format!(
                "parameter {i} has a 16-bit copy, which a swap of its f32 master weights \
                 would leave as it is: evaluate with the average's buffer (ema_buffer)"
            )));
        }
        Ok(())
    }

    /// Checks `ema` as the average of the registered parameters' weights: an elementwise
    /// optimizer without an evaluation mode, and f32 parameters.
    pub fn check_ema(&self, ema: &Ema) -> Result<()> {
        ema.validate()?;
        if !O::KERNEL.single_pass || O::EVAL_MODE {
            return Err(Error::InvalidOptions(format!(
                "the average of the weights rides on the elementwise update kernels; {} has \
                 {}",
                O::NAME,
                if O::EVAL_MODE {
                    "an evaluation point of its own"
                } else {
                    "per-tensor passes"
                }
            )));
        }
        self.params
            .iter()
            .try_for_each(|p| check_averaged::<O>(p.precision))
    }

    /// The registered parameters, in registration order.
    pub fn params(&self) -> &[Registered] {
        &self.params
    }

    /// Checks a registration of `len` elements of `shape` (`None`: flat) in `group`, stored as
    /// `precision`; returns the group's config and the shape.
    pub fn check_register(
        &self,
        group: GroupId,
        len: u64,
        shape: Option<&[usize]>,
        precision: Precision,
    ) -> Result<(&O, Vec<usize>)> {
        let config = self.scheduler.group(group)?;
        check_precision::<O>(precision, self.grad_stage)?;
        if self.accumulation.is_on() {
            check_accumulated::<O>(precision)?;
        }
        if self.scheduler.ema().is_some() {
            check_averaged::<O>(precision)?;
        }
        if self.ema_swapped {
            return Err(Error::InvalidOptions(
                "the average is swapped into the parameters: swap it back before registering"
                    .into(),
            ));
        }
        if len == 0 {
            return Err(Error::BadBufferSize {
                which: "param",
                size: 0,
            });
        }
        let shape = match shape {
            None => vec![len as usize],
            Some(s) => {
                let numel = s.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
                if numel != Some(len) {
                    return Err(Error::ShapeMismatch {
                        shape: s.to_vec(),
                        len,
                    });
                }
                s.to_vec()
            }
        };
        if O::ORTHOGONAL && shape.len() != 2 {
            return Err(Error::UnsupportedShape {
                optimizer: O::NAME,
                param: self.params.len(),
                shape,
                reason: "only 2-D parameters (register each matrix with its shape)",
            });
        }
        Ok((config, shape))
    }

    /// Records a registration [`Registry::check_register`] accepted.
    pub fn push(&mut self, group: GroupId, shape: Vec<usize>, precision: Precision) -> ParamId {
        self.params.push(Registered {
            group: group.0,
            shape,
            fresh: O::EVAL_MODE,
            ema_fresh: self.scheduler.ema().is_some(),
            precision,
        });
        ParamId(self.params.len() - 1)
    }

    /// Checks that `param` can be unregistered: it is registered, and the parameters do not
    /// hold the average of the weights (its buffer holds the trained weights then).
    pub fn check_unregister(&self, param: ParamId) -> Result<()> {
        if param.0 >= self.params.len() {
            return Err(Error::UnknownParam(param.0));
        }
        if self.ema_swapped {
            return Err(Error::InvalidOptions(
                "the average is swapped into the parameters: swap it back before unregistering"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Forgets parameter `param` (checked by [`Registry::check_unregister`]); later ones move
    /// down one place.
    pub fn remove(&mut self, param: ParamId) {
        self.params.remove(param.0);
    }

    /// Marks every parameter stepped (after a step has run [`crate::Pass::Init`] over the fresh
    /// ones).
    pub fn mark_stepped(&mut self) {
        for p in &mut self.params {
            p.fresh = false;
        }
    }

    /// Checks that these optimizers have an evaluation mode.
    pub fn check_eval_mode(&self) -> Result<()> {
        if O::EVAL_MODE {
            Ok(())
        } else {
            Err(Error::InvalidOptions(format!(
                "{} has no evaluation mode: its parameters are the point to evaluate",
                O::NAME
            )))
        }
    }

    /// Which state slots parameter `index` keeps (its options', for its shape).
    pub fn slots(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let p = &self.params[index];
        let config = &self.scheduler.groups()[p.group];
        (0..O::STATE_NAMES.len()).filter(move |&s| config.state_len(s, &p.shape) > 0)
    }

    /// The slot of state `name` (PyTorch's key) of `param`, if it keeps it.
    pub fn state_slot(&self, param: ParamId, name: &str) -> Option<usize> {
        let p = self.params.get(param.0)?;
        let slot = O::STATE_NAMES.iter().position(|&n| n == name)?;
        (self.scheduler.groups()[p.group].state_len(slot, &p.shape) > 0).then_some(slot)
    }

    /// Sets clipping (checked); returns the new stage for the backend to build.
    pub fn with_max_norm(&self, max_norm: Option<f64>) -> Result<GradStage> {
        self.checked_stage(GradStage {
            max_norm: validate_max_norm(max_norm)?,
            ..self.grad_stage
        })
    }

    /// Sets loss scaling (checked); returns the new stage for the backend to build.
    pub fn with_loss_scale(&self, scale: Option<LossScale>) -> Result<GradStage> {
        if let Some(s) = &scale {
            s.validate()?;
        }
        self.checked_stage(GradStage {
            loss_scale: scale,
            ..self.grad_stage
        })
    }

    /// `stage`, if every registered tensor's precision allows it.
    fn checked_stage(&self, stage: GradStage) -> Result<GradStage> {
        for p in &self.params {
            check_precision::<O>(p.precision, stage)?;
        }
        Ok(stage)
    }

    /// Everything a checkpoint holds; `states(i)` gives parameter `i`'s states in binding order:
    /// the unquantized ones' values, and the quantized ones' codes and scales.
    pub fn capture(
        &self,
        mut states: impl FnMut(usize) -> Result<SavedStates>,
        loss_scale: Option<LossScaleState>,
    ) -> Result<Checkpoint> {
        let groups = self
            .scheduler
            .groups()
            .iter()
            .map(|g| {
                serde_json::to_value(g)
                    .map_err(|e| Error::CheckpointMismatch(format!("cannot serialize {g:?}: {e}")))
            })
            .collect::<Result<_>>()?;
        let params = (0..self.params.len())
            .map(|i| {
                let (states, quantized, loop_tensors) = states(i)?;
                Ok(SavedParam {
                    group: self.params[i].group,
                    len: self.params[i].len() as usize,
                    shape: self.params[i].shape.clone(),
                    precision: self.params[i].precision,
                    states,
                    quantized,
                    loop_tensors,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Checkpoint {
            optimizer: O::NAME.to_string(),
            step: self.scheduler.steps_taken(),
            groups,
            schedule: self.scheduler.schedule().cloned(),
            params,
            max_grad_norm: self.grad_stage.max_norm,
            loss_scale: self
                .grad_stage
                .loss_scale
                .zip(loss_scale)
                .map(|(config, state)| SavedLossScale { config, state }),
            eval_mode: self.eval_mode,
            frozen: self.frozen.clone(),
            training_loop: LoopControl {
                plateau: self
                    .scheduler
                    .plateau()
                    .map(|(&options, &state)| SavedPlateau { options, state }),
                accumulation: self.accumulation.is_on().then_some(self.accumulation),
                ema: self.scheduler.ema().map(|(&options, start)| SavedEma {
                    options,
                    start,
                    swapped: self.ema_swapped,
                    fresh: (0..self.params.len())
                        .filter(|&i| self.params[i].ema_fresh)
                        .collect(),
                }),
            },
            fresh: (0..self.params.len())
                .filter(|&i| self.params[i].fresh)
                .collect(),
        })
    }

    /// Checks that `checkpoint` fits (see [`Checkpoint::check_fits`]) and lays its states out
    /// by slot, changing nothing.
    pub fn plan_restore(&self, checkpoint: &Checkpoint) -> Result<Restore<O>> {
        let registered: Vec<(usize, &[usize])> = self
            .params
            .iter()
            .map(|p| (p.group, p.shape.as_slice()))
            .collect();
        let checkpoint = checkpoint.clone().in_binding_order::<O>();
        let groups = checkpoint.check_fits(self.scheduler.groups(), &registered)?;
        let stage = GradStage {
            max_norm: checkpoint.max_grad_norm,
            loss_scale: checkpoint.loss_scale.map(|l| l.config),
        };
        for (i, (p, saved)) in self.params.iter().zip(&checkpoint.params).enumerate() {
            if p.precision != saved.precision {
                return Err(Error::CheckpointMismatch(format!(
                    "parameter {i} was saved as {}, it is registered as {}",
                    saved.precision, p.precision
                )));
            }
            check_precision::<O>(p.precision, stage)?;
            for (name, data) in &saved.states {
                Precision::check_held("state", p.precision.state, data).map_err(|e| {
                    Error::CheckpointMismatch(format!("state {name} of parameter {i}: {e}"))
                })?;
            }
        }
        let slot_of = |name: &str| O::STATE_NAMES.iter().position(|&n| n == name);
        if let Some(e) = &checkpoint.training_loop.ema {
            self.check_ema(&e.options)?;
            if let Some(&i) = e.fresh.iter().find(|&&i| i >= self.params.len()) {
                return Err(Error::CheckpointMismatch(format!(
                    "the average's fresh parameters name parameter {i} of {}",
                    self.params.len()
                )));
            }
        }
        let accumulation = checkpoint.training_loop.accumulation.unwrap_or_default();
        self.check_accumulation(accumulation.every, |i| self.params[i].precision)?;
        let (mut states, mut quantized, mut loop_tensors) = (Vec::new(), Vec::new(), Vec::new());
        for saved in checkpoint.params {
            loop_tensors.push(saved.loop_tensors);
            let mut values: [Vec<f32>; MAX_STATES] = Default::default();
            for (name, data) in saved.states {
                if let Some(slot) = slot_of(&name) {
                    values[slot] = data;
                }
            }
            let mut blocks: [Option<Blocks>; MAX_STATES] = Default::default();
            for (name, data) in saved.quantized {
                if let Some(slot) = slot_of(&name) {
                    blocks[slot] = Some(data);
                }
            }
            states.push(values);
            quantized.push(blocks);
        }
        Ok(Restore {
            groups,
            schedule: checkpoint.schedule,
            plateau: checkpoint
                .training_loop
                .plateau
                .map(|p| (p.options, p.state)),
            ema: checkpoint
                .training_loop
                .ema
                .as_ref()
                .map(|e| (e.options, e.start, e.swapped)),
            ema_fresh: checkpoint
                .training_loop
                .ema
                .as_ref()
                .map_or(Vec::new(), |e| e.fresh.clone()),
            step: checkpoint.step,
            grad_stage: GradStage {
                max_norm: checkpoint.max_grad_norm,
                loss_scale: checkpoint.loss_scale.map(|l| l.config),
            },
            loss_scale: checkpoint.loss_scale.map(|l| l.state),
            states,
            quantized,
            loop_tensors,
            accumulation,
            eval_mode: checkpoint.eval_mode,
            fresh: checkpoint.fresh,
            frozen: checkpoint.frozen,
        })
    }

    /// Applies the host side of a planned restore (the backend writes the states).
    pub fn commit(&mut self, restore: Restore<O>) {
        self.scheduler.restore(
            restore.groups,
            restore.schedule,
            restore.plateau,
            restore.ema.map(|(e, start, _)| (e, start)),
            restore.step,
        );
        self.ema_swapped = restore.ema.is_some_and(|e| e.2);
        self.grad_stage = restore.grad_stage;
        self.accumulation = restore.accumulation;
        self.eval_mode = restore.eval_mode;
        self.frozen = restore.frozen;
        for (i, p) in self.params.iter_mut().enumerate() {
            p.fresh = restore.fresh.contains(&i);
            p.ema_fresh = restore.ema_fresh.contains(&i);
        }
    }
}

/// Whether parameters of `precision` can be averaged: f32 ones (master weights included).
fn check_averaged<O: Algorithm>(precision: Precision) -> Result<()> {
    if precision.param != Dtype::F32 {
        return Err(Error::UnsupportedPrecision {
            optimizer: O::NAME,
            precision,
            reason: "the average of the weights is kept for f32 parameters (or master weights)",
        });
    }
    Ok(())
}

/// Whether gradients of `precision` can be accumulated: f32 ones only (the sum is f32, and a
/// 16-bit gradient could not hold it for the step).
fn check_accumulated<O: Algorithm>(precision: Precision) -> Result<()> {
    if precision.grad != Dtype::F32 {
        return Err(Error::UnsupportedPrecision {
            optimizer: O::NAME,
            precision,
            reason: "gradient accumulation sums f32 gradients",
        });
    }
    Ok(())
}

/// Whether `O` steps tensors of `precision` under gradient stage `stage`: 16-bit values only in
/// the elementwise optimizers (the norm and factor passes read f32), and 16-bit gradients only
/// without clipping or loss scaling (whose passes read f32 gradients).
pub(crate) fn check_precision<O: Algorithm>(precision: Precision, stage: GradStage) -> Result<()> {
    let unsupported = |reason| {
        Err(Error::UnsupportedPrecision {
            optimizer: O::NAME,
            precision,
            reason,
        })
    };
    if precision.rounding != crate::precision::Rounding::Nearest && precision.param != Dtype::Bf16 {
        return unsupported("stochastic rounding is for bf16 parameters");
    }
    if let Some(copy) = precision.copy
        && (precision.param != Dtype::F32 || copy == Dtype::F32)
    {
        return unsupported("a copy is a bf16 or f16 copy of f32 master weights");
    }
    if precision.quant.is_some() && O::QUANT_MAPS.is_empty() {
        return unsupported("q8 and q4 state is for Adam, AdamW, Lion and SGD");
    }
    if precision.is_f32() {
        return Ok(());
    }
    if O::NORMS || O::FACTORED {
        return unsupported("only elementwise optimizers step 16-bit tensors");
    }
    if precision.grad != Dtype::F32 && (stage.max_norm.is_some() || stage.loss_scale.is_some()) {
        return unsupported("gradient clipping and loss scaling read f32 gradients");
    }
    Ok(())
}
