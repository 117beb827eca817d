// swap.wgsl: exchanges a parameter window with its average of the weights, in place, to
// evaluate with the average and to swap the trained weights back (MODE 0); or starts the
// average from the parameter (MODE 1: ema = param), as AveragedModel's copy of the model.
//
// Bindings (group 0): 0 param (the caller's parameter window, f32), 1 ema (its average, as
// long). One value per invocation, WG per workgroup, over a 1-D or 2-D grid; each invocation
// past the window's end does nothing.
// Mirror: CpuOptimizer::swap_ema (src/cpu_optimizer.rs).

override WG: u32 = 256u;
override MODE: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> ema: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= arrayLength(&param)) {
        return;
    }
    let trained = param[i];
    if (MODE == 1u) {
        ema[i] = trained;
        return;
    }
    param[i] = ema[i];
    ema[i] = trained;
}
