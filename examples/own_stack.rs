//! Stepping an optimizer from an existing wgpu stack: the caller owns the device, the queue, the
//! parameter and gradient buffers and the encoder; the optimizer records into that encoder.
//!
//! `cargo run --release --example own_stack`

use wgpu_optim::{AdamW, GpuContext, GpuOptimizer, Schedule};

fn main() -> wgpu_optim::Result<()> {
    // Your stack: here, a device from the convenience path and two buffers of its own.
    let ctx = GpuContext::new()?;
    let (device, queue) = (&ctx.device, &ctx.queue);
    let weights = ctx.upload("weights", &vec![0.5; 4096]);
    let bias = ctx.upload("bias", &[0.0; 64]);
    let weights_grad = ctx.upload("weights.grad", &vec![0.1; 4096]);
    let bias_grad = ctx.upload("bias.grad", &[0.1; 64]);

    // AdamW over the weights; the bias in a second param group without weight decay.
    let mut opt = GpuOptimizer::new(
        device,
        queue,
        AdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let no_decay = opt.add_param_group(AdamW {
        lr: 1e-3,
        weight_decay: 0.0,
        ..Default::default()
    })?;
    opt.register(opt.default_group(), &weights, &weights_grad)?;
    opt.register(no_decay, &bias, &bias_grad)?;
    // Linear warm-up for 10 steps, then cosine decay over 90.
    let warmup_cosine = r#"{"name": "sequential", "milestones": [10], "schedules": [
        {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 10},
        {"name": "cosine", "t_max": 90, "eta_min": 1e-5}]}"#;
    opt.set_schedule(Some(warmup_cosine.parse::<Schedule>()?))?;

    for _ in 0..100 {
        let mut encoder = device.create_command_encoder(&Default::default());
        // ... your forward and backward passes write the gradient buffers here ...
        opt.step(&mut encoder); // one fused dispatch per buffer; no submit, no readback
        queue.submit([encoder.finish()]);
    }
    let w = ctx.read(&weights)?;
    println!(
        "after {} steps: weights[0] = {}",
        opt.scheduler().steps_taken(),
        w[0]
    );
    Ok(())
}
