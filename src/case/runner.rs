//! The optimizer operations a replay needs, on either backend, and building one.

use crate::context::GpuContext;
use crate::cpu_optimizer::CpuOptimizer;
use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::host::checkpoint::Checkpoint;
use crate::host::{GroupId, ParamId};
use crate::optim::Algorithm;
use crate::plateau::Plateau;
use crate::precision::Precision;
use crate::schedule::Schedule;

use super::Backend;

/// The optimizer a replay drives, on either backend. Its methods are async because the GPU's
/// readbacks and error scopes are (a browser cannot block); the CPU's are ready at once.
// One per replay, built once and never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Runner<'c, O: Algorithm> {
    Cpu(CpuRunner<O>),
    Gpu(GpuRunner<'c, O>),
}

pub(super) struct CpuRunner<O: Algorithm> {
    opt: CpuOptimizer<O>,
    params: Vec<Vec<f32>>,
}

pub(super) struct GpuRunner<'c, O: Algorithm> {
    ctx: &'c GpuContext,
    opt: GpuOptimizer<O>,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    /// Each parameter's precision and length.
    stored: Vec<(Precision, usize)>,
}

impl<O: Algorithm> Runner<'_, O> {
    async fn add_group(&mut self, config: O) -> Result<GroupId> {
        match self {
            Self::Cpu(r) => r.opt.add_param_group(config),
            Self::Gpu(r) => r.opt.add_param_group_async(config).await,
        }
    }

    async fn register(
        &mut self,
        group: GroupId,
        init: &[f32],
        shape: &[usize],
        precision: Precision,
    ) -> Result<()> {
        match self {
            Self::Cpu(r) => {
                r.opt.register_typed(group, shape, precision)?;
                r.params.push(init.to_vec());
            }
            Self::Gpu(r) => {
                let param = r.ctx.upload_as("param", precision.param, init);
                let grad = r
                    .ctx
                    .upload_as("grad", precision.grad, &vec![0.0; init.len()]);
                r.opt
                    .register_typed_async(group, param.slice(..), grad.slice(..), shape, precision)
                    .await?;
                r.params.push(param);
                r.grads.push(grad);
                r.stored.push((precision, init.len()));
            }
        }
        Ok(())
    }

    pub(super) fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.set_schedule(schedule),
            Self::Gpu(r) => r.opt.set_schedule(schedule),
        }
    }

    pub(super) fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.set_plateau(plateau),
            Self::Gpu(r) => r.opt.set_plateau(plateau),
        }
    }

    pub(super) async fn set_accumulation(&mut self, every: u32) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.set_accumulation(every),
            Self::Gpu(r) => r.opt.set_accumulation_async(every).await,
        }
    }

    pub(super) async fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.set_ema(ema),
            Self::Gpu(r) => r.opt.set_ema_async(ema).await,
        }
    }

    /// Parameter `i`'s average of the weights.
    pub(super) async fn ema(&self, i: usize) -> Result<Vec<f32>> {
        Ok(match self {
            Self::Cpu(r) => r.opt.ema(ParamId(i)).unwrap_or_default().to_vec(),
            Self::Gpu(r) => r.opt.read_ema_async(ParamId(i)).await?.unwrap_or_default(),
        })
    }

    pub(super) fn report_metric(&mut self, metric: f64) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.report_metric(metric).map(drop),
            Self::Gpu(r) => r.opt.report_metric(metric).map(drop),
        }
    }

    /// Group 0's rate in the next step.
    pub(super) fn lr_next(&self) -> f64 {
        let s = match self {
            Self::Cpu(r) => r.opt.scheduler(),
            Self::Gpu(r) => r.opt.scheduler(),
        };
        s.lr_at(0, s.steps_taken() + 1)
    }

    pub(super) fn step(&mut self, grads: &[&[f32]]) -> Result<()> {
        match self {
            Self::Cpu(r) => {
                let mut params: Vec<&mut [f32]> =
                    r.params.iter_mut().map(Vec::as_mut_slice).collect();
                r.opt.step(&mut params, grads)
            }
            Self::Gpu(r) => {
                for ((buffer, g), (precision, _)) in r.grads.iter().zip(grads).zip(&r.stored) {
                    r.ctx.write_as(buffer, precision.grad, g);
                }
                let mut encoder = r.ctx.device.create_command_encoder(&Default::default());
                r.opt.step(&mut encoder);
                r.ctx.queue.submit([encoder.finish()]);
                Ok(())
            }
        }
    }

    /// Every parameter's current values.
    pub(super) async fn params(&self) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Cpu(r) => Ok(r.params.clone()),
            Self::Gpu(r) => {
                let mut out = Vec::with_capacity(r.params.len());
                for (b, &(precision, len)) in r.params.iter().zip(&r.stored) {
                    out.push(r.ctx.read_as_async(b, precision.param, len).await?);
                }
                Ok(out)
            }
        }
    }

    /// State `name` of parameter `i`, if kept.
    pub(super) async fn state(&self, i: usize, name: &str) -> Result<Option<Vec<f32>>> {
        match self {
            Self::Cpu(r) => Ok(r.opt.state(ParamId(i), name).map(<[f32]>::to_vec)),
            Self::Gpu(r) => r.opt.read_state_async(ParamId(i), name).await,
        }
    }

    pub(super) async fn checkpoint(&self) -> Result<Checkpoint> {
        match self {
            Self::Cpu(r) => r.opt.checkpoint(),
            Self::Gpu(r) => r.opt.checkpoint_async().await,
        }
    }

    pub(super) async fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        match self {
            Self::Cpu(r) => r.opt.restore(checkpoint),
            Self::Gpu(r) => r.opt.restore_async(checkpoint).await,
        }
    }
}

/// A fresh optimizer on `backend` with `groups` and each parameter registered, in order, in its
/// group `group_of[i]` with value `values[i]`, shape `shapes[i]` and `precision`.
pub(super) async fn build<'c, O: Algorithm>(
    backend: Backend,
    ctx: Option<&'c GpuContext>,
    groups: &[O],
    group_of: &[usize],
    values: &[Vec<f32>],
    (shapes, precision): (&[&[usize]], Precision),
) -> Result<Runner<'c, O>> {
    let mut runner = match (backend, ctx) {
        (Backend::Cpu, _) => Runner::Cpu(CpuRunner {
            opt: CpuOptimizer::new(groups[0].clone())?,
            params: Vec::new(),
        }),
        (Backend::Gpu, Some(ctx)) => Runner::Gpu(GpuRunner {
            ctx,
            opt: GpuOptimizer::new_async(&ctx.device, &ctx.queue, groups[0].clone()).await?,
            params: Vec::new(),
            grads: Vec::new(),
            stored: Vec::new(),
        }),
        (Backend::Gpu, None) => return Err(Error::NoAdapter(" (no GPU context given)".into())),
    };
    let mut ids = vec![GroupId(0)];
    for config in &groups[1..] {
        ids.push(runner.add_group(config.clone()).await?);
    }
    for ((&g, v), shape) in group_of.iter().zip(values).zip(shapes) {
        let id = *ids
            .get(g)
            .ok_or_else(|| Error::CheckpointMismatch(format!("no parameter group {g}")))?;
        runner.register(id, v, shape, precision).await?;
    }
    Ok(runner)
}
