// adagrad.wgsl: one step of torch.optim.Adagrad over one parameter buffer.
//
// Bindings: group 1: 0 AdagradScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (common.wgsl),
//           3 sum (read_write, starts at initial_accumulator_value).
// Bounds guard: each invocation stops at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adagrad.rs.

// neg_clr is -lr / (1 + (step - 1) * lr_decay), computed on the host in f64.
struct AdagradScalars {
    weight_decay: f32,
    eps: f32,
    neg_clr: f32,
    _pad0: f32,
}

override MAXIMIZE: bool = false;

@group(1) @binding(0) var<uniform> scalars: array<AdagradScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> sum: array<V>;

// One element (one V) of the update.
fn update_at(s: AdagradScalars, i: u32) {
    let p = param[i];
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p;
    let acc = sum[i] + g * g;
    sum[i] = acc;
    let denom = sqrt(acc) + s.eps;
    param[i] = p + s.neg_clr * (g / denom);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    let s = scalars[candidate()];
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        update_at(s, i);
    }
}
