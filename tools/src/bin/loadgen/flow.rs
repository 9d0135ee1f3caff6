//! The order flow: seeded, several symbols, limit orders around the touch,
//! cancels and replaces of the session's own resting orders, and
//! marketable (IOC through the touch) orders, in a configurable mix. Each
//! session keeps the book of its own orders, updated from the answers, so
//! cancels and replaces name orders that are (as far as it knows) live.
//!
//! The touch is each symbol's reference price: passive buys rest 1 to 10
//! ticks below it and passive sells 1 to 10 ticks above (nearer levels more
//! often, halving per tick), marketable orders cross it by 5 ticks. So the
//! book never crosses, it stays near the sessions' `max_live` orders per
//! session, and a marketable order executes against whatever rests on the
//! other side.

use crate::measure::{Rng, CANCEL, DEEP, MARKETABLE, NEW, REPLACE};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    /// Prices in 1/10000 currency units.
    pub tick: u64,
    pub lot: u64,
    pub reference: u64,
    pub band_bps: u32,
}

impl Symbol {
    /// Ticks from the reference to the edge of the price band.
    fn band_ticks(&self) -> u64 {
        self.reference * u64::from(self.band_bps) / 10_000 / self.tick.max(1)
    }
}

/// Shares of each request kind, in parts of their sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub new: u32,
    pub marketable: u32,
    pub cancel: u32,
    pub replace: u32,
}

impl Default for Mix {
    /// Close to the engine benchmark's mix (`benches/src/workload.rs`):
    /// limit orders 45, cancels 27, replaces 18, marketable 10.
    fn default() -> Mix {
        Mix {
            new: 45,
            marketable: 10,
            cancel: 27,
            replace: 18,
        }
    }
}

impl Mix {
    /// `new=45,marketable=10,cancel=27,replace=18` (names may be omitted:
    /// they count 0).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            new: 0,
            marketable: 0,
            cancel: 0,
            replace: 0,
        };
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: expected name=share, got {part:?}"))?;
            let value: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("--mix: {name}: not a whole number: {value:?}"))?;
            match name.trim() {
                "new" | "limit" => mix.new = value,
                "marketable" | "market" => mix.marketable = value,
                "cancel" => mix.cancel = value,
                "replace" => mix.replace = value,
                other => {
                    return Err(format!(
                        "--mix: unknown kind {other:?} (new, marketable, cancel, replace)"
                    ))
                }
            }
        }
        if mix.new + mix.marketable == 0 {
            return Err(
                "--mix: new and marketable cannot both be 0 (nothing to cancel or replace)".into(),
            );
        }
        Ok(mix)
    }

    fn total(&self) -> u64 {
        u64::from(self.new + self.marketable + self.cancel + self.replace)
    }
}

/// One request to send.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    New {
        id: u64,
        symbol: usize,
        buy: bool,
        price: u64,
        qty: u64,
        /// Immediate or cancel (the marketable orders).
        ioc: bool,
        kind: u8,
    },
    Cancel {
        id: u64,
        target: u64,
        order: Order,
    },
    Replace {
        id: u64,
        target: u64,
        order: Order,
        /// The new price; the quantity stays.
        price: u64,
    },
}

impl Action {
    pub fn kind(&self) -> u8 {
        match self {
            Action::New { kind, .. } => *kind,
            Action::Cancel { .. } => CANCEL,
            Action::Replace { .. } => REPLACE,
        }
    }
}

/// One of the session's orders, as the session knows it.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    pub symbol: usize,
    pub buy: bool,
    pub price: u64,
    /// Quantity still open.
    pub open: u64,
    /// Quantity of the order as entered (FIX replaces name the total).
    pub qty: u64,
    /// Acknowledged by the server.
    pub acked: bool,
    /// A cancel or replace of it is in flight.
    pub pending: bool,
    /// Eligible for cancels and replaces (rests near the touch).
    pub near: bool,
}

/// A session's own orders, keyed by the request id that named them last
/// (the new order's id, then each replace's id).
#[derive(Default)]
pub struct Book {
    pub orders: HashMap<u64, Order>,
    /// Keys of acknowledged resting orders near the touch (may hold stale
    /// keys; they are skipped when drawn).
    live: Vec<u64>,
    /// Target key -> the request id of the cancel in flight for it.
    pub pending_cancel: HashMap<u64, u64>,
    /// Replace request id -> the key of the order it replaces.
    pub pending_replace: HashMap<u64, u64>,
}

