//! `brokerx serve` with its metrics port: orders over OUCH, FIX, REST and
//! the test port move the counters; the scrape is strict Prometheus text
//! format; every metric the Grafana dashboard queries is exported; hostile
//! bytes on the metrics port get 4xx answers and the port keeps serving;
//! stderr is JSON lines carrying the correlation ids.

use brokerx_gateway_fix::codec as fix;
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::server::now_ms;
use brokerx_gateway_ouch::codec::{EnterOrder, Inbound};
use brokerx_soupbin::{Decoder, Packet};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_brokerx");

const CONFIG: &str = r#"
[server]
data_dir = "unused"

[ports]
test = 0
ouch = 0
fix = 0
http = 0
itch = 0
metrics = 0

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
shares = { ACME = 10000 }

[[accounts]]
id = 2
name = "b"
cash = 1000000000000
shares = { ACME = 10000 }

[[ouch_users]]
username = "ALICE"
password = "alice1"
account = 1

[[fix_sessions]]
sender_comp_id = "BRKX"
target_comp_id = "BOBFIX"
username = "bob"
password = "bob-fix"
account = 2
"#;

// ---------------------------------------------------------------- server

struct Server {
    child: Child,
    ports: BTreeMap<String, String>,
    stderr: Arc<Mutex<Vec<String>>>,
    _stdout: std::thread::JoinHandle<()>,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brokerx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `brokerx serve` with stdout and stderr captured.
fn start(dir: &Path, config: &Path) -> Server {
    start_logging(dir, config, "info")
}

/// `start` with `BROKERX_LOG` set to `log`.
fn start_logging(dir: &Path, config: &Path, log: &str) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .env("BROKERX_LOG", log)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start brokerx");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    {
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ports = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if let Some((name, rest)) = line.split_once(" port listening on ") {
            let at = rest.split_whitespace().next().unwrap_or_default();
            ports.insert(name.to_string(), at.to_string());
        }
        if line == "brokerx ready" {
            break;
        }
        assert!(Instant::now() < deadline, "server did not get ready");
    }
    let stdout = std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    Server {
        child,
        ports,
        stderr,
        _stdout: stdout,
    }
}

impl Server {
    fn port(&self, name: &str) -> &str {
        self.ports
            .get(name)
            .unwrap_or_else(|| panic!("{name} port printed"))
    }

    /// SIGTERM, clean exit, then every stderr line.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "clean shutdown");
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.stderr.lock().unwrap().clone();
        lines
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ HTTP

/// One HTTP exchange over a fresh connection: (status, body).
fn http(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

fn scrape(address: &str) -> Exposition {
    let (status, body) = http(
        address,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    match parse_exposition(&body) {
        Ok(parsed) => parsed,
        Err(error) => panic!("not Prometheus text format: {error}\n{body}"),
    }
}

// ---------------------------------------------- Prometheus text format

type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name to type.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Sample names, histogram suffixes included, plus family names.
    fn names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .map(|s| s.name.clone())
            .chain(self.types.keys().cloned())
            .collect()
    }

    /// The value of the one sample `name` whose labels include `want`.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
        found[0].value
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// `{a="x",b="y"}` (the braces already removed): strict, with the three
/// escapes the format allows.
fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {rest:?}"))?;
        if !valid_name(name) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {text:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((_, '\n')) => return Err("newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        if let Some(more) = rest.strip_prefix(',') {
            if more.is_empty() {
                return Err("trailing comma".into());
            }
            rest = more;
        } else if !rest.is_empty() {
            return Err(format!("junk after label value: {rest:?}"));
        }
    }
    Ok(labels)
}

/// A strict reader of the Prometheus text exposition format (0.0.4): every
/// line is HELP, TYPE or a sample; a family's TYPE comes once, before its
/// samples, and its samples are contiguous; histogram samples are
/// `_bucket` (with `le`), `_sum` and `_count`, buckets are cumulative and
/// end with `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    for (number, line) in text.lines().enumerate() {
        let error = |what: String| format!("line {}: {what}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid_name(name) {
                return Err(error("bad HELP name".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| error("TYPE without type".into()))?;
            if !valid_name(name)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(error("bad TYPE".into()));
            }
            if out.types.insert(name.into(), kind.into()).is_some() {
                return Err(error("TYPE twice".into()));
            }
            if let Some(previous) = current.replace(name.to_string()) {
                finished.insert(previous);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Err(error("unexpected comment or blank line".into()));
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| error("sample without value".into()))?;
        let value = parse_value(value).map_err(error)?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| error("unclosed labels".into()))?;
                (name, parse_labels(inner).map_err(error)?)
            }
            None => (series, Labels::new()),
        };
        if !valid_name(name) {
            return Err(error("bad metric name".into()));
        }
        let family = current
            .clone()
            .ok_or_else(|| error("sample before any TYPE".into()))?;
        let kind = out.types[&family].as_str();
        let belongs = match kind {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str())),
            _ => name == family,
        };
        if !belongs || finished.contains(name) {
            return Err(error(format!("sample outside its family {family}")));
        }
        if kind == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(error("bucket without le".into()));
        }
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(error("negative counter".into()));
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histogram series: cumulative buckets ending in +Inf == _count.
    for (family, kind) in &out.types {
        if kind != "histogram" {
            continue;
        }
        type Key = Vec<(String, String)>;
        let mut series: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
        for sample in &out.samples {
            let mut key: Labels = sample.labels.clone();
            let le = key.remove("le");
            let key: Vec<(String, String)> = key.into_iter().collect();
            if sample.name == format!("{family}_bucket") {
                let le = parse_value(&le.unwrap_or_default())?;
                series.entry(key).or_default().push((le, sample.value));
            } else if sample.name == format!("{family}_count") {
                counts.insert(key, sample.value);
            }
        }
        for (key, buckets) in &series {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!("{family} {key:?}: buckets not cumulative"));
            }
            let last = buckets.last().expect("one bucket at least");
            if last.0 != f64::INFINITY || Some(&last.1) != counts.get(key) {
                return Err(format!("{family} {key:?}: +Inf bucket is not _count"));
            }
        }
    }
    Ok(out)
}

