//! The gradient stage's settings and rules, shared by both backends: global-norm clipping
//! (`torch.nn.utils.clip_grad_norm_`) and loss scaling (`torch.amp.GradScaler`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernel::SCALAR_CANDIDATES;

/// Loss scaling as `torch.amp.GradScaler`; `Default` is GradScaler's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScale {
    /// The scale to start from (65536).
    pub init_scale: f64,
    /// Factor the scale grows by after `growth_interval` steps without inf or NaN (2).
    pub growth_factor: f64,
    /// Factor the scale shrinks by after a step with inf or NaN (0.5).
    pub backoff_factor: f64,
    /// Steps without inf or NaN before the scale grows (2000).
    pub growth_interval: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl LossScale {
    /// Checks GradScaler's ranges: a positive finite scale, growth > 1, backoff in (0, 1),
    /// interval > 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, reason| {
            Err(Error::InvalidHyperparameter {
                name,
                value,
                reason,
            })
        };
        // Checked as the f32 values the device computes with.
        let (init, growth, backoff) = (
            self.init_scale as f32,
            self.growth_factor as f32,
            self.backoff_factor as f32,
        );
        if !(init.is_finite() && init > 0.0) {
            return bad(
                "init_scale",
                self.init_scale,
                "must be finite and > 0 in f32",
            );
        }
        if !(growth.is_finite() && growth > 1.0) {
            return bad(
                "growth_factor",
                self.growth_factor,
                "must be finite and > 1 in f32",
            );
        }
        if !(backoff > 0.0 && backoff < 1.0) {
            return bad(
                "backoff_factor",
                self.backoff_factor,
                "must be in (0, 1) in f32",
            );
        }
        if self.growth_interval == 0 || u64::from(self.growth_interval) >= F32_EXACT {
            return bad(
                "growth_interval",
                f64::from(self.growth_interval),
                "must be in [1, 2^24), which the device counts exactly",
            );
        }
        Ok(())
    }
}

/// GradScaler's state, as [`crate::GpuOptimizer::read_loss_scale`] reads it from the device
/// and [`crate::CpuOptimizer::loss_scale`] keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScaleState {
    /// The scale for the next step's loss.
    pub scale: f32,
    /// Steps without inf or NaN since the scale last changed.
    pub growth_tracker: u64,
    /// Steps skipped so far for inf or NaN gradients.
    pub skipped_steps: u64,
    /// Whether the last step was skipped.
    pub last_step_skipped: bool,
}

/// Counts the device keeps as f32 are exact below this.
const F32_EXACT: u64 = 1 << 24;

impl LossScaleState {
    /// The state before the first step.
    pub fn initial(config: &LossScale) -> Self {
        Self {
            scale: config.init_scale as f32,
            growth_tracker: 0,
            skipped_steps: 0,
            last_step_skipped: false,
        }
    }

    /// Checks a state given from outside (a checkpoint): a positive finite scale, and counts
    /// the device can hold exactly (below 2²⁴) with the tracker below the growth interval.
    pub fn validate(&self, config: &LossScale) -> Result<()> {
        let bad = |name, value: f64, reason| {
            Err(Error::InvalidHyperparameter {
                name,
                value,
                reason,
            })
        };
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad("scale", f64::from(self.scale), "must be finite and > 0");
        }
        if self.growth_tracker >= u64::from(config.growth_interval) {
            return bad(
                "growth_tracker",
                self.growth_tracker as f64,
                "must be below growth_interval",
            );
        }
        if self.skipped_steps >= F32_EXACT {
            return bad(
                "skipped_steps",
                self.skipped_steps as f64,
                "must be below 2^24",
            );
        }
        Ok(())
    }

    /// `torch._amp_update_scale_` after a step whose gradients held an inf or NaN
    /// (`found_inf`) or not; mirrors `finalize` in `shaders/grad_norm.wgsl`.
    pub(crate) fn update(&mut self, config: &LossScale, found_inf: bool) {
        if found_inf {
            self.scale *= config.backoff_factor as f32;
            self.growth_tracker = 0;
            self.skipped_steps += 1;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker >= u64::from(config.growth_interval) {
                self.scale *= config.growth_factor as f32;
                self.growth_tracker = 0;
            }
        }
        self.last_step_skipped = found_inf;
    }

    /// The skips the step scalars tell apart: at most `SCALAR_CANDIDATES - 1`, as the kernels'
    /// `candidate()`.
    pub(crate) fn candidate(&self) -> u64 {
        self.skipped_steps.min(u64::from(SCALAR_CANDIDATES) - 1)
    }
}

