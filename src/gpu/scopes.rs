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
    /// Waits for wgpu's answer: at once on native targets, at the device timeline's next
    /// turn in a browser.
    pub async fn check(self, what: impl FnOnce() -> String) -> Result<()> {
        // Both popped before either is awaited: in a browser other tasks run during the wait,
        // and a scope left open would catch (and misattribute) their errors, or be popped out
        // of order if they push one.
        let (memory, validation) = (self.memory.pop(), self.validation.pop());
        let (memory, validation) = (memory.await, validation.await);
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
