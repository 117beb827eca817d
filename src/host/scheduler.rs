//! The host-side step scheduler: the step counter and every step-dependent scalar.
//!
//! Kernels never see the step number. For each step the scheduler computes, in f64, the
//! scheduled learning rate of every parameter group and from it the optimizer's scalars (bias
//! corrections, RAdam's rectification, Adagrad's decayed rate), which the GPU optimizer writes
//! into its per-step scalar tables and the CPU reference consumes directly. Both optimizers own
//! one, so CPU-vs-GPU tests compare kernel arithmetic only.

use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::host::GroupId;
use crate::optim::Algorithm;
use crate::plateau::{Plateau, PlateauState};
use crate::schedule::Schedule;

/// Parameter groups, the optional schedule, the optional metric-driven reduction and the step
/// counter.
#[derive(Debug, Clone)]
pub struct StepScheduler<O> {
    groups: Vec<O>,
    schedule: Option<Schedule>,
    plateau: Option<(Plateau, PlateauState)>,
    /// The average of the weights and the step count it started after.
    ema: Option<(Ema, u64)>,
    step: u64,
}

/// Checks that `schedule`, if it cycles the momentum, can set it in `config` at every value it
/// takes: the optimizer has a momentum or first beta, both ends are valid for it, and neither
/// adds or drops a state or a kernel flag (SGD's momentum 0).
pub(crate) fn check_cycled<O: Algorithm>(schedule: Option<&Schedule>, config: &O) -> Result<()> {
    let Some(Schedule::OneCycle {
        cycle_momentum: true,
        base_momentum,
        max_momentum,
        ..
    }) = schedule
    else {
        return Ok(());
    };
    for m in [*base_momentum, *max_momentum] {
        let Some(cycled) = config.with_momentum(m) else {
            return Err(Error::InvalidOptions(format!(
                "{} has no momentum or first beta for cycle_momentum to set",
                O::NAME
            )));
        };
        cycled.validate()?;
        if let Some(option) = config.fixed_for_a_run(&cycled) {
            return Err(Error::InvalidOptions(format!(
                "{} keeps {option} for a run, so cycle_momentum cannot set it",
                O::NAME
            )));
        }
        let states = |c: &O| c.kept_states().collect::<Vec<_>>();
        if states(&cycled) != states(config) || cycled.flags() != config.flags() {
            return Err(Error::InvalidOptions(format!(
                "cycle_momentum at {m} would change which states or kernel flags {} keeps: \
                 cycle between momenta above 0, starting from options with momentum",
                O::NAME
            )));
        }
    }
    Ok(())
}

