//! CPU reference vs GPU kernels: every optimizer, every option combination, parameters and state.
//!
//! Tolerance, and why. Both sides compute in f32 from identical inputs and identical host
//! scalars, so they differ only where WGSL lets the GPU round differently: `sqrt` and `/` may be
//! off by up to ~3 ULP, and `a * b + c` may be fused. Each step's update therefore differs by a
//! few ULP relative (~1e-6 at most), which 20 steps accumulate to ~1e-5 of the displacement at
//! worst. So after 20 steps:
//!
//! - parameter: `|gpu - cpu| ≤ 1e-4 · max|cpu - init| + 32 ε · max|cpu|`: 10× above the
//!   worst rounding drift, yet 100× below the ≥ 1e-2 relative change of any wrong formula
//!   (a missing bias correction, dampening, a wrong sign or flag);
//! - state: `|gpu - cpu| ≤ 1e-5 · |cpu| + 1e-6 · max|cpu|`: relative, with an absolute floor for
//!   entries that pass through zero by cancellation.
//!
//! Lengths 1, 3, 4, 1757 and 1_000_003 cover a lone element, partial vectors (a vec4 body and a
//! scalar tail, or a tail alone), partial workgroups and a buffer of ~1000 workgroups, all in one
//! optimizer. The f32 kernels that step tensors not 16-byte aligned are checked the same way.

mod common;

use common::{Rng, gpu};
use wgpu_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, CpuOptimizer,
    GpuContext, GpuOptimizer, Lamb, Lars, Lion, NAdam, ParamId, RAdam, RmsProp, Rprop,
    ScheduleFreeAdamW, Sgd,
};

const LENS: [usize; 5] = [1, 3, 4, 1757, 1_000_003];
const STEPS: usize = 20;

/// Largest |a - b| / tolerance over a tensor; ≤ 1 passes.
fn worst_ratio(got: &[f32], want: &[f32], tol: impl Fn(f32) -> f64) -> (f64, usize) {
    let mut worst = (0.0, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - f64::from(w)).abs();
        let r = if err.is_nan() {
            f64::INFINITY
        } else {
            err / tol(w)
        };
        if r > worst.0 {
            worst = (r, i);
        }
    }
    worst
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max)
}

/// Which GPU kernels step the registered tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernels {
    /// The vec4 kernels (with scalar tails), as for every 16-byte-aligned tensor.
    Vec4,
    /// The f32 kernels, as for tensors that do not start 16-byte aligned.
    Scalar,
    /// Alternating: one optimizer holding tensors of both kinds.
    Mixed,
}

/// Runs `groups` (each a config and the lengths registered in it) for STEPS steps on both
/// backends from the same inputs, then compares every parameter and every state.
fn check<O: Algorithm>(ctx: &GpuContext, label: &str, groups: &[(O, &[usize])]) {
    check_with(ctx, label, groups, Kernels::Vec4);
}

