//! The gradient stage on the CPU; mirrors `shaders/grad_norm.wgsl` (with `reduce.wgsl`):
//! gradients unscaled by `1 / scale`, the inf/NaN check, per-tensor norms, the global norm of
//! those, and the clipping coefficient. Sums run in f64 here and in fixed-order f32 sums on the
//! device, so the two agree to rounding, not bit for bit.

/// Each gradient times `inverse_scale`, and whether any result is inf or NaN.
pub fn unscale(grads: &[&[f32]], inverse_scale: f32) -> (Vec<Vec<f32>>, bool) {
    let unscaled: Vec<Vec<f32>> = grads
        .iter()
        .map(|g| g.iter().map(|&x| x * inverse_scale).collect())
        .collect();
    let found_inf = unscaled.iter().flatten().any(|x| !x.is_finite());
    (unscaled, found_inf)
}

/// The 2-norm of a tensor's finite values (`sumsq` skips the others), rounded to f32 as the
/// reduction stores it.
pub fn tensor_norm(grad: &[f32]) -> f32 {
    let sum: f64 = grad
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    sum.sqrt() as f32
}

/// `torch.nn.utils.clip_grad_norm_`'s total norm: the 2-norm of the per-tensor norms.
pub fn global_norm(grads: &[&[f32]]) -> f32 {
    grads
        .iter()
        .map(|g| {
            let n = tensor_norm(g);
            f64::from(n) * f64::from(n)
        })
        .sum::<f64>()
        .sqrt() as f32
}

/// The clipping coefficient `min(1, max_norm / (norm + 1e-6))`.
pub fn clip_coefficient(max_norm: f32, norm: f32) -> f32 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Each gradient times `coefficient`.
pub fn scaled(grads: &[&[f32]], coefficient: f32) -> Vec<Vec<f32>> {
    grads
        .iter()
        .map(|g| g.iter().map(|&x| x * coefficient).collect())
        .collect()
}
