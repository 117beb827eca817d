//! Controls of a running training loop on both backends, bit for bit, in the middle of a run
//! and across checkpoints: the plateau reduction, momentum cycling, gradient accumulation and
//! unregistering a parameter; and the recorded `training-loop/` cases.

mod common;

use std::path::PathBuf;

use common::pair::Pair;
use common::{Rng, gpu};
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::schedule::Anneal;
use wgpu_optim::{
    Adagrad, AdamW, CpuOptimizer, Error, NAdam, Plateau, PlateauMode, Precision, Schedule,
    ScheduleFreeAdamW, Sgd,
};

fn training_loop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity/training-loop")
}

/// The recorded cases this crate replays, by file name; every file of the folder must be one.
const CASES: &[&str] = &[
    "adamw_accumulate",
    "adamw_ema",
    "adamw_onecycle_momentum",
    "sched_plateau",
];

fn replay_training_loop(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    let dir = training_loop_dir();
    let names: Vec<String> = common::case_files(&dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| CASES.contains(&n.as_str()))
        .collect();
    assert_eq!(names, CASES, "the recorded training-loop cases");
    for name in names {
        let path = dir.join(format!("{name}.safetensors"));
        let case = Case::load(&path).unwrap();
        // Straight through, and resumed from a checkpoint a third of the way in.
        for resume_at in [None, Some(case.steps / 3)] {
            let ours = case::replay_resuming(&case, backend, ctx.as_ref(), resume_at)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let report = case::compare(&case, &ours);
            assert!(
                report.within_tolerance(),
                "{name} on {backend:?} (resumed at {resume_at:?}): {report:?}"
            );
        }
    }
}

#[test]
fn training_loop_cases_replay_on_cpu() {
    replay_training_loop(Backend::Cpu);
}

#[test]
fn training_loop_cases_replay_on_gpu() {
    replay_training_loop(Backend::Gpu);
}

const LENS: [usize; 3] = [1757, 4096, 3];

/// A metric that improves, stalls, and improves again.
fn metric(t: usize) -> f64 {
    match t {
        0..4 => 1.0 - 0.1 * t as f64,
        4..10 => 0.7,
        _ => 0.5,
    }
}

#[test]
fn plateau_lowers_the_rate_alike_and_resumes_exactly() {
    let Some(ctx) = gpu() else { return };
    let config = Sgd {
        lr: 0.1,
        momentum: 0.9,
        ..Sgd::default()
    };
    let plateau = Plateau {
        patience: 1,
        factor: 0.5,
        cooldown: 1,
        ..Plateau::default()
    };
    let mut rng = Rng::new(5);
    let mut run = Pair::new(&ctx, config, &LENS, Precision::F32, &mut rng);
    run.gpu.set_plateau(Some(plateau)).unwrap();
    run.cpu.set_plateau(Some(plateau)).unwrap();
    let mut lowered_at = Vec::new();
    let mut resumed = None;
    for t in 0..14 {
        if t == 7 {
            resumed = Some(run.resume(&ctx, config));
        }
        let grads = run.grads(&mut rng);
        for r in std::iter::once(&mut run).chain(resumed.as_mut()) {
            r.step(&ctx, &grads);
            let (g, c) = (
                r.gpu.report_metric(metric(t)).unwrap(),
                r.cpu.report_metric(metric(t)).unwrap(),
            );
            assert_eq!(g, c, "step {t}");
        }
        if run
            .cpu
            .scheduler()
            .next_lr(run.cpu.default_group())
            .unwrap()
            < 0.1
            && lowered_at.is_empty()
        {
            lowered_at.push(t);
        }
    }
    // Bad epochs 4 and 5 pass the patience of 1: the rate halves after step 5.
    assert_eq!(lowered_at, vec![5]);
    let lr = run
        .gpu
        .scheduler()
        .next_lr(run.gpu.default_group())
        .unwrap();
    assert!(lr < 0.1 * 0.5 + 1e-12, "lr {lr}");
    run.assert_identical(&ctx, "plateau");
    let resumed = resumed.unwrap();
    resumed.assert_identical(&ctx, "plateau, resumed");
    for (a, b) in run.params.iter().zip(&resumed.params) {
        common::pair::assert_bits(a, b, "plateau: resumed against uninterrupted");
    }
    assert_eq!(
        run.gpu.scheduler().plateau().map(|(_, s)| *s),
        resumed.gpu.scheduler().plateau().map(|(_, s)| *s)
    );
}

