//! Prometheus metrics for BrokerX.
//!
//! - [`global`] holds the process's metrics: a `prometheus` registry for
//!   what the gateways record directly (counters, gauges and histograms
//!   whose recording is a few atomic operations, never a lock), plus
//!   *sources*: closures that read other threads' atomics at scrape time.
//!   The engine thread records only into atomics it owns
//!   ([`brokerx_engine::pipeline::PipelineStats`]); [`engine_source`]
//!   turns them into metric families when `/metrics` is scraped.
//! - [`Surface`]: the golden signals of one gateway (messages in and out
//!   by type, errors by code, latency, sessions, slow consumers).
//! - [`http`]: the `GET /metrics` listener (std thread, HTTP/1.1).
//!
//! Nothing here runs on the engine thread.

pub mod engine;
pub mod http;

pub use engine::engine_source;
pub use http::MetricsServer;
/// Re-exported so gateways name the same types without their own dependency.
pub use prometheus;

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::{Mutex, OnceLock};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Latency bucket bounds in seconds (100 ns to 10 s, 1-2-5), shared by
/// every latency histogram so panels can compare surfaces.
pub fn latency_buckets() -> Vec<f64> {
    brokerx_engine::pipeline::LATENCY_BOUNDS_NS
        .iter()
        .map(|&ns| ns as f64 / 1e9)
        .collect()
}

type Source = Box<dyn Fn(&mut Vec<MetricFamily>) + Send + Sync>;

/// The process's metrics: a registry and the scrape-time sources.
pub struct Metrics {
    registry: Registry,
    sources: Mutex<Vec<(String, Source)>>,
    gateways: Gateways,
}

/// The gateway golden-signal families, labelled by `gateway`.
struct Gateways {
    received: IntCounterVec,
    sent: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    sessions: IntGaugeVec,
    slow_consumers: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gateways = Gateways {
            received: counter(
                "brokerx_gateway_messages_received_total",
                "Messages (FIX, OUCH) or requests (REST) received, by gateway and message type",
                &["gateway", "type"],
            ),
            sent: counter(
                "brokerx_gateway_messages_sent_total",
                "Messages sent to clients, by gateway and message type (REST: responses by status class)",
                &["gateway", "type"],
            ),
            errors: counter(
                "brokerx_gateway_errors_total",
                "Rejected or failed input, by gateway and code (engine reject names, gateway codes, HTTP statuses)",
                &["gateway", "code"],
            ),
            latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "brokerx_gateway_latency_seconds",
                        "Round trip inside the gateway: request read to its first reply written (REST: request in to response out; ITCH: engine stamp to packet sent)",
                    )
                    .buckets(latency_buckets()),
                    &["gateway"],
                )
                .expect("valid metric"),
            ),
            sessions: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "brokerx_gateway_sessions",
                        "Connected sessions (FIX and OUCH logged in, REST WebSocket streams, ITCH SoupBinTCP clients)",
                    ),
                    &["gateway"],
                )
                .expect("valid metric"),
            ),
            slow_consumers: counter(
                "brokerx_gateway_slow_consumer_disconnects_total",
                "Clients disconnected because they did not keep up with their messages",
                &["gateway"],
            ),
        };
        Metrics {
            registry,
            sources: Mutex::new(Vec::new()),
            gateways,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds (or replaces, by `name`) a scrape-time source. It runs on the
    /// scraping thread and must only read atomics or take short locks
    /// that no latency-critical thread holds.
    pub fn add_source(
        &self,
        name: &str,
        source: impl Fn(&mut Vec<MetricFamily>) + Send + Sync + 'static,
    ) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|(n, _)| n != name);
        sources.push((name.to_string(), Box::new(source)));
    }

    pub fn remove_source(&self, name: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|(n, _)| n != name);
    }

    /// Every metric family, sorted by name; families of the same name
    /// from different sources are merged.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        {
            let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            for (_, source) in sources.iter() {
                source(&mut families);
            }
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut merged: Vec<MetricFamily> = Vec::with_capacity(families.len());
        for mut family in families {
            match merged.last_mut() {
                Some(last) if last.name() == family.name() => {
                    let metrics = family.take_metric();
                    last.mut_metric().extend(metrics);
                    if last.help().is_empty() {
                        last.set_help(family.help().to_string());
                    }
                }
                _ => merged.push(family),
            }
        }
        merged.retain(|f| !f.get_metric().is_empty());
        merged
    }

    /// The Prometheus text exposition of [`Metrics::gather`].
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.gather(), &mut buffer) {
            // Only a family without metrics or name fails; both are
            // filtered out above. Say so rather than serve half a page.
            return format!("# brokerx: metrics encoding failed: {error}\n");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// [`Metrics::render`] of [`global`].
pub fn render() -> String {
    global().render()
}

/// One gateway's golden signals. Cheap to clone; the label lookups of
/// per-type counters take a read lock inside `prometheus`, so gateways
/// call them from their own threads, never the engine thread (the
/// pre-resolved `latency`, `sessions` and `slow_consumers` are plain
/// atomics).
#[derive(Clone)]
pub struct Surface {
    name: &'static str,
    pub latency: Histogram,
    pub sessions: IntGauge,
    pub slow_consumers: IntCounter,
}

impl std::fmt::Debug for Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Surface({})", self.name)
    }
}

