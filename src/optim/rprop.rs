use serde::{Deserialize, Serialize};

use crate::abi::uniforms::RpropScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// Rprop (resilient backpropagation), as `torch.optim.Rprop`.
///
/// Update rule, element by element, for gradient `g` and parameter `p`:
///
/// ```text
/// g ← -g                                       if maximize
/// f = etaplus if g · prev > 0, etaminus if < 0, 1 if = 0
/// step ← clamp(step · f, step_size_min, step_size_max)
/// g ← 0                                        where g · prev < 0
/// p ← p - sign(g) · step
/// prev ← g
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-2, `etas` (0.5, 1.2), `step_sizes` (1e-6, 50), `maximize`
/// false. State: `prev` (starting at 0) and `step_size` (starting at `lr`). As in PyTorch,
/// `lr` only sets the initial step sizes; after that the steps are Rprop's own. PyTorch sets
/// them from the group's rate at the first step, which a schedule may already have scaled
/// (`LinearLR`'s `start_factor`, for one); here they start at the base `lr` itself.
///
/// Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation Learning: The
/// RPROP Algorithm", 1993.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rprop {
    /// Initial step size (≥ 0).
    pub lr: f64,
    /// Multiplicative decrease and increase factors, `0 < etaminus < 1 < etaplus`.
    pub etas: (f64, f64),
    /// Minimal and maximal step sizes.
    pub step_sizes: (f64, f64),
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Rprop {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            etas: (0.5, 1.2),
            step_sizes: (1e-6, 50.0),
            maximize: false,
        }
    }
}

impl Algorithm for Rprop {
    const NAME: &'static str = "rprop";
    const KERNEL: Kernel = Kernel::single_pass("rprop", include_str!("../../shaders/rprop.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["prev", "step_size"];
    type Scalars = RpropScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        let (minus, plus) = self.etas;
        if minus.is_nan() || minus <= 0.0 || minus >= 1.0 {
            return Err(Error::InvalidHyperparameter {
                name: "etas[0]",
                value: minus,
                reason: "must be in (0, 1)",
            });
        }
        if plus.is_nan() || plus <= 1.0 {
            return Err(Error::InvalidHyperparameter {
                name: "etas[1]",
                value: plus,
                reason: "must be above 1",
            });
        }
        let (lo, hi) = self.step_sizes;
        for (name, value) in [("step_sizes[0]", lo), ("step_sizes[1]", hi)] {
            if value.is_nan() {
                return Err(Error::InvalidHyperparameter {
                    name,
                    value,
                    reason: "must be a number",
                });
            }
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot < 2
    }

    fn initial_state(&self, slot: usize) -> f32 {
        if slot == 1 { self.lr as f32 } else { 0.0 }
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, _lr: f64, _step: u64) -> RpropScalars {
        RpropScalars {
            etaminus: self.etas.0 as f32,
            etaplus: self.etas.1 as f32,
            step_size_min: self.step_sizes.0 as f32,
            step_size_max: self.step_sizes.1 as f32,
        }
    }

    fn cpu_step(&self, s: &RpropScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [prev, step_size, _] = state;
        crate::cpu::rprop(s, self.maximize, param, grad, prev, step_size);
    }
}
