//! wgpu-optim as the optimizer of a Burn model, on Burn's wgpu backend.
//!
//! [`shared_device`] opens one wgpu device and queue and registers them with Burn, so Burn's
//! tensors and wgpu-optim's kernels live on the same device. [`BurnOptimizer`] steps a Burn
//! module in place: after `backward()`, each parameter's and gradient's `wgpu::Buffer`, offset
//! and size come from Burn's own tensors (CubeCL's resources), Burn's pending work is
//! submitted, and the optimizer's step is recorded and submitted on the same queue. Nothing is
//! copied out of Burn or back into it.

use std::any::Any;

use burn::backend::Cube;
use burn::backend::wgpu::{CubeTensor, WgpuResource};
use burn::cubecl::wgpu::{AutoCompiler, WgpuServer};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Gradients;
use burn::tensor::wgpu::WgpuSetup;
use burn::tensor::{DType, Device, Tensor};
use wgpu_optim::{Algorithm, GpuOptimizer};

/// What can go wrong between Burn and the optimizer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From wgpu-optim.
    #[error(transparent)]
    Optim(#[from] wgpu_optim::Error),
    /// A parameter or gradient the optimizer cannot step in place.
    #[error("parameter {param}: {reason}")]
    Unsupported {
        /// Its position among the module's float parameters.
        param: usize,
        /// Why.
        reason: String,
    },
    /// A step's parameters differ from the registered ones.
    #[error("the module's parameters changed: {0}")]
    Mismatch(String),
    /// From Burn or its runtime.
    #[error("burn: {0}")]
    Burn(String),
}

/// The wgpu device and queue Burn runs on, shared with wgpu-optim.
pub struct Shared {
    /// Burn's device (with autodiff).
    pub device: Device,
    /// The wgpu device under it.
    pub wgpu_device: wgpu::Device,
    /// Its queue: Burn's submits and the optimizer's go to this one.
    pub queue: wgpu::Queue,
    /// The adapter.
    pub adapter: wgpu::Adapter,
}

/// Opens the adapter wgpu-optim would pick ([`wgpu_optim::pick_adapter`], honouring
/// `WGPU_BACKEND`) with every feature and limit it offers (CubeCL plans its kernels from the
/// adapter's), and registers the device and queue with Burn's wgpu runtime.
pub fn shared_device() -> Result<Shared, Error> {
    let (instance, adapters) = wgpu_optim::enumerate_adapters();
    let adapter = wgpu_optim::pick_adapter(&adapters)
        .cloned()
        .ok_or_else(|| Error::Burn("no wgpu adapter found".into()))?;
    let (wgpu_device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("burn + wgpu-optim"),
            // Experimental features would need wgpu's unsafe opt-in; neither crate uses them.
            required_features: adapter.features()
                - wgpu::Features::MAPPABLE_PRIMARY_BUFFERS
                - wgpu::Features::all_experimental_mask(),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::Burn(e.to_string()))?;
    let setup = WgpuSetup {
        backend: adapter.get_info().backend,
        instance,
        adapter: adapter.clone(),
        device: wgpu_device.clone(),
        queue: queue.clone(),
    };
    let device = Device::wgpu_options()
        .setup(setup)
        .init()
        .map_err(|e| Error::Burn(e.to_string()))?
        .autodiff();
    Ok(Shared {
        device,
        wgpu_device,
        queue,
        adapter,
    })
}

