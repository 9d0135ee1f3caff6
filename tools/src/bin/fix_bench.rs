//! FIX round-trip benchmark: NewOrderSingle sent → ExecutionReport (new)
//! received, and → the fill for a marketable order, over loopback through
//! the real FIX gateway (session layer, stores, engine application) and
//! pipeline, from many sessions at once, beside a bare TCP echo of the same
//! message sizes measured in the same run. Open loop with intended send
//! times (coordinated omission corrected); see `brokerx_tools::loadgen`.
//!
//! `fix_bench [--sessions N] [--seconds S] [--rates 10000,50000,100000]`

use brokerx_engine::{AccountId, EngineConfig, SymbolId};
use brokerx_gateway_fix::codec::{self, Frame};
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::server::now_ms;
use brokerx_gateway_fix::{
    EngineApp, EngineAppConfig, EngineSession, FixConfig, FixServer, SessionConfig, Sessions,
    SymbolInfo,
};
use brokerx_tools::loadgen::{bench_pipeline, echo_phase, histogram, us, Schedule};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRICE: u64 = 1_000_000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn comp(session: usize) -> String {
    format!("C{session}")
}

/// A client-side sender of one session: MsgSeqNum and the encoding.
struct Sender {
    stream: TcpStream,
    comp: String,
    seq: u64,
}

impl Sender {
    fn message(&mut self, msg_type: &[u8], extra: &[(u32, &[u8])]) -> Vec<u8> {
        let seq = self.seq.to_string();
        self.seq += 1;
        let ts = format_utc_timestamp(now_ms());
        let mut fields: Vec<(u32, &[u8])> = vec![
            (34, seq.as_bytes()),
            (49, self.comp.as_bytes()),
            (52, ts.as_bytes()),
            (56, b"BRKX"),
        ];
        fields.extend_from_slice(extra);
        codec::encode(b"FIX.4.4", msg_type, &[], &fields)
    }

    fn order(&mut self, index: usize, buy: bool) -> Vec<u8> {
        let cl = format!("{index:012}");
        let ts = format_utc_timestamp(now_ms());
        self.message(b"D", &order_fields(&cl, &ts, buy))
    }
}

fn order_fields<'a>(cl: &'a str, ts: &'a str, buy: bool) -> [(u32, &'a [u8]); 9] {
    [
        (11, cl.as_bytes()),
        (21, b"1"),
        (55, b"BENCH"),
        (54, if buy { b"1" } else { b"2" }),
        (60, ts.as_bytes()),
        (38, b"1"),
        (40, b"2"),
        (44, b"100"),
        (59, b"1"),
    ]
}

fn logon(address: &str, session: usize) -> Sender {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut sender = Sender {
        stream,
        comp: comp(session),
        seq: 1,
    };
    let logon = sender.message(b"A", &[(98, b"0"), (108, b"30"), (141, b"Y")]);
    sender.stream.write_all(&logon).unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Frame::Message { len } = codec::next_frame(&buffer, 1 << 16) {
            let fields = codec::parse(&buffer[..len]).expect("parse");
            assert_eq!(fields[2].value, b"A", "logon answered");
            return sender;
        }
        let n = sender.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "closed during logon");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

struct Results {
    new: Histogram<u64>,
    filled: Histogram<u64>,
}

