//! WGSL sources and how they are put together.
//!
//! Each optimizer's kernel lives in `shaders/<name>.wgsl`; what they share (the workgroup size,
//! the `param` and `grad` bindings, the element index, PyTorch's `lerp`) lives once in
//! `shaders/common.wgsl` and is prepended by [`compose`].

/// Threads per workgroup, passed to every kernel as its `WG` override constant.
pub const WORKGROUP_SIZE: u32 = 256;

/// Elements each invocation of a `norms` entry point (LAMB, LARS) sums, passed as the
/// `NORM_ELEMS` override constant.
pub const NORM_ELEMS: u32 = 16;

/// Step-count candidates uploaded per step under loss scaling (`SCALAR_CANDIDATES` in
/// `shaders/common.wgsl`, a WGSL `const` because it sizes a uniform array; a test keeps the two
/// equal).
pub const SCALAR_CANDIDATES: u32 = 16;

/// The WGSL shared by every kernel.
pub const COMMON_WGSL: &str = include_str!("../shaders/common.wgsl");

/// One optimizer kernel: its name and its WGSL source, without the common part.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The file stem under `shaders/`, also the shader module's label.
    pub name: &'static str,
    /// The kernel's own WGSL.
    pub source: &'static str,
}

/// The complete WGSL for one kernel: the common part, then the kernel's own.
pub fn compose(kernel: &Kernel) -> String {
    format!(
        "// ---- common.wgsl ----\n{COMMON_WGSL}\n// ---- {}.wgsl ----\n{}",
        kernel.name, kernel.source
    )
}

/// Compiles `kernel` (composed with the common part) on `device`.
///
/// Runtime bounds checks are off: every kernel returns before touching memory unless its index is
/// below `arrayLength(&param)`, and every buffer it then touches is bound with exactly the
/// parameter's length; the one-element placeholders bound for unused states sit behind `override`
/// flags that are constant-false in their pipelines. Naga's per-access clamps would only repeat
/// that guard on every load and store.
pub fn create_module(device: &wgpu::Device, kernel: &Kernel) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(kernel.name),
        source: wgpu::ShaderSource::Wgsl(compose(kernel).into()),
    };
    // SAFETY: see above; every access is guarded by the kernel's own bounds check.
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
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
    fn compose_puts_common_first_and_each_part_once() {
        let k = Kernel {
            name: "probe",
            source: "fn probe_body() {}\n",
        };
        let wgsl = compose(&k);
        assert_eq!(wgsl.matches("override WG").count(), 1);
        assert_eq!(wgsl.matches("fn probe_body").count(), 1);
        assert!(wgsl.find("fn element_index").unwrap() < wgsl.find("fn probe_body").unwrap());
    }
}
