//! `brokerx admin` against a running `brokerx serve`: every operator action
//! is a journaled command with a visible effect on trading, a rejected
//! action exits 1 with the reject code, bad usage exits 2, an unreachable
//! server exits 3.

mod common;

use common::{run, start, temp_dir, terminate, BIN};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;

const CONFIG: &str = r#"
[server]
data_dir = "unused"

[ports]
test = 0

[[symbols]]
id = 0
name = "TEST"
tick = 1
lot = 1
reference = 1000
band_bps = 2000

[[accounts]]
id = 1
name = "a"
cash = 1000000000
shares = { TEST = 1000 }
"#;

/// Runs `brokerx admin --config CONFIG --addr ADDR ARGS...`: exit code,
/// stdout, stderr.
fn admin(config: &std::path::Path, addr: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("admin")
        .arg("--config")
        .arg(config)
        .args(["--addr", addr])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Sends one test-port line and returns its EVT lines up to END.
fn order(addr: &str, line: &str) -> Vec<String> {
    let stream = TcpStream::connect(addr).unwrap();
    (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut events = Vec::new();
    for reply in BufReader::new(&stream).lines() {
        let reply = reply.unwrap();
        assert!(!reply.starts_with("ERR"), "{reply}");
        if reply.starts_with("END ") {
            return events;
        }
        if reply.starts_with("EVT ") {
            events.push(reply);
        }
    }
    panic!("no END for {line}");
}

#[test]
fn operator_actions_are_journaled_commands_with_their_effect() {
    let dir = temp_dir("admin");
    let config = dir.join("brokerx.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start(&dir, &config);
    let addr = server.address.clone();

    // Fund and debit, in currency units.
    let (code, out, err) = admin(&config, &addr, &["fund", "1", "2500.75"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CashMoved") && out.contains("25007500"),
        "{out}"
    );
    let (code, out, _) = admin(&config, &addr, &["debit", "1", "0.75"]);
    assert_eq!(code, 0);
    assert!(out.contains("CashMoved") && out.contains("7500"), "{out}");
    // More than the account holds: the engine rejects, exit 1, the code shown.
    let (code, out, err) = admin(&config, &addr, &["debit", "1", "999999999"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("Rejected") && out.contains("InsufficientFunds"),
        "{out}"
    );
    assert!(err.contains("rejected"), "{err}");

    // Halt by name: orders are refused until resumed.
    assert_eq!(admin(&config, &addr, &["halt", "TEST"]).0, 0);
    let refused = order(&addr, "NEW 1 0 BUY LIMIT GTC 1000 5");
    assert!(
        refused.iter().any(|e| e.contains("Rejected")),
        "{refused:?}"
    );
    assert_eq!(admin(&config, &addr, &["resume", "test"]).0, 0);
    let resting = order(&addr, "NEW 1 0 BUY LIMIT GTC 1000 5");
    assert!(
        resting.iter().any(|e| e.contains("OrderAccepted")),
        "{resting:?}"
    );

    // The kill switch cancels the resting order and blocks new ones.
    let (code, out, _) = admin(&config, &addr, &["kill", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("AccountSuspended"), "{out}");
    assert!(out.contains("OrderCancelled"), "{out}");
    let blocked = order(&addr, "NEW 1 0 BUY LIMIT GTC 1000 5");
    assert!(
        blocked.iter().any(|e| e.contains("AccountSuspended")),
        "{blocked:?}"
    );
    assert_eq!(admin(&config, &addr, &["reinstate", "1"]).0, 0);

    // Mass cancel (by account and symbol name), and the end of the day.
    order(&addr, "NEW 1 0 BUY LIMIT DAY 999 1");
    order(&addr, "NEW 1 0 BUY LIMIT GTC 998 1");
    let (code, out, _) = admin(&config, &addr, &["mass-cancel", "1", "TEST"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("OrderCancelled").count(), 2, "{out}");
    order(&addr, "NEW 1 0 BUY LIMIT DAY 997 1");
    let (code, out, _) = admin(&config, &addr, &["end-of-day"]);
    assert_eq!(code, 0);
    assert!(out.contains("OrderExpired"), "{out}");

    // Bad usage never reaches the server: exit 2 with the reason.
    for bad in [
        vec![],
        vec!["explode"],
        vec!["fund", "1"],
        vec!["fund", "1", "-5"],
        vec!["fund", "1", "1.23456"],
        vec!["fund", "x", "10"],
        vec!["halt", "NOPE"],
        vec!["kill"],
        vec!["end-of-day", "now"],
    ] {
        let (code, _, err) = admin(&config, &addr, &bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.starts_with("brokerx admin: "), "{bad:?}: {err}");
    }
    let output = Command::new(BIN)
        .args(["admin", "--bogus", "1", "end-of-day"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    // Nobody listening: exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    assert_eq!(admin(&config, &closed_addr, &["end-of-day"]).0, 3);

    // Every action is in the journal.
    terminate(server);
    let dump = run(&["journal", "dump"], &dir);
    for command in [
        "DepositCash",
        "WithdrawCash",
        "Halt",
        "Resume",
        "SuspendAccount",
        "ReinstateAccount",
        "MassCancelAccount",
        "EndOfDay",
    ] {
        assert!(dump.contains(command), "{command} not journaled:\n{dump}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
