//! The benchmark harness behind `wgpu-optim bench` and `cargo bench`.
//!
//! An optimizer step is memory-bound, so each measurement is set against a roofline taken in the
//! same run on the same adapter: a same-bytes streaming kernel (`shaders/stream.wgsl`) that reads
//! and writes exactly the buffers the step does, and the adapter's buffer-copy bandwidth.

use std::time::Instant;

use serde::Serialize;

use crate::arena::ArenaLayout;
use crate::context::GpuContext;
use crate::cpu_optimizer::CpuOptimizer;
use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::host::grad_stage::LossScale;
use crate::optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Algorithm, Asgd, Lamb, Lars, Lion, NAdam, RAdam,
    RmsProp, Rprop, Sgd,
};
use crate::rng::SplitMix;

mod roofline;

use roofline::{PassTimer, wait};
pub use roofline::{Stream, StreamBuffers, StreamShape, copy_bandwidth, sweep};

use crate::kernel::Width;

/// Every benchmark variant: an optimizer name, optionally with the option it turns on.
pub const VARIANTS: &[&str] = &[
    "sgd",
    "sgd-momentum",
    "adam",
    "adamw",
    "adamw-amsgrad",
    "adamax",
    "nadam",
    "rmsprop",
    "rmsprop-centered",
    "adagrad",
    "adadelta",
    "rprop",
    "asgd",
    "radam",
    "lion",
    "lamb",
    "lars",
];

/// The variants `--optimizer all` runs: each optimizer with PyTorch's default options, plus SGD
/// with momentum, the form SGD is trained with.
pub const DEFAULT_VARIANTS: &[&str] = &[
    "sgd",
    "sgd-momentum",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "rprop",
    "asgd",
    "radam",
    "lion",
    "lamb",
    "lars",
];

/// Any optimizer's configuration, for choosing one at run time.
#[derive(Debug, Clone)]
pub enum AnyConfig {
    /// [`Sgd`].
    Sgd(Sgd),
    /// [`Adam`].
    Adam(Adam),
    /// [`AdamW`].
    AdamW(AdamW),
    /// [`Adamax`].
    Adamax(Adamax),
    /// [`NAdam`].
    NAdam(NAdam),
    /// [`RmsProp`].
    RmsProp(RmsProp),
    /// [`Adagrad`].
    Adagrad(Adagrad),
    /// [`Adadelta`].
    Adadelta(Adadelta),
    /// [`Rprop`].
    Rprop(Rprop),
    /// [`Asgd`].
    Asgd(Asgd),
    /// [`RAdam`].
    RAdam(RAdam),
    /// [`Lion`].
    Lion(Lion),
    /// [`Lamb`].
    Lamb(Lamb),
    /// [`Lars`].
    Lars(Lars),
}

/// Calls a generic expression with the concrete configuration inside an [`AnyConfig`].
macro_rules! with_config {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            $crate::tooling::bench::AnyConfig::Sgd($c) => $body,
            $crate::tooling::bench::AnyConfig::Adam($c) => $body,
            $crate::tooling::bench::AnyConfig::AdamW($c) => $body,
            $crate::tooling::bench::AnyConfig::Adamax($c) => $body,
            $crate::tooling::bench::AnyConfig::NAdam($c) => $body,
            $crate::tooling::bench::AnyConfig::RmsProp($c) => $body,
            $crate::tooling::bench::AnyConfig::Adagrad($c) => $body,
            $crate::tooling::bench::AnyConfig::Adadelta($c) => $body,
            $crate::tooling::bench::AnyConfig::Rprop($c) => $body,
            $crate::tooling::bench::AnyConfig::Asgd($c) => $body,
            $crate::tooling::bench::AnyConfig::RAdam($c) => $body,
            $crate::tooling::bench::AnyConfig::Lion($c) => $body,
            $crate::tooling::bench::AnyConfig::Lamb($c) => $body,
            $crate::tooling::bench::AnyConfig::Lars($c) => $body,
        }
    };
}

pub(crate) use with_config;

