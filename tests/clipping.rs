//! Global-norm gradient clipping on the device, as `torch.nn.utils.clip_grad_norm_`: against the
//! CPU reference and torch's formula, below and above `max_norm`, deterministic.

mod common;

use common::{Rng, gpu};
use wgpu_optim::{AdamW, Algorithm, CpuOptimizer, Error, GpuContext, GpuOptimizer, Lamb, Sgd};

const LENS: [usize; 4] = [1, 3, 1757, 100_000];
const STEPS: usize = 5;

struct Run {
    params: Vec<Vec<f32>>,
    gpu_norms: Vec<f32>,
    cpu_params: Vec<Vec<f32>>,
    cpu_norms: Vec<f32>,
    torch_norms: Vec<f64>,
}

/// Steps GPU and CPU optimizers with clipping at `max_norm` (or none) on gradients of scale
/// `scale`; records the norms each side reports and torch's formula's.
fn run<O: Algorithm>(ctx: &GpuContext, config: O, max_norm: Option<f64>, scale: f32) -> Run {
    let mut rng = Rng::new(17);
    let inits: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone()).unwrap();
    let mut cpu = CpuOptimizer::new(config).unwrap();
    let bufs: Vec<_> = inits
        .iter()
        .map(|v| (ctx.upload("p", v), ctx.upload("g", &vec![0.0; v.len()])))
        .collect();
    for ((p, g), v) in bufs.iter().zip(&inits) {
        gpu.register(gpu.default_group(), p, g).unwrap();
        cpu.register(cpu.default_group(), v.len()).unwrap();
    }
    gpu.set_max_grad_norm(max_norm).unwrap();
    cpu.set_max_grad_norm(max_norm).unwrap();
    let mut cpu_params = inits.clone();
    let (mut gpu_norms, mut cpu_norms, mut torch_norms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STEPS {
        let grads: Vec<Vec<f32>> = LENS
            .iter()
            .map(|&n| rng.vec(n).iter().map(|x| x * scale).collect())
            .collect();
        for ((_, g), v) in bufs.iter().zip(&grads) {
            ctx.write(g, v);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        gpu_norms.push(gpu.read_grad_norm().unwrap());
        let mut views: Vec<&mut [f32]> = cpu_params.iter_mut().map(Vec::as_mut_slice).collect();
        let gviews: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        cpu.step(&mut views, &gviews).unwrap();
        cpu_norms.push(cpu.last_grad_norm().unwrap_or(0.0));
        torch_norms.push(
            grads
                .iter()
                .flatten()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt(),
        );
    }
    Run {
        params: bufs.iter().map(|(p, _)| ctx.read(p).unwrap()).collect(),
        gpu_norms,
        cpu_params,
        cpu_norms,
        torch_norms,
    }
}

fn assert_parity(r: &Run, label: &str) {
    for (i, (g, c)) in r.params.iter().zip(&r.cpu_params).enumerate() {
        let err = g
            .iter()
            .zip(c)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= 1e-5, "{label}: tensor {i}: max |gpu - cpu| = {err}");
    }
}

#[test]
fn clipping_above_max_norm_matches_the_cpu_and_torch() {
    let Some(ctx) = gpu() else { return };
    for (label, r) in [
        (
            "sgd",
            run(
                &ctx,
                Sgd {
                    lr: 0.1,
                    momentum: 0.9,
                    ..Default::default()
                },
                Some(1.0),
                1.0,
            ),
        ),
        (
            "adamw",
            run(
                &ctx,
                AdamW {
                    lr: 0.01,
                    ..Default::default()
                },
                Some(0.5),
                1.0,
            ),
        ),
        (
            "lamb",
            run(
                &ctx,
                Lamb {
                    lr: 0.01,
                    weight_decay: 0.01,
                    ..Default::default()
                },
                Some(2.0),
                1.0,
            ),
        ),
    ] {
        assert_parity(&r, label);
        for ((g, c), t) in r.gpu_norms.iter().zip(&r.cpu_norms).zip(&r.torch_norms) {
            // ~1e5 gradient values of |g| < 1: a norm near 180, far above every max_norm here.
            assert!(*t > 100.0);
            assert!(
                (f64::from(*g) - t).abs() <= 1e-5 * t,
                "{label}: gpu norm {g} vs torch {t}"
            );
            assert!(
                (f64::from(*c) - t).abs() <= 1e-6 * t,
                "{label}: cpu norm {c} vs torch {t}"
            );
        }
    }
    // Clipping changes the result: without it the same run ends elsewhere.
    let unclipped = run(
        &ctx,
        Sgd {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
        None,
        1.0,
    );
    let clipped = run(
        &ctx,
        Sgd {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
        Some(1.0),
        1.0,
    );
    assert_ne!(unclipped.params, clipped.params);
}

#[test]
fn the_update_uses_torchs_coefficient() {
    // Plain SGD with lr 1 moves each parameter by coefficient · g: after STEPS steps the total
    // move is Σ_t min(1, max_norm / (‖g_t‖ + 1e-6)) · g_t, computed here in f64 from torch's
    // formula and the same gradients.
    let Some(ctx) = gpu() else { return };
    let r = run(
        &ctx,
        Sgd {
            lr: 1.0,
            ..Default::default()
        },
        Some(1.0),
        1.0,
    );
    let mut rng = Rng::new(17);
    let inits: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
    let mut want: Vec<Vec<f64>> = inits
        .iter()
        .map(|v| v.iter().map(|&x| f64::from(x)).collect())
        .collect();
    for t in 0..STEPS {
        let grads: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
        let coef = (1.0 / (r.torch_norms[t] + 1e-6)).min(1.0);
        for (w, g) in want.iter_mut().zip(&grads) {
            for (x, &gi) in w.iter_mut().zip(g) {
                *x -= coef * f64::from(gi);
            }
        }
    }
    for (got, w) in r.params.iter().zip(&want) {
        let err = got
            .iter()
            .zip(w)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "max |gpu - torch formula| = {err}");
    }
}

#[test]
fn below_max_norm_nothing_changes_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    // Gradients scaled so the global norm is ~1.8, under max_norm 10: the coefficient is 1.
    let clipped = run(
        &ctx,
        AdamW {
            lr: 0.01,
            ..Default::default()
        },
        Some(10.0),
        0.01,
    );
    let plain = run(
        &ctx,
        AdamW {
            lr: 0.01,
            ..Default::default()
        },
        None,
        0.01,
    );
    assert!(clipped.torch_norms.iter().all(|&n| n < 10.0));
    assert_eq!(clipped.params, plain.params);
    assert_parity(&clipped, "adamw below max_norm");
    assert!(
        plain.gpu_norms.iter().all(|&n| n == 0.0),
        "no norm is computed while clipping is off"
    );
}

