//! Benchmark support: a seeded workload generator and three order books
//! behind one trait, so that each consumes the identical op stream.
//!
//! - [`BrokerxEngine`]: the BrokerX engine (`Engine::apply`, with risk,
//!   settlement and events; accounts funded so risk never rejects).
//! - [`MatchcoreBook`]: the `matchcore` 0.4.0 crate.
//! - [`NaiveBook`]: a `BTreeMap<price, VecDeque<order>>` baseline.
//!
//! Streams are generated up front ([`Scenario::generate`]) so that
//! generation is never timed. See [`workload`] for the mix.
//!
//! **Caller ids.** The workload names orders by caller id; each book
//! assigns its own order ids. Translating one into the other is a
//! gateway's job, not the engine's, so it can be taken out of the timed
//! part for every book alike: [`resolve`] runs the stream once, untimed,
//! through the book's caller-id table ([`BookUnderTest::apply`]) and
//! records the [`Handle`] each op named (the engine's order id as the
//! caller-id table gave it, plus what the adapter needs alongside).
//! [`apply_all_resolved`] then replays the same ops on a fresh book with
//! those handles, through [`BookUnderTest::apply_handle`], which touches no
//! table. The books are deterministic, so the replay assigns the same ids
//! and the handles are exactly what the table would have returned.

pub mod brokerx;
pub mod matchcore_book;
pub mod naive;
pub mod rng;
pub mod workload;

pub use brokerx::BrokerxEngine;
pub use matchcore_book::MatchcoreBook;
pub use naive::NaiveBook;
pub use workload::{MixStats, Op, OpKind, Workload, WorkloadConfig};

/// What a cancel or replace named, translated to the book's own terms
/// ahead of time (see [`resolve`]). Adds and market orders carry none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handle {
    /// The book's order id (or its adapter's packed word).
    pub order: u64,
    /// Whatever else the adapter sends with it (BrokerX: the account).
    pub aux: u32,
}

/// An order book driven by [`Op`]s.
pub trait BookUnderTest {
    fn name(&self) -> &'static str;
    /// Applies `op`, translating caller ids through the adapter's
    /// caller-id table (and recording new ones in it).
    fn apply(&mut self, op: &Op);
    /// The handle `apply` would send for `op` in the current state:
    /// call it just before `apply(op)`.
    fn handle(&self, op: &Op) -> Handle {
        let _ = op;
        Handle::default()
    }
    /// Applies `op` with a pre-resolved handle: no caller-id table is read
    /// or written. Must leave the book exactly as `apply` would.
    fn apply_handle(&mut self, op: &Op, handle: Handle) {
        let _ = handle;
        self.apply(op);
    }
    /// Orders resting in the book, all symbols.
    fn resting(&self) -> usize;
    fn best_bid(&self, symbol: u32) -> Option<u64>;
    fn best_ask(&self, symbol: u32) -> Option<u64>;
    /// Heap bytes of the benchmark's own caller-id translation (and event
    /// buffer), which are not part of the book: memory reports subtract it.
    fn harness_bytes(&self) -> usize {
        0
    }
}

/// The three books, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookKind {
    Brokerx,
    Matchcore,
    Naive,
}

impl BookKind {
    pub const ALL: [BookKind; 3] = [BookKind::Brokerx, BookKind::Matchcore, BookKind::Naive];

    pub fn name(self) -> &'static str {
        match self {
            BookKind::Brokerx => "brokerx",
            BookKind::Matchcore => "matchcore",
            BookKind::Naive => "naive",
        }
    }

    pub fn parse(name: &str) -> Option<BookKind> {
        BookKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A pre-generated workload: prefill, warm-up and measured op streams,
/// generated in that order from one seeded model.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub config: WorkloadConfig,
    pub depth: usize,
    pub prefill: Vec<Op>,
    pub warmup: Vec<Op>,
    pub measured: Vec<Op>,
    /// The kind of each measured op.
    pub measured_kinds: Vec<OpKind>,
    /// Every id in the streams is below this.
    pub ids: u64,
    /// Resting orders and touch of the generator's model at the end.
    pub final_resting: usize,
    pub final_touch: Vec<(Option<u64>, Option<u64>)>,
    pub stats: MixStats,
}

impl Scenario {
    pub fn generate(config: WorkloadConfig, depth: usize, warmup: usize, measured: usize) -> Self {
        let mut w = Workload::new(config);
        let prefill = w.prefill(depth);
        let warmup = w.steady(warmup);
        let (measured, measured_kinds) = w.steady_labeled(measured);
        let final_touch = (0..config.symbols)
            .map(|s| (w.best_bid(s), w.best_ask(s)))
            .collect();
        Scenario {
            config,
            depth,
            prefill,
            warmup,
            measured,
            measured_kinds,
            ids: w.ids_issued(),
            final_resting: w.resting(),
            final_touch,
            stats: w.stats(),
        }
    }