/// The configuration of a benchmark variant (see [`VARIANTS`]).
pub fn variant(name: &str) -> Result<AnyConfig> {
    Ok(match name {
        "sgd" => AnyConfig::Sgd(Sgd::default()),
        "sgd-momentum" => AnyConfig::Sgd(Sgd {
            momentum: 0.9,
            ..Default::default()
        }),
        "adam" => AnyConfig::Adam(Adam::default()),
        "adamw" => AnyConfig::AdamW(AdamW::default()),
        "adamw-amsgrad" => AnyConfig::AdamW(AdamW {
            amsgrad: true,
            ..Default::default()
        }),
        "adamax" => AnyConfig::Adamax(Adamax::default()),
        "nadam" => AnyConfig::NAdam(NAdam::default()),
        "rmsprop" => AnyConfig::RmsProp(RmsProp::default()),
        "rmsprop-centered" => AnyConfig::RmsProp(RmsProp {
            centered: true,
            ..Default::default()
        }),
        "adagrad" => AnyConfig::Adagrad(Adagrad::default()),
        "adadelta" => AnyConfig::Adadelta(Adadelta::default()),
        "rprop" => AnyConfig::Rprop(Rprop::default()),
        "asgd" => AnyConfig::Asgd(Asgd::default()),
        "radam" => AnyConfig::RAdam(RAdam::default()),
        "lion" => AnyConfig::Lion(Lion::default()),
        "lamb" => AnyConfig::Lamb(Lamb::default()),
        "lars" => AnyConfig::Lars(Lars::default()),
        other => {
            return Err(Error::Unknown {
                kind: "benchmark optimizer",
                name: format!("{other} (one of {})", VARIANTS.join(", ")),
            });
        }
    })
}

impl AnyConfig {
    /// The same configuration with learning rate `lr`.
    pub fn with_lr(mut self, lr: f64) -> Self {
        with_config!(&mut self, c => c.lr = lr);
        self
    }

    /// Bytes one step moves per parameter with these options.
    pub fn bytes_per_param(&self) -> u64 {
        with_config!(self, c => c.bytes_per_param())
    }

    /// State buffers these options keep.
    pub fn states(&self) -> u32 {
        ((self.bytes_per_param() - 12) / 8) as u32
    }
}

/// Parses a parameter count such as `1M`, `10M`, `2.5K` or `1G` (decimal multiples).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let bad = || {
        Error::InvalidOptions(format!(
            "parameter count must be like 1M, 10M or 4096, got {s:?}"
        ))
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let n = v * mult;
    if !(n >= 1.0 && n.is_finite() && n.fract() == 0.0) {
        return Err(bad());
    }
    Ok(n as u64)
}

/// One measurement: an optimizer variant at one size on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The variant (see [`VARIANTS`]).
    pub optimizer: String,
    /// Parameters updated per step.
    pub params: u64,
    /// How the parameters are held.
    pub layout: Layout,
    /// Tensors the parameters are split into.
    pub tensors: usize,
    /// Compute dispatches one step records (0 on the CPU).
    pub dispatches_per_step: usize,
    /// Optimizer-state bytes kept per parameter (4 per state buffer).
    pub state_bytes_per_param: u64,
    /// `gpu` or `cpu`.
    pub backend: &'static str,
    /// The adapter (or CPU) measured.
    pub adapter: String,
    /// `gpu-timestamps` (GPU time between the pass's start and end) or `wall` (submit to done).
    pub timing: &'static str,
    /// Timed steps (after warm-up).
    pub steps: usize,
    /// Median time per step.
    pub ms_per_step: f64,
    /// Bytes per parameter a single fused pass must move (param r/w, grad r, each state r/w),
    /// the bytes the streaming kernel moves. LAMB and LARS need per-tensor norms before they
    /// can update, so they make two passes (norms, then update) and move more than this.
    pub bytes_per_param: u64,
    /// `bytes_per_param · params / ms_per_step`, in GB/s (10⁹ bytes).
    pub gb_per_s: f64,
    /// Median time of the same-bytes streaming kernel at its fastest shape (`stream_shape`),
    /// same timing method.
    pub stream_ms: f64,
    /// The streaming kernel's shape: `vec4` with the workgroup size and vectors per invocation
    /// the bench's sweep found fastest on this adapter.
    pub stream_shape: String,
    /// `stream_ms / ms_per_step`: 1.0 means the step runs as fast as the best streaming kernel
    /// this adapter runs moving the same bytes.
    pub roofline: f64,
    /// Median time of the scalar streaming kernel (one `f32` per invocation), the reference
    /// measurements were taken against before the kernels were vectorized.
    pub scalar_stream_ms: f64,
    /// `scalar_stream_ms / ms_per_step`.
    pub scalar_roofline: f64,
    /// The update kernels' element width: `vec4`, or `scalar` with `--scalar-kernels` (GPU
    /// only).
    pub kernels: Option<Width>,
    /// The gradient stage on during the step: `none`, `clip`, `scale` or `clip+scale` (GPU
    /// only; the CPU row steps without one).
    pub grad_stage: &'static str,
    /// Buffer-copy bandwidth (bytes read + written per second, GB/s), wall-clock timed.
    pub copy_gb_per_s: f64,
    /// Host time to record and submit one step, without waiting (GPU only). Software adapters
    /// such as lavapipe execute the work inside `queue.submit`, so there it includes the step.
    pub host_us_per_step: Option<f64>,
    /// Host time to record one step: creating the encoder, `GpuOptimizer::step` (which picks
    /// the step's scalars and records the dispatches) and finishing the encoder; the median
    /// over a warm loop that alternates it with `wgpu_record_us_per_step` (GPU only).
    pub record_us_per_step: Option<f64>,
    /// Host time for the same wgpu calls made directly: the same encoder, pass, pipelines,
    /// bind groups and dispatches, with none of this crate's code in between (GPU only).
    pub wgpu_record_us_per_step: Option<f64>,
    /// Heap allocations inside one `GpuOptimizer::step` call, when the caller counts them.
    pub allocs_per_step: Option<f64>,
    /// Heap allocations wgpu makes for a compute pass with one pipeline, one bind group and one
    /// dispatch, without this crate (a step also sets its scalars' bind group at a dynamic
    /// offset): the part of `allocs_per_step` that is wgpu's own.
    pub wgpu_allocs_per_step: Option<f64>,
    /// With `--verify`: max |GPU - CPU reference| over the parameter after the same steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs_err_vs_cpu: Option<f64>,
}

