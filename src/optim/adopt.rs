use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdoptScalars;
use crate::error::{Result, non_negative, unit_interval};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// ADOPT (Adam with the update decorrelated from the current gradient), as
/// `optax.contrib.adopt`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// t = 1:  v ← g²;  p unchanged                      (the second moment is only initialized)
/// t > 1:  u = g / max(√v, eps)                      (v of the previous step)
///         u ← clip(u, -(t - 1)^¼, (t - 1)^¼)        if use_clipping
///         v ← β₂ · v + (1 - β₂) · g²
///         m ← β₁ · m + (1 - β₁) · u
///         p ← p - lr · m                            (nesterov: p - lr · (β₁ · m + (1 - β₁) · u))
/// ```
///
/// As optax: no bias correction; `1 - β₁` and `1 - β₂` are f32 differences, and optax's first
/// step runs the same arithmetic with β₁ = 1, β₂ = 0 and a clipping bound of 0, which is what
/// the host uploads. Defaults are optax's: `betas` (0.9, 0.9999), `eps` 1e-6, `nesterov` false,
/// `use_clipping` true (at `count^0.25`, optax's default `clip_value_fn`); `lr` 1e-3 (optax has
/// no default; the paper's). No weight decay and no `maximize`: optax's `adopt` has neither.
/// State: `exp_avg`, `exp_avg_sq` (optax's `mu`, `nu`).
///
/// Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal Rate",
/// NeurIPS 2024.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adopt {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay of the first (β₁) and second (β₂) moments, each in [0, 1).
    pub betas: (f64, f64),
    /// Floor of the normalizer `√v` (≥ 0).
    pub eps: f64,
    /// Nesterov's look-ahead on the first moment.
    pub nesterov: bool,
    /// Clip the normalized gradient at `(t - 1)^¼`.
    pub use_clipping: bool,
}

impl Default for Adopt {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.9999),
            eps: 1e-6,
            nesterov: false,
            use_clipping: true,
        }
    }
}

impl Algorithm for Adopt {
    const NAME: &'static str = "adopt";
    const KERNEL: Kernel = Kernel::single_pass("adopt", include_str!("../../shaders/adopt.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    type Scalars = AdoptScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("eps", self.eps)?;
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
        vec![("NESTEROV", self.nesterov), ("CLIPPING", self.use_clipping)]
    }

    fn scalars(&self, lr: f64, step: u64) -> AdoptScalars {
        // optax's `count` is the steps before this one; on the first, jnp.where picks b1 = 1,
        // b2 = 0, and the clipping bound is 0^0.25 = 0. `1 - b` is computed on the f32 array.
        let count = step.saturating_sub(1);
        let (beta1, beta2) = if count > 0 {
            (self.betas.0 as f32, self.betas.1 as f32)
        } else {
            (1.0, 0.0)
        };
        AdoptScalars {
            one_minus_beta1: 1.0 - beta1,
            beta1,
            one_minus_beta2: 1.0 - beta2,
            beta2,
            eps: self.eps as f32,
            clip: (count as f32).powf(0.25),
            neg_lr: -lr as f32,
            _pad: 0.0,
        }
    }

    fn cpu_step(&self, s: &AdoptScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [exp_avg, exp_avg_sq, _] = state;
        let flags = (self.nesterov, self.use_clipping);
        crate::cpu::adopt(s, flags, param, grad, exp_avg, exp_avg_sq);
    }
}
