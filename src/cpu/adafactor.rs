use crate::abi::uniforms::AdafactorScalars;
use crate::cpu::torch_lerp;

/// torch.linalg.vector_norm(g, dim)² / n from the sum of squares (summed in f64 here): the
/// root is taken and squared in f32, as torch does; `mean_square` in `shaders/adafactor.wgsl`.
fn mean_square(sum: f64, n: usize) -> f32 {
    let norm = (sum as f32).sqrt();
    norm * norm / n as f32
}

/// One Adafactor step over one whole tensor; mirrors `shaders/adafactor.wgsl` pass by pass
/// (`rows`, `cols`, `stats`, `norms`, the reduction, `main`), with every sum in f64.
///
/// The tensor is factored when `row_var` and `col_var` are not empty: B matrices of R × C, with
/// `row_var` holding B·R values and `col_var` B·C, so R = len / (B·C), C = len / (B·R) and B
/// follow from the three lengths. Otherwise `variance` holds one value per element.
pub fn adafactor(
    s: &AdafactorScalars,
    maximize: bool,
    param: &mut [f32],
    grad: &[f32],
    [row_var, col_var, variance]: [&mut [f32]; 3],
) {
    let n = param.len();
    let grad_at = |i: usize| if maximize { -grad[i] } else { grad[i] };
    // The update's 1 / √max(v̂, eps1²) of element e.
    let scales: Box<dyn Fn(usize) -> f32> = if row_var.is_empty() {
        for (i, v) in variance.iter_mut().enumerate() {
            let g = grad_at(i);
            *v = torch_lerp(*v, g * g, s.weight);
        }
        let variance = &*variance;
        Box::new(move |e| 1.0 / variance[e].max(s.eps1_sq).sqrt())
    } else {
        let (rows, cols) = (n / col_var.len(), n / row_var.len());
        let batches = row_var.len() / rows;
        for (row, v) in row_var.iter_mut().enumerate() {
            let sum: f64 = (0..cols)
                .map(|k| f64::from(grad_at(row * cols + k)).powi(2))
                .sum();
            *v = torch_lerp(*v, mean_square(sum, cols), s.weight);
        }
        for (col, v) in col_var.iter_mut().enumerate() {
            let first = (col / cols) * rows * cols + col % cols;
            let sum: f64 = (0..rows)
                .map(|k| f64::from(grad_at(first + k * cols)).powi(2))
                .sum();
            *v = torch_lerp(*v, mean_square(sum, rows), s.weight);
        }
        let means: Vec<f32> = (0..batches)
            .map(|b| {
                let sum: f64 = row_var[b * rows..(b + 1) * rows]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum();
                ((sum as f32) / rows as f32).max(s.eps1)
            })
            .collect();
        let (row_var, col_var) = (&*row_var, &*col_var);
        Box::new(move |e| {
            let b = e / (rows * cols);
            let v = (row_var[e / cols] * col_var[b * cols + e % cols]) / means[b];
            1.0 / v.max(s.eps1_sq).sqrt()
        })
    };
    let (mut p2, mut u2) = (0.0f64, 0.0f64);
    for (e, &p) in param.iter().enumerate() {
        let u = grad_at(e) * scales(e);
        p2 += f64::from(p) * f64::from(p);
        u2 += f64::from(u) * f64::from(u);
    }
    let root_n = (n as f64).sqrt() as f32;
    let (param_norm, update_norm) = ((p2 as f32).sqrt(), (u2 as f32).sqrt());
    let alpha = s.eps2.max(param_norm / root_n) * s.rho;
    let scale = -alpha / 1.0f32.max(update_norm / (root_n * s.d));
    for (e, p) in param.iter_mut().enumerate() {
        *p = *p * s.decay + scale * (grad_at(e) * scales(e));
    }
}
