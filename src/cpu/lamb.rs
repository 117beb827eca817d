use crate::abi::uniforms::LambScalars;

fn direction(s: &LambScalars, p: f32, m: f32, v: f32) -> f32 {
    (m / s.bias_correction1) / ((v / s.bias_correction2).sqrt() + s.eps) + s.weight_decay * p
}

/// LAMB's `norms` stage; mirrors `shaders/lamb.wgsl`: updates the moments and returns
/// (Σp², Σu²) over the tensor, summed in f64.
pub fn lamb_norms(
    s: &LambScalars,
    param: &[f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) -> (f64, f64) {
    let (mut sum_p, mut sum_u) = (0.0f64, 0.0f64);
    for i in 0..param.len() {
        let p = param[i];
        let g = grad[i];
        let m = s.one_minus_beta1 * g + s.beta1 * exp_avg[i];
        let v = s.one_minus_beta2 * (g * g) + s.beta2 * exp_avg_sq[i];
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let u = direction(s, p, m, v);
        sum_p += f64::from(p * p);
        sum_u += f64::from(u * u);
    }
    (sum_p, sum_u)
}

/// LAMB's `main` stage; mirrors `shaders/lamb.wgsl`: applies the update with the tensor's
/// norms (‖p‖, ‖u‖).
pub fn lamb(
    s: &LambScalars,
    norms: [f32; 2],
    param: &mut [f32],
    exp_avg: &[f32],
    exp_avg_sq: &[f32],
) {
    let trust = super::trust_ratio(norms[0], norms[1], 1.0, 0.0);
    for i in 0..param.len() {
        let p = param[i];
        let u = direction(s, p, exp_avg[i], exp_avg_sq[i]);
        param[i] = p + s.neg_lr * (u * trust);
    }
}
