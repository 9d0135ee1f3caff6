//! Latency and throughput harness: BrokerX beside matchcore and a naive
//! BTreeMap book, on the identical pre-generated op stream.
//!
//! ```text
//! latency [--depth N] [--ops N] [--warmup N] [--seed S] [--symbols K]
//!         [--books brokerx,matchcore,naive] [--ids resolved|table]
//!         [--rounds N] [--csv] [--slowest N]
//! ```
//!
//! `--ids resolved` (the default) takes the caller-id translation (workload
//! id -> each book's own order id) out of the timed part for every book:
//! one untimed pass per book through its caller-id table records the
//! handle each op named, and the timed passes replay the ops with those
//! handles (see `brokerx_benches::resolve`). `--ids table` times the
//! table lookups too, as a gateway would pay them.
//!
//! Per book, on a fresh book each time:
//! 1. build and prefill to `--depth` resting orders, measuring the heap
//!    growth (a counting global allocator) per resting order;
//! 2. warm up with `--warmup` ops of the steady-state mix;
//! 3. latency pass: time every one of `--ops` ops with `Instant` and record
//!    it (ns) in an HDR histogram;
//! 4. throughput pass: rebuild, prefill and warm up again, then time the
//!    same `--ops` ops as one block (no per-op timing) and count heap
//!    allocations during it.
//!
//! The throughput pass is repeated `--rounds` times (default 3),
//! interleaved over the books (round r starts with book r mod n), so that
//! each round's ratio compares passes run close together on this shared,
//! noisy machine. Reported: per-round ratios, their median and range, and
//! each book's median throughput.
//!
//! `--slowest N` also lists the N slowest ops of each latency pass.
//! The op streams are generated before any of this and are not timed.
//! Release build: `cargo run --release -p brokerx-tools --bin latency -- ...`

use brokerx_benches::{
    apply_all, apply_all_resolved, thread_cpu_ns, BookKind, BookUnderTest, BrokerxEngine, Handle,
    Op, OpKind, Resolution, Scenario, WorkloadConfig,
};
use hdrhistogram::Histogram;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::process::ExitCode;
use std::time::Instant;

/// Counts live heap bytes and allocation calls. The harness is single
/// threaded, so the counters are plain thread-local cells: no atomic
/// read-modify-write on the allocation path of the books being compared.
struct Counting;

thread_local! {
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump(bytes: i64, calls: u64) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE_BYTES.try_with(|b| b.set(b.get() + bytes));
    let _ = ALLOCS.try_with(|a| a.set(a.get() + calls));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size() as i64, 1);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(layout.size() as i64, 1);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(-(layout.size() as i64), 0);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(new_size as i64 - layout.size() as i64, 1);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Minor + major page faults of this process so far (`/proc/self/stat`),
/// or 0 where that is unavailable.
fn page_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the parenthesised command name; minflt and majflt are
    // fields 10 and 12 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(7) + get(9)
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

struct Args {
    depth: usize,
    ops: usize,
    warmup: Option<usize>,
    seed: u64,
    symbols: u32,
    books: Vec<BookKind>,
    csv: bool,
    slowest: usize,
    resolved: bool,
    rounds: usize,
}

