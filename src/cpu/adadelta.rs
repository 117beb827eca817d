use crate::abi::uniforms::AdadeltaScalars;

/// One Adadelta step; mirrors `shaders/adadelta.wgsl`.
pub fn adadelta(
    s: &AdadeltaScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    square_avg: &mut [f32],
    acc_delta: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p;
        let sq = square_avg[i] * s.rho + s.one_minus_rho * g * g;
        square_avg[i] = sq;
        let rms = (sq + s.eps).sqrt();
        let delta = (acc_delta[i] + s.eps).sqrt() / rms * g;
        acc_delta[i] = acc_delta[i] * s.rho + s.one_minus_rho * delta * delta;
        param[i] = p + s.neg_lr * delta;
    }
}
