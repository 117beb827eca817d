use crate::abi::uniforms::AdoptScalars;

/// One ADOPT step; mirrors `shaders/adopt.wgsl`.
pub fn adopt(
    s: &AdoptScalars,
    (nesterov, clipping): (bool, bool),
    param: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let g = grad[i];
        let nu = exp_avg_sq[i];
        exp_avg_sq[i] = s.one_minus_beta2 * (g * g) + s.beta2 * nu;
        let mut u = g / nu.sqrt().max(s.eps);
        if clipping {
            u = u.max(-s.clip).min(s.clip);
        }
        let m = s.one_minus_beta1 * u + s.beta1 * exp_avg[i];
        exp_avg[i] = m;
        let out = if nesterov {
            s.one_minus_beta1 * u + s.beta1 * m
        } else {
            m
        };
        param[i] = p + s.neg_lr * out;
    }
}
