// accumulate.wgsl: gradient accumulation over K micro-batches, as k calls of PyTorch's
// `(loss / k).backward()` before one step: each micro-batch's gradient, divided by K, is added
// to a running sum, and the last writes the whole sum into the gradient for the step to read.
//
// Bindings (group 0): 0 grad (read_write: the caller's gradient window), 1 grad_sum (the
// optimizer's running sum, as long). MODE 0, the first micro-batch: grad_sum = grad / K;
// 1, the ones between: grad_sum = grad_sum + grad / K; 2, the last: grad = grad_sum + grad / K.
// One value per invocation, WG per workgroup, over a 1-D or 2-D grid; each invocation past
// the window's end does nothing.
// Mirror: src/cpu/accumulate.rs.

override WG: u32 = 256u;
override MODE: u32 = 0u;
override K: f32 = 1.0;

@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad_sum: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= arrayLength(&grad)) {
        return;
    }
    let g = grad[i] / K;
    if (MODE == 0u) {
        grad_sum[i] = g;
    } else if (MODE == 1u) {
        grad_sum[i] = grad_sum[i] + g;
    } else {
        grad[i] = grad_sum[i] + g;
    }
}
