//! TCP acceptor: one std thread per connection, blocking sockets with short read
//! timeouts driving the session timers.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::{self, Frame};
use crate::session::{Action, Application, OutboundMessage, Session, SessionConfig, SessionId};
use crate::store::Store;

/// Acceptor configuration.
#[derive(Debug, Clone)]
pub struct FixConfig {
    /// Sessions this acceptor accepts (CompID pairs).
    pub sessions: Vec<SessionConfig>,
    /// Directory for per-session store files; `None` keeps stores in memory.
    pub store_dir: Option<PathBuf>,
    /// Largest accepted frame in bytes.
    pub max_message_size: usize,
    /// Read timeout, i.e. timer resolution.
    pub poll_interval: Duration,
    /// How long to wait for the peer to close after our Logout.
    pub logout_timeout: Duration,
    /// A connection that has not sent a valid Logon by then is closed.
    pub logon_timeout: Duration,
    /// Connections beyond this many are closed at once (each costs a thread).
    pub max_connections: usize,
}

impl FixConfig {
    /// The QuickFIX acceptance-test setup: ISLD accepting TW44, ResetOnLogon.
    pub fn conformance(store_dir: Option<PathBuf>) -> Self {
        FixConfig {
            sessions: vec![SessionConfig::new("ISLD", "TW44")],
            store_dir,
            max_message_size: codec::DEFAULT_MAX_MESSAGE,
            poll_interval: Duration::from_millis(20),
            logout_timeout: Duration::from_secs(2),
            logon_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// A peer that does not take our bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The configured sessions, alive for the acceptor's whole life whether or not
/// a connection is up: each keeps its [`Session`] (and so its store), so the
/// application can send to it at any time ([`Sessions::send`]). A message
/// sent while the counterparty is not logged on is stored under the next
/// MsgSeqNum and reaches it by ResendRequest after its next Logon.
pub struct Sessions {
    slots: BTreeMap<SessionId, Arc<Mutex<Slot>>>,
    app: OnceLock<Arc<dyn Application>>,
    opened_ms: i64,
}

struct Slot {
    session: Session,
    /// The live connection (a clone of its socket), once claimed.
    writer: Option<TcpStream>,
    claimed: bool,
    /// Order requests awaiting their first answer: (ClOrdID, when read),
    /// oldest first, for the round-trip histogram.
    pending: std::collections::VecDeque<(Vec<u8>, Instant)>,
    /// Counted in the sessions gauge (and logged) as logged on.
    counted_on: bool,
}

/// Most order requests whose answer time is awaited per session.
const MAX_PENDING_TIMES: usize = 4_096;

impl Slot {
    /// Counts an outbound message; an execution report or cancel reject
    /// answering a pending request closes its round trip.
    fn count_sent(&mut self, bytes: &[u8]) {
        crate::meters::sent(bytes);
        let msg_type = crate::meters::field(bytes, b"35");
        if msg_type == Some(b"8") || msg_type == Some(b"9") {
            let rejected =
                msg_type == Some(b"9") || crate::meters::field(bytes, b"150") == Some(b"8");
            // Only refusals are logged at info; every report at debug.
            if rejected || tracing::enabled!(tracing::Level::DEBUG) {
                self.log_report(bytes, rejected);
            }
        }
        if self.pending.is_empty() {
            return;
        }
        if matches!(crate::meters::field(bytes, b"35"), Some(b"8" | b"9")) {
            if let Some(id) = crate::meters::field(bytes, b"11") {
                if let Some(at) = self.pending.iter().position(|(c, _)| c == id) {
                    if let Some((_, read_at)) = self.pending.remove(at) {
                        crate::meters::surface().observe_latency(read_at.elapsed());
                    }
                }
            }
        }
    }

    /// One log line about an execution report or cancel reject, with its
    /// correlation ids: session, ClOrdID, the engine's order id and the
    /// engine sequence number (the ExecID of an engine-driven report is
    /// `<seq>-<n>`).
    fn log_report(&self, bytes: &[u8], rejected: bool) {
        let text = |tag: &[u8]| {
            String::from_utf8_lossy(crate::meters::field(bytes, tag).unwrap_or_default())
                .into_owned()
        };
        let exec_id = text(b"17");
        let seq = exec_id
            .split_once('-')
            .and_then(|(seq, _)| seq.parse::<u64>().ok());
        let id = self.session.id();
        let session = format!("{}->{}", id.target_comp_id, id.sender_comp_id);
        let msg_type = text(b"35");
        if rejected {
            tracing::info!(
                gateway = "fix",
                session = %session,
                cl_ord_id = %text(b"11"),
                order_id = %text(b"37"),
                seq,
                msg_type = %msg_type,
                reason = %text(b"58"),
                "order request rejected"
            );
        } else {
            tracing::debug!(
                gateway = "fix",
                session = %session,
                cl_ord_id = %text(b"11"),
                order_id = %text(b"37"),
                seq,
                exec_type = %text(b"150"),
                "execution report"
            );
        }
    }

    /// Records a request read at `read_at` that awaits its answer.
    fn await_answer(&mut self, frame: &[u8], read_at: Instant) {
        if !crate::meters::is_order_request(crate::meters::field(frame, b"35")) {
            return;
        }
        if let Some(id) = crate::meters::field(frame, b"11") {
            if self.pending.len() >= MAX_PENDING_TIMES {
                self.pending.pop_front();
            }
            self.pending.push_back((id.to_vec(), read_at));
        }
    }

    /// Keeps the sessions gauge and the logon/logout log lines in step
    /// with the session's state.
    fn note_logon_state(&mut self) {
        let on = self.session.is_logged_on();
        if on == self.counted_on {
            return;
        }
        self.counted_on = on;
        let id = self.session.id();
        let store = self.session.store();
        if on {
            crate::meters::surface().sessions.inc();
            tracing::info!(
                gateway = "fix",
                session = %format_args!("{}->{}", id.target_comp_id, id.sender_comp_id),
                next_sender_seq = store.next_sender(),
                next_target_seq = store.next_target(),
                "logon"
            );
        } else {
            crate::meters::surface().sessions.dec();
            self.pending.clear();
            tracing::info!(
                gateway = "fix",
                session = %format_args!("{}->{}", id.target_comp_id, id.sender_comp_id),
                "logout"
            );
        }
    }

    /// Writes what the session produced. A write error (a peer that stopped
    /// reading past the write timeout) shuts the socket, which ends the
    /// connection thread.
    fn run(&mut self, actions: &mut Vec<Action>) {
        // Stored first, then sent: a crash never loses what the peer saw.
        self.session.flush_store();
        if actions.is_empty() {
            return;
        }
        let mut wire = Vec::new();
        for a in actions.drain(..) {
            if let Action::Send(bytes) = &a {
                self.count_sent(bytes);
            }
            match a {
                Action::Send(bytes) if wire.is_empty() => wire = bytes,
                Action::Send(bytes) => wire.extend_from_slice(&bytes),
                Action::Disconnect => break,
            }
        }
        actions.clear();
        self.note_logon_state();
        if let Some(w) = &self.writer {
            if !wire.is_empty() {
                if let Err(e) = (&*w).write_all(&wire) {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        crate::meters::surface().slow_consumers.inc();
                        let id = self.session.id();
                        tracing::warn!(
                            gateway = "fix",
                            session = %format_args!("{}->{}", id.target_comp_id, id.sender_comp_id),
                            "slow consumer disconnected: the peer did not read within the write timeout"
                        );
                    }
                    let _ = w.shutdown(Shutdown::Both);
                    self.writer = None;
                }
            }
        }
    }
}

impl Sessions {
    /// Opens the store of every configured session.
    pub fn open(config: &FixConfig) -> io::Result<Arc<Sessions>> {
        let now = now_ms();
        let mut slots = BTreeMap::new();
        for cfg in &config.sessions {
            let store = match &config.store_dir {
                Some(dir) => Store::open(dir.join(format!(
                    "{}-{}.store",
                    cfg.id.sender_comp_id, cfg.id.target_comp_id
                )))?,
                None => Store::in_memory(),
            };
            let slot = Slot {
                session: Session::new(cfg.clone(), store, now),
                writer: None,
                claimed: false,
                pending: std::collections::VecDeque::new(),
                counted_on: false,
            };
            if slots
                .insert(cfg.id.clone(), Arc::new(Mutex::new(slot)))
                .is_some()
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("FIX session {:?} configured twice", cfg.id),
                ));
            }
        }
        Ok(Arc::new(Sessions {
            slots,
            app: OnceLock::new(),
            opened_ms: now,
        }))
    }

    /// The configured session identities.
    pub fn ids(&self) -> impl Iterator<Item = &SessionId> {
        self.slots.keys()
    }

    fn slot(&self, id: &SessionId) -> Option<MutexGuard<'_, Slot>> {
        let slot = self.slots.get(id)?;
        Some(slot.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends application messages to a session, in order, each with the next
    /// MsgSeqNum (stored; on the wire only while logged on). False for an
    /// unknown session.
    pub fn send(&self, id: &SessionId, msgs: Vec<OutboundMessage>) -> bool {
        self.send_folded(id, msgs, None)
    }

    /// [`Sessions::send`], then (with `folded`) a store record that every
    /// report of the engine's commands up to that sequence number is
    /// stored, written with the messages in one flush.
    pub fn send_folded(
        &self,
        id: &SessionId,
        msgs: Vec<OutboundMessage>,
        folded: Option<u64>,
    ) -> bool {
        let Some(mut slot) = self.slot(id) else {
            return false;
        };
        let now = now_ms();
        let mut actions = Vec::with_capacity(msgs.len());
        for m in msgs {
            slot.session.send_app(m, now, &mut actions);
        }
        if let Some(seq) = folded {
            slot.session.note_folded(seq);
        }
        slot.run(&mut actions);
        true
    }

    /// The engine sequence number whose reports are all in the session's
    /// store (0 for an unknown session).
    pub fn folded(&self, id: &SessionId) -> u64 {
        self.slot(id).map_or(0, |s| s.session.store().folded())
    }

    /// The session is logged on now.
    pub fn is_logged_on(&self, id: &SessionId) -> bool {
        self.slot(id).is_some_and(|s| s.session.is_logged_on())
    }

    /// Next MsgSeqNum we will send and the next one we expect.
    pub fn sequence_numbers(&self, id: &SessionId) -> Option<(u64, u64)> {
        self.slot(id).map(|s| {
            (
                s.session.store().next_sender(),
                s.session.store().next_target(),
            )
        })
    }

    /// Starts the Logout handshake of a logged-on session.
    pub fn logout(&self, id: &SessionId, text: &str) {
        let Some(app) = self.app.get() else { return };
        if let Some(mut slot) = self.slot(id) {
            let mut actions = Vec::new();
            slot.session
                .start_logout(text, now_ms(), &**app, &mut actions);
            slot.run(&mut actions);
        }
    }

    /// Daily resets that are due at `now`: the session is logged out (if it
    /// is on) and its sequence numbers go back to 1. A reset missed while
    /// the process was down happens at the first tick after start.
    pub fn tick(&self, now: i64) {
        let Some(app) = self.app.get() else { return };
        for slot in self.slots.values() {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            let Some(at) = slot.session.config().reset_at_ms else {
                continue;
            };
            let boundary = last_boundary(now, at);
            let last = slot.session.store().reset_ms().unwrap_or(self.opened_ms);
            if last >= boundary {
                continue;
            }
            let mut actions = Vec::new();
            slot.session
                .start_logout("Daily session reset", now, &**app, &mut actions);
            slot.run(&mut actions);
            slot.session.reset_sequences(now);
        }
    }
}

