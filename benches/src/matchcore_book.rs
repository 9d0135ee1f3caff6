//! matchcore 0.4.0 behind [`BookUnderTest`]: one `OrderBook` per symbol.
//!
//! Based on the caller-id adapter in our MATCHCORE_API.md, with two
//! changes: it covers several symbols, and the caller-id table is a dense
//! `Vec<u64>` indexed by caller id (the same structure and size as in the
//! BrokerX wrapper) instead of a hash map, so both engines pay the same
//! id-translation cost.
//!
//! matchcore assigns order ids itself (`OrderId == SequenceNumber` of the
//! submit), so the table maps caller id -> (symbol, engine id, side).
//!
//! **Trade-through workaround.** matchcore 0.4.0 matches crossing GTC and
//! IOC limit orders (and price amends) with no price limit: they sweep
//! past their limit price until filled. Before a crossing limit we add up
//! the opposite quantity at or better than the limit; if it is short of
//! the order's quantity we first send an IOC for exactly that amount, then
//! rest (GTC) or drop (IOC) the remainder. A crossing price amend that
//! would trade through becomes cancel + new order (the same priority
//! outcome as an amend to a new price).

use crate::{BookUnderTest, Handle, Op};
use matchcore::{
    AmendCmd, AmendPatch, CancelCmd, Command, CommandKind, CommandMeta, CommandOutcome,
    CommandReport, LimitOrder, LimitOrderPatch, MarketOrder, NewOrder, OrderBook, OrderFlags,
    OrderId, OrderKind, Price, Quantity, QuantityPolicy, SequenceNumber, Side, SubmitCmd,
    TimeInForce, Timestamp,
};

/// A caller id's entry: the engine order id in the low 47 bits, the
/// symbol in bits 47..63 and the side in bit 63; `NONE` when the caller id
/// has no resting order we know of. Orders filled passively or cancelled
/// keep their entry (matchcore has no "maker done" event); cancelling one
/// again is a harmless `OrderNotFound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapped {
    engine: u64,
    symbol: u32,
    buy: bool,
}

const NONE: u64 = u64::MAX;
const ENGINE_BITS: u32 = 47;
/// An order id matchcore never assigns (ids are sequence numbers).
const NEVER_ISSUED: u64 = (1 << ENGINE_BITS) - 1;

impl Mapped {
    fn pack(self) -> u64 {
        debug_assert!(self.engine < 1 << ENGINE_BITS && self.symbol < 1 << 16);
        self.engine | (self.symbol as u64) << ENGINE_BITS | (self.buy as u64) << 63
    }

    fn unpack(word: u64) -> Option<Mapped> {
        (word != NONE).then_some(Mapped {
            engine: word & ((1 << ENGINE_BITS) - 1),
            symbol: ((word >> ENGINE_BITS) & 0xFFFF) as u32,
            buy: word >> 63 == 1,
        })
    }
}

#[derive(Clone, Debug)]
struct McSymbol {
    book: OrderBook,
    /// Next sequence number; also the id the next submit gets.
    seq: u64,
}

/// matchcore books for a set of symbols, with caller ids.
#[derive(Clone, Debug)]
pub struct MatchcoreBook {
    symbols: Vec<McSymbol>,
    /// Caller id -> packed [`Mapped`]; caller ids are dense.
    ids: Vec<u64>,
}

fn side(buy: bool) -> Side {
    if buy {
        Side::Buy
    } else {
        Side::Sell
    }
}

fn executed(out: &CommandOutcome) -> u64 {
    match out {
        CommandOutcome::Applied(CommandReport::Submit(e) | CommandReport::Amend(e)) => e
            .target_order()
            .match_result()
            .map_or(0, |m| m.executed_quantity().0),
        _ => 0,
    }
}

impl McSymbol {
    fn exec(&mut self, kind: CommandKind) -> CommandOutcome {
        // Sequence numbers start at 0, must not skip, and are consumed even
        // by rejected commands; timestamps only matter for GTD.
        let meta = CommandMeta {
            sequence_number: SequenceNumber(self.seq),
            timestamp: Timestamp(0),
        };
        self.seq += 1;
        self.book.execute(&Command { meta, kind })
    }

