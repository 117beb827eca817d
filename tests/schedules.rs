//! Learning-rate schedules against PyTorch's closed forms at their boundary steps, the LLM
//! presets, composition, serialization, validation, per-group base rates, and the `schedule`
//! command. (The recorded `sched_*` cases are replayed in tests/replay.rs.)

mod common;

use std::f64::consts::PI;
use std::process::Command;

use common::scratch_dir;
use wgpu_optim::schedule::Anneal;
use wgpu_optim::{Adam, CpuOptimizer, Error, Schedule, StepScheduler};

fn s(json: &str) -> Schedule {
    json.parse().unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1e-12),
        "got {got}, want {want}"
    );
}

#[test]
fn constant_linear_polynomial_exponential() {
    let c = s(r#"{"name":"constant","factor":0.5,"total_iters":6}"#);
    for (e, f) in [(0, 0.5), (5, 0.5), (6, 1.0), (100, 1.0)] {
        close(c.lr(2.0, e).unwrap(), 2.0 * f);
    }
    let l = s(r#"{"name":"linear","start_factor":0.25,"end_factor":1.0,"total_iters":12}"#);
    close(l.lr(1.0, 0).unwrap(), 0.25);
    close(l.lr(1.0, 6).unwrap(), 0.625);
    close(l.lr(1.0, 12).unwrap(), 1.0);
    close(l.lr(1.0, 40).unwrap(), 1.0);
    let p = s(r#"{"name":"polynomial","total_iters":25,"power":2.0}"#);
    close(p.lr(1.0, 0).unwrap(), 1.0);
    close(p.lr(1.0, 5).unwrap(), 0.64);
    assert_eq!(p.lr(1.0, 25).unwrap(), 0.0);
    assert_eq!(p.lr(1.0, 30).unwrap(), 0.0);
    let x = s(r#"{"name":"exponential","gamma":0.95}"#);
    close(x.lr(0.1, 0).unwrap(), 0.1);
    close(x.lr(0.1, 10).unwrap(), 0.1 * 0.95f64.powi(10));
}

#[test]
fn step_and_multistep_at_each_milestone() {
    let st = s(r#"{"name":"step","step_size":7,"gamma":0.5}"#);
    for (e, f) in [
        (0, 1.0),
        (6, 1.0),
        (7, 0.5),
        (13, 0.5),
        (14, 0.25),
        (39, 0.5f64.powi(5)),
    ] {
        close(st.lr(1.0, e).unwrap(), f);
    }
    let m = s(r#"{"name":"multistep","milestones":[5,12,30],"gamma":0.3}"#);
    for (e, k) in [
        (0, 0),
        (4, 0),
        (5, 1),
        (11, 1),
        (12, 2),
        (29, 2),
        (30, 3),
        (99, 3),
    ] {
        close(m.lr(1.0, e).unwrap(), 0.3f64.powi(k));
    }
}

#[test]
fn cosine_at_zero_half_t_max_and_past_it() {
    let c = s(r#"{"name":"cosine","t_max":30,"eta_min":0.001}"#);
    close(c.lr(0.1, 0).unwrap(), 0.1);
    close(c.lr(0.1, 15).unwrap(), 0.001 + 0.099 / 2.0);
    close(c.lr(0.1, 30).unwrap(), 0.001);
    // PyTorch's CosineAnnealingLR keeps following the cosine past t_max.
    close(
        c.lr(0.1, 35).unwrap(),
        0.001 + 0.099 * (1.0 + (PI * 35.0 / 30.0).cos()) / 2.0,
    );
    close(c.lr(0.1, 60).unwrap(), 0.1);
}

#[test]
fn warm_restarts_restart_on_schedule() {
    let w = s(r#"{"name":"cosine_warm_restarts","t_0":8,"t_mult":2,"eta_min":0.0}"#);
    for restart in [0, 8, 24, 56] {
        close(w.lr(1.0, restart).unwrap(), 1.0);
    }
    close(w.lr(1.0, 8 + 8).unwrap(), 0.5);
    close(
        w.lr(1.0, 23).unwrap(),
        (1.0 + (PI * 15.0 / 16.0).cos()) / 2.0,
    );
    assert_eq!(w.key_epochs(60), vec![8, 24, 56]);
    let flat = s(r#"{"name":"cosine_warm_restarts","t_0":5,"t_mult":1,"eta_min":0.1}"#);
    close(flat.lr(1.0, 5).unwrap(), 1.0);
    close(flat.lr(1.0, 12).unwrap(), flat.lr(1.0, 2).unwrap());
}

#[test]
fn onecycle_phases() {
    let two = Schedule::OneCycle {
        max_lr: 0.5,
        total_steps: 50,
        pct_start: 0.3,
        anneal_strategy: Anneal::Cos,
        div_factor: 25.0,
        final_div_factor: 1e4,
        three_phase: false,
        cycle_momentum: false,
        base_momentum: 0.85,
        max_momentum: 0.95,
    };
    two.validate().unwrap();
    assert_eq!(two.momentum(3), None);
    close(two.lr(123.0, 0).unwrap(), 0.02); // the base rate is ignored, as in PyTorch
    close(two.lr(1.0, 14).unwrap(), 0.5);
    close(two.lr(1.0, 49).unwrap(), 0.02 / 1e4);
    close(two.lr(1.0, 80).unwrap(), two.lr(1.0, 50).unwrap()); // held past the end
    let three = Schedule::OneCycle {
        max_lr: 0.5,
        total_steps: 50,
        pct_start: 0.3,
        anneal_strategy: Anneal::Linear,
        div_factor: 25.0,
        final_div_factor: 1e4,
        three_phase: true,
        cycle_momentum: true,
        base_momentum: 0.85,
        max_momentum: 0.95,
    };
    close(three.lr(1.0, 14).unwrap(), 0.5);
    close(three.lr(1.0, 28).unwrap(), 0.02);
    close(three.lr(1.0, 7).unwrap(), 0.02 + (0.5 - 0.02) * 0.5);
    close(three.lr(1.0, 49).unwrap(), 0.02 / 1e4);
    // The momentum moves inversely to the rate, and stays at its top in the third phase.
    let m = |e| three.momentum(e).unwrap();
    close(m(0), 0.95);
    close(m(14), 0.85);
    close(m(7), 0.95 - 0.1 * 0.5);
    close(m(28), 0.95);
    close(m(40), 0.95);
}

#[test]
fn momentum_cycling_is_checked() {
    let with = |base: f64, max: f64| {
        format!(
            r#"{{"name":"onecycle","max_lr":0.5,"total_steps":50,"pct_start":0.3,"anneal_strategy":"cos","div_factor":25.0,"final_div_factor":10000.0,"three_phase":false,"cycle_momentum":true,"base_momentum":{base},"max_momentum":{max}}}"#
        )
    };
    let cycled: Schedule = with(0.85, 0.95).parse().unwrap();
    assert_eq!(cycled.momentum(0), Some(0.95));
    let err = with(0.85, 1.0).parse::<Schedule>().unwrap_err();
    assert!(err.to_string().contains("max_momentum"), "{err}");
    let inside = format!(
        r#"{{"name":"sequential","schedules":[{},{{"name":"constant","factor":1.0,"total_iters":1}}],"milestones":[50]}}"#,
        with(0.85, 0.95)
    );
    let err = inside.parse::<Schedule>().unwrap_err();
    assert!(err.to_string().contains("cycle the momentum"), "{err}");
}

#[test]
fn sequential_composes_and_nests() {
    let seq = s(r#"{"name":"sequential","milestones":[10],"schedules":[
        {"name":"linear","start_factor":0.1,"end_factor":1.0,"total_iters":10},
        {"name":"cosine","t_max":50,"eta_min":0.0001}]}"#);
    close(seq.lr(1e-3, 0).unwrap(), 1e-4);
    close(seq.lr(1e-3, 9).unwrap(), 1e-3 * (0.1 + 0.9 * 0.9));
    close(seq.lr(1e-3, 10).unwrap(), 1e-3);
    close(seq.lr(1e-3, 60).unwrap(), 1e-4);
    let nested = Schedule::Sequential {
        schedules: vec![seq.clone(), Schedule::Exponential { gamma: 0.5 }],
        milestones: vec![60],
    };
    nested.validate().unwrap();
    close(nested.lr(1e-3, 30).unwrap(), seq.lr(1e-3, 30).unwrap());
    close(nested.lr(1e-3, 62).unwrap(), 0.25e-3);
}

#[test]
fn llm_presets() {
    let wc = Schedule::warmup_cosine(3e-4, 100, 1000, 0.1).unwrap();
    close(wc.lr(3e-4, 0).unwrap(), 3e-6);
    close(wc.lr(3e-4, 100).unwrap(), 3e-4);
    close(wc.lr(3e-4, 1000).unwrap(), 3e-5);
    assert!(wc.lr(3e-4, 999).unwrap() > 3e-5);
    let wsd = Schedule::warmup_stable_decay(10, 20, 100, 0.0).unwrap();
    close(wsd.lr(1.0, 10).unwrap(), 1.0);
    close(wsd.lr(1.0, 79).unwrap(), 1.0);
    close(wsd.lr(1.0, 80).unwrap(), 1.0);
    close(wsd.lr(1.0, 90).unwrap(), 0.5);
    assert_eq!(wsd.lr(1.0, 100).unwrap(), 0.0);
    let no_hold = Schedule::warmup_stable_decay(10, 90, 100, 0.0).unwrap();
    close(no_hold.lr(1.0, 55).unwrap(), 0.5);
    let isq = Schedule::inverse_sqrt(100).unwrap();
    close(isq.lr(1.0, 49).unwrap(), 0.5);
    close(isq.lr(1.0, 99).unwrap(), 1.0);
    close(isq.lr(1.0, 399).unwrap(), 0.5);
    let wconst = Schedule::warmup_constant(4).unwrap();
    close(wconst.lr(1.0, 0).unwrap(), 0.25);
    close(wconst.lr(1.0, 4).unwrap(), 1.0);
    close(wconst.lr(1.0, 1000).unwrap(), 1.0);
    let cosine_only = Schedule::warmup_cosine(1.0, 0, 10, 0.0).unwrap();
    assert!(matches!(cosine_only, Schedule::Cosine { t_max: 10, .. }));
}

#[test]
fn every_schedule_round_trips_through_json() {
    let all = [
        r#"{"name":"constant","factor":0.5,"total_iters":6}"#,
        r#"{"name":"step","step_size":7,"gamma":0.5}"#,
        r#"{"name":"multistep","milestones":[5,12,30],"gamma":0.3}"#,
        r#"{"name":"exponential","gamma":0.95}"#,
        r#"{"name":"cosine","t_max":30,"eta_min":0.001}"#,
        r#"{"name":"cosine_warm_restarts","t_0":8,"t_mult":2,"eta_min":0.0}"#,
        r#"{"name":"linear","start_factor":0.25,"end_factor":1.0,"total_iters":12}"#,
        r#"{"name":"polynomial","total_iters":25,"power":2.0}"#,
        r#"{"name":"onecycle","max_lr":0.5,"total_steps":50,"pct_start":0.3,"anneal_strategy":"cos","div_factor":25.0,"final_div_factor":10000.0,"three_phase":false}"#,
        r#"{"name":"inverse_sqrt","warmup_steps":100}"#,
        r#"{"name":"sequential","milestones":[10],"schedules":[{"name":"linear","start_factor":0.1,"end_factor":1.0,"total_iters":10},{"name":"cosine","t_max":50,"eta_min":0.0001}]}"#,
    ];
    for json in all {
        let a = s(json);
        let text = serde_json::to_string(&a).unwrap();
        let want: serde_json::Value = serde_json::from_str(json).unwrap();
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, want, "serialized form differs from the format's");
        assert_eq!(s(&text), a);
    }
}

#[test]
fn invalid_schedules_are_typed_errors_naming_the_value() {
    for (json, needle) in [
        (r#"{"name":"cosine","t_max":0,"eta_min":0.0}"#, "t_max"),
        (r#"{"name":"step","step_size":3,"gamma":0.0}"#, "gamma"),
        (r#"{"name":"exponential","gamma":-0.5}"#, "-0.5"),
        (
            r#"{"name":"multistep","milestones":[5,5],"gamma":0.1}"#,
            "5 after 5",
        ),
        (
            r#"{"name":"linear","start_factor":0.0,"end_factor":1.0,"total_iters":5}"#,
            "start_factor",
        ),
        (
            r#"{"name":"sequential","milestones":[3,2],"schedules":[{"name":"exponential","gamma":1.0},{"name":"exponential","gamma":1.0},{"name":"exponential","gamma":1.0}]}"#,
            "2 after 3",
        ),
        (
            r#"{"name":"sequential","milestones":[],"schedules":[]}"#,
            "one more schedule",
        ),
        (r#"{"name":"cosine","t_max":10}"#, "eta_min"),
        (
            r#"{"name":"cosine","t_max":10,"eta_min":0.0,"extra":1}"#,
            "extra",
        ),
        (r#"{"name":"lambda"}"#, "lambda"),
        ("not json", "JSON"),
    ] {
        let e = json.parse::<Schedule>().expect_err(json);
        assert!(
            e.to_string().contains(needle),
            "{json}: {e} should mention {needle}"
        );
    }
    let e = Schedule::warmup_cosine(1e-3, 1000, 1000, 0.1).unwrap_err();
    assert!(e.to_string().contains("warm-up of 1000 steps"), "{e}");
    let e = Schedule::warmup_stable_decay(10, 95, 100, 0.1).unwrap_err();
    assert!(e.to_string().contains("decay of 95"), "{e}");
    assert!(Schedule::warmup_cosine(1e-3, 10, 100, 1.5).is_err());
    assert!(matches!(
        Schedule::inverse_sqrt(0),
        Err(Error::InvalidHyperparameter { .. })
    ));
}

#[test]
fn each_group_scales_from_its_own_base_rate() {
    let mut sched = StepScheduler::new(Adam {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    let g0 = sched.default_group();
    let g1 = sched
        .add_group(Adam {
            lr: 4e-3,
            ..Default::default()
        })
        .unwrap();
    sched
        .set_schedule(Some(s(r#"{"name":"cosine","t_max":10,"eta_min":0.0}"#)))
        .unwrap();
    for step in 1..=12 {
        let f = (1.0 + (PI * (step - 1) as f64 / 10.0).cos()) / 2.0;
        close(sched.lr(g0, step).unwrap(), 1e-3 * f);
        close(sched.lr(g1, step).unwrap(), 4e-3 * f);
    }
    // The scheduled rate reaches the kernel scalars: Adam's step size is lr / (1 - β₁ᵗ).
    let mut opt = CpuOptimizer::new(Adam {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    opt.set_schedule(Some(s(r#"{"name":"step","step_size":1,"gamma":0.5}"#)))
        .unwrap();
    let g = opt.default_group();
    opt.register(g, 1).unwrap();
    let (mut p, grad) = (vec![0.0f32], vec![1.0f32]);
    opt.step(&mut [&mut p], &[&grad]).unwrap();
    opt.step(&mut [&mut p], &[&grad]).unwrap();
    // Two steps with |m̂/√v̂| = 1: moves of lr and lr/2.
    assert!((f64::from(p[0]) + 1.5e-3).abs() < 1e-8, "{}", p[0]);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-optim"))
        .arg("schedule")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn schedule_command_prints_writes_csv_and_plots() {
    let dir = scratch_dir("schedule-cli");
    let (csv, png, svg) = (dir.join("lr.csv"), dir.join("lr.png"), dir.join("lr.svg"));
    let out = cli(&[
        "warmup-cosine",
        "--steps",
        "200",
        "--lr",
        "0.001",
        "--warmup",
        "20",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""name":"sequential""#), "{stdout}");
    assert!(stdout.contains("      21  1.000000e-3"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "step,lr");
    assert_eq!(rows.len(), 201);
    let want = Schedule::warmup_cosine(1e-3, 20, 200, 0.1).unwrap();
    for row in &rows[1..] {
        let (step, lr) = row.split_once(',').unwrap();
        let (step, lr): (u64, f64) = (step.parse().unwrap(), lr.parse().unwrap());
        close(lr, want.lr(1e-3, step - 1).unwrap());
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let json = r#"{"name":"multistep","milestones":[5,12],"gamma":0.1}"#;
    let out = cli(&[json, "--steps", "20", "--plot", svg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.contains("<svg")
            && svg_text.contains("learning rate")
            && svg_text.contains("step")
    );
}

#[test]
fn schedule_command_rejects_bad_specs() {
    let dir = scratch_dir("schedule-cli-bad");
    let plot = dir.join("x.jpg");
    for args in [
        vec!["warmup-cosine", "--steps", "10", "--warmup", "10"],
        vec![r#"{"name":"cosine","t_max":0,"eta_min":0}"#],
        vec!["no-such-preset-or-file"],
        vec!["wsd", "--plot", plot.to_str().unwrap()],
    ] {
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{stderr}");
    }
    assert!(!plot.exists());
}