/// As [`check`], with the GPU's tensors stepped by `kernels`.
fn check_with<O: Algorithm>(
    ctx: &GpuContext,
    label: &str,
    groups: &[(O, &[usize])],
    kernels: Kernels,
) {
    let label = &format!("{label} ({kernels:?})");
    let mut rng = Rng::new(0x5eed ^ label.len() as u64);
    let mut cpu = CpuOptimizer::new(groups[0].0.clone()).unwrap();
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, groups[0].0.clone()).unwrap();
    let mut inits = Vec::new();
    let mut params = Vec::new();
    let mut ids = Vec::new();
    let mut buffers = Vec::new();
    for (g, (config, lens)) in groups.iter().enumerate() {
        let (cg, gg) = if g == 0 {
            (gpu.default_group(), gpu.default_group())
        } else {
            (
                cpu.add_param_group(config.clone()).unwrap(),
                gpu.add_param_group(config.clone()).unwrap(),
            )
        };
        for &len in *lens {
            let init = rng.vec(len);
            let p = ctx.upload("param", &init);
            let gr = ctx.upload("grad", &vec![0.0; len]);
            gpu.set_scalar_only(match kernels {
                Kernels::Vec4 => false,
                Kernels::Scalar => true,
                Kernels::Mixed => ids.len() % 2 == 1,
            });
            let id: ParamId = gpu.register(gg, &p, &gr).unwrap();
            assert_eq!(cpu.register(cg, len).unwrap(), id);
            params.push(init.clone());
            inits.push(init);
            ids.push(id);
            buffers.push((p, gr));
        }
    }
    for _ in 0..STEPS {
        let grads: Vec<Vec<f32>> = params.iter().map(|p| rng.vec(p.len())).collect();
        for ((_, gb), g) in buffers.iter().zip(&grads) {
            ctx.write(gb, g);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        cpu.step(&mut views, &grad_views).unwrap();
    }
    for (k, &id) in ids.iter().enumerate() {
        let len = params[k].len();
        let got = ctx.read(&buffers[k].0).unwrap();
        let want = &params[k];
        let displacement = want
            .iter()
            .zip(&inits[k])
            .map(|(&w, &i)| f64::from((w - i).abs()))
            .fold(0.0, f64::max);
        assert!(
            displacement > 0.0,
            "{label}: len {len}: the parameter never moved"
        );
        let floor = 32.0 * f64::from(f32::EPSILON) * max_abs(want);
        let (r, i) = worst_ratio(&got, want, |_| 1e-4 * displacement + floor);
        assert!(
            r <= 1.0,
            "{label}: len {len}: param[{i}] gpu {} vs cpu {} ({r:.2} × tolerance)",
            got[i],
            want[i]
        );
        for &name in O::STATE_NAMES {
            let (cs, gs) = (cpu.state(id, name), gpu.read_state(id, name).unwrap());
            assert_eq!(
                cs.is_some(),
                gs.is_some(),
                "{label}: state {name} kept on one side only"
            );
            let (Some(cs), Some(gs)) = (cs, gs) else {
                continue;
            };
            let floor = 1e-6 * max_abs(cs);
            let (r, i) = worst_ratio(&gs, cs, |w| 1e-5 * f64::from(w.abs()) + floor);
            assert!(
                r <= 1.0,
                "{label}: len {len}: {name}[{i}] gpu {} vs cpu {} ({r:.2} × tolerance)",
                gs[i],
                cs[i]
            );
        }
    }
}

fn all<O: Algorithm>(ctx: &GpuContext, configs: Vec<O>) {
    for c in configs {
        check(ctx, &format!("{c:?}"), &[(c.clone(), &LENS)]);
    }
}

#[test]
fn sgd_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        for (momentum, dampening, nesterov) in [
            (0.0, 0.0, false),
            (0.9, 0.0, false),
            (0.9, 0.3, false),
            (0.9, 0.0, true),
        ] {
            configs.push(Sgd {
                lr: 0.05,
                momentum,
                dampening,
                nesterov,
                weight_decay: 1e-2,
                maximize,
            });
        }
    }
    all(&ctx, configs);
}

#[test]
fn adam_and_adamw_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut adam = Vec::new();
    let mut adamw = Vec::new();
    for amsgrad in [false, true] {
        for maximize in [false, true] {
            adam.push(Adam {
                lr: 0.01,
                weight_decay: 1e-2,
                amsgrad,
                maximize,
                ..Default::default()
            });
            adamw.push(AdamW {
                lr: 0.01,
                weight_decay: 0.1,
                amsgrad,
                maximize,
                ..Default::default()
            });
        }
    }
    adam.push(Adam {
        lr: 0.01,
        betas: (0.8, 0.95),
        weight_decay: 0.05,
        decoupled_weight_decay: true,
        ..Default::default()
    });
    all(&ctx, adam);
    all(&ctx, adamw);
}

