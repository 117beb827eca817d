use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdadeltaScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// Adadelta, as `torch.optim.Adadelta`.
///
/// Update rule, for gradient `g` and parameter `p`:
///
/// ```text
/// g ← -g                                 if maximize
/// g ← g + weight_decay · p
/// v ← ρ · v + (1 - ρ) · g²
/// Δ = √(u + eps) / √(v + eps) · g
/// u ← ρ · u + (1 - ρ) · Δ²
/// p ← p - lr · Δ
/// ```
///
/// Defaults are PyTorch's: `lr` 1.0, `rho` 0.9, `eps` 1e-6, `weight_decay` 0, `maximize`
/// false. State: `square_avg` (v), `acc_delta` (u).
///
/// Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adadelta {
    /// Learning rate, a factor on Δ (≥ 0).
    pub lr: f64,
    /// Decay of both running averages, in [0, 1].
    pub rho: f64,
    /// Added inside both square roots (≥ 0).
    pub eps: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Adadelta {
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl Algorithm for Adadelta {
    const NAME: &'static str = "adadelta";
    const KERNEL: Kernel =
        Kernel::single_pass("adadelta", include_str!("../../shaders/adadelta.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["square_avg", "acc_delta"];
    type Scalars = AdadeltaScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::InvalidHyperparameter {
                name: "rho",
                value: self.rho,
                reason: "must be in [0, 1]",
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
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, _step: u64) -> AdadeltaScalars {
        AdadeltaScalars {
            weight_decay: self.weight_decay as f32,
            rho: self.rho as f32,
            one_minus_rho: (1.0 - self.rho) as f32,
            eps: self.eps as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &AdadeltaScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [square_avg, acc_delta, _] = state;
        crate::cpu::adadelta(s, self.maximize, param, grad, square_avg, acc_delta);
    }
}
