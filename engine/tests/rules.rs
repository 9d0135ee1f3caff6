//! One test per matching, risk and reference-data rule, and a table that
//! produces every reject code. The harness checks all invariants after
//! every command.

mod support;

use brokerx_engine::{
    AccountId, CancelReason, Command, EngineConfig, Event, Limits, OrderId, OrderType, RejectCode,
    SelfTradePrevention, Side, SymbolId, SymbolSpec, TimeInForce,
};
use support::*;

#[test]
fn a_passive_limit_order_rests_and_publishes_its_level() {
    let mut h = Harness::new();
    let (id, events) = h.order(ALICE, Side::Buy, TimeInForce::Gtc, 9_990, 100);
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        Event::BookLevel {
            symbol: SYM,
            side: Side::Buy,
            price: 9_990,
            qty: 100,
            orders: 1
        }
    );
    assert_eq!(h.best(Side::Buy), Some(9_990));
    assert_eq!(h.engine.order(id).unwrap().leaves, 100);
    // Buy holds price plus the highest fee per share.
    assert_eq!(h.cash(ALICE), (CASH - 100 * 9_992, 100 * 9_992));
}

#[test]
fn better_price_then_earlier_time_has_priority() {
    let mut h = Harness::new();
    let first = h.ask(ALICE, 10_010, 10);
    let second = h.ask(CAROL, 10_010, 10);
    let better = h.ask(CAROL, 10_000, 10);
    let (taker, events) = h.order(BOB, Side::Buy, TimeInForce::Gtc, 10_010, 30);
    assert_eq!(
        trades(&events),
        vec![
            (better, taker, 10_000, 10),
            (first, taker, 10_010, 10),
            (second, taker, 10_010, 10)
        ]
    );
}

#[test]
fn partial_fill_trades_at_the_resting_price_and_refunds_the_difference() {
    let mut h = Harness::new();
    let ask = h.ask(ALICE, 10_000, 40);
    let (bid, events) = h.order(BOB, Side::Buy, TimeInForce::Gtc, 10_100, 100);
    assert_eq!(trades(&events), vec![(ask, bid, 10_000, 40)]);
    match events
        .iter()
        .find(|e| matches!(e, Event::Trade { .. }))
        .unwrap()
    {
        Event::Trade {
            maker_leaves,
            taker_leaves,
            maker_fee,
            taker_fee,
            aggressor,
            ..
        } => {
            assert_eq!((*maker_leaves, *taker_leaves), (0, 60));
            assert_eq!((*maker_fee, *taker_fee), (40, 80));
            assert_eq!(*aggressor, Side::Buy);
        }
        _ => unreachable!(),
    }
    // Bob paid 40 * 10_000 + 40 * 2 fee and holds 60 * (10_100 + 2).
    assert_eq!(h.cash(BOB), (CASH - 40 * 10_002 - 60 * 10_102, 60 * 10_102));
    assert_eq!(h.shares(BOB), (SHARES + 40, 0));
    // Alice received the notional less the maker fee.
    assert_eq!(h.cash(ALICE), (CASH + 40 * 9_999, 0));
    assert_eq!(h.shares(ALICE), (SHARES - 40, 0));
    assert_eq!(h.engine.ledger().fees_collected(), 120);
    assert_eq!(h.best(Side::Buy), Some(10_100));
    assert_eq!(h.engine.order(bid).unwrap().filled, 40);
}

#[test]
fn market_order_sweeps_levels_and_cancels_its_remainder() {
    let mut h = Harness::new();
    let a = h.ask(ALICE, 10_000, 10);
    let b = h.ask(ALICE, 10_500, 10);
    let (taker, events) = h.order_with(
        BOB,
        SYM,
        Side::Buy,
        OrderType::Market,
        TimeInForce::Day,
        0,
        50,
        SelfTradePrevention::AccountDefault,
    );
    assert_eq!(
        trades(&events),
        vec![(a, taker, 10_000, 10), (b, taker, 10_500, 10)]
    );
    assert_eq!(
        cancels(&events),
        vec![(taker, 30, CancelReason::ImmediateRemainder)]
    );
    assert_eq!(h.cash(BOB).1, 0, "nothing stays reserved");
    assert_eq!(h.engine.resting_orders(), 0);
}

