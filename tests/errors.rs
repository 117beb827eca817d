//! Bad input gets a typed error naming the offending value: never a panic, never a partial
//! update, never an output file.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cases_dir, gpu, scratch_dir};
use safetensors::SafeTensors;
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, CpuOptimizer, Error,
    GpuOptimizer, Lamb, Lars, Lion, NAdam, RAdam, RmsProp, Rprop, ScheduleFreeAdamW, Sgd,
};

fn rejects<O: Algorithm>(config: O, needle: &str) {
    let e = config
        .validate()
        .expect_err(&format!("{config:?} should be rejected"));
    assert!(
        e.to_string().contains(needle),
        "{config:?}: {e} should mention {needle}"
    );
    assert!(CpuOptimizer::new(config).is_err());
}

#[test]
fn hyperparameters_outside_pytorch_ranges() {
    rejects(
        Sgd {
            lr: -0.1,
            ..Default::default()
        },
        "lr",
    );
    rejects(
        Sgd {
            lr: -0.1,
            ..Default::default()
        },
        "-0.1",
    );
    rejects(
        Sgd {
            lr: f64::NAN,
            ..Default::default()
        },
        "NaN",
    );
    rejects(
        Sgd {
            momentum: -0.5,
            ..Default::default()
        },
        "-0.5",
    );
    rejects(
        Sgd {
            weight_decay: -1e-4,
            ..Default::default()
        },
        "weight_decay",
    );
    rejects(
        Sgd {
            nesterov: true,
            ..Default::default()
        },
        "momentum 0",
    );
    rejects(
        Sgd {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..Default::default()
        },
        "dampening 0.1",
    );
    rejects(
        Adam {
            betas: (1.0, 0.999),
            ..Default::default()
        },
        "betas[0]",
    );
    rejects(
        Adam {
            betas: (0.9, -0.1),
            ..Default::default()
        },
        "betas[1]",
    );
    rejects(
        Adam {
            eps: f64::INFINITY,
            ..Default::default()
        },
        "eps",
    );
    rejects(
        AdamW {
            weight_decay: -0.01,
            ..Default::default()
        },
        "-0.01",
    );
    rejects(
        RmsProp {
            alpha: -0.9,
            ..Default::default()
        },
        "alpha",
    );
    rejects(
        RmsProp {
            momentum: -0.1,
            ..Default::default()
        },
        "momentum",
    );
    rejects(
        Adagrad {
            lr_decay: -1.0,
            ..Default::default()
        },
        "lr_decay",
    );
    rejects(
        Adagrad {
            initial_accumulator_value: -1.0,
            ..Default::default()
        },
        "initial_accumulator_value",
    );
    rejects(
        Adopt {
            betas: (0.9, 1.0),
            ..Default::default()
        },
        "betas[1]",
    );
    rejects(
        Adopt {
            eps: -1.0,
            ..Default::default()
        },
        "eps",
    );
    rejects(
        Ademamix {
            betas: (0.9, 0.999, 1.0),
            ..Default::default()
        },
        "betas[2]",
    );
    rejects(
        Ademamix {
            alpha: f64::NAN,
            ..Default::default()
        },
        "alpha",
    );
    rejects(
        Asgd {
            t0: f64::NAN,
            ..Default::default()
        },
        "t0",
    );
    rejects(
        Rprop {
            etas: (1.5, 1.2),
            ..Default::default()
        },
        "etas[0]",
    );
    rejects(
        Rprop {
            etas: (0.5, 1.0),
            ..Default::default()
        },
        "etas[1]",
    );
    rejects(
        Adadelta {
            rho: 1.5,
            ..Default::default()
        },
        "rho",
    );
    rejects(
        NAdam {
            momentum_decay: -1e-3,
            ..Default::default()
        },
        "momentum_decay",
    );
    rejects(
        Adamax {
            betas: (0.9, 1.0),
            ..Default::default()
        },
        "betas[1]",
    );
    rejects(
        Adamax {
            eps: -1e-8,
            ..Default::default()
        },
        "eps",
    );
    rejects(
        RAdam {
            betas: (0.9, 1.5),
            ..Default::default()
        },
        "1.5",
    );
    rejects(
        Lion {
            betas: (-0.1, 0.99),
            ..Default::default()
        },
        "betas[0]",
    );
    rejects(
        Lamb {
            eps: -1e-6,
            ..Default::default()
        },
        "eps",
    );
    rejects(
        Lars {
            trust_coefficient: -1.0,
            ..Default::default()
        },
        "trust_coefficient",
    );
    // PyTorch's defaults themselves are valid.
    Sgd::default().validate().unwrap();
    Adam::default().validate().unwrap();
    AdamW::default().validate().unwrap();
    RmsProp::default().validate().unwrap();
    Adagrad::default().validate().unwrap();
    RAdam::default().validate().unwrap();
    Adamax::default().validate().unwrap();
    NAdam::default().validate().unwrap();
    Adadelta::default().validate().unwrap();
    Rprop::default().validate().unwrap();
    Asgd::default().validate().unwrap();
    Adopt::default().validate().unwrap();
    Ademamix::default().validate().unwrap();
    ScheduleFreeAdamW::default().validate().unwrap();
    // PyTorch's range for rho is [0, 1], both ends included.
    Adadelta {
        rho: 1.0,
        ..Default::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn defaults_are_pytorchs() {
    assert_eq!(Sgd::default().lr, 1e-3);
    let a = Adam::default();
    assert_eq!(
        (a.lr, a.betas, a.eps, a.weight_decay),
        (1e-3, (0.9, 0.999), 1e-8, 0.0)
    );
    assert_eq!(AdamW::default().weight_decay, 0.01);
    let r = RmsProp::default();
    assert_eq!((r.lr, r.alpha, r.eps), (1e-2, 0.99, 1e-8));
    let g = Adagrad::default();
    assert_eq!(
        (g.lr, g.eps, g.initial_accumulator_value),
        (1e-2, 1e-10, 0.0)
    );
    let d = RAdam::default();
    assert_eq!((d.lr, d.betas, d.eps), (1e-3, (0.9, 0.999), 1e-8));
    let o = Adopt::default();
    assert_eq!(
        (o.lr, o.betas, o.eps, o.nesterov, o.use_clipping),
        (1e-3, (0.9, 0.9999), 1e-6, false, true)
    );
    let x = Ademamix::default();
    assert_eq!(
        (x.lr, x.betas, x.alpha, x.eps, x.eps_root, x.weight_decay),
        (1e-3, (0.9, 0.999, 0.9999), 5.0, 1e-8, 0.0, 0.0)
    );
    let s = ScheduleFreeAdamW::default();
    assert_eq!(
        (s.lr, s.betas, s.eps, s.weight_decay),
        (2.5e-3, (0.9, 0.999), 1e-8, 0.0)
    );
    assert_eq!((s.warmup_steps, s.r, s.weight_lr_power), (0, 0.0, 2.0));
    let g = Asgd::default();
    assert_eq!(
        (g.lr, g.lambd, g.alpha, g.t0, g.weight_decay, g.maximize),
        (1e-2, 1e-4, 0.75, 1e6, 0.0, false)
    );
    let r = Rprop::default();
    assert_eq!(
        (r.lr, r.etas, r.step_sizes, r.maximize),
        (1e-2, (0.5, 1.2), (1e-6, 50.0), false)
    );
    let a = Adadelta::default();
    assert_eq!(
        (a.lr, a.rho, a.eps, a.weight_decay, a.maximize),
        (1.0, 0.9, 1e-6, 0.0, false)
    );
    let n = NAdam::default();
    assert_eq!(
        (n.lr, n.betas, n.eps, n.weight_decay, n.momentum_decay),
        (2e-3, (0.9, 0.999), 1e-8, 0.0, 4e-3)
    );
    assert!(!n.decoupled_weight_decay && !n.maximize);
    let x = Adamax::default();
    assert_eq!(
        (x.lr, x.betas, x.eps, x.weight_decay, x.maximize),
        (2e-3, (0.9, 0.999), 1e-8, 0.0, false)
    );
}

#[test]
fn cpu_step_with_wrong_shapes_changes_nothing() {
    let mut opt = CpuOptimizer::new(Sgd {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    let g = opt.default_group();
    opt.register(g, 2).unwrap();
    opt.register(g, 2).unwrap();
    let mut a = vec![1.0f32, 2.0];
    let mut b = vec![1.0f32; 3];
    let ga = [0.5f32, 0.5];
    let gb = [0.5f32; 2];
    let e = opt.step(&mut [&mut a, &mut b], &[&ga, &gb]).unwrap_err();
    assert!(matches!(e, Error::StepShape(_)), "{e}");
    assert!(e.to_string().contains("parameter of 3"), "{e}");
    assert_eq!(a, [1.0, 2.0], "no partial update");
    assert_eq!(opt.scheduler().steps_taken(), 0);
    let e = opt.step(&mut [&mut a], &[&ga]).unwrap_err();
    assert!(e.to_string().contains("2 parameters are registered"), "{e}");
    let e = opt.register(g, 0).unwrap_err();
    assert!(matches!(e, Error::BadBufferSize { size: 0, .. }), "{e}");
}

#[test]
fn buffers_that_cannot_be_registered() {
    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Adam::default()).unwrap();
    let g = opt.default_group();
    let p = ctx.upload("p", &[1.0; 8]);
    let short = ctx.upload("short", &[0.0; 7]);
    let e = opt.register(g, &p, &short).unwrap_err();
    assert!(
        matches!(e, Error::LengthMismatch { param: 8, grad: 7 }),
        "{e}"
    );
    let no_storage = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 32,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let e = opt.register(g, &p, &no_storage).unwrap_err();
    assert!(
        matches!(e, Error::MissingStorageUsage { which: "grad", .. }),
        "{e}"
    );
    let e = opt.register(g, &no_storage, &p).unwrap_err();
    assert!(
        matches!(e, Error::MissingStorageUsage { which: "param", .. }),
        "{e}"
    );
    let e = opt.register(g, &p, &p).unwrap_err();
    assert!(matches!(e, Error::AliasedBuffer(_)), "{e}");
    let empty = ctx.upload("empty", &[]);
    let e = opt.register(g, &empty, &empty).unwrap_err();
    assert!(matches!(e, Error::BadBufferSize { size: 0, .. }), "{e}");
    let grad = ctx.upload("g", &[0.5; 8]);
    opt.register(g, &p, &grad).unwrap();
    let e = opt.register(g, &p, &grad).unwrap_err();
    assert!(e.to_string().contains("already registered"), "{e}");
    let mut two = GpuOptimizer::new(&ctx.device, &ctx.queue, Adam::default()).unwrap();
    let g1 = two.add_param_group(Adam::default()).unwrap();
    let p2 = ctx.upload("p2", &[1.0; 8]);
    assert!(matches!(
        opt.register(g1, &p2, &grad),
        Err(Error::UnknownGroup(1))
    ));
    let e = opt
        .add_param_group(Adam {
            lr: -1.0,
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("-1"), "{e}");
    // Only the one good registration took effect.
    assert_eq!(opt.dispatches_per_step(), 1);
}

// ---- case files ------------------------------------------------------------------------------

struct Parts {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

fn parts(case: &str) -> Parts {
    let bytes = std::fs::read(cases_dir().join(case)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    Parts {
        tensors: st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
            .collect(),
        meta: header.metadata().clone().unwrap(),
    }
}

fn write(parts: &Parts, path: &Path) {
    let views: Vec<_> = parts
        .tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, Some(parts.meta.clone()), path).unwrap();
}

/// Every malformed case: its file and a word the error must contain.
fn bad_cases(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let good = std::fs::read(cases_dir().join("sgd_plain.safetensors")).unwrap();
    let mut out = Vec::new();
    let mut raw = |name: &str, bytes: &[u8], needle: &'static str| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        out.push((p, needle));
    };
    raw("empty.safetensors", b"", "safetensors");
    raw(
        "truncated.safetensors",
        &good[..good.len() / 2],
        "safetensors",
    );
    raw(
        "text.safetensors",
        b"this is not a safetensors file at all",
        "safetensors",
    );
    // A header whose tensor claims bytes past the end of the file.
    let header = br#"{"lr":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut past_end = (header.len() as u64).to_le_bytes().to_vec();
    past_end.extend_from_slice(header);
    past_end.extend_from_slice(&[0; 8]);
    raw("past_end.safetensors", &past_end, "safetensors");
    let mut edit = |name: &str, f: &dyn Fn(&mut Parts), needle: &'static str| {
        let mut p = parts("sgd_plain.safetensors");
        f(&mut p);
        let path = dir.join(name);
        write(&p, &path);
        out.push((path, needle));
    };
    edit(
        "missing_tensor.safetensors",
        &|p| p.tensors.retain(|t| t.0 != "grad.b"),
        "grad.b",
    );
    edit(
        "misshapen.safetensors",
        &|p| {
            let t = p.tensors.iter_mut().find(|t| t.0 == "expect.w").unwrap();
            t.1 = vec![t.1[0] * t.1[1]];
        },
        "expect.w",
    );
    edit(
        "bad_json.safetensors",
        &|p| {
            p.meta
                .insert("optimizer".into(), "{\"name\": \"sgd\",".into());
        },
        "JSON",
    );
    edit(
        "unknown_optimizer.safetensors",
        &|p| {
            p.meta
                .insert("optimizer".into(), r#"{"name": "sgdx"}"#.into());
        },
        "sgdx",
    );
    edit(
        "bad_hyper.safetensors",
        &|p| {
            p.meta
                .insert("optimizer".into(), r#"{"name": "sgd", "lr": -0.5}"#.into());
        },
        "-0.5",
    );
    edit(
        "unknown_key.safetensors",
        &|p| {
            p.meta
                .insert("optimizer".into(), r#"{"name": "sgd", "lrr": 0.5}"#.into());
        },
        "lrr",
    );
    edit(
        "bad_format.safetensors",
        &|p| {
            p.meta.insert("format".into(), "optim-trajectory/9".into());
        },
        "format",
    );
    edit(
        "no_steps.safetensors",
        &|p| {
            p.meta.remove("steps");
        },
        "steps",
    );
    edit(
        "bad_schedule.safetensors",
        &|p| {
            p.meta.insert(
                "schedule".into(),
                r#"{"name": "cosine", "t_max": 0, "eta_min": 0.0}"#.into(),
            );
        },
        "t_max",
    );
    edit(
        "unknown_schedule.safetensors",
        &|p| {
            p.meta
                .insert("schedule".into(), r#"{"name": "warp"}"#.into());
        },
        "warp",
    );
    out.push((dir.join("does_not_exist.safetensors"), "does_not_exist"));
    out
}

#[test]
fn malformed_case_files_get_typed_errors() {
    let dir = scratch_dir("bad-cases");
    for (path, needle) in bad_cases(&dir) {
        let e = Case::load(&path).and_then(|c| case::replay(&c, Backend::Cpu, None).map(|_| ()));
        let e = e.expect_err(&format!("{} should be rejected", path.display()));
        assert!(
            e.to_string().contains(needle),
            "{}: {e} should mention {needle}",
            path.display()
        );
    }
}

#[test]
fn replay_command_exits_2_and_writes_nothing_on_bad_input() {
    let dir = scratch_dir("bad-cli");
    for (path, needle) in bad_cases(&dir) {
        let out = dir.join("out.safetensors");
        let run = Command::new(env!("CARGO_BIN_EXE_wgpu-optim"))
            .args(["replay", "--backend", "cpu", "--out"])
            .arg(&out)
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(stderr.contains(needle), "{}: {stderr}", path.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !out.exists(),
            "{}: an output file was written",
            path.display()
        );
    }
}
