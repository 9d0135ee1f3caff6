//! The REST gateway's read model across `kill -9` of `brokerx serve`.
//! Each round a REST client rests limit buys (each acknowledged with 201),
//! a configured account sells into them over the test port, the client
//! rests one more bid below, and the server is killed the moment that bid
//! is acknowledged: the gateway's SQLite writes for the fills and the bid
//! may not have happened yet. After every restart each acknowledged order
//! must be there with its client order id and with what the engine did to
//! it (filled, not "closed while the gateway was down"; the bid resting,
//! its client order id still refused to a retry), the account's fill
//! activities must count every fill once, and the position must equal the
//! filled quantity. Bounded: 5 kills
//! (`BROKERX_REST_CRASH_ROUNDS` changes it), loopback only.
//!
//! Also: a deposit retried with its Idempotency-Key after a crash lost its
//! answer moves money once.

mod common;

use common::{http, rest_user, start, temp_dir, terminate, test_port};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[server]
data_dir = "unused"
durability = "fsync"

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
shares = { ACME = 1000000 }
"#;

/// Resting buys per round.
const BUYS: usize = 4;

fn fill_activities(http_addr: &str, token: &str) -> Vec<Value> {
    let (status, body) = http(
        http_addr,
        "GET",
        "/api/v1/activities?type=FILL&limit=500",
        Some(token),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["activities"].as_array().cloned().unwrap_or_default()
}

fn get_order(http_addr: &str, token: &str, id: &str, after: &str) -> Value {
    let (status, order) = http(
        http_addr,
        "GET",
        &format!("/api/v1/orders/{id}"),
        Some(token),
        &[],
        None,
    );
    assert_eq!(
        status, 200,
        "{after}: acknowledged order {id} is gone: {order}"
    );
    order
}

fn post_buy(http_addr: &str, token: &str, client_order_id: &str, price: &str) -> (u16, Value) {
    http(
        http_addr,
        "POST",
        "/api/v1/orders",
        Some(token),
        &[],
        Some(json!({
            "symbol": "ACME", "side": "buy", "type": "limit", "time_in_force": "gtc",
            "qty": "1", "limit_price": price, "client_order_id": client_order_id
        })),
    )
}

/// Every acknowledged order is there with its client order id; the filled
/// ones are filled, once, in the orders, the activities and the position;
/// the resting ones rest, and their client order ids stay taken.
fn check(
    http_addr: &str,
    token: &str,
    acknowledged: &[(String, String)],
    resting: &[(String, String)],
    after: &str,
) {
    for (id, client_order_id) in resting {
        let order = get_order(http_addr, token, id, after);
        assert_eq!(
            (
                &order["status"],
                &order["filled_qty"],
                &order["client_order_id"]
            ),
            (&json!("new"), &json!("0"), &json!(client_order_id)),
            "{after}: resting order {id}: {order}"
        );
        let (status, body) = post_buy(http_addr, token, client_order_id, "99.00");
        assert_eq!(
            (status, &body["code"]),
            (422, &json!("duplicate_client_order_id")),
            "{after}: a retry with the client order id of {id} must be refused"
        );
    }
    for (id, client_order_id) in acknowledged {
        let order = get_order(http_addr, token, id, after);
        assert_eq!(
            (
                &order["status"],
                &order["filled_qty"],
                &order["client_order_id"]
            ),
            (&json!("filled"), &json!("1"), &json!(client_order_id)),
            "{after}: order {id} does not say what the engine did: {order}"
        );
    }
    let fills = fill_activities(http_addr, token);
    assert_eq!(
        fills.len(),
        acknowledged.len(),
        "{after}: one fill activity per filled order: {fills:?}"
    );
    let (status, portfolio) = http(
        http_addr,
        "GET",
        "/api/v1/portfolio",
        Some(token),
        &[],
        None,
    );
    assert_eq!(status, 200, "{portfolio}");
    let held: u64 = portfolio["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["qty"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(held, acknowledged.len() as u64, "{after}: {portfolio}");
}

#[test]
fn rest_read_model_survives_kill_9() {
    let rounds: usize = std::env::var("BROKERX_REST_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = temp_dir("rest-crash");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut token = None;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut resting: Vec<(String, String)> = Vec::new();
    for round in 0..rounds {
        let mut server = start(&dir, &config);
        let http_addr = server.ports.get("http").expect("http port").clone();
        let token = token
            .get_or_insert_with(|| rest_user(&http_addr, "dana@example.com", "10000").0)
            .clone();
        check(
            &http_addr,
            &token,
            &acknowledged,
            &resting,
            &format!("restart {round}"),
        );
        for k in 0..BUYS {
            let client_order_id = format!("r{round}-buy{k}");
            let (status, order) = post_buy(&http_addr, &token, &client_order_id, "100.00");
            assert_eq!(status, 201, "{order}");
            assert_eq!(order["status"], "new", "{order}");
            acknowledged.push((order["id"].as_str().unwrap().to_string(), client_order_id));
        }
        let reply = test_port(
            &server.address,
            &format!("NEW 1 0 SELL LIMIT GTC 1000000 {BUYS}"),
        );
        assert_eq!(
            reply.matches("Trade").count(),
            BUYS,
            "the sell fills every resting buy: {reply}"
        );
        // A bid below the sell rests; the server dies the moment it is
        // acknowledged, likely before the store has it.
        let client_order_id = format!("r{round}-rest");
        let (status, order) = post_buy(&http_addr, &token, &client_order_id, "99.00");
        assert_eq!(status, 201, "{order}");
        resting.push((order["id"].as_str().unwrap().to_string(), client_order_id));
        server.child.kill().unwrap(); // SIGKILL, at once
        server.child.wait().unwrap();
    }
    let server = start(&dir, &config);
    let http_addr = server.ports.get("http").unwrap().clone();
    let token = token.unwrap();
    check(
        &http_addr,
        &token,
        &acknowledged,
        &resting,
        "the last restart",
    );
    terminate(server);
}

fn deposit(http_addr: &str, token: &str, key: &str, amount: &str) -> (u16, Value) {
    http(
        http_addr,
        "POST",
        "/api/v1/wallet/deposit",
        Some(token),
        &[("Idempotency-Key", key)],
        Some(json!({ "amount": amount })),
    )
}

fn available(http_addr: &str, token: &str) -> String {
    let (status, wallet) = http(http_addr, "GET", "/api/v1/wallet", Some(token), &[], None);
    assert_eq!(status, 200, "{wallet}");
    wallet["available"]
        .as_str()
        .unwrap_or_else(|| panic!("{wallet}"))
        .to_string()
}

/// Puts an idempotency record back in the state a crash between the
/// engine's commit and the record's completion leaves it in: pending, from
/// two minutes ago, optionally under another request's tag.
fn make_pending(dir: &std::path::Path, key: &str, tag: Option<i64>) {
    let db = rusqlite::Connection::open(dir.join("rest").join("rest.sqlite")).unwrap();
    let changed = db
        .execute(
            "UPDATE idempotency SET state = 'pending', status = 0, response = NULL,
             created_at = created_at - 120, tag = COALESCE(?2, tag) WHERE key = ?1",
            rusqlite::params![key, tag],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// A deposit whose answer was lost in a crash is not made twice when the
/// client retries it with the same Idempotency-Key: the retry gets the
/// first answer. A record whose command never reached the engine is taken
/// over and carried out.
#[test]
fn a_deposit_retried_after_a_crash_moves_money_once() {
    let root = temp_dir("rest-crash-deposit");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut server = start(&dir, &config);
    let http_addr = server.ports.get("http").unwrap().clone();
    let (token, _) = rest_user(&http_addr, "erin@example.com", "100");
    let (status, first) = deposit(&http_addr, &token, "pay-1", "250");
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["available"], "350.00");
    let (status, second) = deposit(&http_addr, &token, "pay-2", "45");
    assert_eq!(status, 201, "{second}");
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    // pay-1: applied by the engine, its answer lost. pay-2: as if its
    // command had never reached the engine (a tag the journal lacks).
    make_pending(&dir, "pay-1", None);
    make_pending(&dir, "pay-2", Some(7));
    let server = start(&dir, &config);
    let http_addr = server.ports.get("http").unwrap().clone();
    assert_eq!(available(&http_addr, &token), "395.00");
    let (status, retried) = deposit(&http_addr, &token, "pay-1", "250");
    assert_eq!(
        (status, &retried),
        (201, &first),
        "the retry gets the first answer"
    );
    assert_eq!(available(&http_addr, &token), "395.00", "no second deposit");
    let (status, again) = deposit(&http_addr, &token, "pay-1", "250");
    assert_eq!((status, &again), (201, &first), "and keeps getting it");
    let (status, redone) = deposit(&http_addr, &token, "pay-2", "45");
    assert_eq!(status, 201, "{redone}");
    assert_ne!(redone["id"], second["id"], "carried out anew");
    assert_eq!(available(&http_addr, &token), "440.00");
    terminate(server);
}
