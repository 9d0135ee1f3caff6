//! Edge cases of the event -> ITCH mapping, one scripted scenario each,
//! through the real engine. Every scenario asserts the exact message
//! types the last command produced, and the rig checks after every
//! command that the decoded feed book equals the engine's book.

mod support;

use brokerx_engine::{
    AccountId, CancelReason, Command, Event, OrderId, OrderType, SelfTradePrevention, Side,
    SymbolId, TimeInForce,
};
use brokerx_marketdata::feed::{FeedDeriver, FeedError, SymbolDirectory, NS_PER_DAY};
use brokerx_marketdata::itch::{Message, SystemEventCode, TradingState};
use support::{directory, Rig, ALICE, BOB, CAROL, DAVE, SYM};
use TimeInForce::{Day, Fok, Gtc, Ioc};

/// Message type letters of the last command, e.g. "EA".
fn kinds(rig: &Rig) -> String {
    rig.last_messages
        .iter()
        .map(|m| m.message_type() as char)
        .collect()
}

fn run(rig: &mut Rig, command: Command) -> String {
    rig.run(command);
    rig.check();
    kinds(rig)
}

fn limit(
    rig: &mut Rig,
    account: AccountId,
    side: Side,
    tif: TimeInForce,
    price: u64,
    qty: u64,
) -> (OrderId, String) {
    let id = rig.limit(account, side, tif, price, qty);
    rig.check();
    (id, kinds(rig))
}

fn replace(rig: &mut Rig, account: AccountId, order_id: OrderId, price: u64, qty: u64) -> String {
    run(
        rig,
        Command::Replace {
            account,
            order_id,
            price,
            qty,
            tag: 0,
        },
    )
}

fn feed_ref(rig: &Rig, id: OrderId) -> u64 {
    rig.feed.feed_order(id).expect("on the feed").order_ref
}

#[test]
fn symbol_added_opens_the_feed_with_directory_and_trading_state() {
    let mut rig = Rig::empty();
    let kinds = run(
        &mut rig,
        Command::AddSymbol {
            symbol: SYM,
            spec: support::SPEC,
        },
    );
    assert_eq!(kinds, "SRH");
    match rig.last_messages[..] {
        [Message::SystemEvent { header: o, event }, Message::StockDirectory { header, directory }, Message::TradingAction { state, .. }] =>
        {
            assert_eq!(event, SystemEventCode::StartOfMessages);
            assert_eq!(o.stock_locate, 0);
            assert_eq!(header.stock_locate, 1, "locate = id + 1");
            assert_eq!(directory.stock.trimmed(), "BRKX");
            assert_eq!(directory.round_lot_size, 10);
            assert_eq!(state, TradingState::Trading);
            assert_eq!(
                header.timestamp_ns,
                (support::START_NS + 1_000) % NS_PER_DAY
            );
        }
        ref other => panic!("{other:?}"),
    }
    assert_eq!(rig.decoded.stocks[&1], ("BRKX".to_string(), false));
}

#[test]
fn commands_without_book_effect_publish_nothing() {
    let mut rig = Rig::new();
    // Account and cash commands, and a reject.
    assert_eq!(
        run(
            &mut rig,
            Command::DepositCash {
                account: ALICE,
                amount: 5,
                tag: 0
            }
        ),
        ""
    );
    assert_eq!(
        run(
            &mut rig,
            Command::Cancel {
                account: ALICE,
                order_id: OrderId(12345),
                tag: 0
            }
        ),
        ""
    );
    assert!(matches!(rig.last_events[0], Event::Rejected { .. }));
}

