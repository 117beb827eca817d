use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::abi::uniforms::NAdamScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::memo::{Memo, running};
use crate::optim::{Algorithm, States, bias_correction};

/// NAdam (Adam with Nesterov momentum), as `torch.optim.NAdam`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                          if maximize
/// p ← p · (1 - lr · weight_decay)                 if decoupled_weight_decay
/// g ← g + weight_decay · p                        otherwise
/// μₜ = β₁ · (1 - ½ · 0.96^(t · momentum_decay))   (and μₜ₊₁ likewise)
/// Πₜ = Πₜ₋₁ · μₜ                                  (in f32, as PyTorch's `mu_product` tensor)
/// m ← m + (1 - β₁) · (g - m)                      (torch.lerp)
/// v ← β₂ · v + (1 - β₂) · g²
/// d = √(v / (1 - β₂ᵗ)) + eps
/// p ← p - lr · (1 - μₜ) / (1 - Πₜ) · g / d
/// p ← p - lr · μₜ₊₁ / (1 - Πₜ · μₜ₊₁) · m / d
/// ```
///
/// Defaults are PyTorch's: `lr` 2e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0,
/// `momentum_decay` 4e-3, `decoupled_weight_decay` false, `maximize` false. State: `exp_avg`,
/// `exp_avg_sq`. PyTorch keeps `mu_product` as an f32 tensor per parameter; all parameters
/// step together here, so it is a function of the step, recomputed on the host exactly as
/// PyTorch accumulates it (each product rounded to f32) and not stored. The two updates of
/// the parameter are applied one after the other, each rounded, as PyTorch's two `addcdiv_`.
///
/// Dozat, "Incorporating Nesterov Momentum into Adam", 2016.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NAdam {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay of the first (β₁) and second (β₂) moments, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Weight decay (≥ 0): an L2 penalty added to the gradient, or decoupled.
    pub weight_decay: f64,
    /// How fast the momentum schedule μₜ approaches β₁ (≥ 0).
    pub momentum_decay: f64,
    /// Decay the parameter by `lr · weight_decay` (AdamW's way) instead of adding the L2
    /// penalty to the gradient.
    pub decoupled_weight_decay: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for NAdam {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

impl NAdam {
    /// μ at step `t`, in f64 as PyTorch computes it.
    fn mu(&self, t: f64) -> f64 {
        self.betas.0 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay))
    }
}

static MU_PRODUCTS: Memo<f32> = Mutex::new(Vec::new());

/// PyTorch's `mu_product` after `step` steps: starting at 1, `mu_product *= μₜ` on an f32
/// tensor each step (μₜ rounded to f32, the product rounded to f32), memoized.
fn mu_product(config: &NAdam, step: u64) -> f32 {
    let key = vec![config.betas.0.to_bits(), config.momentum_decay.to_bits()];
    running(&MU_PRODUCTS, key, 1.0, step, |product, t| {
        product * config.mu(t as f64) as f32
    })
}

impl Algorithm for NAdam {
    const NAME: &'static str = "nadam";
    const KERNEL: Kernel = Kernel::single_pass("nadam", include_str!("../../shaders/nadam.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    const MAX_STEPS: u64 = crate::optim::memo::MAX_STEPS;
    type Scalars = NAdamScalars;

    fn fixed_for_a_run(&self, new: &Self) -> Option<&'static str> {
        if self.betas.0 != new.betas.0 {
            Some("betas[0]")
        } else if self.momentum_decay != new.momentum_decay {
            Some("momentum_decay")
        } else {
            None
        }
    }

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum_decay", self.momentum_decay)?;
        unit_interval("betas[0]", self.betas.0)?;
        unit_interval("betas[1]", self.betas.1)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn with_momentum(&self, momentum: f64) -> Option<Self> {
        Some(Self {
            betas: (momentum, self.betas.1),
            ..*self
        })
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot < 2
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> NAdamScalars {
        let (beta1, beta2) = self.betas;
        let t = step as f64;
        let (mu, mu_next) = (self.mu(t), self.mu(t + 1.0));
        let product = f64::from(mu_product(self, step));
        let product_next = product * mu_next;
        let (weight_decay, param_decay) = if self.decoupled_weight_decay {
            (0.0, 1.0 - lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        NAdamScalars {
            weight_decay: weight_decay as f32,
            param_decay: param_decay as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            bias_correction2: bias_correction(beta2, step) as f32,
            eps: self.eps as f32,
            grad_coef: (-lr * (1.0 - mu) / (1.0 - product)) as f32,
            avg_coef: ((-lr * mu_next) / (1.0 - product_next)) as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &NAdamScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, exp_avg_sq, _] = state;
        crate::cpu::nadam(s, self.maximize, param, grad, exp_avg, exp_avg_sq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_product_is_the_f32_running_product_at_any_step_in_any_order() {
        let config = NAdam::default();
        let mut running = 1.0f32;
        let mut want = vec![1.0f32];
        for t in 1..=300u64 {
            running *= config.mu(t as f64) as f32;
            want.push(running);
        }
        for step in [300u64, 0, 1, 63, 64, 65, 200, 129, 128] {
            assert_eq!(
                mu_product(&config, step),
                want[step as usize],
                "step {step}"
            );
        }
        let other = NAdam {
            momentum_decay: 0.01,
            ..config
        };
        assert_ne!(mu_product(&other, 100), want[100]);
    }
}
