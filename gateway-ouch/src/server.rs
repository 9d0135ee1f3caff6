//! The OUCH 4.2 session server over SoupBinTCP 3.0, on std threads and
//! blocking sockets with timeouts (no async runtime).
//!
//! Threads:
//! - one acceptor (non-blocking listener polled every 10 ms, so shutdown
//!   needs no wake-up connection);
//! - per configured user, one engine session for the server's whole life
//!   (subscribed to the user's account), so fills and cancels that happen
//!   while the user is logged out are still turned into OUCH messages and
//!   stored. By default (`inline_events`) it is an *inline* consumer: the
//!   engine thread itself maps each batch's outputs, appends them to the
//!   store and sends them to the logged-in client, with no queue and no
//!   thread hand-off. Otherwise (and always with `fsync`, which the engine
//!   thread must never wait for) one *event* thread per user does it;
//! - a *day watcher* on a broadcast engine session (inline, or its own
//!   thread): it only records how far the engine has published and where
//!   its `DayEnded` events are, so each user's trading day closes at the
//!   same command boundary (see [`crate::day`]);
//! - per connection, a reader (login, then inbound messages) and a writer.
//!   The writer sends stored messages from the requested sequence number
//!   on; once caught up it hands the connection to the storing threads
//!   (a [`LiveSink`]), which send each new message as they store it, and
//!   only sends heartbeats after a second of silence. It tails the store
//!   again when the sink is dropped (a live send that would block longer
//!   than one 1 ms send slice leaves its rest to the writer), and sends
//!   End of Session once its day has closed and is all sent.
//!
//! Ordering: every sequenced message is appended to the store under the
//! user's lock before anyone can send it, and sends happen under that lock
//! or (the writer's catch-up) strictly before the live hand-over, so a
//! client that asks for sequence N gets exactly the stored messages N,
//! N+1, ... then the live ones, with no gap and no duplicate, within one
//! gateway run and across restarts (see [`crate::regen`] for a store the
//! journal is ahead of).

use crate::book::{event_tag, is_ouch_tag, since_midnight_ns, Directory, Step};
use crate::codec::{token_hint, Inbound, Outbound};
use crate::day::{self, Day};
use crate::reasons::reject;
use crate::regen::{regenerate, Window};
use crate::store::{Mark, MessageStore, StoreError};
use brokerx_engine::pipeline::{InlineConsumer, Output, Pipeline, SessionHandle, Submitter};
use brokerx_engine::{AccountId, Command, Event, SymbolId};
use brokerx_soupbin::{alpha_trimmed, LoginRejectReason, Packet, SESSION_BYTES};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often blocking calls wake up to look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest session name prefix: leaves at least 4 digits for the day.
const SESSION_PREFIX_BYTES: usize = 6;
/// Most stored messages the writer sends in one write.
const WRITE_BATCH_MESSAGES: u64 = 256;
/// The sockets' send timeout: one blocked `write` gives up after this, so
/// a thread that sends live messages (possibly the engine's) is never held
/// by a client that stops reading; the writer thread retries up to
/// `write_timeout`.
const WRITE_SLICE: Duration = Duration::from_millis(1);

/// One login: credentials, the risk account its orders trade for, and
/// whether its resting orders are cancelled when its connection ends.
#[derive(Clone, Debug)]
pub struct OuchUser {
    /// 1-6 ASCII bytes (the SoupBinTCP username field).
    pub username: String,
    /// Up to 10 ASCII bytes.
    pub password: String,
    pub account: AccountId,
    pub cancel_on_disconnect: bool,
}

#[derive(Clone, Debug)]
pub struct OuchConfig {
    pub users: Vec<OuchUser>,
    /// OUCH stock name (1-8 ASCII bytes) for each engine symbol.
    pub symbols: Vec<(String, SymbolId)>,
    /// One message store file per user, `<username>.msgs`, lives here.
    pub data_dir: PathBuf,
    /// Prefix (up to 6 ASCII bytes) of the SoupBinTCP session names: day
    /// N's session is the prefix then N zero-padded to 10 bytes
    /// ("BRKX000001" for the default).
    pub session: String,
    pub heartbeat_interval: Duration,
    /// A client silent this long (or not logged in this long) is closed.
    pub client_timeout: Duration,
    /// Largest accepted SoupBinTCP frame.
    pub max_frame_bytes: usize,
    /// `fdatasync` each stored message (else it is only written).
    pub fsync: bool,
    /// Socket write timeout: a client that stops reading is dropped.
    pub write_timeout: Duration,
    /// Most open connections (logged in or not); more are closed at once.
    pub max_connections: usize,
    /// Send each new message from the thread that stores it (the user's
    /// event thread, or the session reader for a gateway reject) once the
    /// connection's writer has caught up, instead of waking the writer:
    /// one thread hand-off fewer per message (default on).
    pub live_send: bool,
    /// Turn engine outputs into stored (and live-sent) messages on the
    /// engine's own thread, as an inline pipeline consumer, instead of one
    /// event thread per user: one thread hand-off fewer per order (default
    /// on). Ignored with `fsync` (the engine thread never fsyncs for us).
    pub inline_events: bool,
}

impl OuchConfig {
    /// Defaults: 1 s heartbeats, 15 s client timeout, 1 KiB frames, no
    /// users and no symbols.
    pub fn new(data_dir: PathBuf) -> OuchConfig {
        OuchConfig {
            users: Vec::new(),
            symbols: Vec::new(),
            data_dir,
            session: "BRKX".into(),
            heartbeat_interval: Duration::from_secs(1),
            client_timeout: Duration::from_secs(15),
            max_frame_bytes: brokerx_soupbin::DEFAULT_MAX_FRAME_BYTES,
            fsync: false,
            write_timeout: Duration::from_secs(5),
            max_connections: 64,
            live_send: true,
            inline_events: true,
        }
    }
}

#[derive(Debug)]
pub enum OuchError {
    Config(String),
    Store(StoreError),
    Io(std::io::Error),
}

impl std::fmt::Display for OuchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OuchError::Config(text) => write!(f, "ouch config: {text}"),
            OuchError::Store(error) => write!(f, "ouch message store: {error}"),
            OuchError::Io(error) => write!(f, "ouch: {error}"),
        }
    }
}

