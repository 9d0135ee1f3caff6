//! One timed pass of one book, for profilers: builds the scenario,
//! resolves caller ids, prefills and warms up, then applies the measured
//! ops inside `measured_pass` (never inlined, so that
//! `valgrind --tool=callgrind --toggle-collect='*measured_pass*'` counts
//! only those ops).
//!
//! `cargo build --release -p brokerx-benches --example profile_pass`
//! `target/release/examples/profile_pass [brokerx|matchcore] DEPTH OPS`

use brokerx_benches::{
    apply_all_resolved, BookUnderTest, Handle, Op, Resolution, Scenario, WorkloadConfig,
};
use std::time::Instant;

#[inline(never)]
fn measured_pass<B: BookUnderTest>(book: &mut B, ops: &[Op], handles: &[Handle]) {
    apply_all_resolved(book, ops, handles);
}

fn go<B: BookUnderTest>(sc: &Scenario, r: &Resolution, mut book: B) {
    apply_all_resolved(&mut book, &sc.prefill, &r.prefill);
    apply_all_resolved(&mut book, &sc.warmup, &r.warmup);
    let start = Instant::now();
    measured_pass(&mut book, &sc.measured, &r.measured);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {:.2} M ops/s, {} resting",
        book.name(),
        sc.measured.len() as f64 / secs / 1e6,
        book.resting()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let book = args.get(1).map_or("brokerx", String::as_str);
    let depth: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("depth"));
    let ops: usize = args.get(3).map_or(1_000_000, |s| s.parse().expect("ops"));
    let sc = Scenario::generate(WorkloadConfig::default(), depth, 200_000, ops);
    match book {
        "brokerx" => go(&sc, &sc.resolve(sc.brokerx()), sc.brokerx_bare()),
        "matchcore" => go(&sc, &sc.resolve(sc.matchcore()), sc.matchcore_bare()),
        other => panic!("unknown book {other:?}"),
    }
}
