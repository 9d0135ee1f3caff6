//! The naive baseline: what one writes first. Per symbol and side a
//! `BTreeMap<price, VecDeque<order>>`, plus a std `HashMap` (SipHash) from
//! id to where the order rests. Cancels and replaces find the order in its
//! level's queue by linear search.

use crate::{BookUnderTest, Op};
use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Clone, Copy, Debug)]
struct NaiveOrder {
    id: u64,
    qty: u64,
}

#[derive(Clone, Copy, Debug)]
struct Location {
    symbol: u32,
    buy: bool,
    price: u64,
}

type Side = BTreeMap<u64, VecDeque<NaiveOrder>>;

#[derive(Clone, Debug, Default)]
struct NaiveSymbol {
    bids: Side,
    asks: Side,
}

impl NaiveSymbol {
    fn side(&mut self, buy: bool) -> &mut Side {
        if buy {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }
}

/// Price-time book: trades at the resting price, IOC and market remainders
/// are dropped, a replace to the same price with no more quantity keeps
/// priority, any other replace goes to the back (and may trade).
#[derive(Clone, Debug, Default)]
pub struct NaiveBook {
    symbols: Vec<NaiveSymbol>,
    index: HashMap<u64, Location>,
}

impl NaiveBook {
    pub fn new(symbols: u32) -> NaiveBook {
        NaiveBook {
            symbols: vec![NaiveSymbol::default(); symbols as usize],
            index: HashMap::new(),
        }
    }

    /// Matches against the opposite side up to `limit` (`None`: any
    /// price); returns the unfilled quantity.
    fn take(&mut self, symbol: u32, buy: bool, limit: Option<u64>, mut qty: u64) -> u64 {
        let book = self.symbols[symbol as usize].side(!buy);
        while qty > 0 {
            let entry = if buy {
                book.first_entry()
            } else {
                book.last_entry()
            };
            let Some(mut entry) = entry else { break };
            let price = *entry.key();
            let crosses = match limit {
                None => true,
                Some(l) => (buy && price <= l) || (!buy && price >= l),
            };
            if !crosses {
                break;
            }
            let queue = entry.get_mut();
            while qty > 0 {
                let Some(maker) = queue.front_mut() else {
                    break;
                };
                let fill = qty.min(maker.qty);
                qty -= fill;
                maker.qty -= fill;
                if maker.qty == 0 {
                    let id = maker.id;
                    queue.pop_front();
                    self.index.remove(&id);
                }
            }
            if queue.is_empty() {
                entry.remove();
            }
        }
        qty
    }

    fn rest(&mut self, id: u64, symbol: u32, buy: bool, price: u64, qty: u64) {
        self.symbols[symbol as usize]
            .side(buy)
            .entry(price)
            .or_default()
            .push_back(NaiveOrder { id, qty });
        self.index.insert(id, Location { symbol, buy, price });
    }

    fn limit(&mut self, id: u64, symbol: u32, buy: bool, price: u64, qty: u64, ioc: bool) {
        let left = self.take(symbol, buy, Some(price), qty);
        if left > 0 && !ioc {
            self.rest(id, symbol, buy, price, left);
        }
    }

    /// Removes the order from its queue; returns its open quantity.
    fn unqueue(&mut self, id: u64, at: Location) -> u64 {
        let side = self.symbols[at.symbol as usize].side(at.buy);
        let queue = side.get_mut(&at.price).expect("indexed order's level");
        let pos = queue
            .iter()
            .position(|o| o.id == id)
            .expect("indexed order in its level");
        let order = queue.remove(pos).expect("position is in range");
        if queue.is_empty() {
            side.remove(&at.price);
        }
        order.qty
    }
}

impl BookUnderTest for NaiveBook {
    fn name(&self) -> &'static str {
        "naive"
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Add {
                id,
                symbol,
                buy,
                price_ticks,
                qty,
                ioc,
                ..
            } => self.limit(id, symbol, buy, price_ticks, qty, ioc),
            Op::Market {
                symbol, buy, qty, ..
            } => {
                self.take(symbol, buy, None, qty);
            }
            Op::Cancel { id } => {
                if let Some(at) = self.index.remove(&id) {
                    self.unqueue(id, at);
                }
            }
            Op::Replace {
                id,
                price_ticks,
                qty,
            } => {
                let Some(&at) = self.index.get(&id) else {
                    return;
                };
                if price_ticks == at.price {
                    let queue = self.symbols[at.symbol as usize]
                        .side(at.buy)
                        .get_mut(&at.price)
                        .expect("indexed order's level");
                    let order = queue
                        .iter_mut()
                        .find(|o| o.id == id)
                        .expect("indexed order in its level");
                    if qty <= order.qty {
                        order.qty = qty;
                        return;
                    }
                }
                self.index.remove(&id);
                self.unqueue(id, at);
                self.limit(id, at.symbol, at.buy, price_ticks, qty, false);
            }
        }
    }

    fn resting(&self) -> usize {
        self.index.len()
    }

    fn best_bid(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .bids
            .last_key_value()
            .map(|(&p, _)| p)
    }

    fn best_ask(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .asks
            .first_key_value()
            .map(|(&p, _)| p)
    }
}