/// What to measure and how.
#[derive(Clone, Copy)]
pub struct BenchOptions<'a> {
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Compare the GPU result with the CPU reference afterwards.
    pub verify: bool,
    /// CPU threads (CPU backend and verification).
    pub threads: usize,
    /// Tensors to split the parameters into: with more than one, each GPU measurement is made
    /// for a flat buffer, an arena and separate buffers.
    pub tensors: usize,
    /// Returns the process's allocation count so far, if the binary counts allocations.
    pub alloc_count: Option<&'a dyn Fn() -> u64>,
    /// The vec4 streaming kernel's shape; `None` sweeps [`StreamShape::candidates`] for each
    /// measurement (see [`sweep`]).
    pub stream: Option<StreamShape>,
    /// Register the parameters with the scalar (`f32`) kernels instead of the vec4 ones.
    pub scalar_kernels: bool,
    /// Clip gradients to this global norm during the step.
    pub max_grad_norm: Option<f64>,
    /// Turn loss scaling (GradScaler's defaults) on during the step.
    pub loss_scale: bool,
}

impl BenchOptions<'_> {
    /// Checks that there is something to time: at least one timed step.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::InvalidOptions(
                "the benchmark needs at least 1 timed step, got --steps 0".into(),
            ));
        }
        Ok(())
    }
}

/// Steps measured for host cost and allocations.
const ALLOC_SAMPLES: usize = 16;

/// Steps of the warm recording loop (each alternated with the same calls made directly).
const RECORD_SAMPLES: usize = 200;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Random values in [-1, 1), deterministic.
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    (0..len).map(|_| rng.symmetric_f32()).collect()
}

/// Checks that a buffer of `params` f32 values fits this device's `max_buffer_size`, before
/// anything is allocated (buffers past one storage binding are stepped in windows).
pub fn check_fits(ctx: &GpuContext, params: u64) -> Result<()> {
    let size = params.saturating_mul(4);
    let limit = ctx.device.limits().max_buffer_size;
    if size > limit {
        return Err(Error::BufferTooLarge {
            which: "param",
            size,
            limit,
        });
    }
    Ok(())
}

/// How the benchmarked parameters are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One flat buffer.
    Flat,
    /// `tensors` tensors in one [`ArenaLayout`] buffer.
    Arena,
    /// `tensors` separately registered buffers.
    Separate,
}

