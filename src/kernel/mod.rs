//! WGSL sources and how they are put together.
//!
//! Each optimizer's kernel lives in `shaders/<name>.wgsl`; what they share (the workgroup size,
//! each invocation's first index, PyTorch's `lerp`) lives once in `shaders/common.wgsl` and is
//! prepended by [`compose`], after the tensor bindings and their accessors, which [`Storage`]
//! generates for the tensor's dtypes.
//!
//! Every update kernel is written once over the element type `V` and compiled at two
//! [`Width`]s: `vec4<f32>`, the body of each tensor, [`VEC_PER_INVOCATION`] vectors per
//! invocation; and `f32`, for the last `len % 4` elements (a one-workgroup tail dispatch) and
//! for tensors whose bytes do not start 16-byte aligned.

mod storage;

use crate::quant::QMap;
pub use storage::Storage;
pub(crate) use storage::{
    EMA_WEIGHT_BYTES, EXTENT_BYTES, blocks_per_group, extent, from_records, quantized_bytes,
    records,
};

/// Threads per workgroup, passed to every kernel as its `WG` override constant.
pub const WORKGROUP_SIZE: u32 = 256;

/// Values (vec4s in the vectorized kernels) each invocation of a `norms` entry point (LAMB,
/// LARS, the gradient stage) sums, passed as the `NORM_ELEMS` override constant. Of 1, 2, 4, 8
/// and 16, 4 was fastest on lavapipe (fewer workgroups, and so fewer barriers, than 1 or 2;
/// less strided access per invocation than 8 or 16).
pub const NORM_ELEMS: u32 = 4;

/// `vec4<f32>` values each invocation of a vectorized update kernel handles (`VPI`), `WG`
/// vectors apart so that neighbouring invocations touch neighbouring memory. One: the bench's
/// sweep of the streaming kernel finds 2, 4 and 8 per invocation slower than 1 on lavapipe
/// (BENCHMARKS.md), where a workgroup runs as SIMD batches that would each stride across
/// `VPI` distant rows; on GPUs one vec4 per invocation already issues 16-byte accesses.
pub const VEC_PER_INVOCATION: u32 = 1;

/// Step-count candidates uploaded per step under loss scaling (`SCALAR_CANDIDATES` in
/// `shaders/common.wgsl`, a WGSL `const` because it sizes a uniform array; a test keeps the two
/// equal).
pub const SCALAR_CANDIDATES: u32 = 16;

/// The WGSL shared by every kernel.
pub const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");

/// The entry point every single-pass optimizer kernel shares (see [`Kernel::single_pass`]).
pub const ELEMENTWISE_WGSL: &str = include_str!("../../shaders/elementwise.wgsl");

/// The entry point of a single-pass kernel over a tensor with quantized state: one workgroup
/// per block ([`crate::quant`]).
pub const BLOCKWISE_WGSL: &str = include_str!("../../shaders/blockwise.wgsl");

/// One optimizer kernel: its name and its WGSL source, without the common part.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The file stem under `shaders/`, also the shader module's label.
    pub name: &'static str,
    /// The kernel's own WGSL.
    pub source: &'static str,
    /// Whether `shaders/elementwise.wgsl`'s `main` follows the kernel's own WGSL.
    pub single_pass: bool,
}

impl Kernel {
    /// A kernel with entry points of its own.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            single_pass: false,
        }
    }

    /// A single-pass elementwise kernel: its WGSL declares `alias Scalars`, the `scalars`
    /// uniform and `fn update_at(s: Scalars, i: u32)`, and `shaders/elementwise.wgsl` supplies
    /// the `main` entry point that calls it.
    pub const fn single_pass(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            single_pass: true,
        }
    }
}

/// The exact f32 conversions of the 16-bit dtypes, placed after the width prelude.
pub const DTYPE_WGSL: &str = include_str!("../../shaders/dtype.wgsl");

/// How a kernel's gradient binding is declared. wgpu rejects a buffer bound both read-only and
/// read-write in one dispatch, but accepts it bound read-write twice (the ranges never
/// overlap; registration checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GradAccess {
    /// `read`: the gradient lives in a buffer of its own (or one its parameter is not in).
    ReadOnly,
    /// `read_write`: the gradient shares a buffer with its parameter (a framework's pool).
    Shared,
}

/// The element type `V` a kernel is compiled for: what its `param`, `grad` and state arrays
/// hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Width {
    /// `vec4<f32>`: four elements per load and store.
    Vec4,
    /// `f32`: one element at a time (tails, unaligned tensors, the support kernels).
    Scalar,
}

