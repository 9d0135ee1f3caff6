//! Crash safety of `brokerx serve`, end to end over its test port: drive
//! load, `kill -9` at random moments, restart, and check that every command
//! the client saw acknowledged is in the journal exactly once and that the
//! recovered state satisfies every invariant. Bounded: 20 kills here
//! (`BROKERX_CRASH_ROUNDS` raises it for a longer run), loopback only.

mod common;

use common::{jitter, run, start, tag_of, temp_dir, terminate};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG: &str = r#"
[server]
data_dir = "unused"
durability = "fsync"
wait = "park"
snapshot_every = 300

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
cash = 1000000000000
shares = { TEST = 1000000000 }

[[accounts]]
id = 2
name = "b"
cash = 1000000000000
shares = { TEST = 1000000000 }
"#;

/// Sends tagged deposits and orders as fast as acks come back, recording
/// every tag acknowledged, until `stop`.
fn load(address: &str, next_tag: &AtomicU64, acked: &Mutex<Vec<u64>>, stop: &AtomicBool) {
    let Ok(stream) = TcpStream::connect(address) else {
        return;
    };
    let mut writer = stream.try_clone().unwrap();
    let reader_acked = Arc::new(Mutex::new(Vec::new()));
    let sink = reader_acked.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(tag) = line.starts_with("EVT").then(|| tag_of(&line)).flatten() {
                sink.lock().unwrap().push(tag);
            }
        }
    });
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let tag = next_tag.fetch_add(1, Ordering::Relaxed);
        let line = match i % 3 {
            0 => format!("DEPOSIT 1 7 {tag}\n"),
            1 => format!("NEW 1 0 BUY LIMIT GTC {} 5 {tag}\n", 990 + i % 10),
            _ => format!("NEW 2 0 SELL LIMIT IOC {} 5 {tag}\n", 990 + i % 15),
        };
        i += 1;
        if writer.write_all(line.as_bytes()).is_err() {
            break;
        }
        if i.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = reader.join();
    acked
        .lock()
        .unwrap()
        .extend(reader_acked.lock().unwrap().iter());
}

/// A tiny deterministic generator for kill timing.
#[test]
fn acknowledged_commands_survive_kill_9() {
    let rounds: usize = std::env::var("BROKERX_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let root = temp_dir("crash");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let next_tag = AtomicU64::new(1);
    let acked = Mutex::new(Vec::new());
    let mut seed = 0x5eed_u64;
    for _ in 0..rounds {
        let mut server = start(&dir, &config);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| load(&server.address, &next_tag, &acked, &stop));
            }
            std::thread::sleep(jitter(&mut seed, 5, 150));
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
    }

    // Recover once more and stop cleanly (SIGTERM: drain, fsync, snapshot).
    let server = start(&dir, &config);
    terminate(server);

    let dump = run(&["journal", "dump"], &dir);
    let mut journaled: BTreeMap<u64, usize> = BTreeMap::new();
    for line in dump.lines() {
        if let Some(tag) = tag_of(line).filter(|t| *t > 0) {
            *journaled.entry(tag).or_default() += 1;
        }
    }
    let acked = acked.into_inner().unwrap();
    let distinct: std::collections::BTreeSet<u64> = acked.iter().copied().collect();
    eprintln!(
        "{rounds} rounds: {} commands acknowledged, {} journaled",
        distinct.len(),
        journaled.len()
    );
    assert!(
        acked.len() > 100,
        "the load must get acknowledgements ({} so far)",
        acked.len()
    );
    for tag in &acked {
        assert_eq!(
            journaled.get(tag),
            Some(&1),
            "acknowledged tag {tag} must be journaled exactly once"
        );
    }
    let duplicates: Vec<_> = journaled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicated commands: {duplicates:?}");

    let replay = run(&["replay", "--verify"], &dir);
    assert!(replay.contains("verify: invariants hold"), "{replay}");
    assert!(
        replay.contains("verify: matches the snapshot's recorded hashes"),
        "{replay}"
    );
}
