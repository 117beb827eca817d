use crate::abi::uniforms::RmsPropScalars;
use crate::cpu::torch_lerp;

/// One RMSprop step; mirrors `shaders/rmsprop.wgsl`. `momentum_buffer` and `grad_avg` may be
/// empty when `momentum` or `centered` is off.
#[allow(clippy::too_many_arguments)] // one argument per kernel binding, as in the shader
pub fn rmsprop(
    s: &RmsPropScalars,
    centered: bool,
    momentum: bool,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    square_avg: &mut [f32],
    momentum_buffer: &mut [f32],
    grad_avg: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p;
        let sq = square_avg[i] * s.alpha + s.one_minus_alpha * g * g;
        square_avg[i] = sq;
        let mut avg = if centered {
            let ga = torch_lerp(grad_avg[i], g, s.one_minus_alpha);
            grad_avg[i] = ga;
            (sq - ga * ga).sqrt()
        } else {
            sq.sqrt()
        };
        avg += s.eps;
        if momentum {
            let buf = momentum_buffer[i] * s.momentum + g / avg;
            momentum_buffer[i] = buf;
            param[i] = p + s.neg_lr * buf;
        } else {
            param[i] = p + s.neg_lr * (g / avg);
        }
    }
}