/// The latest time at or before `now` whose UTC time of day is `at_ms`.
pub fn last_boundary(now: i64, at_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let b = now - now.rem_euclid(DAY) + at_ms.rem_euclid(DAY);
    if b > now {
        b - DAY
    } else {
        b
    }
}

struct Shared {
    config: FixConfig,
    sessions: Arc<Sessions>,
    app: Arc<dyn Application>,
    stop: AtomicBool,
    connections: AtomicUsize,
    refused: AtomicUsize,
}

/// Counts a live connection until dropped.
struct ConnectionSlot<'a>(&'a AtomicUsize);

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running acceptor.
pub struct FixServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FixServer {
    /// Start accepting on `listener`, with the sessions of `config`.
    pub fn start(
        listener: TcpListener,
        config: FixConfig,
        app: Arc<dyn Application>,
    ) -> io::Result<FixServer> {
        let sessions = Sessions::open(&config)?;
        Self::start_with(listener, config, sessions, app)
    }

    /// Start accepting on `listener` for sessions opened beforehand (so the
    /// application could be given them).
    pub fn start_with(
        listener: TcpListener,
        config: FixConfig,
        sessions: Arc<Sessions>,
        app: Arc<dyn Application>,
    ) -> io::Result<FixServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let _ = sessions.app.set(app.clone());
        let shared = Arc::new(Shared {
            config,
            sessions,
            app,
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("fix-accept".into())
            .spawn(move || {
                let mut last_tick = Instant::now();
                s.sessions.tick(now_ms());
                while !s.stop.load(Ordering::Relaxed) {
                    if last_tick.elapsed() >= Duration::from_millis(500) {
                        last_tick = Instant::now();
                        s.sessions.tick(now_ms());
                    }
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if s.connections.fetch_add(1, Ordering::Relaxed)
                                >= s.config.max_connections
                            {
                                s.connections.fetch_sub(1, Ordering::Relaxed);
                                s.refused.fetch_add(1, Ordering::Relaxed);
                                let _ = stream.shutdown(Shutdown::Both);
                                continue;
                            }
                            let s2 = Arc::clone(&s);
                            let spawned = std::thread::Builder::new()
                                .name("fix-conn".into())
                                .spawn(move || {
                                    let _slot = ConnectionSlot(&s2.connections);
                                    if let Err(e) = connection(stream, &s2) {
                                        tracing::warn!(gateway = "fix", error = %e, "connection error");
                                    }
                                });
                            if spawned.is_err() {
                                s.connections.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(FixServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now, and connections refused over the limit.
    pub fn connection_counts(&self) -> (usize, usize) {
        (
            self.shared.connections.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
        )
    }

    /// The sessions this acceptor serves.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.shared.sessions
    }

    /// Stop accepting and ask connections to close.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FixServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The connection's claim on a session: released (and the application told
/// of the disconnect) when the connection ends.
struct Claim<'a> {
    slot: &'a Mutex<Slot>,
    app: &'a dyn Application,
}

impl Claim<'_> {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut slot = self.lock();
        slot.session.on_disconnected(self.app);
        slot.writer = None;
        slot.claimed = false;
        slot.note_logon_state();
    }
}

fn graceful_close(mut stream: TcpStream, timeout: Duration) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + timeout;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let cfg = &shared.config;
    let app: &dyn Application = &*shared.app;
    stream.set_read_timeout(Some(cfg.poll_interval))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 65536];
    let mut claim: Option<Claim<'_>> = None;
    let mut actions = Vec::new();
    let result = 'conn: loop {
        if shared.stop.load(Ordering::Relaxed) {
            break Ok(false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break Ok(false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => break Err(e),
        }
        let mut at = 0;
        loop {
            match codec::next_frame(&buf[at..], cfg.max_message_size) {
                Frame::Incomplete => break,
                Frame::Garbled { skip } => {
                    at += skip;
                    crate::meters::surface().error("garbled");
                    let Some(c) = &claim else {
                        break 'conn Ok(false);
                    };
                    let mut slot = c.lock();
                    slot.session.on_garbled(app, &mut actions);
                    slot.run(&mut actions);
                    if slot.session.is_closed() {
                        break 'conn Ok(true);
                    }
                }
                Frame::Message { len } => {
                    let frame = &buf[at..at + len];
                    at += len;
                    let read_at = Instant::now();
                    crate::meters::received(frame);
                    if claim.is_none() {
                        let Some(new) = open_session(frame, &stream, shared) else {
                            crate::meters::surface().error("logon_refused");
                            let text = |tag: &[u8]| {
                                String::from_utf8_lossy(
                                    crate::meters::field(frame, tag).unwrap_or_default(),
                                )
                                .into_owned()
                            };
                            tracing::warn!(
                                gateway = "fix",
                                sender_comp_id = %text(b"49"),
                                target_comp_id = %text(b"56"),
                                "connection closed: unknown CompIDs, or the session is already connected"
                            );
                            break 'conn Ok(false);
                        };
                        claim = Some(new);
                    }
                    if let Some(c) = &claim {
                        let mut slot = c.lock();
                        slot.await_answer(frame, read_at);
                        slot.session.on_frame(frame, now_ms(), app, &mut actions);
                        slot.run(&mut actions);
                        if slot.session.is_closed() {
                            break 'conn Ok(true);
                        }
                    }
                }
            }
        }
        buf.drain(..at);
        match &claim {
            Some(c) => {
                let mut slot = c.lock();
                slot.session.on_timer(now_ms(), app, &mut actions);
                slot.run(&mut actions);
                // Closed here, or by another thread (scheduled reset, a write
                // that failed).
                if slot.session.is_closed() || slot.writer.is_none() {
                    break Ok(true);
                }
            }
            None if started.elapsed() > cfg.logon_timeout => break Ok(false),
            None => {}
        }
    };
    // Release the session before lingering, so the peer can log on again at once.
    drop(claim);
    match result {
        Ok(true) => graceful_close(stream, cfg.logout_timeout),
        Ok(false) => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// How long a Logon waits for the session's previous connection to finish
/// tearing down before it is refused as a second connection.
const RELOGON_GRACE: Duration = Duration::from_millis(1_000);

/// Identify the session of a first frame and claim it; `None` means close silently
/// (unknown CompIDs, or the session already has a connection).
fn open_session<'a>(frame: &[u8], stream: &TcpStream, shared: &'a Shared) -> Option<Claim<'a>> {
    let fields = codec::parse(frame).ok()?;
    let get = |t: u32| fields.iter().find(|f| f.tag == t).map(|f| f.value);
    let (_, slot) = shared.sessions.slots.iter().find(|(id, _)| {
        get(56) == Some(id.sender_comp_id.as_bytes())
            && get(49) == Some(id.target_comp_id.as_bytes())
    })?;
    let writer = stream.try_clone().ok()?;
    // A peer that drops its connection and logs on again at once races the
    // old connection's teardown: give that a moment before refusing.
    let deadline = Instant::now() + RELOGON_GRACE;
    let mut guard = loop {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if !guard.claimed {
            break guard;
        }
        drop(guard);
        if Instant::now() >= deadline || shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    guard.claimed = true;
    guard.writer = Some(writer);
    guard.session.reopen(now_ms());
    drop(guard);
    Some(Claim {
        slot,
        app: &*shared.app,
    })
}
