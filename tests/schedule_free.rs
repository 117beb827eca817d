//! Schedule-Free AdamW's evaluation mode on both backends: eval() and train() recorded into the
//! caller's encoder, a step in evaluation mode, late registration (z copied at a parameter's
//! first step), checkpoints that keep the mode, and the errors around them.

mod common;

use common::{Rng, gpu, scratch_dir};
use wgpu_optim::{
    AdamW, Algorithm, Checkpoint, CpuOptimizer, Error, GpuContext, GpuOptimizer, ParamId, Schedule,
    ScheduleFreeAdamW,
};

const LENS: [usize; 4] = [1, 3, 1757, 4099];

fn config() -> ScheduleFreeAdamW {
    ScheduleFreeAdamW {
        lr: 0.01,
        weight_decay: 0.01,
        warmup_steps: 3,
        r: 0.5,
        ..Default::default()
    }
}

/// Both optimizers over the same parameters, stepped and switched together.
struct Pair<'c> {
    ctx: &'c GpuContext,
    cpu: CpuOptimizer<ScheduleFreeAdamW>,
    gpu: GpuOptimizer<ScheduleFreeAdamW>,
    params: Vec<Vec<f32>>,
    buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    ids: Vec<ParamId>,
    rng: Rng,
}

impl<'c> Pair<'c> {
    fn new(ctx: &'c GpuContext) -> Self {
        Self {
            ctx,
            cpu: CpuOptimizer::new(config()).unwrap(),
            gpu: GpuOptimizer::new(&ctx.device, &ctx.queue, config()).unwrap(),
            params: Vec::new(),
            buffers: Vec::new(),
            ids: Vec::new(),
            rng: Rng::new(0x5f),
        }
    }

    fn register(&mut self, len: usize) {
        let init = self.rng.vec(len);
        let p = self.ctx.upload("param", &init);
        let g = self.ctx.upload("grad", &vec![0.0; len]);
        let id = self.gpu.register(self.gpu.default_group(), &p, &g).unwrap();
        assert_eq!(
            self.cpu.register(self.cpu.default_group(), len).unwrap(),
            id
        );
        self.params.push(init);
        self.buffers.push((p, g));
        self.ids.push(id);
    }

