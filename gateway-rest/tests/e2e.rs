//! End to end over real HTTP and WebSocket on loopback: register, read the
//! passcode from the dev mailbox, verify, enrol MFA, log in with TOTP,
//! deposit with an idempotent replay, buy, sell from another account, see
//! the fill on the WebSocket, and check both portfolios.

mod common;

use brokerx_gateway_rest::crypto::{base32_decode, totp};
use brokerx_gateway_rest::time::now_secs;
use common::*;
use serde_json::json;

#[test]
fn register_verify_mfa_deposit_trade_notify_portfolio() {
    let h = Harness::start("e2e");
    let anon = h.client();

    // UC-01: register; the passcode is in the dev mailbox; verify.
    let r = anon.post(
        "/api/v1/auth/register",
        json!({"email": "Alice@Example.com", "password": "correct horse battery", "name": "Alice"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "pending_verification");
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200);
    let unverified = anon.with_token(r.body["access_token"].as_str().unwrap());
    let r = unverified.post_idem("/api/v1/wallet/deposit", "k0", json!({"amount": "100"}));
    assert_eq!(
        r.status, 403,
        "unverified clients cannot deposit: {}",
        r.text
    );
    assert_eq!(r.code(), "unverified");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let code = passcode(&h, "alice@example.com");
    let r = anon.post(
        "/api/v1/auth/verify",
        json!({"email": "alice@example.com", "passcode": code}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let alice_account = r.body["account_id"].as_u64().unwrap() as u32;

    // UC-02: log in, enrol MFA (otpauth URI), confirm, log in with TOTP.
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let alice = anon.with_token(r.body["access_token"].as_str().unwrap());
    let r = alice.post("/api/v1/auth/mfa/enroll", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let uri = r.body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/BrokerX:alice%40example.com?secret="),
        "{uri}"
    );
    let secret = base32_decode(r.body["secret"].as_str().unwrap()).unwrap();
    let r = alice.post(
        "/api/v1/auth/mfa/confirm",
        json!({"code": totp(&secret, now_secs())}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["mfa_required"], true);
    let mfa_token = r.body["mfa_token"].as_str().unwrap().to_string();
    let r = anon.post(
        "/api/v1/auth/login/mfa",
        json!({"mfa_token": mfa_token, "code": "000000"}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "invalid_totp");
    // The next step's code (the current one was used by the confirmation).
    let r = anon.post(
        "/api/v1/auth/login/mfa",
        json!({"mfa_token": mfa_token, "code": totp(&secret, now_secs() + 30)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let alice = anon.with_token(r.body["access_token"].as_str().unwrap());

    // UC-03: deposit with Idempotency-Key; the same key and body replays.
    let r = alice.post_idem(
        "/api/v1/wallet/deposit",
        "dep-1",
        json!({"amount": "5000.00"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["available"], "5000.00");
    let replay = alice.post_idem(
        "/api/v1/wallet/deposit",
        "dep-1",
        json!({"amount": "5000.00"}),
    );
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, r.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let r = alice.get("/api/v1/wallet");
    assert_eq!(r.body["available"], "5000.00", "the replay moved no money");

    // The seller: another client, funded with shares by the operator.
    let (bob, bob_account) = verified_client(&h, "bob@example.com");
    h.give_shares(bob_account, 0, 100);

    // UC-08: Alice listens on the WebSocket.
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": alice.token.clone().unwrap()}));
    let m = ws.recv().unwrap();
    assert_eq!(m["data"]["status"], "authorized", "{m}");
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"]}));
    let m = ws.recv().unwrap();
    assert_eq!(m["stream"], "listening");

    // UC-05: Alice buys 10 AAPL at 190.00 (rests); Bob sells 10 at 189.00.
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "type": "limit", "time_in_force": "gtc",
               "limit_price": "190.00", "qty": 10, "client_order_id": "alice-1"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "new");
    assert_eq!(r.body["limit_price"], "190.00");
    assert_eq!(r.body["qty"], "10");
    let buy_id = r.body["id"].as_str().unwrap().to_string();
    // 10 × (190.00 + 0.003 max fee) held.
    let r = alice.get("/api/v1/portfolio");
    assert_eq!(r.body["cash"]["reserved"], "1900.03");
    assert_eq!(r.body["cash"]["available"], "3099.97");
    let m = ws.recv_until(|m| m["data"]["event"] == "new");
    assert_eq!(m["data"]["order"]["id"], buy_id.as_str());
    let first_seq = m["seq"].as_u64().unwrap();

    let r = bob.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "sell", "type": "limit", "time_in_force": "day",
               "limit_price": 189, "qty": "10"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "filled", "{}", r.text);
    assert_eq!(
        r.body["filled_avg_price"], "190.00",
        "trades at the resting price"
    );

    // The fill arrives on Alice's stream with the next sequence number.
    let m = ws.recv_until(|m| m["stream"] == "trade_updates");
    assert_eq!(m["data"]["event"], "fill", "{m}");
    assert_eq!(m["seq"].as_u64().unwrap(), first_seq + 1);
    assert_eq!(m["data"]["price"], "190.00");
    assert_eq!(m["data"]["qty"], "10");
    assert_eq!(m["data"]["order"]["status"], "filled");

    // Both portfolios. Alice (maker) paid 1900 + 10 × 0.002 fee.
    let r = alice.get("/api/v1/portfolio");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["cash"]["available"], "3099.98", "{}", r.text);
    assert_eq!(r.body["cash"]["reserved"], "0.00");
    assert_eq!(r.body["positions"][0]["symbol"], "AAPL");
    assert_eq!(r.body["positions"][0]["qty"], "10");
    assert_eq!(r.body["positions"][0]["avg_cost"], "190.002");
    // Bob (taker) received 1900 − 10 × 0.003.
    let r = bob.get("/api/v1/portfolio");
    assert_eq!(r.body["cash"]["available"], "1899.97", "{}", r.text);
    assert_eq!(r.body["positions"][0]["qty"], "90");

    // The order and the activity history.
    let r = alice.get(&format!("/api/v1/orders/{buy_id}"));
    assert_eq!(r.body["status"], "filled");
    assert_eq!(r.body["client_order_id"], "alice-1");
    let r = alice.get("/api/v1/activities");
    let kinds: Vec<&str> = r.body["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activity_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["FILL", "CSD"], "{}", r.text);

    // Market data reflects the trade.
    let r = anon.get("/api/v1/market/AAPL/quote");
    assert_eq!(r.body["last_price"], "190.00", "{}", r.text);
    let r = anon.get("/api/v1/market/AAPL/trades");
    assert_eq!(r.body[0]["qty"], "10");

    // A reconnecting client resumes after its last sequence number.
    drop(ws);
    let mut ws = Ws::connect(
        h.addr,
        "/api/v1/ws",
        &[(
            "Authorization",
            &format!("Bearer {}", alice.token.clone().unwrap()),
        )],
    );
    ws.send(
        &json!({"action": "subscribe", "streams": ["trade_updates"], "resume_from": first_seq}),
    );
    let m = ws.recv().unwrap();
    assert_eq!(m["stream"], "listening");
    let m = ws.recv().unwrap();
    assert_eq!(m["seq"].as_u64().unwrap(), first_seq + 1);
    assert_eq!(m["data"]["event"], "fill");
    let _ = alice_account;
    drop(h);
}
