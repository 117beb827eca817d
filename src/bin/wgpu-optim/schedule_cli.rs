//! `wgpu-optim schedule`: print, tabulate and plot a learning-rate schedule.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use wgpu_optim::tooling::write_atomically;
use wgpu_optim::{Error, Result, Schedule};

/// Options of `wgpu-optim schedule`.
#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// The schedule: its JSON (`{"name": "cosine", "t_max": 100, "eta_min": 0}`), a JSON file,
    /// or a preset: warmup-cosine, wsd, inverse-sqrt, warmup-constant.
    spec: String,
    /// Steps to evaluate (for presets, the length of the run).
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// Base (peak) learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Presets: warm-up steps (default: 5% of the run).
    #[arg(long)]
    warmup: Option<u64>,
    /// warmup-cosine and wsd: final rate as a fraction of the peak.
    #[arg(long, default_value_t = 0.1)]
    floor: f64,
    /// wsd: decay steps at the end of the run (default: 20% of the run).
    #[arg(long)]
    decay: Option<u64>,
    /// Write `step,lr` for every step to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw the curve to this PNG or SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn parse_spec(args: &ScheduleArgs) -> Result<Schedule> {
    let warmup = args.warmup.unwrap_or(args.steps / 20);
    match args.spec.as_str() {
        "warmup-cosine" => Schedule::warmup_cosine(args.lr, warmup, args.steps, args.floor),
        "wsd" => Schedule::warmup_stable_decay(
            warmup,
            args.decay.unwrap_or(args.steps / 5),
            args.steps,
            args.floor,
        ),
        "inverse-sqrt" => Schedule::inverse_sqrt(warmup.max(1)),
        "warmup-constant" => Schedule::warmup_constant(warmup.max(1)),
        json if json.trim_start().starts_with('{') => json.parse(),
        path => std::fs::read_to_string(path)
            .map_err(|source| Error::Io {
                path: path.into(),
                source,
            })?
            .parse(),
    }
}

/// Fonts tried, in order, for the chart's text (plotters draws text itself).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system TrueType font as plotters' `sans-serif`.
pub(crate) fn register_font() -> Result<()> {
    let from_env = std::env::var("WGPU_OPTIM_FONT").ok();
    let path = from_env
        .iter()
        .map(String::as_str)
        .chain(FONTS.iter().copied())
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| {
            Error::InvalidOptions(
                "plotting needs a TrueType font: install fonts-dejavu-core or set WGPU_OPTIM_FONT"
                    .into(),
            )
        })?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| Error::InvalidOptions(format!("{path} is not a usable TrueType font")))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    points: &[(u64, f64)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let plot_err =
        |e: &dyn std::fmt::Display| Error::InvalidOptions(format!("plotting failed: {e}"));
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let max_lr = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let last = points.last().map_or(1, |p| p.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(1u64..last.max(2), 0.0..max_lr * 1.05 + f64::MIN_POSITIVE)
        .map_err(|e| plot_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("learning rate")
        .y_label_formatter(&|v| format!("{v:.2e}"))
        .draw()
        .map_err(|e| plot_err(&e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

fn plot(path: &Path, title: &str, points: &[(u64, f64)]) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("png" | "svg")) {
        return Err(Error::InvalidOptions(format!(
            "--plot must name a .png or .svg file, got {}",
            path.display()
        )));
    }
    register_font()?;
    // The image encoder picks the format by extension, so the temporary file keeps it.
    let tmp = path.with_extension(format!("tmp.{}", ext.as_deref().unwrap_or("png")));
    let size = (960, 540);
    let drawn = if ext.as_deref() == Some("png") {
        draw(
            BitMapBackend::new(&tmp, size).into_drawing_area(),
            title,
            points,
        )
    } else {
        draw(
            SVGBackend::new(&tmp, size).into_drawing_area(),
            title,
            points,
        )
    };
    drawn
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })
        })
        .inspect_err(|_| {
            std::fs::remove_file(&tmp).ok();
        })
}

/// Runs `wgpu-optim schedule`.
pub fn run(args: &ScheduleArgs) -> Result<()> {
    if args.steps == 0 {
        return Err(Error::InvalidOptions("--steps must be > 0".into()));
    }
    let schedule = parse_spec(args)?;
    // Step t (1-based) of the optimizer runs at epoch t - 1 of the schedule.
    let points: Vec<(u64, f64)> = (0..args.steps)
        .map(|e| Ok((e + 1, schedule.lr(args.lr, e)?)))
        .collect::<Result<_>>()?;
    let json =
        serde_json::to_string(&schedule).map_err(|e| Error::InvalidOptions(e.to_string()))?;
    println!("schedule {json}");
    println!("base lr {}, {} steps", args.lr, args.steps);
    let mut shown = vec![
        0,
        args.steps / 4,
        args.steps / 2,
        3 * args.steps / 4,
        args.steps - 1,
    ];
    for e in schedule.key_epochs(args.steps) {
        shown.extend([e.saturating_sub(1), e]);
    }
    shown.sort_unstable();
    shown.dedup();
    println!("{:>8}  lr", "step");
    for e in shown {
        println!("{:>8}  {:.6e}", e + 1, points[e as usize].1);
    }
    let (lo, hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    println!("min {lo:.6e}  max {hi:.6e}");
    if let Some(csv) = &args.csv {
        let mut text = String::from("step,lr\n");
        for (step, lr) in &points {
            text.push_str(&format!("{step},{lr:e}\n"));
        }
        write_atomically(csv, text.as_bytes())?;
        println!("wrote {}", csv.display());
    }
    if let Some(path) = &args.plot {
        let name = if args.spec.trim_start().starts_with('{') || Path::new(&args.spec).is_file() {
            json.split('"').nth(3).unwrap_or("schedule")
        } else {
            args.spec.as_str()
        };
        plot(path, &format!("{name} learning-rate schedule"), &points)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
