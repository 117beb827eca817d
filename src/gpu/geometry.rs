//! Pure geometry of a step: workgroup grids, the windows a buffer is bound in, and where each
//! window's partial sums go. No wgpu objects, only numbers and limits.

use crate::kernel::{NORM_ELEMS, VEC_PER_INVOCATION, WORKGROUP_SIZE, Width, blocks_per_group};
use crate::quant::Quant;

/// Bytes between two tensors' norm pairs in the norms buffer (`NORM_STRIDE` floats in
/// `shaders/reduce.wgsl`), so each pair can be bound alone at an aligned offset.
pub(crate) const NORM_STRIDE_BYTES: u64 = 256;

/// Workgroup counts covering `items` with `per_group` each: a 1-D grid while it fits the
/// per-dimension limit, else a 2-D grid whose rows the kernel's `workgroup_index` walks.
/// `(0, 0)` for no items.
pub(crate) fn groups_of(items: u64, per_group: u64, max_per_dim: u32) -> (u32, u32) {
    let groups = items.div_ceil(per_group);
    let x = groups.min(u64::from(max_per_dim));
    let y = groups.div_ceil(x.max(1));
    (x as u32, y as u32)
}

/// How one window of `len` elements is dispatched at `width`: the `main` and `norms` grids of
/// its body (`VEC_PER_INVOCATION` vectors, or one scalar, per invocation of `main`;
/// `NORM_ELEMS` values per invocation of `norms`), and whether a one-workgroup scalar tail
/// follows for the last `len % 4` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowGrids {
    pub body: (u32, u32),
    pub norms: (u32, u32),
    pub tail: bool,
}

impl WindowGrids {
    pub fn new(len: u64, width: Width, limits: &wgpu::Limits) -> Self {
        let max = limits.max_compute_workgroups_per_dimension;
        let wg = u64::from(WORKGROUP_SIZE);
        let (values, per_invocation) = match width {
            Width::Vec4 => (len / 4, u64::from(VEC_PER_INVOCATION)),
            Width::Scalar => (len, 1),
        };
        Self {
            body: groups_of(values, wg * per_invocation, max),
            norms: groups_of(values, wg * u64::from(NORM_ELEMS), max),
            tail: width == Width::Vec4 && !len.is_multiple_of(4),
        }
    }

    /// A window of `len` elements (whole blocks) of a tensor whose state is quantized as `q`:
    /// one workgroup per [`blocks_per_group`] blocks (`shaders/blockwise.wgsl`), no tail, no
    /// norms.
    pub fn blocks(len: u64, q: Quant, limits: &wgpu::Limits) -> Self {
        let max = limits.max_compute_workgroups_per_dimension;
        Self {
            body: groups_of(len / q.block(), blocks_per_group(q), max),
            norms: (0, 0),
            tail: false,
        }
    }

    /// Partial sums the `norms` stage writes: one per body workgroup, then the tail's.
    pub fn partial_slots(&self) -> u64 {
        u64::from(self.norms.0) * u64::from(self.norms.1) + u64::from(self.tail)
    }

    /// Bytes of partial sums bound for this window (exactly its slots, so the tail's slot is
    /// the last one bound).
    pub fn partials_bytes(&self) -> u64 {
        self.partial_slots() * 8
    }

    /// Bytes this window's partial sums take in the shared buffer, rounded up so the next
    /// window's start is a bindable offset.
    pub fn partials_size(&self) -> u64 {
        self.partials_bytes().div_ceil(NORM_STRIDE_BYTES) * NORM_STRIDE_BYTES
    }
}

/// `(first element, elements)` of each window a buffer of `len` f32 values is bound in: no
/// larger than one storage binding, starting at offsets the device can bind, and no more
/// elements than a 2-D grid within the per-dimension workgroup limit covers. Every window but
/// the last holds a multiple of 4 elements, so each starts as 16-byte aligned as the first.
pub(crate) fn window_ranges(len: u64, limits: &wgpu::Limits) -> Vec<(u64, u64)> {
    window_ranges_in(len, limits, None)
}

