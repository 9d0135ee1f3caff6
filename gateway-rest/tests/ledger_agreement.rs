//! The read model mirrors the engine's ledger exactly: a random mix of
//! REST operations (limit and market orders of every time in force,
//! replaces, cancels, mass cancels, deposits, withdrawals) by three
//! clients, then every client's portfolio (cash available and reserved,
//! positions available and reserved) is compared with the ledger of an
//! engine rebuilt from the journal.
//!
//! The second test runs the same mix while, again and again, the bridge
//! stalls and an operator account trades into the clients' orders directly
//! through the pipeline: with 32-output queues the engine cuts the bridge
//! off each time, and the bridge must rebuild what it missed from the
//! journal (fills of resting orders, a request in flight) for the
//! portfolios to agree.

mod common;

use brokerx_engine::pipeline::replay_journal;
use brokerx_engine::state::StableHasher;
use brokerx_engine::{
    AccountId, Command, Engine, EngineConfig, Limits, OrderType, SelfTradePrevention, Side,
    SymbolId, TimeInForce,
};
use brokerx_gateway_rest::money::{format_money, format_qty};
use common::*;
use serde_json::{json, Value};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn portfolios_agree_with_the_replayed_ledger_after_random_trading() {
    for seed in [42, 7, 2024, 99991] {
        run(seed, false);
    }
}

#[test]
fn portfolios_agree_after_the_engine_cuts_the_bridge_off_again_and_again() {
    for seed in [5, 77] {
        run(seed, true);
    }
}

const OPERATOR: AccountId = AccountId(900_000);

/// An operator's orders straight into the pipeline: IOC sells at 188.00
/// and buys at 192.00 in AAPL, into the clients' resting orders.
fn operator_burst(rng: &mut Lcg) -> Vec<Command> {
    (0..24)
        .map(|i| {
            let buy = i % 2 == 0;
            Command::NewOrder {
                account: OPERATOR,
                symbol: SymbolId(0),
                side: if buy { Side::Buy } else { Side::Sell },
                order_type: OrderType::Limit,
                tif: TimeInForce::Ioc,
                price: if buy { 1_920_000 } else { 1_880_000 },
                qty: 1 + rng.next(3),
                self_trade: SelfTradePrevention::CancelNewest,
                tag: 0,
            }
        })
        .collect()
}