fn one_cycle(cycle_momentum: bool) -> Schedule {
    Schedule::OneCycle {
        max_lr: 1e-2,
        total_steps: 12,
        pct_start: 0.3,
        anneal_strategy: Anneal::Cos,
        div_factor: 25.0,
        final_div_factor: 1e4,
        three_phase: false,
        cycle_momentum,
        base_momentum: 0.85,
        max_momentum: 0.95,
    }
}

#[test]
fn cycled_momentum_steps_alike_and_resumes_exactly() {
    let Some(ctx) = gpu() else { return };
    let adamw = AdamW::default();
    let sgd = Sgd {
        momentum: 0.9,
        nesterov: true,
        ..Sgd::default()
    };
    let mut rng = Rng::new(8);
    let mut adam_run = Pair::new(&ctx, adamw, &LENS, Precision::F32, &mut rng);
    let mut sgd_run = Pair::new(&ctx, sgd, &LENS, Precision::F32, &mut rng);
    let mut plain = Pair::new(&ctx, adamw, &LENS, Precision::F32, &mut Rng::new(8));
    for (run, cycled) in [(&mut adam_run, true), (&mut plain, false)] {
        run.gpu.set_schedule(Some(one_cycle(cycled))).unwrap();
        run.cpu.set_schedule(Some(one_cycle(cycled))).unwrap();
    }
    sgd_run.gpu.set_schedule(Some(one_cycle(true))).unwrap();
    sgd_run.cpu.set_schedule(Some(one_cycle(true))).unwrap();
    let mut resumed = None;
    for t in 0..12 {
        if t == 5 {
            resumed = Some(adam_run.resume(&ctx, adamw));
        }
        let grads = adam_run.grads(&mut rng);
        adam_run.step(&ctx, &grads);
        plain.step(&ctx, &grads);
        sgd_run.step(&ctx, &grads);
        if let Some(r) = resumed.as_mut() {
            r.step(&ctx, &grads);
        }
    }
    adam_run.assert_identical(&ctx, "adamw, cycled");
    sgd_run.assert_identical(&ctx, "sgd, cycled");
    let resumed = resumed.unwrap();
    for (a, b) in adam_run.params.iter().zip(&resumed.params) {
        common::pair::assert_bits(a, b, "cycled: resumed against uninterrupted");
    }
    // The cycle changes the trajectory: the same run with the group's own β₁ differs.
    assert_ne!(adam_run.params, plain.params);
}

#[test]
fn momentum_cycling_and_plateau_errors() {
    let cycle = Some(one_cycle(true));
    let invalid = |r: wgpu_optim::Result<()>| {
        assert!(matches!(r, Err(Error::InvalidOptions(_))), "{r:?}");
    };
    // Nothing to cycle, or a cycle that would add SGD's momentum buffer mid-run.
    invalid(
        CpuOptimizer::new(Adagrad::default())
            .unwrap()
            .set_schedule(cycle.clone()),
    );
    invalid(
        CpuOptimizer::new(Sgd::default())
            .unwrap()
            .set_schedule(cycle.clone()),
    );
    // NAdam keeps its β₁ for a run.
    invalid(
        CpuOptimizer::new(NAdam::default())
            .unwrap()
            .set_schedule(cycle.clone()),
    );
    // A group added, or changed, under the cycle is held to it too.
    let mut sgd = CpuOptimizer::new(Sgd {
        momentum: 0.9,
        ..Sgd::default()
    })
    .unwrap();
    sgd.set_schedule(cycle.clone()).unwrap();
    assert!(matches!(
        sgd.add_param_group(Sgd::default()),
        Err(Error::InvalidOptions(_))
    ));
    let g = sgd.default_group();
    invalid(sgd.set_group_config(g, Sgd::default()));
    // A metric with no reduction set; Schedule-Free keeps its rate.
    assert!(matches!(
        sgd.report_metric(1.0),
        Err(Error::InvalidOptions(_))
    ));
    invalid(
        CpuOptimizer::new(ScheduleFreeAdamW::default())
            .unwrap()
            .set_plateau(Some(Plateau::default())),
    );
    let bad = Plateau {
        factor: 1.5,
        mode: PlateauMode::Max,
        ..Plateau::default()
    };
    assert!(matches!(
        sgd.set_plateau(Some(bad)),
        Err(Error::InvalidHyperparameter { name: "factor", .. })
    ));
}

