//! Seeded, deterministic workload generator.
//!
//! The generator emits an abstract stream of [`Op`]s that every book under
//! test consumes unchanged. To aim cancels and replaces at orders that are
//! really live, and to place orders relative to the real touch, it runs its
//! own reference model of the book: a price-time book with lazy deletion
//! (per level a FIFO of `(id, version)` entries; cancelled or moved orders
//! leave stale entries that are skipped). The model is only used while
//! generating, which happens before any timing.
//!
//! # The mix
//!
//! **Prefill** (`prefill(n)`): `n` resting GTC limit orders, none crossing,
//! half bids and half asks, split evenly over the symbols. The distance `d`
//! (ticks, `d >= 1`) from the centre price (1,000,000 ticks) is drawn from
//! [`PriceProfile`]: with probability 1/2 "near the touch",
//! `d = 1 + Geometric(mean 32)`; otherwise "deep", `d = 1 + Uniform[0, 2000)`.
//! So each side spans about 2,000 price levels (4,000 in all), densest at
//! the touch.
//!
//! **Steady state** (`steady(n)`), per op (symbol chosen uniformly):
//!
//! | share | op | detail |
//! |---|---|---|
//! | ~40 % | new limit order | 90 % passive GTC: a buy at `best_ask - d`, a sell at `best_bid + d`, `d` from the same profile as the prefill (so the book shape is stationary); 10 % marketable GTC: a buy at `best_ask + Geometric(mean 1)` (remainder rests) |
//! | ~30 % | cancel | a uniformly random live order; 1 % of cancels name a uniformly random id ever issued (often stale) |
//! | 20 % | replace | a random live order; half quantity-down at the same price (new open qty uniform in `1..qty`, keeps priority), half a price move by `±(1 + Geometric(mean 2))` ticks at the same qty (loses priority; may cross and trade). A qty-down on a 1-lot order becomes a price move. |
//! | 10 % | marketable | half market orders, half IOC limits at `opposite touch + Geometric(mean 2)` |
//!
//! Quantities are uniform in `1..=100` lots. The add and cancel shares are
//! steered by feedback to hold the book at its prefilled size: with
//! `f = clamp((target - live) / (2 % of target), -1, 1)`, adds are
//! `40 + 5f` % and cancels `30 - 5f` % (so within 35..45 / 25..35 %).
//! The side of marketable orders leans against drift of the mid away from
//! the centre (buy probability `0.5 - 0.4 * clamp(drift / 1000 ticks)`),
//! which keeps every price well inside the symbols' price band; prices are
//! also clamped to `centre ± 9,000` ticks.
//!
//! Accounts: 1,000 in all; buys come from accounts `0..500`, sells from
//! `500..1000`. A buy and a sell never share an account, so self-trade
//! prevention (which BrokerX enforces and the other books do not have)
//! never triggers and every book must produce the same result.
//!
//! Ids: every new order (limit or market) takes the next caller id, so ids
//! are dense from 0; [`Workload::ids_issued`] bounds them.

use crate::rng::SplitMix64;
use std::collections::{BTreeMap, VecDeque};

/// One abstract book operation. `id` is the caller's order handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Limit order; `ioc` cancels any remainder instead of resting it.
    Add {
        id: u64,
        account: u32,
        symbol: u32,
        buy: bool,
        price_ticks: u64,
        qty: u64,
        ioc: bool,
    },
    /// Market order: trades at any price, the remainder is dropped.
    Market {
        id: u64,
        account: u32,
        symbol: u32,
        buy: bool,
        qty: u64,
    },
    Cancel {
        id: u64,
    },
    /// Cancel/replace; `qty` is the new open quantity. Same price and a
    /// lower quantity keeps time priority; anything else loses it.
    Replace {
        id: u64,
        price_ticks: u64,
        qty: u64,
    },
}

