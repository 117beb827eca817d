// blockwise.wgsl: the entry point of a single-pass optimizer kernel over a tensor whose state is
// quantized (q8, q4), appended after the kernel's own WGSL by `kernel::compose_for` in place of
// elementwise.wgsl.
//
// QBLOCKS whole blocks of the state's quantization per workgroup of QGROUP invocations (QWG per
// block, one V = vec4<f32> each: 64 for q8's blocks of 256, 32 for q4's blocks of 128), so each
// store_X of a quantized state can take its block's absmax with a workgroup reduction
// (kernel::storage). The host dispatches one workgroup per QBLOCKS blocks of the window, on a
// 2-D grid when one dimension is too small; workgroups past the last block (a 2-D grid's last
// row) return at once, and in the last workgroup the invocations past the window's last block
// take part in the reductions without touching memory (q_live). Every branch that encloses an
// update_at is uniform across the workgroup (the step's skip flag is read from a read-only
// buffer, the workgroup index from workgroup_id), as the barriers in the stores need.

@compute @workgroup_size(QGROUP)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let group = workgroup_index(wid, nwg);
    if (step_skipped() || group * QGROUP >= body_end()) {
        return;
    }
    let s = step_uniform.scalars[candidate()];
    update_at(s, group * QGROUP + lid.x);
}
