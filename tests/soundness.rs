//! What a caller's wgpu objects and inputs can do, handled: parameters and gradients carved from
//! one buffer, any number of steps recorded before one submit, loss scaling across a
//! checkpoint, and typed errors (never panics) for bad input.

mod common;

use common::{Rng, gpu};
use wgpu_optim::{
    Adam, AdamW, Algorithm, ArenaLayout, Checkpoint, CpuOptimizer, Error, GpuContext, GpuOptimizer,
    Lamb, Lars, LossScale, Schedule, Sgd, StepScheduler,
};

const LENS: [usize; 4] = [3, 1757, 64, 1];
const STEPS: usize = 12;

/// Buffers the tests read and write.
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn grads_for(step: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(100 + step as u64);
    LENS.iter().map(|&n| rng.vec(n)).collect()
}

fn inits() -> Vec<Vec<f32>> {
    let mut rng = Rng::new(7);
    LENS.iter().map(|&n| rng.vec(n)).collect()
}

/// Runs `config` for STEPS steps with each parameter and its gradient in their own buffers
/// (`pooled` false) or all of them carved from one buffer, gradients before or after their
/// parameters (`pooled` true). Returns the parameters and every state.
fn run_gpu<O: Algorithm>(
    ctx: &GpuContext,
    config: &O,
    pooled: bool,
    stage: bool,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone()).unwrap();
    if stage {
        opt.set_max_grad_norm(Some(0.5)).unwrap();
        opt.set_loss_scale(Some(LossScale::default())).unwrap();
    }
    let scale = if stage { 65536.0 } else { 1.0 };
    let group = opt.default_group();
    let inits = inits();
    // (param buffer, param offset, grad buffer, grad offset) per tensor.
    let mut slots: Vec<(wgpu::Buffer, u64, wgpu::Buffer, u64)> = Vec::new();
    if pooled {
        // Tensor 2i is parameter i and 2i + 1 its gradient, swapped for odd i.
        let lens: Vec<u64> = LENS.iter().flat_map(|&n| [n as u64, n as u64]).collect();
        let layout = ArenaLayout::for_device(&ctx.device, &lens).unwrap();
        let pool = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pool"),
            size: layout.size(),
            usage: USAGE,
            mapped_at_creation: false,
        });
        for (i, init) in inits.iter().enumerate() {
            let (p, g) = if i % 2 == 0 {
                (2 * i, 2 * i + 1)
            } else {
                (2 * i + 1, 2 * i)
            };
            let (pr, gr) = (layout.byte_range(p).unwrap(), layout.byte_range(g).unwrap());
            ctx.queue
                .write_buffer(&pool, pr.start, bytemuck::cast_slice(init));
            opt.register_slices(group, pool.slice(pr.clone()), pool.slice(gr.clone()))
                .unwrap();
            slots.push((pool.clone(), pr.start, pool.clone(), gr.start));
        }
    } else {
        for init in &inits {
            let p = ctx.upload("param", init);
            let g = ctx.upload("grad", &vec![0.0; init.len()]);
            opt.register(group, &p, &g).unwrap();
            slots.push((p, 0, g, 0));
        }
    }
    for t in 0..STEPS {
        for ((_, _, g, at), grad) in slots.iter().zip(grads_for(t)) {
            let scaled: Vec<f32> = grad.iter().map(|x| x * scale).collect();
            ctx.queue
                .write_buffer(g, *at, bytemuck::cast_slice(&scaled));
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    }
    let params = slots
        .iter()
        .zip(&inits)
        .map(|((p, at, _, _), init)| {
            let all = ctx.read(p).unwrap();
            let from = (*at / 4) as usize;
            all[from..from + init.len()].to_vec()
        })
        .collect();
    let states = opt
        .checkpoint()
        .unwrap()
        .params
        .into_iter()
        .flat_map(|p| p.states.into_iter().map(|(_, s)| s))
        .collect();
    (params, states)
}

