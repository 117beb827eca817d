//! Every WGSL file parsed with naga (no GPU needed), its bindings and uniform sizes checked
//! against the Rust tables in `abi::bindings` and the structs in `abi::uniforms`.

use std::collections::BTreeMap;

use naga::{AddressSpace, ArraySize, StorageAccess, TypeInner};

use crate::abi::bindings::{
    Binding, Kind, accumulate, grad_norm, matmul, mlp, reduce, stream, swap, update,
};
use crate::abi::uniforms::{Dims, GradParams, MatmulDims};
use crate::gpu::{group0, scalars_binding, scalars_size};
use crate::kernel::{GradAccess, Kernel, Storage, Width, compose_for, compose_with};
use crate::optim::{
    Adadelta, Adafactor, Adagrad, Adam, AdamW, Adamax, Ademamix, Adopt, Algorithm, Asgd, Lamb,
    Lars, Lion, Muon, NAdam, RAdam, RmsProp, Rprop, ScheduleFreeAdamW, Sgd,
};
use crate::precision::{Dtype, Precision};

/// What one WGSL global declares: name, kind, and bytes (the element stride of a runtime-sized
/// storage array; the whole size of a uniform).
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    name: String,
    kind: Kind,
    bytes: u64,
    /// A uniform array's element stride.
    stride: Option<u64>,
}

/// Parses and validates `wgsl` with naga (types, uniformity, every expression), as a device
/// would before compiling it.
fn validate(label: &str, wgsl: &str) {
    let module = naga::front::wgsl::parse_str(wgsl)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(wgsl)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(wgsl)));
}

/// The resource bindings of `wgsl`, by (group, binding).
fn declared(label: &str, wgsl: &str) -> BTreeMap<(u32, u32), Declared> {
    let module = naga::front::wgsl::parse_str(wgsl)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(wgsl)));
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let mut out = BTreeMap::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        let inner = &module.types[var.ty].inner;
        let (kind, bytes, stride) = match var.space {
            AddressSpace::Uniform => {
                // A uniform array's stride, or that of the array a struct starts with
                // (StepUniform's scalars).
                let array = match inner {
                    TypeInner::Struct { members, .. } => {
                        members.first().map_or(inner, |m| &module.types[m.ty].inner)
                    }
                    other => other,
                };
                let stride = match array {
                    TypeInner::Array { stride, .. } => Some(u64::from(*stride)),
                    _ => None,
                };
                let size = u64::from(layouter[var.ty].size);
                (Kind::Uniform { dynamic: false }, size, stride)
            }
            AddressSpace::Storage { access } => {
                let read_only = !access.contains(StorageAccess::STORE);
                let element = match inner {
                    TypeInner::Array {
                        size: ArraySize::Dynamic,
                        stride,
                        ..
                    } => u64::from(*stride),
                    other => panic!("{label}: storage binding of {other:?}"),
                };
                (Kind::Storage { read_only }, element, None)
            }
            other => panic!("{label}: binding in {other:?}"),
        };
        out.insert(
            (rb.group, rb.binding),
            Declared {
                name: var.name.clone().unwrap_or_default(),
                kind,
                bytes,
                stride,
            },
        );
    }
    out
}

/// The bindings `common.wgsl` declares for every kernel.
const COMMON: [Binding; 4] = [
    update::PARAM,
    update::GRAD,
    update::PARTIALS,
    update::GRAD_CONTROL,
];

/// Checks that every binding of `table` is declared as stated (uniforms of `uniform_size`
/// bytes, `array<V>` of `width`), and that every binding the WGSL declares is in `table` or
/// `common.wgsl`'s.
fn check(label: &str, wgsl: &str, width: Width, table: &[Binding], uniform_size: u64) {
    check_stored(label, wgsl, width, Precision::F32, table, uniform_size);
}

