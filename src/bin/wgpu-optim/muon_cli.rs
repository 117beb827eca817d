//! `wgpu-optim bench --optimizer muon`: Muon's compute-bound step, in GFLOP/s.

use wgpu_optim::tooling::bench::muon::{self, MatrixSet, MuonResult};
use wgpu_optim::{Error, GpuContext, MatmulTiles, Result};

/// What `bench --optimizer muon` takes from the bench's options.
pub struct MuonArgs<'a> {
    pub matrices: &'a [String],
    pub tiles: Option<&'a str>,
    /// (GPU, CPU).
    pub backend: (bool, bool),
    pub steps: usize,
    pub warmup: usize,
    pub threads: Option<usize>,
    pub json: bool,
}

/// `TMxTNxTKxRMxRN` (staged) or `direct:TMxTNxRN` (unstaged).
fn parse_tiles(s: &str) -> Result<MatmulTiles> {
    let bad = || {
        Error::InvalidOptions(format!(
            "tiles {s:?}: expected TMxTNxTKxRMxRN or direct:TMxTNxRN"
        ))
    };
    let dims = |part: &str| -> Result<Vec<u32>> {
        part.split('x')
            .map(|d| d.trim().parse().map_err(|_| bad()))
            .collect()
    };
    if let Some(direct) = s.strip_prefix("direct:") {
        return match dims(direct)?[..] {
            [tm, tn, rn] => Ok(MatmulTiles {
                staged: false,
                tm,
                tn,
                tk: 1,
                rm: tm,
                rn,
            }),
            _ => Err(bad()),
        };
    }
    match dims(s)?[..] {
        [tm, tn, tk, rm, rn] => Ok(MatmulTiles {
            staged: true,
            tm,
            tn,
            tk,
            rm,
            rn,
        }),
        _ => Err(bad()),
    }
}

fn row(r: &MuonResult) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    format!(
        "{:<24} {:>4} {:<4} {:>11.1} {:>9.2} {:>8.2} {:>10} {:>10} {:>5} {:<16} {}",
        r.set,
        r.matrices,
        r.backend,
        r.ms_per_step,
        r.gflop_per_step,
        r.gflop_per_s,
        opt(r.matmul_ms, 1),
        opt(r.matmul_gflop_per_s, 2),
        r.dispatches_per_step.map_or("-".into(), |d| d.to_string()),
        r.tiles.as_deref().unwrap_or("-"),
        r.timing,
    )
}

/// Runs the Muon rows and prints the table or the JSON.
pub fn run(args: &MuonArgs<'_>) -> Result<()> {
    let sets = if args.matrices.is_empty() {
        MatrixSet::standard()
    } else {
        args.matrices
            .iter()
            .map(|s| MatrixSet::parse(s))
            .collect::<Result<_>>()?
    };
    let tiles = args.tiles.map(parse_tiles).transpose()?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let ctx = if args.backend.0 {
        Some(GpuContext::new()?)
    } else {
        None
    };
    if !args.json {
        if let Some(ctx) = &ctx {
            let info = ctx.adapter.get_info();
            println!(
                "adapter: {} ({:?}, {:?})",
                info.name, info.backend, info.device_type
            );
        }
        println!(
            "muon (torch defaults, ns_steps 5); cpu: {threads} threads; {} timed steps after {} warm-up; median per step",
            args.steps, args.warmup
        );
        println!(
            "{:<24} {:>4} {:<4} {:>11} {:>9} {:>8} {:>10} {:>10} {:>5} {:<16} timing",
            "matrices",
            "n",
            "on",
            "ms/step",
            "GFLOP",
            "GFLOP/s",
            "matmul_ms",
            "mm_GFLOP/s",
            "disp",
            "tiles"
        );
    }
    let mut results = Vec::new();
    for set in &sets {
        let mut here = Vec::new();
        if let Some(ctx) = &ctx {
            here.push(muon::gpu(ctx, set, tiles, args.warmup, args.steps)?);
        }
        if args.backend.1 {
            here.push(muon::cpu(set, threads, args.warmup, args.steps)?);
        }
        for r in here {
            if !args.json {
                println!("{}", row(&r));
            }
            results.push(r);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results)
                .map_err(|e| Error::InvalidOptions(e.to_string()))?
        );
    } else {
        println!(
            "GFLOP = the Newton-Schulz multiplies' FLOPs per step, steps * (4m^2 n + 2m^3) per matrix \
             (m <= n); matmul_ms = the same multiplies replayed alone in this run, so GFLOP/s over \
             mm_GFLOP/s is the share of the step spent in them"
        );
    }
    Ok(())
}
