//! Pipeline benchmark: throughput and enqueue-to-publish latency of the
//! live pipeline with durability `none` and `fsync`, beside a bare
//! `write + fdatasync` loop on the same disk (batch sizes 1, 64, 4096),
//! then replay speed from disk. Ratios against the bare loop are the
//! result; absolute numbers depend on this shared machine.
//!
//! `pipeline_bench [--commands N] [--dir DIR] [--recovery N]`

use brokerx_engine::pipeline::{recover, Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{
    AccountId, Command, Engine, EngineConfig, Limits, OrderType, SelfTradePrevention, Side,
    SymbolId, SymbolSpec, TimeInForce,
};
use hdrhistogram::Histogram;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn setup() -> Vec<Command> {
    let mut commands = vec![Command::AddSymbol {
        symbol: SymbolId(0),
        spec: SymbolSpec {
            tick_size: 1,
            lot_size: 1,
            reference_price: 100_000,
            band_bps: 1_000,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        },
    }];
    for account in 1..=100 {
        let account = AccountId(account);
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
            qty: 1 << 40,
            tag: 0,
        });
    }
    commands
}

fn orders(count: usize) -> Vec<Command> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let side = if state & 1 == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let offset = (state >> 8) % 40;
            let price = match side {
                Side::Buy => 99_990 - offset + (state >> 20) % 12,
                Side::Sell => 100_010 + offset - (state >> 20) % 12,
            };
            let tif = if i % 5 == 0 {
                TimeInForce::Ioc
            } else {
                TimeInForce::Day
            };
            Command::NewOrder {
                account: AccountId(1 + (state >> 32) as u32 % 100),
                symbol: SymbolId(0),
                side,
                order_type: OrderType::Limit,
                tif,
                price,
                qty: 1 + (state >> 40) % 100,
                self_trade: SelfTradePrevention::AccountDefault,
                tag: i as u64,
            }
        })
        .collect()
}

struct Run {
    label: String,
    commands_per_s: f64,
    latency: Histogram<u64>,
    batches: u64,
}

fn pipeline_run(dir: &Path, durable: bool, count: usize, rate: Option<f64>) -> Run {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = PipelineConfig::new(dir.to_path_buf());
    config.durable = durable;
    // Three busy threads on two cores would measure the scheduler: a
    // paced run lets the idle engine park.
    config.wait = match rate {
        Some(_) => WaitStrategy::Park {
            spins: 2_000,
            timeout: Duration::from_millis(1),
        },
        None => WaitStrategy::SpinThenYield { spins: 2_000 },
    };
    config.queue_capacity = 1 << 16;
    config.outbound_capacity = 1 << 20;
    let pipeline = Pipeline::start(config, EngineConfig::default()).expect("start");
    let (submitter, handle) = pipeline.connect(&[], false);
    let prelude = setup();
    for command in &prelude {
        submitter.submit(*command).unwrap();
    }
    let mut done = 0;
    while done < prelude.len() {
        done += handle.receiver.recv().unwrap().last as usize;
    }
    let first_seq = prelude.len() as u64 + 1;
    let commands = orders(count);
    // Enqueue time of each command, in ns since `base`.
    let base = Instant::now();
    let sent_at: Vec<AtomicU64> = (0..count).map(|_| AtomicU64::new(0)).collect();
    let batches_before = pipeline.stats().batches.load(Ordering::Relaxed);
    let start = Instant::now();
    let paced_start = base.elapsed().as_nanos() as u64 + 1_000_000;
    let latency = std::thread::scope(|scope| {
        let receiver = &handle.receiver;
        let sent_at = &sent_at;
        let consumer = scope.spawn(move || {
            let mut done = 0;
            let mut histogram = Histogram::<u64>::new_with_bounds(100, 60_000_000_000, 3).unwrap();
            while done < count {
                let output = receiver
                    .recv_timeout(Duration::from_secs(60))
                    .expect("output");
                if output.last {
                    let index = (output.seq - first_seq) as usize;
                    let sent = sent_at[index].load(Ordering::Relaxed);
                    let now = base.elapsed().as_nanos() as u64;
                    histogram.saturating_record(now.saturating_sub(sent));
                    done += 1;
                }
            }
            histogram
        });
        for (index, command) in commands.iter().enumerate() {
            // Paced runs are open-loop: latency counts from the intended
            // send time, so a stall is charged to every command it delays
            // (no coordinated omission).
            if let Some(rate) = rate {
                let intended = (index as f64 / rate * 1e9) as u64 + paced_start;
                // Sleep while far ahead, so the producer does not take a
                // core from the engine and the consumer; spin the rest.
                let now = base.elapsed().as_nanos() as u64;
                if intended > now + 200_000 {
                    std::thread::sleep(Duration::from_nanos(intended - now - 100_000));
                }
                while (base.elapsed().as_nanos() as u64) < intended {
                    std::hint::spin_loop();
                }
                sent_at[index].store(intended, Ordering::Relaxed);
                while submitter.submit(*command).is_err() {
                    std::thread::yield_now();
                }
                continue;
            }
            loop {
                sent_at[index].store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if submitter.submit(*command).is_ok() {
                    break;
                }
                std::thread::yield_now();
            }
        }
        consumer.join().unwrap()
    });
    let elapsed = start.elapsed();
    let batches = pipeline.stats().batches.load(Ordering::Relaxed) - batches_before;
    pipeline.shutdown().unwrap().unwrap();
    Run {
        label: format!(
            "pipeline, durability {}",
            if durable { "fsync" } else { "none" }
        ),
        commands_per_s: count as f64 / elapsed.as_secs_f64(),
        latency,
        batches,
    }
}