#[test]
fn resting_order_and_partial_fills() {
    let mut rig = Rig::new();
    let (maker, k) = limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 100);
    assert_eq!(k, "A");
    let maker_ref = feed_ref(&rig, maker);
    match rig.last_messages[0] {
        Message::AddOrder {
            order_ref,
            side,
            shares,
            price,
            stock,
            attribution,
            ..
        } => {
            assert_eq!(
                (order_ref, side, shares, price),
                (maker_ref, Side::Sell, 100, 10_000)
            );
            assert_eq!(stock.trimmed(), "BRKX");
            assert_eq!(attribution, None);
        }
        ref other => panic!("{other:?}"),
    }
    // Partial fill of the maker; the taker is filled and never shows.
    let (_, k) = limit(&mut rig, ALICE, Side::Buy, Gtc, 10_000, 30);
    assert_eq!(k, "E");
    let match_id = rig
        .last_events
        .iter()
        .find_map(|e| match e {
            Event::Trade { match_id, .. } => Some(*match_id),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        rig.last_messages[0],
        Message::OrderExecuted {
            header: *rig.last_messages[0].header(),
            order_ref: maker_ref,
            executed_shares: 30,
            match_number: match_id,
        }
    );
    // Sweeps the maker and rests the remainder: executions first, then
    // the Add of what is left, at its limit.
    let (taker, k) = limit(&mut rig, ALICE, Side::Buy, Gtc, 10_010, 100);
    assert_eq!(k, "EA");
    assert!(rig.feed.feed_order(maker).is_none());
    let rested = rig.feed.feed_order(taker).unwrap();
    assert_eq!((rested.shares, rested.price), (30, 10_010));
    assert!(rested.order_ref > maker_ref, "references only grow");
}

#[test]
fn immediate_orders_never_rest_on_the_feed() {
    let mut rig = Rig::new();
    limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 50);
    // IOC: trades 50, remainder cancelled untouched by the feed.
    let (_, k) = limit(&mut rig, ALICE, Side::Buy, Ioc, 10_000, 80);
    assert_eq!(k, "E");
    // FOK that cannot fill: killed, nothing at all on the feed.
    limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 50);
    let (_, k) = limit(&mut rig, ALICE, Side::Buy, Fok, 10_000, 60);
    assert_eq!(k, "");
    assert!(rig.last_events.iter().any(|e| matches!(
        e,
        Event::OrderCancelled {
            reason: CancelReason::FillOrKill,
            ..
        }
    )));
    // FOK that fills: executions only.
    let (_, k) = limit(&mut rig, ALICE, Side::Buy, Fok, 10_000, 50);
    assert_eq!(k, "E");
    // Market order into an empty side: nothing.
    let k = run(
        &mut rig,
        Command::NewOrder {
            account: ALICE,
            symbol: SYM,
            side: Side::Buy,
            order_type: OrderType::Market,
            tif: Day,
            price: 0,
            qty: 10,
            self_trade: SelfTradePrevention::AccountDefault,
            tag: 0,
        },
    );
    assert_eq!(k, "");
}

#[test]
fn self_trade_cancels() {
    let mut rig = Rig::new();
    // Alice: cancel newest. Her crossing buy is cancelled, her sell stays.
    limit(&mut rig, ALICE, Side::Sell, Gtc, 10_000, 50);
    let (_, k) = limit(&mut rig, ALICE, Side::Buy, Gtc, 10_000, 50);
    assert_eq!(k, "");
    // Bob: cancel oldest. His resting sell is deleted, his buy rests.
    let mut rig = Rig::new();
    let (old, _) = limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 50);
    let old_ref = feed_ref(&rig, old);
    let (_, k) = limit(&mut rig, BOB, Side::Buy, Gtc, 10_000, 50);
    assert_eq!(k, "DA");
    assert!(
        matches!(rig.last_messages[0], Message::OrderDelete { order_ref, .. } if order_ref == old_ref)
    );
    // Carol: cancel both. Her sell is deleted and her buy never shows.
    let mut rig = Rig::new();
    limit(&mut rig, CAROL, Side::Sell, Gtc, 10_000, 50);
    let (_, k) = limit(&mut rig, CAROL, Side::Buy, Gtc, 10_000, 50);
    assert_eq!(k, "D");
    // Cancel oldest after trading with someone else first.
    let mut rig = Rig::new();
    limit(&mut rig, DAVE, Side::Sell, Gtc, 10_000, 20);
    limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 20);
    limit(&mut rig, DAVE, Side::Sell, Gtc, 10_000, 20);
    let (_, k) = limit(&mut rig, BOB, Side::Buy, Gtc, 10_000, 100);
    assert_eq!(k, "EDEA");
}

