use crate::abi::uniforms::AdagradScalars;

/// One Adagrad step; mirrors `shaders/adagrad.wgsl`.
pub fn adagrad(
    s: &AdagradScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    sum: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p;
        let acc = sum[i] + g * g;
        sum[i] = acc;
        let denom = acc.sqrt() + s.eps;
        param[i] = p + s.neg_clr * (g / denom);
    }
}
