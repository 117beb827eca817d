use crate::abi::uniforms::AsgdScalars;

/// One ASGD step; mirrors `shaders/asgd.wgsl`.
pub fn asgd(s: &AsgdScalars, maximize: bool, param: &mut [f32], grad: &[f32], ax: &mut [f32]) {
    for i in 0..param.len() {
        let p0 = param[i];
        let mut g = grad[i];
        if maximize {
            g = -g;
        }
        g += s.weight_decay * p0;
        let p = (p0 * s.param_decay) + s.neg_eta * g;
        param[i] = p;
        if s.copy_avg != 0.0 {
            ax[i] = p;
        } else {
            let a = ax[i];
            ax[i] = a + (p - a) * s.mu;
        }
    }
}
