//! The rooflines a step is measured against, on the same adapter in the same run: a
//! same-bytes streaming kernel, buffer-copy bandwidth, and the pass timer both use.

use std::time::Instant;

use crate::abi::bindings::{stream, update};
use crate::context::{GpuContext, read_bytes};
use crate::error::{Error, Result};
use serde::Serialize;

use crate::gpu::{groups_of, window_ranges_in};
use crate::kernel::{
    EXTENT_BYTES, GradAccess, Kernel, Storage, Width, compose_for, create_module_from,
    pipeline_layout, quantized_bytes, sized_compute_pipeline,
};
use crate::precision::{Dtype, Precision};
use crate::quant::{QMap, Quant};

pub(super) fn wait(ctx: &GpuContext) -> Result<()> {
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| Error::Readback(e.to_string()))
}

/// Times compute passes one at a time: with timestamp queries around each pass where the adapter
/// has them, else by the wall clock from recording to completion.
pub(super) struct PassTimer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    passes: u32,
    wall_ms: Vec<f64>,
}

impl PassTimer {
    pub fn new(ctx: &GpuContext, capacity: u32) -> Self {
        let queries = ctx
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("wgpu-optim bench"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * capacity,
                });
                let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-optim bench timestamps"),
                    size: u64::from(2 * capacity) * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (set, resolve)
            });
        Self {
            queries,
            passes: 0,
            wall_ms: Vec::new(),
        }
    }

    /// Records one pass with `record`, submits it alone and waits for it: one step at a time,
    /// as in training, which on software adapters also keeps the host off the cores the
    /// "device" runs on while a pass is timed.
    pub fn time(
        &mut self,
        ctx: &GpuContext,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> Result<()> {
        let t0 = Instant::now();
        let k = self.passes;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        record(
            &mut encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgpu-optim bench"),
                timestamp_writes: self.queries.as_ref().map(|(set, _)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(2 * k),
                        end_of_pass_write_index: Some(2 * k + 1),
                    }
                }),
            }),
        );
        ctx.queue.submit([encoder.finish()]);
        wait(ctx)?;
        self.wall_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        self.passes += 1;
        Ok(())
    }

    /// Milliseconds per timed pass, and how they were measured.
    pub fn finish(self, ctx: &GpuContext) -> Result<(Vec<f64>, &'static str)> {
        let Some((set, resolve)) = self.queries else {
            return Ok((self.wall_ms, "wall"));
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&set, 0..2 * self.passes, &resolve, 0);
        ctx.queue.submit([encoder.finish()]);
        let ticks: Vec<u64> =
            bytemuck::pod_collect_to_vec(&read_bytes(&ctx.device, &ctx.queue, &resolve)?);
        let period_ns = f64::from(ctx.queue.get_timestamp_period());
        let ms = ticks[..2 * self.passes as usize]
            .chunks_exact(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6)
            .collect();
        Ok((ms, "gpu-timestamps"))
    }
}

/// Buffer-copy bandwidth on `ctx`: GB/s of bytes read plus written by `copy_buffer_to_buffer`.
pub fn copy_bandwidth(ctx: &GpuContext, bytes: u64) -> Result<f64> {
    let make = |usage| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim bench copy"),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = make(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = make(wgpu::BufferUsages::COPY_DST);
    let copies = 8;
    let run = |n: usize| -> Result<f64> {
        let t0 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for _ in 0..n {
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        }
        ctx.queue.submit([encoder.finish()]);
        wait(ctx)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(1)?;
    let secs = run(copies)?;
    Ok(2.0 * bytes as f64 * copies as f64 / secs / 1e9)
}

/// How the streaming kernel is compiled and dispatched: its element width, workgroup size and
/// values per invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamShape {
    /// `vec4<f32>` or `f32` loads and stores.
    pub width: Width,
    /// Threads per workgroup (`WG`).
    pub workgroup_size: u32,
    /// Values (of `width`) per invocation (`VPI`).
    pub per_invocation: u32,
}

impl StreamShape {
    /// The scalar stream every measurement before vectorization was taken against: one `f32`
    /// per invocation, 256 per workgroup.
    pub const SCALAR: Self = Self {
        width: Width::Scalar,
        workgroup_size: 256,
        per_invocation: 1,
    };

