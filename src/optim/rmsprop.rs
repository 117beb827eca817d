use serde::{Deserialize, Serialize};

use crate::abi::uniforms::RmsPropScalars;
use crate::error::{Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// RMSprop, as `torch.optim.RMSprop`.
///
/// Update rule, for gradient `g` and parameter `p`:
///
/// ```text
/// g ← -g                               if maximize
/// g ← g + weight_decay · p
/// s ← α · s + (1 - α) · g²
/// ḡ ← lerp(ḡ, g, 1 - α); d ← √(s - ḡ²) + eps     if centered
/// d ← √s + eps                                     otherwise
/// b ← momentum · b + g / d; p ← p - lr · b        if momentum > 0
/// p ← p - lr · g / d                               otherwise
/// ```
///
/// `eps` is added after the square root, as PyTorch does. Defaults are PyTorch's: `lr` 1e-2,
/// `alpha` 0.99, `eps` 1e-8, `weight_decay` 0, `momentum` 0, `centered` and `maximize` false.
/// State: `square_avg`, plus `momentum_buffer` with momentum and `grad_avg` when centered.
///
/// Hinton, "Neural Networks for Machine Learning", lecture 6e, 2012; Graves, "Generating
/// Sequences With Recurrent Neural Networks", 2013 (the centered form).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsProp {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (≥ 0).
    pub alpha: f64,
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Momentum factor (≥ 0); 0 keeps no momentum buffer.
    pub momentum: f64,
    /// Normalize by an estimate of the gradient's variance rather than its second moment.
    pub centered: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl Algorithm for RmsProp {
    const NAME: &'static str = "rmsprop";
    const KERNEL: Kernel =
        Kernel::single_pass("rmsprop", include_str!("../../shaders/rmsprop.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["square_avg", "momentum_buffer", "grad_avg"];
    type Scalars = RmsPropScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("alpha", self.alpha)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum", self.momentum)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn with_momentum(&self, momentum: f64) -> Option<Self> {
        Some(Self { momentum, ..*self })
    }

    fn uses_state(&self, slot: usize) -> bool {
        match slot {
            0 => true,
            1 => self.momentum > 0.0,
            2 => self.centered,
            _ => false,
        }
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("CENTERED", self.centered),
            ("MOMENTUM", self.momentum > 0.0),
            ("MAXIMIZE", self.maximize),
        ]
    }

    fn scalars(&self, lr: f64, _step: u64) -> RmsPropScalars {
        RmsPropScalars {
            weight_decay: self.weight_decay as f32,
            alpha: self.alpha as f32,
            one_minus_alpha: (1.0 - self.alpha) as f32,
            eps: self.eps as f32,
            momentum: self.momentum as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 2],
        }
    }

    fn cpu_step(&self, s: &RmsPropScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [square_avg, momentum_buffer, grad_avg] = state;
        crate::cpu::rmsprop(
            s,
            self.centered,
            self.momentum > 0.0,
            self.maximize,
            param,
            grad,
            square_avg,
            momentum_buffer,
            grad_avg,
        );
    }
}
