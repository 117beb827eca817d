//! Optimizer configurations and the contract each one fulfils.
//!
//! Every optimizer is a plain config struct whose fields are PyTorch's constructor arguments, with
//! `Default` equal to PyTorch's defaults, implementing [`Algorithm`]: how to validate it, which
//! state buffers it keeps, which kernel flags it sets, the per-step scalars the host computes in
//! f64, and the CPU reference step.

use crate::error::Result;
use crate::kernel::Kernel;
use crate::precision::Precision;
use crate::quant::QMap;

mod adadelta;
mod adafactor;
mod adagrad;
mod adam;
mod adamax;
mod ademamix;
mod adopt;
mod asgd;
mod lamb;
mod lars;
mod lion;
pub(crate) mod memo;
mod muon;
mod nadam;
mod radam;
mod rmsprop;
mod rprop;
mod schedule_free;
mod sgd;

pub use crate::abi::uniforms::{
    AdadeltaScalars, AdafactorScalars, AdagradScalars, AdamScalars, AdamaxScalars, AdemamixScalars,
    AdoptScalars, AsgdScalars, LambScalars, LarsScalars, LionScalars, MuonScalars, NAdamScalars,
    RAdamScalars, RmsPropScalars, RpropScalars, ScheduleFreeScalars, SgdScalars,
};
pub use adadelta::Adadelta;
pub use adafactor::Adafactor;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use ademamix::Ademamix;
pub use adopt::Adopt;
pub use asgd::Asgd;
pub use lamb::Lamb;
pub use lars::Lars;
pub use lion::Lion;
pub(crate) use muon::lr_ratios;
pub use muon::{AdjustLr, MAX_NS_STEPS, Muon, NewtonSchulz, newton_schulz_flops};
pub use nadam::NAdam;
pub use radam::RAdam;
pub use rmsprop::RmsProp;
pub use rprop::Rprop;
pub use schedule_free::ScheduleFreeAdamW;
pub use sgd::Sgd;

/// Every optimizer's name (its [`Algorithm::NAME`], as parity cases and checkpoints spell it).
pub const NAMES: &[&str] = &[
    "sgd",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "rprop",
    "asgd",
    "radam",
    "lion",
    "lamb",
    "lars",
    "adopt",
    "ademamix",
    "schedule_free_adamw",
    "adafactor",
    "muon",
];

/// Runs `$body` with the type alias `$O` set to the optimizer named `$name` (one of [`NAMES`]),
/// or evaluates `$other` for any other name: the one place a name picks a type.
macro_rules! by_name {
    ($name:expr, $O:ident => $body:expr, _ => $other:expr) => {
        match $name {
            "sgd" => {
                type $O = $crate::optim::Sgd;
                $body
            }
            "adam" => {
                type $O = $crate::optim::Adam;
                $body
            }
            "adamw" => {
                type $O = $crate::optim::AdamW;
                $body
            }
            "adamax" => {
                type $O = $crate::optim::Adamax;
                $body
            }
            "nadam" => {
                type $O = $crate::optim::NAdam;
                $body
            }
            "rmsprop" => {
                type $O = $crate::optim::RmsProp;
                $body
            }
            "adagrad" => {
                type $O = $crate::optim::Adagrad;
                $body
            }
            "adadelta" => {
                type $O = $crate::optim::Adadelta;
                $body
            }
            "rprop" => {
                type $O = $crate::optim::Rprop;
                $body
            }
            "asgd" => {
                type $O = $crate::optim::Asgd;
                $body
            }
            "radam" => {
                type $O = $crate::optim::RAdam;
                $body
            }
            "lion" => {
                type $O = $crate::optim::Lion;
                $body
            }
            "lamb" => {
                type $O = $crate::optim::Lamb;
                $body
            }
            "lars" => {
                type $O = $crate::optim::Lars;
                $body
            }
            "adopt" => {
                type $O = $crate::optim::Adopt;
                $body
            }
            "ademamix" => {
                type $O = $crate::optim::Ademamix;
                $body
            }
            "schedule_free_adamw" => {
                type $O = $crate::optim::ScheduleFreeAdamW;
                $body
            }
            "adafactor" => {
                type $O = $crate::optim::Adafactor;
                $body
            }
            "muon" => {
                type $O = $crate::optim::Muon;
                $body
            }
            _ => $other,
        }
    };
}

pub(crate) use by_name;