/// A tensor's place in a CubeCL buffer, held so CubeCL neither frees nor moves it.
struct Bound {
    /// The tensor (a handle count of its own, so no Burn kernel writes into it in place).
    tensor: CubeTensor,
    /// CubeCL's binding of its memory: while held, the allocation stays where it is.
    _pin: Box<dyn Any + Send>,
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl Bound {
    fn new(index: usize, tensor: CubeTensor, what: &str) -> Result<Self, Error> {
        let unsupported = |reason: String| Error::Unsupported {
            param: index,
            reason,
        };
        if tensor.dtype != DType::F32 {
            return Err(unsupported(format!(
                "{what} is {:?}, not f32",
                tensor.dtype
            )));
        }
        if !tensor.is_contiguous() || tensor.meta.is_tiled() {
            return Err(unsupported(format!("{what} is not contiguous")));
        }
        if tensor.meta.shape().num_elements() == 0 {
            return Err(unsupported(format!("{what} has no elements")));
        }
        let managed = tensor
            .client
            .get_resource::<WgpuServer<AutoCompiler>>(tensor.handle.clone())
            .map_err(|e| Error::Burn(format!("{what} of parameter {index}: {e:?}")))?;
        let resource: &WgpuResource = managed.resource();
        let (buffer, offset, size) = (resource.buffer.clone(), resource.offset, resource.size);
        Ok(Self {
            tensor,
            _pin: Box::new(managed),
            buffer,
            offset,
            size,
        })
    }

    /// Whether `tensor` is the one bound here (the same CubeCL allocation and offset), not a
    /// replacement (a loaded record, a mapped module) that kept the parameter's id.
    fn holds(&self, tensor: &CubeTensor) -> bool {
        self.tensor.handle.memory.descriptor() == tensor.handle.memory.descriptor()
            && self.tensor.handle.offset_start == tensor.handle.offset_start
    }

    fn slice(&self) -> wgpu::BufferSlice<'_> {
        self.buffer.slice(self.offset..self.offset + self.size)
    }
}

/// One float parameter of a module: its id, shape, tensor and (when asked) gradient.
struct Found {
    id: ParamId,
    shape: Vec<usize>,
    param: CubeTensor,
    grad: Option<CubeTensor>,
}

/// Each float parameter of a module, in the module's visiting order.
struct Collect<'g> {
    grads: Option<&'g mut Gradients>,
    found: Vec<Found>,
    error: Option<Error>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let value = param.val();
        let shape = value.dims().to_vec();
        let grad = self.grads.as_deref_mut().and_then(|g| value.grad_remove(g));
        let index = self.found.len();
        let primitive = |t: Tensor<D>, what: &str| {
            t.try_into_primitive::<Cube>()
                .map_err(|e| Error::Unsupported {
                    param: index,
                    reason: format!("{what} is not on Burn's wgpu backend: {e:?}"),
                })
        };
        match (
            primitive(value.inner(), "parameter"),
            grad.map(|g| primitive(g, "gradient")).transpose(),
        ) {
            (Ok(p), Ok(g)) => self.found.push(Found {
                id: param.id,
                shape,
                param: p,
                grad: g,
            }),
            (Err(e), _) | (_, Err(e)) => self.error = Some(e),
        }
    }
}

fn collect<M: Module>(module: &M, grads: Option<&mut Gradients>) -> Result<Vec<Found>, Error> {
    let mut c = Collect {
        grads,
        found: Vec::new(),
        error: None,
    };
    module.visit(&mut c);
    match c.error {
        Some(e) => Err(e),
        None => Ok(c.found),
    }
}

/// The registered parameters with their Burn ids, and the first step's gradients.
type Registered = (Vec<(ParamId, Bound)>, Vec<Bound>);

/// A wgpu-optim optimizer stepping every float parameter of a Burn module in place, in Burn's
/// own buffers, on the device and queue Burn runs on.
///
/// The parameters are registered at the first [`BurnOptimizer::step`], with that step's
/// gradients, each with its shape, in one group; each later step binds the gradients Burn
/// hands out then ([`GpuOptimizer::step_with`]: fresh pooled buffers each step, their bind
/// groups cached per slice). A parameter and its gradient may share one of CubeCL's pages.
///
/// The update is in place: every clone of the module or of a parameter tensor shares its
/// buffer and sees it. Every float parameter needs a gradient at every step; a module
/// whose tensors were replaced (a loaded record) needs a new optimizer. Each step fetches each
/// gradient's buffer from CubeCL, one call to its runtime per tensor.
pub struct BurnOptimizer<O: Algorithm> {
    opt: GpuOptimizer<O>,
    device: Device,
    queue: wgpu::Queue,
    wgpu_device: wgpu::Device,
    /// The registered parameters, in order, with their Burn ids.
    params: Vec<(ParamId, Bound)>,
}

