use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdemamixScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// AdEMAMix (Adam with a mixture of a fast and a slow moving average), as
/// `optax.contrib.ademamix`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// m₁ ← β₁ · m₁ + (1 - β₁) · g
/// m₂ ← β₃ · m₂ + (1 - β₃) · g                       (the slow average: no bias correction)
/// v  ← β₂ · v  + (1 - β₂) · g²
/// u  = (m₁ / (1 - β₁ᵗ) + alpha · m₂) / (√(v / (1 - β₂ᵗ) + eps_root) + eps)
/// p  ← p - lr · (u + weight_decay · p)
/// ```
///
/// As optax: the weight decay is decoupled and scaled by lr with the update; the bias
/// corrections `1 - βᵗ` are computed in f32 (optax's `decay ** count` on f32). Defaults are
/// optax's `ademamix`: `betas` (0.9, 0.999, 0.9999), `alpha` 5, `eps` 1e-8, `eps_root` 0,
/// `weight_decay` 0; `lr` 1e-3 (optax has no default). Constant β₃ and alpha: optax's optional
/// schedules of them are not offered (the paper's warm-ups of both). State: `exp_avg`,
/// `exp_avg_slow`, `exp_avg_sq` (optax's `m1`, `m2`, `nu`).
///
/// Pagliardini et al., "The AdEMAMix Optimizer: Better, Faster, Older", 2024.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ademamix {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay of the fast first moment (β₁), the second moment (β₂) and the slow first moment
    /// (β₃), each in [0, 1).
    pub betas: (f64, f64, f64),
    /// Weight of the slow average in the update (≥ 0).
    pub alpha: f64,
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Added to the corrected second moment under the square root (≥ 0).
    pub eps_root: f64,
    /// Decoupled weight decay (≥ 0).
    pub weight_decay: f64,
}

impl Default for Ademamix {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999, 0.9999),
            alpha: 5.0,
            eps: 1e-8,
            eps_root: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// `1 - βᵗ` as optax computes it: `β ** count` on f32.
fn f32_bias_correction(beta: f64, step: u64) -> f32 {
    1.0 - (beta as f32).powf(step as f32)
}

impl Algorithm for Ademamix {
    const NAME: &'static str = "ademamix";
    const KERNEL: Kernel =
        Kernel::single_pass("ademamix", include_str!("../../shaders/ademamix.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_slow", "exp_avg_sq"];
    type Scalars = AdemamixScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("alpha", self.alpha)?;
        non_negative("eps", self.eps)?;
        non_negative("eps_root", self.eps_root)?;
        non_negative("weight_decay", self.weight_decay)?;
        unit_interval("betas[0]", self.betas.0)?;
        unit_interval("betas[1]", self.betas.1)?;
        unit_interval("betas[2]", self.betas.2)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn with_momentum(&self, momentum: f64) -> Option<Self> {
        Some(Self {
            betas: (momentum, self.betas.1, self.betas.2),
            ..*self
        })
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot < 3
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }

    fn scalars(&self, lr: f64, step: u64) -> AdemamixScalars {
        let (beta1, beta2, beta3) = self.betas;
        AdemamixScalars {
            one_minus_beta1: (1.0 - beta1) as f32,
            beta1: beta1 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            beta2: beta2 as f32,
            one_minus_beta3: (1.0 - beta3) as f32,
            beta3: beta3 as f32,
            bias_correction1: f32_bias_correction(beta1, step),
            bias_correction2: f32_bias_correction(beta2, step),
            alpha: self.alpha as f32,
            eps: self.eps as f32,
            eps_root: self.eps_root as f32,
            weight_decay: self.weight_decay as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &AdemamixScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        crate::cpu::ademamix(s, param, grad, state);
    }
}
