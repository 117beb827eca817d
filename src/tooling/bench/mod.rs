//! The benchmark harness behind `wgpu-optim bench` and `cargo bench`.
//!
//! An optimizer step is memory-bound, so each measurement is set against a roofline taken in the
//! same run on the same adapter: a same-bytes streaming kernel (`shaders/stream.wgsl`) that reads
//! and writes exactly the buffers the step does, and the adapter's buffer-copy bandwidth.
//!
//! This file holds the variants, options and result row; `gpu` measures a `GpuOptimizer`,
//! `cpu` the CPU reference, and `roofline` the streaming kernels, the copy and the pass timer.

use serde::Serialize;

use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernel::Width;
use crate::optim::{
    Adadelta, Adafactor, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, Lamb,
    Lars, Lion, Muon, NAdam, RAdam, RmsProp, Rprop, ScheduleFreeAdamW, Sgd,
};
use crate::precision::{Dtype, Precision};
use crate::quant::Quant;
use crate::rng::SplitMix;

mod cpu;
mod gpu;
pub mod muon;
mod roofline;

pub use cpu::cpu;
pub use gpu::{Layout, gpu};
#[cfg(test)]
pub(crate) use roofline::stream_wgsl;
pub use roofline::{Stream, StreamBuffers, StreamShape, copy_bandwidth, sweep};

/// Every benchmark variant: an optimizer name, optionally with the option it turns on.
pub const VARIANTS: &[&str] = &[
    "sgd",
    "sgd-momentum",
    "adam",
    "adamw",
    "adamw-amsgrad",
    "adamax",
    "nadam",
    "rmsprop",
    "rmsprop-centered",
    "adagrad",
    "adadelta",
    "rprop",
    "asgd",
    "radam",
    "lion",
    "lamb",
    "lars",
    "adopt",
    "ademamix",
    "schedule-free-adamw",
    "adafactor",
    "muon",
];

/// The variants `--optimizer all` runs: each optimizer with PyTorch's default options, plus SGD
/// with momentum, the form SGD is trained with.
pub const DEFAULT_VARIANTS: &[&str] = &[
    "sgd",
    "sgd-momentum",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "rprop",
    "asgd",
    "radam",
    "lion",
    "lamb",
    "lars",
    "adopt",
    "ademamix",
    "schedule-free-adamw",
    "adafactor",
];

/// Any optimizer's configuration, for choosing one at run time.
#[derive(Debug, Clone)]
pub enum AnyConfig {
    /// [`Sgd`].
    Sgd(Sgd),
    /// [`Adam`].
    Adam(Adam),
    /// [`AdamW`].
    AdamW(AdamW),
    /// [`Adamax`].
    Adamax(Adamax),
    /// [`NAdam`].
    NAdam(NAdam),
    /// [`RmsProp`].
    RmsProp(RmsProp),
    /// [`Adagrad`].
    Adagrad(Adagrad),
    /// [`Adadelta`].
    Adadelta(Adadelta),
    /// [`Rprop`].
    Rprop(Rprop),
    /// [`Asgd`].
    Asgd(Asgd),
    /// [`RAdam`].
    RAdam(RAdam),
    /// [`Lion`].
    Lion(Lion),
    /// [`Lamb`].
    Lamb(Lamb),
    /// [`Lars`].
    Lars(Lars),
    /// [`Adopt`].
    Adopt(Adopt),
    /// [`Ademamix`].
    Ademamix(Ademamix),
    /// [`ScheduleFreeAdamW`].
    ScheduleFreeAdamW(ScheduleFreeAdamW),
    /// [`Adafactor`].
    Adafactor(Adafactor),
    /// [`Muon`] (measured by [`muon`], in GFLOP/s: its step is compute-bound).
    Muon(Muon),
}

