//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod pair;

use wgpu_optim::GpuContext;

/// Set to skip GPU tests explicitly when no adapter exists. CI never sets it.
pub const SKIP_GPU_ENV: &str = "WGPU_OPTIM_SKIP_GPU_TESTS";

/// The GPU context for a test. Without an adapter this fails the test with instructions,
/// unless `WGPU_OPTIM_SKIP_GPU_TESTS=1` opts out, in which case it returns `None` and says so.
pub fn gpu() -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => {
            let info = ctx.adapter.get_info();
            eprintln!("GPU tests on {} ({:?})", info.name, info.backend);
            Some(ctx)
        }
        Err(e) if std::env::var(SKIP_GPU_ENV).is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED GPU test ({SKIP_GPU_ENV}=1): {e}");
            None
        }
        Err(e) => panic!(
            "{e}\nGPU tests need a wgpu adapter (WGPU_BACKEND={:?}). Install Mesa's lavapipe with \
             `apt-get install mesa-vulkan-drivers libvulkan1`, or opt out explicitly with {SKIP_GPU_ENV}=1.",
            std::env::var("WGPU_BACKEND").ok()
        ),
    }
}

/// The `.safetensors` case files in `dir`, sorted; a test fails if the folder cannot be read.
pub fn case_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the parity cases at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    paths
}

/// The recorded parity cases shipped beside the repository.
pub fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity/cases")
}

/// The recorded cases of the optimizers beyond the first nine (`optimizers/`).
pub fn optimizer_cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity/optimizers")
}

/// The recorded Muon cases (`muon/`).
pub fn muon_cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity/muon")
}

/// A fresh, empty directory for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-{test}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small deterministic generator (SplitMix64), so tests need no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.uniform()).collect()
    }
}

/// A device with deliberately small limits: 64 KiB storage bindings (16384 f32) and at most
/// 8 workgroups per grid dimension, so windows and 2-D grids are exercised at small sizes.
pub fn small_limits_context() -> Option<GpuContext> {
    gpu()?;
    let (_instance, adapters) = wgpu_optim::enumerate_adapters();
    let adapter = wgpu_optim::pick_adapter(&adapters)?.clone();
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 64 << 10,
        max_compute_workgroups_per_dimension: 8,
        ..adapter.limits()
    };
    Some(GpuContext::from_adapter(adapter, Some(limits)).unwrap())
}