fn run_cpu<O: Algorithm>(config: &O, stage: bool) -> Vec<Vec<f32>> {
    let mut opt = CpuOptimizer::new(config.clone()).unwrap();
    if stage {
        opt.set_max_grad_norm(Some(0.5)).unwrap();
        opt.set_loss_scale(Some(LossScale::default())).unwrap();
    }
    let scale = if stage { 65536.0 } else { 1.0 };
    for &n in &LENS {
        opt.register(opt.default_group(), n).unwrap();
    }
    let mut params = inits();
    for t in 0..STEPS {
        let grads: Vec<Vec<f32>> = grads_for(t)
            .into_iter()
            .map(|g| g.iter().map(|x| x * scale).collect())
            .collect();
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        opt.step(&mut views, &grad_views).unwrap();
    }
    params
}

/// As tests/parity.rs: `|gpu - cpu| ≤ 1e-4 · max|cpu - init| + 32 ε · max|cpu|`.
fn assert_close(label: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    for ((g, w), init) in got.iter().zip(want).zip(inits()) {
        let displacement = w
            .iter()
            .zip(&init)
            .map(|(&a, &b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max);
        assert!(displacement > 0.0, "{label}: a parameter never moved");
        let max = w.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max);
        let tol = 1e-4 * displacement + 32.0 * f64::from(f32::EPSILON) * max;
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            let err = (f64::from(a) - f64::from(b)).abs();
            assert!(
                err <= tol,
                "{label}: [{i}] gpu {a} vs cpu {b} (tolerance {tol:e})"
            );
        }
    }
}

fn pooled_matches<O: Algorithm>(ctx: &GpuContext, label: &str, config: O, stage: bool) {
    let separate = run_gpu(ctx, &config, false, stage);
    let pooled = run_gpu(ctx, &config, true, stage);
    // The same kernel arithmetic on the same inputs: only the gradient's access differs.
    assert_eq!(
        pooled, separate,
        "{label}: pooled and separate buffers differ"
    );
    assert_close(label, &pooled.0, &run_cpu(&config, stage));
}

#[test]
fn parameters_and_gradients_in_one_buffer_step_as_separate_buffers() {
    let Some(ctx) = gpu() else { return };
    pooled_matches(&ctx, "adamw", AdamW::default(), false);
    pooled_matches(
        &ctx,
        "sgd-nesterov",
        Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            ..Default::default()
        },
        false,
    );
    pooled_matches(&ctx, "lamb", Lamb::default(), false);
    pooled_matches(&ctx, "lars", Lars::default(), false);
    // With clipping and loss scaling, whose gradient passes read the pool too.
    pooled_matches(&ctx, "adamw-clip-scale", AdamW::default(), true);
}

/// How the steps of a run reach the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Submit {
    EachStep,
    OneEncoder,
    OneEncoderPerStep,
}

const BATCH_LENS: [usize; 2] = [3, 1757];

/// The two groups of the batched runs: a cosine schedule over them makes every step's scalars
/// differ.
fn batch_groups() -> [Adam; 2] {
    [
        Adam {
            lr: 0.01,
            ..Default::default()
        },
        Adam {
            lr: 0.002,
            amsgrad: true,
            ..Default::default()
        },
    ]
}

const BATCH_SCHEDULE: Schedule = Schedule::Cosine {
    t_max: 450,
    eta_min: 0.0,
};

fn batch_scaler() -> LossScale {
    LossScale {
        growth_interval: 50,
        ..Default::default()
    }
}

/// Initial values and every step's gradients (`[steps, n]`) of each batched parameter; with
/// loss scaling, scaled by 1024 and an inf at step 100.
fn batch_data(steps: usize, scaled: bool) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut rng = Rng::new(11);
    BATCH_LENS
        .iter()
        .map(|&n| {
            let init = rng.vec(n);
            let mut all: Vec<f32> = (0..steps * n).map(|_| rng.uniform()).collect();
            if scaled {
                all.iter_mut().for_each(|x| *x *= 1024.0);
                all[100 * n + n / 2] = f32::INFINITY;
            }
            (init, all)
        })
        .collect()
}

