//! Both optimizers over the same tensors, held to each other bit for bit.

use wgpu_optim::{
    Algorithm, Checkpoint, CpuOptimizer, GpuContext, GpuOptimizer, ParamId, Precision,
};

use super::Rng;

/// One optimizer on both backends over tensors of `lens` values, all of `precision`.
pub struct Pair<O: Algorithm> {
    pub cpu: CpuOptimizer<O>,
    pub gpu: GpuOptimizer<O>,
    pub ids: Vec<ParamId>,
    pub params: Vec<Vec<f32>>,
    pub buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    pub precision: Precision,
}

impl<O: Algorithm> Pair<O> {
    pub fn new(
        ctx: &GpuContext,
        config: O,
        lens: &[usize],
        precision: Precision,
        rng: &mut Rng,
    ) -> Self {
        let mut cpu = CpuOptimizer::new(config.clone()).unwrap();
        let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
        let (mut ids, mut params, mut buffers) = (Vec::new(), Vec::new(), Vec::new());
        for &len in lens {
            let mut init = rng.vec(len);
            precision.param.round_all(&mut init);
            let p = ctx.upload_as("param", precision.param, &init);
            let g = ctx.upload_as("grad", precision.grad, &vec![0.0; len]);
            let group = gpu.default_group();
            let id = gpu
                .register_typed(group, p.slice(..), g.slice(..), &[len], precision)
                .unwrap();
            assert_eq!(cpu.register_typed(group, &[len], precision).unwrap(), id);
            ids.push(id);
            params.push(init);
            buffers.push((p, g));
        }
        Self {
            cpu,
            gpu,
            ids,
            params,
            buffers,
            precision,
        }
    }

    pub fn step(&mut self, ctx: &GpuContext, grads: &[Vec<f32>]) {
        for ((_, gb), g) in self.buffers.iter().zip(grads) {
            ctx.write_as(gb, self.precision.grad, g);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let mut views: Vec<&mut [f32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        self.cpu.step(&mut views, &grad_views).unwrap();
    }

    /// A new pair built with `config` over these tensors' current values, restored from this
    /// pair's checkpoints after a trip through their file bytes: a resumed run.
    pub fn resume(&self, ctx: &GpuContext, config: O) -> Self {
        let lens: Vec<usize> = self.params.iter().map(Vec::len).collect();
        let mut resumed = Pair::new(ctx, config, &lens, self.precision, &mut Rng::new(0));
        for (k, p) in self.params.iter().enumerate() {
            ctx.write_as(&resumed.buffers[k].0, self.precision.param, p);
            resumed.params[k] = p.clone();
        }
        let through_bytes = |c: Checkpoint| {
            Checkpoint::from_bytes(&c.to_bytes().unwrap(), std::path::Path::new("resume")).unwrap()
        };
        resumed
            .gpu
            .restore(&through_bytes(self.gpu.checkpoint().unwrap()))
            .unwrap();
        resumed
            .cpu
            .restore(&through_bytes(self.cpu.checkpoint().unwrap()))
            .unwrap();
        resumed
    }

    /// Random gradients, exactly representable in the gradient's dtype.
    pub fn grads(&self, rng: &mut Rng) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .map(|p| {
                let mut g = rng.vec(p.len());
                self.precision.grad.round_all(&mut g);
                g
            })
            .collect()
    }

    /// Asserts that the GPU's parameters and states are the CPU's, bit for bit.
    pub fn assert_identical(&self, ctx: &GpuContext, label: &str) {
        for (k, &id) in self.ids.iter().enumerate() {
            let len = self.params[k].len();
            let got = ctx
                .read_as(&self.buffers[k].0, self.precision.param, len)
                .unwrap();
            assert_bits(&got, &self.params[k], &format!("{label}: len {len}: param"));
            for &name in O::STATE_NAMES {
                let (cs, gs) = (
                    self.cpu.state(id, name),
                    self.gpu.read_state(id, name).unwrap(),
                );
                assert_eq!(cs.is_some(), gs.is_some(), "{label}: state {name}");
                if let (Some(cs), Some(gs)) = (cs, gs) {
                    assert_bits(&gs, cs, &format!("{label}: len {len}: {name}"));
                }
                // A quantized state's codes and scales, as stored.
                let (cq, gq) = (
                    self.cpu.quantized_state(id, name),
                    self.gpu.read_quantized_state(id, name).unwrap(),
                );
                assert_eq!(
                    cq.is_some(),
                    gq.is_some(),
                    "{label}: len {len}: {name} quantized"
                );
                if let (Some(cq), Some(gq)) = (cq, gq) {
                    let label = format!("{label}: len {len}: {name}");
                    assert_bits(&gq.scales, &cq.scales, &format!("{label} scales"));
                    let differ = cq
                        .codes
                        .iter()
                        .zip(&gq.codes)
                        .filter(|(a, b)| a != b)
                        .count();
                    assert_eq!(differ, 0, "{label}: codes differ in {differ} bytes");
                }
            }
        }
    }
}

pub fn assert_bits(got: &[f32], want: &[f32], label: &str) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let differ: Vec<usize> = (0..got.len())
        .filter(|&i| {
            got[i].to_bits() != want[i].to_bits() && !(got[i].is_nan() && want[i].is_nan())
        })
        .collect();
    if let Some(&i) = differ.first() {
        panic!(
            "{label}: {} of {} values differ, first [{i}]: gpu {:e} ({:#010x}) vs cpu {:e} ({:#010x})",
            differ.len(),
            got.len(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// Steps `config` over tensors of `lens` values, all of `precision`, for `steps` steps of random
/// gradients (from `seed`) on both backends, and holds the GPU to the CPU bit for bit.
pub fn identical<O: Algorithm>(
    ctx: &GpuContext,
    config: O,
    (lens, precision): (&[usize], Precision),
    steps: usize,
    seed: u64,
) {
    let label = format!("{} ({precision})", O::NAME);
    let mut rng = Rng::new(seed);
    let mut pair = Pair::new(ctx, config, lens, precision, &mut rng);
    for _ in 0..steps {
        let grads = pair.grads(&mut rng);
        pair.step(ctx, &grads);
    }
    pair.assert_identical(ctx, &label);
}
