//! The average of the weights on both backends, bit for bit: fused into the elementwise
//! kernels over every form (vec4 with a tail, 16-bit gradients and state, quantized state), across a
//! checkpoint, swapped in for evaluation and back, with accumulation and frozen groups; and
//! the errors.

mod common;

use common::pair::{Pair, assert_bits};
use common::{Rng, gpu};
use wgpu_optim::{
    AdamW, CpuOptimizer, Dtype, Ema, EmaWarmup, Error, GpuContext, Lamb, LossScale, Precision,
    Quant, ScheduleFreeAdamW, Sgd,
};

/// Both backends' averages of every parameter, bit for bit.
fn assert_averages<O: wgpu_optim::Algorithm>(pair: &Pair<O>, label: &str) {
    for &id in &pair.ids {
        let (gpu, cpu) = (
            pair.gpu.read_ema(id).unwrap().unwrap(),
            pair.cpu.ema(id).unwrap().to_vec(),
        );
        assert_bits(
            &gpu,
            &cpu,
            &format!("{label}: average of parameter {}", id.index()),
        );
    }
}

fn averaged<O: wgpu_optim::Algorithm>(
    ctx: &GpuContext,
    config: O,
    lens: &[usize],
    precision: Precision,
    ema: Ema,
) {
    let label = format!("{} ({precision})", O::NAME);
    let mut rng = Rng::new(31);
    let mut run = Pair::new(ctx, config.clone(), lens, precision, &mut rng);
    run.gpu.set_ema(Some(ema)).unwrap();
    run.cpu.set_ema(Some(ema)).unwrap();
    let mut resumed = None;
    let mut first = None;
    for t in 0..7 {
        if t == 4 {
            resumed = Some(run.resume(ctx, config.clone()));
        }
        let grads = run.grads(&mut rng);
        for r in std::iter::once(&mut run).chain(resumed.as_mut()) {
            r.step(ctx, &grads);
        }
        if t == 0 {
            // The first update copies the parameters.
            first = Some(run.params.clone());
            for (k, &id) in run.ids.iter().enumerate() {
                let got = run.gpu.read_ema(id).unwrap().unwrap();
                assert_bits(&got, &run.params[k], &format!("{label}: first update"));
            }
        }
    }
    run.assert_identical(ctx, &label);
    assert_averages(&run, &label);
    let resumed = resumed.unwrap();
    assert_averages(&resumed, &format!("{label}, resumed"));
    for (&a, &b) in run.ids.iter().zip(&resumed.ids) {
        assert_bits(
            run.cpu.ema(a).unwrap(),
            resumed.cpu.ema(b).unwrap(),
            &format!("{label}: resumed average"),
        );
    }
    // The average moved off the first copy, toward the weights.
    assert_ne!(
        Some(run.cpu.ema(run.ids[0]).unwrap().to_vec()),
        first.map(|f| f[0].clone())
    );
}

#[test]
fn the_average_is_kept_alike_on_every_form() {
    let Some(ctx) = gpu() else { return };
    let ema = Ema::new(0.9);
    let warm = Ema {
        decay: 0.999,
        warmup: Some(EmaWarmup::default()),
    };
    averaged(
        &ctx,
        AdamW::default(),
        &[1757, 4096, 3],
        Precision::F32,
        ema,
    );
    averaged(&ctx, AdamW::default(), &[1757, 3], Precision::F32, warm);
    // f32 parameters with bf16 gradients and state: the packed (extent) path.
    let mixed = Precision::new(Dtype::F32, Dtype::Bf16, Dtype::Bf16);
    averaged(&ctx, AdamW::default(), &[1757, 4096], mixed, ema);
    let sgd = Sgd {
        momentum: 0.9,
        ..Sgd::default()
    };
    averaged(
        &ctx,
        sgd,
        &[4096, 65536],
        Precision::F32.quantized(Quant::Q8),
        ema,
    );
}

