// rprop.wgsl: one step of torch.optim.Rprop over one parameter buffer.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 RpropScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad, 3 prev, 4 step_size (read_write).
// Entry point: `main` in elementwise.wgsl, calling update_at for each of its indices; its bounds
// guard stops each invocation at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/rprop.rs.

// PyTorch's single-tensor path: the sign of grad · prev picks a factor (etaplus where
// positive, etaminus where negative, 1 where zero); step_size = clamp(step_size · factor,
// step_size_min, step_size_max); where the sign was negative the gradient is taken as 0; then
// param -= sign(grad) · step_size and prev = grad. A NaN gradient has sign 0 (torch.sign), so
// it leaves its parameter and step size as they were and is kept in prev. (PyTorch tests factor == etaminus; with
// 0 < etaminus < 1 < etaplus, which it requires, that is the negative sign.)
alias Scalars = RpropScalars;

struct RpropScalars {
    etaminus: f32,
    etaplus: f32,
    step_size_min: f32,
    step_size_max: f32,
}

override MAXIMIZE: bool = false;


// torch.sign: (0 < x) - (x < 0), so 0 for a zero or NaN (WGSL's own sign of NaN is
// implementation-defined).
fn torch_sign(x: V) -> V {
    return select(V(0.0), V(1.0), x > V(0.0)) - select(V(0.0), V(1.0), x < V(0.0));
}

// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let p = load_param(i);
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    let direction = torch_sign(g * load_prev(i));
    let factor = select(select(V(1.0), V(s.etaminus), direction < V(0.0)), V(s.etaplus), direction > V(0.0));
    // torch.clamp's order, min(max(x, lo), hi), also when lo > hi (WGSL's clamp may then
    // take the median instead).
    let step = min(max(load_step_size(i) * factor, V(s.step_size_min)), V(s.step_size_max));
    store_step_size(i, step);
    let kept = select(g, V(0.0), direction < V(0.0));
    store_prev(i, kept);
    store_param(i, p + -torch_sign(kept) * step);
}
