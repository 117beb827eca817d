//! The storage layer of a kernel: its tensor bindings and their accessors, generated for the
//! registered tensor's dtypes ([`Precision`]) and the kernel's width.
//!
//! Every kernel reads and writes its parameter, gradient and (single-pass kernels) states only
//! through `load_NAME(i) -> V`, `store_NAME(i, x: V)` and `stored_grad(i) -> V`, so one WGSL
//! update serves every dtype: an f32 tensor is an `array<V>`; a 16-bit one is an array of
//! words, two values each, converted exactly by `shaders/dtype.wgsl` (a `vec2<u32>` per
//! `vec4<f32>` at [`Width::Vec4`]; one `u32` per pair at [`Width::Scalar`], used only by tail
//! pipelines, where one invocation updates the whole tail so no two write one word).
//!
//! A tensor with 16-bit values cannot tell its length from `arrayLength` (the last word may
//! hold one value), so its windows also bind `extent` (binding 12, [`EXTENT`]): the body's
//! vectors, the tail's first and last-plus-one elements, the window's first element in the
//! tensor, and the tensor's stochastic-rounding seed.
//!
//! [`EXTENT`]: crate::abi::bindings::update::EXTENT

use std::fmt::Write;

use crate::kernel::{GradAccess, Width};
use crate::precision::{Dtype, Precision, Rounding};
use crate::quant::{Blocks, QMap, Quant};

/// How one kernel module's tensor bindings are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Storage {
    /// How the gradient is bound.
    pub access: GradAccess,
    /// The element type `V`.
    pub width: Width,
    /// The dtypes of the parameter, the gradient and the states.
    pub precision: Precision,
    /// Whether the parameter's store also updates the average of the weights (binding 13,
    /// `ema`, f32), at the step's weight (`step_uniform.ema_weight`): single-pass kernels
    /// over f32 parameters only.
    pub ema: bool,
}

impl Storage {
    /// f32 tensors, the gradient bound for `access`, `width` wide.
    pub const fn f32(access: GradAccess, width: Width) -> Self {
        Self {
            access,
            width,
            precision: Precision::F32,
            ema: false,
        }
    }

    /// The same bindings, with the average of the weights when `ema`.
    pub const fn with_ema(self, ema: bool) -> Self {
        Self { ema, ..self }
    }

    /// The same bindings over tensors of `precision`.
    pub const fn with(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// Whether any binding holds 16-bit values (and so the windows bind `extent`).
    pub fn packed(&self) -> bool {
        let p = self.precision;
        p.param != Dtype::F32
            || p.grad != Dtype::F32
            || (p.state != Dtype::F32 && p.quant.is_none())
            || p.copy.is_some()
    }

    /// The WGSL element type of an array of `dtype` values at this width.
    fn element(&self, dtype: Dtype) -> &'static str {
        match (dtype, self.width) {
            (Dtype::F32, _) => "V",
            (_, Width::Vec4) => "vec2<u32>",
            (_, Width::Scalar) => "u32",
        }
    }
}

/// `fn load_NAME(i) -> V` for an array `name` of `dtype`.
fn load(out: &mut String, fn_name: &str, name: &str, dtype: Dtype, width: Width) {
    let body = match (dtype, width) {
        (Dtype::F32, _) => format!("{name}[i]"),
        (d, Width::Vec4) => format!("{}_value(halves({name}[i]))", d.name()),
        (d, Width::Scalar) => {
            format!(
                "{}_value((({name}[i >> 1u]) >> ((i & 1u) * 16u)) & 0xffffu)",
                d.name()
            )
        }
    };
    let _ = writeln!(out, "fn {fn_name}(i: u32) -> V {{\n    return {body};\n}}");
}

