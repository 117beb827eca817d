//! Checkpoints: all of an optimizer's state in one safetensors file, to resume exactly.
//!
//! Layout (`wgpu-optim-checkpoint/1`):
//!
//! | tensor | dtype, shape | meaning |
//! | --- | --- | --- |
//! | `state.I.NAME` | F32, BF16 or F16 `[len]` | state `NAME` (PyTorch's key: `exp_avg`, `momentum_buffer`, ...) of the `I`-th registered parameter, in the dtype it is stored in (its bits exactly as the optimizer holds them) |
//! | `state.I.NAME` | U8 `[bytes]` | a quantized state ([`Precision::quant`]): its codes, packed as [`crate::quant`] says (torchao's `codes`) |
//! | `state.I.NAME.scale` | F32 `[blocks]` | that state's block scales |
//! | `state.I.step` | I64 `[1]` | the step count, per parameter as PyTorch keeps it (an integer here, not a float) |
//! | `loop.I.NAME` | F32 `[len]` | what a running-loop control keeps for the parameter: `grad_sum`, the gradient accumulated so far while micro-batches are pending |
//!
//! Metadata: `format`, `optimizer` (its name), `step`, `checksum` (FNV-1a 64 over every
//! tensor's name and bytes, in name order, so corrupted data is caught, not resumed from),
//! `param_groups` (a JSON list of each group's hyperparameters under PyTorch's names, with
//! `params`: the indices of its parameters), `schedule` (JSON, when one is set), `lengths` (a
//! JSON list of each parameter's length), `max_grad_norm` (when clipping is on) and
//! `loss_scale` (when loss scaling is on: JSON `{"config": GradScaler's settings, "state":
//! scale, growth tracker, skipped steps, whether the last step was skipped}`), and for
//! Schedule-Free `eval_mode` (`true` when saved in evaluation mode: the parameters held x) and
//! `fresh` (a JSON list of the parameters registered but not stepped yet, whose z is still to
//! be copied from them), `frozen` (a JSON list of the frozen parameter groups, when any),
//! `training_loop` (JSON, when a running-loop control is set: [`LoopControl`], the plateau
//! reduction's options and state; gradient accumulation's micro-batches per step and pending),
//! and
//! `precisions` (a JSON list of each parameter's
//! [`Precision`](crate::Precision) as stored, `{"param": "bf16", "grad": "bf16", "state":
//! "bf16"}`, with `"quant": "q8"` or `"q4"` where the tensor's moments are quantized (a tensor
//! too small to quantize records none), when any is not all f32).
//!
//! Saving writes a temporary file and renames it into place. Loading checks everything (format
//! version, optimizer, groups, options, shapes) before changing anything, so a failed load leaves
//! the optimizer exactly as it was.

use std::collections::HashMap;
use std::path::Path;

use safetensors::Dtype;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::host::grad_stage::{LossScale, LossScaleState};
use crate::host::loop_control::check_loop_tensors;
pub use crate::host::loop_control::{Accumulation, LoopControl, SavedEma, SavedPlateau};
use crate::io::{parse_safetensors, read_f32, read_file, write_atomically};
use crate::optim::Algorithm;
use crate::precision::{self, Precision};
use crate::quant::Blocks;
use crate::schedule::Schedule;

/// The largest step count a checkpoint holds: it is stored as an I64, as PyTorch's `step`.
pub const MAX_STEP: u64 = i64::MAX as u64;

/// The `format` metadata value written and accepted.
pub const CHECKPOINT_FORMAT: &str = "wgpu-optim-checkpoint/1";

/// One parameter's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedParam {
    /// Index of its parameter group.
    pub group: usize,
    /// Its length.
    pub len: usize,
    /// Its shape (`[len]` for a parameter registered without one).
    pub shape: Vec<usize>,
    /// The dtypes it was registered with; its states hold values of `precision.state`.
    pub precision: Precision,
    /// Its state buffers, by PyTorch's key, in binding order: the unquantized ones.
    pub states: Vec<(String, Vec<f32>)>,
    /// Its quantized states ([`Precision::quant`]), as stored: codes and block scales, by
    /// PyTorch's key, in binding order.
    pub quantized: Vec<(String, Blocks)>,
    /// What the running-loop controls keep for it (f32, its length): `grad_sum`, the
    /// accumulated gradient while micro-batches are pending.
    pub loop_tensors: Vec<(String, Vec<f32>)>,
}

