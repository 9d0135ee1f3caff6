//! The REST API over real sockets: bad input, authorization, idempotency,
//! authentication flows, rate limits, orders lifecycle, SMTP delivery.

mod common;

use brokerx_gateway_rest::crypto::{base32_decode, jwt_sign, totp};
use brokerx_gateway_rest::time::now_secs;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

fn snapshot(client: &Client) -> (Value, Value) {
    let portfolio = client.get("/api/v1/portfolio").body;
    let orders = client.get("/api/v1/orders?status=all").body;
    (portfolio, orders)
}

#[test]
fn bad_input_gets_the_right_4xx_and_changes_nothing() {
    let h = Harness::start("bad-input");
    let (alice, _) = verified_client(&h, "alice@example.com");
    assert_eq!(deposit(&alice, "5000").status, 201);
    let before = snapshot(&alice);
    let expired = jwt_sign(
        b"test-secret",
        &json!({"sub": 1, "acc": 1001, "exp": now_secs() - 10, "iat": now_secs() - 100, "jti": "x", "typ": "access"}),
    );
    let forged = jwt_sign(
        b"not-the-key",
        &json!({"sub": 1, "acc": 1001, "exp": now_secs() + 100, "iat": now_secs(), "jti": "y", "typ": "access"}),
    );
    let order = |fields: Value| {
        let mut base = json!({"symbol": "AAPL", "side": "buy", "type": "limit", "time_in_force": "day", "limit_price": "190.00", "qty": "1"});
        for (k, v) in fields.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.to_string().into_bytes()
    };
    let big = vec![b' '; 70 * 1024];
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<u8>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let tok = alice.token.clone().unwrap();
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "POST",
            "/api/v1/orders",
            b"{\"symbol\": ".to_vec(),
            None,
            400,
            "invalid_json",
        ),
        (
            "not an object",
            "POST",
            "/api/v1/orders",
            b"[1,2]".to_vec(),
            None,
            400,
            "invalid_json",
        ),
        (
            "missing symbol",
            "POST",
            "/api/v1/orders",
            order(json!({"symbol": null})),
            None,
            422,
            "missing_field",
        ),
        (
            "missing side",
            "POST",
            "/api/v1/orders",
            order(json!({"side": null})),
            None,
            422,
            "missing_field",
        ),
        (
            "missing qty",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": null})),
            None,
            422,
            "missing_field",
        ),
        (
            "bad side",
            "POST",
            "/api/v1/orders",
            order(json!({"side": "hold"})),
            None,
            422,
            "invalid_field",
        ),
        (
            "bad type",
            "POST",
            "/api/v1/orders",
            order(json!({"type": "stop"})),
            None,
            422,
            "invalid_field",
        ),
        (
            "bad tif",
            "POST",
            "/api/v1/orders",
            order(json!({"time_in_force": "opg"})),
            None,
            422,
            "invalid_field",
        ),
        (
            "zero qty",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": 0})),
            None,
            422,
            "invalid_quantity",
        ),
        (
            "negative qty",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": -5})),
            None,
            422,
            "invalid_quantity",
        ),
        (
            "fractional qty",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": "1.5"})),
            None,
            422,
            "invalid_quantity",
        ),
        (
            "qty not a number",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": "ten"})),
            None,
            422,
            "invalid_quantity",
        ),
        (
            "off lot",
            "POST",
            "/api/v1/orders",
            order(json!({"symbol": "MSFT", "limit_price": "420", "qty": 5})),
            None,
            422,
            "invalid_quantity",
        ),
        (
            "off tick",
            "POST",
            "/api/v1/orders",
            order(json!({"limit_price": "190.005"})),
            None,
            422,
            "invalid_price",
        ),
        (
            "zero price",
            "POST",
            "/api/v1/orders",
            order(json!({"limit_price": 0})),
            None,
            422,
            "invalid_price",
        ),
        (
            "negative price",
            "POST",
            "/api/v1/orders",
            order(json!({"limit_price": "-190"})),
            None,
            422,
            "invalid_price",
        ),
        (
            "price outside band",
            "POST",
            "/api/v1/orders",
            order(json!({"limit_price": "300.00"})),
            None,
            422,
            "price_outside_band",
        ),
        (
            "limit without price",
            "POST",
            "/api/v1/orders",
            order(json!({"limit_price": null})),
            None,
            422,
            "missing_field",
        ),
        (
            "market with price",
            "POST",
            "/api/v1/orders",
            order(json!({"type": "market"})),
            None,
            422,
            "invalid_field",
        ),
        (
            "unknown symbol",
            "POST",
            "/api/v1/orders",
            order(json!({"symbol": "NOPE"})),
            None,
            422,
            "unknown_symbol",
        ),
        (
            "stop orders",
            "POST",
            "/api/v1/orders",
            order(json!({"stop_price": "1"})),
            None,
            422,
            "unsupported",
        ),
        (
            "too expensive",
            "POST",
            "/api/v1/orders",
            order(json!({"qty": 1000})),
            None,
            403,
            "insufficient_funds",
        ),
        (
            "naked short",
            "POST",
            "/api/v1/orders",
            order(json!({"side": "sell"})),
            None,
            403,
            "insufficient_shares",
        ),
        (
            "long client id",
            "POST",
            "/api/v1/orders",
            order(json!({"client_order_id": "x".repeat(65)})),
            None,
            422,
            "invalid_client_order_id",
        ),
        (
            "oversize body",
            "POST",
            "/api/v1/orders",
            big.clone(),
            None,
            413,
            "body_too_large",
        ),
        (
            "expired JWT",
            "GET",
            "/api/v1/portfolio",
            vec![],
            Some(expired.as_str()),
            401,
            "token_expired",
        ),
        (
            "forged JWT",
            "GET",
            "/api/v1/portfolio",
            vec![],
            Some(forged.as_str()),
            401,
            "invalid_token",
        ),
        (
            "garbage JWT",
            "GET",
            "/api/v1/portfolio",
            vec![],
            Some("abc.def"),
            401,
            "invalid_token",
        ),
        (
            "unknown order",
            "GET",
            "/api/v1/orders/00000001-0000-4000-8000-000000000099",
            vec![],
            None,
            404,
            "order_not_found",
        ),
        (
            "not a uuid",
            "DELETE",
            "/api/v1/orders/123",
            vec![],
            None,
            404,
            "order_not_found",
        ),
        (
            "bad list status",
            "GET",
            "/api/v1/orders?status=sideways",
            vec![],
            None,
            422,
            "invalid_parameter",
        ),
        (
            "bad list limit",
            "GET",
            "/api/v1/orders?limit=0",
            vec![],
            None,
            422,
            "invalid_parameter",
        ),
        (
            "bad depth levels",
            "GET",
            "/api/v1/market/AAPL/depth?levels=x",
            vec![],
            None,
            422,
            "invalid_parameter",
        ),
        (
            "unknown symbol quote",
            "GET",
            "/api/v1/market/NOPE/quote",
            vec![],
            None,
            404,
            "unknown_symbol",
        ),
        (
            "replace nothing",
            "PATCH",
            "/api/v1/orders/00000001-0000-4000-8000-000000000099",
            b"{}".to_vec(),
            None,
            404,
            "order_not_found",
        ),
        (
            "deposit negative",
            "POST",
            "/api/v1/wallet/deposit",
            b"{\"amount\": -5}".to_vec(),
            None,
            422,
            "invalid_amount",
        ),
        (
            "deposit zero",
            "POST",
            "/api/v1/wallet/deposit",
            b"{\"amount\": \"0\"}".to_vec(),
            None,
            422,
            "invalid_amount",
        ),
        (
            "deposit text",
            "POST",
            "/api/v1/wallet/deposit",
            b"{\"amount\": \"lots\"}".to_vec(),
            None,
            422,
            "invalid_amount",
        ),
        (
            "deposit over limit",
            "POST",
            "/api/v1/wallet/deposit",
            b"{\"amount\": 10000.01}".to_vec(),
            None,
            422,
            "limit_exceeded",
        ),
        (
            "withdraw too much",
            "POST",
            "/api/v1/wallet/withdraw",
            b"{\"amount\": 6000}".to_vec(),
            None,
            422,
            "insufficient_funds",
        ),
        (
            "no such endpoint",
            "GET",
            "/api/v1/nothing",
            vec![],
            None,
            404,
            "not_found",
        ),
        (
            "wrong method",
            "PUT",
            "/api/v1/orders",
            vec![],
            None,
            405,
            "method_not_allowed",
        ),
        (
            "register bad email",
            "POST",
            "/api/v1/auth/register",
            b"{\"email\": \"no-at\", \"password\": \"long enough\", \"name\": \"x\"}".to_vec(),
            None,
            422,
            "invalid_email",
        ),
        (
            "register short password",
            "POST",
            "/api/v1/auth/register",
            b"{\"email\": \"z@example.com\", \"password\": \"short\", \"name\": \"x\"}".to_vec(),
            None,
            422,
            "weak_password",
        ),
        (
            "register taken",
            "POST",
            "/api/v1/auth/register",
            b"{\"email\": \"alice@example.com\", \"password\": \"long enough\", \"name\": \"x\"}"
                .to_vec(),
            None,
            409,
            "email_taken",
        ),
        (
            "register number email",
            "POST",
            "/api/v1/auth/register",
            b"{\"email\": 5, \"password\": \"long enough\", \"name\": \"x\"}".to_vec(),
            None,
            422,
            "invalid_field",
        ),
        (
            "verify wrong passcode",
            "POST",
            "/api/v1/auth/verify",
            b"{\"email\": \"nobody@example.com\", \"passcode\": \"123456\"}".to_vec(),
            None,
            422,
            "invalid_passcode",
        ),
        (
            "login wrong password",
            "POST",
            "/api/v1/auth/login",
            b"{\"email\": \"alice@example.com\", \"password\": \"wrong password\"}".to_vec(),
            None,
            401,
            "invalid_credentials",
        ),
        (
            "refresh garbage",
            "POST",
            "/api/v1/auth/refresh",
            b"{\"refresh_token\": \"nope\"}".to_vec(),
            None,
            401,
            "invalid_refresh_token",
        ),
        (
            "mfa confirm before enrol",
            "POST",
            "/api/v1/auth/mfa/confirm",
            b"{\"code\": \"123456\"}".to_vec(),
            None,
            409,
            "mfa_not_enrolled",
        ),
    ];
    for (name, method, path, body, token, status, code) in cases {
        let client = alice.with_token(token.unwrap_or(&tok));
        let mut extra = vec![];
        let key = format!("bad-{name}");
        if path.starts_with("/api/v1/wallet") {
            extra.push(("Idempotency-Key", key.as_str()));
        }
        let r = client.raw(method, path, &extra, &body);
        assert_eq!(r.status, status, "{name}: {}", r.text);
        assert_eq!(r.code(), code, "{name}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert!(
            r.body["message"].is_string() && r.body["title"].is_string(),
            "{name}: {}",
            r.text
        );
        assert!(r.header("x-request-id").is_some(), "{name}");
    }
    // Nothing changed: same balances, no orders.
    let after = snapshot(&alice);
    assert_eq!(before, after);
    assert_eq!(after.1["orders"], json!([]));
}