/// A bare loop: `batch` records of the journal's size per write, one
/// fdatasync per write.
fn bare_fsync(dir: &Path, batch: usize, budget: Duration) -> (f64, Histogram<u64>) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bare.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let record = [0x5Au8; 16 + 54];
    let buffer: Vec<u8> = record
        .iter()
        .copied()
        .cycle()
        .take(record.len() * batch)
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(100, 60_000_000_000, 3).unwrap();
    let start = Instant::now();
    let mut records = 0u64;
    while start.elapsed() < budget {
        let t = Instant::now();
        file.write_all(&buffer).unwrap();
        file.sync_data().unwrap();
        histogram.saturating_record(t.elapsed().as_nanos() as u64);
        records += batch as u64;
    }
    let rate = records as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    (rate, histogram)
}

fn us(h: &Histogram<u64>, q: f64) -> String {
    format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
}

fn row(label: &str, rate: f64, h: &Histogram<u64>, extra: &str) {
    println!(
        "| {label} | {rate:.0} | {} | {} | {} | {} | {} | {} | {extra} |",
        us(h, 0.5),
        us(h, 0.99),
        us(h, 0.999),
        us(h, 0.9999),
        format_args!("{:.1}", h.max() as f64 / 1000.0),
        h.len()
    );
}

fn replay_speed(dir: &Path) -> (u64, f64) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut hasher = StableHasher::default();
    let mut events = 0;
    let start = Instant::now();
    let replayed = brokerx_engine::pipeline::replay_journal(
        dir,
        &mut engine,
        &mut hasher,
        &mut events,
        None,
        |_, _| {},
    )
    .unwrap();
    (replayed, replayed as f64 / start.elapsed().as_secs_f64())
}

