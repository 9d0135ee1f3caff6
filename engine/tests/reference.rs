//! Property test: the engine against the naive reference model.
//!
//! Random command streams (proptest, plus long fixed-seed runs) drive both.
//! After every command the events must be identical (order ids mapped
//! between the two numbering schemes), the visible state must be identical,
//! and the engine's invariants must hold: no crossed book, conservation of
//! cash and shares, reservations equal to what resting orders need, and
//! every order in exactly one place.

mod model;

use brokerx_engine::{
    AccountId, Command, Engine, EngineConfig, Event, Limits, OrderId, OrderType,
    SelfTradePrevention, SequencedCommand, Side, SymbolId, SymbolSpec, TimeInForce,
};
use model::Model;
use proptest::prelude::*;
use std::collections::BTreeMap;

const SPECS: [SymbolSpec; 2] = [
    SymbolSpec {
        tick_size: 10,
        lot_size: 10,
        reference_price: 10_000,
        band_bps: 500,
        maker_fee_per_share: 1,
        taker_fee_per_share: 2,
    },
    SymbolSpec {
        tick_size: 1,
        lot_size: 1,
        reference_price: 2_000,
        band_bps: 200,
        maker_fee_per_share: 0,
        taker_fee_per_share: 3,
    },
];
const ACCOUNTS: u32 = 4;

/// One random step: raw numbers that `Pair::command` turns into a command.
type RawOp = (u8, u64, u64, u64);

/// The engine and the model side by side, with the order-id mapping.
struct Pair {
    engine: Engine,
    model: Model,
    seq: u64,
    /// Accepted orders as (engine id, model id, owner).
    known: Vec<(OrderId, OrderId, AccountId)>,
    engine_to_model: BTreeMap<OrderId, OrderId>,
}

impl Pair {
    fn new(max_orders: u32) -> Pair {
        let config = EngineConfig {
            order_capacity: 16,
            max_orders,
            max_ladder_levels: 1 << 16,
        };
        let mut pair = Pair {
            engine: Engine::new(config),
            model: Model::new(max_orders, 1 << 16),
            seq: 0,
            known: Vec::new(),
            engine_to_model: BTreeMap::new(),
        };
        for (i, spec) in SPECS.iter().enumerate() {
            pair.step(Command::AddSymbol {
                symbol: SymbolId(i as u32),
                spec: *spec,
            });
        }
        for account in 1..=ACCOUNTS {
            let account = AccountId(account);
            let self_trade = match account.0 % 3 {
                0 => SelfTradePrevention::CancelNewest,
                1 => SelfTradePrevention::CancelOldest,
                _ => SelfTradePrevention::CancelBoth,
            };
            pair.step(Command::CreateAccount {
                account,
                limits: Limits::UNLIMITED,
                self_trade,
            });
            pair.step(Command::DepositCash {
                account,
                amount: 3_000_000,
                tag: 0,
            });
            for symbol in 0..2 {
                pair.step(Command::DepositShares {
                    account,
                    symbol: SymbolId(symbol),
                    qty: 1_500,
                    tag: 0,
                });
            }
        }
        pair
    }

    fn pick_order(&self, raw: u64) -> (OrderId, OrderId, AccountId) {
        if self.known.is_empty() || raw.is_multiple_of(16) {
            let garbage = OrderId(0xFFFF_FFFF_0000_0000 | (raw % 7));
            return (garbage, garbage, AccountId(1 + (raw % 4) as u32));
        }
        // Prefer recent orders: they are more likely to be live.
        let recent = self.known.len().min(24) as u64;
        let index = self.known.len() - 1 - ((raw >> 8) % recent) as usize;
        self.known[index]
    }