#[test]
fn swapping_in_the_average_and_stepping_on() {
    let Some(ctx) = gpu() else { return };
    let lens = [1757, 4096, 3];
    let mut rng = Rng::new(32);
    let mut run = Pair::new(&ctx, AdamW::default(), &lens, Precision::F32, &mut rng);
    let mut plain = Pair::new(
        &ctx,
        AdamW::default(),
        &lens,
        Precision::F32,
        &mut Rng::new(32),
    );
    for p in [&mut run, &mut plain] {
        p.gpu.set_ema(Some(Ema::new(0.8))).unwrap();
        p.cpu.set_ema(Some(Ema::new(0.8))).unwrap();
    }
    // Nothing to swap in before the first update.
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    assert!(matches!(
        run.gpu.swap_ema(&mut encoder),
        Err(Error::InvalidOptions(_))
    ));
    for t in 0..6 {
        let grads = run.grads(&mut rng);
        run.step(&ctx, &grads);
        plain.step(&ctx, &grads);
        if t == 2 {
            // Swap in: the parameters hold the average, the average the trained weights.
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            run.gpu.swap_ema(&mut encoder).unwrap();
            ctx.queue.submit([encoder.finish()]);
            let mut views: Vec<&mut [f32]> = run.params.iter_mut().map(Vec::as_mut_slice).collect();
            run.cpu.swap_ema(&mut views).unwrap();
            assert!(run.gpu.is_ema_swapped() && run.cpu.is_ema_swapped());
            for (k, &id) in run.ids.iter().enumerate() {
                let held = ctx.read_as(&run.buffers[k].0, Dtype::F32, lens[k]).unwrap();
                assert_bits(&held, plain.cpu.ema(id).unwrap(), "swapped in: the average");
                assert_bits(&run.params[k], plain.cpu.ema(id).unwrap(), "cpu swapped in");
                assert_bits(
                    &run.gpu.read_ema(id).unwrap().unwrap(),
                    &plain.params[k],
                    "held",
                );
            }
        }
    }
    // The next step swapped the trained weights back first: as if no swap had happened.
    assert!(!run.gpu.is_ema_swapped() && !run.cpu.is_ema_swapped());
    for (a, b) in run.params.iter().zip(&plain.params) {
        assert_bits(a, b, "stepped on after a swap");
    }
    run.assert_identical(&ctx, "after a swap");
    assert_averages(&run, "after a swap");
}

/// With accumulation the average moves once per optimizer step; a frozen group's does not.
#[test]
fn the_average_follows_steps_not_calls() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(33);
    let mut run = Pair::new(
        &ctx,
        Sgd::default(),
        &[1757, 4096],
        Precision::F32,
        &mut rng,
    );
    run.gpu.set_accumulation(2).unwrap();
    run.cpu.set_accumulation(2).unwrap();
    run.gpu.set_ema(Some(Ema::new(0.5))).unwrap();
    run.cpu.set_ema(Some(Ema::new(0.5))).unwrap();
    for _ in 0..6 {
        let grads = run.grads(&mut rng);
        run.step(&ctx, &grads);
    }
    assert_eq!(run.gpu.scheduler().steps_taken(), 3);
    run.assert_identical(&ctx, "accumulated");
    assert_averages(&run, "accumulated");
    let group = run.gpu.default_group();
    run.gpu.set_frozen(group, true).unwrap();
    run.cpu.set_frozen(group, true).unwrap();
    let before = run.cpu.ema(run.ids[0]).unwrap().to_vec();
    for _ in 0..2 {
        let grads = run.grads(&mut rng);
        run.step(&ctx, &grads);
    }
    assert_averages(&run, "frozen");
    assert_bits(
        run.cpu.ema(run.ids[0]).unwrap(),
        &before,
        "a frozen group's average",
    );
}

