// nadam.wgsl: one step of torch.optim.NAdam over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 NAdamScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 exp_avg, 4 exp_avg_sq (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/nadam.rs.

// PyTorch's single-tensor path: grad (negated if maximize), then either param *= 1 - lr * wd
// (decoupled_weight_decay: param_decay) or grad += wd * param (weight_decay); the moments as
// Adam's; denom = sqrt(exp_avg_sq / bias_correction2) + eps (the division before the root);
// then two separate updates, param.addcdiv_(grad, denom, grad_coef) and
// param.addcdiv_(exp_avg, denom, avg_coef). The coefficients come from the momentum schedule
// μₜ and its running product, which the host keeps in f32 as PyTorch does.
alias Scalars = NAdamScalars;

struct NAdamScalars {
    weight_decay: f32,
    param_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2: f32,
    eps: f32,
    grad_coef: f32,
    avg_coef: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

override MAXIMIZE: bool = false;


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p0 = load_param(i);
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p0;
    let p = p0 * s.param_decay;
    let m = torch_lerp(load_exp_avg(i), g, s.one_minus_beta1);
    let v = load_exp_avg_sq(i) * s.beta2 + s.one_minus_beta2 * g * g;
    store_exp_avg(i, m);
    store_exp_avg_sq(i, v);
    let denom = sqrt(v / s.bias_correction2) + s.eps;
    let p1 = p + s.grad_coef * (g / denom);
    store_param(i, p1 + s.avg_coef * (m / denom));
}