fn run(seed: u64, chaos: bool) {
    let h = if chaos {
        Harness::open_full(
            temp_dir(&format!("ledger-chaos-{seed}")),
            |_| {},
            true,
            |pipeline| pipeline.outbound_capacity = 32,
        )
    } else {
        Harness::start(&format!("ledger-{seed}"))
    };
    if chaos {
        h.engine(&[
            Command::CreateAccount {
                account: OPERATOR,
                limits: Limits::UNLIMITED,
                self_trade: SelfTradePrevention::CancelNewest,
            },
            Command::DepositCash {
                account: OPERATOR,
                amount: 1_000_000_000_000,
                tag: 0,
            },
            Command::DepositShares {
                account: OPERATOR,
                symbol: SymbolId(0),
                qty: 1_000_000,
                tag: 0,
            },
        ]);
    }
    let mut clients = Vec::new();
    for i in 0..3 {
        let (client, account) = verified_client(&h, &format!("trader{i}@example.com"));
        assert_eq!(deposit(&client, "9000").status, 201);
        h.give_shares(account, 0, 200);
        h.give_shares(account, 1, 500);
        clients.push((client, account));
    }
    let mut rng = Lcg(seed);
    let mut open: Vec<(usize, String)> = Vec::new();
    let tifs = ["day", "gtc", "ioc", "fok"];
    for step in 0..300 {
        let who = rng.next(3) as usize;
        let client = &clients[who].0;
        if chaos && step % 30 == 15 {
            // Stall the bridge; a client's order is in flight while the
            // operator trades: the engine cuts the bridge off.
            let bridge = h.server.as_ref().unwrap().bridge().clone();
            let before = bridge.reattached();
            bridge.pause(true);
            let in_flight = {
                let client = client.clone();
                std::thread::spawn(move || {
                    client.post(
                        "/api/v1/orders",
                        json!({"symbol": "AAPL", "side": "buy", "type": "limit",
                               "time_in_force": "gtc", "limit_price": "189.50", "qty": 2}),
                    )
                })
            };
            std::thread::sleep(std::time::Duration::from_millis(30));
            // In small chunks: the harness's own session reads only after
            // submitting, and has a 32-output queue too.
            for chunk in operator_burst(&mut rng).chunks(3) {
                h.engine(chunk);
            }
            bridge.pause(false);
            let r = in_flight.join().unwrap();
            assert!(
                r.status == 201 || r.status == 403,
                "step {step}: {}",
                r.text
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while bridge.reattached() == before {
                assert!(std::time::Instant::now() < deadline, "never re-attached");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if r.status == 201 && r.body["status"] != "filled" {
                open.push((who, r.body["id"].as_str().unwrap().to_string()));
            }
        }
        match rng.next(10) {
            0..=5 => {
                let (symbol, base, lot) = if rng.next(3) == 0 {
                    ("MSFT", 42_000_u64, 10)
                } else {
                    ("AAPL", 19_000_u64, 1)
                };
                let side = if rng.next(2) == 0 { "buy" } else { "sell" };
                let cents = base - 300 + rng.next(600);
                let qty = lot * (1 + rng.next(8));
                let body = if rng.next(8) == 0 {
                    json!({"symbol": symbol, "side": side, "type": "market", "time_in_force": "ioc", "qty": qty})
                } else {
                    json!({"symbol": symbol, "side": side, "type": "limit",
                           "time_in_force": tifs[rng.next(4) as usize],
                           "limit_price": format!("{}.{:02}", cents / 100, cents % 100), "qty": qty})
                };
                let r = client.post("/api/v1/orders", body);
                assert!(
                    r.status == 201 || r.status == 403,
                    "step {step}: {}",
                    r.text
                );
                if r.status == 201
                    && (r.body["status"] == "new" || r.body["status"] == "partially_filled")
                {
                    open.push((who, r.body["id"].as_str().unwrap().to_string()));
                }
            }
            6 if !open.is_empty() => {
                let (owner, id) = open[rng.next(open.len() as u64) as usize].clone();
                let r = clients[owner]
                    .0
                    .call("DELETE", &format!("/api/v1/orders/{id}"), None);
                assert!(matches!(r.status, 200 | 422), "step {step}: {}", r.text);
            }
            7 if !open.is_empty() => {
                let (owner, id) = open[rng.next(open.len() as u64) as usize].clone();
                let current = clients[owner].0.get(&format!("/api/v1/orders/{id}")).body;
                let filled: u64 = current["filled_qty"].as_str().unwrap().parse().unwrap();
                let lot = if current["symbol"] == "MSFT" { 10 } else { 1 };
                let qty = filled + lot * (1 + rng.next(6));
                let r = clients[owner].0.call(
                    "PATCH",
                    &format!("/api/v1/orders/{id}"),
                    Some(json!({"qty": qty})),
                );
                assert!(
                    matches!(r.status, 200 | 403 | 422),
                    "step {step}: {}",
                    r.text
                );
            }
            8 => {
                let r = client.post_idem(
                    "/api/v1/wallet/deposit",
                    &format!("d{step}"),
                    json!({"amount": format!("{}.25", 100 + rng.next(500))}),
                );
                assert_eq!(r.status, 201, "step {step}: {}", r.text);
            }
            9 => {
                let r = client.post_idem(
                    "/api/v1/wallet/withdraw",
                    &format!("w{step}"),
                    json!({"amount": format!("{}.75", 1 + rng.next(300))}),
                );
                assert!(matches!(r.status, 201 | 422), "step {step}: {}", r.text);
            }
            _ => {
                if rng.next(4) == 0 {
                    client.call("DELETE", "/api/v1/orders", None);
                }
            }
        }
    }
    // What the gateway says.
    let portfolios: Vec<Value> = clients
        .iter()
        .map(|(client, _)| client.get("/api/v1/portfolio").body)
        .collect();
    let accounts: Vec<u32> = clients.iter().map(|(_, a)| *a).collect();
    let dir = h.stop();

    // What the ledger says, rebuilt from the journal.
    let mut engine = Engine::new(EngineConfig::default());
    let mut hasher = StableHasher::default();
    let mut count = 0;
    replay_journal(&dir, &mut engine, &mut hasher, &mut count, None, |_, _| {}).unwrap();
    let mut trades = 0;
    for (portfolio, account) in portfolios.iter().zip(accounts) {
        let ledger = engine.ledger().account(AccountId(account)).unwrap();
        assert_eq!(
            portfolio["cash"]["available"],
            format_money(ledger.cash.available),
            "account {account}: {portfolio}"
        );
        assert_eq!(
            portfolio["cash"]["reserved"],
            format_money(ledger.cash.reserved),
            "account {account}"
        );
        for (symbol, name) in [(0u32, "AAPL"), (1, "MSFT")] {
            let balance = ledger.position(SymbolId(symbol));
            let shown = portfolio["positions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["symbol"] == name)
                .cloned()
                .unwrap_or(json!({"available": "0", "reserved": "0"}));
            assert_eq!(
                shown["available"],
                format_qty(balance.available),
                "account {account} {name}"
            );
            assert_eq!(
                shown["reserved"],
                format_qty(balance.reserved),
                "account {account} {name}"
            );
            if balance.available + balance.reserved != 200
                && balance.available + balance.reserved != 500
            {
                trades += 1;
            }
        }
    }
    assert!(trades > 0, "the random mix traded");
    let _ = std::fs::remove_dir_all(&dir);
}
