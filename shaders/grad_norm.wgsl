// grad_norm.wgsl: torch.nn.utils.clip_grad_norm_ on the device, around reduce.wgsl:
//   sumsq:    this workgroup's (Σg², 0) over NORM_ELEMS elements per invocation of one window
//             of one gradient, into partials;
//   finalize: one workgroup: the global norm √(Σ ‖g_t‖²) over every tensor's norm, as torch
//             takes the norm of the per-tensor norms, and the coefficient
//             min(1, max_norm / (norm + 1e-6)), into the gradient control every update reads.
//
// Bindings: 2 grad (common.wgsl), 6 partials (read_write), 12 tensor norms (read; reduce.wgsl's
//           output, NORM_STRIDE floats apart), 13 control (read_write; common.wgsl's
//           grad_control), 14 ClipParams (uniform).
// Deterministic: fixed assignment of elements to invocations and workgroup_sum's fixed tree.

struct ClipParams {
    max_norm: f32,
    tensors: u32,
    norm_stride: u32,
    _pad: u32,
}

@group(0) @binding(12) var<storage, read> tensor_norms: array<f32>;
@group(0) @binding(13) var<storage, read_write> control: array<f32>;
@group(0) @binding(14) var<uniform> clip: ClipParams;

@compute @workgroup_size(WG)
fn sumsq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = norm_pass_base(wid, nwg, lid);
    var sum = 0.0;
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&grad)) {
            let g = grad[i];
            sum = sum + g * g;
        }
    }
    store_partial(wid, nwg, lid, vec2<f32>(sum, 0.0));
}

@compute @workgroup_size(WG)
fn finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var t = lid.x; t < clip.tensors; t = t + WG) {
        let n = tensor_norms[t * clip.norm_stride];
        sum = sum + n * n;
    }
    let total = sqrt(workgroup_sum(lid.x, vec2<f32>(sum, 0.0)).x);
    if (lid.x == 0u) {
        control[0] = total;
        control[1] = min(clip.max_norm / (total + 1e-6), 1.0);
    }
}