impl Book {
    /// Number of orders a cancel or replace could name.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Records an order being sent.
    pub fn sent(&mut self, id: u64, order: Order) {
        self.orders.insert(id, order);
    }

    /// The server acknowledged order `key` with `open` shares open.
    pub fn acked(&mut self, key: u64, open: u64) {
        if let Some(order) = self.orders.get_mut(&key) {
            order.acked = true;
            order.open = open;
            if open == 0 {
                self.orders.remove(&key);
            } else if order.near && !order.pending {
                self.live.push(key);
            }
        }
    }

    /// Order `key` now has `open` shares open (after an execution or a
    /// partial cancel). When it closes, returns the id of a cancel that
    /// was in flight for it (which then came too late).
    pub fn set_open(&mut self, key: u64, open: u64) -> Option<u64> {
        match self.orders.get_mut(&key) {
            Some(order) if open > 0 => {
                order.open = open;
                None
            }
            Some(_) => self.closed(key),
            None => None,
        }
    }

    /// Reduces order `key`'s open quantity by `qty`.
    pub fn reduce(&mut self, key: u64, qty: u64) -> Option<u64> {
        let open = self.orders.get(&key)?.open.saturating_sub(qty);
        self.set_open(key, open)
    }

    /// Order `key` is closed (filled, cancelled, expired).
    pub fn closed(&mut self, key: u64) -> Option<u64> {
        self.orders.remove(&key);
        self.pending_cancel.remove(&key)
    }

    /// Order `old` was replaced by `new` at `price` with `open` shares.
    pub fn replaced(&mut self, old: u64, new: u64, price: u64, open: u64) {
        self.pending_replace.remove(&new);
        let Some(mut order) = self.orders.remove(&old) else {
            return;
        };
        order.price = price;
        order.open = open;
        order.pending = false;
        order.acked = true;
        if open > 0 {
            self.orders.insert(new, order);
            if order.near {
                self.live.push(new);
            }
        }
    }

    /// A cancel or replace of `key` failed: the order may be drawn again
    /// if it is still open.
    pub fn unpend(&mut self, key: u64) {
        self.pending_cancel.remove(&key);
        if let Some(order) = self.orders.get_mut(&key) {
            order.pending = false;
            if order.near && order.open > 0 {
                self.live.push(key);
            }
        }
    }

    /// Draws a live order at random and marks it pending.
    fn draw(&mut self, rng: &mut Rng) -> Option<(u64, Order)> {
        while !self.live.is_empty() {
            let at = rng.below(self.live.len() as u64) as usize;
            let key = self.live.swap_remove(at);
            if let Some(order) = self.orders.get_mut(&key) {
                if order.acked && !order.pending && order.open > 0 {
                    order.pending = true;
                    return Some((key, *order));
                }
            }
        }
        None
    }
}

/// A session's flow generator.
pub struct Flow {
    rng: Rng,
    mix: Mix,
    symbols: Vec<Symbol>,
    /// Resting orders per session above which new orders turn into cancels.
    max_live: usize,
    /// Only buy orders (REST clients hold cash and no shares).
    buy_only: bool,
}

impl Flow {
    pub fn new(seed: u64, mix: Mix, symbols: Vec<Symbol>, max_live: usize, buy_only: bool) -> Flow {
        Flow {
            rng: Rng::new(seed),
            mix,
            symbols,
            max_live: max_live.max(1),
            buy_only,
        }
    }

    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The next request, with id `id`; `deep` asks for a resting order far
    /// from the touch (book depth).
    pub fn next(&mut self, book: &mut Book, id: u64, deep: bool) -> Action {
        if deep {
            return self.new_order(book, id, DEEP);
        }
        let roll = self.rng.below(self.mix.total());
        let mut kind = if roll < u64::from(self.mix.new) {
            NEW
        } else if roll < u64::from(self.mix.new + self.mix.marketable) {
            MARKETABLE
        } else if roll < u64::from(self.mix.new + self.mix.marketable + self.mix.cancel) {
            CANCEL
        } else {
            REPLACE
        };
        if kind == NEW && book.live_len() >= self.max_live && self.mix.cancel > 0 {
            kind = CANCEL;
        }
        match kind {
            CANCEL | REPLACE => match book.draw(&mut self.rng) {
                Some((target, order)) if kind == CANCEL => {
                    book.pending_cancel.insert(target, id);
                    Action::Cancel { id, target, order }
                }
                Some((target, order)) => {
                    book.pending_replace.insert(id, target);
                    let symbol = self.symbols[order.symbol].clone();
                    let mut price = self.passive_price(&symbol, order.buy);
                    if price == order.price {
                        price = if order.buy {
                            price - symbol.tick
                        } else {
                            price + symbol.tick
                        };
                    }
                    Action::Replace {
                        id,
                        target,
                        order,
                        price,
                    }
                }
                None => self.new_order(book, id, NEW),
            },
            kind => self.new_order(book, id, kind),
        }
    }

