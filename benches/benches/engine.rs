//! Steady-state throughput of the three books at several book depths.
//!
//! For each depth one scenario is generated (untimed): a prefill to the
//! depth, a warm-up, then a long stream of the steady-state mix. Each book
//! is built, prefilled and warmed up untimed; a timed iteration applies
//! the next `CHUNK` ops of the stream. When the stream runs out the book is
//! rebuilt the same way (untimed) and the stream starts again, so every op
//! is applied to the state it was generated for. (Rebuilding rather than
//! cloning a snapshot matters: a cloned `Vec` has no spare capacity, so
//! the clone would reallocate inside the timed region as the book grows.)
//!
//! Caller ids are resolved ahead of time for every book (see
//! `brokerx_benches::resolve`): the timed chunks contain no caller-id
//! table lookups, only the books' own work.
//!
//! Run: `cargo bench -p brokerx-benches --bench engine`
//! Depths: `BENCH_DEPTHS=10000,100000` (default 10k, 100k and 1M; the
//! whole run takes about two minutes).

use brokerx_benches::{apply_all_resolved, BookUnderTest, Resolution, Scenario, WorkloadConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

const CHUNK: usize = 10_000;
const STREAM: usize = 2_000_000;
const WARMUP: usize = 200_000;

fn depths() -> Vec<usize> {
    match std::env::var("BENCH_DEPTHS") {
        Ok(s) => s
            .split(',')
            .map(|d| {
                d.trim()
                    .parse()
                    .expect("BENCH_DEPTHS: comma-separated counts")
            })
            .collect(),
        Err(_) => vec![10_000, 100_000, 1_000_000],
    }
}

fn bench_book<B: BookUnderTest>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    scenario: &Scenario,
    resolution: Resolution,
    make: impl Fn() -> B,
) {
    let r = &resolution;
    let prepared = || {
        let mut book = make();
        apply_all_resolved(&mut book, &scenario.prefill, &r.prefill);
        apply_all_resolved(&mut book, &scenario.warmup, &r.warmup);
        book
    };
    let stream = &scenario.measured;
    let handles = &r.measured;
    let mut book = prepared();
    let mut cursor = 0usize;
    let name = book.name();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if cursor + CHUNK > stream.len() {
                    book = prepared();
                    cursor = 0;
                }
                let chunk = &stream[cursor..cursor + CHUNK];
                let chunk_handles = &handles[cursor..cursor + CHUNK];
                let start = Instant::now();
                apply_all_resolved(&mut book, chunk, chunk_handles);
                total += start.elapsed();
                cursor += CHUNK;
            }
            black_box(book.resting());
            total
        })
    });
}

fn steady_mix(c: &mut Criterion) {
    for depth in depths() {
        let scenario = Scenario::generate(WorkloadConfig::default(), depth, WARMUP, STREAM);
        let mut group = c.benchmark_group(format!("steady_mix/depth_{depth}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(CHUNK as u64));
        bench_book(
            &mut group,
            &scenario,
            scenario.resolve(scenario.brokerx()),
            || scenario.brokerx_bare(),
        );
        bench_book(
            &mut group,
            &scenario,
            scenario.resolve(scenario.matchcore()),
            || scenario.matchcore_bare(),
        );
        bench_book(
            &mut group,
            &scenario,
            scenario.resolve(scenario.naive()),
            || scenario.naive(),
        );
        group.finish();
    }
}

criterion_group!(benches, steady_mix);
criterion_main!(benches);
