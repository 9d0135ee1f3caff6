//! `brokerx serve` with its HTTP listener (`http = 0` picks a free port):
//! the listener line comes before `brokerx ready`; a client registers,
//! reads its passcode from the dev mailbox, verifies, deposits and trades
//! against a configured account's resting OUCH-less order placed over the
//! line test port; after a restart the gateway's store and the engine's
//! balances agree.

mod common;

use common::{http, rest_user, start, temp_dir, terminate, test_port};
use serde_json::json;

const CONFIG: &str = r#"
[server]
data_dir = "unused"
durability = "none"

[ports]
test = 0
http = 0

[[symbols]]
id = 0
name = "ACME"
tick = 100
lot = 1
reference = 1000000
band_bps = 1000

[[accounts]]
id = 1
name = "seller"
cash = 1000000000000
shares = { ACME = 10000 }
"#;

#[test]
fn serve_exposes_rest_and_keeps_its_store_across_a_restart() {
    let dir = temp_dir("rest-serve");
    let config = dir.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start(&dir, &config);
    let http_addr = server
        .ports
        .get("http")
        .expect("http listener line before ready")
        .clone();
    assert!(http_addr.starts_with("127.0.0.1:"), "{http_addr}");

    let (status, body) = http(&http_addr, "GET", "/health", None, &[], None);
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body) = http(&http_addr, "GET", "/ready", None, &[], None);
    assert_eq!(status, 200, "{body}");

    let (token, _account) = rest_user(&http_addr, "carol@example.com", "1000");

    // The configured account sells 5 ACME at 100.00 over the test port.
    let reply = test_port(&server.address, "NEW 1 0 SELL LIMIT GTC 1000000 5");
    assert!(reply.contains("OrderAccepted"), "{reply}");
    let (status, body) = http(
        &http_addr,
        "POST",
        "/api/v1/orders",
        Some(&token),
        &[("X-Request-ID", "req-42")],
        Some(
            json!({"symbol": "ACME", "side": "buy", "type": "market", "time_in_force": "ioc", "qty": "5"}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "filled");
    assert_eq!(body["filled_avg_price"], "100.00");
    let order_id = body["id"].as_str().unwrap().to_string();

    let out = terminate(server);
    assert!(
        out.iter().any(|l| l.starts_with("brokerx stopped")),
        "{out:?}"
    );

    // Restart: the order history and the balances come back.
    let server = start(&dir, &config);
    let http_addr = server.ports.get("http").unwrap().clone();
    let (status, body) = http(
        &http_addr,
        "GET",
        &format!("/api/v1/orders/{order_id}"),
        Some(&token),
        &[],
        None,
    );
    assert_eq!(
        status, 200,
        "the JWT key and the store survive a restart: {body}"
    );
    assert_eq!(body["status"], "filled");
    let (_, body) = http(
        &http_addr,
        "GET",
        "/api/v1/portfolio",
        Some(&token),
        &[],
        None,
    );
    assert_eq!(body["cash"]["available"], "500.00", "{body}");
    assert_eq!(body["positions"][0]["qty"], "5");
    terminate(server);
}
