//! A registered parameter's buffers and bindings on the device.

use std::ops::Range;

use crate::kernel::GradAccess;
use crate::optim::MAX_STATES;

/// One binding-sized part of a registered parameter: its bind group and its grids.
#[derive(Debug)]
pub(super) struct Window {
    pub bind_group: wgpu::BindGroup,
    pub workgroups: (u32, u32),
    /// The `norms` entry point's grid: each invocation sums `NORM_ELEMS` elements.
    pub norm_workgroups: (u32, u32),
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
    /// Whether the gradient shares the parameter's buffer.
    pub access: GradAccess,
    /// Index of its pipelines in the optimizer's `Kernels`.
    pub pipeline: usize,
    pub states: [Option<wgpu::Buffer>; MAX_STATES],
    pub windows: Vec<Window>,
}
