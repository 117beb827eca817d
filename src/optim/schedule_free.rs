use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::abi::uniforms::ScheduleFreeScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::memo::{Memo, running};
use crate::optim::{Algorithm, Pass, States, bias_correction};

/// Schedule-Free AdamW, as `schedulefree.AdamWScheduleFree`.
///
/// The parameters hold the training point y; the optimizer keeps z (the base iterate, started
/// as a copy of the parameter at its first step) and the second moment v. At step `k + 1`:
///
/// ```text
/// lrₖ  = lr · min(1, (k + 1) / warmup_steps)        (the optimizer's own warm-up)
/// lr_max = max(lr_max, lrₖ);  wₖ = (k + 1)^r · lr_max^weight_lr_power;  W += wₖ;  c = wₖ / W
/// v ← β₂ · v + (1 - β₂) · g²
/// u = g / (√(v / (1 - β₂ᵏ⁺¹)) + eps) + weight_decay · y
/// y ← lerp(y, z, c) + lrₖ · (β₁ · (1 - c) - 1) · u
/// z ← z - lrₖ · u
/// ```
///
/// The evaluation point is `x = lerp(y, z, 1 - 1/β₁)`: [`crate::GpuOptimizer::eval`] writes
/// it into the parameters, as `optimizer.eval()` does, and [`crate::GpuOptimizer::train`]
/// brings y back with `lerp(x, z, 1 - β₁)`. Every scalar (the warm-up, `lr_max`, the weight
/// sum, `c`) is computed on the host in f64, as schedulefree computes them in Python, and
/// rounded to f32 once; they are functions of the step, so nothing but z and v is stored.
/// Defaults are schedulefree's: `lr` 2.5e-3, `betas` (0.9, 0.999), `eps` 1e-8,
/// `weight_decay` 0, `warmup_steps` 0, `r` 0, `weight_lr_power` 2. The learning rate takes no
/// [`crate::Schedule`]: the method replaces one (setting a schedule is an error). State: `z`,
/// `exp_avg_sq`.
///
/// Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleFreeAdamW {
    /// Learning rate after the warm-up (≥ 0).
    pub lr: f64,
    /// The interpolation between the average x and z (β₁), and the decay of the second
    /// moment (β₂), each in [0, 1) (β₁ > 0: the evaluation point divides by it).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Weight decay, evaluated at y (≥ 0).
    pub weight_decay: f64,
    /// Steps of linear warm-up of the learning rate.
    pub warmup_steps: u64,
    /// Power of the step in the averaging weights (≥ 0).
    pub r: f64,
    /// Power of the largest learning rate so far in the averaging weights (≥ 0).
    pub weight_lr_power: f64,
}

impl Default for ScheduleFreeAdamW {
    fn default() -> Self {
        Self {
            lr: 2.5e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            r: 0.0,
            weight_lr_power: 2.0,
        }
    }
}

static WEIGHT_SUMS: Memo<(f64, f64)> = Mutex::new(Vec::new());

impl ScheduleFreeAdamW {
    /// The warmed-up learning rate of step `t` (1-based) from the base rate `lr`.
    fn warmed(&self, lr: f64, t: u64) -> f64 {
        if t - 1 < self.warmup_steps {
            lr * (t as f64 / self.warmup_steps as f64)
        } else {
            lr
        }
    }

    /// The averaging weight of step `t` given `lr_max` after it.
    fn weight(&self, lr_max: f64, t: u64) -> f64 {
        (t as f64).powf(self.r) * lr_max.powf(self.weight_lr_power)
    }

    /// `(lr_max, weight_sum)` after `step` steps at base rate `lr`, as schedulefree
    /// accumulates them (`lr_max` starts at -1, the sum at 0), memoized.
    fn running(&self, lr: f64, step: u64) -> (f64, f64) {
        let key = vec![
            lr.to_bits(),
            self.warmup_steps,
            self.r.to_bits(),
            self.weight_lr_power.to_bits(),
        ];
        running(&WEIGHT_SUMS, key, (-1.0, 0.0), step, |(lr_max, sum), t| {
            let lr_max = self.warmed(lr, t).max(lr_max);
            (lr_max, sum + self.weight(lr_max, t))
        })
    }
}