/// The batched run on the CPU reference: the parameters after `steps` steps.
fn batched_cpu(steps: usize, scaled: bool) -> Vec<Vec<f32>> {
    let [first, second] = batch_groups();
    let mut opt = CpuOptimizer::new(first).unwrap();
    let second = opt.add_param_group(second).unwrap();
    opt.set_schedule(Some(BATCH_SCHEDULE)).unwrap();
    if scaled {
        opt.set_loss_scale(Some(batch_scaler())).unwrap();
    }
    let data = batch_data(steps, scaled);
    opt.register(opt.default_group(), BATCH_LENS[0]).unwrap();
    opt.register(second, BATCH_LENS[1]).unwrap();
    let mut params: Vec<Vec<f32>> = data.iter().map(|(init, _)| init.clone()).collect();
    for t in 0..steps {
        let grads: Vec<&[f32]> = data
            .iter()
            .zip(&BATCH_LENS)
            .map(|((_, all), &n)| &all[t * n..(t + 1) * n])
            .collect();
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        opt.step(&mut views, &grads).unwrap();
    }
    params
}

/// `steps` steps of Adam in two groups under a cosine schedule, optionally with loss scaling
/// and an inf gradient at step 100. Each step's gradient is copied into place inside the
/// step's encoder, so batching keeps each step's own gradient. Returns every parameter, then
/// every state.
fn batched(ctx: &GpuContext, steps: usize, submit: Submit, scaled: bool) -> Vec<Vec<f32>> {
    let lens = BATCH_LENS;
    let [first, second] = batch_groups();
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, first).unwrap();
    let second = opt.add_param_group(second).unwrap();
    opt.set_schedule(Some(BATCH_SCHEDULE)).unwrap();
    if scaled {
        opt.set_loss_scale(Some(batch_scaler())).unwrap();
    }
    let mut params = Vec::new();
    let mut grads = Vec::new();
    let mut sources = Vec::new();
    for (i, (init, all)) in batch_data(steps, scaled).iter().enumerate() {
        let p = ctx.upload("param", init);
        let g = ctx.upload("grad", &vec![0.0; init.len()]);
        let group = if i == 0 { opt.default_group() } else { second };
        opt.register(group, &p, &g).unwrap();
        sources.push(ctx.upload("gradients of every step", all));
        params.push(p);
        grads.push(g);
    }
    let record = |encoder: &mut wgpu::CommandEncoder, opt: &mut GpuOptimizer<Adam>, t: usize| {
        for ((src, g), &n) in sources.iter().zip(&grads).zip(&lens) {
            let bytes = n as u64 * 4;
            encoder.copy_buffer_to_buffer(src, t as u64 * bytes, g, 0, bytes);
        }
        opt.step(encoder);
    };
    match submit {
        Submit::EachStep => {
            for t in 0..steps {
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                record(&mut encoder, &mut opt, t);
                ctx.queue.submit([encoder.finish()]);
            }
        }
        Submit::OneEncoder => {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            for t in 0..steps {
                record(&mut encoder, &mut opt, t);
            }
            ctx.queue.submit([encoder.finish()]);
        }
        Submit::OneEncoderPerStep => {
            let buffers: Vec<wgpu::CommandBuffer> = (0..steps)
                .map(|t| {
                    let mut encoder = ctx.device.create_command_encoder(&Default::default());
                    record(&mut encoder, &mut opt, t);
                    encoder.finish()
                })
                .collect();
            ctx.queue.submit(buffers);
        }
    }
    let mut out: Vec<Vec<f32>> = params.iter().map(|p| ctx.read(p).unwrap()).collect();
    for p in opt.checkpoint().unwrap().params {
        out.extend(p.states.into_iter().map(|(_, s)| s));
    }
    if scaled {
        let s = opt.read_loss_scale().unwrap();
        assert_eq!(s.skipped_steps, 1, "the inf gradient was not skipped");
        out.push(vec![s.scale, s.growth_tracker as f32]);
    }
    out
}

