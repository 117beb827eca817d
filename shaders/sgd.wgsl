// sgd.wgsl: one step of torch.optim.SGD over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 SgdScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad,
//           3 momentum_buffer (read_write; a 16-byte placeholder when MOMENTUM is off).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/sgd.rs.

// PyTorch's single-tensor path: grad (negated if maximize) + weight_decay * param,
// then buf = momentum * buf + (1 - dampening) * grad (buf = grad on the first step:
// the host sends momentum_keep = 0, grad_weight = 1 then), then param -= lr * step.
alias Scalars = SgdScalars;

struct SgdScalars {
    weight_decay: f32,
    momentum_keep: f32,
    grad_weight: f32,
    momentum: f32,
    neg_lr: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

override MOMENTUM: bool = false;
override NESTEROV: bool = false;
override MAXIMIZE: bool = false;


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p;
    if (MOMENTUM) {
        let buf = load_momentum_buffer(i) * s.momentum_keep + s.grad_weight * g;
        store_momentum_buffer(i, buf);
        if (NESTEROV) {
            g = g + s.momentum * buf;
        } else {
            g = buf;
        }
    }
    store_param(i, p + s.neg_lr * g);
}
