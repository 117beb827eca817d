//! The gradient stage's passes on the device (`shaders/grad_norm.wgsl`): per-workgroup Σg² of
//! every gradient window, per-tensor norms by the shared reduction, then the global norm, the
//! clipping coefficient and GradScaler's update, into the gradient control every update reads.
//! `grad_stage.rs` turns them on and off for a `GpuOptimizer`.

use crate::abi::bindings::{grad_norm, update};
use crate::abi::uniforms::GradParams;
use crate::gpu::commands::Commands;
use crate::gpu::geometry::{NORM_STRIDE_BYTES, WindowGrids, partial_layout, window_ranges};
use crate::gpu::param::GpuParam;
use crate::gpu::reduce::{NormBuffers, NormStage};
use crate::host::grad_stage::GradStage;
use crate::kernel::{
    GradAccess, Kernel, NORM_ELEMS, Width, compute_pipeline, create_module, pipeline_layout,
};

const GRAD_NORM: Kernel = Kernel::new("grad_norm", include_str!("../../shaders/grad_norm.wgsl"));

/// The gradient control while no gradient stage runs: norm 0, coefficient 1, scale 1.
pub(super) const NO_CLIP: [f32; 8] = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];

/// The stage's pipelines, built once when clipping or loss scaling is first turned on.
#[derive(Debug)]
pub(super) struct GradPasses {
    /// `sumsq` over a gradient's whole vec4s, over its tail, and over an unaligned gradient,
    /// as the update kernels' forms.
    sumsq_vec4: wgpu::ComputePipeline,
    sumsq_tail: wgpu::ComputePipeline,
    sumsq_scalar: wgpu::ComputePipeline,
    sumsq_layout: wgpu::BindGroupLayout,
    finalize: wgpu::ComputePipeline,
    finalize_layout: wgpu::BindGroupLayout,
    reduce: NormStage,
}

/// The stage's buffers and bind groups for the registered gradients (rebuilt on registration,
/// never per step).
#[derive(Debug)]
pub(super) struct GradBuffers {
    norms: NormBuffers,
    /// Each gradient window's bind group, grids, and whether it is read as vec4s.
    windows: Vec<(wgpu::BindGroup, WindowGrids, Width)>,
    /// Each window's first byte in the partial sums, and each tensor's first window.
    partials_at: Vec<u64>,
    first_window: Vec<usize>,
    uniform: wgpu::Buffer,
    finalize: wgpu::BindGroup,
}

