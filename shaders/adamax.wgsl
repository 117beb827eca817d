// adamax.wgsl: one step of torch.optim.Adamax over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdamaxScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 exp_avg, 4 exp_inf (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adamax.rs.

// PyTorch's single-tensor path: grad (negated if maximize) + weight_decay * param;
// exp_avg.lerp_(grad, 1 - beta1); exp_inf = max(exp_inf * beta2, |grad| + eps);
// param.addcdiv_(exp_avg, exp_inf, value=-clr) with clr = lr / (1 - beta1^t) from the host.
alias Scalars = AdamaxScalars;

struct AdamaxScalars {
    weight_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    eps: f32,
    neg_clr: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

override MAXIMIZE: bool = false;


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p;
    let m = torch_lerp(load_exp_avg(i), g, s.one_minus_beta1);
    let u = max(load_exp_inf(i) * s.beta2, abs(g) + s.eps);
    store_exp_avg(i, m);
    store_exp_inf(i, u);
    store_param(i, p + s.neg_clr * (m / u));
}
