//! The bench's SVG plots (plotters): setup latency per path, throughput per path against the
//! loopback copy, and RSS per idle session per hop against the number of sessions.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::paths::PathName;
use super::report::{BenchReport, TARGET_IDLE_KIB, TARGET_STDOUT_MB_S};
use super::BenchError;

const SIZE: (u32, u32) = (1000, 540);
const SERIES: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];

fn plot_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Output(format!("plot: {e}"))
}

/// Writes every plot into `out`; returns the files written.
pub fn write_all(report: &BenchReport, out: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let setup = out.join("setup.svg");
    let throughput = out.join("throughput.svg");
    let concurrency = out.join("concurrency.svg");
    setup_plot(report, &setup)?;
    throughput_plot(report, &throughput)?;
    concurrency_plot(report, &concurrency)?;
    Ok(vec![setup, throughput, concurrency])
}

/// The paths present in the report, floor first.
fn present(report: &BenchReport) -> Vec<PathName> {
    PathName::ALL
        .into_iter()
        .filter(|p| report.paths.contains_key(p.name()))
        .collect()
}

/// Grouped bars: one group per path, one bar per series value.
fn grouped_bars(
    file: &Path,
    caption: &str,
    y_desc: &str,
    paths: &[PathName],
    series: &[(&str, Vec<f64>)],
    references: &[(&str, f64)],
) -> Result<(), BenchError> {
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(references.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    let n = paths.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(plot_err)?;
    let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (k, (label, values)) in series.iter().enumerate() {
        let color = SERIES[k % SERIES.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 - 0.4 + k as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *v)], color.filled())
            }))
            .map_err(plot_err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (&(label, value), color) in references.iter().zip([BLACK, RED].into_iter().cycle()) {
        chart
            .draw_series(LineSeries::new(
                [(-0.5, value), (n as f64 - 0.5, value)],
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

fn setup_plot(report: &BenchReport, file: &Path) -> Result<(), BenchError> {
    let paths = present(report);
    let get = |f: fn(&super::stats::Percentiles) -> f64| -> Vec<f64> {
        paths
            .iter()
            .filter_map(|p| report.paths.get(p.name()))
            .map(|r| f(&r.setup_ms))
            .collect()
    };
    grouped_bars(
        file,
        "setup latency: request → first stdout byte of echo",
        "ms",
        &paths,
        &[
            ("p50", get(|p| p.p50)),
            ("p90", get(|p| p.p90)),
            ("p99", get(|p| p.p99)),
        ],
        &[],
    )
}

fn throughput_plot(report: &BenchReport, file: &Path) -> Result<(), BenchError> {
    let paths = present(report);
    let stdout = paths
        .iter()
        .filter_map(|p| report.paths.get(p.name()))
        .map(|r| r.stdout_mb_s)
        .collect();
    let stdin = paths
        .iter()
        .filter_map(|p| report.paths.get(p.name()))
        .map(|r| r.stdin_mb_s)
        .collect();
    let caption = format!(
        "throughput, {} MiB (loopback TCP {:.0}, chain copy {:.0}, target ≥ {TARGET_STDOUT_MB_S:.0} MB/s)",
        report.shape.transfer_bytes / (1024 * 1024),
        report.loopback_mb_s,
        report.chain_copy.mb_s
    );
    grouped_bars(
        file,
        &caption,
        "MB/s",
        &paths,
        &[("stdout", stdout), ("stdin", stdin)],
        &[
            ("loopback TCP copy", report.loopback_mb_s),
            ("chain copy", report.chain_copy.mb_s),
        ],
    )
}

fn concurrency_plot(report: &BenchReport, file: &Path) -> Result<(), BenchError> {
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let levels = &report.concurrency;
    let max_sessions = levels.iter().map(|c| c.sessions).max().unwrap_or(1).max(2) as f64;
    let top = levels
        .iter()
        .flat_map(|c| c.rss_kib_per_session.values().copied())
        .fold(TARGET_IDLE_KIB, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "RSS per idle session per hop (apiserver-ws sessions)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..max_sessions * 1.2).log_scale(), 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("concurrent sessions")
        .y_desc("KiB per session")
        .draw()
        .map_err(plot_err)?;
    let hops: Vec<String> = levels
        .iter()
        .flat_map(|c| c.rss_kib_per_session.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (k, hop) in hops.iter().enumerate() {
        let color = SERIES[k % SERIES.len()];
        let points: Vec<(f64, f64)> = levels
            .iter()
            .filter_map(|c| Some((c.sessions as f64, *c.rss_kib_per_session.get(hop)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(hop.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(plot_err)?;
    }
    chart
        .draw_series(LineSeries::new(
            [
                (1.0, TARGET_IDLE_KIB),
                (max_sessions * 1.2, TARGET_IDLE_KIB),
            ],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err)?
        .label("target 64 KiB")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}
