// matmul4.wgsl: matmul.wgsl's product for matrices whose every dimension is a multiple of 4, on
// CPU adapters: the same `out = alpha · op(lhs) · op(rhs) + beta · addend`, batched the same way,
// with every operand read as vec4<f32>, four values per load.
//
// On lavapipe and llvmpipe each invocation is a SIMD lane and each storage load a cost paid per
// load whatever its width, while arithmetic is nearly free; so each workgroup keeps TM rows of
// the result that every invocation shares (op(lhs) read at addresses uniform across the
// workgroup) and each invocation RN column groups, with no workgroup memory and no barrier:
//   NN (op = identity both): lhs rows as vec4 along k, rhs rows as vec4 along n; an invocation
//       owns RN vec4s of 4 columns, columns `4 · (c0 + lix + j · WG)`;
//   NT (rhs transposed, X Xᵀ): both along k; an invocation owns RN single columns;
//   TN (lhs transposed, Xᵀ X): lhs as vec4 along m (4 rows at one k), rhs as NN.
// Each result is still one fma chain over k in ascending order, then fma(beta, addend,
// alpha · sum): the same bits as matmul.wgsl and the CPU reference.
//
// Bindings: as matmul.wgsl (abi::bindings::matmul), the operands as array<vec4<f32>>.
// Bounds guard: rows and columns past the edges read the last ones and store nothing; every
// dimension and stride is a multiple of 4 (checked on the host), so every index is inside.

struct MatmulDims {
    m: u32,
    n: u32,
    k: u32,
    tiles_m: u32,
    strides: vec4<u32>,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override TM: u32 = 8u;
override RN: u32 = 2u;

@group(0) @binding(0) var<uniform> dims: MatmulDims;
@group(0) @binding(1) var<storage, read> lhs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> rhs: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> addend: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// The sum for row i and column group (or column) j at acc[i · RN + j].
const MAX_VEC_BLOCK: u32 = 16u;
const MAX_COL_BLOCK: u32 = 64u;

@compute @workgroup_size(WG)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lix: u32,
) {
    let batch = wid.y / dims.tiles_m;
    let row0 = (wid.y % dims.tiles_m) * TM;
    let l0 = batch * dims.strides.x / 4u;
    let r0 = batch * dims.strides.y / 4u;
    let a0 = batch * dims.strides.z / 4u;
    let o0 = batch * dims.strides.w / 4u;
    let m = dims.m;
    let n = dims.n;
    let n4 = dims.n / 4u;
    let k4 = dims.k / 4u;
    let m4 = dims.m / 4u;
    let c0 = wid.x * WG * RN;
    if (TRANS_B) {
        // NT: out[i][j] = Σ_k lhs[i][k] · rhs[j][k], both read along k.
        var acc: array<f32, MAX_COL_BLOCK>;
        for (var t = 0u; t < TM * RN; t = t + 1u) {
            acc[t] = 0.0;
        }
        var b: array<vec4<f32>, 8>;
        for (var kq = 0u; kq < k4; kq = kq + 1u) {
            for (var j = 0u; j < RN; j = j + 1u) {
                let gj = min(c0 + lix + j * WG, n - 1u);
                b[j] = rhs[r0 + gj * k4 + kq];
            }
            for (var i = 0u; i < TM; i = i + 1u) {
                let gi = min(row0 + i, m - 1u);
                let a = lhs[l0 + gi * k4 + kq];
                for (var j = 0u; j < RN; j = j + 1u) {
                    var s = acc[i * RN + j];
                    s = fma(a.x, b[j].x, s);
                    s = fma(a.y, b[j].y, s);
                    s = fma(a.z, b[j].z, s);
                    s = fma(a.w, b[j].w, s);
                    acc[i * RN + j] = s;
                }
            }
        }
        for (var i = 0u; i < TM; i = i + 1u) {
            let gi = row0 + i;
            for (var j = 0u; j < RN; j = j + 1u) {
                let gj = c0 + lix + j * WG;
                if (gi < m && gj < n) {
                    let at = gi * n + gj;
                    var v = dims.alpha * acc[i * RN + j];
                    if (dims.beta != 0.0) {
                        v = fma(dims.beta, addend[a0 + at / 4u][at % 4u], v);
                    }
                    out[o0 + at / 4u][at % 4u] = v;
                }
            }
        }
        return;
    }
    // NN and TN: out row i, column group c (columns 4c..4c+3).
    var acc: array<vec4<f32>, MAX_VEC_BLOCK>;
    for (var t = 0u; t < TM * RN; t = t + 1u) {
        acc[t] = vec4<f32>(0.0);
    }
    var b: array<vec4<f32>, 4 * 2>;
    var a: array<vec4<f32>, 8>;
    for (var kq = 0u; kq < k4; kq = kq + 1u) {
        // rhs rows 4kq..4kq+3 of this invocation's column groups.
        for (var r = 0u; r < 4u; r = r + 1u) {
            for (var j = 0u; j < RN; j = j + 1u) {
                let gc = min(c0 + lix + j * WG, n4 - 1u);
                b[r * RN + j] = rhs[r0 + (4u * kq + r) * n4 + gc];
            }
        }
        // a[i] = lhs row i at k = 4kq..4kq+3.
        if (TRANS_A) {
            // lhs stored k × m: one vec4 holds rows 4q..4q+3 at one k.
            for (var q = 0u; q < TM / 4u; q = q + 1u) {
                let gq = min(row0 / 4u + q, m4 - 1u);
                let c = array<vec4<f32>, 4>(
                    lhs[l0 + (4u * kq) * m4 + gq],
                    lhs[l0 + (4u * kq + 1u) * m4 + gq],
                    lhs[l0 + (4u * kq + 2u) * m4 + gq],
                    lhs[l0 + (4u * kq + 3u) * m4 + gq],
                );
                a[4u * q] = vec4<f32>(c[0].x, c[1].x, c[2].x, c[3].x);
                a[4u * q + 1u] = vec4<f32>(c[0].y, c[1].y, c[2].y, c[3].y);
                a[4u * q + 2u] = vec4<f32>(c[0].z, c[1].z, c[2].z, c[3].z);
                a[4u * q + 3u] = vec4<f32>(c[0].w, c[1].w, c[2].w, c[3].w);
            }
        } else {
            for (var i = 0u; i < TM; i = i + 1u) {
                let gi = min(row0 + i, m - 1u);
                a[i] = lhs[l0 + gi * k4 + kq];
            }
        }
        for (var i = 0u; i < TM; i = i + 1u) {
            for (var j = 0u; j < RN; j = j + 1u) {
                var s = acc[i * RN + j];
                s = fma(vec4<f32>(a[i].x), b[j], s);
                s = fma(vec4<f32>(a[i].y), b[RN + j], s);
                s = fma(vec4<f32>(a[i].z), b[2u * RN + j], s);
                s = fma(vec4<f32>(a[i].w), b[3u * RN + j], s);
                acc[i * RN + j] = s;
            }
        }
    }
    for (var i = 0u; i < TM; i = i + 1u) {
        let gi = row0 + i;
        for (var j = 0u; j < RN; j = j + 1u) {
            let gc = c0 + lix + j * WG;
            if (gi < m && gc < n4) {
                let at = gi * n4 + gc;
                var v = dims.alpha * acc[i * RN + j];
                if (dims.beta != 0.0) {
                    v = fma(vec4<f32>(dims.beta), addend[a0 + at], v);
                }
                out[o0 + at] = v;
            }
        }
    }
}
