//! Test harness: drives a real `brokerx_engine::Engine`, feeds every
//! command's events to `MarketData` and the `FeedDeriver`, decodes the
//! derived bytes with the independent `itchy` decoder into an
//! order-by-order book, and compares all of it with the engine's own book.

#![allow(dead_code)]

use brokerx_engine::{
    AccountId, Command, Engine, EngineConfig, Event, Limits, OrderId, OrderType,
    SelfTradePrevention, SequencedCommand, Side, SymbolId, SymbolSpec, TimeInForce,
};
use brokerx_marketdata::feed::{FeedDeriver, SymbolDirectory};
use brokerx_marketdata::itch::Message;
use brokerx_marketdata::MarketData;
use std::collections::{BTreeMap, HashMap};

pub const SYM: SymbolId = SymbolId(0);
pub const OTHER: SymbolId = SymbolId(1);
/// Self-trade mode CancelNewest.
pub const ALICE: AccountId = AccountId(1);
/// CancelOldest.
pub const BOB: AccountId = AccountId(2);
/// CancelBoth.
pub const CAROL: AccountId = AccountId(3);
/// CancelNewest.
pub const DAVE: AccountId = AccountId(4);
pub const ACCOUNTS: [AccountId; 4] = [ALICE, BOB, CAROL, DAVE];

/// tick 10, lot 10, reference 10_000, band ±10% (9_000..=11_000).
pub const SPEC: SymbolSpec = SymbolSpec {
    tick_size: 10,
    lot_size: 10,
    reference_price: 10_000,
    band_bps: 1_000,
    maker_fee_per_share: 1,
    taker_fee_per_share: 2,
};

/// 2025-11-22 09:30 UTC in ns since the epoch.
pub const START_NS: u64 = 1_763_769_600_000_000_000 + 34_200_000_000_000;

/// splitmix64: small, seeded, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One resting order as a feed consumer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DecodedOrder {
    locate: u16,
    side: Side,
    price: u32,
    shares: u32,
}

/// An order-by-order book rebuilt only from `itchy`-decoded messages.
#[derive(Default)]
pub struct DecodedBook {
    orders: BTreeMap<u64, DecodedOrder>,
    /// locate -> (stock name, halted)
    pub stocks: HashMap<u16, (String, bool)>,
    pub system_events: Vec<char>,
    pub messages: u64,
}

impl DecodedBook {
    pub fn apply_bytes(&mut self, bytes: &[u8]) {
        for message in itchy::MessageStream::from_reader(bytes) {
            let message = message.expect("itchy decodes our bytes");
            self.apply(&message);
        }
    }

    fn apply(&mut self, message: &itchy::Message) {
        use itchy::Body;
        self.messages += 1;
        let locate = message.stock_locate;
        match &message.body {
            Body::SystemEvent { event } => {
                let code = match event {
                    itchy::EventCode::StartOfMessages => 'O',
                    itchy::EventCode::StartOfSystemHours => 'S',
                    itchy::EventCode::StartOfMarketHours => 'Q',
                    itchy::EventCode::EndOfMarketHours => 'M',
                    itchy::EventCode::EndOfSystemHours => 'E',
                    itchy::EventCode::EndOfMessages => 'C',
                };
                self.system_events.push(code);
            }
            Body::StockDirectory(d) => {
                let name = d.stock.trim_end().to_string();
                assert!(self.stocks.insert(locate, (name, false)).is_none());
            }
            Body::TradingAction {
                stock,
                trading_state,
                ..
            } => {
                let entry = self.stocks.get_mut(&locate).expect("directory first");
                assert_eq!(entry.0, stock.trim_end());
                entry.1 = *trading_state == itchy::TradingState::Halted;
            }
            Body::AddOrder(add) => {
                assert!(self.stocks.contains_key(&locate), "add for unknown locate");
                let side = match add.side {
                    itchy::Side::Buy => Side::Buy,
                    itchy::Side::Sell => Side::Sell,
                };
                let order = DecodedOrder {
                    locate,
                    side,
                    price: add.price.raw(),
                    shares: add.shares,
                };
                assert!(add.shares > 0);
                assert!(
                    self.orders.insert(add.reference, order).is_none(),
                    "reference {} reused",
                    add.reference
                );
            }
            Body::OrderExecuted {
                reference,
                executed,
                ..
            } => self.reduce(*reference, *executed),
            Body::OrderCancelled {
                reference,
                cancelled,
            } => self.reduce(*reference, *cancelled),
            Body::DeleteOrder { reference } => {
                assert!(self.orders.remove(reference).is_some(), "delete unknown");
            }
            Body::ReplaceOrder(replace) => {
                let old = self
                    .orders
                    .remove(&replace.old_reference)
                    .expect("replace of a known order");
                assert_eq!(old.locate, locate);
                let new = DecodedOrder {
                    price: replace.price.raw(),
                    shares: replace.shares,
                    ..old
                };
                assert!(replace.shares > 0);
                assert!(self.orders.insert(replace.new_reference, new).is_none());
            }
            other => panic!("unexpected message {other:?}"),
        }
    }

