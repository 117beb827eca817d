//! Learning-rate schedules as pure, closed-form functions of the step.
//!
//! Each schedule maps (base learning rate, epoch) to a learning rate with no hidden state, so
//! resuming at any step gives exactly the learning rate an uninterrupted run had. The epoch is
//! the number of scheduler steps taken so far: PyTorch steps the scheduler once after every
//! optimizer step, so optimizer step `t` (1-based) runs at epoch `t - 1`.
//!
//! The variants and their JSON (serde) form follow `torch.optim.lr_scheduler` and the parity
//! format: `{"name": "cosine", "t_max": 30, "eta_min": 0.001}`. PyTorch computes most of these
//! recursively; the closed forms here are the ones its `_get_closed_form_lr` documents, equal up
//! to f64 rounding.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Annealing shape of [`Schedule::OneCycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    /// Half a cosine wave between the phase's end points.
    Cos,
    /// A straight line between the phase's end points.
    Linear,
}

impl Anneal {
    /// The value `pct` of the way from `from` to `to`, as `OneCycleLR`'s anneal functions.
    fn between(self, from: f64, to: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (to - from) * pct + from,
        }
    }
}

/// Where epoch `t` falls in a one-cycle run of `total_steps`: the index of the first phase not
/// yet over (or the last), and the fraction of it done. Epochs past the run keep the end.
fn one_cycle_phase(total_steps: u64, pct_start: f64, three_phase: bool, t: f64) -> (usize, f64) {
    let total = total_steps as f64;
    let warm_end = pct_start * total - 1.0;
    let ends: &[f64] = if three_phase {
        &[warm_end, 2.0 * pct_start * total - 2.0, total - 1.0]
    } else {
        &[warm_end, total - 1.0]
    };
    let step = t.min(total);
    let i = ends
        .iter()
        .position(|&end_step| step <= end_step)
        .unwrap_or(ends.len() - 1);
    let start_step = if i == 0 { 0.0 } else { ends[i - 1] };
    // A phase of no length (a very short run) is over at once; PyTorch would divide by zero.
    let pct = if ends[i] > start_step {
        (step - start_step) / (ends[i] - start_step)
    } else {
        1.0
    };
    (i, pct)
}

fn default_base_momentum() -> f64 {
    0.85
}

fn default_max_momentum() -> f64 {
    0.95
}

// The JSON form leaves out what a format file without momentum cycling leaves out.
fn is_false(b: &bool) -> bool {
    !b
}

fn is_default_base_momentum(m: &f64) -> bool {
    *m == default_base_momentum()
}

fn is_default_max_momentum(m: &f64) -> bool {
    *m == default_max_momentum()
}

