//! Adafactor on both backends: parameters registered with their shapes (factored over the last
//! two dimensions from two on, a full second moment below), CPU-vs-GPU parity at every option and
//! at odd shapes on the vec4 and f32 kernels, checkpoints with shapes, loss scaling and clipping
//! through the factored passes, and the errors of shapes and hyperparameters.

mod common;

use common::{Rng, gpu, scratch_dir};
use wgpu_optim::{
    Adafactor, Algorithm, Checkpoint, CpuOptimizer, Error, GpuContext, GpuOptimizer, LossScale,
    ParamId,
};

const STEPS: usize = 20;

/// Shapes of one optimizer: a lone value, odd matrices (rows and columns not multiples of 4 or
/// of the workgroup), a batch of matrices, a vector and a matrix of about a million values.
const SHAPES: &[&[usize]] = &[
    &[1, 1],
    &[3, 5],
    &[130, 7],
    &[257, 129],
    &[2, 3, 8, 6],
    &[1],
    &[1757],
    &[1000, 1003],
];

/// Both optimizers over the same tensors.
struct Pair<'c> {
    ctx: &'c GpuContext,
    cpu: CpuOptimizer<Adafactor>,
    gpu: GpuOptimizer<Adafactor>,
    inits: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    ids: Vec<ParamId>,
    rng: Rng,
}

impl<'c> Pair<'c> {
    fn new(ctx: &'c GpuContext, config: Adafactor, shapes: &[&[usize]], scalar: bool) -> Self {
        let mut pair = Self {
            ctx,
            cpu: CpuOptimizer::new(config).unwrap(),
            gpu: GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap(),
            inits: Vec::new(),
            params: Vec::new(),
            buffers: Vec::new(),
            ids: Vec::new(),
            rng: Rng::new(0xada),
        };
        for (k, shape) in shapes.iter().enumerate() {
            let len = shape.iter().product();
            let init = pair.rng.vec(len);
            let p = ctx.upload("param", &init);
            let g = ctx.upload("grad", &vec![0.0; len]);
            pair.gpu.set_scalar_only(scalar && k % 2 == 0);
            let group = pair.gpu.default_group();
            let id = pair
                .gpu
                .register_with_shape(group, p.slice(..), g.slice(..), shape)
                .unwrap();
            assert_eq!(pair.cpu.register_with_shape(group, shape).unwrap(), id);
            pair.inits.push(init.clone());
            pair.params.push(init);
            pair.buffers.push((p, g));
            pair.ids.push(id);
        }
        pair
    }

