// mlp.wgsl: a 2 → 64 → 64 → 3 ReLU MLP with softmax cross-entropy, forward and backward, for the
// training example and `wgpu-optim compare`. Full-batch gradients without float atomics:
//   sample: one invocation per sample writes its loss, whether it is classified correctly,
//           and its whole gradient (one row of per_sample);
//   reduce: one invocation per parameter sums its column of per_sample over the samples, in
//           sample order, into the gradient arena the optimizer reads;
//   stats:  one workgroup: the mean loss and the accuracy (common.wgsl's workgroup_sum).
//
// Bindings (group 0, numbered apart from common.wgsl's): 20 Dims (uniform), 21 params (read;
// the parameter arena, f32 or bf16 words: param_at), 22 data (read; x, y, label per sample), 23 per_sample (read_write;
// samples × arena length), 24 sample_stats (read_write; loss, correct per sample),
// 25 grads (read_write; the gradient arena), 26 stats (read_write; mean loss, accuracy).

const HIDDEN: u32 = 64u;
const CLASSES: u32 = 3u;

struct Dims {
    samples: u32,
    arena: u32,
    w1: u32,
    b1: u32,
    w2: u32,
    b2: u32,
    w3: u32,
    b3: u32,
}

@group(0) @binding(20) var<uniform> dims: Dims;
@group(0) @binding(21) var<storage, read> params: array<u32>;

// The parameter arena holds bf16 values (two per word, element 2k in the low half of word k)
// instead of f32 ones: the forward and backward passes read them exactly, as f32.
override PARAMS_BF16: bool = false;

fn param_at(k: u32) -> f32 {
    if (PARAMS_BF16) {
        return bitcast<f32>(((params[k >> 1u] >> ((k & 1u) * 16u)) & 0xffffu) << 16u);
    }
    return bitcast<f32>(params[k]);
}
@group(0) @binding(22) var<storage, read> data: array<f32>;
@group(0) @binding(23) var<storage, read_write> per_sample: array<f32>;
@group(0) @binding(24) var<storage, read_write> sample_stats: array<f32>;
@group(0) @binding(25) var<storage, read_write> grads: array<f32>;
@group(0) @binding(26) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(64)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= dims.samples) {
        return;
    }
    let x = vec2<f32>(data[3u * n], data[3u * n + 1u]);
    let label = u32(data[3u * n + 2u]);

    // Forward.
    var h1: array<f32, 64>;
    for (var j = 0u; j < HIDDEN; j = j + 1u) {
        let z = param_at(dims.w1 + 2u * j) * x.x + param_at(dims.w1 + 2u * j + 1u) * x.y + param_at(dims.b1 + j);
        h1[j] = max(z, 0.0);
    }
    var h2: array<f32, 64>;
    for (var j = 0u; j < HIDDEN; j = j + 1u) {
        var z = param_at(dims.b2 + j);
        for (var k = 0u; k < HIDDEN; k = k + 1u) {
            z = z + param_at(dims.w2 + HIDDEN * j + k) * h1[k];
        }
        h2[j] = max(z, 0.0);
    }
    var logits: array<f32, 3>;
    var top = -3.4e38;
    var best = 0u;
    for (var c = 0u; c < CLASSES; c = c + 1u) {
        var z = param_at(dims.b3 + c);
        for (var k = 0u; k < HIDDEN; k = k + 1u) {
            z = z + param_at(dims.w3 + HIDDEN * c + k) * h2[k];
        }
        logits[c] = z;
        if (z > top) {
            top = z;
            best = c;
        }
    }
    var total = 0.0;
    for (var c = 0u; c < CLASSES; c = c + 1u) {
        total = total + exp(logits[c] - top);
    }
    let log_total = log(total) + top;
    sample_stats[2u * n] = log_total - logits[label];
    sample_stats[2u * n + 1u] = select(0.0, 1.0, best == label);

    // Backward: d loss / d logits = softmax - onehot.
    let row = n * dims.arena;
    var dlogits: array<f32, 3>;
    for (var c = 0u; c < CLASSES; c = c + 1u) {
        dlogits[c] = exp(logits[c] - log_total) - select(0.0, 1.0, c == label);
        per_sample[row + dims.b3 + c] = dlogits[c];
        for (var k = 0u; k < HIDDEN; k = k + 1u) {
            per_sample[row + dims.w3 + HIDDEN * c + k] = dlogits[c] * h2[k];
        }
    }
    var dh2: array<f32, 64>;
    for (var k = 0u; k < HIDDEN; k = k + 1u) {
        var d = 0.0;
        for (var c = 0u; c < CLASSES; c = c + 1u) {
            d = d + param_at(dims.w3 + HIDDEN * c + k) * dlogits[c];
        }
        dh2[k] = select(0.0, d, h2[k] > 0.0);
        per_sample[row + dims.b2 + k] = dh2[k];
    }
    var dh1: array<f32, 64>;
    for (var k = 0u; k < HIDDEN; k = k + 1u) {
        dh1[k] = 0.0;
    }
    for (var j = 0u; j < HIDDEN; j = j + 1u) {
        for (var k = 0u; k < HIDDEN; k = k + 1u) {
            per_sample[row + dims.w2 + HIDDEN * j + k] = dh2[j] * h1[k];
            dh1[k] = dh1[k] + param_at(dims.w2 + HIDDEN * j + k) * dh2[j];
        }
    }
    for (var k = 0u; k < HIDDEN; k = k + 1u) {
        let d = select(0.0, dh1[k], h1[k] > 0.0);
        per_sample[row + dims.b1 + k] = d;
        per_sample[row + dims.w1 + 2u * k] = d * x.x;
        per_sample[row + dims.w1 + 2u * k + 1u] = d * x.y;
    }
}

@compute @workgroup_size(64)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= dims.arena) {
        return;
    }
    var sum = 0.0;
    for (var n = 0u; n < dims.samples; n = n + 1u) {
        sum = sum + per_sample[n * dims.arena + j];
    }
    grads[j] = sum / f32(dims.samples);
}

@compute @workgroup_size(WG)
fn stats_main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = vec2<f32>(0.0);
    for (var n = lid.x; n < dims.samples; n = n + WG) {
        acc = acc + vec2<f32>(sample_stats[2u * n], sample_stats[2u * n + 1u]);
    }
    let total = workgroup_sum(lid.x, acc);
    if (lid.x == 0u) {
        stats[0] = total.x / f32(dims.samples);
        stats[1] = total.y / f32(dims.samples);
    }
}