impl Surface {
    /// The surface named `name` ("fix", "ouch", "rest", "itch"); its
    /// session gauge, latency and slow-consumer series exist from now on.
    pub fn new(name: &'static str) -> Surface {
        let g = &global().gateways;
        Surface {
            name,
            latency: g.latency.with_label_values(&[name]),
            sessions: g.sessions.with_label_values(&[name]),
            slow_consumers: g.slow_consumers.with_label_values(&[name]),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn received(&self, kind: &str) {
        global()
            .gateways
            .received
            .with_label_values(&[self.name, kind])
            .inc();
    }

    pub fn sent(&self, kind: &str) {
        self.sent_n(kind, 1);
    }

    pub fn sent_n(&self, kind: &str, n: u64) {
        global()
            .gateways
            .sent
            .with_label_values(&[self.name, kind])
            .inc_by(n);
    }

    pub fn error(&self, code: &str) {
        global()
            .gateways
            .errors
            .with_label_values(&[self.name, code])
            .inc();
    }

    /// A counter handle for hot paths (resolve once, increment often).
    pub fn received_counter(&self, kind: &str) -> IntCounter {
        global()
            .gateways
            .received
            .with_label_values(&[self.name, kind])
    }

    pub fn sent_counter(&self, kind: &str) -> IntCounter {
        global().gateways.sent.with_label_values(&[self.name, kind])
    }

    pub fn error_counter(&self, code: &str) -> IntCounter {
        global()
            .gateways
            .errors
            .with_label_values(&[self.name, code])
    }

    pub fn observe_latency(&self, elapsed: std::time::Duration) {
        self.latency.observe(elapsed.as_secs_f64());
    }
}

/// Builders for the families a source emits.
pub mod family {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
        pairs
            .iter()
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect()
    }

    fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family
    }

    /// A counter family with one series per `(labels, value)`.
    pub fn counter(name: &str, help: &str, series: &[(&[(&str, &str)], f64)]) -> MetricFamily {
        let mut out = family(name, help, MetricType::COUNTER);
        for (pairs, value) in series {
            let mut metric = proto::Metric::from_label(labels(pairs));
            let mut counter = proto::Counter::default();
            counter.set_value(*value);
            metric.set_counter(counter);
            out.mut_metric().push(metric);
        }
        out
    }

    /// A gauge family with one series per `(labels, value)`.
    pub fn gauge(name: &str, help: &str, series: &[(&[(&str, &str)], f64)]) -> MetricFamily {
        let mut out = family(name, help, MetricType::GAUGE);
        for (pairs, value) in series {
            let mut metric = proto::Metric::from_label(labels(pairs));
            let mut gauge = proto::Gauge::default();
            gauge.set_value(*value);
            metric.set_gauge(gauge);
            out.mut_metric().push(metric);
        }
        out
    }

