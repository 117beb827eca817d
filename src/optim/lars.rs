use serde::{Deserialize, Serialize};

use crate::abi::uniforms::LarsScalars;
use crate::error::{Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States, norms_step};

/// LARS (layer-wise adaptive rate scaling), as `optax.lars`.
///
/// Update rule, for gradient `g` and a parameter tensor `p`:
///
/// ```text
/// u = g + weight_decay · p
/// r = trust_coefficient · ‖p‖ / (‖u‖ + eps) over the whole tensor (1 where either norm is 0)
/// u ← -lr · r · u
/// b ← u + momentum · b
/// p ← p + (u + momentum · b if nesterov, else b)
/// ```
///
/// Defaults are optax's: `weight_decay` 0, `trust_coefficient` 0.001, `eps` 0, `momentum` 0.9,
/// `nesterov` false; `lr` 1.0 (optax has no default; LARS is used with large rates). Norms are
/// per registered tensor, as for [`crate::Lamb`]. State: `momentum_buffer` (optax's trace).
///
/// You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lars {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Weight decay added to the gradient before the trust ratio (≥ 0).
    pub weight_decay: f64,
    /// Scale of the trust ratio (≥ 0).
    pub trust_coefficient: f64,
    /// Added to the update norm in the trust ratio (≥ 0).
    pub eps: f64,
    /// Momentum factor (≥ 0).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for Lars {
    fn default() -> Self {
        Self {
            lr: 1.0,
            weight_decay: 0.0,
            trust_coefficient: 0.001,
            eps: 0.0,
            momentum: 0.9,
            nesterov: false,
        }
    }
}

impl Algorithm for Lars {
    const NAME: &'static str = "lars";
    const KERNEL: Kernel = Kernel::new("lars", include_str!("../../shaders/lars.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["momentum_buffer"];
    const NORMS: bool = true;
    type Scalars = LarsScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("trust_coefficient", self.trust_coefficient)?;
        non_negative("eps", self.eps)?;
        non_negative("momentum", self.momentum)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn with_momentum(&self, momentum: f64) -> Option<Self> {
        Some(Self { momentum, ..*self })
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot == 0
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("NESTEROV", self.nesterov)]
    }

    fn scalars(&self, lr: f64, _step: u64) -> LarsScalars {
        LarsScalars {
            weight_decay: self.weight_decay as f32,
            trust_coefficient: self.trust_coefficient as f32,
            eps: self.eps as f32,
            neg_lr: -lr as f32,
            momentum: self.momentum as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &LarsScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        norms_step(self, s, param, grad, state);
    }

    fn cpu_norms(
        &self,
        s: &LarsScalars,
        param: &[f32],
        grad: &[f32],
        _state: States<'_>,
    ) -> (f64, f64) {
        crate::cpu::lars_norms(s, param, grad)
    }

    fn cpu_apply(
        &self,
        s: &LarsScalars,
        norms: [f32; 2],
        param: &mut [f32],
        grad: &[f32],
        state: States<'_>,
    ) {
        let [momentum_buffer, _, _] = state;
        crate::cpu::lars(s, self.nesterov, norms, param, grad, momentum_buffer);
    }
}
