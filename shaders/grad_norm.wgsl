// grad_norm.wgsl: torch.nn.utils.clip_grad_norm_ and torch.amp.GradScaler on the device, around
// reduce.wgsl:
//   sumsq:    this workgroup's (Σg², count of non-finite g) over NORM_ELEMS values (vec4s,
//             or f32 for a tail or an unaligned gradient, as the update kernels) per
//             invocation of one window of one gradient, the gradient unscaled by 1 / scale
//             when loss scaling is on, into partials;
//   finalize: one workgroup: the global norm √(Σ ‖g_t‖²) over every tensor's norm, as torch
//             takes the norm of the per-tensor norms; the clipping coefficient
//             min(1, max_norm / (norm + 1e-6)); whether any gradient was inf or NaN (the step
//             is then skipped); and GradScaler's scale update. Into the gradient control every
//             update reads, and the scaler state.
//
// Bindings: 2 grad (kernel::storage), 6 partials (common.wgsl), 12 tensor norms (read; reduce.wgsl's
//           output, NORM_STRIDE floats apart), 13 control (read_write; common.wgsl's
//           grad_control), 14 GradParams (uniform), 15 scaler (read_write: scale, growth
//           tracker, skipped steps, whether the last step was skipped).
// Deterministic: fixed assignment of elements to invocations and workgroup_sum's fixed order.

struct GradParams {
    max_norm: f32,
    tensors: u32,
    norm_stride: u32,
    clip: u32,
    unscale: u32,
    growth_factor: f32,
    backoff_factor: f32,
    growth_interval: u32,
}

@group(0) @binding(12) var<storage, read> tensor_norms: array<f32>;
@group(0) @binding(13) var<storage, read_write> control: array<f32>;
@group(0) @binding(14) var<uniform> params: GradParams;
@group(0) @binding(15) var<storage, read_write> scaler: array<f32>;

// Whether each lane of x is finite (neither inf nor NaN).
fn finite_lanes(x: V) -> VB {
    return (bitcast<VU>(x) & VU(0x7f800000u)) != VU(0x7f800000u);
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// 1 / the loss scale this step's gradients carry (1 without loss scaling).
fn inverse_scale() -> f32 {
    if (params.unscale != 0u) {
        return 1.0 / scaler[0];
    }
    return 1.0;
}

@compute @workgroup_size(WG)
fn sumsq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = norm_pass_base(wid, nwg, lid);
    let inv = inverse_scale();
    var sums = vec2<f32>(0.0);
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&grad)) {
            let g = grad[i] * inv;
            // Per lane: g² where finite, else a count of 1.
            let finite = finite_lanes(g);
            sums = sums + vec2<f32>(
                hsum(select(V(0.0), g * g, finite)),
                hsum(select(V(1.0), V(0.0), finite)),
            );
        }
    }
    store_partial(wid, nwg, lid, sums);
}

@compute @workgroup_size(WG)
fn finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sums = vec2<f32>(0.0);
    for (var t = lid.x; t < params.tensors; t = t + WG) {
        let n = tensor_norms[t * params.norm_stride];
        sums = sums + vec2<f32>(n * n, tensor_norms[t * params.norm_stride + 1u]);
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        let norm = sqrt(total.x);
        let found = params.unscale != 0u && (total.y > 0.0 || !is_finite(norm));
        control[0] = norm;
        control[1] = select(1.0, min(params.max_norm / (norm + 1e-6), 1.0), params.clip != 0u);
        control[2] = inverse_scale();
        control[3] = select(0.0, 1.0, found);
        if (params.unscale != 0u) {
            // torch._amp_update_scale_.
            if (found) {
                scaler[0] = scaler[0] * params.backoff_factor;
                scaler[1] = 0.0;
                scaler[2] = scaler[2] + 1.0;
            } else {
                let successful = scaler[1] + 1.0;
                if (successful >= f32(params.growth_interval)) {
                    scaler[0] = scaler[0] * params.growth_factor;
                    scaler[1] = 0.0;
                } else {
                    scaler[1] = successful;
                }
            }
            scaler[3] = select(0.0, 1.0, found);
            control[4] = scaler[2];
        }
    }
}
