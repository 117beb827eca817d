use crate::abi::uniforms::AdemamixScalars;

/// One AdEMAMix step; mirrors `shaders/ademamix.wgsl`.
pub fn ademamix(
    s: &AdemamixScalars,
    param: &mut [f32],
    grad: &[f32],
    [exp_avg, exp_avg_slow, exp_avg_sq]: [&mut [f32]; 3],
) {
    for i in 0..param.len() {
        let p = param[i];
        let g = grad[i];
        let m1 = s.one_minus_beta1 * g + s.beta1 * exp_avg[i];
        let m2 = s.one_minus_beta3 * g + s.beta3 * exp_avg_slow[i];
        let nu = s.one_minus_beta2 * (g * g) + s.beta2 * exp_avg_sq[i];
        exp_avg[i] = m1;
        exp_avg_slow[i] = m2;
        exp_avg_sq[i] = nu;
        let u = (m1 / s.bias_correction1 + s.alpha * m2)
            / ((nu / s.bias_correction2 + s.eps_root).sqrt() + s.eps);
        param[i] = p + s.neg_lr * (u + s.weight_decay * p);
    }
}
