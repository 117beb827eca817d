//! A registered parameter's buffers and bindings on the device.

use std::ops::Range;

use crate::gpu::factors::Factors;
use crate::gpu::geometry::WindowGrids;
use crate::gpu::muon::MatrixOf;
use crate::gpu::rebind::GradBinding;
use crate::kernel::{GradAccess, Width};
use crate::optim::MAX_STATES;
use crate::precision::Precision;

/// One binding-sized part of a registered parameter: its bind group (the same for the body
/// and the tail pipelines) and its grids.
#[derive(Debug)]
pub(super) struct Window {
    pub bind_group: wgpu::BindGroup,
    pub grids: WindowGrids,
}

/// A matrix of an [`crate::Algorithm::ORTHOGONAL`] optimizer.
#[derive(Debug)]
pub(crate) struct Matrix {
    pub of: MatrixOf,
    /// `[original, match_rms_adamw]` rate factors for its shape (`lr_ratios`).
    pub ratios: wgpu::Buffer,
}

/// A registered parameter's buffers and bindings.
#[derive(Debug)]
pub(crate) struct GpuParam {
    pub group: usize,
    pub len: u64,
    pub param: wgpu::Buffer,
    /// The registered bytes of `param`.
    pub param_range: Range<u64>,
    pub grad: wgpu::Buffer,
    pub grad_offset: u64,
    /// The 16-bit copy of an f32 parameter the step writes, and its registered bytes.
    pub copy: Option<(wgpu::Buffer, Range<u64>)>,
    /// Whether the gradient shares the parameter's buffer.
    pub access: GradAccess,
    /// The dtypes of the parameter, gradient and states.
    pub precision: Precision,
    /// `Vec4` when both the parameter and its gradient start 16-byte aligned (always for
    /// 16-bit values), else `Scalar`.
    pub width: Width,
    /// Index of its body pipelines in the optimizer's `Kernels`.
    pub pipeline: usize,
    /// Index of its tail pipelines, for a `Vec4` parameter whose length is not a multiple of 4.
    pub tail: Option<usize>,
    pub states: [Option<wgpu::Buffer>; MAX_STATES],
    /// The factored state's dimensions and pass grids ([`crate::Algorithm::FACTORED`]).
    pub factors: Option<Factors>,
    /// A matrix's shape and rate factors ([`crate::Algorithm::ORTHOGONAL`]).
    pub matrix: Option<Matrix>,
    pub windows: Vec<Window>,
    /// Each window's `extent` uniform, for tensors with 16-bit values (`kernel::Storage`);
    /// empty for f32 tensors.
    pub extents: Vec<wgpu::Buffer>,
    /// The average of its weights (f32, its length), while one is kept.
    pub ema: Option<wgpu::Buffer>,
    /// What its earlier gradient slices were bound with, for when they come back
    /// (`GpuOptimizer::step_with`), oldest first.
    pub grad_cache: Vec<GradBinding>,
}
