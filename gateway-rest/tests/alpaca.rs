//! The real alpaca-py SDK (from PyPI) against the Alpaca-compatible
//! surface: places, lists, replaces and cancels orders, reads the account
//! and positions, and receives a fill on `/stream`. The venv is made by
//! `gateway-rest/tests/alpaca/setup.sh` (CI runs it); without it the test
//! says so and passes, unless BROKERX_REQUIRE_ALPACA=1 (as in CI).

mod common;

use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn venv_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/alpaca-venv/bin/python")
}

#[test]
fn alpaca_py_sdk_trades_through_the_v2_surface() {
    let python = venv_python();
    if !python.exists() {
        assert!(
            std::env::var("BROKERX_REQUIRE_ALPACA").ok().as_deref() != Some("1"),
            "alpaca-py venv missing at {}: run gateway-rest/tests/alpaca/setup.sh",
            python.display()
        );
        eprintln!("SKIPPED: no alpaca-py venv (run gateway-rest/tests/alpaca/setup.sh)");
        return;
    }
    let h = Harness::start("alpaca");
    let (buyer, _) = verified_client(&h, "buyer@example.com");
    let (seller, seller_account) = verified_client(&h, "seller@example.com");
    assert_eq!(deposit(&buyer, "5000").status, 201);
    h.give_shares(seller_account, 0, 100);
    let key = |client: &Client| {
        let r = client.post("/api/v1/api-keys", json!({}));
        assert_eq!(r.status, 201, "{}", r.text);
        (
            r.body["key_id"].as_str().unwrap().to_string(),
            r.body["secret"].as_str().unwrap().to_string(),
        )
    };
    let (buyer_key, buyer_secret) = key(&buyer);
    let (seller_key, seller_secret) = key(&seller);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alpaca/alpaca_sdk_test.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("BROKERX_URL", format!("http://{}", h.addr))
        .env("BUYER_KEY", buyer_key)
        .env("BUYER_SECRET", buyer_secret)
        .env("SELLER_KEY", seller_key)
        .env("SELLER_SECRET", seller_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the alpaca-py script");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the alpaca-py script did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ALPACA-SDK OK"),
        "alpaca-py script failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}
