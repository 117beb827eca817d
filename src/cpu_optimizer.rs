//! [`CpuOptimizer`]: the CPU reference behind the same API as the GPU optimizer.

use crate::checkpoint::{Checkpoint, SavedParam};
use crate::error::{Error, Result};
use crate::gpu::{LossScale, LossScaleState};
use crate::kernel::SCALAR_CANDIDATES;
use crate::optim::{Algorithm, MAX_STATES, States};
use crate::schedule::Schedule;
use crate::scheduler::{GroupId, StepScheduler};

/// Identifies a registered parameter, in registration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// The parameter's index, in the order parameters were registered.
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug, Clone)]
struct CpuParam {
    group: usize,
    states: [Vec<f32>; MAX_STATES],
}

/// An optimizer running the CPU reference ([`crate::cpu`]) on host slices.
///
/// It owns the optimizer state; the caller owns parameters and gradients and passes them to
/// [`CpuOptimizer::step`] in registration order.
#[derive(Debug, Clone)]
pub struct CpuOptimizer<O: Algorithm> {
    scheduler: StepScheduler<O>,
    params: Vec<CpuParam>,
    lens: Vec<usize>,
    threads: usize,
    max_grad_norm: Option<f32>,
    last_grad_norm: Option<f32>,
    loss_scale: Option<(LossScale, LossScaleState)>,
}

/// Parameters shorter than this are stepped on the calling thread whatever the thread count.
pub const PARALLEL_MIN_LEN: usize = 1 << 16;

/// One step of `config` over one parameter, split into `threads` contiguous chunks stepped
/// concurrently. Every update is elementwise, so the result is bit-identical to one call.
fn step_chunked<O: Algorithm>(
    config: &O,
    s: &O::Scalars,
    param: &mut [f32],
    grad: &[f32],
    states: States<'_>,
    threads: usize,
) {
    // Per-tensor norms need the whole tensor in one call.
    if threads <= 1 || param.len() < PARALLEL_MIN_LEN || O::NORMS {
        config.cpu_step(s, param, grad, states);
        return;
    }
    let chunk = param.len().div_ceil(threads);
    let mut state_chunks = states.map(|v| {
        let empty = v.is_empty();
        (empty, v.chunks_mut(chunk))
    });
    std::thread::scope(|scope| {
        for (p, g) in param.chunks_mut(chunk).zip(grad.chunks(chunk)) {
            let mine: States<'_> = std::array::from_fn(|k| {
                let (empty, it) = &mut state_chunks[k];
                if *empty {
                    &mut []
                } else {
                    it.next().unwrap_or_default()
                }
            });
            scope.spawn(move || config.cpu_step(s, p, g, mine));
        }
    });
}

impl<O: Algorithm> CpuOptimizer<O> {
    /// An optimizer whose first parameter group (group 0) uses `config`.
    pub fn new(config: O) -> Result<Self> {
        Ok(Self {
            scheduler: StepScheduler::new(config)?,
            params: Vec::new(),
            lens: Vec::new(),
            threads: 1,
            max_grad_norm: None,
            last_grad_norm: None,
            loss_scale: None,
        })
    }

    /// Group 0, the group the optimizer was built with.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// Adds a parameter group with its own hyperparameters.
    pub fn add_param_group(&mut self, config: O) -> Result<GroupId> {
        self.scheduler.add_group(config)
    }

    /// Sets the learning-rate schedule (see [`StepScheduler::set_schedule`]).
    pub fn set_schedule(&mut self, schedule: Option<Schedule>) -> Result<()> {
        self.scheduler.set_schedule(schedule)
    }

    /// Spreads each large parameter's step over `threads` threads (1, the default, steps on the
    /// calling thread). Results are bit-identical whatever the count.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The step scheduler: step count, groups and learning rates.
    pub fn scheduler(&self) -> &StepScheduler<O> {
        &self.scheduler
    }