    fn step(&mut self) {
        let grads: Vec<Vec<f32>> = self.params.iter().map(|p| self.rng.vec(p.len())).collect();
        for ((_, gb), g) in self.buffers.iter().zip(&grads) {
            self.ctx.write(gb, g);
        }
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.gpu.step(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        let mut views: Vec<&mut [f32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        let grads: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        self.cpu.step(&mut views, &grads).unwrap();
    }

    fn eval(&mut self, on: bool) {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let mut views: Vec<&mut [f32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        if on {
            self.gpu.eval(&mut encoder).unwrap();
            self.cpu.eval(&mut views).unwrap();
        } else {
            self.gpu.train(&mut encoder).unwrap();
            self.cpu.train(&mut views).unwrap();
        }
        self.ctx.queue.submit([encoder.finish()]);
        assert_eq!(self.gpu.is_eval_mode(), on);
        assert_eq!(self.cpu.is_eval_mode(), on);
    }

    fn gpu_params(&self) -> Vec<Vec<f32>> {
        self.buffers
            .iter()
            .map(|(p, _)| self.ctx.read(p).unwrap())
            .collect()
    }

    /// GPU and CPU parameters and states agree (f32 rounding of the same formulas).
    fn agree(&self, label: &str) {
        for (i, (got, want)) in self.gpu_params().iter().zip(&self.params).enumerate() {
            close(got, want, &format!("{label}: param {i}"));
            for name in ["z", "exp_avg_sq"] {
                let id = self.ids[i];
                let g = self.gpu.read_state(id, name).unwrap().unwrap();
                close(
                    &g,
                    self.cpu.state(id, name).unwrap(),
                    &format!("{label}: {name} {i}"),
                );
            }
        }
    }
}

fn close(got: &[f32], want: &[f32], label: &str) {
    assert_eq!(got.len(), want.len(), "{label}");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs().max(1e-3);
        assert!((g - w).abs() <= tol, "{label}[{k}]: gpu {g} vs cpu {w}");
    }
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|p| p.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn eval_and_train_switch_the_point_on_both_backends() {
    let Some(ctx) = gpu() else { return };
    let mut pair = Pair::new(&ctx);
    for len in LENS {
        pair.register(len);
    }
    // Before the first step nothing has a z: the switch only changes the mode.
    let before = pair.params.clone();
    pair.eval(true);
    assert_eq!(bits(&pair.gpu_params()), bits(&before));
    assert_eq!(bits(&pair.params), bits(&before));
    pair.eval(false);
    for _ in 0..6 {
        pair.step();
    }
    pair.agree("after 6 steps");
    let y = pair.params.clone();
    pair.eval(true);
    pair.agree("in eval mode");
    // x = y + (1 - 1/β₁)(z - y): compare with the state on the CPU.
    let w = (1.0 - 1.0 / 0.9f64) as f32;
    for (i, x) in pair.params.iter().enumerate() {
        let z = pair.cpu.state(pair.ids[i], "z").unwrap();
        for k in 0..x.len() {
            assert_eq!(x[k], y[i][k] + w * (z[k] - y[i][k]));
        }
    }
    // A second eval() is a no-op, not a second lerp.
    let x = pair.gpu_params();
    pair.eval(true);
    assert_eq!(bits(&pair.gpu_params()), bits(&x));
    pair.eval(false);
    pair.agree("back in train mode");
    for (now, was) in pair.params.iter().zip(&y) {
        close(now, was, "train() restores y to rounding");
    }
    // A step taken in evaluation mode switches back first, as train() then step().
    pair.eval(true);
    pair.step();
    assert!(!pair.gpu.is_eval_mode() && !pair.cpu.is_eval_mode());
    pair.agree("a step from eval mode");
}

#[test]
fn a_parameter_registered_late_starts_z_at_its_first_step() {
    let Some(ctx) = gpu() else { return };
    let mut pair = Pair::new(&ctx);
    pair.register(1757);
    pair.step();
    pair.step();
    pair.register(4099);
    // Not stepped yet: eval() leaves it, the stepped one moves.
    let before = pair.params.clone();
    pair.eval(true);
    assert_eq!(bits(&pair.params)[1], bits(&before)[1]);
    assert_eq!(bits(&pair.gpu_params())[1], bits(&before)[1]);
    assert_ne!(bits(&pair.params)[0], bits(&before)[0]);
    pair.eval(false);
    let late = pair.params[1].clone();
    pair.step();
    pair.agree("after the late parameter's first step");
    // z started from the parameter, then took one step of lr · u (|u| ≲ 2 here): far closer to
    // the parameter than to the 0 it would have started from without the copy.
    let z = pair.cpu.state(pair.ids[1], "z").unwrap();
    assert!(pair.params[1].iter().zip(&late).any(|(a, b)| a != b));
    let moved = late.iter().zip(z).map(|(y, z)| (y - z).abs());
    assert!(moved.fold(0.0f32, f32::max) < 0.05);
    let size = late.iter().map(|v| v.abs()).sum::<f32>() / late.len() as f32;
    assert!(size > 0.1, "the parameter is not itself near 0: {size}");
}

#[test]
fn checkpoints_keep_the_mode_and_resume_bit_identically() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("schedule-free-checkpoints");
    let mut pair = Pair::new(&ctx);
    pair.register(1757);
    pair.register(3);
    for _ in 0..4 {
        pair.step();
    }
    pair.register(64);
    pair.eval(true);
    let path = dir.join("sf.safetensors");
    for (backend, checkpoint) in [
        ("cpu", pair.cpu.checkpoint()),
        ("gpu", pair.gpu.checkpoint()),
    ] {
        let checkpoint = checkpoint.unwrap();
        assert!(checkpoint.eval_mode, "{backend}");
        assert_eq!(checkpoint.fresh, vec![2], "{backend}");
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert!(loaded.eval_mode, "{backend}: the mode round-trips");
        assert_eq!(
            loaded.fresh,
            vec![2],
            "{backend}: the fresh parameters round-trip"
        );
    }
    // Resume on the CPU from the CPU's file; the run goes on as if uninterrupted.
    pair.cpu.save_checkpoint(&path).unwrap();
    let mut resumed = CpuOptimizer::new(config()).unwrap();
    for p in &pair.params {
        resumed.register(resumed.default_group(), p.len()).unwrap();
    }
    resumed.load_checkpoint(&path).unwrap();
    assert!(resumed.is_eval_mode());
    let mut theirs = pair.params.clone();
    let mut rng = Rng::new(7);
    for _ in 0..3 {
        let grads: Vec<Vec<f32>> = pair.params.iter().map(|p| rng.vec(p.len())).collect();
        let grads: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        let mut mine: Vec<&mut [f32]> = pair.params.iter_mut().map(Vec::as_mut_slice).collect();
        pair.cpu.step(&mut mine, &grads).unwrap();
        let mut views: Vec<&mut [f32]> = theirs.iter_mut().map(Vec::as_mut_slice).collect();
        resumed.step(&mut views, &grads).unwrap();
    }
    assert_eq!(bits(&theirs), bits(&pair.params));
    for &id in &pair.ids {
        assert_eq!(resumed.state(id, "z"), pair.cpu.state(id, "z"));
    }
    // The GPU's file restores into a GPU optimizer with its mode.
    pair.gpu.save_checkpoint(&path).unwrap();
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config()).unwrap();
    for (p, g) in &pair.buffers {
        gpu.register(gpu.default_group(), p, g).unwrap();
    }
    gpu.load_checkpoint(&path).unwrap();
    assert_eq!(gpu.is_eval_mode(), pair.gpu.is_eval_mode());
    // Another optimizer's checkpoint cannot carry a mode.
    let mut adamw = CpuOptimizer::new(AdamW::default()).unwrap();
    adamw.register(adamw.default_group(), 3).unwrap();
    let mut ckpt = adamw.checkpoint().unwrap();
    ckpt.eval_mode = true;
    assert!(matches!(
        adamw.restore(&ckpt),
        Err(Error::CheckpointMismatch(_))
    ));
}

#[test]
fn errors_around_the_mode_and_the_schedule() {
    let Some(ctx) = gpu() else { return };
    let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
    cpu.register(cpu.default_group(), 3).unwrap();
    let mut p = [0.0f32; 3];
    assert!(matches!(
        cpu.eval(&mut [&mut p[..]]),
        Err(Error::InvalidOptions(_))
    ));
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    assert!(matches!(
        gpu.eval(&mut encoder),
        Err(Error::InvalidOptions(_))
    ));
    let mut sf = CpuOptimizer::new(ScheduleFreeAdamW::default()).unwrap();
    sf.register(sf.default_group(), 3).unwrap();
    let schedule: Schedule = r#"{"name": "exponential", "gamma": 0.9}"#.parse().unwrap();
    let err = sf.set_schedule(Some(schedule)).unwrap_err();
    assert!(err.to_string().contains("schedule_free_adamw"), "{err}");
    // A checkpoint cannot make the host walk 2^40 steps of weight sums.
    let mut ckpt = sf.checkpoint().unwrap();
    ckpt.step = 1 << 40;
    let err = sf.restore(&ckpt).unwrap_err();
    assert!(matches!(err, Error::CheckpointMismatch(_)), "{err}");
    assert_eq!(sf.scheduler().steps_taken(), 0);
    // eval() with the wrong number of parameters changes nothing.
    assert!(matches!(sf.eval(&mut []), Err(Error::StepShape(_))));
    assert!(!sf.is_eval_mode());
    assert!(
        ScheduleFreeAdamW {
            betas: (0.0, 0.999),
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}