#[test]
fn clients_only_see_and_touch_their_own_orders_and_streams() {
    let h = Harness::start("authz");
    let (alice, _) = verified_client(&h, "alice@example.com");
    let (mallory, _) = verified_client(&h, "mallory@example.com");
    assert_eq!(deposit(&alice, "5000").status, 201);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "180", "qty": 1, "time_in_force": "gtc"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let anon = h.client();

    // Another client's token: the order does not exist for them.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"qty": 2}))),
        ("DELETE", None),
    ] {
        let r = mallory.call(method, &format!("/api/v1/orders/{id}"), body);
        assert_eq!(r.status, 404, "{method}: {}", r.text);
        let r = mallory.call(method, &format!("/v2/orders/{id}"), None);
        assert_eq!(r.status, 404, "v2 {method}: {}", r.text);
    }
    assert_eq!(
        mallory.get("/api/v1/orders?status=all").body["orders"],
        json!([])
    );
    let r = mallory.call("DELETE", "/api/v1/orders", None);
    assert_eq!(r.body["cancelled"], json!([]));
    assert_eq!(
        alice.get(&format!("/api/v1/orders/{id}")).body["status"],
        "new"
    );

    // No token: 401 on every private endpoint.
    let private = [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/wallet"),
        ("POST", "/api/v1/wallet/deposit"),
        ("POST", "/api/v1/wallet/withdraw"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("DELETE", "/api/v1/orders"),
        ("GET", "/api/v1/orders/x"),
        ("PATCH", "/api/v1/orders/x"),
        ("DELETE", "/api/v1/orders/x"),
        ("GET", "/api/v1/portfolio"),
        ("GET", "/api/v1/activities"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/mfa/enroll"),
        ("POST", "/api/v1/auth/mfa/confirm"),
        ("POST", "/api/v1/api-keys"),
        ("GET", "/api/v1/api-keys"),
        ("DELETE", "/api/v1/api-keys/x"),
        ("GET", "/v2/account"),
        ("GET", "/v2/orders"),
        ("POST", "/v2/orders"),
        ("DELETE", "/v2/orders"),
        ("GET", "/v2/orders/x"),
        ("GET", "/v2/orders:by_client_order_id?client_order_id=x"),
        ("GET", "/v2/positions"),
        ("GET", "/v2/assets"),
        ("GET", "/v2/clock"),
        ("GET", "/v2/account/activities"),
    ];
    for (method, path) in private {
        let r = anon.call(method, path, Some(json!({})));
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text);
        assert_eq!(r.code(), "unauthenticated", "{method} {path}");
    }
    // The stream refuses a bad token and never shows another's updates.
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": "forged"}));
    assert_eq!(ws.recv().unwrap()["data"]["status"], "unauthorized");
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": mallory.token.clone().unwrap()}));
    ws.recv().unwrap();
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"], "resume_from": 0}));
    assert_eq!(ws.recv().unwrap()["stream"], "listening");
    ws.set_timeout(Duration::from_millis(500));
    assert!(
        ws.recv().is_none(),
        "mallory's stream holds none of alice's updates"
    );
}

