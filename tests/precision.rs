//! bf16 and f16 parameters, gradients and state: exact rounding, GPU against the CPU reference
//! bit for bit, the recorded low-precision cases, checkpoints of the stored bits, and the typed
//! errors of sizes and combinations that cannot be stepped.

mod common;

use std::path::PathBuf;

use common::pair::{Pair, assert_bits, identical};
use common::{Rng, gpu, scratch_dir};
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, Checkpoint,
    CpuOptimizer, Dtype, Error, GpuContext, GpuOptimizer, Lamb, Lion, NAdam, Precision, Quant,
    RAdam, RmsProp, Rprop, ScheduleFreeAdamW, Sgd,
};

const LENS: [usize; 5] = [1, 3, 4, 1757, 1_000_003];

fn low_precision_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity/low-precision")
}

/// Every combination of parameter, gradient and state dtype.
fn every_precision() -> Vec<Precision> {
    let mut all = Vec::new();
    for param in Dtype::ALL {
        for grad in Dtype::ALL {
            for state in Dtype::ALL {
                all.push(Precision::new(param, grad, state));
            }
        }
    }
    all
}

/// [`identical`] over tensors of every length in `lens` for three steps, for every dtype
/// combination.
fn identical_for_every_precision<O: Algorithm>(ctx: &GpuContext, config: O, lens: &[usize]) {
    for precision in every_precision() {
        let seed = 0x16b ^ format!("{} ({precision})", O::NAME).len() as u64;
        identical(ctx, config.clone(), (lens, precision), 3, seed);
    }
}

#[test]
fn adam_and_adamw_match_the_cpu_bit_for_bit_in_every_precision() {
    let Some(ctx) = gpu() else { return };
    identical_for_every_precision(&ctx, AdamW::default(), &LENS);
    let adam = Adam {
        weight_decay: 0.01,
        amsgrad: true,
        ..Adam::default()
    };
    identical_for_every_precision(&ctx, adam, &LENS);
}

#[test]
fn sgd_and_lion_match_the_cpu_bit_for_bit_in_every_precision() {
    let Some(ctx) = gpu() else { return };
    let sgd = Sgd {
        lr: 0.01,
        momentum: 0.9,
        nesterov: true,
        ..Sgd::default()
    };
    identical_for_every_precision(&ctx, sgd, &LENS);
    identical_for_every_precision(&ctx, Lion::default(), &LENS);
}

/// The other elementwise optimizers, in each storage dtype with its own gradients and state
/// (and master weights: f32 parameters, bf16 gradients), over the shorter lengths.
#[test]
fn every_elementwise_optimizer_takes_16_bit_tensors() {
    let Some(ctx) = gpu() else { return };
    fn run<O: Algorithm>(ctx: &GpuContext, config: O) {
        let lens = &LENS[..4];
        let master = Precision::new(Dtype::F32, Dtype::Bf16, Dtype::F32);
        for precision in [
            Precision::uniform(Dtype::Bf16),
            Precision::uniform(Dtype::F16),
            master,
        ] {
            identical(ctx, config.clone(), (lens, precision), 4, 0x5eed);
        }
    }
    run(&ctx, Adagrad::default());
    run(
        &ctx,
        RmsProp {
            momentum: 0.9,
            centered: true,
            ..RmsProp::default()
        },
    );
    run(&ctx, RAdam::default());
    run(&ctx, NAdam::default());
    run(&ctx, Adamax::default());
    run(&ctx, Adadelta::default());
    run(&ctx, Asgd::default());
    run(&ctx, Rprop::default());
    run(&ctx, Adopt::default());
    run(&ctx, Ademamix::default());
    run(&ctx, ScheduleFreeAdamW::default());
}

