use crate::abi::uniforms::RpropScalars;

/// WGSL's and torch's `sign`: 0 at zero (Rust's `signum(0.0)` is 1).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// One Rprop step; mirrors `shaders/rprop.wgsl`.
pub fn rprop(
    s: &RpropScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    prev: &mut [f32],
    step_size: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        let direction = sign(g * prev[i]);
        let factor = if direction > 0.0 {
            s.etaplus
        } else if direction < 0.0 {
            s.etaminus
        } else {
            1.0
        };
        // WGSL's clamp(e, lo, hi) is min(max(e, lo), hi), as torch.clamp.
        let step = (step_size[i] * factor)
            .max(s.step_size_min)
            .min(s.step_size_max);
        step_size[i] = step;
        let kept = if direction < 0.0 { 0.0 } else { g };
        prev[i] = kept;
        param[i] = p + -sign(kept) * step;
    }
}
