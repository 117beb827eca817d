use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdagradScalars;
use crate::error::{Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// Adagrad, as `torch.optim.Adagrad`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                 if maximize
/// g ← g + weight_decay · p
/// clr = lr / (1 + (t - 1) · lr_decay)
/// s ← s + g²
/// p ← p - clr · g / (√s + eps)
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-2, `lr_decay` 0, `weight_decay` 0,
/// `initial_accumulator_value` 0, `eps` 1e-10, `maximize` false. State: `sum`, starting at
/// `initial_accumulator_value`.
///
/// Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
/// Optimization", 2011.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adagrad {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Learning-rate decay per step (≥ 0).
    pub lr_decay: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// The value the accumulator starts at (≥ 0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator after the square root (≥ 0).
    pub eps: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Adagrad {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl Algorithm for Adagrad {
    const NAME: &'static str = "adagrad";
    const KERNEL: Kernel =
        Kernel::single_pass("adagrad", include_str!("../../shaders/adagrad.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["sum"];
    type Scalars = AdagradScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("lr_decay", self.lr_decay)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        non_negative("eps", self.eps)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot == 0
    }

    fn initial_state(&self, _slot: usize) -> f32 {
        self.initial_accumulator_value as f32
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> AdagradScalars {
        let clr = lr / (1.0 + (step as f64 - 1.0) * self.lr_decay);
        AdagradScalars {
            weight_decay: self.weight_decay as f32,
            eps: self.eps as f32,
            neg_clr: -clr as f32,
            _pad: 0.0,
        }
    }

    fn cpu_step(&self, s: &AdagradScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [sum, _, _] = state;
        crate::cpu::adagrad(s, self.maximize, param, grad, sum);
    }
}
