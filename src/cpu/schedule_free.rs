use crate::abi::uniforms::ScheduleFreeScalars;
use crate::cpu::torch_lerp;
use crate::optim::Pass;

/// One Schedule-Free AdamW step (train mode: `param` holds y); mirrors
/// `shaders/schedule_free_adamw.wgsl`.
pub fn schedule_free_adamw(
    s: &ScheduleFreeScalars,
    param: &mut [f32],
    grad: &[f32],
    z: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    for i in 0..param.len() {
        let y = param[i];
        let g = grad[i];
        let v = exp_avg_sq[i] * s.beta2 + s.one_minus_beta2 * g * g;
        exp_avg_sq[i] = v;
        let d = (v / s.bias_correction2).sqrt() + s.eps;
        let u = g / d + s.weight_decay * y;
        let zi = z[i];
        param[i] = torch_lerp(y, zi, s.ckp1) + s.y_coef * u;
        z[i] = zi - s.lr * u;
    }
}

/// One of Schedule-Free's passes outside a step; mirrors `pass_at` in
/// `shaders/schedule_free_adamw.wgsl`.
pub fn schedule_free_pass(s: &ScheduleFreeScalars, pass: Pass, param: &mut [f32], z: &mut [f32]) {
    for i in 0..param.len() {
        match pass {
            Pass::Init => z[i] = param[i],
            Pass::ToEval => param[i] = torch_lerp(param[i], z[i], s.eval_weight),
            Pass::ToTrain => param[i] = torch_lerp(param[i], z[i], s.train_weight),
        }
    }
}
