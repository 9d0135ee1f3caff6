//! BrokerX engine behind [`BookUnderTest`].

use crate::{BookUnderTest, Handle, Op};
use brokerx_engine::{
    Command, Engine, EngineConfig, Event, Limits, OrderId, OrderType, RejectCode,
    SelfTradePrevention, SequencedCommand, Side, SymbolId, SymbolSpec, TimeInForce,
};
use brokerx_risk::AccountId;

/// Reference price of every benchmark symbol (ticks; tick size 1).
pub const REFERENCE_PRICE: u64 = 1_000_000;
/// ±1 % band: ±10,000 ticks, covering the workload's `center ± 9,000`.
pub const BAND_BPS: u32 = 100;
/// Cash per account (1,000 accounts: 1e18 in all, below `u64::MAX`).
pub const CASH_PER_ACCOUNT: u64 = 1_000_000_000_000_000;
/// Shares per account and symbol.
pub const SHARES_PER_ACCOUNT: u64 = 1_000_000_000_000;

/// Rejections seen, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectStats {
    /// Cancels/replaces of orders that are no longer live (expected: the
    /// workload sends a few stale ids).
    pub unknown_order: u64,
    /// Anything else (unexpected in the benchmark workload).
    pub other: u64,
    pub last_other: Option<RejectCode>,
}

/// `brokerx_engine::Engine` driven through `Engine::apply`, one command per
/// op, with one reused event buffer.
#[derive(Clone, Debug)]
pub struct BrokerxEngine {
    engine: Engine,
    events: Vec<Event>,
    seq: u64,
    /// Caller id -> engine `OrderId` (0: none); caller ids are dense.
    ids: Vec<u64>,
    rejects: RejectStats,
}

impl BrokerxEngine {
    /// An engine with `symbols` symbols and `accounts` funded accounts
    /// (caller account `a` is engine account `a + 1`). `order_capacity`
    /// sizes the order slab. The caller-id table is filled to
    /// `id_capacity` entries up front, so that first touches of its pages
    /// (page faults) do not land in timed ops; it grows, allocating, if a
    /// larger id arrives.
    pub fn new(symbols: u32, accounts: u32, order_capacity: u32, id_capacity: usize) -> Self {
        let config = EngineConfig {
            order_capacity,
            ..EngineConfig::default()
        };
        let mut book = BrokerxEngine {
            engine: Engine::new(config),
            events: Vec::with_capacity(4096),
            seq: 0,
            ids: crate::id_table(id_capacity, 0),
            rejects: RejectStats::default(),
        };
        let spec = SymbolSpec {
            tick_size: 1,
            lot_size: 1,
            reference_price: REFERENCE_PRICE,
            band_bps: BAND_BPS,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        };
        for s in 0..symbols {
            book.admin(Command::AddSymbol {
                symbol: SymbolId(s),
                spec,
            });
        }
        for a in 0..accounts {
            let account = AccountId(a + 1);
            book.admin(Command::CreateAccount {
                account,
                limits: Limits::UNLIMITED,
                self_trade: SelfTradePrevention::AccountDefault,
            });
            book.admin(Command::DepositCash {
                account,
                amount: CASH_PER_ACCOUNT,
                tag: 0,
            });
            for s in 0..symbols {
                book.admin(Command::DepositShares {
                    account,
                    symbol: SymbolId(s),
                    qty: SHARES_PER_ACCOUNT,
                    tag: 0,
                });
            }
        }
        book
    }

    fn admin(&mut self, command: Command) {
        self.send(command);
        if let Some(Event::Rejected { code, .. }) = self.events.first() {
            panic!("benchmark setup rejected: {command:?}: {code:?}");
        }
    }

    #[inline]
    fn send(&mut self, command: Command) {
        self.seq += 1;
        self.events.clear();
        let sequenced = SequencedCommand {
            seq: self.seq,
            timestamp_ns: self.seq,
            command,
        };
        self.engine.apply(&sequenced, &mut self.events);
    }

