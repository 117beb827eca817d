//! How a replay is judged against its recording: the tolerances, and per parameter the worst
//! error and its ratio to the rule.

use super::{Case, CaseParam, Trajectory};

/// How one parameter's replay compares with the recording.
#[derive(Debug, Clone)]
pub struct ParamReport {
    /// The parameter's name (`eval.NAME` for its evaluation point, `ema.NAME` for its
    /// average).
    pub name: String,
    /// The largest |ours - reference| over all steps and elements.
    pub max_abs_err: f64,
    /// The largest ratio of a step's error to that step's tolerance (≤ 1 is within).
    pub worst_ratio: f64,
}

/// The comparison of a replay with its recording.
#[derive(Debug, Clone)]
pub struct Report {
    /// One entry per parameter.
    pub params: Vec<ParamReport>,
    /// The largest relative difference between our learning rate and the recorded one.
    pub max_lr_rel_err: f64,
}

/// Relative tolerance on the parameter, per step: of the reference's largest displacement from
/// its initial value at that step.
pub const DISPLACEMENT_RTOL: f64 = 1e-4;
/// Absolute slack on the parameter, per step.
pub const ATOL: f64 = 2e-6;
/// Relative tolerance on the learning rate at every step.
pub const LR_RTOL: f64 = 1e-6;
/// Low-precision cases (`precision` metadata): the fraction of a step's values that may fall
/// outside the usual tolerance (a rounding or code flip decided by the last bit of an f32
/// intermediate)...
pub const LOW_PRECISION_OUTLIERS: f64 = 0.005;
/// ... and the bound none may pass: this times the step's largest displacement, plus
/// [`LOW_PRECISION_VALUE_RTOL`] times the reference value.
pub const LOW_PRECISION_DISPLACEMENT_RTOL: f64 = 5e-2;
/// See [`LOW_PRECISION_DISPLACEMENT_RTOL`]: 2^-7, a bf16 unit in the last place.
pub const LOW_PRECISION_VALUE_RTOL: f64 = 1.0 / 128.0;

impl Report {
    /// Whether every parameter and the learning rate are within tolerance at every step.
    pub fn within_tolerance(&self) -> bool {
        self.max_lr_rel_err <= LR_RTOL && self.params.iter().all(|p| p.worst_ratio <= 1.0)
    }
}

/// Compares a computed trajectory with the recording: at each step,
/// `max |ours - ref| ≤ DISPLACEMENT_RTOL · max |ref - init| + ATOL`.
pub fn compare(case: &Case, ours: &Trajectory) -> Report {
    let mut params: Vec<ParamReport> = case
        .params
        .iter()
        .zip(&ours.results)
        .map(|(p, result)| judge(case, p, p.name.clone(), &p.expect, result))
        .collect();
    for (i, p) in case.params.iter().enumerate() {
        if let Some(want) = &p.expect_eval {
            let got = ours.results_eval.get(i).map_or(&[][..], Vec::as_slice);
            params.push(judge(case, p, format!("eval.{}", p.name), want, got));
        }
        if let Some(want) = &p.expect_ema {
            let got = ours.results_ema.get(i).map_or(&[][..], Vec::as_slice);
            params.push(judge(case, p, format!("ema.{}", p.name), want, got));
        }
    }
    let max_lr_rel_err = case
        .lr
        .iter()
        .zip(&ours.lr)
        .map(|(&want, &got)| {
            let (w, g) = (f64::from(want), f64::from(got));
            if w == g {
                0.0
            } else {
                (w - g).abs() / w.abs().max(f64::MIN_POSITIVE)
            }
        })
        .fold(0.0, f64::max);
    Report {
        params,
        max_lr_rel_err,
    }
}

/// One parameter's `got` against `want` (both `[steps, numel]`) by the rule of [`compare`]; a
/// missing or short `got` is an infinite error.
///
/// A low-precision case ([`Case::low_precision`]) is judged per step by FORMAT.md's rule for
/// them instead: at most [`LOW_PRECISION_OUTLIERS`] of the values outside the usual tolerance,
/// none beyond [`LOW_PRECISION_DISPLACEMENT_RTOL`] · displacement +
/// [`LOW_PRECISION_VALUE_RTOL`] · |value|. Its ratio is the larger of the outliers' fraction
/// over their allowance and the worst value's error over that bound.
fn judge(case: &Case, p: &CaseParam, name: String, want: &[f32], got: &[f32]) -> ParamReport {
    let (mut max_abs_err, mut worst_ratio) = (0.0f64, 0.0f64);
    for t in 0..case.steps {
        let want = p.row(want, t);
        let displacement = want
            .iter()
            .zip(&p.init)
            .map(|(&w, &i)| (f64::from(w) - f64::from(i)).abs())
            .fold(0.0, f64::max);
        let tolerance = DISPLACEMENT_RTOL * displacement + ATOL;
        if got.len() < want.len() * case.steps {
            max_abs_err = f64::INFINITY;
            worst_ratio = f64::INFINITY;
            continue;
        }
        let errors = want.iter().zip(p.row(got, t)).map(|(&w, &g)| {
            let e = (f64::from(w) - f64::from(g)).abs();
            (f64::from(w), if e.is_nan() { f64::INFINITY } else { e })
        });
        let err = errors.clone().fold(0.0f64, |a, (_, e)| a.max(e));
        max_abs_err = max_abs_err.max(err);
        let ratio = if case.low_precision {
            let outside = errors.clone().filter(|&(_, e)| e > tolerance).count();
            let fraction = outside as f64 / want.len() as f64;
            let beyond = errors
                .map(|(w, e)| {
                    e / (LOW_PRECISION_DISPLACEMENT_RTOL * displacement
                        + LOW_PRECISION_VALUE_RTOL * w.abs())
                })
                .fold(0.0, f64::max);
            if outside == 0 {
                err / tolerance
            } else {
                (fraction / LOW_PRECISION_OUTLIERS).max(beyond)
            }
        } else {
            err / tolerance
        };
        worst_ratio = worst_ratio.max(ratio);
    }
    ParamReport {
        name,
        max_abs_err,
        worst_ratio,
    }
}
