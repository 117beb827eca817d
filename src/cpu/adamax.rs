use crate::abi::uniforms::AdamaxScalars;
use crate::cpu::torch_lerp;

/// One Adamax step; mirrors `shaders/adamax.wgsl`.
pub fn adamax(
    s: &AdamaxScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_inf: &mut [f32],
) {
    for i in 0..param.len() {
        let p = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p;
        let m = torch_lerp(exp_avg[i], g, s.one_minus_beta1);
        let u = (exp_inf[i] * s.beta2).max(g.abs() + s.eps);
        exp_avg[i] = m;
        exp_inf[i] = u;
        param[i] = p + s.neg_clr * (m / u);
    }
}