    /// Returns (engine id, executed quantity).
    fn submit_limit(&mut self, buy: bool, price: u64, qty: u64, tif: TimeInForce) -> (u64, u64) {
        let engine = self.seq;
        let order = LimitOrder::new(
            Price(price),
            QuantityPolicy::Standard {
                quantity: Quantity(qty),
            },
            OrderFlags::new(side(buy), false, tif),
        );
        let out = self.exec(CommandKind::Submit(SubmitCmd {
            order: NewOrder::Limit(order),
        }));
        (engine, executed(&out))
    }

    /// Opposite quantity at or better than `price`, stopping at `cap`.
    fn crossable_qty(&self, buy: bool, price: u64, cap: u64) -> u64 {
        let limit = self.book.limit();
        let mut acc = 0u64;
        if buy {
            for (p, &level) in limit.asks().iter() {
                if p.0 > price || acc >= cap {
                    break;
                }
                acc += limit.levels()[level].total_quantity().0;
            }
        } else {
            for (p, &level) in limit.bids().iter().rev() {
                if p.0 < price || acc >= cap {
                    break;
                }
                acc += limit.levels()[level].total_quantity().0;
            }
        }
        acc
    }

    /// `Some(available)` if a limit at `price` for `qty` would trade
    /// through its limit in matchcore 0.4.0.
    fn trade_through(&self, buy: bool, price: u64, qty: u64) -> Option<u64> {
        if !self.book.has_crossable_order(side(buy), Price(price)) {
            return None;
        }
        let available = self.crossable_qty(buy, price, qty);
        (available < qty).then_some(available)
    }

    /// A limit order; returns the engine id if a remainder rests.
    fn add_limit(&mut self, buy: bool, price: u64, mut qty: u64, ioc: bool) -> Option<u64> {
        if let Some(available) = self.trade_through(buy, price, qty) {
            self.submit_limit(buy, price, available, TimeInForce::Ioc);
            if ioc {
                return None;
            }
            qty -= available;
        }
        let tif = if ioc {
            TimeInForce::Ioc
        } else {
            TimeInForce::Gtc
        };
        let (engine, done) = self.submit_limit(buy, price, qty, tif);
        (!ioc && done < qty).then_some(engine)
    }

    fn cancel(&mut self, engine: u64) -> bool {
        let cmd = CancelCmd {
            order_id: OrderId(engine),
            order_kind: OrderKind::Limit,
        };
        matches!(
            self.exec(CommandKind::Cancel(cmd)),
            CommandOutcome::Applied(_)
        )
    }
}

impl MatchcoreBook {
    /// Books for `symbols` symbols; the caller-id table is filled to
    /// `id_capacity` entries up front (as in the BrokerX wrapper).
    pub fn new(symbols: u32, id_capacity: usize) -> MatchcoreBook {
        MatchcoreBook {
            symbols: (0..symbols)
                .map(|s| McSymbol {
                    book: OrderBook::new(&format!("S{s}")),
                    seq: 0,
                })
                .collect(),
            ids: crate::id_table(id_capacity, NONE),
        }
    }

    /// The book of one symbol.
    pub fn book(&self, symbol: u32) -> &OrderBook {
        &self.symbols[symbol as usize].book
    }

    #[inline]
    fn set(&mut self, id: u64, word: u64) {
        let idx = id as usize;
        if idx >= self.ids.len() {
            self.ids.resize(idx + 1, NONE);
        }
        self.ids[idx] = word;
    }

    #[inline]
    fn get(&self, id: u64) -> Option<Mapped> {
        Mapped::unpack(self.ids.get(id as usize).copied().unwrap_or(NONE))
    }

    fn replace(&mut self, id: u64, price: u64, qty: u64) {
        let Some(m) = self.get(id) else {
            return;
        };
        let resting = self.replace_mapped(m, price, qty);
        self.ids[id as usize] = resting.map_or(NONE, |m| m.pack());
    }

