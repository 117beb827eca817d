use serde::{Deserialize, Serialize};

use crate::abi::uniforms::SgdScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};
use crate::quant::QMap;

/// Stochastic gradient descent with momentum, as `torch.optim.SGD`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t`:
///
/// ```text
/// g ← -g                                   if maximize
/// g ← g + weight_decay · p
/// b ← g                                    at t = 1
/// b ← momentum · b + (1 - dampening) · g   for t > 1        (momentum ≠ 0 only)
/// g ← g + momentum · b if nesterov, else g ← b
/// p ← p - lr · g
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-3, everything else 0 or false. Nesterov momentum needs
/// `momentum > 0` and `dampening = 0`. State: `momentum_buffer` (only when `momentum ≠ 0`).
///
/// Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Momentum factor (≥ 0); 0 keeps no momentum buffer.
    pub momentum: f64,
    /// Dampening for momentum: the gradient enters the buffer scaled by `1 - dampening`.
    pub dampening: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl Algorithm for Sgd {
    const NAME: &'static str = "sgd";
    const KERNEL: Kernel = Kernel::single_pass("sgd", include_str!("../../shaders/sgd.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["momentum_buffer"];
    const QUANT_MAPS: &'static [QMap] = &[QMap::Signed];
    type Scalars = SgdScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("momentum", self.momentum)?;
        non_negative("weight_decay", self.weight_decay)?;
        if !self.dampening.is_finite() {
            return Err(Error::InvalidHyperparameter {
                name: "dampening",
                value: self.dampening,
                reason: "must be finite",
            });
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::InvalidOptions(format!(
                "nesterov momentum requires momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                self.momentum, self.dampening
            )));
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn with_momentum(&self, momentum: f64) -> Option<Self> {
        Some(Self { momentum, ..*self })
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot == 0 && self.momentum != 0.0
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("MOMENTUM", self.momentum != 0.0),
            ("NESTEROV", self.nesterov),
            ("MAXIMIZE", self.maximize),
        ]
    }

    fn scalars(&self, lr: f64, step: u64) -> SgdScalars {
        let first = step <= 1;
        SgdScalars {
            weight_decay: self.weight_decay as f32,
            momentum_keep: if first { 0.0 } else { self.momentum as f32 },
            grad_weight: if first {
                1.0
            } else {
                (1.0 - self.dampening) as f32
            },
            momentum: self.momentum as f32,
            neg_lr: -lr as f32,
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &SgdScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [momentum_buffer, _, _] = state;
        crate::cpu::sgd(
            s,
            self.momentum != 0.0,
            self.nesterov,
            self.maximize,
            param,
            grad,
            momentum_buffer,
        );
    }
}
