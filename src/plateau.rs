//! A metric-driven learning rate: `torch.optim.lr_scheduler.ReduceLROnPlateau`.
//!
//! Unlike the [`crate::Schedule`]s, which are pure functions of the step, this one depends on
//! the metrics a caller reports (a validation loss after each epoch, say), so it keeps state:
//! the best metric so far, the epochs since it improved and the cooldown left. The optimizers
//! hold it beside their schedule, checkpoints save it, and a reduction lowers each group's
//! base learning rate on the host, as PyTorch's assignment to `param_group['lr']` does: a
//! [`crate::Schedule`] set as well then scales the lowered rate.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, non_negative, unit_interval};

/// Whether a lower or a higher metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateauMode {
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` measures a significant improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// Better than `best · (1 ∓ threshold)`.
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// `ReduceLROnPlateau`'s options, under PyTorch's names and with its defaults.
///
/// After each reported metric: if it beats the best so far by `threshold` (see
/// [`ThresholdMode`]), it becomes the best and the count of bad epochs restarts; otherwise one
/// more bad epoch is counted. During a cooldown, bad epochs are not counted. When more than
/// `patience` bad epochs have passed, every group's rate becomes `max(lr · factor, min_lr)`
/// (unless that changes it by no more than `eps`), and a cooldown of `cooldown` epochs starts.
/// A NaN metric is never better, as in PyTorch: it counts as a bad epoch.
///
/// One `min_lr` serves every group (PyTorch also takes a list).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plateau {
    /// Whether lower or higher metrics are better (`min`).
    pub mode: PlateauMode,
    /// The factor a reduction multiplies the rate by, in [0, 1) (0.1).
    pub factor: f64,
    /// Bad epochs tolerated before a reduction (10).
    pub patience: u64,
    /// The improvement that counts, ≥ 0 (1e-4).
    pub threshold: f64,
    /// Relative or absolute `threshold` (`rel`).
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction during which bad epochs are not counted (0).
    pub cooldown: u64,
    /// The lowest rate a reduction sets, ≥ 0 (0).
    pub min_lr: f64,
    /// A reduction smaller than this is skipped, ≥ 0 (1e-8).
    pub eps: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// Where a [`Plateau`] stands: what PyTorch's scheduler keeps between calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauState {
    /// The best metric so far (±∞ before the first; written as text in checkpoints, since JSON
    /// has no infinities).
    #[serde(with = "f64_text")]
    pub best: f64,
    /// Bad epochs since the best, or since the last reduction.
    pub num_bad_epochs: u64,
    /// Epochs of cooldown left.
    pub cooldown_counter: u64,
    /// Metrics reported so far.
    pub last_epoch: u64,
}

impl Plateau {
    /// Parses and validates the options from their JSON form, which may carry the parity
    /// format's `"name": "plateau"`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let mut v = value.clone();
        if let Some(map) = v.as_object_mut()
            && map.get("name").and_then(|n| n.as_str()) == Some("plateau")
        {
            map.remove("name");
        }
        let plateau: Plateau = serde_json::from_value(v)
            .map_err(|e| Error::InvalidOptions(format!("plateau {value}: {e}")))?;
        plateau.validate()?;
        Ok(plateau)
    }

    /// Checks every option against PyTorch's ranges.
    pub fn validate(&self) -> Result<()> {
        unit_interval("factor", self.factor)?;
        non_negative("threshold", self.threshold)?;
        non_negative("min_lr", self.min_lr)?;
        non_negative("eps", self.eps)?;
        Ok(())
    }

    /// The state before any metric: the worst possible best, nothing counted.
    pub fn initial_state(&self) -> PlateauState {
        PlateauState {
            best: match self.mode {
                PlateauMode::Min => f64::INFINITY,
                PlateauMode::Max => f64::NEG_INFINITY,
            },
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
        }
    }

    /// Whether `metric` beats `best` by the threshold (`is_better`).
    fn is_better(&self, metric: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => metric < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => metric < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => metric > best * (self.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => metric > best + self.threshold,
        }
    }

    /// `state` after one more `metric`, and whether the rates are reduced now (PyTorch's
    /// `step(metrics)`).
    pub fn observe(&self, state: PlateauState, metric: f64) -> (PlateauState, bool) {
        let mut s = state;
        s.last_epoch = s.last_epoch.saturating_add(1);
        if self.is_better(metric, s.best) {
            s.best = metric;
            s.num_bad_epochs = 0;
        } else {
            s.num_bad_epochs = s.num_bad_epochs.saturating_add(1);
        }
        if s.cooldown_counter > 0 {
            s.cooldown_counter -= 1;
            s.num_bad_epochs = 0;
        }
        let reduce = s.num_bad_epochs > self.patience;
        if reduce {
            s.cooldown_counter = self.cooldown;
            s.num_bad_epochs = 0;
        }
        (s, reduce)
    }

    /// The rate a reduction sets for a group at `lr`, or `None` when it would change it by no
    /// more than `eps` (`_reduce_lr`).
    pub fn reduced(&self, lr: f64) -> Option<f64> {
        let new = (lr * self.factor).max(self.min_lr);
        (lr - new > self.eps).then_some(new)
    }

    /// Checks a saved state: counts within the options' and a best that can be one.
    pub(crate) fn check_state(&self, state: &PlateauState) -> Result<()> {
        if state.best.is_nan() || state.cooldown_counter > self.cooldown {
            return Err(Error::CheckpointMismatch(format!(
                "plateau state {state:?} cannot come from the options {self:?}"
            )));
        }
        Ok(())
    }
}

/// An f64 as its shortest round-tripping text (`inf`, `-inf` included).
mod f64_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| D::Error::custom(format!("{text:?} is not a number: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's sequence for patience 2, cooldown 1: the rate drops after three bad epochs,
    /// the cooldown swallows the next bad one, and improvement restarts the count.
    #[test]
    fn patience_cooldown_and_threshold() {
        let p = Plateau {
            patience: 2,
            cooldown: 1,
            factor: 0.5,
            ..Plateau::default()
        };
        let mut s = p.initial_state();
        let mut reductions = Vec::new();
        for (epoch, metric) in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.49999, 0.4]
            .into_iter()
            .enumerate()
        {
            let (next, reduce) = p.observe(s, metric);
            s = next;
            if reduce {
                reductions.push(epoch);
            }
        }
        // Bad epochs 1, 2, 3 → reduce at epoch 3; cooldown at 4; bad 5, 6 → no reduction yet.
        assert_eq!(reductions, vec![3]);
        assert_eq!(s.best, 0.4);
        assert_eq!(s.num_bad_epochs, 0);
        assert_eq!(p.reduced(1.0), Some(0.5));
        let floor = Plateau { min_lr: 0.3, ..p };
        assert_eq!(floor.reduced(0.4), Some(0.3));
        assert_eq!(floor.reduced(0.3), None);
        // NaN never improves.
        let (nan, _) = p.observe(p.initial_state(), f64::NAN);
        assert_eq!(nan.num_bad_epochs, 1);
    }

    #[test]
    fn state_round_trips_with_infinities() {
        let p = Plateau::default();
        let s = p.initial_state();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"inf\""), "{text}");
        let back: PlateauState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(Plateau { factor: 1.0, ..p }.validate().is_err());
    }
}
