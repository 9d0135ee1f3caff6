//! REST order-entry benchmark on loopback: closed-loop keep-alive HTTP/1.1
//! clients place orders (`POST /api/v1/orders`, authenticated, through
//! the engine with its journal) and, in the same run against the same
//! server, call a trivial endpoint (`GET /health`: same router and
//! middleware, no engine). Reports throughput and latency percentiles
//! (HdrHistogram) for both and their ratio.
//!
//! `cargo run --release -p brokerx-gateway-rest --example rest_bench -- [--clients 8] [--secs 5] [--durability fsync|none]`

use brokerx_engine::pipeline::{Pipeline, PipelineConfig};
use brokerx_engine::{AccountId, Command, EngineConfig, SymbolId, SymbolSpec};
use brokerx_gateway_rest::{RestConfig, RestServer};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn request(&mut self, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut out = Vec::with_capacity(head.len() + body.len() + 32);
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        self.writer.write_all(&out).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, body)
    }
}

fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut conn = Conn::open(addr);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: bench-{}\r\n{auth}", brokerx_gateway_rest::time::now_ns());
    let (status, body) = conn.request(&head, body.to_string().as_bytes());
    assert!(
        status < 300,
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

struct Phase {
    name: &'static str,
    count: u64,
    secs: f64,
    hist: Histogram<u64>,
    errors: u64,
}

fn run_phase(
    name: &'static str,
    addr: SocketAddr,
    clients: usize,
    secs: u64,
    make: Arc<dyn Fn(usize, u64) -> (String, Vec<u8>) + Send + Sync>,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let make = make.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut errors = 0u64;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let (head, body) = make(client, i);
                    let t = Instant::now();
                    let (status, _) = conn.request(&head, &body);
                    hist.record(t.elapsed().as_micros().max(1) as u64).unwrap();
                    if status >= 300 {
                        errors += 1;
                    }
                    i += 1;
                }
                (hist, errors)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    for handle in handles {
        let (h, e) = handle.join().unwrap();
        hist.add(&h).unwrap();
        errors += e;
    }
    Phase {
        name,
        count: hist.len(),
        secs: started.elapsed().as_secs_f64(),
        hist,
        errors,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let clients: usize = arg("--clients", "8").parse().unwrap();
    let secs: u64 = arg("--secs", "5").parse().unwrap();
    let durable = arg("--durability", "fsync") == "fsync";

    let dir = std::env::temp_dir().join(format!("brokerx-rest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut pipeline_config = PipelineConfig::new(dir.clone());
    pipeline_config.durable = durable;
    let pipeline = Arc::new(Pipeline::start(pipeline_config, EngineConfig::default()).unwrap());
    let spec = SymbolSpec {
        tick_size: 100,
        lot_size: 1,
        reference_price: 1_900_000,
        band_bps: 1000,
        maker_fee_per_share: 20,
        taker_fee_per_share: 30,
    };
    let mut config = RestConfig::new(dir.clone());
    config.symbols.insert(0, "AAPL".into());
    config.symbol_specs.insert(0, spec);
    config.rate_per_ip = 10_000_000;
    config.rate_per_account = 10_000_000;
    config.wallet.max_deposit = u64::MAX / 4;
    config.wallet.max_wallet = u64::MAX / 4;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = RestServer::start(listener, pipeline.clone(), config).unwrap();
    let addr = server.local_addr();
    {
        let (submitter, handle) = pipeline.connect(&[], false);
        submitter
            .submit(Command::AddSymbol {
                symbol: SymbolId(0),
                spec,
            })
            .unwrap();
        handle
            .receiver
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        pipeline.disconnect(handle.id);
    }
    std::thread::sleep(Duration::from_millis(100));

    // One verified, funded client (the dev mailbox gives the passcode).
    call(
        addr,
        "POST",
        "/api/v1/auth/register",
        None,
        json!({"email": "bench@example.com", "password": "benchmark password", "name": "Bench"}),
    );
    let mail = call(
        addr,
        "GET",
        "/api/v1/dev/mailbox?email=bench@example.com",
        None,
        Value::Null,
    );
    let text = mail["messages"][0]["body"].as_str().unwrap().to_string();
    let code = text
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_string();
    call(
        addr,
        "POST",
        "/api/v1/auth/verify",
        None,
        json!({"email": "bench@example.com", "passcode": code}),
    );
    let tokens = call(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"email": "bench@example.com", "password": "benchmark password"}),
    );
    let token = tokens["access_token"].as_str().unwrap().to_string();
    call(
        addr,
        "POST",
        "/api/v1/wallet/deposit",
        Some(&token),
        json!({"amount": "100000000"}),
    );
    let _ = AccountId(0);

    let health: Arc<dyn Fn(usize, u64) -> (String, Vec<u8>) + Send + Sync> = Arc::new(|_, _| {
        (
            "GET /health HTTP/1.1\r\nHost: x\r\n".to_string(),
            Vec::new(),
        )
    });
    let order_head = format!(
        "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
    );
    // Immediate-or-cancel buys below the band's middle: accepted, then the
    // remainder cancelled (nothing rests, so the book does not grow).
    let orders: Arc<dyn Fn(usize, u64) -> (String, Vec<u8>) + Send + Sync> = Arc::new(
        move |client, i| {
            let price = 180 + (i + client as u64) % 5;
            let body = format!(
                r#"{{"symbol":"AAPL","side":"buy","type":"limit","time_in_force":"ioc","limit_price":"{price}.00","qty":"1"}}"#
            );
            (order_head.clone(), body.into_bytes())
        },
    );

    // The same orders, each with its own client order id (recorded in
    // SQLite before it is submitted, so it survives a crash).
    let with_ids_head = format!(
        "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
    );
    let orders_with_ids: Arc<dyn Fn(usize, u64) -> (String, Vec<u8>) + Send + Sync> = Arc::new(
        move |client, i| {
            let price = 180 + (i + client as u64) % 5;
            let body = format!(
                r#"{{"symbol":"AAPL","side":"buy","type":"limit","time_in_force":"ioc","limit_price":"{price}.00","qty":"1","client_order_id":"c{client}-{i}"}}"#
            );
            (with_ids_head.clone(), body.into_bytes())
        },
    );

    // Warm up both, then measure: trivial, orders, trivial again.
    run_phase("warmup", addr, clients, 1, health.clone());
    run_phase("warmup", addr, clients, 1, orders.clone());
    let phases = [
        run_phase("GET /health (trivial)", addr, clients, secs, health.clone()),
        run_phase("POST /api/v1/orders", addr, clients, secs, orders),
        run_phase(
            "POST /api/v1/orders with client_order_id",
            addr,
            clients,
            secs,
            orders_with_ids,
        ),
    ];
    println!(
        "REST benchmark: {clients} keep-alive clients, {secs} s per phase, journal {}",
        if durable { "fsync" } else { "none (no fsync)" }
    );
    println!("| endpoint | requests/s | p50 µs | p99 µs | p99.9 µs | max µs | errors |");
    println!("|---|---|---|---|---|---|---|");
    for phase in &phases {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            phase.name,
            phase.count as f64 / phase.secs,
            phase.hist.value_at_quantile(0.5),
            phase.hist.value_at_quantile(0.99),
            phase.hist.value_at_quantile(0.999),
            phase.hist.max(),
            phase.errors
        );
    }
    let (trivial, orders) = (&phases[0], &phases[1]);
    println!(
        "ratio orders/trivial: throughput {:.2}, p50 {:.2}x, p99 {:.2}x",
        (orders.count as f64 / orders.secs) / (trivial.count as f64 / trivial.secs),
        orders.hist.value_at_quantile(0.5) as f64
            / trivial.hist.value_at_quantile(0.5).max(1) as f64,
        orders.hist.value_at_quantile(0.99) as f64
            / trivial.hist.value_at_quantile(0.99).max(1) as f64,
    );
    let stats = pipeline.stats();
    println!(
        "engine: {} commands in {} batches (group commit)",
        stats.commands.load(std::sync::atomic::Ordering::Relaxed),
        stats.batches.load(std::sync::atomic::Ordering::Relaxed)
    );
    server.shutdown();
    pipeline.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
