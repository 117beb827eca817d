use crate::abi::uniforms::SgdScalars;

/// One SGD step; mirrors `shaders/sgd.wgsl`. `momentum_buffer` may be empty when `momentum` is off.
pub fn sgd(
    s: &SgdScalars,
    momentum: bool,
    nesterov: bool,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    momentum_buffer: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p;
        if momentum {
            let buf = momentum_buffer[i] * s.momentum_keep + s.grad_weight * g;
            momentum_buffer[i] = buf;
            if nesterov {
                g += s.momentum * buf;
            } else {
                g = buf;
            }
        }
        param[i] = p + s.neg_lr * g;
    }
}
