//! Pure geometry of a step: workgroup grids, the windows a buffer is bound in, and where each
//! window's partial sums go. No wgpu objects, only numbers and limits.

use crate::kernel::{NORM_ELEMS, WORKGROUP_SIZE};

/// Bytes between two tensors' norm pairs in the norms buffer (`NORM_STRIDE` floats in
/// `shaders/reduce.wgsl`), so each pair can be bound alone at an aligned offset.
pub(crate) const NORM_STRIDE_BYTES: u64 = 256;

/// Workgroup counts covering `len` elements: a 1-D grid while it fits the per-dimension limit,
/// else a 2-D grid whose rows the kernel's `element_index` walks.
pub(crate) fn grid(len: u64, max_per_dim: u32) -> (u32, u32) {
    let groups = len.div_ceil(u64::from(WORKGROUP_SIZE));
    let x = groups.min(u64::from(max_per_dim));
    let y = groups.div_ceil(x.max(1));
    (x as u32, y as u32)
}

/// The `norms` entry point's grid over `len` elements: `NORM_ELEMS` per invocation.
pub(crate) fn norm_grid(len: u64, limits: &wgpu::Limits) -> (u32, u32) {
    grid(
        len.div_ceil(u64::from(NORM_ELEMS)),
        limits.max_compute_workgroups_per_dimension,
    )
}

/// Bytes of partial sums a window with `workgroups` needs: one `vec2<f32>` per workgroup,
/// rounded up so the next window's start is a bindable offset.
pub(crate) fn partials_size(workgroups: (u32, u32)) -> u64 {
    let bytes = u64::from(workgroups.0) * u64::from(workgroups.1) * 8;
    bytes.div_ceil(NORM_STRIDE_BYTES) * NORM_STRIDE_BYTES
}

/// `(first element, elements)` of each window a buffer of `len` f32 values is bound in: no
/// larger than one storage binding, starting at offsets the device can bind, and no more
/// elements than a 2-D grid within the per-dimension workgroup limit covers.
pub(crate) fn window_ranges(len: u64, limits: &wgpu::Limits) -> Vec<(u64, u64)> {
    let align = u64::from(limits.min_storage_buffer_offset_alignment) / 4;
    let per_dim = u64::from(limits.max_compute_workgroups_per_dimension);
    let window = (limits.max_storage_buffer_binding_size / 4)
        .min(per_dim * per_dim * u64::from(WORKGROUP_SIZE));
    let window = (window / align * align).max(align);
    (0..len.div_ceil(window))
        .map(|k| (k * window, window.min(len - k * window)))
        .collect()
}

/// Where each tensor's per-workgroup partial sums go in one shared buffer, for tensors of
/// `lens` elements: the tensor table (first partial, partial count, in `vec2<f32>` units),
/// each tensor's first byte, and the bytes in all. Windows' partials start at bindable
/// offsets; the zero padding between them adds nothing to the sums.
pub(crate) fn partial_layout(
    lens: impl Iterator<Item = u64>,
    limits: &wgpu::Limits,
) -> (Vec<[u32; 2]>, Vec<u64>, u64) {
    let (mut table, mut starts, mut at) = (Vec::new(), Vec::new(), 0u64);
    for len in lens {
        starts.push(at);
        let first = at;
        for (_, n) in window_ranges(len, limits) {
            at += partials_size(norm_grid(n, limits));
        }
        table.push([(first / 8) as u32, ((at - first) / 8) as u32]);
    }
    (table, starts, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_every_element_and_respects_the_limit() {
        assert_eq!(grid(1, 65535), (1, 1));
        assert_eq!(grid(256, 65535), (1, 1));
        assert_eq!(grid(257, 65535), (2, 1));
        let (x, y) = grid(100_000_000, 65535);
        assert!(x <= 65535);
        assert!(u64::from(x) * u64::from(y) * 256 >= 100_000_000);
    }

    #[test]
    fn windows_tile_the_buffer_at_aligned_starts() {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 4096,
            min_storage_buffer_offset_alignment: 256,
            ..wgpu::Limits::default()
        };
        let w = window_ranges(2500, &limits);
        assert_eq!(w, vec![(0, 1024), (1024, 1024), (2048, 452)]);
        let (table, starts, bytes) = partial_layout([3u64, 2500].into_iter(), &limits);
        assert_eq!(starts, vec![0, 256]);
        assert_eq!(table[0], [0, 32]);
        assert_eq!(bytes, 256 + 3 * 256);
    }
}