    /// Builds the engine's and the model's version of one random command.
    fn command(&self, (kind, a, b, c): RawOp) -> (Command, Command) {
        let account = AccountId(1 + (a % ACCOUNTS as u64) as u32);
        let symbol_index = (a >> 8) % 2;
        let symbol = SymbolId(if (a >> 16) % 50 == 0 {
            7
        } else {
            symbol_index as u32
        });
        let spec = SPECS[symbol_index as usize];
        let side = if b % 2 == 0 { Side::Buy } else { Side::Sell };
        let tif = [
            TimeInForce::Gtc,
            TimeInForce::Day,
            TimeInForce::Gtc,
            TimeInForce::Ioc,
            TimeInForce::Fok,
        ][((b >> 1) % 5) as usize];
        let stp = [
            SelfTradePrevention::AccountDefault,
            SelfTradePrevention::AccountDefault,
            SelfTradePrevention::CancelNewest,
            SelfTradePrevention::CancelOldest,
            SelfTradePrevention::CancelBoth,
        ][((b >> 4) % 5) as usize];
        // Prices cluster around the reference so orders cross often; a few
        // fall off the tick grid or outside the band.
        let offset = ((c % 15) as i64 - 7) * spec.tick_size as i64;
        let mut price = (spec.reference_price as i64 + offset) as u64;
        match (c >> 8) % 40 {
            0 => price += 1 + spec.tick_size / 2,
            1 => price = spec.reference_price * 2,
            2 => price = 0,
            _ => {}
        }
        let mut qty = spec.lot_size * (1 + (c >> 16) % 12);
        if (c >> 24) % 40 == 0 {
            qty = if spec.lot_size > 1 { qty + 1 } else { 0 };
        }
        if (c >> 30) % 60 == 0 {
            qty *= 200;
        }
        let tag = c >> 40;
        let same = |command: Command| (command, command);
        match kind % 100 {
            0..=39 => same(Command::NewOrder {
                account,
                symbol,
                side,
                order_type: OrderType::Limit,
                tif,
                price,
                qty,
                self_trade: stp,
                tag,
            }),
            40..=46 => same(Command::NewOrder {
                account,
                symbol,
                side,
                order_type: OrderType::Market,
                tif,
                price: 0,
                qty,
                self_trade: stp,
                tag,
            }),
            47..=74 => {
                let (engine_id, model_id, owner) = self.pick_order(b);
                let who = if a % 10 == 0 { account } else { owner };
                // Most replaces start from the order's own price and size:
                // same price with less, equal or more quantity, or a step.
                let (price, qty) = match (self.engine.order(engine_id), (c >> 48) % 5) {
                    (Some(node), 0) => (node.price, node.leaves),
                    (Some(node), 1) => (
                        node.price,
                        node.leaves.saturating_sub(spec.lot_size).max(spec.lot_size),
                    ),
                    (Some(node), 2) => (node.price, node.leaves + spec.lot_size),
                    (Some(node), 3) => (node.price.saturating_add_signed(offset / 7), node.leaves),
                    _ => (price, qty),
                };
                if kind % 100 <= 60 {
                    (
                        Command::Cancel {
                            account: who,
                            order_id: engine_id,
                            tag,
                        },
                        Command::Cancel {
                            account: who,
                            order_id: model_id,
                            tag,
                        },
                    )
                } else if kind % 100 <= 67 {
                    // By total quantity (FIX OrderQty): what the order has
                    // filled plus the open quantity above, give or take a
                    // lot, so some ask for no more than is filled.
                    let filled = self.engine.order(engine_id).map_or(0, |n| n.filled);
                    let total = match (c >> 52) % 4 {
                        0 => filled,
                        1 => (filled + qty).saturating_sub(spec.lot_size),
                        _ => filled + qty,
                    };
                    let replace = |order_id| Command::ReplaceTotal {
                        account: who,
                        order_id,
                        price,
                        qty: total,
                        tag,
                    };
                    (replace(engine_id), replace(model_id))
                } else {
                    let replace = |order_id| Command::Replace {
                        account: who,
                        order_id,
                        price,
                        qty,
                        tag,
                    };
                    (replace(engine_id), replace(model_id))
                }
            }
            75..=77 => same(Command::MassCancelAccount {
                account,
                symbol: (b % 2 == 0).then_some(symbol),
                tag,
            }),
            78 => same(Command::MassCancelSymbol { symbol, tag }),
            79..=80 => same(Command::DepositCash {
                account,
                amount: c % 500_000,
                tag,
            }),
            81..=82 => same(Command::WithdrawCash {
                account,
                amount: c % 500_000,
                tag,
            }),
            83 => same(Command::DepositShares {
                account,
                symbol,
                qty: c % 300,
                tag,
            }),
            84 => same(Command::WithdrawShares {
                account,
                symbol,
                qty: c % 300,
                tag,
            }),
            85 => same(if b % 4 == 0 {
                Command::Halt { symbol }
            } else {
                Command::Resume { symbol }
            }),
            86 => same(Command::SuspendAccount { account }),
            87..=88 => same(Command::ReinstateAccount { account }),
            89 => {
                let limits = if b % 3 != 0 {
                    Limits::UNLIMITED
                } else {
                    Limits {
                        max_order_qty: 1 + c % 100,
                        max_order_notional: c % 1_000_000,
                        max_open_orders: (b % 5) as u32,
                    }
                };
                same(Command::SetLimits { account, limits })
            }
            90..=91 => same(Command::EndOfDay),
            92 => {
                let shift = ((c % 5) as i64 - 2) * spec.tick_size as i64 * 20;
                same(Command::SetReferencePrice {
                    symbol,
                    price: (spec.reference_price as i64 + shift) as u64,
                })
            }
            93 => same(Command::CreateAccount {
                account: AccountId(1 + (a % 6) as u32),
                limits: Limits::UNLIMITED,
                self_trade: stp,
            }),
            _ => same(Command::NewOrder {
                account: AccountId(9),
                symbol,
                side,
                order_type: OrderType::Limit,
                tif,
                price,
                qty,
                self_trade: stp,
                tag,
            }),
        }
    }

