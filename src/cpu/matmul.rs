//! The CPU reference's matrix multiply: cache-blocked, multithreaded, and summed as
//! `shaders/matmul.wgsl` sums (one fma chain per result over k in ascending order, then
//! `fma(beta, addend, alpha · sum)`), so any thread count gives the same bits.
//!
//! Blocking follows the BLIS layout: the right operand is packed once into strips of 16
//! columns; each thread takes whole rows of the result, packs 96 of them at a time into panels
//! of 6 rows per 384 of k, and a register-blocked 6 × 16 kernel runs over every (panel, strip)
//! pair with the strip hot in L1 and the panels in L2. On x86-64 the kernel
//! is compiled for AVX2 and FMA too and picked at run time; elsewhere, and without those, the
//! same code runs with `f32::mul_add`, so every machine computes the same values.

/// Rows of the register block.
const MR: usize = 6;
/// Columns of the register block (two AVX vectors).
const NR: usize = 16;
/// The depth of k packed at a time.
const KC: usize = 384;
/// Rows packed at a time (a multiple of [`MR`]).
const MC: usize = 96;

/// One operand of [`matmul`]: its values, row-major, and whether the product reads its
/// transpose (the left one then stored `k × m`, the right one `n × k`).
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// The stored matrix, row-major.
    pub data: &'a [f32],
    /// Whether the product uses its transpose.
    pub trans: bool,
}

impl<'a> Operand<'a> {
    /// `data` as it is stored.
    pub fn plain(data: &'a [f32]) -> Self {
        Self { data, trans: false }
    }

    /// The transpose of `data`.
    pub fn transposed(data: &'a [f32]) -> Self {
        Self { data, trans: true }
    }
}

/// The shape and epilogue of one [`matmul`]: `out (m × n) = alpha · op(lhs) (m × k) ·
/// op(rhs) (k × n) + beta · addend` (no addend read when `beta` is 0).
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the addend.
    pub beta: f32,
}

/// `out = alpha · op(lhs) · op(rhs) + beta · addend` on up to `threads` threads.
///
/// # Panics
///
/// If an operand, the addend (when `beta` is not 0) or `out` is shorter than its shape.
pub fn matmul(
    g: Gemm,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    addend: &[f32],
    out: &mut [f32],
    threads: usize,
) {
    let Gemm { m, n, k, .. } = g;
    assert!(lhs.data.len() >= m * k && rhs.data.len() >= k * n && out.len() >= m * n);
    assert!(g.beta == 0.0 || addend.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: the epilogue of zeros.
        for (i, v) in out[..m * n].iter_mut().enumerate() {
            *v = if g.beta != 0.0 {
                g.beta.mul_add(addend[i], g.alpha * 0.0)
            } else {
                g.alpha * 0.0
            };
        }
        return;
    }
    let packed = pack_rhs(rhs, k, n, threads);
    let out = &mut out[..m * n];
    // Whole panels per thread, and no thread without rows.
    let per_thread = m.div_ceil(threads.max(1)).div_ceil(MR) * MR;
    if per_thread >= m {
        rows(g, lhs, &packed, addend, out, 0);
        return;
    }
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per_thread * n).enumerate() {
            let packed = &packed;
            scope.spawn(move || rows(g, lhs, packed, addend, chunk, t * per_thread));
        }
    });
}

/// op(rhs) in strips of [`NR`] columns, zero-padded: strip `s` holds `k` rows of `NR` values
/// from `(s · k) · NR` on; packed on up to `threads` threads, whole strips each.
fn pack_rhs(rhs: Operand<'_>, k: usize, n: usize, threads: usize) -> Vec<f32> {
    let strips = n.div_ceil(NR);
    let mut packed = vec![0.0; strips * k * NR];
    let per_thread = strips.div_ceil(threads.max(1)).max(1);
    if per_thread >= strips || k * n < 1 << 16 {
        pack_strips(rhs, k, n, 0, &mut packed);
        return packed;
    }
    std::thread::scope(|scope| {
        for (t, chunk) in packed.chunks_mut(per_thread * k * NR).enumerate() {
            scope.spawn(move || pack_strips(rhs, k, n, t * per_thread, chunk));
        }
    });
    packed
}

/// Strips `first..` of op(rhs) into `packed` (whole strips).
fn pack_strips(rhs: Operand<'_>, k: usize, n: usize, first: usize, packed: &mut [f32]) {
    for (s, strip) in packed.chunks_exact_mut(k * NR).enumerate() {
        let s = first + s;
        for (kk, row) in strip.chunks_exact_mut(NR).enumerate() {
            for (j, v) in row
                .iter_mut()
                .enumerate()
                .take(n.saturating_sub(s * NR).min(NR))
            {
                let col = s * NR + j;
                *v = if rhs.trans {
                    rhs.data[col * k + kk]
                } else {
                    rhs.data[kk * n + col]
                };
            }
        }
    }
}