/// ITCH feed capacity: a flood of commands through a pipeline (durability
/// none) with the ITCH publisher attached, sending MoldUDP64 to a local
/// socket; messages per second from the first command to the publisher
/// having derived and sent the last one.
fn feed_capacity(dir: &Path, count: usize) -> (u64, u64, f64) {
    use brokerx_marketdata::{ItchConfig, ItchPublisher, SymbolDirectory};
    let _ = std::fs::remove_dir_all(dir);
    let mut config = PipelineConfig::new(dir.to_path_buf());
    config.durable = false;
    config.wait = WaitStrategy::SpinThenYield { spins: 2_000 };
    config.outbound_capacity = 1 << 20;
    let pipeline =
        std::sync::Arc::new(Pipeline::start(config, EngineConfig::default()).expect("start"));
    let mut directory = SymbolDirectory::new();
    directory
        .insert(SymbolId(0), "BENCH", 1)
        .expect("directory");
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut itch = ItchConfig::new(directory, dir.to_path_buf());
    itch.mold_socket = Some(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    itch.mold_destination = sink.local_addr().unwrap();
    let publisher = ItchPublisher::start(pipeline.clone(), itch).expect("itch");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let _ = sink.recv(&mut buffer);
            }
        })
    };
    let (submitter, handle) = pipeline.connect(&[], false);
    let commands: Vec<Command> = setup().into_iter().chain(orders(count)).collect();
    let last_seq = commands.len() as u64;
    let start = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut done = 0;
        while done < commands.len() as u64 {
            match handle.receiver.recv_timeout(Duration::from_secs(60)) {
                Ok(output) => done += output.last as u64,
                Err(_) => break,
            }
        }
    });
    for command in setup().into_iter().chain(orders(count)) {
        while submitter.submit(command).is_err() {
            std::thread::yield_now();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while publisher.stats().engine_seq < last_seq && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = publisher.stats();
    consumer.join().unwrap();
    publisher.shutdown();
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    let _ = pipeline.shutdown();
    (
        stats.messages,
        stats.packets,
        stats.messages as f64 / elapsed,
    )
}

fn main() {
    let count: usize = arg("--commands")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let root = PathBuf::from(arg("--dir").unwrap_or_else(|| "target/pipeline-bench".into()));
    std::fs::create_dir_all(&root).unwrap();
    println!(
        "pipeline benchmark: {count} commands (limit orders, 20% IOC, 100 accounts), dir {}",
        root.display()
    );
    println!();
    println!("| run | records or commands/s | p50 us | p99 us | p99.9 us | p99.99 us | max us | samples | notes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut bare_rates = Vec::new();
    for batch in [1usize, 64, 4096] {
        let (rate, histogram) = bare_fsync(&root.join("bare"), batch, Duration::from_secs(3));
        row(
            &format!("bare write+fdatasync, batch {batch}"),
            rate,
            &histogram,
            "latency per fdatasync",
        );
        bare_rates.push((batch, rate));
    }
    let none = pipeline_run(&root.join("none"), false, count, None);
    row(
        &none.label,
        none.commands_per_s,
        &none.latency,
        &format!("{} batches", none.batches),
    );
    let fsync = pipeline_run(&root.join("fsync"), true, count, None);
    row(
        &fsync.label,
        fsync.commands_per_s,
        &fsync.latency,
        &format!(
            "{} batches, {:.0} commands per fsync",
            fsync.batches,
            count as f64 / fsync.batches.max(1) as f64
        ),
    );
    for rate in [10_000.0, 100_000.0, 1_000_000.0] {
        let paced_count = (rate as usize).min(count.max(10_000));
        for durable in [false, true] {
            let run = pipeline_run(&root.join("paced"), durable, paced_count, Some(rate));
            row(
                &run.label,
                run.commands_per_s,
                &run.latency,
                &format!(
                    "{} batches, {:.1} commands per batch",
                    run.batches,
                    paced_count as f64 / run.batches.max(1) as f64
                ),
            );
        }
    }
    println!();
    for (batch, rate) in &bare_rates {
        println!(
            "fsync pipeline / bare fdatasync loop at batch {batch}: {:.3}",
            fsync.commands_per_s / rate
        );
    }
    println!(
        "fsync pipeline / none pipeline: {:.3}",
        fsync.commands_per_s / none.commands_per_s
    );
    let (messages, packets, rate) = feed_capacity(&root.join("feed"), count);
    println!("ITCH feed capacity (flood, durability none): {messages} messages in {packets} MoldUDP64 packets, {rate:.0} messages/s");
    let (replayed, rate) = replay_speed(&root.join("fsync"));
    println!("replay from disk: {replayed} commands at {rate:.0} commands/s");

    if let Some(n) = arg("--recovery").and_then(|v| v.parse::<usize>().ok()) {
        let dir = root.join("recovery");
        let run = pipeline_run(&dir, false, n, None);
        println!(
            "journaled {n} commands (durability none) at {:.0}/s",
            run.commands_per_s
        );
        // Recovery without a snapshot: remove the shutdown snapshot.
        let _ = std::fs::remove_dir_all(brokerx_engine::pipeline::snapshot_dir(&dir));
        let start = Instant::now();
        let config = PipelineConfig::new(dir.clone());
        let (_, recovered, _) = recover(&config, EngineConfig::default()).unwrap();
        let elapsed = start.elapsed();
        println!(
            "recovery of {} journaled commands (no snapshot): {:.2} s, {:.0} commands/s",
            recovered.replayed,
            elapsed.as_secs_f64(),
            recovered.replayed as f64 / elapsed.as_secs_f64()
        );
    }
}
