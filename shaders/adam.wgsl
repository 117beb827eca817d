// adam.wgsl: one step of torch.optim.Adam / AdamW over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdamScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 exp_avg, 4 exp_avg_sq, 5 max_exp_avg_sq (read_write; the last is a
//           16-byte placeholder when AMSGRAD is off).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adam.rs.

// Decoupled weight decay (AdamW) arrives as param_decay = 1 - lr * weight_decay
// with weight_decay = 0; L2 decay (Adam) as weight_decay with param_decay = 1.
// The bias corrections and step size are computed on the host in f64.
alias Scalars = AdamScalars;

struct AdamScalars {
    weight_decay: f32,
    param_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

override AMSGRAD: bool = false;
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
    var v_hat = v;
    if (AMSGRAD) {
        v_hat = max(load_max_exp_avg_sq(i), v);
        store_max_exp_avg_sq(i, v_hat);
    }
    let denom = sqrt(v_hat) / s.bias_correction2_sqrt + s.eps;
    store_param(i, p + s.neg_step_size * (m / denom));
}