/// Rows `first..first + out.len() / n` of the result into `out`.
fn rows(g: Gemm, lhs: Operand<'_>, packed: &[f32], addend: &[f32], out: &mut [f32], first: usize) {
    let Gemm { m, n, k, .. } = g;
    let count = out.len() / n;
    let strips = n.div_ceil(NR);
    let mut panel = vec![0.0; MC * KC];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for r0 in (0..count).step_by(MC) {
            let mc = MC.min(count - r0);
            // Panels of MR rows, each kc deep: panel p, depth kk, row i at (p · kc + kk) · MR + i.
            let panels = mc.div_ceil(MR);
            for p in 0..panels {
                for kk in 0..kc {
                    for i in 0..MR {
                        let row = first + r0 + p * MR + i;
                        let v = if p * MR + i >= mc {
                            0.0
                        } else if lhs.trans {
                            lhs.data[(k0 + kk) * m + row]
                        } else {
                            lhs.data[row * k + k0 + kk]
                        };
                        panel[(p * kc + kk) * MR + i] = v;
                    }
                }
            }
            for s in 0..strips {
                let strip = &packed[(s * k + k0) * NR..(s * k + k0 + kc) * NR];
                let cols = NR.min(n - s * NR);
                for p in 0..panels {
                    let rows_here = MR.min(mc - p * MR);
                    let a = &panel[p * kc * MR..(p + 1) * kc * MR];
                    // The running sums: zero at the first k, else what earlier depths left.
                    let mut acc = [[0.0f32; NR]; MR];
                    if k0 > 0 {
                        for (i, acc_row) in acc.iter_mut().enumerate().take(rows_here) {
                            let at = (r0 + p * MR + i) * n + s * NR;
                            copy_row(acc_row, &out[at..at + cols]);
                        }
                    }
                    kernel(a, strip, &mut acc);
                    for (i, acc_row) in acc.iter().enumerate().take(rows_here) {
                        let at = (r0 + p * MR + i) * n + s * NR;
                        copy_row(&mut out[at..at + cols], acc_row);
                    }
                }
            }
        }
    }
    // The epilogue, once every depth is summed.
    for (i, row) in out.chunks_exact_mut(n).enumerate() {
        let at = (first + i) * n;
        for (j, v) in row.iter_mut().enumerate() {
            let scaled = g.alpha * *v;
            *v = if g.beta != 0.0 {
                g.beta.mul_add(addend[at + j], scaled)
            } else {
                scaled
            };
        }
    }
}

/// Copies `min(dst.len(), src.len())` values: a whole row of the register block as one
/// fixed-size move (no call to `memcpy`), an edge row value by value.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    match (
        <&mut [f32; NR]>::try_from(&mut *dst),
        <&[f32; NR]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
    }
}

/// `acc += a · b` over one panel (`kc × MR`, depth-major) and one strip (`kc × NR`).
fn kernel(a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has both features, checked just above.
        unsafe { kernel_avx2(a, b, acc) };
        return;
    }
    kernel_body(a, b, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernel_avx2(a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    kernel_body(a, b, acc);
}

#[inline(always)]
fn kernel_body(a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    let mut sums = *acc;
    let (a, _) = a.as_chunks::<MR>();
    let (b, _) = b.as_chunks::<NR>();
    for (ap, bp) in a.iter().zip(b) {
        for i in 0..MR {
            let av = ap[i];
            for j in 0..NR {
                sums[i][j] = av.mul_add(bp[j], sums[i][j]);
            }
        }
    }
    *acc = sums;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain triple loop, summed in the same order.
    fn naive(g: Gemm, lhs: Operand<'_>, rhs: Operand<'_>, addend: &[f32]) -> Vec<f32> {
        let Gemm { m, n, k, .. } = g;
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f32;
                for kk in 0..k {
                    let l = if lhs.trans {
                        lhs.data[kk * m + i]
                    } else {
                        lhs.data[i * k + kk]
                    };
                    let r = if rhs.trans {
                        rhs.data[j * k + kk]
                    } else {
                        rhs.data[kk * n + j]
                    };
                    s = l.mul_add(r, s);
                }
                let scaled = g.alpha * s;
                out[i * n + j] = if g.beta != 0.0 {
                    g.beta.mul_add(addend[i * n + j], scaled)
                } else {
                    scaled
                };
            }
        }
        out
    }

    #[test]
    fn an_empty_inner_dimension_leaves_the_epilogue() {
        let g = Gemm {
            m: 2,
            n: 3,
            k: 0,
            alpha: 2.0,
            beta: 0.5,
        };
        let addend = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [f32::NAN; 6];
        matmul(
            g,
            Operand::plain(&[]),
            Operand::plain(&[]),
            &addend,
            &mut out,
            2,
        );
        assert_eq!(out, [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn blocked_equals_the_triple_loop_bit_for_bit_on_any_threads() {
        let mut rng = crate::rng::SplitMix(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 2),
            (7, 130, 300),
            (97, 33, 513),
            (13, 17, 257),
        ] {
            let values = |len: usize, rng: &mut crate::rng::SplitMix| -> Vec<f32> {
                (0..len).map(|_| rng.normal() as f32).collect()
            };
            let (l, r, d) = (
                values(m * k, &mut rng),
                values(k * n, &mut rng),
                values(m * n, &mut rng),
            );
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let g = Gemm {
                    m,
                    n,
                    k,
                    alpha: 0.75,
                    beta: -1.5,
                };
                let lhs = Operand {
                    data: &l,
                    trans: ta,
                };
                let rhs = Operand {
                    data: &r,
                    trans: tb,
                };
                let want = naive(g, lhs, rhs, &d);
                for threads in [1, 2, 3] {
                    let mut out = vec![f32::NAN; m * n];
                    matmul(g, lhs, rhs, &d, &mut out, threads);
                    let same = out
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{m}x{n}x{k} trans {ta} {tb} on {threads} threads");
                }
            }
        }
    }
}
