//! Gradients that move: steps over fresh gradient slices of pooled buffers, on the GPU bit for
//! bit with the CPU, through every bind group that names a gradient (the update's, the
//! gradient stage's, accumulation's), with gradients that share their parameter's buffer, a
//! warm loop that allocates nothing, and the errors.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::pair::assert_bits;
use common::{Rng, gpu};
use wgpu_optim::{AdamW, CpuOptimizer, Error, GpuContext, GpuOptimizer};

/// Counts each thread's allocations, to show a warm loop over a pool makes none (per thread:
/// the other tests of this binary run beside it).
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations made by this thread so far.
fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // A thread being torn down has no counter left; its allocations are not counted.
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LENS: [usize; 3] = [1757, 4096, 3];

/// Byte offsets of the three gradients in one pooled buffer (256-byte aligned).
fn offsets() -> Vec<u64> {
    let mut at = 0;
    LENS.iter()
        .map(|&n| {
            let o = at;
            at += (n as u64 * 4).div_ceil(256) * 256;
            o
        })
        .collect()
}

struct Pooled {
    gpu: GpuOptimizer<AdamW>,
    cpu: CpuOptimizer<AdamW>,
    params: Vec<wgpu::Buffer>,
    values: Vec<Vec<f32>>,
    /// Two pools, each holding every gradient, and the buffer registration used.
    pools: [wgpu::Buffer; 2],
    registered: Vec<wgpu::Buffer>,
}

impl Pooled {
    fn new(ctx: &GpuContext, rng: &mut Rng) -> Self {
        let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
        let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
        let pool_bytes = offsets().last().unwrap() + 256;
        let pools = [0, 1].map(|_| ctx.upload("pool", &vec![0.0; pool_bytes as usize / 4]));
        let (mut params, mut values, mut registered) = (Vec::new(), Vec::new(), Vec::new());
        for &n in &LENS {
            let init = rng.vec(n);
            let (p, g) = (ctx.upload("p", &init), ctx.upload("g", &vec![0.0; n]));
            gpu.register(gpu.default_group(), &p, &g).unwrap();
            cpu.register(cpu.default_group(), n).unwrap();
            params.push(p);
            values.push(init);
            registered.push(g);
        }
        Self {
            gpu,
            cpu,
            params,
            values,
            pools,
            registered,
        }
    }

    fn step_cpu(&mut self, grads: &[Vec<f32>]) {
        let mut views: Vec<&mut [f32]> = self.values.iter_mut().map(Vec::as_mut_slice).collect();
        let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        self.cpu.step(&mut views, &g).unwrap();
    }

    fn assert_identical(&self, ctx: &GpuContext, label: &str) {
        for (k, p) in self.params.iter().enumerate() {
            let got = ctx.read_as(p, wgpu_optim::Dtype::F32, LENS[k]).unwrap();
            assert_bits(&got, &self.values[k], &format!("{label}: parameter {k}"));
        }
    }
}

/// This step's gradients written into `pool`, and their slices.
fn write_pool<'a>(
    ctx: &GpuContext,
    pool: &'a wgpu::Buffer,
    grads: &[Vec<f32>],
) -> Vec<wgpu::BufferSlice<'a>> {
    for (g, &o) in grads.iter().zip(&offsets()) {
        ctx.queue.write_buffer(pool, o, bytemuck::cast_slice(g));
    }
    LENS.iter()
        .zip(offsets())
        .map(|(&n, o)| pool.slice(o..o + n as u64 * 4))
        .collect()
}

fn grads(rng: &mut Rng) -> Vec<Vec<f32>> {
    LENS.iter().map(|&n| rng.vec(n)).collect()
}

#[test]
fn steps_over_moving_gradients_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(51);
    let mut run = Pooled::new(&ctx, &mut rng);
    // Clipping's norm (logged only, so the step stays bit-exact) and accumulation both bind
    // the gradients too.
    run.gpu.set_max_grad_norm(Some(f64::INFINITY)).unwrap();
    run.cpu.set_max_grad_norm(Some(f64::INFINITY)).unwrap();
    run.gpu.set_accumulation(2).unwrap();
    run.cpu.set_accumulation(2).unwrap();
    for t in 0..12 {
        let g = grads(&mut rng);
        // Pool 0, pool 1, then the registered buffers, in turn.
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        match t % 3 {
            2 => {
                for (b, v) in run.registered.iter().zip(&g) {
                    ctx.write(b, v);
                }
                let slices: Vec<_> = run.registered.iter().map(|b| b.slice(..)).collect();
                run.gpu.step_with(&mut encoder, &slices).unwrap();
            }
            k => {
                let slices = write_pool(&ctx, &run.pools[k], &g);
                run.gpu.step_with(&mut encoder, &slices).unwrap();
            }
        }
        ctx.queue.submit([encoder.finish()]);
        run.step_cpu(&g);
        if t % 2 == 1 {
            let (gn, cn) = (
                run.gpu.read_grad_norm().unwrap(),
                run.cpu.last_grad_norm().unwrap(),
            );
            assert!((gn - cn).abs() <= 1e-5 * cn, "step {t}: norm {gn} vs {cn}");
        }
    }
    run.assert_identical(&ctx, "moving gradients");
}

