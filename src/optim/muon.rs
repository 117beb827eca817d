use serde::{Deserialize, Serialize};

use crate::abi::uniforms::MuonScalars;
use crate::error::{Error, Result, non_negative};
use crate::kernel::Kernel;
use crate::optim::{Algorithm, States};

/// How [`Muon`] scales the learning rate of a `rows × cols` matrix (`adjust_lr_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustLr {
    /// `lr · √max(1, rows / cols)`, Keller Jordan's original (torch's default, `None`).
    #[default]
    Original,
    /// `lr · 0.2 · √max(rows, cols)`, Moonlight's, to match AdamW's update RMS.
    MatchRmsAdamw,
}

impl AdjustLr {
    /// The factor on `lr` for a matrix of `rows × cols`, in f64 as torch computes it.
    pub fn ratio(self, rows: usize, cols: usize) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        match self {
            AdjustLr::Original => (a / b).max(1.0).sqrt(),
            AdjustLr::MatchRmsAdamw => 0.2 * a.max(b).sqrt(),
        }
    }
}

/// The most Newton–Schulz iterations a step may run (each is three matrix multiplies): torch
/// raises from 100 on.
pub const MAX_NS_STEPS: u32 = 99;

/// Muon (momentum orthogonalized by Newton–Schulz), as `torch.optim.Muon`.
///
/// Update rule, for the gradient `G` of a `rows × cols` parameter `P` (2-D only):
///
/// ```text
/// B ← lerp(B, G, 1 - momentum)                       (the momentum buffer, an EMA)
/// U = lerp(G, B, momentum) if nesterov, else B
/// X = U (Uᵀ if rows > cols);  X ← X / max(‖X‖_F, eps)
/// ns_steps times:  A = X Xᵀ;  B' = b·A + c·A²;  X ← a·X + B' X      ((a, b, c) = ns_coefficients)
/// O = X (Xᵀ if rows > cols)
/// P ← P · (1 - lr · weight_decay)
/// P ← P - lr · ratio · O       (ratio: adjust_lr_fn, AdjustLr::ratio)
/// ```
///
/// Defaults are PyTorch's: `lr` 1e-3, `weight_decay` 0.1, `momentum` 0.95, `nesterov` true,
/// `ns_coefficients` (3.4445, -4.775, 2.0315), `eps` 1e-7, `ns_steps` 5, `adjust_lr_fn`
/// [`AdjustLr::Original`]. State: `momentum_buffer`. The weight decay uses the unadjusted rate,
/// as torch's does.
///
/// The iteration runs in f32, where torch casts to bf16: its recorded cases replace the cast by
/// f32 (`../shared/parity/FORMAT.md`, `muon`). On the GPU it runs as tiled matrix multiplies
/// over every matrix of a shape and group at once ([`crate::MatmulTiles`]), the norm as the
/// crate's deterministic reduction, and the momentum and final update as elementwise passes:
/// no readback. The CPU reference multiplies with a cache-blocked kernel on
/// [`crate::CpuOptimizer::set_threads`] threads.
///
/// Only matrices: register each with its 2-D shape
/// ([`crate::GpuOptimizer::register_with_shape`]); any other shape is an
/// [`Error::UnsupportedShape`]. Step a model's other tensors (biases, norms, embeddings) with
/// AdamW, as the authors recommend; both optimizers can record into one encoder.
///
/// Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
/// (<https://kellerjordan.github.io/posts/muon/>); Liu et al., "Muon is Scalable for LLM
/// Training", 2025 (`match_rms_adamw`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Muon {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decoupled weight decay, scaled by the unadjusted lr (≥ 0).
    pub weight_decay: f64,
    /// Momentum factor (≥ 0): the EMA weight of the momentum buffer.
    pub momentum: f64,
    /// Blend the gradient toward the momentum buffer (Nesterov) instead of using the buffer.
    pub nesterov: bool,
    /// `(a, b, c)` of the quintic iteration `a·X + b·(X Xᵀ) X + c·(X Xᵀ)² X` (finite).
    pub ns_coefficients: (f64, f64, f64),
    /// Floor of the Frobenius norm the update is divided by (≥ 0).
    pub eps: f64,
    /// Newton–Schulz iterations per step (at most [`MAX_NS_STEPS`]).
    pub ns_steps: u32,
    /// How the rate is scaled per matrix.
    pub adjust_lr_fn: AdjustLr,
}

impl Default for Muon {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_coefficients: (3.4445, -4.775, 2.0315),
            eps: 1e-7,
            ns_steps: 5,
            adjust_lr_fn: AdjustLr::Original,
        }
    }
}