#[test]
fn any_number_of_steps_recorded_before_one_submit_equal_one_submit_per_step() {
    let Some(ctx) = gpu() else { return };
    // 600 steps cross two scalar tables (256 steps each with few groups).
    for scaled in [false, true] {
        let each = batched(&ctx, 600, Submit::EachStep, scaled);
        // Against the CPU reference too, so that a wrong scalar in every mode alike is caught.
        let cpu = batched_cpu(600, scaled);
        for (p, (got, want)) in each.iter().zip(&cpu).enumerate() {
            let max = want.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max);
            for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
                let err = f64::from((a - b).abs());
                assert!(
                    err <= 1e-4 * max,
                    "loss scaling {scaled}: param {p}[{i}] gpu {a} vs cpu {b}"
                );
            }
        }
        for submit in [Submit::OneEncoder, Submit::OneEncoderPerStep] {
            let got = batched(&ctx, 600, submit, scaled);
            assert!(
                got == each,
                "{submit:?} (loss scaling {scaled}) differs from one submit per step"
            );
        }
    }
}

/// Loss scaling across a checkpoint: a run with skipped steps, saved after `RESUME` steps and
/// resumed in a fresh optimizer that never set loss scaling, equals the uninterrupted run bit
/// for bit (parameters, states, and GradScaler's scale, tracker and skip count).
const RESUME: usize = 5;
const RUN: usize = 11;

fn scaled_grads(t: usize) -> Vec<Vec<f32>> {
    let mut g: Vec<Vec<f32>> = grads_for(t)
        .into_iter()
        .map(|g| g.iter().map(|x| x * 4096.0).collect())
        .collect();
    if t == 2 || t == 8 {
        g[1][5] = f32::NAN;
    }
    g
}

fn scaler() -> LossScale {
    LossScale {
        init_scale: 4096.0,
        growth_interval: 3,
        ..Default::default()
    }
}

#[test]
fn loss_scaling_resumes_bit_identically_from_a_checkpoint_on_cpu() {
    let dir = common::scratch_dir("soundness-cpu-scale");
    let path = dir.join("scaled.safetensors");
    let new = |scaled: bool| {
        let mut opt = CpuOptimizer::new(Adam::default()).unwrap();
        if scaled {
            opt.set_loss_scale(Some(scaler())).unwrap();
        }
        for &n in &LENS {
            opt.register(opt.default_group(), n).unwrap();
        }
        opt
    };
    let step = |opt: &mut CpuOptimizer<Adam>, params: &mut Vec<Vec<f32>>, t: usize| {
        let grads = scaled_grads(t);
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        opt.step(&mut views, &grad_views).unwrap();
    };
    let (mut whole, mut whole_params) = (new(true), inits());
    for t in 0..RUN {
        step(&mut whole, &mut whole_params, t);
    }
    let (mut first, mut params) = (new(true), inits());
    for t in 0..RESUME {
        step(&mut first, &mut params, t);
    }
    first.save_checkpoint(&path).unwrap();
    let mut resumed = new(false);
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(resumed.loss_scale(), first.loss_scale());
    for t in RESUME..RUN {
        step(&mut resumed, &mut params, t);
    }
    assert_eq!(params, whole_params);
    assert_eq!(resumed.loss_scale(), whole.loss_scale());
    assert_eq!(resumed.loss_scale().unwrap().skipped_steps, 2);
    assert_eq!(
        resumed.checkpoint().unwrap().params,
        whole.checkpoint().unwrap().params
    );
}