#[test]
fn a_warm_loop_over_a_pool_allocates_nothing() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(52);
    let mut run = Pooled::new(&ctx, &mut rng);
    let g = grads(&mut rng);
    let slices: [Vec<wgpu::BufferSlice<'_>>; 2] =
        [0, 1].map(|k| write_pool(&ctx, &run.pools[k], &g));
    // Warm: each pool seen once (a miss each), then only hits.
    for s in &slices {
        run.gpu.rebind_grads(s).unwrap();
    }
    let before = allocations();
    for t in 0..8 {
        run.gpu.rebind_grads(&slices[t % 2]).unwrap();
    }
    let made = allocations() - before;
    assert_eq!(made, 0, "allocations while rebinding seen slices");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    run.gpu.step(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    run.step_cpu(&g);
    run.assert_identical(&ctx, "after rebinding");
}

/// A gradient carved from its parameter's buffer (a framework's pool holding both) is bound
/// read-write; moving between such a slice and a buffer of its own keeps the results.
#[test]
fn gradients_sharing_their_parameters_buffer() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(53);
    let n = 1757usize;
    let init = rng.vec(n);
    let stride = (n as u64 * 4).div_ceil(256) * 256;
    let mut both = init.clone();
    both.resize(stride as usize / 4, 0.0);
    both.extend(vec![0.0; n]);
    let pool = ctx.upload("param and grad", &both);
    let own = ctx.upload("grad", &vec![0.0; n]);
    let mut gpu = GpuOptimizer::new(&ctx.device, &ctx.queue, AdamW::default()).unwrap();
    let mut cpu = CpuOptimizer::new(AdamW::default()).unwrap();
    gpu.register_slices(
        gpu.default_group(),
        pool.slice(..n as u64 * 4),
        own.slice(..),
    )
    .unwrap();
    cpu.register(cpu.default_group(), n).unwrap();
    let mut values = init;
    for t in 0..6 {
        let g = rng.vec(n);
        let slice = if t % 2 == 0 {
            ctx.queue
                .write_buffer(&pool, stride, bytemuck::cast_slice(&g));
            pool.slice(stride..stride + n as u64 * 4)
        } else {
            ctx.write(&own, &g);
            own.slice(..)
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        gpu.step_with(&mut encoder, &[slice]).unwrap();
        ctx.queue.submit([encoder.finish()]);
        cpu.step(&mut [&mut values], &[&g]).unwrap();
    }
    let bytes = wgpu_optim::read_bytes(&ctx.device, &ctx.queue, &pool).unwrap();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..n * 4]);
    assert_bits(&got, &values, "a gradient sharing its parameter's buffer");
}

#[test]
fn bad_gradient_slices_change_nothing() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(54);
    let mut run = Pooled::new(&ctx, &mut rng);
    let g = grads(&mut rng);
    let good = write_pool(&ctx, &run.pools[0], &g);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    // Too few, too short, and over a parameter.
    let short = run.pools[1].slice(..256);
    let over = run.params[1].slice(..);
    let cases: [(Vec<wgpu::BufferSlice<'_>>, &str); 3] = [
        (good[..2].to_vec(), "count"),
        (vec![good[0], good[1], short], "size"),
        (vec![good[0], over, good[2]], "alias"),
    ];
    for (slices, what) in cases {
        let err = run.gpu.step_with(&mut encoder, &slices).unwrap_err();
        match what {
            "alias" => assert!(matches!(err, Error::AliasedBuffer(_)), "{err}"),
            _ => assert!(matches!(err, Error::StepShape(_)), "{what}: {err}"),
        }
    }
    assert_eq!(run.gpu.scheduler().steps_taken(), 0);
    // The registered gradients are still the ones bound.
    for (b, v) in run.registered.iter().zip(&g) {
        ctx.write(b, v);
    }
    run.gpu.step(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    run.step_cpu(&g);
    run.assert_identical(&ctx, "after refused slices");
}