    /// An empty BrokerX engine sized for this scenario, with a caller-id
    /// table for every id of the streams.
    pub fn brokerx(&self) -> BrokerxEngine {
        self.brokerx_with_ids(self.ids as usize)
    }

    /// The same with an empty caller-id table, for pre-resolved replays.
    pub fn brokerx_bare(&self) -> BrokerxEngine {
        self.brokerx_with_ids(0)
    }

    fn brokerx_with_ids(&self, ids: usize) -> BrokerxEngine {
        // The book stays within about 1% of its target depth; 1/16 headroom
        // keeps the slab from growing inside the timed part.
        let slots = (self.depth + self.depth / 16 + 4096).min(u32::MAX as usize / 2) as u32;
        BrokerxEngine::new(self.config.symbols, self.config.accounts, slots, ids)
    }

    pub fn matchcore(&self) -> MatchcoreBook {
        MatchcoreBook::new(self.config.symbols, self.ids as usize)
    }

    /// The same with an empty caller-id table, for pre-resolved replays.
    pub fn matchcore_bare(&self) -> MatchcoreBook {
        MatchcoreBook::new(self.config.symbols, 0)
    }

    /// Handles for the prefill, warm-up and measured streams, in that
    /// order, from one untimed pass of `book` (fresh) through them all.
    pub fn resolve<B: BookUnderTest>(&self, mut book: B) -> Resolution {
        let mut pass = |ops: &[Op]| -> Vec<Handle> {
            ops.iter()
                .map(|op| {
                    let handle = book.handle(op);
                    book.apply(op);
                    handle
                })
                .collect()
        };
        let prefill = pass(&self.prefill);
        let warmup = pass(&self.warmup);
        let measured = pass(&self.measured);
        Resolution {
            prefill,
            warmup,
            measured,
        }
    }

    pub fn naive(&self) -> NaiveBook {
        NaiveBook::new(self.config.symbols)
    }
}

/// One book's handles for a [`Scenario`]'s three streams.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    pub prefill: Vec<Handle>,
    pub warmup: Vec<Handle>,
    pub measured: Vec<Handle>,
}

/// A caller-id table of `n` entries set to `fill`, written once so that
/// its pages are faulted in before anything is timed (`vec![0; n]` would
/// map lazily zeroed pages and fault during the run).
pub(crate) fn id_table(n: usize, fill: u64) -> Vec<u64> {
    let mut table = Vec::with_capacity(n);
    table.resize(n, fill);
    std::hint::black_box(table.as_mut_ptr());
    table
}