#[test]
fn the_strict_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"q\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let parsed = parse_exposition(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("x", "1\"q")]), 3.0);
    for bad in [
        "a 1\n",
        "# TYPE a counter\na 1",
        "# TYPE a counter\na{x=\"1\",} 1\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\nb 1\n",
        "# TYPE a counter\na -1\n",
        "# TYPE a counter\n# TYPE a counter\n",
        "# TYPE a wobbly\n",
        "# TYPE a counter\n\na 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 2\n",
        "# TYPE h histogram\nh_bucket 1\n",
        "# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na 2\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ------------------------------------------------------------ clients

fn pad<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

struct Ouch {
    stream: TcpStream,
    decoder: Decoder,
}

impl Ouch {
    fn login(address: &str, user: &str, password: &str) -> Ouch {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let login = Packet::LoginRequest {
            username: pad(user),
            password: pad(password),
            requested_session: [b' '; 10],
            requested_sequence_number: 1,
        };
        stream.write_all(&login.to_bytes().unwrap()).unwrap();
        let mut session = Ouch {
            stream,
            decoder: Decoder::new(1024),
        };
        match session.next_packet() {
            Packet::LoginAccepted { .. } => session,
            other => panic!("login refused: {other:?}"),
        }
    }

    fn next_packet(&mut self) -> Packet {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                return packet;
            }
            assert!(Instant::now() < deadline, "no OUCH packet");
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => panic!("connection closed"),
                Ok(n) => self.decoder.feed(&buffer[..n]),
                Err(_) => continue,
            }
        }
    }

    /// The type of the next sequenced message.
    fn next_kind(&mut self) -> char {
        loop {
            match self.next_packet() {
                Packet::SequencedData(bytes) => return bytes[0] as char,
                Packet::ServerHeartbeat => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn enter(&mut self, token: &str, side: u8, shares: u32, price: u32) {
        let order = Inbound::Enter(EnterOrder {
            token: pad(token),
            side,
            shares,
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
        let packet = Packet::UnsequencedData(order.to_bytes());
        self.stream.write_all(&packet.to_bytes().unwrap()).unwrap();
    }
}

struct Fix {
    stream: TcpStream,
    buffer: Vec<u8>,
    seq: u64,
}

impl Fix {
    fn send(&mut self, msg_type: &[u8], body: &[(u32, &str)]) {
        let seq = self.seq.to_string();
        let now = format_utc_timestamp(now_ms());
        let header: [(u32, &[u8]); 4] = [
            (34, seq.as_bytes()),
            (49, b"BOBFIX"),
            (52, now.as_bytes()),
            (56, b"BRKX"),
        ];
        let body: Vec<(u32, &[u8])> = body.iter().map(|(t, v)| (*t, v.as_bytes())).collect();
        let bytes = fix::encode(b"FIX.4.4", msg_type, &header, &body);
        self.stream.write_all(&bytes).unwrap();
        self.seq += 1;
    }

    /// The next message whose MsgType is `want` (others are skipped).
    fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let fix::Frame::Message { len } = fix::next_frame(&self.buffer, 65_536) {
                let frame: Vec<u8> = self.buffer.drain(..len).collect();
                let text = String::from_utf8_lossy(&frame).replace('\x01', "|");
                if text.contains(&format!("|35={want}|")) {
                    return text;
                }
                continue;
            }
            assert!(Instant::now() < deadline, "no FIX {want}");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("FIX connection closed"),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(_) => continue,
            }
        }
    }

    fn logon(address: &str) -> Fix {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut session = Fix {
            stream,
            buffer: Vec::new(),
            seq: 1,
        };
        session.send(
            b"A",
            &[(98, "0"), (108, "30"), (553, "bob"), (554, "bob-fix")],
        );
        session.expect("A");
        session
    }
}

/// Sends one line to the test port and waits for its first reply line.
fn test_port(address: &str, line: &str) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    assert!(!reply.is_empty(), "test port answered {line:?}");
}

