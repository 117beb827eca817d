// adadelta.wgsl: one step of torch.optim.Adadelta over one parameter buffer.
//
// Bindings: group 1: 0 AdadeltaScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (common.wgsl), 3 square_avg, 4 acc_delta (read_write).
// Bounds guard: each invocation stops at the first of its VPI indices past arrayLength(&param).
// Mirror: src/cpu/adadelta.rs.

// PyTorch's single-tensor path: grad (negated if maximize) + weight_decay * param;
// square_avg = rho * square_avg + (1 - rho) * g²; rms = sqrt(square_avg + eps);
// delta = sqrt(acc_delta + eps) / rms * g; acc_delta = rho * acc_delta + (1 - rho) * delta²;
// param += -lr * delta.
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

@group(1) @binding(0) var<uniform> scalars: array<AdadeltaScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> square_avg: array<V>;
@group(0) @binding(4) var<storage, read_write> acc_delta: array<V>;

// One element (one V) of the update.
fn update_at(s: AdadeltaScalars, i: u32) {
    let p = param[i];
    var g = load_grad(i);
    if (MAXIMIZE) {
        g = -g;
    }
    g = g + s.weight_decay * p;
    let sq = square_avg[i] * s.rho + s.one_minus_rho * g * g;
    square_avg[i] = sq;
    let rms = sqrt(sq + s.eps);
    let delta = sqrt(acc_delta[i] + s.eps) / rms * g;
    acc_delta[i] = acc_delta[i] * s.rho + s.one_minus_rho * delta * delta;
    param[i] = p + s.neg_lr * delta;
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