/// `fn FN_NAME(i, x)` storing into an array `name` of `dtype`, rounding to nearest even, or with
/// `stochastic` (bf16 parameters), adding the random bits of each element's index in the
/// tensor (the window's first element, `extent[0].w`, plus its index in the window) under the
/// key of the seed (`extent[1].x`) and the step (`step_uniform.counter`).
fn store(
    out: &mut String,
    (fn_name, name): (&str, &str),
    dtype: Dtype,
    width: Width,
    stochastic: bool,
) {
    let bits = if stochastic {
        "bf16_bits_stochastic(x, element_bits(stream_key(extent[1].x, step_uniform.counter.xy), e))"
            .to_string()
    } else {
        format!("{}_bits(x)", dtype.name())
    };
    let body = match (dtype, width) {
        (Dtype::F32, _) => format!("    {name}[i] = x;"),
        (_, Width::Vec4) => {
            let e = if stochastic {
                "    let e = VU(extent[0].w + 4u * i) + VU(0u, 1u, 2u, 3u);\n"
            } else {
                ""
            };
            format!("{e}    {name}[i] = join({bits});")
        }
        (_, Width::Scalar) => {
            let e = if stochastic {
                "    let e = extent[0].w + i;\n"
            } else {
                ""
            };
            format!(
                "{e}    let shift = (i & 1u) * 16u;\n    let kept = {name}[i >> 1u] & ~(0xffffu << shift);\n    {name}[i >> 1u] = kept | ({bits} << shift);"
            )
        }
    };
    let _ = writeln!(out, "fn {fn_name}(i: u32, x: V) {{\n{body}\n}}");
}

/// The group-1 uniform of single-pass kernels: each step-count candidate's scalars, then the
/// step's counter (`[step, step >> 32, 0, 0]`, for stochastic rounding's random bits), then
/// each candidate's weight of the average of the weights' update (1: a copy), four to a
/// vector ([`EMA_WEIGHT_BYTES`]).
pub(crate) const STEP_UNIFORM: &str = "struct StepUniform {
    scalars: array<Scalars, SCALAR_CANDIDATES>,
    counter: vec4<u32>,
    ema_weight: array<vec4<f32>, 4>,
}
@group(1) @binding(0) var<uniform> step_uniform: StepUniform;
";

/// Bytes of `StepUniform::ema_weight`: one f32 per step-count candidate.
pub(crate) const EMA_WEIGHT_BYTES: u64 = 4 * crate::kernel::SCALAR_CANDIDATES as u64;

/// The average's update after the parameter's store (`store_param` wraps `store_stored`):
/// a copy at weight 1, else torch's `lerp` toward the stored value.
const EMA_UPDATE: &str = "fn update_ema(i: u32, x: V) {
    let c = candidate();
    let w = step_uniform.ema_weight[c / 4u][c % 4u];
    if (w == 1.0) {
        ema[i] = x;
    } else {
        ema[i] = torch_lerp(ema[i], x, w);
    }
}
";

/// Words of one block record of a quantized state: the block's codes, then its scale.
pub(crate) const fn record_words(q: Quant) -> u64 {
    q.code_bytes(q.block()) / 4 + 1
}

/// Bytes of a quantized state of `len` values (whole blocks) as the kernels store it.
pub(crate) const fn quantized_bytes(q: Quant, len: u64) -> u64 {
    len / q.block() * record_words(q) * 4
}

/// `blocks` as the kernels store them: each block's codes, then its scale's bits.
pub(crate) fn records(q: Quant, blocks: &Blocks) -> Vec<u8> {
    let code_bytes = q.code_bytes(q.block()) as usize;
    let mut out = Vec::with_capacity(blocks.scales.len() * (code_bytes + 4));
    for (codes, scale) in blocks.codes.chunks(code_bytes).zip(&blocks.scales) {
        out.extend_from_slice(codes);
        out.extend_from_slice(&scale.to_le_bytes());
    }
    out
}

/// The blocks of `len` values stored as `bytes` by the kernels ([`records`]); `None` when
/// `bytes` is short.
pub(crate) fn from_records(q: Quant, bytes: &[u8], len: u64) -> Option<Blocks> {
    let code_bytes = q.code_bytes(q.block()) as usize;
    let bytes = bytes.get(..quantized_bytes(q, len) as usize)?;
    let mut blocks = Blocks {
        codes: Vec::with_capacity(q.code_bytes(len) as usize),
        scales: Vec::with_capacity((len / q.block()) as usize),
    };
    for record in bytes.chunks_exact(code_bytes + 4) {
        blocks.codes.extend_from_slice(&record[..code_bytes]);
        let scale: [u8; 4] = record[code_bytes..].try_into().ok()?;
        blocks.scales.push(f32::from_le_bytes(scale));
    }
    Some(blocks)
}

