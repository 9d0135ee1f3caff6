//! Test harness: a real pipeline in a temporary directory, the REST
//! gateway on a loopback port, a minimal blocking HTTP/1.1 client and a
//! minimal WebSocket client (both over std TCP sockets).
#![allow(dead_code)]

use brokerx_engine::pipeline::{Pipeline, PipelineConfig};
use brokerx_engine::{AccountId, Command, EngineConfig, SymbolId, SymbolSpec};
use brokerx_gateway_rest::{RestConfig, RestServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "brokerx-rest-{name}-{}-{}",
        std::process::id(),
        brokerx_gateway_rest::time::now_ns()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Harness {
    pub dir: PathBuf,
    /// Keep the directory when dropped (for a restart on it).
    keep: bool,
    pub pipeline: Arc<Pipeline>,
    pub server: Option<RestServer>,
    pub addr: SocketAddr,
}

/// AAPL: tick 0.01, lot 1, reference 190.00, band 10%; fees 0.002/0.003.
/// MSFT: tick 0.01, lot 10.
pub fn symbols() -> Vec<(u32, &'static str, SymbolSpec)> {
    vec![
        (
            0,
            "AAPL",
            SymbolSpec {
                tick_size: 100,
                lot_size: 1,
                reference_price: 1_900_000,
                band_bps: 1000,
                maker_fee_per_share: 20,
                taker_fee_per_share: 30,
            },
        ),
        (
            1,
            "MSFT",
            SymbolSpec {
                tick_size: 100,
                lot_size: 10,
                reference_price: 4_200_000,
                band_bps: 1000,
                maker_fee_per_share: 0,
                taker_fee_per_share: 0,
            },
        ),
    ]
}

pub fn config(dir: &std::path::Path) -> RestConfig {
    let mut config = RestConfig::new(dir.to_path_buf());
    config.symbols = symbols()
        .into_iter()
        .map(|(id, name, _)| (id, name.to_string()))
        .collect::<BTreeMap<_, _>>();
    config.symbol_specs = symbols()
        .into_iter()
        .map(|(id, _, spec)| (id, spec))
        .collect();
    config.jwt_secret = b"test-secret".to_vec();
    config
}

impl Harness {
    pub fn start(name: &str) -> Harness {
        Harness::start_with(name, |_| {})
    }

    pub fn start_with(name: &str, tweak: impl FnOnce(&mut RestConfig)) -> Harness {
        let dir = temp_dir(name);
        Harness::open(dir, tweak, true)
    }

    /// Starts on `dir` (bootstrapping the symbols if `bootstrap`).
    pub fn open(dir: PathBuf, tweak: impl FnOnce(&mut RestConfig), bootstrap: bool) -> Harness {
        Harness::open_full(dir, tweak, bootstrap, |_| {})
    }

    /// Like [`Harness::open`], with the pipeline's config adjusted too.
    pub fn open_full(
        dir: PathBuf,
        tweak: impl FnOnce(&mut RestConfig),
        bootstrap: bool,
        pipeline_tweak: impl FnOnce(&mut PipelineConfig),
    ) -> Harness {
        Harness::open_after(dir, tweak, bootstrap, pipeline_tweak, |_| {})
    }

    /// Like [`Harness::open_full`], running `before_gateway` on the started
    /// pipeline before the gateway connects to it.
    pub fn open_after(
        dir: PathBuf,
        tweak: impl FnOnce(&mut RestConfig),
        bootstrap: bool,
        pipeline_tweak: impl FnOnce(&mut PipelineConfig),
        before_gateway: impl FnOnce(&Pipeline),
    ) -> Harness {
        let mut pipeline_config = PipelineConfig::new(dir.clone());
        pipeline_config.durable = false;
        pipeline_tweak(&mut pipeline_config);
        let pipeline = Arc::new(Pipeline::start(pipeline_config, EngineConfig::default()).unwrap());
        before_gateway(&pipeline);
        let mut config = config(&dir);
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = RestServer::start(listener, pipeline.clone(), config).unwrap();
        let addr = server.local_addr();
        let harness = Harness {
            keep: false,
            dir,
            pipeline,
            server: Some(server),
            addr,
        };
        if bootstrap && harness.pipeline.recovered.last_seq == 0 {
            let commands: Vec<Command> = symbols()
                .into_iter()
                .map(|(id, _, spec)| Command::AddSymbol {
                    symbol: SymbolId(id),
                    spec,
                })
                .collect();
            harness.engine(&commands);
        }
        harness
    }

    /// Submits operator commands directly to the pipeline and waits.
    pub fn engine(&self, commands: &[Command]) {
        submit_and_wait(&self.pipeline, commands);
        // Let the gateway's bridge fold the events in.
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn give_shares(&self, account: u32, symbol: u32, qty: u64) {
        self.engine(&[Command::DepositShares {
            account: AccountId(account),
            symbol: SymbolId(symbol),
            qty,
            tag: 0,
        }]);
    }

    /// Stops the gateway and the pipeline, keeping the directory.
    pub fn stop(mut self) -> PathBuf {
        self.keep = true;
        self.dir.clone()
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            token: None,
            headers: Vec::new(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        self.pipeline.shutdown();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn with_token(&self, token: &str) -> Client {
        let mut client = self.clone();
        client.token = Some(token.to_string());
        client
    }

    /// The same credentials against another server address.
    pub fn clone_to(&self, addr: SocketAddr) -> Client {
        let mut client = self.clone();
        client.addr = addr;
        client
    }

    pub fn anonymous(&self) -> Client {
        Client {
            addr: self.addr,
            token: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut client = self.clone();
        client.headers.push((name.to_string(), value.to_string()));
        client
    }

    pub fn raw(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (k, v) in &self.headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in extra {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse_reply(&raw)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, &[], &bytes)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body))
    }

    pub fn post_idem(&self, path: &str, key: &str, body: Value) -> Reply {
        self.raw(
            "POST",
            path,
            &[("Idempotency-Key", key)],
            body.to_string().as_bytes(),
        )
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// Registers, verifies via the dev mailbox, logs in: (client, account).
pub fn verified_client(h: &Harness, email: &str) -> (Client, u32) {
    let client = h.client();
    let r = client.post(
        "/api/v1/auth/register",
        json!({"email": email, "password": "correct horse battery", "name": "Test User"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let code = passcode(h, email);
    let r = client.post(
        "/api/v1/auth/verify",
        json!({"email": email, "passcode": code}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let account = r.body["account_id"].as_u64().unwrap() as u32;
    let r = client.post(
        "/api/v1/auth/login",
        json!({"email": email, "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["access_token"].as_str().unwrap().to_string();
    (client.with_token(&token), account)
}

/// The newest passcode in the dev mailbox for `email`.
pub fn passcode(h: &Harness, email: &str) -> String {
    let r = h
        .client()
        .get(&format!("/api/v1/dev/mailbox?email={email}"));
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.body["messages"][0]["body"]
        .as_str()
        .expect("a message")
        .to_string();
    body.split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').bytes().all(|b| b.is_ascii_digit())
        })
        .map(|w| w.trim_end_matches('.').to_string())
        .expect("a passcode in the mail")
}

pub fn deposit(client: &Client, amount: &str) -> Reply {
    client.post_idem(
        "/api/v1/wallet/deposit",
        &format!("dep-{}", brokerx_gateway_rest::time::now_ns()),
        json!({"amount": amount}),
    )
}

// ---- a minimal WebSocket client (RFC 6455), text frames only ----

pub struct Ws {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Ws {
    pub fn connect(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Ws {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in extra {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 101 "), "upgrade refused: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Ws { stream, reader }
    }

    pub fn send(&mut self, value: &Value) {
        let payload = value.to_string().into_bytes();
        let mut frame = vec![0x81u8];
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next text message, or None on timeout/close.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).ok()?;
            let opcode = head[0] & 0x0f;
            let mut len = (head[1] & 0x7f) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).ok()?;
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload).ok()?;
            match opcode {
                0x1 | 0x2 => return serde_json::from_slice(&payload).ok(),
                0x8 => return None,
                _ => continue,
            }
        }
    }

    /// Reads until `pred` matches (skipping others), within the timeout.
    pub fn recv_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let message = self.recv().expect("a WebSocket message before the timeout");
            if pred(&message) {
                return message;
            }
        }
        panic!("no matching WebSocket message");
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// Submits `commands` through a session of their own and waits until the
/// engine has answered each.
pub fn submit_and_wait(pipeline: &Pipeline, commands: &[Command]) {
    let (submitter, handle) = pipeline.connect(&[], false);
    for command in commands {
        submitter.submit(*command).unwrap();
    }
    let mut done = 0;
    while done < commands.len() {
        let output = handle
            .receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("engine reply");
        if output.last {
            done += 1;
        }
    }
    pipeline.disconnect(handle.id);
}
