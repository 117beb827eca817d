// stream.wgsl: the benchmark's same-bytes streaming kernel, the roofline an optimizer step is
// measured against. It moves exactly the bytes a fused step must: read and write param, read
// grad, read and write N_STATES state buffers, with one add per buffer so no load is dead.
//
// Compiled at both widths (kernel::Width): the vec4 form, with WG and VPI swept by the bench
// for the fastest, is the roofline; the f32 form, one element per invocation, is kept as the
// scalar reference earlier measurements were taken against.
//
// Bindings: 1 param, 2 grad (common.wgsl), 3..5 states (read_write; those past N_STATES are
//           16-byte placeholders and are never touched).
// Bounds guard: each invocation stops at the first of its VPI indices past arrayLength(&param).

override N_STATES: u32 = 0u;

@group(0) @binding(3) var<storage, read_write> state0: array<V>;
@group(0) @binding(4) var<storage, read_write> state1: array<V>;
@group(0) @binding(5) var<storage, read_write> state2: array<V>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        let g = grad[i];
        param[i] = param[i] + g;
        if (N_STATES > 0u) {
            state0[i] = state0[i] + g;
        }
        if (N_STATES > 1u) {
            state1[i] = state1[i] + g;
        }
        if (N_STATES > 2u) {
            state2[i] = state2[i] + g;
        }
    }
}