/// Invocations of a workgroup over quantized state: [`QUANT_GROUP`] / (block / 4) blocks, one
/// `vec4` per invocation.
pub(crate) const QUANT_GROUP: u64 = 256;

/// Blocks one workgroup steps over state quantized as `q`.
pub(crate) const fn blocks_per_group(q: Quant) -> u64 {
    QUANT_GROUP / (q.block() / 4)
}

/// Workgroup arrays (shared by every state: each store is done with them before the next
/// begins), the `qmaps` uniform (binding 10) and the code helpers of quantized states.
fn quant_helpers(out: &mut String, q: Quant) {
    let levels = q.levels() as u64;
    let _ = write!(
        out,
        "// Quantized state ({q}): QBLOCKS blocks of {block} values per workgroup of QGROUP
// invocations, QWG per block, one V each; each state is an array of block records,
// QCODE_WORDS words of codes, then the scale's bits.
const QGROUP: u32 = {group}u;
const QWG: u32 = {qwg}u;
const QBLOCKS: u32 = QGROUP / QWG;
const QLEVELS: u32 = {levels}u;
const QCODE_WORDS: u32 = {code_words}u;
const QREC: u32 = {rec}u;
// Lanes per block of the absmax reduction's first stage, each over QWG / QFAN values.
const QFAN: u32 = 8u;
// The signed map, its thresholds, the unsigned map, its thresholds (quant::Quant::uniform_bytes).
@group(0) @binding(10) var<uniform> qmaps: array<vec4<f32>, {vecs}>;
var<workgroup> q_absmax: array<f32, QGROUP>;
var<workgroup> q_fan: array<f32, QBLOCKS * QFAN>;
var<workgroup> q_block: array<f32, QBLOCKS>;
var<workgroup> q_half: array<u32, QGROUP>;
// Whether vector i is in the window: the last workgroup may hold fewer than QBLOCKS blocks, and
// its other invocations take part in the reductions only (every block is whole).
fn q_live(i: u32) -> bool {{
    return i < body_end();
}}
fn qmap(k: u32) -> f32 {{
    return qmaps[k >> 2u][k & 3u];
}}
// The number of thresholds t (from `thresholds`, all but the last) with scale * t <= x: the
// code of the map entry nearest x / scale, ties up (quant::code, step for step).
fn q_code(x: f32, scale: f32, thresholds: u32) -> u32 {{
    var code = 0u;
    for (var step = QLEVELS / 2u; step > 0u; step = step >> 1u) {{
        if (scale * qmap(thresholds + code + step - 1u) <= x) {{
            code = code + step;
        }}
    }}
    return code;
}}
fn q_codes(x: V, scale: f32, thresholds: u32) -> VU {{
    return VU(q_code(x.x, scale, thresholds), q_code(x.y, scale, thresholds), q_code(x.z, scale, thresholds), q_code(x.w, scale, thresholds));
}}
fn q_values(c: VU, scale: f32, map: u32) -> V {{
    return V(qmap(map + c.x), qmap(map + c.y), qmap(map + c.z), qmap(map + c.w)) * scale;
}}
// The scale of vector i's block: its largest magnitude, at least 1e-12, from every invocation's
// x (called by every invocation of the workgroup). The storage barrier keeps every invocation's
// loads of its block's record before any store to it.
fn q_scale(i: u32, x: V) -> f32 {{
    let lid = i % QGROUP;
    let a = abs(x);
    q_absmax[lid] = max(max(a.x, a.y), max(a.z, a.w));
    workgroupBarrier();
    storageBarrier();
    if (lid < QBLOCKS * QFAN) {{
        let first = lid / QFAN * QWG + lid % QFAN * (QWG / QFAN);
        var m = q_absmax[first];
        for (var k = 1u; k < QWG / QFAN; k = k + 1u) {{
            m = max(m, q_absmax[first + k]);
        }}
        q_fan[lid] = m;
    }}
    workgroupBarrier();
    if (lid < QBLOCKS) {{
        var m = q_fan[lid * QFAN];
        for (var k = 1u; k < QFAN; k = k + 1u) {{
            m = max(m, q_fan[lid * QFAN + k]);
        }}
        q_block[lid] = max(m, bitcast<f32>({scale_min}u));
    }}
    workgroupBarrier();
    return q_block[lid / QWG];
}}
",
        block = q.block(),
        // torchao's clip, as bits, so no compiler's reading of a decimal literal can differ.
        scale_min = crate::quant::SCALE_MIN.to_bits(),
        group = QUANT_GROUP,
        qwg = q.block() / 4,
        code_words = record_words(q) - 1,
        rec = record_words(q),
        vecs = levels,
    );
}

