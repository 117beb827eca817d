//! Parity cases: optimizer trajectories recorded from PyTorch and optax (`optim-trajectory/1`),
//! and their replay through this crate's public API on the GPU or the CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::context::GpuContext;
use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::host::checkpoint::Checkpoint;
use crate::io::{parse_safetensors, read_f32, read_file, write_atomically};
use crate::optim::{Algorithm, MAX_STATES, Pass, by_name};
use crate::plateau::Plateau;
use crate::precision::{self as dtypes, Precision};
use crate::quant::Quant;
use crate::schedule::Schedule;
use runner::{Runner, build};

/// The `format` metadata value this crate reads.
pub const FORMAT: &str = "optim-trajectory/1";

/// Optimizers implemented here, by their case name.
pub const IMPLEMENTED: &[&str] = crate::optim::NAMES;

/// One recorded parameter of a case.
#[derive(Debug, Clone)]
pub struct CaseParam {
    /// Its name (`w`, `b`, ...).
    pub name: String,
    /// Its original shape.
    pub shape: Vec<usize>,
    /// Its initial value, flattened.
    pub init: Vec<f32>,
    /// The gradient fed at each step, `[steps, numel]` row-major.
    pub grads: Vec<f32>,
    /// The reference's value after each step, `[steps, numel]` row-major.
    pub expect: Vec<f32>,
    /// Schedule-Free's evaluation point x after each step (`expect_eval.NAME`), when recorded.
    pub expect_eval: Option<Vec<f32>>,
    /// The average of the weights after each step (`expect_ema.NAME`), with `ema`.
    pub expect_ema: Option<Vec<f32>>,
}

impl CaseParam {
    /// Elements in the parameter.
    pub fn numel(&self) -> usize {
        self.init.len()
    }

    /// Row `step` (0-based) of a `[steps, numel]` tensor of this parameter.
    pub fn row<'a>(&self, data: &'a [f32], step: usize) -> &'a [f32] {
        &data[step * self.numel()..(step + 1) * self.numel()]
    }
}

/// A recorded trajectory.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file it came from.
    pub path: PathBuf,
    /// The `optimizer` metadata: `name` plus hyperparameters under PyTorch's names.
    pub optimizer: Map<String, Value>,
    /// The `schedule` metadata, if any.
    pub schedule: Option<Value>,
    /// Steps recorded.
    pub steps: usize,
    /// The parameters, sorted by name.
    pub params: Vec<CaseParam>,
    /// The learning rate of the first group during each step.
    pub lr: Vec<f32>,
    /// The dtypes the case was recorded in (`precision` metadata; all f32 without it).
    pub precision: Precision,
    /// Whether the case has `precision` metadata, and so is judged by the low-precision rule
    /// ([`LOW_PRECISION_OUTLIERS`]).
    pub low_precision: bool,
    /// With the `plateau` schedule: the metric reported after each step (`metric`).
    pub metric: Option<Vec<f32>>,
    /// Micro-batches per optimizer step (`accumulate`; 1 without): each row of `grad` is one.
    pub accumulate: u32,
    /// The average of the weights kept (`ema`), when recorded.
    pub ema: Option<Ema>,
}

/// A case's learning-rate control: a schedule, or the metric-driven reduction.
enum RateControl {
    Schedule(Schedule),
    Plateau(Plateau),
}

impl RateControl {
    /// The control a case's `schedule` metadata names.
    fn from_json(value: &Value) -> Result<Self> {
        if value.get("name").and_then(Value::as_str) == Some("plateau") {
            return Plateau::from_json(value).map(Self::Plateau);
        }
        Schedule::from_json(value).map(Self::Schedule)
    }
}

/// The `precision` metadata: the dtypes, and the block size of quantized state.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrecisionMeta {
    param: String,
    grad: String,
    state: String,
    #[serde(default)]
    block_size: Option<u64>,
}

