//! Checkpoints: save and resume exactly, on the same backend bit for bit, across backends within
//! the parity tolerance; every bad checkpoint is a typed error that leaves the optimizer as it was.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Rng, cases_dir, gpu, scratch_dir};
use wgpu_optim::{
    Adadelta, Adafactor, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd,
    Checkpoint, CpuOptimizer, Error, GpuContext, GpuOptimizer, Lamb, Lars, Lion, NAdam, RAdam,
    RmsProp, Rprop, Schedule, Sgd,
};

const LENS: [usize; 3] = [3, 1757, 64];
const STEPS: usize = 12;
const RESUME_AT: usize = 5;

/// Gradients for every step, the same for every run.
fn grads(seed: u64) -> Vec<Vec<Vec<f32>>> {
    let mut rng = Rng::new(seed);
    (0..STEPS)
        .map(|_| LENS.iter().map(|&n| rng.vec(n)).collect())
        .collect()
}

fn inits() -> Vec<Vec<f32>> {
    let mut rng = Rng::new(99);
    LENS.iter().map(|&n| rng.vec(n)).collect()
}

fn schedule() -> Schedule {
    Schedule::warmup_cosine(1e-2, 3, STEPS as u64, 0.1).unwrap()
}

/// Two groups when `second` is given: parameter 1 goes to it.
fn cpu_opt<O: Algorithm>(groups: &[O], sched: bool) -> CpuOptimizer<O> {
    let mut opt = CpuOptimizer::new(groups[0].clone()).unwrap();
    let second = groups
        .get(1)
        .map(|g| opt.add_param_group(g.clone()).unwrap());
    for (i, &n) in LENS.iter().enumerate() {
        let g = if i == 1 {
            second.unwrap_or(opt.default_group())
        } else {
            opt.default_group()
        };
        opt.register(g, n).unwrap();
    }
    if sched {
        opt.set_schedule(Some(schedule())).unwrap();
    }
    opt
}

fn run_cpu<O: Algorithm>(
    opt: &mut CpuOptimizer<O>,
    params: &mut [Vec<f32>],
    steps: std::ops::Range<usize>,
) {
    let all = grads(7);
    for t in steps {
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let g: Vec<&[f32]> = all[t].iter().map(Vec::as_slice).collect();
        opt.step(&mut views, &g).unwrap();
    }
}

fn states<O: Algorithm>(opt: &CpuOptimizer<O>) -> Vec<Vec<f32>> {
    let c = opt.checkpoint().unwrap();
    c.params
        .into_iter()
        .flat_map(|p| p.states.into_iter().map(|s| s.1))
        .collect()
}

/// Uninterrupted vs saved after RESUME_AT steps, rebuilt from the file alone, resumed.
fn cpu_round_trip<O: Algorithm>(groups: &[O], sched: bool, dir: &Path) {
    let label = format!("{groups:?} schedule {sched}");
    let mut whole = cpu_opt(groups, sched);
    let mut p_whole = inits();
    run_cpu(&mut whole, &mut p_whole, 0..STEPS);

    let mut first = cpu_opt(groups, sched);
    let mut p = inits();
    run_cpu(&mut first, &mut p, 0..RESUME_AT);
    let path = dir.join(format!(
        "{}-{}.safetensors",
        O::NAME,
        groups.len() * 2 + sched as usize
    ));
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let ckpt = Checkpoint::load(&path).unwrap();
    let configs = ckpt.configs::<O>().unwrap();
    assert_eq!(configs.len(), groups.len());
    let mut resumed = cpu_opt(&configs, false);
    resumed.restore(&ckpt).unwrap();
    assert_eq!(resumed.scheduler().steps_taken(), RESUME_AT as u64);
    assert_eq!(resumed.scheduler().schedule().is_some(), sched);
    run_cpu(&mut resumed, &mut p, RESUME_AT..STEPS);
    assert_eq!(p, p_whole, "{label}: parameters differ after resuming");
    assert_eq!(
        states(&resumed),
        states(&whole),
        "{label}: state differs after resuming"
    );
}

