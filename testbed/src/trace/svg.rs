//! A session's timeline as an SVG (plotters): one row per event, a bar from the previous event
//! to this one (the time the chain spent getting there), coloured by hop.

use std::path::Path;

use plotters::prelude::*;

use super::timeline::Timeline;
use crate::Hop;

#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct SvgError {
    pub path: String,
    pub message: String,
}

fn colour(hop: Hop) -> RGBColor {
    match hop {
        Hop::ApiserverProxy => RGBColor(0x1f, 0x77, 0xb4),
        Hop::KubeletStream => RGBColor(0xff, 0x7f, 0x0e),
        Hop::CriStreaming => RGBColor(0x2c, 0xa0, 0x2c),
        Hop::ShimExec => RGBColor(0xd6, 0x27, 0x28),
    }
}

/// Writes the timeline to `file`.
pub fn write(timeline: &Timeline, file: &Path) -> Result<(), SvgError> {
    let err = |e: &dyn std::fmt::Display| SvgError {
        path: file.display().to_string(),
        message: e.to_string(),
    };
    let rows = timeline.steps.len().max(1);
    let height = (80 + 22 * rows) as u32;
    let root = SVGBackend::new(file, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let total = timeline.total_ms().max(0.001);
    let labels: Vec<String> = timeline
        .steps
        .iter()
        .map(|s| format!("{} {}", s.hop.name(), s.event))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("exec session {} ({:.2} ms)", timeline.session, total),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..total * 1.12, (rows as f64 - 0.5)..-0.5f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("ms since the first event")
        .draw()
        .map_err(|e| err(&e))?;
    let steps = &timeline.steps;
    chart
        .draw_series(steps.iter().enumerate().map(|(i, s)| {
            let y = i as f64;
            let from = s.at_ms - s.delta_ms;
            // A zero-length step still shows as a thin mark.
            let to = s.at_ms.max(from + total * 0.002);
            Rectangle::new([(from, y - 0.35), (to, y + 0.35)], colour(s.hop).filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(steps.iter().enumerate().map(|(i, s)| {
            Text::new(
                format!("+{:.3} ms", s.delta_ms),
                (s.at_ms + total * 0.01, i as f64 + 0.3),
                ("sans-serif", 12),
            )
        }))
        .map_err(|e| err(&e))?;
    for hop in Hop::CHAIN {
        if timeline.hops.contains_key(&hop) {
            let c = colour(hop);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(|e| err(&e))?
                .label(hop.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
