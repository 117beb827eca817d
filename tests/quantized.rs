//! Quantized (q8, q4) moments: the GPU's codes and scales against the CPU reference bit for
//! bit, the fallback of small tensors, windows, checkpoints of the stored codes, and the typed
//! errors. The recorded torchao cases replay with the other low-precision cases
//! (`tests/precision.rs`).

mod common;

use common::pair::{Pair, identical};
use common::{Rng, gpu, scratch_dir, small_limits_context};
use wgpu_optim::precision::Rounding;
use wgpu_optim::quant::{self, QMap};
use wgpu_optim::{
    Adam, AdamW, Checkpoint, CpuOptimizer, Dtype, Error, GpuOptimizer, Lion, Precision, Quant,
    RmsProp, Sgd,
};

/// Lengths that quantize (whole blocks of both sizes, 4096 values or more), with the issue's
/// lengths, which keep their state unquantized (under 4096 values, or not whole blocks).
const LENS: [usize; 8] = [4096, 65_536, 1_000_192, 1, 3, 4, 1757, 1_000_003];

/// The precisions each optimizer is checked in, for `q`.
fn precisions(q: Quant) -> [Precision; 4] {
    let (f, b) = (Dtype::F32, Dtype::Bf16);
    [
        Precision::F32.quantized(q),
        Precision::uniform(b).quantized(q),
        Precision::new(f, b, f).quantized(q),
        Precision::uniform(b).stochastic(11).quantized(q),
    ]
}

#[test]
fn quantized_state_matches_the_cpu_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    for q in Quant::ALL {
        for precision in precisions(q) {
            let lens = (&LENS[..], precision);
            let amsgrad = Adam {
                amsgrad: true,
                weight_decay: 0.01,
                ..Default::default()
            };
            identical(&ctx, amsgrad, lens, 3, 1);
            identical(&ctx, AdamW::default(), lens, 3, 2);
            let nesterov = Sgd {
                lr: 0.01,
                momentum: 0.9,
                nesterov: true,
                ..Default::default()
            };
            identical(&ctx, nesterov, lens, 3, 3);
            identical(&ctx, Lion::default(), lens, 3, 4);
        }
    }
}

/// Windows of a tensor past one storage binding, each its own blocks, on 2-D grids.
#[test]
fn windows_and_2d_grids_of_quantized_state() {
    let Some(ctx) = small_limits_context() else {
        return;
    };
    for q in Quant::ALL {
        // 16384-value windows (64 KiB bindings), 8 workgroups per grid dimension.
        identical(
            &ctx,
            AdamW::default(),
            (&[16_384 * 3 + 4096], Precision::F32.quantized(q)),
            3,
            5,
        );
    }
}

/// The state of a quantized tensor is its codes: what the codes stand for, requantized, gives
/// the same codes; small tensors keep f32.
#[test]
fn quantized_tensors_hold_codes_and_small_ones_keep_f32() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(8);
    let precision = Precision::F32.quantized(Quant::Q8);
    let mut pair = Pair::new(&ctx, AdamW::default(), &[8192, 17], precision, &mut rng);
    for _ in 0..2 {
        let grads = pair.grads(&mut rng);
        pair.step(&ctx, &grads);
    }
    let (big, small) = (pair.ids[0], pair.ids[1]);
    let blocks = pair
        .gpu
        .read_quantized_state(big, "exp_avg")
        .unwrap()
        .unwrap();
    assert_eq!(blocks.codes.len(), 8192);
    assert_eq!(blocks.scales.len(), 32);
    let values = pair.gpu.read_state(big, "exp_avg").unwrap().unwrap();
    assert_eq!(values, quant::dequantize(Quant::Q8, QMap::Signed, &blocks));
    assert_eq!(
        quant::quantize(Quant::Q8, QMap::Signed, &values).codes,
        blocks.codes
    );
    // Each scale is its block's largest magnitude, which codes 1.0 (or, negative, the map's
    // first entry).
    let first = Quant::Q8.map(QMap::Signed)[0];
    for (b, &s) in values.chunks(256).zip(&blocks.scales) {
        assert!(b.iter().all(|v| v.abs() <= s));
        assert!(b.iter().any(|&v| v == s || v == first * s));
    }
    let sq = pair
        .gpu
        .read_quantized_state(big, "exp_avg_sq")
        .unwrap()
        .unwrap();
    let v = quant::dequantize(Quant::Q8, QMap::Unsigned, &sq);
    assert!(v.iter().all(|&x| x >= 0.0));
    assert!(
        pair.gpu
            .read_quantized_state(small, "exp_avg")
            .unwrap()
            .is_none()
    );
    assert!(pair.cpu.quantized_state(small, "exp_avg").is_none());
    assert_eq!(
        pair.gpu
            .read_state(small, "exp_avg")
            .unwrap()
            .unwrap()
            .len(),
        17
    );
    // The buffer: one record per block, 256 code bytes then the scale.
    let buffer = pair.gpu.state_buffer(big, "exp_avg").unwrap();
    assert_eq!(buffer.size(), 32 * 260);
    pair.assert_identical(&ctx, "q8 and f32 fallback");
}

