// adopt.wgsl: one step of ADOPT (optax.contrib.adopt) over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdoptScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 exp_avg, 4 exp_avg_sq (read_write; optax's `mu` and `nu`).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adopt.rs.

// optax's order, with the previous second moment normalizing the gradient:
// nu' = (1 - b2_) g² + b2_ nu; u = clip(g / max(sqrt(nu), eps), -c, c);
// mu = (1 - b1_) u + b1_ mu; (nesterov: out = (1 - b1_) u + b1_ mu, else out = mu);
// p = p + (-lr) out. On the first step the host sets b2_ = 0, b1_ = 1 and c = 0, as optax's
// jnp.where on its count does: the second moment is initialized and the parameter stays.
alias Scalars = AdoptScalars;

struct AdoptScalars {
    one_minus_beta1: f32,
    beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
    neg_lr: f32,
    _pad0: f32,
}

override NESTEROV: bool = false;
override CLIPPING: bool = true;


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    let g = load_grad(i);
    let nu = load_exp_avg_sq(i);
    store_exp_avg_sq(i, s.one_minus_beta2 * (g * g) + s.beta2 * nu);
    var u = g / max(sqrt(nu), V(s.eps));
    if (CLIPPING) {
        // jnp.clip: min(max(u, -c), c).
        u = min(max(u, V(-s.clip)), V(s.clip));
    }
    let m = s.one_minus_beta1 * u + s.beta1 * load_exp_avg(i);
    store_exp_avg(i, m);
    var out = m;
    if (NESTEROV) {
        out = s.one_minus_beta1 * u + s.beta1 * m;
    }
    store_param(i, p + s.neg_lr * out);
}
