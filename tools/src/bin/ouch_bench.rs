//! OUCH round-trip benchmark: Enter Order sent → Accepted received, and →
//! Executed received for a marketable order, over loopback through the
//! real OUCH gateway and pipeline, beside a bare TCP echo of the same
//! message sizes measured in the same run. Open loop: each order has an
//! intended send time on a fixed schedule and latency counts from it, so a
//! stall is charged to every order it delays (no coordinated omission).
//!
//! `ouch_bench [--sessions N] [--seconds S] [--rates 10000,50000,100000]
//! [--runs N] [--durability none,fsync] [--send inline,direct,writer]`

use brokerx_engine::pipeline::{Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::{
    AccountId, Command, EngineConfig, Limits, SelfTradePrevention, SymbolId, SymbolSpec,
};
use brokerx_gateway_ouch::codec::{alpha, EnterOrder, Inbound, TIF_SYSTEM_HOURS};
use brokerx_gateway_ouch::{OuchConfig, OuchServer, OuchUser};
use brokerx_soupbin::{Decoder, Packet};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRICE: u32 = 1_000_000;
/// SoupBinTCP-framed Enter Order: 2 length + 1 type + 47 body.
const REQUEST_BYTES: usize = 50;
/// SoupBinTCP-framed Accepted: 2 length + 1 type + 66 body.
const REPLY_BYTES: usize = 69;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("bounds")
}

/// Intended send times (ns since `base`) by order index.
struct Schedule {
    base: Instant,
    intended: Vec<AtomicU64>,
}

