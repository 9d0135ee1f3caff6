//! REST over HTTP/1.1 keep-alive: `POST /api/v1/orders` (JWT bearer auth)
//! -> 201, `PATCH /api/v1/orders/{id}` -> 200, `DELETE
//! /api/v1/orders/{id}` -> 200. One connection per session, one request
//! in flight on it (no pipelining): each session sends its share of the
//! schedule at its intended times, and when an answer comes late the next
//! request goes out at once, its latency still counted from its intended
//! time (coordinated omission corrected, as wrk2 does).
//!
//! Each session is its own client (registered through the dev mailbox,
//! funded through the wallet) and connects from its own loopback source
//! address (127.0.0.2, .3, ...) when the server is on 127.0.0.1: the
//! gateway limits requests per client address and per account, and the
//! limits then apply per session.

use crate::flow::{decimal, Action, Book, Flow};
use crate::measure::{Outcome, Tracker, MARKETABLE};
use crate::progress::Progress;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `server`, from `source` when given.
    pub fn open(server: SocketAddr, source: Option<Ipv4Addr>) -> Result<Conn, String> {
        let stream = match source {
            Some(ip) => {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )
                .map_err(|e| format!("HTTP socket: {e}"))?;
                socket
                    .bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())
                    .map_err(|e| format!("HTTP bind {ip}: {e}"))?;
                socket
                    .connect(&server.into())
                    .map_err(|e| format!("HTTP {server}: connect: {e}"))?;
                TcpStream::from(socket)
            }
            None => {
                TcpStream::connect(server).map_err(|e| format!("HTTP {server}: connect: {e}"))?
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        Ok(Conn {
            reader: BufReader::new(
                stream
                    .try_clone()
                    .map_err(|e| format!("HTTP: clone socket: {e}"))?,
            ),
            writer: stream,
        })
    }

    /// One request and its answer: (status, body).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: loadgen\r\n{headers}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body);
        self.writer
            .write_all(&out)
            .map_err(|e| format!("HTTP send: {e}"))?;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("HTTP read: {e}"))?;
        if n == 0 {
            return Err("HTTP: connection closed by the server".into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("HTTP: bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("HTTP read: {e}"))?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader
                    .read_line(&mut line)
                    .map_err(|e| format!("HTTP read: {e}"))?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| format!("HTTP: bad chunk size {line:?}"))?;
                let mut chunk = vec![0u8; size + 2];
                self.reader
                    .read_exact(&mut chunk)
                    .map_err(|e| format!("HTTP read: {e}"))?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("HTTP read: {e}"))?;
        }
        Ok((status, body))
    }

    fn json(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &str,
        body: Value,
    ) -> Result<(u16, Value), String> {
        let mut headers = String::from("Content-Type: application/json\r\n");
        if let Some(token) = token {
            headers.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        headers.push_str(extra);
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, reply) = self.request(method, path, &headers, &bytes)?;
        Ok((
            status,
            serde_json::from_slice(&reply).unwrap_or(Value::Null),
        ))
    }
}

/// The source address of session `n` (127.0.0.2 upwards), when the
/// server listens on IPv4 loopback.
pub fn source_for(server: SocketAddr, n: usize) -> Option<Ipv4Addr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            Some(Ipv4Addr::new(127, 0, (n / 250) as u8, (2 + n % 250) as u8))
        }
        _ => None,
    }
}

/// One REST client with its connection, flow and orders.
pub struct RestSession {
    pub index: usize,
    pub conn: Conn,
    token: String,
    flow: Flow,
    book: Book,
    /// Order key -> the order's UUID.
    ids: HashMap<u64, String>,
}