/// Applies every op of `ops` to `book`.
#[inline]
pub fn apply_all<B: BookUnderTest + ?Sized>(book: &mut B, ops: &[Op]) {
    for op in ops {
        book.apply(op);
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux
/// `/proc/thread-self/schedstat`), or `None` where unavailable. On a shared
/// machine, throughput per on-CPU second leaves out the time the thread
/// waited for a core (it still includes cache damage from the others).
pub fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Applies `ops` with their pre-resolved `handles` (same length).
#[inline]
pub fn apply_all_resolved<B: BookUnderTest + ?Sized>(book: &mut B, ops: &[Op], handles: &[Handle]) {
    assert_eq!(ops.len(), handles.len());
    for (op, &handle) in ops.iter().zip(handles) {
        book.apply_handle(op, handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch<B: BookUnderTest>(b: &B, symbols: u32) -> Vec<(Option<u64>, Option<u64>)> {
        (0..symbols)
            .map(|s| (b.best_bid(s), b.best_ask(s)))
            .collect()
    }

    fn check(symbols: u32, depth: usize, ops: usize, seed: u64) {
        let cfg = WorkloadConfig::default()
            .with_seed(seed)
            .with_symbols(symbols);
        let sc = Scenario::generate(cfg, depth, 0, ops);
        let s = sc.stats;
        let steady = s.total() - depth as u64;
        assert!(steady == ops as u64);
        let mut bx = sc.brokerx();
        let mut mc = sc.matchcore();
        let mut nv = sc.naive();
        for ops in [&sc.prefill, &sc.measured] {
            apply_all(&mut bx, ops);
            apply_all(&mut mc, ops);
            apply_all(&mut nv, ops);
        }
        let model = (sc.final_resting, sc.final_touch.clone());
        assert_eq!((bx.resting(), touch(&bx, symbols)), model, "brokerx");
        assert_eq!((nv.resting(), touch(&nv, symbols)), model, "naive");
        assert_eq!((mc.resting(), touch(&mc, symbols)), model, "matchcore");
        let r = bx.rejects();
        assert_eq!(r.other, 0, "unexpected brokerx rejects: {r:?}");
        assert!(r.unknown_order <= s.stale_cancels);
        // The book stays near its prefilled size.
        let drift = sc.final_resting as f64 / depth as f64;
        assert!((0.9..1.1).contains(&drift), "book drifted to {drift}");
        // Orders really trade.
        assert!(s.fills > ops as u64 / 20, "{s:?}");
    }

    #[test]
    fn books_agree_single_symbol() {
        check(1, 2_000, 20_000, 1);
        check(1, 500, 20_000, 2);
    }

    #[test]
    fn books_agree_several_symbols() {
        check(4, 4_000, 20_000, 3);
    }

    #[test]
    fn books_agree_past_the_prefetch_threshold() {
        // Above 64k order slots the engine takes its prefetching paths.
        check(1, 70_000, 20_000, 4);
        let sc = Scenario::generate(WorkloadConfig::default().with_seed(6), 70_000, 0, 20_000);
        let mut bx = sc.brokerx();
        apply_all(&mut bx, &sc.prefill);
        apply_all(&mut bx, &sc.measured);
        bx.engine().check_invariants().expect("invariants hold");
    }

    #[test]
    fn resolved_replay_matches_table() {
        let sc = Scenario::generate(WorkloadConfig::default().with_seed(5), 3_000, 2_000, 20_000);
        let model = (sc.final_resting, sc.final_touch.clone());
        let replay = |mut book: Box<dyn BookUnderTest>, r: &Resolution| {
            apply_all_resolved(&mut *book, &sc.prefill, &r.prefill);
            apply_all_resolved(&mut *book, &sc.warmup, &r.warmup);
            apply_all_resolved(&mut *book, &sc.measured, &r.measured);
            (book.resting(), touch_dyn(&*book, 1))
        };
        let r = sc.resolve(sc.brokerx());
        assert_eq!(replay(Box::new(sc.brokerx_bare()), &r), model, "brokerx");
        let r = sc.resolve(sc.matchcore());
        assert_eq!(
            replay(Box::new(sc.matchcore_bare()), &r),
            model,
            "matchcore"
        );
        let r = sc.resolve(sc.naive());
        assert_eq!(replay(Box::new(sc.naive()), &r), model, "naive");
        // The BrokerX replay produces the very same engine state.
        let mut table = sc.brokerx();
        let mut bare = sc.brokerx_bare();
        let r = sc.resolve(sc.brokerx());
        for (ops, handles) in [
            (&sc.prefill, &r.prefill),
            (&sc.warmup, &r.warmup),
            (&sc.measured, &r.measured),
        ] {
            apply_all(&mut table, ops);
            apply_all_resolved(&mut bare, ops, handles);
        }
        assert_eq!(table.engine().state_hash(), bare.engine().state_hash());
        assert_eq!(table.rejects(), bare.rejects());
    }

    fn touch_dyn(b: &dyn BookUnderTest, symbols: u32) -> Vec<(Option<u64>, Option<u64>)> {
        (0..symbols)
            .map(|s| (b.best_bid(s), b.best_ask(s)))
            .collect()
    }

    #[test]
    fn books_agree_every_step() {
        // Compare after every op on a small, busy book.
        let sc = Scenario::generate(WorkloadConfig::default().with_seed(9), 300, 0, 5_000);
        let mut bx = sc.brokerx();
        let mut mc = sc.matchcore();
        let mut nv = sc.naive();
        for (i, op) in sc.prefill.iter().chain(&sc.measured).enumerate() {
            bx.apply(op);
            mc.apply(op);
            nv.apply(op);
            let expect = (nv.resting(), touch(&nv, 1));
            assert_eq!(
                (bx.resting(), touch(&bx, 1)),
                expect,
                "brokerx at op {i}: {op:?}"
            );
            assert_eq!(
                (mc.resting(), touch(&mc, 1)),
                expect,
                "matchcore at op {i}: {op:?}"
            );
        }
    }

    #[test]
    fn mix_matches_documentation() {
        let sc = Scenario::generate(WorkloadConfig::default(), 10_000, 0, 100_000);
        let s = sc.stats;
        let n = 100_000.0;
        let adds = (s.passive_adds - 10_000 + s.marketable_adds) as f64 / n;
        let cancels = s.cancels as f64 / n;
        let replaces = (s.replace_qty_down + s.replace_price) as f64 / n;
        let marketable = (s.markets + s.iocs) as f64 / n;
        assert!((0.35..0.45).contains(&adds), "{adds}");
        assert!((0.25..0.35).contains(&cancels), "{cancels}");
        assert!((0.19..0.21).contains(&replaces), "{replaces}");
        assert!((0.09..0.11).contains(&marketable), "{marketable}");
        // Same stream from the same seed.
        let again = Scenario::generate(WorkloadConfig::default(), 10_000, 0, 100_000);
        assert_eq!(sc.measured, again.measured);
    }
}
