//! Helpers shared by the end-to-end tests: start `brokerx serve` as a
//! child process, wait for `brokerx ready`, run operator commands.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_brokerx");

pub struct Server {
    pub child: Child,
    pub address: String,
    /// Every `<name> port listening on <address>` line, by name.
    pub ports: std::collections::BTreeMap<String, String>,
    /// Lines the server printed after `brokerx ready`.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Lines it printed before.
    pub startup: Vec<String>,
}

/// A test that fails must not leave its server running (it would hold the
/// test's output pipe open): the child is killed when dropped.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path, config: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start brokerx");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let mut ports = std::collections::BTreeMap::new();
    let mut startup = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        startup.push(line.clone());
        if let Some((name, rest)) = line.split_once(" port listening on ") {
            let at = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if name == "test" {
                address = Some(at.clone());
            }
            ports.insert(name.to_string(), at);
        }
        if line == "brokerx ready" {
            break;
        }
        assert!(Instant::now() < deadline, "server did not get ready");
    }
    // Keep draining stdout so the server never blocks on it.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Server {
        child,
        address: address.expect("test port address printed"),
        lines: receiver,
        ports,
        startup,
    }
}

/// The tag in an event line (`... tag: 17 }`), if the event carries one.
pub fn tag_of(line: &str) -> Option<u64> {
    let rest = &line[line.find("tag: ")? + 5..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn run(args: &[&str], dir: &Path) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "brokerx {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brokerx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops a server with SIGTERM and returns what it printed on the way out.
pub fn terminate(mut server: Server) -> Vec<String> {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        server.child.wait().unwrap().success(),
        "clean shutdown exits 0"
    );
    // The forwarding thread ends at EOF, which disconnects the channel.
    let mut printed = Vec::new();
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(10)) {
        printed.push(line);
    }
    printed
}

/// One HTTP/1.1 request (`Connection: close`); the status and the JSON
/// body (`Null` when there is none).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// One line on the operator/test port; the reply up to its `END` line.
pub fn test_port(address: &str, line: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    let mut buffer = [0u8; 4096];
    while !reply.contains("END seq=") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "test port closed: {reply}");
        reply.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    reply
}

/// Registers a REST user, verifies it with the passcode from the dev
/// mailbox, logs in and deposits `deposit` (a decimal string): its access
/// token and account id.
pub fn rest_user(http_addr: &str, email: &str, deposit: &str) -> (String, u64) {
    let (status, _) = http(
        http_addr,
        "POST",
        "/api/v1/auth/register",
        None,
        &[],
        Some(
            serde_json::json!({"email": email, "password": "long enough pw", "name": "Test User"}),
        ),
    );
    assert_eq!(status, 201);
    let (_, mail) = http(
        http_addr,
        "GET",
        &format!("/api/v1/dev/mailbox?email={email}"),
        None,
        &[],
        None,
    );
    let text = mail["messages"][0]["body"].as_str().unwrap().to_string();
    let code: String = text
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6 && w.bytes().take(6).all(|b| b.is_ascii_digit())
        })
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    let (status, body) = http(
        http_addr,
        "POST",
        "/api/v1/auth/verify",
        None,
        &[],
        Some(serde_json::json!({"email": email, "passcode": code})),
    );
    assert_eq!(status, 200, "{body}");
    let account = body["account_id"].as_u64().unwrap();
    assert!(account > 1, "REST accounts start above the configured ones");
    let (_, body) = http(
        http_addr,
        "POST",
        "/api/v1/auth/login",
        None,
        &[],
        Some(serde_json::json!({"email": email, "password": "long enough pw"})),
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = http(
        http_addr,
        "POST",
        "/api/v1/wallet/deposit",
        Some(&token),
        &[("Idempotency-Key", "d1")],
        Some(serde_json::json!({ "amount": deposit })),
    );
    assert_eq!(status, 201, "{body}");
    (token, account)
}

/// A pseudo-random pause of `min_ms` up to `min_ms + max_ms` (xorshift on
/// `seed`): the kill tests' seeded moments.
pub fn jitter(seed: &mut u64, min_ms: u64, max_ms: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(min_ms + *seed % max_ms)
}