impl Width {
    /// The WGSL that defines `V`, `VU` and `VB` (its `u32` and `bool` twins, for bit tests and
    /// per-lane conditions), `LANES` (f32 values in one `V`), `hsum` (the sum of one `V`'s
    /// lanes, in lane order) and `lanes4` (a `V` from per-lane values; the first alone at f32
    /// width) for this width, placed before `common.wgsl`.
    fn prelude(self) -> &'static str {
        match self {
            Width::Vec4 => {
                "alias V = vec4<f32>;\nalias VU = vec4<u32>;\nalias VB = vec4<bool>;\nconst LANES: u32 = 4u;\nfn hsum(x: V) -> f32 {\n    return ((x.x + x.y) + x.z) + x.w;\n}\nfn lanes4(a: f32, b: f32, c: f32, d: f32) -> V {\n    return V(a, b, c, d);\n}\n"
            }
            Width::Scalar => {
                "alias V = f32;\nalias VU = u32;\nalias VB = bool;\nconst LANES: u32 = 1u;\nfn hsum(x: V) -> f32 {\n    return x;\n}\nfn lanes4(a: f32, b: f32, c: f32, d: f32) -> V {\n    return a;\n}\n"
            }
        }
    }

    /// `f32` values in one `V`.
    pub const fn lanes(self) -> u64 {
        match self {
            Width::Vec4 => 4,
            Width::Scalar => 1,
        }
    }
}

/// The complete WGSL for one kernel at [`Width::Scalar`]: the common part, then the kernel's
/// own.
pub fn compose(kernel: &Kernel) -> String {
    compose_with(kernel, GradAccess::ReadOnly, Width::Scalar)
}

/// As [`compose`], with the gradient declared for `access` and the elements `width` wide, over
/// f32 tensors and no generated states (every kernel but the single-pass updates, which
/// [`compose_for`] composes).
pub fn compose_with(kernel: &Kernel, access: GradAccess, width: Width) -> String {
    compose_for(kernel, &[], &[], &Storage::f32(access, width))
}

/// The complete WGSL of `kernel` over tensors stored as `storage` says, with the elementwise
/// states `states` (binding 3 on) declared for it, quantized with `maps` where
/// `storage.precision.quant` says: the width prelude, `dtype.wgsl`, the storage layer
/// ([`Storage`]), `common.wgsl`, the kernel's own WGSL, and for single-pass kernels
/// `elementwise.wgsl` (`blockwise.wgsl` over quantized state).
/// Kernels that declare their states themselves (LAMB, LARS, Adafactor, over f32) pass none.
pub fn compose_for(kernel: &Kernel, states: &[&str], maps: &[QMap], storage: &Storage) -> String {
    let width = storage.width;
    let mut layer = storage::declarations(states, maps, storage);
    if kernel.single_pass {
        layer.push_str(storage::STEP_UNIFORM);
    }
    let entry = match (kernel.single_pass, storage.precision.quant) {
        (false, _) => String::new(),
        (true, None) => format!("\n// ---- elementwise.wgsl ----\n{ELEMENTWISE_WGSL}"),
        (true, Some(_)) => format!("\n// ---- blockwise.wgsl ----\n{BLOCKWISE_WGSL}"),
    };
    format!(
        "// ---- width: {width:?} ----\n{}// ---- dtype.wgsl ----\n{DTYPE_WGSL}\n// ---- storage ----\n{layer}// ---- common.wgsl ----\n{COMMON_WGSL}\n// ---- {}.wgsl ----\n{}{entry}",
        width.prelude(),
        kernel.name,
        kernel.source
    )
}

/// Compiles `kernel` (composed with the common part, its gradient declared for `access`, its
/// elements `width` wide) on `device`. Crate-private: only this crate's own kernels, whose guards are known, are compiled
/// without runtime bounds checks.
///
/// Runtime bounds checks are off: every kernel returns before touching memory unless its index is
/// below `arrayLength(&param)` (or `&grad`, of the same length), and every buffer it then
/// touches is bound with exactly the parameter's length, so has the same `arrayLength` at
/// either width; the 16-byte placeholders bound for unused states sit behind `override` flags
/// that are constant-false in their pipelines; a tail pipeline's one workgroup touches only
/// indices from `len / 4 * 4` to `len`. Naga's per-access clamps would only repeat those guards
/// on every load and store.
pub(crate) fn create_module(
    device: &wgpu::Device,
    kernel: &Kernel,
    access: GradAccess,
    width: Width,
) -> wgpu::ShaderModule {
    create_module_for(device, kernel, &[], &[], &Storage::f32(access, width))
}