/// The [`Precision`] of a case's `precision` metadata. Quantized state (`q8`, `q4`) keeps f32
/// below its threshold ([`crate::Quant::applies`]) and needs this crate's block size (torchao's
/// default: 256 for q8, 128 for q4); another is an [`Error::UnsupportedPrecision`].
fn parse_precision(path: &Path, v: Value) -> Result<Precision> {
    let meta: PrecisionMeta = serde_json::from_value(v)
        .map_err(|e| bad(path, format!("precision is not a precision: {e}")))?;
    let dtype = |which: &str, name: &str| {
        dtypes::Dtype::parse(name)
            .ok_or_else(|| bad(path, format!("precision {which} {name:?} is unknown")))
    };
    let (param, grad) = (dtype("param", &meta.param)?, dtype("grad", &meta.grad)?);
    match (dtypes::Dtype::parse(&meta.state), Quant::parse(&meta.state)) {
        (Some(state), _) => Ok(Precision::new(param, grad, state)),
        (None, Some(q)) => {
            let precision = Precision::new(param, grad, dtypes::Dtype::F32).quantized(q);
            match meta.block_size {
                Some(b) if b == q.block() => Ok(precision),
                Some(_) => Err(Error::UnsupportedPrecision {
                    optimizer: "this crate",
                    precision,
                    reason: "q8 state is in blocks of 256 values and q4 in blocks of 128",
                }),
                None => Err(bad(path, "quantized state needs a block_size")),
            }
        }
        (None, None) => Err(bad(
            path,
            format!("precision state {:?} is unknown", meta.state),
        )),
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadCase {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn f32_tensor(path: &Path, st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    read_f32(st, name, shape).map_err(|reason| bad(path, reason))
}

fn json_meta(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<Option<Value>> {
    meta.get(key)
        .map(|s| {
            serde_json::from_str(s)
                .map_err(|e| bad(path, format!("metadata {key:?} is not valid JSON: {e}")))
        })
        .transpose()
}

impl Case {
    /// Reads and checks a case file: every tensor present, f32, and of the shape the metadata
    /// implies.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_bytes(&read_file(path)?, path)
    }

    /// Parses and checks a case file's bytes, as [`Case::load`]; `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let (st, meta) = parse_safetensors(bytes).map_err(|reason| bad(path, reason))?;
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            other => {
                return Err(bad(
                    path,
                    format!("format is {other:?}, expected {FORMAT:?}"),
                ));
            }
        }
        let optimizer = match json_meta(path, &meta, "optimizer")? {
            Some(Value::Object(o)) => o,
            Some(other) => return Err(bad(path, format!("optimizer is not an object: {other}"))),
            None => return Err(bad(path, "missing metadata \"optimizer\"")),
        };
        let schedule = json_meta(path, &meta, "schedule")?;
        let steps: usize = meta
            .get("steps")
            .ok_or_else(|| bad(path, "missing metadata \"steps\""))?
            .parse()
            .map_err(|e| bad(path, format!("steps is not a count: {e}")))?;
        if steps == 0 {
            return Err(bad(path, "steps is 0"));
        }
        let shapes: HashMap<String, Vec<usize>> = match json_meta(path, &meta, "params")? {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| bad(path, format!("params is not a map of name to shape: {e}")))?,
            None => return Err(bad(path, "missing metadata \"params\"")),
        };
        if shapes.is_empty() {
            return Err(bad(path, "params is empty"));
        }
        let mut params = Vec::new();
        for (name, shape) in shapes {
            let numel = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("parameter {name:?} has shape {shape:?}, too large"),
                    )
                })?;
            if numel == 0 {
                return Err(bad(path, format!("parameter {name:?} has no elements")));
            }
            if steps.checked_mul(numel).is_none() {
                return Err(bad(
                    path,
                    format!("{steps} steps of parameter {name:?} are too large"),
                ));
            }
            params.push(CaseParam {
                init: f32_tensor(path, &st, &format!("param.{name}"), &[numel])?,
                grads: f32_tensor(path, &st, &format!("grad.{name}"), &[steps, numel])?,
                expect: f32_tensor(path, &st, &format!("expect.{name}"), &[steps, numel])?,
                expect_eval: st
                    .names()
                    .contains(&format!("expect_eval.{name}").as_str())
                    .then(|| f32_tensor(path, &st, &format!("expect_eval.{name}"), &[steps, numel]))
                    .transpose()?,
                expect_ema: st
                    .names()
                    .contains(&format!("expect_ema.{name}").as_str())
                    .then(|| f32_tensor(path, &st, &format!("expect_ema.{name}"), &[steps, numel]))
                    .transpose()?,
                name,
                shape,
            });
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        let lr = f32_tensor(path, &st, "lr", &[steps])?;
        let plateau = schedule
            .as_ref()
            .is_some_and(|s| s.get("name").and_then(Value::as_str) == Some("plateau"));
        let metric = plateau
            .then(|| f32_tensor(path, &st, "metric", &[steps]))
            .transpose()?;
        let ema = json_meta(path, &meta, "ema")?
            .map(|v| {
                serde_json::from_value::<Ema>(v)
                    .map_err(|e| bad(path, format!("ema is not {{\"decay\": d}}: {e}")))
            })
            .transpose()?;
        let accumulate = match meta.get("accumulate") {
            None => 1,
            Some(k) => match k.parse::<u32>() {
                Ok(k) if k > 0 => k,
                _ => {
                    return Err(bad(
                        path,
                        format!("accumulate {k:?} is not a count above 0"),
                    ));
                }
            },
        };
        let (precision, low_precision) = match json_meta(path, &meta, "precision")? {
            Some(v) => (parse_precision(path, v)?, true),
            None => (Precision::F32, false),
        };
        for p in &params {
            for (which, dtype, values) in [
                ("param", precision.param, &p.init),
                ("grad", precision.grad, &p.grads),
            ] {
                Precision::check_held(which, dtype, values)
                    .map_err(|e| bad(path, format!("parameter {:?}: {e}", p.name)))?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            optimizer,
            schedule,
            steps,
            params,
            lr,
            precision,
            low_precision,
            metric,
            accumulate,
            ema,
        })
    }

    /// The optimizer's name.
    pub fn optimizer_name(&self) -> &str {
        self.optimizer
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Where a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The fused WGSL kernels, through [`crate::GpuOptimizer`].
    Gpu,
    /// The CPU reference, through [`crate::CpuOptimizer`].
    Cpu,
}