    fn reduce(&mut self, reference: u64, shares: u32) {
        let order = self.orders.get_mut(&reference).expect("known order");
        assert!(
            shares > 0 && shares <= order.shares,
            "reduce {shares} of {order:?}"
        );
        order.shares -= shares;
        if order.shares == 0 {
            self.orders.remove(&reference);
        }
    }

    /// (price, shares) of one side, best price first, then by reference
    /// (references are handed out in arrival order, i.e. time priority).
    pub fn side(&self, locate: u16, side: Side) -> Vec<(u64, u64)> {
        let mut orders: Vec<(u64, DecodedOrder)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.locate == locate && o.side == side)
            .map(|(r, o)| (*r, *o))
            .collect();
        orders.sort_by_key(|(reference, o)| {
            let price = match side {
                Side::Buy => u32::MAX - o.price,
                Side::Sell => o.price,
            };
            (price, *reference)
        });
        orders
            .into_iter()
            .map(|(_, o)| (o.price as u64, o.shares as u64))
            .collect()
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }
}

pub fn directory() -> SymbolDirectory {
    let mut directory = SymbolDirectory::new();
    directory.insert(SYM, "BRKX", 10).unwrap();
    directory.insert(OTHER, "OTHR.A", 10).unwrap();
    directory
}

/// Engine plus every consumer under test.
pub struct Rig {
    pub engine: Engine,
    pub seq: u64,
    pub md: MarketData,
    pub feed: FeedDeriver,
    pub decoded: DecodedBook,
    /// All framed feed bytes so far.
    pub bytes: Vec<u8>,
    /// Messages derived for the last command.
    pub last_messages: Vec<Message>,
    pub last_events: Vec<Event>,
    /// Every command with its events, for replays.
    pub log: Vec<(SequencedCommand, Vec<Event>)>,
    /// Nanoseconds between commands.
    pub step_ns: u64,
}

impl Rig {
    pub fn empty() -> Rig {
        Rig {
            engine: Engine::new(EngineConfig::default()),
            seq: 0,
            md: MarketData::new(),
            feed: FeedDeriver::new(directory()),
            decoded: DecodedBook::default(),
            bytes: Vec::new(),
            last_messages: Vec::new(),
            last_events: Vec::new(),
            log: Vec::new(),
            step_ns: 1_000,
        }
    }

    /// Two symbols, four funded accounts with different self-trade modes.
    pub fn new() -> Rig {
        let mut rig = Rig::empty();
        rig.ok(Command::AddSymbol {
            symbol: SYM,
            spec: SPEC,
        });
        rig.ok(Command::AddSymbol {
            symbol: OTHER,
            spec: SPEC,
        });
        let modes = [
            SelfTradePrevention::CancelNewest,
            SelfTradePrevention::CancelOldest,
            SelfTradePrevention::CancelBoth,
            SelfTradePrevention::CancelNewest,
        ];
        for (account, self_trade) in ACCOUNTS.into_iter().zip(modes) {
            rig.ok(Command::CreateAccount {
                account,
                limits: Limits::UNLIMITED,
                self_trade,
            });
            rig.ok(Command::DepositCash {
                account,
                amount: 10_000_000_000_000,
                tag: 0,
            });
            for symbol in [SYM, OTHER] {
                rig.ok(Command::DepositShares {
                    account,
                    symbol,
                    qty: 100_000_000,
                    tag: 0,
                });
            }
        }
        rig
    }