#[test]
fn idempotency_keys_replay_refuse_changed_bodies_and_in_flight_duplicates() {
    let h = Harness::start("idem");
    let (alice, _) = verified_client(&h, "alice@example.com");
    let r = alice.post("/api/v1/wallet/deposit", json!({"amount": "100"}));
    assert_eq!((r.status, r.code()), (400, "idempotency_key_required"));

    let first = alice.post_idem("/api/v1/wallet/deposit", "k1", json!({"amount": "100"}));
    assert_eq!(first.status, 201);
    let again = alice.post_idem("/api/v1/wallet/deposit", "k1", json!({"amount": "100"}));
    assert_eq!((again.status, &again.body), (201, &first.body));
    let changed = alice.post_idem("/api/v1/wallet/deposit", "k1", json!({"amount": "200"}));
    assert_eq!(
        (changed.status, changed.code()),
        (422, "idempotency_key_reused")
    );
    let other_path = alice.post_idem("/api/v1/wallet/withdraw", "k1", json!({"amount": "100"}));
    assert_eq!(other_path.status, 422);
    assert_eq!(alice.get("/api/v1/wallet").body["available"], "100.00");

    // Simulated provider failures create no money; the failure replays.
    for (amount, status, code) in [
        ("10", 402, "payment_declined"),
        ("20.00", 402, "bank_insufficient_funds"),
        ("30", 502, "provider_error"),
        ("40", 504, "provider_timeout"),
        ("80", 402, "invalid_bank_account"),
    ] {
        let key = format!("fail-{amount}");
        let r = alice.post_idem("/api/v1/wallet/deposit", &key, json!({"amount": amount}));
        assert_eq!((r.status, r.code()), (status, code), "{amount}: {}", r.text);
        let r = alice.post_idem("/api/v1/wallet/deposit", &key, json!({"amount": amount}));
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "replayed failure {amount}"
        );
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(alice.get("/api/v1/wallet").body["available"], "100.00");

    // The wallet limit.
    let h2 = Harness::start_with("idem-limit", |c| c.wallet.max_wallet = 150 * 10_000);
    let (carol, _) = verified_client(&h2, "carol@example.com");
    assert_eq!(deposit(&carol, "100").status, 201);
    let r = deposit(&carol, "60");
    assert_eq!((r.status, r.code()), (422, "wallet_limit_exceeded"));

    // In flight: 90.00 takes the provider about a second.
    let slow = alice.clone();
    let background = std::thread::spawn(move || {
        slow.post_idem("/api/v1/wallet/deposit", "slow", json!({"amount": "90"}))
    });
    std::thread::sleep(Duration::from_millis(300));
    let r = alice.post_idem("/api/v1/wallet/deposit", "slow", json!({"amount": "90"}));
    assert_eq!((r.status, r.code()), (409, "idempotency_in_flight"));
    assert_eq!(background.join().unwrap().status, 201);
    let r = alice.post_idem("/api/v1/wallet/deposit", "slow", json!({"amount": "90"}));
    assert_eq!(r.status, 201);
    assert_eq!(alice.get("/api/v1/wallet").body["available"], "190.00");

    // Withdrawals follow the same rules.
    let r = alice.post_idem("/api/v1/wallet/withdraw", "w1", json!({"amount": "40"}));
    assert_eq!((r.status, r.code()), (504, "provider_timeout"));
    let r = alice.post_idem("/api/v1/wallet/withdraw", "w2", json!({"amount": "45.5"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = alice.post_idem("/api/v1/wallet/withdraw", "w2", json!({"amount": "45.5"}));
    assert_eq!(r.status, 201);
    assert_eq!(alice.get("/api/v1/wallet").body["available"], "144.50");
    let kinds: Vec<Value> = alice.get("/api/v1/activities?type=CSW").body["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["net_amount"].clone())
        .collect();
    assert_eq!(kinds, [json!("-45.50")]);
}

#[test]
fn login_lockout_refresh_logout_totp_and_api_keys() {
    let h = Harness::start_with("auth", |c| {
        c.lockout_after = 3;
        c.lockout_secs = 60;
        c.resend_interval_secs = 60;
    });
    let anon = h.client();
    let (alice, account) = verified_client(&h, "alice@example.com");
    let login = |password: &str| {
        anon.post(
            "/api/v1/auth/login",
            json!({"email": "alice@example.com", "password": password}),
        )
    };

    // Refresh rotates; the old refresh token then fails.
    let r = login("correct horse battery");
    let refresh = r.body["refresh_token"].as_str().unwrap().to_string();
    let r = anon.post("/api/v1/auth/refresh", json!({"refresh_token": refresh}));
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_string();
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_string();
    let r = anon.post("/api/v1/auth/refresh", json!({"refresh_token": refresh}));
    assert_eq!((r.status, r.code()), (401, "invalid_refresh_token"));
    // Logout revokes the access token and the refresh token.
    let session = anon.with_token(&access);
    assert_eq!(session.get("/api/v1/me").status, 200);
    let r = session.post("/api/v1/auth/logout", json!({"refresh_token": refresh2}));
    assert_eq!(r.status, 204, "{}", r.text);
    let r = session.get("/api/v1/me");
    assert_eq!((r.status, r.code()), (401, "token_revoked"));
    let r = anon.post("/api/v1/auth/refresh", json!({"refresh_token": refresh2}));
    assert_eq!(r.status, 401);

    // API keys: the secret is shown once and works in Alpaca's headers.
    let r = alice.post("/api/v1/api-keys", json!({}));
    assert_eq!(r.status, 201, "{}", r.text);
    let (key, secret) = (
        r.body["key_id"].as_str().unwrap().to_string(),
        r.body["secret"].as_str().unwrap().to_string(),
    );
    let keyed = anon
        .with_header("APCA-API-KEY-ID", &key)
        .with_header("APCA-API-SECRET-KEY", &secret);
    let r = keyed.get("/v2/account");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["account_number"], format!("BX{account:08}"));
    let wrong = anon
        .with_header("APCA-API-KEY-ID", &key)
        .with_header("APCA-API-SECRET-KEY", "nope");
    assert_eq!(wrong.get("/v2/account").code(), "invalid_api_key");
    let listed = alice.get("/api/v1/api-keys").body;
    assert_eq!(listed[0]["key_id"], key.as_str());
    assert!(listed[0].get("secret").is_none());
    assert_eq!(
        alice
            .call("DELETE", &format!("/api/v1/api-keys/{key}"), None)
            .status,
        204
    );
    assert_eq!(keyed.get("/v2/account").status, 401);

    // TOTP: a wrong code at login fails; MFA login needs the code.
    let secret = alice.post("/api/v1/auth/mfa/enroll", json!({})).body["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = base32_decode(&secret).unwrap();
    let r = alice.post("/api/v1/auth/mfa/confirm", json!({"code": "123456"}));
    assert_eq!((r.status, r.code()), (422, "invalid_totp"));
    let r = alice.post(
        "/api/v1/auth/mfa/confirm",
        json!({"code": totp(&secret, now_secs())}),
    );
    assert_eq!(r.status, 200);
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery", "totp": "000000"}),
    );
    assert_eq!((r.status, r.code()), (401, "invalid_totp"));
    let next_code = totp(&secret, now_secs() + 30);
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery", "totp": next_code}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // The same code cannot be used twice.
    let r = anon.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.com", "password": "correct horse battery", "totp": next_code}),
    );
    assert_eq!(r.code(), "invalid_totp");

    // Lockout: after 3 failures in a row (the success above reset the
    // count), even the right password is refused for a while.
    for _ in 0..2 {
        let r = login("wrong password");
        assert_eq!((r.status, r.code()), (401, "invalid_credentials"));
    }
    let r = login("correct horse battery");
    assert_eq!((r.status, r.code()), (423, "account_locked"), "{}", r.text);
    assert!(r.header("retry-after").is_some());

    // Resend is rate limited.
    let r = anon.post(
        "/api/v1/auth/register",
        json!({"email": "dave@example.com", "password": "long enough pw", "name": "Dave"}),
    );
    assert_eq!(r.status, 201);
    let r = anon.post("/api/v1/auth/resend", json!({"email": "dave@example.com"}));
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
}

#[test]
fn per_account_and_per_ip_rate_limits_answer_429_with_headers() {
    let h = Harness::start_with("rate", |c| c.rate_per_account = 5);
    let (alice, _) = verified_client(&h, "alice@example.com");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(alice.get("/api/v1/wallet"));
    }
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(limited.code(), "rate_limited");
    assert_eq!(limited.header("ratelimit-limit"), Some("5"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert!(limited.header("retry-after").is_some());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        alice.get("/api/v1/wallet").status,
        200,
        "the bucket refills"
    );

    let h = Harness::start_with("rate-ip", |c| c.rate_per_ip = 5);
    let anon = h.client();
    let replies: Vec<Reply> = (0..12).map(|_| anon.get("/api/v1/symbols")).collect();
    assert!(replies.iter().any(|r| r.status == 429));
    assert!(replies[0].header("ratelimit-limit").is_some());
}

#[test]
fn orders_replace_cancel_cancel_all_list_and_market_data() {
    let h = Harness::start("orders");
    let (alice, _) = verified_client(&h, "alice@example.com");
    assert_eq!(deposit(&alice, "9000").status, 201);
    let place = |price: &str, qty: u64, cid: &str| {
        alice.post(
            "/api/v1/orders",
            json!({"symbol": "AAPL", "side": "buy", "limit_price": price, "qty": qty, "time_in_force": "gtc", "client_order_id": cid}),
        )
    };
    let mut quotes = Ws::connect(h.addr, "/api/v1/ws", &[]);
    quotes.send(&json!({"action": "auth", "token": alice.token.clone().unwrap()}));
    quotes.recv().unwrap();
    quotes.send(&json!({"action": "subscribe", "streams": ["quotes"]}));
    assert_eq!(quotes.recv().unwrap()["data"]["streams"], json!(["quotes"]));
    let a = place("180.00", 10, "a");
    let quote = quotes.recv_until(|m| m["stream"] == "quotes");
    assert_eq!(quote["data"]["symbol"], "AAPL");
    assert_eq!(quote["data"]["bid_price"], "180.00");
    assert_eq!(quote["data"]["bid_size"], "10");
    assert_eq!(a.status, 201, "{}", a.text);
    let r = place("180.00", 1, "a");
    assert_eq!((r.status, r.code()), (422, "duplicate_client_order_id"));
    let b = place("181.00", 5, "b");
    let c = place("182.00", 5, "c");
    let (a_id, b_id, c_id) = (
        a.body["id"].as_str().unwrap().to_string(),
        b.body["id"].as_str().unwrap().to_string(),
        c.body["id"].as_str().unwrap().to_string(),
    );
    let depth = h.client().get("/api/v1/market/AAPL/depth?levels=2").body;
    assert_eq!(
        depth["bids"][0],
        json!({"price": "182.00", "qty": "5", "orders": 1})
    );
    assert_eq!(depth["bids"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.client().get("/api/v1/market/AAPL/quote").body["bid_price"],
        "182.00"
    );

    // Replace: lower quantity keeps the order; a price change too.
    let r = alice.call(
        "PATCH",
        &format!("/api/v1/orders/{a_id}"),
        Some(json!({"qty": "6", "limit_price": 179.5})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["qty"].as_str(), r.body["limit_price"].as_str()),
        (Some("6"), Some("179.50"))
    );
    let r = alice.call(
        "PATCH",
        &format!("/api/v1/orders/{a_id}"),
        Some(json!({"qty": 100000})),
    );
    assert_eq!(
        (r.status, r.code()),
        (403, "insufficient_funds"),
        "replace re-reserves: {}",
        r.text
    );
    let r = alice.call("PATCH", &format!("/api/v1/orders/{a_id}"), Some(json!({})));
    assert_eq!((r.status, r.code()), (422, "missing_field"));

    // Cancel one; cancelling again is refused.
    let r = alice.call("DELETE", &format!("/api/v1/orders/{b_id}"), None);
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("canceled"))
    );
    let r = alice.call("DELETE", &format!("/api/v1/orders/{b_id}"), None);
    assert_eq!((r.status, r.code()), (422, "order_not_open"));

    // Lists: open, closed, filters, pagination.
    let open = alice.get("/api/v1/orders").body;
    let ids: Vec<&str> = open["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c_id.as_str(), a_id.as_str()]);
    let closed = alice.get("/api/v1/orders?status=closed").body;
    assert_eq!(closed["orders"][0]["id"], b_id.as_str());
    let page = alice.get("/api/v1/orders?status=all&limit=2").body;
    let token = page["next_page_token"].as_str().unwrap().to_string();
    let next = alice
        .get(&format!(
            "/api/v1/orders?status=all&limit=2&page_token={token}"
        ))
        .body;
    assert_eq!(next["orders"][0]["id"], a_id.as_str());
    assert_eq!(
        alice.get("/api/v1/orders?side=sell").body["orders"],
        json!([])
    );
    assert_eq!(
        alice.get("/api/v1/orders?symbol=MSFT").body["orders"],
        json!([])
    );

    // Cancel all releases every hold.
    let r = alice.call("DELETE", "/api/v1/orders", None);
    assert_eq!(
        r.body["cancelled"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    let wallet = alice.get("/api/v1/wallet").body;
    assert_eq!(
        (wallet["available"].as_str(), wallet["reserved"].as_str()),
        (Some("9000.00"), Some("0.00"))
    );
    let symbols = h.client().get("/api/v1/symbols").body;
    assert_eq!(symbols[1]["symbol"], "MSFT");
    assert_eq!(symbols[1]["lot_size"], "10");
    assert_eq!(symbols[0]["tick_size"], "0.01");
}

#[test]
fn health_ready_request_ids_and_openapi() {
    let h = Harness::start("health");
    let anon = h.client();
    assert_eq!(anon.get("/health").status, 200);
    let r = anon.get("/ready");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sqlite"], true);
    let r = anon
        .with_header("X-Request-ID", "abc-123")
        .get("/api/v1/symbols");
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = anon.get("/api/v1/symbols");
    assert_eq!(
        r.header("x-request-id").map(str::len),
        Some(16),
        "generated"
    );

    // The request id follows the request into the engine command: a
    // generated id is the journaled command's tag.
    let (client, _) = verified_client(&h, "rid@example.com");
    assert_eq!(deposit(&client, "1000").status, 201);
    let placed = client.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "type": "limit",
               "time_in_force": "day", "limit_price": "189.00", "qty": 1}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let order_tag = u64::from_str_radix(placed.header("x-request-id").unwrap(), 16).unwrap();
    let cancelled = client.call(
        "DELETE",
        &format!("/api/v1/orders/{}", placed.body["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let cancel_tag = u64::from_str_radix(cancelled.header("x-request-id").unwrap(), 16).unwrap();
    let mut engine = brokerx_engine::Engine::new(brokerx_engine::EngineConfig::default());
    let mut journaled = Vec::new();
    brokerx_engine::pipeline::replay_journal(
        &h.dir,
        &mut engine,
        &mut brokerx_engine::state::StableHasher::default(),
        &mut 0,
        None,
        |command, _| match command.command {
            brokerx_engine::Command::NewOrder { tag, .. } => journaled.push(("new", tag)),
            brokerx_engine::Command::Cancel { tag, .. } => journaled.push(("cancel", tag)),
            _ => {}
        },
    )
    .unwrap();
    assert!(journaled.contains(&("new", order_tag)), "{journaled:?}");
    assert!(journaled.contains(&("cancel", cancel_tag)), "{journaled:?}");

    // OpenAPI 3, generated from the handlers, and Swagger UI (vendored).
    let r = anon.get("/api/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(
        r.body["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        r.text
    );
    for path in [
        "/orders",
        "/orders/{id}",
        "/wallet/deposit",
        "/auth/login",
        "/market/{symbol}/depth",
    ] {
        assert!(r.body["paths"][path].is_object(), "{path} documented");
    }
    assert!(r.body["components"]["schemas"]["Problem"].is_object());
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    let r = anon.get("/api/v1/docs/");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("swagger-ui"), "{}", r.text);
    let r = anon.get("/api/v1/docs/swagger-ui.css");
    assert_eq!(r.status, 200, "vendored assets are served");

    // Not ready once the engine has stopped; orders get 503, not a hang.
    let (alice, _) = verified_client(&h, "alice@example.com");
    h.pipeline.shutdown();
    let r = anon.get("/ready");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["engine"], false);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "180", "qty": 1}),
    );
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{}", r.text);
    assert_eq!(anon.get("/health").status, 200, "alive while not ready");
}

/// A tiny SMTP sink on loopback: records the DATA of one message.
fn smtp_sink() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut data = String::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    writer.write_all(b"250 queued\r\n").unwrap();
                    let _ = tx.send(data.clone());
                } else {
                    data.push_str(&line);
                }
                continue;
            }
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                writer.write_all(b"250-sink\r\n250 8BITMIME\r\n").unwrap();
            } else if upper.starts_with("DATA") {
                in_data = true;
                writer.write_all(b"354 go ahead\r\n").unwrap();
            } else if upper.starts_with("QUIT") {
                writer.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                writer.write_all(b"250 ok\r\n").unwrap();
            }
        }
    });
    (port, rx)
}