#[test]
fn market_buy_reserves_at_the_protection_price() {
    let mut h = Harness::new();
    // 11_000 (band high) + 2 fee per share: 9_090 shares need more than Bob has.
    h.rejects(
        new_order(
            BOB,
            SYM,
            Side::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
            0,
            9_090,
            SelfTradePrevention::AccountDefault,
        ),
        RejectCode::InsufficientFunds,
    );
    let (taker, events) = h.order_with(
        BOB,
        SYM,
        Side::Buy,
        OrderType::Market,
        TimeInForce::Ioc,
        0,
        9_080,
        SelfTradePrevention::AccountDefault,
    );
    assert_eq!(
        cancels(&events),
        vec![(taker, 9_080, CancelReason::ImmediateRemainder)]
    );
}

#[test]
fn market_order_never_trades_beyond_the_band() {
    let mut h = Harness::new();
    h.ok(Command::SetReferencePrice {
        symbol: SYM,
        price: 10_500,
    });
    let far = h.ask(ALICE, 11_500, 10);
    h.ok(Command::SetReferencePrice {
        symbol: SYM,
        price: 10_000,
    });
    assert_eq!(
        h.best(Side::Sell),
        Some(11_500),
        "the order outside the new band still rests"
    );
    let (_, events) = h.order_with(
        BOB,
        SYM,
        Side::Buy,
        OrderType::Market,
        TimeInForce::Ioc,
        0,
        10,
        SelfTradePrevention::AccountDefault,
    );
    assert!(trades(&events).is_empty());
    assert!(h.engine.order(far).is_some());
}

#[test]
fn ioc_cancels_the_unfilled_remainder() {
    let mut h = Harness::new();
    let ask = h.ask(ALICE, 10_000, 30);
    let (taker, events) = h.order(BOB, Side::Buy, TimeInForce::Ioc, 10_000, 100);
    assert_eq!(trades(&events), vec![(ask, taker, 10_000, 30)]);
    assert_eq!(
        cancels(&events),
        vec![(taker, 70, CancelReason::ImmediateRemainder)]
    );
    assert_eq!(h.best(Side::Buy), None);
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    let mut h = Harness::new();
    let a = h.ask(ALICE, 10_000, 30);
    let b = h.ask(CAROL, 10_010, 30);
    let before = h.engine.ledger().account(ALICE).unwrap().clone();
    let (killed, events) = h.order(BOB, Side::Buy, TimeInForce::Fok, 10_010, 70);
    assert!(trades(&events).is_empty());
    assert_eq!(
        cancels(&events),
        vec![(killed, 70, CancelReason::FillOrKill)]
    );
    assert_eq!(h.engine.ledger().account(ALICE).unwrap(), &before);
    let (taker, events) = h.order(BOB, Side::Buy, TimeInForce::Fok, 10_010, 60);
    assert_eq!(
        trades(&events),
        vec![(a, taker, 10_000, 30), (b, taker, 10_010, 30)]
    );
    assert!(cancels(&events).is_empty());
}

#[test]
fn fok_does_not_count_own_orders_it_would_not_trade_with() {
    let mut h = Harness::new();
    h.ask(BOB, 10_000, 30);
    h.ask(ALICE, 10_000, 30);
    // CancelNewest stops at Bob's own order, so nothing is fillable.
    let (id, events) = h.order(BOB, Side::Buy, TimeInForce::Fok, 10_000, 30);
    assert_eq!(cancels(&events), vec![(id, 30, CancelReason::FillOrKill)]);
    // CancelOldest skips (and cancels) its own order and fills from Alice.
    let (_, events) = h.order_with(
        BOB,
        SYM,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Fok,
        10_000,
        30,
        SelfTradePrevention::CancelOldest,
    );
    assert_eq!(trades(&events).len(), 1);
    assert_eq!(cancels(&events).len(), 1);
}