/// Checks the hyperparameters the Adam family shares: lr, eps and weight decay finite and ≥ 0,
/// each beta in [0, 1).
pub(crate) fn validate_adam_like(
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<()> {
    crate::error::non_negative("lr", lr)?;
    crate::error::non_negative("eps", eps)?;
    crate::error::non_negative("weight_decay", weight_decay)?;
    crate::error::unit_interval("betas[0]", betas.0)?;
    crate::error::unit_interval("betas[1]", betas.1)
}

/// `1 - βᵗ`, the bias correction of an exponential moving average after `step` steps, in f64 as
/// PyTorch computes it from Python floats.
pub(crate) fn bias_correction(beta: f64, step: u64) -> f64 {
    1.0 - beta.powf(step as f64)
}

/// The most state buffers any optimizer keeps per parameter.
pub const MAX_STATES: usize = 3;

/// One parameter's state buffers in binding order ([`Algorithm::STATE_NAMES`]); a state the
/// options do not use is an empty slice.
pub type States<'a> = [&'a mut [f32]; MAX_STATES];

/// Seals [`Algorithm`]: its kernels are compiled without runtime bounds checks, which is sound
/// only for this crate's own kernels, whose guards are known.
mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Sgd {}
    impl Sealed for super::Adam {}
    impl Sealed for super::AdamW {}
    impl Sealed for super::Adamax {}
    impl Sealed for super::NAdam {}
    impl Sealed for super::Adadelta {}
    impl Sealed for super::Rprop {}
    impl Sealed for super::Asgd {}
    impl Sealed for super::RmsProp {}
    impl Sealed for super::Adagrad {}
    impl Sealed for super::RAdam {}
    impl Sealed for super::Lion {}
    impl Sealed for super::Lamb {}
    impl Sealed for super::Lars {}
    impl Sealed for super::Adopt {}
    impl Sealed for super::Ademamix {}
    impl Sealed for super::ScheduleFreeAdamW {}
    impl Sealed for super::Adafactor {}
    impl Sealed for super::Muon {}
}

/// A pass over a parameter outside a step, for optimizers with [`Algorithm::EVAL_MODE`]: each
/// is a pipeline of the kernel's `outside_step` entry point (its `PASS` override set to
/// [`Pass::constant`]) and a case of [`Algorithm::cpu_pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Before a parameter's first step: state from the parameter (Schedule-Free's z = y).
    Init,
    /// Training point to evaluation point (`optimizer.eval()`).
    ToEval,
    /// Evaluation point back to training point (`optimizer.train()`).
    ToTrain,
}

impl Pass {
    /// Every pass, in the order pipelines keep them.
    pub const ALL: [Pass; 3] = [Pass::Init, Pass::ToEval, Pass::ToTrain];

    /// The kernel's `PASS` override constant that selects this pass.
    pub const fn constant(self) -> u32 {
        match self {
            Pass::Init => 0,
            Pass::ToEval => 1,
            Pass::ToTrain => 2,
        }
    }
}

/// The range `r` of each state kept (an empty state stays empty).
pub(crate) fn sub_states<'a>(states: &'a mut States<'_>, r: std::ops::Range<usize>) -> States<'a> {
    states.each_mut().map(|v| {
        if v.is_empty() {
            &mut [][..]
        } else {
            &mut v[r.clone()]
        }
    })
}

/// [`Algorithm::cpu_step`] of an optimizer with per-tensor norms (LAMB, LARS): its `norms`
/// stage over every [`crate::cpu::NORM_CHUNK`] in order (see [`crate::cpu::chunked_norms`]),
/// then its `main` stage with the tensor's norms.
pub(crate) fn norms_step<O: Algorithm>(
    config: &O,
    s: &O::Scalars,
    param: &mut [f32],
    grad: &[f32],
    mut state: States<'_>,
) {
    let sums = crate::cpu::chunked_norms(param.len(), |r| {
        let chunk = sub_states(&mut state, r.clone());
        config.cpu_norms(s, &param[r.clone()], &grad[r], chunk)
    });
    config.cpu_apply(s, crate::cpu::norms_from_sums(sums), param, grad, state);
}

