//! The optimizer operations a replay needs, on either backend, and building one.

use std::path::Path;

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

/// The optimizer operations a replay needs, on either backend.
pub(super) trait Runner<O: Algorithm> {
    fn add_group(&mut self, config: O) -> Result<GroupId>;
    fn register(
        &mut self,
        group: GroupId,
        init: &[f32],
        shape: &[usize],
        precision: Precision,
    ) -> Result<()>;
    fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()>;
    fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()>;
    fn set_accumulation(&mut self, every: u32) -> Result<()>;
    fn set_ema(&mut self, ema: Option<Ema>) -> Result<()>;
    /// Parameter `i`'s average of the weights.
    fn ema(&self, i: usize) -> Result<Vec<f32>>;
    fn report_metric(&mut self, metric: f64) -> Result<()>;
    fn lr_next(&self) -> f64;
    fn step(&mut self, grads: &[&[f32]]) -> Result<()>;
    fn params(&self) -> Result<Vec<Vec<f32>>>;
    /// State `name` of parameter `i`, if kept.
    fn state(&self, i: usize, name: &str) -> Result<Option<Vec<f32>>>;
    fn save_checkpoint(&self, path: &Path) -> Result<()>;
    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()>;
}

struct CpuRunner<O: Algorithm> {
    opt: CpuOptimizer<O>,
    params: Vec<Vec<f32>>,
}

impl<O: Algorithm> Runner<O> for CpuRunner<O> {
    fn add_group(&mut self, config: O) -> Result<GroupId> {
        self.opt.add_param_group(config)
    }
    fn register(
        &mut self,
        group: GroupId,
        init: &[f32],
        shape: &[usize],
        precision: Precision,
    ) -> Result<()> {
        self.opt.register_typed(group, shape, precision)?;
        self.params.push(init.to_vec());
        Ok(())
    }
    fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.opt.set_schedule(schedule)
    }
    fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        self.opt.set_plateau(plateau)
    }
    fn set_accumulation(&mut self, every: u32) -> Result<()> {
        self.opt.set_accumulation(every)
    }
    fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        self.opt.set_ema(ema)
    }
    fn ema(&self, i: usize) -> Result<Vec<f32>> {
        Ok(self.opt.ema(ParamId(i)).unwrap_or_default().to_vec())
    }
    fn report_metric(&mut self, metric: f64) -> Result<()> {
        self.opt.report_metric(metric).map(drop)
    }
    fn lr_next(&self) -> f64 {
        let s = self.opt.scheduler();
        s.lr_at(0, s.steps_taken() + 1)
    }
    fn step(&mut self, grads: &[&[f32]]) -> Result<()> {
        let mut params: Vec<&mut [f32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        self.opt.step(&mut params, grads)
    }
    fn params(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.params.clone())
    }
    fn state(&self, i: usize, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.opt.state(ParamId(i), name).map(<[f32]>::to_vec))
    }
    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.opt.save_checkpoint(path)
    }
    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.opt.restore(checkpoint)
    }
}

struct GpuRunner<'c, O: Algorithm> {
    ctx: &'c GpuContext,
    opt: GpuOptimizer<O>,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    /// Each parameter's precision and length.
    stored: Vec<(Precision, usize)>,
}

impl<O: Algorithm> Runner<O> for GpuRunner<'_, O> {
    fn add_group(&mut self, config: O) -> Result<GroupId> {
        self.opt.add_param_group(config)
    }
    fn register(
        &mut self,
        group: GroupId,
        init: &[f32],
        shape: &[usize],
        precision: Precision,
    ) -> Result<()> {
        let param = self.ctx.upload_as("param", precision.param, init);
        let grad = self
            .ctx
            .upload_as("grad", precision.grad, &vec![0.0; init.len()]);
        self.opt
            .register_typed(group, param.slice(..), grad.slice(..), shape, precision)?;
        self.params.push(param);
        self.grads.push(grad);
        self.stored.push((precision, init.len()));
        Ok(())
    }
    fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.opt.set_schedule(schedule)
    }
    fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        self.opt.set_plateau(plateau)
    }
    fn set_accumulation(&mut self, every: u32) -> Result<()> {
        self.opt.set_accumulation(every)
    }
    fn set_ema(&mut self, ema: Option<Ema>) -> Result<()> {
        self.opt.set_ema(ema)
    }
    fn ema(&self, i: usize) -> Result<Vec<f32>> {
        Ok(self.opt.read_ema(ParamId(i))?.unwrap_or_default())
    }
    fn report_metric(&mut self, metric: f64) -> Result<()> {
        self.opt.report_metric(metric).map(drop)
    }
    fn lr_next(&self) -> f64 {
        let s = self.opt.scheduler();
        s.lr_at(0, s.steps_taken() + 1)
    }
    fn step(&mut self, grads: &[&[f32]]) -> Result<()> {
        for ((buffer, g), (precision, _)) in self.grads.iter().zip(grads).zip(&self.stored) {
            self.ctx.write_as(buffer, precision.grad, g);
        }
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.opt.step(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        Ok(())
    }
    fn params(&self) -> Result<Vec<Vec<f32>>> {
        self.params
            .iter()
            .zip(&self.stored)
            .map(|(b, &(precision, len))| self.ctx.read_as(b, precision.param, len))
            .collect()
    }
    fn state(&self, i: usize, name: &str) -> Result<Option<Vec<f32>>> {
        self.opt.read_state(ParamId(i), name)
    }
    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.opt.save_checkpoint(path)
    }
    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.opt.restore(checkpoint)
    }
}

/// A fresh optimizer on `backend` with `groups` and each parameter registered, in order, in its
/// group `group_of[i]` with value `values[i]`, shape `shapes[i]` and `precision`.
pub(super) fn build<'c, O: Algorithm>(
    backend: Backend,
    ctx: Option<&'c GpuContext>,
    groups: &[O],
    group_of: &[usize],
    values: &[Vec<f32>],
    (shapes, precision): (&[&[usize]], Precision),
) -> Result<Box<dyn Runner<O> + 'c>> {
    let mut runner: Box<dyn Runner<O> + 'c> = match (backend, ctx) {
        (Backend::Cpu, _) => Box::new(CpuRunner {
            opt: CpuOptimizer::new(groups[0].clone())?,
            params: Vec::new(),
        }),
        (Backend::Gpu, Some(ctx)) => Box::new(GpuRunner {
            ctx,
            opt: GpuOptimizer::new(&ctx.device, &ctx.queue, groups[0].clone())?,
            params: Vec::new(),
            grads: Vec::new(),
            stored: Vec::new(),
        }),
        (Backend::Gpu, None) => return Err(Error::NoAdapter(" (no GPU context given)".into())),
    };
    let mut ids = vec![GroupId(0)];
    for config in &groups[1..] {
        ids.push(runner.add_group(config.clone())?);
    }
    for ((&g, v), shape) in group_of.iter().zip(values).zip(shapes) {
        let id = *ids
            .get(g)
            .ok_or_else(|| Error::CheckpointMismatch(format!("no parameter group {g}")))?;
        runner.register(id, v, shape, precision)?;
    }
    Ok(runner)
}