/// Calls a generic expression with the concrete configuration inside an [`AnyConfig`].
macro_rules! with_config {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            $crate::tooling::bench::AnyConfig::Sgd($c) => $body,
            $crate::tooling::bench::AnyConfig::Adam($c) => $body,
            $crate::tooling::bench::AnyConfig::AdamW($c) => $body,
            $crate::tooling::bench::AnyConfig::Adamax($c) => $body,
            $crate::tooling::bench::AnyConfig::NAdam($c) => $body,
            $crate::tooling::bench::AnyConfig::RmsProp($c) => $body,
            $crate::tooling::bench::AnyConfig::Adagrad($c) => $body,
            $crate::tooling::bench::AnyConfig::Adadelta($c) => $body,
            $crate::tooling::bench::AnyConfig::Rprop($c) => $body,
            $crate::tooling::bench::AnyConfig::Asgd($c) => $body,
            $crate::tooling::bench::AnyConfig::RAdam($c) => $body,
            $crate::tooling::bench::AnyConfig::Lion($c) => $body,
            $crate::tooling::bench::AnyConfig::Lamb($c) => $body,
            $crate::tooling::bench::AnyConfig::Lars($c) => $body,
            $crate::tooling::bench::AnyConfig::Adopt($c) => $body,
            $crate::tooling::bench::AnyConfig::Ademamix($c) => $body,
            $crate::tooling::bench::AnyConfig::ScheduleFreeAdamW($c) => $body,
            $crate::tooling::bench::AnyConfig::Adafactor($c) => $body,
            $crate::tooling::bench::AnyConfig::Muon($c) => $body,
        }
    };
}

pub(crate) use with_config;

/// The configuration of a benchmark variant (see [`VARIANTS`]).
pub fn variant(name: &str) -> Result<AnyConfig> {
    Ok(match name {
        "sgd" => AnyConfig::Sgd(Sgd::default()),
        "sgd-momentum" => AnyConfig::Sgd(Sgd {
            momentum: 0.9,
            ..Default::default()
        }),
        "adam" => AnyConfig::Adam(Adam::default()),
        "adamw" => AnyConfig::AdamW(AdamW::default()),
        "adamw-amsgrad" => AnyConfig::AdamW(AdamW {
            amsgrad: true,
            ..Default::default()
        }),
        "adamax" => AnyConfig::Adamax(Adamax::default()),
        "nadam" => AnyConfig::NAdam(NAdam::default()),
        "rmsprop" => AnyConfig::RmsProp(RmsProp::default()),
        "rmsprop-centered" => AnyConfig::RmsProp(RmsProp {
            centered: true,
            ..Default::default()
        }),
        "adagrad" => AnyConfig::Adagrad(Adagrad::default()),
        "adadelta" => AnyConfig::Adadelta(Adadelta::default()),
        "rprop" => AnyConfig::Rprop(Rprop::default()),
        "asgd" => AnyConfig::Asgd(Asgd::default()),
        "radam" => AnyConfig::RAdam(RAdam::default()),
        "lion" => AnyConfig::Lion(Lion::default()),
        "lamb" => AnyConfig::Lamb(Lamb::default()),
        "lars" => AnyConfig::Lars(Lars::default()),
        "adopt" => AnyConfig::Adopt(Adopt::default()),
        "ademamix" => AnyConfig::Ademamix(Ademamix::default()),
        "schedule-free-adamw" => AnyConfig::ScheduleFreeAdamW(ScheduleFreeAdamW::default()),
        "adafactor" => AnyConfig::Adafactor(Adafactor::default()),
        "muon" => AnyConfig::Muon(Muon::default()),
        other => {
            return Err(Error::Unknown {
                kind: "benchmark optimizer",
                name: format!("{other} (one of {})", VARIANTS.join(", ")),
            });
        }
    })
}

impl AnyConfig {
    /// The same configuration with learning rate `lr`.
    pub fn with_lr(mut self, lr: f64) -> Self {
        with_config!(&mut self, c => c.lr = lr);
        self
    }

    /// Bytes one step moves per parameter with these options.
    pub fn bytes_per_param(&self) -> u64 {
        with_config!(self, c => c.bytes_per_param())
    }

    /// Bytes one step moves over a tensor of `shape`, and bytes of state kept for it.
    pub fn step_bytes(&self, shape: &[usize]) -> (u64, u64) {
        with_config!(self, c => c.step_bytes(shape))
    }

    /// State buffers these options keep.
    pub fn states(&self) -> u32 {
        ((self.bytes_per_param() - 12) / 8) as u32
    }

