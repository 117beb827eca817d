//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in this crate, each variant naming the offending value.
///
/// Nothing a caller passes in makes the crate panic: invalid hyperparameters, mismatched or
/// unusable buffers and malformed case files all come back as one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyperparameter outside the range PyTorch accepts.
    #[error("invalid {name}: {reason}, got {value}")]
    InvalidHyperparameter {
        /// PyTorch's name of the hyperparameter (`lr`, `betas[0]`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// A combination of options PyTorch rejects.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A buffer whose size does not fit `len` values of its declared dtype.
    #[error("{which} buffer of {size} bytes does not hold {len} {dtype} values ({expected} bytes)")]
    DtypeSize {
        /// `param` or `grad`.
        which: &'static str,
        /// Its declared dtype.
        dtype: crate::Dtype,
        /// The tensor's length in elements (the product of its shape).
        len: u64,
        /// The buffer's size in bytes.
        size: u64,
        /// The size `len` values of `dtype` take (whole 4-byte words).
        expected: u64,
    },
    /// A precision this optimizer, or this setting, cannot step.
    #[error("{optimizer} cannot step {precision}: {reason}")]
    UnsupportedPrecision {
        /// The optimizer's name.
        optimizer: &'static str,
        /// The precision asked for.
        precision: crate::Precision,
        /// Why not.
        reason: &'static str,
    },
    /// A host value that the tensor's declared dtype cannot hold (the CPU reference takes
    /// 16-bit tensors as their f32 values).
    #[error("{which} value {value:e} at index {index} is not a {dtype} value")]
    NotRepresentable {
        /// `param` or `grad`.
        which: &'static str,
        /// The declared dtype.
        dtype: crate::Dtype,
        /// Index of the first such value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A parameter and its gradient have different lengths.
    #[error("parameter has {param} elements but its gradient has {grad}")]
    LengthMismatch {
        /// Elements in the parameter.
        param: u64,
        /// Elements in the gradient.
        grad: u64,
    },
    /// A buffer that cannot hold f32 parameters (empty, or a size not a multiple of 4).
    #[error("{which} buffer of {size} bytes does not hold a whole, non-zero number of f32 values")]
    BadBufferSize {
        /// `param` or `grad`.
        which: &'static str,
        /// Its size in bytes.
        size: u64,
    },
    /// A buffer larger than this device can create.
    #[error(
        "{which} buffer of {size} bytes exceeds this device's max_buffer_size of {limit} bytes"
    )]
    BufferTooLarge {
        /// `param` or `grad`.
        which: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The device limit.
        limit: u64,
    },
    /// A buffer slice that does not start at a multiple of the device's storage-offset alignment.
    #[error(
        "{which} slice starts at byte {offset}, not a multiple of the device's min_storage_buffer_offset_alignment {alignment}"
    )]
    MisalignedSlice {
        /// `param` or `grad`.
        which: &'static str,
        /// Its offset in bytes.
        offset: u64,
        /// The alignment required.
        alignment: u64,
    },
    /// A buffer registered without `BufferUsages::STORAGE`.
    #[error("{which} buffer lacks STORAGE usage (its usage is {usage:?})")]
    MissingStorageUsage {
        /// `param` or `grad`.
        which: &'static str,
        /// The usage it was created with.
        usage: wgpu::BufferUsages,
    },
    /// The same parameter buffer registered twice, or a buffer used as its own gradient.
    #[error("{0}")]
    AliasedBuffer(String),
    /// A shape whose elements do not number the buffer's length.
    #[error("shape {shape:?} does not hold {len} elements")]
    ShapeMismatch {
        /// The shape given.
        shape: Vec<usize>,
        /// The parameter's length in elements.
        len: u64,
    },
    /// A tensor shape this optimizer cannot step (Muon: anything but a matrix).
    #[error("{optimizer} cannot step parameter {param} of shape {shape:?}: {reason}")]
    UnsupportedShape {
        /// The optimizer's name.
        optimizer: &'static str,
        /// The parameter: the index it would have been registered at.
        param: usize,
        /// Its shape (`[len]` when registered flat).
        shape: Vec<usize>,
        /// What the shape must be.
        reason: &'static str,
    },
    /// A parameter group id this optimizer did not hand out.
    #[error("no parameter group {0}")]
    UnknownGroup(usize),
    /// A parameter id past the parameters registered now.
    #[error("no registered parameter {0}")]
    UnknownParam(usize),
    /// A step was given the wrong number of parameters or gradients, or ones of the wrong length.
    #[error("step: {0}")]
    StepShape(String),
    /// No wgpu adapter could be found.
    #[error(
        "no wgpu adapter found{0}; on Debian, `apt-get install mesa-vulkan-drivers libvulkan1` adds the \
         lavapipe software adapter (Mesa's llvmpipe also serves GL through EGL)"
    )]
    NoAdapter(String),
    /// wgpu rejected a shader module or pipeline (for example a kernel an adapter cannot compile).
    #[error("wgpu rejected the {what}: {message}")]
    Gpu {
        /// What was being created.
        what: String,
        /// wgpu's message.
        message: String,
    },
    /// The device ran out of memory creating what an operation needed; nothing was changed.
    #[error("out of device memory for the {what}: {message}")]
    OutOfMemory {
        /// What was being created.
        what: String,
        /// wgpu's message.
        message: String,
    },
    /// The adapter refused to create a device.
    #[error("requesting a device failed: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// Mapping a buffer for readback failed.
    #[error("reading a buffer back failed: {0}")]
    Readback(String),
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A parity case file that does not follow `optim-trajectory/1`.
    #[error("bad case file {path}: {reason}")]
    BadCase {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint file that is not a readable `wgpu-optim-checkpoint/1` file.
    #[error("bad checkpoint {path}: {reason}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid checkpoint that does not fit this optimizer (another optimizer, other groups,
    /// options, parameters or shapes).
    #[error("checkpoint does not fit this optimizer: {0}")]
    CheckpointMismatch(String),
    /// An optimizer or schedule name this crate does not know at all.
    #[error("unknown {kind} {name:?}")]
    Unknown {
        /// `optimizer` or `schedule`.
        kind: &'static str,
        /// The name given.
        name: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `value` is finite and non-negative.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            reason: "must be finite and >= 0",
        })
    }
}

/// Checks that `value` lies in `[0, 1)`.
pub(crate) fn unit_interval(name: &'static str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            reason: "must be in [0, 1)",
        })
    }
}
