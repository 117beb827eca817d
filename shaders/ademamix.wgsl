// ademamix.wgsl: one step of AdEMAMix (optax.contrib.ademamix) over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdemamixScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 exp_avg, 4 exp_avg_slow, 5 exp_avg_sq
//           (read_write; optax's `m1`, `m2` and `nu`).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/ademamix.rs.

// optax's order: m1 = (1 - b1) g + b1 m1; m2 = (1 - b3) g + b3 m2; nu = (1 - b2) g² + b2 nu;
// u = (m1 / bc1 + alpha m2) / (sqrt(nu / bc2 + eps_root) + eps); u = u + wd p;
// p = p + (-lr) u. The slow average m2 has no bias correction.
alias Scalars = AdemamixScalars;

struct AdemamixScalars {
    one_minus_beta1: f32,
    beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    one_minus_beta3: f32,
    beta3: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    alpha: f32,
    eps: f32,
    eps_root: f32,
    weight_decay: f32,
    neg_lr: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    let g = load_grad(i);
    let m1 = s.one_minus_beta1 * g + s.beta1 * load_exp_avg(i);
    let m2 = s.one_minus_beta3 * g + s.beta3 * load_exp_avg_slow(i);
    let nu = s.one_minus_beta2 * (g * g) + s.beta2 * load_exp_avg_sq(i);
    store_exp_avg(i, m1);
    store_exp_avg_slow(i, m2);
    store_exp_avg_sq(i, nu);
    let u = (m1 / s.bias_correction1 + s.alpha * m2)
        / (sqrt(nu / s.bias_correction2 + s.eps_root) + s.eps);
    store_param(i, p + s.neg_lr * (u + s.weight_decay * p));
}
