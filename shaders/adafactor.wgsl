// adafactor.wgsl: one step of torch.optim.Adafactor over one parameter tensor.
//
// A tensor of two or more dimensions, (B, R, C) with B the product of the leading ones, keeps
// row and column second moments over its last two dimensions; any other keeps a full one.
// Entry points, in the order a step runs them:
//   rows:  (factored, f32 width) one workgroup per row: row_var ← lerp(row_var, ‖g_row‖² / C, w);
//   cols:  (factored, f32 width) one invocation per column: col_var ← lerp(col_var, ‖g_col‖² / R, w);
//   stats: (factored, f32 width) one workgroup per matrix: max(mean(row_var), eps1), kept in
//          `factors` after the dimensions;
//   norms: the update u = g / √max(v̂, eps1²), with v̂ = row_var ⊗ col_var / that mean (factored)
//          or the lerped full moment (which it stores), and this workgroup's (Σp², Σu²);
//   main:  after reduce.wgsl, p ← p · (1 - lr · weight_decay) - α / max(1, RMS(u) / d) · u, with
//          α = max(eps2, RMS(p)) · ρ, recomputing u.
//
// Bindings: group 1: 0 AdafactorScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param, 2 grad (kernel::storage), 3 row_var, 4 col_var (read_write,
//           array<f32>, bound whole: B·R and B·C values), 5 variance (read_write; tensors
//           under two dimensions), 6 partials (read_write), 7 tensor_norms (read; (‖p‖, ‖u‖)),
//           8 factors (read_write: R, C, B, √numel as f32, then B row-factor means; C = 0 for
//           an unfactored tensor).
// Bounds guard: past the rows and matrices `factors` gives (their values are below 2^24,
// exact in f32), a workgroup of rows or stats skips its work but still reaches workgroup_sum's
// barriers; cols returns past the columns; norms and main as LAMB's (lamb.wgsl). Every index they derive is below the
// tensor's length, one window: registration refuses a tensor larger than one binding.
// Mirror: src/cpu/adafactor.rs.

struct AdafactorScalars {
    // t^beta2_decay, the weight of the new squared gradient.
    weight: f32,
    // min(lr, 1/√t).
    rho: f32,
    eps1: f32,
    eps1_sq: f32,
    eps2: f32,
    d: f32,
    // 1 - lr · weight_decay.
    decay: f32,
    _pad0: f32,
}

override MAXIMIZE: bool = false;

@group(1) @binding(0) var<uniform> scalars: array<AdafactorScalars, SCALAR_CANDIDATES>;
@group(0) @binding(3) var<storage, read_write> row_var: array<f32>;
@group(0) @binding(4) var<storage, read_write> col_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> variance: array<V>;
@group(0) @binding(7) var<storage, read> tensor_norms: array<f32>;
@group(0) @binding(8) var<storage, read_write> factors: array<f32>;

// The gradient the update sees (negated under maximize).
fn grad_at(i: u32) -> V {
    let g = load_grad(i);
    if (MAXIMIZE) {
        return -g;
    }
    return g;
}

// torch.lerp on one f32 (torch_lerp is over V).
fn lerp1(a: f32, b: f32, weight: f32) -> f32 {
    if (abs(weight) < 0.5) {
        return a + weight * (b - a);
    }
    return b - (b - a) * (1.0 - weight);
}

fn dim_rows() -> u32 {
    return u32(factors[0]);
}

fn dim_cols() -> u32 {
    return u32(factors[1]);
}

fn dim_batches() -> u32 {
    return u32(factors[2]);
}

// torch.linalg.vector_norm(g, dim)² / n: the root is taken and squared, as torch does.
fn mean_square(sum: f32, n: u32) -> f32 {
    let norm = sqrt(sum);
    return norm * norm / f32(n);
}

@compute @workgroup_size(WG)
fn rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // A uniform return (grad_control is read-only), so workgroup_sum's barriers stay in
    // uniform control flow. The dimensions live in read_write `factors`, which WGSL's
    // uniformity analysis counts as non-uniform: a workgroup past the rows skips the work, not
    // the barriers.
    if (step_skipped()) {
        return;
    }
    let row = workgroup_index(wid, nwg);
    let c = dim_cols();
    let in_range = row < dim_rows() * dim_batches();
    let s = scalars[candidate()];
    var acc = 0.0;
    if (in_range) {
        for (var k = lid.x; k < c; k = k + WG) {
            let g = grad_at(row * c + k);
            acc = acc + hsum(g * g);
        }
    }
    let total = workgroup_sum(lid.x, vec2<f32>(acc, 0.0));
    if (in_range && lid.x == 0u) {
        row_var[row] = lerp1(row_var[row], mean_square(total.x, c), s.weight);
    }
}