    /// Bytes one step moves over a tensor of `shape` stored as `precision`, and bytes of state
    /// kept for it.
    pub fn stored_step_bytes(&self, shape: &[usize], precision: Precision) -> (u64, u64) {
        with_config!(self, c => c.stored_step_bytes(shape, precision))
    }

    /// Whether this optimizer steps 16-bit tensors (the elementwise ones).
    pub fn takes_16_bit(&self) -> bool {
        with_config!(self, c => elementwise(c))
    }

    /// Whether this optimizer quantizes its state (`Algorithm::QUANT_MAPS`).
    pub fn takes_quantized(&self) -> bool {
        with_config!(self, c => quantizes(c))
    }
}

/// Whether `O` has maps for quantized state.
fn quantizes<O: Algorithm>(_: &O) -> bool {
    !O::QUANT_MAPS.is_empty()
}

/// Whether `O` is elementwise: no norm or factor passes.
fn elementwise<O: Algorithm>(_: &O) -> bool {
    !O::NORMS && !O::FACTORED
}

/// The precisions of [`memory_table`]'s columns, with their headings.
pub const MEMORY_COLUMNS: [(&str, Precision); 7] = [
    ("f32", Precision::F32),
    (
        "f32 master weights, bf16 grads",
        Precision::new(Dtype::F32, Dtype::Bf16, Dtype::F32),
    ),
    (
        "f32 params and grads, bf16 state",
        Precision::new(Dtype::F32, Dtype::F32, Dtype::Bf16),
    ),
    ("all bf16 (or f16)", Precision::uniform(Dtype::Bf16)),
    ("f32, q8 state", Precision::F32.quantized(Quant::Q8)),
    ("f32, q4 state", Precision::F32.quantized(Quant::Q4)),
    (
        "bf16 params and grads, q8 state",
        Precision::uniform(Dtype::Bf16).quantized(Quant::Q8),
    ),
];

/// The README's memory table: for each default variant, the bytes of state held and the bytes
/// one step moves per parameter of a flat tensor, in each precision of [`MEMORY_COLUMNS`]
/// (`wgpu-optim info --memory` prints it).
pub fn memory_table() -> String {
    let mut out = String::from("| optimizer |");
    for (name, _) in MEMORY_COLUMNS {
        out.push_str(&format!(" {name}: held / moved |"));
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(MEMORY_COLUMNS.len()));
    out.push('\n');
    let n = 1usize << 20;
    for &name in DEFAULT_VARIANTS {
        let Ok(config) = variant(name) else { continue };
        out.push_str(&format!("| `{name}` |"));
        for (_, precision) in MEMORY_COLUMNS {
            if !precision.is_f32() && !config.takes_16_bit() {
                out.push_str(" f32 only |");
                continue;
            }
            if precision.quant.is_some() && !config.takes_quantized() {
                out.push_str(" not quantized |");
                continue;
            }
            let (moved, held) = config.stored_step_bytes(&[n], precision);
            let per = |b: u64| b as f64 / n as f64;
            out.push_str(&format!(" {} / {} |", per(held), per(moved)));
        }
        out.push('\n');
    }
    out
}

/// Parses a parameter count such as `1M`, `10M`, `2.5K` or `1G` (decimal multiples).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let bad = || {
        Error::InvalidOptions(format!(
            "parameter count must be like 1M, 10M or 4096, got {s:?}"
        ))
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let n = v * mult;
    if !(n >= 1.0 && n.is_finite() && n.fract() == 0.0) {
        return Err(bad());
    }
    Ok(n as u64)
}

