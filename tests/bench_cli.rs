//! The benchmark command runs end to end and reports what it promises (no timing assertions).

mod common;

use std::process::Command;

use common::gpu;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-optim"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `bench` with `args` (which include `--json`), checks it succeeded, and parses its rows.
fn bench_rows(args: &[&str]) -> Vec<serde_json::Value> {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn json_has_every_field_and_verify_matches_the_cpu() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "adamw,sgd-momentum,rmsprop-centered",
        "--params",
        "5K,70001",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--json",
        "--verify",
    ]);
    assert_eq!(rows.len(), 3 * 2 * 2, "optimizers × sizes × backends");
    for r in &rows {
        for key in [
            "optimizer",
            "params",
            "backend",
            "adapter",
            "timing",
            "ms_per_step",
            "gb_per_s",
            "bytes_per_param",
            "stream_ms",
            "roofline",
            "copy_gb_per_s",
            "host_us_per_step",
        ] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
        assert!(r["ms_per_step"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["roofline"].as_f64().unwrap() > 0.0, "{r}");
        if r["backend"] == "gpu" {
            let timing = r["timing"].as_str().unwrap();
            assert!(timing == "gpu-timestamps" || timing == "wall", "{r}");
            // Same inputs, same steps: only kernel rounding may differ.
            let err = r["max_abs_err_vs_cpu"].as_f64().unwrap();
            assert!(err < 1e-4, "{r}");
        }
    }
    let bytes: Vec<f64> = rows
        .iter()
        .map(|r| r["bytes_per_param"].as_f64().unwrap())
        .collect();
    assert!(bytes.contains(&28.0) && bytes.contains(&20.0));
}

#[test]
fn muon_rows_report_flops_and_the_multiplies_alone() {
    let rows = bench_rows(&[
        "--optimizer",
        "muon",
        "--matrices",
        "16x40,2x(24x8+8x24)",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        let gflop = r["gflop_per_step"].as_f64().unwrap();
        assert!(
            gflop > 0.0 && r["gflop_per_s"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        let gpu = r["backend"] == "gpu";
        assert_eq!(r["matmul_gflop_per_s"].is_number(), gpu, "{r}");
        assert_eq!(r["dispatches_per_step"].is_number(), gpu, "{r}");
    }
    // 5 · (4 · 16² · 40 + 2 · 16³) for the 16 × 40 matrix.
    assert_eq!(
        rows[0]["gflop_per_step"].as_f64().unwrap(),
        5.0 * (4.0 * 256.0 * 40.0 + 2.0 * 4096.0) / 1e9
    );
    assert_eq!(rows[2]["matrices"], 4);
    // Two batches (24 × 8 and 8 × 24) of 15 multiplies, 3 passes per matrix, the reduction.
    assert_eq!(rows[2]["dispatches_per_step"], 2 * 15 + 3 * 4 + 1);
}

#[test]
fn bad_sizes_and_names_are_rejected_before_any_work() {
    for args in [
        &["--params", "1.5"][..],
        &["--params", "0"],
        &["--optimizer", "muon-bf16"],
        &["--optimizer", "muon,adamw"],
        &["--optimizer", "muon", "--matrices", "3x"],
        &["--optimizer", "muon", "--tiles", "64x64"],
        &["--params", "2G", "--backend", "gpu"],
    ] {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("gpu "),
            "{args:?} ran something"
        );
    }
}

#[test]
fn tensors_in_an_arena_cost_one_dispatch() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "adamw",
        "--params",
        "20K",
        "--tensors",
        "100",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--backend",
        "gpu",
        "--json",
        "--verify",
    ]);
    let by = |layout: &str| {
        rows.iter()
            .find(|r| r["layout"] == layout)
            .unwrap_or_else(|| panic!("{layout} row"))
    };
    assert_eq!(by("flat")["dispatches_per_step"], 1);
    assert_eq!(by("arena")["tensors"], 100);
    assert!(by("arena")["dispatches_per_step"].as_u64().unwrap() <= 2);
    assert_eq!(by("separate")["dispatches_per_step"], 100);
    for r in &rows {
        assert_eq!(r["state_bytes_per_param"].as_f64(), Some(8.0), "{r}");
        assert!(r["max_abs_err_vs_cpu"].as_f64().unwrap() < 1e-4, "{r}");
    }
}

#[test]
fn fifty_million_parameters_verify() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "sgd-momentum",
        "--params",
        "50M",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--backend",
        "gpu",
        "--json",
        "--verify",
    ]);
    assert_eq!(rows[0]["params"], 50_000_000);
    assert!(
        rows[0]["dispatches_per_step"].as_u64().unwrap() >= 2,
        "past one binding: windows"
    );
    assert!(
        rows[0]["max_abs_err_vs_cpu"].as_f64().unwrap() < 1e-5,
        "{}",
        rows[0]
    );
}

