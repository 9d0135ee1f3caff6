//! OUCH message stores across `kill -9` of `brokerx serve`: two users send
//! orders that trade with each other as fast as the gateway takes them,
//! the server is killed at a random moment, restarted, and killed again.
//! Each round the clients log in from the next sequence number they
//! expect. At the end a login from sequence 1 must give, byte for byte,
//! every message the clients saw (no gap, no duplicate), followed by
//! whatever the engine journaled that they had not seen yet: every
//! journaled order of a user is answered exactly once in its stream, and
//! both sides report the same executed shares. Bounded: 8 kills
//! (`BROKERX_OUCH_CRASH_ROUNDS` changes it), loopback only.

mod common;

use brokerx_gateway_ouch::codec::{EnterOrder, Inbound, Outbound};
use brokerx_soupbin::{Decoder, Packet};
use common::{jitter, run, temp_dir, terminate, Server};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
data_dir = "unused"
durability = "fsync"
wait = "park"

[ports]
test = 0
ouch = 0

[[symbols]]
id = 0
name = "ACME"
tick = 100
lot = 1
reference = 1000000
band_bps = 1000

[[accounts]]
id = 1
name = "a"
cash = 1000000000000
shares = { ACME = 1000000 }

[[accounts]]
id = 2
name = "b"
cash = 1000000000000
shares = { ACME = 1000000 }

[[ouch_users]]
username = "ALICE"
password = "alice1"
account = 1

[[ouch_users]]
username = "BOB"
password = "bob1"
account = 2
"#;

fn pad<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

fn login(address: &str, user: &str, password: &str, from: u64) -> (TcpStream, Decoder, u64) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let login = Packet::LoginRequest {
        username: pad(user),
        password: pad(password),
        requested_session: [b' '; 10],
        requested_sequence_number: from,
    };
    stream.write_all(&login.to_bytes().unwrap()).unwrap();
    let mut decoder = Decoder::new(1024);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(packet) = decoder.next_packet().unwrap() {
            match packet {
                Packet::LoginAccepted {
                    sequence_number, ..
                } => return (stream, decoder, sequence_number),
                other => panic!("{user}: login refused: {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "{user}: no login answer");
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => panic!("{user}: closed at login"),
            Ok(n) => decoder.feed(&buffer[..n]),
            Err(_) => continue,
        }
    }
}

