//! The controls of a running training loop that a checkpoint carries beside the optimizer's
//! state: the plateau reduction's options and where it stands, gradient accumulation's count
//! of micro-batches, and the average of the weights' options.
//!
//! Saved as one JSON metadata entry, `training_loop`, absent when no control is set; the
//! running sums of accumulated gradients, while a step is part way, as tensors
//! `loop.I.grad_sum`, and the averaged weights as `loop.I.ema`.

use serde::{Deserialize, Serialize};

use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::plateau::{Plateau, PlateauState};

/// A plateau reduction as saved: its options and its state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlateau {
    /// `ReduceLROnPlateau`'s options.
    pub options: Plateau,
    /// The best metric, the bad epochs and the cooldown left.
    pub state: PlateauState,
}

/// Gradient accumulation: a step every `every` calls, and the calls counted toward the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accumulation {
    /// Micro-batches per optimizer step (1: every call steps).
    pub every: u32,
    /// Micro-batches summed since the last step, below `every`.
    pub pending: u32,
}

impl Default for Accumulation {
    fn default() -> Self {
        Self {
            every: 1,
            pending: 0,
        }
    }
}

/// What one call does under accumulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MicroBatch {
    /// Starts the sum with this gradient / k.
    First,
    /// Adds this gradient / k to the sum.
    Add,
    /// Adds this gradient / k and steps with the sum.
    Last,
}

impl MicroBatch {
    /// The `MODE` override of `shaders/accumulate.wgsl`.
    pub const fn mode(self) -> u32 {
        match self {
            MicroBatch::First => 0,
            MicroBatch::Add => 1,
            MicroBatch::Last => 2,
        }
    }
}

impl Accumulation {
    /// Whether calls accumulate (more than one per step).
    pub fn is_on(&self) -> bool {
        self.every > 1
    }

    /// What the next call does, or `None` when every call steps.
    pub(crate) fn next(&self) -> Option<MicroBatch> {
        if !self.is_on() {
            None
        } else if self.pending + 1 == self.every {
            Some(MicroBatch::Last)
        } else if self.pending == 0 {
            Some(MicroBatch::First)
        } else {
            Some(MicroBatch::Add)
        }
    }

    /// Counts one call.
    pub(crate) fn advance(&mut self) {
        if self.is_on() {
            self.pending = (self.pending + 1) % self.every;
        }
    }

    /// Checks a count of micro-batches per step: at least 1.
    pub(crate) fn check_every(every: u32) -> Result<()> {
        if every == 0 {
            return Err(Error::InvalidHyperparameter {
                name: "accumulate",
                value: 0.0,
                reason: "must be at least 1 micro-batch per step",
            });
        }
        Ok(())
    }
}

/// The running-loop controls of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopControl {
    /// The plateau reduction, when one is set.
    pub plateau: Option<SavedPlateau>,
    /// Gradient accumulation, when on.
    pub accumulation: Option<Accumulation>,
    /// The average of the weights, when kept.
    pub ema: Option<SavedEma>,
}

/// The average of the weights as saved: its options, the step count it started after, and
/// whether the parameters held it (swapped in for evaluation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedEma {
    /// Decay and warm-up.
    pub options: Ema,
    /// The step count when it was set: its first update is the step after.
    pub start: u64,
    /// Saved with the average swapped into the parameters (and the trained weights in the
    /// average's buffers).
    pub swapped: bool,
    /// The parameters whose average was still to be copied from them at the next step.
    #[serde(default)]
    pub fresh: Vec<usize>,
}

impl LoopControl {
    /// Whether no control is set (nothing to save).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the saved options and that the state fits them.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(p) = &self.plateau {
            p.options.validate()?;
            p.options.check_state(&p.state)?;
        }
        if let Some(e) = &self.ema {
            e.options.validate()?;
        }
        if let Some(a) = &self.accumulation {
            Accumulation::check_every(a.every)?;
            if a.pending >= a.every {
                return Err(Error::CheckpointMismatch(format!(
                    "{} micro-batches pending of {} per step",
                    a.pending, a.every
                )));
            }
        }
        Ok(())
    }
}

/// The name of the running gradient sum among a parameter's loop tensors.
pub(crate) const GRAD_SUM: &str = "grad_sum";
/// The name of the averaged weights among a parameter's loop tensors.
pub(crate) const EMA: &str = "ema";

/// Checks that parameter `index`, of `len` values, saved exactly the loop tensors `control`
/// needs, by name: its averaged weights while an average is kept, its gradient sum while
/// micro-batches are pending.
pub(crate) fn check_loop_tensors(
    control: &LoopControl,
    index: usize,
    len: usize,
    tensors: &[(String, Vec<f32>)],
) -> Result<()> {
    let pending = control.accumulation.is_some_and(|a| a.pending > 0);
    let want: Vec<&str> = [(control.ema.is_some(), EMA), (pending, GRAD_SUM)]
        .into_iter()
        .filter_map(|(kept, name)| kept.then_some(name))
        .collect();
    let have: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    if want != have {
        return Err(Error::CheckpointMismatch(format!(
            "parameter {index} has loop tensors {have:?}, the saved controls need {want:?}"
        )));
    }
    if let Some((name, v)) = tensors.iter().find(|(_, v)| v.len() != len) {
        return Err(Error::CheckpointMismatch(format!(
            "loop tensor {name} of parameter {index} holds {} values, the parameter {len}",
            v.len()
        )));
    }
    Ok(())
}