mod judge;
mod runner;

pub use judge::{
    ATOL, DISPLACEMENT_RTOL, LOW_PRECISION_DISPLACEMENT_RTOL, LOW_PRECISION_OUTLIERS,
    LOW_PRECISION_VALUE_RTOL, LR_RTOL, ParamReport, Report, compare,
};

/// What a replay computed.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// Per parameter (in [`Case::params`] order), its value after each step, `[steps, numel]`.
    pub results: Vec<Vec<f32>>,
    /// The learning rate of the first group during each step.
    pub lr: Vec<f32>,
    /// Per parameter, the evaluation point after each step, where the case records one
    /// (`expect_eval`); empty otherwise.
    pub results_eval: Vec<Vec<f32>>,
    /// Per parameter, the average of the weights after each step, where the case keeps one
    /// (`ema`); empty otherwise.
    pub results_ema: Vec<Vec<f32>>,
}

/// The parameter groups of a case: each group's hyperparameters (top-level keys overridden by
/// the group's own) and the indices of its parameters in [`Case::params`].
fn groups<O: DeserializeOwned>(case: &Case) -> Result<Vec<(O, Vec<usize>)>> {
    let path = case.path.as_path();
    let mut base = case.optimizer.clone();
    base.remove("name");
    let listed = base.remove("param_groups");
    let parse = |map: Map<String, Value>| -> Result<O> {
        serde_json::from_value(Value::Object(map)).map_err(|e| {
            Error::InvalidOptions(format!("{} hyperparameters: {e}", case.optimizer_name()))
        })
    };
    let Some(listed) = listed else {
        return Ok(vec![(parse(base)?, (0..case.params.len()).collect())]);
    };
    let Value::Array(listed) = listed else {
        return Err(bad(path, "param_groups is not a list"));
    };
    let mut seen = vec![false; case.params.len()];
    let mut out = Vec::new();
    for g in listed {
        let Value::Object(mut g) = g else {
            return Err(bad(path, "a param group is not an object"));
        };
        let names: Vec<String> = g
            .remove("params")
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                bad(
                    path,
                    format!("a param group's params is not a list of names: {e}"),
                )
            })?
            .ok_or_else(|| bad(path, "a param group has no params"))?;
        let mut members = Vec::new();
        for n in names {
            let i = case
                .params
                .iter()
                .position(|p| p.name == n)
                .ok_or_else(|| bad(path, format!("param group names unknown parameter {n:?}")))?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(bad(path, format!("parameter {n:?} is in two param groups")));
            }
            members.push(i);
        }
        let mut merged = base.clone();
        merged.extend(g);
        out.push((parse(merged)?, members));
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(bad(
            path,
            format!("parameter {:?} is in no param group", case.params[i].name),
        ));
    }
    if out.is_empty() {
        return Err(bad(path, "param_groups is empty"));
    }
    Ok(out)
}

/// A file name in the temporary directory for this process's resume checkpoint.
fn resume_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "wgpu-optim-resume-{}-{nanos}.safetensors",
        std::process::id()
    ))
}