    /// Applies one command to both and compares everything.
    fn step_pair(&mut self, engine_command: Command, model_command: Command) {
        self.seq += 1;
        let mut events = Vec::new();
        self.engine.apply(
            &SequencedCommand {
                seq: self.seq,
                timestamp_ns: self.seq * 7,
                command: engine_command,
            },
            &mut events,
        );
        let expected = self.model.apply(&model_command);
        for (got, want) in events.iter().zip(&expected) {
            if let (
                Event::OrderAccepted {
                    order_id: e,
                    account,
                    ..
                },
                Event::OrderAccepted { order_id: m, .. },
            ) = (got, want)
            {
                self.engine_to_model.insert(*e, *m);
                self.known.push((*e, *m, *account));
            }
        }
        let translated: Vec<Event> = events.iter().map(|e| self.translate(e)).collect();
        assert_eq!(translated, expected, "events differ for {engine_command:?}");
        if let Err(problem) = self.engine.check_invariants() {
            panic!("invariant broken after {engine_command:?}: {problem}");
        }
        self.compare_state();
    }

    fn step(&mut self, command: Command) {
        self.step_pair(command, command);
    }

    fn map(&self, id: OrderId) -> OrderId {
        self.engine_to_model.get(&id).copied().unwrap_or(id)
    }

    fn translate(&self, event: &Event) -> Event {
        let mut event = *event;
        match &mut event {
            Event::Rejected { order_id, .. }
            | Event::OrderAccepted { order_id, .. }
            | Event::OrderReplaced { order_id, .. }
            | Event::OrderCancelled { order_id, .. }
            | Event::OrderExpired { order_id, .. } => *order_id = self.map(*order_id),
            Event::Trade {
                maker_order,
                taker_order,
                ..
            } => {
                *maker_order = self.map(*maker_order);
                *taker_order = self.map(*taker_order);
            }
            _ => {}
        }
        event
    }

    /// Books (priority order), account order lists and ledgers agree.
    fn compare_state(&self) {
        type Row = (OrderId, u32, u64, u64, u64, u8);
        for (symbol, reference) in &self.model.symbols {
            let state = self
                .engine
                .symbol(SymbolId(*symbol))
                .expect("symbol exists in both");
            assert_eq!(
                (state.band_low, state.band_high, state.halted),
                (reference.band_low, reference.band_high, reference.halted)
            );
            for side in [Side::Buy, Side::Sell] {
                let engine_rows: Vec<Row> = self
                    .engine
                    .orders_in_priority(SymbolId(*symbol), side)
                    .map(|(id, n)| (self.map(id), n.account, n.price, n.leaves, n.filled, n.tif))
                    .collect();
                let mut sorted = reference
                    .resting
                    .iter()
                    .filter(|o| o.side == side)
                    .collect::<Vec<_>>();
                sorted.sort_by(|x, y| {
                    let by_price = if side == Side::Buy {
                        y.price.cmp(&x.price)
                    } else {
                        x.price.cmp(&y.price)
                    };
                    by_price.then(x.time.cmp(&y.time))
                });
                let model_rows: Vec<Row> = sorted
                    .iter()
                    .map(|o| {
                        (
                            OrderId(o.id),
                            o.account,
                            o.price,
                            o.leaves,
                            o.filled,
                            o.tif as u8,
                        )
                    })
                    .collect();
                assert_eq!(engine_rows, model_rows, "book {symbol} {side:?}");
            }
        }
        let ledger = self.engine.ledger();
        for (id, reference) in &self.model.accounts {
            let account = ledger
                .account(AccountId(*id))
                .expect("account exists in both");
            assert_eq!(
                (account.cash.available, account.cash.reserved),
                reference.cash,
                "cash of {id}"
            );
            assert_eq!(
                (account.open_orders, account.suspended, account.limits),
                (reference.open_orders, reference.suspended, reference.limits)
            );
            for (symbol, position) in &reference.positions {
                let real = account.position(SymbolId(*symbol));
                assert_eq!(
                    (real.available, real.reserved),
                    *position,
                    "position of {id} in {symbol}"
                );
            }
            let engine_list: Vec<OrderId> = self
                .engine
                .account_orders(AccountId(*id))
                .map(|o| self.map(o))
                .collect();
            let mut model_list: Vec<_> = self
                .model
                .symbols
                .values()
                .flat_map(|s| s.resting.iter())
                .filter(|o| o.account == *id)
                .collect();
            model_list.sort_by_key(|o| o.first_rested);
            let model_list: Vec<OrderId> = model_list.iter().map(|o| OrderId(o.id)).collect();
            assert_eq!(engine_list, model_list, "order list of account {id}");
        }
        assert_eq!(ledger.fees_collected(), self.model.fees);
        assert_eq!(ledger.cash_supply(), self.model.cash_supply);
    }
}

