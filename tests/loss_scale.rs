//! Loss scaling as `torch.amp.GradScaler` with a fused optimizer, on the device: gradients are
//! unscaled inside the update, a step with an inf or NaN gradient is skipped (parameters, state
//! and step count unchanged), and the scale backs off and grows.

mod common;

use common::{Rng, gpu};
use wgpu_optim::{Adam, Algorithm, CpuOptimizer, Error, GpuContext, GpuOptimizer, LossScale, Sgd};

const LENS: [usize; 3] = [3, 1757, 64];

struct Gpu<O: Algorithm> {
    opt: GpuOptimizer<O>,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
}

fn build<O: Algorithm>(ctx: &GpuContext, config: O, scale: Option<LossScale>) -> Gpu<O> {
    build_with(ctx, config, scale, false)
}

/// As `build`, with every tensor on the f32 kernels when `scalar_only`.
fn build_with<O: Algorithm>(
    ctx: &GpuContext,
    config: O,
    scale: Option<LossScale>,
    scalar_only: bool,
) -> Gpu<O> {
    let mut rng = Rng::new(5);
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
    opt.set_scalar_only(scalar_only);
    let (mut params, mut grads) = (Vec::new(), Vec::new());
    for &n in &LENS {
        let (p, g) = (ctx.upload("p", &rng.vec(n)), ctx.upload("g", &vec![0.0; n]));
        opt.register(opt.default_group(), &p, &g).unwrap();
        params.push(p);
        grads.push(g);
    }
    opt.set_loss_scale(scale).unwrap();
    Gpu { opt, params, grads }
}

fn step<O: Algorithm>(ctx: &GpuContext, g: &mut Gpu<O>, grads: &[Vec<f32>]) {
    for (b, v) in g.grads.iter().zip(grads) {
        ctx.write(b, v);
    }
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    g.opt.step(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
}

/// Every parameter, and every state by its PyTorch key.
type Snapshot = (Vec<Vec<f32>>, Vec<(String, Vec<f32>)>);

fn snapshot<O: Algorithm>(ctx: &GpuContext, g: &Gpu<O>) -> Snapshot {
    let params = g.params.iter().map(|b| ctx.read(b).unwrap()).collect();
    let states = g
        .opt
        .checkpoint()
        .unwrap()
        .params
        .into_iter()
        .flat_map(|p| p.states)
        .collect();
    (params, states)
}

fn grads(seed: u64, scale: f32) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    LENS.iter()
        .map(|&n| rng.vec(n).iter().map(|x| x * scale).collect())
        .collect()
}

#[test]
fn an_inf_or_nan_gradient_skips_the_whole_step() {
    let Some(ctx) = gpu() else { return };
    // In a vec4 body, in a scalar tail (1757 = 4 · 439 + 1), in a tensor that is all tail, and
    // all of them again on the f32 kernels.
    let cases = [f32::INFINITY, f32::NAN, f32::NEG_INFINITY]
        .into_iter()
        .flat_map(|bad| [(bad, 1, 777), (bad, 1, 1756), (bad, 0, 2)])
        .flat_map(|c| [(c, false), (c, true)]);
    for ((bad, tensor, at), scalar_only) in cases {
        let mut g = build_with(
            &ctx,
            Adam {
                lr: 0.01,
                ..Default::default()
            },
            Some(LossScale::default()),
            scalar_only,
        );
        step(&ctx, &mut g, &grads(1, 65536.0));
        let before = snapshot(&ctx, &g);
        let mut poisoned = grads(2, 65536.0);
        poisoned[tensor][at] = bad;
        step(&ctx, &mut g, &poisoned);
        assert_eq!(
            snapshot(&ctx, &g),
            before,
            "{bad} at {tensor}[{at}] (scalar only: {scalar_only}): the skipped step changed something"
        );
        let st = g.opt.read_loss_scale().unwrap();
        assert!(st.last_step_skipped && st.skipped_steps == 1, "{st:?}");
        assert_eq!(st.scale, 32768.0, "backed off by half");
    }
}

