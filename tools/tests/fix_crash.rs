//! FIX sessions across `kill -9` of `brokerx serve`: two sessions send
//! orders that trade with each other, the server is killed at a random
//! moment, restarted, and killed again. After each restart the clients log
//! on with the sequence numbers they have reached and resynchronise as a
//! FIX engine would: a ResendRequest for what they missed, a
//! SequenceReset-GapFill for what the gateway asks of them.
//!
//! At the end each client asks for everything from MsgSeqNum 1. Checked:
//! - every application message a client saw comes again, field for field,
//!   under the same MsgSeqNum, and no gap fill covers one (nothing the peer
//!   saw is lost or rewritten);
//! - no ClOrdID is accepted twice (no order entered twice on a resend);
//! - both sides report the same executed quantity (no fill report lost).
//!
//! Run twice: clients that gap-fill over their own messages on a
//! ResendRequest, and clients that resend their orders with PossDupFlag as
//! QuickFIX does (an order processed before the crash must be ignored, not
//! entered twice or rejected as a duplicate).
//!
//! Bounded: 6 kills each (`BROKERX_FIX_CRASH_ROUNDS` changes it), loopback only.

mod common;

use brokerx_gateway_fix::codec::{self, Frame};
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::server::now_ms;
use common::{jitter, start, temp_dir, terminate};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
data_dir = "unused"
durability = "fsync"

[ports]
test = 0
fix = 0

[[symbols]]
id = 0
name = "AAPL"
tick = 100
lot = 1
reference = 1900000
band_bps = 1000

[[accounts]]
id = 1
name = "alice"
cash = 1000000000000
shares = { AAPL = 1000000 }

[[accounts]]
id = 2
name = "bob"
cash = 1000000000000
shares = { AAPL = 1000000 }

[[fix_sessions]]
sender_comp_id = "BRKX"
target_comp_id = "ALICEFIX"
username = "alice"
password = "alice-fix"
account = 1

[[fix_sessions]]
sender_comp_id = "BRKX"
target_comp_id = "BOBFIX"
username = "bob"
password = "bob-fix"
account = 2
"#;

/// A message's fields, without the ones a resend may change (BeginString,
/// BodyLength, CheckSum, SendingTime, PossDupFlag, PossResend,
/// OrigSendingTime).
type Body = Vec<(u32, Vec<u8>)>;

fn body_of(frame: &[u8]) -> Body {
    codec::parse(frame)
        .expect("the gateway sends well-formed FIX")
        .iter()
        .filter(|f| !matches!(f.tag, 8 | 9 | 10 | 43 | 52 | 97 | 122))
        .map(|f| (f.tag, f.value.to_vec()))
        .collect()
}

fn field(body: &Body, tag: u32) -> Option<&[u8]> {
    body.iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, v)| v.as_slice())
}

fn number(body: &Body, tag: u32) -> u64 {
    let text = field(body, tag).unwrap_or_else(|| panic!("tag {tag} missing: {body:?}"));
    std::str::from_utf8(text).unwrap().parse().unwrap()
}