/// Signs up, verifies, logs in and funds client `n`, on its own
/// connection.
pub fn setup(
    server: SocketAddr,
    index: usize,
    prefix: &str,
    flow: Flow,
    deposits: u32,
) -> Result<RestSession, String> {
    let mut conn = Conn::open(server, source_for(server, index))?;
    let email = format!(
        "loadgen-{}-{index}@example.com",
        prefix.to_ascii_lowercase()
    );
    let password = "loadgen password 1";
    let expect = |what: &str, (status, body): (u16, Value), want: &[u16]| {
        if want.contains(&status) {
            Ok(body)
        } else {
            Err(format!("REST {what}: HTTP {status}: {body}"))
        }
    };
    expect(
        "register",
        conn.json(
            "POST",
            "/api/v1/auth/register",
            None,
            "",
            json!({"email": email, "password": password, "name": format!("Loadgen {index}")}),
        )?,
        &[201],
    )?;
    let mail = expect(
        "dev mailbox (the server must run without SMTP)",
        conn.json(
            "GET",
            &format!("/api/v1/dev/mailbox?email={email}"),
            None,
            "",
            Value::Null,
        )?,
        &[200],
    )?;
    let text = mail["messages"][0]["body"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let code = text
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("REST: no passcode in the dev mailbox for {email}"))?
        .to_string();
    expect(
        "verify",
        conn.json(
            "POST",
            "/api/v1/auth/verify",
            None,
            "",
            json!({"email": email, "passcode": code}),
        )?,
        &[200],
    )?;
    let tokens = expect(
        "login",
        conn.json(
            "POST",
            "/api/v1/auth/login",
            None,
            "",
            json!({"email": email, "password": password}),
        )?,
        &[200],
    )?;
    let token = tokens["access_token"]
        .as_str()
        .ok_or_else(|| format!("REST login: no access_token in {tokens}"))?
        .to_string();
    for n in 0..deposits {
        expect(
            "deposit",
            conn.json(
                "POST",
                "/api/v1/wallet/deposit",
                Some(&token),
                &format!("Idempotency-Key: loadgen-{prefix}-{index}-{n}\r\n"),
                json!({"amount": "10000"}),
            )?,
            &[200, 201],
        )?;
    }
    Ok(RestSession {
        index,
        conn,
        token,
        flow,
        book: Book::default(),
        ids: HashMap::new(),
    })
}

/// What a phase sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The order flow.
    Orders,
    /// `GET /health` (the trivial endpoint: same server, router and
    /// middleware, no engine).
    Health,
}

/// Runs one phase over every session (one thread each); the sessions come
/// back for the next phase.
pub fn phase(
    sessions: Vec<RestSession>,
    rate: f64,
    count: usize,
    first_id: u64,
    load: Load,
    progress: &Progress,
) -> (Arc<Tracker>, Vec<RestSession>) {
    let n = sessions.len();
    let tracker = Arc::new(Tracker::new(count, rate, n, first_id));
    progress.start(tracker.clone());
    let symbols: Vec<String> = sessions
        .first()
        .map(|s| s.flow.symbols().iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|mut session| {
            let tracker = tracker.clone();
            let symbols = symbols.clone();
            std::thread::spawn(move || {
                let mut index = session.index;
                while index < count {
                    tracker.wait_turn(index);
                    let id = first_id + index as u64;
                    match load {
                        Load::Health => {
                            let result = session.conn.request("GET", "/health", "", &[]);
                            settle(&tracker, session.index, index, result.map(|(s, _)| s), "");
                        }
                        Load::Orders => order_request(&mut session, &tracker, &symbols, index, id),
                    }
                    tracker.sent.fetch_add(1, Ordering::Relaxed);
                    index += n;
                }
                session
            })
        })
        .collect();
    let sessions: Vec<RestSession> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    tracker.finish();
    progress.finish();
    (tracker, sessions)
}

fn settle(
    tracker: &Tracker,
    session: usize,
    index: usize,
    result: Result<u16, String>,
    body: &str,
) {
    match result {
        Ok(status) if status < 300 => tracker.answer(session, index, Outcome::Ack),
        Ok(status) => {
            tracker.note_error(format!("HTTP {status}: {body}"));
            tracker.answer(session, index, Outcome::Rejected);
        }
        Err(e) => {
            tracker.note_error(e);
            tracker.failures.fetch_add(1, Ordering::Relaxed);
            tracker.answer(session, index, Outcome::Rejected);
        }
    }
}

