//! The uniform structs the host uploads, each mirrored field for field by the WGSL struct of
//! the same name (its size is checked against the shader by naga in `abi::tests`).
//!
//! Each optimizer's `*Scalars` holds the per-step scalars its kernel reads, computed in f64 by
//! [`crate::Algorithm::scalars`] and rounded to f32 once.

/// Per-step scalars of [`Adamax`](crate::Adamax), as `AdamaxScalars` in `shaders/adamax.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamaxScalars {
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₂`.
    pub beta2: f32,
    /// Added to |g|.
    pub eps: f32,
    /// `-lr / (1 - β₁ᵗ)`.
    pub neg_clr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Adopt`](crate::Adopt), as `AdoptScalars` in `shaders/adopt.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdoptScalars {
    /// `1 - β₁`, in f32 as optax computes it (0 on the first step).
    pub one_minus_beta1: f32,
    /// `β₁` (1 on the first step).
    pub beta1: f32,
    /// `1 - β₂`, in f32 as optax computes it (1 on the first step).
    pub one_minus_beta2: f32,
    /// `β₂` (0 on the first step).
    pub beta2: f32,
    /// Floor of the gradient's normalizer `√ν`.
    pub eps: f32,
    /// The clipping bound `(t - 1)^¼` (0 on the first step).
    pub clip: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: f32,
}

/// Per-step scalars of [`Ademamix`](crate::Ademamix), as `AdemamixScalars` in
/// `shaders/ademamix.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdemamixScalars {
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₁`.
    pub beta1: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₃`.
    pub one_minus_beta3: f32,
    /// `β₃`, the slow average's decay.
    pub beta3: f32,
    /// `1 - β₁ᵗ`, in f32 as optax computes it.
    pub bias_correction1: f32,
    /// `1 - β₂ᵗ`, in f32 as optax computes it.
    pub bias_correction2: f32,
    /// Weight of the slow average.
    pub alpha: f32,
    /// Added to the denominator after the square root.
    pub eps: f32,
    /// Added to the corrected second moment under the square root.
    pub eps_root: f32,
    /// Decoupled weight decay, scaled by lr with the update.
    pub weight_decay: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`ScheduleFreeAdamW`](crate::ScheduleFreeAdamW), as
/// `ScheduleFreeScalars` in `shaders/schedule_free_adamw.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ScheduleFreeScalars {
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `1 - β₂ᵏ⁺¹`.
    pub bias_correction2: f32,
    /// Added to the denominator after the square root.
    pub eps: f32,
    /// Weight decay, added to the normalized gradient times y.
    pub weight_decay: f32,
    /// `cₖ₊₁ = wₖ / Σw`, the weight of z in the new average.
    pub ckp1: f32,
    /// `lr · (β₁ · (1 - cₖ₊₁) - 1)`, the step of y.
    pub y_coef: f32,
    /// The warmed-up learning rate, the step of z.
    pub lr: f32,
    /// `1 - 1/β₁`: `optimizer.eval()`'s lerp from y to x.
    pub eval_weight: f32,
    /// `1 - β₁`: `optimizer.train()`'s lerp from x to y.
    pub train_weight: f32,
    #[doc(hidden)]
    pub _pad: [f32; 2],
}

/// Per-step scalars of [`Adafactor`](crate::Adafactor), as `AdafactorScalars` in
/// `shaders/adafactor.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdafactorScalars {
    /// `t^beta2_decay`, the weight of the new squared gradient in the moments' lerp.
    pub weight: f32,
    /// `ρ = min(lr, 1/√t)`, the relative step size.
    pub rho: f32,
    /// Floor of each matrix's row-factor mean.
    pub eps1: f32,
    /// `eps1²`, the floor of the second-moment estimate.
    pub eps1_sq: f32,
    /// Floor of the parameter's RMS in the step size.
    pub eps2: f32,
    /// The update's RMS clipping threshold.
    pub d: f32,
    /// `1 - lr · weight_decay`.
    pub decay: f32,
    #[doc(hidden)]
    pub _pad: f32,
}

