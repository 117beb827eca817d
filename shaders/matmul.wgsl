// matmul.wgsl: a batched, tiled matrix multiply for Muon's Newton–Schulz iteration,
//   out = alpha · op(lhs) · op(rhs) + beta · addend
// over `batch` matrices side by side in each buffer (MatmulDims.strides apart), op(x) = xᵀ where
// TRANS_A / TRANS_B say. Row-major throughout: op(lhs) is m × k, op(rhs) k × n, out m × n.
//
// Each workgroup computes one TM × TN tile of one matrix's result: it stages TM × TK of op(lhs)
// and TK × TN of op(rhs) in workgroup memory per round of k, and each of its WG invocations
// keeps an RM × RN block of the tile in registers, rows `tr + i · TM/RM` and columns
// `tc + j · TN/RN` (neighbouring invocations read neighbouring words). Tiles are pipeline
// constants (`MatmulTiles` on the host, which checks TM · TK and TK · TN against MAX_TILE,
// RM · RN against MAX_BLOCK, and WG = (TM / RM) · (TN / RN)).
//
// Each result is one fma chain over k in ascending order, then fma(beta, addend, alpha · sum),
// as the CPU reference (src/cpu/matmul.rs) computes it.
//
// WG (common.wgsl) is set to (TM / RM) · (TN / RN).
// Bindings (abi::bindings::matmul): 0 MatmulDims (uniform), 1 lhs, 2 rhs, 3 addend (read),
// 4 out (read_write).
// Bounds guard: tiles past the matrix edges stage zeros and store nothing; every index is
// below its matrix's end, inside the bound batch.

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
override STAGED: bool = true;
override TM: u32 = 64u;
override TN: u32 = 64u;
override TK: u32 = 16u;
override RM: u32 = 4u;
override RN: u32 = 4u;

const MAX_TILE: u32 = 2048u;
const MAX_BLOCK: u32 = 64u;

@group(0) @binding(0) var<uniform> dims: MatmulDims;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read> addend: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> tile_l: array<f32, MAX_TILE>;
var<workgroup> tile_r: array<f32, MAX_TILE>;

@compute @workgroup_size(WG)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lix: u32,
) {
    let batch = wid.y / dims.tiles_m;
    let row0 = (wid.y % dims.tiles_m) * TM;
    let col0 = wid.x * TN;
    let l0 = batch * dims.strides.x;
    let r0 = batch * dims.strides.y;
    let a0 = batch * dims.strides.z;
    let o0 = batch * dims.strides.w;
    let row_step = TM / RM;
    let col_step = TN / RN;
    // Unstaged, every invocation has all TM rows (RM = TM, WG = TN / RN): tr is 0.
    let tr = select(0u, lix / col_step, STAGED);
    let tc = lix % col_step;

    var acc: array<f32, MAX_BLOCK>;
    for (var i = 0u; i < RM * RN; i = i + 1u) {
        acc[i] = 0.0;
    }
    var a: array<f32, 8>;
    var b: array<f32, 8>;
    if (!STAGED) {
        // Straight from the operands, for CPU adapters (lavapipe, llvmpipe), where workgroup
        // memory is ordinary memory and a barrier a context switch: the tile's TM rows are the
        // same for every invocation (RM = TM), so op(lhs) is read at addresses uniform across
        // the workgroup, one load broadcast to every lane; each invocation reads its RN
        // columns of op(rhs). Rows and columns past the edges read the last ones (and store
        // nothing), so no load needs a branch.
        for (var kk = 0u; kk < dims.k; kk = kk + 1u) {
            for (var j = 0u; j < RN; j = j + 1u) {
                let gj = min(col0 + lix + j * WG, dims.n - 1u);
                if (TRANS_B) {
                    b[j] = rhs[r0 + gj * dims.k + kk];
                } else {
                    b[j] = rhs[r0 + kk * dims.n + gj];
                }
            }
            for (var i = 0u; i < TM; i = i + 1u) {
                let gi = min(row0 + i, dims.m - 1u);
                var v: f32;
                if (TRANS_A) {
                    v = lhs[l0 + kk * dims.m + gi];
                } else {
                    v = lhs[l0 + gi * dims.k + kk];
                }
                for (var j = 0u; j < RN; j = j + 1u) {
                    acc[i * RN + j] = fma(v, b[j], acc[i * RN + j]);
                }
            }
        }
    }
    for (var k0 = 0u; STAGED && k0 < dims.k; k0 = k0 + TK) {
        // Stage op(lhs)[row0.., k0..] as tile_l[kk · TM + mm], reading along memory.
        for (var t = lix; t < TM * TK; t = t + WG) {
            var mm: u32;
            var kk: u32;
            if (TRANS_A) {
                mm = t % TM;
                kk = t / TM;
            } else {
                kk = t % TK;
                mm = t / TK;
            }
            let gi = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gi < dims.m && gk < dims.k) {
                if (TRANS_A) {
                    v = lhs[l0 + gk * dims.m + gi];
                } else {
                    v = lhs[l0 + gi * dims.k + gk];
                }
            }
            tile_l[kk * TM + mm] = v;
        }
        // Stage op(rhs)[k0.., col0..] as tile_r[kk · TN + nn].
        for (var t = lix; t < TK * TN; t = t + WG) {
            var nn: u32;
            var kk: u32;
            if (TRANS_B) {
                kk = t % TK;
                nn = t / TK;
            } else {
                nn = t % TN;
                kk = t / TN;
            }
            let gj = col0 + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gj < dims.n && gk < dims.k) {
                if (TRANS_B) {
                    v = rhs[r0 + gj * dims.k + gk];
                } else {
                    v = rhs[r0 + gk * dims.n + gj];
                }
            }
            tile_r[kk * TN + nn] = v;
        }
        workgroupBarrier();
        // Past the last k the staged zeros add exactly nothing: fma(0, b, s) = s.
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            for (var i = 0u; i < RM; i = i + 1u) {
                a[i] = tile_l[kk * TM + tr + i * row_step];
            }
            for (var j = 0u; j < RN; j = j + 1u) {
                b[j] = tile_r[kk * TN + tc + j * col_step];
            }
            for (var i = 0u; i < RM; i = i + 1u) {
                for (var j = 0u; j < RN; j = j + 1u) {
                    acc[i * RN + j] = fma(a[i], b[j], acc[i * RN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i = i + 1u) {
        let gi = row0 + tr + i * row_step;
        for (var j = 0u; j < RN; j = j + 1u) {
            let gj = col0 + tc + j * col_step;
            if (gi < dims.m && gj < dims.n) {
                var v = dims.alpha * acc[i * RN + j];
                if (dims.beta != 0.0) {
                    v = fma(dims.beta, addend[a0 + gi * dims.n + gj], v);
                }
                out[o0 + gi * dims.n + gj] = v;
            }
        }
    }
}