/// Lengths of `tensors` tensors adding up to `params`.
fn split(params: u64, tensors: usize) -> Vec<u64> {
    let k = tensors as u64;
    (0..k)
        .map(|i| params / k + u64::from(i < params % k))
        .collect()
}

/// The benchmarked optimizer over `init` held in `layout`, and how to read the parameters
/// back as one flat vector.
struct Subject<O: Algorithm> {
    opt: GpuOptimizer<O>,
    params: Vec<wgpu::Buffer>,
    arena: Option<ArenaLayout>,
    _grads: Vec<wgpu::Buffer>,
}

impl<O: Algorithm> Subject<O> {
    fn new(
        ctx: &GpuContext,
        config: &O,
        layout: Layout,
        tensors: usize,
        init: &[f32],
        grads: &[f32],
        opts: &BenchOptions<'_>,
    ) -> Result<Self> {
        let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone())?;
        opt.set_scalar_only(opts.scalar_kernels);
        opt.set_max_grad_norm(opts.max_grad_norm)?;
        if opts.loss_scale {
            opt.set_loss_scale(Some(LossScale::default()))?;
        }
        let lens = split(init.len() as u64, tensors);
        let pieces = |data: &'_ [f32]| -> Vec<Vec<f32>> {
            let mut at = 0;
            lens.iter()
                .map(|&n| {
                    let piece = data[at..at + n as usize].to_vec();
                    at += n as usize;
                    piece
                })
                .collect()
        };
        let (params, grad_bufs, arena) = match layout {
            Layout::Flat => (
                vec![ctx.upload("param", init)],
                vec![ctx.upload("grad", grads)],
                None,
            ),
            Layout::Arena => {
                let arena = ArenaLayout::for_device(&ctx.device, &lens)?;
                let pack = |data| {
                    let owned = pieces(data);
                    let views: Vec<&[f32]> = owned.iter().map(Vec::as_slice).collect();
                    arena.pack(&views)
                };
                check_fits(ctx, arena.len())?;
                (
                    vec![ctx.upload("param", &pack(init)?)],
                    vec![ctx.upload("grad", &pack(grads)?)],
                    Some(arena),
                )
            }
            Layout::Separate => (
                pieces(init)
                    .iter()
                    .map(|p| ctx.upload("param", p))
                    .collect(),
                pieces(grads)
                    .iter()
                    .map(|g| ctx.upload("grad", g))
                    .collect(),
                None,
            ),
        };
        for (p, g) in params.iter().zip(&grad_bufs) {
            opt.register(opt.default_group(), p, g)?;
        }
        Ok(Self {
            opt,
            params,
            arena,
            _grads: grad_bufs,
        })
    }

    fn read_flat(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for p in &self.params {
            let data = ctx.read(p)?;
            match &self.arena {
                Some(a) => {
                    for i in 0..a.tensors() {
                        out.extend_from_slice(a.tensor(&data, i)?);
                    }
                }
                None => out.extend(data),
            }
        }
        Ok(out)
    }
}