/// `load_NAME` and `store_NAME` of a quantized state `name` with map `map`.
fn quantized(out: &mut String, name: &str, q: Quant, map: QMap) {
    let levels = q.levels();
    let base = match map {
        QMap::Signed => 0,
        QMap::Unsigned => 2 * levels,
    };
    let thresholds = base + levels;
    let (load_codes, store_codes) = match q {
        Quant::Q8 => (
            format!(
                "let w = {name}[rec + lane];\n        let c = VU(w, w >> 8u, w >> 16u, w >> 24u) & VU(255u);"
            ),
            format!(
                "if (q_live(i)) {{\n        {name}[rec + lane] = c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);\n    }}"
            ),
        ),
        // Value 2j in the high nibble of byte j, as torchao packs them; two invocations' codes
        // share a word, joined through q_half.
        Quant::Q4 => (
            format!(
                "let w = {name}[rec + lane / 2u] >> ((lane & 1u) * 16u);\n        let c = VU(w >> 4u, w, w >> 12u, w >> 8u) & VU(15u);"
            ),
            format!(
                "let lid = i % QGROUP;\n    q_half[lid] = (c.x << 4u) | c.y | (((c.z << 4u) | c.w) << 8u);\n    workgroupBarrier();\n    if (q_live(i) && (lane & 1u) == 0u) {{\n        {name}[rec + lane / 2u] = q_half[lid] | (q_half[lid + 1u] << 16u);\n    }}"
            ),
        ),
    };
    let _ = write!(
        out,
        "fn load_{name}(i: u32) -> V {{
    let lane = i % QWG;
    let rec = i / QWG * QREC;
    if (q_live(i)) {{
        {load_codes}
        return q_values(c, bitcast<f32>({name}[rec + QCODE_WORDS]), {base}u);
    }}
    return V(0.0);
}}
fn store_{name}(i: u32, x: V) {{
    let lane = i % QWG;
    let rec = i / QWG * QREC;
    let scale = q_scale(i, x);
    let c = q_codes(x, scale, {thresholds}u);
    {store_codes}
    if (q_live(i) && lane == 0u) {{
        {name}[rec + QCODE_WORDS] = bitcast<u32>(scale);
    }}
}}
"
    );
}

/// Over quantized state, `load_param`, `store_param` and `stored_grad` touch vector `i` only
/// where it is in the window (`q_live`): the wrappers of the `_at` accessors.
fn live_guards(out: &mut String) {
    out.push_str(
        "fn load_param(i: u32) -> V {
    if (q_live(i)) {
        return load_param_at(i);
    }
    return V(0.0);
}
fn store_param(i: u32, x: V) {
    if (q_live(i)) {
        store_param_at(i, x);
    }
}
fn stored_grad(i: u32) -> V {
    if (q_live(i)) {
        return stored_grad_at(i);
    }
    return V(0.0);
}
",
    );
}