#[test]
fn loss_scaling_resumes_bit_identically_from_a_checkpoint_on_gpu() {
    let Some(ctx) = gpu() else { return };
    let dir = common::scratch_dir("soundness-gpu-scale");
    let path = dir.join("scaled.safetensors");
    let new = |scaled: bool, params: &[Vec<f32>]| {
        let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Adam::default()).unwrap();
        if scaled {
            opt.set_loss_scale(Some(scaler())).unwrap();
        }
        let mut bufs = Vec::new();
        for p in params {
            let (pb, gb) = (ctx.upload("p", p), ctx.upload("g", &vec![0.0; p.len()]));
            opt.register(opt.default_group(), &pb, &gb).unwrap();
            bufs.push((pb, gb));
        }
        (opt, bufs)
    };
    let step = |opt: &mut GpuOptimizer<Adam>, bufs: &[(wgpu::Buffer, wgpu::Buffer)], t| {
        for ((_, g), grad) in bufs.iter().zip(scaled_grads(t)) {
            ctx.write(g, &grad);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    };
    let read = |bufs: &[(wgpu::Buffer, wgpu::Buffer)]| -> Vec<Vec<f32>> {
        bufs.iter().map(|(p, _)| ctx.read(p).unwrap()).collect()
    };
    let (mut whole, whole_bufs) = new(true, &inits());
    for t in 0..RUN {
        step(&mut whole, &whole_bufs, t);
    }
    let (mut first, bufs) = new(true, &inits());
    for t in 0..RESUME {
        step(&mut first, &bufs, t);
    }
    first.save_checkpoint(&path).unwrap();
    let (mut resumed, resumed_bufs) = new(false, &read(&bufs));
    resumed.load_checkpoint(&path).unwrap();
    for t in RESUME..RUN {
        step(&mut resumed, &resumed_bufs, t);
    }
    assert_eq!(read(&resumed_bufs), read(&whole_bufs));
    let (a, b) = (
        resumed.read_loss_scale().unwrap(),
        whole.read_loss_scale().unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a.skipped_steps, 2);
    assert_eq!(
        resumed.checkpoint().unwrap().params,
        whole.checkpoint().unwrap().params
    );
    // The GPU's checkpoint carries GradScaler's state to the CPU too.
    let mut cpu = CpuOptimizer::new(Adam::default()).unwrap();
    for &n in &LENS {
        cpu.register(cpu.default_group(), n).unwrap();
    }
    cpu.restore(&whole.checkpoint().unwrap()).unwrap();
    assert_eq!(cpu.loss_scale(), Some(b));
}

