//! `brokerx serve` with its HTTP listener (`http = 0` picks a free port):
//! the listener line comes before `brokerx ready`; a client registers,
//! reads its passcode from the dev mailbox, verifies, deposits and trades
//! against a configured account's resting OUCH-less order placed over the
//! line test port; after a restart the gateway's store and the engine's
//! balances agree.

mod common;

use common::{start, temp_dir, terminate};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn test_port(address: &str, line: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    let mut buffer = [0u8; 4096];
    while !reply.contains("END seq=") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "test port closed: {reply}");
        reply.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    reply
}

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

    let (status, _) = http(
        &http_addr,
        "POST",
        "/api/v1/auth/register",
        None,
        &[],
        Some(json!({"email": "carol@example.com", "password": "long enough pw", "name": "Carol"})),
    );
    assert_eq!(status, 201);
    let (_, mail) = http(
        &http_addr,
        "GET",
        "/api/v1/dev/mailbox?email=carol@example.com",
        None,
        &[],
        None,
    );
    let text = mail["messages"][0]["body"].as_str().unwrap().to_string();
    let code: String = text
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6 && w.bytes().take(6).all(|b| b.is_ascii_digit())
        })
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    let (status, body) = http(
        &http_addr,
        "POST",
        "/api/v1/auth/verify",
        None,
        &[],
        Some(json!({"email": "carol@example.com", "passcode": code})),
    );
    assert_eq!(status, 200, "{body}");
    let account = body["account_id"].as_u64().unwrap();
    assert!(account > 1, "REST accounts start above the configured ones");
    let (_, body) = http(
        &http_addr,
        "POST",
        "/api/v1/auth/login",
        None,
        &[],
        Some(json!({"email": "carol@example.com", "password": "long enough pw"})),
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = http(
        &http_addr,
        "POST",
        "/api/v1/wallet/deposit",
        Some(&token),
        &[("Idempotency-Key", "d1")],
        Some(json!({"amount": "1000"})),
    );
    assert_eq!(status, 201, "{body}");

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