/// The Newton–Schulz iteration of one group, as the GPU records it and the CPU runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewtonSchulz {
    /// `(a, b, c)`, rounded to f32 once.
    pub coefficients: [f32; 3],
    /// Iterations.
    pub steps: u32,
}

impl Muon {
    /// The iteration these options run, its coefficients rounded to f32 once.
    fn iteration(&self) -> NewtonSchulz {
        let (a, b, c) = self.ns_coefficients;
        NewtonSchulz {
            coefficients: [a as f32, b as f32, c as f32],
            steps: self.ns_steps,
        }
    }
}

impl Algorithm for Muon {
    const NAME: &'static str = "muon";
    const KERNEL: Kernel = Kernel::new("muon", include_str!("../../shaders/muon.wgsl"));
    const STATE_NAMES: &'static [&'static str] = &["momentum_buffer"];
    const NORMS: bool = true;
    const ORTHOGONAL: bool = true;
    type Scalars = MuonScalars;

    fn validate(&self) -> Result<()> {
        non_negative("lr", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum", self.momentum)?;
        non_negative("eps", self.eps)?;
        let (a, b, c) = self.ns_coefficients;
        for (name, v) in [
            ("ns_coefficients[0]", a),
            ("ns_coefficients[1]", b),
            ("ns_coefficients[2]", c),
        ] {
            if !v.is_finite() {
                return Err(Error::InvalidHyperparameter {
                    name,
                    value: v,
                    reason: "must be finite",
                });
            }
        }
        if self.ns_steps > MAX_NS_STEPS {
            return Err(Error::InvalidHyperparameter {
                name: "ns_steps",
                value: f64::from(self.ns_steps),
                reason: "must be less than 100",
            });
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
        slot == 0
    }

    fn flags(&self) -> Vec<(&'static str, bool)> {
        vec![("NESTEROV", self.nesterov)]
    }

    fn newton_schulz(&self) -> Option<NewtonSchulz> {
        Some(self.iteration())
    }

    fn scalars(&self, lr: f64, _step: u64) -> MuonScalars {
        MuonScalars {
            momentum: self.momentum as f32,
            one_minus_momentum: (1.0 - self.momentum) as f32,
            decay: (1.0 - lr * self.weight_decay) as f32,
            lr: lr as f32,
            eps: self.eps as f32,
            match_rms: f32::from(u8::from(self.adjust_lr_fn == AdjustLr::MatchRmsAdamw)),
            final_in_next: f32::from(u8::from(self.ns_steps.is_multiple_of(2))),
            _pad: 0.0,
        }
    }

    /// The step of a tensor taken as one row (`1 × len`); the optimizers step each registered
    /// matrix with its shape ([`Algorithm::cpu_matrix_step`]).
    fn cpu_step(&self, s: &MuonScalars, param: &mut [f32], grad: &[f32], state: States<'_>) {
        self.cpu_matrix_step(s, [1, param.len()], 1, param, grad, state);
    }

    fn cpu_matrix_step(
        &self,
        s: &MuonScalars,
        dims: [usize; 2],
        threads: usize,
        param: &mut [f32],
        grad: &[f32],
        state: States<'_>,
    ) {
        let [momentum_buffer, _, _] = state;
        let ratios = lr_ratios(dims);
        let ns = self.iteration();
        crate::cpu::muon(
            s,
            self.nesterov,
            ns,
            dims,
            ratios,
            threads,
            param,
            grad,
            momentum_buffer,
        );
    }

    /// The momentum pass reads the gradient and the buffer and writes the buffer and the
    /// update; the normalization reads and writes it; the update reads the parameter and the
    /// orthogonalized update and writes the parameter (the multiplies' traffic aside).
    fn bytes_per_param(&self) -> u64 {
        40
    }
}

/// A `rows × cols` matrix's rate factors, `[original, match_rms_adamw]`, rounded to f32 once.
pub(crate) fn lr_ratios([rows, cols]: [usize; 2]) -> [f32; 2] {
    [
        AdjustLr::Original.ratio(rows, cols) as f32,
        AdjustLr::MatchRmsAdamw.ratio(rows, cols) as f32,
    ]
}

/// Newton–Schulz FLOPs of one step on a `rows × cols` matrix: `steps · (4m²n + 2m³)` with
/// `m ≤ n` (X·Xᵀ, A·A and B·X, two FLOPs per multiply-add).
pub fn newton_schulz_flops([rows, cols]: [usize; 2], steps: u32) -> f64 {
    let (m, n) = (rows.min(cols) as f64, rows.max(cols) as f64);
    f64::from(steps) * (4.0 * m * m * n + 2.0 * m * m * m)
}
