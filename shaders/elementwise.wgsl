// elementwise.wgsl: the entry point of every single-pass optimizer kernel, appended after the
// kernel's own WGSL by `kernel::compose` (src/kernel.rs, `Kernel::single_pass`).
//
// The kernel declares `alias Scalars = ...;` (its per-step scalars) and
// `fn update_at(s: Scalars, i: u32)`, one V of its update; kernel::storage declares the uniform
// `step_uniform` (StepUniform: the scalars of every candidate, then the step's counter) at
// group 1 binding 0. `main` skips the whole step when the
// gradient stage found an inf or NaN (loss scaling), picks the scalars for the steps skipped so
// far, and calls update_at for each of its indices (update_range in common.wgsl: VPI of them,
// WG apart, none past the tensor's body; in a tail pipeline, one each, or all the tail in one
// invocation where 16-bit values share words).

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    let s = step_uniform.scalars[candidate()];
    let r = update_range(wid, nwg, lid);
    for (var i = r.x; i < r.y; i = i + r.z) {
        update_at(s, i);
    }
}
