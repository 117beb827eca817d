//! Where a step's commands go: a compute pass, or a [`DirectCalls`] list that replays the same
//! wgpu calls with none of this crate's logic in between (the bench's measure of wgpu's own
//! recording cost).

/// The compute-pass calls a step makes.
pub(crate) trait Commands {
    fn set_pipeline(&mut self, pipeline: &wgpu::ComputePipeline);
    /// Binds `group` at `index`, with at most one dynamic offset.
    fn set_bind_group(&mut self, index: u32, group: &wgpu::BindGroup, offset: Option<u32>);
    fn dispatch(&mut self, x: u32, y: u32);
}

impl Commands for wgpu::ComputePass<'_> {
    fn set_pipeline(&mut self, pipeline: &wgpu::ComputePipeline) {
        wgpu::ComputePass::set_pipeline(self, pipeline);
    }

    fn set_bind_group(&mut self, index: u32, group: &wgpu::BindGroup, offset: Option<u32>) {
        match offset {
            Some(o) => wgpu::ComputePass::set_bind_group(self, index, group, &[o]),
            None => wgpu::ComputePass::set_bind_group(self, index, group, &[]),
        }
    }

    fn dispatch(&mut self, x: u32, y: u32) {
        self.dispatch_workgroups(x, y, 1);
    }
}

#[derive(Debug)]
enum Call {
    Pipeline(wgpu::ComputePipeline),
    BindGroup(u32, wgpu::BindGroup, Option<u32>),
    Dispatch(u32, u32),
}

/// One step's wgpu calls, captured by `GpuOptimizer::capture_step`, for replaying into other
/// passes directly: what wgpu alone costs to record the same step.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct DirectCalls {
    calls: Vec<Call>,
}

impl DirectCalls {
    /// Makes the captured calls on `pass`, in order.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for call in &self.calls {
            match call {
                Call::Pipeline(p) => Commands::set_pipeline(pass, p),
                Call::BindGroup(i, g, o) => Commands::set_bind_group(pass, *i, g, *o),
                Call::Dispatch(x, y) => pass.dispatch(*x, *y),
            }
        }
    }
}

impl Commands for DirectCalls {
    fn set_pipeline(&mut self, pipeline: &wgpu::ComputePipeline) {
        self.calls.push(Call::Pipeline(pipeline.clone()));
    }

    fn set_bind_group(&mut self, index: u32, group: &wgpu::BindGroup, offset: Option<u32>) {
        self.calls
            .push(Call::BindGroup(index, group.clone(), offset));
    }

    fn dispatch(&mut self, x: u32, y: u32) {
        self.calls.push(Call::Dispatch(x, y));
    }
}
