// asgd.wgsl: one step of torch.optim.ASGD over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AsgdScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 ax (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/asgd.rs.

// PyTorch's single-tensor path: grad (negated if maximize) + weight_decay * param;
// param *= 1 - lambd * eta; param += -eta * grad; then the average: ax = param while mu is 1
// (copy_avg), else ax += (param - ax) * mu. eta and mu are the host's, as PyTorch's f32 state
// tensors hold them.
alias Scalars = AsgdScalars;

struct AsgdScalars {
    weight_decay: f32,
    param_decay: f32,
    neg_eta: f32,
    mu: f32,
    copy_avg: f32,
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
    let p = (p0 * s.param_decay) + s.neg_eta * g;
    store_param(i, p);
    if (s.copy_avg != 0.0) {
        store_ax(i, p);
    } else {
        let a = load_ax(i);
        store_ax(i, a + (p - a) * s.mu);
    }
}