@compute @workgroup_size(WG)
fn cols(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    let r = dim_rows();
    let c = dim_cols();
    let col = workgroup_index(wid, nwg) * WG + lid.x;
    if (col >= c * dim_batches()) {
        return;
    }
    let s = scalars[candidate()];
    let first = (col / c) * r * c + col % c;
    var acc = 0.0;
    for (var k = 0u; k < r; k = k + 1u) {
        let g = grad_at(first + k * c);
        acc = acc + hsum(g * g);
    }
    col_var[col] = lerp1(col_var[col], mean_square(acc, r), s.weight);
}

@compute @workgroup_size(WG)
fn stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    // As in `rows`: past the matrices, the work is skipped, not the barriers.
    let b = workgroup_index(wid, nwg);
    let r = dim_rows();
    let in_range = b < dim_batches();
    let s = scalars[candidate()];
    var acc = 0.0;
    if (in_range) {
        for (var k = lid.x; k < r; k = k + WG) {
            acc = acc + row_var[b * r + k];
        }
    }
    let total = workgroup_sum(lid.x, vec2<f32>(acc, 0.0));
    if (in_range && lid.x == 0u) {
        factors[4u + b] = max(total.x / f32(r), s.eps1);
    }
}

// Where an element of a factored tensor sits: its row (over all matrices), its column within
// the row, and its matrix.
struct At {
    row: u32,
    col: u32,
    batch: u32,
}

fn at_element(e: u32) -> At {
    let c = dim_cols();
    let row = e / c;
    return At(row, e - row * c, batch_of(row));
}

// The matrix of a row (no division for a lone matrix, the usual case).
fn batch_of(row: u32) -> u32 {
    if (dim_batches() == 1u) {
        return 0u;
    }
    return row / dim_rows();
}

// The next element: one column on, wrapping to the next row (and matrix).
fn step_along(a: At) -> At {
    if (a.col + 1u < dim_cols()) {
        return At(a.row, a.col + 1u, a.batch);
    }
    let row = a.row + 1u;
    return At(row, 0u, batch_of(row));
}

// 1 / √max(v̂, eps1²) of the element at `a`.
fn factored_scale(s: AdafactorScalars, a: At) -> f32 {
    let v = (row_var[a.row] * col_var[a.batch * dim_cols() + a.col]) / factors[4u + a.batch];
    return 1.0 / sqrt(max(v, s.eps1_sq));
}

// The same for the elements of V i: one division for the vector, then steps along its row.
// When C is a multiple of 4 a vector lies in one row: the same arithmetic, lane by lane, with
// one row factor and four neighbouring column factors.
fn factored_scales(s: AdafactorScalars, i: u32) -> V {
    let a0 = at_element(i * LANES);
    if (LANES == 1u) {
        return lanes4(factored_scale(s, a0), 0.0, 0.0, 0.0);
    }
    let c = dim_cols();
    if (c % 4u == 0u) {
        let k = a0.batch * c + a0.col;
        let cv = lanes4(col_var[k], col_var[k + 1u], col_var[k + 2u], col_var[k + 3u]);
        let v = (row_var[a0.row] * cv) / factors[4u + a0.batch];
        return 1.0 / sqrt(max(v, V(s.eps1_sq)));
    }
    let a1 = step_along(a0);
    let a2 = step_along(a1);
    let a3 = step_along(a2);
    return lanes4(
        factored_scale(s, a0),
        factored_scale(s, a1),
        factored_scale(s, a2),
        factored_scale(s, a3),
    );
}

// The update of V i; `store` writes the lerped full moment of an unfactored tensor (the norms
// pass), `main` reads the stored one.
fn update_of(s: AdafactorScalars, i: u32, g: V, store: bool) -> V {
    if (dim_cols() > 0u) {
        return g * factored_scales(s, i);
    }
    var v = variance[i];
    if (store) {
        v = torch_lerp(v, g * g, s.weight);
        variance[i] = v;
    }
    return g * (1.0 / sqrt(max(v, V(s.eps1_sq))));
}

@compute @workgroup_size(WG)
fn norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let base = norm_pass_base(wid, nwg, lid);
    let s = scalars[candidate()];
    let skipped = step_skipped();
    var sums = vec2<f32>(0.0);
    for (var k = 0u; k < NORM_ELEMS; k = k + 1u) {
        let i = base + k * WG;
        if (i < arrayLength(&param) && !skipped) {
            let p = param[i];
            let u = update_of(s, i, grad_at(i), true);
            sums = sums + vec2<f32>(hsum(p * p), hsum(u * u));
        }
    }
    store_partial(wid, nwg, lid, sums);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (step_skipped()) {
        return;
    }
    let s = scalars[candidate()];
    let root_n = factors[3];
    let alpha = max(s.eps2, tensor_norms[0] / root_n) * s.rho;
    let scale = -alpha / max(1.0, tensor_norms[1] / (root_n * s.d));
    let base = invocation_base(wid, nwg, lid, VPI);
    for (var k = 0u; k < VPI; k = k + 1u) {
        let i = base + k * WG;
        if (i >= arrayLength(&param)) {
            return;
        }
        let p = param[i];
        param[i] = p * s.decay + scale * update_of(s, i, grad_at(i), false);
    }
}
