//! FIX 4.4 session state machine. Pure and clock-injected: every entry point takes
//! `now_ms` (wall clock, milliseconds since the Unix epoch) and pushes [`Action`]s;
//! no sockets, no threads. Application messages go to an [`Application`].

use std::collections::BTreeMap;

use crate::codec::{self, Field};
use crate::dictionary::{self, reason, Invalid};
use crate::store::Store;

/// What the connection must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Close the connection (after writing everything queued before).
    Disconnect,
}

/// Identity of a session: our CompID and the counterparty's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    /// Our SenderCompID (their TargetCompID), e.g. `ISLD`.
    pub sender_comp_id: String,
    /// Their SenderCompID, e.g. `TW44`.
    pub target_comp_id: String,
}

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// BeginString, `FIX.4.4`.
    pub begin_string: String,
    /// Session identity.
    pub id: SessionId,
    /// Reset both sequence numbers at every Logon (QuickFIX `ResetOnLogon=Y`).
    pub reset_on_logon: bool,
    /// Allowed SendingTime skew, ms (120 000).
    pub max_latency_ms: i64,
    /// Credentials the Logon must carry in Username (553) and Password (554);
    /// `None` accepts any Logon from the configured CompIDs.
    pub credentials: Option<(String, String)>,
    /// Daily session reset at this UTC time of day (ms after midnight): a
    /// logged-on session is logged out and both sequence numbers go back to 1.
    pub reset_at_ms: Option<i64>,
}

impl SessionConfig {
    /// FIX.4.4 session with the given CompIDs, ResetOnLogon and 120 s latency.
    pub fn new(ours: &str, theirs: &str) -> Self {
        SessionConfig {
            begin_string: "FIX.4.4".into(),
            id: SessionId {
                sender_comp_id: ours.into(),
                target_comp_id: theirs.into(),
            },
            reset_on_logon: true,
            max_latency_ms: 120_000,
            credentials: None,
            reset_at_ms: None,
        }
    }
}

/// An inbound application message, validated and in sequence.
#[derive(Debug)]
pub struct InboundMessage<'a> {
    /// MsgType (35).
    pub msg_type: &'a [u8],
    /// MsgSeqNum (34).
    pub seq: u64,
    /// All fields as received, 8/9/35 first and 10 last.
    pub fields: &'a [Field<'a>],
}

impl InboundMessage<'_> {
    /// First value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.fields.iter().find(|f| f.tag == tag).map(|f| f.value)
    }
}

/// An outbound application message; the session adds 8,9,34,49,52,56,10.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundMessage {
    /// MsgType (35).
    pub msg_type: Vec<u8>,
    /// Extra header fields (e.g. 97, 115, 128); written in ascending tag order.
    pub header: Vec<(u32, Vec<u8>)>,
    /// Body fields, written in the order given.
    pub body: Vec<(u32, Vec<u8>)>,
}

/// The business side of the gateway.
pub trait Application: Send + Sync {
    /// The session logged on.
    fn on_logon(&self, _id: &SessionId) {}
    /// The session logged out or disconnected.
    fn on_logout(&self, _id: &SessionId) {}
    /// An application message; returns messages to send back, in order.
    fn on_app_message(&self, id: &SessionId, msg: &InboundMessage<'_>) -> Vec<OutboundMessage>;
}

/// Bound on messages held back while a sequence gap is being filled.
pub const MAX_QUEUED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitLogon,
    Active,
    Closed,
}

/// One session over one connection (sequence numbers live in the [`Store`]).
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    store: Store,
    state: State,
    hbi_ms: i64,
    last_sent: i64,
    last_recv: i64,
    test_requests: u32,
    queue: BTreeMap<u64, Vec<u8>>,
    resend_pending: bool,
    /// A Logon came with a gap before it: the resend is not over until the
    /// expected MsgSeqNum has passed the Logon's (0: no such gap).
    gap_until: u64,
    store_failed: bool,
}

fn get<'a>(fields: &[Field<'a>], tag: u32) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.tag == tag).map(|f| f.value)
}

fn num(v: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(v?).ok()?.parse().ok()
}

impl Session {
    /// New session awaiting Logon.
    pub fn new(cfg: SessionConfig, store: Store, now_ms: i64) -> Self {
        Session {
            cfg,
            store,
            state: State::AwaitLogon,
            hbi_ms: 30_000,
            last_sent: now_ms,
            last_recv: now_ms,
            test_requests: 0,
            queue: BTreeMap::new(),
            resend_pending: false,
            gap_until: 0,
            store_failed: false,
        }
    }

