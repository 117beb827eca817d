//! A Burn MLP trained on Burn's wgpu backend, stepped by wgpu-optim's AdamW in Burn's own
//! buffers, beside the same model stepped by Burn's `AdamWConfig` at PyTorch's defaults.
//!
//! `cargo run --release -- [--steps 600] [--lr 0.01]` trains both from the same weights on the
//! 3-class spiral and exits 1 unless wgpu-optim's run reaches 0.95 accuracy and the two runs
//! agree after their first steps within what f32 rounding order allows.
//! `cargo run --release -- --bench [--iters 10] [--width 128] [--depths 24,150]` times one
//! optimizer step of deep MLPs (two tensors per layer) with each optimizer on the same adapter.

use std::process::ExitCode;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Tensor, TensorData};
use wgpu_optim::AdamW;
use wgpu_optim::tooling::mlp::spiral;
use wgpu_optim_burn::{BurnOptimizer, Error, Shared, shared_device};

/// A ReLU MLP; `layers[i]` maps `sizes[i]` to `sizes[i + 1]`.
#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

/// SplitMix64, for weights both runs start from.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl Mlp {
    /// PyTorch's `nn.Linear` initialization, U(−1/√fan_in, 1/√fan_in), from `seed`.
    fn new(sizes: &[usize], seed: u64, device: &Device) -> Self {
        let mut rng = Rng(seed);
        let layers = sizes
            .windows(2)
            .map(|io| {
                let (i, o) = (io[0], io[1]);
                let k = 1.0 / (i as f32).sqrt();
                let mut draw = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * k).collect()
                };
                Linear {
                    weight: Param::from_data(TensorData::new(draw(i * o), [i, o]), device),
                    bias: Some(Param::from_data(TensorData::new(draw(o), [o]), device)),
                }
            })
            .collect();
        Self { layers }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// The spiral's points `[n, 2]`, one-hot labels `[n, 3]` and labels.
struct Data {
    x: Tensor<2>,
    onehot: Tensor<2>,
    labels: Vec<usize>,
}

fn data(device: &Device) -> Data {
    let rows = spiral(100, 7);
    let n = rows.len() / 3;
    let (mut xy, mut onehot, mut labels) = (Vec::new(), vec![0.0f32; n * 3], Vec::new());
    for (i, r) in rows.chunks_exact(3).enumerate() {
        xy.extend_from_slice(&r[..2]);
        let label = r[2] as usize;
        onehot[i * 3 + label] = 1.0;
        labels.push(label);
    }
    Data {
        x: Tensor::from_data(TensorData::new(xy, [n, 2]), device),
        onehot: Tensor::from_data(TensorData::new(onehot, [n, 3]), device),
        labels,
    }
}

/// Mean cross-entropy of `logits` against one-hot labels.
fn loss(logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg()
}

fn accuracy(model: &Mlp, data: &Data) -> Result<f32, Error> {
    let logits = model.forward(data.x.clone().detach());
    let values: Vec<f32> = logits
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Burn(format!("{e:?}")))?;
    let correct = values
        .chunks_exact(3)
        .zip(&data.labels)
        .filter(|(row, label)| {
            let best = (0..3)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            best == **label
        })
        .count();
    Ok(correct as f32 / data.labels.len() as f32)
}

/// Every float parameter's values, in visiting order, or the first read that failed.
struct Values(Result<Vec<Vec<f32>>, Error>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Ok(values) = &mut self.0 {
            match param.val().into_data().try_into_vec_as::<f32>() {
                Ok(v) => values.push(v),
                Err(e) => self.0 = Err(Error::Burn(format!("reading a parameter: {e:?}"))),
            }
        }
    }
}

fn values(model: &Mlp) -> Result<Vec<Vec<f32>>, Error> {
    let mut v = Values(Ok(Vec::new()));
    model.visit(&mut v);
    v.0
}