    /// What the sweep tries: `vec4` at 64, 128 and 256 threads per workgroup, 1, 2, 4 and 8
    /// vectors per invocation.
    pub fn candidates() -> Vec<Self> {
        [64, 128, 256]
            .into_iter()
            .flat_map(|workgroup_size| {
                [1, 2, 4, 8].map(|per_invocation| Self {
                    width: Width::Vec4,
                    workgroup_size,
                    per_invocation,
                })
            })
            .collect()
    }
}

impl std::fmt::Display for StreamShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = match self.width {
            Width::Vec4 => "vec4",
            Width::Scalar => "f32",
        };
        write!(
            f,
            "{width} wg={} vpi={}",
            self.workgroup_size, self.per_invocation
        )
    }
}

/// The streaming kernel's buffers: a parameter, a gradient and up to three states, each a
/// copy of the same data (padded to whole vectors), shared by every [`Stream`] shape.
pub struct StreamBuffers {
    buffers: Vec<wgpu::Buffer>,
    states: u32,
    len: u64,
    precision: Precision,
}

impl StreamBuffers {
    /// Buffers for a step of `init.len()` parameters that keeps `states` state buffers, stored
    /// as `precision` says (quantized states as block records of as many bytes as the
    /// optimizer's: `init.len()` whole blocks).
    pub fn new(ctx: &GpuContext, states: u32, init: &[f32], precision: Precision) -> Self {
        let mut padded = init.to_vec();
        padded.resize(init.len().next_multiple_of(4), 0.0);
        let precision = precision.for_len(padded.len() as u64);
        let buffers = (0..stream::ALL.len() as u32)
            .map(|b| {
                let dtype = Self::dtype_of(precision, b);
                if let (Some(q), true) = (precision.quant, (2..2 + states).contains(&b)) {
                    // Zeros: the stream adds to words, it does not decode them.
                    ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("stream quantized state"),
                        size: quantized_bytes(q, padded.len() as u64),
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                } else if b < 2 + states {
                    ctx.upload_as("stream", dtype, &padded)
                } else {
                    ctx.upload("stream placeholder", &[0.0; 4])
                }
            })
            .collect();
        Self {
            buffers,
            states,
            len: padded.len() as u64,
            precision,
        }
    }

    /// The dtype of buffer `index` (param, grad, then the states).
    fn dtype_of(precision: Precision, index: u32) -> Dtype {
        match index {
            0 => precision.param,
            1 => precision.grad,
            _ => precision.state,
        }
    }
}

/// The streaming kernel's complete WGSL over tensors stored as `storage` says.
pub(crate) fn stream_wgsl(storage: &Storage) -> String {
    let maps = [QMap::Signed; 3];
    compose_for(&STREAM, &stream::STATE_NAMES, &maps, storage)
        + &stream_states(storage.precision.quant)
}

/// `fn stream_states(i, g)` for `shaders/stream.wgsl`: each state in use (`N_STATES`) read,
/// added to and written at vector `i`; a quantized state's code word (q4: every other vector's,
/// two vectors' codes sharing a word) and, once per block, its scale.
fn stream_states(quant: Option<Quant>) -> String {
    let mut out = String::from("fn stream_states(i: u32, g: V) {\n");
    if quant.is_some() {
        out.push_str(
            "    let lid = i % QWG;\n    let rec = i / QWG * QREC;\n    let d = bitcast<VU>(g);\n",
        );
    }
    for (k, name) in stream::STATE_NAMES.iter().enumerate() {
        let body = match quant {
            None => format!("store_{name}(i, load_{name}(i) + g);"),
            Some(q) => {
                let code = format!(
                    "{name}[rec + lid / {per}u] = {name}[rec + lid / {per}u] + d.x;",
                    per = 8 / q.bits()
                );
                let code = match q {
                    Quant::Q8 => code,
                    Quant::Q4 => {
                        format!("if ((lid & 1u) == 0u) {{\n            {code}\n        }}")
                    }
                };
                format!(
                    "{code}\n        if (lid == 0u) {{\n            {name}[rec + QCODE_WORDS] = {name}[rec + QCODE_WORDS] + d.y;\n        }}"
                )
            }
        };
        out.push_str(&format!(
            "    if (N_STATES > {k}u) {{\n        {body}\n    }}\n"
        ));
    }
    out.push_str("}\n");
    out
}

/// The same-bytes streaming kernel (`shaders/stream.wgsl`) in one [`StreamShape`], over
/// [`StreamBuffers`].
pub struct Stream {
    pipeline: wgpu::ComputePipeline,
    windows: Vec<(wgpu::BindGroup, (u32, u32))>,
}

const STREAM: Kernel = Kernel::new("stream", include_str!("../../../shaders/stream.wgsl"));

