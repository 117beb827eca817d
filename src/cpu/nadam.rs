use crate::abi::uniforms::NAdamScalars;
use crate::cpu::torch_lerp;

/// One NAdam step; mirrors `shaders/nadam.wgsl`.
pub fn nadam(
    s: &NAdamScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    for i in 0..param.len() {
        let p0 = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p0;
        let p = p0 * s.param_decay;
        let m = torch_lerp(exp_avg[i], g, s.one_minus_beta1);
        let v = exp_avg_sq[i] * s.beta2 + s.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let denom = (v / s.bias_correction2).sqrt() + s.eps;
        let p1 = p + s.grad_coef * (g / denom);
        param[i] = p1 + s.avg_coef * (m / denom);
    }
}
