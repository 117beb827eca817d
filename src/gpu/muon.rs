//! Muon's Newton–Schulz iteration on the device ([`Algorithm::ORTHOGONAL`]): the tiled matrix
//! multiply's pipelines ([`MatmulTiles`]), and the batches of same-shaped matrices it runs
//! over, with their scratch buffers and bind groups.
//!
//! Each batch is every matrix of one shape in one group (split where a binding would grow past
//! the device's limit). Its matrices' updates sit side by side in the batch's own scratch
//! `x0`, one slot each (256-byte aligned, so each tensor's bind group can bind its slot); the
//! second matrix `x1` and the `m × m` products `gram` and `poly` are shared by all batches,
//! sized for the largest, since a batch's iteration and update are recorded before the next
//! batch's begin. Built whenever the matrices, the tiles or a group's coefficients change,
//! never per step (nor for a new rate).

use crate::abi::bindings::matmul as bindings;
use crate::abi::uniforms::MatmulDims;
use crate::error::{Error, Result};
use crate::gpu::GpuOptimizer;
use crate::gpu::commands::Commands;
use crate::gpu::commands::DirectCalls;
use crate::gpu::scopes::ErrorScopes;
use crate::kernel::{Kernel, compose, create_module_from, pipeline_layout, sized_compute_pipeline};
use crate::optim::Algorithm;
use crate::optim::NewtonSchulz;

const MATMUL: Kernel = Kernel::new("matmul", include_str!("../../shaders/matmul.wgsl"));
/// Its unstaged form for matrices whose dimensions are multiples of 4, operands read as vec4.
const MATMUL4: Kernel = Kernel::new("matmul4", include_str!("../../shaders/matmul4.wgsl"));

/// Values of one staged tile, and of one register block, at most (`MAX_TILE`, `MAX_BLOCK` in
/// `shaders/matmul.wgsl`).
const MAX_TILE: u32 = 2048;
const MAX_BLOCK: u32 = 64;
/// The register block's rows and columns, each at most (the kernel's `a` and `b` arrays).
const MAX_REGISTERS: u32 = 8;
/// Slots in a batch's scratch start at multiples of this many values (256 bytes, the largest
/// storage-offset alignment wgpu allows a device to ask for).
const SLOT_ALIGN: u64 = 64;

/// The tile sizes of the matrix multiply (`shaders/matmul.wgsl`), its pipeline constants: each
/// workgroup computes `tm × tn` of a result, each of its `(tm / rm) · (tn / rn)` invocations an
/// `rm × rn` block. Staged, it stages `tk` of the inner dimension at a time in workgroup memory;
/// unstaged (`rm` = `tm`), it reads the operands straight from their buffers, the left one at
/// addresses uniform across the workgroup.
///
/// [`MatmulTiles::for_device`] picks the defaults: staged 64 × 64 tiles of 4 × 4 blocks on
/// GPUs, unstaged ones tuned on lavapipe for CPU adapters, where workgroup memory is ordinary
/// memory and each barrier a switch between invocations. Any other set may be given
/// ([`crate::GpuOptimizer::set_matmul_tiles`], `bench --optimizer muon --tiles`); every set
/// sums each result in the same order, so all give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulTiles {
    /// Stage tiles of both operands in workgroup memory.
    pub staged: bool,
    /// Rows of a workgroup's tile.
    pub tm: u32,
    /// Columns of a workgroup's tile.
    pub tn: u32,
    /// Depth staged per round.
    pub tk: u32,
    /// Rows of an invocation's block (divides `tm`, at most 8).
    pub rm: u32,
    /// Columns of an invocation's block (divides `tn`, at most 8).
    pub rn: u32,
}

impl Default for MatmulTiles {
    /// The staged tiles for GPUs.
    fn default() -> Self {
        Self {
            staged: true,
            tm: 64,
            tn: 64,
            tk: 16,
            rm: 4,
            rn: 4,
        }
    }
}

impl MatmulTiles {
    /// The unstaged tiles tuned on lavapipe, for CPU adapters.
    pub const CPU_ADAPTER: MatmulTiles = MatmulTiles {
        staged: false,
        tm: 8,
        tn: 64,
        tk: 1,
        rm: 8,
        rn: 2,
    };