async fn replay_as<O: Algorithm>(
    case: &Case,
    backend: Backend,
    ctx: Option<&GpuContext>,
    resume_at: Option<usize>,
) -> Result<Trajectory> {
    let listed = groups::<O>(case)?;
    let mut group_of = vec![0; case.params.len()];
    for (g, (_, members)) in listed.iter().enumerate() {
        for &m in members {
            group_of[m] = g;
        }
    }
    let configs: Vec<O> = listed.into_iter().map(|(c, _)| c).collect();
    let inits: Vec<Vec<f32>> = case.params.iter().map(|p| p.init.clone()).collect();
    let control = case
        .schedule
        .as_ref()
        .map(RateControl::from_json)
        .transpose()?;
    if cfg!(target_arch = "wasm32") && resume_at.is_some() {
        return Err(Error::InvalidOptions(
            "resuming through a checkpoint file needs a file system: native targets only".into(),
        ));
    }
    if let Some(k) = resume_at
        && (k == 0 || k >= case.steps)
    {
        return Err(Error::InvalidOptions(format!(
            "--resume-at must be between 1 and {} for this {}-step case, got {k}",
            case.steps - 1,
            case.steps
        )));
    }
    let owned;
    let ctx = match (backend, ctx) {
        (Backend::Gpu, None) => {
            owned = GpuContext::new_async().await?;
            Some(&owned)
        }
        (_, ctx) => ctx,
    };
    let shapes: Vec<&[usize]> = case.params.iter().map(|p| p.shape.as_slice()).collect();
    let tensors = (shapes.as_slice(), case.precision);
    let mut runner = build(backend, ctx, &configs, &group_of, &inits, tensors).await?;
    match control {
        Some(RateControl::Schedule(s)) => runner.set_schedule(Some(s))?,
        Some(RateControl::Plateau(p)) => runner.set_plateau(Some(p))?,
        None => {}
    }
    runner.set_accumulation(case.accumulate).await?;
    runner.set_ema(case.ema).await?;

    let mut results: Vec<Vec<f32>> = case
        .params
        .iter()
        .map(|p| Vec::with_capacity(case.steps * p.numel()))
        .collect();
    let mut results_ema: Vec<Vec<f32>> = match case.ema {
        Some(_) => results
            .iter()
            .map(|r| Vec::with_capacity(r.capacity()))
            .collect(),
        None => Vec::new(),
    };
    let mut lr = Vec::with_capacity(case.steps);
    let with_eval = case.params.iter().any(|p| p.expect_eval.is_some());
    let mut results_eval: Vec<Vec<f32>> = if with_eval {
        results
            .iter()
            .map(|r| Vec::with_capacity(r.capacity()))
            .collect()
    } else {
        Vec::new()
    };
    for t in 0..case.steps {
        if resume_at == Some(t) {
            // Save, drop the optimizer, and continue with one built from the file alone (and the
            // parameters' current values, which are the caller's, not the optimizer's).
            let path = resume_path();
            runner.checkpoint().await?.save(&path)?;
            let values = runner.params().await?;
            drop(runner);
            let loaded = Checkpoint::load(&path);
            std::fs::remove_file(&path).ok();
            let checkpoint = loaded?;
            let configs = checkpoint.configs::<O>()?;
            let group_of: Vec<usize> = checkpoint.params.iter().map(|p| p.group).collect();
            runner = build(backend, ctx, &configs, &group_of, &values, tensors).await?;
            runner.restore(&checkpoint).await?;
        }
        lr.push(runner.lr_next() as f32);
        let grads: Vec<&[f32]> = case.params.iter().map(|p| p.row(&p.grads, t)).collect();
        runner.step(&grads)?;
        // The metric is reported after each optimizer step, not micro-batch.
        if let Some(metric) = &case.metric
            && (t + 1) % case.accumulate as usize == 0
        {
            runner.report_metric(f64::from(metric[t]))?;
        }
        let now = runner.params().await?;
        if with_eval {
            let points = (now.as_slice(), case.precision.param);
            for (i, x) in eval_points(&runner, &configs, &group_of, points, t as u64 + 1)
                .await?
                .into_iter()
                .enumerate()
            {
                results_eval[i].extend_from_slice(&x);
            }
        }
        for (r, now) in results.iter_mut().zip(now) {
            r.extend_from_slice(&now);
        }
        for (i, r) in results_ema.iter_mut().enumerate() {
            r.extend_from_slice(&runner.ema(i).await?);
        }
    }
    Ok(Trajectory {
        results,
        lr,
        results_eval,
        results_ema,
    })
}

