//! `wgpu-optim compare`: every optimizer on the MLP task and on classic 2-D test functions, as
//! loss curves, trajectories over contours, and a table of final losses.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use wgpu_optim::Precision;
use wgpu_optim::tooling::mlp::{spiral, train_any};
use wgpu_optim::tooling::testfns::{TestFn, contestants, descend};
use wgpu_optim::{Error, GpuContext, Result};

use crate::schedule_cli::register_font;

/// Options of `wgpu-optim compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Directory for the PNG files (created if missing).
    #[arg(long, default_value = "compare")]
    out: PathBuf,
    /// Full-batch steps on the MLP task (0 skips it).
    #[arg(long, default_value_t = 300)]
    mlp_steps: u64,
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidOptions(format!("plotting failed: {e}"))
}

/// Loss curves of every contestant; logarithmic when every value is positive.
fn plot_losses(path: &Path, title: &str, curves: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let values = || {
        curves
            .iter()
            .flat_map(|c| c.1.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
    };
    let (lo, hi) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc("loss")
                .draw()
                .map_err(plot_err)?;
            for (i, (name, points)) in curves.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied().filter(|p| p.1.is_finite()),
                        color.stroke_width(2),
                    ))
                    .map_err(plot_err)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }};
    }
    if lo > 0.0 {
        draw!(
            builder
                .build_cartesian_2d(0.0..x_max, (lo * 0.5..hi * 2.0).log_scale())
                .map_err(plot_err)?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(0.0..x_max, lo..hi)
                .map_err(plot_err)?
        );
    }
    root.present().map_err(plot_err)
}

/// The function's contours as a shaded background, with each contestant's path over it.
fn plot_paths(path: &Path, f: TestFn, paths: &[(&str, Vec<[f64; 3]>)]) -> Result<()> {
    let (xr, yr) = f.bounds();
    let root = BitMapBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: paths from {:?}", f.name(), f.start()),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(xr.clone(), yr.clone())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("y")
        .draw()
        .map_err(plot_err)?;
    let n = 120;
    let cell =
        |i: usize, r: &std::ops::Range<f64>| r.start + (r.end - r.start) * i as f64 / n as f64;
    let mut grid = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let v = f
                .value_grad(cell(i, &xr) + 0.5 / n as f64, cell(j, &yr) + 0.5 / n as f64)
                .0;
            grid.push((i, j, v));
        }
    }
    let shade = |v: f64| {
        if f == TestFn::Saddle {
            v
        } else {
            (1.0 + v).ln()
        }
    };
    let (lo, hi) = grid
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), g| {
            (lo.min(shade(g.2)), hi.max(shade(g.2)))
        });
    chart
        .draw_series(grid.iter().map(|&(i, j, v)| {
            let t = (shade(v) - lo) / (hi - lo).max(f64::MIN_POSITIVE);
            // Banded shading: contour lines appear where the bands change.
            let band = (t * 12.0).floor() / 12.0;
            let c = HSLColor(0.6 - 0.6 * band, 0.55, 0.92 - 0.45 * band);
            Rectangle::new(
                [
                    (cell(i, &xr), cell(j, &yr)),
                    (cell(i + 1, &xr), cell(j + 1, &yr)),
                ],
                c.filled(),
            )
        }))
        .map_err(plot_err)?;
    for (i, (name, points)) in paths.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let inside = points
            .iter()
            .take_while(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| (p[0].clamp(xr.start, xr.end), p[1].clamp(yr.start, yr.end)));
        chart
            .draw_series(LineSeries::new(inside, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Runs `wgpu-optim compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        path: args.out.clone(),
        source,
    })?;
    register_font()?;
    let names: Vec<&str> = contestants(None).iter().map(|c| c.0).collect();
    let mut table: Vec<Vec<String>> = names.iter().map(|n| vec![n.to_string()]).collect();
    for f in TestFn::ALL {
        let mut paths = Vec::new();
        for (k, (name, config)) in contestants(Some(f)).into_iter().enumerate() {
            let path = descend(&config, f, f.steps())?;
            let last = path.last().map_or(f64::NAN, |p| p[2]);
            table[k].push(format!("{last:.3e}"));
            paths.push((name, path));
        }
        let curves: Vec<(&str, Vec<(f64, f64)>)> = paths
            .iter()
            .map(|(n, p)| {
                (
                    *n,
                    p.iter()
                        .enumerate()
                        .map(|(i, q)| (i as f64, q[2]))
                        .collect(),
                )
            })
            .collect();
        let (traj, loss) = (
            args.out.join(format!("{}_paths.png", f.name())),
            args.out.join(format!("{}_loss.png", f.name())),
        );
        plot_paths(&traj, f, &paths)?;
        plot_losses(&loss, &format!("{}: f(x, y) per step", f.name()), &curves)?;
        println!("wrote {} and {}", traj.display(), loss.display());
    }
    if args.mlp_steps > 0 {
        let ctx = GpuContext::new()?;
        let data = spiral(100, 7);
        let mut curves = Vec::new();
        for (k, (name, config)) in contestants(None).into_iter().enumerate() {
            let steps = (args.mlp_steps, 5);
            let run = train_any(
                &ctx,
                &data,
                config,
                None,
                steps,
                Precision::F32,
                |_, _, _| {},
            )?;
            table[k].push(format!("{:.3e}", run.final_loss));
            table[k].push(format!("{:.3}", run.accuracy));
            curves.push((
                name,
                run.losses
                    .iter()
                    .map(|&(s, l)| (s as f64, f64::from(l)))
                    .collect(),
            ));
        }
        let path = args.out.join("mlp_loss.png");
        plot_losses(&path, "MLP on the spiral: training loss", &curves)?;
        println!("wrote {}", path.display());
    }
    let mut header = vec!["optimizer".to_string()];
    header.extend(TestFn::ALL.iter().map(|f| f.name().to_string()));
    if args.mlp_steps > 0 {
        header.extend(["mlp loss".to_string(), "mlp acc".to_string()]);
    }
    println!("\nfinal losses");
    println!(
        "{}",
        header
            .iter()
            .map(|h| format!("{h:>13}"))
            .collect::<String>()
    );
    for row in &table {
        println!(
            "{}",
            row.iter().map(|c| format!("{c:>13}")).collect::<String>()
        );
    }
    Ok(())
}