#[test]
fn replace_down_up_same_and_price_moves() {
    let mut rig = Rig::new();
    let (id, _) = limit(&mut rig, ALICE, Side::Buy, Gtc, 9_900, 100);
    let first_ref = feed_ref(&rig, id);
    // Down at the same price keeps priority: a partial cancel, same ref.
    assert_eq!(replace(&mut rig, ALICE, id, 9_900, 60), "X");
    assert!(matches!(
        rig.last_messages[0],
        Message::OrderCancel { order_ref, cancelled_shares: 40, .. } if order_ref == first_ref
    ));
    assert_eq!(feed_ref(&rig, id), first_ref);
    // Unchanged: nothing.
    assert_eq!(replace(&mut rig, ALICE, id, 9_900, 60), "");
    // Up loses priority: a replace to a new reference.
    assert_eq!(replace(&mut rig, ALICE, id, 9_900, 90), "U");
    let second_ref = feed_ref(&rig, id);
    assert!(matches!(
        rig.last_messages[0],
        Message::OrderReplace { original_ref, new_ref, shares: 90, price: 9_900, .. }
            if original_ref == first_ref && new_ref == second_ref && new_ref > original_ref
    ));
    // Price move that does not cross: replace again.
    assert_eq!(replace(&mut rig, ALICE, id, 9_950, 90), "U");
    // Down with a price move: also a replace (priority lost).
    assert_eq!(replace(&mut rig, ALICE, id, 9_940, 30), "U");
}

#[test]
fn replace_that_trades_deletes_then_adds_the_remainder() {
    let mut rig = Rig::new();
    limit(&mut rig, BOB, Side::Sell, Gtc, 10_000, 40);
    let (id, _) = limit(&mut rig, ALICE, Side::Buy, Gtc, 9_900, 100);
    let old_ref = feed_ref(&rig, id);
    // Crosses: off the book, trades 40 as aggressor, rests 60.
    assert_eq!(replace(&mut rig, ALICE, id, 10_000, 100), "DEA");
    assert!(
        matches!(rig.last_messages[0], Message::OrderDelete { order_ref, .. } if order_ref == old_ref)
    );
    let now = rig.feed.feed_order(id).unwrap();
    assert_eq!((now.shares, now.price), (60, 10_000));
    // Crosses and fills completely: delete and executions, nothing added.
    limit(&mut rig, BOB, Side::Sell, Gtc, 10_010, 100);
    assert_eq!(replace(&mut rig, ALICE, id, 10_010, 60), "DE");
    assert!(rig.feed.feed_order(id).is_none());
    // Crosses into its own order (cancel newest): the replaced order is
    // cancelled as a taker, so it is simply deleted.
    limit(&mut rig, ALICE, Side::Sell, Gtc, 10_000, 10);
    let (own, _) = limit(&mut rig, ALICE, Side::Buy, Gtc, 9_900, 10);
    assert_eq!(replace(&mut rig, ALICE, own, 10_000, 10), "D");
    assert!(rig.engine.order(own).is_none());
}

#[test]
fn halt_resume_cancel_and_mass_cancels() {
    let mut rig = Rig::new();
    let (a, _) = limit(&mut rig, ALICE, Side::Buy, Gtc, 9_900, 10);
    assert_eq!(run(&mut rig, Command::Halt { symbol: SYM }), "H");
    assert!(matches!(
        rig.last_messages[0],
        Message::TradingAction { state: TradingState::Halted, header, .. } if header.stock_locate == 1
    ));
    assert!(rig.decoded.stocks[&1].1);
    assert_eq!(run(&mut rig, Command::Resume { symbol: SYM }), "H");
    assert!(!rig.decoded.stocks[&1].1);
    let a_ref = feed_ref(&rig, a);
    assert_eq!(
        run(
            &mut rig,
            Command::Cancel {
                account: ALICE,
                order_id: a,
                tag: 0
            }
        ),
        "D"
    );
    assert!(
        matches!(rig.last_messages[0], Message::OrderDelete { order_ref, .. } if order_ref == a_ref)
    );
    for price in [9_900, 9_910, 9_920] {
        limit(&mut rig, ALICE, Side::Buy, Gtc, price, 10);
        limit(&mut rig, BOB, Side::Sell, Gtc, price + 500, 10);
    }
    assert_eq!(
        run(
            &mut rig,
            Command::MassCancelAccount {
                account: ALICE,
                symbol: None,
                tag: 0
            }
        ),
        "DDD"
    );
    assert_eq!(
        run(&mut rig, Command::SuspendAccount { account: BOB }),
        "DDD"
    );
    run(&mut rig, Command::ReinstateAccount { account: BOB });
    limit(&mut rig, CAROL, Side::Buy, Gtc, 9_900, 10);
    limit(&mut rig, DAVE, Side::Sell, Gtc, 10_900, 10);
    assert_eq!(
        run(
            &mut rig,
            Command::MassCancelSymbol {
                symbol: SYM,
                tag: 0
            }
        ),
        "DD"
    );
}