/// Loss scaling's settings and state, as saved.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedLossScale {
    /// GradScaler's settings.
    pub config: LossScale,
    /// Its state after the last step.
    pub state: LossScaleState,
}

/// An optimizer's complete state, as read from or written to a checkpoint file.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The optimizer's name ([`Algorithm::NAME`]).
    pub optimizer: String,
    /// Steps taken.
    pub step: u64,
    /// Each parameter group's hyperparameters, as JSON under PyTorch's names.
    pub groups: Vec<Value>,
    /// The learning-rate schedule, if one was set.
    pub schedule: Option<Schedule>,
    /// Each registered parameter's state, in registration order.
    pub params: Vec<SavedParam>,
    /// The global-norm clipping threshold, when clipping was on.
    pub max_grad_norm: Option<f32>,
    /// Loss scaling, when it was on.
    pub loss_scale: Option<SavedLossScale>,
    /// Saved in evaluation mode ([`crate::Algorithm::EVAL_MODE`] optimizers only).
    pub eval_mode: bool,
    /// Indices of the frozen parameter groups, in increasing order (their updates skipped).
    pub frozen: Vec<usize>,
    /// The running-loop controls set (plateau reduction).
    pub training_loop: LoopControl,
    /// Indices of the parameters not stepped yet ([`crate::Algorithm::EVAL_MODE`] optimizers:
    /// their state starts from the parameter at their first step).
    pub fresh: Vec<usize>,
}

/// FNV-1a (64-bit) over each tensor's name and bytes, tensors in name order.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_unstable_by_key(|t| t.0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, data) in sorted {
        for &b in name.as_bytes().iter().chain([0u8].iter()).chain(data) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadCheckpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn mismatch(reason: impl Into<String>) -> Error {
    Error::CheckpointMismatch(reason.into())
}

impl Checkpoint {
    /// The groups' hyperparameters as `O`, if this checkpoint is for `O`.
    pub fn configs<O: Algorithm>(&self) -> Result<Vec<O>> {
        if self.optimizer != O::NAME {
            return Err(mismatch(format!(
                "checkpoint is for {}, not {}",
                self.optimizer,
                O::NAME
            )));
        }
        self.groups
            .iter()
            .map(|g| {
                let c: O = serde_json::from_value(g.clone())
                    .map_err(|e| mismatch(format!("group hyperparameters {g}: {e}")))?;
                c.validate()?;
                Ok(c)
            })
            .collect()
    }

