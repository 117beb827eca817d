use crate::abi::uniforms::MuonScalars;
use crate::cpu::matmul::{Gemm, Operand, matmul};
use crate::cpu::torch_lerp;
use crate::optim::NewtonSchulz;

/// One Muon step over one whole `rows × cols` matrix on up to `threads` threads; mirrors
/// `shaders/muon.wgsl` pass by pass, with the iteration's multiplies as `shaders/matmul.wgsl`
/// sums them ([`newton_schulz`]). `ratios` are the matrix's rate factors, `[original,
/// match_rms_adamw]`.
///
/// The norm is summed in f64 where the kernel sums f32 partials per workgroup, and the
/// division and norm may round differently on a GPU: CPU and GPU agree within f32 tolerance,
/// not bit for bit.
///
/// # Panics
///
/// If `param`, `grad` or `momentum_buffer` holds fewer than `rows · cols` values.
#[allow(clippy::too_many_arguments)]
pub fn muon(
    s: &MuonScalars,
    nesterov: bool,
    ns: NewtonSchulz,
    [rows, cols]: [usize; 2],
    ratios: [f32; 2],
    threads: usize,
    param: &mut [f32],
    grad: &[f32],
    momentum_buffer: &mut [f32],
) {
    let len = rows * cols;
    let (param, grad, momentum_buffer) =
        (&mut param[..len], &grad[..len], &mut momentum_buffer[..len]);
    let mut update = Vec::with_capacity(len);
    let mut sum = 0.0f64;
    for (b, &g) in momentum_buffer.iter_mut().zip(grad) {
        *b = torch_lerp(*b, g, s.one_minus_momentum);
        let u = if nesterov {
            torch_lerp(g, *b, s.momentum)
        } else {
            *b
        };
        sum += f64::from(u * u);
        update.push(u);
    }
    let norm = (sum.sqrt() as f32).max(s.eps);
    for u in &mut update {
        *u /= norm;
    }
    let o = newton_schulz(update, [rows, cols], ns, threads);
    let ratio = if s.match_rms > 0.5 {
        ratios[1]
    } else {
        ratios[0]
    };
    let neg_adjusted = -(s.lr * ratio);
    for (p, &o) in param.iter_mut().zip(&o) {
        *p = *p * s.decay + neg_adjusted * o;
    }
}

/// `ns.steps` quintic Newton–Schulz iterations on the `rows × cols` matrix `x` (already
/// normalized), as torch's `_zeropower_via_newtonschulz` with f32 in place of bf16:
/// `A = X Xᵀ; B = b·A + c·A·A; X ← a·X + B·X`. A tall matrix keeps its layout and is iterated
/// as its transpose by transposed multiplies (`A = Xᵀ X; X ← a·X + X·B`), as the GPU does.
pub fn newton_schulz(
    mut x: Vec<f32>,
    [rows, cols]: [usize; 2],
    ns: NewtonSchulz,
    threads: usize,
) -> Vec<f32> {
    let [a, b, c] = ns.coefficients;
    let tall = rows > cols;
    let (m, n) = (rows.min(cols), rows.max(cols));
    let mut next = vec![0.0; x.len()];
    let (mut gram, mut poly) = (vec![0.0; m * m], vec![0.0; m * m]);
    for _ in 0..ns.steps {
        let g = Gemm {
            m,
            n: m,
            k: n,
            alpha: 1.0,
            beta: 0.0,
        };
        let (l, r) = if tall {
            (Operand::transposed(&x), Operand::plain(&x))
        } else {
            (Operand::plain(&x), Operand::transposed(&x))
        };
        matmul(g, l, r, &[], &mut gram, threads);
        let g = Gemm {
            m,
            n: m,
            k: m,
            alpha: c,
            beta: b,
        };
        matmul(
            g,
            Operand::plain(&gram),
            Operand::plain(&gram),
            &gram,
            &mut poly,
            threads,
        );
        if tall {
            let g = Gemm {
                m: n,
                n: m,
                k: m,
                alpha: 1.0,
                beta: a,
            };
            matmul(
                g,
                Operand::plain(&x),
                Operand::plain(&poly),
                &x,
                &mut next,
                threads,
            );
        } else {
            let g = Gemm {
                m,
                n,
                k: m,
                alpha: 1.0,
                beta: a,
            };
            matmul(
                g,
                Operand::plain(&poly),
                Operand::plain(&x),
                &x,
                &mut next,
                threads,
            );
        }
        std::mem::swap(&mut x, &mut next);
    }
    x
}
