// rmsprop.wgsl: one step of torch.optim.RMSprop over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 RmsPropScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 square_avg, 4 momentum_buffer, 5 grad_avg (read_write; the last two are
//           16-byte placeholders when MOMENTUM or CENTERED is off).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/rmsprop.rs.

// eps is added after the square root, as PyTorch does (TensorFlow adds it inside).
alias Scalars = RmsPropScalars;

struct RmsPropScalars {
    weight_decay: f32,
    alpha: f32,
    one_minus_alpha: f32,
    eps: f32,
    momentum: f32,
    neg_lr: f32,
    _pad0: f32,
    _pad1: f32,
}

override CENTERED: bool = false;
override MOMENTUM: bool = false;
override MAXIMIZE: bool = false;


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p;
    let sq = load_square_avg(i) * s.alpha + s.one_minus_alpha * g * g;
    store_square_avg(i, sq);
    var avg: V;
    if (CENTERED) {
        let ga = torch_lerp(load_grad_avg(i), g, s.one_minus_alpha);
        store_grad_avg(i, ga);
        avg = sqrt(sq - ga * ga);
    } else {
        avg = sqrt(sq);
    }
    avg = avg + s.eps;
    if (MOMENTUM) {
        let buf = load_momentum_buffer(i) * s.momentum + g / avg;
        store_momentum_buffer(i, buf);
        store_param(i, p + s.neg_lr * buf);
    } else {
        store_param(i, p + s.neg_lr * (g / avg));
    }
}
