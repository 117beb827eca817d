use crate::abi::uniforms::LionScalars;

/// One Lion step; mirrors `shaders/lion.wgsl`.
pub fn lion(s: &LionScalars, param: &mut [f32], grad: &[f32], exp_avg: &mut [f32]) {
    for i in 0..param.len() {
        let p = param[i];
        let g = grad[i];
        let m = exp_avg[i];
        // f32::signum(0.0) is 1; WGSL's and jnp's sign(0) are 0.
        let interpolated = s.one_minus_beta1 * g + s.beta1 * m;
        let mut u = if interpolated == 0.0 {
            0.0
        } else {
            interpolated.signum()
        };
        exp_avg[i] = s.one_minus_beta2 * g + s.beta2 * m;
        u += s.weight_decay * p;
        param[i] = p + s.neg_lr * u;
    }
}
