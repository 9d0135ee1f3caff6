//! A restart of the pipeline and the gateway on the same directory: the
//! read model comes back from the journal plus SQLite (orders, balances,
//! positions with cost, activities, client order ids), tokens stay valid
//! (same key), and a WebSocket client resumes from its last sequence
//! number across the restart without gaps.

mod common;

use brokerx_engine::{
    AccountId, Command, OrderType, SelfTradePrevention, Side, SymbolId, TimeInForce,
};
use common::*;
use serde_json::json;

#[test]
fn read_model_and_stream_survive_a_restart() {
    let h = Harness::start("restart");
    let (alice, _) = verified_client(&h, "alice@example.com");
    let (bob, bob_account) = verified_client(&h, "bob@example.com");
    assert_eq!(deposit(&alice, "5000").status, 201);
    h.give_shares(bob_account, 0, 50);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "190", "qty": 10, "time_in_force": "gtc", "client_order_id": "keep-1"}),
    );
    assert_eq!(r.status, 201);
    let first = r.body["id"].as_str().unwrap().to_string();
    let r = bob.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "sell", "limit_price": "190", "qty": 4}),
    );
    assert_eq!(r.body["status"], "filled", "{}", r.text);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "185", "qty": 2, "time_in_force": "gtc"}),
    );
    assert_eq!(r.status, 201);
    let before_portfolio = alice.get("/api/v1/portfolio").body;
    let before_orders = alice.get("/api/v1/orders?status=all").body;
    let before_activities = alice.get("/api/v1/activities").body;
    // Alice's stream so far: new, partial fill, new.
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": alice.token.clone().unwrap()}));
    ws.recv().unwrap();
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"], "resume_from": 0}));
    ws.recv().unwrap();
    let seqs: Vec<u64> = (0..3)
        .map(|_| ws.recv().unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    drop(ws);

    let dir = h.stop();
    let h = Harness::open(dir, |_| {}, true);
    let alice = alice.clone_to(h.addr);
    let bob = bob.clone_to(h.addr);
    assert_eq!(alice.get("/api/v1/portfolio").body, before_portfolio);
    assert_eq!(alice.get("/api/v1/orders?status=all").body, before_orders);
    assert_eq!(alice.get("/api/v1/activities").body, before_activities);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "180", "qty": 1, "client_order_id": "keep-1"}),
    );
    assert_eq!(r.code(), "duplicate_client_order_id", "{}", r.text);

    // Resume from 2 across the restart, then a live fill continues at 5.
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": alice.token.clone().unwrap()}));
    ws.recv().unwrap();
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"], "resume_from": 2}));
    ws.recv().unwrap();
    let m = ws.recv().unwrap();
    assert_eq!(
        (m["seq"].as_u64(), m["data"]["event"].as_str()),
        (Some(3), Some("new"))
    );
    let r = bob.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "sell", "limit_price": "190", "qty": 6}),
    );
    assert_eq!(r.body["status"], "filled", "{}", r.text);
    let m = ws.recv().unwrap();
    assert_eq!(m["seq"].as_u64(), Some(4), "{m}");
    assert_eq!(m["data"]["event"], "fill");
    assert_eq!(m["data"]["order"]["id"], first.as_str());
    let r = alice.get("/api/v1/portfolio");
    assert_eq!(r.body["positions"][0]["qty"], "10");
    assert_eq!(r.body["positions"][0]["avg_cost"], "190.002");
    drop(h);
}

/// Commands sequenced after a restart but before the gateway connects (a
/// gap in what its session receives) go through the projection: a trade
/// made in the gap by another session for two REST clients shows in their
/// orders and fill activities, and is in the store, so it is still there
/// after the next restart.
#[test]
fn commands_before_the_gateway_connects_reach_the_read_model() {
    let h = Harness::start("gap");
    let (alice, alice_account) = verified_client(&h, "alice@example.com");
    let (bob, bob_account) = verified_client(&h, "bob@example.com");
    assert_eq!(deposit(&alice, "5000").status, 201);
    h.give_shares(bob_account, 0, 50);
    let dir = h.stop();

    let order = |account: u32, side: Side, qty: u64| Command::NewOrder {
        account: AccountId(account),
        symbol: SymbolId(0),
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: 1_900_000,
        qty,
        self_trade: SelfTradePrevention::AccountDefault,
        tag: 77,
    };
    let h = Harness::open_after(
        dir,
        |_| {},
        true,
        |_| {},
        |pipeline| {
            submit_and_wait(
                pipeline,
                &[
                    order(alice_account, Side::Buy, 10),
                    order(bob_account, Side::Sell, 4),
                ],
            );
        },
    );
    let alice = alice.clone_to(h.addr);
    let bob = bob.clone_to(h.addr);
    // A first live output makes the gateway notice the gap.
    assert_eq!(deposit(&alice, "1").status, 201);
    let check = |alice: &Client, bob: &Client, after: &str| {
        let orders = alice.get("/api/v1/orders?status=all").body;
        let gap = orders["orders"]
            .as_array()
            .unwrap_or_else(|| panic!("{after}: {orders}"))
            .iter()
            .find(|o| o["limit_price"] == "190.00")
            .unwrap_or_else(|| panic!("{after}: the gap's order: {orders}"));
        assert_eq!(
            (&gap["status"], &gap["filled_qty"]),
            (&json!("partially_filled"), &json!("4")),
            "{after}: {gap}"
        );
        for (client, who) in [(alice, "alice"), (bob, "bob")] {
            let fills = client.get("/api/v1/activities?type=FILL").body;
            assert_eq!(
                fills["activities"].as_array().unwrap().len(),
                1,
                "{after}: {who}'s fill activity: {fills}"
            );
        }
    };
    check(&alice, &bob, "after the gap");
    let dir = h.stop();
    let h = Harness::open(dir, |_| {}, true);
    check(
        &alice.clone_to(h.addr),
        &bob.clone_to(h.addr),
        "after another restart",
    );
}
