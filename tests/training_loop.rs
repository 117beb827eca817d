//! Controls of a running training loop on both backends, bit for bit, in the middle of a run
//! and across checkpoints: the plateau reduction and momentum cycling; and the recorded
//! `training-loop/` cases.

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
const CASES: &[&str] = &["adamw_onecycle_momentum", "sched_plateau"];

fn replay_training_loop(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    let dir = training_loop_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| CASES.contains(&n.as_str()))
        .collect();
    names.sort();
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