#[test]
fn cpu_resume_is_bit_identical_for_every_optimizer() {
    let dir = scratch_dir("ckpt-cpu");
    for sched in [false, true] {
        cpu_round_trip(
            &[Sgd {
                lr: 0.05,
                momentum: 0.9,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                Sgd {
                    lr: 0.05,
                    ..Default::default()
                },
                Sgd {
                    lr: 0.1,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Adam {
                lr: 0.01,
                amsgrad: true,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                AdamW::default(),
                AdamW {
                    weight_decay: 0.0,
                    lr: 2e-3,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[RmsProp {
                centered: true,
                momentum: 0.5,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Adagrad {
                initial_accumulator_value: 0.1,
                lr_decay: 0.01,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(&[Lion::default()], sched, &dir);
        cpu_round_trip(
            &[Adafactor {
                weight_decay: 0.1,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                Adopt::default(),
                Adopt {
                    nesterov: true,
                    use_clipping: false,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Ademamix {
                weight_decay: 0.1,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Asgd {
                t0: 2.0,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Rprop {
                lr: 0.1,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[Adadelta {
                weight_decay: 0.1,
                ..Default::default()
            }],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                NAdam::default(),
                NAdam {
                    weight_decay: 0.1,
                    decoupled_weight_decay: true,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                Adamax::default(),
                Adamax {
                    weight_decay: 0.1,
                    maximize: true,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(
            &[
                Lamb::default(),
                Lamb {
                    weight_decay: 0.1,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
        cpu_round_trip(&[Lars::default()], sched, &dir);
        cpu_round_trip(
            &[
                RAdam::default(),
                RAdam {
                    decoupled_weight_decay: true,
                    weight_decay: 0.1,
                    ..Default::default()
                },
            ],
            sched,
            &dir,
        );
    }
}

struct Gpu<O: Algorithm> {
    opt: GpuOptimizer<O>,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
}

fn gpu_opt<O: Algorithm>(
    ctx: &GpuContext,
    groups: &[O],
    values: &[Vec<f32>],
    sched: bool,
) -> Gpu<O> {
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, groups[0].clone()).unwrap();
    let second = groups
        .get(1)
        .map(|g| opt.add_param_group(g.clone()).unwrap());
    let (mut params, mut grads) = (Vec::new(), Vec::new());
    for (i, v) in values.iter().enumerate() {
        let g = if i == 1 {
            second.unwrap_or(opt.default_group())
        } else {
            opt.default_group()
        };
        let (p, gr) = (ctx.upload("p", v), ctx.upload("g", &vec![0.0; v.len()]));
        opt.register(g, &p, &gr).unwrap();
        params.push(p);
        grads.push(gr);
    }
    if sched {
        opt.set_schedule(Some(schedule())).unwrap();
    }
    Gpu { opt, params, grads }
}

fn run_gpu<O: Algorithm>(ctx: &GpuContext, g: &mut Gpu<O>, steps: std::ops::Range<usize>) {
    let all = grads(7);
    for t in steps {
        for (b, v) in g.grads.iter().zip(&all[t]) {
            ctx.write(b, v);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        g.opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    }
}

fn read_all(ctx: &GpuContext, buffers: &[wgpu::Buffer]) -> Vec<Vec<f32>> {
    buffers.iter().map(|b| ctx.read(b).unwrap()).collect()
}

fn gpu_round_trip<O: Algorithm>(ctx: &GpuContext, groups: &[O], dir: &Path) {
    let label = format!("{groups:?}");
    let mut whole = gpu_opt(ctx, groups, &inits(), true);
    run_gpu(ctx, &mut whole, 0..STEPS);

    let mut first = gpu_opt(ctx, groups, &inits(), true);
    run_gpu(ctx, &mut first, 0..RESUME_AT);
    let path = dir.join(format!("{}.safetensors", O::NAME));
    first.opt.save_checkpoint(&path).unwrap();
    let values = read_all(ctx, &first.params);
    drop(first);
    let ckpt = Checkpoint::load(&path).unwrap();
    let mut resumed = gpu_opt(ctx, &ckpt.configs::<O>().unwrap(), &values, false);
    resumed.opt.restore(&ckpt).unwrap();
    run_gpu(ctx, &mut resumed, RESUME_AT..STEPS);
    assert_eq!(
        read_all(ctx, &resumed.params),
        read_all(ctx, &whole.params),
        "{label}: GPU resume differs"
    );
    assert_eq!(
        resumed.opt.checkpoint().unwrap().params,
        whole.opt.checkpoint().unwrap().params,
        "{label}: GPU state differs after resuming"
    );

    // Across backends: the GPU's checkpoint resumed on the CPU reference, within the parity
    // tolerance of tests/parity.rs (1e-4 of the displacement).
    let mut cpu = cpu_opt(&ckpt.configs::<O>().unwrap(), false);
    cpu.restore(&ckpt).unwrap();
    let mut p = values.clone();
    run_cpu(&mut cpu, &mut p, RESUME_AT..STEPS);
    let gpu_final = read_all(ctx, &whole.params);
    for ((c, g), v) in p.iter().zip(&gpu_final).zip(&values) {
        let moved = c
            .iter()
            .zip(v)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let err = c
            .iter()
            .zip(g)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            moved > 0.0 && err <= 1e-4 * moved + 1e-6,
            "{label}: cpu {err} off after moving {moved}"
        );
    }
}

#[test]
fn gpu_resume_is_bit_identical_and_crosses_to_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("ckpt-gpu");
    gpu_round_trip(
        &ctx,
        &[Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[
            Adam {
                lr: 0.01,
                amsgrad: true,
                ..Default::default()
            },
            Adam::default(),
        ],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[AdamW {
            lr: 0.01,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[RmsProp {
            centered: true,
            momentum: 0.5,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[Adagrad {
            initial_accumulator_value: 0.1,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[RAdam {
            lr: 0.01,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(&ctx, &[Adadelta::default()], &dir);
    gpu_round_trip(&ctx, &[Adafactor::default()], &dir);
    gpu_round_trip(
        &ctx,
        &[Adopt {
            lr: 0.01,
            nesterov: true,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[Ademamix {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(&ctx, &[Rprop::default()], &dir);
    gpu_round_trip(
        &ctx,
        &[Asgd {
            t0: 2.0,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[NAdam {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        }],
        &dir,
    );
    gpu_round_trip(
        &ctx,
        &[Adamax {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        }],
        &dir,
    );
}

#[test]
fn cpu_checkpoint_resumes_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("ckpt-cpu-to-gpu");
    let groups = [AdamW {
        lr: 0.01,
        ..Default::default()
    }];
    let mut cpu = cpu_opt(&groups, true);
    let mut p = inits();
    run_cpu(&mut cpu, &mut p, 0..RESUME_AT);
    let path = dir.join("cpu.safetensors");
    cpu.save_checkpoint(&path).unwrap();
    let at_resume = p.clone();
    run_cpu(&mut cpu, &mut p, RESUME_AT..STEPS);
    let mut g = gpu_opt(&ctx, &groups, &at_resume, false);
    g.opt.load_checkpoint(&path).unwrap();
    run_gpu(&ctx, &mut g, RESUME_AT..STEPS);
    for ((c, gp), v) in p.iter().zip(read_all(&ctx, &g.params)).zip(&at_resume) {
        let moved = c
            .iter()
            .zip(v)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let err = c
            .iter()
            .zip(&gp)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            err <= 1e-4 * moved + 1e-6,
            "gpu {err} off after moving {moved}"
        );
    }
}

#[test]
fn bad_checkpoints_are_typed_errors_and_change_nothing() {
    let dir = scratch_dir("ckpt-bad");
    let mut adam = cpu_opt(
        &[Adam {
            lr: 0.01,
            ..Default::default()
        }],
        true,
    );
    let mut p = inits();
    run_cpu(&mut adam, &mut p, 0..3);
    let good = dir.join("adam.safetensors");
    adam.save_checkpoint(&good).unwrap();
    assert!(
        !dir.join("adam.safetensors.tmp").exists(),
        "the temporary file was renamed away"
    );
    let bytes = std::fs::read(&good).unwrap();

    // A target that differs from the saved one in a way the load must catch.
    let mut target = cpu_opt(
        &[Adam {
            lr: 0.01,
            ..Default::default()
        }],
        false,
    );
    run_cpu(&mut target, &mut inits(), 0..1);
    let before = (
        target.checkpoint().unwrap(),
        target.scheduler().steps_taken(),
    );

    let write = |name: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let truncated = write("truncated.safetensors", &bytes[..bytes.len() - 100]);
    let empty = write("empty.safetensors", b"");
    let garbage = write(
        "garbage.safetensors",
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    );
    let mut other_version = bytes.clone();
    let at = other_version
        .windows(24)
        .position(|w| w == b"wgpu-optim-checkpoint/1\"")
        .unwrap();
    other_version[at + 22] = b'7';
    let version = write("version.safetensors", &other_version);
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 8..].copy_from_slice(&f32::NAN.to_le_bytes().repeat(2)); // the data, not the header
    let flipped = write("flipped-data.safetensors", &flipped);
    for (path, needle) in [
        (truncated.as_path(), "safetensors"),
        (empty.as_path(), "safetensors"),
        (garbage.as_path(), "safetensors"),
        (version.as_path(), "checkpoint/7"),
        (flipped.as_path(), "checksum"),
        (
            dir.join("missing.safetensors").as_path(),
            "missing.safetensors",
        ),
    ] {
        let e = target
            .load_checkpoint(path)
            .expect_err(&path.display().to_string());
        assert!(e.to_string().contains(needle), "{}: {e}", path.display());
    }

    // Valid files that do not fit.
    let mut sgd = cpu_opt(
        &[Sgd {
            momentum: 0.9,
            ..Default::default()
        }],
        false,
    );
    run_cpu(&mut sgd, &mut inits(), 0..2);
    let sgd_path = dir.join("sgd.safetensors");
    sgd.save_checkpoint(&sgd_path).unwrap();
    let e = target.load_checkpoint(&sgd_path).unwrap_err();
    assert!(
        matches!(e, Error::CheckpointMismatch(_)) && e.to_string().contains("sgd"),
        "{e}"
    );
    let mut other_shapes = CpuOptimizer::new(Adam::default()).unwrap();
    for n in [3, 1758, 64] {
        other_shapes
            .register(other_shapes.default_group(), n)
            .unwrap();
    }
    let e = other_shapes.load_checkpoint(&good).unwrap_err();
    assert!(e.to_string().contains("1757"), "{e}");
    let mut amsgrad = cpu_opt(
        &[Adam {
            amsgrad: true,
            ..Default::default()
        }],
        false,
    );
    let e = amsgrad.load_checkpoint(&good).unwrap_err();
    assert!(e.to_string().contains("AMSGRAD"), "{e}");
    let mut two_groups = cpu_opt(&[Adam::default(), Adam::default()], false);
    let e = two_groups.load_checkpoint(&good).unwrap_err();
    assert!(e.to_string().contains("parameter groups"), "{e}");

    assert_eq!(
        (
            target.checkpoint().unwrap(),
            target.scheduler().steps_taken()
        ),
        before,
        "a failed load changed the optimizer"
    );

    // The GPU optimizer refuses the same way and keeps its state.
    if let Some(ctx) = gpu() {
        let mut g = gpu_opt(
            &ctx,
            &[Adam {
                lr: 0.01,
                ..Default::default()
            }],
            &inits(),
            false,
        );
        run_gpu(&ctx, &mut g, 0..1);
        let before = g.opt.checkpoint().unwrap();
        for path in [&truncated, &version, &sgd_path] {
            assert!(g.opt.load_checkpoint(path).is_err());
        }
        assert_eq!(g.opt.checkpoint().unwrap(), before);
    }
    // Saving into a directory that does not exist fails and leaves nothing behind.
    let nowhere = dir.join("no/such/dir/x.safetensors");
    assert!(matches!(
        adam.save_checkpoint(&nowhere),
        Err(Error::Io { .. })
    ));
}

#[test]
fn replay_resume_at_gives_the_same_bytes() {
    let has_gpu = gpu().is_some();
    let dir = scratch_dir("ckpt-replay");
    let exe = env!("CARGO_BIN_EXE_wgpu-optim");
    for case in [
        "adamw_warmup_cosine",
        "adamw_param_groups",
        "rmsprop_centered_momentum",
        "radam",
    ] {
        let path = cases_dir().join(format!("{case}.safetensors"));
        for backend in ["cpu", "gpu"] {
            if backend == "gpu" && !has_gpu {
                continue;
            }
            let run = |extra: &[&str], out: &Path| {
                let o = Command::new(exe)
                    .args(["replay", "--backend", backend, "--out"])
                    .arg(out)
                    .args(extra)
                    .arg(&path)
                    .output()
                    .unwrap();
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&o.stderr)
                );
                std::fs::read(out).unwrap()
            };
            let whole = run(&[], &dir.join("whole.safetensors"));
            let resumed = run(&["--resume-at", "23"], &dir.join("resumed.safetensors"));
            assert!(
                whole == resumed,
                "{case} on {backend}: --resume-at changed the output"
            );
        }
    }
    for bad in ["0", "50"] {
        let o = Command::new(exe)
            .args(["replay", "--backend", "cpu", "--resume-at", bad])
            .arg(cases_dir().join("adam.safetensors"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--resume-at"));
    }
}