#[test]
fn end_of_day_expires_day_orders_and_ends_system_hours() {
    let mut rig = Rig::new();
    let (day, _) = limit(&mut rig, ALICE, Side::Buy, Day, 9_900, 10);
    let (gtc, _) = limit(&mut rig, ALICE, Side::Buy, Gtc, 9_900, 10);
    let day_ref = feed_ref(&rig, day);
    assert_eq!(run(&mut rig, Command::EndOfDay), "DS");
    assert!(
        matches!(rig.last_messages[0], Message::OrderDelete { order_ref, .. } if order_ref == day_ref)
    );
    assert!(matches!(
        rig.last_messages[1],
        Message::SystemEvent {
            event: SystemEventCode::EndOfSystemHours,
            ..
        }
    ));
    assert!(rig.feed.feed_order(gtc).is_some(), "GTC survives");
    // Trading goes on in the same feed the next day.
    let (_, k) = limit(&mut rig, BOB, Side::Sell, Gtc, 9_900, 10);
    assert_eq!(k, "E");
    assert_eq!(rig.decoded.system_events, vec!['O', 'E']);
    // finish() closes the feed.
    let mut tail = Vec::new();
    rig.feed.finish(&mut tail);
    assert!(matches!(
        tail[..],
        [Message::SystemEvent {
            event: SystemEventCode::EndOfMessages,
            ..
        }]
    ));
}

#[test]
fn deriver_errors_instead_of_panicking() {
    let mut feed = FeedDeriver::new(directory());
    let mut out = Vec::new();
    let unknown = SymbolId(7);
    assert_eq!(
        feed.on_command(
            1,
            0,
            &[Event::SymbolAdded {
                symbol: unknown,
                band_low: 1,
                band_high: 2
            }],
            &mut out
        ),
        Err(FeedError::UnknownSymbol { symbol: 7 })
    );
    assert!(out.is_empty(), "nothing appended on error");
    assert_eq!(
        feed.on_command(1, 0, &[], &mut out),
        Err(FeedError::SequenceNotIncreasing { last: 1, got: 1 })
    );
    let delete = Event::OrderCancelled {
        order_id: OrderId(99),
        account: ALICE,
        symbol: SYM,
        side: Side::Buy,
        qty: 10,
        reason: CancelReason::Requested,
        tag: 0,
    };
    assert_eq!(
        feed.on_command(2, 0, &[delete], &mut out),
        Err(FeedError::UnknownOrder { order_id: 99 })
    );
    let accepted = Event::OrderAccepted {
        order_id: OrderId(5),
        account: ALICE,
        symbol: SYM,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Gtc,
        price: 1 << 40,
        qty: 10,
        tag: 0,
    };
    assert_eq!(
        feed.on_command(3, 0, &[accepted], &mut out),
        Err(FeedError::PriceTooLarge { price: 1 << 40 })
    );
    let mut dir = SymbolDirectory::new();
    assert_eq!(
        dir.insert(SymbolId(65_535), "X", 1),
        Err(FeedError::LocateOverflow { symbol: 65_535 })
    );
    assert!(dir.insert(SymbolId(1), "NINECHARS", 1).is_err());
}
