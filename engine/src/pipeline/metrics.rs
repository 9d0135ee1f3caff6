//! Lock-free measurements the engine thread records and any thread reads
//! (the metrics exporter, at scrape time). Recording is a handful of
//! relaxed atomic adds: no lock, no allocation, no syscall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Upper bounds (inclusive) of the latency buckets, in nanoseconds: a
/// 1-2-5 series from 100 ns to 10 s.
pub const LATENCY_BOUNDS_NS: &[u64] = &[
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds of the batch-size buckets (commands per group commit).
pub const BATCH_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 65_536,
];

/// A histogram with fixed buckets: `record` is a binary search over the
/// bounds and three relaxed atomic adds. A reader sees each bucket
/// exactly, though not all buckets at one instant (a scrape racing a
/// record may see the bucket before the sum); Prometheus tolerates that.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [u64],
    /// One per bound, plus one for values above the last bound.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// What a reader takes from an [`AtomicHistogram`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    /// Per bucket (not cumulative); the last is above every bound.
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [u64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn latency() -> AtomicHistogram {
        AtomicHistogram::new(LATENCY_BOUNDS_NS)
    }

    #[inline]
    pub fn record(&self, value: u64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// Reject codes are below this (1xx risk, 2xx matching; gateways own 3xx
/// and up and never reach the engine).
pub const MAX_REJECT_CODE: usize = 300;

/// Symbols with ids below this have their book published to
/// [`BookStats`].
pub const MAX_BOOK_SYMBOLS: usize = 1_024;

/// One symbol's book as the engine thread last published it.
#[derive(Debug, Default)]
pub struct SymbolBook {
    pub present: AtomicBool,
    pub open_orders: AtomicU64,
    pub bid_levels: AtomicU64,
    pub ask_levels: AtomicU64,
    pub bid_qty: AtomicU64,
    pub ask_qty: AtomicU64,
}

/// Per-symbol book sizes, published by the engine thread at most once per
/// [`super::PipelineConfig::book_stats_interval`] (a walk over the
/// non-empty price levels; never per command).
#[derive(Debug)]
pub struct BookStats {
    pub symbols: Box<[SymbolBook]>,
    /// Times published.
    pub published: AtomicU64,
}

impl Default for BookStats {
    fn default() -> Self {
        BookStats {
            symbols: (0..MAX_BOOK_SYMBOLS)
                .map(|_| SymbolBook::default())
                .collect(),
            published: AtomicU64::new(0),
        }
    }
}

impl BookStats {
    /// Publishes every symbol's book from `engine` (engine thread only).
    pub(crate) fn publish(&self, engine: &crate::Engine) {
        for (id, slot) in self.symbols.iter().enumerate() {
            let Some(symbol) = engine.symbol(crate::SymbolId(id as u32)) else {
                continue;
            };
            let mut open = 0u64;
            let mut sides = [(0u64, 0u64); 2];
            for (side, ladder) in [&symbol.bids, &symbol.asks].into_iter().enumerate() {
                for index in ladder.iter_best_first() {
                    let level = &ladder.levels[index as usize];
                    open += level.orders as u64;
                    sides[side].0 += 1;
                    sides[side].1 += level.qty;
                }
            }
            slot.open_orders.store(open, Ordering::Relaxed);
            slot.bid_levels.store(sides[0].0, Ordering::Relaxed);
            slot.bid_qty.store(sides[0].1, Ordering::Relaxed);
            slot.ask_levels.store(sides[1].0, Ordering::Relaxed);
            slot.ask_qty.store(sides[1].1, Ordering::Relaxed);
            slot.present.store(true, Ordering::Release);
        }
        self.published.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = AtomicHistogram::new(&[10, 100]);
        for value in [0, 10, 11, 100, 101, u64::MAX / 4] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 2, 2]);
        assert_eq!(snapshot.count(), 6);
        assert_eq!(snapshot.sum, 10 + 11 + 100 + 101 + u64::MAX / 4);
    }
}