// ------------------------------------------------------------ dashboard

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every `expr` in the dashboard, wherever it sits.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "expr" {
                    out.push(value.as_str().expect("expr is a string").to_string());
                } else {
                    exprs(value, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `brokerx_*` metric names a PromQL expression references.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            // A string literal (a label value or regex): skip it whole.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b':'))
                .map_or(bytes.len(), |n| i + n);
            let word = &expr[i..end];
            if word.starts_with("brokerx_") {
                names.push(word.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(brokerx_a_bucket[$__rate_interval]))) / brokerx_b{x=\"brokerx_c\"}"
        ),
        vec!["brokerx_a_bucket", "brokerx_b"],
        "label values in quotes are not names"
    );
}

// ---------------------------------------------------------------- test

#[test]
fn serve_exports_metrics_the_dashboard_uses_and_logs_json_lines() {
    let root = temp_dir("metrics");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start(&root.join("data"), &config);
    let metrics = server.port("metrics").to_string();

    let before = scrape(&metrics);
    let commands_before = before.value("brokerx_engine_commands_total", &[]);
    assert!(
        commands_before >= 4.0,
        "the bootstrap went through the engine"
    );
    assert_eq!(
        before.value("brokerx_gateway_sessions", &[("gateway", "ouch")]),
        0.0
    );

    // OUCH: one order rests, one has a bad side (refused by the gateway).
    let mut alice = Ouch::login(server.port("ouch"), "ALICE", "alice1");
    assert_eq!(alice.next_kind(), 'S');
    alice.enter("TOKGOOD1", b'S', 10, 1_010_000);
    assert_eq!(alice.next_kind(), 'A');
    alice.enter("TOKBAD77", b'Z', 10, 1_010_000);
    assert_eq!(alice.next_kind(), 'J');

    // FIX: logon, one resting buy.
    let mut bob = Fix::logon(server.port("fix"));
    bob.send(
        b"D",
        &[
            (11, "CLORD-7"),
            (21, "1"),
            (55, "ACME"),
            (54, "1"),
            (60, &format_utc_timestamp(now_ms())),
            (38, "5"),
            (40, "2"),
            (44, "99"),
        ],
    );
    let report = bob.expect("8");
    assert!(report.contains("|11=CLORD-7|"), "{report}");

    // ITCH over SoupBinTCP: one feed client logged in.
    let feed = Ouch::login(server.port("itch"), "ANY", "ANY");

    // Test port: an unknown account is a risk reject (code 101).
    test_port(server.port("test"), "NEW 77 0 BUY LIMIT GTC 990000 1");

    // REST: a 404 with our request id, and /metrics on the REST port.
    let (status, _) = http(
        server.port("http"),
        b"GET /api/v1/nothing-here HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-metrics-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    let (status, rest_text) = http(
        server.port("http"),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let rest_scrape = parse_exposition(&rest_text).expect("REST /metrics is exposition text");
    assert!(rest_scrape
        .types
        .contains_key("brokerx_engine_commands_total"));

    // The books are published at most once a second.
    std::thread::sleep(Duration::from_millis(1_300));
    let after = scrape(&metrics);
    let value = |name: &str, labels: &[(&str, &str)]| after.value(name, labels);
    assert!(value("brokerx_engine_commands_total", &[]) >= commands_before + 3.0);
    assert!(
        value("brokerx_journal_records_written_total", &[])
            >= value("brokerx_engine_commands_total", &[])
    );
    assert!(value("brokerx_journal_bytes_written_total", &[]) > 0.0);
    assert!(value("brokerx_journal_fsync_seconds_count", &[]) >= 1.0);
    assert_eq!(value("brokerx_journal_durable_lag", &[]), 0.0);
    assert_eq!(
        value("brokerx_engine_rejects_total", &[("code", "101")]),
        1.0
    );
    assert_eq!(
        value("brokerx_book_open_orders", &[("symbol", "ACME")]),
        2.0
    );
    assert_eq!(
        value(
            "brokerx_book_depth_levels",
            &[("symbol", "ACME"), ("side", "bid")]
        ),
        1.0
    );
    let ouch = |name: &str, extra: (&str, &str)| value(name, &[("gateway", "ouch"), extra]);
    assert_eq!(
        ouch(
            "brokerx_gateway_messages_received_total",
            ("type", "enter_order")
        ),
        2.0
    );
    assert_eq!(
        ouch("brokerx_gateway_messages_sent_total", ("type", "accepted")),
        1.0
    );
    assert_eq!(
        ouch("brokerx_gateway_errors_total", ("code", "invalid_side")),
        1.0
    );
    assert_eq!(
        value("brokerx_gateway_sessions", &[("gateway", "ouch")]),
        1.0
    );
    assert_eq!(
        value("brokerx_gateway_sessions", &[("gateway", "fix")]),
        1.0
    );
    assert_eq!(
        value("brokerx_gateway_sessions", &[("gateway", "itch")]),
        1.0
    );
    assert!(
        value(
            "brokerx_gateway_messages_sent_total",
            &[("gateway", "itch"), ("type", "soup_message")]
        ) >= 1.0,
        "the feed client got the day's messages"
    );
    assert_eq!(
        value(
            "brokerx_gateway_latency_seconds_count",
            &[("gateway", "ouch")]
        ),
        1.0,
        "the accepted order's round trip (the refused one never reached the engine)"
    );
    assert_eq!(
        value(
            "brokerx_gateway_latency_seconds_count",
            &[("gateway", "fix")]
        ),
        1.0
    );
    let fix = |kind: &str| {
        value(
            "brokerx_gateway_messages_received_total",
            &[("gateway", "fix"), ("type", kind)],
        )
    };
    assert_eq!((fix("logon"), fix("new_order_single")), (1.0, 1.0));
    assert_eq!(
        value(
            "brokerx_gateway_errors_total",
            &[("gateway", "rest"), ("code", "404")]
        ),
        1.0
    );
    assert!(
        value(
            "brokerx_gateway_messages_received_total",
            &[("gateway", "rest"), ("type", "GET /metrics")]
        ) >= 1.0,
        "REST requests are labelled by route template"
    );

    // The dashboard: valid JSON, panels for every group, and every metric
    // it queries is exported.
    let text = std::fs::read_to_string(repo_file("deploy/grafana/brokerx.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(dashboard["title"].is_string() && dashboard["schemaVersion"].is_number());
    let mut all = Vec::new();
    for panel in panels {
        if panel["type"] == "row" {
            continue;
        }
        let mut found = Vec::new();
        exprs(panel, &mut found);
        assert!(!found.is_empty(), "panel {} has no query", panel["title"]);
        all.extend(found);
    }
    let exported = after.names();
    let mut referenced = BTreeSet::new();
    for expr in &all {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "the dashboard queries {name} ({expr}), which is not exported"
            );
            if let Some(family) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| after.types.contains_key(*f))
            {
                assert_eq!(after.types[family], "histogram", "{name}");
            }
            referenced.insert(name);
        }
    }
    for group in [
        "brokerx_gateway_messages_received_total",
        "brokerx_gateway_errors_total",
        "brokerx_gateway_latency_seconds_bucket",
        "brokerx_gateway_sessions",
        "brokerx_gateway_slow_consumer_disconnects_total",
        "brokerx_engine_commands_total",
        "brokerx_engine_batch_size_bucket",
        "brokerx_engine_service_seconds_bucket",
        "brokerx_engine_ring_depth",
        "brokerx_book_open_orders",
        "brokerx_book_depth_levels",
        "brokerx_journal_fsync_seconds_bucket",
        "brokerx_journal_bytes_written_total",
        "brokerx_journal_durable_lag",
        "brokerx_engine_rejects_total",
    ] {
        assert!(referenced.contains(group), "no panel shows {group}");
    }
    let scrape_config =
        std::fs::read_to_string(repo_file("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(scrape_config.contains("\"127.0.0.1:9464\"") && scrape_config.contains("/metrics"));

    // Hostile bytes on the metrics port: a 4xx (or 5xx for HTTP/2) each,
    // and the port keeps serving.
    let huge_header = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"\x00\x01\x02 hello\r\n\r\n".to_vec(), 400),
        ("not UTF-8", b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("no version", b"GET /metrics\r\n\r\n".to_vec(), 400),
        (
            "header without colon",
            b"GET /metrics HTTP/1.1\r\nbroken\r\n\r\n".to_vec(),
            400,
        ),
        (
            "wrong method",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
        ),
        ("DELETE", b"DELETE /metrics HTTP/1.1\r\n\r\n".to_vec(), 405),
        ("wrong path", b"GET /admin HTTP/1.1\r\n\r\n".to_vec(), 404),
        ("HTTP/2", b"GET /metrics HTTP/2.0\r\n\r\n".to_vec(), 505),
        ("huge header", huge_header.into_bytes(), 431),
    ];
    for (what, bytes, expected) in &cases {
        let (status, _) = http(&metrics, bytes);
        assert_eq!(status, *expected, "{what}");
        scrape(&metrics);
    }
    // Slowloris: a request head that never ends is answered 408 within
    // the read deadline, and scrapes are served meanwhile.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(&metrics).unwrap();
            stream.write_all(b"GET /metr").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            stream
        })
        .collect();
    scrape(&metrics);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "scrape not held up"
    );
    for stream in &mut slow {
        let _ = stream.write_all(b"i");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "bounded by the deadline"
    );
    // A client that connects and leaves.
    drop(TcpStream::connect(&metrics).unwrap());
    scrape(&metrics);

    // Logs: JSON lines with the correlation ids.
    drop(alice);
    drop(bob);
    drop(feed);
    std::thread::sleep(Duration::from_millis(300));
    let lines = server.stop();
    let mut parsed = Vec::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(value[field].is_string(), "{field} missing: {line}");
        }
        parsed.push(value);
    }
    let find = |message: &str, fields: &[(&str, &str)]| {
        parsed.iter().find(|v| {
            v["message"] == message && fields.iter().all(|(k, want)| v[*k].as_str() == Some(*want))
        })
    };
    assert!(
        find("logon", &[("gateway", "fix"), ("session", "BOBFIX->BRKX")]).is_some(),
        "FIX logon line: {lines:#?}"
    );
    assert!(
        find(
            "message rejected",
            &[
                ("gateway", "ouch"),
                ("session", "ALICE"),
                ("token", "TOKBAD77"),
                ("reason", "invalid_side")
            ]
        )
        .is_some(),
        "OUCH reject line: {lines:#?}"
    );
    assert!(
        find(
            "login accepted",
            &[("gateway", "ouch"), ("session", "ALICE")]
        )
        .is_some(),
        "{lines:#?}"
    );
    let refused = find(
        "request refused",
        &[("gateway", "rest"), ("request_id", "req-metrics-1")],
    )
    .expect("REST line with the request id");
    assert_eq!(refused["status"], 404);
    assert!(
        find("logout", &[("gateway", "fix")]).is_some(),
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// `BROKERX_LOG` directives filter per target: with `warn` as the default
/// and `brokerx::serve=info`, serve's own info lines are written and a
/// gateway's are not. A directive naming no level stops serve at start.
#[test]
fn log_directives_filter_per_target() {
    let root = temp_dir("log-targets");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start_logging(&root.join("data"), &config, "warn,brokerx::serve=info");
    let mut alice = Ouch::login(server.port("ouch"), "ALICE", "alice1");
    assert_eq!(alice.next_kind(), 'S');
    drop(alice);
    std::thread::sleep(Duration::from_millis(300));
    let lines = server.stop();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        parsed
            .iter()
            .any(|v| v["message"] == "brokerx ready" && v["target"] == "brokerx::serve"),
        "serve's info line: {lines:#?}"
    );
    for value in &parsed {
        if value["level"] == "INFO" || value["level"] == "DEBUG" {
            assert!(
                value["target"]
                    .as_str()
                    .unwrap()
                    .starts_with("brokerx::serve"),
                "below warn from another target: {value}"
            );
        }
    }

    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(root.join("data2"))
        .env("BROKERX_LOG", "info,brokerx=loud")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success(), "a bad directive stops serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("names no level"), "{stderr}");
}