/// The optimizer state's step count at call `t` after `skipped` skipped steps: the bias
/// corrections follow the steps taken, the schedule follows the calls.
pub(crate) fn state_step(t: u64, skipped: u64) -> u64 {
    t.saturating_sub(skipped).max(1)
}

/// What the gradient stage does each step, the same on both backends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GradStage {
    /// Global-norm clipping threshold, when on.
    pub max_norm: Option<f32>,
    /// Loss scaling's settings, when on.
    pub loss_scale: Option<LossScale>,
}

impl GradStage {
    /// Whether any gradient pass runs.
    pub fn is_on(&self) -> bool {
        self.max_norm.is_some() || self.loss_scale.is_some()
    }

    /// Step-scalar candidates uploaded per step: one per number of skips under loss scaling.
    pub fn candidates(&self) -> usize {
        if self.loss_scale.is_some() {
            SCALAR_CANDIDATES as usize
        } else {
            1
        }
    }
}

/// Checks a clipping threshold (`None` turns clipping off) and rounds it to f32 once.
pub(crate) fn validate_max_norm(max_norm: Option<f64>) -> Result<Option<f32>> {
    match max_norm {
        // torch's max_norm = inf: the norm is computed and logged, nothing is clipped.
        Some(m) if m == f64::INFINITY => Ok(Some(f32::INFINITY)),
        Some(m) if !((m as f32).is_finite() && m as f32 > 0.0) => {
            Err(Error::InvalidHyperparameter {
                name: "max_norm",
                value: m,
                reason: "must be > 0 and finite in f32, or infinite (log the norm only)",
            })
        }
        m => Ok(m.map(|m| m as f32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_backs_off_on_inf_and_grows_after_the_interval() {
        let config = LossScale {
            growth_interval: 2,
            ..Default::default()
        };
        let mut s = LossScaleState::initial(&config);
        s.update(&config, true);
        assert_eq!(
            (s.scale, s.skipped_steps, s.last_step_skipped),
            (32768.0, 1, true)
        );
        s.update(&config, false);
        s.update(&config, false);
        assert_eq!(
            (s.scale, s.growth_tracker, s.last_step_skipped),
            (65536.0, 0, false)
        );
        assert_eq!(s.candidate(), 1);
        assert_eq!(state_step(5, s.candidate()), 4);
        assert_eq!(state_step(1, 3), 1);
    }

    #[test]
    fn bad_states_and_thresholds_name_the_value() {
        let config = LossScale::default();
        let mut s = LossScaleState::initial(&config);
        s.scale = f32::NAN;
        assert!(
            s.validate(&config)
                .unwrap_err()
                .to_string()
                .contains("scale")
        );
        let s = LossScaleState {
            growth_tracker: 2000,
            ..LossScaleState::initial(&config)
        };
        assert!(
            s.validate(&config)
                .unwrap_err()
                .to_string()
                .contains("2000")
        );
        assert!(validate_max_norm(Some(-1.0)).is_err());
        assert!(validate_max_norm(Some(1e39)).is_err());
        assert!(validate_max_norm(Some(1e-50)).is_err());
        let huge = LossScale {
            init_scale: 1e39,
            ..Default::default()
        };
        assert!(huge.validate().is_err());
        let never = LossScale {
            growth_interval: 1 << 24,
            ..Default::default()
        };
        assert!(never.validate().is_err());
        assert_eq!(validate_max_norm(Some(1.0)).unwrap(), Some(1.0));
    }
}