    /// Runs one command through the engine and every consumer.
    pub fn run(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        let sequenced = SequencedCommand {
            seq: self.seq,
            timestamp_ns: START_NS + self.seq * self.step_ns,
            command,
        };
        let mut events = Vec::new();
        self.engine.apply(&sequenced, &mut events);
        self.md.apply_all(&events);
        let mut messages = Vec::new();
        self.feed
            .on_command(
                sequenced.seq,
                sequenced.timestamp_ns,
                &events,
                &mut messages,
            )
            .unwrap_or_else(|e| panic!("feed failed on {command:?}: {e}\n{events:#?}"));
        let framed = brokerx_marketdata::file::frame_all(&messages).unwrap();
        self.decoded.apply_bytes(&framed);
        self.bytes.extend_from_slice(&framed);
        self.last_messages = messages;
        self.last_events = events.clone();
        self.log.push((sequenced, events.clone()));
        events
    }

    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.run(command);
        assert!(
            !events.iter().any(|e| matches!(e, Event::Rejected { .. })),
            "{command:?} rejected: {events:?}"
        );
        events
    }

    pub fn limit(
        &mut self,
        account: AccountId,
        side: Side,
        tif: TimeInForce,
        price: u64,
        qty: u64,
    ) -> OrderId {
        let events = self.ok(Command::NewOrder {
            account,
            symbol: SYM,
            side,
            order_type: OrderType::Limit,
            tif,
            price,
            qty,
            self_trade: SelfTradePrevention::AccountDefault,
            tag: 0,
        });
        match events[0] {
            Event::OrderAccepted { order_id, .. } => order_id,
            other => panic!("{other:?}"),
        }
    }

    /// The engine's book of one side: (price, leaves) in priority order.
    pub fn engine_side(&self, symbol: SymbolId, side: Side) -> Vec<(u64, u64)> {
        self.engine
            .orders_in_priority(symbol, side)
            .map(|(_, node)| (node.price, node.leaves))
            .collect()
    }

    /// The engine's aggregated levels: (price, qty, orders), best first.
    pub fn engine_levels(&self, symbol: SymbolId, side: Side) -> Vec<(u64, u64, u32)> {
        let Some(state) = self.engine.symbol(symbol) else {
            return Vec::new();
        };
        let ladder = state.ladder(side);
        ladder
            .iter_best_first()
            .map(|index| {
                let level = ladder.levels[index as usize];
                (state.price_at(index), level.qty, level.orders)
            })
            .collect()
    }

    /// L1/L2 from `MarketData` against the engine.
    pub fn check_market_data(&self) {
        for symbol in [SYM, OTHER] {
            let Some(state) = self.engine.symbol(symbol) else {
                continue;
            };
            let l2 = self.md.l2(symbol, usize::MAX);
            for (side, levels) in [(Side::Buy, &l2.bids), (Side::Sell, &l2.asks)] {
                let ours: Vec<(u64, u64, u32)> =
                    levels.iter().map(|l| (l.price, l.qty, l.orders)).collect();
                assert_eq!(
                    ours,
                    self.engine_levels(symbol, side),
                    "L2 {symbol:?} {side:?}"
                );
            }
            let shallow = self.md.l2(symbol, 3);
            assert_eq!(shallow.bids[..], l2.bids[..l2.bids.len().min(3)]);
            assert_eq!(shallow.asks[..], l2.asks[..l2.asks.len().min(3)]);
            let l1 = self.md.l1(symbol).expect("known symbol");
            assert_eq!(l1.bid.map(|q| q.price), state.best_price(Side::Buy));
            assert_eq!(l1.ask.map(|q| q.price), state.best_price(Side::Sell));
            assert_eq!(l1.bid.map(|q| q.qty), l2.bids.first().map(|l| l.qty));
            assert_eq!(l1.ask.map(|q| q.qty), l2.asks.first().map(|l| l.qty));
            assert_eq!(l1.halted, state.halted);
        }
    }

    /// The book rebuilt from decoded ITCH against the engine, order by
    /// order in priority.
    pub fn check_feed(&self) {
        let mut total = 0;
        for symbol in [SYM, OTHER] {
            let Some(state) = self.engine.symbol(symbol) else {
                continue;
            };
            let locate = SymbolDirectory::locate(symbol).unwrap();
            for side in [Side::Buy, Side::Sell] {
                let engine = self.engine_side(symbol, side);
                total += engine.len();
                assert_eq!(
                    self.decoded.side(locate, side),
                    engine,
                    "feed book {symbol:?} {side:?} after seq {}: {:?}",
                    self.seq,
                    self.last_messages
                );
            }
            assert_eq!(self.decoded.stocks[&locate].1, state.halted);
        }
        assert_eq!(self.decoded.order_count(), total);
        assert_eq!(self.feed.orders_on_feed(), total);
    }

    pub fn check(&self) {
        self.check_market_data();
        self.check_feed();
    }

    /// One random command of a busy two-symbol day.
    pub fn random_command(&mut self, rng: &mut Rng) -> Command {
        let account = ACCOUNTS[rng.below(4) as usize];
        let symbol = if rng.below(4) == 0 { OTHER } else { SYM };
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        // Buys mostly below 10_000 and sells mostly above, overlapping a
        // little, so the book builds up and still trades.
        let near_price = |rng: &mut Rng| match side {
            Side::Buy => 9_900 + rng.below(15) * 10,
            Side::Sell => 9_960 + rng.below(15) * 10,
        };
        let live: Vec<OrderId> = self.engine.account_orders(account).collect();
        let pick = |rng: &mut Rng| {
            live.get(rng.below(live.len().max(1) as u64) as usize)
                .copied()
        };
        let roll = rng.below(100);
        let tif = match rng.below(10) {
            0..=3 => TimeInForce::Day,
            4..=7 => TimeInForce::Gtc,
            8 => TimeInForce::Ioc,
            _ => TimeInForce::Fok,
        };
        let market = rng.below(20) == 0;
        let max_lots = if rng.below(10) == 0 { 60 } else { 15 };
        let self_trade = match rng.below(8) {
            0 => SelfTradePrevention::CancelOldest,
            1 => SelfTradePrevention::CancelBoth,
            _ => SelfTradePrevention::AccountDefault,
        };
        let new_order = Command::NewOrder {
            account,
            symbol,
            side,
            order_type: if market {
                OrderType::Market
            } else {
                OrderType::Limit
            },
            tif,
            price: if market { 0 } else { near_price(rng) },
            qty: (1 + rng.below(max_lots)) * 10,
            self_trade,
            tag: roll,
        };
        let halted = self.engine.symbol(symbol).is_some_and(|s| s.halted);
        if halted && rng.below(4) == 0 {
            return Command::Resume { symbol };
        }
        let suspended = self
            .engine
            .ledger()
            .account(account)
            .is_some_and(|a| a.suspended);
        if suspended && rng.below(2) == 0 {
            return Command::ReinstateAccount { account };
        }
        let rare = rng.below(5) == 0;
        match roll {
            0..=59 => new_order,
            60..=67 => match pick(rng) {
                Some(order_id) => Command::Cancel {
                    account,
                    order_id,
                    tag: 0,
                },
                None => new_order,
            },
            68..=89 => match pick(rng) {
                Some(order_id) => {
                    let node = *self.engine.order(order_id).expect("live order");
                    let (price, qty) = match rng.below(5) {
                        0 => (node.price, node.leaves.saturating_sub(10).max(10)),
                        1 => (node.price, node.leaves + 10 * (1 + rng.below(5))),
                        2 => (node.price, node.leaves),
                        3 => (near_price(rng), node.leaves),
                        _ => (near_price(rng), 10 * (1 + rng.below(20))),
                    };
                    Command::Replace {
                        account,
                        order_id,
                        price,
                        qty,
                        tag: 0,
                    }
                }
                None => new_order,
            },
            90 if !halted => Command::Halt { symbol },
            91 if rng.below(3) == 0 => Command::EndOfDay,
            94..=95 if rare => Command::MassCancelAccount {
                account,
                symbol: (rng.below(2) == 0).then_some(symbol),
                tag: 0,
            },
            96 if rare => Command::MassCancelSymbol { symbol, tag: 0 },
            97 if rare => {
                if self
                    .engine
                    .ledger()
                    .account(account)
                    .is_some_and(|a| a.suspended)
                {
                    Command::ReinstateAccount { account }
                } else {
                    Command::SuspendAccount { account }
                }
            }
            98 => Command::ReinstateAccount { account },
            _ => new_order,
        }
    }
}