/// Which optimizer steps the model.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    WgpuOptim,
    Burn,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Self::WgpuOptim => "wgpu-optim AdamW",
            Self::Burn => "Burn AdamWConfig",
        }
    }
}

/// PyTorch's `torch.optim.AdamW` defaults but the rate.
fn adamw(lr: f64) -> AdamW {
    AdamW {
        lr,
        ..AdamW::default()
    }
}

/// Burn's AdamW at PyTorch's defaults (Burn's own are eps 1e-5, weight decay 1e-4).
fn burn_adamw() -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
}

struct Trained {
    accuracy: f32,
    loss: f32,
    /// The parameters at the start and after `EARLY` steps.
    start: Vec<Vec<f32>>,
    early: Vec<Vec<f32>>,
    ms_per_step: f64,
}

const EARLY: usize = 10;

fn train(shared: &Shared, which: Which, steps: usize, lr: f64) -> Result<Trained, Error> {
    let device = &shared.device;
    let data = data(device);
    let mut model = Mlp::new(&[2, 64, 64, 3], 42, device);
    let start = values(&model)?;
    let mut early = Vec::new();
    let mut ours = match which {
        Which::WgpuOptim => Some(BurnOptimizer::new(shared, adamw(lr))?),
        Which::Burn => None,
    };
    let mut theirs = burn_adamw().init();
    let started = Instant::now();
    for t in 0..steps {
        let grads = loss(model.forward(data.x.clone()), data.onehot.clone()).backward();
        match &mut ours {
            Some(ours) => ours.step(&model, grads)?,
            None => {
                let grads = GradientsParams::from_grads(grads, &model);
                model = theirs.step(lr, model, grads);
            }
        }
        if t + 1 == EARLY {
            early = values(&model)?;
        }
    }
    device.sync().map_err(|e| Error::Burn(format!("{e:?}")))?;
    let ms_per_step = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let final_loss =
        loss(model.forward(data.x.clone().detach()), data.onehot.clone()).into_scalar::<f32>();
    Ok(Trained {
        accuracy: accuracy(&model, &data)?,
        loss: final_loss,
        start,
        early,
        ms_per_step,
    })
}

/// The largest difference between two runs' parameters, over the largest displacement of
/// the first from where both started.
fn agreement(a: &Trained, b: &Trained) -> (f64, f64) {
    let (mut diff, mut moved) = (0.0f64, 0.0f64);
    for ((s, x), y) in a.start.iter().zip(&a.early).zip(&b.early) {
        for ((&s, &x), &y) in s.iter().zip(x).zip(y) {
            diff = diff.max(f64::from((x - y).abs()));
            moved = moved.max(f64::from((x - s).abs()));
        }
    }
    (diff, diff / moved.max(f64::MIN_POSITIVE))
}

/// Tolerance of the early agreement, relative to the displacement: Burn computes its bias
/// corrections in f32 and `sqrt(v / bc2)` where PyTorch (and wgpu-optim) use f64 and
/// `sqrt(v) / sqrt(bc2)`, and the f32 gradients from either run differ in the last bits once
/// the parameters do.
const AGREEMENT_RTOL: f64 = 1e-4;
const ACCURACY_BAR: f32 = 0.95;

fn compare(shared: &Shared, steps: usize, lr: f64) -> Result<bool, Error> {
    let ours = train(shared, Which::WgpuOptim, steps, lr)?;
    let theirs = train(shared, Which::Burn, steps, lr)?;
    for (which, t) in [(Which::WgpuOptim, &ours), (Which::Burn, &theirs)] {
        println!(
            "{:<18} accuracy {:.4}  loss {:.4}  ({steps} steps at lr {lr}, {:.1} ms per training step)",
            which.name(),
            t.accuracy,
            t.loss,
            t.ms_per_step
        );
    }
    let (diff, ratio) = agreement(&ours, &theirs);
    println!(
        "after {EARLY} steps: parameters differ by at most {diff:.3e}, {ratio:.2e} of the largest displacement (tolerance {AGREEMENT_RTOL:e})"
    );
    println!(
        "final accuracies differ by {:.4}",
        (ours.accuracy - theirs.accuracy).abs()
    );
    let ok = ours.accuracy >= ACCURACY_BAR && ratio <= AGREEMENT_RTOL;
    if !ok {
        println!("FAILED: accuracy below {ACCURACY_BAR} or the runs disagree");
    }
    Ok(ok)
}