/// What the generator meant an op to be (for per-kind latency reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A GTC limit placed away from the opposite touch.
    PassiveLimit,
    /// A GTC limit at or through the opposite touch.
    MarketableLimit,
    /// A marketable IOC limit.
    Ioc,
    Market,
    /// A cancel of a live order.
    Cancel,
    /// A cancel of a random id ever issued (usually no longer live).
    StaleCancel,
    ReplaceQtyDown,
    ReplacePrice,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::PassiveLimit,
        OpKind::MarketableLimit,
        OpKind::Ioc,
        OpKind::Market,
        OpKind::Cancel,
        OpKind::StaleCancel,
        OpKind::ReplaceQtyDown,
        OpKind::ReplacePrice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::PassiveLimit => "limit, passive",
            OpKind::MarketableLimit => "limit, marketable",
            OpKind::Ioc => "IOC, marketable",
            OpKind::Market => "market",
            OpKind::Cancel => "cancel",
            OpKind::StaleCancel => "cancel, random id",
            OpKind::ReplaceQtyDown => "replace, qty down",
            OpKind::ReplacePrice => "replace, price",
        }
    }
}

/// How far from the reference price passive orders go.
#[derive(Clone, Copy, Debug)]
pub struct PriceProfile {
    /// Probability of a "near the touch" offset.
    pub near_share: f64,
    /// Mean of the geometric near-touch offset, in ticks.
    pub near_mean: f64,
    /// Deep offsets are uniform in `0..deep_levels`.
    pub deep_levels: u64,
}

impl Default for PriceProfile {
    fn default() -> Self {
        PriceProfile {
            near_share: 0.5,
            near_mean: 32.0,
            deep_levels: 2_000,
        }
    }
}

/// Parameters of a workload.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub symbols: u32,
    pub accounts: u32,
    /// Centre price in ticks (also the books' reference price).
    pub center: u64,
    /// Prices are clamped to `center ± max_offset`.
    pub max_offset: u64,
    pub profile: PriceProfile,
    pub max_qty: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 0x5EED_B0C5,
            symbols: 1,
            accounts: 1_000,
            center: 1_000_000,
            max_offset: 9_000,
            profile: PriceProfile::default(),
            max_qty: 100,
        }
    }
}

impl WorkloadConfig {
    pub fn with_seed(self, seed: u64) -> Self {
        WorkloadConfig { seed, ..self }
    }

    pub fn with_symbols(self, symbols: u32) -> Self {
        assert!(symbols > 0);
        WorkloadConfig { symbols, ..self }
    }
}

/// Counts of what the generator emitted.
#[derive(Clone, Copy, Debug, Default)]
pub struct MixStats {
    pub passive_adds: u64,
    pub marketable_adds: u64,
    pub cancels: u64,
    pub stale_cancels: u64,
    pub replace_qty_down: u64,
    pub replace_price: u64,
    pub markets: u64,
    pub iocs: u64,
    /// Model fills (maker side), for a rough picture of trading activity.
    pub fills: u64,
}

impl MixStats {
    pub fn total(&self) -> u64 {
        self.passive_adds
            + self.marketable_adds
            + self.cancels
            + self.replace_qty_down
            + self.replace_price
            + self.markets
            + self.iocs
    }
}

const DEAD: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct ModelOrder {
    price: u64,
    qty: u64,
    symbol: u32,
    /// Bumped whenever the order leaves a level; level entries carrying an
    /// older version are stale.
    version: u32,
    /// Position in its symbol's live list, or `DEAD`.
    live_pos: u32,
    buy: bool,
}

#[derive(Clone, Debug, Default)]
struct ModelLevel {
    queue: VecDeque<(u64, u32)>,
    live: u32,
}

#[derive(Clone, Debug, Default)]
struct SymbolModel {
    bids: BTreeMap<u64, ModelLevel>,
    asks: BTreeMap<u64, ModelLevel>,
    /// Ids of live (resting) orders, for uniform random picks.
    live: Vec<u64>,
    /// Resting orders the steady state aims for.
    target: usize,
}

/// The generator. See the module documentation for the mix.
#[derive(Clone, Debug)]
pub struct Workload {
    cfg: WorkloadConfig,
    rng: SplitMix64,
    orders: Vec<ModelOrder>,
    symbols: Vec<SymbolModel>,
    stats: MixStats,
    last_kind: OpKind,
}

