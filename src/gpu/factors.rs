//! Adafactor's factored tensors on the device ([`Algorithm::FACTORED`]): each tensor's
//! `factors` buffer (its dimensions, then each matrix's row-factor mean) and the grids of its
//! `rows`, `cols` and `stats` passes.

use crate::error::{Error, Result};
use crate::gpu::geometry::groups_of;
use crate::kernel::WORKGROUP_SIZE;

/// Dimensions past this are not exact in the f32 `factors` buffer.
const MAX_DIM: u64 = 1 << 24;

/// A tensor's dimensions as its factored state sees them: B matrices of R × C (C = 0 for an
/// unfactored tensor, of fewer than two dimensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FactorDims {
    pub batches: u64,
    pub rows: u64,
    pub cols: u64,
    pub numel: u64,
}

impl FactorDims {
    /// The dimensions of a tensor of `shape`, checked to fit the `factors` buffer's f32s.
    pub fn of(shape: &[usize]) -> Result<Self> {
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        let dims = match shape {
            [.., r, c] => Self {
                batches: numel.checked_div(*r as u64 * *c as u64).unwrap_or(0),
                rows: *r as u64,
                cols: *c as u64,
                numel,
            },
            _ => Self {
                batches: 0,
                rows: 0,
                cols: 0,
                numel,
            },
        };
        let largest = dims.batches.max(dims.rows).max(dims.cols);
        if largest >= MAX_DIM {
            return Err(Error::InvalidOptions(format!(
                "a factored tensor of shape {shape:?}: each of its matrix count, rows and columns must be below {MAX_DIM}"
            )));
        }
        Ok(dims)
    }
}

/// One tensor's `factors` buffer and pass grids (zero for an unfactored tensor).
#[derive(Debug)]
pub(crate) struct Factors {
    pub buffer: wgpu::Buffer,
    /// One workgroup per row of every matrix.
    pub rows: (u32, u32),
    /// One invocation per column of every matrix.
    pub cols: (u32, u32),
    /// One workgroup per matrix.
    pub stats: (u32, u32),
}

impl Factors {
    /// The buffer (`[R, C, B, √numel]` then B means, written at each step) and grids for `dims`.
    pub fn new(device: &wgpu::Device, dims: FactorDims) -> Self {
        let mut head = vec![
            dims.rows as f32,
            dims.cols as f32,
            dims.batches as f32,
            (dims.numel as f64).sqrt() as f32,
        ];
        head.resize(4 + dims.batches as usize, 0.0);
        let buffer = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim factors"),
                contents: bytemuck::cast_slice(&head),
                usage: wgpu::BufferUsages::STORAGE,
            },
        );
        let max = device.limits().max_compute_workgroups_per_dimension;
        let wg = u64::from(WORKGROUP_SIZE);
        Self {
            buffer,
            rows: groups_of(dims.batches * dims.rows, 1, max),
            cols: groups_of(dims.batches * dims.cols, wg, max),
            stats: groups_of(dims.batches, 1, max),
        }
    }

    /// The grid of factor pass `k` (`FACTOR_PASSES` order).
    pub fn grid(&self, k: usize) -> (u32, u32) {
        [self.rows, self.cols, self.stats][k]
    }
}
