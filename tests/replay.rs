//! Every recorded PyTorch/optax case replays within tolerance on the CPU reference and on the
//! GPU, through the public API and through the `replay` command.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{case_files, cases_dir, gpu, optimizer_cases_dir, scratch_dir};
use safetensors::SafeTensors;
use wgpu_optim::case::{self, Backend, Case, IMPLEMENTED};

fn all_cases() -> Vec<PathBuf> {
    let cases = case_files(&cases_dir());
    assert!(
        cases.len() >= 28,
        "expected the 28 recorded cases, found {}",
        cases.len()
    );
    cases
}

fn replay_all(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    let mut replayed = 0;
    for path in all_cases() {
        let case = Case::load(&path).unwrap();
        let name = case.optimizer_name().to_string();
        match case::replay(&case, backend, ctx.as_ref()) {
            Ok(ours) => {
                assert!(IMPLEMENTED.contains(&name.as_str()));
                let report = case::compare(&case, &ours);
                assert!(
                    report.within_tolerance(),
                    "{} on {backend:?}: {report:?}",
                    path.display()
                );
                replayed += 1;
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    assert_eq!(replayed, 28, "every recorded case replays");
}

/// Optimizers of `optimizers/` implemented so far; each of their cases must replay.
const IMPLEMENTED_FROM_OPTIMIZERS: &[&str] = &[
    "adadelta",
    "adafactor",
    "adamax",
    "ademamix",
    "adopt",
    "asgd",
    "nadam",
    "rprop",
    "schedule_free_adamw",
];

/// Replays every case in `optimizers/` whose optimizer this crate implements, and checks that
/// those are exactly the optimizers listed above (so none is skipped by mistake).
fn replay_new_optimizers(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    let paths = case_files(&optimizer_cases_dir());
    let mut replayed = Vec::new();
    for path in paths {
        let case = Case::load(&path).unwrap();
        let name = case.optimizer_name().to_string();
        if !IMPLEMENTED.contains(&name.as_str()) {
            continue;
        }
        let ours = case::replay(&case, backend, ctx.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let report = case::compare(&case, &ours);
        assert!(
            report.within_tolerance(),
            "{} on {backend:?}: {report:?}",
            path.display()
        );
        replayed.push(name);
    }
    replayed.dedup();
    assert_eq!(replayed, IMPLEMENTED_FROM_OPTIMIZERS, "on {backend:?}");
}

#[test]
fn implemented_optimizer_cases_replay_on_cpu() {
    replay_new_optimizers(Backend::Cpu);
}

#[test]
fn implemented_optimizer_cases_replay_on_gpu() {
    replay_new_optimizers(Backend::Gpu);
}

#[test]
fn every_case_replays_on_cpu() {
    replay_all(Backend::Cpu);
}

#[test]
fn every_case_replays_on_gpu() {
    replay_all(Backend::Gpu);
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wgpu-optim"))
}

#[test]
fn replay_command_writes_what_it_computed() {
    if gpu().is_none() {
        return;
    }
    let dir = scratch_dir("replay-out");
    let case_path = cases_dir().join("adamw_param_groups.safetensors");
    for backend in ["gpu", "cpu"] {
        let out = dir.join(format!("{backend}.safetensors"));
        let run = cli()
            .args([
                "replay",
                case_path.to_str().unwrap(),
                "--backend",
                backend,
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout.contains("within tolerance"), "{stdout}");
        assert!(stdout.contains("max_abs_err"), "{stdout}");
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let case = Case::load(&case_path).unwrap();
        for p in &case.params {
            let t = st.tensor(&format!("result.{}", p.name)).unwrap();
            assert_eq!(t.shape(), [case.steps, p.numel()]);
            let ours: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
            let last = (case.steps - 1) * p.numel();
            let err = ours[last..]
                .iter()
                .zip(&p.expect[last..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                err < 1e-5,
                "{backend}: result.{} is not the trajectory ({err})",
                p.name
            );
        }
        let lr = st.tensor("lr").unwrap();
        assert_eq!(lr.shape(), [case.steps]);
        assert_eq!(bytemuck::pod_collect_to_vec::<u8, f32>(lr.data()), case.lr);
    }
}

#[test]
fn replay_command_exits_1_outside_tolerance() {
    // A case whose recording was tampered with: the trajectory no longer matches.
    let dir = scratch_dir("replay-tampered");
    let src = cases_dir().join("sgd_momentum.safetensors");
    let bytes = std::fs::read(&src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec()))
        .collect();
    for (name, data, _) in &mut tensors {
        if name == "expect.w" {
            let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(data);
            v[100] += 0.01;
            *data = bytemuck::cast_slice(&v).to_vec();
        }
    }
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .unwrap();
            (n.clone(), v)
        })
        .collect();
    let path = dir.join("tampered.safetensors");
    safetensors::tensor::serialize_to_file(views, header.metadata().clone(), &path).unwrap();
    let run = cli()
        .args(["replay", "--backend", "cpu"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("OUTSIDE TOLERANCE"), "{stdout}");
}