    /// One histogram series: `buckets` are `(upper bound, count of values
    /// at or below it)`, cumulative and ascending; `count` includes values
    /// above the last bound.
    pub struct HistogramSeries<'a> {
        pub labels: &'a [(&'a str, &'a str)],
        pub buckets: Vec<(f64, u64)>,
        pub sum: f64,
        pub count: u64,
    }

    pub fn histogram(name: &str, help: &str, series: Vec<HistogramSeries<'_>>) -> MetricFamily {
        let mut out = family(name, help, MetricType::HISTOGRAM);
        for s in series {
            let mut metric = proto::Metric::from_label(labels(s.labels));
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(s.count);
            histogram.set_sample_sum(s.sum);
            histogram.set_bucket(
                s.buckets
                    .iter()
                    .map(|&(bound, count)| {
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(bound);
                        bucket.set_cumulative_count(count);
                        bucket
                    })
                    .collect(),
            );
            metric.set_histogram(histogram);
            out.mut_metric().push(metric);
        }
        out
    }

    /// A histogram series from an engine [`AtomicHistogram`] snapshot,
    /// with bounds and sum divided by `divisor` (1e9: ns to seconds).
    ///
    /// [`AtomicHistogram`]: brokerx_engine::pipeline::AtomicHistogram
    pub fn from_snapshot<'a>(
        labels: &'a [(&'a str, &'a str)],
        snapshot: &brokerx_engine::pipeline::HistogramSnapshot,
        divisor: f64,
    ) -> HistogramSeries<'a> {
        let mut cumulative = 0;
        let buckets = snapshot
            .bounds
            .iter()
            .zip(&snapshot.counts)
            .map(|(&bound, &count)| {
                cumulative += count;
                (bound as f64 / divisor, cumulative)
            })
            .collect();
        HistogramSeries {
            labels,
            buckets,
            sum: snapshot.sum as f64 / divisor,
            count: snapshot.count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_registry_render_together_sorted_and_merged() {
        let metrics = Metrics::new();
        metrics.gateways.sessions.with_label_values(&["fix"]).set(2);
        metrics.add_source("a", |out| {
            out.push(family::counter(
                "zz_total",
                "z",
                &[(&[("k", "1")], 1.0), (&[("k", "2")], 2.0)],
            ));
        });
        metrics.add_source("b", |out| {
            out.push(family::counter("zz_total", "z", &[(&[("k", "3")], 3.0)]));
            out.push(family::gauge("empty", "no series", &[]));
        });
        let text = metrics.render();
        assert!(
            text.contains("brokerx_gateway_sessions{gateway=\"fix\"} 2\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE zz_total counter").count(), 1, "{text}");
        assert!(text.contains("zz_total{k=\"3\"} 3\n"), "{text}");
        assert!(!text.contains("empty"), "{text}");
        metrics.add_source("b", |_| {});
        assert!(!metrics.render().contains("zz_total{k=\"3\"}"));
    }

    #[test]
    fn engine_histograms_become_cumulative_buckets_in_seconds() {
        let histogram = brokerx_engine::pipeline::AtomicHistogram::latency();
        histogram.record(150);
        histogram.record(3_000);
        histogram.record(20_000_000_000);
        let series = family::from_snapshot(&[], &histogram.snapshot(), 1e9);
        assert_eq!(series.count, 3);
        assert_eq!(series.buckets[0], (100e-9, 0));
        assert_eq!(series.buckets[1], (200e-9, 1));
        assert_eq!(series.buckets.last().unwrap(), &(10.0, 2));
        let text = {
            let mut b = Vec::new();
            TextEncoder::new()
                .encode(&[family::histogram("h_seconds", "h", vec![series])], &mut b)
                .unwrap();
            String::from_utf8(b).unwrap()
        };
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_count 3\n"), "{text}");
    }
}
