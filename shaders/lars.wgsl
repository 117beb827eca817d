// lars.wgsl: one step of LARS (optax.lars) over one parameter tensor, in two entry points
// around reduce.wgsl:
//   norms: form u = g + wd p and write this workgroup's (Σp², Σu²);
//   main:  scale u by the tensor's trust ratio and by -lr, then momentum (optax's trace).
//
// Bindings: group 1: 0 LarsScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (kernel::storage), 3 momentum_buffer
//           (read_write; optax's trace), 6 partials (read_write, one vec2 per workgroup of this
//           window), 7 norms (read; this tensor's (‖p‖, ‖u‖)).
// Bounds guard: `main` returns past arrayLength(&param); `norms` contributes zeros there
// instead, since every invocation must reach workgroup_sum's barriers.
// Mirror: src/cpu/lars.rs.

struct LarsScalars {
    weight_decay: f32,
    trust_coefficient: f32,
    eps: f32,
    neg_lr: f32,
    momentum: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

override NESTEROV: bool = false;

@group(1) @binding(0) var<uniform> scalars: array<LarsScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> momentum_buffer: array<V>;
@group(0) @binding(7) var<storage, read> tensor_norms: array<f32>;

@compute @workgroup_size(WG)
fn norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // NORM_ELEMS elements per invocation: fewer workgroups, and so fewer barriers.
    let base = norm_pass_base(wid, nwg, lid);
    let s = scalars[candidate()];
    var sums = vec2<f32>(0.0);
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&param)) {
            let p = param[i];
            let u = load_grad(i) + s.weight_decay * p;
            sums = sums + vec2<f32>(hsum(p * p), hsum(u * u));
        }
    }
    store_partial(wid, nwg, lid, sums);
}

// One element (one V) of the update.
fn update_at(s: LarsScalars, trust: f32, i: u32) {
    let p = param[i];
    let u = s.neg_lr * ((load_grad(i) + s.weight_decay * p) * trust);
    let t = u + s.momentum * momentum_buffer[i];
    momentum_buffer[i] = t;
    var delta = t;
    if (NESTEROV) {
        delta = u + s.momentum * t;
    }
    param[i] = p + delta;
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
    let trust = trust_ratio(tensor_norms[0], tensor_norms[1], s.trust_coefficient, s.eps);
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        update_at(s, trust, i);
    }
}