    /// 1 tick from the touch half the time, 2 a quarter, ... up to 10.
    fn passive_price(&mut self, symbol: &Symbol, buy: bool) -> u64 {
        let mut ticks = 1;
        while ticks < 10 && self.rng.below(2) == 0 {
            ticks += 1;
        }
        offset(symbol, buy, ticks, false)
    }

    fn new_order(&mut self, book: &mut Book, id: u64, kind: u8) -> Action {
        let index = self.rng.below(self.symbols.len() as u64) as usize;
        let symbol = self.symbols[index].clone();
        let buy = self.buy_only || self.rng.below(2) == 0;
        let qty = symbol.lot * (1 + self.rng.below(10));
        let price = match kind {
            MARKETABLE => offset(&symbol, buy, 5, true),
            DEEP => {
                let far = symbol.band_ticks().saturating_sub(1).clamp(12, 300);
                offset(&symbol, buy, 11 + self.rng.below(far - 11), false)
            }
            _ => self.passive_price(&symbol, buy),
        };
        let ioc = kind == MARKETABLE;
        book.sent(
            id,
            Order {
                symbol: index,
                buy,
                price,
                open: qty,
                qty,
                acked: false,
                pending: false,
                near: kind == NEW,
            },
        );
        Action::New {
            id,
            symbol: index,
            buy,
            price,
            qty,
            ioc,
            kind,
        }
    }
}

/// The price `ticks` away from the reference: on the passive side (below
/// for a buy), or crossing it when `cross`.
fn offset(symbol: &Symbol, buy: bool, ticks: u64, cross: bool) -> u64 {
    let delta = ticks * symbol.tick;
    if buy != cross {
        symbol.reference.saturating_sub(delta).max(symbol.tick)
    } else {
        symbol.reference + delta
    }
}

/// A price in 1/10000 units as a decimal ("190.0100" -> "190.01").
pub fn decimal(units: u64) -> String {
    let whole = units / 10_000;
    let frac = units % 10_000;
    if frac == 0 {
        format!("{whole}")
    } else {
        let text = format!("{whole}.{frac:04}");
        text.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Vec<Symbol> {
        vec![Symbol {
            name: "AAPL".into(),
            tick: 100,
            lot: 1,
            reference: 1_900_000,
            band_bps: 1000,
        }]
    }

    #[test]
    fn mix_parses_and_rejects() {
        assert_eq!(
            Mix::parse("new=1,cancel=2").unwrap(),
            Mix {
                new: 1,
                marketable: 0,
                cancel: 2,
                replace: 0
            }
        );
        assert!(Mix::parse("new=x").is_err());
        assert!(Mix::parse("bogus=1").is_err());
        assert!(Mix::parse("cancel=5").is_err());
        assert!(Mix::parse("new").is_err());
    }

    #[test]
    fn flow_is_seeded_and_stays_on_its_side_of_the_touch() {
        let run = |seed| {
            let mut flow = Flow::new(seed, Mix::default(), symbols(), 20, false);
            let mut book = Book::default();
            let mut out = Vec::new();
            for id in 0..2000 {
                let action = flow.next(&mut book, id, false);
                if let Action::New {
                    buy,
                    price,
                    ioc,
                    id,
                    qty,
                    ..
                } = action
                {
                    // Passive orders never cross the reference.
                    if !ioc {
                        assert!(if buy {
                            price < 1_900_000
                        } else {
                            price > 1_900_000
                        });
                        book.acked(id, qty);
                    }
                }
                out.push(format!("{action:?}"));
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let kinds = run(7);
        assert!(kinds.iter().any(|a| a.starts_with("Cancel")));
        assert!(kinds.iter().any(|a| a.starts_with("Replace")));
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(1_900_100), "190.01");
        assert_eq!(decimal(1_900_000), "190");
        assert_eq!(decimal(5), "0.0005");
    }
}