    /// Checks that this checkpoint fits an optimizer of type `O` whose groups are `current` and
    /// whose parameters are `(group, len)` in registration order: same optimizer, same groups
    /// with the same option flags, same parameters, same states, each state as long as its
    /// parameter; a valid schedule and gradient stage. Returns the saved groups.
    pub(crate) fn check_fits<O: Algorithm>(
        &self,
        current: &[O],
        params: &[(usize, &[usize])],
    ) -> Result<Vec<O>> {
        let saved = self.configs::<O>()?;
        if self.step > MAX_STEP.min(O::MAX_STEPS) {
            return Err(mismatch(format!(
                "step {} is past {}, the most {} counts",
                self.step,
                MAX_STEP.min(O::MAX_STEPS),
                O::NAME
            )));
        }
        if !O::EVAL_MODE && (self.eval_mode || !self.fresh.is_empty()) {
            return Err(mismatch(format!(
                "{} has no evaluation mode, the checkpoint has eval_mode {} and fresh {:?}",
                O::NAME,
                self.eval_mode,
                self.fresh
            )));
        }
        if saved.len() != current.len() {
            return Err(mismatch(format!(
                "checkpoint has {} parameter groups, the optimizer has {}",
                saved.len(),
                current.len()
            )));
        }
        for (i, (s, c)) in saved.iter().zip(current).enumerate() {
            if s.flags() != c.flags() {
                return Err(mismatch(format!(
                    "group {i} was saved with options {:?}, the optimizer has {:?}",
                    s.flags(),
                    c.flags()
                )));
            }
        }
        if self.params.len() != params.len() {
            return Err(mismatch(format!(
                "checkpoint has {} parameters, the optimizer has {} registered",
                self.params.len(),
                params.len()
            )));
        }
        for (i, (p, &(group, shape))) in self.params.iter().zip(params).enumerate() {
            // Only factored state follows the shape; elsewhere the length is what must match.
            let same = if O::FACTORED {
                p.shape == shape
            } else {
                p.len == shape.iter().product::<usize>()
            };
            if p.group != group || !same {
                return Err(mismatch(format!(
                    "parameter {i} was saved in group {} with shape {:?}, it is in group {group} with {shape:?}",
                    p.group, p.shape
                )));
            }
            let config = &saved[group];
            let kept: Vec<usize> = (0..O::STATE_NAMES.len())
                .filter(|&s| config.state_len(s, shape) > 0)
                .collect();
            let want: Vec<&str> = kept.iter().map(|&s| O::STATE_NAMES[s]).collect();
            let names =
                |list: Vec<&str>| -> Vec<String> { list.into_iter().map(str::to_string).collect() };
            let (have, kind) = match p.precision.quant {
                Some(_) => (
                    names(p.quantized.iter().map(|(n, _)| n.as_str()).collect()),
                    "quantized ",
                ),
                None => (
                    names(p.states.iter().map(|(n, _)| n.as_str()).collect()),
                    "",
                ),
            };
            let stray = match p.precision.quant {
                Some(_) => p.states.first().map(|(n, _)| n),
                None => p.quantized.first().map(|(n, _)| n),
            };
            if want != have || stray.is_some() {
                return Err(mismatch(format!(
                    "parameter {i} has {kind}states {have:?}{}, expected {want:?}",
                    stray.map_or(String::new(), |n| format!(" and also {n}"))
                )));
            }
            for (k, &slot) in kept.iter().enumerate() {
                let expected = config.state_len(slot, shape);
                let (name, got) = match p.precision.quant {
                    Some(q) => {
                        let (name, blocks) = &p.quantized[k];
                        (name, blocks.len(q))
                    }
                    None => (&p.states[k].0, Some(p.states[k].1.len() as u64)),
                };
                let bad_scale = p
                    .quantized
                    .get(k)
                    .and_then(|(_, b)| b.scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)));
                if let Some(s) = bad_scale.filter(|_| p.precision.quant.is_some()) {
                    return Err(mismatch(format!(
                        "state {name} of parameter {i} has a block scale of {s}: scales are \
                         finite and not negative"
                    )));
                }
                if got != Some(expected) {
                    return Err(mismatch(format!(
                        "state {name} of parameter {i} holds {}, a parameter of shape {shape:?} keeps {expected} values",
                        got.map_or("codes and scales that disagree".to_string(), |n| format!(
                            "{n} values"
                        ))
                    )));
                }
            }
        }
        if self.frozen.windows(2).any(|w| w[0] >= w[1])
            || self.frozen.iter().any(|&g| g >= current.len())
        {
            return Err(mismatch(format!(
                "frozen groups {:?} are not increasing indices of the {} groups",
                self.frozen,
                current.len()
            )));
        }
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        self.training_loop.validate()?;
        for (i, p) in self.params.iter().enumerate() {
            check_loop_tensors(&self.training_loop, i, p.len, &p.loop_tensors)?;
        }
        crate::host::grad_stage::validate_max_norm(self.max_grad_norm.map(f64::from))?;
        if let Some(ls) = &self.loss_scale {
            ls.config.validate()?;
            ls.state.validate(&ls.config)?;
        }
        Ok(saved)
    }

    /// Writes the checkpoint to `path` (through a temporary file and a rename, so `path` is
    /// either the complete new file or untouched).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes().map_err(|reason| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(reason),
        })?;
        write_atomically(path, &bytes)
    }

    /// The checkpoint file's bytes; the reason if a tensor cannot be serialized.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut groups = Vec::new();
        for (g, config) in self.groups.iter().enumerate() {
            let mut obj = config.clone();
            let members: Vec<usize> = (0..self.params.len())
                .filter(|&i| self.params[i].group == g)
                .collect();
            if let Value::Object(map) = &mut obj {
                map.insert("params".into(), members.into());
            }
            groups.push(obj);
        }
        let lengths: Vec<usize> = self.params.iter().map(|p| p.len).collect();
        let flat = self.params.iter().all(|p| p.shape == [p.len]);
        let mut meta = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("optimizer".to_string(), self.optimizer.clone()),
            ("step".to_string(), self.step.to_string()),
            ("param_groups".to_string(), Value::Array(groups).to_string()),
            ("lengths".to_string(), Value::from(lengths).to_string()),
        ]);
        if let Some(s) = &self.schedule {
            let v = serde_json::to_value(s).map_err(|e| e.to_string())?;
            meta.insert("schedule".into(), v.to_string());
        }
        if let Some(m) = self.max_grad_norm {
            meta.insert("max_grad_norm".into(), m.to_string());
        }
        if let Some(ls) = &self.loss_scale {
            let v = serde_json::to_value(ls).map_err(|e| e.to_string())?;
            meta.insert("loss_scale".into(), v.to_string());
        }
        if self.eval_mode {
            meta.insert("eval_mode".into(), "true".into());
        }
        if !self.training_loop.is_empty() {
            let v = serde_json::to_value(&self.training_loop).map_err(|e| e.to_string())?;
            meta.insert("training_loop".into(), v.to_string());
        }
        if !flat {
            let shapes: Vec<&[usize]> = self.params.iter().map(|p| p.shape.as_slice()).collect();
            let v = serde_json::to_value(shapes).map_err(|e| e.to_string())?;
            meta.insert("shapes".into(), v.to_string());
        }
        if !self.frozen.is_empty() {
            meta.insert(
                "frozen".into(),
                Value::from(self.frozen.clone()).to_string(),
            );
        }
        if !self.fresh.is_empty() {
            meta.insert("fresh".into(), Value::from(self.fresh.clone()).to_string());
        }
        if self.params.iter().any(|p| !p.precision.is_f32()) {
            let list: Vec<Precision> = self.params.iter().map(|p| p.precision).collect();
            let v = serde_json::to_value(list).map_err(|e| e.to_string())?;
            meta.insert("precisions".into(), v.to_string());
        }
        let step_bytes = (self.step as i64).to_le_bytes();
        // Each state as its dtype stores it (16-bit values without the word padding).
        let stored: Vec<Vec<Vec<u8>>> = self
            .params
            .iter()
            .map(|p| {
                let dtype = p.precision.state;
                p.states
                    .iter()
                    .map(|(_, data)| {
                        let mut bytes = dtype.encode(data);
                        bytes.truncate(data.len() * dtype.bytes() as usize);
                        bytes
                    })
                    .collect()
            })
            .collect();
        let mut views = Vec::new();
        let io = |e: safetensors::SafeTensorError| e.to_string();
        for (i, p) in self.params.iter().enumerate() {
            for ((name, data), bytes) in p.states.iter().zip(&stored[i]) {
                let view = safetensors::tensor::TensorView::new(
                    file_dtype(p.precision.state),
                    vec![data.len()],
                    bytes,
                )
                .map_err(io)?;
                views.push((format!("state.{i}.{name}"), view));
            }
            for (name, blocks) in &p.quantized {
                let codes = &blocks.codes;
                let view =
                    safetensors::tensor::TensorView::new(Dtype::U8, vec![codes.len()], codes)
                        .map_err(io)?;
                views.push((format!("state.{i}.{name}"), view));
                let scales: &[u8] = bytemuck::cast_slice(&blocks.scales);
                let view = safetensors::tensor::TensorView::new(
                    Dtype::F32,
                    vec![blocks.scales.len()],
                    scales,
                )
                .map_err(io)?;
                views.push((format!("state.{i}.{name}.scale"), view));
            }
            let view = safetensors::tensor::TensorView::new(Dtype::I64, vec![1], &step_bytes)
                .map_err(io)?;
            views.push((format!("state.{i}.step"), view));
            for (name, data) in &p.loop_tensors {
                let bytes: &[u8] = bytemuck::cast_slice(data);
                let view =
                    safetensors::tensor::TensorView::new(Dtype::F32, vec![data.len()], bytes)
                        .map_err(io)?;
                views.push((format!("loop.{i}.{name}"), view));
            }
        }
        meta.insert(
            "checksum".into(),
            checksum(views.iter().map(|(n, v)| (n.as_str(), v.data()))),
        );
        safetensors::tensor::serialize(views, Some(meta)).map_err(io)
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_bytes(&read_file(path)?, path)
    }

    /// Parses and checks a checkpoint file's bytes; `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let (st, meta) = parse_safetensors(bytes).map_err(|reason| bad(path, reason))?;
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(path, format!("missing metadata {key:?}")))
        };
        let format = get("format")?;
        if format != CHECKPOINT_FORMAT {
            return Err(bad(
                path,
                format!("format is {format:?}, this version reads {CHECKPOINT_FORMAT:?}"),
            ));
        }
        let tensors = st.tensors();
        let sum = checksum(tensors.iter().map(|(n, v)| (n.as_str(), v.data())));
        if *get("checksum")? != sum {
            return Err(bad(path, "checksum mismatch: the tensor data is corrupt"));
        }
        let parse_json = |key: &str| -> Result<Value> {
            serde_json::from_str(get(key)?)
                .map_err(|e| bad(path, format!("metadata {key:?} is not valid JSON: {e}")))
        };
        let optimizer = get("optimizer")?.clone();
        let step: u64 = get("step")?
            .parse()
            .map_err(|e| bad(path, format!("step is not a count: {e}")))?;
        if step > MAX_STEP {
            return Err(bad(path, format!("step {step} is past {MAX_STEP}")));
        }
        let lengths: Vec<usize> = serde_json::from_value(parse_json("lengths")?)
            .map_err(|e| bad(path, format!("lengths is not a list of counts: {e}")))?;
        let Value::Array(listed) = parse_json("param_groups")? else {
            return Err(bad(path, "param_groups is not a list"));
        };
        let mut group_of = vec![None; lengths.len()];
        let mut groups = Vec::new();
        for (g, mut obj) in listed.into_iter().enumerate() {
            let members: Vec<usize> = obj
                .as_object_mut()
                .and_then(|m| m.remove("params"))
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| {
                    bad(
                        path,
                        format!("param group {g}'s params is not a list of indices: {e}"),
                    )
                })?
                .ok_or_else(|| bad(path, format!("param group {g} has no params")))?;
            for m in members {
                match group_of.get_mut(m) {
                    Some(slot @ None) => *slot = Some(g),
                    _ => {
                        return Err(bad(
                            path,
                            format!("param group {g} lists parameter {m} twice or out of range"),
                        ));
                    }
                }
            }
            groups.push(obj);
        }
        let schedule = match meta.get("schedule") {
            None => None,
            Some(_) => Some(
                Schedule::from_json(&parse_json("schedule")?)
                    .map_err(|e| bad(path, e.to_string()))?,
            ),
        };
        let max_grad_norm = meta
            .get("max_grad_norm")
            .map(|m| m.parse::<f32>())
            .transpose()
            .map_err(|e| bad(path, format!("max_grad_norm is not a number: {e}")))?;
        let loss_scale = meta
            .contains_key("loss_scale")
            .then(|| {
                serde_json::from_value::<SavedLossScale>(parse_json("loss_scale")?)
                    .map_err(|e| bad(path, format!("loss_scale: {e}")))
            })
            .transpose()?;
        let training_loop = match meta.get("training_loop") {
            None => LoopControl::default(),
            Some(_) => serde_json::from_value(parse_json("training_loop")?)
                .map_err(|e| bad(path, format!("training_loop: {e}")))?,
        };
        let eval_mode = match meta.get("eval_mode").map(String::as_str) {
            None => false,
            Some("true") => true,
            Some(other) => return Err(bad(path, format!("eval_mode is {other:?}, not true"))),
        };
        let fresh: Vec<usize> = match meta.get("fresh") {
            None => Vec::new(),
            Some(_) => serde_json::from_value(parse_json("fresh")?)
                .map_err(|e| bad(path, format!("fresh is not a list of indices: {e}")))?,
        };
        if let Some(&i) = fresh.iter().find(|&&i| i >= lengths.len()) {
            return Err(bad(
                path,
                format!("fresh names parameter {i} of {}", lengths.len()),
            ));
        }
        if fresh.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(path, "fresh is not in increasing order"));
        }
        let frozen: Vec<usize> = match meta.get("frozen") {
            None => Vec::new(),
            Some(_) => serde_json::from_value(parse_json("frozen")?)
                .map_err(|e| bad(path, format!("frozen is not a list of groups: {e}")))?,
        };
        if frozen.windows(2).any(|w| w[0] >= w[1]) || frozen.iter().any(|&g| g >= groups.len()) {
            return Err(bad(
                path,
                format!(
                    "frozen {frozen:?} is not increasing groups of {}",
                    groups.len()
                ),
            ));
        }
        let shapes: Vec<Vec<usize>> = match meta.get("shapes") {
            None => lengths.iter().map(|&l| vec![l]).collect(),
            Some(_) => serde_json::from_value(parse_json("shapes")?)
                .map_err(|e| bad(path, format!("shapes is not a list of shapes: {e}")))?,
        };
        if shapes.len() != lengths.len() {
            return Err(bad(
                path,
                format!("{} shapes for {} parameters", shapes.len(), lengths.len()),
            ));
        }
        for (i, (shape, &len)) in shapes.iter().zip(&lengths).enumerate() {
            let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if numel != Some(len) {
                return Err(bad(
                    path,
                    format!("parameter {i} has shape {shape:?} but {len} elements"),
                ));
            }
        }
        let precisions: Vec<Precision> = match meta.get("precisions") {
            None => vec![Precision::F32; lengths.len()],
            Some(_) => serde_json::from_value(parse_json("precisions")?)
                .map_err(|e| bad(path, format!("precisions is not a list of precisions: {e}")))?,
        };
        if precisions.len() != lengths.len() {
            return Err(bad(
                path,
                format!(
                    "{} precisions for {} parameters",
                    precisions.len(),
                    lengths.len()
                ),
            ));
        }
        let names = st.names();
        let mut params = Vec::new();
        for (i, &len) in lengths.iter().enumerate() {
            let group = group_of[i]
                .ok_or_else(|| bad(path, format!("parameter {i} is in no param group")))?;
            let prefix = format!("state.{i}.");
            let step_view = st
                .tensor(&format!("{prefix}step"))
                .map_err(|_| bad(path, format!("missing tensor {prefix}step")))?;
            if step_view.dtype() != Dtype::I64 || step_view.shape() != [1] {
                return Err(bad(path, format!("{prefix}step is not one I64")));
            }
            let saved_step = i64::from_le_bytes(
                step_view
                    .data()
                    .try_into()
                    .map_err(|_| bad(path, "bad step"))?,
            );
            if saved_step != step as i64 {
                return Err(bad(
                    path,
                    format!("{prefix}step is {saved_step}, metadata says {step}"),
                ));
            }
            // States in binding order is restored by the optimizer; here, sorted by name.
            let mut state_names: Vec<&str> = names
                .iter()
                .filter_map(|n| n.strip_prefix(&prefix))
                .filter(|n| *n != "step" && !n.ends_with(".scale"))
                .collect();
            state_names.sort_unstable();
            let quantized = match precisions[i].quant {
                Some(_) => std::mem::take(&mut state_names)
                    .into_iter()
                    .map(|n| {
                        let name = format!("{prefix}{n}");
                        let codes = read_u8(&st, &name).map_err(|r| bad(path, r))?;
                        let scale = format!("{name}.scale");
                        let blocks = st.tensor(&scale).map(|v| v.shape().to_vec());
                        let count = match blocks.as_deref() {
                            Ok([count]) => *count,
                            _ => return Err(bad(path, format!("missing or bad tensor {scale:?}"))),
                        };
                        let scales = read_f32(&st, &scale, &[count]).map_err(|r| bad(path, r))?;
                        Ok((n.to_string(), Blocks { codes, scales }))
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => Vec::new(),
            };
            let states = state_names
                .into_iter()
                .map(|n| {
                    // One-dimensional, of the length the optimizer checks against the shape.
                    let name = format!("{prefix}{n}");
                    let values = match st.tensor(&name).map(|v| v.shape().to_vec()) {
                        Ok(shape) => match shape[..] {
                            [values] => values,
                            _ => {
                                return Err(bad(
                                    path,
                                    format!(
                                        "tensor {name:?} has shape {shape:?}, not one dimension"
                                    ),
                                ));
                            }
                        },
                        Err(_) => 0,
                    };
                    let dtype = precisions[i].state;
                    let data = if dtype == precision::Dtype::F32 {
                        read_f32(&st, &name, &[values]).map_err(|r| bad(path, r))?
                    } else {
                        read_16_bit(&st, &name, values, dtype).map_err(|r| bad(path, r))?
                    };
                    Ok((n.to_string(), data))
                })
                .collect::<Result<Vec<_>>>()?;
            let loop_prefix = format!("loop.{i}.");
            let mut loop_names: Vec<&str> = names
                .iter()
                .filter_map(|n| n.strip_prefix(&loop_prefix))
                .collect();
            loop_names.sort_unstable();
            let loop_tensors = loop_names
                .into_iter()
                .map(|n| {
                    let name = format!("{loop_prefix}{n}");
                    let data = read_f32(&st, &name, &[len]).map_err(|r| bad(path, r))?;
                    Ok((n.to_string(), data))
                })
                .collect::<Result<Vec<_>>>()?;
            let shape = shapes[i].clone();
            params.push(SavedParam {
                group,
                len,
                shape,
                precision: precisions[i],
                states,
                quantized,
                loop_tensors,
            });
        }
        Ok(Self {
            optimizer,
            step,
            groups,
            schedule,
            params,
            max_grad_norm,
            loss_scale,
            eval_mode,
            frozen,
            training_loop,
            fresh,
        })
    }

    /// Orders each parameter's states as `O` binds them (a loaded file lists them by name).
    pub(crate) fn in_binding_order<O: Algorithm>(mut self) -> Self {
        let slot = |n: &String| {
            O::STATE_NAMES
                .iter()
                .position(|s| s == n)
                .unwrap_or(usize::MAX)
        };
        for p in &mut self.params {
            p.states.sort_by_key(|(n, _)| slot(n));
            p.quantized.sort_by_key(|(n, _)| slot(n));
        }
        self
    }
}

