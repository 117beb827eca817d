//! The Muon measurement: a step is compute-bound (its Newton–Schulz multiplies), so each row
//! reports the iteration's FLOPs per step and the GFLOP/s achieved, and on the GPU, in the same
//! run, the GFLOP/s of the same multiplies replayed alone, so the step's cost beyond them shows.

use std::time::Instant;

use serde::Serialize;

use super::roofline::{PassTimer, wait};
use super::{median, random};
use crate::context::GpuContext;
use crate::cpu_optimizer::CpuOptimizer;
use crate::error::{Error, Result};
use crate::gpu::{GpuOptimizer, MatmulTiles};
use crate::optim::{Muon, newton_schulz_flops};

/// A set of matrices stepped together, as a model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixSet {
    /// How the row names it (`1024x1024`, `12x(768x3072+3072x768)`).
    pub name: String,
    /// Every matrix's `[rows, cols]`.
    pub shapes: Vec<[usize; 2]>,
}

impl MatrixSet {
    /// The sets the table reports: one 1024 × 1024 matrix, one 4096 × 1024, and a
    /// 12-layer MLP's 768 × 3072 and 3072 × 768 weights.
    pub fn standard() -> Vec<MatrixSet> {
        let model: Vec<[usize; 2]> = (0..12).flat_map(|_| [[768, 3072], [3072, 768]]).collect();
        vec![
            MatrixSet::parse("1024x1024").expect("a valid set"),
            MatrixSet::parse("4096x1024").expect("a valid set"),
            MatrixSet {
                name: "12x(768x3072+3072x768)".into(),
                shapes: model,
            },
        ]
    }

    /// `RxC`, or `Nx(RxC+RxC...)`: N copies of the matrices in parentheses.
    pub fn parse(s: &str) -> Result<MatrixSet> {
        let bad =
            || Error::InvalidOptions(format!("matrix set {s:?}: expected RxC or Nx(RxC+RxC...)"));
        let matrix = |m: &str| -> Result<[usize; 2]> {
            let (r, c) = m.split_once('x').ok_or_else(bad)?;
            let dims = [
                r.trim().parse().map_err(|_| bad())?,
                c.trim().parse().map_err(|_| bad())?,
            ];
            if dims.contains(&0) {
                return Err(bad());
            }
            Ok(dims)
        };
        let shapes = match s.split_once("x(") {
            Some((n, rest)) => {
                let n: usize = n.trim().parse().map_err(|_| bad())?;
                let inner = rest.strip_suffix(')').ok_or_else(bad)?;
                let one: Vec<[usize; 2]> = inner.split('+').map(matrix).collect::<Result<_>>()?;
                if n == 0 || n > 10_000 {
                    return Err(bad());
                }
                (0..n).flat_map(|_| one.iter().copied()).collect()
            }
            None => vec![matrix(s)?],
        };
        Ok(MatrixSet {
            name: s.to_string(),
            shapes,
        })
    }

    /// Values in all its matrices.
    pub fn params(&self) -> u64 {
        self.shapes.iter().map(|[r, c]| (*r * *c) as u64).sum()
    }

    /// Newton–Schulz FLOPs of one step of `config` over the set.
    pub fn flops(&self, config: &Muon) -> f64 {
        self.shapes
            .iter()
            .map(|&s| newton_schulz_flops(s, config.ns_steps))
            .sum()
    }
}

/// A median needs one timed step at least.
fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::InvalidOptions(
            "Muon's bench times at least one step".into(),
        ));
    }
    Ok(())
}

/// One row of `bench --optimizer muon`.
#[derive(Debug, Clone, Serialize)]
pub struct MuonResult {
    /// The matrix set.
    pub set: String,
    /// Matrices in it.
    pub matrices: usize,
    /// Values in them.
    pub params: u64,
    /// `gpu` or `cpu`.
    pub backend: &'static str,
    /// The adapter, or the CPU threads.
    pub device: String,
    /// `gpu-timestamps` or `wall`.
    pub timing: &'static str,
    /// Timed steps.
    pub steps: usize,
    /// Median milliseconds per step.
    pub ms_per_step: f64,
    /// Newton–Schulz GFLOP per step (`steps · (4m²n + 2m³)` per matrix, m ≤ n).
    pub gflop_per_step: f64,
    /// Those FLOPs over the step's time.
    pub gflop_per_s: f64,
    /// GPU: dispatches one step records.
    pub dispatches_per_step: Option<usize>,
    /// GPU: median milliseconds of the step's multiplies replayed alone.
    pub matmul_ms: Option<f64>,
    /// GPU: the multiplies' GFLOP/s alone; the step's GFLOP/s over this is its efficiency.
    pub matmul_gflop_per_s: Option<f64>,
    /// GPU: the multiply's tiles.
    pub tiles: Option<String>,
}

