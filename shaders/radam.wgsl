// radam.wgsl: one step of torch.optim.RAdam over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 RAdamScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 exp_avg, 4 exp_avg_sq (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/radam.rs.

// Whether this step is rectified (rho_t > 5) depends on the step number, which
// kernels never see: the host decides and sends `rectify` (1 or 0) with the
// rectification term `rect`. The branch is uniform across the dispatch.
alias Scalars = RAdamScalars;

struct RAdamScalars {
    weight_decay: f32,
    param_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction1: f32,
    bias_correction2_sqrt: f32,
    lr: f32,
    eps: f32,
    rect: f32,
    rectify: f32,
    _pad0: f32,
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
    let bias_corrected_exp_avg = m / s.bias_correction1;
    // One store whichever branch runs: the plain step is m̂ · lr, and the rectified one scales
    // that same product, so both keep PyTorch's left-to-right order.
    var delta = bias_corrected_exp_avg * s.lr;
    if (s.rectify != 0.0) {
        // PyTorch: bias_correction2 ** 0.5 / (sqrt(v) + eps), evaluated as reciprocal * scalar.
        let adaptive_lr = (1.0 / (sqrt(v) + s.eps)) * s.bias_correction2_sqrt;
        delta = delta * adaptive_lr * s.rect;
    }
    store_param(i, p - delta);
}
