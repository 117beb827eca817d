//! A convenience path for callers without a wgpu stack: pick an adapter, open a device, move f32
//! data in and out. Callers with their own device use [`crate::GpuOptimizer`] directly.
//!
//! Each waiting function has an `_async` form, the only one on wasm32, where a browser's one
//! thread cannot block; the blocking forms (native targets) wait for them with `pollster`.

use futures_intrusive::channel::shared::oneshot_channel;
use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::precision::Dtype;

/// A device and queue opened on the best adapter found.
#[derive(Debug, Clone)]
pub struct GpuContext {
    /// The adapter the device was opened on.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
}

/// Every adapter wgpu can see, honouring `WGPU_BACKEND` (e.g. `vulkan` or `gl`).
#[cfg(not(target_arch = "wasm32"))]
pub fn enumerate_adapters() -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    pollster::block_on(enumerate_adapters_async())
}

/// As [`enumerate_adapters`], without blocking. In a browser the one adapter is the one
/// `navigator.gpu.requestAdapter()` gives (high performance preferred).
pub async fn enumerate_adapters_async() -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    #[cfg(target_arch = "wasm32")]
    let adapters = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .into_iter()
        .collect();
    #[cfg(not(target_arch = "wasm32"))]
    let adapters = {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        instance.enumerate_adapters(backends).await
    };
    (instance, adapters)
}

/// Preference order: a hardware GPU first, then anything else (software adapters included).
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Picks the adapter [`GpuContext::new`] would use: a hardware GPU if there is one, otherwise
/// any adapter, software included. Among equals, Vulkan comes first.
pub fn pick_adapter(adapters: &[wgpu::Adapter]) -> Option<&wgpu::Adapter> {
    adapters.iter().min_by_key(|a| {
        let info = a.get_info();
        (rank(&info), info.backend != wgpu::Backend::Vulkan)
    })
}

impl GpuContext {
    /// Opens a device on the adapter [`pick_adapter`] chooses, with that adapter's own limits
    /// (so large buffers work) and timestamp queries where supported.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// As [`GpuContext::new`], without blocking: in a browser, on the adapter
    /// `navigator.gpu.requestAdapter()` gives, with the limits it offers.
    pub async fn new_async() -> Result<Self> {
        let (_instance, adapters) = enumerate_adapters_async().await;
        let backend = std::env::var("WGPU_BACKEND")
            .map(|b| format!(" (WGPU_BACKEND={b})"))
            .unwrap_or_default();
        let adapter = pick_adapter(&adapters)
            .cloned()
            .ok_or(Error::NoAdapter(backend))?;
        Self::from_adapter_async(adapter, None).await
    }

    /// Opens a device on `adapter`, with its limits or with `limits` when given.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_adapter(adapter: wgpu::Adapter, limits: Option<wgpu::Limits>) -> Result<Self> {
        pollster::block_on(Self::from_adapter_async(adapter, limits))
    }

    /// As [`GpuContext::from_adapter`], without blocking.
    pub async fn from_adapter_async(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
    ) -> Result<Self> {
        let wanted = wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-optim"),
                required_features: adapter.features() & wanted,
                required_limits: limits.unwrap_or_else(|| adapter.limits()),
                ..Default::default()
            })
            .await?;
        Ok(Self {
            adapter,
            device,
            queue,
        })
    }

    /// A storage buffer holding `data`, usable as a parameter or gradient and for copies.
    pub fn upload(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Overwrites the start of `buffer` with `data`, at the next submit.
    pub fn write(&self, buffer: &wgpu::Buffer, data: &[f32]) {
        self.queue
            .write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }

    /// Reads a whole f32 buffer (which needs `COPY_SRC`) back to the host, waiting for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, buffer: &wgpu::Buffer) -> Result<Vec<f32>> {
        read_buffer(&self.device, &self.queue, buffer)
    }

    /// As [`GpuContext::read`], as a future (see [`read_bytes_async`] for how it waits).
    pub async fn read_async(&self, buffer: &wgpu::Buffer) -> Result<Vec<f32>> {
        read_buffer_async(&self.device, &self.queue, buffer).await
    }

    /// As [`GpuContext::upload`], the values stored as `dtype` (16-bit ones two per word,
    /// rounded to nearest even).
    pub fn upload_as(&self, label: &str, dtype: Dtype, data: &[f32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &dtype.encode(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// As [`GpuContext::write`], the values stored as `dtype`.
    pub fn write_as(&self, buffer: &wgpu::Buffer, dtype: Dtype, data: &[f32]) {
        self.queue.write_buffer(buffer, 0, &dtype.encode(data));
    }

    /// The first `len` values of a buffer of `dtype` values, read back as f32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_as(&self, buffer: &wgpu::Buffer, dtype: Dtype, len: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_as_async(buffer, dtype, len))
    }

    /// As [`GpuContext::read_as`], as a future (see [`read_bytes_async`] for how it waits).
    pub async fn read_as_async(
        &self,
        buffer: &wgpu::Buffer,
        dtype: Dtype,
        len: usize,
    ) -> Result<Vec<f32>> {
        let bytes = read_bytes_async(&self.device, &self.queue, buffer).await?;
        dtype.decode(&bytes, len).ok_or_else(|| {
            Error::Readback(format!(
                "buffer of {} bytes holds fewer than {len} {dtype} values",
                bytes.len()
            ))
        })
    }
}

/// Reads a whole f32 buffer (which needs `COPY_SRC`) back to the host, waiting for the GPU.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_buffer(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
) -> Result<Vec<f32>> {
    pollster::block_on(read_buffer_async(device, queue, buffer))
}

/// As [`read_buffer`], as a future (see [`read_bytes_async`] for how it waits).
pub async fn read_buffer_async(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
) -> Result<Vec<f32>> {
    Ok(bytemuck::pod_collect_to_vec(
        &read_bytes_async(device, queue, buffer).await?,
    ))
}

/// Reads a whole buffer (which needs `COPY_SRC`) back to the host as bytes, waiting for the GPU.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_bytes(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
) -> Result<Vec<u8>> {
    pollster::block_on(read_bytes_async(device, queue, buffer))
}

/// As [`read_bytes`], as a future: in a browser the copy is submitted and the future
/// resolves when the buffer maps. On native targets it polls the device until the copy is
/// done (a blocking wait inside the future), since nothing else drives wgpu there.
pub async fn read_bytes_async(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
) -> Result<Vec<u8>> {
    if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Err(Error::Readback(format!(
            "buffer lacks COPY_SRC usage (its usage is {:?})",
            buffer.usage()
        )));
    }
    let size = buffer.size();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-optim readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("wgpu-optim readback"),
    });
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    queue.submit([encoder.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        tx.send(r).ok();
    });
    #[cfg(not(target_arch = "wasm32"))]
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Readback(e.to_string()))?;
    rx.receive()
        .await
        .ok_or_else(|| Error::Readback("the map callback was dropped".into()))?
        .map_err(|e| Error::Readback(e.to_string()))?;
    let data = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Readback(e.to_string()))?;
        view.to_vec()
    };
    staging.unmap();
    Ok(data)
}
