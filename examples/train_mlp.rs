//! Trains a 2 → 64 → 64 → 3 MLP on a 3-class spiral, forward and backward in WGSL, stepping the
//! real parameter buffers with this crate's optimizers, recorded into the same encoder. Only the
//! loss is read back, every `--log-every` steps.
//!
//! `cargo run --release --example train_mlp -- [--optimizer adamw] [--lr 0.01] [--steps 1500]
//!  [--schedule warmup-cosine|constant|JSON] [--param-dtype f32|bf16] [--state-dtype f32|bf16|f16|q8|q4]
//!  [--stochastic-rounding]` (the gradients are f32; bf16 parameters are read exactly by the
//!  forward pass; `--stochastic-rounding` rounds them as torchao does, for bf16 parameters;
//!  `q8` and `q4` quantize the moments of the 64 × 64 layer, the others keep f32).

use std::process::ExitCode;
use std::time::Instant;

use wgpu_optim::tooling::mlp::{spiral, train_variant};
use wgpu_optim::{Dtype, GpuContext, Precision, Quant, Schedule};

struct Args {
    optimizer: String,
    lr: Option<f64>,
    steps: u64,
    schedule: String,
    log_every: u64,
    precision: Precision,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        optimizer: "adamw".into(),
        lr: None,
        steps: 1500,
        schedule: "warmup-cosine".into(),
        log_every: 100,
        precision: Precision::F32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--optimizer" => a.optimizer = value()?,
            "--lr" => a.lr = Some(value()?.parse().map_err(|e| format!("--lr: {e}"))?),
            "--steps" => a.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--schedule" => a.schedule = value()?,
            "--log-every" => {
                a.log_every = value()?.parse().map_err(|e| format!("--log-every: {e}"))?
            }
            "--param-dtype" | "--state-dtype" => {
                let v = value()?;
                if let (Some(q), "--state-dtype") = (Quant::parse(&v), flag.as_str()) {
                    a.precision.quant = Some(q);
                    continue;
                }
                let d = Dtype::parse(&v).ok_or(format!("{flag}: unknown dtype {v}"))?;
                if flag == "--param-dtype" {
                    a.precision.param = d;
                } else {
                    a.precision.state = d;
                }
            }
            "--stochastic-rounding" => a.precision = a.precision.stochastic(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let ctx = GpuContext::new().map_err(|e| e.to_string())?;
    let lr = args.lr.unwrap_or(if args.optimizer.starts_with("sgd") {
        0.1
    } else {
        1e-2
    });
    let schedule = match args.schedule.as_str() {
        "constant" => None,
        "warmup-cosine" => Some(
            Schedule::warmup_cosine(lr, args.steps / 20, args.steps, 0.1)
                .map_err(|e| e.to_string())?,
        ),
        json => Some(json.parse::<Schedule>().map_err(|e| e.to_string())?),
    };
    let info = ctx.adapter.get_info();
    println!(
        "training on {} ({:?}): {}, lr {lr}, schedule {}, {} steps, {}",
        info.name, info.backend, args.optimizer, args.schedule, args.steps, args.precision
    );
    let data = spiral(100, 7);
    let t0 = Instant::now();
    let run = train_variant(
        &ctx,
        &data,
        &args.optimizer,
        Some(lr),
        schedule,
        (args.steps, args.log_every),
        args.precision,
        |step, loss, acc| {
            println!("step {step:>5}  loss {loss:.4}  accuracy {acc:.3}");
        },
    )
    .map_err(|e| e.to_string())?;
    println!(
        "final loss {:.4} after {:.1} s",
        run.final_loss,
        t0.elapsed().as_secs_f64()
    );
    println!("accuracy {:.3}", run.accuracy);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