#[test]
fn end_of_day_expires_day_orders_only() {
    let mut h = Harness::new();
    let (day, _) = h.order(ALICE, Side::Buy, TimeInForce::Day, 9_990, 10);
    let gtc = h.bid(ALICE, 9_980, 10);
    let (day_ask, _) = h.order(BOB, Side::Sell, TimeInForce::Day, 10_100, 10);
    let events = h.ok(Command::EndOfDay);
    let expired: Vec<OrderId> = events
        .iter()
        .filter_map(|e| match e {
            Event::OrderExpired { order_id, .. } => Some(*order_id),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![day, day_ask]);
    assert_eq!(events.last(), Some(&Event::DayEnded { expired: 2 }));
    assert!(h.engine.order(gtc).is_some());
    assert_eq!(h.cash(ALICE).1, 10 * 9_982);
    assert_eq!(h.shares(BOB).1, 0);
}

#[test]
fn cancel_releases_and_checks_ownership() {
    let mut h = Harness::new();
    let id = h.bid(ALICE, 9_990, 10);
    h.rejects(
        Command::Cancel {
            account: BOB,
            order_id: id,
            tag: 1,
        },
        RejectCode::NotOrderOwner,
    );
    let events = h.ok(Command::Cancel {
        account: ALICE,
        order_id: id,
        tag: 5,
    });
    assert_eq!(
        events[0],
        Event::OrderCancelled {
            order_id: id,
            account: ALICE,
            symbol: SYM,
            side: Side::Buy,
            qty: 10,
            reason: CancelReason::Requested,
            tag: 5
        }
    );
    assert_eq!(
        events[1],
        Event::BookLevel {
            symbol: SYM,
            side: Side::Buy,
            price: 9_990,
            qty: 0,
            orders: 0
        }
    );
    assert_eq!(h.cash(ALICE), (CASH, 0));
    h.rejects(
        Command::Cancel {
            account: ALICE,
            order_id: id,
            tag: 1,
        },
        RejectCode::UnknownOrder,
    );
    // A reused slot gets a new generation: the old id stays dead.
    let reused = h.bid(ALICE, 9_990, 10);
    assert_eq!(reused.slot(), id.slot());
    assert_ne!(reused, id);
    h.rejects(
        Command::Cancel {
            account: ALICE,
            order_id: id,
            tag: 1,
        },
        RejectCode::UnknownOrder,
    );
}

#[test]
fn replace_reducing_quantity_keeps_priority() {
    let mut h = Harness::new();
    let first = h.bid(ALICE, 9_990, 50);
    let second = h.bid(CAROL, 9_990, 50);
    let events = h.ok(Command::Replace {
        account: ALICE,
        order_id: first,
        price: 9_990,
        qty: 20,
        tag: 0,
    });
    assert!(matches!(
        events[0],
        Event::OrderReplaced {
            priority_kept: true,
            qty: 20,
            ..
        }
    ));
    assert_eq!(
        events[1],
        Event::BookLevel {
            symbol: SYM,
            side: Side::Buy,
            price: 9_990,
            qty: 70,
            orders: 2
        }
    );
    let (taker, events) = h.order(BOB, Side::Sell, TimeInForce::Ioc, 9_990, 30);
    assert_eq!(
        trades(&events),
        vec![(first, taker, 9_990, 20), (second, taker, 9_990, 10)]
    );
    assert_eq!(h.cash(ALICE).1, 0);
}

#[test]
fn replace_by_total_quantity_takes_off_what_has_filled() {
    let mut h = Harness::new();
    let first = h.bid(ALICE, 9_990, 100);
    let second = h.bid(CAROL, 9_990, 100);
    // 30 of Alice's 100 fill; a request written before the fill asks for a
    // total of 80, so 50 stay open (not 80): the order never exceeds 80.
    h.order(BOB, Side::Sell, TimeInForce::Ioc, 9_990, 30);
    let total = |qty| Command::ReplaceTotal {
        account: ALICE,
        order_id: first,
        price: 9_990,
        qty,
        tag: 4,
    };
    let events = h.ok(total(80));
    assert!(
        matches!(
            events[0],
            Event::OrderReplaced {
                qty: 50,
                priority_kept: true,
                ..
            }
        ),
        "{events:?}"
    );
    h.rejects(total(0), RejectCode::InvalidQuantity);
    // More than before: the open quantity grows and priority is lost.
    let events = h.ok(total(120));
    assert!(
        matches!(
            events[0],
            Event::OrderReplaced {
                qty: 90,
                priority_kept: false,
                ..
            }
        ),
        "{events:?}"
    );
    let (taker, events) = h.order(BOB, Side::Sell, TimeInForce::Ioc, 9_990, 120);
    assert_eq!(
        trades(&events),
        vec![(second, taker, 9_990, 100), (first, taker, 9_990, 20)]
    );
    // 50 filled now; a total at or below that cancels the rest (FIX: the
    // replace and the fills that complete it crossed).
    let events = h.ok(total(40));
    assert!(
        matches!(
            events[0],
            Event::OrderCancelled {
                order_id,
                qty: 70,
                reason: CancelReason::Requested,
                tag: 4,
                ..
            } if order_id == first
        ),
        "{events:?}"
    );
}

#[test]
fn replace_raising_quantity_or_moving_price_loses_priority() {
    for (price, qty) in [(9_990, 60), (9_980, 50)] {
        let mut h = Harness::new();
        let first = h.bid(ALICE, 9_990, 50);
        let second = h.bid(CAROL, 9_990, 50);
        let events = h.ok(Command::Replace {
            account: ALICE,
            order_id: first,
            price,
            qty,
            tag: 0,
        });
        assert!(matches!(
            events[0],
            Event::OrderReplaced {
                priority_kept: false,
                ..
            }
        ));
        let (taker, events) = h.order(BOB, Side::Sell, TimeInForce::Ioc, 9_980, 60);
        assert_eq!(trades(&events)[0], (second, taker, 9_990, 50));
        assert_eq!(trades(&events)[1].0, first);
    }
}

#[test]
fn replace_to_a_crossing_price_trades_at_once() {
    let mut h = Harness::new();
    let ask = h.ask(ALICE, 10_000, 30);
    let bid = h.bid(BOB, 9_990, 50);
    let events = h.ok(Command::Replace {
        account: BOB,
        order_id: bid,
        price: 10_000,
        qty: 50,
        tag: 0,
    });
    assert_eq!(trades(&events), vec![(ask, bid, 10_000, 30)]);
    assert_eq!(h.engine.order(bid).unwrap().leaves, 20);
    assert_eq!(h.best(Side::Buy), Some(10_000));
}

#[test]
fn replace_re_reserves_or_rejects_leaving_the_order_unchanged() {
    let mut h = Harness::new();
    let bid = h.bid(ALICE, 10_000, 5_000);
    h.rejects(
        Command::Replace {
            account: ALICE,
            order_id: bid,
            price: 10_000,
            qty: 10_000,
            tag: 0,
        },
        RejectCode::InsufficientFunds,
    );
    h.ok(Command::Replace {
        account: ALICE,
        order_id: bid,
        price: 9_000,
        qty: 10_000,
        tag: 0,
    });
    assert_eq!(h.cash(ALICE).1, 10_000 * 9_002);
    let ask = h.ask(BOB, 10_100, 100);
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 10_100,
            qty: SHARES + 10,
            tag: 0,
        },
        RejectCode::InsufficientShares,
    );
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 10_105,
            qty: 10,
            tag: 0,
        },
        RejectCode::InvalidPrice,
    );
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 10_100,
            qty: 15,
            tag: 0,
        },
        RejectCode::InvalidQuantity,
    );
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 10_100,
            qty: 0,
            tag: 0,
        },
        RejectCode::InvalidQuantity,
    );
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 12_000,
            qty: 10,
            tag: 0,
        },
        RejectCode::PriceOutsideBand,
    );
    h.rejects(
        Command::Replace {
            account: ALICE,
            order_id: ask,
            price: 10_100,
            qty: 10,
            tag: 0,
        },
        RejectCode::NotOrderOwner,
    );
    h.ok(Command::Halt { symbol: SYM });
    h.rejects(
        Command::Replace {
            account: BOB,
            order_id: ask,
            price: 10_100,
            qty: 10,
            tag: 0,
        },
        RejectCode::SymbolHalted,
    );
    // Cancels still work while halted.
    h.ok(Command::Cancel {
        account: BOB,
        order_id: ask,
        tag: 0,
    });
}

