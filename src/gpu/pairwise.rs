//! Passes over two f32 arrays of one tensor's length, one value per invocation, window by
//! window: gradient accumulation (`shaders/accumulate.wgsl`, the caller's gradient and the
//! running sum) and the average of the weights' swap (`shaders/swap.wgsl`, the caller's
//! parameter and its average).

use crate::abi::bindings::Binding;
use crate::gpu::commands::Commands;
use crate::gpu::geometry::{groups_of, window_ranges};
use crate::kernel::{WORKGROUP_SIZE, compute_pipeline, create_module_from, pipeline_layout};

/// Values per workgroup, one per invocation.
const PER_WORKGROUP: u64 = WORKGROUP_SIZE as u64;

/// A pass's pipelines (one per set of constants) and, per registered tensor, each window's
/// bind group and grid.
#[derive(Debug)]
pub(super) struct PairPass {
    pipelines: Vec<wgpu::ComputePipeline>,
    layout: wgpu::BindGroupLayout,
    bindings: [Binding; 2],
    windows: Vec<Vec<(wgpu::BindGroup, (u32, u32))>>,
}

impl PairPass {
    /// The `main` entry of `wgsl` over `bindings`, one pipeline per entry of `constants`.
    pub fn new(
        device: &wgpu::Device,
        label: &str,
        wgsl: &str,
        bindings: [Binding; 2],
        constants: &[&[(&str, f64)]],
    ) -> Self {
        let module = create_module_from(device, label, wgsl.to_string());
        let entries = bindings.map(|b| b.layout_entry(0));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &entries,
        });
        let pipeline_layout = pipeline_layout(device, label, &[&layout]);
        let pipelines = constants
            .iter()
            .map(|c| compute_pipeline(device, label, &pipeline_layout, &module, "main", c))
            .collect();
        Self {
            pipelines,
            layout,
            bindings,
            windows: Vec::new(),
        }
    }

    /// Adds a tensor of `len` f32 values: `first` from byte `at` of its buffer (the caller's),
    /// `second` from byte 0 of the optimizer's own.
    pub fn push(
        &mut self,
        device: &wgpu::Device,
        (first, at): (&wgpu::Buffer, u64),
        second: &wgpu::Buffer,
        len: u64,
    ) {
        let windows = self.windows_for(device, (first, at), second, len);
        self.windows.push(windows);
    }

    /// Drops the last tensor (a registration that failed).
    pub fn pop(&mut self) {
        self.windows.pop();
    }

    /// Tensor `index`'s windows for a `first` buffer that moved to byte `at` of `buffer`,
    /// with its `second`.
    pub fn windows_for(
        &self,
        device: &wgpu::Device,
        (first, at): (&wgpu::Buffer, u64),
        second: &wgpu::Buffer,
        len: u64,
    ) -> Vec<(wgpu::BindGroup, (u32, u32))> {
        let limits = device.limits();
        window_ranges(len, &limits)
            .into_iter()
            .map(|(start, n)| {
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim pairwise"),
                    layout: &self.layout,
                    entries: &[
                        self.bindings[0].entry(first, at + start * 4, n * 4),
                        self.bindings[1].entry(second, start * 4, n * 4),
                    ],
                });
                let grid = groups_of(
                    n,
                    PER_WORKGROUP,
                    limits.max_compute_workgroups_per_dimension,
                );
                (bind_group, grid)
            })
            .collect()
    }

    /// Exchanges tensor `index`'s windows with `windows`.
    pub fn exchange(&mut self, index: usize, windows: &mut Vec<(wgpu::BindGroup, (u32, u32))>) {
        std::mem::swap(&mut self.windows[index], windows);
    }

    /// Drops tensor `index` (unregistered).
    pub fn remove(&mut self, index: usize) {
        self.windows.remove(index);
    }

    /// Records pipeline `index` over every window of every tensor `select`ed (by index).
    pub fn record(&self, pass: &mut impl Commands, index: usize, select: impl Fn(usize) -> bool) {
        pass.set_pipeline(&self.pipelines[index]);
        for (i, windows) in self.windows.iter().enumerate() {
            if !select(i) {
                continue;
            }
            for (bind_group, (x, y)) in windows {
                if *x > 0 {
                    pass.set_bind_group(0, bind_group, None);
                    pass.dispatch(*x, *y);
                }
            }
        }
    }

    /// Dispatches one recording over every tensor makes.
    pub fn dispatches(&self) -> usize {
        self.windows.iter().flatten().filter(|w| w.1.0 > 0).count()
    }
}
