//! wgpu error scopes around everything that allocates or compiles, so a failure is a typed
//! error instead of wgpu's uncaptured-error panic.

use crate::error::{Error, Result};

/// Pushes validation and out-of-memory error scopes; [`ErrorScopes::check`] pops them.
pub(super) struct ErrorScopes {
    validation: wgpu::ErrorScopeGuard,
    memory: wgpu::ErrorScopeGuard,
}

impl ErrorScopes {
    pub fn push(device: &wgpu::Device) -> Self {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        Self { validation, memory }
    }

    /// The first error wgpu caught since [`ErrorScopes::push`], as [`Error::OutOfMemory`] or
    /// [`Error::Gpu`] about `what`.
    pub fn check(self, what: impl FnOnce() -> String) -> Result<()> {
        let memory = pollster::block_on(self.memory.pop());
        let validation = pollster::block_on(self.validation.pop());
        match (memory, validation) {
            (Some(e), _) => Err(Error::OutOfMemory {
                what: what(),
                message: e.to_string(),
            }),
            (None, Some(e)) => Err(Error::Gpu {
                what: what(),
                message: e.to_string(),
            }),
            (None, None) => Ok(()),
        }
    }
}