/// The kernels' store rounds exactly as `Dtype::round`: SGD with lr 1 from zero stores -g, and
/// its momentum buffer starts as g, so arbitrary f32 gradients (ties, the edges of the
/// subnormal and overflow ranges, infinities, NaN) go through both stores once.
#[test]
fn the_kernels_round_to_nearest_even_like_the_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    let mut grads: Vec<f32> = (0..20_000)
        .map(|_| {
            // Exponents from 2^-40 to 2^20, random mantissas.
            let e = 87 + (rng.next_u64() % 61) as u32;
            let bits = (e << 23)
                | (rng.next_u64() as u32 & 0x7f_ffff)
                | ((rng.next_u64() as u32 & 1) << 31);
            f32::from_bits(bits)
        })
        .collect();
    // Exact ties and neighbours of bf16 and f16 values, and the special values.
    for base in [1.0f32, 3.0, 65504.0, 6.1035156e-5, 5.9604645e-8] {
        let b = base.to_bits();
        for d in [0x7fffu32, 0x8000, 0x8001, 0x0fff, 0x1000, 0x1001, 0x18000] {
            grads.push(f32::from_bits(b + d));
        }
    }
    grads.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65520.0,
        65519.996,
        2.9802322e-8,
    ]);
    let len = grads.len();
    for dtype in [Dtype::Bf16, Dtype::F16] {
        let precision = Precision::new(dtype, Dtype::F32, dtype);
        let sgd = Sgd {
            lr: 1.0,
            momentum: 0.5,
            ..Sgd::default()
        };
        let mut rng = Rng::new(1);
        let mut pair = Pair::new(&ctx, sgd, &[len], precision, &mut rng);
        pair.params[0].iter_mut().for_each(|p| *p = 0.0);
        ctx.write_as(&pair.buffers[0].0, dtype, &pair.params[0]);
        pair.step(&ctx, std::slice::from_ref(&grads));
        let want_param: Vec<f32> = grads.iter().map(|&g| dtype.round(-g)).collect();
        let want_state: Vec<f32> = grads.iter().map(|&g| dtype.round(g)).collect();
        assert_bits(&pair.params[0], &want_param, &format!("{dtype}: cpu param"));
        let state = pair.cpu.state(pair.ids[0], "momentum_buffer").unwrap();
        assert_bits(state, &want_state, &format!("{dtype}: cpu momentum_buffer"));
        pair.assert_identical(&ctx, &format!("{dtype} rounding"));
    }
}

