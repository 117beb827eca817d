//! The host-side step scheduler: the step counter and every step-dependent scalar.
//!
//! Kernels never see the step number. For each step the scheduler computes, in f64, the
//! scheduled learning rate of every parameter group and from it the optimizer's scalars (bias
//! corrections, RAdam's rectification, Adagrad's decayed rate), which the GPU optimizer writes
//! into its per-step scalar tables and the CPU reference consumes directly. Both optimizers own
//! one, so CPU-vs-GPU tests compare kernel arithmetic only.

use crate::error::{Error, Result};
use crate::host::GroupId;
use crate::optim::Algorithm;
use crate::schedule::Schedule;

/// Parameter groups, the optional schedule and the step counter.
#[derive(Debug, Clone)]
pub struct StepScheduler<O> {
    groups: Vec<O>,
    schedule: Option<Schedule>,
    step: u64,
}

impl<O: Algorithm> StepScheduler<O> {
    /// A scheduler with one parameter group, at step 0, with a constant learning rate.
    pub fn new(config: O) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            groups: vec![config],
            schedule: None,
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
        }
        self.schedule = schedule;
        Ok(())
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
    pub(crate) fn scalars_at(&self, group: usize, lr_step: u64, state_step: u64) -> O::Scalars {
        self.groups[group].scalars(self.lr_at(group, lr_step), state_step)
    }

    /// Replaces group `group`'s hyperparameters (checked by the caller); returns the old ones.
    pub(crate) fn replace_group(&mut self, group: usize, config: O) -> O {
        std::mem::replace(&mut self.groups[group], config)
    }

    /// Replaces the groups' hyperparameters, the schedule and the step count (checkpoint loading;
    /// the caller has checked that the groups match and validated the schedule).
    pub(crate) fn restore(&mut self, groups: Vec<O>, schedule: Option<Schedule>, step: u64) {
        self.groups = groups;
        self.schedule = schedule;
        self.step = step;
    }

    /// Counts one more step and returns its number (1-based). The count saturates at
    /// `u64::MAX` (checkpoints hold at most `i64::MAX`, so it is never reached in practice).
    pub fn advance(&mut self) -> u64 {
        self.step = self.step.saturating_add(1);
        self.step
    }
}