impl Workload {
    pub fn new(cfg: WorkloadConfig) -> Workload {
        assert!(cfg.symbols > 0 && cfg.accounts >= 2);
        assert!(cfg.center > cfg.max_offset);
        Workload {
            cfg,
            rng: SplitMix64::new(cfg.seed),
            orders: Vec::new(),
            symbols: vec![SymbolModel::default(); cfg.symbols as usize],
            stats: MixStats::default(),
            last_kind: OpKind::PassiveLimit,
        }
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.cfg
    }

    pub fn stats(&self) -> MixStats {
        self.stats
    }

    /// Ids issued so far: every id in the stream is below this.
    pub fn ids_issued(&self) -> u64 {
        self.orders.len() as u64
    }

    /// Resting orders in the model, all symbols.
    pub fn resting(&self) -> usize {
        self.symbols.iter().map(|s| s.live.len()).sum()
    }

    pub fn best_bid(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .bids
            .last_key_value()
            .map(|(&p, _)| p)
    }

    pub fn best_ask(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .asks
            .first_key_value()
            .map(|(&p, _)| p)
    }

    /// `n` non-crossing resting orders around the centre, split evenly over
    /// the symbols; the steady state then holds each symbol at its share.
    pub fn prefill(&mut self, n: usize) -> Vec<Op> {
        let k = self.cfg.symbols as usize;
        let mut ops = Vec::with_capacity(n);
        for i in 0..n {
            let symbol = (i % k) as u32;
            let buy = self.rng.chance(0.5);
            let d = self.passive_offset();
            let c = self.cfg.center;
            let price = self.clamp(if buy { c - d } else { c + d });
            let qty = self.qty();
            ops.push(self.add(symbol, buy, price, qty, false));
            self.stats.passive_adds += 1;
        }
        for s in &mut self.symbols {
            s.target = s.live.len();
        }
        ops
    }

    /// `n` operations of the steady-state mix.
    pub fn steady(&mut self, n: usize) -> Vec<Op> {
        (0..n).map(|_| self.next_op()).collect()
    }

    /// Like [`Workload::steady`], with the kind of each op.
    pub fn steady_labeled(&mut self, n: usize) -> (Vec<Op>, Vec<OpKind>) {
        (0..n).map(|_| (self.next_op(), self.last_kind)).unzip()
    }

    fn next_op(&mut self) -> Op {
        let symbol = self.rng.below(self.cfg.symbols as u64) as u32;
        let s = &self.symbols[symbol as usize];
        let live = s.live.len() as f64;
        let target = s.target.max(1) as f64;
        let f = ((target - live) / (0.02 * target).max(1.0)).clamp(-1.0, 1.0);
        let p_add = 0.40 + 0.05 * f;
        let p_cancel = 0.30 - 0.05 * f;
        let u = self.rng.unit();
        if s.live.is_empty() || u < p_add {
            self.new_limit(symbol)
        } else if u < p_add + p_cancel {
            self.cancel(symbol)
        } else if u < p_add + p_cancel + 0.20 {
            self.replace(symbol)
        } else {
            self.marketable(symbol)
        }
    }

    fn qty(&mut self) -> u64 {
        1 + self.rng.below(self.cfg.max_qty)
    }

    fn passive_offset(&mut self) -> u64 {
        let p = self.cfg.profile;
        if self.rng.chance(p.near_share) {
            1 + self.rng.geometric(p.near_mean)
        } else {
            1 + self.rng.below(p.deep_levels)
        }
    }

    fn clamp(&self, price: u64) -> u64 {
        let c = self.cfg.center;
        price.clamp(c - self.cfg.max_offset, c + self.cfg.max_offset)
    }

    fn account(&mut self, buy: bool) -> u32 {
        let half = self.cfg.accounts / 2;
        let a = self.rng.below(half as u64) as u32;
        if buy {
            a
        } else {
            half + a
        }
    }

