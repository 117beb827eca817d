//! One binding table per shader family. Layouts are built from these entries only, and
//! `abi::tests` checks each against the WGSL with naga.

use std::num::NonZeroU64;

/// How a shader declares a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `var<uniform>`, bound at a dynamic offset when `dynamic`.
    Uniform {
        /// Whether the host picks the entry with a dynamic offset.
        dynamic: bool,
    },
    /// `var<storage, read>` (`read_only`) or `var<storage, read_write>`.
    Storage {
        /// Whether the shader only reads it.
        read_only: bool,
    },
}

/// One binding of a shader family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding {
    /// `@group`.
    pub group: u32,
    /// `@binding`.
    pub binding: u32,
    /// The WGSL variable's name.
    pub name: &'static str,
    /// Address space and access.
    pub kind: Kind,
    /// Bytes of one array element for storage bindings (4 for `array<f32>`, 8 for
    /// `array<vec2<f32>>`); 0 for uniforms, whose size the caller knows, and for `array<V>`
    /// (param, grad, states), whose element is 4 or 16 bytes by the kernel's `Width`. A
    /// layout entry states no minimum size for those, so one bind group serves both widths.
    pub element: u64,
}

impl Binding {
    const fn storage(group: u32, binding: u32, name: &'static str, read_only: bool) -> Self {
        Self {
            group,
            binding,
            name,
            kind: Kind::Storage { read_only },
            element: 4,
        }
    }

    const fn pairs(self) -> Self {
        Self { element: 8, ..self }
    }

    /// An `array<V>` binding: `f32` or `vec4<f32>` by the kernel's width.
    const fn values(self) -> Self {
        Self { element: 0, ..self }
    }

    const fn uniform(group: u32, binding: u32, name: &'static str, dynamic: bool) -> Self {
        Self {
            group,
            binding,
            name,
            kind: Kind::Uniform { dynamic },
            element: 0,
        }
    }

    /// The same binding read and written (a gradient sharing its parameter's buffer).
    pub const fn read_write(self) -> Self {
        Self {
            kind: Kind::Storage { read_only: false },
            ..self
        }
    }

    /// Its layout entry; `uniform_size` is the uniform's size in bytes (ignored for storage).
    pub fn layout_entry(&self, uniform_size: u64) -> wgpu::BindGroupLayoutEntry {
        let ty = match self.kind {
            Kind::Uniform { dynamic } => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: dynamic,
                min_binding_size: NonZeroU64::new(uniform_size),
            },
            Kind::Storage { read_only } => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(self.element),
            },
        };
        wgpu::BindGroupLayoutEntry {
            binding: self.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        }
    }

    /// Its bind-group entry: `size` bytes of `buffer` from `offset`.
    pub fn entry<'a>(
        &self,
        buffer: &'a wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> wgpu::BindGroupEntry<'a> {
        wgpu::BindGroupEntry {
            binding: self.binding,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: NonZeroU64::new(size),
            }),
        }
    }

    /// Its bind-group entry over the whole of `buffer`.
    pub fn whole<'a>(&self, buffer: &'a wgpu::Buffer) -> wgpu::BindGroupEntry<'a> {
        wgpu::BindGroupEntry {
            binding: self.binding,
            resource: buffer.as_entire_binding(),
        }
    }
}

/// Every optimizer kernel (`shaders/<name>.wgsl` after `common.wgsl`).
pub(crate) mod update {
    use super::Binding;