impl Schedule {
    fn new(count: usize) -> Schedule {
        Schedule {
            base: Instant::now(),
            intended: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Waits for order `index`'s slot at `rate`, stamps and returns it.
    fn wait_turn(&self, index: usize, rate: f64, start: u64) {
        let at = start + (index as f64 / rate * 1e9) as u64;
        let now = self.now();
        if at > now + 200_000 {
            std::thread::sleep(Duration::from_nanos(at - now - 100_000));
        }
        while self.now() < at {
            std::hint::spin_loop();
        }
        self.intended[index].store(at, Ordering::Relaxed);
    }

    fn latency(&self, index: usize) -> u64 {
        self.now()
            .saturating_sub(self.intended[index].load(Ordering::Relaxed))
    }
}

fn start_pipeline(dir: &Path, durable: bool, sessions: usize) -> Arc<Pipeline> {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = PipelineConfig::new(dir.join("engine"));
    config.durable = durable;
    config.wait = match std::env::var("BROKERX_BENCH_WAIT").as_deref() {
        Ok(text) => WaitStrategy::parse(text).expect("spin, yield, park or spin-park"),
        Err(_) => WaitStrategy::Park {
            spins: 2_000,
            timeout: Duration::from_millis(1),
        },
    };
    let pipeline = Pipeline::start(config, EngineConfig::default()).expect("pipeline");
    let mut commands = vec![Command::AddSymbol {
        symbol: SymbolId(0),
        spec: SymbolSpec {
            tick_size: 100,
            lot_size: 1,
            reference_price: PRICE as u64,
            band_bps: 1_000,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        },
    }];
    for session in 0..sessions {
        let account = AccountId(session as u32 + 1);
        commands.push(Command::CreateAccount {
            account,
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        });
        commands.push(Command::DepositCash {
            account,
            amount: 1 << 50,
            tag: 0,
        });
        commands.push(Command::DepositShares {
            account,
            symbol: SymbolId(0),
            qty: 1 << 30,
            tag: 0,
        });
    }
    let (submitter, handle) = pipeline.connect(&[], false);
    for command in &commands {
        while submitter.submit(*command).is_err() {
            std::thread::yield_now();
        }
    }
    let mut done = 0;
    while done < commands.len() {
        done += handle.receiver.recv().expect("setup reply").last as usize;
    }
    pipeline.disconnect(handle.id);
    Arc::new(pipeline)
}

fn login(address: &str, user: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).unwrap();
    let login = Packet::LoginRequest {
        username: alpha(user.as_bytes()),
        password: alpha(b"pw"),
        requested_session: [b' '; 10],
        requested_sequence_number: 0,
    };
    stream.write_all(&login.to_bytes().unwrap()).unwrap();
    let mut decoder = Decoder::new(1024);
    let mut buffer = [0u8; 512];
    loop {
        if let Some(packet) = decoder.next_packet().expect("soupbin") {
            assert!(
                matches!(packet, Packet::LoginAccepted { .. }),
                "login: {packet:?}"
            );
            assert_eq!(decoder.buffered_bytes(), 0);
            return stream;
        }
        let n = stream.read(&mut buffer).expect("read");
        assert!(n > 0, "closed during login");
        decoder.feed(&buffer[..n]);
    }
}

fn enter_bytes(index: usize, buy: bool) -> Vec<u8> {
    let token = format!("{index:014}");
    let order = Inbound::Enter(EnterOrder {
        token: alpha(token.as_bytes()),
        side: if buy { b'B' } else { b'S' },
        shares: 1,
        stock: alpha(b"BENCH"),
        price: PRICE,
        tif_seconds: TIF_SYSTEM_HOURS,
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

struct Results {
    accepted: Histogram<u64>,
    executed: Histogram<u64>,
}

/// One paced phase over the OUCH gateway: even sessions rest sells, odd
/// sessions send buys that execute against them.
fn ouch_phase(streams: &[TcpStream], rate: f64, count: usize, offset: usize) -> Results {
    let sessions = streams.len();
    let schedule = Arc::new(Schedule::new(count));
    let results = Arc::new(Mutex::new(Results {
        accepted: histogram(),
        executed: histogram(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let expected_executions = count / 2;
    let executions = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for stream in streams {
        let mut stream = stream.try_clone().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (schedule, results, stop, executions, accepted) = (
            schedule.clone(),
            results.clone(),
            stop.clone(),
            executions.clone(),
            accepted.clone(),
        );
        readers.push(std::thread::spawn(move || {
            let mut decoder = Decoder::new(1024);
            let mut buffer = [0u8; 1 << 16];
            let (mut local_accepted, mut local_executed) = (histogram(), histogram());
            while !stop.load(Ordering::Relaxed) {
                while let Ok(Some(packet)) = decoder.next_packet() {
                    let Packet::SequencedData(message) = packet else {
                        continue;
                    };
                    let token =
                        std::str::from_utf8(message.get(9..23).unwrap_or_default()).unwrap_or("");
                    let Ok(token) = token.trim().parse::<usize>() else {
                        continue;
                    };
                    // Late messages of an earlier phase are skipped.
                    let Some(index) = token.checked_sub(offset).filter(|i| *i < count) else {
                        continue;
                    };
                    match message[0] {
                        b'A' => {
                            local_accepted.saturating_record(schedule.latency(index));
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        b'E' if message.get(31) == Some(&b'R') => {
                            local_executed.saturating_record(schedule.latency(index));
                            executions.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => decoder.feed(&buffer[..n]),
                    Err(_) => continue,
                }
            }
            let mut results = results.lock().unwrap();
            results.accepted.add(&local_accepted).unwrap();
            results.executed.add(&local_executed).unwrap();
        }));
    }
    let mut writers: Vec<TcpStream> = streams.iter().map(|s| s.try_clone().unwrap()).collect();
    let start = schedule.now() + 2_000_000;
    for index in 0..count {
        schedule.wait_turn(index, rate, start);
        let session = index % sessions;
        let buy = session % 2 == 1;
        writers[session]
            .write_all(&enter_bytes(offset + index, buy))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (accepted.load(Ordering::Relaxed) < count as u64
        || executions.load(Ordering::Relaxed) < expected_executions as u64)
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

/// The same schedule against a bare TCP echo: a request of the Enter
/// Order's size, a reply of the Accepted's size.
fn echo_phase(sessions: usize, rate: f64, count: usize) -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(sessions) {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut request = [0u8; REQUEST_BYTES];
                let mut reply = [0u8; REPLY_BYTES];
                while stream.read_exact(&mut request).is_ok() {
                    reply[..8].copy_from_slice(&request[..8]);
                    if stream.write_all(&reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let schedule = Arc::new(Schedule::new(count));
    let streams: Vec<TcpStream> = (0..sessions)
        .map(|_| {
            let stream = TcpStream::connect(address).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
        })
        .collect();
    let mut readers = Vec::new();
    for stream in &streams {
        let mut stream = stream.try_clone().unwrap();
        let schedule = schedule.clone();
        let share = count / sessions + usize::from(readers.len() < count % sessions);
        readers.push(std::thread::spawn(move || {
            let mut local = histogram();
            let mut reply = [0u8; REPLY_BYTES];
            for _ in 0..share {
                stream.read_exact(&mut reply).unwrap();
                let index = u64::from_le_bytes(reply[..8].try_into().unwrap()) as usize;
                local.saturating_record(schedule.latency(index));
            }
            local
        }));
    }
    let mut writers: Vec<TcpStream> = streams.iter().map(|s| s.try_clone().unwrap()).collect();
    let start = schedule.now() + 2_000_000;
    let mut request = [0x20u8; REQUEST_BYTES];
    for index in 0..count {
        schedule.wait_turn(index, rate, start);
        request[..8].copy_from_slice(&(index as u64).to_le_bytes());
        writers[index % sessions].write_all(&request).unwrap();
    }
    let mut merged = histogram();
    for reader in readers {
        merged.add(reader.join().unwrap()).unwrap();
    }
    merged
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// p50 / p90 / p99 / p99.9 / p99.99 / max in µs.
fn distribution(h: &Histogram<u64>) -> String {
    format!(
        "{:.0} / {:.0} / {:.0} / {:.0} / {:.0} / {:.0}",
        us(h, 0.5),
        us(h, 0.9),
        us(h, 0.99),
        us(h, 0.999),
        us(h, 0.9999),
        h.max() as f64 / 1000.0
    )
}

fn list(name: &str, default: &str) -> Vec<String> {
    arg(name)
        .unwrap_or_else(|| default.into())
        .split(',')
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Median and range of a list of ratios.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    format!(
        "{median:.2} ({:.2}–{:.2})",
        values[0],
        values[values.len() - 1]
    )
}

/// One measured rate of one run.
struct Row {
    durability: String,
    send: String,
    rate: f64,
    echo: Histogram<u64>,
    accepted: Histogram<u64>,
    executed: Histogram<u64>,
}

fn main() {
    let sessions: usize = arg("--sessions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(2);
    let seconds: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(2.0);
    let runs: usize = arg("--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rates: Vec<f64> = list("--rates", "10000,50000,100000")
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    // "none": journal not fsynced; "fsync": journal fsynced per batch (the
    // OUCH stores too only with BROKERX_BENCH_OUCH_FSYNC=1, as in serve).
    let durabilities = list("--durability", "none,fsync");
    // How outputs reach the client: "inline" (default: the engine thread
    // maps, stores and sends), "direct" (a per-user event thread maps,
    // stores and sends), "writer" (the event thread stores and wakes the
    // connection's writer thread, which sends: the path before).
    let sends = list("--send", "inline,writer");
    let ouch_fsync = std::env::var("BROKERX_BENCH_OUCH_FSYNC").is_ok_and(|v| v == "1");
    let root = PathBuf::from(arg("--dir").unwrap_or_else(|| "target/ouch-bench".into()));
    let wait = std::env::var("BROKERX_BENCH_WAIT").unwrap_or_else(|_| "park (2,000 spins)".into());
    println!("OUCH round trip over loopback, {sessions} sessions, {seconds} s per rate, {runs} run(s), engine wait {wait}, open loop (latency from intended send time)");
    println!();
    println!("Each row: p50 / p90 / p99 / p99.9 / p99.99 / max in µs; ratios are OUCH Accepted ÷ echo at p50, p99, p99.9 in the same run.");
    println!();
    println!("| run | offered/s | durability | send | echo | Accepted | Executed | Acc÷echo p50 / p99 / p99.9 | Exe÷echo p99 |");
    println!("|---:|---:|---|---|---|---|---|---|---:|");
    let mut rows: Vec<Row> = Vec::new();
    for run in 1..=runs {
        for durability in &durabilities {
            let durable = durability == "fsync";
            for send in &sends {
                let dir = root.join(format!("{durability}-{send}"));
                let pipeline = start_pipeline(&dir, durable, sessions);
                let mut config = OuchConfig::new(dir.join("ouch"));
                config.fsync = durable && ouch_fsync;
                config.live_send = send != "writer";
                config.inline_events = send == "inline";
                config.symbols = vec![("BENCH".into(), SymbolId(0))];
                config.users = (0..sessions)
                    .map(|s| OuchUser {
                        username: format!("U{s}"),
                        password: "pw".into(),
                        account: AccountId(s as u32 + 1),
                        cancel_on_disconnect: false,
                    })
                    .collect();
                let server = OuchServer::start(
                    TcpListener::bind("127.0.0.1:0").unwrap(),
                    pipeline.clone(),
                    config,
                )
                .expect("ouch");
                let address = server.local_addr().to_string();
                // The ITCH feed runs beside it, to a local UDP socket drained
                // by a thread, so its throughput and publish latency are
                // measured under the same load.
                let feed_sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut directory = brokerx_marketdata::SymbolDirectory::new();
                directory.insert(SymbolId(0), "BENCH", 1).unwrap();
                let mut itch = brokerx_marketdata::ItchConfig::new(directory, dir.join("engine"));
                itch.mold_socket = Some(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
                itch.mold_destination = feed_sink.local_addr().unwrap();
                let publisher =
                    brokerx_marketdata::ItchPublisher::start(pipeline.clone(), itch).expect("itch");
                let drain_stop = Arc::new(AtomicBool::new(false));
                let drain = {
                    let stop = drain_stop.clone();
                    feed_sink
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 2048];
                        while !stop.load(Ordering::Relaxed) {
                            let _ = feed_sink.recv(&mut buffer);
                        }
                    })
                };
                let feed_start = (publisher.stats(), Instant::now());
                let streams: Vec<TcpStream> = (0..sessions)
                    .map(|s| login(&address, &format!("U{s}")))
                    .collect();
                let mut offset = 0;
                for rate in &rates {
                    // An even count per session pair keeps buys matched by
                    // sells.
                    let count = ((rate * seconds) as usize / (2 * sessions) * 2 * sessions)
                        .max(2 * sessions);
                    let echo = echo_phase(sessions, *rate, count);
                    let ouch = ouch_phase(&streams, *rate, count, offset);
                    offset += count;
                    println!(
                        "| {run} | {rate:.0} | {durability} | {send} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {:.2} |",
                        distribution(&echo),
                        distribution(&ouch.accepted),
                        distribution(&ouch.executed),
                        us(&ouch.accepted, 0.5) / us(&echo, 0.5).max(0.001),
                        us(&ouch.accepted, 0.99) / us(&echo, 0.99).max(0.001),
                        us(&ouch.accepted, 0.999) / us(&echo, 0.999).max(0.001),
                        us(&ouch.executed, 0.99) / us(&echo, 0.99).max(0.001),
                    );
                    if ouch.accepted.len() < count as u64 {
                        println!(
                            "  (only {} of {count} Accepted within the deadline)",
                            ouch.accepted.len()
                        );
                    }
                    rows.push(Row {
                        durability: durability.clone(),
                        send: send.clone(),
                        rate: *rate,
                        echo,
                        accepted: ouch.accepted,
                        executed: ouch.executed,
                    });
                }
                for mut stream in streams {
                    let _ = stream.write_all(&Packet::LogoutRequest.to_bytes().unwrap());
                }
                let feed = publisher.stats();
                let publish = publisher.latency_histogram();
                let seconds_elapsed = feed_start.1.elapsed().as_secs_f64();
                println!(
                    "|  |  | {durability} | {send} | ITCH feed over the whole run: {} messages in {} MoldUDP64 packets, {:.0} messages/s; publish latency (engine stamp to UDP send, includes the journal commit) p50 / p99 / p99.9 / max {:.1} / {:.1} / {:.1} / {:.1} µs | | | | |",
                    feed.messages - feed_start.0.messages,
                    feed.packets - feed_start.0.packets,
                    (feed.messages - feed_start.0.messages) as f64 / seconds_elapsed,
                    us(&publish, 0.5),
                    us(&publish, 0.99),
                    us(&publish, 0.999),
                    publish.max() as f64 / 1000.0,
                );
                publisher.shutdown();
                drain_stop.store(true, Ordering::Relaxed);
                let _ = drain.join();
                server.shutdown();
                let _ = pipeline.shutdown();
            }
        }
    }
    println!();
    println!("Same-run ratios across {runs} run(s): median (min–max)");
    println!();
    println!("| offered/s | durability | send | Accepted÷echo p50 | Accepted÷echo p99 | Accepted÷echo p99.9 | Executed÷echo p99 |");
    println!("|---:|---|---|---|---|---|---|");
    for durability in &durabilities {
        for send in &sends {
            for rate in &rates {
                let mine: Vec<&Row> = rows
                    .iter()
                    .filter(|r| &r.durability == durability && &r.send == send && r.rate == *rate)
                    .collect();
                let ratio = |q: f64, executed: bool| -> Vec<f64> {
                    mine.iter()
                        .map(|r| {
                            let ouch = if executed { &r.executed } else { &r.accepted };
                            us(ouch, q) / us(&r.echo, q).max(0.001)
                        })
                        .collect()
                };
                println!(
                    "| {rate:.0} | {durability} | {send} | {} | {} | {} | {} |",
                    spread(&mut ratio(0.5, false)),
                    spread(&mut ratio(0.99, false)),
                    spread(&mut ratio(0.999, false)),
                    spread(&mut ratio(0.99, true)),
                );
            }
        }
    }
}
