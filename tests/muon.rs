//! Muon: the recorded torch.optim.Muon cases replay on the CPU reference and the GPU; GPU and
//! CPU agree on square, tall, wide and odd shapes; batching, checkpoints and bad shapes.

mod common;

use std::path::PathBuf;

use common::{Rng, case_files, gpu, muon_cases_dir, scratch_dir};
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{
    AdjustLr, Algorithm, CpuOptimizer, Error, GpuContext, GpuOptimizer, MatmulTiles, Muon, ParamId,
};

fn muon_cases() -> Vec<PathBuf> {
    let paths = case_files(&muon_cases_dir());
    assert_eq!(paths.len(), 2, "the two recorded Muon cases");
    paths
}

fn replay(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    for path in muon_cases() {
        let case = Case::load(&path).unwrap();
        assert_eq!(case.optimizer_name(), "muon");
        let ours = case::replay(&case, backend, ctx.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let report = case::compare(&case, &ours);
        eprintln!("{}: {report:?}", path.display());
        assert!(
            report.within_tolerance(),
            "{} on {backend:?}: {report:?}",
            path.display()
        );
    }
}

#[test]
fn recorded_cases_replay_on_cpu() {
    replay(Backend::Cpu);
}

#[test]
fn recorded_cases_replay_on_gpu() {
    replay(Backend::Gpu);
}

/// Muon on both backends over matrices of `shapes`, each registered with its shape.
struct Both {
    cpu: CpuOptimizer<Muon>,
    gpu: GpuOptimizer<Muon>,
    ids: Vec<ParamId>,
    params: Vec<Vec<f32>>,
    buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

impl Both {
    fn new(ctx: &GpuContext, config: Muon, shapes: &[[usize; 2]], rng: &mut Rng) -> Self {
        let mut cpu = CpuOptimizer::new(config).unwrap();
        cpu.set_threads(2);
        let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, config).unwrap();
        let (mut ids, mut params, mut buffers) = (Vec::new(), Vec::new(), Vec::new());
        for shape in shapes {
            let len = shape[0] * shape[1];
            let init = rng.vec(len);
            let p = ctx.upload("param", &init);
            let g = ctx.upload("grad", &vec![0.0; len]);
            let group = gpu.default_group();
            let id = gpu
                .register_with_shape(group, p.slice(..), g.slice(..), shape)
                .unwrap();
            assert_eq!(cpu.register_with_shape(group, shape).unwrap(), id);
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
        }
    }

    fn step(&mut self, ctx: &GpuContext, grads: &[Vec<f32>]) {
        for ((_, g), grad) in self.buffers.iter().zip(grads) {
            ctx.write(g, grad);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let mut params: Vec<&mut [f32]> = self.params.iter_mut().map(|p| &mut p[..]).collect();
        let grads: Vec<&[f32]> = grads.iter().map(|g| &g[..]).collect();
        self.cpu.step(&mut params, &grads).unwrap();
    }

    fn gpu_params(&self, ctx: &GpuContext) -> Vec<Vec<f32>> {
        self.buffers
            .iter()
            .map(|(p, _)| ctx.read(p).unwrap())
            .collect()
    }
}

/// The largest |gpu - cpu| over a tensor, relative to the largest displacement from `init`.
fn relative_gap(gpu: &[f32], cpu: &[f32], init: &[f32]) -> f64 {
    let gap = gpu
        .iter()
        .zip(cpu)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let moved = cpu
        .iter()
        .zip(init)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    gap / moved.max(1e-30)
}

#[test]
fn gpu_matches_cpu_on_square_tall_wide_and_odd_shapes() {
    let Some(ctx) = gpu() else { return };
    let shapes = [[1, 1], [3, 5], [130, 7], [257, 129], [64, 64], [5, 3]];
    // An even ns_steps ends the iteration in the second scratch matrix.
    let runs = [
        (AdjustLr::Original, true, 5),
        (AdjustLr::Original, false, 4),
        (AdjustLr::MatchRmsAdamw, true, 4),
        (AdjustLr::MatchRmsAdamw, false, 5),
    ];
    for (adjust, nesterov, ns_steps) in runs {
        {
            let config = Muon {
                lr: 0.02,
                nesterov,
                adjust_lr_fn: adjust,
                ns_steps,
                ..Muon::default()
            };
            let mut rng = Rng::new(11);
            let mut both = Both::new(&ctx, config, &shapes, &mut rng);
            let init = both.params.clone();
            for _ in 0..4 {
                let grads: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(s[0] * s[1])).collect();
                both.step(&ctx, &grads);
            }
            let ours = both.gpu_params(&ctx);
            for (k, shape) in shapes.iter().enumerate() {
                let gap = relative_gap(&ours[k], &both.params[k], &init[k]);
                assert!(
                    gap < 1e-4,
                    "{shape:?} ({adjust:?}, nesterov {nesterov}): GPU and CPU differ by {gap:e} of the displacement"
                );
                let buffer = both
                    .gpu
                    .read_state(both.ids[k], "momentum_buffer")
                    .unwrap()
                    .unwrap();
                let theirs = both.cpu.state(both.ids[k], "momentum_buffer").unwrap();
                assert_eq!(
                    buffer, theirs,
                    "{shape:?}: the momentum buffer is elementwise"
                );
            }
        }
    }
}

/// An orthogonalized update of a wide matrix has singular values near 1: its rows are near
/// orthonormal, so U Uᵀ is near the identity (the quintic's fixed band is about 0.7 to 1.2).
#[test]
fn the_iteration_orthogonalizes() {
    let mut rng = Rng::new(3);
    let (rows, cols) = (24, 40);
    let x = rng.vec(rows * cols);
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    let x: Vec<f32> = x.iter().map(|v| v / norm).collect();
    let ns = Muon::default().newton_schulz().unwrap();
    let o = wgpu_optim::cpu::newton_schulz(x, [rows, cols], ns, 1);
    for i in 0..rows {
        for j in 0..rows {
            let dot: f32 = (0..cols).map(|k| o[i * cols + k] * o[j * cols + k]).sum();
            if i == j {
                assert!((0.5..1.5).contains(&dot), "row {i}: |u|² = {dot}");
            } else {
                assert!(dot.abs() < 0.3, "rows {i}, {j}: {dot}");
            }
        }
    }
}

#[test]
fn same_shaped_matrices_batched_equal_each_alone() {
    let Some(ctx) = gpu() else { return };
    let shapes = [[48, 20], [16, 40], [48, 20], [48, 20], [16, 40]];
    let mut rng = Rng::new(5);
    let mut together = Both::new(&ctx, Muon::default(), &shapes, &mut rng);
    let grads: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|_| shapes.iter().map(|s| rng.vec(s[0] * s[1])).collect())
        .collect();
    let mut alone: Vec<Both> = shapes
        .iter()
        .zip(&together.params)
        .map(|(s, init)| {
            let mut b = Both::new(&ctx, Muon::default(), &[*s], &mut Rng::new(0));
            b.params[0].clone_from(init);
            ctx.write(&b.buffers[0].0, init);
            b
        })
        .collect();
    // Two batches of 48 × 20 and 16 × 40: 2 · (3 · 5) multiplies, plus per matrix its
    // norms, normalize and update, plus the reduction.
    assert_eq!(together.gpu.dispatches_per_step(), 2 * 15 + 3 * 5 + 1);
    for g in &grads {
        together.step(&ctx, g);
        for (k, b) in alone.iter_mut().enumerate() {
            b.step(&ctx, &[g[k].clone()]);
        }
    }
    let ours = together.gpu_params(&ctx);
    for (k, b) in alone.iter().enumerate() {
        assert_eq!(
            ours[k],
            b.gpu_params(&ctx)[0],
            "matrix {k} batched and alone"
        );
        assert_eq!(together.params[k], b.params[0], "matrix {k} on the CPU");
    }
}