fn run(ops: &[RawOp], max_orders: u32) -> Pair {
    let mut pair = Pair::new(max_orders);
    for op in ops {
        let (engine_command, model_command) = pair.command(*op);
        pair.step_pair(engine_command, model_command);
    }
    pair
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference_model(ops in proptest::collection::vec(any::<RawOp>(), 1..400)) {
        run(&ops, 1 << 20);
    }

    #[test]
    fn engine_matches_reference_model_at_capacity(ops in proptest::collection::vec(any::<RawOp>(), 1..300)) {
        run(&ops, 12);
    }
}

/// splitmix64 for the long fixed-seed runs.
fn raw_ops(seed: u64, count: usize) -> Vec<RawOp> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| (next() as u8, next(), next(), next()))
        .collect()
}

#[test]
fn long_seeded_streams_match_the_reference_model() {
    for seed in 1..=4 {
        let pair = run(&raw_ops(seed, 5_000), 1 << 20);
        assert!(
            pair.known.len() > 500,
            "seed {seed}: the stream must exercise the book"
        );
    }
}

#[test]
fn replaying_the_same_stream_gives_the_same_hashes() {
    let ops = raw_ops(42, 3_000);
    let first = run(&ops, 1 << 20);
    let second = run(&ops, 1 << 20);
    assert_eq!(first.engine.state_hash(), second.engine.state_hash());
    let other = run(&raw_ops(43, 3_000), 1 << 20);
    assert_ne!(first.engine.state_hash(), other.engine.state_hash());
}

/// A snapshot taken mid-stream decodes to an identical engine, which then
/// produces exactly the same events as the original.
#[test]
fn snapshot_restores_an_identical_engine() {
    let ops = raw_ops(7, 4_000);
    let (first, rest) = ops.split_at(2_000);
    let mut pair = run(first, 1 << 20);
    let mut image = Vec::new();
    pair.engine.encode_snapshot(&mut image);
    let mut restored = Engine::decode_snapshot(&image).expect("snapshot decodes");
    assert_eq!(restored, pair.engine);
    assert_eq!(restored.state_hash(), pair.engine.state_hash());
    for op in rest {
        let (command, model_command) = pair.command(*op);
        let seq = pair.seq + 1;
        let mut expected = Vec::new();
        restored.apply(
            &SequencedCommand {
                seq,
                timestamp_ns: seq * 7,
                command,
            },
            &mut expected,
        );
        pair.step_pair(command, model_command);
        assert_eq!(restored.state_hash(), pair.engine.state_hash());
    }
    assert_eq!(restored, pair.engine);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Damaged snapshot images are refused with an error, never a panic,
    /// and anything that does decode is a consistent engine.
    #[test]
    fn damaged_snapshots_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let pair = run(&raw_ops(11, 300), 1 << 20);
        let mut image = Vec::new();
        pair.engine.encode_snapshot(&mut image);
        let mut damaged = image.clone();
        for (at, value) in flips {
            let at = at % damaged.len();
            damaged[at] ^= value | 1;
        }
        if let Ok(engine) = Engine::decode_snapshot(&damaged) {
            prop_assert!(engine.check_invariants().is_ok());
        }
        let truncated = &image[..cut % image.len()];
        prop_assert!(Engine::decode_snapshot(truncated).is_err());
    }
}

/// A snapshot whose config asks for more order slots than the machine has
/// memory (the header damaged) is refused with an error: the decoder must
/// not abort the process on the allocation. Found by the property above.
#[test]
fn a_snapshot_asking_for_impossible_capacity_is_refused() {
    let pair = run(&raw_ops(11, 300), 1 << 20);
    let mut image = Vec::new();
    pair.engine.encode_snapshot(&mut image);
    // After the format byte: order_capacity, then max_orders (u32 LE).
    let mut damaged = image.clone();
    damaged[1..5].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    damaged[5..9].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    if let Ok(engine) = Engine::decode_snapshot(&damaged) {
        assert!(engine.check_invariants().is_ok());
    }
    let clean = Engine::decode_snapshot(&image).expect("the undamaged image decodes");
    assert_eq!(clean, pair.engine);
}
