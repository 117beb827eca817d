//! `wgpu-optim bench`: argument parsing and the report.

use std::sync::atomic::{AtomicU64, Ordering};

use wgpu_optim::tooling::bench::{self, BenchOptions, BenchResult, DEFAULT_VARIANTS, parse_size};
use wgpu_optim::{Dtype, GpuContext, Precision, Quant, Result};

/// Counts heap allocations, so the benchmark can report those one optimizer step makes.
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every operation to the system allocator unchanged; only counts calls.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    Gpu,
    Cpu,
    Both,
}

/// Options of `wgpu-optim bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Optimizer variant, or `all` (sgd, sgd-momentum, adam, adamw, rmsprop, adagrad, radam).
    /// Also: adamw-amsgrad, rmsprop-centered.
    #[arg(long, default_value = "all")]
    optimizer: String,
    /// Parameter counts, comma-separated, with K/M/G suffixes (decimal).
    #[arg(long, default_value = "1M,10M", value_delimiter = ',')]
    params: Vec<String>,
    /// Timed steps per measurement (after warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    steps: u32,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Which backends to measure (`both` measures the GPU alone with 16-bit dtypes, which the
    /// CPU reference holds as f32).
    #[arg(long, value_enum, default_value = "both")]
    backend: BenchBackend,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Compare the GPU result with the CPU reference after timing.
    #[arg(long)]
    verify: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Split the parameters into this many tensors and also measure them in one arena and as
    /// separate buffers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    tensors: u32,
    /// Step with the scalar (one f32 per invocation) kernels instead of the vec4 ones.
    #[arg(long)]
    scalar_kernels: bool,
    /// Clip gradients to this global norm during each GPU step.
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Turn loss scaling (GradScaler's defaults) on during each GPU step.
    #[arg(long)]
    loss_scale: bool,
    /// Measure host cost with gradients that move: alternate between two sets of gradient
    /// buffers through `step_with` (allocations then show a warm loop over a pool).
    #[arg(long)]
    moving_grads: bool,
    /// The parameters' dtype on the GPU: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    param_dtype: Dtype,
    /// The gradients' dtype on the GPU: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    grad_dtype: Dtype,
    /// The optimizer state's dtype on the GPU: f32, bf16, f16, or q8 and q4 (torchao's 8- and
    /// 4-bit moments, for Adam, AdamW, Lion and SGD; on one flat tensor of whole blocks).
    #[arg(long, default_value = "f32", value_parser = parse_state_dtype)]
    state_dtype: (Dtype, Option<Quant>),
    /// Register the parameters as one tensor of this shape, e.g. 4096x4096 (Adafactor factors
    /// its last two dimensions); replaces --params.
    #[arg(long)]
    shape: Option<String>,
    /// With `--optimizer muon`: the matrix sets, `RxC` or `Nx(RxC+RxC...)`, comma-separated
    /// (default: 1024x1024, 4096x1024 and 12x(768x3072+3072x768)).
    #[arg(long, value_delimiter = ',')]
    matrices: Vec<String>,
    /// With `--optimizer muon`: the matrix multiply's tiles, `TMxTNxTKxRMxRN` (default: those
    /// tuned on lavapipe).
    #[arg(long)]
    tiles: Option<String>,
}

fn row(r: &BenchResult) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    format!(
        "{:<16} {:>10} {:<4} {:<8} {:>5} {:>4} {:>9.3} {:>8.2} {:>6.2} {:>9.3} {:>8.3} {:>9.3} {:>7.3} {:>8.2} {:>8} {:>9} {:>8} {:>7} {:>10} {}",
        r.optimizer,
        r.params,
        r.backend,
        format!("{:?}", r.layout).to_lowercase(),
        r.tensors,
        r.dispatches_per_step,
        r.ms_per_step,
        r.gb_per_s,
        r.bytes_per_param,
        r.stream_ms,
        r.roofline,
        r.scalar_stream_ms,
        r.scalar_roofline,
        r.copy_gb_per_s,
        opt(r.host_us_per_step, 1),
        opt(r.record_us_per_step, 1),
        opt(r.wgpu_record_us_per_step, 1),
        match (r.allocs_per_step, r.wgpu_allocs_per_step) {
            (Some(a), Some(w)) => format!("{a:.0}/{w:.0}"),
            _ => "-".to_string(),
        },
        r.max_abs_err_vs_cpu
            .map_or("-".to_string(), |e| format!("{e:.2e}")),
        r.timing,
    )
}

