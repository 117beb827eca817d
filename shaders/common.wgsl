// common.wgsl: what every optimizer kernel shares, prepended to each of them by
// `kernel::compose` (src/kernel.rs).
//
// Bindings shared by all kernels (group 0), declared before this file by kernel::storage
// (src/kernel/storage.rs) with their accessors, for the tensor's dtypes:
//   1  param  read_write  the parameter, updated in place (load_param, store_param)
//   2  grad   read        its gradient (stored_grad; read_write when it shares a buffer with
//                         its parameter)
// Group 1 binding 0 is the kernel's uniform of per-step scalars (for single-pass kernels
// kernel::storage's StepUniform: the scalars, then the step's counter), one row of the host's
// scalar table picked by a dynamic offset; group 0 bindings 3.. are its state buffers; binding
// 11 is the gradient control (below). The Rust side of every binding is src/abi/bindings.rs.
// Every buffer is bound with exactly the parameter's length, so `arrayLength(&param)` is the
// bounds guard (an element count at f32 width, a vector count at vec4 width: below).
//
// `V`, the element type of param, grad and the states, comes from the width prelude that
// kernel::compose puts before this file (kernel::Width): `vec4<f32>` for the body of a tensor,
// where `arrayLength(&param)` counts whole vectors (len / 4, rounded down); `f32` for the tail
// of the last len % 4 elements (TAIL below) and for tensors that do not start 16-byte aligned.
// `hsum(x)` adds a V's lanes in lane order.

// Threads per workgroup. The host sets it (WORKGROUP_SIZE in src/kernel.rs) so
// the dispatch size and the shader can never disagree.
override WG: u32 = 256u;


// V values each invocation updates, WG apart (kernel::VEC_PER_INVOCATION for vec4; 1 for f32).
override VPI: u32 = 1u;

// A scalar tail pipeline: one workgroup that updates only the elements after the last whole
// vec4 (those the vec4 body leaves), set by the host for the f32 width only.
override TAIL: bool = false;

// The step's gradient control, written on the device before the updates run (grad_norm.wgsl):
// [0] the global gradient norm, [1] the clipping coefficient min(1, max_norm / (norm + 1e-6)),
// which is 1 while clipping is off, [2] 1 / loss scale, [3] 1 when a gradient is inf or NaN
// (the step is skipped), [4] the steps skipped so far.
@group(0) @binding(11) var<storage, read> grad_control: array<f32>;

// Loss scaling (torch.amp.GradScaler) is on: gradients are unscaled here and steps with a
// non-finite gradient are skipped on the device.
override UNSCALE: bool = false;

// How many step-number candidates the host uploads per step: entry j holds the scalars for
// the optimizer having taken j fewer steps (j skipped steps), so a skip on the device leaves
// the step count, and so the bias corrections, where PyTorch leaves them. Rust:
// kernel::SCALAR_CANDIDATES.
const SCALAR_CANDIDATES: u32 = 16u;

// Which candidate scalars apply to this step.
fn candidate() -> u32 {
    if (UNSCALE) {
        return min(u32(grad_control[4]), SCALAR_CANDIDATES - 1u);
    }
    return 0u;
}

// Whether this step is skipped (a gradient is inf or NaN under loss scaling).
fn step_skipped() -> bool {
    return UNSCALE && grad_control[3] != 0.0;
}

// Whether gradient clipping is on: a pipeline constant, so the kernels without it pay for
// neither the load nor the multiply.
override CLIP: bool = false;

// The gradient the optimizer sees: torch.nn.utils.clip_grad_norm_ multiplies every gradient by
// the coefficient in place before the step; here the update does, so no pass rewrites them.
fn load_grad(i: u32) -> V {
    var g = stored_grad(i);
    if (UNSCALE) {
        g = g * grad_control[2];
    }
    if (CLIP) {
        g = g * grad_control[1];
    }
    return g;
}

// Flattened workgroup index. The host dispatches a 2-D grid of workgroups when one
// dimension's 65535-workgroup limit is too small, so the index counts whole rows first.
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The first index this invocation handles when each handles `per_invocation` values, WG apart
// so that neighbours touch neighbours: base, base + WG, ... A tail pipeline starts after the
// last whole vec4 instead (one workgroup).
fn invocation_base(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, per_invocation: u32) -> u32 {
    if (TAIL) {
        // `grad`, not `param`: the gradient stage's sums bind only the gradient (same length).
        return arrayLength(&grad) / 4u * 4u + lid.x;
    }
    return workgroup_index(wid, nwg) * WG * per_invocation + lid.x;
}