/// The high half of the last word of an odd-length 16-bit tensor belongs to the caller: no
/// step writes it.
#[test]
fn an_odd_length_tensor_leaves_the_rest_of_its_last_word() {
    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let precision = Precision::uniform(Dtype::Bf16);
    let len = 7;
    let mut bytes = Dtype::Bf16.encode(&[0.5; 7]);
    bytes[14..16].copy_from_slice(&0xbeefu16.to_le_bytes());
    let param = ctx.upload("param", &bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
    let mut gbytes = Dtype::Bf16.encode(&[1.0; 7]);
    gbytes[14..16].copy_from_slice(&0x7fc0u16.to_le_bytes()); // a NaN beyond the tensor
    let grad = ctx.upload("grad", &bytemuck::pod_collect_to_vec::<u8, f32>(&gbytes));
    let group = opt.default_group();
    opt.register_typed(group, param.slice(..), grad.slice(..), &[len], precision)
        .unwrap();
    for _ in 0..3 {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
    }
    let after = wgpu_optim::read_bytes(&ctx.device, &ctx.queue, &param).unwrap();
    assert_eq!(&after[14..16], &0xbeefu16.to_le_bytes());
    let values = Dtype::Bf16.decode(&after, len).unwrap();
    assert!(
        values.iter().all(|&v| v < 0.5 && v.is_finite()),
        "{values:?}"
    );
}

fn replay_low_precision(backend: Backend) {
    let ctx = match backend {
        Backend::Gpu => match gpu() {
            Some(c) => Some(c),
            None => return,
        },
        Backend::Cpu => None,
    };
    let paths = common::case_files(&low_precision_dir());
    let (mut replayed, mut unsupported) = (Vec::new(), Vec::new());
    for path in &paths {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let case = match Case::load(path) {
            Ok(c) => c,
            Err(Error::UnsupportedPrecision { .. }) => {
                unsupported.push(stem);
                continue;
            }
            Err(e) => panic!("{stem}: {e}"),
        };
        assert!(case.low_precision, "{stem}");
        // The torchao cases are read as quantized state, the others not.
        let quant = match stem.as_str() {
            "adamw_8bit" => Some(Quant::Q8),
            "adamw_4bit" => Some(Quant::Q4),
            _ => None,
        };
        assert_eq!(case.precision.quant, quant, "{stem}");
        let ours = case::replay(&case, backend, ctx.as_ref()).unwrap();
        let report = case::compare(&case, &ours);
        for p in &report.params {
            eprintln!(
                "{stem} {backend:?} {}: {:.3} of the rule",
                p.name, p.worst_ratio
            );
        }
        assert!(
            report.within_tolerance(),
            "{stem} on {backend:?}: {report:?}"
        );
        replayed.push(stem);
    }
    assert_eq!(
        replayed,
        ["adamw_4bit", "adamw_8bit", "adamw_bf16"],
        "on {backend:?}"
    );
    assert!(unsupported.is_empty(), "{unsupported:?}");
}

#[test]
fn low_precision_cases_replay_on_cpu() {
    replay_low_precision(Backend::Cpu);
}

#[test]
fn low_precision_cases_replay_on_gpu() {
    replay_low_precision(Backend::Gpu);
}

/// Checkpoints hold the state as stored (BF16 and F16 tensors of its bits), and resuming from
/// one gives the same bits as not stopping, on either backend.
#[test]
fn checkpoints_hold_16_bit_state_and_resume_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("precision-checkpoint");
    // Stochastic rounding's bits follow the restored step count, so it resumes exactly too.
    let sr = Precision::uniform(Dtype::Bf16).stochastic(7);
    for precision in [
        Precision::uniform(Dtype::Bf16),
        Precision::uniform(Dtype::F16),
        sr,
    ] {
        let dtype = precision.param;
        let mut rng = Rng::new(3);
        let mut pair = Pair::new(&ctx, AdamW::default(), &[5, 1757], precision, &mut rng);
        for _ in 0..3 {
            let grads = pair.grads(&mut rng);
            pair.step(&ctx, &grads);
        }
        let path = dir.join(format!("{precision}.safetensors"));
        pair.gpu.save_checkpoint(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let want_dtype = if dtype == Dtype::Bf16 { "BF16" } else { "F16" };
        assert_eq!(header["state.1.exp_avg"]["dtype"], want_dtype);
        assert_eq!(
            header["state.1.exp_avg"]["shape"],
            serde_json::json!([1757])
        );
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, pair.gpu.checkpoint().unwrap());
        assert_eq!(loaded, pair.cpu.checkpoint().unwrap());
        // A fresh optimizer on each backend resumes from the file.
        let mut resumed = Pair::new(
            &ctx,
            AdamW::default(),
            &[5, 1757],
            precision,
            &mut Rng::new(9),
        );
        for (k, p) in pair.params.iter().enumerate() {
            ctx.write_as(&resumed.buffers[k].0, dtype, p);
        }
        resumed.params = pair.params.clone();
        resumed.gpu.load_checkpoint(&path).unwrap();
        resumed.cpu.load_checkpoint(&path).unwrap();
        for _ in 0..2 {
            let grads = pair.grads(&mut rng);
            pair.step(&ctx, &grads);
            resumed.step(&ctx, &grads);
        }
        pair.assert_identical(&ctx, &format!("{dtype} uninterrupted"));
        resumed.assert_identical(&ctx, &format!("{dtype} resumed"));
        assert_bits(
            &resumed.params[1],
            &pair.params[1],
            "resumed vs uninterrupted",
        );
        // Restoring into tensors of another precision is refused, changing nothing.
        let mut other = CpuOptimizer::new(AdamW::default()).unwrap();
        let g = other.default_group();
        other.register_typed(g, &[5], Precision::F32).unwrap();
        other.register_typed(g, &[1757], Precision::F32).unwrap();
        assert!(matches!(
            other.restore(&loaded),
            Err(Error::CheckpointMismatch(_))
        ));
        assert_eq!(other.scheduler().steps_taken(), 0);
    }
}