fn order_request(
    session: &mut RestSession,
    tracker: &Tracker,
    symbols: &[String],
    index: usize,
    id: u64,
) {
    let action = session.flow.next(&mut session.book, id, false);
    tracker.set_kind(index, action.kind());
    let auth = format!(
        "Content-Type: application/json\r\nAuthorization: Bearer {}\r\n",
        session.token
    );
    let s = session.index;
    let (method, path, body, target) = match action {
        Action::New {
            symbol,
            buy,
            price,
            qty,
            ioc,
            ..
        } => (
            "POST",
            "/api/v1/orders".to_string(),
            format!(
                r#"{{"symbol":"{}","side":"{}","type":"limit","time_in_force":"{}","limit_price":"{}","qty":"{qty}"}}"#,
                symbols[symbol],
                if buy { "buy" } else { "sell" },
                if ioc { "ioc" } else { "gtc" },
                decimal(price)
            ),
            None,
        ),
        Action::Cancel { target, .. } => (
            "DELETE",
            format!(
                "/api/v1/orders/{}",
                session.ids.get(&target).cloned().unwrap_or_default()
            ),
            String::new(),
            Some(target),
        ),
        Action::Replace { target, price, .. } => (
            "PATCH",
            format!(
                "/api/v1/orders/{}",
                session.ids.get(&target).cloned().unwrap_or_default()
            ),
            format!(r#"{{"limit_price":"{}"}}"#, decimal(price)),
            Some(target),
        ),
    };
    let result = session.conn.request(method, &path, &auth, body.as_bytes());
    let (status, reply) = match result {
        Ok(answer) => answer,
        Err(e) => {
            settle(tracker, s, index, Err(e), "");
            return;
        }
    };
    let json: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
    let open = |json: &Value| -> u64 {
        let status = json["status"].as_str().unwrap_or("");
        if status == "new" || status == "partially_filled" {
            let qty: f64 = json["qty"]
                .as_str()
                .and_then(|q| q.parse().ok())
                .unwrap_or(0.0);
            let filled: f64 = json["filled_qty"]
                .as_str()
                .and_then(|q| q.parse().ok())
                .unwrap_or(0.0);
            (qty - filled).max(0.0) as u64
        } else {
            0
        }
    };
    let too_late = status == 422 && json["code"] == "order_not_open";
    match action {
        Action::New { kind, .. } if status < 300 => {
            if let Some(uuid) = json["id"].as_str() {
                session.ids.insert(id, uuid.to_string());
            }
            let open = open(&json);
            session.book.acked(id, open);
            if open == 0 {
                session.ids.remove(&id);
            }
            tracker.answer(s, index, Outcome::Ack);
            let filled = json["filled_qty"].as_str().is_some_and(|q| q != "0");
            if kind == MARKETABLE && filled {
                tracker.execution(s, index);
            }
        }
        Action::New { .. } => {
            session.book.closed(id);
            settle(
                tracker,
                s,
                index,
                Ok(status),
                &String::from_utf8_lossy(&reply),
            );
        }
        Action::Cancel { .. } | Action::Replace { .. } => {
            let target = target.unwrap_or_default();
            if status < 300 || too_late {
                session.ids.remove(&target);
                if let (Action::Replace { price, .. }, true) = (action, status < 300) {
                    let open = open(&json);
                    session.book.replaced(target, id, price, open);
                    if let Some(uuid) = json["id"].as_str() {
                        session.ids.insert(id, uuid.to_string());
                    }
                } else {
                    session.book.pending_replace.remove(&id);
                    session.book.closed(target);
                }
                tracker.answer(
                    s,
                    index,
                    if too_late {
                        Outcome::TooLate
                    } else {
                        Outcome::Ack
                    },
                );
            } else {
                session.book.pending_replace.remove(&id);
                session.book.unpend(target);
                settle(
                    tracker,
                    s,
                    index,
                    Ok(status),
                    &String::from_utf8_lossy(&reply),
                );
            }
        }
    }
}