/// Steps Muon over `set` on the GPU for `warmup` and then `steps` timed steps, and times the
/// step's multiplies alone as many times.
pub fn gpu(
    ctx: &GpuContext,
    set: &MatrixSet,
    tiles: Option<MatmulTiles>,
    warmup: usize,
    steps: usize,
) -> Result<MuonResult> {
    check_steps(steps)?;
    let config = Muon::default();
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config)?;
    if let Some(t) = tiles {
        opt.set_matmul_tiles(t)?;
    }
    let group = opt.default_group();
    let mut buffers = Vec::new();
    for (k, &[rows, cols]) in set.shapes.iter().enumerate() {
        let n = rows * cols;
        let p = ctx.upload("param", &random(n, 2 * k as u64 + 1));
        let g = ctx.upload("grad", &random(n, 2 * k as u64 + 2));
        opt.register_with_shape(group, p.slice(..), g.slice(..), &[rows, cols])?;
        buffers.push((p, g));
    }
    for _ in 0..warmup {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        wait(ctx)?;
    }
    let mut step_timer = PassTimer::new(ctx, steps as u32);
    for _ in 0..steps {
        step_timer.time(ctx, |pass| opt.record(pass))?;
    }
    let multiplies = opt.capture_newton_schulz();
    let mut matmul_timer = PassTimer::new(ctx, steps as u32);
    for _ in 0..steps {
        matmul_timer.time(ctx, |pass| multiplies.record(pass))?;
    }
    let (mut ms, timing) = step_timer.finish(ctx)?;
    let (mut matmul_ms, _) = matmul_timer.finish(ctx)?;
    let (ms, matmul_ms) = (median(&mut ms), median(&mut matmul_ms));
    let gflop = set.flops(&config) / 1e9;
    let info = ctx.adapter.get_info();
    let t = opt.matmul_tiles().unwrap_or_default();
    Ok(MuonResult {
        set: set.name.clone(),
        matrices: set.shapes.len(),
        params: set.params(),
        backend: "gpu",
        device: format!("{} ({:?})", info.name, info.backend),
        timing,
        steps,
        ms_per_step: ms,
        gflop_per_step: gflop,
        gflop_per_s: gflop / (ms / 1e3),
        dispatches_per_step: Some(opt.dispatches_per_step()),
        matmul_ms: Some(matmul_ms),
        matmul_gflop_per_s: Some(gflop / (matmul_ms / 1e3)),
        tiles: Some(if t.staged {
            format!("{}x{}x{}x{}x{}", t.tm, t.tn, t.tk, t.rm, t.rn)
        } else {
            format!("direct:{}x{}x{}", t.tm, t.tn, t.rn)
        }),
    })
}

/// Steps Muon's CPU reference over `set` on `threads` threads, `warmup` and then `steps` timed
/// steps.
pub fn cpu(set: &MatrixSet, threads: usize, warmup: usize, steps: usize) -> Result<MuonResult> {
    check_steps(steps)?;
    let config = Muon::default();
    let mut opt = CpuOptimizer::new(config)?;
    opt.set_threads(threads);
    let group = opt.default_group();
    let mut params = Vec::new();
    let mut grads = Vec::new();
    for (k, &[rows, cols]) in set.shapes.iter().enumerate() {
        opt.register_with_shape(group, &[rows, cols])?;
        params.push(random(rows * cols, 2 * k as u64 + 1));
        grads.push(random(rows * cols, 2 * k as u64 + 2));
    }
    let grads: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    let mut step = || -> Result<f64> {
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let t0 = Instant::now();
        opt.step(&mut views, &grads)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..warmup {
        step()?;
    }
    let mut ms = (0..steps).map(|_| step()).collect::<Result<Vec<f64>>>()?;
    let ms = median(&mut ms);
    let gflop = set.flops(&config) / 1e9;
    Ok(MuonResult {
        set: set.name.clone(),
        matrices: set.shapes.len(),
        params: set.params(),
        backend: "cpu",
        device: format!("{threads} threads"),
        timing: "wall",
        steps,
        ms_per_step: ms,
        gflop_per_step: gflop,
        gflop_per_s: gflop / (ms / 1e3),
        dispatches_per_step: None,
        matmul_ms: None,
        matmul_gflop_per_s: None,
        tiles: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_and_count_their_flops() {
        let one = MatrixSet::parse("1024x1024").unwrap();
        // 5 · (4 · 1024³ + 2 · 1024³) = 32.2 GFLOP, the 32 GFLOP per step.
        assert_eq!(one.flops(&Muon::default()), 5.0 * 6.0 * 1024f64.powi(3));
        let model = MatrixSet::parse("12x(768x3072+3072x768)").unwrap();
        assert_eq!(model, MatrixSet::standard()[2]);
        assert_eq!(model.params(), 24 * 768 * 3072);
        for bad in ["", "10", "0x5", "3x(4x5", "x(4x5)", "2x(4x)"] {
            assert!(MatrixSet::parse(bad).is_err(), "{bad:?}");
        }
    }
}
