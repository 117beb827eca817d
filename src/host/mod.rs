//! What both backends keep on the host, written once: ids, the step scheduler, the gradient
//! stage's settings (clipping, loss scaling), checkpoints, and [`registry::Registry`], the
//! bookkeeping that [`crate::GpuOptimizer`] and [`crate::CpuOptimizer`] both embed. Each backend
//! keeps only its storage and its step.

pub mod checkpoint;
pub mod grad_stage;
pub mod loop_control;
pub(crate) mod registry;
pub mod scheduler;

/// Identifies a parameter group of one optimizer; group 0 is the one the optimizer was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(pub(crate) usize);

impl GroupId {
    /// The group's index, in the order groups were added.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Identifies a registered parameter, in registration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// The parameter's index, in the order parameters were registered.
    pub fn index(self) -> usize {
        self.0
    }
}
