use serde::{Deserialize, Serialize};

use crate::abi::uniforms::LionScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};
use crate::quant::QMap;

/// Lion (evolved sign momentum), as `optax.lion`.
///
/// Update rule, for gradient `g` and parameter `p`:
///
/// ```text
/// u ← sign((1 - β₁) · g + β₁ · m)
/// m ← (1 - β₂) · g + β₂ · m
/// p ← p - lr · (u + weight_decay · p)
/// ```
///
/// The weight decay is decoupled (applied to the parameter, scaled by lr, not to the gradient).
/// Defaults are optax's: `betas` (0.9, 0.99), `weight_decay` 1e-3; `lr` 1e-4 (optax has no
/// default; 1e-4 is the paper's usual choice, 3-10× below AdamW's). No `maximize`: optax has
/// none. State: `exp_avg` (optax's `mu`).
///
/// Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lion {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Interpolation weight of the update direction (β₁) and decay of the momentum (β₂), each
    /// in [0, 1).
    pub betas: (f64, f64),
    /// Decoupled weight decay (≥ 0).
    pub weight_decay: f64,
}

impl Default for Lion {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            betas: (0.9, 0.99),
            weight_decay: 1e-3,
        }
    }
}

impl Algorithm for Lion {
    const NAME: &'static str = "lion";
    const KERNEL: Kernel = Kernel::single_pass("lion", include_str!("../../shaders/lion.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg"];
    const QUANT_MAPS: &'static [QMap] = &[QMap::Signed];
    type Scalars = LionScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
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
        slot == 0
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }

    fn scalars(&self, lr: f64, _step: u64) -> LionScalars {
        let (beta1, beta2) = self.betas;
        LionScalars {
            one_minus_beta1: (1.0 - beta1) as f32,
            beta1: beta1 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            beta2: beta2 as f32,
            weight_decay: self.weight_decay as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 2],
        }
    }

    fn cpu_step(&self, s: &LionScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, _, _] = state;
        crate::cpu::lion(s, param, grad, exp_avg);
    }
}