impl Stream {
    /// Builds the kernel in `shape` over `buffers`.
    pub fn new(ctx: &GpuContext, buffers: &StreamBuffers, shape: StreamShape) -> Self {
        let device = &ctx.device;
        let storage = Storage::f32(GradAccess::ReadOnly, shape.width).with(buffers.precision);
        let module = create_module_from(device, STREAM.name, stream_wgsl(&storage));
        let mut bindings = stream::ALL.to_vec();
        if storage.packed() {
            bindings.push(update::EXTENT);
        }
        let entries: Vec<_> = bindings
            .iter()
            .map(|b| b.layout_entry(EXTENT_BYTES))
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(STREAM.name),
            entries: &entries,
        });
        let pipeline = sized_compute_pipeline(
            device,
            STREAM.name,
            &pipeline_layout(device, STREAM.name, &[&layout]),
            (&module, "main"),
            shape.workgroup_size,
            &[
                ("N_STATES", f64::from(buffers.states)),
                ("VPI", f64::from(shape.per_invocation)),
            ],
        );
        // Windowed exactly as the optimizer binds a buffer of this length.
        let limits = device.limits();
        let lanes = shape.width.lanes();
        let per_group = u64::from(shape.workgroup_size * shape.per_invocation);
        let quant = buffers.precision.quant;
        let windows = window_ranges_in(buffers.len, &limits, quant)
            .into_iter()
            .map(|(start, n)| {
                let mut entries: Vec<_> = buffers
                    .buffers
                    .iter()
                    .zip(&stream::ALL)
                    .enumerate()
                    .map(|(k, (b, binding))| {
                        let dtype = StreamBuffers::dtype_of(buffers.precision, k as u32);
                        let state = k >= 2;
                        if let (Some(q), true, true) =
                            (quant, state, (k as u32) < 2 + buffers.states)
                        {
                            binding.entry(b, quantized_bytes(q, start), quantized_bytes(q, n))
                        } else if (k as u32) < 2 + buffers.states {
                            binding.entry(b, start * dtype.bytes(), dtype.buffer_bytes(n))
                        } else {
                            binding.whole(b)
                        }
                    })
                    .collect();
                // The V count of this window (the buffers hold whole vectors).
                let extent = storage.packed().then(|| {
                    let e = [(n / lanes) as u32, 0, 0, 0, 0, 0, 0, 0];
                    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("stream extent"),
                        size: EXTENT_BYTES,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    ctx.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&e));
                    buffer
                });
                if let Some(e) = &extent {
                    entries.push(update::EXTENT.whole(e));
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(STREAM.name),
                    layout: &layout,
                    entries: &entries,
                });
                let grid = groups_of(
                    n / lanes,
                    per_group,
                    limits.max_compute_workgroups_per_dimension,
                );
                (bind_group, grid)
            })
            .collect();
        Self { pipeline, windows }
    }

    /// Records one streaming pass (one dispatch per window) into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (bind_group, (x, y)) in &self.windows {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*x, *y, 1);
        }
    }
}

/// Times every [`StreamShape::candidates`] over `buffers` and returns the fastest, with each
/// candidate's median time in milliseconds. Candidates take turns, one pass each per round, for
/// `rounds` rounds after one untimed round, so drift in the adapter's speed reaches them all
/// alike.
pub fn sweep(
    ctx: &GpuContext,
    buffers: &StreamBuffers,
    rounds: usize,
) -> Result<(StreamShape, Vec<(StreamShape, f64)>)> {
    let candidates: Vec<(StreamShape, Stream)> = StreamShape::candidates()
        .into_iter()
        .map(|shape| (shape, Stream::new(ctx, buffers, shape)))
        .collect();
    let mut timers: Vec<PassTimer> = candidates
        .iter()
        .map(|_| PassTimer::new(ctx, rounds as u32 + 1))
        .collect();
    for _ in 0..=rounds {
        for ((_, stream), timer) in candidates.iter().zip(&mut timers) {
            timer.time(ctx, |pass| stream.record(pass))?;
        }
    }
    let mut timed = Vec::with_capacity(candidates.len());
    for ((shape, _), timer) in candidates.iter().zip(timers) {
        let (mut ms, _) = timer.finish(ctx)?;
        timed.push((*shape, super::median(&mut ms[1..])));
    }
    let best = timed
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(shape, _)| shape)
        .unwrap_or(StreamShape::SCALAR);
    Ok((best, timed))
}