impl<O: Algorithm> StepScheduler<O> {
    /// A scheduler with one parameter group, at step 0, with a constant learning rate.
    pub fn new(config: O) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            groups: vec![config],
            schedule: None,
            plateau: None,
            ema: None,
            step: 0,
        })
    }

    /// Group 0, the group the scheduler was built with.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// Adds a parameter group with its own hyperparameters.
    pub fn add_group(&mut self, config: O) -> Result<GroupId> {
        config.validate()?;
        check_cycled(self.schedule.as_ref(), &config)?;
        self.groups.push(config);
        Ok(GroupId(self.groups.len() - 1))
    }

    /// Sets (or, with `None`, removes) the learning-rate schedule applied to every group's base rate.
    pub fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        if let Some(s) = &schedule {
            if !O::TAKES_SCHEDULE {
                return Err(Error::InvalidOptions(format!(
                    "{} takes no learning-rate schedule: it replaces one (its warm-up is \
                     `warmup_steps`)",
                    O::NAME
                )));
            }
            s.validate()?;
            for config in &self.groups {
                check_cycled(Some(s), config)?;
            }
        }
        self.schedule = schedule;
        Ok(())
    }

    /// Sets (or, with `None`, removes) the metric-driven reduction of the groups' rates, from
    /// its initial state. Its reductions lower each group's base rate, which a schedule, if
    /// set, then scales.
    pub fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        if let Some(p) = &plateau {
            if !O::TAKES_SCHEDULE {
                return Err(Error::InvalidOptions(format!(
                    "{} keeps its learning rate for a run: it takes no plateau reduction",
                    O::NAME
                )));
            }
            p.validate()?;
        }
        self.plateau = plateau.map(|p| (p, p.initial_state()));
        Ok(())
    }

    /// Sets (or removes) the average of the weights, starting with the next step (checked by
    /// the caller).
    pub(crate) fn set_ema(&mut self, ema: Option<Ema>) {
        self.ema = ema.map(|e| (e, self.step));
    }

    /// The average of the weights and the step count it started after, if set.
    pub fn ema(&self) -> Option<(&Ema, u64)> {
        self.ema.as_ref().map(|(e, s)| (e, *s))
    }

    /// The lerp weight of the average's update in the step whose state step count is
    /// `state_step`: 1 (a copy) for its first; 0 without an average.
    pub(crate) fn ema_weight(&self, state_step: u64) -> f32 {
        self.ema.as_ref().map_or(0.0, |(e, start)| {
            e.weight(state_step.saturating_sub(*start))
        })
    }

    /// The metric-driven reduction and where it stands, if set.
    pub fn plateau(&self) -> Option<(&Plateau, &PlateauState)> {
        self.plateau.as_ref().map(|(p, s)| (p, s))
    }

    /// Sets the reduction's state (checked by the caller).
    pub(crate) fn set_plateau_state(&mut self, state: PlateauState) {
        if let Some((_, s)) = &mut self.plateau {
            *s = state;
        }
    }

    /// The schedule, if any.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The parameter groups' hyperparameters.
    pub fn groups(&self) -> &[O] {
        &self.groups
    }

    /// The group's hyperparameters, or [`Error::UnknownGroup`].
    pub fn group(&self, group: GroupId) -> Result<&O> {
        self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))
    }

    /// The learning rate group `group` uses during step `step` (1-based).
    pub fn lr(&self, group: GroupId, step: u64) -> Result<f64> {
        self.group(group)?;
        Ok(self.lr_at(group.0, step))
    }

    /// As [`StepScheduler::lr`] for a group index known to exist (the schedule was validated
    /// when it was set).
    pub(crate) fn lr_at(&self, group: usize, step: u64) -> f64 {
        let base = self.groups[group].lr();
        match &self.schedule {
            None => base,
            Some(s) => s.eval(base, step.saturating_sub(1)),
        }
    }

    /// The learning rate of the next step, for group `group`.
    pub fn next_lr(&self, group: GroupId) -> Result<f64> {
        self.lr(group, self.step.saturating_add(1))
    }

    /// Group `group`'s kernel scalars for step `step` (1-based).
    pub fn scalars(&self, group: GroupId, step: u64) -> Result<O::Scalars> {
        self.group(group)?;
        Ok(self.scalars_at(group.0, step, step))
    }

    /// Group `group`'s kernel scalars at the learning rate of call `lr_step` and the optimizer
    /// state of step `state_step`: they differ once loss scaling has skipped steps, since the
    /// schedule follows the calls and the bias corrections follow the steps taken.
    ///
    /// A schedule that cycles the momentum sets it for call `lr_step` too.
    pub(crate) fn scalars_at(&self, group: usize, lr_step: u64, state_step: u64) -> O::Scalars {
        let config = &self.groups[group];
        let lr = self.lr_at(group, lr_step);
        let cycled = self
            .schedule
            .as_ref()
            .and_then(|s| s.momentum(lr_step.saturating_sub(1)))
            .and_then(|m| config.with_momentum(m));
        cycled.as_ref().unwrap_or(config).scalars(lr, state_step)
    }

    /// Replaces group `group`'s hyperparameters (checked by the caller); returns the old ones.
    pub(crate) fn replace_group(&mut self, group: usize, config: O) -> O {
        std::mem::replace(&mut self.groups[group], config)
    }

    /// Replaces the groups' hyperparameters, the schedule and the step count (checkpoint loading;
    /// the caller has checked that the groups match and validated the schedule).
    pub(crate) fn restore(
        &mut self,
        groups: Vec<O>,
        schedule: Option<Schedule>,
        plateau: Option<(Plateau, PlateauState)>,
        ema: Option<(Ema, u64)>,
        step: u64,
    ) {
        self.groups = groups;
        self.schedule = schedule;
        self.plateau = plateau;
        self.ema = ema;
        self.step = step;
    }

    /// Counts one more step and returns its number (1-based). The count saturates at
    /// `u64::MAX` (checkpoints hold at most `i64::MAX`, so it is never reached in practice).
    pub fn advance(&mut self) -> u64 {
        self.step = self.step.saturating_add(1);
        self.step
    }
}
