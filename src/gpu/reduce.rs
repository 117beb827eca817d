//! The deterministic reduction from per-workgroup partial sums to per-tensor norms
//! (`shaders/reduce.wgsl`), shared by LAMB's and LARS's norms and the gradient stage.

use crate::abi::bindings::reduce;
use crate::gpu::commands::Commands;
use crate::gpu::geometry::NORM_STRIDE_BYTES;
use crate::kernel::{GradAccess, Kernel, Width, compute_pipeline, create_module, pipeline_layout};

const REDUCE: Kernel = Kernel::new("reduce", include_str!("../../shaders/reduce.wgsl"));

/// The reduction's pipeline and layout.
#[derive(Debug)]
pub(super) struct NormStage {
    layout: wgpu::BindGroupLayout,
    pub pipeline: wgpu::ComputePipeline,
}

/// Every tensor's partial sums and norms, and the reduction's bind group over them. Rebuilt
/// whenever a tensor is registered (never per step).
#[derive(Debug)]
pub(super) struct NormBuffers {
    pub partials: wgpu::Buffer,
    pub norms: wgpu::Buffer,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: (u32, u32),
}

impl NormStage {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = create_module(device, &REDUCE, GradAccess::ReadOnly, Width::Scalar);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(REDUCE.name),
            entries: &reduce::ALL.map(|b| b.layout_entry(0)),
        });
        let pipeline = compute_pipeline(
            device,
            REDUCE.name,
            &pipeline_layout(device, REDUCE.name, &[&layout]),
            &module,
            "reduce",
            &[("NORM_STRIDE", (NORM_STRIDE_BYTES / 4) as f64)],
        );
        Self { layout, pipeline }
    }

    /// Fresh partials (`partials_bytes`, zeroed), norms and table buffers for the tensors of
    /// `table`, and the reduction's bind group over them.
    pub fn buffers(
        &self,
        device: &wgpu::Device,
        table: &[[u32; 2]],
        partials_bytes: u64,
    ) -> NormBuffers {
        let tensors = table.len();
        let storage = |label, size| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let partials = storage("wgpu-optim partial sums", partials_bytes.max(8));
        let norms = storage(
            "wgpu-optim norms",
            (tensors as u64).max(1) * NORM_STRIDE_BYTES,
        );
        let table = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim tensor table"),
                contents: bytemuck::cast_slice(if table.is_empty() {
                    &[[0u32; 2]]
                } else {
                    table
                }),
                usage: wgpu::BufferUsages::STORAGE,
            },
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(REDUCE.name),
            layout: &self.layout,
            entries: &[
                reduce::TABLE.whole(&table),
                reduce::PARTIAL_SUMS.whole(&partials),
                reduce::NORMS.whole(&norms),
            ],
        });
        let max = device.limits().max_compute_workgroups_per_dimension;
        let x = (tensors as u32).min(max);
        NormBuffers {
            partials,
            norms,
            bind_group,
            workgroups: (x, (tensors as u32).div_ceil(x.max(1))),
        }
    }
}

impl NormBuffers {
    /// Records the reduction over every tensor's partials.
    pub fn record(&self, pass: &mut impl Commands, stage: &NormStage) {
        pass.set_pipeline(&stage.pipeline);
        pass.set_bind_group(0, &self.bind_group, None);
        pass.dispatch(self.workgroups.0, self.workgroups.1);
    }
}
