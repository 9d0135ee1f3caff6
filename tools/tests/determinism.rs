//! Determinism across processes: a seeded workload through a live
//! `brokerx serve`, then `brokerx replay` in a fresh process must report
//! the same event-stream hash and state hash the server printed when it
//! stopped, from the start of the journal and from a mid-run snapshot.

mod common;

use common::{run, start, temp_dir, terminate};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

const CONFIG: &str = r#"
[server]
data_dir = "unused"
snapshot_every = 250

[ports]
test = 0

[[symbols]]
id = 0
name = "TEST"
tick = 1
lot = 1
reference = 1000
band_bps = 2000
maker_fee = 1
taker_fee = 2

[[accounts]]
id = 1
name = "a"
cash = 1000000000000
shares = { TEST = 1000000000 }

[[accounts]]
id = 2
name = "b"
cash = 1000000000000
shares = { TEST = 1000000000 }

[[accounts]]
id = 3
name = "c"
cash = 1000000000000
shares = { TEST = 1000000000 }
"#;

/// Sends `count` seeded commands, one at a time, waiting for each `END`.
fn drive(address: &str, seed: u64, count: usize) {
    let stream = TcpStream::connect(address).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut state = seed;
    for i in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let account = 1 + state % 3;
        let side = if state & 8 == 0 { "BUY" } else { "SELL" };
        let tif = ["GTC", "DAY", "IOC", "FOK"][(state >> 4) as usize % 4];
        let line = match (state >> 8) % 20 {
            0 => format!("MASSCANCEL {account}\n"),
            1 => "ENDOFDAY\n".to_string(),
            2 => format!(
                "NEW {account} 0 {side} MARKET IOC 0 {} {i}\n",
                1 + (state >> 16) % 30
            ),
            _ => format!(
                "NEW {account} 0 {side} LIMIT {tif} {} {} {i}\n",
                990 + (state >> 16) % 21,
                1 + (state >> 32) % 40
            ),
        };
        writer.write_all(line.as_bytes()).unwrap();
        for reply in lines.by_ref() {
            let reply = reply.unwrap();
            assert!(
                !reply.starts_with("ERR") && reply != "BUSY",
                "{line:?} -> {reply}"
            );
            if reply.starts_with("END ") {
                break;
            }
        }
    }
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    let start = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} missing in {text}"))
        + label.len();
    text[start..]
        .trim_start()
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap()
}

#[test]
fn replay_in_a_fresh_process_reproduces_the_live_run() {
    let root = temp_dir("determinism");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start(&dir, &config);
    std::thread::scope(|scope| {
        for seed in [3u64, 5, 7] {
            let address = server.address.clone();
            scope.spawn(move || drive(&address, seed, 700));
        }
    });
    let printed = terminate(server).join("\n");
    let stopped = printed
        .lines()
        .find(|l| l.starts_with("brokerx stopped"))
        .expect("stop line");
    let event_hash = field(stopped, "event hash");
    let state_hash = field(stopped, "state hash");

    let replay = run(&["replay", "--verify"], &dir);
    assert_eq!(field(&replay, "event hash:"), event_hash, "{replay}");
    assert_eq!(field(&replay, "state hash:"), state_hash, "{replay}");
    assert!(
        replay.contains("verify: matches the snapshot's recorded hashes"),
        "{replay}"
    );

    // Force a mid-run snapshot: remove the final one.
    let snapshots = dir.join("snapshots");
    let mut files: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "periodic snapshots were taken: {files:?}");
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let replay = run(&["replay", "--from-snapshot"], &dir);
    let from: u64 = field(&replay, "starting from snapshot at seq")
        .parse()
        .unwrap();
    let last: u64 = field(&replay, "last seq:").parse().unwrap();
    assert!(from < last, "replay started mid-run ({from} < {last})");
    assert_eq!(field(&replay, "event hash:"), event_hash, "{replay}");
    assert_eq!(field(&replay, "state hash:"), state_hash, "{replay}");
}