/// Per-step scalars of [`NAdam`](crate::NAdam), as `NAdamScalars` in `shaders/nadam.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NAdamScalars {
    /// L2 penalty added to the gradient (0 when decoupled).
    pub weight_decay: f32,
    /// `1 - lr · weight_decay` when decoupled, else 1.
    pub param_decay: f32,
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `1 - β₂ᵗ`.
    pub bias_correction2: f32,
    /// Added after the square root.
    pub eps: f32,
    /// `-lr · (1 - μₜ) / (1 - Πₜ)`, the gradient's coefficient.
    pub grad_coef: f32,
    /// `-lr · μₜ₊₁ / (1 - Πₜ · μₜ₊₁)`, the first moment's coefficient.
    pub avg_coef: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Adadelta`](crate::Adadelta), as `AdadeltaScalars` in
/// `shaders/adadelta.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdadeltaScalars {
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// `ρ`.
    pub rho: f32,
    /// `1 - ρ`.
    pub one_minus_rho: f32,
    /// Added inside both square roots.
    pub eps: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Rprop`](crate::Rprop), as `RpropScalars` in `shaders/rprop.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RpropScalars {
    /// Factor where the gradient changed sign.
    pub etaminus: f32,
    /// Factor where it kept its sign.
    pub etaplus: f32,
    /// Smallest step size.
    pub step_size_min: f32,
    /// Largest step size.
    pub step_size_max: f32,
}

/// Per-step scalars of [`Asgd`](crate::Asgd), as `AsgdScalars` in `shaders/asgd.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AsgdScalars {
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// `1 - lambd · η`.
    pub param_decay: f32,
    /// `-η`.
    pub neg_eta: f32,
    /// `μ`, the averaging weight.
    pub mu: f32,
    /// 1 while `μ` is 1 (the average is a copy), else 0.
    pub copy_avg: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Adagrad`](crate::Adagrad), as `AdagradScalars` in `shaders/adagrad.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdagradScalars {
    /// L2 penalty.
    pub weight_decay: f32,
    /// `eps`.
    pub eps: f32,
    /// `-lr / (1 + (t - 1) · lr_decay)`.
    pub neg_clr: f32,
    #[doc(hidden)]
    pub _pad: f32,
}

/// Per-step scalars of [`Adam`](crate::Adam) and [`AdamW`](crate::AdamW), as `AdamScalars` in `shaders/adam.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamScalars {
    /// L2 penalty (0 with decoupled weight decay).
    pub weight_decay: f32,
    /// `1 - lr · weight_decay` with decoupled weight decay, else 1.
    pub param_decay: f32,
    /// `1 - β₁`, the weight of the first moment's lerp.
    pub one_minus_beta1: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `√(1 - β₂ᵗ)`.
    pub bias_correction2_sqrt: f32,
    /// `eps`.
    pub eps: f32,
    /// `-lr / (1 - β₁ᵗ)`.
    pub neg_step_size: f32,
}

/// Per-step scalars of [`Lamb`](crate::Lamb), as `LambScalars` in `shaders/lamb.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LambScalars {
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₁`.
    pub beta1: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₁ᵗ`.
    pub bias_correction1: f32,
    /// `1 - β₂ᵗ`.
    pub bias_correction2: f32,
    /// `eps`.
    pub eps: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Muon`](crate::Muon), as `MuonScalars` in `shaders/muon.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MuonScalars {
    /// The Nesterov blend's weight `momentum`.
    pub momentum: f32,
    /// The momentum buffer's EMA weight `1 - momentum`.
    pub one_minus_momentum: f32,
    /// `1 - lr · weight_decay`.
    pub decay: f32,
    /// The unadjusted rate.
    pub lr: f32,
    /// Floor of the update's norm.
    pub eps: f32,
    /// 1 for `adjust_lr_fn` = `match_rms_adamw`, 0 for `original`.
    pub match_rms: f32,
    /// 1 when the iteration ends in the second scratch matrix (an even `ns_steps`), else 0.
    pub final_in_next: f32,
    #[doc(hidden)]
    pub _pad: f32,
}

/// The dimensions and epilogue of one batched multiply of `shaders/matmul.wgsl`:
/// `out = alpha · lhs · rhs + beta · addend` over `batch` matrices (each operand transposed as
/// the pipeline's `TRANS_A`/`TRANS_B` say), as `MatmulDims` there.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulDims {
    /// Rows of the result.
    pub m: u32,
    /// Columns of the result.
    pub n: u32,
    /// The inner dimension.
    pub k: u32,
    /// Workgroup rows per matrix (`⌈m / TM⌉`); the grid's y is this times the batch.
    pub tiles_m: u32,
    /// Elements from one matrix of each operand to the next: lhs, rhs, addend, out.
    pub strides: [u32; 4],
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the addend (0: not read).
    pub beta: f32,
    #[doc(hidden)]
    pub _pad: [u32; 2],
}