    /// One step on both sides with the same gradients (scaled by `scale`).
    fn step(&mut self, scale: f32) {
        let grads: Vec<Vec<f32>> = self
            .params
            .iter()
            .map(|p| self.rng.vec(p.len()).iter().map(|g| g * scale).collect())
            .collect();
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

    /// Parameters within the parity tolerance of `tests/parity.rs`; states within 1e-5.
    fn agree(&self, label: &str) {
        for (k, &id) in self.ids.iter().enumerate() {
            let got = self.ctx.read(&self.buffers[k].0).unwrap();
            let want = &self.params[k];
            let moved = want
                .iter()
                .zip(&self.inits[k])
                .map(|(w, i)| (w - i).abs())
                .fold(0.0f32, f32::max);
            assert!(moved > 0.0, "{label}: tensor {k} never moved");
            let big = want.iter().map(|w| w.abs()).fold(0.0f32, f32::max);
            let tol = 1e-4 * moved + 32.0 * f32::EPSILON * big;
            for (e, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "{label}: tensor {k}[{e}] gpu {g} cpu {w}"
                );
            }
            for name in Adafactor::STATE_NAMES {
                let (c, g) = (
                    self.cpu.state(id, name),
                    self.gpu.read_state(id, name).unwrap(),
                );
                assert_eq!(c.is_some(), g.is_some(), "{label}: {name} of {k}");
                let (Some(c), Some(g)) = (c, g) else { continue };
                for (e, (&g, &c)) in g.iter().zip(c).enumerate() {
                    assert!(
                        (g - c).abs() <= 1e-5 * c.abs() + 1e-12,
                        "{label}: {name} of tensor {k}[{e}] gpu {g} cpu {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_matches_cpu_at_every_option_and_shape() {
    let Some(ctx) = gpu() else { return };
    let configs = [
        Adafactor::default(),
        Adafactor {
            lr: 0.05,
            beta2_decay: -0.5,
            eps: (Some(1e-6), 1e-4),
            d: 2.0,
            weight_decay: 0.1,
            maximize: true,
        },
    ];
    for config in configs {
        for scalar in [false, true] {
            let label = format!("{config:?}, f32 kernels on half: {scalar}");
            let mut pair = Pair::new(&ctx, config, SHAPES, scalar);
            for _ in 0..STEPS {
                pair.step(1.0);
            }
            pair.agree(&label);
        }
    }
}

#[test]
fn state_follows_the_shape() {
    let Some(ctx) = gpu() else { return };
    let pair = Pair::new(
        &ctx,
        Adafactor::default(),
        &[&[4, 6], &[2, 3, 5], &[7]],
        false,
    );
    let lens = |id| {
        Adafactor::STATE_NAMES
            .iter()
            .map(|n| pair.cpu.state(id, n).map(<[f32]>::len))
            .collect::<Vec<_>>()
    };
    assert_eq!(lens(pair.ids[0]), [Some(4), Some(6), None]);
    assert_eq!(lens(pair.ids[1]), [Some(6), Some(10), None]);
    assert_eq!(lens(pair.ids[2]), [None, None, Some(7)]);
    let gpu_len = |id, n| pair.gpu.state_buffer(id, n).map(|b| b.size() / 4);
    assert_eq!(gpu_len(pair.ids[1], "col_var"), Some(10));
    assert_eq!(gpu_len(pair.ids[1], "variance"), None);
}

#[test]
fn checkpoints_hold_factored_state_and_resume_bit_identically() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("adafactor-checkpoints");
    let shapes: &[&[usize]] = &[&[130, 7], &[3, 4, 5], &[33]];
    let mut pair = Pair::new(&ctx, Adafactor::default(), shapes, false);
    for _ in 0..5 {
        pair.step(1.0);
    }
    let path = dir.join("adafactor.safetensors");
    pair.gpu.save_checkpoint(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded.params[0].shape, vec![130, 7]);
    // Into a GPU optimizer with the same shapes: the next steps are bit-identical.
    let mut resumed = GpuOptimizer::new(&ctx.device, &ctx.queue, Adafactor::default()).unwrap();
    let copies: Vec<(wgpu::Buffer, wgpu::Buffer)> = pair
        .buffers
        .iter()
        .map(|(p, _)| {
            let values = ctx.read(p).unwrap();
            let grad = ctx.upload("grad", &vec![0.0; values.len()]);
            (ctx.upload("param", &values), grad)
        })
        .collect();
    for ((p, g), shape) in copies.iter().zip(shapes) {
        let group = resumed.default_group();
        resumed
            .register_with_shape(group, p.slice(..), g.slice(..), shape)
            .unwrap();
    }
    resumed.restore(&loaded).unwrap();
    // An optimizer whose state is elementwise restores across shapes of the same length.
    let mut adamw = CpuOptimizer::new(wgpu_optim::AdamW::default()).unwrap();
    adamw
        .register_with_shape(adamw.default_group(), &[6, 4])
        .unwrap();
    let mut flat = CpuOptimizer::new(wgpu_optim::AdamW::default()).unwrap();
    flat.register(flat.default_group(), 24).unwrap();
    flat.restore(&adamw.checkpoint().unwrap()).unwrap();
    // Registered flat, the same file does not fit: the states follow the shape.
    let mut flat = CpuOptimizer::new(Adafactor::default()).unwrap();
    for shape in shapes {
        flat.register(flat.default_group(), shape.iter().product())
            .unwrap();
    }
    assert!(matches!(
        flat.restore(&loaded),
        Err(Error::CheckpointMismatch(_))
    ));
    let mut rng = Rng::new(3);
    for _ in 0..3 {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for ((_, g), (_, g2)) in pair.buffers.iter().zip(&copies) {
            let values = rng.vec((g.size() / 4) as usize);
            ctx.write(g, &values);
            ctx.write(g2, &values);
        }
        pair.gpu.step(&mut encoder);
        resumed.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    }
    for ((p, _), (q, _)) in pair.buffers.iter().zip(&copies) {
        let bits = |b| {
            ctx.read(b)
                .unwrap()
                .iter()
                .map(|x: &f32| x.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(p), bits(q));
    }
    // And into a CPU optimizer, whose run then stays within parity of the GPU's.
    let mut cpu = CpuOptimizer::new(Adafactor::default()).unwrap();
    for shape in shapes {
        cpu.register_with_shape(cpu.default_group(), shape).unwrap();
    }
    cpu.restore(&loaded).unwrap();
    let saved = &loaded.params[0].states;
    let (_, row_var) = saved.iter().find(|(n, _)| n == "row_var").unwrap();
    assert_eq!(cpu.state(pair.ids[0], "row_var").unwrap(), &row_var[..]);
}

#[test]
fn loss_scaling_skips_the_factored_passes_and_clipping_scales_them() {
    let Some(ctx) = gpu() else { return };
    let mut pair = Pair::new(
        &ctx,
        Adafactor::default(),
        &[&[130, 7], &[3, 5], &[9]],
        false,
    );
    pair.cpu.set_loss_scale(Some(LossScale::default())).unwrap();
    pair.gpu.set_loss_scale(Some(LossScale::default())).unwrap();
    pair.cpu.set_max_grad_norm(Some(0.5)).unwrap();
    pair.gpu.set_max_grad_norm(Some(0.5)).unwrap();
    for _ in 0..4 {
        pair.step(65536.0);
    }
    pair.agree("scaled and clipped");
    // An inf gradient: every pass skips, parameters and factors stay bit for bit.
    let before: Vec<Vec<u32>> = pair
        .buffers
        .iter()
        .map(|(p, _)| ctx.read(p).unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    let row_var = pair
        .gpu
        .read_state(pair.ids[0], "row_var")
        .unwrap()
        .unwrap();
    pair.step(f32::INFINITY);
    let after: Vec<Vec<u32>> = pair
        .buffers
        .iter()
        .map(|(p, _)| ctx.read(p).unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    assert_eq!(before, after);
    let again = pair
        .gpu
        .read_state(pair.ids[0], "row_var")
        .unwrap()
        .unwrap();
    assert_eq!(row_var, again);
    assert_eq!(pair.gpu.read_loss_scale().unwrap().skipped_steps, 1);
}

#[test]
fn bad_shapes_and_hyperparameters_are_typed_errors() {
    let Some(ctx) = gpu() else { return };
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, Adafactor::default()).unwrap();
    let p = ctx.upload("param", &[0.0; 12]);
    let g = ctx.upload("grad", &[0.0; 12]);
    let group = gpu.default_group();
    let err = gpu
        .register_with_shape(group, p.slice(..), g.slice(..), &[5, 3])
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { len: 12, .. }), "{err}");
    assert!(err.to_string().contains("[5, 3]"), "{err}");
    assert_eq!(gpu.dispatches_per_step(), 0, "nothing was registered");
    let mut cpu = CpuOptimizer::new(Adafactor::default()).unwrap();
    assert!(matches!(
        cpu.register_with_shape(cpu.default_group(), &[usize::MAX, 4]),
        Err(Error::ShapeMismatch { .. })
    ));
    for (bad, name) in [
        (
            Adafactor {
                beta2_decay: 0.5,
                ..Default::default()
            },
            "beta2_decay",
        ),
        (
            Adafactor {
                d: 0.5,
                ..Default::default()
            },
            "d",
        ),
        (
            Adafactor {
                eps: (Some(-1.0), 1e-3),
                ..Default::default()
            },
            "eps[0]",
        ),
        (
            Adafactor {
                lr: f64::NAN,
                ..Default::default()
            },
            "lr",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        assert!(GpuOptimizer::new(&ctx.device, &ctx.queue, bad).is_err());
    }
    let d = Adafactor::default();
    assert_eq!(
        (d.lr, d.beta2_decay, d.eps, d.d, d.weight_decay, d.maximize),
        (1e-2, -0.8, (None, 1e-3), 1.0, 0.0, false)
    );
}
