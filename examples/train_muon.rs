//! Trains the spiral MLP of `examples/train_mlp.rs` with Muon for its weight matrices and AdamW
//! for its biases, as the Muon authors recommend: both optimizers record their steps into each
//! step's one encoder, after the WGSL backward pass, on the parameters' own buffers.
//!
//! `cargo run --release --example train_muon -- [--steps 600] [--lr 0.02] [--adamw-lr 0.01]`

use std::process::ExitCode;
use std::time::Instant;

use wgpu_optim::tooling::mlp::{spiral, train_muon};
use wgpu_optim::{AdamW, GpuContext, Muon};

fn main() -> ExitCode {
    let (mut steps, mut lr, mut adamw_lr) = (600u64, 0.02, 0.01);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<f64>().ok());
        match (flag.as_str(), value) {
            ("--steps", Some(v)) => steps = v as u64,
            ("--lr", Some(v)) => lr = v,
            ("--adamw-lr", Some(v)) => adamw_lr = v,
            _ => {
                eprintln!("usage: train_muon [--steps N] [--lr MUON_LR] [--adamw-lr ADAMW_LR]");
                return ExitCode::from(2);
            }
        }
    }
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let info = ctx.adapter.get_info();
    println!("adapter: {} ({:?})", info.name, info.backend);
    let data = spiral(100, 7);
    let muon = Muon {
        lr,
        ..Default::default()
    };
    let adamw = AdamW {
        lr: adamw_lr,
        ..Default::default()
    };
    let t0 = Instant::now();
    let log = |step, loss, acc| println!("step {step:>5}  loss {loss:.4}  accuracy {acc:.3}");
    match train_muon(&ctx, &data, muon, adamw, (steps, 100), log) {
        Ok(t) => {
            println!(
                "muon (weights) + adamw (biases): final loss {:.4}, accuracy {:.3} in {:.1} s",
                t.final_loss,
                t.accuracy,
                t0.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