#[test]
fn verification_mail_goes_over_smtp_when_configured() {
    let (port, received) = smtp_sink();
    let h = Harness::start_with("smtp", |c| {
        c.smtp = Some(brokerx_gateway_rest::SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            from: "BrokerX <no-reply@brokerx.test>".into(),
        });
        c.dev_mailbox = false;
    });
    let anon = h.client();
    let r = anon.post(
        "/api/v1/auth/register",
        json!({"email": "erin@example.com", "password": "long enough pw", "name": "Erin"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let message = received
        .recv_timeout(Duration::from_secs(15))
        .expect("the SMTP sink received the message");
    assert!(message.contains("To: erin@example.com"), "{message}");
    let code: String = message
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6 && w.bytes().take(6).all(|b| b.is_ascii_digit())
        })
        .expect("a passcode")
        .trim_end_matches('.')
        .to_string();
    let r = anon.post(
        "/api/v1/auth/verify",
        json!({"email": "erin@example.com", "passcode": code}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // The dev mailbox is off when SMTP is configured.
    assert_eq!(
        anon.get("/api/v1/dev/mailbox?email=erin@example.com")
            .status,
        404
    );
}

#[test]
fn bad_input_on_auth_wallet_market_and_alpaca_endpoints() {
    let h = Harness::start("bad-input-2");
    let (alice, _) = verified_client(&h, "alice@example.com");
    assert_eq!(deposit(&alice, "1000").status, 201);
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "180", "qty": 1, "time_in_force": "gtc"}),
    );
    let id = r.body["id"].as_str().unwrap().to_string();
    let before = snapshot(&alice);
    let anon = h.client();
    let mfa_token = jwt_sign(
        b"test-secret",
        &json!({"sub": 1, "exp": now_secs() + 100, "iat": now_secs(), "jti": "m", "typ": "mfa"}),
    );
    let mfa_bearer = anon.with_token(&mfa_token);
    let basic = anon.with_header("Authorization", "Basic YTpi");
    let cases: Vec<(&str, &Client, &str, String, Value, u16, &str)> = vec![
        (
            "register no body",
            &anon,
            "POST",
            "/api/v1/auth/register".into(),
            json!(null),
            422,
            "missing_field",
        ),
        (
            "register no name",
            &anon,
            "POST",
            "/api/v1/auth/register".into(),
            json!({"email": "q@example.com", "password": "long enough"}),
            422,
            "missing_field",
        ),
        (
            "verify no passcode",
            &anon,
            "POST",
            "/api/v1/auth/verify".into(),
            json!({"email": "alice@example.com"}),
            422,
            "missing_field",
        ),
        (
            "verify already",
            &anon,
            "POST",
            "/api/v1/auth/verify".into(),
            json!({"email": "alice@example.com", "passcode": "000000"}),
            409,
            "already_verified",
        ),
        (
            "resend no email",
            &anon,
            "POST",
            "/api/v1/auth/resend".into(),
            json!({}),
            422,
            "missing_field",
        ),
        (
            "login no password",
            &anon,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"email": "alice@example.com"}),
            422,
            "missing_field",
        ),
        (
            "login unknown",
            &anon,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"email": "who@example.com", "password": "whatever1"}),
            401,
            "invalid_credentials",
        ),
        (
            "login totp number",
            &anon,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"email": "alice@example.com", "password": "x", "totp": 5}),
            422,
            "invalid_field",
        ),
        (
            "mfa login forged",
            &anon,
            "POST",
            "/api/v1/auth/login/mfa".into(),
            json!({"mfa_token": "a.b.c", "code": "123456"}),
            401,
            "invalid_token",
        ),
        (
            "mfa login access token",
            &anon,
            "POST",
            "/api/v1/auth/login/mfa".into(),
            json!({"mfa_token": alice.token.clone().unwrap(), "code": "123456"}),
            401,
            "invalid_token",
        ),
        (
            "mfa login wrong code",
            &anon,
            "POST",
            "/api/v1/auth/login/mfa".into(),
            json!({"mfa_token": mfa_token, "code": "12345x"}),
            401,
            "invalid_totp",
        ),
        (
            "refresh missing",
            &anon,
            "POST",
            "/api/v1/auth/refresh".into(),
            json!({}),
            422,
            "missing_field",
        ),
        (
            "mfa token as bearer",
            &mfa_bearer,
            "GET",
            "/api/v1/me".into(),
            json!(null),
            401,
            "invalid_token",
        ),
        (
            "basic auth",
            &basic,
            "GET",
            "/api/v1/me".into(),
            json!(null),
            401,
            "invalid_token",
        ),
        (
            "revoke unknown key",
            &alice,
            "DELETE",
            "/api/v1/api-keys/BKNOPE".into(),
            json!(null),
            404,
            "not_found",
        ),
        (
            "mailbox no email",
            &anon,
            "GET",
            "/api/v1/dev/mailbox".into(),
            json!(null),
            422,
            "missing_field",
        ),
        (
            "trades bad limit",
            &anon,
            "GET",
            "/api/v1/market/AAPL/trades?limit=1000".into(),
            json!(null),
            422,
            "invalid_parameter",
        ),
        (
            "depth unknown",
            &anon,
            "GET",
            "/api/v1/market/ZZZ/depth".into(),
            json!(null),
            404,
            "unknown_symbol",
        ),
        (
            "activities bad token",
            &alice,
            "GET",
            "/api/v1/activities?page_token=x".into(),
            json!(null),
            422,
            "invalid_parameter",
        ),
        (
            "list unknown symbol",
            &alice,
            "GET",
            "/api/v1/orders?symbol=ZZZ".into(),
            json!(null),
            422,
            "unknown_symbol",
        ),
        (
            "list bad side",
            &alice,
            "GET",
            "/api/v1/orders?side=up".into(),
            json!(null),
            422,
            "invalid_parameter",
        ),
        (
            "list bad direction",
            &alice,
            "GET",
            "/api/v1/orders?direction=up".into(),
            json!(null),
            422,
            "invalid_parameter",
        ),
        (
            "replace zero qty",
            &alice,
            "PATCH",
            format!("/api/v1/orders/{id}"),
            json!({"qty": 0}),
            422,
            "invalid_quantity",
        ),
        (
            "replace off tick",
            &alice,
            "PATCH",
            format!("/api/v1/orders/{id}"),
            json!({"limit_price": "180.001"}),
            422,
            "invalid_price",
        ),
        (
            "replace outside band",
            &alice,
            "PATCH",
            format!("/api/v1/orders/{id}"),
            json!({"limit_price": "1.00"}),
            422,
            "price_outside_band",
        ),
        (
            "replace bad json",
            &alice,
            "PATCH",
            format!("/api/v1/orders/{id}"),
            json!("text"),
            400,
            "invalid_json",
        ),
        (
            "v2 order no qty",
            &alice,
            "POST",
            "/v2/orders".into(),
            json!({"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day"}),
            422,
            "missing_field",
        ),
        (
            "v2 notional",
            &alice,
            "POST",
            "/v2/orders".into(),
            json!({"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day", "notional": 10}),
            422,
            "unsupported",
        ),
        (
            "v2 by client id missing",
            &alice,
            "GET",
            "/v2/orders:by_client_order_id".into(),
            json!(null),
            422,
            "missing_field",
        ),
        (
            "v2 by client id unknown",
            &alice,
            "GET",
            "/v2/orders:by_client_order_id?client_order_id=zz".into(),
            json!(null),
            404,
            "order_not_found",
        ),
        (
            "v2 position unknown",
            &alice,
            "GET",
            "/v2/positions/MSFT".into(),
            json!(null),
            404,
            "position_not_found",
        ),
        (
            "v2 asset unknown",
            &alice,
            "GET",
            "/v2/assets/ZZZ".into(),
            json!(null),
            404,
            "asset_not_found",
        ),
        (
            "v2 activities page size",
            &alice,
            "GET",
            "/v2/account/activities?page_size=0".into(),
            json!(null),
            422,
            "invalid_parameter",
        ),
        (
            "ws without upgrade",
            &alice,
            "GET",
            "/api/v1/ws".into(),
            json!(null),
            400,
            "bad_request",
        ),
    ];
    for (name, client, method, path, body, status, code) in cases {
        let r = if body.is_null() {
            client.call(method, &path, None)
        } else {
            client.call(method, &path, Some(body))
        };
        assert_eq!((r.status, r.code()), (status, code), "{name}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
    }
    assert_eq!(snapshot(&alice), before, "nothing changed");

    // WebSocket protocol errors get an error message, not a crash.
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!("not an object"));
    assert_eq!(ws.recv().unwrap()["data"]["code"], "invalid_action");
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"]}));
    assert_eq!(ws.recv().unwrap()["data"]["code"], "unauthenticated");
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "dance"}));
    assert_eq!(ws.recv().unwrap()["data"]["code"], "invalid_action");
    assert_eq!(h.client().get("/health").status, 200);
}