#[test]
fn accumulation_steps_every_k_calls_alike_and_resumes_exactly() {
    let Some(ctx) = gpu() else { return };
    let config = AdamW {
        lr: 1e-2,
        ..AdamW::default()
    };
    let k = 3;
    let mut rng = Rng::new(11);
    let mut run = Pair::new(&ctx, config, &LENS, Precision::F32, &mut rng);
    // The same optimizer without accumulation, stepped by hand with the summed gradients.
    let mut by_hand = CpuOptimizer::new(config).unwrap();
    for &n in &LENS {
        by_hand.register(by_hand.default_group(), n).unwrap();
    }
    let mut hand_params = run.params.clone();
    run.gpu.set_accumulation(k).unwrap();
    run.cpu.set_accumulation(k).unwrap();
    let mut sums: Vec<Vec<f32>> = LENS.iter().map(|&n| vec![0.0; n]).collect();
    let mut resumed = None;
    for call in 0..11u32 {
        if call == 5 {
            // Two micro-batches summed: the sums travel in the checkpoint.
            assert_eq!(run.gpu.accumulation().pending, 2);
            resumed = Some(run.resume(&ctx, config));
        }
        let grads = run.grads(&mut rng);
        for r in std::iter::once(&mut run).chain(resumed.as_mut()) {
            r.step(&ctx, &grads);
        }
        for (s, g) in sums.iter_mut().zip(&grads) {
            for (s, &g) in s.iter_mut().zip(g) {
                *s = if call % k == 0 {
                    g / k as f32
                } else {
                    *s + g / k as f32
                };
            }
        }
        if call % k == k - 1 {
            let mut views: Vec<&mut [f32]> =
                hand_params.iter_mut().map(Vec::as_mut_slice).collect();
            let grads: Vec<&[f32]> = sums.iter().map(Vec::as_slice).collect();
            by_hand.step(&mut views, &grads).unwrap();
            // The last micro-batch left the sum in the gradient buffers.
            for (i, s) in sums.iter().enumerate() {
                let held = ctx
                    .read_as(&run.buffers[i].1, Precision::F32.grad, s.len())
                    .unwrap();
                common::pair::assert_bits(&held, s, "the summed gradient");
            }
        }
        assert_eq!(run.cpu.scheduler().steps_taken(), u64::from((call + 1) / k));
    }
    assert_eq!(run.gpu.scheduler().steps_taken(), 3);
    assert_eq!(run.cpu.accumulation().pending, 2);
    run.assert_identical(&ctx, "accumulated");
    for (a, b) in run.params.iter().zip(&hand_params) {
        common::pair::assert_bits(a, b, "accumulated against summed by hand");
    }
    let resumed = resumed.unwrap();
    resumed.assert_identical(&ctx, "accumulated, resumed");
    for (a, b) in run.params.iter().zip(&resumed.params) {
        common::pair::assert_bits(a, b, "accumulated: resumed against uninterrupted");
    }
    for (i, &id) in run.ids.iter().enumerate() {
        let gpu_sum = run.gpu.read_grad_sum(id).unwrap().unwrap();
        let resumed_sum = resumed.gpu.read_grad_sum(id).unwrap().unwrap();
        common::pair::assert_bits(&gpu_sum, &sums[i], "pending sum");
        common::pair::assert_bits(&resumed_sum, &sums[i], "pending sum, resumed");
    }
    // Changing the count mid-step, no micro-batch at all, and 16-bit gradients are refused.
    assert!(matches!(
        run.gpu.set_accumulation(2),
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        run.cpu.set_accumulation(0),
        Err(Error::InvalidHyperparameter {
            name: "accumulate",
            ..
        })
    ));
    let bf16 = Precision::uniform(wgpu_optim::Dtype::Bf16);
    let mut half = Pair::new(&ctx, config, &[64], bf16, &mut rng);
    assert!(matches!(
        half.gpu.set_accumulation(2),
        Err(Error::UnsupportedPrecision { .. })
    ));
    assert!(matches!(
        half.cpu.set_accumulation(2),
        Err(Error::UnsupportedPrecision { .. })
    ));
}