#[test]
fn scaled_gradients_with_a_skip_equal_an_unscaled_run_without_it() {
    // Scale 1024 is a power of two, so unscaling is exact, and the step after the skip uses the
    // bias corrections of step 2, not 3: the trajectories agree bit for bit.
    let Some(ctx) = gpu() else { return };
    let scale = LossScale {
        init_scale: 1024.0,
        ..Default::default()
    };
    let mut scaled = build(
        &ctx,
        Adam {
            lr: 0.01,
            ..Default::default()
        },
        Some(scale),
    );
    let mut plain = build(
        &ctx,
        Adam {
            lr: 0.01,
            ..Default::default()
        },
        None,
    );
    step(&ctx, &mut scaled, &grads(1, 1024.0));
    step(&ctx, &mut plain, &grads(1, 1.0));
    let mut poisoned = grads(2, 1024.0);
    poisoned[0][0] = f32::NAN;
    step(&ctx, &mut scaled, &poisoned);
    // The scale is now 512: the caller scales its next loss by it.
    assert_eq!(scaled.opt.read_loss_scale().unwrap().scale, 512.0);
    for seed in 3..6 {
        step(&ctx, &mut scaled, &grads(seed, 512.0));
        step(&ctx, &mut plain, &grads(seed, 1.0));
    }
    assert_eq!(snapshot(&ctx, &scaled), snapshot(&ctx, &plain));
}

#[test]
fn the_scale_grows_after_the_interval_and_the_cpu_agrees() {
    let Some(ctx) = gpu() else { return };
    let scale = LossScale {
        init_scale: 8.0,
        growth_interval: 2,
        ..Default::default()
    };
    let config = Sgd {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut g = build(&ctx, config, Some(scale));
    let mut cpu = CpuOptimizer::new(config).unwrap();
    let mut rng = Rng::new(5);
    let mut cpu_params: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
    for &n in &LENS {
        cpu.register(cpu.default_group(), n).unwrap();
    }
    cpu.set_loss_scale(Some(scale)).unwrap();
    let mut expected = 8.0f32;
    for seed in 0..7 {
        let mut gs = grads(seed, expected);
        if seed == 4 {
            gs[2][5] = f32::INFINITY;
        }
        step(&ctx, &mut g, &gs);
        let mut views: Vec<&mut [f32]> = cpu_params.iter_mut().map(Vec::as_mut_slice).collect();
        let gv: Vec<&[f32]> = gs.iter().map(Vec::as_slice).collect();
        cpu.step(&mut views, &gv).unwrap();
        let (gpu_state, cpu_state) = (g.opt.read_loss_scale().unwrap(), cpu.loss_scale().unwrap());
        assert_eq!(gpu_state, cpu_state, "step {seed}");
        // Steps 0,1 grow (8 -> 16), 2,3 grow (-> 32), 4 backs off (-> 16), 5,6 grow (-> 32).
        expected = gpu_state.scale;
    }
    assert_eq!(expected, 32.0);
    let got: Vec<Vec<f32>> = g.params.iter().map(|b| ctx.read(b).unwrap()).collect();
    for (a, b) in got.iter().zip(&cpu_params) {
        let err = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "gpu vs cpu {err}");
    }
}

#[test]
fn bad_loss_scales_are_typed_errors() {
    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Adam::default()).unwrap();
    for (bad, needle) in [
        (
            LossScale {
                init_scale: 0.0,
                ..Default::default()
            },
            "init_scale",
        ),
        (
            LossScale {
                growth_factor: 1.0,
                ..Default::default()
            },
            "growth_factor",
        ),
        (
            LossScale {
                backoff_factor: 1.5,
                ..Default::default()
            },
            "backoff_factor",
        ),
        (
            LossScale {
                growth_interval: 0,
                ..Default::default()
            },
            "growth_interval",
        ),
    ] {
        let e = opt.set_loss_scale(Some(bad)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidHyperparameter { .. }) && e.to_string().contains(needle),
            "{e}"
        );
    }
}
