//! The "nines" chart: latency against 1/(1-percentile) on a log scale
//! (50 %, 90 %, 99 %, 99.9 %, ... evenly spaced), latency on a log scale
//! too, one line per `.hgrm` file; echo baselines dashed.

use crate::hgrm::Distribution;
use plotters::prelude::*;

/// The x axis label of 1/(1-p): "90%", "99%", "99.9%", ...
fn nines(x: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{percent:.decimals$}%")
}

fn micros(y: f64) -> String {
    if y >= 1000.0 {
        format!("{:.0} ms", y / 1000.0)
    } else if y >= 10.0 {
        format!("{y:.0} µs")
    } else {
        format!("{y:.1} µs")
    }
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Draws `series` (label, distribution) to an SVG file at `path`.
pub fn draw(
    path: &std::path::Path,
    title: &str,
    series: &[(String, Distribution)],
) -> Result<(), String> {
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, d)| {
            d.rows
                .iter()
                .filter(|r| r.percentile < 1.0 && r.value > 0.0)
                .map(|r| (1.0 / (1.0 - r.percentile), r.value))
                .collect()
        })
        .collect();
    let all = points.iter().flatten();
    let x_max = all.clone().map(|p| p.0).fold(10.0f64, f64::max);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_min = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = all.map(|p| p.1).fold(0.0f64, f64::max);
    if !y_min.is_finite() || y_max <= 0.0 {
        return Err("plot: the histograms are empty".into());
    }
    let y_min = 10f64.powf(y_min.log10().floor());
    let y_max = 10f64.powf(y_max.log10().ceil()).max(y_min * 10.0);
    let failed = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1/(1-p))")
        .y_desc("latency from intended send time")
        .x_label_formatter(&|x| nines(*x))
        .y_label_formatter(&|y| micros(*y))
        .draw()
        .map_err(|e| failed(&e))?;
    // A surface and its baseline share a colour; the baseline is dashed.
    let mut keys: Vec<String> = Vec::new();
    for ((label, _), line) in series.iter().zip(points) {
        let key = label
            .trim_start_matches("echo-")
            .trim_start_matches("health-")
            .to_string();
        let n = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let colour = COLOURS[n % COLOURS.len()];
        let dashed = label.starts_with("echo") || label.contains("health");
        let style = colour.stroke_width(if dashed { 1 } else { 2 });
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(line, 6, 4, style))
                .map_err(|e| failed(&e))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(line, style))
                .map_err(|e| failed(&e))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nines;

    #[test]
    fn axis_labels() {
        assert_eq!(nines(1.0), "0%");
        assert_eq!(nines(10.0), "90%");
        assert_eq!(nines(100.0), "99%");
        assert_eq!(nines(1000.0), "99.9%");
        assert_eq!(nines(100_000.0), "99.999%");
    }
}
