//! One timed pass of one book, for profilers: builds the scenario,
//! resolves caller ids, prefills and warms up, then applies the measured
//! ops inside `measured_pass` (never inlined, so that
//! `valgrind --tool=callgrind --toggle-collect='*measured_pass*'` counts
//! only those ops).
//!
//! `cargo build --release -p brokerx-benches --example profile_pass`
//! `target/release/examples/profile_pass [brokerx|matchcore] DEPTH OPS [lat]`
//!
//! With `lat`, every measured op is also timed and the median per op kind
//! printed (a median is steadier than a throughput on a busy machine).

use brokerx_benches::{
    apply_all_resolved, BookUnderTest, Handle, Op, OpKind, Resolution, Scenario, WorkloadConfig,
};
use std::time::Instant;

#[inline(never)]
fn measured_pass<B: BookUnderTest>(book: &mut B, ops: &[Op], handles: &[Handle]) {
    apply_all_resolved(book, ops, handles);
}

fn go<B: BookUnderTest>(sc: &Scenario, r: &Resolution, mut book: B, lat: bool) {
    apply_all_resolved(&mut book, &sc.prefill, &r.prefill);
    apply_all_resolved(&mut book, &sc.warmup, &r.warmup);
    if lat {
        let mut by_kind: Vec<Vec<u32>> = OpKind::ALL.iter().map(|_| Vec::new()).collect();
        for ((op, &handle), &kind) in sc.measured.iter().zip(&r.measured).zip(&sc.measured_kinds) {
            let start = Instant::now();
            book.apply_handle(op, handle);
            by_kind[kind as usize].push(start.elapsed().as_nanos() as u32);
        }
        for (kind, mut v) in OpKind::ALL.iter().zip(by_kind) {
            v.sort_unstable();
            if !v.is_empty() {
                print!("{}: {} | ", kind.name(), v[v.len() / 2]);
            }
        }
        println!();
        return;
    }
    let cpu0 = brokerx_benches::thread_cpu_ns();
    let start = Instant::now();
    measured_pass(&mut book, &sc.measured, &r.measured);
    let secs = start.elapsed().as_secs_f64();
    let cpu = brokerx_benches::thread_cpu_ns()
        .zip(cpu0)
        .map(|(b, a)| (b - a) as f64 / 1e9);
    println!(
        "{}: {:.2} M ops/s, {} resting, {:.2} M ops per on-CPU second",
        book.name(),
        sc.measured.len() as f64 / secs / 1e6,
        book.resting(),
        cpu.map_or(f64::NAN, |c| sc.measured.len() as f64 / c / 1e6),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let book = args.get(1).map_or("brokerx", String::as_str);
    let depth: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("depth"));
    let ops: usize = args.get(3).map_or(1_000_000, |s| s.parse().expect("ops"));
    let lat = args.get(4).is_some_and(|a| a == "lat");
    let sc = Scenario::generate(WorkloadConfig::default(), depth, 200_000, ops);
    match book {
        "brokerx" => go(&sc, &sc.resolve(sc.brokerx()), sc.brokerx_bare(), lat),
        "matchcore" => go(&sc, &sc.resolve(sc.matchcore()), sc.matchcore_bare(), lat),
        other => panic!("unknown book {other:?}"),
    }
}
