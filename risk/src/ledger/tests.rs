//! Unit tests for the ledger: every reject code the ledger can return, and
//! exact settlement arithmetic.

use super::*;

const ALICE: AccountId = AccountId(1);
const BOB: AccountId = AccountId(2);
const SYM: SymbolId = SymbolId(0);

fn ledger() -> Ledger {
    let mut ledger = Ledger::new();
    ledger.open_account(ALICE, Limits::UNLIMITED).unwrap();
    ledger.open_account(BOB, Limits::UNLIMITED).unwrap();
    ledger.deposit_cash(ALICE, 1_000_000).unwrap();
    ledger.deposit_shares(BOB, SYM, 500).unwrap();
    ledger
}

fn buy(qty: u64, price: u64, fee: u64) -> OrderTicket {
    OrderTicket {
        account: ALICE,
        symbol: SYM,
        side: Side::Buy,
        qty,
        notional_price: price,
        reserve_per_share: price + fee,
    }
}

fn sell(qty: u64, price: u64) -> OrderTicket {
    OrderTicket {
        account: BOB,
        symbol: SYM,
        side: Side::Sell,
        qty,
        notional_price: price,
        reserve_per_share: 0,
    }
}

#[test]
fn open_account_rejects_duplicate_and_out_of_range() {
    let mut ledger = ledger();
    assert_eq!(
        ledger.open_account(ALICE, Limits::UNLIMITED),
        Err(RejectCode::AccountExists)
    );
    assert_eq!(
        ledger.open_account(AccountId(MAX_ACCOUNTS), Limits::UNLIMITED),
        Err(RejectCode::AccountIdOutOfRange)
    );
}

#[test]
fn deposits_and_withdrawals_move_supply() {
    let mut ledger = ledger();
    assert_eq!(ledger.withdraw_cash(ALICE, 400_000), Ok(600_000));
    assert_eq!(ledger.cash_supply(), 600_000);
    assert_eq!(
        ledger.withdraw_cash(ALICE, 600_001),
        Err(RejectCode::InsufficientFunds)
    );
    assert_eq!(
        ledger.withdraw_cash(ALICE, 0),
        Err(RejectCode::InvalidAmount)
    );
    assert_eq!(
        ledger.deposit_cash(ALICE, 0),
        Err(RejectCode::InvalidAmount)
    );
    assert_eq!(
        ledger.deposit_cash(AccountId(9), 5),
        Err(RejectCode::UnknownAccount)
    );
    assert_eq!(
        ledger.deposit_cash(ALICE, u64::MAX),
        Err(RejectCode::AmountOverflow)
    );
    assert_eq!(
        ledger.withdraw_shares(BOB, SYM, 501),
        Err(RejectCode::InsufficientShares)
    );
    assert_eq!(ledger.withdraw_shares(BOB, SYM, 100), Ok(400));
    assert_eq!(ledger.share_supply(SYM), 400);
    ledger.check_invariants().unwrap();
}

#[test]
fn buy_reserves_price_times_qty_plus_fees() {
    let mut ledger = ledger();
    ledger.reserve(&buy(100, 1_000, 3)).unwrap();
    let cash = ledger.account(ALICE).unwrap().cash;
    assert_eq!(cash.reserved, 100 * 1_003);
    assert_eq!(cash.available, 1_000_000 - 100 * 1_003);
    assert_eq!(ledger.account(ALICE).unwrap().open_orders, 1);
    ledger.check_invariants().unwrap();
}

#[test]
fn buy_beyond_cash_is_insufficient_funds() {
    let mut ledger = ledger();
    assert_eq!(
        ledger.reserve(&buy(1_000, 1_000, 1)),
        Err(RejectCode::InsufficientFunds)
    );
    let account = ledger.account(ALICE).unwrap();
    assert_eq!(account.cash.reserved, 0);
    assert_eq!(account.open_orders, 0);
}

#[test]
fn sell_reserves_shares_and_forbids_naked_short() {
    let mut ledger = ledger();
    ledger.reserve(&sell(300, 1_000)).unwrap();
    assert_eq!(ledger.account(BOB).unwrap().position(SYM).reserved, 300);
    assert_eq!(
        ledger.reserve(&sell(201, 1_000)),
        Err(RejectCode::InsufficientShares)
    );
    let mut alice_sells = sell(1, 1_000);
    alice_sells.account = ALICE;
    assert_eq!(
        ledger.reserve(&alice_sells),
        Err(RejectCode::InsufficientShares)
    );
}

#[test]
fn limits_are_enforced_in_order() {
    let mut ledger = ledger();
    let limits = Limits {
        max_order_qty: 100,
        max_order_notional: 50_000,
        max_open_orders: 1,
    };
    ledger.set_limits(ALICE, limits).unwrap();
    assert_eq!(
        ledger.reserve(&buy(101, 1, 0)),
        Err(RejectCode::MaxOrderQuantityExceeded)
    );
    assert_eq!(
        ledger.reserve(&buy(100, 501, 0)),
        Err(RejectCode::MaxOrderNotionalExceeded)
    );
    ledger.reserve(&buy(100, 500, 0)).unwrap();
    assert_eq!(
        ledger.reserve(&buy(1, 1, 0)),
        Err(RejectCode::MaxOpenOrdersExceeded)
    );
    // Notional overflow counts as notional above the limit.
    assert_eq!(
        ledger.reserve(&buy(100, u64::MAX / 2, 0)),
        Err(RejectCode::MaxOrderNotionalExceeded)
    );
}