#[test]
fn a_buffer_from_another_device_is_a_typed_error_and_changes_nothing() {
    let Some(ctx) = gpu() else { return };
    let other = GpuContext::from_adapter(ctx.adapter.clone(), None).unwrap();
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let (foreign_p, foreign_g) = (other.upload("p", &[1.0; 64]), other.upload("g", &[1.0; 64]));
    let err = opt
        .register(opt.default_group(), &foreign_p, &foreign_g)
        .unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert_eq!(opt.dispatches_per_step(), 0);
    // The optimizer still works with buffers of its own device.
    let (p, g) = (ctx.upload("p", &[1.0; 64]), ctx.upload("g", &[1.0; 64]));
    let id = opt.register(opt.default_group(), &p, &g).unwrap();
    assert_eq!(id.index(), 0);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    opt.step(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    assert!(ctx.read(&p).unwrap()[0] < 1.0);
}

#[test]
fn scheduler_getters_and_schedules_from_public_fields_are_typed_errors() {
    let mut with_two = StepScheduler::new(Adam::default()).unwrap();
    let second = with_two.add_group(Adam::default()).unwrap();
    let one = StepScheduler::new(Adam::default()).unwrap();
    assert!(matches!(one.lr(second, 1), Err(Error::UnknownGroup(1))));
    assert!(matches!(
        one.scalars(second, 1),
        Err(Error::UnknownGroup(1))
    ));
    assert!(matches!(one.next_lr(second), Err(Error::UnknownGroup(1))));
    assert!(with_two.lr(second, 1).is_ok());

    let zero_step = Schedule::Step {
        step_size: 0,
        gamma: 0.5,
    };
    let e = zero_step.lr(1.0, 3).unwrap_err();
    assert!(e.to_string().contains("step_size"), "{e}");
    let short = Schedule::Sequential {
        schedules: vec![Schedule::Exponential { gamma: 0.5 }],
        milestones: vec![3, 6],
    };
    assert!(matches!(short.lr(1.0, 9), Err(Error::InvalidOptions(_))));
    let zero_cosine = Schedule::Cosine {
        t_max: 0,
        eta_min: 0.0,
    };
    assert!(zero_cosine.lr(1.0, 0).is_err());
    let mut opt = CpuOptimizer::new(Adam::default()).unwrap();
    assert!(opt.set_schedule(Some(zero_step)).is_err());
    // Cycles that do not grow are found in one division, not a walk over every epoch.
    let restarts = Schedule::CosineWarmRestarts {
        t_0: 1,
        t_mult: 1,
        eta_min: 0.0,
    };
    assert_eq!(restarts.lr(1.0, u64::MAX - 1).unwrap(), 1.0);
}

/// A checkpoint whose state lengths do not fit (built or edited in memory) is refused before
/// anything is written, on both backends.
#[test]
fn a_checkpoint_with_wrong_state_lengths_is_refused_on_both_backends() {
    let mut cpu = CpuOptimizer::new(Adam::default()).unwrap();
    for &n in &LENS {
        cpu.register(cpu.default_group(), n).unwrap();
    }
    let good = cpu.checkpoint().unwrap();
    let mut short = good.clone();
    short.params[1].states[0].1.truncate(10);
    let mut long = good.clone();
    long.params[0].states[1].1.extend([1.0; 100]);
    let mut bad_schedule = good.clone();
    bad_schedule.schedule = Some(Schedule::Step {
        step_size: 0,
        gamma: 0.1,
    });
    let mut bad_scale = good.clone();
    bad_scale.loss_scale = Some(wgpu_optim::checkpoint::SavedLossScale {
        config: LossScale::default(),
        state: wgpu_optim::LossScaleState {
            scale: -1.0,
            growth_tracker: 0,
            skipped_steps: 0,
            last_step_skipped: false,
        },
    });
    let refused = |c: &Checkpoint| -> Vec<String> {
        let mut errors = Vec::new();
        let before = cpu.checkpoint().unwrap();
        let mut target = cpu.clone();
        errors.push(target.restore(c).unwrap_err().to_string());
        assert_eq!(target.checkpoint().unwrap(), before);
        errors
    };
    assert!(refused(&short)[0].contains("1757"), "{:?}", refused(&short));
    assert!(refused(&long)[0].contains("103"), "{:?}", refused(&long));
    assert!(refused(&bad_schedule)[0].contains("step_size"));
    assert!(refused(&bad_scale)[0].contains("scale"));

    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Adam::default()).unwrap();
    let mut keep = Vec::new();
    for &n in &LENS {
        let (p, g) = (
            ctx.upload("p", &vec![0.5; n]),
            ctx.upload("g", &vec![0.0; n]),
        );
        opt.register(opt.default_group(), &p, &g).unwrap();
        keep.push((p, g));
    }
    let before = opt.checkpoint().unwrap();
    for c in [&short, &long, &bad_schedule, &bad_scale] {
        assert!(matches!(
            opt.restore(c),
            Err(Error::CheckpointMismatch(_) | Error::InvalidHyperparameter { .. })
        ));
    }
    assert_eq!(opt.checkpoint().unwrap(), before);
}

#[test]
fn benchmark_options_without_steps_are_a_typed_error() {
    let opts = wgpu_optim::tooling::bench::BenchOptions {
        steps: 0,
        warmup: 0,
        verify: false,
        threads: 1,
        tensors: 1,
        alloc_count: None,
        stream: None,
        scalar_kernels: false,
        max_grad_norm: None,
        loss_scale: false,
        moving_grads: false,
        shape: None,
        precision: wgpu_optim::Precision::F32,
    };
    let e = wgpu_optim::tooling::bench::cpu("sgd", 16, &opts).unwrap_err();
    assert!(e.to_string().contains("--steps 0"), "{e}");
}