#[test]
fn mass_cancel_by_account_and_by_symbol() {
    let mut h = Harness::new();
    let a1 = h.bid(ALICE, 9_990, 10);
    let a2 = h.ask(ALICE, 10_100, 10);
    let (a3, _) = h.order_with(
        ALICE,
        OTHER,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Gtc,
        9_990,
        10,
        SelfTradePrevention::AccountDefault,
    );
    let b1 = h.bid(BOB, 9_980, 10);
    let events = h.ok(Command::MassCancelAccount {
        account: ALICE,
        symbol: Some(SYM),
        tag: 9,
    });
    let cancelled: Vec<OrderId> = cancels(&events).iter().map(|c| c.0).collect();
    assert_eq!(cancelled, vec![a1, a2]);
    assert_eq!(
        events.last(),
        Some(&Event::MassCancelled {
            account: Some(ALICE),
            symbol: Some(SYM),
            count: 2,
            tag: 9
        })
    );
    let b2 = h.ask(BOB, 10_200, 10);
    let c1 = h.bid(CAROL, 9_990, 10);
    let events = h.ok(Command::MassCancelSymbol {
        symbol: SYM,
        tag: 3,
    });
    let cancelled: Vec<OrderId> = cancels(&events).iter().map(|c| c.0).collect();
    assert_eq!(cancelled, vec![c1, b1, b2], "bids best first, then asks");
    assert!(h.engine.order(a3).is_some(), "other symbol untouched");
    let events = h.ok(Command::MassCancelAccount {
        account: ALICE,
        symbol: None,
        tag: 0,
    });
    assert_eq!(cancels(&events).len(), 1);
    h.rejects(
        Command::MassCancelAccount {
            account: AccountId(99),
            symbol: None,
            tag: 0,
        },
        RejectCode::UnknownAccount,
    );
    h.rejects(
        Command::MassCancelSymbol {
            symbol: SymbolId(9),
            tag: 0,
        },
        RejectCode::UnknownSymbol,
    );
}