/// A learning-rate schedule; see each variant for its PyTorch counterpart and formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `ConstantLR`: `base · factor` for epochs before `total_iters`, then `base`.
    Constant {
        /// Multiplier during the first `total_iters` epochs, in [0, 1].
        factor: f64,
        /// Epochs the factor applies for.
        total_iters: u64,
    },
    /// `StepLR`: `base · gamma^⌊epoch / step_size⌋`.
    Step {
        /// Epochs between decays (> 0).
        step_size: u64,
        /// Decay factor (> 0).
        gamma: f64,
    },
    /// `MultiStepLR`: `base · gamma^(number of milestones ≤ epoch)`.
    #[serde(rename = "multistep")]
    MultiStep {
        /// Strictly increasing epochs at which the rate decays.
        milestones: Vec<u64>,
        /// Decay factor (> 0).
        gamma: f64,
    },
    /// `ExponentialLR`: `base · gamma^epoch`.
    Exponential {
        /// Decay factor per epoch (> 0).
        gamma: f64,
    },
    /// `CosineAnnealingLR`: `eta_min + (base - eta_min)(1 + cos(π · epoch / t_max)) / 2`.
    ///
    /// Past `t_max` the cosine continues, rising back towards `base`, exactly as PyTorch's does.
    Cosine {
        /// Half-period in epochs (> 0).
        t_max: u64,
        /// The floor.
        eta_min: f64,
    },
    /// `CosineAnnealingWarmRestarts`: cosine annealing restarted after `t_0`, `t_0 · t_mult`,
    /// `t_0 · t_mult²`, ... epochs.
    CosineWarmRestarts {
        /// Length of the first cycle in epochs (> 0).
        t_0: u64,
        /// Growth factor of the cycle length (≥ 1).
        t_mult: u64,
        /// The floor.
        eta_min: f64,
    },
    /// `LinearLR`: the factor moves linearly from `start_factor` to `end_factor` over
    /// `total_iters` epochs, then stays.
    Linear {
        /// Factor at epoch 0, in (0, 1].
        start_factor: f64,
        /// Factor from `total_iters` on, in [0, 1].
        end_factor: f64,
        /// Epochs of the ramp (> 0).
        total_iters: u64,
    },
    /// `PolynomialLR`: `base · (1 - min(epoch, total_iters) / total_iters)^power`.
    Polynomial {
        /// Epochs to reach zero (> 0).
        total_iters: u64,
        /// Exponent (≥ 0).
        power: f64,
    },
    /// `OneCycleLR`: warm up from `max_lr / div_factor` to `max_lr` over `pct_start` of the run,
    /// then anneal to `max_lr / (div_factor · final_div_factor)`; with `three_phase`, come back
    /// down to the initial rate before the final annealing.
    ///
    /// With `cycle_momentum` (PyTorch's default; absent from JSON means off, as the parity format
    /// says), the optimizer's momentum (SGD, RMSprop, LARS) or first beta (the Adam family,
    /// Lion, LAMB, ADOPT, AdEMAMix) moves inversely to the rate: from `max_momentum` down to
    /// `base_momentum` while the rate rises, and back while it falls (in three phases, it stays
    /// at `max_momentum` for the last). It replaces the group's own value at every step, as
    /// PyTorch's assignment to `betas` or `momentum` does, and Adam's bias correction
    /// `1 - β₁ᵗ` uses the step's β₁, as PyTorch's. See [`Schedule::momentum`].
    ///
    /// The base learning rate is ignored, as PyTorch's is. PyTorch raises past `total_steps`;
    /// here epochs past it keep the final rate.
    #[serde(rename = "onecycle")]
    OneCycle {
        /// Peak learning rate (> 0).
        max_lr: f64,
        /// Length of the cycle in epochs (> 0).
        total_steps: u64,
        /// Fraction of the cycle spent warming up, in [0, 1].
        pct_start: f64,
        /// Shape of each phase.
        anneal_strategy: Anneal,
        /// `max_lr / initial_lr` (> 0).
        div_factor: f64,
        /// `initial_lr / min_lr` (> 0).
        final_div_factor: f64,
        /// Use three phases instead of two.
        three_phase: bool,
        /// Cycle the momentum or first beta inversely to the rate.
        #[serde(default, skip_serializing_if = "is_false")]
        cycle_momentum: bool,
        /// The momentum at the peak rate (0.85 by default), in [0, 1).
        #[serde(
            default = "default_base_momentum",
            skip_serializing_if = "is_default_base_momentum"
        )]
        base_momentum: f64,
        /// The momentum at the lowest rates (0.95 by default), in [0, 1).
        #[serde(
            default = "default_max_momentum",
            skip_serializing_if = "is_default_max_momentum"
        )]
        max_momentum: f64,
    },
    /// Inverse square root with linear warm-up, the original Transformer schedule (Vaswani et al.,
    /// 2017), normalized so the peak is the base rate:
    /// `base · min((epoch + 1) / warmup_steps, √(warmup_steps / (epoch + 1)))`.
    ///
    /// Not a `torch.optim.lr_scheduler` class (PyTorch writes it as a `LambdaLR`); this crate's
    /// extension of the parity format, with the same JSON shape.
    InverseSqrt {
        /// Epochs of linear warm-up; the rate peaks at epoch `warmup_steps - 1` (> 0).
        warmup_steps: u64,
    },
    /// `SequentialLR`: schedule `i` runs from milestone `i - 1` (epoch 0 for the first), and its
    /// epochs count from that milestone.
    Sequential {
        /// The schedules, one more than there are milestones.
        schedules: Vec<Schedule>,
        /// Strictly increasing epochs at which the next schedule takes over.
        milestones: Vec<u64>,
    },
}

