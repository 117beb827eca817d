/// One micro-batch of gradient accumulation over one parameter, as `shaders/accumulate.wgsl`:
/// `mode` 0 starts the running sum with `grad / k`, 1 adds `grad / k` to it, 2 (the last of the
/// `k`) adds it too, leaving in `sum` the gradient the step reads (the kernel writes that one
/// into the caller's gradient buffer).
///
/// # Panics
///
/// If `sum` is shorter than `grad`.
pub fn accumulate(mode: u32, k: u32, grad: &[f32], sum: &mut [f32]) {
    let k = k as f32;
    for (i, &g) in grad.iter().enumerate() {
        let g = g / k;
        sum[i] = if mode == 0 { g } else { sum[i] + g };
    }
}