fn gpu_typed<O: Algorithm>(
    ctx: &GpuContext,
    name: &str,
    config: &O,
    params: u64,
    layout: Layout,
    opts: &BenchOptions<'_>,
) -> Result<BenchResult> {
    check_fits(ctx, params)?;
    let n = params as usize;
    let tensors = if layout == Layout::Flat {
        1
    } else {
        opts.tensors.max(1)
    };
    let init = random(n, 1);
    let grads = random(n, 2);
    let subject = Subject::new(ctx, config, layout, tensors, &init, &grads, opts)?;
    let mut opt = subject.opt;
    let dispatches_per_step = opt.dispatches_per_step();

    let bytes_per_param = config.bytes_per_param();
    let buffers = StreamBuffers::new(ctx, ((bytes_per_param - 12) / 8) as u32, &init);
    let shape = match opts.stream {
        Some(shape) => shape,
        None => sweep(ctx, &buffers, 3)?.0,
    };
    let stream = Stream::new(ctx, &buffers, shape);
    let scalar_stream = Stream::new(ctx, &buffers, StreamShape::SCALAR);
    // Warm up, then alternate optimizer and streaming passes so all see the same conditions.
    for _ in 0..opts.warmup {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        stream.record(&mut encoder.begin_compute_pass(&Default::default()));
        scalar_stream.record(&mut encoder.begin_compute_pass(&Default::default()));
        ctx.queue.submit([encoder.finish()]);
        wait(ctx)?;
    }
    let timer = || PassTimer::new(ctx, opts.steps as u32);
    let (mut opt_timer, mut stream_timer, mut scalar_timer) = (timer(), timer(), timer());
    for _ in 0..opts.steps {
        opt_timer.time(ctx, |pass| opt.record(pass))?;
        stream_timer.time(ctx, |pass| stream.record(pass))?;
        scalar_timer.time(ctx, |pass| scalar_stream.record(pass))?;
    }
    let (mut ms, timing) = opt_timer.finish(ctx)?;
    let (mut stream_ms, _) = stream_timer.finish(ctx)?;
    let (mut scalar_stream_ms, _) = scalar_timer.finish(ctx)?;

    // What wgpu itself allocates for a compute pass with one pipeline, one bind group and one
    // dispatch, with none of this crate's code in between. (A step also sets its scalars' bind
    // group, at a dynamic offset.)
    let mut wgpu_allocs = 0u64;
    if let Some(count) = opts.alloc_count {
        for _ in 0..ALLOC_SAMPLES {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            let before = count();
            stream.record(&mut encoder.begin_compute_pass(&Default::default()));
            wgpu_allocs += count() - before;
            ctx.queue.submit([encoder.finish()]);
            wait(ctx)?;
        }
    }
    drop((stream, scalar_stream, buffers));

    // Host cost: record and submit, no wait, as a training loop would.
    let host_steps = ALLOC_SAMPLES;
    let (mut host_secs, mut allocs) = (0.0, 0u64);
    for _ in 0..host_steps {
        let t0 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let before = opts.alloc_count.map(|f| f());
        opt.step(&mut encoder);
        if let (Some(f), Some(b)) = (opts.alloc_count, before) {
            allocs += f() - b;
        }
        ctx.queue.submit([encoder.finish()]);
        host_secs += t0.elapsed().as_secs_f64();
    }
    wait(ctx)?;

    let subject = Subject { opt, ..subject };
    let max_abs_err_vs_cpu = if opts.verify {
        let got = subject.read_flat(ctx)?;
        let mut cpu = CpuOptimizer::new(config.clone())?;
        cpu.set_threads(opts.threads);
        cpu.set_max_grad_norm(opts.max_grad_norm)?;
        if opts.loss_scale {
            cpu.set_loss_scale(Some(LossScale::default()))?;
        }
        cpu.register(cpu.default_group(), n)?;
        let mut want = init.clone();
        for _ in 0..subject.opt.scheduler().steps_taken() {
            cpu.step(&mut [&mut want], &[&grads])?;
        }
        Some(
            got.iter()
                .zip(&want)
                .map(|(&a, &b)| f64::from((a - b).abs()))
                .fold(0.0, f64::max),
        )
    } else {
        None
    };
    let mut opt = subject.opt;
    let (record_us, wgpu_record_us) = record_cost(ctx, &mut opt);
    drop(opt);
    drop(subject.params);
    let copy_gb_per_s = copy_bandwidth(ctx, params * 4)?;

    let ms_per_step = median(&mut ms);
    let stream_ms = median(&mut stream_ms);
    let scalar_stream_ms = median(&mut scalar_stream_ms);
    let info = ctx.adapter.get_info();
    let grad_stage = match (opts.max_grad_norm.is_some(), opts.loss_scale) {
        (false, false) => "none",
        (true, false) => "clip",
        (false, true) => "scale",
        (true, true) => "clip+scale",
    };
    Ok(BenchResult {
        optimizer: name.to_string(),
        params,
        layout,
        tensors,
        dispatches_per_step,
        state_bytes_per_param: config.bytes_per_param() / 2 - 6,
        backend: "gpu",
        adapter: format!("{} ({:?})", info.name, info.backend),
        timing,
        steps: opts.steps,
        ms_per_step,
        bytes_per_param,
        gb_per_s: (bytes_per_param * params) as f64 / ms_per_step / 1e6,
        stream_ms,
        stream_shape: shape.to_string(),
        roofline: stream_ms / ms_per_step,
        scalar_stream_ms,
        scalar_roofline: scalar_stream_ms / ms_per_step,
        kernels: Some(if opts.scalar_kernels {
            Width::Scalar
        } else {
            Width::Vec4
        }),
        grad_stage,
        copy_gb_per_s,
        host_us_per_step: Some(host_secs / host_steps as f64 * 1e6),
        record_us_per_step: Some(record_us),
        wgpu_record_us_per_step: Some(wgpu_record_us),
        allocs_per_step: opts.alloc_count.map(|_| allocs as f64 / host_steps as f64),
        wgpu_allocs_per_step: opts
            .alloc_count
            .map(|_| wgpu_allocs as f64 / ALLOC_SAMPLES as f64),
        max_abs_err_vs_cpu,
    })
}

