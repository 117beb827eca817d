use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdamaxScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States, bias_correction};

/// Adamax (Adam with the infinity norm), as `torch.optim.Adamax`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                 if maximize
/// g ← g + weight_decay · p
/// m ← m + (1 - β₁) · (g - m)             (torch.lerp)
/// u ← max(β₂ · u, |g| + eps)
/// p ← p - lr / (1 - β₁ᵗ) · m / u
/// ```
///
/// Defaults are PyTorch's: `lr` 2e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0,
/// `maximize` false. State: `exp_avg`, `exp_inf`. The step size `lr / (1 - β₁ᵗ)` is computed on
/// the host in f64 and rounded once, as PyTorch does. Where a gradient is NaN, PyTorch's
/// `torch.maximum` propagates it into `exp_inf`; WGSL's `max` and Rust's `f32::max` may not.
///
/// Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 7.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adamax {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay of the first moment (β₁) and of the infinity norm (β₂), each in [0, 1).
    pub betas: (f64, f64),
    /// Added to |g| before the maximum (≥ 0).
    pub eps: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Adamax {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl Algorithm for Adamax {
    const NAME: &'static str = "adamax";
    const KERNEL: Kernel = Kernel::single_pass("adamax", include_str!("../../shaders/adamax.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_inf"];
    type Scalars = AdamaxScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
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

    fn scalars(&self, lr: f64, step: u64) -> AdamaxScalars {
        let (beta1, beta2) = self.betas;
        let clr = lr / bias_correction(beta1, step);
        AdamaxScalars {
            weight_decay: self.weight_decay as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            eps: self.eps as f32,
            neg_clr: -clr as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &AdamaxScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, exp_inf, _] = state;
        crate::cpu::adamax(s, self.maximize, param, grad, exp_avg, exp_inf);
    }
}
