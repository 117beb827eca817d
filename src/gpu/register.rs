//! Registration: checking a caller's buffers, allocating a parameter's state, and binding its
//! windows. Everything is built inside wgpu error scopes and committed only when wgpu accepted
//! all of it, so a failed registration (out of memory, a buffer from another device) is a typed
//! error that leaves the optimizer as it was.

use std::ops::Range;

use crate::abi::bindings::update;
use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::gpu::factors::{FactorDims, Factors};
use crate::gpu::geometry::{
    NORM_STRIDE_BYTES, WindowGrids, partial_layout, window_ranges, window_ranges_in,
};
use crate::gpu::muon::{MatrixOf, NsBatches, check_matrix};
use crate::gpu::param::{GpuParam, Matrix, Window};
use crate::gpu::reduce::NormBuffers;
use crate::gpu::scopes::ErrorScopes;
use crate::host::{GroupId, ParamId};
use crate::kernel::{EXTENT_BYTES, GradAccess, Storage, Width, extent, quantized_bytes};
use crate::optim::{Algorithm, MAX_STATES, NewtonSchulz};
use crate::precision::Precision;

/// A registration's parameter, gradient and (master weights) copy slices.
type Slices<'a> = (
    wgpu::BufferSlice<'a>,
    wgpu::BufferSlice<'a>,
    Option<wgpu::BufferSlice<'a>>,
);

/// What a registration changes, built before anything is committed.
pub(super) struct Rebuilt {
    windows: Vec<Vec<Window>>,
    norms: Option<NormBuffers>,
    ns: Option<NsBatches>,
}

