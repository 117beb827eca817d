//! The CPU reference gives the same bits whatever its thread count, including LAMB's and LARS's
//! per-tensor norms, which are summed per fixed chunk and added in order.

mod common;

use common::Rng;
use wgpu_optim::{AdamW, Algorithm, CpuOptimizer, Lamb, Lars};

/// Parameters and every state after 3 steps on `threads` threads, for tensors of `LENS`.
fn run<O: Algorithm>(config: &O, threads: usize) -> Vec<Vec<u32>> {
    const LENS: [usize; 3] = [1_000_003, 70_001, 5];
    let mut rng = Rng::new(9);
    let mut opt = CpuOptimizer::new(config.clone()).unwrap();
    opt.set_threads(threads);
    let mut params: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
    let ids: Vec<_> = LENS
        .iter()
        .map(|&n| opt.register(opt.default_group(), n).unwrap())
        .collect();
    for _ in 0..3 {
        let grads: Vec<Vec<f32>> = LENS.iter().map(|&n| rng.vec(n)).collect();
        let mut views: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        opt.step(&mut views, &grad_views).unwrap();
    }
    let mut out: Vec<Vec<u32>> = params
        .iter()
        .map(|p| p.iter().map(|x| x.to_bits()).collect())
        .collect();
    for id in ids {
        for name in O::STATE_NAMES {
            if let Some(s) = opt.state(id, name) {
                out.push(s.iter().map(|x| x.to_bits()).collect());
            }
        }
    }
    out
}

fn same_bits_for_any_thread_count<O: Algorithm>(config: O) {
    let one = run(&config, 1);
    for threads in [2, 3, 8] {
        assert!(
            run(&config, threads) == one,
            "{} on {threads} threads differs from one thread",
            O::NAME
        );
    }
}

#[test]
fn lamb_lars_and_adamw_give_the_same_bits_on_any_number_of_threads() {
    same_bits_for_any_thread_count(Lamb::default());
    same_bits_for_any_thread_count(Lars {
        nesterov: true,
        ..Default::default()
    });
    same_bits_for_any_thread_count(AdamW::default());
}
