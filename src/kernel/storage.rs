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

/// How one kernel module's tensor bindings are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Storage {
    /// How the gradient is bound.
    pub access: GradAccess,
    /// The element type `V`.
    pub width: Width,
    /// The dtypes of the parameter, the gradient and the states.
    pub precision: Precision,
}

impl Storage {
    /// f32 tensors, the gradient bound for `access`, `width` wide.
    pub const fn f32(access: GradAccess, width: Width) -> Self {
        Self {
            access,
            width,
            precision: Precision::F32,
        }
    }

    /// The same bindings over tensors of `precision`.
    pub const fn with(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// Whether any binding holds 16-bit values (and so the windows bind `extent`).
    pub fn packed(&self) -> bool {
        self.precision.parts().iter().any(|(_, d)| *d != Dtype::F32)
            || self.precision.copy.is_some()
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
/// step's counter (`[step, step >> 32, 0, 0]`, for stochastic rounding's random bits).
pub(crate) const STEP_UNIFORM: &str = "struct StepUniform {
    scalars: array<Scalars, SCALAR_CANDIDATES>,
    counter: vec4<u32>,
}
@group(1) @binding(0) var<uniform> step_uniform: StepUniform;
";

/// The bindings of `param`, `grad` and `states` (binding 3 on, in order) for `storage`, their
/// accessors, `PACKED`, `body_end()` and `packed_tail()` (see `update_range` in
/// `shaders/common.wgsl`).
pub(crate) fn declarations(states: &[&str], storage: &Storage) -> String {
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
    for (k, name) in states.iter().enumerate() {
        declare(
            crate::abi::bindings::update::FIRST_STATE + k as u32,
            name,
            "read_write",
            p.state,
        );
    }
    let w = storage.width;
    let stochastic = matches!(p.rounding, Rounding::Stochastic { .. }) && p.param == Dtype::Bf16;
    load(&mut out, "load_param", "param", p.param, w);
    match p.copy {
        None => store(&mut out, ("store_param", "param"), p.param, w, stochastic),
        Some(copy) => {
            // The parameter's store also writes its copy, rounded to nearest even.
            store(&mut out, ("store_master", "param"), p.param, w, false);
            store(&mut out, ("store_param_copy", "param_copy"), copy, w, false);
            let _ = writeln!(
                out,
                "fn store_param(i: u32, x: V) {{\n    store_master(i, x);\n    store_param_copy(i, x);\n}}"
            );
        }
    }
    load(&mut out, "stored_grad", "grad", p.grad, w);
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