#[test]
fn tiles_are_pipeline_constants_that_give_the_same_bits() {
    let Some(ctx) = gpu() else { return };
    let shapes = [[130, 7], [33, 65], [48, 20], [16, 40]];
    let mut rng = Rng::new(9);
    let mut a = Both::new(&ctx, Muon::default(), &shapes, &mut rng);
    let mut b = Both::new(&ctx, Muon::default(), &shapes, &mut Rng::new(9));
    // The other kind of tiles than the adapter's default: unstaged (vec4 where the shape allows)
    // on a GPU, staged on a CPU adapter.
    let tiles = if a.gpu.matmul_tiles().unwrap().staged {
        MatmulTiles {
            staged: false,
            tm: 8,
            tn: 32,
            tk: 1,
            rm: 8,
            rn: 2,
        }
    } else {
        MatmulTiles {
            staged: true,
            tm: 16,
            tn: 32,
            tk: 8,
            rm: 2,
            rn: 4,
        }
    };
    b.gpu.set_matmul_tiles(tiles).unwrap();
    assert_eq!(b.gpu.matmul_tiles(), Some(tiles));
    for _ in 0..3 {
        let grads: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(s[0] * s[1])).collect();
        a.step(&ctx, &grads);
        b.step(&ctx, &grads);
    }
    // Each result is one fma chain over k whatever the tiling, staged or not, vec4 or not.
    assert_eq!(a.gpu_params(&ctx), b.gpu_params(&ctx));
    let bad = MatmulTiles { rn: 3, ..tiles };
    assert!(matches!(
        b.gpu.set_matmul_tiles(bad),
        Err(Error::InvalidOptions(_))
    ));
    assert_eq!(b.gpu.matmul_tiles(), Some(tiles));
}