#[test]
fn sizes_and_combinations_that_cannot_be_stepped_are_typed_errors() {
    let Some(ctx) = gpu() else { return };
    let bf16 = Precision::uniform(Dtype::Bf16);
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let g = opt.default_group();
    let buf = |bytes: u64| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    // 5 bf16 values take 12 bytes (three words), 5 f32 values 20.
    let (p12, g12, g20, p16) = (buf(12), buf(12), buf(20), buf(16));
    let e = opt.register_typed(g, p16.slice(..), g12.slice(..), &[5], bf16);
    assert!(
        matches!(
            e,
            Err(Error::DtypeSize {
                which: "param",
                len: 5,
                size: 16,
                expected: 12,
                ..
            })
        ),
        "{e:?}"
    );
    let e = opt.register_typed(
        g,
        p12.slice(..),
        g12.slice(..),
        &[5],
        Precision {
            grad: Dtype::F32,
            ..bf16
        },
    );
    assert!(
        matches!(
            e,
            Err(Error::DtypeSize {
                which: "grad",
                size: 12,
                expected: 20,
                ..
            })
        ),
        "{e:?}"
    );
    opt.register_typed(
        g,
        p12.slice(..),
        g20.slice(..),
        &[5],
        Precision {
            grad: Dtype::F32,
            ..bf16
        },
    )
    .unwrap();
    // Clipping and loss scaling read f32 gradients: refused with 16-bit ones registered...
    let p2 = buf(12);
    let g2 = buf(12);
    opt.register_typed(g, p2.slice(..), g2.slice(..), &[5], bf16)
        .unwrap();
    assert!(matches!(
        opt.set_max_grad_norm(Some(1.0)),
        Err(Error::UnsupportedPrecision { .. })
    ));
    // ... and 16-bit gradients refused while clipping is on.
    let mut clipped = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    clipped.set_max_grad_norm(Some(1.0)).unwrap();
    let g = clipped.default_group();
    let e = clipped.register_typed(g, p2.slice(..), g2.slice(..), &[5], bf16);
    assert!(
        matches!(e, Err(Error::UnsupportedPrecision { .. })),
        "{e:?}"
    );
    // Optimizers with norm passes take f32 tensors only.
    let mut lamb = GpuOptimizer::new(&ctx.device, &ctx.queue, Lamb::default()).unwrap();
    let g = lamb.default_group();
    let e = lamb.register_typed(g, p2.slice(..), g2.slice(..), &[5], bf16);
    assert!(
        matches!(
            e,
            Err(Error::UnsupportedPrecision {
                optimizer: "lamb",
                ..
            })
        ),
        "{e:?}"
    );
    let mut cpu = CpuOptimizer::new(Lamb::default()).unwrap();
    let g = cpu.default_group();
    assert!(matches!(
        cpu.register_typed(g, &[5], bf16),
        Err(Error::UnsupportedPrecision { .. })
    ));
    // The CPU reference takes 16-bit tensors as their values, and says which is not one.
    let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
    let g = cpu.default_group();
    cpu.register_typed(g, &[3], bf16).unwrap();
    let mut p = vec![1.0, 2.0, 3.0];
    let e = cpu.step(&mut [&mut p], &[&[0.5, 1.0 + 1.0 / 1024.0, 0.0]]);
    assert!(
        matches!(
            e,
            Err(Error::NotRepresentable {
                which: "grad",
                index: 1,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(p, [1.0, 2.0, 3.0]);
    assert_eq!(cpu.scheduler().steps_taken(), 0);
}

/// A framework's pool: bf16 parameters and their gradients carved from one buffer, the
/// gradient bound read-write beside its parameter.
#[test]
fn pooled_16_bit_tensors_step_like_separate_ones() {
    let Some(ctx) = gpu() else { return };
    let precision = Precision::uniform(Dtype::Bf16);
    let align = u64::from(ctx.device.limits().min_storage_buffer_offset_alignment);
    let lens = [3usize, 1757];
    let mut rng = Rng::new(11);
    let mut separate = Pair::new(&ctx, AdamW::default(), &lens, precision, &mut rng);
    let mut pool_bytes = Vec::new();
    let mut ranges = Vec::new();
    for (k, &len) in lens.iter().enumerate() {
        for values in [&separate.params[k], &vec![0.0; len]] {
            let start = pool_bytes.len();
            pool_bytes.extend(Dtype::Bf16.encode(values));
            ranges.push((start as u64, Dtype::Bf16.buffer_bytes(len as u64)));
            pool_bytes.resize(
                pool_bytes.len().div_ceil(align as usize) * align as usize,
                0,
            );
        }
    }
    let pool = ctx.upload(
        "pool",
        &bytemuck::pod_collect_to_vec::<u8, f32>(&pool_bytes),
    );
    let mut pooled = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let g = pooled.default_group();
    for (k, &len) in lens.iter().enumerate() {
        let (p, gr) = (ranges[2 * k], ranges[2 * k + 1]);
        pooled
            .register_typed(
                g,
                pool.slice(p.0..p.0 + p.1),
                pool.slice(gr.0..gr.0 + gr.1),
                &[len],
                precision,
            )
            .unwrap();
    }
    for _ in 0..3 {
        let grads = separate.grads(&mut rng);
        for (k, grad) in grads.iter().enumerate() {
            ctx.queue
                .write_buffer(&pool, ranges[2 * k + 1].0, &Dtype::Bf16.encode(grad));
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        pooled.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        separate.step(&ctx, &grads);
    }
    separate.assert_identical(&ctx, "separate");
    let bytes = wgpu_optim::read_bytes(&ctx.device, &ctx.queue, &pool).unwrap();
    for (k, &len) in lens.iter().enumerate() {
        let start = ranges[2 * k].0 as usize;
        let got = Dtype::Bf16.decode(&bytes[start..], len).unwrap();
        assert_bits(&got, &separate.params[k], &format!("pooled len {len}"));
    }
}

/// The bf16 case tells bf16 storage from f32: replayed with f32 parameters and state it is far
/// outside the rule, so matching it says the rounding is PyTorch's.
#[test]
fn the_bf16_case_is_not_met_by_f32_storage() {
    let mut case = Case::load(&low_precision_dir().join("adamw_bf16.safetensors")).unwrap();
    case.precision = Precision::F32;
    let ours = case::replay(&case, Backend::Cpu, None).unwrap();
    let report = case::compare(&case, &ours);
    eprintln!("{report:?}");
    assert!(!report.within_tolerance(), "{report:?}");
}

#[test]
fn the_readme_memory_table_is_the_one_the_code_computes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = wgpu_optim::tooling::bench::memory_table();
    assert!(
        readme.contains(&table),
        "README.md lacks the table `wgpu-optim info --memory` prints:\n{table}"
    );
}

/// Stochastic rounding (torchao's rule, random bits from a hash of the seed, the step and the
/// index): the GPU reproduces the CPU bit for bit, and updates far below half a bf16 unit move
/// the parameters on average, where rounding to nearest leaves them where they were.
#[test]
fn stochastic_rounding_is_reproducible_and_unbiased() {
    let Some(ctx) = gpu() else { return };
    let sr = Precision::new(Dtype::Bf16, Dtype::F32, Dtype::Bf16).stochastic(42);
    let adamw = AdamW {
        weight_decay: 0.1,
        ..AdamW::default()
    };
    identical_for_every_length(&ctx, adamw, sr);
    identical_for_every_length(
        &ctx,
        Sgd {
            lr: 0.01,
            momentum: 0.9,
            ..Sgd::default()
        },
        sr,
    );

    // Plain SGD, lr 0.1 on a gradient of 1e-3: 1e-4 per step, 1/40 of the bf16 spacing below
    // 1.0 (2^-8). After 200 steps the exact value is 0.98.
    let (len, steps) = (4096, 200);
    let sgd = Sgd {
        lr: 0.1,
        ..Sgd::default()
    };
    let mut means = Vec::new();
    for precision in [sr, Precision::new(Dtype::Bf16, Dtype::F32, Dtype::Bf16)] {
        let mut pair = Pair::new(&ctx, sgd, &[len], precision, &mut Rng::new(5));
        pair.params[0].iter_mut().for_each(|p| *p = 1.0);
        ctx.write_as(&pair.buffers[0].0, Dtype::Bf16, &pair.params[0]);
        let grads = vec![vec![1e-3f32; len]];
        for _ in 0..steps {
            pair.step(&ctx, &grads);
        }
        pair.assert_identical(&ctx, &format!("{precision}"));
        let mean = pair.params[0].iter().map(|&p| f64::from(p)).sum::<f64>() / len as f64;
        means.push(mean);
    }
    let exact = 1.0 - 200.0 * 0.1 * f64::from(1e-3f32);
    // Each element's error is a sum of 200 independent roundings of at most 2^-8: its standard
    // deviation is below 2^-8 · sqrt(200) / 2 ≈ 0.028, the mean's over 4096 below 0.0005.
    assert!(
        (means[0] - exact).abs() < 0.002,
        "stochastic: mean {} vs {exact}",
        means[0]
    );
    assert_eq!(means[1], 1.0, "to nearest, every update is lost");
    // Other dtypes do not take it.
    let mut cpu = CpuOptimizer::new(Sgd::default()).unwrap();
    let g = cpu.default_group();
    let f16 = Precision::uniform(Dtype::F16).stochastic(1);
    assert!(matches!(
        cpu.register_typed(g, &[4], f16),
        Err(Error::UnsupportedPrecision { .. })
    ));
}

/// [`identical`] at every length in [`LENS`] for three steps, in `precision`.
fn identical_for_every_length<O: Algorithm>(ctx: &GpuContext, config: O, precision: Precision) {
    let seed = 0x5a ^ format!("{} ({precision})", O::NAME).len() as u64;
    identical(ctx, config, (&LENS, precision), 3, seed);
}

/// Master weights with a copy: f32 parameters and moments, bf16 or f16 gradients, and the
/// step also writing a 16-bit copy of the updated parameters, which is the CPU's parameters
/// rounded to nearest even, bit for bit.
#[test]
fn master_weights_write_their_16_bit_copy_in_the_step() {
    let Some(ctx) = gpu() else { return };
    for dtype in [Dtype::Bf16, Dtype::F16] {
        let precision = Precision::new(Dtype::F32, dtype, Dtype::F32).with_copy(dtype);
        let mut rng = Rng::new(21);
        let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
        let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
        let group = gpu.default_group();
        let (mut params, mut buffers) = (Vec::new(), Vec::new());
        for len in LENS {
            let init = rng.vec(len);
            let p = ctx.upload("param", &init);
            let g = ctx.upload_as("grad", dtype, &vec![0.0; len]);
            let c = ctx.upload_as("copy", dtype, &vec![0.0; len]);
            let slices = (p.slice(..), g.slice(..), c.slice(..));
            gpu.register_master(group, slices, &[len], precision)
                .unwrap();
            cpu.register_typed(group, &[len], precision).unwrap();
            params.push(init);
            buffers.push((p, g, c));
        }
        for _ in 0..3 {
            let grads: Vec<Vec<f32>> = params
                .iter()
                .map(|p| {
                    let mut g = rng.vec(p.len());
                    dtype.round_all(&mut g);
                    g
                })
                .collect();
            for ((_, gb, _), g) in buffers.iter().zip(&grads) {
                ctx.write_as(gb, dtype, g);
            }
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            gpu.step(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
            let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
            let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
            cpu.step(&mut views, &grad_views).unwrap();
            for (k, (p, _, c)) in buffers.iter().enumerate() {
                let len = params[k].len();
                let label = format!("{dtype} copy, len {len}");
                assert_bits(
                    &ctx.read(p).unwrap(),
                    &params[k],
                    &format!("{label}: param"),
                );
                let want: Vec<f32> = params[k].iter().map(|&v| dtype.round(v)).collect();
                assert_bits(&ctx.read_as(c, dtype, len).unwrap(), &want, &label);
            }
        }
    }
}

#[test]
fn copies_that_do_not_fit_are_typed_errors() {
    let Some(ctx) = gpu() else { return };
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let g = opt.default_group();
    let buf = |bytes: u64| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (p, gr, c, small) = (buf(20), buf(20), buf(12), buf(8));
    let master = Precision::F32.with_copy(Dtype::Bf16);
    let e = opt.register_master(
        g,
        (p.slice(..), gr.slice(..), small.slice(..)),
        &[5],
        master,
    );
    assert!(
        matches!(
            e,
            Err(Error::DtypeSize {
                which: "copy",
                size: 8,
                expected: 12,
                ..
            })
        ),
        "{e:?}"
    );
    let e = opt.register_master(g, (p.slice(..), gr.slice(..), gr.slice(..12)), &[5], master);
    assert!(matches!(e, Err(Error::AliasedBuffer(_))), "{e:?}");
    let e = opt.register_typed(g, p.slice(..), gr.slice(..), &[5], master);
    assert!(matches!(e, Err(Error::InvalidOptions(_))), "{e:?}");
    let bf16_copy = Precision::uniform(Dtype::Bf16).with_copy(Dtype::F16);
    let (p16, g16) = (buf(12), buf(12));
    let e = opt.register_master(
        g,
        (p16.slice(..), g16.slice(..), c.slice(..)),
        &[5],
        bf16_copy,
    );
    assert!(
        matches!(e, Err(Error::UnsupportedPrecision { .. })),
        "{e:?}"
    );
    opt.register_master(g, (p.slice(..), gr.slice(..), c.slice(..)), &[5], master)
        .unwrap();
    // A later parameter, or copy, on bytes an earlier tensor writes.
    let (p2, g2) = (buf(20), buf(20));
    let e = opt.register_master(g, (p2.slice(..), g2.slice(..), c.slice(..)), &[5], master);
    assert!(matches!(e, Err(Error::AliasedBuffer(_))), "{e:?}");
    let e = opt.register_typed(
        g,
        c.slice(..),
        g2.slice(..12),
        &[5],
        Precision::uniform(Dtype::Bf16),
    );
    assert!(matches!(e, Err(Error::AliasedBuffer(_))), "{e:?}");
}

/// A framework's bf16 pool holding gradients and master-weight copies side by side: the
/// gradient is then bound read-write, as wgpu requires, and the step is the separate buffers'.
#[test]
fn copies_pooled_with_their_gradients_step_as_separate_ones() {
    let Some(ctx) = gpu() else { return };
    let precision = Precision::new(Dtype::F32, Dtype::Bf16, Dtype::F32).with_copy(Dtype::Bf16);
    let len = 1757usize;
    let align = u64::from(ctx.device.limits().min_storage_buffer_offset_alignment);
    let bytes = Dtype::Bf16.buffer_bytes(len as u64);
    let at = bytes.div_ceil(align) * align;
    let mut rng = Rng::new(4);
    let init = rng.vec(len);
    let mut grad = rng.vec(len);
    Dtype::Bf16.round_all(&mut grad);
    let mut pool_bytes = Dtype::Bf16.encode(&grad);
    pool_bytes.resize((at + bytes) as usize, 0);
    let pool = ctx.upload(
        "pool",
        &bytemuck::pod_collect_to_vec::<u8, f32>(&pool_bytes),
    );
    let param = ctx.upload("param", &init);
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let g = gpu.default_group();
    let slices = (
        param.slice(..),
        pool.slice(..bytes),
        pool.slice(at..at + bytes),
    );
    gpu.register_master(g, slices, &[len], precision).unwrap();
    let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
    cpu.register_typed(g, &[len], precision).unwrap();
    let mut want = init.clone();
    for _ in 0..2 {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        gpu.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        cpu.step(&mut [&mut want], &[&grad]).unwrap();
    }
    assert_bits(&ctx.read(&param).unwrap(), &want, "pooled copy: param");
    let after = wgpu_optim::read_bytes(&ctx.device, &ctx.queue, &pool).unwrap();
    let copy = Dtype::Bf16.decode(&after[at as usize..], len).unwrap();
    let rounded: Vec<f32> = want.iter().map(|&v| Dtype::Bf16.round(v)).collect();
    assert_bits(&copy, &rounded, "pooled copy");
}
