//! The GPU measurement: an optimizer over parameters held flat, in an arena or in separate
//! buffers, timed against the streaming kernels; its recording cost against the same wgpu calls
//! made directly; and its result against the CPU reference.

use std::time::Instant;

use serde::Serialize;

use super::roofline::{PassTimer, wait};
use super::{
    ALLOC_SAMPLES, BenchOptions, BenchResult, RECORD_SAMPLES, Stream, StreamBuffers, StreamShape,
    check_fits, copy_bandwidth, median, random, sweep, variant, with_config,
};
use crate::arena::ArenaLayout;
use crate::context::GpuContext;
use crate::cpu_optimizer::CpuOptimizer;
use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::host::grad_stage::LossScale;
use crate::kernel::Width;
use crate::optim::Algorithm;
use crate::precision::Dtype;
use crate::quant::Quant;

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
    grads: Vec<wgpu::Buffer>,
    /// A second set of gradient buffers, the same values, for `--moving-grads`.
    pool: Vec<wgpu::Buffer>,
    /// Each buffer's values (0 for the arena, read as f32 and unpacked).
    lens: Vec<usize>,
    /// The parameters' dtype.
    dtype: Dtype,
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
        let precision = opts.precision;
        let (params, grad_bufs, arena) = match layout {
            Layout::Flat => (
                vec![ctx.upload_as("param", precision.param, init)],
                vec![ctx.upload_as("grad", precision.grad, grads)],
                None,
            ),
            Layout::Arena if !precision.is_f32() => {
                return Err(Error::InvalidOptions(format!(
                    "the arena layout holds f32 values, not {precision}"
                )));
            }
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
                    .map(|p| ctx.upload_as("param", precision.param, p))
                    .collect(),
                pieces(grads)
                    .iter()
                    .map(|g| ctx.upload_as("grad", precision.grad, g))
                    .collect(),
                None,
            ),
        };
        let mut lens_registered = Vec::new();
        for (k, (p, g)) in params.iter().zip(&grad_bufs).enumerate() {
            let group = opt.default_group();
            match layout {
                Layout::Flat => {
                    let shape = opts.shape_of(init.len() as u64)?;
                    opt.register_typed(group, p.slice(..), g.slice(..), &shape, precision)?;
                    lens_registered.push(init.len());
                }
                Layout::Separate => {
                    let len = lens[k] as usize;
                    opt.register_typed(group, p.slice(..), g.slice(..), &[len], precision)?;
                    lens_registered.push(len);
                }
                Layout::Arena => {
                    opt.register(group, p, g)?;
                    lens_registered.push(0);
                }
            }
        }
        // The same bytes in buffers of their own, copied on the device.
        let copy_of = |g: &wgpu::Buffer| {
            let b = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gradient pool"),
                size: g.size(),
                usage: g.usage(),
                mapped_at_creation: false,
            });
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(g, 0, &b, 0, g.size());
            ctx.queue.submit([encoder.finish()]);
            b
        };
        let pool = if opts.moving_grads {
            grad_bufs.iter().map(copy_of).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            opt,
            params,
            arena,
            grads: grad_bufs,
            pool,
            lens: lens_registered,
            dtype: precision.param,
        })
    }

    fn read_flat(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for (p, &len) in self.params.iter().zip(&self.lens) {
            let data = match &self.arena {
                Some(_) => ctx.read(p)?,
                None => ctx.read_as(p, self.dtype, len)?,
            };
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
    if let Some(q) = opts.precision.quant
        && (layout != Layout::Flat || !q.applies(params))
    {
        return Err(Error::InvalidOptions(format!(
            "{q} state is measured on one flat tensor of whole {}-value blocks, at least {}: \
             {params} parameters in a {layout:?} layout would keep f32 state (try {})",
            q.block(),
            Quant::MIN_LEN,
            params.next_multiple_of(q.block()).max(Quant::MIN_LEN)
        )));
    }
    let n = params as usize;
    let tensors = if layout == Layout::Flat {
        1
    } else {
        opts.tensors.max(1)
    };
    let precision = opts.precision;
    let mut init = random(n, 1);
    precision.param.round_all(&mut init);
    let mut grads = random(n, 2);
    precision.grad.round_all(&mut grads);
    let subject = Subject::new(ctx, config, layout, tensors, &init, &grads, opts)?;
    let mut opt = subject.opt;
    let dispatches_per_step = opt.dispatches_per_step();

    let shape = match layout {
        Layout::Flat => opts.shape_of(params)?,
        _ => vec![n],
    };
    let (moved, held) = config.stored_step_bytes(&shape, precision);
    let bytes_per_param = moved as f64 / params as f64;
    // The stream moves the same bytes: the same dtypes, one buffer per state kept (for
    // Adafactor's factored state, the f32 buffers its byte count makes).
    let stream_states = if precision.is_f32() {
        (moved.div_ceil(params).saturating_sub(12) / 8) as u32
    } else {
        config.kept_states().count() as u32
    };
    let buffers = StreamBuffers::new(ctx, stream_states, &init, precision);
    let stream_shape = match opts.stream {
        Some(shape) => shape,
        None => sweep(ctx, &buffers, 3)?.0,
    };
    let stream = Stream::new(ctx, &buffers, stream_shape);
    // The scalar reference predates quantized state, which is stepped at vec4 width only.
    let quantized = precision.quant.is_some();
    let scalar_stream = (!quantized).then(|| Stream::new(ctx, &buffers, StreamShape::SCALAR));
    // Warm up, then alternate optimizer and streaming passes so all see the same conditions.
    for _ in 0..opts.warmup {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        stream.record(&mut encoder.begin_compute_pass(&Default::default()));
        if let Some(s) = &scalar_stream {
            s.record(&mut encoder.begin_compute_pass(&Default::default()));
        }
        ctx.queue.submit([encoder.finish()]);
        wait(ctx)?;
    }
    let timer = || PassTimer::new(ctx, opts.steps as u32);
    let (mut opt_timer, mut stream_timer, mut scalar_timer) = (timer(), timer(), timer());
    for _ in 0..opts.steps {
        opt_timer.time(ctx, |pass| opt.record(pass))?;
        stream_timer.time(ctx, |pass| stream.record(pass))?;
        if let Some(s) = &scalar_stream {
            scalar_timer.time(ctx, |pass| s.record(pass))?;
        }
    }
    let (mut ms, timing) = opt_timer.finish(ctx)?;
    let (mut stream_ms, _) = stream_timer.finish(ctx)?;
    let (mut scalar_stream_ms, _) = match &scalar_stream {
        Some(_) => scalar_timer.finish(ctx)?,
        None => (vec![f64::NAN], ""),
    };

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
    // With moving gradients, each set is bound once first, so the loop is warm.
    let host_steps = ALLOC_SAMPLES;
    let sets: Vec<Vec<wgpu::BufferSlice<'_>>> = if opts.moving_grads {
        [&subject.pool, &subject.grads]
            .map(|bufs| bufs.iter().map(|b| b.slice(..)).collect())
            .into()
    } else {
        Vec::new()
    };
    for set in &sets {
        opt.rebind_grads(set)?;
    }
    let (mut host_secs, mut allocs) = (0.0, 0u64);
    for k in 0..host_steps {
        let t0 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let before = opts.alloc_count.map(|f| f());
        match sets.get(k % 2) {
            Some(set) => opt.step_with(&mut encoder, set)?,
            None => opt.step(&mut encoder),
        }
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
        cpu.register_typed(cpu.default_group(), &shape, precision)?;
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
        state_bytes_per_param: held as f64 / params as f64,
        shape,
        param_dtype: precision.param,
        grad_dtype: precision.grad,
        state_dtype: precision
            .quant
            .map_or(precision.state.name(), Quant::name)
            .to_string(),
        backend: "gpu",
        adapter: format!("{} ({:?})", info.name, info.backend),
        timing,
        steps: opts.steps,
        ms_per_step,
        bytes_per_param,
        gb_per_s: moved as f64 / ms_per_step / 1e6,
        stream_ms,
        stream_shape: stream_shape.to_string(),
        roofline: stream_ms / ms_per_step,
        scalar_stream_ms,
        scalar_roofline: scalar_stream_ms / ms_per_step,
        kernels: Some(if opts.scalar_kernels {
            Width::Scalar
        } else {
            Width::Vec4
        }),
        grad_stage,
        moving_grads: opts.moving_grads,
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
    let layouts: &[Layout] = if opts.tensors <= 1 {
        &[Layout::Flat]
    } else if opts.precision.is_f32() {
        &[Layout::Flat, Layout::Arena, Layout::Separate]
    } else {
        // The arena packs f32 values.
        &[Layout::Flat, Layout::Separate]
    };
    layouts
        .iter()
        .map(|&l| with_config!(&config, c => gpu_typed(ctx, name, c, params, l, opts)))
        .collect()
}