#[test]
fn rmsprop_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for centered in [false, true] {
        for momentum in [0.0, 0.9] {
            for maximize in [false, true] {
                configs.push(RmsProp {
                    lr: 0.01,
                    alpha: 0.9,
                    weight_decay: 1e-3,
                    momentum,
                    centered,
                    maximize,
                    ..Default::default()
                });
            }
        }
    }
    all(&ctx, configs);
}

#[test]
fn adagrad_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        configs.push(Adagrad {
            lr: 0.05,
            maximize,
            ..Default::default()
        });
        configs.push(Adagrad {
            lr: 0.05,
            lr_decay: 0.01,
            weight_decay: 1e-3,
            initial_accumulator_value: 0.1,
            maximize,
            ..Default::default()
        });
    }
    all(&ctx, configs);
}

#[test]
fn radam_every_option() {
    // 20 steps with β₂ = 0.999 cross from the un-rectified (ρₜ ≤ 5) to the rectified branch.
    let Some(ctx) = gpu() else { return };
    let b = RAdam::default();
    assert!(b.rho(1).0 <= 5.0 && b.rho(20).0 > 5.0);
    let mut configs = Vec::new();
    for decoupled_weight_decay in [false, true] {
        for maximize in [false, true] {
            configs.push(RAdam {
                lr: 0.01,
                weight_decay: 0.01,
                decoupled_weight_decay,
                maximize,
                ..Default::default()
            });
        }
    }
    all(&ctx, configs);
}

#[test]
fn adamax_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        configs.push(Adamax {
            maximize,
            ..Default::default()
        });
        configs.push(Adamax {
            lr: 0.01,
            betas: (0.8, 0.99),
            eps: 1e-3,
            weight_decay: 0.1,
            maximize,
        });
    }
    all(&ctx, configs);
}

#[test]
fn nadam_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        for decoupled_weight_decay in [false, true] {
            configs.push(NAdam {
                lr: 0.01,
                weight_decay: 0.1,
                decoupled_weight_decay,
                maximize,
                ..Default::default()
            });
        }
        configs.push(NAdam {
            betas: (0.8, 0.99),
            eps: 1e-3,
            momentum_decay: 0.01,
            maximize,
            ..Default::default()
        });
    }
    all(&ctx, configs);
}

#[test]
fn adadelta_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        configs.push(Adadelta {
            maximize,
            ..Default::default()
        });
        configs.push(Adadelta {
            lr: 0.5,
            rho: 0.95,
            eps: 1e-4,
            weight_decay: 0.1,
            maximize,
        });
    }
    all(&ctx, configs);
}

#[test]
fn rprop_every_option() {
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        configs.push(Rprop {
            maximize,
            ..Default::default()
        });
        configs.push(Rprop {
            lr: 0.1,
            etas: (0.3, 1.5),
            step_sizes: (1e-3, 0.2),
            maximize,
        });
    }
    all(&ctx, configs);
}

#[test]
fn asgd_every_option() {
    // t0 = 5 of 20 steps: the average is a copy for the first steps, then a running mean.
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for maximize in [false, true] {
        configs.push(Asgd {
            maximize,
            ..Default::default()
        });
        configs.push(Asgd {
            lr: 0.05,
            lambd: 1e-2,
            alpha: 0.5,
            t0: 5.0,
            weight_decay: 0.1,
            maximize,
        });
    }
    all(&ctx, configs);
}

#[test]
fn adopt_every_option() {
    // 20 steps: the first only initializes the second moment; the clipping bound (t - 1)^¼
    // binds on the early steps.
    let Some(ctx) = gpu() else { return };
    let mut configs = Vec::new();
    for nesterov in [false, true] {
        for use_clipping in [false, true] {
            configs.push(Adopt {
                nesterov,
                use_clipping,
                ..Default::default()
            });
        }
    }
    configs.push(Adopt {
        lr: 0.01,
        betas: (0.5, 0.99),
        eps: 1e-3,
        nesterov: true,
        use_clipping: true,
    });
    all(&ctx, configs);
}

