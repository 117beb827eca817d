use crate::abi::uniforms::AdamScalars;
use crate::cpu::torch_lerp;

/// One Adam / AdamW step; mirrors `shaders/adam.wgsl`. `max_exp_avg_sq` may be empty when
/// `amsgrad` is off.
#[allow(clippy::too_many_arguments)] // one argument per kernel binding, as in the shader
pub fn adam(
    s: &AdamScalars,
    amsgrad: bool,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    max_exp_avg_sq: &mut [f32],
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
        let mut v_hat = v;
        if amsgrad {
            v_hat = max_exp_avg_sq[i].max(v);
            max_exp_avg_sq[i] = v_hat;
        }
        let denom = v_hat.sqrt() / s.bias_correction2_sqrt + s.eps;
        param[i] = p + s.neg_step_size * (m / denom);
    }
}