/// As [`window_ranges`], for a tensor whose state is quantized as `quant`: every window but the
/// last is also a multiple of 64 blocks, so each window's block records (`kernel::storage`)
/// start at a bindable offset too (64 records of `4 * record words` bytes: a multiple of 256).
pub(crate) fn window_ranges_in(
    len: u64,
    limits: &wgpu::Limits,
    quant: Option<Quant>,
) -> Vec<(u64, u64)> {
    // In elements of 2 bytes, so the starts are bindable for 16-bit values too.
    let align = (u64::from(limits.min_storage_buffer_offset_alignment) / 2).max(4);
    let align = quant.map_or(align, |q| align.max(64 * q.block()));
    // Elements one workgroup steps (over quantized state, its blocks).
    let per_group = quant.map_or(u64::from(WORKGROUP_SIZE), |q| {
        q.block() * blocks_per_group(q)
    });
    let per_dim = u64::from(limits.max_compute_workgroups_per_dimension);
    let window = (limits.max_storage_buffer_binding_size / 4).min(per_dim * per_dim * per_group);
    let window = (window / align * align).max(align);
    (0..len.div_ceil(window))
        .map(|k| (k * window, window.min(len - k * window)))
        .collect()
}

/// Where each tensor's per-workgroup partial sums go in one shared buffer, for tensors of
/// `(elements, width)`: the tensor table (first partial, partial count, in `vec2<f32>` units),
/// each tensor's first byte, and the bytes in all. Windows' partials start at bindable
/// offsets; the zero padding between them adds nothing to the sums.
pub(crate) fn partial_layout(
    tensors: impl Iterator<Item = (u64, Width)>,
    limits: &wgpu::Limits,
) -> (Vec<[u32; 2]>, Vec<u64>, u64) {
    let (mut table, mut starts, mut at) = (Vec::new(), Vec::new(), 0u64);
    for (len, width) in tensors {
        starts.push(at);
        let first = at;
        for (_, n) in window_ranges(len, limits) {
            at += WindowGrids::new(n, width, limits).partials_size();
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
        let grid = |len, max| groups_of(len, 256, max);
        assert_eq!(grid(0, 65535), (0, 0));
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
        let tensors = [(3u64, Width::Scalar), (2500, Width::Scalar)];
        let (table, starts, bytes) = partial_layout(tensors.into_iter(), &limits);
        assert_eq!(starts, vec![0, 256]);
        assert_eq!(table[0], [0, 32]);
        assert_eq!(bytes, 256 + 3 * 256);
    }

    #[test]
    fn vec4_windows_leave_a_tail_only_for_a_partial_vector() {
        let limits = wgpu::Limits::default();
        let per_group = u64::from(WORKGROUP_SIZE * VEC_PER_INVOCATION) * 4;
        for (len, body, tail) in [
            (1u64, 0u32, true),
            (3, 0, true),
            (4, 1, false),
            (1757, 439u64.div_ceil(per_group / 4) as u32, true),
            (per_group, 1, false),
            (per_group + 4, 2, false),
        ] {
            let w = WindowGrids::new(len, Width::Vec4, &limits);
            assert_eq!((w.body.0 * w.body.1, w.tail), (body, tail), "len {len}");
            assert_eq!(w.partial_slots(), u64::from(w.norms.0) + u64::from(tail));
        }
        let s = WindowGrids::new(1757, Width::Scalar, &limits);
        assert_eq!((s.body, s.tail), ((7, 1), false));
    }

    #[test]
    fn windows_hold_whole_vectors_even_with_a_small_alignment() {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 4096 + 8,
            min_storage_buffer_offset_alignment: 4,
            ..wgpu::Limits::default()
        };
        let w = window_ranges(2500, &limits);
        assert!(
            w[..w.len() - 1]
                .iter()
                .all(|&(s, n)| s % 4 == 0 && n % 4 == 0),
            "{w:?}"
        );
        assert_eq!(w.iter().map(|&(_, n)| n).sum::<u64>(), 2500);
    }
}