/// Parses a shape such as `4096x1024` (dimensions separated by `x`, each a positive count).
fn parse_shape(s: &str) -> Result<Vec<usize>> {
    let bad = || {
        wgpu_optim::Error::InvalidOptions(format!(
            "--shape {s:?}: each dimension must be a positive integer, their product below 2^64, as in 4096x1024"
        ))
    };
    let dims = s
        .split('x')
        .map(|d| match d.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<usize>>>()?;
    dims.iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(bad)?;
    Ok(dims)
}

/// Runs the benchmark and prints the table or the JSON.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.optimizer == "muon" {
        let backend = match args.backend {
            BenchBackend::Gpu => (true, false),
            BenchBackend::Cpu => (false, true),
            BenchBackend::Both => (true, true),
        };
        return crate::muon_cli::run(&crate::muon_cli::MuonArgs {
            matrices: &args.matrices,
            tiles: args.tiles.as_deref(),
            backend,
            steps: args.steps as usize,
            warmup: args.warmup as usize,
            threads: args.threads,
            json: args.json,
        });
    }
    let variants: Vec<String> = if args.optimizer == "all" {
        DEFAULT_VARIANTS.iter().map(|s| s.to_string()).collect()
    } else {
        args.optimizer
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    for v in &variants {
        bench::variant(v)?;
        if v == "muon" {
            return Err(wgpu_optim::Error::InvalidOptions(
                "muon is measured alone (`--optimizer muon`), in GFLOP/s over matrix sets".into(),
            ));
        }
    }
    let shape = args.shape.as_deref().map(parse_shape).transpose()?;
    let sizes = match &shape {
        Some(s) => vec![s.iter().map(|&d| d as u64).product()],
        None => args
            .params
            .iter()
            .map(|s| parse_size(s))
            .collect::<Result<Vec<u64>>>()?,
    };
    let gpu = matches!(args.backend, BenchBackend::Gpu | BenchBackend::Both);
    // The CPU reference holds 16-bit values as f32: with other dtypes, `both` measures the GPU
    // alone (and `cpu` says why it cannot).
    let f32_only = args.param_dtype == Dtype::F32
        && args.grad_dtype == Dtype::F32
        && args.state_dtype == (Dtype::F32, None);
    let cpu = match args.backend {
        BenchBackend::Cpu => true,
        BenchBackend::Both => f32_only,
        BenchBackend::Gpu => false,
    };
    let ctx = if gpu { Some(GpuContext::new()?) } else { None };
    if let Some(ctx) = &ctx {
        for &n in &sizes {
            bench::check_fits(ctx, n)?;
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let count: &dyn Fn() -> u64 = &allocations;
    let mut opts = BenchOptions {
        steps: args.steps as usize,
        warmup: args.warmup as usize,
        verify: args.verify,
        threads,
        tensors: args.tensors as usize,
        alloc_count: Some(count),
        stream: None,
        scalar_kernels: args.scalar_kernels,
        max_grad_norm: args.clip_norm,
        loss_scale: args.loss_scale,
        moving_grads: args.moving_grads,
        shape,
        precision: Precision {
            quant: args.state_dtype.1,
            ..Precision::new(args.param_dtype, args.grad_dtype, args.state_dtype.0)
        },
    };
    if !args.json {
        if let Some(ctx) = &ctx {
            let info = ctx.adapter.get_info();
            println!(
                "adapter: {} ({:?}, {:?})",
                info.name, info.backend, info.device_type
            );
        }
        println!(
            "cpu: {threads} threads; {} timed steps after {} warm-up; median per step",
            args.steps, args.warmup
        );
        println!(
            "{:<16} {:>10} {:<4} {:<8} {:>5} {:>4} {:>9} {:>8} {:>6} {:>9} {:>8} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} timing",
            "optimizer",
            "params",
            "on",
            "layout",
            "tens",
            "disp",
            "ms/step",
            "GB/s",
            "B/p",
            "stream_ms",
            "roofline",
            "scalar_ms",
            "sc_roof",
            "copyGB/s",
            "host_us",
            "record_us",
            "wgpu_rec",
            "allocs",
            "err_vs_cpu"
        );
    }
    let mut results = Vec::new();
    for &n in &sizes {
        // The vec4 streaming kernel's shape, swept once per size (with two states, AdamW's
        // bytes, in the dtypes measured) and used for every variant at that size.
        if let Some(ctx) = &ctx {
            let init: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
            let buffers = bench::StreamBuffers::new(ctx, 2, &init, opts.precision);
            let (best, timed) = bench::sweep(ctx, &buffers, 3)?;
            if !args.json {
                let all: Vec<String> = timed
                    .iter()
                    .map(|(s, ms)| format!("{}/{}: {ms:.3}", s.workgroup_size, s.per_invocation))
                    .collect();
                println!(
                    "stream sweep at {n} (wg/vpi: ms): {}; chosen: {best}",
                    all.join(", ")
                );
            }
            opts.stream = Some(best);
        }
        for v in &variants {
            let mut here = Vec::new();
            if let Some(ctx) = &ctx {
                here.extend(bench::gpu(ctx, v, n, &opts)?);
            }
            if cpu {
                here.push(bench::cpu(v, n, &opts)?);
            }
            for r in here {
                if !args.json {
                    println!("{}", row(&r));
                }
                results.push(r);
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results)
                .map_err(|e| wgpu_optim::Error::InvalidOptions(e.to_string()))?
        );
    } else {
        println!(
            "roofline = stream_ms / ms_per_step, the same-bytes vec4 streaming kernel at the swept shape, timed \
             the same way on the same adapter in this run; sc_roof = the same against the scalar (one f32 per \
             invocation) stream, scalar_ms;\ncopyGB/s counts bytes read + written by a buffer copy (wall clock); \
             host_us = record + submit one step without waiting; record_us = record one step, wgpu_rec = the \
             same wgpu calls made directly (medians of a warm loop alternating the two);\nallocs = heap \
             allocations inside GpuOptimizer::step / those wgpu makes for the same calls without this crate"
        );
    }
    Ok(())
}

/// A dtype named on the command line.
fn parse_dtype(s: &str) -> std::result::Result<Dtype, String> {
    Dtype::parse(s).ok_or_else(|| format!("unknown dtype {s:?}: expected f32, bf16 or f16"))
}

/// A state dtype: a [`Dtype`], or `q8`/`q4` (quantized, f32 where a tensor is not).
fn parse_state_dtype(s: &str) -> std::result::Result<(Dtype, Option<Quant>), String> {
    match (Dtype::parse(s), Quant::parse(s)) {
        (Some(d), _) => Ok((d, None)),
        (None, Some(q)) => Ok((Dtype::F32, Some(q))),
        (None, None) => Err(format!(
            "unknown state dtype {s:?}: expected f32, bf16, f16, q8 or q4"
        )),
    }
}