/// As [`create_module`], composed by [`compose_for`]. A tensor with 16-bit values is bounded
/// by its window's `extent` instead of `arrayLength(&param)`, and the tail pipeline's one
/// working invocation stays within `extent`'s tail, inside the last word bound.
pub(crate) fn create_module_for(
    device: &wgpu::Device,
    kernel: &Kernel,
    states: &[&str],
    maps: &[QMap],
    storage: &Storage,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(kernel.name),
        source: wgpu::ShaderSource::Wgsl(compose_for(kernel, states, maps, storage).into()),
    };
    // SAFETY: see above; every access is guarded by the kernel's own bounds check.
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
}

/// As [`create_module_for`], from WGSL already composed by [`compose_for`] (with more after it:
/// the bench's streaming kernel).
pub(crate) fn create_module_from(
    device: &wgpu::Device,
    label: &str,
    wgsl: String,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    };
    // SAFETY: as create_module_for: every access is guarded by the kernel's own bounds check.
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
}

/// A pipeline layout over bind groups `groups` (group 0 first).
pub(crate) fn pipeline_layout(
    device: &wgpu::Device,
    label: &str,
    groups: &[&wgpu::BindGroupLayout],
) -> wgpu::PipelineLayout {
    let groups: Vec<Option<&wgpu::BindGroupLayout>> = groups.iter().map(|g| Some(*g)).collect();
    device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &groups,
        immediate_size: 0,
    })
}

/// The compute pipeline of `module`'s entry point `entry` over `layout`, with the `WG` override
/// set to [`WORKGROUP_SIZE`] and `constants` besides.
pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let module = (module, entry);
    sized_compute_pipeline(device, label, layout, module, WORKGROUP_SIZE, constants)
}

/// As [`compute_pipeline`] for `(module, entry point)`, with `WG` = `workgroup_size` (the
/// bench's sweep of the streaming kernel).
pub(crate) fn sized_compute_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::PipelineLayout,
    (module, entry): (&wgpu::ShaderModule, &str),
    workgroup_size: u32,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let mut all = vec![("WG", f64::from(workgroup_size))];
    all.extend_from_slice(constants);
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &all,
            // Kernels that use workgroup memory write it before reading it.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_candidates_agree_with_the_shader() {
        let line = format!("const SCALAR_CANDIDATES: u32 = {SCALAR_CANDIDATES}u;");
        assert!(COMMON_WGSL.contains(&line), "common.wgsl lacks `{line}`");
    }

    #[test]
    fn shared_gradients_are_declared_read_write_once() {
        let k = Kernel::new("probe", "");
        let read = "var<storage, read> grad: array<V>;";
        let shared = "var<storage, read_write> grad: array<V>;";
        let own = compose_with(&k, GradAccess::ReadOnly, Width::Vec4);
        assert_eq!(
            (own.matches(read).count(), own.matches(shared).count()),
            (1, 0)
        );
        let pooled = compose_with(&k, GradAccess::Shared, Width::Vec4);
        assert_eq!(
            (pooled.matches(read).count(), pooled.matches(shared).count()),
            (0, 1)
        );
    }

    #[test]
    fn compose_puts_common_first_and_each_part_once() {
        let k = Kernel::new("probe", "fn probe_body() {}\n");
        let wgsl = compose(&k);
        assert_eq!(wgsl.matches("override WG").count(), 1);
        assert_eq!(wgsl.matches("fn probe_body").count(), 1);
        assert!(wgsl.find("alias V = f32;").unwrap() < wgsl.find("override WG").unwrap());
        assert!(wgsl.find("fn invocation_base").unwrap() < wgsl.find("fn probe_body").unwrap());
        let vec4 = compose_with(&k, GradAccess::ReadOnly, Width::Vec4);
        assert_eq!(vec4.matches("alias V = vec4<f32>;").count(), 1);
        assert!(!wgsl.contains("fn main("));
        let single = compose(&Kernel::single_pass("probe", "fn probe_body() {}\n"));
        assert_eq!(single.matches("fn main(").count(), 1);
        assert!(single.find("fn probe_body").unwrap() < single.find("fn main(").unwrap());
    }
}