/// The safetensors dtype a state of `dtype` is saved as.
fn file_dtype(dtype: precision::Dtype) -> Dtype {
    match dtype {
        precision::Dtype::F32 => Dtype::F32,
        precision::Dtype::Bf16 => Dtype::BF16,
        precision::Dtype::F16 => Dtype::F16,
    }
}

/// Tensor `name`, one-dimensional U8 (a quantized state's codes).
fn read_u8(st: &safetensors::SafeTensors<'_>, name: &str) -> Result<Vec<u8>, String> {
    let view = st
        .tensor(name)
        .map_err(|_| format!("missing tensor {name:?}"))?;
    if view.dtype() != Dtype::U8 || view.shape().len() != 1 {
        return Err(format!(
            "tensor {name:?} is {:?} {:?}, expected one-dimensional U8 codes",
            view.dtype(),
            view.shape()
        ));
    }
    Ok(view.data().to_vec())
}

/// Tensor `name`, `len` values of the 16-bit `dtype`, as the f32 values they are.
fn read_16_bit(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    len: usize,
    dtype: precision::Dtype,
) -> Result<Vec<f32>, String> {
    let view = st
        .tensor(name)
        .map_err(|_| format!("missing tensor {name:?}"))?;
    if view.dtype() != file_dtype(dtype) || view.shape() != [len] {
        return Err(format!(
            "tensor {name:?} is {:?} {:?}, expected {:?} [{len}]",
            view.dtype(),
            view.shape(),
            file_dtype(dtype)
        ));
    }
    dtype
        .decode(view.data(), len)
        .ok_or_else(|| format!("tensor {name:?} is short"))
}
