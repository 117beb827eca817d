//! Classic 2-D optimization test functions, and a runner that descends them with any optimizer's
//! CPU reference: the pictures of `wgpu-optim compare` (momentum through ravines, adaptive
//! methods on saddles).

use std::ops::Range;

use crate::cpu_optimizer::CpuOptimizer;
use crate::error::Result;
use crate::optim::Algorithm;
use crate::tooling::bench::{AnyConfig, with_config};

/// A 2-D test function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFn {
    /// Rosenbrock's banana, `(1 - x)² + 100 (y - x²)²`: a long curved ravine, minimum at (1, 1).
    Rosenbrock,
    /// Beale's function, `(1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)²`: flat
    /// plateaus and steep walls, minimum at (3, 0.5).
    Beale,
    /// A saddle, `x² - y²`, started next to the saddle point: escaping it is the test.
    Saddle,
}

impl TestFn {
    /// All of them.
    pub const ALL: [TestFn; 3] = [TestFn::Rosenbrock, TestFn::Beale, TestFn::Saddle];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rosenbrock => "rosenbrock",
            Self::Beale => "beale",
            Self::Saddle => "saddle",
        }
    }

    /// The value and the gradient at `(x, y)`.
    pub fn value_grad(self, x: f64, y: f64) -> (f64, f64, f64) {
        match self {
            Self::Rosenbrock => {
                let (a, b) = (1.0 - x, y - x * x);
                (a * a + 100.0 * b * b, -2.0 * a - 400.0 * x * b, 200.0 * b)
            }
            Self::Beale => {
                let a = 1.5 - x + x * y;
                let b = 2.25 - x + x * y * y;
                let c = 2.625 - x + x * y * y * y;
                let gx =
                    2.0 * a * (y - 1.0) + 2.0 * b * (y * y - 1.0) + 2.0 * c * (y * y * y - 1.0);
                let gy = 2.0 * a * x + 4.0 * b * x * y + 6.0 * c * x * y * y;
                (a * a + b * b + c * c, gx, gy)
            }
            Self::Saddle => (x * x - y * y, 2.0 * x, -2.0 * y),
        }
    }

    /// Where each descent starts.
    pub fn start(self) -> (f32, f32) {
        match self {
            Self::Rosenbrock => (-1.5, 2.0),
            Self::Beale => (1.0, 1.4),
            Self::Saddle => (-1.0, 1e-3),
        }
    }

    /// The region worth drawing.
    pub fn bounds(self) -> (Range<f64>, Range<f64>) {
        match self {
            Self::Rosenbrock => (-2.0..2.0, -1.0..3.0),
            Self::Beale => (-1.0..4.5, -1.5..2.0),
            Self::Saddle => (-1.5..1.5, -1.5..1.5),
        }
    }

    /// Steps each descent takes.
    pub fn steps(self) -> usize {
        match self {
            Self::Rosenbrock => 1500,
            Self::Beale => 1000,
            Self::Saddle => 200,
        }
    }
}