/// `max_norm = inf` (torch's way to log the norm only): the norm is computed on both backends,
/// and the updates are bit for bit those without clipping, however large the gradients.
#[test]
fn an_infinite_max_norm_logs_the_norm_and_clips_nothing() {
    let Some(ctx) = gpu() else { return };
    let config = AdamW {
        lr: 0.01,
        ..Default::default()
    };
    let logged = run(&ctx, config, Some(f64::INFINITY), 100.0);
    let plain = run(&ctx, config, None, 100.0);
    assert_eq!(logged.params, plain.params);
    assert_eq!(logged.cpu_params, plain.cpu_params);
    assert_parity(&logged, "adamw, max_norm inf");
    assert!(logged.torch_norms.iter().all(|&n| n > 1000.0));
    let norms = logged.gpu_norms.iter().zip(&logged.cpu_norms);
    for ((&g, &c), &t) in norms.zip(&logged.torch_norms) {
        assert!(
            (f64::from(g) - t).abs() <= 1e-5 * t,
            "gpu norm {g}, torch {t}"
        );
        assert!(
            (f64::from(c) - t).abs() <= 1e-5 * t,
            "cpu norm {c}, torch {t}"
        );
    }
    // A checkpoint keeps it.
    let mut cpu = CpuOptimizer::new(Sgd::default()).unwrap();
    cpu.register(cpu.default_group(), 3).unwrap();
    cpu.set_max_grad_norm(Some(f64::INFINITY)).unwrap();
    let path = common::scratch_dir("clip-inf").join("inf.safetensors");
    cpu.save_checkpoint(&path).unwrap();
    let loaded = wgpu_optim::Checkpoint::load(&path).unwrap();
    assert_eq!(loaded.max_grad_norm, Some(f32::INFINITY));
    let mut other = CpuOptimizer::new(Sgd::default()).unwrap();
    other.register(other.default_group(), 3).unwrap();
    other.restore(&loaded).unwrap();
}

#[test]
fn clipping_is_deterministic_and_validated() {
    let Some(ctx) = gpu() else { return };
    let a = run(
        &ctx,
        Lamb {
            lr: 0.01,
            ..Default::default()
        },
        Some(1.0),
        1.0,
    );
    let b = run(
        &ctx,
        Lamb {
            lr: 0.01,
            ..Default::default()
        },
        Some(1.0),
        1.0,
    );
    assert_eq!(a.params, b.params);
    assert_eq!(a.gpu_norms, b.gpu_norms);
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Sgd::default()).unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY, 1e39] {
        let e = opt.set_max_grad_norm(Some(bad)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidHyperparameter {
                    name: "max_norm",
                    ..
                }
            ),
            "{e}"
        );
    }
    let mut cpu = CpuOptimizer::new(Sgd::default()).unwrap();
    assert!(cpu.set_max_grad_norm(Some(-2.0)).is_err());
}

#[test]
fn tails_and_unaligned_gradients_count_toward_the_norm() {
    // Gradients zero except in the last len % 4 elements, which the vec4 sums leave to a scalar
    // tail (all of a tensor of 1 or 3): the norm is exactly √(3² + 4² + 12²) = 13. The same on
    // the f32 kernels.
    let Some(ctx) = gpu() else { return };
    for scalar_only in [false, true] {
        let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Sgd::default()).unwrap();
        opt.set_scalar_only(scalar_only);
        let mut bufs = Vec::new();
        for (len, last) in [(1usize, 3.0f32), (3, 4.0), (1757, 12.0)] {
            let mut g = vec![0.0; len];
            g[len - 1] = last;
            let (p, gb) = (ctx.upload("p", &vec![0.0; len]), ctx.upload("g", &g));
            opt.register(opt.default_group(), &p, &gb).unwrap();
            bufs.push((p, gb));
        }
        opt.set_max_grad_norm(Some(1.0)).unwrap();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let norm = opt.read_grad_norm().unwrap();
        assert_eq!(norm, 13.0, "scalar only: {scalar_only}");
    }
}