#[test]
fn ademamix_every_option() {
    let Some(ctx) = gpu() else { return };
    all(
        &ctx,
        vec![
            Ademamix::default(),
            Ademamix {
                lr: 0.01,
                betas: (0.8, 0.99, 0.999),
                alpha: 8.0,
                eps: 1e-6,
                eps_root: 1e-8,
                weight_decay: 0.1,
            },
        ],
    );
}

#[test]
fn schedule_free_adamw_every_option() {
    // Warm-up within the 20 steps, the step's power in the weights, weight decay at y.
    let Some(ctx) = gpu() else { return };
    all(
        &ctx,
        vec![
            ScheduleFreeAdamW::default(),
            ScheduleFreeAdamW {
                lr: 0.01,
                betas: (0.95, 0.99),
                eps: 1e-6,
                weight_decay: 0.1,
                warmup_steps: 5,
                r: 1.0,
                weight_lr_power: 1.0,
            },
        ],
    );
}

#[test]
fn lion_lamb_lars() {
    // LAMB and LARS take per-tensor norms: the GPU sums in f32 by a fixed tree, the CPU in f64,
    // a relative difference of ~1e-6 in the trust ratio, well inside the tolerance above.
    let Some(ctx) = gpu() else { return };
    all(
        &ctx,
        vec![
            Lion {
                lr: 1e-3,
                ..Default::default()
            },
            Lion {
                lr: 1e-3,
                weight_decay: 0.1,
                betas: (0.95, 0.98),
            },
        ],
    );
    all(
        &ctx,
        vec![
            Lamb {
                lr: 1e-2,
                ..Default::default()
            },
            Lamb {
                lr: 1e-2,
                weight_decay: 0.01,
                ..Default::default()
            },
        ],
    );
    let lars = Lars {
        lr: 0.5,
        weight_decay: 1e-4,
        ..Default::default()
    };
    all(
        &ctx,
        vec![
            lars,
            Lars {
                nesterov: true,
                ..lars
            },
            Lars {
                momentum: 0.0,
                eps: 1e-3,
                ..lars
            },
        ],
    );
    // Groups with different flags in one optimizer: one reduction covers both groups' tensors.
    check(
        &ctx,
        "lars groups",
        &[
            (lars, &[3, 1757]),
            (
                Lars {
                    nesterov: true,
                    ..lars
                },
                &[1, 4],
            ),
        ],
    );
}

#[test]
fn param_groups_with_different_flags_share_one_step() {
    let Some(ctx) = gpu() else { return };
    let plain = Adam {
        lr: 0.01,
        ..Default::default()
    };
    let ams = Adam {
        lr: 0.02,
        amsgrad: true,
        weight_decay: 0.1,
        ..Default::default()
    };
    check(&ctx, "adam groups", &[(plain, &[3, 1757]), (ams, &[1, 4])]);
    let heavy = RmsProp {
        centered: true,
        momentum: 0.5,
        ..Default::default()
    };
    check(
        &ctx,
        "rmsprop groups",
        &[
            (RmsProp::default(), &[1757]),
            (heavy, &[3]),
            (RmsProp::default(), &[4]),
        ],
    );
}