/// One measurement: an optimizer variant at one size on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The variant (see [`VARIANTS`]).
    pub optimizer: String,
    /// Parameters updated per step.
    pub params: u64,
    /// How the parameters are held.
    pub layout: Layout,
    /// Tensors the parameters are split into.
    pub tensors: usize,
    /// Compute dispatches one step records (0 on the CPU).
    pub dispatches_per_step: usize,
    /// Optimizer-state bytes kept per parameter (4 per value of each state buffer).
    pub state_bytes_per_param: f64,
    /// The tensor's shape (the flat layout's, as registered).
    pub shape: Vec<usize>,
    /// The parameters' dtype (`--param-dtype`).
    pub param_dtype: Dtype,
    /// The gradients' dtype (`--grad-dtype`).
    pub grad_dtype: Dtype,
    /// The optimizer state's dtype (`--state-dtype`): `f32`, `bf16`, `f16`, or `q8` and `q4`
    /// (codes and block scales).
    pub state_dtype: String,
    /// `gpu` or `cpu`.
    pub backend: &'static str,
    /// The adapter (or CPU) measured.
    pub adapter: String,
    /// `gpu-timestamps` (GPU time between the pass's start and end) or `wall` (submit to done).
    pub timing: &'static str,
    /// Timed steps (after warm-up).
    pub steps: usize,
    /// Median time per step.
    pub ms_per_step: f64,
    /// Bytes per parameter a single fused pass must move (param r/w, grad r, each state r/w),
    /// the bytes the streaming kernel moves. LAMB and LARS need per-tensor norms before they
    /// can update, so they make two passes (norms, then update) and move more than this.
    pub bytes_per_param: f64,
    /// `bytes_per_param · params / ms_per_step`, in GB/s (10⁹ bytes).
    pub gb_per_s: f64,
    /// Median time of the same-bytes streaming kernel at its fastest shape (`stream_shape`),
    /// same timing method.
    pub stream_ms: f64,
    /// The streaming kernel's shape: `vec4` with the workgroup size and vectors per invocation
    /// the bench's sweep found fastest on this adapter.
    pub stream_shape: String,
    /// `stream_ms / ms_per_step`: 1.0 means the step runs as fast as the best streaming kernel
    /// this adapter runs moving the same bytes.
    pub roofline: f64,
    /// Median time of the scalar streaming kernel (one `f32` per invocation), the reference
    /// measurements were taken against before the kernels were vectorized.
    pub scalar_stream_ms: f64,
    /// `scalar_stream_ms / ms_per_step`.
    pub scalar_roofline: f64,
    /// The update kernels' element width: `vec4`, or `scalar` with `--scalar-kernels` (GPU
    /// only).
    pub kernels: Option<Width>,
    /// The gradient stage on during the step: `none`, `clip`, `scale` or `clip+scale` (GPU
    /// only; the CPU row steps without one).
    pub grad_stage: &'static str,
    /// Whether the host-cost steps moved their gradients (`--moving-grads`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub moving_grads: bool,
    /// Buffer-copy bandwidth (bytes read + written per second, GB/s), wall-clock timed.
    pub copy_gb_per_s: f64,
    /// Host time to record and submit one step, without waiting (GPU only). Software adapters
    /// such as lavapipe execute the work inside `queue.submit`, so there it includes the step.
    pub host_us_per_step: Option<f64>,
    /// Host time to record one step: creating the encoder, `GpuOptimizer::step` (which picks
    /// the step's scalars and records the dispatches) and finishing the encoder; the median
    /// over a warm loop that alternates it with `wgpu_record_us_per_step` (GPU only).
    pub record_us_per_step: Option<f64>,
    /// Host time for the same wgpu calls made directly: the same encoder, pass, pipelines,
    /// bind groups and dispatches, with none of this crate's code in between (GPU only).
    pub wgpu_record_us_per_step: Option<f64>,
    /// Heap allocations inside one `GpuOptimizer::step` call, when the caller counts them.
    pub allocs_per_step: Option<f64>,
    /// Heap allocations wgpu makes for a compute pass with one pipeline, one bind group and one
    /// dispatch, without this crate (a step also sets its scalars' bind group at a dynamic
    /// offset): the part of `allocs_per_step` that is wgpu's own.
    pub wgpu_allocs_per_step: Option<f64>,
    /// With `--verify`: max |GPU - CPU reference| over the parameter after the same steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs_err_vs_cpu: Option<f64>,
}