    /// The defaults for `device`'s adapter: [`MatmulTiles::CPU_ADAPTER`] on a CPU adapter, the
    /// staged [`MatmulTiles::default`] on any other.
    pub fn for_device(device: &wgpu::Device) -> Self {
        match device.adapter_info().device_type {
            wgpu::DeviceType::Cpu => Self::CPU_ADAPTER,
            _ => Self::default(),
        }
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> u32 {
        (self.tm / self.rm.max(1)) * (self.tn / self.rn.max(1))
    }

    /// Checks the tiles against the kernel's arrays and `limits`.
    pub fn validate(&self, limits: &wgpu::Limits) -> Result<()> {
        let bad = |why: String| {
            Err(Error::InvalidOptions(format!(
                "matmul tiles {self:?}: {why}"
            )))
        };
        let Self {
            staged,
            tm,
            tn,
            tk,
            rm,
            rn,
        } = *self;
        if [tm, tn, tk, rm, rn].contains(&0) {
            return bad("every size must be positive".into());
        }
        if rm > MAX_REGISTERS || rn > MAX_REGISTERS || rm * rn > MAX_BLOCK {
            return bad(format!("rm and rn must be at most {MAX_REGISTERS}"));
        }
        if !tm.is_multiple_of(rm) || !tn.is_multiple_of(rn) {
            return bad("rm must divide tm and rn divide tn".into());
        }
        if !staged && (rm != tm || tm > 8 || !tm.is_multiple_of(4) || rn > 2) {
            return bad(
                "unstaged, every invocation computes all tm rows (rm = tm, a multiple of 4 up \
                 to 8) of rn (at most 2) column groups"
                    .into(),
            );
        }
        if tm * tk > MAX_TILE || tk * tn > MAX_TILE {
            return bad(format!("tm · tk and tk · tn must be at most {MAX_TILE}"));
        }
        // matmul.wgsl declares both staging tiles whichever path runs.
        if limits.max_compute_workgroup_storage_size < 2 * MAX_TILE * 4 {
            return bad(format!(
                "the multiply stages {} bytes of workgroup memory; this device allows {}",
                2 * MAX_TILE * 4,
                limits.max_compute_workgroup_storage_size
            ));
        }
        let wg = self.workgroup_size();
        if wg > limits.max_compute_invocations_per_workgroup
            || wg > limits.max_compute_workgroup_size_x
        {
            return bad(format!(
                "(tm / rm) · (tn / rn) = {wg} invocations exceeds this device's workgroup limit"
            ));
        }
        Ok(())
    }

    /// The pipeline constants of `matmul.wgsl`, or (`vec4`) of `matmul4.wgsl`, which declares
    /// only the transposes, TM and RN.
    fn constants(&self, trans_a: bool, trans_b: bool, vec4: bool) -> Vec<(&'static str, f64)> {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        [
            ("STAGED", flag(self.staged)),
            ("TRANS_A", flag(trans_a)),
            ("TRANS_B", flag(trans_b)),
            ("TM", f64::from(self.tm)),
            ("TN", f64::from(self.tn)),
            ("TK", f64::from(self.tk)),
            ("RM", f64::from(self.rm)),
            ("RN", f64::from(self.rn)),
        ]
        .into_iter()
        .filter(|(name, _)| !vec4 || matches!(*name, "TRANS_A" | "TRANS_B" | "TM" | "RN"))
        .collect()
    }
}

/// Which multiply: `op(lhs) · op(rhs)` with neither, the right or the left operand transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Nn = 0,
    Nt = 1,
    Tn = 2,
}

/// The multiply's pipelines, one per [`Form`], for one set of tiles.
#[derive(Debug)]
pub(super) struct NsStage {
    layout: wgpu::BindGroupLayout,
    pipelines: [wgpu::ComputePipeline; 3],
    /// `matmul4.wgsl`'s, for unstaged tiles.
    vec4: Option<[wgpu::ComputePipeline; 3]>,
    pub tiles: MatmulTiles,
}

impl NsStage {
    /// Compiles the multiply for `tiles` (checked by the caller).
    pub fn new(device: &wgpu::Device, tiles: MatmulTiles) -> Self {
        let module = create_module_from(device, MATMUL.name, compose(&MATMUL));
        let module4 =
            (!tiles.staged).then(|| create_module_from(device, MATMUL4.name, compose(&MATMUL4)));
        let size = std::mem::size_of::<MatmulDims>() as u64;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(MATMUL.name),
            entries: &bindings::ALL.map(|b| b.layout_entry(size)),
        });
        let pipeline_layout = pipeline_layout(device, MATMUL.name, &[&layout]);
        // The three forms (NN, NT, TN) of one module.
        let forms = |module: &wgpu::ShaderModule, name, vec4| {
            [(false, false), (false, true), (true, false)].map(|(trans_a, trans_b)| {
                sized_compute_pipeline(
                    device,
                    name,
                    &pipeline_layout,
                    (module, "matmul"),
                    tiles.workgroup_size(),
                    &tiles.constants(trans_a, trans_b, vec4),
                )
            })
        };
        Self {
            pipelines: forms(&module, MATMUL.name, false),
            vec4: module4.as_ref().map(|m| forms(m, MATMUL4.name, true)),
            layout,
            tiles,
        }
    }
}