#[test]
fn scalar_kernels_every_optimizer() {
    // The f32 kernels, alone and beside vec4 ones in one optimizer (where LAMB's and LARS's
    // partial sums of both kinds share one reduction).
    let Some(ctx) = gpu() else { return };
    for kernels in [Kernels::Scalar, Kernels::Mixed] {
        let lens = &LENS[..];
        check_with(
            &ctx,
            "sgd",
            &[(
                Sgd {
                    lr: 0.01,
                    momentum: 0.9,
                    nesterov: true,
                    ..Default::default()
                },
                lens,
            )],
            kernels,
        );
        let amsgrad = AdamW {
            amsgrad: true,
            ..Default::default()
        };
        check_with(&ctx, "adamw", &[(amsgrad, lens)], kernels);
        let centered = RmsProp {
            centered: true,
            momentum: 0.5,
            ..Default::default()
        };
        check_with(&ctx, "rmsprop", &[(centered, lens)], kernels);
        check_with(&ctx, "adagrad", &[(Adagrad::default(), lens)], kernels);
        check_with(&ctx, "adamax", &[(Adamax::default(), lens)], kernels);
        check_with(&ctx, "nadam", &[(NAdam::default(), lens)], kernels);
        check_with(&ctx, "adadelta", &[(Adadelta::default(), lens)], kernels);
        check_with(&ctx, "rprop", &[(Rprop::default(), lens)], kernels);
        let averaging = Asgd {
            t0: 5.0,
            ..Default::default()
        };
        check_with(&ctx, "asgd", &[(averaging, lens)], kernels);
        check_with(&ctx, "radam", &[(RAdam::default(), lens)], kernels);
        check_with(&ctx, "lion", &[(Lion::default(), lens)], kernels);
        let adopt = Adopt {
            nesterov: true,
            ..Default::default()
        };
        check_with(&ctx, "adopt", &[(adopt, lens)], kernels);
        let ademamix = Ademamix {
            weight_decay: 0.1,
            ..Default::default()
        };
        check_with(&ctx, "ademamix", &[(ademamix, lens)], kernels);
        let schedule_free = ScheduleFreeAdamW {
            warmup_steps: 4,
            weight_decay: 0.01,
            ..Default::default()
        };
        check_with(&ctx, "schedule-free", &[(schedule_free, lens)], kernels);
        let lamb = Lamb {
            lr: 1e-2,
            weight_decay: 0.01,
            ..Default::default()
        };
        check_with(&ctx, "lamb", &[(lamb, lens)], kernels);
        let lars = Lars {
            lr: 0.5,
            weight_decay: 1e-4,
            ..Default::default()
        };
        check_with(&ctx, "lars", &[(lars, lens)], kernels);
    }
}

#[test]
fn rprop_follows_torch_on_nan_gradients_and_crossed_step_bounds() {
    // torch.sign(NaN) is 0: a NaN gradient leaves its parameter where it was (in the vec4 body
    // and in the scalar tail alike); and torch.clamp(x, lo, hi) with lo > hi is hi.
    let Some(ctx) = gpu() else { return };
    let init = vec![0.5f32, -0.25, 1.0, 2.0, -3.0];
    let grad = vec![0.1f32, f32::NAN, -0.2, 0.3, f32::NAN];
    for config in [
        Rprop::default(),
        Rprop {
            step_sizes: (0.5, 0.1),
            ..Default::default()
        },
    ] {
        let mut cpu = CpuOptimizer::new(config).unwrap();
        let id = cpu.register(cpu.default_group(), init.len()).unwrap();
        let mut want = init.clone();
        let mut gpu_opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
        let (p, g) = (ctx.upload("p", &init), ctx.upload("g", &grad));
        gpu_opt.register(gpu_opt.default_group(), &p, &g).unwrap();
        for _ in 0..3 {
            cpu.step(&mut [&mut want], &[&grad]).unwrap();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            gpu_opt.step(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
        }
        let got = ctx.read(&p).unwrap();
        assert_eq!(got, want, "{config:?}");
        assert_eq!((got[1], got[4]), (init[1], init[4]), "{config:?}");
        assert!(got[0] != init[0] && got[2] != init[2], "{config:?}");
        let steps = cpu.state(id, "step_size").unwrap();
        if config.step_sizes.0 > config.step_sizes.1 {
            // Every step size is clamped to the maximum, even the NaN gradients' (factor 1).
            assert!(steps.iter().all(|&s| s == 0.1f32), "{steps:?}");
        } else {
            assert_eq!((steps[1], steps[4]), (0.01, 0.01), "{steps:?}");
        }
        let gpu_steps = gpu_opt.read_state(id, "step_size").unwrap().unwrap();
        assert_eq!(&gpu_steps, steps);
    }
}