impl<O: Algorithm> BurnOptimizer<O> {
    /// An optimizer with `config` for the module stepped on `shared`'s device.
    pub fn new(shared: &Shared, config: O) -> Result<Self, Error> {
        Ok(Self {
            opt: GpuOptimizer::new(&shared.wgpu_device, &shared.queue, config)?,
            device: shared.device.clone(),
            queue: shared.queue.clone(),
            wgpu_device: shared.wgpu_device.clone(),
            params: Vec::new(),
        })
    }

    /// The wgpu-optim optimizer (schedules, groups, clipping, checkpoints, state reads).
    pub fn inner(&mut self) -> &mut GpuOptimizer<O> {
        &mut self.opt
    }

    /// Number of parameter tensors registered.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether none is registered yet (before the first step).
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Binds every parameter of `found` and its gradient (all checked before any is
    /// registered), then registers them in order; on error, unregisters those it registered,
    /// so the optimizer is as it was.
    fn register_all(&mut self, found: Vec<Found>) -> Result<Registered, Error> {
        let mut bound = Vec::with_capacity(found.len());
        for (i, f) in found.into_iter().enumerate() {
            let g = f
                .grad
                .ok_or_else(|| Error::Mismatch(format!("parameter {i} has no gradient")))?;
            let param = Bound::new(i, f.param, "parameter")?;
            bound.push((f.id, f.shape, param, Bound::new(i, g, "gradient")?));
        }
        let group = self.opt.default_group();
        let mut registered = Vec::with_capacity(bound.len());
        for (_, shape, param, grad) in &bound {
            match self
                .opt
                .register_with_shape(group, param.slice(), grad.slice(), shape)
            {
                Ok(id) => registered.push(id),
                Err(e) => {
                    // Last first, so the earlier ids stay valid.
                    for id in registered.into_iter().rev() {
                        self.opt.unregister(id)?;
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(bound
            .into_iter()
            .map(|(id, _, param, grad)| ((id, param), grad))
            .unzip())
    }

    /// One optimizer step of `module` with the gradients `grads` (from `loss.backward()`),
    /// updating the module's parameter buffers in place.
    ///
    /// Submits Burn's pending work (the backward pass) first, then the step, on the one queue:
    /// the step reads the gradients after they are computed, and Burn's next forward pass reads
    /// the updated parameters. No host readback; the gradients' memory is held until the step
    /// is submitted.
    pub fn step<M: Module>(&mut self, module: &M, mut grads: Gradients) -> Result<(), Error> {
        let found = collect(module, Some(&mut grads))?;
        let mut grad_slots = Vec::with_capacity(found.len());
        if self.params.is_empty() {
            // Registration: every parameter with its first gradient; on error, none stays.
            let (params, grads) = self.register_all(found)?;
            self.params = params;
            grad_slots = grads;
        } else {
            if found.len() != self.params.len() {
                return Err(Error::Mismatch(format!(
                    "{} float parameters, {} registered",
                    found.len(),
                    self.params.len()
                )));
            }
            for (i, (f, (registered, bound))) in found.into_iter().zip(&self.params).enumerate() {
                if f.id != *registered || !bound.holds(&f.param) {
                    return Err(Error::Mismatch(format!(
                        "parameter {i} is not the tensor registered (a new optimizer steps a \
                         replaced module)"
                    )));
                }
                let g = f
                    .grad
                    .ok_or_else(|| Error::Mismatch(format!("parameter {i} has no gradient")))?;
                grad_slots.push(Bound::new(i, g, "gradient")?);
            }
        }
        let slices: Vec<_> = grad_slots.iter().map(Bound::slice).collect();
        // Burn's recorded work (the backward pass) goes to the queue first.
        self.device
            .flush()
            .map_err(|e| Error::Burn(format!("{e:?}")))?;
        let mut encoder = self.wgpu_device.create_command_encoder(&Default::default());
        self.opt.step_with(&mut encoder, &slices)?;
        self.queue.submit([encoder.finish()]);
        drop(slices);
        drop(grad_slots);
        Ok(())
    }
}