#[test]
fn self_trade_cancel_newest_cancels_the_incoming_order() {
    let mut h = Harness::new();
    let other = h.ask(BOB, 10_000, 10);
    let own = h.ask(ALICE, 10_000, 10);
    let behind = h.ask(BOB, 10_000, 10);
    let (taker, events) = h.order(ALICE, Side::Buy, TimeInForce::Gtc, 10_000, 30);
    assert_eq!(trades(&events), vec![(other, taker, 10_000, 10)]);
    assert_eq!(cancels(&events), vec![(taker, 20, CancelReason::SelfTrade)]);
    assert!(h.engine.order(own).is_some() && h.engine.order(behind).is_some());
}

#[test]
fn self_trade_cancel_oldest_cancels_resting_and_continues() {
    let mut h = Harness::new();
    let own = h.ask(ALICE, 10_000, 10);
    let other = h.ask(BOB, 10_000, 10);
    let (taker, events) = h.order_with(
        ALICE,
        SYM,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Gtc,
        10_000,
        10,
        SelfTradePrevention::CancelOldest,
    );
    assert_eq!(cancels(&events), vec![(own, 10, CancelReason::SelfTrade)]);
    assert_eq!(trades(&events), vec![(other, taker, 10_000, 10)]);
}

#[test]
fn self_trade_cancel_both_and_account_default() {
    let mut h = Harness::new();
    h.ok(Command::CreateAccount {
        account: AccountId(7),
        limits: Limits::UNLIMITED,
        self_trade: SelfTradePrevention::CancelBoth,
    });
    h.ok(Command::DepositCash {
        account: AccountId(7),
        amount: CASH,
        tag: 0,
    });
    h.ok(Command::DepositShares {
        account: AccountId(7),
        symbol: SYM,
        qty: 100,
        tag: 0,
    });
    let own = h.ask(AccountId(7), 10_000, 10);
    let (taker, events) = h.order(AccountId(7), Side::Buy, TimeInForce::Gtc, 10_000, 10);
    assert_eq!(
        cancels(&events),
        vec![
            (own, 10, CancelReason::SelfTrade),
            (taker, 10, CancelReason::SelfTrade)
        ]
    );
    assert_eq!(h.engine.resting_orders(), 0);
}

