//! Pieces shared by the open-loop round-trip benchmarks: a send schedule
//! that stamps each request's *intended* send time (latency counts from it,
//! so a stall is charged to every request it delays: no coordinated
//! omission), HdrHistograms in nanoseconds, and a bare TCP echo of given
//! request and reply sizes, run on the same schedule as the baseline.

use brokerx_engine::pipeline::{Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::{
    AccountId, Command, EngineConfig, Limits, SelfTradePrevention, SymbolId, SymbolSpec,
};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 1 µs to 60 s, 3 significant digits, in nanoseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("bounds")
}

/// A quantile in microseconds.
pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Intended send times (ns since `base`) by request index.
pub struct Schedule {
    base: Instant,
    intended: Vec<AtomicU64>,
}

impl Schedule {
    pub fn new(count: usize) -> Schedule {
        Schedule {
            base: Instant::now(),
            intended: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Waits for request `index`'s slot at `rate` per second from `start`,
    /// and stamps it. It sleeps rather than spins (a spinning sender would
    /// take one of the machine's two cores from the system under test); the
    /// sleep's overshoot is charged to the requests it delays, since latency
    /// counts from the intended time.
    pub fn wait_turn(&self, index: usize, rate: f64, start: u64) {
        let at = start + (index as f64 / rate * 1e9) as u64;
        let now = self.now();
        if at > now {
            std::thread::sleep(Duration::from_nanos(at - now));
        }
        self.intended[index].store(at, Ordering::Relaxed);
    }

    /// Time since request `index`'s intended send time.
    pub fn latency(&self, index: usize) -> u64 {
        self.now()
            .saturating_sub(self.intended[index].load(Ordering::Relaxed))
    }
}

/// The schedule against a bare TCP echo over `sessions` connections: a
/// request of `request_bytes`, a reply of `reply_bytes` (both at least 8).
pub fn echo_phase(
    sessions: usize,
    rate: f64,
    count: usize,
    request_bytes: usize,
    reply_bytes: usize,
) -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(sessions) {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut request = vec![0u8; request_bytes];
                let mut reply = vec![0u8; reply_bytes];
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
            let mut reply = vec![0u8; reply_bytes];
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
    let mut request = vec![0x20u8; request_bytes];
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

/// A fresh pipeline in `dir` with symbol 0 (tick 100, lot 1, `price` as the
/// reference, a 10 % band) and accounts 1..=`accounts`, each funded with
/// plenty of cash and shares. `BROKERX_BENCH_WAIT` picks the engine's wait
/// strategy (default: park after 2,000 spins, 1 ms timeout).
pub fn bench_pipeline(dir: &Path, durable: bool, accounts: usize, price: u64) -> Arc<Pipeline> {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = PipelineConfig::new(dir.join("engine"));
    config.durable = durable;
    config.wait = match std::env::var("BROKERX_BENCH_WAIT").as_deref() {
        Ok(text) => WaitStrategy::parse(text).expect("spin, yield or park"),
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
            reference_price: price,
            band_bps: 1_000,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        },
    }];
    for n in 0..accounts {
        let account = AccountId(n as u32 + 1);
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
