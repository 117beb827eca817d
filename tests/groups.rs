//! Changing a running optimizer's groups between steps: their options, their learning rate and
//! whether they are frozen, on both backends, through checkpoints, and the errors.

mod common;

use common::{Rng, gpu, scratch_dir};
use wgpu_optim::{
    AdamW, Algorithm, Checkpoint, CpuOptimizer, Error, GpuContext, GpuOptimizer, GroupId, Sgd,
};

/// Two groups on both backends: group 0 holds tensors of 1757 and 4096 values, group 1 one of
/// 3 values.
struct Run<O: Algorithm> {
    gpu: GpuOptimizer<O>,
    cpu: CpuOptimizer<O>,
    buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    params: Vec<Vec<f32>>,
    groups: [GroupId; 2],
    rng: Rng,
}

const LENS: [(usize, usize); 3] = [(0, 1757), (0, 4096), (1, 3)];

impl<O: Algorithm> Run<O> {
    fn new(ctx: &GpuContext, config: O, second: O) -> Self {
        let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone()).unwrap();
        let mut cpu = CpuOptimizer::new(config).unwrap();
        let groups = [
            gpu.default_group(),
            gpu.add_param_group(second.clone()).unwrap(),
        ];
        assert_eq!(cpu.add_param_group(second).unwrap(), groups[1]);
        let mut rng = Rng::new(21);
        let (mut buffers, mut params) = (Vec::new(), Vec::new());
        for &(g, len) in &LENS {
            let init = rng.vec(len);
            let (p, grad) = (ctx.upload("p", &init), ctx.upload("g", &vec![0.0; len]));
            gpu.register(groups[g], &p, &grad).unwrap();
            cpu.register(groups[g], len).unwrap();
            buffers.push((p, grad));
            params.push(init);
        }
        Self {
            gpu,
            cpu,
            buffers,
            params,
            groups,
            rng,
        }
    }

    fn step(&mut self, ctx: &GpuContext) {
        let grads: Vec<Vec<f32>> = LENS.iter().map(|&(_, n)| self.rng.vec(n)).collect();
        self.step_with(ctx, &grads);
    }

    fn step_with(&mut self, ctx: &GpuContext, grads: &[Vec<f32>]) {
        for ((_, g), v) in self.buffers.iter().zip(grads) {
            ctx.write(g, v);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let mut views: Vec<&mut [f32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        let gviews: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        self.cpu.step(&mut views, &gviews).unwrap();
    }

    /// The GPU's parameters, checked equal to the CPU's bit for bit.
    fn read(&self, ctx: &GpuContext, label: &str) -> Vec<Vec<f32>> {
        let got: Vec<Vec<f32>> = self
            .buffers
            .iter()
            .map(|(p, _)| ctx.read(p).unwrap())
            .collect();
        assert_eq!(got, self.params, "{label}: gpu vs cpu");
        got
    }
}

#[test]
fn options_learning_rates_and_freezing_change_between_steps() {
    let Some(ctx) = gpu() else { return };
    let config = AdamW {
        lr: 0.01,
        ..Default::default()
    };
    let mut run = Run::new(&ctx, config, config);
    run.step(&ctx);
    run.step(&ctx);
    let before = run.read(&ctx, "two steps");
    // Group 1's rate alone, and group 0's options, flags included (a new pipeline).
    run.gpu.set_lr(run.groups[1], 0.05).unwrap();
    run.cpu.set_lr(run.groups[1], 0.05).unwrap();
    assert_eq!(run.gpu.scheduler().groups()[1].lr, 0.05);
    let changed = AdamW {
        lr: 0.02,
        weight_decay: 0.1,
        maximize: true,
        ..config
    };
    run.gpu.set_group_config(run.groups[0], changed).unwrap();
    run.cpu.set_group_config(run.groups[0], changed).unwrap();
    run.step(&ctx);
    let after = run.read(&ctx, "changed options");
    assert!(after.iter().zip(&before).all(|(a, b)| a != b));
    // Frozen: group 0 stays as it is while group 1 moves; then it moves again.
    run.gpu.set_frozen(run.groups[0], true).unwrap();
    run.cpu.set_frozen(run.groups[0], true).unwrap();
    assert!(run.gpu.is_frozen(run.groups[0]) && run.cpu.is_frozen(run.groups[0]));
    assert_eq!(run.gpu.dispatches_per_step(), 1, "group 1's one tail only");
    run.step(&ctx);
    run.step(&ctx);
    let frozen = run.read(&ctx, "frozen");
    assert_eq!(frozen[..2], after[..2]);
    assert_ne!(frozen[2], after[2]);
    run.gpu.set_frozen(run.groups[0], false).unwrap();
    run.cpu.set_frozen(run.groups[0], false).unwrap();
    run.step(&ctx);
    let thawed = run.read(&ctx, "unfrozen");
    assert_ne!(thawed[0], frozen[0]);
    assert_eq!(run.gpu.scheduler().steps_taken(), 6);
}

#[test]
fn frozen_groups_and_changed_options_resume_from_a_checkpoint() {
    let Some(ctx) = gpu() else { return };
    let config = AdamW {
        lr: 0.01,
        ..Default::default()
    };
    let mut run = Run::new(&ctx, config, config);
    run.step(&ctx);
    run.gpu.set_lr(run.groups[1], 0.03).unwrap();
    run.cpu.set_lr(run.groups[1], 0.03).unwrap();
    run.gpu.set_frozen(run.groups[0], true).unwrap();
    run.cpu.set_frozen(run.groups[0], true).unwrap();
    run.step(&ctx);
    let path = scratch_dir("groups").join("frozen.safetensors");
    run.gpu.save_checkpoint(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded.frozen, [0]);
    assert_eq!(loaded, run.cpu.checkpoint().unwrap());
    // Fresh optimizers with the original options resume the changed ones and the freeze.
    let mut resumed = Run::new(&ctx, config, config);
    for (k, p) in run.params.iter().enumerate() {
        ctx.write(&resumed.buffers[k].0, p);
    }
    resumed.params = run.params.clone();
    resumed.gpu.load_checkpoint(&path).unwrap();
    resumed.cpu.load_checkpoint(&path).unwrap();
    assert!(resumed.gpu.is_frozen(resumed.groups[0]));
    // A checkpoint naming groups that are not there, or out of order, is refused.
    for frozen in [vec![2], vec![1, 0], vec![0, 0]] {
        let bad = Checkpoint {
            frozen,
            ..loaded.clone()
        };
        assert!(matches!(
            resumed.cpu.restore(&bad),
            Err(Error::CheckpointMismatch(_))
        ));
        assert!(matches!(
            resumed.gpu.restore(&bad),
            Err(Error::CheckpointMismatch(_))
        ));
    }
    assert_eq!(resumed.cpu.scheduler().groups()[1].lr, 0.03);
    for _ in 0..2 {
        let grads: Vec<Vec<f32>> = LENS.iter().map(|&(_, n)| run.rng.vec(n)).collect();
        run.step_with(&ctx, &grads);
        resumed.step_with(&ctx, &grads);
    }
    let a = run.read(&ctx, "uninterrupted");
    let b = resumed.read(&ctx, "resumed");
    assert_eq!(a, b, "resumed vs uninterrupted");
}

#[test]
fn options_that_cannot_change_mid_run_are_refused_and_change_nothing() {
    let Some(ctx) = gpu() else { return };
    let plain = Sgd {
        lr: 0.1,
        ..Default::default()
    };
    let mut run = Run::new(&ctx, plain, plain);
    run.step(&ctx);
    // Momentum would add a state to registered parameters.
    let momentum = Sgd {
        momentum: 0.9,
        ..plain
    };
    let e = run.gpu.set_group_config(run.groups[0], momentum);
    assert!(matches!(e, Err(Error::InvalidOptions(_))), "{e:?}");
    let e = run.cpu.set_group_config(run.groups[0], momentum);
    assert!(matches!(e, Err(Error::InvalidOptions(_))), "{e:?}");
    for bad in [-1.0, f64::NAN] {
        let e = run.gpu.set_lr(run.groups[1], bad);
        assert!(
            matches!(e, Err(Error::InvalidHyperparameter { .. })),
            "{e:?}"
        );
        assert!(run.cpu.set_lr(run.groups[1], bad).is_err());
    }
    // A group of another optimizer, past this one's two.
    let mut other = CpuOptimizer::new(plain).unwrap();
    other.add_param_group(plain).unwrap();
    let third = other.add_param_group(plain).unwrap();
    assert!(run.gpu.set_frozen(third, true).is_err());
    assert!(run.cpu.set_lr(third, 0.1).is_err());
    assert_eq!(run.gpu.scheduler().groups()[0].momentum, 0.0);
    assert_eq!(run.gpu.scheduler().groups()[1].lr, 0.1);
    // Both still step alike.
    run.step(&ctx);
    run.read(&ctx, "after the refusals");
}

/// Options that feed a value accumulated over the steps taken (NAdam's mu_product,
/// Schedule-Free's weight sum, recomputed from the step count) are fixed for a run; the others
/// change.
#[test]
fn options_behind_accumulated_values_are_fixed_for_a_run() {
    use wgpu_optim::{NAdam, ScheduleFreeAdamW};
    let mut nadam = CpuOptimizer::new(NAdam::default()).unwrap();
    let g = nadam.default_group();
    let e = nadam.set_group_config(
        g,
        NAdam {
            momentum_decay: 0.01,
            ..NAdam::default()
        },
    );
    assert!(matches!(e, Err(Error::InvalidOptions(_))), "{e:?}");
    nadam.set_lr(g, 0.01).unwrap();
    let mut sf = CpuOptimizer::new(ScheduleFreeAdamW::default()).unwrap();
    let g = sf.default_group();
    let e = sf.set_lr(g, 0.5);
    assert!(matches!(e, Err(Error::InvalidOptions(_))), "{e:?}");
    sf.set_group_config(
        g,
        ScheduleFreeAdamW {
            weight_decay: 0.1,
            ..ScheduleFreeAdamW::default()
        },
    )
    .unwrap();
}