/// The names of every schedule this crate implements, as they appear in JSON.
pub const SCHEDULE_NAMES: &[&str] = &[
    "constant",
    "step",
    "multistep",
    "exponential",
    "cosine",
    "cosine_warm_restarts",
    "linear",
    "polynomial",
    "onecycle",
    "inverse_sqrt",
    "sequential",
];

fn invalid(name: &'static str, value: f64, reason: &'static str) -> Error {
    Error::InvalidHyperparameter {
        name,
        value,
        reason,
    }
}

fn positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, value, "must be finite and > 0"))
    }
}

fn positive_count(name: &'static str, value: u64) -> Result<()> {
    if value > 0 {
        Ok(())
    } else {
        Err(invalid(name, 0.0, "must be > 0"))
    }
}

fn in_range(name: &'static str, value: f64, lo: f64, hi: f64, reason: &'static str) -> Result<()> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(invalid(name, value, reason))
    }
}

fn increasing(name: &str, milestones: &[u64]) -> Result<()> {
    match milestones.windows(2).find(|w| w[1] <= w[0]) {
        None => Ok(()),
        Some(w) => Err(Error::InvalidOptions(format!(
            "{name} must be strictly increasing, got {} after {} in {milestones:?}",
            w[1], w[0]
        ))),
    }
}

/// How many of the sorted `milestones` are ≤ `epoch` (Python's `bisect_right`).
fn passed(milestones: &[u64], epoch: u64) -> usize {
    milestones.partition_point(|&m| m <= epoch)
}

fn cosine_between(lo: f64, hi: f64, frac: f64) -> f64 {
    lo + (hi - lo) * (1.0 + (PI * frac).cos()) / 2.0
}