impl<O: Algorithm> GpuOptimizer<O> {
    pub(super) fn check_slice(
        &self,
        which: &'static str,
        slice: &wgpu::BufferSlice<'_>,
    ) -> Result<()> {
        let buffer = slice.buffer();
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::MissingStorageUsage {
                which,
                usage: buffer.usage(),
            });
        }
        let size = slice.size();
        if size == 0 || !size.is_multiple_of(4) {
            return Err(Error::BadBufferSize { which, size });
        }
        let alignment = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        if !slice.offset().is_multiple_of(alignment) {
            return Err(Error::MisalignedSlice {
                which,
                offset: slice.offset(),
                alignment,
            });
        }
        Ok(())
    }

    /// Registers a parameter buffer and its gradient buffer in `group`, and allocates the
    /// parameter's optimizer state (zeros, or the optimizer's initial value).
    ///
    /// Both buffers hold f32 values (see [`GpuOptimizer::register_typed`] for bf16 and f16), need
    /// `STORAGE` usage and must have the same size; a buffer
    /// may be registered as a parameter only once, and never as its own gradient. Nothing is
    /// allocated unless every check passes. See [`GpuOptimizer::register_slices`] for parts of
    /// buffers.
    pub async fn register_async(
        &mut self,
        group: GroupId,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Result<ParamId> {
        self.register_slices_async(group, param.slice(..), grad.slice(..))
            .await
    }

    /// Registers a range of a parameter buffer and the matching range of a gradient buffer,
    /// with optimizer state for that range only: a tensor inside a caller's arena, or the shard
    /// of a flat buffer that this data-parallel worker owns (ZeRO-1).
    ///
    /// Both slices hold the same whole number of f32 values and start at a multiple of the
    /// device's `min_storage_buffer_offset_alignment` (256 bytes on most adapters). A range of
    /// a buffer may be registered as a parameter only once (disjoint ranges of one buffer may
    /// each be), and a gradient may not overlap its parameter. A parameter and its gradient may
    /// be carved from one buffer (a framework's memory pool): the kernel then binds the
    /// gradient read-write, as wgpu requires, with the same results. Slices larger than the
    /// device's `max_storage_buffer_binding_size` are bound in windows, one dispatch each.
    /// A parameter whose slice and gradient slice both start 16-byte aligned (always, where
    /// the alignment above is 16 or more) is stepped by the `vec4<f32>` kernels, plus a
    /// one-workgroup `f32` tail for a length not a multiple of 4; any other by the `f32`
    /// kernels, with the same results (bit for bit for the elementwise updates; LAMB's, LARS's
    /// and clipping's norms are summed in another order, so to rounding).
    ///
    /// Allocation happens inside wgpu error scopes: running out of device memory, or a buffer
    /// from another device, is an error and leaves the optimizer as it was.
    pub async fn register_slices_async(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
    ) -> Result<ParamId> {
        self.register_inner(group, (param, grad, None), None, Precision::F32)
            .await
    }

    /// As [`GpuOptimizer::register_slices`], for a parameter of `shape` (row-major): for
    /// optimizers whose state follows the shape, as Adafactor's factored moments of a matrix
    /// (others keep the same state either way). The shape's product must be the slice's length;
    /// an Adafactor tensor must fit one storage binding. [`crate::Muon`] steps matrices only,
    /// each registered with its 2-D shape (else an [`Error::UnsupportedShape`]) and fitting one
    /// storage binding.
    pub async fn register_with_shape_async(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
        shape: &[usize],
    ) -> Result<ParamId> {
        self.register_inner(group, (param, grad, None), Some(shape), Precision::F32)
            .await
    }

    /// As [`GpuOptimizer::register_with_shape`], for a tensor whose parameter, gradient and
    /// state are stored as `precision` says: f32, bf16 or f16 values, 16-bit ones two per
    /// 4-byte word (element `2k` in the low half of word `k`). Each slice holds exactly the
    /// shape's values in its dtype, rounded up to whole words (an odd count leaves the last
    /// word's high half, which is never written); else an [`Error::DtypeSize`].
    ///
    /// Each step loads every value as f32, computes in f32 and rounds each result to its dtype
    /// once, to nearest even, when storing it ([`crate::precision`]), as PyTorch's fused
    /// kernels do. 16-bit tensors are stepped by the vec4 kernels whatever their alignment
    /// (the tail's few values by one invocation, since two share a word). Only the elementwise
    /// optimizers take 16-bit tensors, and only without clipping or loss scaling on 16-bit
    /// gradients: an [`Error::UnsupportedPrecision`] otherwise.
    ///
    /// With [`Precision::quant`] (Adam, AdamW, Lion, SGD), the moments of a tensor of 4096
    /// values or more in whole blocks are held as codes and block scales ([`crate::quant`]),
    /// stepped by one workgroup per few blocks; both slices must then start 16-byte aligned.
    /// [`GpuOptimizer::read_quantized_state`] reads them back as stored.
    pub async fn register_typed_async(
        &mut self,
        group: GroupId,
        param: wgpu::BufferSlice<'_>,
        grad: wgpu::BufferSlice<'_>,
        shape: &[usize],
        precision: Precision,
    ) -> Result<ParamId> {
        self.register_inner(group, (param, grad, None), Some(shape), precision)
            .await
    }

    /// Registers f32 master weights with a 16-bit copy the step writes: as
    /// [`GpuOptimizer::register_typed`] with `precision.copy` set (see [`Precision::with_copy`]),
    /// where each step also stores the updated parameter, rounded to nearest even, into `copy`
    /// (a slice of exactly the shape's values in that dtype), in the same kernel: no extra
    /// pass, for the next forward pass to read, as apex's and DeepSpeed's mixed-precision
    /// optimizers do. The parameter must be f32 and the copy bf16 or f16; the copy may not
    /// overlap the parameter or its gradient.
    pub async fn register_master_async(
        &mut self,
        group: GroupId,
        (param, grad, copy): (
            wgpu::BufferSlice<'_>,
            wgpu::BufferSlice<'_>,
            wgpu::BufferSlice<'_>,
        ),
        shape: &[usize],
        precision: Precision,
    ) -> Result<ParamId> {
        self.register_inner(group, (param, grad, Some(copy)), Some(shape), precision)
            .await
    }

    async fn register_inner(
        &mut self,
        group: GroupId,
        (param, grad, copy): Slices<'_>,
        shape: Option<&[usize]>,
        precision: Precision,
    ) -> Result<ParamId> {
        if precision.copy.is_some() != copy.is_some() {
            return Err(Error::InvalidOptions(format!(
                "a tensor of {precision} is registered {} a copy slice (register_master takes one)",
                if copy.is_some() { "with" } else { "without" }
            )));
        }
        let len = match shape.filter(|_| !precision.is_f32()) {
            // 16-bit sizes round up to whole words: the shape says how many values there are.
            Some(s) => {
                let numel = s.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
                let len = numel.ok_or_else(|| Error::ShapeMismatch {
                    shape: s.to_vec(),
                    len: u64::MAX,
                })?;
                let copies = copy.iter().zip(precision.copy).map(|(c, d)| ("copy", c, d));
                let all = [
                    ("param", &param, precision.param),
                    ("grad", &grad, precision.grad),
                ];
                for (which, slice, dtype) in all.into_iter().chain(copies) {
                    let expected = dtype.buffer_bytes(len);
                    if slice.size() != expected {
                        return Err(Error::DtypeSize {
                            which,
                            dtype,
                            len,
                            size: slice.size(),
                            expected,
                        });
                    }
                }
                len
            }
            None => param.size() / 4,
        };
        let (config, shape) = self.registry.check_register(group, len, shape, precision)?;
        let config = config.clone();
        let precision = precision.for_len(len);
        self.check_slice("param", &param)?;
        self.check_slice("grad", &grad)?;
        if let Some(c) = &copy {
            self.check_slice("copy", c)?;
        }
        if precision.is_f32() && param.size() != grad.size() {
            return Err(Error::LengthMismatch {
                param: param.size() / 4,
                grad: grad.size() / 4,
            });
        }
        let range = |s: &wgpu::BufferSlice<'_>| s.offset()..s.offset() + s.size();
        let overlaps = |a: &Range<u64>, b: &Range<u64>| a.start < b.end && b.start < a.end;
        let param_range = range(&param);
        // The gradient is bound read-write when a buffer it is in is also written: its
        // parameter's, or its copy's (wgpu forbids one buffer bound read-only and read-write).
        let shared = param.buffer() == grad.buffer()
            || copy.as_ref().is_some_and(|c| c.buffer() == grad.buffer());
        if param.buffer() == grad.buffer() && overlaps(&param_range, &range(&grad)) {
            return Err(Error::AliasedBuffer(format!(
                "gradient bytes {:?} overlap their parameter's bytes {param_range:?} in the same buffer",
                range(&grad)
            )));
        }
        if let Some(c) = &copy {
            let own = [(&param, param_range.clone()), (&grad, range(&grad))];
            if let Some((_, r)) = own
                .iter()
                .find(|(s, r)| s.buffer() == c.buffer() && overlaps(r, &range(c)))
            {
                return Err(Error::AliasedBuffer(format!(
                    "copy bytes {:?} overlap bytes {r:?} of its parameter or gradient",
                    range(c)
                )));
            }
        }
        // Every byte a step writes belongs to one tensor: the new parameter and copy may not
        // overlap a registered parameter or copy.
        fn written(p: &GpuParam) -> impl Iterator<Item = (&wgpu::Buffer, Range<u64>)> {
            let copy = p.copy.as_ref().map(|(b, r)| (b, r.clone()));
            std::iter::once((&p.param, p.param_range.clone())).chain(copy)
        }
        let mine = std::iter::once(("parameter", &param)).chain(copy.iter().map(|c| ("copy", c)));
        for (what, slice) in mine {
            let r = range(slice);
            if let Some(i) = self
                .params
                .iter()
                .position(|p| written(p).any(|(b, w)| b == slice.buffer() && overlaps(&w, &r)))
            {
                return Err(Error::AliasedBuffer(format!(
                    "{what} bytes {r:?} overlap bytes that parameter {i}, already registered, writes"
                )));
            }
        }
        let factors = if O::FACTORED {
            // Factored state is indexed over the whole tensor: it must be one window (the
            // window is the binding limit rounded down to whole aligned vectors).
            let limits = self.device.limits();
            if window_ranges(param.size() / 4, &limits).len() != 1 {
                return Err(Error::BufferTooLarge {
                    which: "param",
                    size: param.size(),
                    limit: limits.max_storage_buffer_binding_size,
                });
            }
            Some(FactorDims::of(&shape)?)
        } else {
            None
        };
        let matrix = match (&self.ns_stage, shape.as_slice()) {
            (Some(stage), &[rows, cols]) => {
                // The iteration binds the whole matrix: one window.
                let limits = self.device.limits();
                if window_ranges(param.size() / 4, &limits).len() != 1 {
                    return Err(Error::BufferTooLarge {
                        which: "param",
                        size: param.size(),
                        limit: limits.max_storage_buffer_binding_size,
                    });
                }
                let index = self.params.len();
                check_matrix(O::NAME, index, [rows, cols], &stage.tiles, &limits)?;
                Some(MatrixOf {
                    group: group.0,
                    rows,
                    cols,
                })
            }
            _ => None,
        };
        let access = if shared {
            GradAccess::Shared
        } else {
            GradAccess::ReadOnly
        };
        // The vec4 kernels need both the parameter's and the gradient's bytes 16-byte aligned
        // (states are the optimizer's own, at offset 0); the f32 kernels take any offset.
        let aligned = param.offset().is_multiple_of(16) && grad.offset().is_multiple_of(16);
        // 16-bit values are stepped by the vec4 kernels only: the f32 kernels' invocations would
        // share words (slices of them always start word aligned, 4 values to 8 bytes).
        if precision.quant.is_some() && !aligned {
            return Err(Error::UnsupportedPrecision {
                optimizer: O::NAME,
                precision,
                reason: "quantized state is stepped by the vec4 kernels: the parameter and \
                         gradient slices must start 16-byte aligned",
            });
        }
        let width = if (aligned && !self.scalar_only) || !precision.is_f32() {
            Width::Vec4
        } else {
            Width::Scalar
        };
        let scopes = ErrorScopes::push(&self.device);
        let pipelines_before = self.kernels.len();
        let (pipeline, tail) = self.pipelines_for(&config, (access, precision), width, len);
        let state_len = |slot| config.state_len(slot, &shape);
        // Quantized states hold block records (codes, then the scale) in place of values.
        let stored_bytes = |n| match precision.quant {
            Some(q) => quantized_bytes(q, n),
            None => precision.state.buffer_bytes(n),
        };
        let state_bytes: u64 = (0..MAX_STATES).map(|s| stored_bytes(state_len(s))).sum();
        // The code maps, made by the first registration that needs them (and dropped again if
        // it fails, so a later one makes them anew).
        let mut made_qmaps = None;
        if let Some(q) = precision.quant {
            let qmaps = &mut self.qmaps[q as usize];
            if qmaps.is_none() {
                made_qmaps = Some(q as usize);
                let contents = q.uniform_bytes();
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-optim qmaps"),
                    size: contents.len() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.queue.write_buffer(&buffer, 0, &contents);
                *qmaps = Some(buffer);
            }
        }
        let states: [Option<wgpu::Buffer>; MAX_STATES] = std::array::from_fn(|slot| {
            (state_len(slot) > 0).then(|| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(O::STATE_NAMES[slot]),
                    size: stored_bytes(state_len(slot)),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
        });
        let windows = window_ranges_in(len, &self.device.limits(), precision.quant);
        let extents = self.extent_buffers(precision, &windows);
        self.params.push(GpuParam {
            group: group.0,
            len,
            param: param.buffer().clone(),
            param_range,
            grad: grad.buffer().clone(),
            grad_offset: grad.offset(),
            copy: copy.map(|c| (c.buffer().clone(), range(&c))),
            access,
            precision,
            width,
            pipeline,
            tail,
            states,
            factors: factors.map(|dims| Factors::new(&self.device, dims)),
            matrix: matrix.map(|of| Matrix {
                of,
                ratios: wgpu::util::DeviceExt::create_buffer_init(
                    &self.device,
                    &wgpu::util::BufferInitDescriptor {
                        label: Some("wgpu-optim lr ratios"),
                        contents: bytemuck::cast_slice(&crate::optim::lr_ratios([
                            of.rows, of.cols,
                        ])),
                        usage: wgpu::BufferUsages::STORAGE,
                    },
                ),
            }),
            windows: Vec::new(),
            extents,
            ema: self
                .kernels
                .ema
                .then(|| super::ema::ema_buffer(&self.device, len)),
            grad_cache: Vec::with_capacity(super::rebind::CACHED_GRADS),
        });
        let rebuilt = self.rebuild();
        let grad_buffers = self.build_grad_stage();
        self.accumulate_new_param();
        self.average_new_param();
        if let Err(e) = scopes
            .check(|| {
                format!(
                    "registration of a parameter of shape {shape:?} ({state_bytes} bytes of state)"
                )
            })
            .await
        {
            self.params.pop();
            if let Some(a) = &mut self.accumulator {
                a.pop();
            }
            if let Some(s) = &mut self.swapper {
                s.pop();
            }
            self.kernels.truncate(pipelines_before);
            if let Some(q) = made_qmaps {
                self.qmaps[q] = None;
            }
            return Err(e);
        }
        // wgpu zero-fills new buffers; only a non-zero start needs an upload, which lands at the
        // next submit, before any step recorded after this call runs. It goes in pieces of at
        // most 1M values, so the host never holds a copy of the whole state.
        let last = self.params.len() - 1;
        for (slot, state) in self.params[last].states.iter().enumerate() {
            let init = config.initial_state(slot);
            // Quantized states start at zero (every optimizer with a map starts there).
            let quantized = precision.quant.is_some();
            if let Some(buffer) = state.as_ref().filter(|_| init != 0.0 && !quantized) {
                let values = config.state_len(slot, &shape);
                let dtype = precision.state;
                let piece = dtype.encode(&vec![init; values.min(1 << 20) as usize]);
                let per_piece = 1 << 20;
                let mut at = 0;
                while at < values {
                    let n = (values - at).min(per_piece);
                    let bytes = &piece[..dtype.buffer_bytes(n) as usize];
                    self.queue.write_buffer(buffer, at * dtype.bytes(), bytes);
                    at += n;
                }
            }
        }
        self.commit(rebuilt);
        self.grad_buffers = grad_buffers;
        // The shared buffers were rebuilt: cached gradient bindings name the old ones.
        self.forget_grad_bindings();
        Ok(self.registry.push(group, shape, precision))
    }

    /// Unregisters parameter `param`: its state, its running gradient sum and its average are
    /// freed (once commands already recorded have run), and later steps and checkpoints leave
    /// it out. As with a list, the parameters registered after it move down one place: their
    /// [`ParamId`]s decrease by one (and a checkpoint's parameter `I` is the `I`-th registered
    /// now), as PyTorch's positional `state_dict` indices do when a parameter leaves its group.
    ///
    /// The shared buffers that span every tensor (LAMB's and LARS's norms, clipping's sums)
    /// are rebuilt inside an error scope; on any error, and for an unknown id
    /// ([`Error::UnknownParam`]) or while the average is swapped in, nothing changes.
    pub async fn unregister_async(&mut self, param: ParamId) -> Result<()> {
        self.registry.check_unregister(param)?;
        let scopes = ErrorScopes::push(&self.device);
        let removed = self.params.remove(param.0);
        let rebuilt = self.norm_stage.is_some().then(|| self.rebuild());
        let grad_buffers = self.build_grad_stage();
        if let Err(e) = scopes
            .check(|| format!("unregistering parameter {}", param.0))
            .await
        {
            self.params.insert(param.0, removed);
            return Err(e);
        }
        if let Some(rebuilt) = rebuilt {
            self.commit(rebuilt);
        }
        self.grad_buffers = grad_buffers;
        if let Some(a) = &mut self.accumulator {
            a.remove(param.0);
        }
        if let Some(s) = &mut self.swapper {
            s.remove(param.0);
        }
        self.registry.remove(param);
        self.forget_grad_bindings();
        Ok(())
    }

    /// The `extent` uniform of each window of a tensor with 16-bit values (none for f32).
    fn extent_buffers(&self, precision: Precision, windows: &[(u64, u64)]) -> Vec<wgpu::Buffer> {
        let storage = Storage::f32(GradAccess::ReadOnly, Width::Vec4).with(precision);
        if !storage.packed() {
            return Vec::new();
        }
        windows
            .iter()
            .map(|&(start, n)| {
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-optim extent"),
                    size: EXTENT_BYTES,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.queue.write_buffer(
                    &buffer,
                    0,
                    bytemuck::cast_slice(&extent(start, n, precision)),
                );
                buffer
            })
            .collect()
    }

    /// Bind groups and grids of every parameter's windows (and the shared norm buffers for
    /// [`Algorithm::NORMS`]), for the parameters registered now.
    pub(super) fn rebuild(&self) -> Rebuilt {
        let norms = self.norm_stage.as_ref().map(|stage| {
            let limits = self.device.limits();
            let tensors = self.params.iter().map(|p| (p.len, p.width));
            let (table, starts, bytes) = partial_layout(tensors, &limits);
            (stage.buffers(&self.device, &table, bytes), starts)
        });
        let ns = self.ns_stage.as_ref().map(|stage| {
            let matrices: Vec<MatrixOf> = self
                .params
                .iter()
                .map(|p| match &p.matrix {
                    Some(m) => m.of,
                    None => MatrixOf {
                        group: p.group,
                        rows: 1,
                        cols: p.len as usize,
                    },
                })
                .collect();
            let groups = self.registry.scheduler.groups();
            let none = NewtonSchulz {
                coefficients: [0.0; 3],
                steps: 0,
            };
            let ns = |g: usize| groups[g].newton_schulz().unwrap_or(none);
            NsBatches::build(&self.device, stage, &matrices, ns)
        });
        let mut windows = Vec::with_capacity(self.params.len());
        for i in 0..self.params.len() {
            let norms = norms.as_ref().map(|(n, starts)| (n, starts[i]));
            // Without shared norm buffers, earlier parameters' windows do not change.
            if norms.is_none() && i + 1 < self.params.len() {
                windows.push(Vec::new());
                continue;
            }
            windows.push(self.build_windows(i, norms, ns.as_ref()));
        }
        Rebuilt {
            windows,
            norms: norms.map(|(n, _)| n),
            ns,
        }
    }

    /// Installs what [`GpuOptimizer::rebuild`] built.
    pub(super) fn commit(&mut self, rebuilt: Rebuilt) {
        let keep_earlier = rebuilt.norms.is_none();
        let count = self.params.len();
        for (i, (p, w)) in self.params.iter_mut().zip(rebuilt.windows).enumerate() {
            if !keep_earlier || i + 1 == count {
                p.windows = w;
            }
        }
        if rebuilt.norms.is_some() {
            self.norm_buffers = rebuilt.norms;
        }
        if rebuilt.ns.is_some() {
            self.ns_batches = rebuilt.ns;
        }
    }

    /// Bind groups and grids of parameter `index`'s windows; with `norms`, bound to the shared
    /// norm buffers, this parameter's partials starting at the given byte offset; with `ns`, a
    /// matrix's slots of the Newton–Schulz scratch.
    pub(super) fn build_windows(
        &self,
        index: usize,
        norms: Option<(&NormBuffers, u64)>,
        ns: Option<&NsBatches>,
    ) -> Vec<Window> {
        let p = &self.params[index];
        let limits = self.device.limits();
        let layout = self.kernels.layout(p.access, p.precision);
        let mut partials_at = norms.map_or(0, |n| n.1);
        let (pd, gd, sd) = (p.precision.param, p.precision.grad, p.precision.state);
        window_ranges_in(p.len, &limits, p.precision.quant)
            .into_iter()
            .enumerate()
            .map(|(k, (start, n))| {
                let grids = match p.precision.quant {
                    Some(q) => WindowGrids::blocks(n, q, &limits),
                    None => WindowGrids::new(n, p.width, &limits),
                };
                let grad = match p.access {
                    GradAccess::ReadOnly => update::GRAD,
                    GradAccess::Shared => update::GRAD.read_write(),
                };
                let copy = p.copy.as_ref().zip(p.precision.copy).map(|((b, r), d)| {
                    update::PARAM_COPY.entry(b, r.start + start * d.bytes(), d.buffer_bytes(n))
                });
                let mut entries = vec![
                    update::PARAM.entry(
                        &p.param,
                        p.param_range.start + start * pd.bytes(),
                        pd.buffer_bytes(n),
                    ),
                    grad.entry(
                        &p.grad,
                        p.grad_offset + start * gd.bytes(),
                        gd.buffer_bytes(n),
                    ),
                ];
                entries.extend(copy);
                for (slot, state) in p.states.iter().enumerate().take(O::STATE_NAMES.len()) {
                    let binding = update::state(slot, O::STATE_NAMES[slot]);
                    debug_assert!(
                        !O::FACTORED || start == 0,
                        "a factored tensor has one window"
                    );
                    entries.push(match (state, p.precision.quant) {
                        // Factored state is not elementwise: bound whole (one window).
                        (Some(b), _) if O::FACTORED => binding.whole(b),
                        // A window of whole blocks: its block records.
                        (Some(b), Some(q)) => {
                            binding.entry(b, quantized_bytes(q, start), quantized_bytes(q, n))
                        }
                        (Some(b), None) => binding.entry(b, start * sd.bytes(), sd.buffer_bytes(n)),
                        (None, _) => binding.entry(&self.placeholders[slot], 0, 16),
                    });
                }
                if let Some(f) = &p.factors {
                    entries.push(update::FACTORS.whole(&f.buffer));
                }
                if let (Some(ns), Some(m)) = (ns, &p.matrix) {
                    // A matrix is one window: its slots are its whole length.
                    let (batch, at) = ns.slots[index];
                    entries.push(update::ORTHO.entry(&ns.batches[batch].x0, at, n * 4));
                    entries.push(update::ORTHO_NEXT.entry(&ns.x1, at, n * 4));
                    entries.push(update::LR_RATIOS.whole(&m.ratios));
                }
                if let Some(extent) = p.extents.get(k) {
                    entries.push(update::EXTENT.whole(extent));
                }
                if let Some(q) = p.precision.quant {
                    let qmaps = self.qmaps[q as usize].as_ref();
                    entries.push(update::QMAPS.whole(qmaps.expect("made at registration")));
                }
                if let Some(ema) = &p.ema {
                    entries.push(update::EMA.entry(ema, start * 4, n * 4));
                }
                entries.push(update::GRAD_CONTROL.whole(&self.grad_control));
                if let Some((buffers, _)) = norms {
                    // Exactly this window's slots, so the tail's is the last bound.
                    let size = grids.partials_bytes();
                    entries.push(update::PARTIALS.entry(&buffers.partials, partials_at, size));
                    entries.push(update::NORMS.entry(
                        &buffers.norms,
                        index as u64 * NORM_STRIDE_BYTES,
                        8,
                    ));
                    partials_at += grids.partials_size();
                }
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(O::KERNEL.name),
                    layout,
                    entries: &entries,
                });
                Window { bind_group, grids }
            })
            .collect()
    }
}
