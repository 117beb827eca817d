//! `cargo bench`: one optimizer step (record, submit, wait) for AdamW, SGD with momentum and
//! RMSprop at 1M and 10M parameters, beside the same-bytes vec4 streaming kernel (at the shape
//! a short sweep finds fastest) on the same adapter
//! and the CPU reference on all cores. `wgpu-optim bench` reports the same measurements with GPU
//! timestamps and the roofline ratio.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_optim::tooling::bench::{AnyConfig, Stream, StreamBuffers, sweep, variant};
use wgpu_optim::{Algorithm, CpuOptimizer, GpuContext, GpuOptimizer, Precision};

const SIZES: [u64; 2] = [1_000_000, 10_000_000];
const VARIANTS: [&str; 3] = ["adamw", "sgd-momentum", "rmsprop"];

fn wait(ctx: &GpuContext) {
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
}

fn gpu_step<O: Algorithm>(c: &mut Criterion, ctx: &GpuContext, name: &str, config: &O, n: u64) {
    let init: Vec<f32> = (0..n)
        .map(|i| ((i % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let param = ctx.upload("param", &init);
    let grad = ctx.upload("grad", &init);
    let mut opt = GpuOptimizer::new(&ctx.device, &ctx.queue, config.clone()).unwrap();
    opt.register(opt.default_group(), &param, &grad).unwrap();
    let states = ((config.bytes_per_param() - 12) / 8) as u32;
    let buffers = StreamBuffers::new(ctx, states, &init, Precision::F32);
    let (shape, _) = sweep(ctx, &buffers, 3).unwrap();
    let stream = Stream::new(ctx, &buffers, shape);
    let mut group = c.benchmark_group(format!("gpu/{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(config.bytes_per_param() * n));
    group.bench_function(BenchmarkId::new("step", n), |b| {
        b.iter(|| {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            opt.step(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
            wait(ctx);
        })
    });
    group.bench_function(BenchmarkId::new("stream", n), |b| {
        b.iter(|| {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            stream.record(&mut encoder.begin_compute_pass(&Default::default()));
            ctx.queue.submit([encoder.finish()]);
            wait(ctx);
        })
    });
    group.finish();
}

fn cpu_step<O: Algorithm>(c: &mut Criterion, name: &str, config: &O, n: u64) {
    let mut param: Vec<f32> = (0..n)
        .map(|i| ((i % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let grad = param.clone();
    let mut opt = CpuOptimizer::new(config.clone()).unwrap();
    opt.set_threads(std::thread::available_parallelism().map_or(1, |t| t.get()));
    opt.register(opt.default_group(), n as usize).unwrap();
    let mut group = c.benchmark_group(format!("cpu/{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(config.bytes_per_param() * n));
    group.bench_function(BenchmarkId::new("step", n), |b| {
        b.iter(|| opt.step(&mut [&mut param], &[&grad]).unwrap())
    });
    group.finish();
}

fn steps(c: &mut Criterion) {
    let ctx = GpuContext::new().expect("cargo bench needs a wgpu adapter");
    for n in SIZES {
        for name in VARIANTS {
            match variant(name).unwrap() {
                AnyConfig::AdamW(cfg) => {
                    gpu_step(c, &ctx, name, &cfg, n);
                    cpu_step(c, name, &cfg, n);
                }
                AnyConfig::Sgd(cfg) => {
                    gpu_step(c, &ctx, name, &cfg, n);
                    cpu_step(c, name, &cfg, n);
                }
                AnyConfig::RmsProp(cfg) => {
                    gpu_step(c, &ctx, name, &cfg, n);
                    cpu_step(c, name, &cfg, n);
                }
                other => unreachable!("not benchmarked here: {other:?}"),
            }
        }
    }
}

criterion_group!(benches, steps);
criterion_main!(benches);