#[test]
fn suspended_account_cannot_reserve() {
    let mut ledger = ledger();
    ledger.suspend(ALICE).unwrap();
    assert_eq!(ledger.suspend(ALICE), Err(RejectCode::AccountSuspended));
    assert_eq!(
        ledger.reserve(&buy(1, 1, 0)),
        Err(RejectCode::AccountSuspended)
    );
    ledger.reinstate(ALICE).unwrap();
    assert_eq!(
        ledger.reinstate(ALICE),
        Err(RejectCode::AccountNotSuspended)
    );
    ledger.reserve(&buy(1, 1, 0)).unwrap();
}

#[test]
fn settle_moves_exactly_what_traded() {
    let mut ledger = ledger();
    // Alice bids 100 @ 1_000 holding a 3/share fee; Bob offers 100.
    ledger.reserve(&buy(100, 1_000, 3)).unwrap();
    ledger.reserve(&sell(100, 990)).unwrap();
    // 60 trade at 990 (Alice is the taker at fee 3, Bob the maker at fee 1).
    ledger.settle(&Settlement {
        symbol: SYM,
        qty: 60,
        price: 990,
        buyer: ALICE,
        buyer_reserve_per_share: 1_003,
        buyer_fee_per_share: 3,
        seller: BOB,
        seller_fee_per_share: 1,
        buyer_order_closed: false,
        seller_order_closed: false,
    });
    let alice = ledger.account(ALICE).unwrap();
    assert_eq!(alice.cash.reserved, 40 * 1_003);
    assert_eq!(alice.cash.available, 1_000_000 - 100 * 1_003 + 60 * 10);
    assert_eq!(alice.position(SYM).available, 60);
    let bob = ledger.account(BOB).unwrap();
    assert_eq!(bob.cash.available, 60 * 990 - 60);
    assert_eq!(bob.position(SYM).reserved, 40);
    assert_eq!(ledger.fees_collected(), 60 * 3 + 60);
    ledger.check_invariants().unwrap();

    // Release the rest of both orders.
    ledger.release(&buy(40, 1_000, 3), true);
    ledger.release(&sell(40, 990), true);
    let alice = ledger.account(ALICE).unwrap();
    assert_eq!(alice.cash.reserved, 0);
    assert_eq!(alice.open_orders, 0);
    assert_eq!(ledger.account(BOB).unwrap().open_orders, 0);
    ledger.check_invariants().unwrap();
}

#[test]
fn seller_fee_never_exceeds_price() {
    let fill = Settlement {
        symbol: SYM,
        qty: 10,
        price: 2,
        buyer: ALICE,
        buyer_reserve_per_share: 7,
        buyer_fee_per_share: 5,
        seller: BOB,
        seller_fee_per_share: 5,
        buyer_order_closed: true,
        seller_order_closed: true,
    };
    assert_eq!(fill.seller_fee(), 20);
    assert_eq!(fill.buyer_fee(), 50);
}

#[test]
fn re_reserve_holds_the_difference_or_rejects_unchanged() {
    let mut ledger = ledger();
    let old = buy(100, 1_000, 0);
    ledger.reserve(&old).unwrap();
    let bigger = buy(1_001, 1_000, 0);
    assert_eq!(
        ledger.re_reserve(&old, &bigger),
        Err(RejectCode::InsufficientFunds)
    );
    assert_eq!(ledger.account(ALICE).unwrap().cash.reserved, 100_000);
    let smaller = buy(50, 900, 0);
    ledger.re_reserve(&old, &smaller).unwrap();
    assert_eq!(ledger.account(ALICE).unwrap().cash.reserved, 45_000);
    let sell_old = sell(100, 10);
    ledger.reserve(&sell_old).unwrap();
    assert_eq!(
        ledger.re_reserve(&sell_old, &sell(501, 10)),
        Err(RejectCode::InsufficientShares)
    );
    ledger.re_reserve(&sell_old, &sell(500, 10)).unwrap();
    assert_eq!(ledger.account(BOB).unwrap().position(SYM).reserved, 500);
    ledger.check_invariants().unwrap();
}

#[test]
fn reject_codes_round_trip_and_are_unique() {
    for code in RejectCode::ALL {
        assert_eq!(RejectCode::from_code(code.code()), Some(code));
        assert!((100..200).contains(&code.code()));
        assert!(!code.name().is_empty());
    }
    assert_eq!(RejectCode::from_code(0), None);
}

#[test]
fn ledger_image_round_trips_and_refuses_truncation() {
    let mut ledger = ledger();
    ledger.reserve(&buy(100, 1_000, 3)).unwrap();
    ledger.suspend(BOB).unwrap();
    ledger
        .open_account(
            AccountId(7),
            Limits {
                max_order_qty: 5,
                max_order_notional: 6,
                max_open_orders: 7,
            },
        )
        .unwrap();
    let mut image = Vec::new();
    ledger.encode(&mut image);
    let mut input = image.as_slice();
    assert_eq!(Ledger::decode(&mut input).unwrap(), ledger);
    assert!(input.is_empty());
    for cut in 0..image.len() {
        let mut short = &image[..cut];
        assert!(Ledger::decode(&mut short).is_err(), "cut at {cut}");
    }
}