/// The bindings of `param`, `grad` and `states` (binding 3 on, in order) for `storage`, their
/// accessors, `PACKED`, `body_end()` and `packed_tail()` (see `update_range` in
/// `shaders/common.wgsl`). With [`Precision::quant`], each state is quantized with its map in
/// `maps` (`Algorithm::QUANT_MAPS`), at [`Width::Vec4`] only.
pub(crate) fn declarations(states: &[&str], maps: &[QMap], storage: &Storage) -> String {
    let p = storage.precision;
    let grad_access = match storage.access {
        GradAccess::ReadOnly => "read",
        GradAccess::Shared => "read_write",
    };
    let mut out = format!("// storage: {}, gradient {grad_access}\n", p.kernel_key());
    let mut declare = |binding: u32, name: &str, access: &str, dtype: Dtype| {
        let element = storage.element(dtype);
        let _ = writeln!(
            out,
            "@group(0) @binding({binding}) var<storage, {access}> {name}: array<{element}>;"
        );
    };
    declare(1, "param", "read_write", p.param);
    declare(2, "grad", grad_access, p.grad);
    if let Some(copy) = p.copy {
        declare(9, "param_copy", "read_write", copy);
    }
    let state_element = if p.quant.is_some() {
        "u32"
    } else {
        storage.element(p.state)
    };
    for (k, name) in states.iter().enumerate() {
        let binding = crate::abi::bindings::update::FIRST_STATE + k as u32;
        let _ = writeln!(
            out,
            "@group(0) @binding({binding}) var<storage, read_write> {name}: array<{state_element}>;"
        );
    }
    let w = storage.width;
    let stochastic = matches!(p.rounding, Rounding::Stochastic { .. }) && p.param == Dtype::Bf16;
    // Over quantized state the accessors are guarded (`live_guards`).
    let at = if p.quant.is_some() { "_at" } else { "" };
    load(&mut out, &format!("load_param{at}"), "param", p.param, w);
    // With the average, the parameter's own store is `store_stored`, wrapped below.
    let store_param = if storage.ema {
        debug_assert_eq!(p.param, Dtype::F32, "the average is of f32 parameters");
        out.push_str(
            "@group(0) @binding(13) var<storage, read_write> ema: array<V>;
",
        );
        out.push_str(EMA_UPDATE);
        let _ = writeln!(
            out,
            "fn store_param{at}(i: u32, x: V) {{
    store_stored(i, x);
    update_ema(i, x);
}}"
        );
        "store_stored".to_string()
    } else {
        format!("store_param{at}")
    };
    match p.copy {
        None => store(&mut out, (&store_param, "param"), p.param, w, stochastic),
        Some(copy) => {
            // The parameter's store also writes its copy, rounded to nearest even.
            store(&mut out, ("store_master", "param"), p.param, w, false);
            store(&mut out, ("store_param_copy", "param_copy"), copy, w, false);
            let _ = writeln!(
                out,
                "fn {store_param}(i: u32, x: V) {{\n    store_master(i, x);\n    store_param_copy(i, x);\n}}"
            );
        }
    }
    load(&mut out, &format!("stored_grad{at}"), "grad", p.grad, w);
    if let Some(q) = p.quant {
        debug_assert_eq!(w, Width::Vec4, "quantized state is stepped at vec4 width");
        quant_helpers(&mut out, q);
        live_guards(&mut out);
        for (name, &map) in states.iter().zip(maps) {
            quantized(&mut out, name, q, map);
        }
    } else {
        for name in states {
            load(&mut out, &format!("load_{name}"), name, p.state, w);
            store(
                &mut out,
                (&format!("store_{name}"), name),
                p.state,
                w,
                false,
            );
        }
    }
    if storage.packed() {
        out.push_str(
            "// This window's body vectors ([0].x), its tail's first ([0].y) and last-plus-one\n\
             // ([0].z) element, the index of its first element in the tensor ([0].w), and the\n\
             // tensor's stochastic-rounding seed ([1].x).\n\
             @group(0) @binding(12) var<uniform> extent: array<vec4<u32>, 2>;\n\
             const PACKED: bool = true;\n\
             fn body_end() -> u32 {\n    return extent[0].x;\n}\n\
             fn packed_tail() -> vec2<u32> {\n    return extent[0].yz;\n}\n",
        );
    } else {
        out.push_str(
            "const PACKED: bool = false;\n\
             fn body_end() -> u32 {\n    return arrayLength(&param);\n}\n\
             fn packed_tail() -> vec2<u32> {\n    return vec2<u32>(0u);\n}\n",
        );
    }
    out
}

/// The `extent` of a window of `len` elements starting at element `start` of a tensor of
/// `precision`: body vectors, tail start, tail end, `start`; the stochastic-rounding seed.
pub(crate) fn extent(start: u64, len: u64, precision: Precision) -> [u32; 8] {
    let len = len as u32;
    let seed = match precision.rounding {
        Rounding::Stochastic { seed } => seed,
        Rounding::Nearest => 0,
    };
    [len / 4, len / 4 * 4, len, start as u32, seed, 0, 0, 0]
}

/// Bytes of the `extent` uniform.
pub(crate) const EXTENT_BYTES: u64 = 32;
