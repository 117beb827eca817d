// stream.wgsl: the benchmark's same-bytes streaming kernel, the roofline an optimizer step is
// measured against. It moves exactly the bytes a fused step must: read and write param, read
// grad, read and write N_STATES state buffers, with one add per buffer so no load is dead.
//
// Compiled at both widths (kernel::Width): the vec4 form, with WG and VPI swept by the bench
// for the fastest, is the roofline; the f32 form, one element per invocation, is kept as the
// scalar reference earlier measurements were taken against.
//
// Bindings (declared, with load_/store_ accessors for the measured tensors' dtypes, by
//           kernel::storage): 1 param, 2 grad, 3..5 state0..state2 (read_write; those past
//           N_STATES are 16-byte placeholders and are never touched); 12 extent with 16-bit
//           values, whose x is the V count (at f32 width, every value: the stream's buffers
//           hold whole vectors). So it moves the bytes of the same dtypes, converting them as
//           the optimizer does.
// `stream_states(i, g)`, generated after this file (tooling::bench::roofline), reads, adds to
// and writes each state at vector i: its value, or over quantized state (whose buffers are
// block records of codes and a scale) the code word of this vector's values, and, once per
// block, the scale: the bytes a quantized step moves.
// Bounds guard: each invocation stops at the first of its VPI indices past body_end().

override N_STATES: u32 = 0u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= body_end()) {
            return;
        }
        let g = stored_grad(i);
        store_param(i, load_param(i) + g);
        stream_states(i, g);
    }
}
