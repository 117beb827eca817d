//! `wgpu-optim`: replay PyTorch trajectories, describe adapters, benchmark optimizer steps.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{GpuContext, enumerate_adapters, pick_adapter};

mod bench_cli;
mod compare_cli;
mod muon_cli;
mod schedule_cli;

#[global_allocator]
static ALLOC: bench_cli::CountingAlloc = bench_cli::CountingAlloc;

#[derive(Parser)]
#[command(
    version,
    about = "Fused WGSL optimizer kernels with PyTorch-exact numerics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Gpu,
    Cpu,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a recorded PyTorch/optax trajectory and compare with it (exit 0 within
    /// tolerance, 1 outside, 2 on bad input).
    Replay {
        /// The case file (optim-trajectory/1 safetensors).
        case: PathBuf,
        /// Where to run it.
        #[arg(long, value_enum, default_value = "gpu")]
        backend: BackendArg,
        /// Write what was computed (result.NAME, lr) to this safetensors file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// After K steps, save a checkpoint, build a new optimizer from it alone, and continue.
        #[arg(long, value_name = "K")]
        resume_at: Option<usize>,
    },
    /// List the adapters found, the one used, and the limits that matter here.
    Info {
        /// Instead, describe this optimizer variant's memory: the state it keeps and the bytes a
        /// step moves per parameter (sgd, sgd-momentum, adam, adamw, adamw-amsgrad, rmsprop,
        /// rmsprop-centered, adagrad, radam).
        #[arg(long)]
        optimizer: Option<String>,
        /// Instead, print the bytes of state held and moved per parameter by every default
        /// variant in f32, with bf16 gradients, with bf16 state, and all in bf16 (the README's
        /// memory table).
        #[arg(long, conflicts_with = "optimizer")]
        memory: bool,
    },
    /// Time optimizer steps against a same-bytes streaming kernel (the main job).
    Bench(bench_cli::BenchArgs),
    /// Print a learning-rate schedule's key points; optionally write a CSV or plot it.
    Schedule(schedule_cli::ScheduleArgs),
    /// Run every optimizer on the MLP task and on 2-D test functions; write PNG plots and print
    /// a table of final losses.
    Compare(compare_cli::CompareArgs),
}

fn replay(
    path: &std::path::Path,
    backend: BackendArg,
    out: Option<&std::path::Path>,
    resume_at: Option<usize>,
) -> Result<bool, wgpu_optim::Error> {
    let case = Case::load(path)?;
    let backend = match backend {
        BackendArg::Gpu => Backend::Gpu,
        BackendArg::Cpu => Backend::Cpu,
    };
    let ctx = match backend {
        Backend::Gpu => Some(GpuContext::new()?),
        Backend::Cpu => None,
    };
    let ours = case::replay_resuming(&case, backend, ctx.as_ref(), resume_at)?;
    let report = case::compare(&case, &ours);
    let on = match &ctx {
        Some(c) => {
            let info = c.adapter.get_info();
            format!("gpu: {} ({:?})", info.name, info.backend)
        }
        None => "cpu reference".to_string(),
    };
    let resumed = resume_at.map_or(String::new(), |k| {
        format!(", resumed from a checkpoint after step {k}")
    });
    println!(
        "{} — {} for {} steps on {on}{resumed}",
        path.display(),
        case.optimizer_name(),
        case.steps
    );
    for p in &report.params {
        println!(
            "  {:<8} max_abs_err {:.3e}  ({:.3} of tolerance) {}",
            p.name,
            p.max_abs_err,
            p.worst_ratio,
            if p.worst_ratio <= 1.0 {
                "ok"
            } else {
                "OUTSIDE TOLERANCE"
            }
        );
    }
    println!(
        "  lr       max_rel_err {:.3e} {}",
        report.max_lr_rel_err,
        if report.max_lr_rel_err <= case::LR_RTOL {
            "ok"
        } else {
            "OUTSIDE TOLERANCE"
        }
    );
    let within = report.within_tolerance();
    println!(
        "{}",
        if within {
            "within tolerance"
        } else {
            "OUTSIDE TOLERANCE"
        }
    );
    if let Some(out) = out {
        case::write_trajectory(&case, &ours, out)?;
        println!("wrote {}", out.display());
    }
    Ok(within)
}

fn optimizer_info(name: &str) -> Result<(), wgpu_optim::Error> {
    let config = wgpu_optim::tooling::bench::variant(name)?;
    println!("{name}: {config:?}");
    for shape in [vec![1_000_000usize], vec![4096, 4096], vec![1024, 4096]] {
        let numel: usize = shape.iter().product();
        let (moved, held) = config.step_bytes(&shape);
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        println!(
            "  a tensor of shape {}: {held} bytes of f32 state ({:.4} per parameter, {:.3} GB per billion), one step moves {:.2} bytes per parameter",
            dims.join("x"),
            held as f64 / numel as f64,
            held as f64 / numel as f64,
            moved as f64 / numel as f64,
        );
    }
    if name == "muon" {
        println!(
            "  2-D parameters only (register with register_with_shape); one step also keeps, per \
             matrix, a scratch copy of its update (4 bytes per parameter), and one more copy and \
             two m x m products (m = the shorter side) shared by all batches, sized for the \
             largest batch of same-shaped matrices in a group; the step's Newton-Schulz multiplies cost ns_steps * (4m^2 n + 2m^3) FLOPs \
             per m x n matrix (bench --optimizer muon)"
        );
    }
    if name == "adafactor" {
        println!(
            "  factored over the last two dimensions: R + C values per R x C matrix (register with \
             register_with_shape); one value per element for tensors under two dimensions"
        );
    }
    Ok(())
}

fn info() -> Result<(), wgpu_optim::Error> {
    let (_instance, adapters) = enumerate_adapters();
    if adapters.is_empty() {
        return Err(wgpu_optim::Error::NoAdapter(String::new()));
    }
    let chosen = pick_adapter(&adapters).map(|a| a.get_info());
    println!("adapters found: {}", adapters.len());
    for a in &adapters {
        let info = a.get_info();
        let limits = a.limits();
        let used = Some(&info) == chosen.as_ref();
        println!(
            "{} {} — {:?}, {:?}, driver {} {}",
            if used { "*" } else { " " },
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        println!(
            "    max_buffer_size {}  max_storage_buffer_binding_size {}  max_compute_workgroups_per_dimension {}  timestamps {}",
            limits.max_buffer_size,
            limits.max_storage_buffer_binding_size,
            limits.max_compute_workgroups_per_dimension,
            a.features().contains(wgpu::Features::TIMESTAMP_QUERY)
        );
    }
    println!(
        "* = the adapter used (a hardware GPU if present, else any; WGPU_BACKEND=vulkan|gl narrows the search)"
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay {
            case,
            backend,
            out,
            resume_at,
        } => replay(case, *backend, out.as_deref(), *resume_at).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Info { optimizer, memory } => match optimizer {
            _ if *memory => {
                print!("{}", wgpu_optim::tooling::bench::memory_table());
                Ok(())
            }
            Some(name) => optimizer_info(name),
            None => info(),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench_cli::run(args).map(|()| ExitCode::SUCCESS),
        Command::Schedule(args) => schedule_cli::run(args).map(|()| ExitCode::SUCCESS),
        Command::Compare(args) => compare_cli::run(args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}
