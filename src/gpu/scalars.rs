//! The per-step scalars on the device: immutable tables, each holding every group's scalars for
//! a run of consecutive steps, written when created.
//!
//! A step picks its entry with a dynamic offset. A table's data is in its buffer from the
//! moment it exists (`mapped_at_creation`), not at the next `queue.submit` as a
//! `queue.write_buffer` would be, and it is never written again. So any number of steps may be
//! recorded, into one encoder or many, before one submit, each reading its own scalars. A new
//! table is built when the steps run past the current one (every [`MAX_TABLE_STEPS`] steps
//! with few groups) or when what the scalars depend on changes (groups, schedule, step count,
//! loss scaling); a table still referenced by recorded commands lives until they finish, as
//! wgpu keeps every resource a command uses alive.

use crate::abi::bindings::update;
use crate::error::{Error, Result};
use crate::gpu::pipelines::{COUNTER_BYTES, scalars_size};
use crate::host::grad_stage::state_step;
use crate::host::scheduler::StepScheduler;
use crate::kernel::{EMA_WEIGHT_BYTES, SCALAR_CANDIDATES};
use crate::optim::Algorithm;

/// The most steps one table covers.
pub(super) const MAX_TABLE_STEPS: u64 = 256;
/// The fewest steps one table covers, however many groups there are.
const MIN_TABLE_STEPS: u64 = 1;
/// Bytes a table aims to stay within, which shortens its run of steps with many groups.
const TABLE_BUDGET: u64 = 4 << 20;

/// One table: steps `first..first + steps` of `groups` groups, `candidates` per step.
#[derive(Debug)]
struct Table {
    first: u64,
    steps: u64,
    groups: usize,
    candidates: usize,
    bind_group: wgpu::BindGroup,
}

/// The current table and how entries are laid out.
#[derive(Debug)]
pub(super) struct ScalarTables {
    /// Bytes between two entries (one step of one group), aligned for a dynamic offset.
    stride: u64,
    current: Option<Table>,
}

impl ScalarTables {
    pub fn new<O: Algorithm>(device: &wgpu::Device) -> Self {
        let align = u64::from(device.limits().min_uniform_buffer_offset_alignment);
        Self {
            stride: scalars_size::<O>().div_ceil(align) * align,
            current: None,
        }
    }

    /// Checks that a table for `groups` groups fits one buffer and dynamic offsets (u32).
    pub fn check_groups(&self, groups: usize, limits: &wgpu::Limits) -> Result<()> {
        let limit = limits.max_buffer_size.min(u64::from(u32::MAX));
        let bytes = (groups as u64).saturating_mul(self.stride);
        if bytes > limit {
            return Err(Error::InvalidOptions(format!(
                "{groups} parameter groups need {bytes} bytes of step scalars, past this device's {limit}"
            )));
        }
        Ok(())
    }

    /// Drops the current table: the scalars it holds no longer apply (new groups, schedule or
    /// step count). Commands already recorded keep theirs.
    pub fn invalidate(&mut self) {
        self.current = None;
    }

    /// The bind group holding step `t`'s scalars (`candidates` per step) and its offset for
    /// each group, building a table from `t` on if the current one does not cover it.
    pub fn at<O: Algorithm>(
        &mut self,
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        scheduler: &StepScheduler<O>,
        candidates: usize,
        t: u64,
    ) -> (&wgpu::BindGroup, impl Fn(usize) -> u32 + use<O>) {
        let groups = scheduler.groups().len();
        let fits = self.current.as_ref().is_some_and(|c| {
            c.groups == groups
                && c.candidates == candidates
                && (c.first..c.first + c.steps).contains(&t)
        });
        if !fits {
            self.current = None;
        }
        let stride = self.stride;
        let table = match &mut self.current {
            Some(table) => &*table,
            empty @ None => &*empty.insert(Self::build(
                device, layout, scheduler, stride, candidates, t,
            )),
        };
        let (first, steps) = (table.first, table.steps);
        let offset = move |g: usize| ((g as u64 * steps + (t - first)) * stride) as u32;
        (&table.bind_group, offset)
    }

    fn build<O: Algorithm>(
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        scheduler: &StepScheduler<O>,
        stride: u64,
        candidates: usize,
        first: u64,
    ) -> Table {
        let groups = scheduler.groups().len();
        let steps =
            (TABLE_BUDGET / (groups as u64 * stride)).clamp(MIN_TABLE_STEPS, MAX_TABLE_STEPS);
        let size = std::mem::size_of::<O::Scalars>();
        let mut data = vec![0u8; (groups as u64 * steps * stride) as usize];
        for g in 0..groups {
            for k in 0..steps {
                let t = first + k;
                let at = ((g as u64 * steps + k) * stride) as usize;
                // Candidate j: the scalars after j skipped steps (loss scaling picks one on
                // the device); without loss scaling only candidate 0 is read.
                for j in 0..candidates {
                    let s = scheduler.scalars_at(g, t, state_step(t, j as u64));
                    data[at + j * size..at + (j + 1) * size]
                        .copy_from_slice(bytemuck::bytes_of(&s));
                }
                if O::KERNEL.single_pass {
                    // The step's counter, after every candidate's slot, then each candidate's
                    // weight of the average's update.
                    let c = at + SCALAR_CANDIDATES as usize * size;
                    let counter = [t as u32, (t >> 32) as u32, 0, 0];
                    data[c..c + COUNTER_BYTES as usize]
                        .copy_from_slice(bytemuck::cast_slice(&counter));
                    let weights: [f32; SCALAR_CANDIDATES as usize] =
                        std::array::from_fn(|j| scheduler.ema_weight(state_step(t, j as u64)));
                    let w = c + COUNTER_BYTES as usize;
                    data[w..w + EMA_WEIGHT_BYTES as usize]
                        .copy_from_slice(bytemuck::cast_slice(&weights));
                }
            }
        }
        let buffer = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim scalars"),
                contents: &data,
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim scalars"),
            layout,
            entries: &[update::SCALARS.entry(&buffer, 0, scalars_size::<O>())],
        });
        Table {
            first,
            steps,
            groups,
            candidates,
            bind_group,
        }
    }
}