/// One paced phase: even sessions rest sells, odd sessions send buys that
/// execute against them. ClOrdIDs are global indices.
fn fix_phase(senders: &mut [Sender], rate: f64, count: usize, offset: usize) -> Results {
    let sessions = senders.len();
    let schedule = Arc::new(Schedule::new(count));
    let results = Arc::new(Mutex::new(Results {
        new: histogram(),
        filled: histogram(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let news = Arc::new(AtomicU64::new(0));
    let fills = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (session, sender) in senders.iter().enumerate() {
        let mut stream = sender.stream.try_clone().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let taker = session % 2 == 1;
        let (schedule, results, stop, news, fills) = (
            schedule.clone(),
            results.clone(),
            stop.clone(),
            news.clone(),
            fills.clone(),
        );
        readers.push(std::thread::spawn(move || {
            let mut buffer: Vec<u8> = Vec::with_capacity(1 << 16);
            let mut chunk = [0u8; 1 << 16];
            let (mut local_new, mut local_filled) = (histogram(), histogram());
            while !stop.load(Ordering::Relaxed) {
                let mut at = 0;
                while let Frame::Message { len } = codec::next_frame(&buffer[at..], 1 << 16) {
                    let frame = &buffer[at..at + len];
                    at += len;
                    let Ok(fields) = codec::parse(frame) else {
                        continue;
                    };
                    if fields[2].value != b"8" {
                        continue;
                    }
                    let get = |t| fields.iter().find(|f| f.tag == t).map(|f| f.value);
                    let index = get(11)
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
                        .and_then(|i| i.checked_sub(offset))
                        .filter(|i| *i < count);
                    let Some(index) = index else { continue };
                    match get(150) {
                        Some(b"0") => {
                            local_new.saturating_record(schedule.latency(index));
                            news.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(b"F") if taker => {
                            local_filled.saturating_record(schedule.latency(index));
                            fills.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                buffer.drain(..at);
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    Err(_) => continue,
                }
            }
            let mut results = results.lock().unwrap();
            results.new.add(&local_new).unwrap();
            results.filled.add(&local_filled).unwrap();
        }));
    }
    let start = schedule.now() + 2_000_000;
    for index in 0..count {
        schedule.wait_turn(index, rate, start);
        let session = index % sessions;
        let bytes = senders[session].order(offset + index, session % 2 == 1);
        senders[session].stream.write_all(&bytes).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (news.load(Ordering::Relaxed) < count as u64
        || fills.load(Ordering::Relaxed) < (count / 2) as u64)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    Arc::try_unwrap(results)
        .ok()
        .expect("readers done")
        .into_inner()
        .unwrap()
}

fn main() {
    let sessions: usize = arg("--sessions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .max(2);
    let seconds: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(2.0);
    let rates: Vec<f64> = arg("--rates")
        .unwrap_or_else(|| "10000,50000,100000".into())
        .split(',')
        .filter_map(|r| r.parse().ok())
        .collect();
    let root = PathBuf::from(arg("--dir").unwrap_or_else(|| "target/fix-bench".into()));
    // Message sizes for the echo: a typical NewOrderSingle and its
    // ExecutionReport (new) as the gateway writes them.
    let mut probe = Sender {
        stream: TcpStream::connect(
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap(),
        )
        .unwrap(),
        comp: comp(0),
        seq: 1000,
    };
    let request_bytes = probe.order(123_456_789_012, false).len();
    let reply_bytes = 190;
    println!("FIX round trip over loopback, {sessions} sessions, {seconds} s per rate, open loop (latency from intended send time); echo request {request_bytes} B, reply {reply_bytes} B");
    println!();
    println!("| offered/s | durability | echo p50/p99/p99.9 µs | ER new p50/p99/p99.9 µs | fill p50/p99/p99.9 µs | new p99 ÷ echo p99 |");
    println!("|---:|---|---|---|---|---:|");
    for durable in [false, true] {
        let dir = root.join(if durable { "fsync" } else { "none" });
        let pipeline = bench_pipeline(&dir, durable, sessions, PRICE);
        let mut fix = FixConfig::conformance(Some(dir.join("fix")));
        fix.sessions = (0..sessions)
            .map(|s| SessionConfig::new("BRKX", &comp(s)))
            .collect();
        let sessions_table = Sessions::open(&fix).expect("stores");
        let app = EngineApp::start(
            pipeline.clone(),
            sessions_table.clone(),
            EngineAppConfig {
                sessions: fix
                    .sessions
                    .iter()
                    .enumerate()
                    .map(|(n, s)| EngineSession {
                        id: s.id.clone(),
                        account: AccountId(n as u32 + 1),
                        cancel_on_disconnect: false,
                    })
                    .collect(),
                symbols: vec![SymbolInfo {
                    id: SymbolId(0),
                    name: "BENCH".into(),
                    tick: 100,
                    lot: 1,
                }],
                dir: dir.join("fix/orders"),
                data_dir: dir.join("engine"),
                engine_config: EngineConfig::default(),
                drop_outputs: None,
            },
        )
        .expect("app");
        let server = FixServer::start_with(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            fix,
            sessions_table,
            app.clone(),
        )
        .expect("fix");
        let address = server.local_addr().to_string();
        let mut senders: Vec<Sender> = (0..sessions).map(|s| logon(&address, s)).collect();
        let mut offset = 0;
        for rate in &rates {
            let count =
                ((rate * seconds) as usize / (2 * sessions) * 2 * sessions).max(2 * sessions);
            let echo = echo_phase(sessions, *rate, count, request_bytes, reply_bytes);
            let fix = fix_phase(&mut senders, *rate, count, offset);
            offset += count;
            println!(
                "| {rate:.0} | {} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.2} |",
                if durable { "fsync" } else { "none" },
                us(&echo, 0.5), us(&echo, 0.99), us(&echo, 0.999),
                us(&fix.new, 0.5), us(&fix.new, 0.99), us(&fix.new, 0.999),
                us(&fix.filled, 0.5), us(&fix.filled, 0.99), us(&fix.filled, 0.999),
                us(&fix.new, 0.99) / us(&echo, 0.99).max(0.001),
            );
            if fix.new.len() < count as u64 {
                println!(
                    "  (only {} of {count} acknowledged within the deadline)",
                    fix.new.len()
                );
            }
        }
        for sender in senders.iter_mut() {
            let bytes = sender.message(b"5", &[]);
            let _ = sender.stream.write_all(&bytes);
        }
        server.stop();
        app.shutdown();
        let _ = pipeline.shutdown();
    }
}