#[test]
fn tick_lot_band_and_halt_are_enforced() {
    let mut h = Harness::new();
    h.rejects(limit(ALICE, Side::Buy, 9_995, 10), RejectCode::InvalidPrice);
    h.rejects(limit(ALICE, Side::Buy, 0, 10), RejectCode::InvalidPrice);
    h.rejects(
        limit(ALICE, Side::Buy, 9_990, 15),
        RejectCode::InvalidQuantity,
    );
    h.rejects(
        limit(ALICE, Side::Buy, 9_990, 0),
        RejectCode::InvalidQuantity,
    );
    h.rejects(
        limit(ALICE, Side::Buy, 8_990, 10),
        RejectCode::PriceOutsideBand,
    );
    h.rejects(
        limit(ALICE, Side::Sell, 11_010, 10),
        RejectCode::PriceOutsideBand,
    );
    h.ok(limit(ALICE, Side::Buy, 9_000, 10));
    h.ok(limit(ALICE, Side::Sell, 11_000, 10));
    h.ok(Command::Halt { symbol: SYM });
    h.rejects(
        Command::Halt { symbol: SYM },
        RejectCode::SymbolAlreadyHalted,
    );
    h.rejects(limit(BOB, Side::Buy, 9_990, 10), RejectCode::SymbolHalted);
    h.ok(Command::Resume { symbol: SYM });
    h.rejects(Command::Resume { symbol: SYM }, RejectCode::SymbolNotHalted);
    h.ok(limit(BOB, Side::Buy, 9_990, 10));
}

#[test]
fn reference_price_moves_the_band() {
    let mut h = Harness::new();
    let low = h.bid(ALICE, 9_000, 10);
    let events = h.ok(Command::SetReferencePrice {
        symbol: SYM,
        price: 12_000,
    });
    assert_eq!(
        events[0],
        Event::ReferencePriceSet {
            symbol: SYM,
            price: 12_000,
            band_low: 10_800,
            band_high: 13_200
        }
    );
    h.rejects(
        limit(BOB, Side::Sell, 10_000, 10),
        RejectCode::PriceOutsideBand,
    );
    h.ok(limit(BOB, Side::Sell, 13_200, 10));
    assert_eq!(h.best(Side::Buy), Some(9_000));
    h.ok(Command::Cancel {
        account: ALICE,
        order_id: low,
        tag: 0,
    });
    h.rejects(
        Command::SetReferencePrice {
            symbol: SYM,
            price: 12_005,
        },
        RejectCode::InvalidPrice,
    );
}

#[test]
fn kill_switch_cancels_everything_and_blocks_new_orders() {
    let mut h = Harness::new();
    h.bid(ALICE, 9_990, 10);
    h.ask(ALICE, 10_100, 10);
    let events = h.ok(Command::SuspendAccount { account: ALICE });
    assert!(cancels(&events)
        .iter()
        .all(|c| c.2 == CancelReason::KillSwitch));
    assert_eq!(
        events.last(),
        Some(&Event::AccountSuspended {
            account: ALICE,
            cancelled: 2
        })
    );
    h.rejects(
        limit(ALICE, Side::Buy, 9_990, 10),
        RejectCode::AccountSuspended,
    );
    h.rejects(
        Command::SuspendAccount { account: ALICE },
        RejectCode::AccountSuspended,
    );
    h.ok(Command::ReinstateAccount { account: ALICE });
    h.ok(limit(ALICE, Side::Buy, 9_990, 10));
}

