//! L2 market data: aggregated depth per symbol, kept from engine events.
//!
//! The engine already publishes each price level's total after every
//! change (`Event::BookLevel`, an L2 delta), so the depth here is a plain
//! map of level -> (qty, orders) that the deltas overwrite; a level with
//! zero quantity is gone. `MarketData` also keeps the last trade and the
//! halt flag, from which `l1` derives the top of book.

use crate::l1::{LastTrade, Quote, L1};
use brokerx_engine::{Event, Side, SymbolId};
use std::collections::BTreeMap;

/// One aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Price in 1/10000 currency units.
    pub price: u64,
    /// Open shares at the price.
    pub qty: u64,
    /// Resting orders at the price.
    pub orders: u32,
}

/// Depth of one symbol, best level first on each side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2 {
    /// Highest price first.
    pub bids: Vec<Level>,
    /// Lowest price first.
    pub asks: Vec<Level>,
}

/// Book of one symbol: price -> (qty, orders).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SymbolBook {
    bids: BTreeMap<u64, (u64, u32)>,
    asks: BTreeMap<u64, (u64, u32)>,
    last_trade: Option<LastTrade>,
    halted: bool,
}

impl SymbolBook {
    fn side(&self, side: Side) -> &BTreeMap<u64, (u64, u32)> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels(&self, side: Side) -> Box<dyn Iterator<Item = Level> + '_> {
        let level = |(&price, &(qty, orders)): (&u64, &(u64, u32))| Level { price, qty, orders };
        match side {
            Side::Buy => Box::new(self.bids.iter().rev().map(level)),
            Side::Sell => Box::new(self.asks.iter().map(level)),
        }
    }
}

/// L1 and L2 of every symbol, maintained from the engine's event stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarketData {
    symbols: BTreeMap<u32, SymbolBook>,
}

impl MarketData {
    pub fn new() -> MarketData {
        MarketData::default()
    }

    /// Applies one engine event; events that do not move market data are
    /// ignored. A delta for a symbol never announced creates it, so a
    /// consumer that starts mid-stream still tracks what it sees.
    pub fn apply(&mut self, event: &Event) {
        match *event {
            Event::SymbolAdded { symbol, .. } => {
                self.symbols.entry(symbol.0).or_default();
            }
            Event::TradingStatus { symbol, halted } => {
                self.symbols.entry(symbol.0).or_default().halted = halted;
            }
            Event::BookLevel {
                symbol,
                side,
                price,
                qty,
                orders,
            } => {
                let book = self.symbols.entry(symbol.0).or_default();
                let levels = match side {
                    Side::Buy => &mut book.bids,
                    Side::Sell => &mut book.asks,
                };
                if qty == 0 {
                    levels.remove(&price);
                } else {
                    levels.insert(price, (qty, orders));
                }
            }
            Event::Trade {
                symbol,
                price,
                qty,
                aggressor,
                match_id,
                ..
            } => {
                self.symbols.entry(symbol.0).or_default().last_trade = Some(LastTrade {
                    price,
                    qty,
                    aggressor,
                    match_id,
                });
            }
            _ => {}
        }
    }

    /// The depth and halt flags of every symbol of `engine`, read from its
    /// ladders (e.g. a snapshot's engine, to rebuild market data without
    /// replaying the journal from the start). The engine keeps no last
    /// trade, so `l1` has none until the next trade.
    pub fn from_engine(engine: &brokerx_engine::Engine) -> MarketData {
        let mut md = MarketData::new();
        for id in 0..brokerx_risk::MAX_SYMBOLS {
            let Some(state) = engine.symbol(SymbolId(id)) else {
                continue;
            };
            let book = md.symbols.entry(id).or_default();
            book.halted = state.halted;
            for side in [Side::Buy, Side::Sell] {
                let ladder = state.ladder(side);
                let levels = match side {
                    Side::Buy => &mut book.bids,
                    Side::Sell => &mut book.asks,
                };
                for index in ladder.iter_best_first() {
                    let level = &ladder.levels[index as usize];
                    levels.insert(state.price_at(index), (level.qty, level.orders));
                }
            }
        }
        md
    }

    /// Keeps `other`'s last trade for every symbol that has none here.
    pub fn keep_last_trades(&mut self, other: &MarketData) {
        for (id, book) in &mut self.symbols {
            if book.last_trade.is_none() {
                book.last_trade = other.symbols.get(id).and_then(|b| b.last_trade);
            }
        }
    }

    /// Applies every event of a slice, in order.
    pub fn apply_all(&mut self, events: &[Event]) {
        for event in events {
            self.apply(event);
        }
    }

    /// Symbols seen so far, ascending.
    pub fn symbols(&self) -> Vec<SymbolId> {
        self.symbols.keys().map(|&id| SymbolId(id)).collect()
    }

    /// Up to `depth` levels per side, best first; empty for an unknown
    /// symbol.
    pub fn l2(&self, symbol: SymbolId, depth: usize) -> L2 {
        match self.symbols.get(&symbol.0) {
            Some(book) => L2 {
                bids: book.levels(Side::Buy).take(depth).collect(),
                asks: book.levels(Side::Sell).take(depth).collect(),
            },
            None => L2::default(),
        }
    }

    /// Top of book and last trade; `None` for an unknown symbol.
    pub fn l1(&self, symbol: SymbolId) -> Option<L1> {
        let book = self.symbols.get(&symbol.0)?;
        let top = |side: Side| {
            book.levels(side).next().map(|level| Quote {
                price: level.price,
                qty: level.qty,
                orders: level.orders,
            })
        };
        Some(L1 {
            bid: top(Side::Buy),
            ask: top(Side::Sell),
            last_trade: book.last_trade,
            halted: book.halted,
        })
    }

    /// Number of price levels on one side.
    pub fn level_count(&self, symbol: SymbolId, side: Side) -> usize {
        self.symbols
            .get(&symbol.0)
            .map_or(0, |book| book.side(side).len())
    }
}
