//! [`ArenaLayout`]: many tensors in one buffer, so one dispatch steps them all.

use std::ops::Range;

use crate::error::{Error, Result};

/// Where each tensor of a parameter arena lives: one buffer holding many tensors at offsets the
/// device can bind, for parameters and gradients alike.
///
/// Lay the arena out once, create one parameter buffer and one gradient buffer of
/// [`ArenaLayout::size`] bytes, bind `buffer.slice(layout.byte_range(i))` for tensor `i` in your
/// own stack, and register the two whole buffers with the optimizer: a step over the arena is
/// then one dispatch (one per storage-binding-sized window for arenas past that limit) whatever
/// the number of tensors. All tensors of an arena share its parameter group; use one arena per
/// group. The padding between tensors starts at zero, gets zero gradients if the caller leaves
/// it alone, and so stays zero under every optimizer here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaLayout {
    offsets: Vec<u64>,
    lens: Vec<u64>,
    total: u64,
}

impl ArenaLayout {
    /// Lays out tensors of `lens` f32 elements, each starting at a multiple of `alignment` bytes
    /// (pass the device's `min_storage_buffer_offset_alignment`, so each can be bound alone).
    pub fn new(lens: &[u64], alignment: u64) -> Result<Self> {
        if alignment == 0 || !alignment.is_multiple_of(4) {
            return Err(Error::InvalidOptions(format!(
                "arena alignment must be a positive multiple of 4 bytes, got {alignment}"
            )));
        }
        if let Some(i) = lens.iter().position(|&n| n == 0) {
            return Err(Error::InvalidOptions(format!(
                "arena tensor {i} has no elements"
            )));
        }
        if lens.is_empty() {
            return Err(Error::InvalidOptions(
                "an arena needs at least one tensor".into(),
            ));
        }
        let step = alignment / 4;
        let too_large = || {
            Error::InvalidOptions(format!(
                "an arena of tensors of {lens:?} elements does not fit in 2^64 bytes"
            ))
        };
        let mut offsets = Vec::with_capacity(lens.len());
        let (mut at, mut total) = (0u64, 0u64);
        for &n in lens {
            offsets.push(at);
            total = at.checked_add(n).ok_or_else(too_large)?;
            at = total.checked_next_multiple_of(step).ok_or_else(too_large)?;
        }
        // A whole number of vec4s, so the arena is stepped without a scalar tail.
        let total = total.checked_next_multiple_of(4).ok_or_else(too_large)?;
        if total.checked_mul(4).is_none() {
            return Err(too_large());
        }
        Ok(Self {
            offsets,
            lens: lens.to_vec(),
            total,
        })
    }

    /// As [`ArenaLayout::new`], aligned for `device`.
    pub fn for_device(device: &wgpu::Device, lens: &[u64]) -> Result<Self> {
        Self::new(
            lens,
            u64::from(device.limits().min_storage_buffer_offset_alignment),
        )
    }

    /// Elements in the arena, padding included: the padding between tensors, and after the
    /// last one up to a multiple of 4 elements, so the vec4 kernels step the whole arena with no
    /// scalar tail.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether the arena is empty (never: a layout has at least one tensor).
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes the arena's buffers need.
    pub fn size(&self) -> u64 {
        self.total * 4
    }

    /// Number of tensors.
    pub fn tensors(&self) -> usize {
        self.lens.len()
    }

    /// Tensor `i`'s elements within the arena, or an error naming `i` past the last tensor.
    pub fn range(&self, i: usize) -> Result<Range<u64>> {
        match (self.offsets.get(i), self.lens.get(i)) {
            (Some(&start), Some(&len)) => Ok(start..start + len),
            _ => Err(Error::InvalidOptions(format!(
                "the arena has {} tensors, asked for tensor {i}",
                self.lens.len()
            ))),
        }
    }

    /// Tensor `i`'s bytes within the arena's buffers, for `buffer.slice(..)`.
    pub fn byte_range(&self, i: usize) -> Result<Range<u64>> {
        let r = self.range(i)?;
        Ok(r.start * 4..r.end * 4)
    }

    /// The arena's contents holding `tensors` (one per layout entry, of its length), zeros
    /// between them.
    pub fn pack(&self, tensors: &[&[f32]]) -> Result<Vec<f32>> {
        if tensors.len() != self.lens.len() {
            return Err(Error::InvalidOptions(format!(
                "the arena has {} tensors, got {}",
                self.lens.len(),
                tensors.len()
            )));
        }
        let mut out = vec![0.0; self.total as usize];
        for (i, t) in tensors.iter().enumerate() {
            let r = self.range(i)?;
            if t.len() as u64 != self.lens[i] {
                return Err(Error::InvalidOptions(format!(
                    "arena tensor {i} has {} elements, got {}",
                    self.lens[i],
                    t.len()
                )));
            }
            out[r.start as usize..r.end as usize].copy_from_slice(t);
        }
        Ok(out)
    }

    /// Tensor `i` within an arena's contents, or an error if there is no tensor `i` or `data`
    /// is shorter than the arena.
    pub fn tensor<'a>(&self, data: &'a [f32], i: usize) -> Result<&'a [f32]> {
        let r = self.range(i)?;
        data.get(r.start as usize..r.end as usize).ok_or_else(|| {
            Error::InvalidOptions(format!(
                "arena contents of {} elements do not hold tensor {i} at {r:?}",
                data.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_start_aligned_and_do_not_overlap() {
        let a = ArenaLayout::new(&[1, 3, 64, 65, 1757], 256).unwrap();
        assert_eq!(a.range(0).unwrap(), 0..1);
        assert_eq!(a.range(1).unwrap(), 64..67);
        assert_eq!(a.range(2).unwrap(), 128..192);
        assert_eq!(a.range(3).unwrap(), 192..257);
        assert_eq!(a.range(4).unwrap(), 320..2077);
        assert_eq!(a.len(), 2080);
        assert_eq!(a.byte_range(1).unwrap(), 256..268);
        let packed = a
            .pack(&[&[1.0], &[2.0; 3], &[3.0; 64], &[4.0; 65], &[5.0; 1757]])
            .unwrap();
        assert_eq!(a.tensor(&packed, 3).unwrap(), &[4.0; 65][..]);
        assert_eq!(packed[1..64], [0.0; 63]);
        assert!(ArenaLayout::new(&[3, 0], 256).is_err());
        assert!(ArenaLayout::new(&[], 256).is_err());
        assert!(ArenaLayout::new(&[3], 6).is_err());
        assert!(a.pack(&[&[1.0]]).is_err());
        let e = a.range(5).unwrap_err();
        assert!(e.to_string().contains("tensor 5"), "{e}");
        assert!(a.byte_range(9).is_err());
        assert!(a.tensor(&packed[..100], 4).is_err());
        assert!(ArenaLayout::new(&[u64::MAX - 1, 5], 256).is_err());
        assert!(ArenaLayout::new(&[u64::MAX / 2], 4).is_err());
    }
}