/// A matrix registered with an [`Algorithm::ORTHOGONAL`] optimizer: its shape and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MatrixOf {
    pub group: usize,
    pub rows: usize,
    pub cols: usize,
}

impl MatrixOf {
    /// Values in one slot of a batch (the matrix, rounded up to [`SLOT_ALIGN`]).
    fn slot(&self) -> u64 {
        (self.rows as u64 * self.cols as u64).next_multiple_of(SLOT_ALIGN)
    }

    /// Rows of the iteration's `m × m` products.
    fn m(&self) -> u64 {
        self.rows.min(self.cols) as u64
    }
}

/// The most bytes one storage binding may hold on a device of `limits`.
fn binding_limit(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// Checks that a `rows × cols` matrix can be iterated on this device with `tiles`: one slot in
/// one binding, and every grid within the per-dimension limit.
pub(super) fn check_matrix(
    optimizer: &'static str,
    param: usize,
    [rows, cols]: [usize; 2],
    tiles: &MatmulTiles,
    limits: &wgpu::Limits,
) -> Result<()> {
    let m = MatrixOf {
        group: 0,
        rows,
        cols,
    };
    let binding = binding_limit(limits);
    let largest = m.slot().max(m.m() * m.m()) * 4;
    let max = u64::from(limits.max_compute_workgroups_per_dimension);
    let tile = u64::from(tiles.tm.min(tiles.tn));
    let longest = rows.max(cols) as u64;
    if largest > binding || longest.div_ceil(tile) > max {
        return Err(Error::UnsupportedShape {
            optimizer,
            param,
            shape: vec![rows, cols],
            reason: "its iteration's matrices must each fit one storage binding, and its \
                     multiplies' grids the device's workgroup limit",
        });
    }
    Ok(())
}

/// One multiply of a batch: its bind group (over its own `MatmulDims` uniform) and grid.
#[derive(Debug)]
struct Call {
    form: Form,
    /// By `matmul4.wgsl`.
    vec4: bool,
    bind_group: wgpu::BindGroup,
    grid: (u32, u32),
}

/// Every matrix of one shape in one group.
#[derive(Debug)]
pub(super) struct Batch {
    pub group: usize,
    /// The coefficients its multiplies were built with.
    coefficients: [f32; 3],
    /// Scratch: each member's update, then (odd iterations) the iteration's matrix.
    pub x0: wgpu::Buffer,
    /// `A = X Xᵀ` from x0 and from x1, `B = b·A + c·A²`, `X ← a·X + B X` from x1 into x0 and
    /// from x0 into x1.
    calls: [Call; 5],
}

/// The batches of every registered matrix, and the scratch they share.
#[derive(Debug)]
pub(super) struct NsBatches {
    pub batches: Vec<Batch>,
    /// The iteration's second matrix, shared by all batches.
    pub x1: wgpu::Buffer,
    /// Per registered parameter: its batch, and its slot's byte offset in x0 and x1.
    pub slots: Vec<(usize, u64)>,
}

impl NsBatches {
    /// The batches of `matrices` (in registration order), each group's iteration `ns`.
    pub fn build(
        device: &wgpu::Device,
        stage: &NsStage,
        matrices: &[MatrixOf],
        ns: impl Fn(usize) -> NewtonSchulz,
    ) -> Self {
        let limits = device.limits();
        let binding = binding_limit(&limits);
        let max_y = u64::from(limits.max_compute_workgroups_per_dimension);
        let tm = u64::from(stage.tiles.tm);
        // Members of each batch, in order of first appearance; a batch is closed when one more
        // member would take a binding or a grid past the limits.
        let mut members: Vec<(MatrixOf, Vec<usize>)> = Vec::new();
        for (i, m) in matrices.iter().enumerate() {
            let fits = |b: &(MatrixOf, Vec<usize>)| {
                let n = b.1.len() as u64 + 1;
                let tiles_y = (m.rows.max(m.cols) as u64).div_ceil(tm);
                b.0 == *m
                    && n * m.slot() * 4 <= binding
                    && n * m.m() * m.m() * 4 <= binding
                    && n * tiles_y <= max_y
            };
            match members.iter_mut().rev().find(|b| b.0 == *m) {
                Some(b) if fits(b) => b.1.push(i),
                _ => members.push((*m, vec![i])),
            }
        }
        let storage = |label, values: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (values * 4).max(16),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let scratch = |(m, list): &(MatrixOf, Vec<usize>)| list.len() as u64 * m.slot();
        let products = |(m, list): &(MatrixOf, Vec<usize>)| list.len() as u64 * m.m() * m.m();
        let x1 = storage(
            "wgpu-optim muon x1",
            members.iter().map(scratch).max().unwrap_or(0),
        );
        let most = members.iter().map(products).max().unwrap_or(0);
        let (gram, poly) = (
            storage("wgpu-optim muon gram", most),
            storage("wgpu-optim muon poly", most),
        );
        let mut slots = vec![(0, 0); matrices.len()];
        let batches = members
            .iter()
            .enumerate()
            .map(|(j, entry)| {
                let (m, list) = entry;
                for (k, &i) in list.iter().enumerate() {
                    slots[i] = (j, k as u64 * m.slot() * 4);
                }
                let x0 = storage("wgpu-optim muon x0", scratch(entry));
                let calls = batch_calls(
                    device,
                    stage,
                    *m,
                    list.len() as u32,
                    ns(m.group),
                    [&x0, &x1, &gram, &poly],
                );
                Batch {
                    group: m.group,
                    coefficients: ns(m.group).coefficients,
                    x0,
                    calls,
                }
            })
            .collect();
        Self { batches, x1, slots }
    }

    /// Records batch `j`'s iteration of `steps` (from its normalized matrices in x1).
    pub fn record(&self, pass: &mut impl Commands, stage: &NsStage, j: usize, steps: u32) {
        let calls = &self.batches[j].calls;
        for it in 0..steps {
            let from_x1 = it % 2 == 0;
            let order = if from_x1 { [1, 2, 3] } else { [0, 2, 4] };
            for c in order.map(|k| &calls[k]) {
                let pipelines = match &stage.vec4 {
                    Some(v) if c.vec4 => v,
                    _ => &stage.pipelines,
                };
                pass.set_pipeline(&pipelines[c.form as usize]);
                pass.set_bind_group(0, &c.bind_group, None);
                pass.dispatch(c.grid.0, c.grid.1);
            }
        }
    }

    /// Dispatches batch `j`'s iteration of `steps` records.
    pub fn dispatches(steps: u32) -> usize {
        3 * steps as usize
    }
}

/// The five multiplies of a batch of `count` matrices of `m`'s shape over
/// `[x0, x1, gram, poly]`, with `ns`'s coefficients.
fn batch_calls(
    device: &wgpu::Device,
    stage: &NsStage,
    m: MatrixOf,
    count: u32,
    ns: NewtonSchulz,
    [x0, x1, gram, poly]: [&wgpu::Buffer; 4],
) -> [Call; 5] {
    let [a, b, c] = ns.coefficients;
    let tall = m.rows > m.cols;
    let (short, long) = (m.m() as u32, m.rows.max(m.cols) as u32);
    let (slot, square) = (m.slot() as u32, short * short);
    let tiles = stage.tiles;
    // Unstaged, matrices of whole vec4s take matmul4.wgsl: an invocation's columns are RN
    // groups of 4 (RN single columns for X Xᵀ).
    let vec4 = stage.vec4.is_some() && m.rows.is_multiple_of(4) && m.cols.is_multiple_of(4);
    let call = |form: Form,
                [mm, n, k]: [u32; 3],
                strides: [u32; 4],
                (alpha, beta): (f32, f32),
                [lhs, rhs, addend, out]: [&wgpu::Buffer; 4]| {
        let tiles_m = mm.div_ceil(tiles.tm);
        let dims = MatmulDims {
            m: mm,
            n,
            k,
            tiles_m,
            strides,
            alpha,
            beta,
            _pad: [0; 2],
        };
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-optim matmul dims"),
                contents: bytemuck::bytes_of(&dims),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(MATMUL.name),
            layout: &stage.layout,
            entries: &[
                bindings::DIMS.whole(&uniform),
                bindings::LHS.whole(lhs),
                bindings::RHS.whole(rhs),
                bindings::ADDEND.whole(addend),
                bindings::OUT.whole(out),
            ],
        });
        let columns = match (vec4, form) {
            (true, Form::Nt) => tiles.tn,
            (true, _) => 4 * tiles.tn,
            (false, _) => tiles.tn,
        };
        Call {
            form,
            vec4,
            bind_group,
            grid: (n.div_ceil(columns), tiles_m * count),
        }
    };
    // A = X Xᵀ (wide), or Xᵀ X (tall: the iteration of the transpose, in place).
    let gram_of = |x| {
        let form = if tall { Form::Tn } else { Form::Nt };
        call(
            form,
            [short, short, long],
            [slot, slot, 0, square],
            (1.0, 0.0),
            [x, x, x, gram],
        )
    };
    // X ← a·X + B X (wide), or a·X + X B (tall).
    let apply = |from, to| {
        if tall {
            call(
                Form::Nn,
                [long, short, short],
                [slot, square, slot, slot],
                (1.0, a),
                [from, poly, from, to],
            )
        } else {
            call(
                Form::Nn,
                [short, long, short],
                [square, slot, slot, slot],
                (1.0, a),
                [poly, from, from, to],
            )
        }
    };
    [
        gram_of(x0),
        gram_of(x1),
        call(
            Form::Nn,
            [short, short, short],
            [square; 4],
            (c, b),
            [gram, gram, gram, poly],
        ),
        apply(x1, x0),
        apply(x0, x1),
    ]
}