#[test]
fn only_matrices_are_stepped() {
    let mut cpu = CpuOptimizer::new(Muon::default()).unwrap();
    let group = cpu.default_group();
    cpu.register_with_shape(group, &[4, 5]).unwrap();
    for shape in [vec![20], vec![2, 2, 5]] {
        match cpu.register_with_shape(group, &shape) {
            Err(Error::UnsupportedShape {
                optimizer,
                param,
                shape: s,
                ..
            }) => {
                assert_eq!((optimizer, param, s), ("muon", 1, shape.clone()));
            }
            other => panic!("{shape:?}: {other:?}"),
        }
    }
    assert!(matches!(
        cpu.register(group, 20),
        Err(Error::UnsupportedShape { .. })
    ));
    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, Muon::default()).unwrap();
    let p = ctx.upload("param", &[0.0; 20]);
    let g = ctx.upload("grad", &[0.0; 20]);
    let group = opt.default_group();
    assert!(matches!(
        opt.register(group, &p, &g),
        Err(Error::UnsupportedShape { param: 0, .. })
    ));
    opt.register_with_shape(group, p.slice(..), g.slice(..), &[4, 5])
        .unwrap();
    let bad = Muon {
        ns_steps: 100,
        ..Muon::default()
    };
    assert!(matches!(
        GpuOptimizer::new(&ctx.device, &ctx.queue, bad),
        Err(Error::InvalidHyperparameter {
            name: "ns_steps",
            ..
        })
    ));
}

#[test]
fn a_checkpoint_resumes_bit_identically() {
    let Some(ctx) = gpu() else { return };
    let shapes = [[40, 24], [7, 3]];
    let mut rng = Rng::new(21);
    let grads: Vec<Vec<Vec<f32>>> = (0..6)
        .map(|_| shapes.iter().map(|s| rng.vec(s[0] * s[1])).collect())
        .collect();
    // Options other than the defaults the fresh optimizer is built with: the checkpoint's
    // coefficients and step count must reach its multiplies.
    let custom = Muon {
        ns_coefficients: (3.0, -3.2, 1.2),
        ns_steps: 4,
        ..Muon::default()
    };
    let mut straight = Both::new(&ctx, custom, &shapes, &mut Rng::new(1));
    let mut resumed = Both::new(&ctx, custom, &shapes, &mut Rng::new(1));
    for g in &grads[..3] {
        straight.step(&ctx, g);
        resumed.step(&ctx, g);
    }
    let dir = scratch_dir("muon-checkpoint");
    let (gpu_file, cpu_file) = (dir.join("gpu.safetensors"), dir.join("cpu.safetensors"));
    resumed.gpu.save_checkpoint(&gpu_file).unwrap();
    resumed.cpu.save_checkpoint(&cpu_file).unwrap();
    // A fresh optimizer over the same buffers picks the run up from the files.
    let mut fresh = Both::new(&ctx, Muon::default(), &shapes, &mut Rng::new(99));
    for (k, (p, _)) in fresh.buffers.iter().enumerate() {
        ctx.write(p, &resumed.gpu_params(&ctx)[k]);
    }
    fresh.params.clone_from(&resumed.params);
    fresh.gpu.load_checkpoint(&gpu_file).unwrap();
    fresh.cpu.load_checkpoint(&cpu_file).unwrap();
    for g in &grads[3..] {
        straight.step(&ctx, g);
        fresh.step(&ctx, g);
    }
    assert_eq!(straight.gpu_params(&ctx), fresh.gpu_params(&ctx));
    assert_eq!(straight.params, fresh.params);
}

/// The README's recipe: Muon for the weight matrices, AdamW for the biases, both stepping the
/// MLP's own buffers from one encoder per step.
#[test]
fn muon_and_adamw_train_the_mlp_in_one_encoder() {
    let Some(ctx) = gpu() else { return };
    let data = wgpu_optim::tooling::mlp::spiral(100, 7);
    let muon = Muon {
        lr: 0.02,
        ..Muon::default()
    };
    let adamw = wgpu_optim::AdamW {
        lr: 0.01,
        ..Default::default()
    };
    let run =
        wgpu_optim::tooling::mlp::train_muon(&ctx, &data, muon, adamw, (600, 100), |_, _, _| {})
            .unwrap();
    eprintln!("final loss {}, accuracy {}", run.final_loss, run.accuracy);
    assert!(run.accuracy >= 0.95, "accuracy {}", run.accuracy);
    assert!(run.final_loss < run.losses[0].1 / 5.0, "{:?}", run.losses);
}