/// Clipping (and so loss scaling, which reads the same buffers) sees the summed gradient: the
/// norm the device logs is the norm of the sum, once per step.
#[test]
fn accumulated_gradients_are_what_clipping_sees() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    let mut run = Pair::new(&ctx, Sgd::default(), &LENS, Precision::F32, &mut rng);
    for k in [2, 1] {
        run.gpu.set_accumulation(k).unwrap();
        run.cpu.set_accumulation(k).unwrap();
        run.gpu.set_max_grad_norm(Some(f64::INFINITY)).unwrap();
        run.cpu.set_max_grad_norm(Some(f64::INFINITY)).unwrap();
        let mut sums: Vec<Vec<f64>> = LENS.iter().map(|&n| vec![0.0; n]).collect();
        for _ in 0..k {
            let grads = run.grads(&mut rng);
            run.step(&ctx, &grads);
            for (s, g) in sums.iter_mut().zip(&grads) {
                for (s, &g) in s.iter_mut().zip(g) {
                    *s += f64::from(g / k as f32);
                }
            }
        }
        let want = sums.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let (gpu, cpu) = (
            f64::from(run.gpu.read_grad_norm().unwrap()),
            f64::from(run.cpu.last_grad_norm().unwrap()),
        );
        for got in [gpu, cpu] {
            assert!(
                (got - want).abs() <= 1e-5 * want,
                "k {k}: norm {got}, want {want}"
            );
        }
    }
}

/// Unregisters parameter 1 of 3 after a few steps: the others step on exactly as in a run that
/// kept it (their updates do not depend on it), on both backends, for an elementwise optimizer
/// and one with per-tensor norms (whose shared buffers are rebuilt), and a checkpoint taken
/// after it restores into an optimizer holding only the two.
fn unregistered<O: wgpu_optim::Algorithm>(ctx: &wgpu_optim::GpuContext, config: O) {
    let mut rng = Rng::new(41);
    let mut run = Pair::new(ctx, config.clone(), &LENS, Precision::F32, &mut rng);
    let mut kept = Pair::new(
        ctx,
        config.clone(),
        &LENS,
        Precision::F32,
        &mut Rng::new(41),
    );
    let mut gone = None;
    run.gpu.set_accumulation(2).unwrap();
    run.cpu.set_accumulation(2).unwrap();
    kept.gpu.set_accumulation(2).unwrap();
    kept.cpu.set_accumulation(2).unwrap();
    for t in 0..9 {
        if t == 3 {
            // Mid-step: one micro-batch pending.
            let id = run.ids[1];
            run.gpu.unregister(id).unwrap();
            run.cpu.unregister(id).unwrap();
            // The last id now names no parameter: the one after moved down.
            gone = run.ids.pop();
            run.params.remove(1);
            run.buffers.remove(1);
        }
        let grads = kept.grads(&mut rng);
        kept.step(ctx, &grads);
        let mine: Vec<Vec<f32>> = if t < 3 {
            grads
        } else {
            vec![grads[0].clone(), grads[2].clone()]
        };
        run.step(ctx, &mine);
    }
    let label = format!("{} after unregistering", O::NAME);
    // Each backend against itself (LAMB's norms are summed in another order on each).
    for (k, j) in [(0, 0), (1, 2)] {
        common::pair::assert_bits(&run.params[k], &kept.params[j], &format!("{label}: cpu"));
        let read = |p: &Pair<O>, i: usize| {
            ctx.read_as(&p.buffers[i].0, Precision::F32.param, LENS[j])
                .unwrap()
        };
        let (mine, theirs) = (read(&run, k), read(&kept, j));
        common::pair::assert_bits(&mine, &theirs, &format!("{label}: gpu"));
    }
    if !O::NORMS {
        run.assert_identical(ctx, &label);
    }
    // A checkpoint taken now restores into an optimizer holding the two.
    let resumed = run.resume(ctx, config);
    if !O::NORMS {
        resumed.assert_identical(ctx, &format!("{label}, resumed"));
    }
    let gone = gone.unwrap();
    assert!(matches!(
        run.gpu.unregister(gone),
        Err(Error::UnknownParam(2))
    ));
    assert!(matches!(
        run.cpu.unregister(gone),
        Err(Error::UnknownParam(2))
    ));
}

#[test]
fn unregistering_a_parameter_frees_it_and_leaves_the_others() {
    let Some(ctx) = gpu() else { return };
    unregistered(&ctx, AdamW::default());
    unregistered(&ctx, wgpu_optim::Lamb::default());
}