impl<O: Algorithm> GpuOptimizer<O> {
    /// Sets the tile sizes of Muon's matrix multiply ([`MatmulTiles`], its pipeline
    /// constants) and rebuilds its pipelines and batches; an
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions) for tiles the device cannot run
    /// or a registered matrix they cannot grid, and for optimizers without the iteration
    /// ([`Algorithm::ORTHOGONAL`]). On error nothing changes.
    pub async fn set_matmul_tiles_async(&mut self, tiles: MatmulTiles) -> Result<()> {
        if !O::ORTHOGONAL {
            return Err(Error::InvalidOptions(format!(
                "{} runs no matrix multiplies",
                O::NAME
            )));
        }
        let limits = self.device.limits();
        tiles.validate(&limits)?;
        for (i, p) in self.params.iter().enumerate() {
            if let Some(m) = &p.matrix {
                check_matrix(O::NAME, i, [m.of.rows, m.of.cols], &tiles, &limits)?;
            }
        }
        let scopes = ErrorScopes::push(&self.device);
        let stage = NsStage::new(&self.device, tiles);
        let old = self.ns_stage.replace(stage);
        let rebuilt = self.rebuild();
        if let Err(e) = scopes
            .check(|| format!("matmul pipelines for {tiles:?}"))
            .await
        {
            self.ns_stage = old;
            return Err(e);
        }
        self.commit(rebuilt);
        self.forget_grad_bindings();
        Ok(())
    }

    /// The tile sizes of Muon's matrix multiply, for optimizers with one.
    pub fn matmul_tiles(&self) -> Option<MatmulTiles> {
        self.ns_stage.as_ref().map(|s| s.tiles)
    }

    /// Rebuilds the batches (and the bind groups over them) when a group's Newton–Schulz
    /// coefficients differ from those its batches' multiplies hold: after its options or a
    /// checkpoint changed them, not for a new rate.
    pub(super) fn refresh_iteration(&mut self) {
        let Some(ns) = &self.ns_batches else {
            return;
        };
        let groups = self.registry.scheduler.groups();
        let stale = ns.batches.iter().any(|b| {
            groups[b.group].newton_schulz().map(|n| n.coefficients) != Some(b.coefficients)
        });
        if stale {
            let rebuilt = self.rebuild();
            self.commit(rebuilt);
            self.forget_grad_bindings();
        }
    }

    /// Records only the Newton–Schulz multiplies of one step, every batch's, into a list (the
    /// bench's measure of the multiply alone). Empty for optimizers without them.
    #[doc(hidden)]
    pub fn capture_newton_schulz(&self) -> DirectCalls {
        let mut calls = DirectCalls::default();
        if let (Some(stage), Some(ns)) = (&self.ns_stage, &self.ns_batches) {
            let groups = self.registry.scheduler.groups();
            for (j, batch) in ns.batches.iter().enumerate() {
                let steps = groups[batch.group].newton_schulz().map_or(0, |n| n.steps);
                ns.record(&mut calls, stage, j, steps);
            }
        }
        calls
    }
}
