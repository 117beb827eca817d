// reduce.wgsl: per-tensor norms from per-workgroup partial sums, for every tensor of an
// optimizer in one dispatch (one workgroup per tensor).
//
// Bindings: 8 table (read; per tensor, the first partial and the partial count),
//           9 partial_sums (read; (Σx², Σy²) per workgroup of the `norms` stage, zero padding
//             between a tensor's windows), 10 norms (read_write; per tensor (‖x‖, ‖y‖) at a
//             stride of NORM_STRIDE floats, so each tensor's pair can be bound alone).
// Deterministic: each invocation sums a fixed subset in a fixed order, then workgroup_sum's
// fixed order; no atomics.

override NORM_STRIDE: u32 = 64u;

@group(0) @binding(8) var<storage, read> table: array<vec2<u32>>;
@group(0) @binding(9) var<storage, read> partial_sums: array<vec2<f32>>;
@group(0) @binding(10) var<storage, read_write> norms: array<f32>;

@compute @workgroup_size(WG)
fn reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // Uniform across the workgroup, so returning here keeps the barriers below uniform.
    let tensor = wid.y * nwg.x + wid.x;
    if (tensor >= arrayLength(&table)) {
        return;
    }
    let range = table[tensor];
    var acc = vec2<f32>(0.0);
    for (var k = lid.x; k < range.y; k = k + WG) {
        acc = acc + partial_sums[range.x + k];
    }
    let total = workgroup_sum(lid.x, acc);
    if (lid.x == 0u) {
        norms[tensor * NORM_STRIDE] = sqrt(total.x);
        norms[tensor * NORM_STRIDE + 1u] = sqrt(total.y);
    }
}