    /// Group 1: the step's entry of the scalar table (`array<XScalars, SCALAR_CANDIDATES>`).
    pub const SCALARS: Binding = Binding::uniform(1, 0, "scalars", true);
    /// The same binding in single-pass kernels: `StepUniform` (`kernel::storage`), every
    /// candidate's scalars and then the step's counter.
    pub const STEP_UNIFORM: Binding = Binding::uniform(1, 0, "step_uniform", true);
    /// The parameter, updated in place.
    pub const PARAM: Binding = Binding::storage(0, 1, "param", false).values();
    /// Its gradient ([`Binding::read_write`] when it shares the parameter's buffer).
    pub const GRAD: Binding = Binding::storage(0, 2, "grad", true).values();
    /// The 16-bit copy of an f32 parameter a step also writes (`Precision::copy`).
    pub const PARAM_COPY: Binding = Binding::storage(0, 9, "param_copy", false).values();
    /// State `k` (named `Algorithm::STATE_NAMES[k]` in the WGSL) is at `FIRST_STATE + k`.
    pub const FIRST_STATE: u32 = 3;
    /// Per-workgroup partial sums of a `norms` entry point (LAMB, LARS).
    pub const PARTIALS: Binding = Binding::storage(0, 6, "partials", false).pairs();
    /// The tensor's norm pair, from the reduction (LAMB, LARS).
    pub const NORMS: Binding = Binding::storage(0, 7, "tensor_norms", true);
    /// The gradient control written by the gradient stage.
    pub const GRAD_CONTROL: Binding = Binding::storage(0, 11, "grad_control", true);

    /// A window's extent when its tensor holds 16-bit values (`kernel::Storage`): body
    /// vectors, tail start, tail end, the window's first element; the stochastic-rounding seed
    /// (`array<vec4<u32>, 2>`).
    pub const EXTENT: Binding = Binding::uniform(0, 12, "extent", false);

    /// The code maps and thresholds of quantized state (`array<vec4<f32>, 4 * levels / 4>`,
    /// `quant::Quant::uniform_bytes`).
    pub const QMAPS: Binding = Binding::uniform(0, 10, "qmaps", false);

    /// The average of the weights, updated by the parameter's store (`kernel::Storage::ema`).
    pub const EMA: Binding = Binding::storage(0, 13, "ema", false).values();

    /// Adafactor's per-tensor dimensions and row-factor means (`array<f32>`).
    pub const FACTORS: Binding = Binding::storage(0, 8, "factors", false);

    /// Muon's scratch slot for the matrix's update, where the iteration starts and (odd
    /// `ns_steps`) ends.
    pub const ORTHO: Binding = Binding::storage(0, 14, "ortho", false).values();
    /// Its slot of the iteration's second scratch matrix.
    pub const ORTHO_NEXT: Binding = Binding::storage(0, 15, "ortho_next", false).values();
    /// Muon's rate factors for the matrix's shape, `[original, match_rms_adamw]`.
    pub const LR_RATIOS: Binding = Binding::storage(0, 16, "lr_ratios", true);

    /// State buffer `slot`, named `name` in the WGSL.
    pub const fn state(slot: usize, name: &'static str) -> Binding {
        Binding::storage(0, FIRST_STATE + slot as u32, name, false).values()
    }

    /// A state that is not elementwise (Adafactor's row and column factors): `array<f32>` at
    /// either width.
    pub const fn factor_state(slot: usize, name: &'static str) -> Binding {
        Binding::storage(0, FIRST_STATE + slot as u32, name, false)
    }
}

/// `shaders/reduce.wgsl`: per-tensor norms from partial sums.
pub(crate) mod reduce {
    use super::Binding;

    /// Per tensor, its first partial and partial count.
    pub const TABLE: Binding = Binding::storage(0, 8, "table", true).pairs();
    /// Every tensor's partial sums.
    pub const PARTIAL_SUMS: Binding = Binding::storage(0, 9, "partial_sums", true).pairs();
    /// The norm pairs written.
    pub const NORMS: Binding = Binding::storage(0, 10, "norms", false);
    /// All of them, in layout order.
    pub const ALL: [Binding; 3] = [TABLE, PARTIAL_SUMS, NORMS];
}

/// `shaders/matmul.wgsl`: Muon's batched, tiled matrix multiply.
pub(crate) mod matmul {
    use super::Binding;