#[test]
fn the_average_refuses_what_it_cannot_keep() {
    let options = |r: wgpu_optim::Result<()>| {
        assert!(matches!(r, Err(Error::InvalidOptions(_))), "{r:?}");
    };
    let ema = Some(Ema::new(0.9));
    options(CpuOptimizer::new(Lamb::default()).unwrap().set_ema(ema));
    options(
        CpuOptimizer::new(ScheduleFreeAdamW::default())
            .unwrap()
            .set_ema(ema),
    );
    let bad = CpuOptimizer::new(Sgd::default())
        .unwrap()
        .set_ema(Some(Ema::new(1.5)));
    assert!(matches!(
        bad,
        Err(Error::InvalidHyperparameter { name: "decay", .. })
    ));
    // 16-bit parameters, registered before or after.
    let mut half = CpuOptimizer::new(Sgd::default()).unwrap();
    let g = half.default_group();
    half.register_typed(g, &[8], Precision::uniform(Dtype::Bf16))
        .unwrap();
    assert!(matches!(
        half.set_ema(ema),
        Err(Error::UnsupportedPrecision { .. })
    ));
    let mut later = CpuOptimizer::new(Sgd::default()).unwrap();
    later.set_ema(ema).unwrap();
    assert!(matches!(
        later.register_typed(g, &[8], Precision::uniform(Dtype::Bf16)),
        Err(Error::UnsupportedPrecision { .. })
    ));
    // Under loss scaling, only from the first step.
    let mut scaled = CpuOptimizer::new(Sgd::default()).unwrap();
    scaled.register(g, 4).unwrap();
    scaled.set_loss_scale(Some(LossScale::default())).unwrap();
    scaled.set_ema(ema).unwrap();
    let mut p = vec![0.0f32; 4];
    scaled.step(&mut [&mut p], &[&[1.0; 4]]).unwrap();
    scaled.set_ema(None).unwrap();
    options(scaled.set_ema(ema));
}

/// Every average starts from its weights, copied by the next step: a frozen group's too (it
/// is never updated after), and a parameter's registered after the average was set.
#[test]
fn averages_start_from_the_weights() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(34);
    let mut run = Pair::new(&ctx, AdamW::default(), &[1757, 3], Precision::F32, &mut rng);
    run.gpu.set_ema(Some(Ema::new(0.9))).unwrap();
    run.cpu.set_ema(Some(Ema::new(0.9))).unwrap();
    let group = run.gpu.default_group();
    run.gpu.set_frozen(group, true).unwrap();
    run.cpu.set_frozen(group, true).unwrap();
    for _ in 0..2 {
        let grads = run.grads(&mut rng);
        run.step(&ctx, &grads);
    }
    assert_averages(&run, "frozen from the start");
    for (k, &id) in run.ids.iter().enumerate() {
        assert_bits(
            run.cpu.ema(id).unwrap(),
            &run.params[k],
            "a frozen group's average",
        );
    }
    // Swapping in and out leaves the frozen weights as they are.
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    run.gpu.swap_ema(&mut encoder).unwrap();
    ctx.queue.submit([encoder.finish()]);
    let held = ctx.read_as(&run.buffers[0].0, Dtype::F32, 1757).unwrap();
    assert_bits(
        &held,
        &run.params[0],
        "swapped in: a frozen group's weights",
    );
    // Registering while swapped in is refused (its average would be swapped in unset).
    let mut views: Vec<&mut [f32]> = run.params.iter_mut().map(Vec::as_mut_slice).collect();
    run.cpu.swap_ema(&mut views).unwrap();
    assert!(matches!(
        run.cpu.register(group, 8),
        Err(Error::InvalidOptions(_))
    ));
}

#[test]
fn a_swap_refuses_parameters_with_a_copy() {
    let mut opt = CpuOptimizer::new(Sgd::default()).unwrap();
    let master = Precision::F32.with_copy(Dtype::Bf16);
    opt.register_typed(opt.default_group(), &[8], master)
        .unwrap();
    opt.set_ema(Some(Ema::new(0.5))).unwrap();
    let mut p = vec![1.0f32; 8];
    opt.step(&mut [&mut p], &[&[0.5; 8]]).unwrap();
    assert!(matches!(
        opt.swap_ema(&mut [&mut p]),
        Err(Error::InvalidOptions(_))
    ));
}
