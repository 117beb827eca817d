// lion.wgsl: one step of Lion (optax.lion) over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 LionScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 exp_avg (read_write; optax's `mu`).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/lion.rs.

// optax's order: u = sign((1 - b1) g + b1 m); m = (1 - b2) g + b2 m; u = u + wd p;
// p = p + (-lr) u.
alias Scalars = LionScalars;

struct LionScalars {
    one_minus_beta1: f32,
    beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    weight_decay: f32,
    neg_lr: f32,
    _pad0: f32,
    _pad1: f32,
}


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    let g = load_grad(i);
    let m = load_exp_avg(i);
    // WGSL's sign(0) is 0, as jnp.sign's.
    var u = sign(s.one_minus_beta1 * g + s.beta1 * m);
    store_exp_avg(i, s.one_minus_beta2 * g + s.beta2 * m);
    u = u + s.weight_decay * p;
    store_param(i, p + s.neg_lr * u);
}