/// The contestants of `wgpu-optim compare`: each optimizer without weight decay, its learning
/// rate chosen per function family so that each makes visible progress (SGD's must be small on
/// Rosenbrock's ravine; the trust-ratio methods take steps relative to ‖p‖).
pub fn contestants(f: Option<TestFn>) -> Vec<(&'static str, AnyConfig)> {
    use crate::optim::*;
    let ravine = f == Some(TestFn::Rosenbrock);
    let sgd_lr = match f {
        Some(TestFn::Rosenbrock) => 2e-4,
        Some(_) => 1e-2,
        None => 0.1,
    };
    let adaptive = if f.is_none() { 1e-2 } else { 0.05 };
    vec![
        (
            "sgd-momentum",
            AnyConfig::Sgd(Sgd {
                lr: sgd_lr,
                momentum: 0.9,
                ..Default::default()
            }),
        ),
        (
            "adam",
            AnyConfig::Adam(Adam {
                lr: adaptive,
                ..Default::default()
            }),
        ),
        (
            "adamw",
            AnyConfig::AdamW(AdamW {
                lr: adaptive,
                weight_decay: 0.0,
                ..Default::default()
            }),
        ),
        (
            "rmsprop",
            AnyConfig::RmsProp(RmsProp {
                lr: adaptive / 5.0,
                ..Default::default()
            }),
        ),
        (
            "adagrad",
            AnyConfig::Adagrad(Adagrad {
                lr: adaptive * 10.0,
                ..Default::default()
            }),
        ),
        (
            "radam",
            // RAdam's first steps are plain momentum steps of lr · m̂: on the ravine's steep
            // walls (|∇f| ~ 1000) only a small rate survives them.
            AnyConfig::RAdam(RAdam {
                lr: match f {
                    Some(TestFn::Rosenbrock) => 3e-4,
                    Some(_) => adaptive / 10.0,
                    None => adaptive,
                },
                ..Default::default()
            }),
        ),
        (
            "lion",
            AnyConfig::Lion(Lion {
                lr: adaptive / 5.0,
                weight_decay: 0.0,
                ..Default::default()
            }),
        ),
        (
            "lamb",
            AnyConfig::Lamb(Lamb {
                lr: adaptive / if ravine { 5.0 } else { 2.0 },
                ..Default::default()
            }),
        ),
        (
            "lars",
            AnyConfig::Lars(Lars {
                lr: if f.is_none() { 5.0 } else { 20.0 },
                ..Default::default()
            }),
        ),
    ]
}

fn descend_typed<O: Algorithm>(config: O, f: TestFn, steps: usize) -> Result<Vec<[f64; 3]>> {
    let mut opt = CpuOptimizer::new(config)?;
    opt.register(opt.default_group(), 2)?;
    let (x0, y0) = f.start();
    let mut p = vec![x0, y0];
    let mut path = Vec::with_capacity(steps + 1);
    for _ in 0..=steps {
        let (v, gx, gy) = f.value_grad(f64::from(p[0]), f64::from(p[1]));
        path.push([f64::from(p[0]), f64::from(p[1]), v]);
        if path.len() > steps || !v.is_finite() {
            break;
        }
        opt.step(&mut [&mut p], &[&[gx as f32, gy as f32]])?;
    }
    Ok(path)
}

/// Descends `f` from its start for `steps` steps with `config`; returns `(x, y, f(x, y))` at the
/// start and after every step (cut short if the value stops being finite).
pub fn descend(config: &AnyConfig, f: TestFn, steps: usize) -> Result<Vec<[f64; 3]>> {
    with_config!(config.clone(), c => descend_typed(c, f, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        for f in TestFn::ALL {
            for (x, y) in [(0.3, -0.7), (1.2, 0.4), (-1.1, 1.9)] {
                let (_, gx, gy) = f.value_grad(x, y);
                let h = 1e-6;
                let fx = (f.value_grad(x + h, y).0 - f.value_grad(x - h, y).0) / (2.0 * h);
                let fy = (f.value_grad(x, y + h).0 - f.value_grad(x, y - h).0) / (2.0 * h);
                assert!((fx - gx).abs() < 1e-4 * gx.abs().max(1.0), "{f:?} d/dx");
                assert!((fy - gy).abs() < 1e-4 * gy.abs().max(1.0), "{f:?} d/dy");
            }
        }
    }

    #[test]
    fn every_contestant_makes_progress() {
        for f in [TestFn::Rosenbrock, TestFn::Beale] {
            for (name, config) in contestants(Some(f)) {
                let path = descend(&config, f, f.steps()).unwrap();
                let (first, last) = (path[0][2], path[path.len() - 1][2]);
                assert!(last < first, "{name} on {f:?}: {first} -> {last}");
            }
        }
        // On the saddle, every method leaves the saddle point's level.
        for (name, config) in contestants(Some(TestFn::Saddle)) {
            let path = descend(&config, TestFn::Saddle, 200).unwrap();
            assert!(
                path[path.len() - 1][2] < path[0][2],
                "{name} stuck on the saddle"
            );
        }
    }
}
