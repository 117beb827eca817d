//! The CPU measurement: the CPU reference on every thread, against a same-bytes streaming
//! loop and a copy on the same threads.

use std::time::Instant;

use super::{BenchOptions, BenchResult, Layout, median, random, variant, with_config};
use crate::cpu_optimizer::CpuOptimizer;
use crate::error::{Error, Result};
use crate::optim::Algorithm;
use crate::precision::Dtype;

/// Bytes of memory the system can still hand out, from `/proc/meminfo` where it exists.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn time_cpu(steps: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..steps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// The CPU streaming loop: one pass adding `g` to the parameter and to each state, with the
/// state count fixed per arm so each loop is a plain zip the compiler vectorizes.
fn stream_chunk(p: &mut [f32], g: &[f32], states: &mut [&mut [f32]]) {
    match states {
        [] => p.iter_mut().zip(g).for_each(|(p, g)| *p += g),
        [a] => {
            for ((p, a), g) in p.iter_mut().zip(a.iter_mut()).zip(g) {
                *p += g;
                *a += g;
            }
        }
        [a, b] => {
            for (((p, a), b), g) in p.iter_mut().zip(a.iter_mut()).zip(b.iter_mut()).zip(g) {
                *p += g;
                *a += g;
                *b += g;
            }
        }
        [a, b, c, ..] => {
            for ((((p, a), b), c), g) in p
                .iter_mut()
                .zip(a.iter_mut())
                .zip(b.iter_mut())
                .zip(c.iter_mut())
                .zip(g)
            {
                *p += g;
                *a += g;
                *b += g;
                *c += g;
            }
        }
    }
}

fn cpu_typed<O: Algorithm>(
    name: &str,
    config: &O,
    params: u64,
    opts: &BenchOptions<'_>,
) -> Result<BenchResult> {
    if !opts.precision.is_f32() {
        return Err(Error::InvalidOptions(format!(
            "the CPU reference holds 16-bit values as f32: {} is measured on the GPU only",
            opts.precision
        )));
    }
    let shape = opts.shape_of(params)?;
    let (moved, held) = config.step_bytes(&shape);
    let bytes_per_param = moved.div_ceil(params.max(1));
    // Optimizer buffers, then the streaming kernel's copies of them, one set at a time.
    let needed = params.saturating_mul(bytes_per_param / 2 + 8);
    if let Some(available) = available_memory()
        && needed > available
    {
        return Err(Error::InvalidOptions(format!(
            "{params} parameters need about {needed} bytes of host memory, {available} are available"
        )));
    }
    let n = params as usize;
    let threads = opts.threads.max(1);
    let mut param = random(n, 1);
    let grad = random(n, 2);
    let mut opt = CpuOptimizer::new(config.clone())?;
    opt.set_threads(threads);
    opt.register_with_shape(opt.default_group(), &shape)?;
    for _ in 0..opts.warmup {
        opt.step(&mut [&mut param], &[&grad])?;
    }
    let mut failed = None;
    let mut ms = time_cpu(opts.steps, || {
        if let Err(e) = opt.step(&mut [&mut param], &[&grad]) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    drop(opt);

    let states = (bytes_per_param.saturating_sub(12) / 8) as usize;
    let mut state: Vec<Vec<f32>> = (0..states).map(|_| grad.clone()).collect();
    let chunk = n.div_ceil(threads);
    let mut stream = || {
        std::thread::scope(|scope| {
            let mut state_chunks: Vec<_> = state.iter_mut().map(|s| s.chunks_mut(chunk)).collect();
            for (p, g) in param.chunks_mut(chunk).zip(grad.chunks(chunk)) {
                let mut mine: Vec<&mut [f32]> =
                    state_chunks.iter_mut().filter_map(Iterator::next).collect();
                scope.spawn(move || stream_chunk(p, g, &mut mine));
            }
        });
    };
    stream();
    let mut stream_ms = time_cpu(opts.steps, &mut stream);
    let mut dst = vec![0.0f32; n];
    let mut copy_ms = time_cpu(opts.steps.clamp(1, 5), || {
        std::thread::scope(|scope| {
            for (d, s) in dst.chunks_mut(chunk).zip(grad.chunks(chunk)) {
                scope.spawn(move || d.copy_from_slice(s));
            }
        })
    });

    let ms_per_step = median(&mut ms);
    let stream_ms = median(&mut stream_ms);
    Ok(BenchResult {
        optimizer: name.to_string(),
        params,
        layout: Layout::Flat,
        tensors: 1,
        dispatches_per_step: 0,
        state_bytes_per_param: held as f64 / params as f64,
        shape,
        param_dtype: Dtype::F32,
        grad_dtype: Dtype::F32,
        state_dtype: Dtype::F32.name().to_string(),
        backend: "cpu",
        adapter: format!("cpu ({threads} threads)"),
        timing: "wall",
        steps: opts.steps,
        ms_per_step,
        bytes_per_param: moved as f64 / params.max(1) as f64,
        gb_per_s: moved as f64 / ms_per_step / 1e6,
        stream_ms,
        stream_shape: "cpu loop".into(),
        roofline: stream_ms / ms_per_step,
        scalar_stream_ms: stream_ms,
        scalar_roofline: stream_ms / ms_per_step,
        kernels: None,
        grad_stage: "none",
        moving_grads: false,
        copy_gb_per_s: 8.0 * params as f64 / median(&mut copy_ms) / 1e6,
        host_us_per_step: None,
        record_us_per_step: None,
        wgpu_record_us_per_step: None,
        allocs_per_step: None,
        wgpu_allocs_per_step: None,
        max_abs_err_vs_cpu: None,
    })
}

/// Benchmarks variant `name` at `params` parameters on the CPU reference, spread over
/// `opts.threads` threads.
pub fn cpu(name: &str, params: u64, opts: &BenchOptions<'_>) -> Result<BenchResult> {
    opts.validate()?;
    let config = variant(name)?;
    with_config!(&config, c => cpu_typed(name, c, params, opts))
}
