//! Every input the fuzz targets keep (the corpus in `fuzz/corpus/` and every crash they found,
//! saved in `fuzz/regressions/`) through the same checks the targets run
//! (`wgpu_optim::tooling::fuzz`), so a fixed crash stays fixed without a fuzzer.

use std::path::PathBuf;

use wgpu_optim::tooling::fuzz;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

fn run(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails {target}", f.display());
    }
}

#[test]
fn case_file_inputs() {
    run("case_file", fuzz::case_file);
}

#[test]
fn checkpoint_inputs() {
    run("checkpoint", fuzz::checkpoint);
}

#[test]
fn schedule_json_inputs() {
    run("schedule_json", fuzz::schedule_json);
}
