use serde::{Deserialize, Serialize};

use crate::abi::uniforms::LambScalars;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States, bias_correction, norms_step, validate_adam_like};

/// LAMB (layer-wise adaptive moments), as `optax.lamb`.
///
/// Update rule, for gradient `g` and a parameter tensor `p` at step `t` (1-based):
///
/// ```text
/// m ← (1 - β₁) · g + β₁ · m;   v ← (1 - β₂) · g² + β₂ · v
/// u = (m / (1 - β₁ᵗ)) / (√(v / (1 - β₂ᵗ)) + eps) + weight_decay · p
/// r = ‖p‖ / ‖u‖ over the whole tensor (1 where either norm is 0)
/// p ← p - lr · r · u
/// ```
///
/// Defaults are optax's: `betas` (0.9, 0.999), `eps` 1e-6, `weight_decay` 0; `lr` 1e-3. The
/// norms are per registered tensor, computed on the GPU by a deterministic two-pass reduction
/// (so an [`crate::ArenaLayout`] registered whole counts as one tensor: register each tensor's
/// slice to get per-tensor trust ratios). State: `exp_avg`, `exp_avg_sq`.
///
/// You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", 2020.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lamb {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Decoupled weight decay, added to the update before the trust ratio (≥ 0).
    pub weight_decay: f64,
}

impl Default for Lamb {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-6,
            weight_decay: 0.0,
        }
    }
}

impl Algorithm for Lamb {
    const NAME: &'static str = "lamb";
    const KERNEL: Kernel = Kernel::new("lamb", include_str!("../../shaders/lamb.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    const NORMS: bool = true;
    type Scalars = LambScalars;

    fn validate(&self) -> Result<()> {
        validate_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
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
        Vec::new()
    }

    fn scalars(&self, lr: f64, step: u64) -> LambScalars {
        let (beta1, beta2) = self.betas;
        LambScalars {
            one_minus_beta1: (1.0 - beta1) as f32,
            beta1: beta1 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            beta2: beta2 as f32,
            bias_correction1: bias_correction(beta1, step) as f32,
            bias_correction2: bias_correction(beta2, step) as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &LambScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        norms_step(self, s, param, grad, state);
    }

    fn cpu_norms(
        &self,
        s: &LambScalars,
        param: &[f32],
        grad: &[f32],
        state: States<'_>,
    ) -> (f64, f64) {
        let [exp_avg, exp_avg_sq, _] = state;
        crate::cpu::lamb_norms(s, param, grad, exp_avg, exp_avg_sq)
    }

    fn cpu_apply(
        &self,
        s: &LambScalars,
        norms: [f32; 2],
        param: &mut [f32],
        _grad: &[f32],
        state: States<'_>,
    ) {
        let [exp_avg, exp_avg_sq, _] = state;
        crate::cpu::lamb(s, norms, param, exp_avg, exp_avg_sq);
    }
}
