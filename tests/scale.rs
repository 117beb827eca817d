//! Scale: buffers past one storage binding (bound in windows), 2-D dispatch grids, parameter
//! arenas stepped by one dispatch, and ZeRO-1 shards that add up to the whole.

mod common;

use common::{Rng, gpu, small_limits_context};
use wgpu_optim::{
    Adam, AdamW, Algorithm, ArenaLayout, CpuOptimizer, Error, GpuContext, GpuOptimizer, RmsProp,
    Sgd,
};

/// Steps a GPU and a CPU optimizer `steps` times from the same inputs; returns both results.
fn run<O: Algorithm>(
    ctx: &GpuContext,
    config: O,
    len: usize,
    steps: usize,
) -> (Vec<f32>, Vec<f32>, usize) {
    let mut rng = Rng::new(len as u64);
    let init = rng.vec(len);
    let grads: Vec<Vec<f32>> = (0..steps).map(|_| rng.vec(len)).collect();
    let p = ctx.upload("p", &init);
    let g = ctx.upload("g", &grads[0]);
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone()).unwrap();
    gpu.register(gpu.default_group(), &p, &g).unwrap();
    let mut cpu = CpuOptimizer::new(config).unwrap();
    cpu.set_threads(2);
    cpu.register(cpu.default_group(), len).unwrap();
    let mut want = init;
    for grad in &grads {
        ctx.write(&g, grad);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        cpu.step(&mut [&mut want], &[grad]).unwrap();
    }
    (ctx.read(&p).unwrap(), want, gpu.dispatches_per_step())
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    // The parity tolerance of tests/parity.rs, on a parameter that moved by ~lr per step.
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err <= 1e-6, "{what}: max |gpu - cpu| = {err}");
}

#[test]
fn buffers_past_one_binding_are_stepped_in_windows() {
    let Some(ctx) = small_limits_context() else {
        return;
    };
    // 100_003 elements: 7 windows of at most 16384, each a 2-D grid of workgroups, and one
    // scalar tail for the last 3 elements.
    let (got, want, dispatches) = run(
        &ctx,
        Adam {
            lr: 1e-3,
            ..Default::default()
        },
        100_003,
        4,
    );
    assert_eq!(dispatches, 8);
    assert_close(&got, &want, "windowed adam");
    let (got, want, _) = run(
        &ctx,
        RmsProp {
            centered: true,
            momentum: 0.5,
            lr: 1e-3,
            ..Default::default()
        },
        40_000,
        4,
    );
    assert_close(&got, &want, "windowed rmsprop");
}

#[test]
fn fifty_million_parameters_at_real_size() {
    let Some(ctx) = gpu() else { return };
    // 200 MB per buffer: past the 128 MiB storage binding of lavapipe and llvmpipe.
    let n = 50_000_000;
    let limit = ctx.device.limits().max_storage_buffer_binding_size;
    let (got, want, dispatches) = run(
        &ctx,
        AdamW {
            lr: 1e-3,
            ..Default::default()
        },
        n,
        2,
    );
    assert!(
        dispatches as u64 >= (n as u64 * 4).div_ceil(limit),
        "{dispatches} dispatches"
    );
    assert_close(&got, &want, "50M adamw");
}

#[test]
fn an_arena_of_a_thousand_tensors_is_one_dispatch() {
    let Some(ctx) = gpu() else { return };
    let lens: Vec<u64> = (0..1000u64)
        .map(|i| [1, 3, 4, 1757, 64, 65][i as usize % 6] + i)
        .collect();
    let layout = ArenaLayout::for_device(&ctx.device, &lens).unwrap();
    let mut rng = Rng::new(5);
    let tensors: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n as usize)).collect();
    let views: Vec<&[f32]> = tensors.iter().map(Vec::as_slice).collect();
    let config = Adam {
        lr: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    };

    let arena_p = ctx.upload("arena", &layout.pack(&views).unwrap());
    let arena_g = ctx.upload("arena.grad", &vec![0.0; layout.len() as usize]);
    let mut arena = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
    arena
        .register(arena.default_group(), &arena_p, &arena_g)
        .unwrap();
    assert_eq!(arena.dispatches_per_step(), 1);

    let mut separate = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
    let bufs: Vec<_> = tensors
        .iter()
        .map(|t| (ctx.upload("p", t), ctx.upload("g", &vec![0.0; t.len()])))
        .collect();
    for (p, g) in &bufs {
        separate.register(separate.default_group(), p, g).unwrap();
    }
    // One vec4 body for each tensor of 4 or more elements, one scalar tail for each whose
    // length is not a multiple of 4.
    let expected: usize = lens
        .iter()
        .map(|&n| usize::from(n >= 4) + usize::from(n % 4 != 0))
        .sum();
    assert_eq!(separate.dispatches_per_step(), expected);

    for _ in 0..3 {
        let grads: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n as usize)).collect();
        let views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        ctx.write(&arena_g, &layout.pack(&views).unwrap());
        for ((_, g), v) in bufs.iter().zip(&grads) {
            ctx.write(g, v);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        arena.step(&mut encoder);
        separate.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    }
    let packed = ctx.read(&arena_p).unwrap();
    for (i, (p, _)) in bufs.iter().enumerate() {
        // Elementwise updates: the same kernel on the same values gives the same bits.
        assert_eq!(
            layout.tensor(&packed, i).unwrap(),
            &ctx.read(p).unwrap()[..],
            "tensor {i}"
        );
    }
    for i in 1..layout.tensors() {
        let gap =
            layout.range(i - 1).unwrap().end as usize..layout.range(i).unwrap().start as usize;
        assert!(
            packed[gap].iter().all(|&x| x == 0.0),
            "padding before tensor {i} moved"
        );
    }
}