    /// The price a buy must stay below (best ask) and a sell above (best
    /// bid), with the centre standing in for an empty side.
    fn refs(&self, symbol: u32) -> (u64, u64) {
        let c = self.cfg.center;
        let bid = self.best_bid(symbol).unwrap_or(c - 1);
        let ask = self.best_ask(symbol).unwrap_or(c + 1);
        (bid, ask)
    }

    fn new_limit(&mut self, symbol: u32) -> Op {
        let buy = self.rng.chance(0.5);
        let (bid, ask) = self.refs(symbol);
        let qty = self.qty();
        let marketable = self.rng.chance(0.10);
        let price = if marketable {
            let d = self.rng.geometric(1.0);
            if buy {
                ask + d
            } else {
                bid.saturating_sub(d)
            }
        } else {
            let d = self.passive_offset();
            if buy {
                ask.saturating_sub(d)
            } else {
                bid + d
            }
        };
        let price = self.clamp(price);
        if marketable {
            self.stats.marketable_adds += 1;
            self.last_kind = OpKind::MarketableLimit;
        } else {
            self.stats.passive_adds += 1;
            self.last_kind = OpKind::PassiveLimit;
        }
        self.add(symbol, buy, price, qty, false)
    }

    fn marketable(&mut self, symbol: u32) -> Op {
        let (bid, ask) = self.refs(symbol);
        let mid = (bid + ask) / 2;
        let drift = (mid as f64 - self.cfg.center as f64) / 1_000.0;
        let buy = self.rng.chance(0.5 - 0.4 * drift.clamp(-1.0, 1.0));
        let qty = self.qty();
        if self.rng.chance(0.5) {
            self.stats.markets += 1;
            self.last_kind = OpKind::Market;
            let id = self.orders.len() as u64;
            let account = self.account(buy);
            self.orders.push(ModelOrder {
                price: 0,
                qty,
                symbol,
                version: 0,
                live_pos: DEAD,
                buy,
            });
            let limit = if buy { u64::MAX } else { 0 };
            self.take(symbol, buy, limit, qty);
            Op::Market {
                id,
                account,
                symbol,
                buy,
                qty,
            }
        } else {
            self.stats.iocs += 1;
            self.last_kind = OpKind::Ioc;
            let d = self.rng.geometric(2.0);
            let price = self.clamp(if buy { ask + d } else { bid.saturating_sub(d) });
            self.add(symbol, buy, price, qty, true)
        }
    }

    fn cancel(&mut self, symbol: u32) -> Op {
        self.stats.cancels += 1;
        self.last_kind = OpKind::Cancel;
        if self.rng.chance(0.01) {
            self.stats.stale_cancels += 1;
            self.last_kind = OpKind::StaleCancel;
            let id = self.rng.below(self.ids_issued());
            if self.orders[id as usize].live_pos != DEAD {
                self.remove_resting(id);
            }
            return Op::Cancel { id };
        }
        let id = self.random_live(symbol);
        self.remove_resting(id);
        Op::Cancel { id }
    }

    fn replace(&mut self, symbol: u32) -> Op {
        let id = self.random_live(symbol);
        let order = self.orders[id as usize];
        if self.rng.chance(0.5) && order.qty >= 2 {
            self.stats.replace_qty_down += 1;
            self.last_kind = OpKind::ReplaceQtyDown;
            let qty = 1 + self.rng.below(order.qty - 1);
            self.orders[id as usize].qty = qty;
            return Op::Replace {
                id,
                price_ticks: order.price,
                qty,
            };
        }
        self.stats.replace_price += 1;
        self.last_kind = OpKind::ReplacePrice;
        let step = 1 + self.rng.geometric(2.0);
        let up = self.rng.chance(0.5);
        let mut price = self.clamp(if up {
            order.price + step
        } else {
            order.price - step
        });
        if price == order.price {
            // Clamped onto itself: move the other way.
            price = if up { price - step } else { price + step };
        }
        self.remove_resting(id);
        let left = self.take(symbol, order.buy, price, order.qty);
        if left > 0 {
            let o = &mut self.orders[id as usize];
            o.price = price;
            o.qty = left;
            self.rest(id);
        }
        Op::Replace {
            id,
            price_ticks: price,
            qty: order.qty,
        }
    }