    /// Settings.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    /// Session identity.
    pub fn id(&self) -> &SessionId {
        &self.cfg.id
    }
    /// Logged on and not closed.
    pub fn is_logged_on(&self) -> bool {
        self.state == State::Active
    }
    /// Closed (a Disconnect was emitted).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    /// The store (sequence numbers, sent messages).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A new connection for this session: back to awaiting a Logon, with the
    /// store (sequence numbers, sent messages) kept.
    pub fn reopen(&mut self, now_ms: i64) {
        self.state = State::AwaitLogon;
        self.last_sent = now_ms;
        self.last_recv = now_ms;
        self.test_requests = 0;
        self.queue.clear();
        self.resend_pending = false;
        self.gap_until = 0;
        self.store_failed = false;
    }

    /// Sends an application message outside of `on_app_message` (an
    /// execution report for a fill, say). It takes the next MsgSeqNum and is
    /// stored in every state, so a session that is not logged on gets it by
    /// ResendRequest after its next Logon; it goes on the wire only while
    /// logged on.
    pub fn send_app(&mut self, msg: OutboundMessage, now_ms: i64, out: &mut Vec<Action>) {
        let mut sent = Vec::with_capacity(1);
        self.send(&msg.msg_type, msg.header, &msg.body, now_ms, &mut sent);
        if self.state == State::Active {
            out.append(&mut sent);
        }
    }

    /// Starts the Logout handshake of a logged-on session (operator action,
    /// scheduled reset).
    pub fn start_logout(
        &mut self,
        text: &str,
        now_ms: i64,
        app: &dyn Application,
        out: &mut Vec<Action>,
    ) {
        if self.state == State::Active {
            self.logout(Some(text), now_ms, app, out);
        }
    }

    /// Daily reset: both sequence numbers back to 1 and no stored messages.
    pub fn reset_sequences(&mut self, now_ms: i64) {
        let r = self.store.reset(now_ms);
        self.io(r);
        self.queue.clear();
        self.resend_pending = false;
        self.gap_until = 0;
    }

    /// Records in the store that every report of the engine's commands up
    /// to `seq` is stored (flushed with them).
    pub fn note_folded(&mut self, seq: u64) {
        let r = self.store.set_folded(seq);
        self.io(r);
    }

    /// Writes what the store buffered (before anything goes on the wire).
    pub fn flush_store(&mut self) {
        let r = self.store.flush();
        self.io(r);
    }

    /// Flushes the store to disk.
    pub fn sync_store(&mut self) -> std::io::Result<()> {
        self.store.sync()
    }

    fn close(&mut self, app: &dyn Application, out: &mut Vec<Action>) {
        if self.state == State::Active {
            app.on_logout(&self.cfg.id);
        }
        if self.state != State::Closed {
            self.state = State::Closed;
            out.push(Action::Disconnect);
        }
    }

    fn io<T>(&mut self, r: std::io::Result<T>) {
        if let Err(e) = r {
            tracing::error!(
                gateway = "fix",
                session = %format_args!("{}->{}", self.cfg.id.target_comp_id, self.cfg.id.sender_comp_id),
                error = %e,
                "session store write failed"
            );
            self.store_failed = true;
        }
    }

    /// Encode and send a message with the next MsgSeqNum.
    fn send(
        &mut self,
        msg_type: &[u8],
        extra_header: Vec<(u32, Vec<u8>)>,
        body: &[(u32, Vec<u8>)],
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let seq = self.store.next_sender();
        let bytes = self.encode(msg_type, seq, extra_header, body, now);
        if !is_admin(msg_type) {
            let r = self.store.save(seq, &bytes);
            self.io(r);
        }
        let r = self.store.set_next_sender(seq + 1);
        self.io(r);
        self.last_sent = now;
        out.push(Action::Send(bytes));
    }

    fn encode(
        &self,
        msg_type: &[u8],
        seq: u64,
        mut header: Vec<(u32, Vec<u8>)>,
        body: &[(u32, Vec<u8>)],
        now: i64,
    ) -> Vec<u8> {
        header.push((34, seq.to_string().into_bytes()));
        header.push((49, self.cfg.id.sender_comp_id.clone().into_bytes()));
        header.push((52, dictionary::format_utc_timestamp(now).into_bytes()));
        header.push((56, self.cfg.id.target_comp_id.clone().into_bytes()));
        header.sort_by_key(|(t, _)| *t);
        let mut rest = Vec::with_capacity(256);
        for (t, v) in header.iter().chain(body) {
            codec::put(&mut rest, *t, v);
        }
        codec::encode_raw(self.cfg.begin_string.as_bytes(), msg_type, &rest)
    }

