// adagrad.wgsl: one step of torch.optim.Adagrad over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 AdagradScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 sum (read_write, starts at initial_accumulator_value).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adagrad.rs.

// neg_clr is -lr / (1 + (step - 1) * lr_decay), computed on the host in f64.
alias Scalars = AdagradScalars;

struct AdagradScalars {
    weight_decay: f32,
    eps: f32,
    neg_clr: f32,
    _pad0: f32,
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
    let acc = load_sum(i) + g * g;
    store_sum(i, acc);
    let denom = sqrt(acc) + s.eps;
    store_param(i, p + s.neg_clr * (g / denom));
}