fn is_admin(msg_type: &[u8]) -> bool {
    matches!(msg_type, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
}

/// A minimal FIX initiator: just enough session layer to resynchronise.
struct Client {
    comp: &'static str,
    user: &'static str,
    password: &'static str,
    side: &'static str,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    next_out: u64,
    expected_in: u64,
    /// Set while a ResendRequest of ours is answered: up to which
    /// MsgSeqNum the gap was seen.
    resend_until: Option<u64>,
    /// Every application message seen, by MsgSeqNum.
    seen: BTreeMap<u64, Body>,
    /// In the final full resend: application messages that came again.
    compared: usize,
    logged_on: bool,
    /// Answer the gateway's ResendRequests by resending our orders with
    /// PossDupFlag, as QuickFIX does; else by gap-filling over them.
    resend_orders: bool,
    /// Our NewOrderSingles by MsgSeqNum, for resending.
    sent: BTreeMap<u64, Vec<(u32, String)>>,
    /// Orders resent on the gateway's ResendRequests.
    resent: usize,
}

impl Client {
    fn new(
        comp: &'static str,
        user: &'static str,
        password: &'static str,
        side: &'static str,
        resend_orders: bool,
    ) -> Self {
        Client {
            comp,
            user,
            password,
            side,
            stream: None,
            buf: Vec::new(),
            next_out: 1,
            expected_in: 1,
            resend_until: None,
            seen: BTreeMap::new(),
            compared: 0,
            logged_on: false,
            resend_orders,
            sent: BTreeMap::new(),
            resent: 0,
        }
    }

    fn send(&mut self, msg_type: &str, fields: &[(u32, String)]) {
        let seq = self.next_out;
        self.next_out += 1;
        if msg_type == "D" {
            self.sent.insert(seq, fields.to_vec());
        }
        self.send_as(seq, msg_type, fields);
    }

    fn gap_fill(&mut self, from: u64, to: u64) {
        self.send_as(
            from,
            "4",
            &[
                (43, "Y".into()),
                (122, format_utc_timestamp(now_ms())),
                (123, "Y".into()),
                (36, to.to_string()),
            ],
        );
    }

    /// Our messages `begin..=end` again: orders with PossDupFlag (when
    /// resending orders), gap fills over the rest.
    fn answer_resend(&mut self, begin: u64, end: u64) {
        let last = self.next_out - 1;
        let end = if end == 0 || end > last { last } else { end };
        if !self.resend_orders {
            self.gap_fill(begin, end + 1);
            return;
        }
        let mut gap = None;
        for seq in begin..=end {
            match self.sent.get(&seq).cloned() {
                Some(fields) => {
                    if let Some(from) = gap.take() {
                        self.gap_fill(from, seq);
                    }
                    let mut again =
                        vec![(43, "Y".to_string()), (122, format_utc_timestamp(now_ms()))];
                    again.extend(fields);
                    self.send_as(seq, "D", &again);
                    self.resent += 1;
                }
                None => {
                    gap.get_or_insert(seq);
                }
            }
        }
        if let Some(from) = gap {
            self.gap_fill(from, end + 1);
        }
    }

    /// Sends under a given MsgSeqNum (gap fills reuse the gap's first).
    fn send_as(&mut self, seq: u64, msg_type: &str, fields: &[(u32, String)]) {
        let mut header: Vec<(u32, String)> = vec![
            (34, seq.to_string()),
            (49, self.comp.to_string()),
            (52, format_utc_timestamp(now_ms())),
            (56, "BRKX".to_string()),
        ];
        header.extend(fields.iter().cloned());
        let pairs: Vec<(u32, &[u8])> = header.iter().map(|(t, v)| (*t, v.as_bytes())).collect();
        let bytes = codec::encode(b"FIX.4.4", msg_type.as_bytes(), &pairs, &[]);
        if let Some(stream) = &mut self.stream {
            // The server may be dead: what it did not take is not acknowledged.
            if stream.write_all(&bytes).is_err() {
                self.stream = None;
            }
        }
    }

    fn logon(&mut self, address: &str) {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        self.stream = Some(stream);
        self.buf.clear();
        self.logged_on = false;
        self.resend_until = None;
        self.send(
            "A",
            &[
                (98, "0".into()),
                (108, "30".into()),
                (553, self.user.into()),
                (554, self.password.into()),
            ],
        );
    }

    fn order(&mut self, cl_ord_id: &str) {
        let now = format_utc_timestamp(now_ms());
        self.send(
            "D",
            &[
                (11, cl_ord_id.into()),
                (21, "1".into()),
                (55, "AAPL".into()),
                (54, self.side.into()),
                (60, now),
                (38, "1".into()),
                (40, "2".into()),
                (44, "190".into()),
                (59, "0".into()),
            ],
        );
    }

    /// Reads what has arrived (waiting up to the 1 ms read timeout) and
    /// handles it.
    /// Returns false once the connection is gone.
    fn poll(&mut self) -> bool {
        let Some(stream) = &mut self.stream else {
            return false;
        };
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk) {
            Ok(0) => {
                self.stream = None;
            }
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.stream = None,
        }
        let mut at = 0;
        while let Frame::Message { len } = codec::next_frame(&self.buf[at..], 1 << 20) {
            let frame = self.buf[at..at + len].to_vec();
            at += len;
            self.on_message(&frame);
        }
        if let Frame::Garbled { .. } = codec::next_frame(&self.buf[at..], 1 << 20) {
            panic!("{}: garbled bytes from the gateway", self.comp);
        }
        self.buf.drain(..at);
        self.stream.is_some()
    }

    fn on_message(&mut self, frame: &[u8]) {
        let fields = codec::parse(frame).unwrap();
        let possdup = fields.iter().any(|f| f.tag == 43 && f.value == b"Y");
        let body = body_of(frame);
        let seq = number(&body, 34);
        let msg_type = field(&body, 35).unwrap().to_vec();
        match msg_type.as_slice() {
            b"5" => panic!("{}: Logout from the gateway: {body:?}", self.comp),
            b"3" => panic!("{}: session Reject: {body:?}", self.comp),
            b"A" => self.logged_on = true,
            // The gateway asks for ours: we never resend orders, we gap
            // fill (what it did not take was never acknowledged).
            b"2" => {
                let (begin, end) = (number(&body, 7), number(&body, 16));
                self.answer_resend(begin, end);
            }
            _ => {}
        }
        if seq < self.expected_in {
            // Only resent messages may come again; they must match.
            assert!(
                possdup,
                "{}: MsgSeqNum {seq} again without PossDupFlag (the gateway lost messages the client saw)",
                self.comp
            );
            if msg_type == b"4" {
                let new_seq = number(&body, 36);
                if let Some((gap_seq, app)) = self.seen.range(seq..new_seq).next() {
                    panic!(
                        "{}: a gap fill {seq}..{new_seq} covers application message {gap_seq} the client saw: {app:?}",
                        self.comp
                    );
                }
            } else if !is_admin(&msg_type) {
                let original = self.seen.get(&seq).unwrap_or_else(|| {
                    panic!("{}: resent {seq} was never seen: {body:?}", self.comp)
                });
                assert_eq!(
                    original, &body,
                    "{}: message {seq} changed on resend",
                    self.comp
                );
                self.compared += 1;
            }
            return;
        }
        if seq > self.expected_in {
            if self.resend_until.is_none() {
                let from = self.expected_in;
                self.send("2", &[(7, from.to_string()), (16, "0".into())]);
            }
            self.resend_until = Some(self.resend_until.unwrap_or(0).max(seq));
            return;
        }
        // In sequence.
        if msg_type == b"4" {
            let new_seq = number(&body, 36);
            assert!(new_seq > seq, "{}: gap fill backwards: {body:?}", self.comp);
            self.expected_in = new_seq;
        } else {
            self.expected_in = seq + 1;
            if msg_type == b"1" {
                let id = field(&body, 112).unwrap_or_default().to_vec();
                self.send("0", &[(112, String::from_utf8(id).unwrap())]);
            }
            if !is_admin(&msg_type) {
                self.seen.insert(seq, body);
            }
        }
        if self
            .resend_until
            .is_some_and(|until| self.expected_in > until)
        {
            self.resend_until = None;
        }
    }

    /// Logged on, and no resend of ours outstanding.
    fn in_sync(&self) -> bool {
        self.logged_on && self.resend_until.is_none()
    }

    /// Polls until in sync and quiet for `quiet`, within 30 s.
    fn settle(&mut self, quiet: Duration) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = (self.expected_in, Instant::now());
        loop {
            assert!(self.poll(), "{}: connection lost while settling", self.comp);
            if self.expected_in != last.0 {
                last = (self.expected_in, Instant::now());
            }
            if self.in_sync() && last.1.elapsed() >= quiet {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not resynchronise",
                self.comp
            );
        }
    }

    /// Reads until the connection closes (the server was killed).
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.poll() {
            assert!(
                Instant::now() < deadline,
                "{}: still open after kill",
                self.comp
            );
        }
    }

    fn executions(&self) -> Vec<&Body> {
        self.seen
            .values()
            .filter(|b| field(b, 35) == Some(b"8"))
            .collect()
    }
}

