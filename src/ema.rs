//! An exponential moving average of the weights: `torch.optim.swa_utils.AveragedModel` with
//! `get_ema_multi_avg_fn(decay)`, optax's `ema`, and optionally timm's warm-up of the decay.
//!
//! The average is updated inside the update kernel, which already holds each new parameter in
//! a register: 8 bytes per parameter more (its read and write), not another pass. Its first
//! update copies the parameters (`AveragedModel`'s first `update_parameters`); each later one
//! is `ema = lerp(ema, param, 1 - decay)` with torch's `lerp` formula. The host computes each
//! update's weight `1 - decay` in f64 and rounds it to f32 once, as PyTorch passes the Python
//! float to `_foreach_lerp_`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// timm's warm-up of the decay (`ModelEmaV3` with `use_warmup`): update `n` (1-based) uses
/// `1 - (1 + (n - 1) / gamma)^-power`, clamped to `[min_decay, decay]`, so early averages
/// follow the weights closely. The first update still copies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmaWarmup {
    /// timm's `warmup_gamma` (> 0; 1.0).
    pub gamma: f64,
    /// timm's `warmup_power` (> 0; 2/3).
    pub power: f64,
    /// timm's `min_decay`, in [0, decay] (0).
    pub min_decay: f64,
}

impl Default for EmaWarmup {
    fn default() -> Self {
        Self {
            gamma: 1.0,
            power: 2.0 / 3.0,
            min_decay: 0.0,
        }
    }
}

/// The average's options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ema {
    /// The decay, in [0, 1] (`AveragedModel`'s `get_ema_multi_avg_fn(decay)`; 0.999 there).
    pub decay: f64,
    /// timm's warm-up of the decay; `None` (torch's, optax's) uses `decay` from the second
    /// update on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<EmaWarmup>,
}

impl Ema {
    /// An average with `decay` and no warm-up.
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            warmup: None,
        }
    }

    /// Checks the decay and the warm-up's options.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value, reason| {
            Err(Error::InvalidHyperparameter {
                name,
                value,
                reason,
            })
        };
        if !(0.0..=1.0).contains(&self.decay) {
            return invalid("decay", self.decay, "must be in [0, 1]");
        }
        if let Some(w) = &self.warmup {
            for (name, v) in [("gamma", w.gamma), ("power", w.power)] {
                if !(v.is_finite() && v > 0.0) {
                    return invalid(name, v, "must be finite and > 0");
                }
            }
            if !(0.0..=self.decay).contains(&w.min_decay) {
                return invalid("min_decay", w.min_decay, "must be in [0, decay]");
            }
        }
        Ok(())
    }

    /// The decay of update `n` (1-based): 0 for the first, which copies.
    pub fn decay_at(&self, n: u64) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        match &self.warmup {
            None => self.decay,
            Some(w) => {
                let d = 1.0 - (1.0 + (n - 1) as f64 / w.gamma).powf(-w.power);
                d.min(self.decay).max(w.min_decay)
            }
        }
    }

    /// The lerp weight `1 - decay` of update `n`, rounded to f32 once; exactly 1 for the first
    /// update, which the kernel and the CPU reference take as a copy.
    pub fn weight(&self, n: u64) -> f32 {
        if n <= 1 {
            1.0
        } else {
            (1.0 - self.decay_at(n)) as f32
        }
    }
}

/// One update of the average `ema` toward `param`, element by element, as the kernels do:
/// a copy at weight 1, else torch's `lerp`.
pub(crate) fn update(ema: &mut [f32], param: &[f32], weight: f32) {
    for (e, &p) in ema.iter_mut().zip(param) {
        *e = if weight == 1.0 {
            p
        } else {
            crate::cpu::torch_lerp(*e, p, weight)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_copies_and_warmup_follows_timm() {
        let e = Ema::new(0.9);
        assert_eq!(e.weight(1), 1.0);
        assert_eq!(e.weight(2), (1.0f64 - 0.9) as f32);
        let w = Ema {
            decay: 0.9999,
            warmup: Some(EmaWarmup::default()),
        };
        // timm: step 1 → decay 1 - 2^(-2/3).
        assert!((w.decay_at(2) - (1.0 - 2f64.powf(-2.0 / 3.0))).abs() < 1e-15);
        assert!(w.decay_at(1_000_000_000) <= 0.9999);
        assert!(Ema::new(1.5).validate().is_err());
    }
}
