// adadelta.wgsl: one step of torch.optim.Adadelta over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdadeltaScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 square_avg, 4 acc_delta (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adadelta.rs.

// PyTorch's single-tensor path: grad (negated if maximize) + weight_decay * param;
// square_avg = rho * square_avg + (1 - rho) * g²; rms = sqrt(square_avg + eps);
// delta = sqrt(acc_delta + eps) / rms * g; acc_delta = rho * acc_delta + (1 - rho) * delta²;
// param += -lr * delta.
alias Scalars = AdadeltaScalars;

struct AdadeltaScalars {
    weight_decay: f32,
    rho: f32,
    one_minus_rho: f32,
    eps: f32,
    neg_lr: f32,
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
    let sq = load_square_avg(i) * s.rho + s.one_minus_rho * g * g;
    store_square_avg(i, sq);
    let rms = sqrt(sq + s.eps);
    let delta = sqrt(load_acc_delta(i) + s.eps) / rms * g;
    store_acc_delta(i, load_acc_delta(i) * s.rho + s.one_minus_rho * delta * delta);
    store_param(i, p + s.neg_lr * delta);
}
