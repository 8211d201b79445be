//! The run's results as a CSV and a PNG plot (plotters, drawing its text with a font compiled
//! into the binary, so a headless machine needs no font installed).

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::Step;

/// `offered_per_s,throughput_per_s,p50_ms,p99_ms,errors`, one row per step.
pub fn write_csv(path: &Path, steps: &[Step]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "offered_per_s,throughput_per_s,p50_ms,p99_ms,errors")?;
    for s in steps {
        writeln!(
            f,
            "{:.1},{:.1},{:.3},{:.3},{}",
            s.offered_per_s, s.throughput_per_s, s.p50_ms, s.p99_ms, s.errors
        )?;
    }
    f.flush()
}

/// plotters' text without the `ttf` feature (which needs the system's fonts through
/// fontconfig): DejaVu Sans, from the `dejavu` crate, registered once as `sans-serif`.
fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .map_err(|_| "the bundled font did not load".to_string());
    });
    result
}

/// Throughput (left axis) and p50/p99 latency (right axis) against offered load, the ideal
/// (throughput = offered) dashed, the knee as a vertical line.
pub fn write_png(
    path: &Path,
    steps: &[Step],
    knee: Option<usize>,
    title: &str,
) -> Result<(), String> {
    register_font()?;
    draw(path, steps, knee, title).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    steps: &[Step],
    knee: Option<usize>,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = steps.iter().map(|s| s.offered_per_s).fold(1.0, f64::max) * 1.05;
    let y_max = steps
        .iter()
        .map(|s| s.throughput_per_s.max(s.offered_per_s))
        .fold(1.0, f64::max)
        * 1.1;
    // Latency on a log scale: the knee is where it leaves the floor, which a linear axis
    // flattens against the overload's seconds.
    let lat_max = steps.iter().map(|s| s.p99_ms).fold(1.0, f64::max) * 2.0;
    let lat_min = steps
        .iter()
        .map(|s| s.p50_ms)
        .filter(|v| *v > 0.0)
        .fold(lat_max, f64::min)
        .min(lat_max / 10.0)
        / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("girder loadgen: {title}"), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .right_y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?
        .set_secondary_coord(0f64..x_max, (lat_min..lat_max).log_scale());
    chart
        .configure_mesh()
        .x_desc("offered load (calls/s)")
        .y_desc("throughput (calls/s)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 15))
        .draw()?;

    let grey = BLACK.mix(0.35);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (x_max, x_max)],
            6,
            4,
            grey.stroke_width(1),
        ))?
        .label("offered (ideal)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
    let series = |f: fn(&Step) -> f64| {
        steps
            .iter()
            .map(|s| (s.offered_per_s, f(s)))
            .collect::<Vec<_>>()
    };
    let blue = RGBColor(31, 90, 200);
    chart
        .draw_series(LineSeries::new(
            series(|s| s.throughput_per_s),
            blue.stroke_width(3),
        ))?
        .label("throughput")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(3)));
    chart.draw_series(
        series(|s| s.throughput_per_s)
            .into_iter()
            .map(|p| Circle::new(p, 4, blue.filled())),
    )?;
    let green = RGBColor(30, 150, 70);
    chart
        .draw_secondary_series(LineSeries::new(series(|s| s.p50_ms), green.stroke_width(2)))?
        .label("p50 latency")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], green.stroke_width(2)));
    let red = RGBColor(210, 50, 40);
    chart
        .draw_secondary_series(LineSeries::new(series(|s| s.p99_ms), red.stroke_width(2)))?
        .label("p99 latency")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], red.stroke_width(2)));
    if let Some(k) = knee {
        let at = steps[k].offered_per_s;
        let orange = RGBColor(230, 130, 0);
        chart
            .draw_series(DashedLineSeries::new(
                [(at, 0.0), (at, y_max)],
                8,
                5,
                orange.stroke_width(2),
            ))?
            .label(format!("knee: {at:.0} calls/s"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], orange.stroke_width(2)));
        chart.draw_series(std::iter::once(Text::new(
            format!("knee {at:.0}/s"),
            (at, y_max * 0.97),
            ("sans-serif", 16).into_font().color(&orange),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
