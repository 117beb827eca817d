//! Changing parameter groups between steps: their hyperparameters, their learning rate,
//! whether they are frozen, and the metric-driven reduction of their rates.

use crate::error::Result;
use crate::gpu::GpuOptimizer;
use crate::gpu::scopes::ErrorScopes;
use crate::host::GroupId;
use crate::optim::Algorithm;
use crate::plateau::Plateau;

impl<O: Algorithm> GpuOptimizer<O> {
    /// Replaces group `group`'s hyperparameters from the next step on, as assigning
    /// `param_groups[i][key]` in PyTorch does. The step's scalars follow at once; a pipeline is
    /// built only when an option flag changes (say `nesterov` or `maximize`), once per flag set.
    ///
    /// The new options must keep the same states for the group's parameters (momentum 0 ↔ > 0,
    /// AMSGrad on ↔ off add or drop one): an [`crate::Error::InvalidOptions`] otherwise, and an
    /// invalid hyperparameter is the usual error. On any error nothing changes.
    pub async fn set_group_config_async(&mut self, group: GroupId, config: O) -> Result<()> {
        self.registry.check_group_config(group, &config)?;
        let scopes = ErrorScopes::push(&self.device);
        let pipelines = self.kernels.len();
        let old = self.registry.scheduler.replace_group(group.0, config);
        self.repipe();
        if let Err(e) = scopes
            .check(|| format!("{} pipelines for group {}", O::NAME, group.0))
            .await
        {
            self.registry.scheduler.replace_group(group.0, old);
            self.kernels.truncate(pipelines);
            self.repipe();
            return Err(e);
        }
        self.tables.invalidate();
        Ok(())
    }

    /// Sets group `group`'s base learning rate (the rate a schedule, if set, scales) from the
    /// next step on. With a schedule, PyTorch's schedulers that compute the rate from their
    /// base rates would overwrite an assignment at their next step; here it becomes the base.
    pub async fn set_lr_async(&mut self, group: GroupId, lr: f64) -> Result<()> {
        let config = self.registry.config_with_lr(group, lr)?;
        self.set_group_config_async(group, config).await
    }

    /// Freezes group `group` (`frozen`) or unfreezes it: a frozen group's updates are not
    /// dispatched, its parameters and state stay as they are, and the step count (the
    /// optimizer's) goes on. Clipping's global norm still sums its gradients.
    pub fn set_frozen(&mut self, group: GroupId, frozen: bool) -> Result<()> {
        self.registry.set_frozen(group, frozen)
    }

    /// Whether group `group` is frozen.
    pub fn is_frozen(&self, group: GroupId) -> bool {
        self.registry.is_frozen(group.0)
    }

    /// Sets (or, with `None`, removes) a metric-driven reduction of the groups' rates,
    /// `ReduceLROnPlateau`, from its initial state. Report the metric with
    /// [`GpuOptimizer::report_metric`] after a step; a reduction lowers each group's base rate.
    /// Schedule-Free, which keeps its rate for a run, refuses it.
    pub fn set_plateau(&mut self, plateau: Option<Plateau>) -> Result<()> {
        self.registry.scheduler.set_plateau(plateau)
    }

    /// Reports `metric` (say the validation loss) to the plateau reduction, as PyTorch's
    /// `scheduler.step(metric)`: the next step runs at the rates it decides. Returns whether it
    /// lowered a rate now. Decided on the host, with no readback; without a reduction set, an
    /// [`crate::Error::InvalidOptions`].
    pub fn report_metric(&mut self, metric: f64) -> Result<bool> {
        let lowered = !self.registry.report_metric(metric)?.is_empty();
        if lowered {
            self.tables.invalidate();
        }
        Ok(lowered)
    }
}