impl GradPasses {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = create_module(device, &GRAD_NORM, GradAccess::ReadOnly, Width::Scalar);
        let vec4 = create_module(device, &GRAD_NORM, GradAccess::ReadOnly, Width::Vec4);
        let params_size = std::mem::size_of::<GradParams>() as u64;
        let layout = |entries: &[crate::abi::bindings::Binding]| {
            let entries: Vec<_> = entries
                .iter()
                .map(|b| b.layout_entry(params_size))
                .collect();
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(GRAD_NORM.name),
                entries: &entries,
            })
        };
        let pipeline = |module, entry: &str, layout: &wgpu::BindGroupLayout, tail: bool| {
            compute_pipeline(
                device,
                GRAD_NORM.name,
                &pipeline_layout(device, GRAD_NORM.name, &[layout]),
                module,
                entry,
                &[
                    ("NORM_ELEMS", f64::from(NORM_ELEMS)),
                    ("TAIL", f64::from(u8::from(tail))),
                ],
            )
        };
        let sumsq_layout = layout(&grad_norm::SUMSQ);
        let finalize_layout = layout(&grad_norm::FINALIZE);
        Self {
            sumsq_vec4: pipeline(&vec4, "sumsq", &sumsq_layout, false),
            sumsq_tail: pipeline(&module, "sumsq", &sumsq_layout, true),
            sumsq_scalar: pipeline(&module, "sumsq", &sumsq_layout, false),
            finalize: pipeline(&module, "finalize", &finalize_layout, false),
            sumsq_layout,
            finalize_layout,
            reduce: NormStage::new(device),
        }
    }

    /// Buffers and bind groups of `stage` over every registered gradient, or `None` while
    /// nothing is registered.
    pub fn build(
        &self,
        device: &wgpu::Device,
        stage: &GradStage,
        params: &[GpuParam],
        control: &wgpu::Buffer,
        scaler: &wgpu::Buffer,
    ) -> Option<GradBuffers> {
        if params.is_empty() {
            return None;
        }
        let limits = device.limits();
        // Each gradient is read at its parameter's width (vec4 when both start aligned).
        let tensors = params.iter().map(|p| (p.len, p.width));
        let (table, starts, bytes) = partial_layout(tensors, &limits);
        let norms = self.reduce.buffers(device, &table, bytes);
        let scale = stage.loss_scale.unwrap_or_default();
        let uniform = GradParams {
            // An infinite max_norm only logs the norm: the coefficient stays 1, and no inf
            // reaches the shader (WGSL may assume none).
            max_norm: stage.max_norm.filter(|m| m.is_finite()).unwrap_or(0.0),
            tensors: params.len() as u32,
            norm_stride: (NORM_STRIDE_BYTES / 4) as u32,
            clip: u32::from(stage.max_norm.is_some_and(f32::is_finite)),
            unscale: u32::from(stage.loss_scale.is_some()),
            growth_factor: scale.growth_factor as f32,
            backoff_factor: scale.backoff_factor as f32,
            growth_interval: scale.growth_interval,
        };
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim gradient stage parameters"),
                contents: bytemuck::bytes_of(&uniform),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let (mut windows, mut partials_at, mut first_window) = (Vec::new(), Vec::new(), Vec::new());
        for (p, &start) in params.iter().zip(&starts) {
            first_window.push(windows.len());
            let mut at = start;
            for (first, n) in window_ranges(p.len, &limits) {
                let grids = WindowGrids::new(n, p.width, &limits);
                let bind_group =
                    self.window_bind_group(device, (&norms, &uniform, scaler), p, (first, n), at);
                windows.push((bind_group, grids, p.width));
                partials_at.push(at);
                at += grids.partials_size();
            }
        }
        let finalize = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim gradient norm"),
            layout: &self.finalize_layout,
            entries: &[
                grad_norm::TENSOR_NORMS.whole(&norms.norms),
                grad_norm::CONTROL.whole(control),
                grad_norm::PARAMS.whole(&uniform),
                grad_norm::SCALER.whole(scaler),
            ],
        });
        Some(GradBuffers {
            norms,
            windows,
            partials_at,
            first_window,
            uniform,
            finalize,
        })
    }

    /// The `sumsq` bind group of window `(first, n)` of `p`'s gradient, its partials from byte
    /// `at`.
    fn window_bind_group(
        &self,
        device: &wgpu::Device,
        (norms, uniform, scaler): (&NormBuffers, &wgpu::Buffer, &wgpu::Buffer),
        p: &GpuParam,
        (first, n): (u64, u64),
        at: u64,
    ) -> wgpu::BindGroup {
        let grids = WindowGrids::new(n, p.width, &device.limits());
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim gradient norm"),
            layout: &self.sumsq_layout,
            entries: &[
                update::GRAD.entry(&p.grad, p.grad_offset + first * 4, n * 4),
                // Exactly this window's slots, so the tail's is the last bound.
                update::PARTIALS.entry(&norms.partials, at, grids.partials_bytes()),
                grad_norm::PARAMS.whole(uniform),
                grad_norm::SCALER.whole(scaler),
            ],
        })
    }

    /// The `sumsq` bind groups of tensor `index` (`p`, with the gradient it holds now) in
    /// `built`, one per window, for a gradient that moved.
    pub fn tensor_bind_groups(
        &self,
        device: &wgpu::Device,
        built: &GradBuffers,
        scaler: &wgpu::Buffer,
        (index, p): (usize, &GpuParam),
    ) -> Vec<wgpu::BindGroup> {
        let first = built.first_window[index];
        window_ranges(p.len, &device.limits())
            .into_iter()
            .enumerate()
            .map(|(k, range)| {
                let at = built.partials_at[first + k];
                let shared = (&built.norms, &built.uniform, scaler);
                self.window_bind_group(device, shared, p, range, at)
            })
            .collect()
    }

    /// Records the stage: the global gradient norm and clipping coefficient (and loss
    /// scaling's check and update), before any update reads them.
    pub fn record(&self, pass: &mut impl Commands, built: &GradBuffers) {
        // Every window's body (vec4, or f32 for an unaligned gradient), then the tails.
        let mut current = None;
        for (bind_group, grids, width) in &built.windows {
            let (x, y) = grids.norms;
            if x == 0 {
                continue;
            }
            if current != Some(*width) {
                pass.set_pipeline(match width {
                    Width::Vec4 => &self.sumsq_vec4,
                    Width::Scalar => &self.sumsq_scalar,
                });
                current = Some(*width);
            }
            pass.set_bind_group(0, bind_group, None);
            pass.dispatch(x, y);
        }
        let mut tail = false;
        for (bind_group, _, _) in built.windows.iter().filter(|w| w.1.tail) {
            if !tail {
                pass.set_pipeline(&self.sumsq_tail);
                tail = true;
            }
            pass.set_bind_group(0, bind_group, None);
            pass.dispatch(1, 1);
        }
        built.norms.record(pass, &self.reduce);
        pass.set_pipeline(&self.finalize);
        pass.set_bind_group(0, &built.finalize, None);
        pass.dispatch(1, 1);
    }
}

impl GradBuffers {
    /// Exchanges tensor `index`'s window bind groups with `groups` (as many).
    pub fn exchange(&mut self, index: usize, groups: &mut [wgpu::BindGroup]) {
        let first = self.first_window[index];
        for (w, g) in self.windows[first..].iter_mut().zip(groups) {
            std::mem::swap(&mut w.0, g);
        }
    }

    /// Dispatches the stage records per step.
    pub fn dispatches(&self) -> usize {
        let sums: usize = self
            .windows
            .iter()
            .map(|(_, g, _)| usize::from(g.norms.0 > 0) + usize::from(g.tail))
            .sum();
        sums + 2
    }
}