/// As [`check`], with the tensors of `precision`: a 16-bit `array<V>` binding holds words, a
/// `vec2<u32>` per `vec4<f32>` (8 bytes) or a `u32` per pair at f32 width (4 bytes).
fn check_stored(
    label: &str,
    wgsl: &str,
    width: Width,
    precision: Precision,
    table: &[Binding],
    uniform_size: u64,
) {
    let declared = declared(label, wgsl);
    let plain = |b: &Binding| match b.kind {
        Kind::Uniform { .. } => Kind::Uniform { dynamic: false },
        k => k,
    };
    for b in table {
        let d = declared
            .get(&(b.group, b.binding))
            .unwrap_or_else(|| panic!("{label}: {b:?} is not declared"));
        assert_eq!(d.name, b.name, "{label}: name at {b:?}");
        assert_eq!(d.kind, plain(b), "{label}: access of {}", b.name);
        let dtype = match b.binding {
            1 => precision.param,
            2 => precision.grad,
            9 => precision.copy.unwrap_or(Dtype::F32),
            // The average of the weights is f32 whatever the state's dtype.
            13 => Dtype::F32,
            _ => precision.state,
        };
        // A quantized state is an array of u32 words (block records).
        let quantized_state = precision.quant.is_some() && (3..6).contains(&b.binding);
        let want = match b.kind {
            Kind::Uniform { .. } if *b == update::EXTENT => crate::kernel::EXTENT_BYTES,
            Kind::Uniform { .. } if *b == update::QMAPS => precision
                .quant
                .map_or(0, |q| q.uniform_bytes().len() as u64),
            Kind::Storage { .. } if quantized_state => 4,
            Kind::Uniform { .. } => uniform_size,
            Kind::Storage { .. } if b.element == 0 && dtype == Dtype::F32 => 4 * width.lanes(),
            Kind::Storage { .. } if b.element == 0 => match width {
                Width::Vec4 => 8,
                Width::Scalar => 4,
            },
            Kind::Storage { .. } => b.element,
        };
        assert_eq!(d.bytes, want, "{label}: size of {}", b.name);
    }
    for ((group, binding), d) in &declared {
        let known = table
            .iter()
            .chain(&COMMON)
            .find(|b| (b.group, b.binding) == (*group, *binding))
            .unwrap_or_else(|| panic!("{label}: {d:?} at {group}/{binding} is in no table"));
        assert_eq!(d.name, known.name, "{label}: name at {group}/{binding}");
    }
}

fn check_update<O: Algorithm>() {
    // Every dtype in each position for the elementwise kernels; f32 for the others.
    let precisions: Vec<Precision> = if O::KERNEL.single_pass {
        let mut all = vec![Precision::F32];
        for d in [Dtype::Bf16, Dtype::F16] {
            let f = Dtype::F32;
            all.extend([
                Precision::uniform(d),
                Precision::new(d, f, f),
                Precision::new(f, d, f),
                Precision::new(f, f, d),
                Precision::new(f, d, f).with_copy(d),
            ]);
            if d == Dtype::Bf16 {
                all.push(Precision::uniform(d).stochastic(3));
            }
        }
        all
    } else {
        vec![Precision::F32]
    };
    // Quantized state, at vec4 width only, with f32 and with 16-bit parameters and gradients.
    let quantized: Vec<Precision> = if O::QUANT_MAPS.is_empty() {
        Vec::new()
    } else {
        crate::Quant::ALL
            .into_iter()
            .flat_map(|q| {
                [
                    Precision::F32.quantized(q),
                    Precision::uniform(Dtype::Bf16).quantized(q),
                    Precision::new(Dtype::F32, Dtype::F16, Dtype::F32)
                        .with_copy(Dtype::Bf16)
                        .quantized(q),
                ]
            })
            .collect()
    };
    let variants = [GradAccess::ReadOnly, GradAccess::Shared]
        .into_iter()
        .flat_map(|a| [(a, Width::Vec4), (a, Width::Scalar)])
        .flat_map(|v| precisions.iter().map(move |&p| (v, p)))
        .chain(
            [GradAccess::ReadOnly, GradAccess::Shared]
                .into_iter()
                .flat_map(|a| quantized.iter().map(move |&p| ((a, Width::Vec4), p))),
        );
    // And each with the average of the weights, where it is kept (f32 parameters).
    let variants = variants.flat_map(|v| {
        let averaged = O::KERNEL.single_pass && !O::EVAL_MODE && v.1.param == Dtype::F32;
        [(v, false)]
            .into_iter()
            .chain(averaged.then_some((v, true)))
    });
    for (((access, width), precision), ema) in variants {
        let storage = Storage::f32(access, width).with(precision).with_ema(ema);
        let states = if O::KERNEL.single_pass {
            O::STATE_NAMES
        } else {
            &[]
        };
        let wgsl = compose_for(&O::KERNEL, states, O::QUANT_MAPS, &storage);
        let mut table = group0::<O>(access, precision, ema);
        table.push(scalars_binding::<O>());
        let label = format!(
            "{} ({access:?}, {width:?}, {precision}{})",
            O::NAME,
            if ema { ", ema" } else { "" }
        );
        check_stored(&label, &wgsl, width, precision, &table, scalars_size::<O>());
        validate(&label, &wgsl);
        let stride = declared(&label, &wgsl)[&(1, 0)].stride;
        assert_eq!(
            stride,
            Some(std::mem::size_of::<O::Scalars>() as u64),
            "{label}: the scalars struct"
        );
    }
}

#[test]
fn every_optimizer_kernel_matches_its_bindings_and_scalars() {
    check_update::<Sgd>();
    check_update::<Adam>();
    check_update::<AdamW>();
    check_update::<Adamax>();
    check_update::<NAdam>();
    check_update::<Adadelta>();
    check_update::<Rprop>();
    check_update::<Asgd>();
    check_update::<RmsProp>();
    check_update::<Adagrad>();
    check_update::<RAdam>();
    check_update::<Lion>();
    check_update::<Lamb>();
    check_update::<Lars>();
    check_update::<Adopt>();
    check_update::<Ademamix>();
    check_update::<ScheduleFreeAdamW>();
    check_update::<Adafactor>();
    check_update::<Muon>();
}

