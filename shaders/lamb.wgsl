// lamb.wgsl: one step of LAMB (optax.lamb) over one parameter tensor, in two entry points
// around reduce.wgsl:
//   norms: update the Adam moments, form the update u, and write this workgroup's (Σp², Σu²);
//   main:  recompute u from the stored moments and apply p ← p - lr · trust · u, with the
//          tensor's trust ratio ‖p‖ / ‖u‖ from the reduction.
//
// Bindings: group 1: 0 LambScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (kernel::storage), 3 exp_avg, 4 exp_avg_sq
//           (read_write), 6 partials (read_write, one vec2 per workgroup of this window),
//           7 norms (read; this tensor's (‖p‖, ‖u‖)).
// Bounds guard: `main` returns past arrayLength(&param); `norms` contributes zeros there
// instead, since every invocation must reach workgroup_sum's barriers.
// Mirror: src/cpu/lamb.rs.

// optax's order: m = (1 - b1) g + b1 m; v = (1 - b2) g² + b2 v; u = (m / bc1) / (√(v / bc2) + eps)
// + wd p. Its bias corrections are computed here on the host in f64 and rounded once.
struct LambScalars {
    one_minus_beta1: f32,
    beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    eps: f32,
    weight_decay: f32,
    neg_lr: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

@group(1) @binding(0) var<uniform> scalars: array<LambScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<V>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<V>;
@group(0) @binding(7) var<storage, read> tensor_norms: array<f32>;

fn direction(s: LambScalars, p: V, m: V, v: V) -> V {
    return (m / s.bias_correction1) / (sqrt(v / s.bias_correction2) + s.eps) + s.weight_decay * p;
}

@compute @workgroup_size(WG)
fn norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // NORM_ELEMS elements per invocation: fewer workgroups, and so fewer barriers.
    let base = norm_pass_base(wid, nwg, lid);
    let s = scalars[candidate()];
    // A skipped step writes nothing (its norms are never used).
    let skipped = step_skipped();
    var sums = vec2<f32>(0.0);
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&param) && !skipped) {
            let p = param[i];
            let g = load_grad(i);
            let m = s.one_minus_beta1 * g + s.beta1 * exp_avg[i];
            let v = s.one_minus_beta2 * (g * g) + s.beta2 * exp_avg_sq[i];
            exp_avg[i] = m;
            exp_avg_sq[i] = v;
            let u = direction(s, p, m, v);
            sums = sums + vec2<f32>(hsum(p * p), hsum(u * u));
        }
    }
    store_partial(wid, nwg, lid, sums);
}

// One element (one V) of the update.
fn update_at(s: LambScalars, trust: f32, i: u32) {
    let p = param[i];
    let u = direction(s, p, exp_avg[i], exp_avg_sq[i]);
    param[i] = p + s.neg_lr * (u * trust);
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
    let trust = trust_ratio(tensor_norms[0], tensor_norms[1], 1.0, 0.0);
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        update_at(s, trust, i);
    }
}