/// Median microseconds to record one step (encoder, `GpuOptimizer::step`, finish) and to make
/// the same wgpu calls directly, in a warm loop that alternates the two. Nothing is submitted:
/// this is recording cost alone, so it runs after verification (the steps count as taken).
fn record_cost<O: Algorithm>(ctx: &GpuContext, opt: &mut GpuOptimizer<O>) -> (f64, f64) {
    let direct = opt.capture_step();
    let (mut ours, mut theirs) = (
        Vec::with_capacity(RECORD_SAMPLES),
        Vec::with_capacity(RECORD_SAMPLES),
    );
    for k in 0..RECORD_SAMPLES + RECORD_SAMPLES / 10 {
        let t0 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        drop(encoder.finish());
        let t1 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        direct.record(&mut encoder.begin_compute_pass(&Default::default()));
        drop(encoder.finish());
        let t2 = Instant::now();
        // The first tenth warms caches and allocators up.
        if k >= RECORD_SAMPLES / 10 {
            ours.push((t1 - t0).as_secs_f64() * 1e6);
            theirs.push((t2 - t1).as_secs_f64() * 1e6);
        }
    }
    (median(&mut ours), median(&mut theirs))
}

/// Benchmarks variant `name` at `params` parameters on the GPU of `ctx`: a flat buffer, and,
/// with `opts.tensors` > 1, an arena and separate buffers of that many tensors.
pub fn gpu(
    ctx: &GpuContext,
    name: &str,
    params: u64,
    opts: &BenchOptions<'_>,
) -> Result<Vec<BenchResult>> {
    opts.validate()?;
    let config = variant(name)?;
    let layouts: &[Layout] = if opts.tensors > 1 {
        &[Layout::Flat, Layout::Arena, Layout::Separate]
    } else {
        &[Layout::Flat]
    };
    layouts
        .iter()
        .map(|&l| with_config!(&config, c => gpu_typed(ctx, name, c, params, l, opts)))
        .collect()
}

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
    let bytes_per_param = config.bytes_per_param();
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
    opt.register(opt.default_group(), n)?;
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

    let states = ((bytes_per_param - 12) / 8) as usize;
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
        state_bytes_per_param: config.bytes_per_param() / 2 - 6,
        backend: "cpu",
        adapter: format!("cpu ({threads} threads)"),
        timing: "wall",
        steps: opts.steps,
        ms_per_step,
        bytes_per_param,
        gb_per_s: (bytes_per_param * params) as f64 / ms_per_step / 1e6,
        stream_ms,
        stream_shape: "cpu loop".into(),
        roofline: stream_ms / ms_per_step,
        scalar_stream_ms: stream_ms,
        scalar_roofline: stream_ms / ms_per_step,
        kernels: None,
        grad_stage: "none",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1M").unwrap(), 1_000_000);
        assert_eq!(parse_size("10m").unwrap(), 10_000_000);
        assert_eq!(parse_size("2.5K").unwrap(), 2_500);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1757").unwrap(), 1757);
        for bad in ["", "M", "0", "-1M", "1.5", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_per_param_match_the_kernels() {
        let b = |n| variant(n).unwrap().bytes_per_param();
        assert_eq!(b("sgd"), 12);
        assert_eq!(b("sgd-momentum"), 20);
        assert_eq!(b("adamw"), 28);
        assert_eq!(b("adamw-amsgrad"), 36);
        assert_eq!(b("rmsprop-centered"), 28);
        assert_eq!(b("lion"), 20);
        assert_eq!(b("adamax"), 28);
        assert_eq!(b("nadam"), 28);
        assert_eq!(b("adadelta"), 28);
        assert_eq!(b("rprop"), 28);
        assert_eq!(b("asgd"), 20);
        assert_eq!(b("lamb"), 28);
        assert_eq!(b("lars"), 20);
        assert!(variant("adafactor").is_err());
    }
}