#[test]
fn risk_limits_reject_orders() {
    let mut h = Harness::new();
    h.ok(Command::SetLimits {
        account: ALICE,
        limits: Limits {
            max_order_qty: 100,
            max_order_notional: 500_000,
            max_open_orders: 2,
        },
    });
    h.rejects(
        limit(ALICE, Side::Buy, 9_990, 110),
        RejectCode::MaxOrderQuantityExceeded,
    );
    h.rejects(
        limit(ALICE, Side::Buy, 10_000, 60),
        RejectCode::MaxOrderNotionalExceeded,
    );
    h.ok(limit(ALICE, Side::Buy, 9_000, 10));
    h.ok(limit(ALICE, Side::Buy, 9_000, 10));
    h.rejects(
        limit(ALICE, Side::Buy, 9_000, 10),
        RejectCode::MaxOpenOrdersExceeded,
    );
    h.rejects(
        limit(CAROL, Side::Sell, 10_000, SHARES + 10),
        RejectCode::InsufficientShares,
    );
    h.rejects(
        limit(CAROL, Side::Buy, 10_000, 10_000),
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn capacity_limit_rejects_new_orders() {
    let mut h = Harness::with_config(EngineConfig {
        order_capacity: 2,
        max_orders: 2,
        max_ladder_levels: 1 << 20,
    });
    h.bid(ALICE, 9_000, 10);
    h.bid(ALICE, 9_010, 10);
    h.rejects(
        limit(ALICE, Side::Buy, 9_020, 10),
        RejectCode::BookCapacityExceeded,
    );
}

/// Each stable reject code, produced by a real command.
#[test]
fn every_reject_code_is_reachable() {
    let mut h = Harness::with_config(EngineConfig {
        order_capacity: 4,
        max_orders: 4,
        max_ladder_levels: 1 << 20,
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut expect = |h: &mut Harness, command: Command, code: RejectCode| {
        h.rejects(command, code);
        seen.insert(code);
    };
    let bad_spec = SymbolSpec {
        tick_size: 0,
        ..SPEC
    };
    let wide = SymbolSpec {
        tick_size: 1,
        reference_price: 10_000_000,
        band_bps: 10_000,
        ..SPEC
    };
    let nobody = AccountId(50);
    expect(
        &mut h,
        limit(nobody, Side::Buy, 9_990, 10),
        RejectCode::UnknownAccount,
    );
    expect(
        &mut h,
        Command::CreateAccount {
            account: ALICE,
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        },
        RejectCode::AccountExists,
    );
    expect(
        &mut h,
        Command::CreateAccount {
            account: AccountId(u32::MAX),
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        },
        RejectCode::AccountIdOutOfRange,
    );
    expect(
        &mut h,
        Command::DepositCash {
            account: ALICE,
            amount: 0,
            tag: 0,
        },
        RejectCode::InvalidAmount,
    );
    expect(
        &mut h,
        Command::DepositCash {
            account: ALICE,
            amount: u64::MAX,
            tag: 0,
        },
        RejectCode::AmountOverflow,
    );
    expect(
        &mut h,
        Command::WithdrawCash {
            account: ALICE,
            amount: CASH + 1,
            tag: 0,
        },
        RejectCode::InsufficientFunds,
    );
    expect(
        &mut h,
        Command::WithdrawShares {
            account: ALICE,
            symbol: SYM,
            qty: SHARES + 1,
            tag: 0,
        },
        RejectCode::InsufficientShares,
    );
    expect(
        &mut h,
        Command::ReinstateAccount { account: ALICE },
        RejectCode::AccountNotSuspended,
    );
    expect(
        &mut h,
        Command::AddSymbol {
            symbol: SYM,
            spec: SPEC,
        },
        RejectCode::SymbolExists,
    );
    expect(
        &mut h,
        Command::AddSymbol {
            symbol: SymbolId(5),
            spec: bad_spec,
        },
        RejectCode::InvalidSymbolSpec,
    );
    expect(
        &mut h,
        Command::AddSymbol {
            symbol: SymbolId(5),
            spec: wide,
        },
        RejectCode::InvalidSymbolSpec,
    );
    expect(
        &mut h,
        Command::DepositShares {
            account: ALICE,
            symbol: SymbolId(5),
            qty: 1,
            tag: 0,
        },
        RejectCode::UnknownSymbol,
    );
    expect(
        &mut h,
        limit(ALICE, Side::Buy, 9_995, 10),
        RejectCode::InvalidPrice,
    );
    expect(
        &mut h,
        limit(ALICE, Side::Buy, 9_990, 5),
        RejectCode::InvalidQuantity,
    );
    expect(
        &mut h,
        limit(ALICE, Side::Buy, 100, 10),
        RejectCode::PriceOutsideBand,
    );
    expect(
        &mut h,
        Command::Cancel {
            account: ALICE,
            order_id: OrderId(12345),
            tag: 0,
        },
        RejectCode::UnknownOrder,
    );
    let bob_order = h.bid(BOB, 9_990, 10);
    expect(
        &mut h,
        Command::Cancel {
            account: ALICE,
            order_id: bob_order,
            tag: 0,
        },
        RejectCode::NotOrderOwner,
    );
    h.ok(Command::SetLimits {
        account: CAROL,
        limits: Limits {
            max_order_qty: 10,
            max_order_notional: 1_000_000,
            max_open_orders: 1,
        },
    });
    expect(
        &mut h,
        limit(CAROL, Side::Buy, 9_990, 20),
        RejectCode::MaxOrderQuantityExceeded,
    );
    h.ok(Command::SetLimits {
        account: CAROL,
        limits: Limits {
            max_order_qty: 1_000,
            max_order_notional: 1_000,
            max_open_orders: 1,
        },
    });
    expect(
        &mut h,
        limit(CAROL, Side::Buy, 9_990, 10),
        RejectCode::MaxOrderNotionalExceeded,
    );
    h.ok(Command::SetLimits {
        account: CAROL,
        limits: Limits {
            max_order_qty: 1_000,
            max_order_notional: u64::MAX,
            max_open_orders: 1,
        },
    });
    h.bid(CAROL, 9_000, 10);
    expect(
        &mut h,
        limit(CAROL, Side::Buy, 9_000, 10),
        RejectCode::MaxOpenOrdersExceeded,
    );
    h.bid(ALICE, 9_000, 10);
    h.bid(ALICE, 9_000, 10);
    expect(
        &mut h,
        limit(ALICE, Side::Buy, 9_000, 10),
        RejectCode::BookCapacityExceeded,
    );
    h.ok(Command::SuspendAccount { account: ALICE });
    expect(
        &mut h,
        limit(ALICE, Side::Buy, 9_000, 10),
        RejectCode::AccountSuspended,
    );
    h.ok(Command::Halt { symbol: SYM });
    expect(
        &mut h,
        Command::Halt { symbol: SYM },
        RejectCode::SymbolAlreadyHalted,
    );
    expect(
        &mut h,
        limit(BOB, Side::Buy, 9_000, 10),
        RejectCode::SymbolHalted,
    );
    h.ok(Command::Resume { symbol: SYM });
    expect(
        &mut h,
        Command::Resume { symbol: SYM },
        RejectCode::SymbolNotHalted,
    );
    let missing: Vec<_> = RejectCode::ALL
        .iter()
        .filter(|c| !seen.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "reject codes never produced: {missing:?}"
    );
}

#[test]
fn the_same_commands_give_the_same_state_hash() {
    let build = |extra: bool| {
        let mut h = Harness::new();
        h.bid(ALICE, 9_990, 10);
        h.ask(BOB, 10_000, 20);
        h.order(CAROL, Side::Buy, TimeInForce::Ioc, 10_000, 10);
        if extra {
            h.bid(ALICE, 9_980, 10);
        }
        h.engine.state_hash()
    };
    assert_eq!(build(false), build(false));
    assert_ne!(build(false), build(true));
}