impl std::error::Error for OuchError {}

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters, one per kind of event and of bad input.
        #[derive(Debug, Default)]
        pub struct OuchStats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`OuchStats`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct OuchStatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl OuchStats {
            pub fn snapshot(&self) -> OuchStatsSnapshot {
                OuchStatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

stats! {
    connections_accepted,
    /// Closed at once: `max_connections` already open.
    connections_refused,
    logins_accepted,
    /// Login Rejected 'A': unknown user or wrong password.
    logins_rejected_not_authorized,
    /// Login Rejected 'S': user already connected, wrong session, or the
    /// user's engine session failed.
    logins_rejected_session_unavailable,
    /// First packet was not a Login Request: closed.
    closed_before_login,
    /// Undecodable SoupBinTCP framing (or a server packet type from the
    /// client): closed.
    framing_errors,
    /// Client silent past the timeout (or no login in time): closed.
    client_timeouts,
    /// Unsequenced Data packets received after login.
    messages_received,
    /// OUCH message of unknown type or wrong length: Rejected 'm'.
    malformed_messages,
    /// Bad field (side, shares, price, stock, tif, ...): Rejected.
    invalid_fields,
    /// Enter/Replace with a token already used today: Rejected 'd'.
    duplicate_tokens,
    /// Engine queue full: Rejected 'b'.
    busy_rejections,
    /// Rejected messages caused by engine reject codes.
    engine_rejections,
    /// Cancels of unknown or closed tokens, or cancel-down to at least
    /// the open quantity: ignored, as OUCH specifies.
    ignored_cancels,
    commands_submitted,
    sequenced_messages_stored,
    sequenced_messages_sent,
    heartbeats_sent,
    cancel_on_disconnect_sent,
    store_failures,
    /// The engine cut a user's event session off (should not happen).
    engine_sessions_lost,
    /// Trading days closed (one per user per engine end of day).
    days_closed,
    /// Inbound messages on a connection of a day that has closed: not
    /// processed (the client gets End of Session and logs in again).
    stale_day_messages,
    /// The engine cut the day watcher off (should not happen): no more
    /// day rollovers until the gateway restarts.
    day_watch_lost,
    /// Outputs rebuilt from the journal at start (the store lacked them).
    outputs_regenerated,
    /// Intents the journal never got (lost with the engine's queue in a
    /// crash): their tokens are free again.
    intents_unsequenced,
    /// Journaled commands of ours that the rebuilt token state could not
    /// map (should not happen; their answers are lost).
    regeneration_orphans,
}

struct UserState {
    /// The current trading day: number, store, token state.
    today: Day,
    /// The day closed last, for the writers still sending it.
    previous: Option<(u64, MessageStore)>,
    /// Set when the store failed or the engine session was lost: the user
    /// can no longer be served correctly.
    failed: Option<String>,
    /// How far the store reflects the engine (written as its mark).
    mark: Mark,
    /// Command whose own tagged output was last counted in `mark.answered`.
    last_answered: u64,
    /// Day ends applied (index into the day clock's `ends`), inline mode.
    applied: usize,
    /// The logged-in connection, once its writer has caught up: whoever
    /// stores messages (the event thread, or the reader for a gateway
    /// reject) also sends them on it, under this lock, so a live message
    /// crosses no further thread.
    live: Option<LiveSink>,
    /// Commands submitted and not yet answered: (tag, when the message
    /// was read), oldest first, for the round-trip histogram.
    pending: std::collections::VecDeque<(u64, Instant)>,
}

/// Most submitted commands whose answer time is awaited (older ones are
/// forgotten, not measured).
const MAX_PENDING_TIMES: usize = 4_096;

/// The connection a caught-up writer hands to the storing threads.
struct LiveSink {
    stream: TcpStream,
    day: u64,
    writer: Arc<WriterState>,
}

/// Shared by a connection's writer thread and its live sink.
struct WriterState {
    /// Sequence number of the next message to send.
    next: AtomicU64,
    /// When anything was last written (ns since `epoch`), for heartbeats.
    last_sent_ns: AtomicU64,
    epoch: Instant,
    alive: Arc<AtomicBool>,
    /// Bytes a live send could not write at once: the writer thread sends
    /// them before anything else.
    backlog: Mutex<Vec<u8>>,
}

impl WriterState {
    fn touch(&self) {
        self.last_sent_ns
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_nanos(
            self.last_sent_ns.load(Ordering::Relaxed),
        ))
    }
}

struct User {
    config: OuchUser,
    state: Mutex<UserState>,
    /// Signalled after each append to the store, and when a connection
    /// ends.
    changed: Condvar,
    connected: AtomicBool,
    submitter: Submitter,
    /// The day watcher's nudge: a day ended.
    wake: (Sender<()>, Receiver<()>),
}

impl User {
    fn lock(&self) -> MutexGuard<'_, UserState> {
        // Nothing panics while holding this lock; if something ever did,
        // carry on with the state as it is rather than panic in turn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Shared {
    config: OuchConfig,
    directory: Directory,
    users: Vec<Arc<User>>,
    stats: OuchStats,
    stop: AtomicBool,
    pipeline: Arc<Pipeline>,
    open_connections: AtomicUsize,
    clock: Arc<Mutex<DayClock>>,
    /// Signalled when the watcher's `watermark` moves.
    clock_changed: Arc<Condvar>,
    /// Inline mode: the engine sessions to disconnect at shutdown.
    inline_sessions: Vec<brokerx_engine::pipeline::SessionId>,
    meters: crate::meters::Meters,
}

/// What the day watcher (a broadcast engine session, so it sees every
/// command's events, `DayEnded` included) has seen.
#[derive(Default)]
struct DayClock {
    /// Sequence number of the last command the watcher saw events of.
    watermark: u64,
    /// (sequence number, engine timestamp) of each `DayEnded` this run.
    ends: Vec<(u64, u64)>,
    /// The watcher was cut off: no more rollovers.
    lost: bool,
}

impl Shared {
    fn clock(&self) -> MutexGuard<'_, DayClock> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `index`-th day end of this run, if the watcher has seen it.
    fn day_end(&self, index: usize) -> Option<(u64, u64)> {
        self.clock().ends.get(index).copied()
    }

    /// Waits until the watcher has seen every command up to `seq`, so
    /// every day end before it is known. False on stop.
    fn wait_watermark(&self, seq: u64) -> bool {
        let mut clock = self.clock();
        while clock.watermark < seq && !clock.lost {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            clock = self
                .clock_changed
                .wait_timeout(clock, POLL_INTERVAL)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }
}

/// Inline mode: a user's engine session, fed on the engine thread.
#[derive(Default)]
struct InlineUser {
    inbox: Mutex<Vec<Output>>,
    target: OnceLock<(Weak<Shared>, Arc<User>)>,
    /// Set once the outputs regenerated at start are stored.
    ready: AtomicBool,
    /// The user's `applied` day ends, for a lock-free "nothing to do".
    applied: AtomicUsize,
}

impl InlineConsumer for InlineUser {
    fn output(&self, output: &Output) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(*output);
    }

    /// After each engine batch: the batch is published, so every day end
    /// the watcher (an inline consumer registered first) has recorded has
    /// all its outputs to this user in the inbox.
    fn flush(&self) {
        if !self.ready.load(Ordering::Acquire) {
            return;
        }
        let Some((shared, user)) = self.target.get() else {
            return;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let idle = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            && shared.clock().ends.len() <= self.applied.load(Ordering::Acquire);
        if idle {
            return;
        }
        let mut state = user.lock();
        let outputs = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        store_outputs(&shared, user, &mut state, &outputs, u64::MAX);
        self.applied.store(state.applied, Ordering::Release);
    }
}

/// Inline mode: the day watcher, fed on the engine thread.
struct InlineWatch {
    clock: Arc<Mutex<DayClock>>,
}

impl InlineConsumer for InlineWatch {
    fn output(&self, output: &Output) {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.watermark = clock.watermark.max(output.seq);
        if matches!(output.event, Event::DayEnded { .. }) {
            clock.ends.push((output.seq, output.timestamp_ns));
        }
    }

    fn flush(&self) {}
}

/// Stores outputs (mapped to OUCH messages), closing the day at each day
/// end before an output of a later command, and at the day ends up to
/// `complete_through` (all of whose outputs are known to be here).
fn store_outputs(
    shared: &Shared,
    user: &User,
    state: &mut UserState,
    outputs: &[Output],
    complete_through: u64,
) {
    let mut from = 0;
    for (i, output) in outputs.iter().enumerate() {
        while let Some((end, timestamp_ns)) = shared.day_end(state.applied) {
            if end >= output.seq {
                break;
            }
            apply_outputs(shared, user, state, &outputs[from..i]);
            from = i;
            roll_over(shared, user, state, end, timestamp_ns);
            state.applied += 1;
        }
    }
    apply_outputs(shared, user, state, &outputs[from..]);
    while let Some((end, timestamp_ns)) = shared.day_end(state.applied) {
        if end > complete_through {
            break;
        }
        roll_over(shared, user, state, end, timestamp_ns);
        state.applied += 1;
    }
}

/// A running OUCH server. Dropping it shuts it down.
pub struct OuchServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    threads: Mutex<Vec<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn check_config(config: &OuchConfig) -> Result<(), OuchError> {
    let bad = |text: String| Err(OuchError::Config(text));
    if config.session.len() > SESSION_PREFIX_BYTES
        || !config.session.is_ascii()
        || config.session.contains(' ')
    {
        return bad(format!(
            "session prefix {:?} must be up to 6 ASCII bytes without spaces",
            config.session
        ));
    }
    for (i, user) in config.users.iter().enumerate() {
        if user.username.is_empty()
            || user.username.len() > brokerx_soupbin::USERNAME_BYTES
            || !user.username.is_ascii()
            || user.username.contains(' ')
        {
            return bad(format!(
                "username {:?} must be 1-6 ASCII bytes",
                user.username
            ));
        }
        if user.password.len() > brokerx_soupbin::PASSWORD_BYTES || !user.password.is_ascii() {
            return bad(format!(
                "password of {:?} must be up to 10 ASCII bytes",
                user.username
            ));
        }
        if config.users[..i]
            .iter()
            .any(|u| u.username.eq_ignore_ascii_case(&user.username))
        {
            return bad(format!("username {:?} listed twice", user.username));
        }
    }
    if config.max_frame_bytes < 64 {
        return bad("max_frame_bytes must be at least 64".into());
    }
    Ok(())
}

impl OuchServer {
    /// Opens every user's message store (rebuilding its token state from
    /// it), connects one engine session per user, and starts accepting on
    /// `listener`.
    pub fn start(
        listener: TcpListener,
        pipeline: Arc<Pipeline>,
        config: OuchConfig,
    ) -> Result<OuchServer, OuchError> {
        check_config(&config)?;
        let directory = Directory::new(&config.symbols).map_err(OuchError::Config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(OuchError::Io)?;
        let mut users = Vec::new();
        let mut sessions: Vec<SessionHandle> = Vec::new();
        let mut submitters = Vec::new();
        let inline = config.inline_events && !config.fsync;
        let clock: Arc<Mutex<DayClock>> = Arc::default();
        let mut inlines: Vec<Arc<InlineUser>> = Vec::new();
        // Registered before the users' sessions, so it sees every command
        // they see.
        let (_, watch) = if inline {
            let watcher = Arc::new(InlineWatch {
                clock: clock.clone(),
            });
            pipeline.connect_inline(&[], true, watcher)
        } else {
            pipeline.connect(&[], true)
        };
        for user in &config.users {
            let (submitter, handle) = if inline {
                let consumer = Arc::new(InlineUser::default());
                inlines.push(consumer.clone());
                pipeline.connect_inline(&[user.account], false, consumer)
            } else {
                pipeline.connect(&[user.account], false)
            };
            sessions.push(handle);
            submitters.push(submitter);
        }
        // Where each session's live outputs start: everything before comes
        // from the store and, where the store lags, from the journal.
        let registered = |handle: &SessionHandle| {
            handle
                .registered_after(Duration::from_secs(10))
                .ok_or_else(|| OuchError::Config("the engine did not register a session".into()))
        };
        let watch_from = registered(&watch)?;
        let mut days = Vec::new();
        let mut windows = Vec::new();
        let mut from = u64::MAX;
        let mut live_froms = Vec::new();
        for (user, handle) in config.users.iter().zip(&sessions) {
            let live_from = registered(handle)?;
            live_froms.push(live_from);
            let mut today = day::open_current_day(
                &config.data_dir,
                &user.username,
                user.account,
                config.fsync,
                since_midnight_ns(wall_clock_ns()),
                &directory,
                live_from,
            )
            .map_err(OuchError::Store)?;
            // A store from before marks existed: nothing to regenerate.
            let mark = today.store.mark().unwrap_or(Mark {
                seq: live_from,
                outputs: u64::MAX,
                answered: today.store.intents().len() as u64,
            });
            let day_start = today.store.day_start().unwrap_or(watch_from);
            from = from.min(mark.seq.min(day_start) + 1);
            windows.push(Window {
                account: user.account,
                mark,
                until: live_from,
                pending: std::mem::take(&mut today.pending).into(),
                resumed: today.resumed.take(),
            });
            days.push((today, mark, day_start));
        }
        let regenerated = regenerate(
            pipeline.data_dir(),
            pipeline.engine_config(),
            windows,
            from,
            watch_from,
        )
        .map_err(|e| OuchError::Config(format!("regenerating from the journal: {e}")))?;
        let stats = OuchStats::default();
        let mut preludes = Vec::new();
        for ((user, submitter), ((mut today, mark, day_start), rebuilt)) in config
            .users
            .iter()
            .zip(submitters)
            .zip(days.into_iter().zip(regenerated.users))
        {
            for tag in &rebuilt.unsequenced {
                today.book.release_tag(*tag);
            }
            stats
                .outputs_regenerated
                .fetch_add(rebuilt.outputs.len() as u64, Ordering::Relaxed);
            stats
                .intents_unsequenced
                .fetch_add(rebuilt.unsequenced.len() as u64, Ordering::Relaxed);
            stats
                .regeneration_orphans
                .fetch_add(rebuilt.orphans, Ordering::Relaxed);
            // The file's intents become: the last answered one (its command
            // may have outputs still to store) and those the journal has;
            // the others never reached the engine.
            let mut mark = mark;
            let intents = today.store.intents();
            let mut keep: Vec<crate::store::Intent> = Vec::new();
            if let Some(last) = usize::try_from(mark.answered)
                .ok()
                .and_then(|k| k.checked_sub(1))
                .and_then(|i| intents.get(i))
            {
                keep.push(last.clone());
            }
            mark.answered = keep.len() as u64;
            keep.extend(
                rebuilt
                    .sequenced
                    .iter()
                    .filter_map(|&i| intents.get(i).cloned()),
            );
            if keep.len() != intents.len() || mark != today.store.mark().unwrap_or(mark) {
                today
                    .store
                    .reset_intents(&keep, mark)
                    .map_err(OuchError::Store)?;
            }
            // Day ends this store has already been through.
            let applied = regenerated
                .ends
                .iter()
                .filter(|(end, _)| *end <= day_start)
                .count();
            preludes.push((rebuilt.outputs, applied));
            users.push(Arc::new(User {
                config: user.clone(),
                state: Mutex::new(UserState {
                    today,
                    previous: None,
                    failed: None,
                    mark,
                    last_answered: mark.seq,
                    applied,
                    live: None,
                    pending: std::collections::VecDeque::new(),
                }),
                changed: Condvar::new(),
                connected: AtomicBool::new(false),
                submitter,
                wake: crossbeam_channel::bounded(1),
            }));
        }
        listener.set_nonblocking(true).map_err(OuchError::Io)?;
        let local_addr = listener.local_addr().map_err(OuchError::Io)?;
        let shared = Arc::new(Shared {
            config,
            directory,
            users,
            stats,
            stop: AtomicBool::new(false),
            pipeline,
            open_connections: AtomicUsize::new(0),
            clock: clock.clone(),
            clock_changed: Arc::new(Condvar::new()),
            inline_sessions: if inline {
                std::iter::once(watch.id)
                    .chain(sessions.iter().map(|h| h.id))
                    .collect()
            } else {
                Vec::new()
            },
            meters: crate::meters::Meters::new(),
        });
        {
            // History first, then what the watcher has seen live (after
            // `watch_from`, so nothing twice).
            let mut clock = clock.lock().unwrap_or_else(|e| e.into_inner());
            let live = std::mem::take(&mut clock.ends);
            clock.ends = regenerated.ends;
            clock.ends.extend(live);
            clock.watermark = clock.watermark.max(watch_from);
        }
        let mut threads = Vec::new();
        if inline {
            for ((user, consumer), ((prelude, _), live_from)) in shared
                .users
                .iter()
                .zip(&inlines)
                .zip(preludes.into_iter().zip(live_froms))
            {
                let _ = consumer.target.set((Arc::downgrade(&shared), user.clone()));
                let mut state = user.lock();
                // The regenerated outputs, then what arrived live meanwhile;
                // day ends up to `live_from` are complete, later ones are
                // closed by the engine thread's next flush.
                store_outputs(&shared, user, &mut state, &prelude, live_from);
                let live =
                    std::mem::take(&mut *consumer.inbox.lock().unwrap_or_else(|e| e.into_inner()));
                store_outputs(&shared, user, &mut state, &live, live_from);
                consumer.applied.store(state.applied, Ordering::Release);
                consumer.ready.store(true, Ordering::Release);
            }
        } else {
            {
                let shared = shared.clone();
                let thread = std::thread::Builder::new()
                    .name("ouch-day-watch".into())
                    .spawn(move || watch_loop(&shared, watch))
                    .map_err(OuchError::Io)?;
                threads.push(thread);
            }
            for ((user, handle), (prelude, applied)) in
                shared.users.iter().zip(sessions).zip(preludes)
            {
                let shared = shared.clone();
                let user = user.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("ouch-events-{}", user.config.username))
                    .spawn(move || event_loop(&shared, &user, handle, prelude, applied))
                    .map_err(OuchError::Io)?;
                threads.push(thread);
            }
        }
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        {
            let shared = shared.clone();
            let connections = connections.clone();
            let thread = std::thread::Builder::new()
                .name("ouch-accept".into())
                .spawn(move || accept_loop(&shared, listener, &connections))
                .map_err(OuchError::Io)?;
            threads.push(thread);
        }
        Ok(OuchServer {
            shared,
            local_addr,
            threads: Mutex::new(threads),
            connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> OuchStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Stops accepting, closes every connection (within ~100 ms), and
    /// disconnects the users' engine sessions. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        for user in &self.shared.users {
            user.changed.notify_all();
        }
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let connections: Vec<_> =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads.into_iter().chain(connections) {
            let _ = thread.join();
        }
        for session in &self.shared.inline_sessions {
            self.shared.pipeline.disconnect(*session);
        }
    }
}

impl Drop for OuchServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    shared: &Arc<Shared>,
    listener: TcpListener,
    connections: &Mutex<Vec<JoinHandle<()>>>,
) {
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.open_connections.load(Ordering::Acquire) >= shared.config.max_connections
                {
                    count(&shared.stats.connections_refused);
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                count(&shared.stats.connections_accepted);
                shared.open_connections.fetch_add(1, Ordering::AcqRel);
                let session_shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("ouch-session".into())
                    .spawn(move || {
                        let _ = connection(&session_shared, stream);
                        session_shared
                            .open_connections
                            .fetch_sub(1, Ordering::AcqRel);
                    });
                match spawned {
                    Ok(thread) => {
                        let mut list = connections.lock().unwrap_or_else(|e| e.into_inner());
                        list.retain(|t| !t.is_finished());
                        list.push(thread);
                    }
                    // The stream went down with the closure: just undo the count.
                    Err(_) => {
                        shared.open_connections.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Appends messages to the user's store, then the user's mark (one write,
/// one sync for the group: a write torn by a power loss is recognised by
/// its missing mark), and sends them or wakes the writer.
fn store_all(shared: &Shared, user: &User, state: &mut UserState, messages: &[Outbound]) {
    let encoded: Vec<Vec<u8>> = messages.iter().map(Outbound::to_bytes).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let mark = Some(state.mark);
    let first = state.today.store.len() + 1;
    match state.today.store.append_marked(&slices, mark) {
        Ok(_) => {
            shared
                .stats
                .sequenced_messages_stored
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            for (message, bytes) in messages.iter().zip(&encoded) {
                shared.meters.sent(bytes);
                if let Outbound::Rejected { reason, .. } = message {
                    shared.meters.rejected(*reason);
                }
            }
        }
        Err(error) => {
            shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
            state.failed = Some(error.to_string());
            state.live = None;
            user.changed.notify_all();
            return;
        }
    }
    if !send_live(shared, state, first, &encoded) {
        user.changed.notify_all();
    }
}

/// Sends messages just stored as `first..` on the user's live connection,
/// if it has one that is waiting for exactly these. False if there is
/// none (the writer thread must be woken to send them).
fn send_live(shared: &Shared, state: &mut UserState, first: u64, messages: &[Vec<u8>]) -> bool {
    let today = state.today.number;
    let Some(sink) = state.live.as_mut() else {
        return false;
    };
    if sink.day != today
        || sink.writer.next.load(Ordering::Acquire) != first
        || !sink.writer.alive.load(Ordering::Acquire)
    {
        state.live = None;
        return false;
    }
    let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 3).sum());
    for message in messages {
        let length = u16::try_from(message.len() + 1).unwrap_or(u16::MAX);
        frames.extend_from_slice(&length.to_be_bytes());
        frames.push(b'S');
        frames.extend_from_slice(message);
    }
    match try_send(&mut sink.stream, &frames) {
        Ok(written) => {
            sink.writer
                .next
                .store(first + messages.len() as u64, Ordering::Release);
            sink.writer.touch();
            shared
                .stats
                .sequenced_messages_sent
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            if written == frames.len() {
                return true;
            }
            // The client is not reading fast enough: the writer thread
            // sends the rest, with the patience of `write_timeout`.
            sink.writer
                .backlog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&frames[written..]);
            state.live = None;
            false
        }
        Err(_) => {
            // The writer thread sees the connection dead and ends it.
            let _ = sink.stream.shutdown(Shutdown::Both);
            sink.writer.alive.store(false, Ordering::Release);
            state.live = None;
            false
        }
    }
}

/// Watches a broadcast engine session for `DayEnded` and publishes how far
/// it has read; nothing else, so it keeps up with any load.
fn watch_loop(shared: &Shared, handle: SessionHandle) {
    let mut ended = false;
    while !shared.stop.load(Ordering::Acquire) {
        let first = match handle.receiver.recv_timeout(POLL_INTERVAL) {
            Ok(output) => output,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // Cut off as a slow consumer, or the pipeline is shutting
                // down: either way stop making the event threads wait.
                if handle.cut_reason().is_some() {
                    count(&shared.stats.day_watch_lost);
                }
                shared.clock().lost = true;
                shared.clock_changed.notify_all();
                break;
            }
        };
        {
            let mut clock = shared.clock();
            for output in std::iter::once(first).chain(handle.receiver.try_iter().take(4096)) {
                clock.watermark = clock.watermark.max(output.seq);
                if matches!(output.event, Event::DayEnded { .. }) {
                    clock.ends.push((output.seq, output.timestamp_ns));
                    ended = true;
                }
            }
        }
        shared.clock_changed.notify_all();
        if std::mem::take(&mut ended) {
            for user in &shared.users {
                let _ = user.wake.0.try_send(());
            }
        }
    }
    shared.pipeline.disconnect(handle.id);
}

/// Closes the user's day: 'E' after the day's last message, archive, new
/// store starting with 'S', tokens of finished orders forgotten. Writers
/// of the closed day finish sending it, then End of Session.
fn roll_over(shared: &Shared, user: &User, state: &mut UserState, end_seq: u64, timestamp_ns: u64) {
    if state.failed.is_some() {
        return;
    }
    let config = &shared.config;
    let closed_day = state.today.number;
    // Writers of the closing day go back to tailing: they send the rest of
    // it, then End of Session.
    state.live = None;
    match day::close_day(
        &config.data_dir,
        &user.config.username,
        &mut state.today,
        config.fsync,
        since_midnight_ns(timestamp_ns),
        Some(()),
        end_seq,
        state.mark.answered,
    ) {
        Ok(closed) => {
            state.mark = Mark {
                seq: end_seq,
                outputs: u64::MAX,
                answered: 0,
            };
            state.last_answered = end_seq;
            count(&shared.stats.days_closed);
            shared
                .stats
                .sequenced_messages_stored
                .fetch_add(2, Ordering::Relaxed);
            state.previous = Some((closed_day, closed));
        }
        Err(error) => {
            count(&shared.stats.store_failures);
            state.failed = Some(error.to_string());
        }
    }
    user.changed.notify_all();
}

/// Turns engine outputs into OUCH messages appended to the store.
fn apply_outputs(shared: &Shared, user: &User, state: &mut UserState, outputs: &[Output]) {
    let mut messages = Vec::new();
    for output in outputs {
        state.today.book.on_output(output, &mut messages);
        let mark = &mut state.mark;
        if output.seq != mark.seq {
            mark.seq = output.seq;
            mark.outputs = 0;
        }
        mark.outputs = mark.outputs.saturating_add(1);
        if output.own && is_ouch_tag(event_tag(&output.event)) && state.last_answered != output.seq
        {
            state.mark.answered += 1;
            state.last_answered = output.seq;
            let tag = event_tag(&output.event);
            if let Some(at) = state.pending.iter().position(|(t, _)| *t == tag) {
                if let Some((_, read_at)) = state.pending.remove(at) {
                    shared.meters.surface.observe_latency(read_at.elapsed());
                }
            }
        }
    }
    let rejections = messages
        .iter()
        .filter(|m| matches!(m, Outbound::Rejected { .. }))
        .count();
    shared
        .stats
        .engine_rejections
        .fetch_add(rejections as u64, Ordering::Relaxed);
    if !messages.is_empty() {
        store_all(shared, user, state, &messages);
    }
}

/// Owns the user's engine session: turns outputs into stored messages,
/// and closes the day at each engine end of day.
///
/// Day boundary: the watcher sees `DayEnded` of command E only after the
/// engine has queued every output of commands up to E for this session
/// (one thread publishes them in order). So an output of a command after
/// E is stored in the next day (before it, the watcher is awaited up to
/// that command), and once E is known with this queue empty, every
/// output of the day has been stored and the day can close.
fn event_loop(
    shared: &Shared,
    user: &User,
    handle: SessionHandle,
    prelude: Vec<Output>,
    mut applied: usize,
) {
    let mut batch: Vec<Output> = Vec::new();
    let mut pending: Option<Output> = None;
    // Outputs regenerated from the journal come first.
    let mut prelude = Some(prelude).filter(|p| !p.is_empty());
    'events: while !shared.stop.load(Ordering::Acquire) {
        batch.clear();
        if let Some(outputs) = prelude.take() {
            batch.extend(outputs);
        } else if let Some(output) = pending.take() {
            batch.push(output);
        } else {
            crossbeam_channel::select! {
                recv(handle.receiver) -> output => match output {
                    Ok(output) => batch.push(output),
                    Err(_) => {
                        count(&shared.stats.engine_sessions_lost);
                        let reason = handle
                            .cut_reason()
                            .unwrap_or_else(|| "engine session closed".into());
                        user.lock().failed = Some(reason);
                        user.changed.notify_all();
                        break 'events;
                    }
                },
                recv(user.wake.1) -> _ => {}
                default(POLL_INTERVAL) => {}
            }
        }
        batch.extend(handle.receiver.try_iter().take(1024));
        if let Some(last) = batch.last() {
            if !shared.wait_watermark(last.seq) {
                break;
            }
        }
        let mut state = user.lock();
        let mut from = 0;
        for (i, output) in batch.iter().enumerate() {
            while let Some((end, timestamp_ns)) = shared.day_end(applied) {
                if end >= output.seq {
                    break;
                }
                apply_outputs(shared, user, &mut state, &batch[from..i]);
                from = i;
                roll_over(shared, user, &mut state, end, timestamp_ns);
                applied += 1;
            }
        }
        apply_outputs(shared, user, &mut state, &batch[from..]);
        // A known day end with nothing queued: all its outputs are stored.
        while let Some((end, timestamp_ns)) = shared.day_end(applied) {
            match handle.receiver.try_recv() {
                Ok(output) => {
                    pending = Some(output);
                    break;
                }
                Err(TryRecvError::Empty) => {
                    roll_over(shared, user, &mut state, end, timestamp_ns);
                    applied += 1;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
    }
    shared.pipeline.disconnect(handle.id);
}

/// Reads until one packet is decoded; `Ok(None)` on EOF, stop or timeout.
struct PacketReader {
    stream: TcpStream,
    decoder: brokerx_soupbin::Decoder,
    buffer: Vec<u8>,
    last_received: Instant,
}

enum ReadOutcome {
    Packet(Packet),
    Closed,
    TimedOut,
    Framing,
    Stopped,
}

impl PacketReader {
    fn next(&mut self, shared: &Shared, timeout: Duration) -> ReadOutcome {
        loop {
            match self.decoder.next_packet() {
                Ok(Some(packet)) => return ReadOutcome::Packet(packet),
                Ok(None) => {}
                Err(_) => return ReadOutcome::Framing,
            }
            if shared.stop.load(Ordering::Acquire) {
                return ReadOutcome::Stopped;
            }
            if self.last_received.elapsed() >= timeout {
                return ReadOutcome::TimedOut;
            }
            match self.stream.read(&mut self.buffer) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.last_received = Instant::now();
                    self.decoder.feed(&self.buffer[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }
}

fn send_packet(stream: &mut TcpStream, packet: &Packet) -> std::io::Result<()> {
    let bytes = packet
        .to_bytes()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    write_fully(stream, &bytes, Duration::from_secs(5))
}

/// Writes as much of `bytes` as the socket takes within one send timeout
/// (`WRITE_SLICE`); returns how much.
fn try_send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match stream.write(&bytes[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes all of `bytes`, retrying send timeouts until `limit` has passed.
fn write_fully(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < bytes.len() {
        done += try_send(stream, &bytes[done..])?;
        if done < bytes.len() && Instant::now() >= deadline {
            return Err(ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

/// A token as text for logs (trailing padding dropped).
fn token_text(token: &[u8]) -> String {
    String::from_utf8_lossy(token).trim_end().to_string()
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn connection(shared: &Arc<Shared>, stream: TcpStream) -> std::io::Result<()> {
    let stats = &shared.stats;
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(WRITE_SLICE))?;
    let mut writer = stream.try_clone()?;
    let mut reader = PacketReader {
        stream,
        decoder: brokerx_soupbin::Decoder::new(shared.config.max_frame_bytes),
        buffer: vec![0; 4096],
        last_received: Instant::now(),
    };
    let timeout = shared.config.client_timeout;
    let login = match reader.next(shared, timeout) {
        ReadOutcome::Packet(Packet::LoginRequest {
            username,
            password,
            requested_session,
            requested_sequence_number,
        }) => (
            username,
            password,
            requested_session,
            requested_sequence_number,
        ),
        ReadOutcome::Packet(_) => {
            count(&stats.closed_before_login);
            return Ok(());
        }
        ReadOutcome::Framing => {
            count(&stats.closed_before_login);
            count(&stats.framing_errors);
            return Ok(());
        }
        ReadOutcome::TimedOut => {
            count(&stats.client_timeouts);
            return Ok(());
        }
        ReadOutcome::Closed | ReadOutcome::Stopped => return Ok(()),
    };
    let (username, password, requested_session, requested_sequence) = login;
    let user = shared.users.iter().find(|u| {
        u.config
            .username
            .as_bytes()
            .eq_ignore_ascii_case(alpha_trimmed(&username))
            && u.config.password.as_bytes() == alpha_trimmed(&password)
    });
    let Some(user) = user.cloned() else {
        count(&stats.logins_rejected_not_authorized);
        shared.meters.surface.error("login_not_authorized");
        tracing::warn!(
            gateway = "ouch",
            username = %String::from_utf8_lossy(alpha_trimmed(&username)),
            "login rejected: not authorized"
        );
        return send_packet(
            &mut writer,
            &Packet::LoginRejected(LoginRejectReason::NotAuthorized),
        );
    };
    let today = user.lock().today.number;
    if !session_ok(shared, &requested_session, today) || !claim_session(shared, &user) {
        count(&stats.logins_rejected_session_unavailable);
        shared.meters.surface.error("login_session_unavailable");
        tracing::warn!(
            gateway = "ouch",
            session = %user.config.username,
            "login rejected: session not available (already connected, or another day's session)"
        );
        return send_packet(
            &mut writer,
            &Packet::LoginRejected(LoginRejectReason::SessionNotAvailable),
        );
    }
    // From here on this connection owns the user's `connected` flag.
    let result = logged_in(
        shared,
        &user,
        reader,
        writer,
        &requested_session,
        requested_sequence,
    );
    user.connected.store(false, Ordering::Release);
    let Ok(Session::Ended) = result else {
        // Refused login, or the day closed (its End of Session is no
        // disconnect: the client logs in to the next day's session).
        return result.map(|_| ());
    };
    if user.config.cancel_on_disconnect {
        let command = Command::MassCancelAccount {
            account: user.config.account,
            symbol: None,
            tag: 0,
        };
        for _ in 0..100 {
            if user.submitter.submit(command).is_ok() {
                count(&stats.cancel_on_disconnect_sent);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// How long a login waits for the user's previous connection to finish
/// tearing down. A client that drops its connection and logs straight in
/// again would otherwise race the server noticing the close; a second
/// client on a live session is still refused, only this much later.
const RELOGIN_GRACE: Duration = Duration::from_millis(1_000);

/// Takes the user's `connected` flag for this connection, waiting up to
/// [`RELOGIN_GRACE`] for a previous connection to release it.
fn claim_session(shared: &Shared, user: &User) -> bool {
    let deadline = Instant::now() + RELOGIN_GRACE;
    loop {
        if user
            .connected
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= deadline || shared.stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A requested session name is blank or the current day's.
fn session_ok(shared: &Shared, requested: &[u8; SESSION_BYTES], day: u64) -> bool {
    let requested = alpha_trimmed(requested);
    requested.is_empty()
        || requested == alpha_trimmed(&day::session_name(&shared.config.session, day))
}

/// How a logged-in session ended.
enum Session {
    /// Login Rejected after all (failed user, or the day changed).
    Refused,
    /// Logout, timeout, close or stop.
    Ended,
    /// The day closed: End of Session was sent.
    DayClosed,
}

fn logged_in(
    shared: &Arc<Shared>,
    user: &Arc<User>,
    mut reader: PacketReader,
    mut writer: TcpStream,
    requested_session: &[u8; SESSION_BYTES],
    requested_sequence: u64,
) -> std::io::Result<Session> {
    let stats = &shared.stats;
    let (day, next_sequence) = {
        let state = user.lock();
        let day = state.today.number;
        // The day may have closed since the first look.
        if state.failed.is_some() || !session_ok(shared, requested_session, day) {
            count(&stats.logins_rejected_session_unavailable);
            send_packet(
                &mut writer,
                &Packet::LoginRejected(LoginRejectReason::SessionNotAvailable),
            )?;
            return Ok(Session::Refused);
        }
        let next_live = state.today.store.len() + 1;
        let next = if requested_sequence == 0 {
            next_live
        } else {
            requested_sequence.min(next_live)
        };
        (day, next)
    };
    send_packet(
        &mut writer,
        &Packet::LoginAccepted {
            session: day::session_name(&shared.config.session, day),
            sequence_number: next_sequence,
        },
    )?;
    count(&stats.logins_accepted);
    shared.meters.surface.sessions.inc();
    tracing::info!(
        gateway = "ouch",
        session = %user.config.username,
        account = user.config.account.0,
        day,
        next_sequence,
        "login accepted"
    );
    let alive = Arc::new(AtomicBool::new(true));
    let writer_thread = {
        let shared = shared.clone();
        let user = user.clone();
        let alive = alive.clone();
        std::thread::Builder::new()
            .name("ouch-writer".into())
            .spawn(move || write_loop(&shared, &user, writer, &alive, day, next_sequence))?
    };
    let timeout = shared.config.client_timeout;
    loop {
        match reader.next(shared, timeout) {
            ReadOutcome::Packet(Packet::UnsequencedData(bytes)) => {
                count(&stats.messages_received);
                on_message(shared, user, day, &bytes);
            }
            ReadOutcome::Packet(Packet::ClientHeartbeat | Packet::Debug(_)) => {}
            ReadOutcome::Packet(Packet::LogoutRequest) => break,
            ReadOutcome::Packet(_) | ReadOutcome::Framing => {
                count(&stats.framing_errors);
                break;
            }
            ReadOutcome::TimedOut => {
                count(&stats.client_timeouts);
                break;
            }
            ReadOutcome::Closed | ReadOutcome::Stopped => break,
        }
        if !alive.load(Ordering::Acquire) {
            break;
        }
    }
    alive.store(false, Ordering::Release);
    // Through the user's lock, so the writer cannot miss the wake-up between
    // its look at `alive` and its wait (it would sleep a poll interval).
    drop(user.lock());
    user.changed.notify_all();
    let _ = reader.stream.shutdown(Shutdown::Both);
    let day_closed = writer_thread.join().unwrap_or(false);
    shared.meters.surface.sessions.dec();
    tracing::info!(
        gateway = "ouch",
        session = %user.config.username,
        day_closed,
        "session ended"
    );
    Ok(if day_closed {
        Session::DayClosed
    } else {
        Session::Ended
    })
}

/// One inbound OUCH message: validated, then submitted or refused.
fn on_message(shared: &Shared, user: &User, day: u64, bytes: &[u8]) {
    let stats = &shared.stats;
    let read_at = Instant::now();
    shared.meters.received(bytes);
    let now = since_midnight_ns(wall_clock_ns());
    let mut state = user.lock();
    if state.today.number != day {
        // Sent in a session that has ended: its client gets End of
        // Session and must log in to the new day.
        count(&stats.stale_day_messages);
        return;
    }
    let rejected = |token, reason| Outbound::Rejected {
        timestamp_ns: now,
        token,
        reason,
    };
    let message = match Inbound::decode(bytes) {
        Ok(message) => message,
        Err(error) => {
            count(&stats.malformed_messages);
            tracing::info!(
                gateway = "ouch",
                session = %user.config.username,
                token = %token_text(&token_hint(bytes)),
                reason = "malformed",
                error = %error,
                "message rejected"
            );
            let answer = rejected(token_hint(bytes), reject::MALFORMED);
            store_all(shared, user, &mut state, &[answer]);
            return;
        }
    };
    match state.today.book.on_inbound(&message, &shared.directory) {
        Step::Submit {
            command,
            new_token,
            token,
        } => {
            // The intent goes on file (and with fsync to disk) before the
            // engine can journal the command, so outputs the store misses
            // can be regenerated from the journal (see `regen`).
            let tag = crate::book::command_tag(&command);
            if let Err(error) = state.today.store.append_intent(tag, bytes) {
                count(&stats.store_failures);
                state.failed = Some(error.to_string());
                user.changed.notify_all();
                return;
            }
            if user.submitter.submit(command).is_ok() {
                count(&stats.commands_submitted);
                if state.pending.len() >= MAX_PENDING_TIMES {
                    state.pending.pop_front();
                }
                state.pending.push_back((tag, read_at));
                tracing::debug!(
                    gateway = "ouch",
                    session = %user.config.username,
                    token = %token_text(&token),
                    tag,
                    "command submitted"
                );
            } else {
                count(&stats.busy_rejections);
                tracing::warn!(
                    gateway = "ouch",
                    session = %user.config.username,
                    token = %token_text(&token),
                    reason = "busy",
                    "message rejected: engine queue full"
                );
                if let Err(error) = state.today.store.void_last_intent() {
                    count(&stats.store_failures);
                    state.failed = Some(error.to_string());
                }
                if let Some(index) = new_token {
                    state.today.book.release(index);
                }
                if new_token.is_some() {
                    store_all(shared, user, &mut state, &[rejected(token, reject::BUSY)]);
                }
            }
        }
        Step::Reject { token, reason } => {
            if reason == reject::DUPLICATE_TOKEN {
                count(&stats.duplicate_tokens);
            } else {
                count(&stats.invalid_fields);
            }
            tracing::info!(
                gateway = "ouch",
                session = %user.config.username,
                token = %token_text(&token),
                reason = crate::meters::reject_name(reason),
                "message rejected"
            );
            store_all(shared, user, &mut state, &[rejected(token, reason)]);
        }
        Step::Ignore => count(&stats.ignored_cancels),
    }
}

/// Sends stored messages of day `day` from `next` on, and heartbeats when
/// idle. Once caught up with the current day, it hands the connection to
/// the storing threads (a [`LiveSink`]): they send each new message as
/// they store it, and this thread only sends heartbeats, until the sink is
/// dropped (day close, an out-of-order store) and it tails the store
/// again. Once that day has closed and all of it is sent, sends End of
/// Session and returns true (false for any other end).
fn write_loop(
    shared: &Shared,
    user: &User,
    mut stream: TcpStream,
    alive: &Arc<AtomicBool>,
    day: u64,
    next: u64,
) -> bool {
    let heartbeat = shared.config.heartbeat_interval;
    let writer = Arc::new(WriterState {
        next: AtomicU64::new(next),
        last_sent_ns: AtomicU64::new(0),
        epoch: Instant::now(),
        alive: alive.clone(),
        backlog: Mutex::new(Vec::new()),
    });
    let patience = shared.config.write_timeout;
    let ours = |state: &UserState| {
        state
            .live
            .as_ref()
            .is_some_and(|sink| Arc::ptr_eq(&sink.writer, &writer))
    };
    let mut frames = Vec::with_capacity(4096);
    loop {
        frames.clear();
        let mut sent = 0u64;
        let mut end_of_session = false;
        {
            let mut state = user.lock();
            loop {
                if !alive.load(Ordering::Acquire)
                    || shared.stop.load(Ordering::Acquire)
                    || state.failed.is_some()
                {
                    if ours(&state) {
                        state.live = None;
                    }
                    let _ = stream.shutdown(Shutdown::Both);
                    alive.store(false, Ordering::Release);
                    return false;
                }
                if ours(&state) {
                    // The storing threads send; heartbeats are ours, sent
                    // under the lock so they never split their writes.
                    let idle = writer.idle();
                    if idle >= heartbeat {
                        let mut beat = Vec::new();
                        let _ = Packet::ServerHeartbeat.encode(&mut beat);
                        match try_send(&mut stream, &beat) {
                            Ok(n) => {
                                if n < beat.len() {
                                    writer
                                        .backlog
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .extend_from_slice(&beat[n..]);
                                    state.live = None;
                                }
                            }
                            Err(_) => {
                                state.live = None;
                                let _ = stream.shutdown(Shutdown::Both);
                                alive.store(false, Ordering::Release);
                                return false;
                            }
                        }
                        writer.touch();
                        count(&shared.stats.heartbeats_sent);
                        continue;
                    }
                    let wait = (heartbeat - idle).min(POLL_INTERVAL);
                    state = user
                        .changed
                        .wait_timeout(state, wait)
                        .map(|(guard, _)| guard)
                        .unwrap_or_else(|e| e.into_inner().0);
                    continue;
                }
                // Tailing: from wherever the sink (if it was ours) left off,
                // after what it could not send.
                let backlog =
                    std::mem::take(&mut *writer.backlog.lock().unwrap_or_else(|e| e.into_inner()));
                if !backlog.is_empty() {
                    frames.extend_from_slice(&backlog);
                    break;
                }
                let next = writer.next.load(Ordering::Acquire);
                let store = if state.today.number == day {
                    Some(&state.today.store)
                } else {
                    // The day closed: its store until the next close (a
                    // writer two days behind just ends its session).
                    state
                        .previous
                        .as_ref()
                        .filter(|(number, _)| *number == day)
                        .map(|(_, store)| store)
                };
                let Some(store) = store else {
                    end_of_session = true;
                    let _ = Packet::EndOfSession.encode(&mut frames);
                    break;
                };
                if store.len() >= next {
                    let end = store.len().min(next + WRITE_BATCH_MESSAGES - 1);
                    for sequence in next..=end {
                        if let Some(message) = store.get(sequence) {
                            let packet = Packet::SequencedData(message.to_vec());
                            if packet.encode(&mut frames).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    writer.next.store(end + 1, Ordering::Release);
                    break;
                }
                if state.today.number != day {
                    // The closed day is all sent.
                    end_of_session = true;
                    let _ = Packet::EndOfSession.encode(&mut frames);
                    break;
                }
                // Caught up with the current day: hand the connection over
                // (replacing a sink whose connection is gone).
                let free = state
                    .live
                    .as_ref()
                    .is_none_or(|sink| !sink.writer.alive.load(Ordering::Acquire));
                if free && shared.config.live_send {
                    if let Ok(clone) = stream.try_clone() {
                        state.live = Some(LiveSink {
                            stream: clone,
                            day,
                            writer: writer.clone(),
                        });
                        continue;
                    }
                }
                let idle = writer.idle();
                if idle >= heartbeat {
                    let _ = Packet::ServerHeartbeat.encode(&mut frames);
                    break;
                }
                let wait = (heartbeat - idle).min(POLL_INTERVAL);
                state = user
                    .changed
                    .wait_timeout(state, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let written = write_fully(&mut stream, &frames, patience);
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::TimedOut)
        {
            shared.meters.surface.slow_consumers.inc();
            tracing::warn!(
                gateway = "ouch",
                session = %user.config.username,
                "slow consumer disconnected: the client did not read its messages in time"
            );
        }
        if written.is_err() || end_of_session {
            let _ = stream.shutdown(Shutdown::Both);
            alive.store(false, Ordering::Release);
            return end_of_session && written.is_ok();
        }
        writer.touch();
        if sent == 0 {
            count(&shared.stats.heartbeats_sent);
        } else {
            shared
                .stats
                .sequenced_messages_sent
                .fetch_add(sent, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str) -> OuchUser {
        OuchUser {
            username: name.into(),
            password: password.into(),
            account: AccountId(1),
            cancel_on_disconnect: false,
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let base = OuchConfig::new(PathBuf::from("/nonexistent"));
        assert!(check_config(&base).is_ok());
        let cases: Vec<(OuchConfig, &str)> = vec![
            (
                OuchConfig {
                    users: vec![user("TOOLONGNAME", "pw")],
                    ..base.clone()
                },
                "username",
            ),
            (
                OuchConfig {
                    users: vec![user("", "pw")],
                    ..base.clone()
                },
                "username",
            ),
            (
                OuchConfig {
                    users: vec![user("A", "passwordtoolong")],
                    ..base.clone()
                },
                "password",
            ),
            (
                OuchConfig {
                    users: vec![user("A", "x"), user("a", "y")],
                    ..base.clone()
                },
                "twice",
            ),
            (
                OuchConfig {
                    session: "SESSIONTOOLONG".into(),
                    ..base.clone()
                },
                "session",
            ),
        ];
        for (config, expected) in cases {
            let error = check_config(&config).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(Directory::new(&[("TOOLONGNAME".into(), SymbolId(0))]).is_err());
        assert!(Directory::new(&[("A".into(), SymbolId(0)), ("A".into(), SymbolId(1))]).is_err());
        assert!(Directory::new(&[("A".into(), SymbolId(0)), ("B".into(), SymbolId(0))]).is_err());
    }
}