/// What the CPU reference, the GPU optimizer and the replay harness need from an optimizer.
///
/// Implemented by [`Sgd`], [`Adam`], [`AdamW`], [`Adamax`], [`NAdam`], [`RmsProp`], [`Adagrad`],
/// [`Adadelta`], [`Rprop`], [`Asgd`], [`RAdam`], [`Lion`], [`Lamb`], [`Lars`], [`Adopt`],
/// [`Ademamix`], [`ScheduleFreeAdamW`], [`Adafactor`] and [`Muon`]; sealed, since its kernel runs without runtime
/// bounds checks.
pub trait Algorithm:
    sealed::Sealed
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + serde::Serialize
    + serde::de::DeserializeOwned
    + 'static
{
    /// The name used in parity cases and on the command line (`adamw`).
    const NAME: &'static str;
    /// The fused kernel that applies one step.
    const KERNEL: Kernel;
    /// PyTorch's state keys, in the kernel's binding order (bindings 3, 4, ...).
    const STATE_NAMES: &'static [&'static str];
    /// Whether a step needs per-tensor norms first (LAMB, LARS). Then the kernel has a second
    /// entry point, `norms`, writing per-workgroup partial sums; a step runs `norms` over every
    /// tensor, one reduction dispatch for all of them (`shaders/reduce.wgsl`), then `main`; and
    /// [`Algorithm::cpu_step`] must see the whole tensor.
    const NORMS: bool = false;
    /// Whether the parameters hold a training point apart from the point to evaluate
    /// (Schedule-Free). Then the kernel has an `outside_step` entry point for every [`Pass`]:
    /// [`Pass::Init`] runs over a parameter before its first step, and `eval()`/`train()` on
    /// either optimizer switch the parameters between the two points.
    const EVAL_MODE: bool = false;
    /// Whether tensors of two or more dimensions keep factored state over their last two
    /// (Adafactor): state lengths then follow the shape ([`Algorithm::state_len`]), each
    /// factored tensor is stepped by the kernel's `rows`, `cols` and `stats` entry points before
    /// the [`Algorithm::NORMS`] stages, and [`Algorithm::cpu_step`] sees the whole tensor.
    const FACTORED: bool = false;
    /// Whether each update is orthogonalized per matrix by a Newton–Schulz iteration before it
    /// is applied (Muon): only 2-D tensors, each registered with its shape. With
    /// [`Algorithm::NORMS`]: the kernel's `norms` entry point writes the update `U` into a
    /// scratch matrix and its partial sums of `U²` (the tensor's second norm); a `normalize`
    /// entry point divides it by the norm; the iteration's multiplies (`shaders/matmul.wgsl`)
    /// run over every matrix of one shape and group at once; then `main` applies the result.
    /// [`Algorithm::cpu_matrix_step`] steps the whole matrix.
    const ORTHOGONAL: bool = false;
    /// The most steps a run (or a restored checkpoint) may count: bounded for optimizers whose
    /// scalars come from a running value the host recomputes step by step ([`NAdam`]'s
    /// `mu_product`, [`ScheduleFreeAdamW`]'s weight sum), so a file cannot make it walk 2⁶²
    /// steps.
    const MAX_STEPS: u64 = u64::MAX;
    /// Whether a learning-rate [`crate::Schedule`] may be set (not for Schedule-Free, which
    /// replaces one).
    const TAKES_SCHEDULE: bool = true;
    /// The map each state is quantized with under [`Precision::quant`], in
    /// [`Algorithm::STATE_NAMES`] order: first moments and momentum signed, second moments
    /// unsigned (Adam, AdamW, Lion, SGD). Empty for optimizers whose state is not quantized.
    const QUANT_MAPS: &'static [QMap] = &[];
    /// The per-step scalars uploaded as the kernel's uniform, mirrored field for field in WGSL.
    type Scalars: bytemuck::Pod + std::fmt::Debug + Send + Sync;

    /// Checks every hyperparameter against PyTorch's ranges.
    fn validate(&self) -> Result<()>;
    /// Whether `new` may replace these options in a running loop; else the name of an option
    /// that feeds a value the optimizer accumulates over the steps taken (NAdam's
    /// `mu_product`, Schedule-Free's weight sum), which the host recomputes from the step
    /// count, so changing it would rewrite every past step.
    fn fixed_for_a_run(&self, _new: &Self) -> Option<&'static str> {
        None
    }
    /// The (base) learning rate.
    fn lr(&self) -> f64;
    /// These options with their momentum (SGD, RMSprop, LARS) or first beta (the Adam family,
    /// Lion, LAMB, ADOPT, AdEMAMix) set to `momentum`: what a schedule that cycles it sets for a
    /// step ([`crate::Schedule::momentum`]), as PyTorch's `OneCycleLR` assigns `momentum` or
    /// `betas[0]`. `None` for optimizers with neither.
    fn with_momentum(&self, _momentum: f64) -> Option<Self> {
        None
    }
    /// Whether these options keep state `slot` (an index into [`Self::STATE_NAMES`]).
    fn uses_state(&self, slot: usize) -> bool;
    /// Values of state `slot` kept for a parameter of `shape` (0: not kept). The parameter's
    /// length for every state these options use, unless [`Algorithm::FACTORED`].
    fn state_len(&self, slot: usize, shape: &[usize]) -> u64 {
        if slot < Self::STATE_NAMES.len() && self.uses_state(slot) {
            shape.iter().map(|&d| d as u64).product()
        } else {
            0
        }
    }
    /// The value state `slot` starts at (Adagrad's `initial_accumulator_value`; 0 otherwise).
    fn initial_state(&self, _slot: usize) -> f32 {
        0.0
    }
    /// The kernel's `override` flags for these options; one pipeline exists per distinct set.
    fn flags(&self) -> Vec<(&'static str, bool)>;
    /// The scalars for step `step` (1-based, as PyTorch counts) at learning rate `lr`, in f64
    /// and rounded to f32 once, as PyTorch rounds Python floats when it meets an f32 tensor.
    fn scalars(&self, lr: f64, step: u64) -> Self::Scalars;
    /// The CPU reference: one step over one parameter, element by element as the kernel does.
    ///
    /// # Panics
    ///
    /// If `grad` or a state these options keep is shorter than `param` (see [`crate::cpu`]);
    /// [`crate::CpuOptimizer::step`] checks lengths first.
    fn cpu_step(&self, s: &Self::Scalars, param: &mut [f32], grad: &[f32], state: States<'_>);

    /// For [`Algorithm::ORTHOGONAL`] optimizers, the Newton–Schulz iteration these options run.
    fn newton_schulz(&self) -> Option<NewtonSchulz> {
        None
    }

    /// One step over a whole `dims[0] × dims[1]` matrix on up to `threads` threads, for
    /// [`Algorithm::ORTHOGONAL`] optimizers (the CPU optimizer calls it with each tensor's
    /// registered shape); others take [`Algorithm::cpu_step`].
    fn cpu_matrix_step(
        &self,
        s: &Self::Scalars,
        _dims: [usize; 2],
        _threads: usize,
        param: &mut [f32],
        grad: &[f32],
        state: States<'_>,
    ) {
        self.cpu_step(s, param, grad, state);
    }

    /// For [`Algorithm::EVAL_MODE`] optimizers, `pass` over one parameter, as the kernel's
    /// entry point of that name does. Others have no passes.
    fn cpu_pass(&self, _pass: Pass, _s: &Self::Scalars, _param: &mut [f32], _state: States<'_>) {}

    /// For [`Algorithm::NORMS`] optimizers, the `norms` stage over one chunk of a tensor: its
    /// (Σp², Σu²) in f64, updating the state as the kernel's `norms` entry point does. Others
    /// have no norms.
    fn cpu_norms(
        &self,
        _s: &Self::Scalars,
        _param: &[f32],
        _grad: &[f32],
        _state: States<'_>,
    ) -> (f64, f64) {
        (0.0, 0.0)
    }

    /// For [`Algorithm::NORMS`] optimizers, the `main` stage over one chunk of a tensor with the
    /// whole tensor's `norms`; [`Algorithm::cpu_step`] is `cpu_norms` over every chunk, then
    /// this. Others ignore `norms` and take their step.
    fn cpu_apply(
        &self,
        s: &Self::Scalars,
        _norms: [f32; 2],
        param: &mut [f32],
        grad: &[f32],
        state: States<'_>,
    ) {
        self.cpu_step(s, param, grad, state);
    }

    /// The state slots these options keep, in binding order.
    fn kept_states(&self) -> impl Iterator<Item = usize> + '_ {
        (0..Self::STATE_NAMES.len()).filter(|&s| self.uses_state(s))
    }

    /// Bytes one step must move per parameter: read and write the parameter, read the gradient,
    /// read and write each state in use.
    fn bytes_per_param(&self) -> u64 {
        12 + 8 * self.kept_states().count() as u64
    }

    /// For a parameter of `shape`: the bytes one step moves, and the bytes of state kept.
    fn step_bytes(&self, shape: &[usize]) -> (u64, u64) {
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        let held = (0..Self::STATE_NAMES.len())
            .map(|s| 4 * self.state_len(s, shape))
            .sum();
        (self.bytes_per_param() * numel, held)
    }

    /// As [`Algorithm::step_bytes`], for a tensor stored as `precision` says: the parameter read
    /// and written, the gradient read, each state read and written, each in its dtype, and the
    /// parameter's copy written.
    fn stored_step_bytes(&self, shape: &[usize], precision: Precision) -> (u64, u64) {
        if precision.is_f32() {
            return self.step_bytes(shape);
        }
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        let precision = precision.for_len(numel);
        let (p, g) = (precision.param.bytes(), precision.grad.bytes());
        let copy = precision.copy.map_or(0, |d| d.bytes());
        // Each state's bytes: codes and scales when quantized.
        let state = |slot| {
            let len = self.state_len(slot, shape);
            match precision.quant {
                Some(q) => q.code_bytes(len) + q.scale_bytes(len),
                None => precision.state.bytes() * len,
            }
        };
        let held: u64 = (0..Self::STATE_NAMES.len()).map(state).sum();
        ((2 * p + g + copy) * numel + 2 * held, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_picks_the_optimizer_of_that_name() {
        for &name in NAMES {
            let named = by_name!(name, O => O::NAME, _ => "none");
            assert_eq!(named, name);
        }
        assert_eq!(by_name!("muon_bf16", O => O::NAME, _ => "none"), "none");
    }
}
