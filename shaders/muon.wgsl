// muon.wgsl: the elementwise passes of one Muon step (torch.optim.Muon) over one matrix, around
// reduce.wgsl and the Newton–Schulz multiplies of matmul.wgsl:
//   norms:     update the momentum buffer, form the update U into the scratch matrix `ortho`,
//              and write this workgroup's (0, ΣU²);
//   normalize: ortho_next = ortho / max(‖U‖, eps), the iteration's start;
//   main:      p ← p · (1 - lr · wd) - lr · ratio · O, with O the iteration's result (in
//              `ortho`, or in `ortho_next` for an even ns_steps).
// The matrix keeps its stored orientation throughout: matmul.wgsl runs a tall matrix's
// iteration on Xᵀ by transposed multiplies, so these passes index U, X and P alike.
//
// Bindings: group 1: 0 MuonScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (kernel::storage), 3 momentum_buffer (read_write),
//           6 partials (read_write, one vec2 per workgroup), 7 norms (read; (0, ‖U‖)),
//           14 ortho, 15 ortho_next (read_write; this matrix's slots of its batch's scratch),
//           16 lr_ratios (read; [original, match_rms_adamw] for its shape).
// Bounds guard: `main` and `normalize` return past arrayLength(&param); `norms` contributes
// zeros there instead, since every invocation must reach workgroup_sum's barriers. Both scratch
// slots are bound with the parameter's length.
// Mirror: src/cpu/muon.rs.

struct MuonScalars {
    momentum: f32,
    one_minus_momentum: f32,
    decay: f32,
    lr: f32,
    eps: f32,
    match_rms: f32,
    final_in_next: f32,
    _pad: f32,
}

override NESTEROV: bool = true;

@group(1) @binding(0) var<uniform> scalars: array<MuonScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> momentum_buffer: array<V>;
@group(0) @binding(7) var<storage, read> tensor_norms: array<f32>;
@group(0) @binding(14) var<storage, read_write> ortho: array<V>;
@group(0) @binding(15) var<storage, read_write> ortho_next: array<V>;
@group(0) @binding(16) var<storage, read> lr_ratios: array<f32>;

@compute @workgroup_size(WG)
fn norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = norm_pass_base(wid, nwg, lid);
    let s = scalars[candidate()];
    // A skipped step writes nothing (its norms and iteration are never used).
    let skipped = step_skipped();
    var sums = vec2<f32>(0.0);
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&param) && !skipped) {
            let g = load_grad(i);
            // buf.lerp_(grad, 1 - momentum); update = grad.lerp(buf, momentum) or buf.
            let b = torch_lerp(momentum_buffer[i], g, s.one_minus_momentum);
            momentum_buffer[i] = b;
            var u = b;
            if (NESTEROV) {
                u = torch_lerp(g, b, s.momentum);
            }
            ortho[i] = u;
            sums = sums + vec2<f32>(0.0, hsum(u * u));
        }
    }
    store_partial(wid, nwg, lid, sums);
}

@compute @workgroup_size(WG)
fn normalize(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    let s = scalars[candidate()];
    // x.div_(x.norm().clamp(min=eps)).
    let norm = max(tensor_norms[1], s.eps);
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        ortho_next[i] = ortho[i] / norm;
    }
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
    var ratio = lr_ratios[0];
    if (s.match_rms > 0.5) {
        ratio = lr_ratios[1];
    }
    let neg_adjusted = -(s.lr * ratio);
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        var o = ortho[i];
        if (s.final_in_next > 0.5) {
            o = ortho_next[i];
        }
        // param.mul_(1 - lr * wd); param.add_(update, alpha=-adjusted_lr).
        let p = param[i] * s.decay;
        param[i] = p + neg_adjusted * o;
    }
}