#[test]
fn shards_stepped_separately_equal_the_whole() {
    let Some(ctx) = gpu() else { return };
    let n = 10_000usize;
    let align = u64::from(ctx.device.limits().min_storage_buffer_offset_alignment) / 4;
    let mut rng = Rng::new(11);
    let init = rng.vec(n);
    let config = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-3,
        ..Default::default()
    };
    let (whole_p, whole_g) = (ctx.upload("p", &init), ctx.upload("g", &vec![0.0; n]));
    let mut whole = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
    let whole_id = whole
        .register(whole.default_group(), &whole_p, &whole_g)
        .unwrap();
    // Four workers' shards of the same flat buffer, each with its own optimizer and state.
    let (flat_p, flat_g) = (ctx.upload("p", &init), ctx.upload("g", &vec![0.0; n]));
    let cuts = [0, 64 * align, 65 * align, 100 * align, n as u64];
    let mut workers = Vec::new();
    for w in cuts.windows(2) {
        let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
        let bytes = w[0] * 4..w[1] * 4;
        let id = opt
            .register_slices(
                opt.default_group(),
                flat_p.slice(bytes.clone()),
                flat_g.slice(bytes),
            )
            .unwrap();
        workers.push((opt, id));
    }
    for _ in 0..4 {
        let grad = rng.vec(n);
        ctx.write(&whole_g, &grad);
        ctx.write(&flat_g, &grad);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        whole.step(&mut encoder);
        for (w, _) in &mut workers {
            w.step(&mut encoder);
        }
        ctx.queue.submit([encoder.finish()]);
    }
    assert_eq!(ctx.read(&flat_p).unwrap(), ctx.read(&whole_p).unwrap());
    let buf = whole
        .read_state(whole_id, "momentum_buffer")
        .unwrap()
        .unwrap();
    let mut sharded = Vec::new();
    for (w, id) in &workers {
        sharded.extend(w.read_state(*id, "momentum_buffer").unwrap().unwrap());
    }
    assert_eq!(
        sharded, buf,
        "each worker keeps the state of its shard only"
    );

    // Shards must start at a bindable offset and must not overlap.
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
    let e = opt
        .register_slices(
            opt.default_group(),
            flat_p.slice(4..404),
            flat_g.slice(4..404),
        )
        .unwrap_err();
    assert!(matches!(e, Error::MisalignedSlice { offset: 4, .. }), "{e}");
    let a = align * 4;
    opt.register_slices(
        opt.default_group(),
        flat_p.slice(0..2 * a),
        flat_g.slice(0..2 * a),
    )
    .unwrap();
    let e = opt
        .register_slices(
            opt.default_group(),
            flat_p.slice(a..3 * a),
            flat_g.slice(a..3 * a),
        )
        .unwrap_err();
    assert!(matches!(e, Error::AliasedBuffer(_)), "{e}");
    let e = opt
        .register_slices(
            opt.default_group(),
            flat_p.slice(4 * a..5 * a),
            flat_p.slice(4 * a..5 * a),
        )
        .unwrap_err();
    assert!(matches!(e, Error::AliasedBuffer(_)), "{e}");
}

#[test]
fn lamb_norms_span_windows_and_repeat_bit_for_bit() {
    let Some(ctx) = small_limits_context() else {
        return;
    };
    // 40_000 elements: 3 windows of partial sums feed one tensor's norm.
    let (got, want, dispatches) = run(
        &ctx,
        wgpu_optim::Lamb {
            lr: 1e-3,
            weight_decay: 0.01,
            ..Default::default()
        },
        40_000,
        3,
    );
    assert_eq!(dispatches, 2 * 3 + 1, "norms, one reduction, updates");
    assert_close(&got, &want, "windowed lamb");
    let (again, _, _) = run(
        &ctx,
        wgpu_optim::Lamb {
            lr: 1e-3,
            weight_decay: 0.01,
            ..Default::default()
        },
        40_000,
        3,
    );
    assert_eq!(got, again, "two runs on one adapter differ");
}

#[test]
fn norm_reductions_are_deterministic_across_a_tensor_table() {
    let Some(ctx) = gpu() else { return };
    let lens = [1usize, 3, 1757, 100_000, 4];
    let once = || {
        let mut rng = Rng::new(3);
        let mut opt = GpuOptimizer::new(
            &ctx.device,
            &ctx.queue,
            wgpu_optim::Lars {
                lr: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        let bufs: Vec<_> = lens
            .iter()
            .map(|&n| (ctx.upload("p", &rng.vec(n)), ctx.upload("g", &rng.vec(n))))
            .collect();
        for (p, g) in &bufs {
            opt.register(opt.default_group(), p, g).unwrap();
        }
        // Per pass, a vec4 body for each tensor of 4 or more elements and a scalar tail for
        // each whose length is not a multiple of 4; then the reduction.
        let per_pass: usize = lens
            .iter()
            .map(|&n| usize::from(n >= 4) + usize::from(n % 4 != 0))
            .sum();
        assert_eq!(opt.dispatches_per_step(), 2 * per_pass + 1);
        for _ in 0..5 {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            opt.step(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
        }
        bufs.iter()
            .map(|(p, _)| ctx.read(p).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(once(), once());
}