    /// Replaces the order `m`; returns where it rests afterwards, if it
    /// does.
    fn replace_mapped(&mut self, m: Mapped, price: u64, qty: u64) -> Option<Mapped> {
        let book = &mut self.symbols[m.symbol as usize];
        if book.trade_through(m.buy, price, qty).is_some() {
            if book.cancel(m.engine) {
                if let Some(engine) = book.add_limit(m.buy, price, qty, false) {
                    return Some(Mapped { engine, ..m });
                }
            }
            return None;
        }
        let patch = LimitOrderPatch::new()
            .with_price(Price(price))
            .with_quantity_policy(QuantityPolicy::Standard {
                quantity: Quantity(qty),
            });
        let out = book.exec(CommandKind::Amend(AmendCmd {
            order_id: OrderId(m.engine),
            patch: AmendPatch::Limit(patch),
        }));
        let resting = matches!(out, CommandOutcome::Applied(_)) && executed(&out) < qty;
        resting.then_some(m)
    }

    /// The packed word for a cancel of `id`: an id that never rested is
    /// sent as an id matchcore never issues.
    fn cancel_word(&self, id: u64) -> u64 {
        self.get(id)
            .unwrap_or(Mapped {
                engine: NEVER_ISSUED,
                symbol: 0,
                buy: false,
            })
            .pack()
    }
}

impl BookUnderTest for MatchcoreBook {
    fn name(&self) -> &'static str {
        "matchcore"
    }

    #[inline]
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
            } => {
                let rested = self.symbols[symbol as usize].add_limit(buy, price_ticks, qty, ioc);
                let word = rested.map_or(NONE, |engine| {
                    Mapped {
                        engine,
                        symbol,
                        buy,
                    }
                    .pack()
                });
                self.set(id, word);
            }
            Op::Market {
                id,
                symbol,
                buy,
                qty,
                ..
            } => {
                // market_to_limit = false: the remainder is cancelled.
                let order = MarketOrder::new(Quantity(qty), side(buy), false);
                self.symbols[symbol as usize].exec(CommandKind::Submit(SubmitCmd {
                    order: NewOrder::Market(order),
                }));
                self.set(id, NONE);
            }
            Op::Cancel { id } => {
                // Like the BrokerX wrapper, every cancel reaches the engine,
                // which rejects ids that are no longer live: the table is
                // not cleared, and an id that never rested is sent as an
                // id matchcore never issues.
                let m = Mapped::unpack(self.cancel_word(id)).expect("packed");
                self.symbols[m.symbol as usize].cancel(m.engine);
            }
            Op::Replace {
                id,
                price_ticks,
                qty,
            } => self.replace(id, price_ticks, qty),
        }
    }

    fn handle(&self, op: &Op) -> Handle {
        let order = match *op {
            Op::Cancel { id } => self.cancel_word(id),
            Op::Replace { id, .. } => self.ids.get(id as usize).copied().unwrap_or(NONE),
            Op::Add { .. } | Op::Market { .. } => NONE,
        };
        Handle { order, aux: 0 }
    }

    #[inline]
    fn apply_handle(&mut self, op: &Op, handle: Handle) {
        match *op {
            Op::Add {
                symbol,
                buy,
                price_ticks,
                qty,
                ioc,
                ..
            } => {
                self.symbols[symbol as usize].add_limit(buy, price_ticks, qty, ioc);
            }
            Op::Market {
                symbol, buy, qty, ..
            } => {
                let order = MarketOrder::new(Quantity(qty), side(buy), false);
                self.symbols[symbol as usize].exec(CommandKind::Submit(SubmitCmd {
                    order: NewOrder::Market(order),
                }));
            }
            Op::Cancel { .. } => {
                let m = Mapped::unpack(handle.order).expect("cancel handle");
                self.symbols[m.symbol as usize].cancel(m.engine);
            }
            Op::Replace {
                price_ticks, qty, ..
            } => {
                if let Some(m) = Mapped::unpack(handle.order) {
                    self.replace_mapped(m, price_ticks, qty);
                }
            }
        }
    }

    fn resting(&self) -> usize {
        self.symbols
            .iter()
            .map(|s| s.book.limit().orders().len())
            .sum()
    }

    fn best_bid(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .book
            .best_bid_price()
            .map(|p| p.0)
    }

    fn best_ask(&self, symbol: u32) -> Option<u64> {
        self.symbols[symbol as usize]
            .book
            .best_ask_price()
            .map(|p| p.0)
    }

    fn harness_bytes(&self) -> usize {
        self.ids.capacity() * std::mem::size_of::<u64>()
    }
}
