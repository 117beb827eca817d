//! The checks behind the fuzz targets in `fuzz/` (libFuzzer), also run over the corpus and
//! every saved crash by `tests/fuzz_inputs.rs`. Each takes outside bytes; a panic, or a broken
//! property (a round trip that does not round-trip), is a finding.

use std::path::Path;

use crate::case::{self, Backend, Case};
use crate::cpu_optimizer::CpuOptimizer;
use crate::host::checkpoint::{Checkpoint, SavedParam};
use crate::optim::{Algorithm, by_name};
use crate::schedule::Schedule;

/// Cases and checkpoints no larger than this many values are also run through the optimizer.
const RUN_LIMIT: usize = 1 << 15;

/// A case file: parse it and, when it is small and names an optimizer here, replay it on the
/// CPU and compare.
pub fn case_file(data: &[u8]) {
    let Ok(case) = Case::from_bytes(data, Path::new("fuzz-input")) else {
        return;
    };
    let values: usize = case.params.iter().map(|p| p.numel()).sum();
    if values.saturating_mul(case.steps) <= RUN_LIMIT
        && let Ok(trajectory) = case::replay(&case, Backend::Cpu, None)
    {
        let report = case::compare(&case, &trajectory);
        assert_eq!(report.params.len(), case.params.len());
    }
}

/// A checkpoint file: parse it; what parses must serialize and parse back to the same
/// checkpoint, and restore into a CPU optimizer of its kind (or be refused with an error).
pub fn checkpoint(data: &[u8]) {
    let origin = Path::new("fuzz-input");
    let Ok(loaded) = Checkpoint::from_bytes(data, origin) else {
        return;
    };
    let bytes = loaded
        .to_bytes()
        .unwrap_or_else(|e| panic!("a loaded checkpoint does not serialize: {e}"));
    let again = Checkpoint::from_bytes(&bytes, origin)
        .unwrap_or_else(|e| panic!("a saved checkpoint does not load: {e}"));
    assert!(same(&loaded, &again), "{loaded:?}\nbecame\n{again:?}");
    let values: usize = loaded.params.iter().map(|p| p.len).sum();
    if values > RUN_LIMIT {
        return;
    }
    by_name!(loaded.optimizer.as_str(), O => restore_and_step::<O>(&loaded), _ => {});
}

/// Equal, with f32 states compared bit for bit (a NaN state round-trips as itself).
fn same(a: &Checkpoint, b: &Checkpoint) -> bool {
    let bits = |p: &SavedParam| -> Vec<(String, Vec<u32>)> {
        p.states
            .iter()
            .map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect()))
            .collect()
    };
    let scale_bits = |c: &Checkpoint| {
        c.loss_scale.map(|l| {
            (
                l.config.init_scale.to_bits(),
                l.config.growth_factor.to_bits(),
                l.config.backoff_factor.to_bits(),
                l.config.growth_interval,
                l.state.scale.to_bits(),
                l.state.growth_tracker,
                l.state.skipped_steps,
                l.state.last_step_skipped,
            )
        })
    };
    a.optimizer == b.optimizer
        && a.step == b.step
        && a.groups == b.groups
        && a.schedule == b.schedule
        && a.max_grad_norm.map(f32::to_bits) == b.max_grad_norm.map(f32::to_bits)
        && scale_bits(a) == scale_bits(b)
        && (a.eval_mode, &a.fresh) == (b.eval_mode, &b.fresh)
        && a.params.len() == b.params.len()
        && a.params.iter().zip(&b.params).all(|(p, q)| {
            (p.group, p.len, &p.shape, p.precision) == (q.group, q.len, &q.shape, q.precision)
                && bits(p) == bits(q)
        })
}

/// Builds the optimizer the checkpoint describes, restores it, and takes one step.
fn restore_and_step<O: Algorithm>(checkpoint: &Checkpoint) {
    let Ok(configs) = checkpoint.configs::<O>() else {
        return;
    };
    let Some((first, rest)) = configs.split_first() else {
        return;
    };
    let Ok(mut opt) = CpuOptimizer::new(first.clone()) else {
        return;
    };
    let mut groups = vec![opt.default_group()];
    for c in rest {
        let Ok(g) = opt.add_param_group(c.clone()) else {
            return;
        };
        groups.push(g);
    }
    for p in &checkpoint.params {
        let Some(&g) = groups.get(p.group) else {
            return;
        };
        // In its saved dtypes (0.5 and 0.25 below are exact in every one).
        if opt.register_typed(g, &p.shape, p.precision).is_err() {
            return;
        }
    }
    if opt.restore(checkpoint).is_err() {
        return;
    }
    let mut params: Vec<Vec<f32>> = checkpoint.params.iter().map(|p| vec![0.5; p.len]).collect();
    let grads: Vec<Vec<f32>> = checkpoint
        .params
        .iter()
        .map(|p| vec![0.25; p.len])
        .collect();
    let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
    let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    opt.step(&mut views, &grad_views)
        .unwrap_or_else(|e| panic!("a restored optimizer refused a well-formed step: {e}"));
}

/// `Schedule` JSON: what parses must evaluate at any epoch, list its key epochs, and
/// serialize and parse back to itself.
pub fn schedule_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = text.parse::<Schedule>() else {
        return;
    };
    for epoch in [0, 1, 2, 7, 100, 12_345, u64::from(u32::MAX), u64::MAX - 1] {
        schedule
            .lr(1e-3, epoch)
            .unwrap_or_else(|e| panic!("a parsed schedule does not evaluate: {e}"));
    }
    let keys = schedule.key_epochs(100_000);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    let json = serde_json::to_string(&schedule)
        .unwrap_or_else(|e| panic!("a parsed schedule does not serialize: {e}"));
    let back: Schedule = json
        .parse()
        .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(back, schedule, "{json}");
}
