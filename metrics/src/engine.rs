//! The engine, journal and risk families, read from the pipeline's atomics
//! at scrape time (the engine thread never sees the scrape).

use crate::family::{self, HistogramSeries};
use brokerx_engine::pipeline::{Pipeline, MAX_REJECT_CODE, SERVICE_SAMPLE_EVERY};
use brokerx_engine::RejectCode;
use prometheus::proto::MetricFamily;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Registers the engine source on [`crate::global`]: commands, batches,
/// ring, service time, journal, durable lag, rejects by code and the
/// per-symbol books. `symbols`: symbol id to name, for the `symbol`
/// label (ids not in it are labelled by number).
pub fn engine_source(pipeline: Arc<Pipeline>, symbols: BTreeMap<u32, String>) {
    crate::global().add_source("engine", move |out| collect(&pipeline, &symbols, out));
}

fn load(value: &std::sync::atomic::AtomicU64) -> f64 {
    value.load(Ordering::Relaxed) as f64
}

/// The families of one pipeline.
pub fn collect(pipeline: &Pipeline, symbols: &BTreeMap<u32, String>, out: &mut Vec<MetricFamily>) {
    let stats = pipeline.stats();
    let none: &[(&str, &str)] = &[];
    let counters: [(&str, &str, f64); 7] = [
        (
            "brokerx_engine_commands_total",
            "Commands sequenced, journaled and applied",
            load(&stats.commands),
        ),
        (
            "brokerx_engine_batches_total",
            "Batches (group commits)",
            load(&stats.batches),
        ),
        (
            "brokerx_engine_busy_rejections_total",
            "Submissions refused because the inbound ring was full",
            load(&stats.busy_rejections),
        ),
        (
            "brokerx_engine_events_total",
            "Events published by the engine",
            load(&stats.events),
        ),
        (
            "brokerx_engine_consumers_cut_off_total",
            "Engine sessions cut off because their output queue was full (slow consumers)",
            load(&stats.consumers_cut_off),
        ),
        (
            "brokerx_journal_bytes_written_total",
            "Journal bytes written (record headers included)",
            load(&stats.journal_bytes),
        ),
        (
            "brokerx_journal_records_written_total",
            "Journal records written",
            load(&stats.journal_records),
        ),
    ];
    for (name, help, value) in counters {
        out.push(family::counter(name, help, &[(none, value)]));
    }
    out.push(family::counter(
        "brokerx_engine_snapshots_total",
        "Snapshots written",
        &[(none, load(&stats.snapshots))],
    ));
    let sequenced = stats.sequenced_seq.load(Ordering::Acquire);
    let durable = stats.durable_seq.load(Ordering::Acquire);
    let gauges: [(&str, &str, f64); 5] = [
        (
            "brokerx_engine_ring_depth",
            "Commands waiting in the inbound ring",
            pipeline.ring_depth() as f64,
        ),
        (
            "brokerx_engine_ring_capacity",
            "Capacity of the inbound ring",
            pipeline.ring_capacity() as f64,
        ),
        (
            "brokerx_engine_sequenced_seq",
            "Last sequence number stamped",
            sequenced as f64,
        ),
        (
            "brokerx_journal_durable_seq",
            "Last sequence number durable in the journal",
            durable as f64,
        ),
        (
            "brokerx_journal_durable_lag",
            "Commands sequenced but not yet durable (sequenced minus durable)",
            sequenced.saturating_sub(durable) as f64,
        ),
    ];
    for (name, help, value) in gauges {
        out.push(family::gauge(name, help, &[(none, value)]));
    }
    out.push(family::histogram(
        "brokerx_engine_batch_size",
        "Commands per batch (one group commit each)",
        vec![family::from_snapshot(
            none,
            &stats.batch_size.snapshot(),
            1.0,
        )],
    ));
    out.push(family::histogram(
        "brokerx_engine_service_seconds",
        &format!(
            "State-machine service time of one command (Engine::apply), sampled: one command in {SERVICE_SAMPLE_EVERY}"
        ),
        vec![family::from_snapshot(none, &stats.service_ns.snapshot(), 1e9)],
    ));
    out.push(family::histogram(
        "brokerx_journal_fsync_seconds",
        "Group commit latency: the batch's write plus its fdatasync (with --durability none, the write only)",
        vec![family::from_snapshot(none, &stats.commit_ns.snapshot(), 1e9)],
    ));

    // Rejects: every known code, zeros included, so dashboards and alerts
    // see the series before the first reject.
    let rejects: Vec<(String, &'static str, &'static str, f64)> = RejectCode::ALL
        .iter()
        .filter(|code| (code.code() as usize) < MAX_REJECT_CODE)
        .map(|code| {
            let stage = if code.code() < 200 {
                "risk"
            } else {
                "matching"
            };
            (
                code.code().to_string(),
                code.name(),
                stage,
                load(&stats.rejects[code.code() as usize]),
            )
        })
        .collect();
    let labels: Vec<[(&str, &str); 3]> = rejects
        .iter()
        .map(|(code, reason, stage, _)| {
            [
                ("code", code.as_str()),
                ("reason", *reason),
                ("stage", *stage),
            ]
        })
        .collect();
    let series: Vec<(&[(&str, &str)], f64)> = labels
        .iter()
        .zip(&rejects)
        .map(|(labels, r)| (&labels[..], r.3))
        .collect();
    out.push(family::counter(
        "brokerx_engine_rejects_total",
        "Commands the engine rejected, by reject code (stage risk: 1xx, pre-trade risk; matching: 2xx, reference data and book)",
        &series,
    ));

    // Books, as the engine thread last published them.
    let mut names = Vec::new();
    for (id, book) in stats.books.symbols.iter().enumerate() {
        if !book.present.load(Ordering::Acquire) {
            continue;
        }
        let name = symbols
            .get(&(id as u32))
            .cloned()
            .unwrap_or_else(|| id.to_string());
        names.push((name, book));
    }
    let mut open = Vec::new();
    let mut levels = Vec::new();
    let mut qty = Vec::new();
    type Labels<'a, const N: usize> = [(&'a str, &'a str); N];
    let label_sets: Vec<(Labels<1>, Labels<2>, Labels<2>)> = names
        .iter()
        .map(|(name, _)| {
            (
                [("symbol", name.as_str())],
                [("symbol", name.as_str()), ("side", "bid")],
                [("symbol", name.as_str()), ("side", "ask")],
            )
        })
        .collect();
    for ((_, book), (symbol, bid, ask)) in names.iter().zip(&label_sets) {
        open.push((&symbol[..], load(&book.open_orders)));
        levels.push((&bid[..], load(&book.bid_levels)));
        levels.push((&ask[..], load(&book.ask_levels)));
        qty.push((&bid[..], load(&book.bid_qty)));
        qty.push((&ask[..], load(&book.ask_qty)));
    }
    out.push(family::gauge(
        "brokerx_book_open_orders",
        "Orders resting in the symbol's book (published by the engine thread at most once a second)",
        &open,
    ));
    out.push(family::gauge(
        "brokerx_book_depth_levels",
        "Non-empty price levels per side of the symbol's book",
        &levels,
    ));
    out.push(family::gauge(
        "brokerx_book_depth_quantity",
        "Open quantity per side of the symbol's book",
        &qty,
    ));
}

/// A histogram series from an HdrHistogram of nanoseconds (the ITCH
/// publisher's), on the shared latency buckets.
pub fn hdr_series<'a>(
    labels: &'a [(&'a str, &'a str)],
    histogram: &hdrhistogram::Histogram<u64>,
) -> HistogramSeries<'a> {
    let buckets = brokerx_engine::pipeline::LATENCY_BOUNDS_NS
        .iter()
        .map(|&bound| {
            let below = if histogram.is_empty() {
                0
            } else {
                histogram.count_between(0, bound)
            };
            (bound as f64 / 1e9, below)
        })
        .collect();
    let count = histogram.len();
    HistogramSeries {
        labels,
        buckets,
        sum: histogram.mean() * count as f64 / 1e9,
        count,
    }
}