/// Reads sequenced messages into `sink` until the connection ends (or,
/// with `quiet = (q, want)`, until nothing arrives for `q` once `want`
/// messages are in).
fn read_all(
    mut stream: TcpStream,
    mut decoder: Decoder,
    sink: &Mutex<Vec<Vec<u8>>>,
    quiet: Option<(Duration, usize)>,
) {
    let mut last = Instant::now();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        while let Ok(Some(packet)) = decoder.next_packet() {
            if let Packet::SequencedData(bytes) = packet {
                sink.lock().unwrap().push(bytes);
                last = Instant::now();
            }
        }
        if let Some((q, want)) = quiet {
            // Quiet for `q` once `want` messages are in, or for ten times
            // that before (a loaded machine may pause the replay).
            let have = sink.lock().unwrap().len();
            if last.elapsed() >= if have >= want { q } else { q * 10 } {
                return;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => decoder.feed(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn enter(token: &str, side: u8, price: u32) -> Vec<u8> {
    let order = Inbound::Enter(EnterOrder {
        token: pad(token),
        side,
        shares: 1,
        stock: pad("ACME"),
        price,
        tif_seconds: 99_999,
        firm: [b' '; 4],
        display: b'Y',
        capacity: b'A',
        intermarket_sweep: b'N',
        minimum_quantity: 0,
        cross_type: b'N',
        customer_type: b' ',
    });
    Packet::UnsequencedData(order.to_bytes())
        .to_bytes()
        .unwrap()
}

/// `common::start`, keeping the line where serve reports what the OUCH
/// gateway regenerated from the journal at start.
fn start(dir: &Path, config: &Path, regenerated: &mut Vec<String>) -> Server {
    let server = common::start(dir, config);
    regenerated.extend(
        server
            .startup
            .iter()
            .filter(|line| line.starts_with("ouch stores:"))
            .cloned(),
    );
    server
}

const USERS: [(&str, &str, u8); 2] = [("ALICE", "alice1", b'S'), ("BOB", "bob1", b'B')];

#[test]
fn ouch_stores_survive_kill_9() {
    let rounds: usize = std::env::var("BROKERX_OUCH_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let root = temp_dir("ouch-crash");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    // Every message each user was sent, in order (index = sequence - 1).
    let seen: Vec<Arc<Mutex<Vec<Vec<u8>>>>> = USERS.iter().map(|_| Arc::default()).collect();
    let mut seed = 0x0c0c_u64;
    let mut sent_orders = 0;
    let mut reports = Vec::new();
    for round in 0..rounds {
        let mut server = start(&dir, &config, &mut reports);
        let address = server.ports.get("ouch").expect("ouch port").clone();
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for ((user, password, _), seen) in USERS.iter().zip(&seen) {
            let next = seen.lock().unwrap().len() as u64 + 1;
            let (stream, decoder, first) = login(&address, user, password, next);
            assert_eq!(first, next, "{user}: the store kept every message seen");
            writers.push(stream.try_clone().unwrap());
            let seen = seen.clone();
            readers.push(std::thread::spawn(move || {
                read_all(stream, decoder, &seen, None)
            }));
        }
        // Alternate sells and marketable buys of one share until killed.
        let deadline = Instant::now() + jitter(&mut seed, 20, 300);
        let mut i = 0;
        while Instant::now() < deadline {
            for (writer, (_, _, side)) in writers.iter_mut().zip(USERS) {
                let token = format!("R{round}N{i}");
                if writer.write_all(&enter(&token, side, 1_000_000)).is_ok() {
                    sent_orders += 1;
                }
            }
            i += 1;
            if i % 16 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for reader in readers {
            reader.join().unwrap();
        }
    }

    // Restart; a login from 1 gets what was seen, then the rest.
    let server = start(&dir, &config, &mut reports);
    assert_eq!(reports.len(), rounds + 1, "serve reports the OUCH stores");
    for (n, report) in reports.iter().enumerate() {
        eprintln!("start {}: {report}", n + 1);
        assert!(report.ends_with(" 0 orphans"), "{report}");
    }
    let address = server.ports.get("ouch").unwrap().clone();
    let mut executed = Vec::new();
    let mut answered = Vec::new();
    for ((user, password, _), seen) in USERS.iter().zip(&seen) {
        let (stream, decoder, first) = login(&address, user, password, 1);
        assert_eq!(first, 1);
        let seen = seen.lock().unwrap();
        let all = Mutex::new(Vec::new());
        read_all(
            stream,
            decoder,
            &all,
            Some((Duration::from_millis(1500), seen.len())),
        );
        let all = all.into_inner().unwrap();
        assert!(seen.len() > 10, "{user}: the load got answers");
        assert!(all.len() >= seen.len(), "{user}: nothing seen is lost");
        for (n, (got, saw)) in all.iter().zip(seen.iter()).enumerate() {
            assert_eq!(got, saw, "{user}: message {} differs after restarts", n + 1);
        }
        eprintln!(
            "{user}: {} messages seen, {} after the last restart",
            seen.len(),
            all.len()
        );
        // Every token answered once; executions summed.
        let mut answers: BTreeMap<[u8; 14], usize> = BTreeMap::new();
        let mut shares = 0u64;
        for message in &all {
            match Outbound::decode(message).unwrap() {
                Outbound::Accepted(a) => *answers.entry(a.token).or_default() += 1,
                Outbound::Rejected { token, .. } => *answers.entry(token).or_default() += 1,
                Outbound::Executed {
                    executed_shares, ..
                } => shares += u64::from(executed_shares),
                _ => {}
            }
        }
        let twice: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{user}: tokens answered twice: {twice:?}");
        executed.push(shares);
        answered.push(answers.len());
    }
    terminate(server);
    assert_eq!(
        executed[0], executed[1],
        "both sides of every trade are reported"
    );
    // Every order the engine journaled was answered in its user's stream.
    let dump = run(&["journal", "dump"], &dir);
    for (index, account) in ["AccountId(1)", "AccountId(2)"].iter().enumerate() {
        let journaled = dump
            .lines()
            .filter(|l| l.contains("NewOrder {") && l.contains(&format!("account: {account},")))
            .count();
        eprintln!("{account}: {journaled} orders journaled of {sent_orders} sent in all");
        assert!(journaled > 0);
        assert_eq!(
            answered[index], journaled,
            "{account}: every journaled order answered exactly once"
        );
    }
}
