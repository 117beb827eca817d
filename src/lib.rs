//! # wgpu-optim
//!
//! GPU optimizer kernels for deep learning on wgpu (Vulkan, Metal, DX12, GL, WebGPU), with
//! PyTorch's numerics and a CPU reference that proves every number.
//!
//! - [`Sgd`], [`Adam`], [`AdamW`], [`Adamax`], [`NAdam`], [`RmsProp`], [`Adagrad`],
//!   [`Adadelta`], [`Adafactor`], [`Rprop`], [`Asgd`], [`RAdam`]: config structs with
//!   PyTorch's hyperparameter names and defaults; [`Lion`], [`Lamb`], [`Lars`], [`Adopt`],
//!   [`Ademamix`] with optax's; [`ScheduleFreeAdamW`] with schedulefree's; [`Muon`], whose
//!   Newton–Schulz iteration runs as tiled matrix multiplies; see each for its update rule
//!   and paper.
//! - [`GpuOptimizer`]: one fused WGSL dispatch per parameter buffer per step, recorded into the
//!   caller's `CommandEncoder` from the caller's `Device` and `Queue`; parameter groups as
//!   PyTorch's.
//! - [`StepScheduler`]: the step counter and every step-dependent scalar, in f64 on the host.
//! - [`Schedule`]: learning-rate schedules as pure functions of the step.
//! - [`CpuOptimizer`] and [`cpu`]: the reference, loops that mirror the kernels one to one.
//! - [`case`]: reading and replaying trajectories recorded from PyTorch.
//! - [`GpuContext`]: an adapter, device and f32 upload/readback for callers without a stack.
//!
//! - [`ArenaLayout`]: many tensors in one buffer, stepped by one dispatch;
//!   [`GpuOptimizer::register_slices`] for arenas and ZeRO-1 shards; buffers past one storage
//!   binding are bound in windows.
//! - [`Checkpoint`]: all optimizer state in one file, resumed bit-identically.
//!
//! - Global-norm gradient clipping and `GradScaler`-style loss scaling on the device:
//!   [`GpuOptimizer::set_max_grad_norm`], [`GpuOptimizer::set_loss_scale`].
//!
//! - [`Precision`]: bf16 and f16 parameters, gradients and state, f32 master weights with a
//!   16-bit copy, stochastic rounding, and 8- and 4-bit moments ([`quant`], torchao's
//!   `AdamW8bit`/`AdamW4bit`), each tensor its own.
//!
//! Gradients are dense (f32, bf16 or f16). A parameter and its gradient may share one buffer (a
//! framework's memory pool), and any number of steps may be recorded before one submit.
//!
//! Everything that waits (construction and setup inside wgpu error scopes, readbacks,
//! checkpoints, replays) has an `_async` form, such as [`GpuOptimizer::new_async`] and
//! [`GpuOptimizer::read_state_async`]: on wasm32 (WebGPU in a browser, whose one thread cannot
//! block) the only form. On native targets the blocking methods wait for them with `pollster`.
//!
//! The `cli` feature (on by default) builds the `wgpu-optim` binary and its dependencies
//! (`clap`, `plotters`); `default-features = false` gives the library alone.
//!
//! Where this crate differs from PyTorch: the step count is the optimizer's, not each
//! parameter's, so a parameter registered after training began starts at the optimizer's step.
//! `OneCycleLR` keeps its final rate past `total_steps` where PyTorch raises.
#![warn(missing_docs)]

mod abi;
#[cfg(test)]
mod abi_check;
mod arena;
pub mod case;
mod context;
pub mod cpu;
mod cpu_optimizer;
pub mod ema;
mod error;
mod gpu;
mod host;
mod io;
pub mod kernel;
pub mod optim;
pub mod plateau;
pub mod precision;
pub mod quant;
// The tooling's and tests' random numbers.
#[cfg(not(target_arch = "wasm32"))]
mod rng;
pub mod schedule;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod tooling;

pub use arena::ArenaLayout;
pub use context::{
    GpuContext, enumerate_adapters_async, pick_adapter, read_buffer_async, read_bytes_async,
};
#[cfg(not(target_arch = "wasm32"))]
pub use context::{enumerate_adapters, read_buffer, read_bytes};
pub use cpu_optimizer::CpuOptimizer;
pub use ema::{Ema, EmaWarmup};
pub use error::{Error, Result};
pub use gpu::GpuOptimizer;
pub use gpu::MatmulTiles;
pub use host::checkpoint::{self, Checkpoint};
pub use host::grad_stage::{LossScale, LossScaleState};
pub use host::loop_control::Accumulation;
pub use host::scheduler::StepScheduler;
pub use host::{GroupId, ParamId};
pub use optim::{
    Adadelta, Adafactor, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, Lamb,
    Lars, Lion, NAdam, Pass, RAdam, RmsProp, Rprop, ScheduleFreeAdamW, Sgd,
};
pub use optim::{AdjustLr, Muon, NewtonSchulz, newton_schulz_flops};
pub use plateau::{Plateau, PlateauMode, PlateauState, ThresholdMode};
pub use precision::{Dtype, Precision};
pub use quant::Quant;
pub use schedule::Schedule;