#[test]
fn hostile_bytes_on_the_socket_never_take_the_server_down() {
    let h = Harness::start("hostile");
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"POST /api/v1/orders HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        b"POST /api/v1/orders HTTP/1.1\r\nContent-Length: 10\r\n\r\n{".to_vec(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(200_000)).into_bytes(),
        b"GET /api/v1/orders?limit=%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /api/v1/market/%ZZ/quote HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ];
    for bytes in garbage {
        if let Ok(mut stream) = std::net::TcpStream::connect(h.addr) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
        }
        assert_eq!(h.client().get("/health").status, 200);
    }
    // Authentication over the WebSocket with an API key works too.
    let (alice, _) = verified_client(&h, "alice@example.com");
    let r = alice.post("/api/v1/api-keys", json!({}));
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "key_id": r.body["key_id"], "secret_key": r.body["secret"]}));
    assert_eq!(ws.recv().unwrap()["data"]["status"], "authorized");
}

#[test]
fn the_stream_carries_rejected_and_expired_updates() {
    let h = Harness::start("stream-kinds");
    let (alice, _) = verified_client(&h, "alice@example.com");
    assert_eq!(deposit(&alice, "1000").status, 201);
    let mut ws = Ws::connect(h.addr, "/api/v1/ws", &[]);
    ws.send(&json!({"action": "auth", "token": alice.token.clone().unwrap()}));
    ws.recv().unwrap();
    ws.send(&json!({"action": "subscribe", "streams": ["trade_updates"]}));
    ws.recv().unwrap();
    // Rejected by risk (not enough cash): a `rejected` update.
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "190", "qty": 100, "client_order_id": "too-big"}),
    );
    assert_eq!(r.code(), "insufficient_funds");
    let m = ws.recv().unwrap();
    assert_eq!(m["data"]["event"], "rejected", "{m}");
    assert_eq!(m["data"]["order"]["client_order_id"], "too-big");
    assert_eq!(m["data"]["order"]["status"], "rejected");
    assert_eq!(m["data"]["order"]["reject_reason"], "insufficient funds");
    // The client order id of a rejected order can be used again.
    let r = alice.post(
        "/api/v1/orders",
        json!({"symbol": "AAPL", "side": "buy", "limit_price": "180", "qty": 1, "time_in_force": "day", "client_order_id": "too-big"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(ws.recv().unwrap()["data"]["event"], "new");
    // End of day expires the DAY order: an `expired` update; hold released.
    h.engine(&[brokerx_engine::Command::EndOfDay]);
    let m = ws.recv().unwrap();
    assert_eq!(m["data"]["event"], "expired", "{m}");
    assert_eq!(m["data"]["order"]["status"], "expired");
    let wallet = alice.get("/api/v1/wallet").body;
    assert_eq!(wallet["reserved"], "0.00");
    assert_eq!(wallet["available"], "1000.00");
}