impl Schedule {
    /// Checks every field against PyTorch's ranges, recursively.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Constant {
                factor,
                total_iters: _,
            } => in_range("factor", *factor, 0.0, 1.0, "must be in [0, 1]"),
            Self::Step { step_size, gamma } => {
                positive_count("step_size", *step_size)?;
                positive("gamma", *gamma)
            }
            Self::MultiStep { milestones, gamma } => {
                increasing("milestones", milestones)?;
                positive("gamma", *gamma)
            }
            Self::Exponential { gamma } => positive("gamma", *gamma),
            Self::Cosine { t_max, eta_min } => {
                positive_count("t_max", *t_max)?;
                finite("eta_min", *eta_min)
            }
            Self::CosineWarmRestarts {
                t_0,
                t_mult,
                eta_min,
            } => {
                positive_count("t_0", *t_0)?;
                positive_count("t_mult", *t_mult)?;
                finite("eta_min", *eta_min)
            }
            Self::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                if !(*start_factor > 0.0 && *start_factor <= 1.0) {
                    return Err(invalid("start_factor", *start_factor, "must be in (0, 1]"));
                }
                in_range("end_factor", *end_factor, 0.0, 1.0, "must be in [0, 1]")?;
                positive_count("total_iters", *total_iters)
            }
            Self::Polynomial { total_iters, power } => {
                positive_count("total_iters", *total_iters)?;
                if power.is_finite() && *power >= 0.0 {
                    Ok(())
                } else {
                    Err(invalid("power", *power, "must be finite and >= 0"))
                }
            }
            Self::OneCycle {
                max_lr,
                total_steps,
                pct_start,
                anneal_strategy: _,
                div_factor,
                final_div_factor,
                three_phase: _,
                cycle_momentum: _,
                base_momentum,
                max_momentum,
            } => {
                positive("max_lr", *max_lr)?;
                positive_count("total_steps", *total_steps)?;
                in_range("pct_start", *pct_start, 0.0, 1.0, "must be in [0, 1]")?;
                positive("div_factor", *div_factor)?;
                positive("final_div_factor", *final_div_factor)?;
                crate::error::unit_interval("base_momentum", *base_momentum)?;
                crate::error::unit_interval("max_momentum", *max_momentum)
            }
            Self::InverseSqrt { warmup_steps } => positive_count("warmup_steps", *warmup_steps),
            Self::Sequential {
                schedules,
                milestones,
            } => {
                if schedules.len() != milestones.len() + 1 {
                    return Err(Error::InvalidOptions(format!(
                        "sequential needs one more schedule than milestones, got {} schedules and {} milestones",
                        schedules.len(),
                        milestones.len()
                    )));
                }
                increasing("milestones", milestones)?;
                if schedules.iter().any(|s| s.momentum(0).is_some()) {
                    return Err(Error::InvalidOptions(
                        "a sequential schedule cannot cycle the momentum: set cycle_momentum on \
                         a onecycle schedule of its own"
                            .into(),
                    ));
                }
                schedules.iter().try_for_each(Schedule::validate)
            }
        }
    }

    /// Parses and validates a schedule from its JSON form, telling an unknown name apart from
    /// malformed fields.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let name = value.get("name").and_then(|n| n.as_str()).unwrap_or("");
        if !SCHEDULE_NAMES.contains(&name) {
            return Err(Error::Unknown {
                kind: "schedule",
                name: name.to_string(),
            });
        }
        let schedule: Schedule = serde_json::from_value(value.clone())
            .map_err(|e| Error::InvalidOptions(format!("schedule {value}: {e}")))?;
        schedule.validate()?;
        Ok(schedule)
    }

    /// The learning rate at `epoch` for a parameter group whose base learning rate is `base`.
    ///
    /// The schedule is validated first, so one built from its public fields with values
    /// PyTorch rejects is an error naming the value, never a division by zero.
    pub fn lr(&self, base: f64, epoch: u64) -> Result<f64> {
        self.validate()?;
        Ok(self.eval(base, epoch))
    }

    /// The momentum (or first beta) a schedule that cycles it sets at `epoch`: `OneCycleLR` with
    /// `cycle_momentum`; `None` for every other schedule, which leaves the group's own.
    pub fn momentum(&self, epoch: u64) -> Option<f64> {
        match self {
            Self::OneCycle {
                total_steps,
                pct_start,
                anneal_strategy,
                three_phase,
                cycle_momentum: true,
                base_momentum,
                max_momentum,
                ..
            } => {
                let (lo, hi) = (*base_momentum, *max_momentum);
                let ends: &[(f64, f64)] = if *three_phase {
                    &[(hi, lo), (lo, hi), (hi, hi)]
                } else {
                    &[(hi, lo), (lo, hi)]
                };
                let (i, pct) =
                    one_cycle_phase(*total_steps, *pct_start, *three_phase, epoch as f64);
                Some(anneal_strategy.between(ends[i].0, ends[i].1, pct))
            }
            _ => None,
        }
    }

    /// [`Schedule::lr`] of a schedule already validated (every schedule a scheduler holds).
    pub(crate) fn eval(&self, base: f64, epoch: u64) -> f64 {
        let t = epoch as f64;
        match self {
            Self::Constant {
                factor,
                total_iters,
            } => {
                if epoch < *total_iters {
                    base * factor
                } else {
                    base
                }
            }
            Self::Step { step_size, gamma } => base * gamma.powf((epoch / step_size) as f64),
            Self::MultiStep { milestones, gamma } => {
                base * gamma.powf(passed(milestones, epoch) as f64)
            }
            Self::Exponential { gamma } => base * gamma.powf(t),
            Self::Cosine { t_max, eta_min } => cosine_between(*eta_min, base, t / *t_max as f64),
            Self::CosineWarmRestarts {
                t_0,
                t_mult,
                eta_min,
            } => {
                // Walk the cycles in integers, as PyTorch's T_cur/T_i bookkeeping does: in one
                // division when cycles do not grow, else in at most 64 growing cycles.
                let (mut start, mut len) = (0u64, *t_0);
                if *t_mult == 1 {
                    start = epoch / len * len;
                }
                while epoch >= start.saturating_add(len) {
                    start += len;
                    len = len.saturating_mul(*t_mult);
                }
                cosine_between(*eta_min, base, (epoch - start) as f64 / len as f64)
            }
            Self::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                let frac = epoch.min(*total_iters) as f64 / *total_iters as f64;
                base * (start_factor + (end_factor - start_factor) * frac)
            }
            Self::Polynomial { total_iters, power } => {
                let frac = epoch.min(*total_iters) as f64 / *total_iters as f64;
                base * (1.0 - frac).powf(*power)
            }
            Self::OneCycle {
                max_lr,
                total_steps,
                pct_start,
                anneal_strategy,
                div_factor,
                final_div_factor,
                three_phase,
                ..
            } => {
                let initial = max_lr / div_factor;
                let min = initial / final_div_factor;
                let ends: &[(f64, f64)] = if *three_phase {
                    &[(initial, *max_lr), (*max_lr, initial), (initial, min)]
                } else {
                    &[(initial, *max_lr), (*max_lr, min)]
                };
                let (i, pct) = one_cycle_phase(*total_steps, *pct_start, *three_phase, t);
                anneal_strategy.between(ends[i].0, ends[i].1, pct)
            }
            Self::InverseSqrt { warmup_steps } => {
                let (s, w) = (t + 1.0, *warmup_steps as f64);
                base * (s / w).min((w / s).sqrt())
            }
            Self::Sequential {
                schedules,
                milestones,
            } => {
                let i = passed(milestones, epoch);
                let since = if i == 0 { 0 } else { milestones[i - 1] };
                schedules[i].eval(base, epoch - since)
            }
        }
    }
}

