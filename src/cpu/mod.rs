//! The CPU reference: each optimizer's step as a plain loop over f32 slices.
//!
//! Each function mirrors its kernel in `shaders/` line for line, with the same names, and follows
//! the order of operations of PyTorch's single-tensor (`foreach=False`) path, so that recorded
//! PyTorch trajectories check these loops and these loops check the kernels. Step-dependent
//! scalars come precomputed from the host scheduler, exactly as the kernels receive them.
//!
//! # Panics
//!
//! These loops index every slice by the parameter's index, as the kernels do: a state or
//! gradient shorter than the parameter panics. [`crate::CpuOptimizer`] checks every length
//! before calling them, and returns an error instead.

mod accumulate;
mod adadelta;
mod adafactor;
mod adagrad;
mod adam;
mod adamax;
mod ademamix;
mod adopt;
mod asgd;
pub mod grad_norm;
mod lamb;
mod lars;
mod lion;
pub mod matmul;
mod muon;
mod nadam;
mod radam;
mod rmsprop;
mod rprop;
mod schedule_free;
mod sgd;

pub use accumulate::accumulate;
pub use adadelta::adadelta;
pub use adafactor::adafactor;
pub use adagrad::adagrad;
pub use adam::adam;
pub use adamax::adamax;
pub use ademamix::ademamix;
pub use adopt::adopt;
pub use asgd::asgd;
pub use lamb::{lamb, lamb_norms};
pub use lars::{lars, lars_norms};
pub use lion::lion;
pub use muon::{muon, newton_schulz};
pub use nadam::nadam;
pub use radam::radam;
pub use rmsprop::rmsprop;
pub use rprop::rprop;
pub use schedule_free::{schedule_free_adamw, schedule_free_pass};
pub use sgd::sgd;

/// `torch.lerp`'s formula, as `torch_lerp` in `shaders/common.wgsl`.
#[inline]
pub fn torch_lerp(a: f32, b: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 {
        a + weight * (b - a)
    } else {
        b - (b - a) * (1.0 - weight)
    }
}

/// optax's `scale_by_trust_ratio`, as `trust_ratio` in `shaders/common.wgsl`.
#[inline]
pub fn trust_ratio(param_norm: f32, update_norm: f32, coefficient: f32, eps: f32) -> f32 {
    if param_norm == 0.0 || update_norm == 0.0 {
        1.0
    } else {
        coefficient * param_norm / (update_norm + eps)
    }
}

/// Elements per partial sum of a `norms` stage on the CPU. Each chunk's sums start from zero
/// and the chunks' sums are added in order, so the result does not depend on how the chunks
/// are spread over threads: any thread count gives the same bits.
pub const NORM_CHUNK: usize = 1 << 14;

/// The (Σx², Σy²) of a tensor of `len` elements from `chunk`, which sums one range: every
/// [`NORM_CHUNK`]-element range in order, each summed from zero, then added in order.
pub fn chunked_norms(
    len: usize,
    mut chunk: impl FnMut(std::ops::Range<usize>) -> (f64, f64),
) -> (f64, f64) {
    add_partials(
        (0..len)
            .step_by(NORM_CHUNK)
            .map(|start| chunk(start..(start + NORM_CHUNK).min(len))),
    )
}

/// The partial sums of consecutive chunks added in order.
pub fn add_partials(partials: impl IntoIterator<Item = (f64, f64)>) -> (f64, f64) {
    partials
        .into_iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))
}

/// A tensor's norms from the sums of squares a `norms` stage returns, rounded to f32 as the
/// reduction kernel stores them.
pub fn norms_from_sums((sum_p, sum_u): (f64, f64)) -> [f32; 2] {
    [sum_p.sqrt() as f32, sum_u.sqrt() as f32]
}
