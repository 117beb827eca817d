use crate::abi::uniforms::RpropScalars;

/// torch's `sign`, `(0 < x) - (x < 0)`: +0 at either zero and at NaN (Rust's `signum(0.0)`
/// is 1, and its `signum(NaN)` is NaN).
fn sign(x: f32) -> f32 {
    f32::from(u8::from(x > 0.0)) - f32::from(u8::from(x < 0.0))
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
        // torch.clamp's order, as the kernel writes it out: min(max(x, lo), hi).
        let step = (step_size[i] * factor)
            .max(s.step_size_min)
            .min(s.step_size_max);
        step_size[i] = step;
        let kept = if direction < 0.0 { 0.0 } else { g };
        prev[i] = kept;
        param[i] = p + -sign(kept) * step;
    }
}