    fn random_live(&mut self, symbol: u32) -> u64 {
        let live = &self.symbols[symbol as usize].live;
        live[self.rng.below(live.len() as u64) as usize]
    }

    /// A new limit order: trades in the model, rests the remainder unless
    /// IOC, and returns the op.
    fn add(&mut self, symbol: u32, buy: bool, price: u64, qty: u64, ioc: bool) -> Op {
        let id = self.orders.len() as u64;
        let account = self.account(buy);
        self.orders.push(ModelOrder {
            price,
            qty,
            symbol,
            version: 0,
            live_pos: DEAD,
            buy,
        });
        let left = self.take(symbol, buy, price, qty);
        if left > 0 && !ioc {
            self.orders[id as usize].qty = left;
            self.rest(id);
        }
        Op::Add {
            id,
            account,
            symbol,
            buy,
            price_ticks: price,
            qty,
            ioc,
        }
    }

    /// Matches a taker against the model in price-time priority up to
    /// `limit`; returns the unfilled quantity.
    fn take(&mut self, symbol: u32, buy: bool, limit: u64, mut qty: u64) -> u64 {
        let SymbolModel {
            bids, asks, live, ..
        } = &mut self.symbols[symbol as usize];
        let orders = &mut self.orders;
        while qty > 0 {
            let entry = if buy {
                asks.first_entry()
            } else {
                bids.last_entry()
            };
            let Some(mut entry) = entry else { break };
            let price = *entry.key();
            if (buy && price > limit) || (!buy && price < limit) {
                break;
            }
            let level = entry.get_mut();
            while qty > 0 {
                let &(maker, version) = level.queue.front().expect("a live level has entries");
                let m = &mut orders[maker as usize];
                if m.version != version || m.live_pos == DEAD {
                    level.queue.pop_front();
                    continue;
                }
                let fill = qty.min(m.qty);
                qty -= fill;
                m.qty -= fill;
                self.stats.fills += 1;
                if m.qty == 0 {
                    level.queue.pop_front();
                    level.live -= 1;
                    m.version += 1;
                    unlist(orders, live, maker);
                    if level.live == 0 {
                        break;
                    }
                }
            }
            if level.live == 0 {
                entry.remove();
            }
        }
        qty
    }

    /// Puts a live-to-be order at the back of its level.
    fn rest(&mut self, id: u64) {
        let o = self.orders[id as usize];
        let s = &mut self.symbols[o.symbol as usize];
        let side = if o.buy { &mut s.bids } else { &mut s.asks };
        let level = side.entry(o.price).or_default();
        level.queue.push_back((id, o.version));
        level.live += 1;
        self.orders[id as usize].live_pos = s.live.len() as u32;
        s.live.push(id);
    }

    /// Takes a resting order off its level and the live list.
    fn remove_resting(&mut self, id: u64) {
        let o = self.orders[id as usize];
        debug_assert!(o.live_pos != DEAD);
        self.orders[id as usize].version += 1;
        let SymbolModel {
            bids, asks, live, ..
        } = &mut self.symbols[o.symbol as usize];
        let side = if o.buy { bids } else { asks };
        let level = side.get_mut(&o.price).expect("resting order's level");
        level.live -= 1;
        if level.live == 0 {
            side.remove(&o.price);
        } else if level.queue.len() > 2 * level.live as usize + 16 {
            // Drop stale entries so cancel-heavy levels do not grow.
            let orders = &self.orders;
            level.queue.retain(|&(i, v)| {
                let m = &orders[i as usize];
                m.version == v && m.live_pos != DEAD
            });
        }
        unlist(&mut self.orders, live, id);
    }
}

fn unlist(orders: &mut [ModelOrder], live: &mut Vec<u64>, id: u64) {
    let pos = orders[id as usize].live_pos as usize;
    debug_assert_eq!(live[pos], id);
    live.swap_remove(pos);
    if pos < live.len() {
        orders[live[pos] as usize].live_pos = pos as u32;
    }
    orders[id as usize].live_pos = DEAD;
}