/// What to measure and how.
#[derive(Clone)]
pub struct BenchOptions<'a> {
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Compare the GPU result with the CPU reference afterwards.
    pub verify: bool,
    /// CPU threads (CPU backend and verification).
    pub threads: usize,
    /// Tensors to split the parameters into: with more than one, each GPU measurement is made
    /// for a flat buffer, an arena and separate buffers.
    pub tensors: usize,
    /// Returns the process's allocation count so far, if the binary counts allocations.
    pub alloc_count: Option<&'a dyn Fn() -> u64>,
    /// The vec4 streaming kernel's shape; `None` sweeps [`StreamShape::candidates`] for each
    /// measurement (see [`sweep`]).
    pub stream: Option<StreamShape>,
    /// Register the parameters with the scalar (`f32`) kernels instead of the vec4 ones.
    pub scalar_kernels: bool,
    /// Clip gradients to this global norm during the step.
    pub max_grad_norm: Option<f64>,
    /// Turn loss scaling (GradScaler's defaults) on during the step.
    pub loss_scale: bool,
    /// Step with gradients that move (GPU only): the host-cost steps alternate between the
    /// registered gradient buffers and a second set through `GpuOptimizer::step_with`, both
    /// seen once before counting, so `allocs_per_step` shows a warm loop over a pool.
    pub moving_grads: bool,
    /// Register the flat layout's one tensor with this shape (Adafactor factors a matrix);
    /// `None`: flat. Its product must be the parameter count.
    pub shape: Option<Vec<usize>>,
    /// The dtypes of the parameters, gradients and state (GPU only: the CPU reference holds
    /// 16-bit values as f32).
    pub precision: Precision,
}

impl BenchOptions<'_> {
    /// The shape the flat layout registers its `params` values with.
    pub fn shape_of(&self, params: u64) -> Result<Vec<usize>> {
        match &self.shape {
            None => Ok(vec![params as usize]),
            Some(s) if s.iter().map(|&d| d as u64).product::<u64>() == params => Ok(s.clone()),
            Some(s) => Err(Error::ShapeMismatch {
                shape: s.clone(),
                len: params,
            }),
        }
    }

    /// Checks that there is something to time: at least one timed step.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::InvalidOptions(
                "the benchmark needs at least 1 timed step, got --steps 0".into(),
            ));
        }
        Ok(())
    }
}

/// Steps measured for host cost and allocations.
const ALLOC_SAMPLES: usize = 16;

/// Steps of the warm recording loop (each alternated with the same calls made directly).
const RECORD_SAMPLES: usize = 200;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Random values in [-1, 1), deterministic.
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    (0..len).map(|_| rng.symmetric_f32()).collect()
}

/// Checks that a buffer of `params` f32 values fits this device's `max_buffer_size`, before
/// anything is allocated (buffers past one storage binding are stepped in windows).
pub fn check_fits(ctx: &GpuContext, params: u64) -> Result<()> {
    let size = params.saturating_mul(4);
    let limit = ctx.device.limits().max_buffer_size;
    if size > limit {
        return Err(Error::BufferTooLarge {
            which: "param",
            size,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1M").unwrap(), 1_000_000);
        assert_eq!(parse_size("10m").unwrap(), 10_000_000);
        assert_eq!(parse_size("2.5K").unwrap(), 2_500);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1757").unwrap(), 1757);
        for bad in ["", "M", "0", "-1M", "1.5", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_per_param_match_the_kernels() {
        let b = |n| variant(n).unwrap().bytes_per_param();
        assert_eq!(b("sgd"), 12);
        assert_eq!(b("sgd-momentum"), 20);
        assert_eq!(b("adamw"), 28);
        assert_eq!(b("adamw-amsgrad"), 36);
        assert_eq!(b("rmsprop-centered"), 28);
        assert_eq!(b("lion"), 20);
        assert_eq!(b("adamax"), 28);
        assert_eq!(b("nadam"), 28);
        assert_eq!(b("adadelta"), 28);
        assert_eq!(b("rprop"), 28);
        assert_eq!(b("asgd"), 20);
        assert_eq!(b("lamb"), 28);
        assert_eq!(b("lars"), 20);
        assert_eq!(b("adopt"), 28);
        assert_eq!(b("ademamix"), 36);
        assert_eq!(b("schedule-free-adamw"), 28);
        assert_eq!(b("adafactor"), 32);
        let factored = variant("adafactor").unwrap().step_bytes(&[1024, 4096]);
        assert_eq!(
            factored,
            (28 * 1024 * 4096 + 12 * 1024 + 8 * 4096, 4 * (1024 + 4096))
        );
        assert_eq!(b("muon"), 40);
        assert!(variant("muon-bf16").is_err());
    }
}