/// A checkpoint holds each quantized state as U8 codes and F32 scales, and resuming from it
/// gives the same bits as not stopping, on either backend.
#[test]
fn checkpoints_hold_codes_and_scales_and_resume_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch_dir("quantized-checkpoint");
    for q in Quant::ALL {
        let precision = Precision::F32.quantized(q);
        let lens = [4096, 5];
        let mut rng = Rng::new(3);
        let mut pair = Pair::new(&ctx, AdamW::default(), &lens, precision, &mut rng);
        for _ in 0..3 {
            let grads = pair.grads(&mut rng);
            pair.step(&ctx, &grads);
        }
        let path = dir.join(format!("{q}.safetensors"));
        pair.gpu.save_checkpoint(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let code_bytes = 4096 * q.bits() as usize / 8;
        assert_eq!(header["state.0.exp_avg"]["dtype"], "U8");
        assert_eq!(
            header["state.0.exp_avg"]["shape"],
            serde_json::json!([code_bytes])
        );
        let blocks = 4096 / q.block() as usize;
        assert_eq!(header["state.0.exp_avg_sq.scale"]["dtype"], "F32");
        assert_eq!(
            header["state.0.exp_avg_sq.scale"]["shape"],
            serde_json::json!([blocks])
        );
        assert_eq!(header["state.1.exp_avg"]["dtype"], "F32");
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, pair.gpu.checkpoint().unwrap());
        assert_eq!(loaded, pair.cpu.checkpoint().unwrap());
        let mut resumed = Pair::new(&ctx, AdamW::default(), &lens, precision, &mut Rng::new(9));
        for (k, p) in pair.params.iter().enumerate() {
            ctx.write_as(&resumed.buffers[k].0, Dtype::F32, p);
        }
        resumed.params = pair.params.clone();
        resumed.gpu.load_checkpoint(&path).unwrap();
        resumed.cpu.load_checkpoint(&path).unwrap();
        for _ in 0..2 {
            let grads = pair.grads(&mut rng);
            pair.step(&ctx, &grads);
            resumed.step(&ctx, &grads);
        }
        pair.assert_identical(&ctx, &format!("{q} uninterrupted"));
        resumed.assert_identical(&ctx, &format!("{q} resumed"));
        assert_eq!(resumed.params, pair.params, "{q}: resumed vs uninterrupted");
        // Restoring into unquantized state, or codes of the wrong size, is refused.
        let mut other = CpuOptimizer::new(AdamW::default()).unwrap();
        let g = other.default_group();
        other.register(g, 4096).unwrap();
        other.register(g, 5).unwrap();
        assert!(matches!(
            other.restore(&loaded),
            Err(Error::CheckpointMismatch(_))
        ));
        let mut negative = loaded.clone();
        negative.params[0].quantized[1].1.scales[3] = -1.0;
        assert!(matches!(
            pair.cpu.restore(&negative),
            Err(Error::CheckpointMismatch(_))
        ));
        let mut short = loaded.clone();
        short.params[0].quantized[0].1.codes.pop();
        assert!(matches!(
            pair.cpu.restore(&short),
            Err(Error::CheckpointMismatch(_))
        ));
        assert!(matches!(
            pair.gpu.restore(&short),
            Err(Error::CheckpointMismatch(_))
        ));
        assert_eq!(pair.cpu.scheduler().steps_taken(), 5);
    }
}

#[test]
fn quantized_state_is_refused_where_it_cannot_be_stepped() {
    let Some(ctx) = gpu() else { return };
    let precision = Precision::F32.quantized(Quant::Q8);
    let p = ctx.upload("p", &[0.0; 4096]);
    let g = ctx.upload("g", &[0.0; 4096]);
    let mut rms = GpuOptimizer::new(&ctx.device, &ctx.queue, RmsProp::default()).unwrap();
    let group = rms.default_group();
    let err = rms.register_typed(group, p.slice(..), g.slice(..), &[4096], precision);
    assert!(
        matches!(err, Err(Error::UnsupportedPrecision { .. })),
        "{err:?}"
    );
    let mut cpu = CpuOptimizer::new(RmsProp::default()).unwrap();
    let group = cpu.default_group();
    let err = cpu.register_typed(group, &[4096], precision);
    assert!(
        matches!(err, Err(Error::UnsupportedPrecision { .. })),
        "{err:?}"
    );
    // Stochastic rounding stays for bf16 parameters, quantized or not.
    let mut adam = CpuOptimizer::new(AdamW::default()).unwrap();
    let group = adam.default_group();
    let sr = Precision {
        rounding: Rounding::Stochastic { seed: 1 },
        ..precision
    };
    let err = adam.register_typed(group, &[4096], sr);
    assert!(
        matches!(err, Err(Error::UnsupportedPrecision { .. })),
        "{err:?}"
    );
    assert!(cpu.scheduler().steps_taken() == 0);
}

/// q8 AdamW holds 2.03 bytes per parameter and moves 16.06 (8.06 with bf16 parameters and
/// gradients, plus 2 for the bf16 copy where one is written).
#[test]
fn quantized_state_bytes() {
    use wgpu_optim::Algorithm;
    let n = 1 << 20;
    let (moved, held) =
        AdamW::default().stored_step_bytes(&[n], Precision::F32.quantized(Quant::Q8));
    assert_eq!(held, 2 * (n as u64 + n as u64 / 256 * 4));
    assert_eq!(moved, 12 * n as u64 + 2 * held);
    assert!((moved as f64 / n as f64) <= 16.1 && (held as f64 / n as f64) <= 2.05);
    let bf16 = Precision::uniform(Dtype::Bf16).quantized(Quant::Q8);
    let (moved, _) = AdamW::default().stored_step_bytes(&[n], bf16);
    assert!((moved as f64 / n as f64 - 10.0625).abs() < 1e-9);
    let (_, held4) = AdamW::default().stored_step_bytes(&[n], Precision::F32.quantized(Quant::Q4));
    assert_eq!(held4, 2 * (n as u64 / 2 + n as u64 / 128 * 4));
}
