use crate::abi::uniforms::LarsScalars;

/// LARS's `norms` stage; mirrors `shaders/lars.wgsl`: (Σp², Σu²) with u = g + wd·p, in f64.
pub fn lars_norms(s: &LarsScalars, param: &[f32], grad: &[f32]) -> (f64, f64) {
    let (mut sum_p, mut sum_u) = (0.0f64, 0.0f64);
    for i in 0..param.len() {
        let p = param[i];
        let u = grad[i] + s.weight_decay * p;
        sum_p += f64::from(p * p);
        sum_u += f64::from(u * u);
    }
    (sum_p, sum_u)
}

/// LARS's `main` stage; mirrors `shaders/lars.wgsl`.
pub fn lars(
    s: &LarsScalars,
    nesterov: bool,
    norms: [f32; 2],
    param: &mut [f32],
    grad: &[f32],
    momentum_buffer: &mut [f32],
) {
    let trust = super::trust_ratio(norms[0], norms[1], s.trust_coefficient, s.eps);
    for i in 0..param.len() {
        let p = param[i];
        let u = s.neg_lr * ((grad[i] + s.weight_decay * p) * trust);
        let t = u + s.momentum * momentum_buffer[i];
        momentum_buffer[i] = t;
        let update = if nesterov { u + s.momentum * t } else { t };
        param[i] = p + update;
    }
}
