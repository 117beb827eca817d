//! `wgpu-optim bench`.

use wgpu_optim::Result;

/// Options of `wgpu-optim bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub fn run(_args: &BenchArgs) -> Result<()> {
    Ok(())
}
