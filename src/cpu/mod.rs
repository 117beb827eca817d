//! The CPU reference: each optimizer's step as a plain loop over f32 slices.
//!
//! Each function mirrors its kernel in `shaders/` line for line, with the same names, and follows
//! the order of operations of PyTorch's single-tensor (`foreach=False`) path, so that recorded
//! PyTorch trajectories check these loops and these loops check the kernels. Step-dependent
//! scalars come precomputed from the host scheduler, exactly as the kernels receive them.

mod adagrad;
mod adam;
mod radam;
mod rmsprop;
mod sgd;

pub use adagrad::adagrad;
pub use adam::adam;
pub use radam::radam;
pub use rmsprop::rmsprop;
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