impl Algorithm for ScheduleFreeAdamW {
    const NAME: &'static str = "schedule_free_adamw";
    const KERNEL: Kernel = Kernel::single_pass(
        "schedule_free_adamw",
        include_str!("../../shaders/schedule_free_adamw.wgsl"),
    );
    const STATE_NAMES: &'static [&'static str] = &["z", "exp_avg_sq"];
    const EVAL_MODE: bool = true;
    const MAX_STEPS: u64 = crate::optim::memo::MAX_STEPS;
    const TAKES_SCHEDULE: bool = false;
    type Scalars = ScheduleFreeScalars;

    fn fixed_for_a_run(&self, new: &Self) -> Option<&'static str> {
        if self.lr != new.lr {
            Some("lr")
        } else if self.warmup_steps != new.warmup_steps {
            Some("warmup_steps")
        } else if self.r != new.r {
            Some("r")
        } else if self.weight_lr_power != new.weight_lr_power {
            Some("weight_lr_power")
        } else {
            None
        }
    }

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("r", self.r)?;
        non_negative("weight_lr_power", self.weight_lr_power)?;
        unit_interval("betas[1]", self.betas.1)?;
        unit_interval("betas[0]", self.betas.0)?;
        if self.betas.0 == 0.0 {
            return Err(crate::Error::InvalidHyperparameter {
                name: "betas[0]",
                value: 0.0,
                reason: "must be in (0, 1): the evaluation point divides by it",
            });
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot < 2
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }

    fn scalars(&self, lr: f64, step: u64) -> ScheduleFreeScalars {
        let (beta1, beta2) = self.betas;
        let t = step.max(1);
        let (lr_max, weight_sum) = self.running(lr, t);
        let weight = self.weight(lr_max, t);
        // Python's weight / weight_sum raises ZeroDivisionError at lr 0; schedulefree then
        // takes 0.
        let ckp1 = if weight_sum == 0.0 {
            0.0
        } else {
            weight / weight_sum
        };
        let lr = self.warmed(lr, t);
        ScheduleFreeScalars {
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            bias_correction2: bias_correction(beta2, t) as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            ckp1: ckp1 as f32,
            y_coef: (lr * (beta1 * (1.0 - ckp1) - 1.0)) as f32,
            lr: lr as f32,
            eval_weight: (1.0 - 1.0 / beta1) as f32,
            train_weight: (1.0 - beta1) as f32,
            _pad: [0.0; 2],
        }
    }

    fn cpu_step(&self, s: &ScheduleFreeScalars, param: &mut [f32], grad: &[f32], state: States) {
        let [z, exp_avg_sq, _] = state;
        crate::cpu::schedule_free_adamw(s, param, grad, z, exp_avg_sq);
    }

    fn cpu_pass(&self, pass: Pass, s: &ScheduleFreeScalars, param: &mut [f32], state: States) {
        let [z, _, _] = state;
        crate::cpu::schedule_free_pass(s, pass, param, z);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_sums_are_schedulefrees_sequential_sums() {
        let config = ScheduleFreeAdamW {
            warmup_steps: 10,
            r: 0.5,
            ..Default::default()
        };
        let (mut lr_max, mut sum) = (-1.0f64, 0.0f64);
        let mut want = vec![(lr_max, sum)];
        for k in 0..300u64 {
            let sched = if k < 10 { (k + 1) as f64 / 10.0 } else { 1.0 };
            lr_max = (config.lr * sched).max(lr_max);
            sum += ((k + 1) as f64).powf(0.5) * lr_max.powf(2.0);
            want.push((lr_max, sum));
        }
        for step in [300u64, 1, 9, 10, 11, 63, 64, 65, 200, 129] {
            assert_eq!(config.running(config.lr, step), want[step as usize]);
        }
        let s = config.scalars(config.lr, 1);
        assert_eq!(s.ckp1, 1.0, "the first step's average is z");
        assert_eq!(
            ScheduleFreeAdamW { lr: 0.0, ..config }.scalars(0.0, 3).ckp1,
            0.0
        );
    }
}