    /// Registers a parameter of `len` elements in `group`, allocating its state.
    pub fn register(&mut self, group: GroupId, len: usize) -> Result<ParamId> {
        let config = self.scheduler.group(group)?;
        if len == 0 {
            return Err(Error::BadBufferSize {
                which: "param",
                size: 0,
            });
        }
        let states = std::array::from_fn(|slot| {
            if slot < O::STATE_NAMES.len() && config.uses_state(slot) {
                vec![config.initial_state(slot); len]
            } else {
                Vec::new()
            }
        });
        self.params.push(CpuParam {
            group: group.0,
            states,
        });
        self.lens.push(len);
        Ok(ParamId(self.params.len() - 1))
    }

    /// One optimizer step over every registered parameter.
    ///
    /// `params[i]` and `grads[i]` belong to the `i`-th registered parameter. Shapes are checked
    /// before anything is written, so a bad call changes nothing.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) -> Result<()> {
        if params.len() != self.params.len() || grads.len() != self.params.len() {
            return Err(Error::StepShape(format!(
                "{} parameters are registered, got {} parameters and {} gradients",
                self.params.len(),
                params.len(),
                grads.len()
            )));
        }
        for (i, &len) in self.lens.iter().enumerate() {
            if params[i].len() != len || grads[i].len() != len {
                return Err(Error::StepShape(format!(
                    "parameter {i} has {len} elements, got a parameter of {} and a gradient of {}",
                    params[i].len(),
                    grads[i].len()
                )));
            }
        }
        // Loss scaling and global-norm clipping as the GPU's grad_norm.wgsl: unscale by
        // 1 / scale, skip the step on any inf or NaN, then per-tensor norms, the norm of those,
        // and every gradient times min(1, max_norm / (norm + 1e-6)).
        let inv = self.loss_scale.map(|(_, st)| 1.0 / st.scale);
        let mut adjusted: Option<Vec<Vec<f32>>> = inv.map(|inv| {
            grads
                .iter()
                .map(|g| g.iter().map(|&x| x * inv).collect())
                .collect()
        });
        let found_inf = adjusted
            .as_ref()
            .is_some_and(|a| a.iter().flatten().any(|x| !x.is_finite()));
        if let Some(max_norm) = self.max_grad_norm {
            let total = {
                let source: Vec<&[f32]> = match &adjusted {
                    Some(a) => a.iter().map(Vec::as_slice).collect(),
                    None => grads.to_vec(),
                };
                source
                    .iter()
                    .map(|g| {
                        let n = g
                            .iter()
                            .filter(|x| x.is_finite())
                            .map(|&x| f64::from(x) * f64::from(x))
                            .sum::<f64>();
                        let n = n.sqrt() as f32;
                        f64::from(n) * f64::from(n)
                    })
                    .sum::<f64>()
                    .sqrt() as f32
            };
            self.last_grad_norm = Some(total);
            let coef = (max_norm / (total + 1e-6)).min(1.0);
            let base = adjusted
                .take()
                .unwrap_or_else(|| grads.iter().map(|g| g.to_vec()).collect());
            adjusted = Some(
                base.iter()
                    .map(|g| g.iter().map(|&x| x * coef).collect())
                    .collect(),
            );
        }
        let t = self.scheduler.advance();
        let mut skipped = 0;
        if let Some((ls, st)) = &mut self.loss_scale {
            // torch._amp_update_scale_.
            if found_inf {
                st.scale *= ls.backoff_factor as f32;
                st.growth_tracker = 0;
                st.skipped_steps += 1;
            } else {
                st.growth_tracker += 1;
                if st.growth_tracker >= u64::from(ls.growth_interval) {
                    st.scale *= ls.growth_factor as f32;
                    st.growth_tracker = 0;
                }
            }
            st.last_step_skipped = found_inf;
            if found_inf {
                return Ok(());
            }
            // As the kernels: at most SCALAR_CANDIDATES - 1 skips are told apart.
            skipped = st.skipped_steps.min(u64::from(SCALAR_CANDIDATES) - 1);
        }
        let state_step = t.saturating_sub(skipped).max(1);
        let groups = self.scheduler.groups();
        for (i, p) in self.params.iter_mut().enumerate() {
            let s = self.scheduler.scalars_at(p.group, t, state_step);
            let states = p.states.each_mut().map(|v| v.as_mut_slice());
            let grad = adjusted.as_ref().map_or(grads[i], |c| c[i].as_slice());
            step_chunked(&groups[p.group], &s, params[i], grad, states, self.threads);
        }
        Ok(())
    }

    /// Turns global-norm gradient clipping on with `max_norm` or off with `None`, as
    /// [`crate::GpuOptimizer::set_max_grad_norm`].
    pub fn set_max_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        if let Some(m) = max_norm
            && !(m.is_finite() && m > 0.0)
        {
            return Err(Error::InvalidHyperparameter {
                name: "max_norm",
                value: m,
                reason: "must be finite and > 0",
            });
        }
        self.max_grad_norm = max_norm.map(|m| m as f32);
        Ok(())
    }

    /// Turns loss scaling on or off, as [`crate::GpuOptimizer::set_loss_scale`].
    pub fn set_loss_scale(&mut self, scale: Option<LossScale>) -> Result<()> {
        if let Some(s) = &scale {
            s.validate()?;
        }
        self.loss_scale = scale.map(|s| {
            let state = LossScaleState {
                scale: s.init_scale as f32,
                growth_tracker: 0,
                skipped_steps: 0,
                last_step_skipped: false,
            };
            (s, state)
        });
        Ok(())
    }

    /// The loss-scaling state, when loss scaling is on.
    pub fn loss_scale(&self) -> Option<LossScaleState> {
        self.loss_scale.map(|(_, st)| st)
    }

    /// The global gradient norm of the last clipped step.
    pub fn last_grad_norm(&self) -> Option<f32> {
        self.last_grad_norm
    }

    /// All optimizer state: step, groups, schedule, and every parameter's state buffers.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let params = self
            .params
            .iter()
            .zip(&self.lens)
            .map(|(p, &len)| SavedParam {
                group: p.group,
                len,
                states: (0..O::STATE_NAMES.len())
                    .filter(|&s| !p.states[s].is_empty())
                    .map(|s| (O::STATE_NAMES[s].to_string(), p.states[s].clone()))
                    .collect(),
            })
            .collect();
        Checkpoint::capture(&self.scheduler, params)
    }

    /// Saves [`CpuOptimizer::checkpoint`] to `path` (through a temporary file and a rename).
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        self.checkpoint()?.save(path)
    }

    /// Restores a checkpoint taken from an optimizer with the same groups (and option flags) and
    /// the same parameters registered in the same order, on either backend. Everything is
    /// checked first: on error the optimizer is exactly as it was.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let registered: Vec<(usize, usize)> = self
            .params
            .iter()
            .zip(&self.lens)
            .map(|(p, &l)| (p.group, l))
            .collect();
        let checkpoint = checkpoint.clone().in_binding_order::<O>();
        let groups = checkpoint.check_fits(self.scheduler.groups(), &registered)?;
        for (p, saved) in self.params.iter_mut().zip(checkpoint.params) {
            for (name, data) in saved.states {
                if let Some(slot) = O::STATE_NAMES.iter().position(|&n| n == name) {
                    p.states[slot] = data;
                }
            }
        }
        self.scheduler
            .restore(groups, checkpoint.schedule, checkpoint.step);
        Ok(())
    }

    /// Reads a checkpoint file and [`CpuOptimizer::restore`]s it.
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<()> {
        self.restore(&Checkpoint::load(path)?)
    }

    /// State `name` (PyTorch's key, e.g. `exp_avg`) of parameter `param`, if these options keep it.
    pub fn state(&self, param: ParamId, name: &str) -> Option<&[f32]> {
        let slot = O::STATE_NAMES.iter().position(|&n| n == name)?;
        let v = &self.params.get(param.0)?.states[slot];
        (!v.is_empty()).then_some(v.as_slice())
    }
}
