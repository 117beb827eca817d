//! The async API (the only one on wasm32) against the blocking one: the same steps, states,
//! checkpoints, errors and replays, bit for bit. Driven here with `pollster`; in a browser the
//! same futures resolve on the page's event loop (`scripts/browser-test`).

mod common;

use common::{Rng, cases_dir, gpu};
use pollster::block_on;
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{AdamW, Ema, Error, GpuContext, GpuOptimizer, ParamId};

const LEN: usize = 1027;
const STEPS: usize = 6;

struct Run {
    opt: GpuOptimizer<AdamW>,
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    id: ParamId,
}

fn config() -> AdamW {
    AdamW {
        lr: 0.01,
        weight_decay: 0.05,
        ..AdamW::default()
    }
}

/// An optimizer with clipping and an average of the weights, set up through the blocking API.
fn blocking(ctx: &GpuContext, init: &[f32]) -> Run {
    let param = ctx.upload("param", init);
    let grad = ctx.upload("grad", &vec![0.0; init.len()]);
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config()).unwrap();
    let id = opt.register(opt.default_group(), &param, &grad).unwrap();
    opt.set_max_grad_norm(Some(0.5)).unwrap();
    opt.set_ema(Some(Ema {
        decay: 0.9,
        warmup: None,
    }))
    .unwrap();
    Run {
        opt,
        param,
        grad,
        id,
    }
}

/// The same, through the async API.
async fn asynchronous(ctx: &GpuContext, init: &[f32]) -> Run {
    let param = ctx.upload("param", init);
    let grad = ctx.upload("grad", &vec![0.0; init.len()]);
    let mut opt = GpuOptimizer::new_async(&ctx.device, &ctx.queue, config())
        .await
        .unwrap();
    let id = opt
        .register_async(opt.default_group(), &param, &grad)
        .await
        .unwrap();
    opt.set_max_grad_norm_async(Some(0.5)).await.unwrap();
    opt.set_ema_async(Some(Ema {
        decay: 0.9,
        warmup: None,
    }))
    .await
    .unwrap();
    Run {
        opt,
        param,
        grad,
        id,
    }
}

fn step(ctx: &GpuContext, run: &mut Run, grad: &[f32]) {
    ctx.write(&run.grad, grad);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    run.opt.step(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
}

#[test]
fn async_api_steps_reads_and_restores_as_the_blocking_one() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    let init = rng.vec(LEN);
    let grads: Vec<Vec<f32>> = (0..STEPS + 1).map(|_| rng.vec(LEN)).collect();

    let mut a = blocking(&ctx, &init);
    let mut b = block_on(asynchronous(&ctx, &init));
    for g in &grads[..STEPS] {
        step(&ctx, &mut a, g);
        step(&ctx, &mut b, g);
    }
    let id = a.id;
    assert_eq!(id, b.id);
    assert_eq!(
        ctx.read(&a.param).unwrap(),
        block_on(ctx.read_async(&b.param)).unwrap()
    );
    for name in ["exp_avg", "exp_avg_sq"] {
        let want = a.opt.read_state(id, name).unwrap().unwrap();
        let got = block_on(b.opt.read_state_async(id, name)).unwrap().unwrap();
        assert_eq!(want, got, "{name}");
    }
    assert_eq!(
        a.opt.read_grad_norm().unwrap(),
        block_on(b.opt.read_grad_norm_async()).unwrap()
    );
    assert!(a.opt.read_grad_norm().unwrap() > 0.0);
    assert_eq!(
        a.opt.read_ema(id).unwrap(),
        block_on(b.opt.read_ema_async(id)).unwrap()
    );
    let saved = a.opt.checkpoint().unwrap();
    assert_eq!(saved, block_on(b.opt.checkpoint_async()).unwrap());

    // Restored asynchronously into a fresh optimizer, the run goes on as the original does.
    let mut c = block_on(asynchronous(&ctx, &ctx.read(&a.param).unwrap()));
    block_on(c.opt.restore_async(&saved)).unwrap();
    step(&ctx, &mut a, &grads[STEPS]);
    step(&ctx, &mut c, &grads[STEPS]);
    assert_eq!(ctx.read(&a.param).unwrap(), ctx.read(&c.param).unwrap());
    assert_eq!(
        a.opt.read_state(id, "exp_avg_sq").unwrap(),
        block_on(c.opt.read_state_async(id, "exp_avg_sq")).unwrap()
    );
}

