//! HdrHistogram's percentile distribution text (`.hgrm`), as Java's
//! `outputPercentileDistribution` and wrk2's `--latency` print it: Value,
//! Percentile, TotalCount, 1/(1-Percentile), five ticks per half
//! distance, then the mean, deviation, max and count. Values here are in
//! microseconds (the histograms record nanoseconds).

use hdrhistogram::Histogram;

/// Nanoseconds per printed unit (µs).
const SCALE: f64 = 1000.0;

pub fn render(histogram: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if histogram.is_empty() {
        out.push_str("#[Mean    =        0.000, StdDeviation   =        0.000]\n");
        out.push_str("#[Max     =        0.000, Total count    =              0]\n");
        out.push_str(&format!(
            "#[Buckets = {:>12}, SubBuckets     = {:>14}]\n",
            histogram.buckets(),
            sub_buckets(histogram)
        ));
        return out;
    }
    let mut total = 0u64;
    for step in histogram.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / SCALE;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            out.push_str(&format!(
                "{value:12.3} {quantile:2.12} {total:10} {:14.2}\n",
                1.0 / (1.0 - quantile)
            ));
        } else {
            out.push_str(&format!("{value:12.3} {quantile:2.12} {total:10}\n"));
        }
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
        histogram.mean() / SCALE,
        histogram.stdev() / SCALE
    ));
    out.push_str(&format!(
        "#[Max     = {:12.3}, Total count    = {:14}]\n",
        histogram.max() as f64 / SCALE,
        histogram.len()
    ));
    out.push_str(&format!(
        "#[Buckets = {:12}, SubBuckets     = {:14}]\n",
        histogram.buckets(),
        sub_buckets(histogram)
    ));
    out
}

/// Java's sub-bucket count for the histogram's precision.
fn sub_buckets(histogram: &Histogram<u64>) -> u64 {
    let largest = 2.0 * 10f64.powi(i32::from(histogram.sigfig()));
    2u64.pow(largest.log2().ceil() as u32)
}

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub value: f64,
    pub percentile: f64,
    pub total_count: u64,
}

/// A parsed `.hgrm`: its rows and the `Total count` of its footer.
#[derive(Debug)]
pub struct Distribution {
    pub rows: Vec<Row>,
    pub total_count: u64,
}

/// Parses the text written by `render` (or by HdrHistogram / wrk2).
pub fn parse(text: &str) -> Result<Distribution, String> {
    let mut rows = Vec::new();
    let mut total_count = None;
    let mut header = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("Value") {
            header = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[") {
            if let Some(at) = rest.find("Total count") {
                let count = rest[at..]
                    .trim_start_matches("Total count")
                    .trim_start_matches([' ', '='])
                    .trim_end_matches(']')
                    .trim();
                total_count = count.parse().ok();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&columns.len()) {
            return Err(format!("line {}: expected 3 or 4 columns: {line:?}", n + 1));
        }
        let bad = || format!("line {}: not a number: {line:?}", n + 1);
        let row = Row {
            value: columns[0].parse().map_err(|_| bad())?,
            percentile: columns[1].parse().map_err(|_| bad())?,
            total_count: columns[2].parse().map_err(|_| bad())?,
        };
        if !(0.0..=1.0).contains(&row.percentile) {
            return Err(format!("line {}: percentile outside 0..1: {line:?}", n + 1));
        }
        rows.push(row);
    }
    if !header {
        return Err(
            "no `Value Percentile TotalCount` header: not a percentile distribution".into(),
        );
    }
    let total_count = total_count.ok_or("no `Total count` footer")?;
    if let Some(last) = rows.last() {
        if last.total_count != total_count {
            return Err(format!(
                "last row counts {} but the footer says {total_count}",
                last.total_count
            ));
        }
    }
    Ok(Distribution { rows, total_count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut h = crate::measure::histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1_000).unwrap();
        }
        let text = render(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let d = parse(&text).unwrap();
        assert_eq!(d.total_count, 10_000);
        assert_eq!(d.rows.last().unwrap().percentile, 1.0);
        let p50 = d.rows.iter().find(|r| r.percentile >= 0.5).unwrap().value;
        assert!((4_990.0..=5_010.0).contains(&p50), "{p50}");
        let empty = parse(&render(&crate::measure::histogram())).unwrap();
        assert_eq!(empty.total_count, 0);
        assert!(parse("garbage").is_err());
        assert!(parse("Value Percentile\n1 2 3\n").is_err());
    }
}
