//! A small harness for engine tests: stamps sequence numbers, collects
//! events and checks every invariant after every command.

#![allow(dead_code)]

use brokerx_engine::{
    AccountId, Command, Engine, EngineConfig, Event, Limits, OrderId, OrderType, RejectCode,
    SelfTradePrevention, SequencedCommand, Side, SymbolId, SymbolSpec, TimeInForce,
};

pub const SYM: SymbolId = SymbolId(0);
pub const OTHER: SymbolId = SymbolId(1);
pub const ALICE: AccountId = AccountId(1);
pub const BOB: AccountId = AccountId(2);
pub const CAROL: AccountId = AccountId(3);
pub const CASH: u64 = 100_000_000;
pub const SHARES: u64 = 100_000;

/// tick 10, lot 10, reference 10_000, band ±10% (9_000..=11_000),
/// maker fee 1 and taker fee 2 per share.
pub const SPEC: SymbolSpec = SymbolSpec {
    tick_size: 10,
    lot_size: 10,
    reference_price: 10_000,
    band_bps: 1_000,
    maker_fee_per_share: 1,
    taker_fee_per_share: 2,
};

pub struct Harness {
    pub engine: Engine,
    pub seq: u64,
}

impl Harness {
    pub fn empty(config: EngineConfig) -> Harness {
        Harness {
            engine: Engine::new(config),
            seq: 0,
        }
    }

    /// Two symbols; Alice, Bob and Carol funded with cash and shares.
    pub fn new() -> Harness {
        Harness::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Harness {
        let mut h = Harness::empty(config);
        h.ok(Command::AddSymbol {
            symbol: SYM,
            spec: SPEC,
        });
        h.ok(Command::AddSymbol {
            symbol: OTHER,
            spec: SPEC,
        });
        for account in [ALICE, BOB, CAROL] {
            h.ok(Command::CreateAccount {
                account,
                limits: Limits::UNLIMITED,
                self_trade: SelfTradePrevention::CancelNewest,
            });
            h.ok(Command::DepositCash {
                account,
                amount: CASH,
                tag: 0,
            });
            for symbol in [SYM, OTHER] {
                h.ok(Command::DepositShares {
                    account,
                    symbol,
                    qty: SHARES,
                    tag: 0,
                });
            }
        }
        h
    }

    pub fn run(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        let mut out = Vec::new();
        self.engine.apply(
            &SequencedCommand {
                seq: self.seq,
                timestamp_ns: self.seq * 1_000,
                command,
            },
            &mut out,
        );
        if let Err(problem) = self.engine.check_invariants() {
            panic!("invariant broken after {command:?}: {problem}\nevents: {out:#?}");
        }
        out
    }

    /// Runs a command that must not be rejected.
    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.run(command);
        assert!(
            !events.iter().any(|e| matches!(e, Event::Rejected { .. })),
            "{command:?} rejected: {events:?}"
        );
        events
    }

    /// Runs a command that must be rejected with `code` and nothing else.
    pub fn rejects(&mut self, command: Command, code: RejectCode) {
        let before = self.engine.content_hash();
        let events = self.run(command);
        assert_eq!(events.len(), 1, "{command:?}: {events:?}");
        match events[0] {
            Event::Rejected { code: got, .. } => assert_eq!(got, code, "{command:?}"),
            other => panic!("{command:?} not rejected: {other:?}"),
        }
        assert_eq!(
            before,
            self.engine.content_hash(),
            "a reject changes nothing but the sequence"
        );
    }

    pub fn order(
        &mut self,
        account: AccountId,
        side: Side,
        tif: TimeInForce,
        price: u64,
        qty: u64,
    ) -> (OrderId, Vec<Event>) {
        self.order_with(
            account,
            SYM,
            side,
            OrderType::Limit,
            tif,
            price,
            qty,
            SelfTradePrevention::AccountDefault,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn order_with(
        &mut self,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: u64,
        qty: u64,
        self_trade: SelfTradePrevention,
    ) -> (OrderId, Vec<Event>) {
        let events = self.ok(new_order(
            account, symbol, side, order_type, tif, price, qty, self_trade,
        ));
        match events[0] {
            Event::OrderAccepted { order_id, .. } => (order_id, events),
            other => panic!("not accepted: {other:?}"),
        }
    }

    pub fn bid(&mut self, account: AccountId, price: u64, qty: u64) -> OrderId {
        self.order(account, Side::Buy, TimeInForce::Gtc, price, qty)
            .0
    }

    pub fn ask(&mut self, account: AccountId, price: u64, qty: u64) -> OrderId {
        self.order(account, Side::Sell, TimeInForce::Gtc, price, qty)
            .0
    }

    pub fn cash(&self, account: AccountId) -> (u64, u64) {
        let cash = self.engine.ledger().account(account).unwrap().cash;
        (cash.available, cash.reserved)
    }

    pub fn shares(&self, account: AccountId) -> (u64, u64) {
        let position = self.engine.ledger().account(account).unwrap().position(SYM);
        (position.available, position.reserved)
    }

    pub fn best(&self, side: Side) -> Option<u64> {
        self.engine.symbol(SYM).unwrap().best_price(side)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn new_order(
    account: AccountId,
    symbol: SymbolId,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    price: u64,
    qty: u64,
    self_trade: SelfTradePrevention,
) -> Command {
    Command::NewOrder {
        account,
        symbol,
        side,
        order_type,
        tif,
        price,
        qty,
        self_trade,
        tag: 77,
    }
}

pub fn limit(account: AccountId, side: Side, price: u64, qty: u64) -> Command {
    new_order(
        account,
        SYM,
        side,
        OrderType::Limit,
        TimeInForce::Gtc,
        price,
        qty,
        SelfTradePrevention::AccountDefault,
    )
}

/// The trades among `events`, as (maker, taker, price, qty).
pub fn trades(events: &[Event]) -> Vec<(OrderId, OrderId, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match *e {
            Event::Trade {
                maker_order,
                taker_order,
                price,
                qty,
                ..
            } => Some((maker_order, taker_order, price, qty)),
            _ => None,
        })
        .collect()
}

/// The cancels among `events`, as (order, qty, reason).
pub fn cancels(events: &[Event]) -> Vec<(OrderId, u64, brokerx_engine::CancelReason)> {
    events
        .iter()
        .filter_map(|e| match *e {
            Event::OrderCancelled {
                order_id,
                qty,
                reason,
                ..
            } => Some((order_id, qty, reason)),
            _ => None,
        })
        .collect()
}