const USAGE: &str = "usage: latency [--depth N] [--ops N] [--warmup N] [--seed S] \
[--symbols K] [--books brokerx,matchcore,naive] [--ids resolved|table] [--rounds N] [--csv] \
[--slowest N]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        depth: 100_000,
        ops: 2_000_000,
        warmup: None,
        seed: WorkloadConfig::default().seed,
        symbols: 1,
        books: BookKind::ALL.to_vec(),
        csv: false,
        slowest: 0,
        resolved: true,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--depth" => args.depth = number(&value()?)?,
            "--ops" => args.ops = number(&value()?)?,
            "--warmup" => args.warmup = Some(number(&value()?)?),
            "--seed" => args.seed = number(&value()?)?,
            "--symbols" => args.symbols = number(&value()?)?,
            "--books" => {
                args.books = value()?
                    .split(',')
                    .map(|b| BookKind::parse(b.trim()).ok_or(format!("unknown book {b:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--csv" => args.csv = true,
            "--ids" => {
                args.resolved = match value()?.as_str() {
                    "resolved" => true,
                    "table" => false,
                    other => return Err(format!("--ids resolved|table, not {other:?}")),
                }
            }
            "--rounds" => args.rounds = number(&value()?)?,
            "--slowest" => args.slowest = number(&value()?)?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if args.symbols == 0 || args.ops == 0 || args.books.is_empty() || args.rounds == 0 {
        return Err(format!(
            "--symbols, --ops, --rounds and --books must be non-empty\n{USAGE}"
        ));
    }
    Ok(args)
}

/// Accepts `1000000`, `1_000_000`, `100k`, `2m`, `0x5eed`.
fn number<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let t = s.replace('_', "").to_ascii_lowercase();
    if let Some(hex) = t.strip_prefix("0x") {
        let n = u64::from_str_radix(hex, 16).map_err(|_| format!("not a number: {s:?}"))?;
        return T::try_from(n).map_err(|_| format!("out of range: {s:?}"));
    }
    let (digits, scale) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 1_000),
        Some(b'm') => (&t[..t.len() - 1], 1_000_000),
        _ => (&t[..], 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a number: {s:?}"))?;
    T::try_from(n * scale).map_err(|_| format!("out of range: {s:?}"))
}

struct Outcome {
    name: &'static str,
    /// Median over the throughput rounds.
    ops_per_sec: f64,
    /// Throughput of each round, in round order.
    rounds: Vec<f64>,
    /// The same per second on a CPU (time the thread waited for a core
    /// left out), where the OS reports it.
    rounds_cpu: Vec<f64>,
    hist: Histogram<u64>,
    /// Latency per op kind, indexed by `OpKind as usize`.
    by_kind: Vec<Histogram<u64>>,
    /// The slowest ops of the latency pass: (ns, index in the stream).
    slowest: Vec<(u64, usize)>,
    resting_after_prefill: usize,
    /// Heap growth from empty to prefilled, minus caller-id tables.
    book_bytes: i64,
    /// Same, including the caller-id tables and event buffer.
    total_bytes: i64,
    /// BrokerX only: `Engine::bytes_reserved()` after prefill.
    reserved_bytes: Option<usize>,
    allocs_timed: u64,
    bytes_timed: i64,
    latency_pass_allocs: u64,
    /// Page faults during the latency pass and the throughput pass.
    faults: (u64, u64),
    agrees: bool,
    note: String,
}

fn final_state_agrees<B: BookUnderTest>(book: &B, sc: &Scenario) -> bool {
    book.resting() == sc.final_resting
        && (0..sc.config.symbols)
            .all(|s| (book.best_bid(s), book.best_ask(s)) == sc.final_touch[s as usize])
}

/// Applies `ops` through the caller-id table, or with their handles.
fn feed<B: BookUnderTest>(book: &mut B, ops: &[Op], handles: Option<&[Handle]>) {
    match handles {
        Some(handles) => apply_all_resolved(book, ops, handles),
        None => apply_all(book, ops),
    }
}

/// One throughput pass.
struct Sample {
    ops_per_sec: f64,
    ops_per_cpu_sec: f64,
    allocs: u64,
    bytes: i64,
    faults: u64,
    agrees: bool,
    note: String,
}

/// A book's latency pass (and memory), and a closure for its throughput
/// passes.
type Throughput<'a> = Box<dyn FnMut() -> Sample + 'a>;

fn run<'a, B: BookUnderTest + 'a>(
    sc: &'a Scenario,
    keep_slowest: usize,
    resolution: Option<Resolution>,
    make: impl Fn() -> B + 'a,
    inspect: impl Fn(&B) -> (Option<usize>, String) + 'a,
) -> (Outcome, Throughput<'a>) {
    let handles = |pick: fn(&Resolution) -> &[Handle]| resolution.as_ref().map(pick);
    // Memory: heap growth from before construction to the prefilled book.
    let before = live_bytes();
    let mut book = make();
    feed(&mut book, &sc.prefill, handles(|r| &r.prefill));
    let total_bytes = live_bytes() - before;
    let book_bytes = total_bytes - book.harness_bytes() as i64;
    let resting_after_prefill = book.resting();
    let (reserved_bytes, _) = inspect(&book);
    let name = book.name();

    // Latency pass.
    feed(&mut book, &sc.warmup, handles(|r| &r.warmup));
    let new_hist = || {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("bounds");
        // Touch every bucket up to 10 s once, so that recording never
        // faults in a fresh page of the counts array during the pass.
        let mut v = 1.0f64;
        while v < 1e10 {
            h.saturating_record(v as u64);
            v *= 1.0004;
        }
        h.reset();
        h
    };
    let mut hist = new_hist();
    let mut by_kind: Vec<_> = OpKind::ALL.iter().map(|_| new_hist()).collect();
    let f0 = page_faults();
    // Min-heap of the slowest ops, allocated before the pass.
    let mut slowest = BinaryHeap::with_capacity(keep_slowest + 1);
    let measured_handles = handles(|r| &r.measured);
    let a0 = allocs();
    for (i, (op, &kind)) in sc.measured.iter().zip(&sc.measured_kinds).enumerate() {
        let start = Instant::now();
        match measured_handles {
            Some(h) => book.apply_handle(op, h[i]),
            None => book.apply(op),
        }
        let ns = (start.elapsed().as_nanos() as u64).max(1);
        hist.saturating_record(ns);
        by_kind[kind as usize].saturating_record(ns);
        if keep_slowest > 0 && slowest.peek().is_none_or(|&Reverse((min, _))| ns > min) {
            slowest.push(Reverse((ns, i)));
            if slowest.len() > keep_slowest {
                slowest.pop();
            }
        }
    }
    let latency_pass_allocs = allocs() - a0;
    let latency_faults = page_faults() - f0;
    let agrees = final_state_agrees(&book, sc);
    drop(book);

    let outcome = Outcome {
        name,
        ops_per_sec: 0.0,
        rounds: Vec::new(),
        rounds_cpu: Vec::new(),
        hist,
        by_kind,
        slowest: {
            let mut v: Vec<_> = slowest.into_iter().map(|Reverse(x)| x).collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        },
        resting_after_prefill,
        book_bytes,
        total_bytes,
        reserved_bytes,
        allocs_timed: 0,
        bytes_timed: 0,
        latency_pass_allocs,
        faults: (latency_faults, 0),
        agrees,
        note: String::new(),
    };

    // Throughput passes, each on a fresh book.
    let throughput = move || {
        let handles = |pick: fn(&Resolution) -> &[Handle]| resolution.as_ref().map(pick);
        let mut book = make();
        feed(&mut book, &sc.prefill, handles(|r| &r.prefill));
        feed(&mut book, &sc.warmup, handles(|r| &r.warmup));
        let measured = handles(|r| &r.measured);
        let f0 = page_faults();
        // Reading the CPU time allocates, so it brackets the counts.
        let cpu0 = thread_cpu_ns();
        let (a0, b0) = (allocs(), live_bytes());
        let start = Instant::now();
        feed(&mut book, &sc.measured, measured);
        let elapsed = start.elapsed();
        let (allocs, bytes) = (allocs() - a0, live_bytes() - b0);
        let cpu = thread_cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e9);
        let faults = page_faults() - f0;
        let (_, note) = inspect(&book);
        Sample {
            ops_per_sec: sc.measured.len() as f64 / elapsed.as_secs_f64(),
            ops_per_cpu_sec: cpu.map_or(f64::NAN, |c| sc.measured.len() as f64 / c),
            allocs,
            bytes,
            faults,
            agrees: final_state_agrees(&book, sc),
            note,
        }
    };
    (outcome, Box::new(throughput))
}

fn no_inspect<B>(_: &B) -> (Option<usize>, String) {
    (None, String::new())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn brokerx_inspect(b: &BrokerxEngine) -> (Option<usize>, String) {
    let r = b.rejects();
    let note = format!(
        "rejects: {} stale-id, {} other{}",
        r.unknown_order,
        r.other,
        r.last_other
            .map(|c| format!(" (last {c:?})"))
            .unwrap_or_default()
    );
    (Some(b.engine().bytes_reserved()), note)
}

/// Median cost of `Instant::now()` + `elapsed()` around nothing.
fn timer_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..10_001)
        .map(|_| {
            let start = Instant::now();
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let warmup = args
        .warmup
        .unwrap_or((args.ops / 10).clamp(10_000, 500_000));
    let config = WorkloadConfig::default()
        .with_seed(args.seed)
        .with_symbols(args.symbols);
    let t = Instant::now();
    let sc = Scenario::generate(config, args.depth, warmup, args.ops);
    let generated = t.elapsed();
    let s = sc.stats;
    println!(
        "## latency: depth={} ops={} warmup={} seed={:#x} symbols={}\n",
        args.depth, args.ops, warmup, args.seed, args.symbols
    );
    println!(
        "workload generated in {:.2}s (untimed): {} ids; steady mix over warm-up+measured ops: \
         adds {} (marketable {}), cancels {} (stale-id {}), replaces {} (qty-down {}, price {}), \
         market {}, IOC {}; model fills {}; model resting at end {}",
        generated.as_secs_f64(),
        sc.ids,
        s.passive_adds - args.depth as u64 + s.marketable_adds,
        s.marketable_adds,
        s.cancels,
        s.stale_cancels,
        s.replace_qty_down + s.replace_price,
        s.replace_qty_down,
        s.replace_price,
        s.markets,
        s.iocs,
        s.fills,
        sc.final_resting
    );
    println!(
        "timer overhead (Instant::now + elapsed, median): {} ns, included in every latency sample\n",
        timer_overhead()
    );

    println!(
        "caller ids: {}\n",
        if args.resolved {
            "resolved ahead of time for every book (no caller-id table in the timed part)"
        } else {
            "translated through each adapter's caller-id table inside the timed part"
        }
    );
    let mut results = Vec::new();
    let mut passes: Vec<Throughput<'_>> = Vec::new();
    let sc = &sc;
    for kind in &args.books {
        let t = Instant::now();
        let resolved = args.resolved;
        let (outcome, pass) = match kind {
            BookKind::Brokerx => {
                let resolution = resolved.then(|| sc.resolve(sc.brokerx()));
                let make = move || {
                    if resolved {
                        sc.brokerx_bare()
                    } else {
                        sc.brokerx()
                    }
                };
                run(sc, args.slowest, resolution, make, brokerx_inspect)
            }
            BookKind::Matchcore => {
                let resolution = resolved.then(|| sc.resolve(sc.matchcore()));
                let make = move || {
                    if resolved {
                        sc.matchcore_bare()
                    } else {
                        sc.matchcore()
                    }
                };
                run(sc, args.slowest, resolution, make, no_inspect)
            }
            BookKind::Naive => {
                let resolution = resolved.then(|| sc.resolve(sc.naive()));
                run(sc, args.slowest, resolution, || sc.naive(), no_inspect)
            }
        };
        eprintln!(
            "{}: latency pass done in {:.1}s",
            outcome.name,
            t.elapsed().as_secs_f64()
        );
        results.push(outcome);
        passes.push(pass);
    }
    let n = results.len();
    for round in 0..args.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let sample = passes[i]();
            let r = &mut results[i];
            r.rounds.push(sample.ops_per_sec);
            r.rounds_cpu.push(sample.ops_per_cpu_sec);
            r.agrees &= sample.agrees;
            r.allocs_timed = r.allocs_timed.max(sample.allocs);
            r.bytes_timed = r.bytes_timed.max(sample.bytes);
            r.faults.1 = r.faults.1.max(sample.faults);
            r.note = sample.note;
        }
        eprintln!("throughput round {} of {} done", round + 1, args.rounds);
    }
    drop(passes);
    for r in &mut results {
        r.ops_per_sec = median(&r.rounds);
    }
    report(&results, sc, args.csv);
    if results.iter().all(|r| r.agrees) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One table of per-round throughputs (`pick`), with BrokerX ÷ book per
/// round and the median and range of those ratios.
fn round_table(results: &[Outcome], title: &str, pick: impl Fn(&Outcome) -> &Vec<f64>) {
    let brokerx = results.iter().find(|r| r.name == "brokerx");
    println!("{title}:\n");
    print!("| book |");
    let rounds = results.first().map_or(0, |r| pick(r).len());
    for i in 0..rounds {
        print!(" round {} |", i + 1);
    }
    println!(" median | BrokerX / book per round | median ratio | range |");
    println!("|---|{}---:|---|---:|---|", "---:|".repeat(rounds));
    for r in results {
        print!("| {} |", r.name);
        for x in pick(r) {
            print!(" {} |", ops_fmt(*x));
        }
        let ratios: Option<Vec<f64>> =
            brokerx.map(|b| pick(b).iter().zip(pick(r)).map(|(x, y)| x / y).collect());
        let (per_round, med, range) = match ratios {
            Some(v) => {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(0.0, f64::max);
                let list: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
                (
                    list.join(", "),
                    format!("{:.2}x", median(&v)),
                    format!("{lo:.2}-{hi:.2}"),
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            " {} | {per_round} | {med} | {range} |",
            ops_fmt(median(pick(r)))
        );
    }
    println!();
}

fn ops_fmt(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.0} k", x / 1e3)
    }
}

const QUANTILES: [(f64, &str); 5] = [
    (0.50, "p50"),
    (0.90, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

fn report(results: &[Outcome], sc: &Scenario, csv: bool) {
    let n = sc.measured.len() as f64;
    let brokerx = results.iter().find(|r| r.name == "brokerx");
    // BrokerX ÷ book per round, then their median and range.
    let ratios = |r: &Outcome| -> Option<Vec<f64>> {
        brokerx.map(|b| b.rounds.iter().zip(&r.rounds).map(|(x, y)| x / y).collect())
    };
    round_table(
        results,
        "Throughput per round (ops per wall-clock second; rounds interleaved over the books)",
        |r| &r.rounds,
    );
    round_table(
        results,
        "Throughput per round (ops per on-CPU second: time the thread waited for a core left out)",
        |r| &r.rounds_cpu,
    );
    print!("| book | median throughput (ops/s) | BrokerX / book (median of rounds) |");
    for (_, q) in QUANTILES {
        print!(" {q} (ns) |");
    }
    println!(" max (ns) | heap B/resting order | allocs/op | same end state |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let ratio = ratios(r).map_or("-".to_string(), |v| format!("{:.2}x", median(&v)));
        print!("| {} | {} | {} |", r.name, ops_fmt(r.ops_per_sec), ratio);
        for (q, _) in QUANTILES {
            print!(" {} |", r.hist.value_at_quantile(q));
        }
        println!(
            " {} | {:.0} | {:.4} | {} |",
            r.hist.max(),
            r.book_bytes as f64 / r.resting_after_prefill.max(1) as f64,
            r.allocs_timed as f64 / n,
            if r.agrees { "yes" } else { "NO" }
        );
    }
    println!();
    println!("Latency by op kind, p50 / p99 / p99.9 (ns):\n");
    print!("| op kind | share |");
    for r in results {
        print!(" {} |", r.name);
    }
    println!();
    println!("|---|---:|{}", "---:|".repeat(results.len()));
    for (i, kind) in OpKind::ALL.iter().enumerate() {
        let count = results.first().map_or(0, |r| r.by_kind[i].len());
        print!("| {} | {:.1} % |", kind.name(), 100.0 * count as f64 / n);
        for r in results {
            let h = &r.by_kind[i];
            if h.is_empty() {
                print!(" - |");
            } else {
                print!(
                    " {} / {} / {} |",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999)
                );
            }
        }
        println!();
    }
    println!();
    println!("Memory after prefill (heap growth from an empty book; `book` excludes the benchmark's caller-id table and event buffer):\n");
    println!("| book | resting | book bytes | B/order (book) | B/order (incl. id table) | Engine::bytes_reserved / order |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in results {
        let per = |b: i64| b as f64 / r.resting_after_prefill.max(1) as f64;
        let reserved = r.reserved_bytes.map_or("-".to_string(), |b| {
            format!("{:.0}", b as f64 / r.resting_after_prefill.max(1) as f64)
        });
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {} |",
            r.name,
            r.resting_after_prefill,
            r.book_bytes,
            per(r.book_bytes),
            per(r.total_bytes),
            reserved
        );
    }
    println!();
    println!("Allocations during the measured ops (after warm-up):\n");
    println!("| book | allocs (throughput pass) | allocs/op | net heap change (bytes) | allocs (latency pass) | page faults (latency / throughput pass) | notes |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in results {
        println!(
            "| {} | {} | {:.4} | {} | {} | {} / {} | {} |",
            r.name,
            r.allocs_timed,
            r.allocs_timed as f64 / n,
            r.bytes_timed,
            r.latency_pass_allocs,
            r.faults.0,
            r.faults.1,
            r.note
        );
    }
    for r in results.iter().filter(|r| !r.slowest.is_empty()) {
        println!();
        println!("Slowest ops of {} (latency pass):\n", r.name);
        println!("| ns | op index | kind | op |");
        println!("|---:|---:|---|---|");
        for &(ns, i) in &r.slowest {
            println!(
                "| {ns} | {i} | {} | {:?} |",
                sc.measured_kinds[i].name(),
                sc.measured[i]
            );
        }
    }
    if csv {
        println!();
        println!("book,depth,ops,symbols,seed,ops_per_sec,p50_ns,p90_ns,p99_ns,p999_ns,p9999_ns,max_ns,book_bytes_per_order,total_bytes_per_order,allocs_per_op,agrees");
        for r in results {
            let per = |b: i64| b as f64 / r.resting_after_prefill.max(1) as f64;
            let q: Vec<String> = QUANTILES
                .iter()
                .map(|&(q, _)| r.hist.value_at_quantile(q).to_string())
                .collect();
            println!(
                "{},{},{},{},{},{:.0},{},{},{:.1},{:.1},{:.6},{}",
                r.name,
                sc.depth,
                sc.measured.len(),
                sc.config.symbols,
                sc.config.seed,
                r.ops_per_sec,
                q.join(","),
                r.hist.max(),
                per(r.book_bytes),
                per(r.total_bytes),
                r.allocs_timed as f64 / n,
                r.agrees
            );
        }
    }
}