    fn logout(
        &mut self,
        text: Option<&str>,
        now: i64,
        app: &dyn Application,
        out: &mut Vec<Action>,
    ) {
        let body: Vec<(u32, Vec<u8>)> = text
            .map(|t| vec![(58, t.as_bytes().to_vec())])
            .unwrap_or_default();
        self.send(b"5", vec![], &body, now, out);
        self.close(app, out);
    }

    fn reject(&mut self, fields: &[Field<'_>], inv: &Invalid, now: i64, out: &mut Vec<Action>) {
        let mut header = Vec::new();
        for (from, to) in [
            (115, 128),
            (116, 129),
            (144, 145),
            (128, 115),
            (129, 116),
            (145, 144),
        ] {
            if let Some(v) = get(fields, from).filter(|v| !v.is_empty()) {
                header.push((to, v.to_vec()));
            }
        }
        let mut body = vec![
            (45, get(fields, 34).unwrap_or(b"0").to_vec()),
            (58, reason::text(inv.reason).as_bytes().to_vec()),
        ];
        if let Some(t) = &inv.ref_tag {
            body.push((371, t.clone()));
        }
        body.push((372, fields[2].value.to_vec()));
        body.push((373, inv.reason.to_string().into_bytes()));
        self.send(b"3", header, &body, now, out);
    }

    /// A garbled frame was dropped by the framer.
    pub fn on_garbled(&mut self, app: &dyn Application, out: &mut Vec<Action>) {
        if self.state == State::AwaitLogon {
            self.close(app, out);
        }
    }

    /// A complete, checksummed frame arrived.
    pub fn on_frame(
        &mut self,
        frame: &[u8],
        now: i64,
        app: &dyn Application,
        out: &mut Vec<Action>,
    ) {
        if self.state == State::Closed {
            return;
        }
        self.last_recv = now;
        self.test_requests = 0;
        let Ok(fields) = codec::parse(frame) else {
            self.on_garbled(app, out);
            return;
        };
        self.process(&fields, frame, now, app, out);
        // Process queued messages that are now in sequence.
        while self.state == State::Active {
            let next = self.store.next_target();
            while let Some((&s, _)) = self.queue.first_key_value() {
                if s < next {
                    self.queue.pop_first();
                } else {
                    break;
                }
            }
            let Some(raw) = self.queue.remove(&next) else {
                break;
            };
            if let Ok(f) = codec::parse(&raw) {
                self.process(&f, &raw, now, app, out);
            }
        }
        if self.queue.is_empty() && self.store.next_target() > self.gap_until {
            self.resend_pending = false;
            self.gap_until = 0;
        }
        if self.store_failed {
            self.close(app, out);
        }
    }

    fn sending_time_ok(&self, fields: &[Field<'_>], now: i64) -> bool {
        get(fields, 52)
            .and_then(dictionary::parse_utc_timestamp)
            .is_some_and(|t| (t - now).abs() <= self.cfg.max_latency_ms)
    }

    fn comp_ids_ok(&self, fields: &[Field<'_>]) -> bool {
        get(fields, 49) == Some(self.cfg.id.target_comp_id.as_bytes())
            && get(fields, 56) == Some(self.cfg.id.sender_comp_id.as_bytes())
    }

    fn set_target(&mut self, v: u64) {
        let r = self.store.set_next_target(v);
        self.io(r);
    }

    fn request_resend(&mut self, now: i64, out: &mut Vec<Action>) {
        if !self.resend_pending {
            self.resend_pending = true;
            let from = self.store.next_target();
            self.send(
                b"2",
                vec![],
                &[(7, from.to_string().into_bytes()), (16, b"0".to_vec())],
                now,
                out,
            );
        }
    }

    fn process(
        &mut self,
        fields: &[Field<'_>],
        raw: &[u8],
        now: i64,
        app: &dyn Application,
        out: &mut Vec<Action>,
    ) {
        let begin_ok = fields[0].value == self.cfg.begin_string.as_bytes();
        let msg_type = fields[2].value;
        let seq = num(get(fields, 34));
        if self.state == State::AwaitLogon {
            let valid = begin_ok
                && msg_type == b"A"
                && self.comp_ids_ok(fields)
                && dictionary::validate(fields).is_ok()
                && self.sending_time_ok(fields, now)
                && seq.is_some();
            let hbi = num(get(fields, 108)).filter(|&h| h <= 3600);
            let (true, Some(seq), Some(hbi)) = (valid, seq, hbi) else {
                self.close(app, out);
                return;
            };
            if let Some((user, password)) = &self.cfg.credentials {
                if get(fields, 553) != Some(user.as_bytes())
                    || get(fields, 554) != Some(password.as_bytes())
                {
                    // Answered with a Logout, not a Logon: nothing of the
                    // session's state changes.
                    let seq = self.store.next_sender();
                    let body = [(58, b"Invalid username or password".to_vec())];
                    let bytes = self.encode(b"5", seq, vec![], &body, now);
                    out.push(Action::Send(bytes));
                    self.state = State::Closed;
                    out.push(Action::Disconnect);
                    return;
                }
            }
            self.logon(fields, seq, hbi, now, app, out);
            return;
        }
        if !begin_ok {
            self.logout(Some("Incorrect BeginString"), now, app, out);
            return;
        }
        if let Err(inv) = dictionary::validate(fields) {
            self.reject(fields, &inv, now, out);
            if seq == Some(self.store.next_target()) && msg_type != b"4" {
                self.set_target(self.store.next_target() + 1);
            }
            return;
        }
        let Some(seq) = seq else { return };
        if !self.comp_ids_ok(fields) {
            self.reject(
                fields,
                &Invalid {
                    reason: reason::COMP_ID,
                    ref_tag: None,
                },
                now,
                out,
            );
            self.logout(None, now, app, out);
            return;
        }
        if !self.sending_time_ok(fields, now) {
            self.reject(
                fields,
                &Invalid {
                    reason: reason::SENDING_TIME,
                    ref_tag: None,
                },
                now,
                out,
            );
            self.logout(None, now, app, out);
            return;
        }
        let gap_fill = get(fields, 123) == Some(b"Y");
        if msg_type == b"4" && !gap_fill {
            // Reset mode: MsgSeqNum is ignored.
            self.sequence_reset(fields, now, out);
            return;
        }
        if msg_type == b"A" && get(fields, 141) == Some(b"Y") {
            let hbi = num(get(fields, 108)).unwrap_or(30);
            self.logon(fields, seq, hbi, now, app, out);
            return;
        }
        let expected = self.store.next_target();
        // Like QuickFIX, Logout and ResendRequest skip the sequence checks.
        if msg_type == b"5" {
            if seq == expected {
                self.set_target(seq + 1);
            }
            self.logout(None, now, app, out);
            return;
        }
        if msg_type == b"2" {
            self.answer_resend(fields, now, out);
            if seq == expected {
                self.set_target(seq + 1);
            }
            return;
        }
        if seq > expected {
            if self.queue.len() >= MAX_QUEUED {
                self.logout(
                    Some("Too many messages queued during resend"),
                    now,
                    app,
                    out,
                );
                return;
            }
            self.queue.insert(seq, raw.to_vec());
            self.request_resend(now, out);
            return;
        }
        if seq < expected {
            if get(fields, 43) == Some(b"Y") {
                match get(fields, 122).and_then(dictionary::parse_utc_timestamp) {
                    None if get(fields, 122).is_none() => {
                        self.reject(
                            fields,
                            &Invalid {
                                reason: reason::REQUIRED_MISSING,
                                ref_tag: Some(b"122".to_vec()),
                            },
                            now,
                            out,
                        );
                    }
                    Some(orig)
                        if get(fields, 52)
                            .and_then(dictionary::parse_utc_timestamp)
                            .is_some_and(|st| orig > st) =>
                    {
                        self.reject(
                            fields,
                            &Invalid {
                                reason: reason::SENDING_TIME,
                                ref_tag: None,
                            },
                            now,
                            out,
                        );
                        self.logout(None, now, app, out);
                    }
                    _ => {}
                }
                return;
            }
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            self.logout(Some(&text), now, app, out);
            return;
        }
        // In sequence.
        if msg_type == b"4" {
            self.sequence_reset(fields, now, out);
            return;
        }
        self.set_target(seq + 1);
        match msg_type {
            b"0" | b"3" | b"A" => {}
            b"1" => {
                let id = get(fields, 112).unwrap_or_default().to_vec();
                self.send(b"0", vec![], &[(112, id)], now, out);
            }
            _ => {
                let msg = InboundMessage {
                    msg_type,
                    seq,
                    fields,
                };
                for m in app.on_app_message(&self.cfg.id, &msg) {
                    self.send(&m.msg_type, m.header, &m.body, now, out);
                }
            }
        }
    }

    fn logon(
        &mut self,
        fields: &[Field<'_>],
        seq: u64,
        hbi: u64,
        now: i64,
        app: &dyn Application,
        out: &mut Vec<Action>,
    ) {
        let reset_requested = get(fields, 141) == Some(b"Y");
        if reset_requested || (self.cfg.reset_on_logon && self.state == State::AwaitLogon) {
            let r = self.store.reset(now);
            self.io(r);
            self.queue.clear();
            self.resend_pending = false;
            self.gap_until = 0;
        }
        self.hbi_ms = (hbi as i64) * 1000;
        // NextExpectedMsgSeqNum (789): the peer says which of our messages
        // it expects next; we resend from there after our Logon, and say in
        // ours which of its messages we expect (it resends the gap, so no
        // ResendRequest of ours follows).
        let next_sender = self.store.next_sender();
        let peer_expects = get(fields, 789).map(|v| num(Some(v)));
        if let Some(claim) = peer_expects {
            match claim {
                Some(n) if n >= 1 && n <= next_sender => {}
                _ => {
                    let text = format!(
                        "NextExpectedMsgSeqNum(789) must be 1 to {next_sender}, the next MsgSeqNum we send"
                    );
                    self.logout(Some(&text), now, app, out);
                    return;
                }
            }
        }
        let expected = self.store.next_target();
        let mut body = vec![(98, b"0".to_vec()), (108, hbi.to_string().into_bytes())];
        if reset_requested {
            body.push((141, b"Y".to_vec()));
        }
        if peer_expects.is_some() {
            let ours = if seq > expected { expected } else { seq + 1 };
            body.push((789, ours.to_string().into_bytes()));
        }
        self.send(b"A", vec![], &body, now, out);
        if self.state == State::AwaitLogon {
            self.state = State::Active;
            app.on_logon(&self.cfg.id);
        }
        if let Some(Some(n)) = peer_expects {
            if n < next_sender {
                self.resend_range(n, next_sender - 1, now, out);
            }
        }
        if seq > expected {
            self.gap_until = seq;
            if peer_expects.is_some() {
                // The peer resends from our 789; later messages queue
                // until it has.
                self.resend_pending = true;
            } else {
                self.request_resend(now, out);
            }
        } else {
            self.set_target(seq + 1);
        }
    }

    fn sequence_reset(&mut self, fields: &[Field<'_>], now: i64, out: &mut Vec<Action>) {
        let Some(new_seq) = num(get(fields, 36)) else {
            return;
        };
        let expected = self.store.next_target();
        if new_seq > expected {
            self.set_target(new_seq);
        } else if new_seq < expected {
            self.reject(
                fields,
                &Invalid {
                    reason: reason::BAD_VALUE,
                    ref_tag: None,
                },
                now,
                out,
            );
        }
    }

    fn gap_fill(&mut self, seq: u64, new_seq: u64, now: i64, out: &mut Vec<Action>) {
        let ts = dictionary::format_utc_timestamp(now).into_bytes();
        let bytes = self.encode(
            b"4",
            seq,
            vec![(43, b"Y".to_vec()), (122, ts)],
            &[(36, new_seq.to_string().into_bytes()), (123, b"Y".to_vec())],
            now,
        );
        self.last_sent = now;
        out.push(Action::Send(bytes));
    }

    fn answer_resend(&mut self, fields: &[Field<'_>], now: i64, out: &mut Vec<Action>) {
        let (Some(begin), Some(end)) = (num(get(fields, 7)), num(get(fields, 16))) else {
            return;
        };
        self.resend_range(begin, end, now, out);
    }

    /// Resends stored application messages `begin..=end` (`end` 0: all we
    /// sent) with PossDupFlag, gap-filling over admin messages.
    fn resend_range(&mut self, begin: u64, end: u64, now: i64, out: &mut Vec<Action>) {
        let last = self.store.next_sender().saturating_sub(1);
        let end = if end == 0 || end > last { last } else { end };
        let mut gap: Option<u64> = None;
        let mut s = begin.max(1);
        while s <= end {
            let stored = self.store.get(s);
            match stored {
                Some(raw) => {
                    if let Some(g) = gap.take() {
                        self.gap_fill(g, s, now, out);
                    }
                    if let Some(bytes) = self.possdup_copy(&raw, now) {
                        self.last_sent = now;
                        out.push(Action::Send(bytes));
                    }
                }
                None => {
                    gap.get_or_insert(s);
                }
            }
            s += 1;
        }
        if let Some(g) = gap {
            self.gap_fill(g, end + 1, now, out);
        }
    }

    /// Rebuild a stored message for resending: same 34 and body, 43=Y, 122=old 52.
    fn possdup_copy(&self, raw: &[u8], now: i64) -> Option<Vec<u8>> {
        let fields = codec::parse(raw).ok()?;
        let mut header: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut body: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut orig = None;
        for f in &fields[3..] {
            match f.tag {
                10 | 43 | 122 => {}
                52 => orig = Some(f.value.to_vec()),
                t if dictionary::is_header(t) => header.push((t, f.value.to_vec())),
                t => body.push((t, f.value.to_vec())),
            }
        }
        let orig = orig.unwrap_or_else(|| dictionary::format_utc_timestamp(now).into_bytes());
        header.push((43, b"Y".to_vec()));
        header.push((52, dictionary::format_utc_timestamp(now).into_bytes()));
        header.push((122, orig));
        header.sort_by_key(|(t, _)| *t);
        let mut rest = Vec::with_capacity(raw.len() + 40);
        for (t, v) in header.iter().chain(&body) {
            codec::put(&mut rest, *t, v);
        }
        Some(codec::encode_raw(fields[0].value, fields[2].value, &rest))
    }

    /// Timers: heartbeat, TestRequest, silent-peer disconnect, logon timeout.
    pub fn on_timer(&mut self, now: i64, app: &dyn Application, out: &mut Vec<Action>) {
        match self.state {
            State::Closed => {}
            State::AwaitLogon => {
                if now - self.last_recv >= 30_000 {
                    self.close(app, out);
                }
            }
            State::Active => {
                let hbi = self.hbi_ms;
                if hbi <= 0 {
                    return;
                }
                let silent = now - self.last_recv;
                if silent * 10 >= hbi * 24 {
                    self.close(app, out);
                } else if self.test_requests == 0 && silent * 10 >= hbi * 12 {
                    self.test_requests = 1;
                    self.send(b"1", vec![], &[(112, b"TEST".to_vec())], now, out);
                } else if self.test_requests == 0 && now - self.last_sent >= hbi {
                    self.send(b"0", vec![], &[], now, out);
                }
            }
        }
    }

    /// The transport closed.
    pub fn on_disconnected(&mut self, app: &dyn Application) {
        if self.state == State::Active {
            app.on_logout(&self.cfg.id);
        }
        self.state = State::Closed;
    }
}

/// Session-level MsgTypes (not stored, gap-filled on resend).
pub fn is_admin(msg_type: &[u8]) -> bool {
    matches!(msg_type, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::format_utc_timestamp;

    const T0: i64 = 1_700_000_000_000;

    struct Echo;
    impl Application for Echo {
        fn on_app_message(
            &self,
            _id: &SessionId,
            msg: &InboundMessage<'_>,
        ) -> Vec<OutboundMessage> {
            vec![OutboundMessage {
                msg_type: b"8".to_vec(),
                header: vec![],
                body: vec![(11, msg.get(11).unwrap_or_default().to_vec())],
            }]
        }
    }

    /// Inbound frame from TW44 to ISLD; `extra` are header/body fields after 56.
    fn msg(msg_type: &str, seq: u64, now: i64, extra: &[(u32, &str)]) -> Vec<u8> {
        let ts = format_utc_timestamp(now);
        let mut body: Vec<(u32, &[u8])> = vec![
            (34, seq.to_string().leak().as_bytes()),
            (49, b"TW44"),
            (52, ts.leak().as_bytes()),
            (56, b"ISLD"),
        ];
        body.extend(extra.iter().map(|(t, v)| (*t, v.as_bytes())));
        codec::encode(b"FIX.4.4", msg_type.as_bytes(), &[], &body)
    }

    fn text(a: &Action) -> String {
        match a {
            Action::Send(b) => String::from_utf8_lossy(b).replace('\x01', "|"),
            Action::Disconnect => "DISCONNECT".into(),
        }
    }

    fn feed(s: &mut Session, frame: &[u8], now: i64) -> Vec<String> {
        let mut out = Vec::new();
        s.on_frame(frame, now, &Echo, &mut out);
        out.iter().map(text).collect()
    }

    fn logged_on(hbi: &str) -> Session {
        let mut s = Session::new(SessionConfig::new("ISLD", "TW44"), Store::in_memory(), T0);
        let out = feed(&mut s, &msg("A", 1, T0, &[(98, "0"), (108, hbi)]), T0);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].contains("|35=A|34=1|49=ISLD|") && out[0].contains(&format!("|98=0|108={hbi}|")),
            "{out:?}"
        );
        s
    }

    #[test]
    fn first_message_must_be_logon() {
        let mut s = Session::new(SessionConfig::new("ISLD", "TW44"), Store::in_memory(), T0);
        assert_eq!(feed(&mut s, &msg("0", 1, T0, &[]), T0), vec!["DISCONNECT"]);
        let mut s = Session::new(SessionConfig::new("ISLD", "TW44"), Store::in_memory(), T0);
        assert_eq!(
            feed(
                &mut s,
                &msg("A", 1, T0 - 121_000, &[(98, "0"), (108, "30")]),
                T0
            ),
            vec!["DISCONNECT"]
        );
    }

    #[test]
    fn heartbeat_test_request_and_timeout() {
        let mut s = logged_on("2");
        let mut out = Vec::new();
        s.on_timer(T0 + 1_999, &Echo, &mut out);
        assert!(out.is_empty());
        s.on_timer(T0 + 2_000, &Echo, &mut out);
        assert!(text(&out[0]).contains("|35=0|34=2|"), "{out:?}");
        out.clear();
        s.on_timer(T0 + 2_400, &Echo, &mut out);
        assert!(text(&out[0]).contains("|35=1|34=3|") && text(&out[0]).contains("|112=TEST|"));
        out.clear();
        s.on_timer(T0 + 4_799, &Echo, &mut out);
        assert!(out.is_empty(), "{out:?}");
        s.on_timer(T0 + 4_800, &Echo, &mut out);
        assert_eq!(out, vec![Action::Disconnect]);
    }

    #[test]
    fn test_request_is_answered() {
        let mut s = logged_on("30");
        let out = feed(&mut s, &msg("1", 2, T0, &[(112, "HELLO")]), T0);
        assert!(
            out[0].contains("|35=0|34=2|") && out[0].contains("|112=HELLO|"),
            "{out:?}"
        );
    }

    #[test]
    fn gap_is_requested_and_queue_replayed_in_order() {
        let mut s = logged_on("30");
        let out = feed(
            &mut s,
            &msg(
                "D",
                3,
                T0,
                &[(11, "B"), (40, "1"), (54, "1"), (60, "20231114-22:13:20")],
            ),
            T0,
        );
        assert_eq!(out.len(), 1);
        assert!(
            out[0].contains("|35=2|34=2|") && out[0].contains("|7=2|16=0|"),
            "{out:?}"
        );
        let out = feed(
            &mut s,
            &msg(
                "D",
                2,
                T0,
                &[(11, "A"), (40, "1"), (54, "1"), (60, "20231114-22:13:20")],
            ),
            T0,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("|35=8|34=3|") && out[0].contains("|11=A|"));
        assert!(out[1].contains("|35=8|34=4|") && out[1].contains("|11=B|"));
        assert_eq!(s.store().next_target(), 4);
    }

    #[test]
    fn too_low_without_possdup_logs_out() {
        let mut s = logged_on("30");
        feed(&mut s, &msg("0", 2, T0, &[]), T0);
        let out = feed(&mut s, &msg("0", 2, T0, &[]), T0);
        assert!(
            out[0].contains("|35=5|")
                && out[0].contains("|58=MsgSeqNum too low, expecting 3 but received 2|"),
            "{out:?}"
        );
        assert_eq!(out[1], "DISCONNECT");
        // With PossDup and no 122: Reject 373=1 371=122, session stays up.
        let mut s = logged_on("30");
        feed(&mut s, &msg("0", 2, T0, &[]), T0);
        let out = feed(&mut s, &msg("0", 2, T0, &[(43, "Y")]), T0);
        assert!(
            out[0].contains("|35=3|") && out[0].contains("|371=122|") && out[0].contains("|373=1|"),
            "{out:?}"
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn resend_request_gap_fills_admin_and_resends_app() {
        let mut s = logged_on("30");
        feed(&mut s, &msg("1", 2, T0, &[(112, "X")]), T0); // our 2: heartbeat (admin)
        feed(
            &mut s,
            &msg(
                "D",
                3,
                T0,
                &[(11, "A"), (40, "1"), (54, "1"), (60, "20231114-22:13:20")],
            ),
            T0,
        ); // our 3: app
        let out = feed(&mut s, &msg("2", 4, T0 + 5, &[(7, "1"), (16, "0")]), T0 + 5);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[0].contains("|35=4|34=1|43=Y|") && out[0].contains("|36=3|123=Y|"),
            "{out:?}"
        );
        assert!(
            out[1].contains("|35=8|34=3|43=Y|")
                && out[1].contains(&format!("|122={}|", format_utc_timestamp(T0))),
            "{out:?}"
        );
        // The resend did not consume sequence numbers.
        assert_eq!(s.store().next_sender(), 4);
    }

    #[test]
    fn validation_reject_consumes_seq() {
        let mut s = logged_on("30");
        let out = feed(&mut s, &msg("0", 2, T0, &[(999, "HI")]), T0);
        assert!(
            out[0].contains("|45=2|58=Invalid tag number|371=999|372=0|373=0|"),
            "{out:?}"
        );
        assert_eq!(s.store().next_target(), 3);
    }

    #[test]
    fn sequence_reset_modes() {
        let mut s = logged_on("30");
        assert!(feed(&mut s, &msg("4", 0, T0, &[(36, "10")]), T0).is_empty());
        assert_eq!(s.store().next_target(), 10);
        let out = feed(&mut s, &msg("4", 0, T0, &[(36, "5")]), T0);
        assert!(
            out[0].contains("|45=0|58=Value is incorrect (out of range) for this tag|372=4|373=5|"),
            "{out:?}"
        );
        assert!(feed(&mut s, &msg("4", 10, T0, &[(36, "20"), (123, "Y")]), T0).is_empty());
        assert_eq!(s.store().next_target(), 20);
    }

    #[test]
    fn seq_numbers_survive_restart_without_reset() {
        let path =
            std::env::temp_dir().join(format!("brokerx-fix-session-{}.store", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut cfg = SessionConfig::new("ISLD", "TW44");
        cfg.reset_on_logon = false;
        {
            let mut s = Session::new(cfg.clone(), Store::open(&path).unwrap(), T0);
            feed(&mut s, &msg("A", 1, T0, &[(98, "0"), (108, "30")]), T0);
            feed(&mut s, &msg("5", 2, T0, &[]), T0);
        }
        let mut s = Session::new(cfg, Store::open(&path).unwrap(), T0);
        assert_eq!((s.store().next_sender(), s.store().next_target()), (3, 3));
        let out = feed(&mut s, &msg("A", 3, T0, &[(98, "0"), (108, "30")]), T0);
        assert!(out[0].contains("|35=A|34=3|"), "{out:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = msg(
            "D",
            2,
            T0,
            &[
                (11, "A"),
                (40, "1"),
                (54, "1"),
                (60, "20231114-22:13:20"),
                (386, "1"),
                (336, "X"),
            ],
        );
        for _ in 0..3000 {
            let mut s = logged_on("30");
            let mut m = base.clone();
            for _ in 0..(rnd() % 4 + 1) {
                let i = (rnd() as usize) % m.len();
                m[i] = match rnd() % 4 {
                    0 => 0x01,
                    1 => b'=',
                    2 => b'0' + (rnd() % 10) as u8,
                    _ => rnd() as u8,
                };
            }
            let mut at = 0;
            let mut out = Vec::new();
            while at < m.len() {
                match codec::next_frame(&m[at..], codec::DEFAULT_MAX_MESSAGE) {
                    codec::Frame::Incomplete => break,
                    codec::Frame::Garbled { skip } => {
                        at += skip;
                        s.on_garbled(&Echo, &mut out);
                    }
                    codec::Frame::Message { len } => {
                        s.on_frame(&m[at..at + len], T0, &Echo, &mut out);
                        at += len;
                    }
                }
            }
            // Any frame the session accepted can be validated without panicking too.
            if let Ok(f) = codec::parse(&m) {
                let _ = dictionary::validate(&f);
            }
        }
    }
}