// The indices an update invocation handles, from x to y (exclusive), z apart: VPI of them, WG
// apart, none at or past body_end() (kernel::storage: the elements, or vectors, of the body;
// all of them at f32 width). In a tail pipeline over 16-bit values, which share words,
// invocation 0 updates the whole tail (packed_tail) and the others nothing.
fn update_range(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec3<u32> {
    if (TAIL && PACKED) {
        let tail = select(vec2<u32>(0u), packed_tail(), lid.x == 0u);
        return vec3<u32>(tail, 1u);
    }
    let base = invocation_base(wid, nwg, lid, VPI);
    return vec3<u32>(base, min(base + VPI * WG, body_end()), WG);
}

// torch.lerp's formula (ATen's `lerp` in Lerp.h): the two branches keep the
// result exact at weight 0 and weight 1, and PyTorch picks one by |weight| < 0.5.
// Optimizers use it for exponential moving averages: a.lerp_(b, 1 - beta).
fn torch_lerp(a: V, b: V, weight: f32) -> V {
    if (abs(weight) < 0.5) {
        return a + weight * (b - a);
    }
    return b - (b - a) * (1.0 - weight);
}

// V values each invocation of a `norms` entry point sums (LAMB, LARS, grad_norm.wgsl); set by
// the host (NORM_ELEMS in src/kernel.rs), which sizes the `norms` dispatch by it.
override NORM_ELEMS: u32 = 16u;

// Scratch for workgroup-wide sums (LAMB's and LARS's norms, reduce.wgsl, grad_norm.wgsl,
// mlp.wgsl). Kernels that never call workgroup_sum never touch it.
var<workgroup> scratch: array<vec2<f32>, WG>;

// Lanes of the first stage of workgroup_sum.
const SUM_FAN: u32 = 16u;

// The sum of `value` over the workgroup, in a fixed order (the same inputs give the same bits
// on every run), returned to invocation 0 only. Two barriers, not log2(WG): invocations below
// SUM_FAN each add the values of every SUM_FAN-th invocation, then invocation 0 adds theirs.
// Barriers are costly where a workgroup runs as coroutines (llvmpipe, lavapipe), and the two
// short serial sums cost a GPU little. Call it from uniform control flow (every invocation, no
// early return before it), and at most once per entry point: it ends without a barrier, so a
// second call's stores could overtake invocation 0's reads.
fn workgroup_sum(lid: u32, value: vec2<f32>) -> vec2<f32> {
    scratch[lid] = value;
    workgroupBarrier();
    // Invocation l reads scratch[l], scratch[l + SUM_FAN], ...: no other invocation reads
    // scratch[l] for l < SUM_FAN, so it may overwrite it with its sum.
    if (lid < SUM_FAN) {
        var acc = vec2<f32>(0.0);
        for (var j = lid; j < WG; j = j + SUM_FAN) {
            acc = acc + scratch[j];
        }
        scratch[lid] = acc;
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    if (lid == 0u) {
        for (var j = 0u; j < min(SUM_FAN, WG); j = j + 1u) {
            total = total + scratch[j];
        }
    }
    return total;
}

// Per-workgroup partial sums of a `norms`-style pass (LAMB, LARS, grad_norm.wgsl), one vec2 per
// workgroup of the window, then one for the window's tail pipeline (the last slot bound);
// reduce.wgsl turns them into per-tensor norms.
@group(0) @binding(6) var<storage, read_write> partials: array<vec2<f32>>;

// The first index of this invocation in a `norms`-style pass: each invocation sums NORM_ELEMS
// values, WG apart so neighbours read neighbours.
fn norm_pass_base(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return invocation_base(wid, nwg, lid, NORM_ELEMS);
}

// Sums `sums` over the workgroup and stores the total as this workgroup's partial (the tail's
// in the last slot). Call it from uniform control flow, as workgroup_sum.
fn store_partial(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, sums: vec2<f32>) {
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        var slot = workgroup_index(wid, nwg);
        if (TAIL) {
            slot = arrayLength(&partials) - 1u;
        }
        partials[slot] = total;
    }
}

// Trust ratio of LAMB and LARS (optax's scale_by_trust_ratio): coefficient · ‖p‖ / (‖u‖ + eps),
// or 1 when either norm is 0 so that such tensors still move.
fn trust_ratio(param_norm: f32, update_norm: f32, coefficient: f32, eps: f32) -> f32 {
    if (param_norm == 0.0 || update_norm == 0.0) {
        return 1.0;
    }
    return coefficient * param_norm / (update_norm + eps);
}