    /// `MatmulDims`.
    pub const DIMS: Binding = Binding::uniform(0, 0, "dims", false);
    /// The left operand (`array<f32>`, or `array<vec4<f32>>` in `matmul4.wgsl`: no minimum
    /// size in the layout, so one layout serves both).
    pub const LHS: Binding = Binding::storage(0, 1, "lhs", true).values();
    /// The right operand.
    pub const RHS: Binding = Binding::storage(0, 2, "rhs", true).values();
    /// The matrix added, scaled by `beta`.
    pub const ADDEND: Binding = Binding::storage(0, 3, "addend", true).values();
    /// The result.
    pub const OUT: Binding = Binding::storage(0, 4, "out", false).values();
    /// All of them, in layout order.
    pub const ALL: [Binding; 5] = [DIMS, LHS, RHS, ADDEND, OUT];
}

/// `shaders/grad_norm.wgsl`: the gradient stage (clipping, loss scaling). Its `sumsq` entry
/// also binds `update::GRAD` and `update::PARTIALS` from `common.wgsl`.
pub(crate) mod grad_norm {
    use super::Binding;

    /// Every tensor's norm pair, from the reduction.
    pub const TENSOR_NORMS: Binding = Binding::storage(0, 12, "tensor_norms", true);
    /// The gradient control every update reads.
    pub const CONTROL: Binding = Binding::storage(0, 13, "control", false);
    /// `GradParams`.
    pub const PARAMS: Binding = Binding::uniform(0, 14, "params", false);
    /// GradScaler's state.
    pub const SCALER: Binding = Binding::storage(0, 15, "scaler", false);
    /// The `sumsq` entry point's bindings.
    pub const SUMSQ: [Binding; 4] = [super::update::GRAD, super::update::PARTIALS, PARAMS, SCALER];
    /// The `finalize` entry point's bindings.
    pub const FINALIZE: [Binding; 4] = [TENSOR_NORMS, CONTROL, PARAMS, SCALER];
}

/// `shaders/accumulate.wgsl`: gradient accumulation.
pub(crate) mod accumulate {
    use super::Binding;

    /// The caller's gradient window, read and (by the last micro-batch) written.
    pub const GRAD: Binding = Binding::storage(0, 0, "grad", false);
    /// The running sum, the optimizer's own.
    pub const SUM: Binding = Binding::storage(0, 1, "grad_sum", false);
    /// Both, in layout order.
    pub const ALL: [Binding; 2] = [GRAD, SUM];
}

/// `shaders/swap.wgsl`: a parameter exchanged with its average of the weights.
pub(crate) mod swap {
    use super::Binding;

    /// The caller's parameter window.
    pub const PARAM: Binding = Binding::storage(0, 0, "param", false);
    /// Its average.
    pub const EMA: Binding = Binding::storage(0, 1, "ema", false);
    /// Both, in layout order.
    pub const ALL: [Binding; 2] = [PARAM, EMA];
}

/// `shaders/stream.wgsl`: the benchmark's same-bytes streaming kernel (native tooling only).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod stream {
    use super::Binding;

    /// The states' names, as `kernel::Storage` declares them.
    pub const STATE_NAMES: [&str; 3] = ["state0", "state1", "state2"];

    /// `param`, `grad`, then three states, in binding order (and `update::EXTENT` over 16-bit
    /// values).
    pub const ALL: [Binding; 5] = [
        super::update::PARAM,
        super::update::GRAD,
        Binding::storage(0, 3, "state0", false).values(),
        Binding::storage(0, 4, "state1", false).values(),
        Binding::storage(0, 5, "state2", false).values(),
    ];
}

/// `shaders/mlp.wgsl`: the end-to-end example's forward and backward passes (native tooling
/// only).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod mlp {
    use super::Binding;

    /// `Dims`, then params, data, per-sample gradients, per-sample loss, gradients, stats.
    pub const ALL: [Binding; 7] = [
        Binding::uniform(0, 20, "dims", false),
        Binding::storage(0, 21, "params", true),
        Binding::storage(0, 22, "data", true),
        Binding::storage(0, 23, "per_sample", false),
        Binding::storage(0, 24, "sample_stats", false),
        Binding::storage(0, 25, "grads", false),
        Binding::storage(0, 26, "stats", false),
    ];
}
