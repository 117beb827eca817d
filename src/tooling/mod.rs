//! Tooling behind the `wgpu-optim` binary, the examples, the benches and the tests: the
//! benchmark harness, the fuzz targets' checks, the end-to-end MLP and the 2-D test functions.
//!
//! Not part of the public API: hidden from the docs, with no stability promise. The library's
//! API is what the crate root documents.

pub mod bench;
pub mod fuzz;
pub mod mlp;
pub mod testfns;

pub use crate::io::write_atomically;
