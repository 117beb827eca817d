use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AsgdScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// Averaged SGD, as `torch.optim.ASGD`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based):
///
/// ```text
/// g ← -g                                          if maximize
/// g ← g + weight_decay · p
/// p ← p · (1 - lambd · ηₜ) - ηₜ · g
/// ax ← p                                          while μₜ = 1
/// ax ← ax + (p - ax) · μₜ                         after
/// η₁ = lr, ηₜ = lr / (1 + lambd · lr · (t - 1))^alpha
/// μ₁ = 1, μₜ = 1 / max(1, t - 1 - t0)
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-2, `lambd` 1e-4, `alpha` 0.75, `t0` 1e6, `weight_decay` 0,
/// `maximize` false. State: `ax`, the averaged parameters. PyTorch also keeps `eta` and `mu`
/// as f32 tensors per parameter; all parameters step together here, so they are functions of
/// the step, rounded to f32 on the host as PyTorch stores them. PyTorch computes the ηₜ a step
/// uses at the end of the previous step, from that step's learning rate; here it comes from
/// the current step's rate, which is the same without a learning-rate schedule.
///
/// Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", 1992.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Asgd {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay term (a number).
    pub lambd: f64,
    /// Power of the η schedule (a number).
    pub alpha: f64,
    /// The step after which averaging starts (a number).
    pub t0: f64,
    /// L2 penalty added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Asgd {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl Algorithm for Asgd {
    const NAME: &'static str = "asgd";
    const KERNEL: Kernel = Kernel::single_pass("asgd", include_str!("../../shaders/asgd.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["ax"];
    type Scalars = AsgdScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        for (name, value) in [
            ("lambd", self.lambd),
            ("alpha", self.alpha),
            ("t0", self.t0),
        ] {
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
        slot == 0
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> AsgdScalars {
        // The η and μ PyTorch stored (as f32 tensors) at the end of step t - 1.
        let previous = step.saturating_sub(1) as f64;
        let (eta, mu) = if step <= 1 {
            (lr as f32, 1.0f32)
        } else {
            (
                (lr / (1.0 + self.lambd * lr * previous).powf(self.alpha)) as f32,
                (1.0 / (previous - self.t0).max(1.0)) as f32,
            )
        };
        let eta = f64::from(eta);
        AsgdScalars {
            weight_decay: self.weight_decay as f32,
            param_decay: (1.0 - self.lambd * eta) as f32,
            neg_eta: -eta as f32,
            mu,
            copy_avg: if mu == 1.0 { 1.0 } else { 0.0 },
            _pad: [0.0; 3],
        }
    }

    fn cpu_step(&self, s: &AsgdScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        let [ax, _, _] = state;
        crate::cpu::asgd(s, self.maximize, param, grad, ax);
    }
}