#[test]
fn zero_steps_is_an_error_not_a_panic() {
    let out = bench(&[
        "--optimizer",
        "sgd",
        "--params",
        "1K",
        "--steps",
        "0",
        "--backend",
        "cpu",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--steps 0"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn adafactor_factors_a_shaped_matrix_and_reports_its_memory() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "adafactor",
        "--shape",
        "256x384",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--verify",
    ]);
    assert_eq!(rows.len(), 2, "gpu and cpu");
    for r in &rows {
        assert_eq!(r["params"], 256 * 384, "{r}");
        assert_eq!(r["shape"], serde_json::json!([256, 384]), "{r}");
        // (R + C) values of 4 bytes per R × C matrix.
        let held = r["state_bytes_per_param"].as_f64().unwrap();
        assert_eq!(held, 4.0 * (256.0 + 384.0) / (256.0 * 384.0), "{r}");
        // 28 bytes per element over the passes, 12 per row factor and 8 per column factor.
        let moved = 28.0 + (12.0 * 256.0 + 8.0 * 384.0) / (256.0 * 384.0);
        assert_eq!(r["bytes_per_param"].as_f64(), Some(moved), "{r}");
    }
    assert!(rows[0]["max_abs_err_vs_cpu"].as_f64().unwrap() < 1e-4);
    let bad = bench(&["--optimizer", "adafactor", "--shape", "256x0", "--json"]);
    assert_eq!(bad.status.code(), Some(2), "a zero dimension is refused");
}

#[test]
fn dtypes_set_the_bytes_and_the_stream_and_verify_bit_for_bit() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "adamw,sgd-momentum",
        "--params",
        "70001",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--verify",
        "--param-dtype",
        "bf16",
        "--grad-dtype",
        "bf16",
        "--state-dtype",
        "bf16",
    ]);
    // `both` measures the GPU alone: the CPU reference holds 16-bit values as f32.
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["backend"], "gpu");
        for key in ["param_dtype", "grad_dtype", "state_dtype"] {
            assert_eq!(r[key], "bf16", "{r}");
        }
        assert_eq!(r["max_abs_err_vs_cpu"].as_f64(), Some(0.0), "{r}");
        assert!(r["stream_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    // AdamW: 2 + 2 (param) + 2 (grad) + 2 × 4 (two moments); SGD with momentum: one moment.
    assert_eq!(rows[0]["bytes_per_param"], 14.0);
    assert_eq!(rows[0]["state_bytes_per_param"], 4.0);
    assert_eq!(rows[1]["bytes_per_param"], 10.0);
    let master = bench_rows(&[
        "--optimizer",
        "adamw",
        "--params",
        "5K",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
        "--grad-dtype",
        "f16",
        "--backend",
        "gpu",
    ]);
    assert_eq!(master[0]["bytes_per_param"], 26.0);
    assert_eq!(master[0]["grad_dtype"], "f16");
    let out = bench(&[
        "--optimizer",
        "adamw",
        "--params",
        "5K",
        "--param-dtype",
        "f8",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown dtype"));
    let out = bench(&[
        "--optimizer",
        "adamw",
        "--params",
        "5K",
        "--backend",
        "cpu",
        "--state-dtype",
        "bf16",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CPU reference"),
        "{out:?}"
    );
}

#[test]
fn quantized_state_sets_the_bytes_and_verifies_bit_for_bit() {
    if gpu().is_none() {
        return;
    }
    let rows = bench_rows(&[
        "--optimizer",
        "adamw,lion",
        "--params",
        "65536",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--verify",
        "--state-dtype",
        "q8",
    ]);
    assert_eq!(rows.len(), 2, "the GPU alone: {rows:?}");
    for r in &rows {
        assert_eq!(r["state_dtype"], "q8", "{r}");
        assert_eq!(r["max_abs_err_vs_cpu"].as_f64(), Some(0.0), "{r}");
        assert!(r["stream_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    // AdamW: 12 bytes of f32 parameter and gradient, two moments of one code byte and 4 bytes
    // of scale per 256 values, each read and written.
    let moment = 1.0 + 4.0 / 256.0;
    assert_eq!(
        rows[0]["state_bytes_per_param"].as_f64(),
        Some(2.0 * moment)
    );
    assert_eq!(
        rows[0]["bytes_per_param"].as_f64(),
        Some(12.0 + 4.0 * moment)
    );
    assert_eq!(
        rows[1]["bytes_per_param"].as_f64(),
        Some(12.0 + 2.0 * moment)
    );
    let q4 = bench_rows(&[
        "--optimizer",
        "adamw",
        "--params",
        "8192",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
        "--state-dtype",
        "q4",
        "--backend",
        "gpu",
    ]);
    assert_eq!(
        q4[0]["state_bytes_per_param"].as_f64(),
        Some(2.0 * (0.5 + 4.0 / 128.0))
    );
    // Sizes that would keep f32 state, and optimizers without maps, are refused.
    for (args, says) in [
        (&["--params", "70001"][..], "whole 256-value blocks"),
        (
            &["--optimizer", "rmsprop", "--params", "65536"],
            "q8 and q4 state is for",
        ),
    ] {
        let mut all = vec!["--backend", "gpu", "--state-dtype", "q8", "--steps", "1"];
        if !args.contains(&"--optimizer") {
            all.extend(["--optimizer", "adamw"]);
        }
        all.extend_from_slice(args);
        let out = bench(&all);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