/// Each parameter's evaluation point after step `t`, as `optimizer.eval()` would set it, from
/// its training point in `params` and its state read back: the CPU mirror of the kernel's
/// [`Pass::ToEval`] on copies, so the run's parameters are not switched back and forth.
async fn eval_points<O: Algorithm>(
    runner: &Runner<'_, O>,
    configs: &[O],
    group_of: &[usize],
    (params, dtype): (&[Vec<f32>], dtypes::Dtype),
    t: u64,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(params.len());
    for (i, y) in params.iter().enumerate() {
        let config = &configs[group_of[i]];
        let mut states: [Vec<f32>; MAX_STATES] = Default::default();
        for (slot, name) in O::STATE_NAMES.iter().enumerate() {
            states[slot] = runner.state(i, name).await?.unwrap_or_default();
        }
        let mut x = y.clone();
        let s = config.scalars(config.lr(), t);
        config.cpu_pass(
            Pass::ToEval,
            &s,
            &mut x,
            states.each_mut().map(|v| v.as_mut_slice()),
        );
        // Stored in the parameter's dtype, as the kernel's pass stores it.
        dtype.round_all(&mut x);
        out.push(x);
    }
    Ok(out)
}

/// Replays `case` through the public API on `backend`. On the GPU, uses `ctx` or, without one,
/// opens a [`GpuContext`].
#[cfg(not(target_arch = "wasm32"))]
pub fn replay(case: &Case, backend: Backend, ctx: Option<&GpuContext>) -> Result<Trajectory> {
    pollster::block_on(replay_async(case, backend, ctx))
}

/// As [`replay`], without blocking: the GPU's readbacks are awaited (in a browser, the only
/// way).
pub async fn replay_async(
    case: &Case,
    backend: Backend,
    ctx: Option<&GpuContext>,
) -> Result<Trajectory> {
    replay_resuming_async(case, backend, ctx, None).await
}

/// As [`replay`], but after `resume_at` steps (when given) saves a checkpoint to a temporary
/// file, builds a new optimizer from that file alone, and continues with it to the end.
#[cfg(not(target_arch = "wasm32"))]
pub fn replay_resuming(
    case: &Case,
    backend: Backend,
    ctx: Option<&GpuContext>,
    resume_at: Option<usize>,
) -> Result<Trajectory> {
    pollster::block_on(replay_resuming_async(case, backend, ctx, resume_at))
}

/// As [`replay_resuming`], without blocking.
pub async fn replay_resuming_async(
    case: &Case,
    backend: Backend,
    ctx: Option<&GpuContext>,
    resume_at: Option<usize>,
) -> Result<Trajectory> {
    let name = case.optimizer_name();
    by_name!(name, O => replay_as::<O>(case, backend, ctx, resume_at).await, _ => Err(Error::Unknown {
        kind: "optimizer",
        name: name.to_string(),
    }))
}

/// Writes a trajectory as safetensors: `result.NAME` (`[steps, numel]` f32) and `lr` (`[steps]`).
///
/// Writes to a temporary file beside `out` and renames it into place, so `out` is either the
/// complete new file or untouched.
pub fn write_trajectory(case: &Case, ours: &Trajectory, out: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut views = Vec::new();
    for (p, r) in case.params.iter().zip(&ours.results) {
        let view = safetensors::tensor::TensorView::new(
            Dtype::F32,
            vec![case.steps, p.numel()],
            bytemuck::cast_slice(r),
        )
        .map_err(|e| Error::Io {
            path: out.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        views.push((format!("result.{}", p.name), view));
    }
    for (prefix, results) in [
        ("result_eval", &ours.results_eval),
        ("result_ema", &ours.results_ema),
    ] {
        for (p, r) in case.params.iter().zip(results) {
            let view = safetensors::tensor::TensorView::new(
                Dtype::F32,
                vec![case.steps, p.numel()],
                bytemuck::cast_slice(r),
            )
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            views.push((format!("{prefix}.{}", p.name), view));
        }
    }
    let lr = safetensors::tensor::TensorView::new(
        Dtype::F32,
        vec![case.steps],
        bytemuck::cast_slice(&ours.lr),
    )
    .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    views.push(("lr".to_string(), lr));
    // One metadata key: safetensors writes metadata in hash order, and the same trajectory must
    // give the same bytes.
    let meta = HashMap::from([("format".to_string(), "optim-result/1".to_string())]);
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    write_atomically(out, &bytes)
}