    /// The wrapped engine (for `bytes_reserved`, `resting_orders`, state).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn rejects(&self) -> RejectStats {
        self.rejects
    }

    /// Events of the last command.
    pub fn last_events(&self) -> &[Event] {
        &self.events
    }

    /// A new order without a caller-id table entry (pre-resolved replay).
    #[inline]
    fn new_order_bare(&mut self, command: Command) {
        self.send(command);
        if !matches!(self.events.first(), Some(Event::OrderAccepted { .. })) {
            self.note_reject();
        }
    }

    #[inline]
    fn new_order(&mut self, id: u64, command: Command) {
        self.send(command);
        let idx = id as usize;
        if idx >= self.ids.len() {
            self.ids.resize(idx + 1, 0);
        }
        match self.events.first() {
            Some(&Event::OrderAccepted { order_id, .. }) => self.ids[idx] = order_id.0,
            _ => self.note_reject(),
        }
    }

    /// The engine order id of a caller id, and its owner. A gateway knows
    /// the owner from the session; here it is read from the order's node,
    /// the cache line the engine reads next anyway. For an order that is
    /// gone any existing account will do: the engine rejects the id.
    #[inline]
    fn mapped(&self, id: u64) -> (OrderId, AccountId) {
        let order = OrderId(self.ids.get(id as usize).copied().unwrap_or(0));
        let account = self.engine.order(order).map_or(1, |node| node.account);
        (order, AccountId(account))
    }

    #[inline]
    fn note_reject(&mut self) {
        if let Some(&Event::Rejected { code, .. }) = self.events.first() {
            if code == RejectCode::UnknownOrder {
                self.rejects.unknown_order += 1;
            } else {
                self.rejects.other += 1;
                self.rejects.last_other = Some(code);
            }
        }
    }
}

fn side(buy: bool) -> Side {
    if buy {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// The `NewOrder` command of an add or market op.
#[inline]
fn new_order(op: &Op) -> Command {
    match *op {
        Op::Add {
            id,
            account,
            symbol,
            buy,
            price_ticks,
            qty,
            ioc,
        } => Command::NewOrder {
            account: AccountId(account + 1),
            symbol: SymbolId(symbol),
            side: side(buy),
            order_type: OrderType::Limit,
            tif: if ioc {
                TimeInForce::Ioc
            } else {
                TimeInForce::Gtc
            },
            price: price_ticks,
            qty,
            self_trade: SelfTradePrevention::AccountDefault,
            tag: id,
        },
        Op::Market {
            id,
            account,
            symbol,
            buy,
            qty,
        } => Command::NewOrder {
            account: AccountId(account + 1),
            symbol: SymbolId(symbol),
            side: side(buy),
            order_type: OrderType::Market,
            tif: TimeInForce::Ioc,
            price: 0,
            qty,
            self_trade: SelfTradePrevention::AccountDefault,
            tag: id,
        },
        Op::Cancel { .. } | Op::Replace { .. } => unreachable!("not a new order"),
    }
}

/// The `Cancel` or `Replace` command of a cancel or replace op.
#[inline]
fn amend(op: &Op, order_id: OrderId, account: AccountId) -> Command {
    match *op {
        Op::Cancel { id } => Command::Cancel {
            account,
            order_id,
            tag: id,
        },
        Op::Replace {
            id,
            price_ticks,
            qty,
        } => Command::Replace {
            account,
            order_id,
            price: price_ticks,
            qty,
            tag: id,
        },
        Op::Add { .. } | Op::Market { .. } => unreachable!("not an amend"),
    }
}

impl BookUnderTest for BrokerxEngine {
    fn name(&self) -> &'static str {
        "brokerx"
    }

    #[inline]
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Add { id, .. } | Op::Market { id, .. } => self.new_order(id, new_order(op)),
            Op::Cancel { id } | Op::Replace { id, .. } => {
                let (order_id, account) = self.mapped(id);
                self.send(amend(op, order_id, account));
                self.note_reject();
            }
        }
    }

    fn handle(&self, op: &Op) -> Handle {
        match *op {
            Op::Cancel { id } | Op::Replace { id, .. } => {
                let (order_id, account) = self.mapped(id);
                Handle {
                    order: order_id.0,
                    aux: account.0,
                }
            }
            Op::Add { .. } | Op::Market { .. } => Handle::default(),
        }
    }

    #[inline]
    fn apply_handle(&mut self, op: &Op, handle: Handle) {
        match *op {
            Op::Add { .. } | Op::Market { .. } => self.new_order_bare(new_order(op)),
            Op::Cancel { .. } | Op::Replace { .. } => {
                self.send(amend(op, OrderId(handle.order), AccountId(handle.aux)));
                self.note_reject();
            }
        }
    }

    fn resting(&self) -> usize {
        self.engine.resting_orders() as usize
    }

    fn best_bid(&self, symbol: u32) -> Option<u64> {
        self.engine
            .symbol(SymbolId(symbol))
            .and_then(|s| s.best_price(Side::Buy))
    }

    fn best_ask(&self, symbol: u32) -> Option<u64> {
        self.engine
            .symbol(SymbolId(symbol))
            .and_then(|s| s.best_price(Side::Sell))
    }

    fn harness_bytes(&self) -> usize {
        self.ids.capacity() * std::mem::size_of::<u64>()
            + self.events.capacity() * std::mem::size_of::<Event>()
    }
}
