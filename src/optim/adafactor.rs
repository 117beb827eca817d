use serde::{Deserialize, Serialize};

use crate::abi::uniforms::AdafactorScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// Adafactor (factored second moments, relative step sizes), as `torch.optim.Adafactor`.
///
/// Update rule, for gradient `g` and parameter `p` at step `t` (1-based); a tensor of two or
/// more dimensions is factored over its last two (B matrices of R × C), any other keeps a full
/// second moment v:
///
/// ```text
/// g ← -g                                               if maximize
/// w = t^beta2_decay;  ρ = min(lr, 1/√t);  α = max(eps2, RMS(p)) · ρ
/// p ← p · (1 - lr · weight_decay)
/// factored:  r ← lerp(r, ‖g‖²_row / C, w);  c ← lerp(c, ‖g‖²_col / R, w)
///            v̂ = r ⊗ c / max(mean(r), eps1)            (per matrix)
/// otherwise: v ← lerp(v, g², w);  v̂ = v
/// u = g / √max(v̂, eps1²)
/// p ← p - α / max(1, RMS(u) / d) · u
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-2, `beta2_decay` -0.8, `eps` (None, 1e-3) (None: f32's
/// machine epsilon), `d` 1, `weight_decay` 0, `maximize` false. No first moment. State:
/// `row_var` (B·R values) and `col_var` (B·C) for a factored tensor, so R + C per R × C
/// matrix; `variance` (one per element) otherwise. Register a tensor with its shape
/// ([`crate::GpuOptimizer::register_with_shape`]): registered flat, it is one vector.
///
/// Every norm and mean is a device reduction in f32 (deterministic, as LAMB's), where PyTorch
/// reads `‖p‖` and `‖u‖` back with `.item()` and divides in f64; the kernel computes α and the
/// clipping from them on the device, so a step reads nothing back. On the GPU each tensor must
/// fit one storage binding.
///
/// Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adafactor {
    /// Learning rate (≥ 0): the cap of the relative step size ρ.
    pub lr: f64,
    /// Exponent of the squared gradient's weight `t^beta2_decay` (≤ 0).
    pub beta2_decay: f64,
    /// `(eps1, eps2)`: the floor of the factored denominator (None: f32's epsilon; ≥ 0) and of
    /// the parameter's RMS (≥ 0).
    pub eps: (Option<f64>, f64),
    /// Clipping threshold of the update's RMS (≥ 1).
    pub d: f64,
    /// Decoupled weight decay, scaled by lr (≥ 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
}

impl Default for Adafactor {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            beta2_decay: -0.8,
            eps: (None, 1e-3),
            d: 1.0,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl Adafactor {
    /// eps1, or f32's machine epsilon, as torch takes `torch.finfo(param.dtype).eps`.
    fn eps1(&self) -> f64 {
        self.eps.0.unwrap_or(f64::from(f32::EPSILON))
    }
}

/// Whether a tensor of `shape` is factored (two or more dimensions).
fn factored(shape: &[usize]) -> bool {
    shape.len() >= 2
}

impl Algorithm for Adafactor {
    const NAME: &'static str = "adafactor";
    const KERNEL: Kernel = Kernel::new("adafactor", include_str!("../../shaders/adafactor.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["row_var", "col_var", "variance"];
    const NORMS: bool = true;
    const FACTORED: bool = true;
    type Scalars = AdafactorScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        if !self.beta2_decay.is_finite() || self.beta2_decay > 0.0 {
            return Err(Error::InvalidHyperparameter {
                name: "beta2_decay",
                value: self.beta2_decay,
                reason: "must be finite and <= 0",
            });
        }
        if let Some(eps1) = self.eps.0 {
            non_negative("eps[0]", eps1)?;
        }
        non_negative("eps[1]", self.eps.1)?;
        if !self.d.is_finite() || self.d < 1.0 {
            return Err(Error::InvalidHyperparameter {
                name: "d",
                value: self.d,
                reason: "must be finite and >= 1",
            });
        }
        non_negative("weight_decay", self.weight_decay)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn uses_state(&self, slot: usize) -> bool {
        slot < 3
    }

    fn state_len(&self, slot: usize, shape: &[usize]) -> u64 {
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        match (slot, shape) {
            (0, [.., _, c]) => numel.checked_div(*c as u64).unwrap_or(0),
            (1, [.., r, _]) => numel.checked_div(*r as u64).unwrap_or(0),
            (2, s) if !factored(s) => numel,
            _ => 0,
        }
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("MAXIMIZE", self.maximize)]
    }

    fn scalars(&self, lr: f64, step: u64) -> AdafactorScalars {
        let t = step.max(1) as f64;
        let eps1 = self.eps1();
        AdafactorScalars {
            weight: t.powf(self.beta2_decay) as f32,
            rho: lr.min(1.0 / t.powf(0.5)) as f32,
            eps1: eps1 as f32,
            eps1_sq: (eps1 * eps1) as f32,
            eps2: self.eps.1 as f32,
            d: self.d as f32,
            decay: (1.0 - lr * self.weight_decay) as f32,
            _pad: 0.0,
        }
    }

    fn cpu_step(&self, s: &AdafactorScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        crate::cpu::adafactor(s, self.maximize, param, grad, state);
    }

    /// A flat (unfactored) tensor's step: the norms pass reads p and g and updates v, the
    /// update reads p, g and v and writes p.
    fn bytes_per_param(&self) -> u64 {
        32
    }

    /// A factored tensor's step reads the gradient in the `rows` and `cols` passes and p and g
    /// in `norms` (28 bytes per element with `main`'s read of p and g and write of p), plus its
    /// factors: `rows` reads and writes B·R values, `cols` B·C, `stats` reads the B·R again.
    fn step_bytes(&self, shape: &[usize]) -> (u64, u64) {
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        let (rows, cols) = (self.state_len(0, shape), self.state_len(1, shape));
        let held = 4 * (rows + cols + self.state_len(2, shape));
        if factored(shape) {
            (28 * numel + 12 * rows + 8 * cols, held)
        } else {
            (32 * numel, held)
        }
    }
}