/// The LLM-training recipes, built from the schedules above (and so serialized in the same JSON).
///
/// Each takes the run length and checks that the phases fit in it. Warm-up is `LinearLR` from
/// `1 / warmup` of the rate to the full rate over `warmup` steps.
impl Schedule {
    fn warmup_phase(warmup: u64) -> Schedule {
        Schedule::Linear {
            start_factor: 1.0 / warmup as f64,
            end_factor: 1.0,
            total_iters: warmup,
        }
    }

    fn check_fits(warmup: u64, total_steps: u64) -> Result<()> {
        positive_count("total_steps", total_steps)?;
        if warmup >= total_steps {
            return Err(Error::InvalidOptions(format!(
                "warm-up of {warmup} steps does not fit in a run of {total_steps} steps"
            )));
        }
        Ok(())
    }

    /// `phases` preceded by the warm-up (when `warmup > 0`); `milestones` are where each phase
    /// starts, the first being `warmup`.
    fn with_warmup(
        warmup: u64,
        mut phases: Vec<Schedule>,
        mut milestones: Vec<u64>,
    ) -> Result<Schedule> {
        if warmup > 0 {
            phases.insert(0, Self::warmup_phase(warmup));
        } else {
            milestones.remove(0);
        }
        let schedule = if phases.len() == 1 {
            phases.remove(0)
        } else {
            Schedule::Sequential {
                schedules: phases,
                milestones,
            }
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Linear warm-up for `warmup` steps, then cosine decay from `peak_lr` to `floor · peak_lr`
    /// at step `total_steps` (`sequential` of `linear` and `cosine`). Every group's rate
    /// follows its own base rate; the floor is absolute, as `eta_min` is in PyTorch.
    pub fn warmup_cosine(
        peak_lr: f64,
        warmup: u64,
        total_steps: u64,
        floor: f64,
    ) -> Result<Schedule> {
        Self::check_fits(warmup, total_steps)?;
        positive("peak_lr", peak_lr)?;
        in_range("floor", floor, 0.0, 1.0, "must be in [0, 1]")?;
        Self::with_warmup(
            warmup,
            vec![Schedule::Cosine {
                t_max: total_steps - warmup,
                eta_min: floor * peak_lr,
            }],
            vec![warmup],
        )
    }

    /// Warmup-stable-decay: linear warm-up for `warmup` steps, the full rate until `decay`
    /// steps before `total_steps`, then a linear decay to `floor` of it
    /// (`sequential` of `linear`, `constant` and `linear`).
    pub fn warmup_stable_decay(
        warmup: u64,
        decay: u64,
        total_steps: u64,
        floor: f64,
    ) -> Result<Schedule> {
        Self::check_fits(warmup, total_steps)?;
        in_range("floor", floor, 0.0, 1.0, "must be in [0, 1]")?;
        positive_count("decay", decay)?;
        if warmup + decay > total_steps {
            return Err(Error::InvalidOptions(format!(
                "warm-up of {warmup} and decay of {decay} steps do not fit in a run of {total_steps} steps"
            )));
        }
        let stable = total_steps - warmup - decay;
        let decay_phase = Schedule::Linear {
            start_factor: 1.0,
            end_factor: floor,
            total_iters: decay,
        };
        let (phases, milestones) = if stable == 0 {
            (vec![decay_phase], vec![warmup])
        } else {
            let hold = Schedule::Constant {
                factor: 1.0,
                total_iters: stable,
            };
            (vec![hold, decay_phase], vec![warmup, warmup + stable])
        };
        Self::with_warmup(warmup, phases, milestones)
    }

    /// Linear warm-up for `warmup` steps, then the full rate (a `linear` schedule, which holds
    /// its end factor).
    pub fn warmup_constant(warmup: u64) -> Result<Schedule> {
        positive_count("warmup", warmup)?;
        Ok(Self::warmup_phase(warmup))
    }

    /// Inverse square root with `warmup` steps of linear warm-up (see [`Schedule::InverseSqrt`]).
    pub fn inverse_sqrt(warmup: u64) -> Result<Schedule> {
        let s = Schedule::InverseSqrt {
            warmup_steps: warmup,
        };
        s.validate()?;
        Ok(s)
    }

    /// Epochs where the schedule changes course (milestones, restarts, ends of phases), sorted,
    /// up to `limit`.
    pub fn key_epochs(&self, limit: u64) -> Vec<u64> {
        let mut out = match self {
            Self::Constant { total_iters, .. }
            | Self::Linear { total_iters, .. }
            | Self::Polynomial { total_iters, .. } => vec![*total_iters],
            Self::Step { step_size, .. } => (1..=8).map(|k| step_size.saturating_mul(k)).collect(),
            Self::MultiStep { milestones, .. } => milestones.clone(),
            Self::Exponential { .. } => vec![],
            Self::Cosine { t_max, .. } => vec![*t_max],
            Self::CosineWarmRestarts { t_0, t_mult, .. } => {
                let (mut start, mut len, mut v) = (0u64, *t_0, Vec::new());
                while start.saturating_add(len) < limit && v.len() < 16 {
                    start += len;
                    len = len.saturating_mul(*t_mult);
                    v.push(start);
                }
                v
            }
            Self::OneCycle {
                total_steps,
                pct_start,
                three_phase,
                ..
            } => {
                let peak = (pct_start * *total_steps as f64 - 1.0).max(0.0) as u64;
                let mut v = vec![peak, total_steps.saturating_sub(1)];
                if *three_phase {
                    v.push((2.0 * pct_start * *total_steps as f64 - 2.0).max(0.0) as u64);
                }
                v
            }
            Self::InverseSqrt { warmup_steps } => vec![warmup_steps.saturating_sub(1)],
            Self::Sequential {
                schedules,
                milestones,
            } => {
                let mut v = milestones.clone();
                for (i, s) in schedules.iter().enumerate() {
                    let start = if i == 0 { 0 } else { milestones[i - 1] };
                    v.extend(
                        s.key_epochs(limit.saturating_sub(start))
                            .iter()
                            .map(|e| e.saturating_add(start)),
                    );
                }
                v
            }
        };
        out.retain(|&e| e < limit);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    /// Parses and validates a schedule from its JSON text (see [`Schedule::from_json`]).
    fn from_str(json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::InvalidOptions(format!("schedule is not valid JSON: {e}")))?;
        Self::from_json(&value)
    }
}

fn finite(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(invalid(name, value, "must be finite"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Schedule> {
        Schedule::from_json(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn step_and_multistep_boundaries() {
        let s = parse(r#"{"name":"step","step_size":7,"gamma":0.5}"#).unwrap();
        assert_eq!(s.eval(1.0, 6), 1.0);
        assert_eq!(s.eval(1.0, 7), 0.5);
        assert_eq!(s.eval(1.0, 14), 0.25);
        let m = parse(r#"{"name":"multistep","milestones":[5,12],"gamma":0.1}"#).unwrap();
        assert_eq!(m.eval(1.0, 4), 1.0);
        assert!((m.eval(1.0, 5) - 0.1).abs() < 1e-15);
        assert!((m.eval(1.0, 12) - 0.01).abs() < 1e-15);
    }

    #[test]
    fn cosine_hits_floor_at_t_max_and_rises_past_it() {
        let s = parse(r#"{"name":"cosine","t_max":10,"eta_min":0.1}"#).unwrap();
        assert_eq!(s.eval(1.0, 0), 1.0);
        assert!((s.eval(1.0, 10) - 0.1).abs() < 1e-15);
        assert!(s.eval(1.0, 12) > s.eval(1.0, 11));
        assert!((s.eval(1.0, 20) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn warm_restarts_restart_at_cycle_ends() {
        let s =
            parse(r#"{"name":"cosine_warm_restarts","t_0":4,"t_mult":2,"eta_min":0.0}"#).unwrap();
        assert_eq!(s.eval(1.0, 0), 1.0);
        assert_eq!(s.eval(1.0, 4), 1.0);
        assert_eq!(s.eval(1.0, 12), 1.0);
        assert!((s.eval(1.0, 8) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn sequential_counts_epochs_from_its_milestone() {
        let s = parse(
            r#"{"name":"sequential","milestones":[3],"schedules":[
                {"name":"linear","start_factor":0.25,"end_factor":1.0,"total_iters":3},
                {"name":"exponential","gamma":0.5}]}"#,
        )
        .unwrap();
        assert_eq!(s.eval(2.0, 0), 0.5);
        assert_eq!(s.eval(2.0, 3), 2.0);
        assert_eq!(s.eval(2.0, 5), 0.5);
    }

    #[test]
    fn invalid_schedules_name_the_value() {
        let e = parse(r#"{"name":"cosine","t_max":0,"eta_min":0.0}"#).unwrap_err();
        assert!(e.to_string().contains("t_max"), "{e}");
        let e = parse(r#"{"name":"step","step_size":3,"gamma":-1.0}"#).unwrap_err();
        assert!(e.to_string().contains("-1"), "{e}");
        let e = parse(r#"{"name":"multistep","milestones":[5,3],"gamma":0.1}"#).unwrap_err();
        assert!(e.to_string().contains("3 after 5"), "{e}");
        assert!(matches!(
            parse(r#"{"name":"warp"}"#),
            Err(Error::Unknown { .. })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let json = r#"{"name":"onecycle","max_lr":0.5,"total_steps":50,"pct_start":0.3,"anneal_strategy":"cos","div_factor":25.0,"final_div_factor":10000.0,"three_phase":false}"#;
        let s = parse(json).unwrap();
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(s, back);
    }
}