/// Median of `times`, in ms.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One optimizer step of a `depth`-layer MLP of `width` (two tensors per layer), timed
/// from the gradients computed (and the device idle) to the step's work finished on the device,
/// for each optimizer; median ms over `iters` steps after two warm-up steps.
fn bench_one(
    shared: &Shared,
    depth: usize,
    width: usize,
    iters: usize,
) -> Result<(f64, f64), Error> {
    let device = &shared.device;
    let sync = || device.sync().map_err(|e| Error::Burn(format!("{e:?}")));
    let sizes: Vec<usize> = std::iter::repeat_n(width, depth + 1).collect();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![0.5f32; 64 * width], [64, width]),
        device,
    );
    let mut result = [0.0; 2];
    for (slot, which) in [Which::WgpuOptim, Which::Burn].into_iter().enumerate() {
        let mut model = Mlp::new(&sizes, 1, device);
        let mut ours = match which {
            Which::WgpuOptim => Some(BurnOptimizer::new(shared, adamw(1e-4))?),
            Which::Burn => None,
        };
        let mut theirs = burn_adamw().init();
        let mut times = Vec::new();
        for i in 0..iters + 2 {
            let grads = model.forward(x.clone()).powi_scalar(2).mean().backward();
            sync()?;
            let started = Instant::now();
            match &mut ours {
                Some(ours) => ours.step(&model, grads)?,
                None => {
                    let grads = GradientsParams::from_grads(grads, &model);
                    model = theirs.step(1e-4, model, grads);
                }
            }
            sync()?;
            shared
                .wgpu_device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Burn(e.to_string()))?;
            if i >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        result[slot] = median(times);
    }
    Ok((result[0], result[1]))
}

fn bench(shared: &Shared, depths: &[usize], width: usize, iters: usize) -> Result<(), Error> {
    println!(
        "optimizer step, median of {iters}: {width}-wide MLPs, AdamW, device synchronized before and after"
    );
    println!("| layers | tensors | parameters | wgpu-optim ms | Burn ms | Burn / wgpu-optim |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for &depth in depths {
        let (ours, theirs) = bench_one(shared, depth, width, iters)?;
        println!(
            "| {depth} | {} | {} | {ours:.2} | {theirs:.2} | {:.1} |",
            2 * depth,
            depth * (width * width + width),
            theirs / ours
        );
    }
    Ok(())
}

struct Args {
    bench: bool,
    steps: usize,
    lr: f64,
    iters: usize,
    width: usize,
    depths: Vec<usize>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        bench: false,
        steps: 600,
        lr: 0.01,
        iters: 10,
        width: 128,
        depths: vec![24, 150],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--bench" => a.bench = true,
            "--steps" => a.steps = number(value()?)?,
            "--lr" => a.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--iters" => a.iters = number(value()?)?.max(1),
            "--width" => a.width = number(value()?)?,
            "--depths" => {
                a.depths = value()?
                    .split(',')
                    .map(|d| {
                        d.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--depths: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.steps < EARLY {
        return Err(format!("--steps must be at least {EARLY}"));
    }
    if a.width == 0 || a.depths.contains(&0) {
        return Err("--width and --depths must be positive".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<bool, Error> {
        let shared = shared_device()?;
        let info = shared.adapter.get_info();
        println!("adapter: {} ({:?})", info.name, info.backend);
        if args.bench {
            bench(&shared, &args.depths, args.width, args.iters)?;
            Ok(true)
        } else {
            compare(&shared, args.steps, args.lr)
        }
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
