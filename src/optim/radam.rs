use serde::{Deserialize, Serialize};

use crate::abi::uniforms::RAdamScalars;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States, bias_correction, validate_adam_like};

/// RAdam (rectified Adam), as `torch.optim.RAdam`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                     if maximize
/// p ← p · (1 - lr · weight_decay)            if decoupled_weight_decay
/// g ← g + weight_decay · p                   otherwise (L2)
/// m ← lerp(m, g, 1 - β₁);  v ← β₂ · v + (1 - β₂) · g²
/// m̂ = m / (1 - β₁ᵗ)
/// ρ∞ = 2 / (1 - β₂) - 1;   ρₜ = ρ∞ - 2t · β₂ᵗ / (1 - β₂ᵗ)
/// if ρₜ > 5:  r = √((ρₜ - 4)(ρₜ - 2)ρ∞ / ((ρ∞ - 4)(ρ∞ - 2)ρₜ))
///             p ← p - m̂ · lr · √(1 - β₂ᵗ) / (√v + eps) · r
/// else:       p ← p - m̂ · lr
/// ```
///
/// ρₜ and r are computed on the host in f64. Defaults are PyTorch's: `lr` 1e-3, `betas`
/// (0.9, 0.999), `eps` 1e-8, `weight_decay` 0, `decoupled_weight_decay` and `maximize` false.
/// State: `exp_avg`, `exp_avg_sq`.
///
/// Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2020.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RAdam {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Weight decay (≥ 0): an L2 penalty added to the gradient, or decoupled (see below).
    pub weight_decay: f64,
    /// Decay the parameter directly, as AdamW, instead of adding an L2 term to the gradient.
    pub decoupled_weight_decay: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for RAdam {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

impl RAdam {
    /// ρₜ, the length of the approximated simple moving average at step `t`, and ρ∞.
    pub fn rho(&self, step: u64) -> (f64, f64) {
        let beta2 = self.betas.1;
        let t = step as f64;
        let bias_correction2 = bias_correction(beta2, step);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * beta2.powf(t) / bias_correction2;
        (rho_t, rho_inf)
    }
}

impl Algorithm for RAdam {
    const NAME: &'static str = "radam";
    const KERNEL: Kernel = Kernel::single_pass("radam", include_str!("../../shaders/radam.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    type Scalars = RAdamScalars;

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
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> RAdamScalars {
        let (beta1, beta2) = self.betas;
        let bias_correction1 = bias_correction(beta1, step);
        let bias_correction2 = bias_correction(beta2, step);
        let (rho_t, rho_inf) = self.rho(step);
        let rectify = rho_t > 5.0;
        let rect = if rectify {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt()
        } else {
            0.0
        };
        let (weight_decay, param_decay) = if self.decoupled_weight_decay {
            (0.0, 1.0 - lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        RAdamScalars {
            weight_decay: weight_decay as f32,
            param_decay: param_decay as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            bias_correction1: bias_correction1 as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            lr: lr as f32,
            eps: self.eps as f32,
            rect: rect as f32,
            rectify: if rectify { 1.0 } else { 0.0 },
            _pad: 0.0,
        }
    }

    fn cpu_step(&self, s: &RAdamScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, exp_avg_sq, _] = state;
        crate::cpu::radam(s, self.maximize, param, grad, exp_avg, exp_avg_sq);
    }
}
