use crate::abi::uniforms::RAdamScalars;
use crate::cpu::torch_lerp;

/// One RAdam step; mirrors `shaders/radam.wgsl`.
pub fn radam(
    s: &RAdamScalars,
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
        let bias_corrected_exp_avg = m / s.bias_correction1;
        // One store whichever branch runs, as in the kernel.
        let mut update = bias_corrected_exp_avg * s.lr;
        if s.rectify != 0.0 {
            // PyTorch: bias_correction2 ** 0.5 / (sqrt(v) + eps), evaluated as reciprocal * scalar.
            let adaptive_lr = (1.0 / (v.sqrt() + s.eps)) * s.bias_correction2_sqrt;
            update = update * adaptive_lr * s.rect;
        }
        param[i] = p - update;
    }
}
