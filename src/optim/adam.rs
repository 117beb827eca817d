use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdamScalars;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States, bias_correction, validate_adam_like};
use crate::quant::QMap;

/// Adam, as `torch.optim.Adam`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                     if maximize
/// p ← p · (1 - lr · weight_decay)            if decoupled_weight_decay
/// g ← g + weight_decay · p                   otherwise (L2)
/// m ← lerp(m, g, 1 - β₁)
/// v ← β₂ · v + (1 - β₂) · g²
/// v̂ ← max(v̂, v) if amsgrad, else v̂ = v     (the max is over the raw second moment, as PyTorch)
/// p ← p - lr / (1 - β₁ᵗ) · m / (√v̂ / √(1 - β₂ᵗ) + eps)
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0,
/// `amsgrad`, `maximize` and `decoupled_weight_decay` false. State: `exp_avg`, `exp_avg_sq`, and
/// `max_exp_avg_sq` with amsgrad.
///
/// Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015; Reddi et al., "On the
/// Convergence of Adam and Beyond", 2018 (AMSGrad).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Weight decay (≥ 0): an L2 penalty added to the gradient, or decoupled (see below).
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
    /// Decay the parameter directly, as AdamW, instead of adding an L2 term to the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// AdamW, as `torch.optim.AdamW`: [`Adam`] with decoupled weight decay.
///
/// Update rule as [`Adam`] with `decoupled_weight_decay`: the parameter is first multiplied by
/// `1 - lr · weight_decay`, and the gradient is left alone.
///
/// Defaults are PyTorch's: as Adam, but `weight_decay` 0.01. State as Adam.
///
/// Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamW {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Decoupled weight decay (≥ 0).
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamW {
    /// The same optimizer as an [`Adam`] with `decoupled_weight_decay` set.
    pub fn as_adam(&self) -> Adam {
        Adam {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            maximize: self.maximize,
            decoupled_weight_decay: true,
        }
    }
}

impl Algorithm for Adam {
    const NAME: &'static str = "adam";
    const KERNEL: Kernel = Kernel::single_pass("adam", include_str!("../../shaders/adam.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
    const QUANT_MAPS: &'static [QMap] = &[QMap::Signed, QMap::Unsigned, QMap::Unsigned];
    type Scalars = AdamScalars;

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
        slot < 2 || (slot == 2 && self.amsgrad)
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("AMSGRAD", self.amsgrad), ("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> AdamScalars {
        let (beta1, beta2) = self.betas;
        let bias_correction1 = bias_correction(beta1, step);
        let bias_correction2 = bias_correction(beta2, step);
        let (weight_decay, param_decay) = if self.decoupled_weight_decay {
            (0.0, 1.0 - lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        AdamScalars {
            weight_decay: weight_decay as f32,
            param_decay: param_decay as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            eps: self.eps as f32,
            neg_step_size: (-(lr / bias_correction1)) as f32,
        }
    }

    fn cpu_step(&self, s: &AdamScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, exp_avg_sq, max_exp_avg_sq] = state;
        crate::cpu::adam(
            s,
            self.amsgrad,
            self.maximize,
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        );
    }
}

impl Algorithm for AdamW {
    const NAME: &'static str = "adamw";
    const KERNEL: Kernel = Adam::KERNEL;
    const STATE_NAMES: &'static [&'static str] = Adam::STATE_NAMES;
    const QUANT_MAPS: &'static [QMap] = Adam::QUANT_MAPS;
    type Scalars = AdamScalars;

    fn validate(&self) -> Result<()> {
        self.as_adam().validate()
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
        self.as_adam().uses_state(slot)
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        self.as_adam().flags()
    }

    fn scalars(&self, lr: f64, step: u64) -> AdamScalars {
        self.as_adam().scalars(lr, step)
    }

    fn cpu_step(&self, s: &AdamScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        self.as_adam().cpu_step(s, param, grad, state);
    }
}