/// Per-step scalars of [`Lars`](crate::Lars), as `LarsScalars` in `shaders/lars.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LarsScalars {
    /// Weight decay.
    pub weight_decay: f32,
    /// Trust coefficient.
    pub trust_coefficient: f32,
    /// `eps`.
    pub eps: f32,
    /// `-lr`.
    pub neg_lr: f32,
    /// Momentum factor.
    pub momentum: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// Per-step scalars of [`Lion`](crate::Lion), as `LionScalars` in `shaders/lion.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LionScalars {
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₁`.
    pub beta1: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `β₂`.
    pub beta2: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 2],
}

/// Per-step scalars of [`RAdam`](crate::RAdam), as `RAdamScalars` in `shaders/radam.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RAdamScalars {
    /// L2 penalty (0 with decoupled weight decay).
    pub weight_decay: f32,
    /// `1 - lr · weight_decay` with decoupled weight decay, else 1.
    pub param_decay: f32,
    /// `1 - β₁`.
    pub one_minus_beta1: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `1 - β₂`.
    pub one_minus_beta2: f32,
    /// `1 - β₁ᵗ`.
    pub bias_correction1: f32,
    /// `√(1 - β₂ᵗ)`.
    pub bias_correction2_sqrt: f32,
    /// The scheduled learning rate.
    pub lr: f32,
    /// `eps`.
    pub eps: f32,
    /// The rectification term r (only meaningful when `rectify` is 1).
    pub rect: f32,
    /// 1 when ρₜ > 5 (the adaptive, rectified step), 0 for the plain momentum step.
    pub rectify: f32,
    #[doc(hidden)]
    pub _pad: f32,
}

/// Per-step scalars of [`RmsProp`](crate::RmsProp), as `RmsPropScalars` in `shaders/rmsprop.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsPropScalars {
    /// L2 penalty.
    pub weight_decay: f32,
    /// `alpha`.
    pub alpha: f32,
    /// `1 - alpha`.
    pub one_minus_alpha: f32,
    /// `eps`.
    pub eps: f32,
    /// `momentum`.
    pub momentum: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 2],
}

/// Per-step scalars of [`Sgd`](crate::Sgd), as `SgdScalars` in `shaders/sgd.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SgdScalars {
    /// L2 penalty.
    pub weight_decay: f32,
    /// What the momentum buffer is multiplied by: `momentum`, or 0 on the first step.
    pub momentum_keep: f32,
    /// What the gradient enters the buffer with: `1 - dampening`, or 1 on the first step.
    pub grad_weight: f32,
    /// `momentum`, for the Nesterov look-ahead.
    pub momentum: f32,
    /// `-lr`.
    pub neg_lr: f32,
    #[doc(hidden)]
    pub _pad: [f32; 3],
}

/// `GradParams` in `shaders/grad_norm.wgsl`: what the gradient stage needs to know (clipping,
/// loss scaling, the tensor count), fixed between registrations.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GradParams {
    /// Clipping threshold (0 while clipping is off).
    pub max_norm: f32,
    /// Registered tensors, one norm pair each.
    pub tensors: u32,
    /// Floats between two tensors' norm pairs.
    pub norm_stride: u32,
    /// 1 when clipping is on.
    pub clip: u32,
    /// 1 when loss scaling is on.
    pub unscale: u32,
    /// GradScaler's growth factor.
    pub growth_factor: f32,
    /// GradScaler's backoff factor.
    pub backoff_factor: f32,
    /// GradScaler's growth interval.
    pub growth_interval: u32,
}

/// `Dims` in `shaders/mlp.wgsl`: the end-to-end example's sample count, arena length and each
/// tensor's first element in the arena.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    /// Training samples.
    pub samples: u32,
    /// Elements in the parameter arena.
    pub arena: u32,
    /// Each tensor's first element.
    pub offsets: [u32; 6],
}