#[test]
fn async_api_refuses_what_the_blocking_one_refuses() {
    let Some(ctx) = gpu() else { return };
    let param = ctx.upload("param", &[0.0; 8]);
    let short = ctx.upload("grad", &[0.0; 4]);
    let mut a = GpuOptimizer::new(&ctx.device, &ctx.queue, config()).unwrap();
    let mut b = block_on(GpuOptimizer::new_async(&ctx.device, &ctx.queue, config())).unwrap();
    let want = a.register(a.default_group(), &param, &short).unwrap_err();
    let got = block_on(b.register_async(b.default_group(), &param, &short)).unwrap_err();
    assert_eq!(want.to_string(), got.to_string());
    let bad = AdamW {
        lr: -1.0,
        ..AdamW::default()
    };
    let got = block_on(b.add_param_group_async(bad)).unwrap_err();
    assert!(
        matches!(got, Error::InvalidHyperparameter { name: "lr", .. }),
        "{got}"
    );
    // Nothing was registered or added: the next parameter gets the id the blocking
    // optimizer's first one does, in the one group.
    let grad = ctx.upload("grad", &[0.0; 8]);
    let want = a.register(a.default_group(), &param, &grad).unwrap();
    let param_b = ctx.upload("param", &[0.0; 8]);
    let grad_b = ctx.upload("grad", &[0.0; 8]);
    let got = block_on(b.register_async(b.default_group(), &param_b, &grad_b)).unwrap();
    assert_eq!(want, got);
    assert_eq!(b.scheduler().groups().len(), 1);
}

#[test]
fn replay_async_computes_what_replay_does() {
    let Some(ctx) = gpu() else { return };
    for name in ["adamw_param_groups", "sched_onecycle", "lamb"] {
        let case = Case::load(&cases_dir().join(format!("{name}.safetensors"))).unwrap();
        let want = case::replay(&case, Backend::Gpu, Some(&ctx)).unwrap();
        let got = block_on(case::replay_async(&case, Backend::Gpu, Some(&ctx))).unwrap();
        assert_eq!(want.results, got.results, "{name}");
        assert_eq!(want.lr, got.lr, "{name}");
        assert!(case::compare(&case, &got).within_tolerance(), "{name}");
    }
}

#[test]
fn step_with_async_rebinds_as_step_with_does() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(5);
    let init = rng.vec(LEN);
    let mut a = blocking(&ctx, &init);
    let mut b = block_on(asynchronous(&ctx, &init));
    // A pool of three gradient buffers, handed out in turn: misses, then cache hits.
    let pool: Vec<wgpu::Buffer> = (0..3).map(|_| ctx.upload("pooled grad", &init)).collect();
    for t in 0..7 {
        let g = &pool[t % 3];
        ctx.write(g, &rng.vec(LEN));
        for (run, asynchronously) in [(&mut a, false), (&mut b, true)] {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            if asynchronously {
                block_on(run.opt.step_with_async(&mut encoder, &[g.slice(..)])).unwrap();
            } else {
                run.opt.step_with(&mut encoder, &[g.slice(..)]).unwrap();
            }
            ctx.queue.submit([encoder.finish()]);
        }
    }
    assert_eq!(ctx.read(&a.param).unwrap(), ctx.read(&b.param).unwrap());
    assert_ne!(ctx.read(&a.param).unwrap(), init);
    // A gradient of the wrong length is refused by both, and neither changes.
    let short = ctx.upload("short", &[0.0; 4]);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let want = a
        .opt
        .step_with(&mut encoder, &[short.slice(..)])
        .unwrap_err();
    let got = block_on(b.opt.step_with_async(&mut encoder, &[short.slice(..)])).unwrap_err();
    assert_eq!(want.to_string(), got.to_string());
}
