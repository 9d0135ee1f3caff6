//! L1/L2 specifics the random engine run does not pin down exactly: last
//! trade, spread, halt flag, depth truncation, level removal, unknown
//! symbols.

mod support;

use brokerx_engine::TimeInForce::Gtc;
use brokerx_engine::{Command, Event, Side, SymbolId};
use brokerx_marketdata::{LastTrade, Level, MarketData, Quote, L2};
use support::{Rig, ALICE, BOB, OTHER, SYM};

#[test]
fn l1_tracks_top_of_book_last_trade_and_halts() {
    let mut rig = Rig::new();
    let l1 = rig.md.l1(SYM).unwrap();
    assert_eq!(
        (l1.bid, l1.ask, l1.last_trade, l1.halted),
        (None, None, None, false)
    );
    assert_eq!(l1.spread(), None);
    rig.limit(ALICE, Side::Buy, Gtc, 9_900, 30);
    rig.limit(ALICE, Side::Buy, Gtc, 9_950, 20);
    rig.limit(ALICE, Side::Buy, Gtc, 9_950, 20);
    rig.limit(BOB, Side::Sell, Gtc, 10_050, 40);
    let l1 = rig.md.l1(SYM).unwrap();
    assert_eq!(
        l1.bid,
        Some(Quote {
            price: 9_950,
            qty: 40,
            orders: 2
        })
    );
    assert_eq!(
        l1.ask,
        Some(Quote {
            price: 10_050,
            qty: 40,
            orders: 1
        })
    );
    assert_eq!(l1.spread(), Some(100));
    // Bob sells 30 into the bids: 20 then 10 at 9_950.
    rig.limit(BOB, Side::Sell, Gtc, 9_950, 30);
    let l1 = rig.md.l1(SYM).unwrap();
    let last_match = rig
        .last_events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Trade { match_id, .. } => Some(*match_id),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        l1.last_trade,
        Some(LastTrade {
            price: 9_950,
            qty: 10,
            aggressor: Side::Sell,
            match_id: last_match
        })
    );
    assert_eq!(
        l1.bid,
        Some(Quote {
            price: 9_950,
            qty: 10,
            orders: 1
        })
    );
    rig.run(Command::Halt { symbol: SYM });
    assert!(rig.md.l1(SYM).unwrap().halted);
    assert!(!rig.md.l1(OTHER).unwrap().halted);
    rig.check();
}

#[test]
fn l2_depth_is_truncated_best_first_and_empty_levels_vanish() {
    let mut rig = Rig::new();
    for (i, price) in [9_900, 9_920, 9_910, 9_930].into_iter().enumerate() {
        rig.limit(ALICE, Side::Buy, Gtc, price, 10 * (i as u64 + 1));
    }
    for price in [10_020, 10_010] {
        rig.limit(BOB, Side::Sell, Gtc, price, 10);
    }
    assert_eq!(
        rig.md.l2(SYM, 2),
        L2 {
            bids: vec![
                Level {
                    price: 9_930,
                    qty: 40,
                    orders: 1
                },
                Level {
                    price: 9_920,
                    qty: 20,
                    orders: 1
                },
            ],
            asks: vec![
                Level {
                    price: 10_010,
                    qty: 10,
                    orders: 1
                },
                Level {
                    price: 10_020,
                    qty: 10,
                    orders: 1
                },
            ],
        }
    );
    assert_eq!(rig.md.l2(SYM, 0), L2::default());
    // Sweep the best ask: its level disappears.
    rig.limit(ALICE, Side::Buy, Gtc, 10_010, 10);
    assert_eq!(rig.md.l2(SYM, 1).asks[0].price, 10_020);
    assert_eq!(rig.md.level_count(SYM, Side::Sell), 1);
    rig.check();
}

#[test]
fn unknown_symbols_and_mid_stream_starts() {
    let mut md = MarketData::new();
    assert_eq!(md.l1(SymbolId(3)), None);
    assert_eq!(md.l2(SymbolId(3), 10), L2::default());
    // A consumer joining mid-stream tracks the levels it sees change.
    md.apply(&Event::BookLevel {
        symbol: SymbolId(3),
        side: Side::Sell,
        price: 10_000,
        qty: 70,
        orders: 2,
    });
    assert_eq!(md.symbols(), vec![SymbolId(3)]);
    assert_eq!(md.l1(SymbolId(3)).unwrap().ask.unwrap().qty, 70);
    md.apply(&Event::BookLevel {
        symbol: SymbolId(3),
        side: Side::Sell,
        price: 10_000,
        qty: 0,
        orders: 0,
    });
    assert_eq!(md.l1(SymbolId(3)).unwrap().ask, None);
}