fn compose_file(name: &'static str, source: &'static str) -> String {
    compose_with(
        &Kernel::new(name, source),
        GradAccess::ReadOnly,
        Width::Scalar,
    )
}

#[test]
fn support_kernels_match_their_bindings() {
    let reduce_wgsl = compose_file("reduce", include_str!("../shaders/reduce.wgsl"));
    check("reduce", &reduce_wgsl, Width::Scalar, &reduce::ALL, 0);
    let grad_norm = Kernel::new("grad_norm", include_str!("../shaders/grad_norm.wgsl"));
    let mut table = grad_norm::SUMSQ.to_vec();
    table.extend(grad_norm::FINALIZE);
    for width in [Width::Vec4, Width::Scalar] {
        check(
            "grad_norm",
            &compose_with(&grad_norm, GradAccess::ReadOnly, width),
            width,
            &table,
            std::mem::size_of::<GradParams>() as u64,
        );
    }
    let bf16 = Precision::uniform(Dtype::Bf16);
    let mixed = Precision {
        grad: Dtype::F16,
        ..Precision::F32
    };
    let quantized = crate::Quant::ALL.map(|q| bf16.quantized(q));
    let streams = [Width::Vec4, Width::Scalar]
        .into_iter()
        .flat_map(|w| [Precision::F32, bf16, mixed].map(|p| (w, p)))
        .chain(quantized.map(|p| (Width::Vec4, p)));
    for (width, precision) in streams {
        let storage = Storage::f32(GradAccess::ReadOnly, width).with(precision);
        let stream_wgsl = crate::tooling::bench::stream_wgsl(&storage);
        let mut table = stream::ALL.to_vec();
        if storage.packed() {
            table.push(update::EXTENT);
        }
        if precision.quant.is_some() {
            table.push(update::QMAPS);
        }
        let label = format!("stream ({width:?}, {precision})");
        check_stored(&label, &stream_wgsl, width, precision, &table, 0);
        validate(&label, &stream_wgsl);
    }
    let accumulate_wgsl = include_str!("../shaders/accumulate.wgsl");
    check(
        "accumulate",
        accumulate_wgsl,
        Width::Scalar,
        &accumulate::ALL,
        0,
    );
    validate("accumulate", accumulate_wgsl);
    let swap_wgsl = include_str!("../shaders/swap.wgsl");
    check("swap", swap_wgsl, Width::Scalar, &swap::ALL, 0);
    validate("swap", swap_wgsl);
    let matmul_wgsl = compose_file("matmul", include_str!("../shaders/matmul.wgsl"));
    check(
        "matmul",
        &matmul_wgsl,
        Width::Scalar,
        &matmul::ALL,
        std::mem::size_of::<MatmulDims>() as u64,
    );
    validate("matmul", &matmul_wgsl);
    let matmul4_wgsl = compose_file("matmul4", include_str!("../shaders/matmul4.wgsl"));
    check(
        "matmul4",
        &matmul4_wgsl,
        Width::Vec4,
        &matmul::ALL,
        std::mem::size_of::<MatmulDims>() as u64,
    );
    validate("matmul4", &matmul4_wgsl);
    let mlp_wgsl = compose_file("mlp", include_str!("../shaders/mlp.wgsl"));
    check(
        "mlp",
        &mlp_wgsl,
        Width::Scalar,
        &mlp::ALL,
        std::mem::size_of::<Dims>() as u64,
    );
}

#[test]
fn a_wrong_table_is_caught() {
    let storage = Storage::f32(GradAccess::ReadOnly, Width::Vec4);
    let wgsl = compose_for(&Sgd::KERNEL, Sgd::STATE_NAMES, &[], &storage);
    let mut table = group0::<Sgd>(GradAccess::ReadOnly, Precision::F32, false);
    table.push(update::STEP_UNIFORM);
    let renamed = std::panic::catch_unwind(|| {
        let mut t = table.clone();
        t[2] = update::state(0, "momentum");
        check("sgd", &wgsl, Width::Vec4, &t, scalars_size::<Sgd>());
    });
    assert!(renamed.is_err(), "a misnamed state passed");
    let resized = std::panic::catch_unwind(|| check("sgd", &wgsl, Width::Vec4, &table, 16));
    assert!(resized.is_err(), "a wrong uniform size passed");
    let narrowed = std::panic::catch_unwind(|| {
        check("sgd", &wgsl, Width::Scalar, &table, scalars_size::<Sgd>())
    });
    assert!(narrowed.is_err(), "vec4 arrays passed as f32");
}