#[test]
fn fix_sessions_survive_kill_9() {
    survive_kill_9(false);
}

/// The same, with clients that answer a ResendRequest as QuickFIX does: by
/// resending their orders with PossDupFlag. An order the gateway had
/// processed before the crash is ignored, neither entered twice nor
/// rejected as a duplicate.
#[test]
fn fix_sessions_survive_kill_9_with_clients_resending_orders() {
    survive_kill_9(true);
}

fn survive_kill_9(resend_orders: bool) {
    let rounds: usize = std::env::var("BROKERX_FIX_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let root = temp_dir(if resend_orders {
        "fix-crash-resend"
    } else {
        "fix-crash"
    });
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut clients = [
        Client::new("ALICEFIX", "alice", "alice-fix", "2", resend_orders),
        Client::new("BOBFIX", "bob", "bob-fix", "1", resend_orders),
    ];
    let mut seed = 0xf1c5_u64;
    let mut sent = 0;
    for round in 0..rounds {
        let mut server = start(&dir, &config);
        let address = server.ports.get("fix").expect("fix port").clone();
        for client in clients.iter_mut() {
            client.logon(&address);
            client.settle(Duration::from_millis(100));
        }
        // Sells against buys of one share each, until killed.
        let deadline = Instant::now() + jitter(&mut seed, 30, 400);
        let mut i = 0;
        while Instant::now() < deadline {
            for client in clients.iter_mut() {
                for burst in 0..4 {
                    client.order(&format!("R{round}N{i}B{burst}"));
                    sent += 1;
                }
                client.poll();
            }
            i += 1;
        }
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for client in clients.iter_mut() {
            client.drain();
        }
    }

    // The last start: resynchronise, then ask for everything from 1.
    let server = start(&dir, &config);
    let address = server.ports.get("fix").unwrap().clone();
    for client in clients.iter_mut() {
        client.logon(&address);
        client.settle(Duration::from_millis(300));
    }
    // Orders resent on logon may trade with the other side's: let those
    // reports arrive before the checks.
    for client in clients.iter_mut() {
        client.settle(Duration::from_millis(300));
    }
    for client in clients.iter_mut() {
        let before = client.expected_in;
        client.send("2", &[(7, "1".into()), (16, "0".into())]);
        client.resend_until = Some(before - 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.compared < client.seen.len() {
            assert!(
                client.poll(),
                "{}: connection lost in the resend",
                client.comp
            );
            assert!(
                Instant::now() < deadline,
                "{}: {} of {} application messages resent",
                client.comp,
                client.compared,
                client.seen.len()
            );
        }
        client.resend_until = None;
    }

    let mut filled = Vec::new();
    for client in &clients {
        let executions = client.executions();
        assert!(
            executions.len() > 20,
            "{}: the load got answers",
            client.comp
        );
        let mut accepted = BTreeSet::new();
        let mut quantity = 0;
        for report in &executions {
            let cl_ord_id = field(report, 11).unwrap().to_vec();
            assert!(
                !(field(report, 150) == Some(b"8") && field(report, 103) == Some(b"6")),
                "{}: a resent order rejected as a duplicate: {report:?}",
                client.comp
            );
            match field(report, 150) {
                Some(b"0") => assert!(
                    accepted.insert(cl_ord_id.clone()),
                    "{}: {} accepted twice",
                    client.comp,
                    String::from_utf8_lossy(&cl_ord_id)
                ),
                Some(b"F") => quantity += number(report, 32),
                _ => {}
            }
        }
        eprintln!(
            "{}: {} messages, {} orders accepted, {quantity} shares executed, {} orders resent",
            client.comp,
            client.seen.len(),
            accepted.len(),
            client.resent
        );
        filled.push(quantity);
    }
    assert!(filled[0] > 0, "some orders traded");
    assert_eq!(
        filled[0], filled[1],
        "both sides report the same executed quantity"
    );
    eprintln!("{sent} orders sent over {rounds} kills");
    terminate(server);
}
