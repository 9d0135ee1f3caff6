//! The live ITCH publisher: the feed derived from a running pipeline,
//! published over MoldUDP64 (with a retransmission port), served over
//! SoupBinTCP, and written to a Nasdaq-framed file. Std threads and
//! blocking sockets with timeouts, no async runtime.
//!
//! Threads:
//! - **consumer**: one broadcast session of the pipeline; regroups its
//!   outputs by `seq` (`CommandBatcher`), derives ITCH (`FeedDeriver`),
//!   numbers every message from 1 into a bounded in-memory store, writes
//!   the file, sends MoldUDP64 packets, wakes the SoupBinTCP writers, and
//!   sends a MoldUDP64 heartbeat after `heartbeat_interval` of silence;
//! - **retransmitter** (if `mold_retransmit`): answers MoldUDP64 requests
//!   from the store, to the requester's address;
//! - **SoupBinTCP** (if `soup_listener`): an acceptor, and per connection a
//!   reader and a writer tailing the store (see `soup.rs`).
//!
//! **History.** The deriver must see the stream from an empty engine, so
//! `start` first connects the broadcast session (its outputs are buffered
//! in the pipeline's bounded queue), then replays the journal in
//! `config.data_dir` from sequence 1 up to `pipeline.recovered.last_seq`
//! into a scratch `Engine` and feeds every step to the deriver. History
//! messages are stored (SoupBinTCP and retransmission serve them) and
//! written to the file, but not sent live over UDP. Then the consumer
//! thread drains the buffered outputs, skipping sequence numbers already
//! covered. Because the feed is a pure function of the journal, a restart
//! gives the same messages under the same sequence numbers.
//!
//! **Gaps.** The broadcast session only sees commands sequenced after the
//! engine registered it (registration is asynchronous), and a consumer
//! that falls behind is cut off. In both cases the first output of the
//! (re)connected session starts after a gap: the consumer replays the
//! journal again (a fresh scratch engine from sequence 1, feeding the
//! deriver only what it has not seen) up to just before that output.
//!
//! **Command boundaries.** Broadcast outputs carry no end-of-command flag,
//! so a command's batch is complete when the next command's first event
//! arrives, or when the pipeline's `stats().events` counter (updated after
//! each engine batch is fully published) equals the number of events the
//! feed has consumed, or when the pipeline has stopped.

mod soup;

use crate::feed::{CommandBatch, CommandBatcher, FeedDeriver, SymbolDirectory};
use crate::itch::Message;
use crate::mold::{self, RetransmitStore, Session, END_OF_SESSION, HEADER_BYTES};
use brokerx_engine::pipeline::{replay_journal, Pipeline, SessionHandle};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{Engine, EngineConfig, Event};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often blocking calls wake up to look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// While outputs keep arriving, the file is flushed and the partial UDP
/// packet sent at least every this many commands.
const MAX_UNFLUSHED: usize = 64;

/// Everything the publisher needs. Sockets are handed over already bound.
#[derive(Debug)]
pub struct ItchConfig {
    /// Symbol names and round lots (every symbol the engine adds must be
    /// here, or the feed fails).
    pub directory: SymbolDirectory,
    /// The pipeline's data directory: its journal is replayed from
    /// sequence 1 to rebuild the feed (it must not be archived away).
    pub data_dir: PathBuf,
    /// The pipeline's engine configuration (for the scratch replay engine).
    pub engine_config: EngineConfig,
    /// MoldUDP64 / SoupBinTCP session name, 1-10 printable ASCII bytes.
    pub session: String,
    /// Socket the MoldUDP64 stream is sent from, to `mold_destination`
    /// (a unicast or multicast address). `None`: no UDP stream.
    pub mold_socket: Option<UdpSocket>,
    pub mold_destination: SocketAddr,
    /// Socket answering MoldUDP64 retransmission requests.
    pub mold_retransmit: Option<UdpSocket>,
    /// Largest MoldUDP64 payload (header included), bytes.
    pub max_packet_bytes: usize,
    /// SoupBinTCP ITCH server.
    pub soup_listener: Option<TcpListener>,
    /// Credentials a SoupBinTCP login must present; `None` accepts any.
    pub soup_username: Option<String>,
    pub soup_password: Option<String>,
    /// Most open SoupBinTCP connections; more are closed at once.
    pub soup_max_connections: usize,
    /// Nasdaq-framed file of the whole feed, rewritten from sequence 1 at
    /// every start.
    pub file_path: Option<PathBuf>,
    /// Messages kept in memory for retransmission and SoupBinTCP replay.
    pub retransmit_capacity: usize,
    /// MoldUDP64 and SoupBinTCP heartbeat period when idle.
    pub heartbeat_interval: Duration,
    /// A SoupBinTCP client silent this long (or not logged in) is closed.
    pub client_timeout: Duration,
    /// Socket write timeout: a SoupBinTCP client that stops reading is
    /// dropped.
    pub write_timeout: Duration,
}

impl ItchConfig {
    /// Defaults: no transport at all (add sockets and a file), session
    /// "BROKERX", 1400-byte packets, 1 M messages stored, 1 s heartbeats,
    /// 15 s client timeout.
    pub fn new(directory: SymbolDirectory, data_dir: PathBuf) -> ItchConfig {
        ItchConfig {
            directory,
            data_dir,
            engine_config: EngineConfig::default(),
            session: "BROKERX".into(),
            mold_socket: None,
            mold_destination: SocketAddr::from(([127, 0, 0, 1], 9)),
            mold_retransmit: None,
            max_packet_bytes: mold::DEFAULT_MAX_PACKET_BYTES,
            soup_listener: None,
            soup_username: None,
            soup_password: None,
            soup_max_connections: 64,
            file_path: None,
            retransmit_capacity: 1 << 20,
            heartbeat_interval: Duration::from_secs(1),
            client_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the publisher could not start.
#[derive(Debug)]
pub enum PublisherError {
    Config(String),
    Io(std::io::Error),
    /// The journal replay failed or disagrees with the pipeline.
    History(String),
    /// The deriver refused the history.
    Feed(crate::feed::FeedError),
}

impl fmt::Display for PublisherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublisherError::Config(text) => write!(f, "itch publisher config: {text}"),
            PublisherError::Io(error) => write!(f, "itch publisher: {error}"),
            PublisherError::History(text) => write!(f, "itch publisher history: {text}"),
            PublisherError::Feed(error) => write!(f, "itch publisher feed: {error}"),
        }
    }
}

impl std::error::Error for PublisherError {}

impl From<std::io::Error> for PublisherError {
    fn from(error: std::io::Error) -> Self {
        PublisherError::Io(error)
    }
}

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters.
        #[derive(Debug, Default)]
        pub struct ItchStats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`ItchStats`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct ItchStatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ItchStats {
            pub fn snapshot(&self) -> ItchStatsSnapshot {
                ItchStatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

stats! {
    /// ITCH messages derived and stored (history included).
    messages,
    /// Of which derived from the journal replay at start or after a gap.
    history_messages,
    /// Engine commands fed to the deriver.
    commands,
    /// Sequence number of the last engine command fed to the deriver.
    engine_seq,
    /// MoldUDP64 data packets sent (not heartbeats, not retransmissions).
    packets,
    /// Bytes of those packets.
    packet_bytes,
    mold_heartbeats,
    /// Sends that failed (the packet is lost; receivers can ask again).
    send_errors,
    retransmit_requests,
    /// Requests answered with a packet.
    retransmit_served,
    /// Messages in those answers.
    retransmit_messages,
    /// Ignored requests: malformed, wrong session, nothing available.
    retransmit_ignored,
    /// Journal replays to fill a gap after (re)connecting.
    gap_fills,
    /// The broadcast session was cut off and reconnected.
    reconnects,
    soup_connections,
    soup_logins,
    /// SoupBinTCP clients logged in now (a gauge: up at login, down when
    /// the session ends).
    soup_logged_in,
    /// Login Rejected (bad credentials or session).
    soup_logins_rejected,
    /// Closed before login: garbage, wrong packet, or timeout.
    soup_closed_before_login,
    soup_messages_sent,
    soup_heartbeats,
    /// A client fell so far behind that its next message was evicted.
    soup_overrun,
    /// Live commands whose latency was measured.
    latency_count,
    /// Engine timestamp to UDP send of the command's last packet, ns.
    latency_sum_ns,
    latency_min_ns,
    latency_max_ns,
}

impl ItchStatsSnapshot {
    /// Mean publish latency (engine timestamp to UDP send), ns.
    pub fn latency_avg_ns(&self) -> u64 {
        self.latency_sum_ns
            .checked_div(self.latency_count)
            .unwrap_or(0)
    }
}

/// The store every reader shares: message `n` of the feed is the `n`th
/// message stored (numbered from 1).
pub(crate) struct Feed {
    pub(crate) store: RetransmitStore,
    /// Set when the feed cannot go on (deriver or file error).
    pub(crate) failed: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) session: Session,
    pub(crate) feed: Mutex<Feed>,
    /// Signalled after each append, on failure, and on stop.
    pub(crate) changed: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) stats: ItchStats,
    /// Publish latency (engine stamp to UDP send), ns; recorded on the
    /// publisher's own thread, never the engine's.
    pub(crate) latency: Mutex<hdrhistogram::Histogram<u64>>,
    pub(crate) max_packet_bytes: usize,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) client_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) soup_username: Option<String>,
    pub(crate) soup_password: Option<String>,
    pub(crate) soup_max_connections: usize,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Feed> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, reason: String) {
        let mut feed = self.lock();
        feed.failed.get_or_insert(reason);
        drop(feed);
        self.changed.notify_all();
    }
}

/// A running publisher. Dropping it shuts it down.
pub struct ItchPublisher {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    soup_addr: Option<SocketAddr>,
    retransmit_addr: Option<SocketAddr>,
    mold_addr: Option<SocketAddr>,
    consumer_done: Arc<AtomicBool>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn check_config(config: &ItchConfig) -> Result<Session, PublisherError> {
    let bad = |text: String| Err(PublisherError::Config(text));
    let session = match Session::new(&config.session) {
        Ok(session) if !config.session.trim().is_empty() => session,
        _ => {
            return bad(format!(
                "session {:?} must be 1-10 printable ASCII bytes",
                config.session
            ))
        }
    };
    // The largest ITCH message is 50 bytes.
    if config.max_packet_bytes < HEADER_BYTES + 2 + 50 || config.max_packet_bytes > 65_507 {
        return bad(format!(
            "max_packet_bytes {} must be in {}..=65507",
            config.max_packet_bytes,
            HEADER_BYTES + 52
        ));
    }
    for (name, value, max) in [
        (
            "username",
            &config.soup_username,
            brokerx_soupbin::USERNAME_BYTES,
        ),
        (
            "password",
            &config.soup_password,
            brokerx_soupbin::PASSWORD_BYTES,
        ),
    ] {
        if let Some(value) = value {
            if value.len() > max || !value.is_ascii() || value.contains(' ') {
                return bad(format!("soup {name} must be up to {max} ASCII bytes"));
            }
        }
    }
    if config.heartbeat_interval.is_zero() || config.client_timeout.is_zero() {
        return bad("heartbeat_interval and client_timeout must be positive".into());
    }
    Ok(session)
}

/// The consumer thread's state: the deriver and every output it feeds.
struct Publisher {
    shared: Arc<Shared>,
    deriver: FeedDeriver,
    data_dir: PathBuf,
    engine_config: EngineConfig,
    /// Last sequence number fed to the deriver.
    last_seq: u64,
    /// Events of all commands fed to the deriver (history included): equals
    /// the pipeline's event counter when every published event was read.
    events_consumed: u64,
    file: Option<BufWriter<File>>,
    udp: Option<(UdpSocket, SocketAddr)>,
    /// Encoded messages waiting for a UDP packet, and the sequence number
    /// of the first.
    outgoing: Vec<Vec<u8>>,
    outgoing_first: u64,
    outgoing_bytes: usize,
    /// Engine timestamps of the commands whose messages are in `outgoing`.
    outgoing_stamps: Vec<u64>,
    last_sent: Instant,
    /// Live commands derived since the last flush.
    unflushed: usize,
    messages: Vec<Message>,
}

impl Publisher {
    /// Derives one command, stores its messages and writes them to the
    /// file; `live` ones are also queued for UDP.
    fn on_command(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        events: &[Event],
        live: bool,
    ) -> Result<(), String> {
        if seq <= self.last_seq {
            return Ok(());
        }
        self.messages.clear();
        self.deriver
            .on_command(seq, timestamp_ns, events, &mut self.messages)
            .map_err(|e| format!("seq {seq}: {e}"))?;
        self.last_seq = seq;
        self.events_consumed += events.len() as u64;
        self.unflushed += usize::from(live);
        let stats = &self.shared.stats;
        stats.commands.fetch_add(1, Ordering::Relaxed);
        if self.messages.is_empty() {
            stats.engine_seq.store(seq, Ordering::Relaxed);
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(self.messages.len());
        for message in &self.messages {
            encoded.push(message.to_bytes().map_err(|e| format!("seq {seq}: {e}"))?);
        }
        if let Some(file) = self.file.as_mut() {
            for bytes in &encoded {
                file.write_all(&(bytes.len() as u16).to_be_bytes())
                    .and_then(|()| file.write_all(bytes))
                    .map_err(|e| format!("feed file: {e}"))?;
            }
        }
        let first = {
            let mut feed = self.shared.lock();
            let first = feed.store.next_seq();
            for (i, bytes) in encoded.iter().enumerate() {
                feed.store.push(first + i as u64, bytes);
            }
            first
        };
        self.shared.changed.notify_all();
        let count = encoded.len() as u64;
        stats.messages.fetch_add(count, Ordering::Relaxed);
        stats.engine_seq.store(seq, Ordering::Relaxed);
        if !live {
            stats.history_messages.fetch_add(count, Ordering::Relaxed);
            return Ok(());
        }
        if self.udp.is_some() {
            for (i, bytes) in encoded.into_iter().enumerate() {
                if self.outgoing_bytes + 2 + bytes.len() > self.shared.max_packet_bytes
                    || self.outgoing.len() + 1 >= END_OF_SESSION as usize
                {
                    self.send_outgoing();
                }
                if self.outgoing.is_empty() {
                    self.outgoing_first = first + i as u64;
                    self.outgoing_bytes = HEADER_BYTES;
                }
                self.outgoing_bytes += 2 + bytes.len();
                self.outgoing.push(bytes);
            }
            self.outgoing_stamps.push(timestamp_ns);
        }
        Ok(())
    }

    /// Sends the pending messages as one packet, and records the latency
    /// of the commands they complete.
    fn send_outgoing(&mut self) {
        let Some((socket, destination)) = self.udp.as_ref() else {
            return;
        };
        if self.outgoing.is_empty() {
            return;
        }
        let stats = &self.shared.stats;
        let blocks: Vec<&[u8]> = self.outgoing.iter().map(Vec::as_slice).collect();
        match mold::encode_packet(&self.shared.session, self.outgoing_first, &blocks) {
            Ok(packet) => match socket.send_to(&packet, destination) {
                Ok(_) => {
                    stats.packets.fetch_add(1, Ordering::Relaxed);
                    stats
                        .packet_bytes
                        .fetch_add(packet.len() as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(_) => {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_sent = Instant::now();
        let now = now_ns();
        let mut histogram = self
            .shared
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for stamp in self.outgoing_stamps.drain(..) {
            let latency = now.saturating_sub(stamp);
            histogram.saturating_record(latency);
            stats.latency_count.fetch_add(1, Ordering::Relaxed);
            stats.latency_sum_ns.fetch_add(latency, Ordering::Relaxed);
            stats.latency_max_ns.fetch_max(latency, Ordering::Relaxed);
            let _ =
                stats
                    .latency_min_ns
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |min| {
                        (min == 0 || latency < min).then_some(latency)
                    });
        }
        self.outgoing.clear();
        self.outgoing_bytes = 0;
    }

    /// Flushes everything pending: the UDP packet and the file.
    fn flush(&mut self) -> Result<(), String> {
        self.unflushed = 0;
        if let Some(file) = self.file.as_mut() {
            file.flush().map_err(|e| format!("feed file: {e}"))?;
        }
        self.send_outgoing();
        Ok(())
    }

    fn heartbeat_if_idle(&mut self) {
        let Some((socket, destination)) = self.udp.as_ref() else {
            return;
        };
        if self.last_sent.elapsed() < self.shared.heartbeat_interval {
            return;
        }
        let next = self.shared.lock().store.next_seq();
        let packet = mold::heartbeat(&self.shared.session, next);
        if socket.send_to(&packet, destination).is_ok() {
            self.shared
                .stats
                .mold_heartbeats
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared
                .stats
                .send_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        self.last_sent = Instant::now();
    }

    /// Replays the journal from sequence 1 into a scratch engine through
    /// `until`, feeding the deriver every command after `last_seq`. The
    /// history at start is not `live` (not sent over UDP); a gap filled
    /// while running is.
    fn fill_from_journal(&mut self, until: u64, live: bool) -> Result<(), String> {
        if until <= self.last_seq {
            return Ok(());
        }
        let mut engine = Engine::new(self.engine_config);
        let mut hasher = StableHasher::default();
        let mut event_count = 0u64;
        let mut failure: Option<String> = None;
        let data_dir = self.data_dir.clone();
        let result = replay_journal(
            &data_dir,
            &mut engine,
            &mut hasher,
            &mut event_count,
            Some(until),
            |command, events| {
                if failure.is_some() {
                    return;
                }
                if command.seq <= self.last_seq {
                    return;
                }
                if let Err(error) = self.on_command(command.seq, command.timestamp_ns, events, live)
                {
                    failure = Some(error);
                }
            },
        );
        result.map_err(|e| format!("journal replay: {e}"))?;
        if let Some(error) = failure {
            return Err(error);
        }
        if engine.last_seq() != until {
            return Err(format!(
                "journal replay reached sequence {} of {until}",
                engine.last_seq()
            ));
        }
        // Commands without events (if any) still advance the sequence.
        self.last_seq = until;
        self.shared.stats.engine_seq.store(until, Ordering::Relaxed);
        if event_count != self.events_consumed {
            return Err(format!(
                "journal replay produced {event_count} events, the feed consumed {}",
                self.events_consumed
            ));
        }
        Ok(())
    }
}

impl ItchPublisher {
    /// Connects a broadcast session, rebuilds the feed from the journal up
    /// to `pipeline.recovered.last_seq`, then starts the threads.
    pub fn start(
        pipeline: Arc<Pipeline>,
        config: ItchConfig,
    ) -> Result<ItchPublisher, PublisherError> {
        let session = check_config(&config)?;
        let ItchConfig {
            directory,
            data_dir,
            engine_config,
            mold_socket,
            mold_destination,
            mold_retransmit,
            max_packet_bytes,
            soup_listener,
            soup_username,
            soup_password,
            soup_max_connections,
            file_path,
            retransmit_capacity,
            heartbeat_interval,
            client_timeout,
            write_timeout,
            session: _,
        } = config;
        let shared = Arc::new(Shared {
            session,
            feed: Mutex::new(Feed {
                store: RetransmitStore::new(retransmit_capacity),
                failed: None,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            stats: ItchStats::default(),
            latency: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)
                    .expect("histogram bounds"),
            ),
            max_packet_bytes,
            heartbeat_interval,
            client_timeout,
            write_timeout,
            soup_username,
            soup_password,
            soup_max_connections,
        });
        let file = match &file_path {
            Some(path) => Some(BufWriter::new(File::create(path)?)),
            None => None,
        };
        let mold_addr = match &mold_socket {
            Some(socket) => Some(socket.local_addr()?),
            None => None,
        };
        let retransmit_addr = match &mold_retransmit {
            Some(socket) => Some(socket.local_addr()?),
            None => None,
        };
        let soup_addr = match &soup_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        // Connect first: outputs of commands sequenced from now on are
        // buffered while the history is replayed.
        let (_, handle) = pipeline.connect(&[], true);
        let mut publisher = Publisher {
            shared: shared.clone(),
            deriver: FeedDeriver::new(directory),
            data_dir,
            engine_config,
            last_seq: 0,
            events_consumed: 0,
            file,
            udp: mold_socket.map(|socket| (socket, mold_destination)),
            outgoing: Vec::new(),
            outgoing_first: 0,
            outgoing_bytes: 0,
            outgoing_stamps: Vec::new(),
            last_sent: Instant::now(),
            unflushed: 0,
            messages: Vec::new(),
        };
        let recovered = &pipeline.recovered;
        let drop_session = |error| {
            pipeline.disconnect(handle.id);
            error
        };
        publisher
            .fill_from_journal(recovered.last_seq, false)
            .map_err(|e| drop_session(PublisherError::History(e)))?;
        if publisher.events_consumed != recovered.event_count {
            return Err(drop_session(PublisherError::History(format!(
                "replay gave {} events, the pipeline recovered {}",
                publisher.events_consumed, recovered.event_count
            ))));
        }
        publisher
            .flush()
            .map_err(|e| drop_session(PublisherError::History(e)))?;

        let mut threads = Vec::new();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let consumer_done = Arc::new(AtomicBool::new(false));
        let spawned = (|| -> std::io::Result<()> {
            if let Some(socket) = mold_retransmit {
                socket.set_read_timeout(Some(POLL_INTERVAL))?;
                let shared = shared.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("itch-retransmit".into())
                        .spawn(move || retransmit_loop(&shared, &socket))?,
                );
            }
            if let Some(listener) = soup_listener {
                listener.set_nonblocking(true)?;
                let shared = shared.clone();
                let connections = connections.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("itch-soup-accept".into())
                        .spawn(move || soup::accept_loop(&shared, listener, &connections))?,
                );
            }
            let done = consumer_done.clone();
            let pipeline = pipeline.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("itch-consumer".into())
                    .spawn(move || {
                        consume(&mut publisher, &pipeline, handle);
                        done.store(true, Ordering::Release);
                    })?,
            );
            Ok(())
        })();
        let started = ItchPublisher {
            shared,
            threads: Mutex::new(threads),
            connections,
            soup_addr,
            retransmit_addr,
            mold_addr,
            consumer_done,
        };
        if let Err(error) = spawned {
            started.shutdown();
            return Err(PublisherError::Io(error));
        }
        Ok(started)
    }

    /// Address of the SoupBinTCP listener.
    pub fn soup_addr(&self) -> Option<SocketAddr> {
        self.soup_addr
    }

    /// Address of the retransmission socket.
    pub fn retransmit_addr(&self) -> Option<SocketAddr> {
        self.retransmit_addr
    }

    /// Address the MoldUDP64 stream is sent from.
    pub fn mold_addr(&self) -> Option<SocketAddr> {
        self.mold_addr
    }

    pub fn stats(&self) -> ItchStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Full distribution of the publish latency (engine stamp to UDP send
    /// of the command's last packet), ns.
    pub fn latency_histogram(&self) -> hdrhistogram::Histogram<u64> {
        self.shared
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sequence number the next message will have (messages stored: this
    /// minus 1).
    pub fn next_seq(&self) -> u64 {
        self.shared.lock().store.next_seq()
    }

    /// Why the feed stopped, if it did (deriver disagreement, file error).
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// True once the consumer has ended: the pipeline stopped and every
    /// output was published, or the feed failed, or `shutdown`.
    pub fn consumer_finished(&self) -> bool {
        self.consumer_done.load(Ordering::Acquire)
    }

    /// Stops every thread (within ~100 ms) and closes every connection.
    /// Outputs not yet read from the pipeline are not published. The
    /// MoldUDP64 session is not ended: a restart continues it with the
    /// same sequence numbers. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.changed.notify_all();
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        let connections: Vec<_> =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in connections {
            let _ = thread.join();
        }
    }
}

impl Drop for ItchPublisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What one wait on the broadcast session gave.
enum RecvTimeout<T> {
    Item(T),
    Timeout,
    Disconnected,
}

fn receive(
    handle: &SessionHandle,
    timeout: Duration,
) -> RecvTimeout<brokerx_engine::pipeline::Output> {
    match handle.receiver.recv_timeout(timeout) {
        Ok(output) => RecvTimeout::Item(output),
        Err(error) if error.is_timeout() => RecvTimeout::Timeout,
        Err(_) => RecvTimeout::Disconnected,
    }
}

/// The consumer thread: outputs -> batches -> feed, until stop, the
/// pipeline stops, or the feed fails.
fn consume(publisher: &mut Publisher, pipeline: &Pipeline, mut handle: SessionHandle) {
    let shared = publisher.shared.clone();
    let mut batcher = CommandBatcher::new();
    // Events of the batch in progress.
    let mut pending_events = 0u64;
    // The next output is the first of a (re)connected session.
    let mut fresh = true;
    let mut fresh_check = Instant::now();
    let result: Result<(), String> = (|| {
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return publisher.flush();
            }
            let wait = if pending_events > 0 {
                Duration::from_micros(200)
            } else {
                POLL_INTERVAL.min(shared.heartbeat_interval)
            };
            match receive(&handle, wait) {
                RecvTimeout::Item(output) => {
                    if fresh {
                        fresh = false;
                        if output.seq > publisher.last_seq + 1 {
                            shared.stats.gap_fills.fetch_add(1, Ordering::Relaxed);
                            publisher.fill_from_journal(output.seq - 1, true)?;
                        }
                    }
                    if output.seq > publisher.last_seq {
                        pending_events += 1;
                        if let Some(batch) =
                            batcher.push(output.seq, output.timestamp_ns, output.event)
                        {
                            pending_events -= batch.events.len() as u64;
                            publish(publisher, &batch)?;
                        }
                    }
                    // Keep reading while outputs are queued: they pack into
                    // fewer packets.
                    if !handle.receiver.is_empty() && publisher.unflushed < MAX_UNFLUSHED {
                        continue;
                    }
                }
                RecvTimeout::Timeout => {
                    // A (re)connected session that has seen nothing yet:
                    // commands sequenced before its registration may be
                    // all there is. Fill them in from the journal (outputs
                    // of those commands that do arrive later are skipped).
                    if fresh && pending_events == 0 && fresh_check.elapsed() >= POLL_INTERVAL {
                        fresh_check = Instant::now();
                        let durable = pipeline.stats().durable_seq.load(Ordering::Acquire);
                        if durable > publisher.last_seq {
                            shared.stats.gap_fills.fetch_add(1, Ordering::Relaxed);
                            publisher.fill_from_journal(durable, true)?;
                        }
                    }
                }
                RecvTimeout::Disconnected => {
                    if handle.cut_reason().is_none() {
                        // Not cut off, so the engine has ended (its router
                        // is gone) and every output was delivered: the last
                        // batch is whole.
                        if let Some(batch) = batcher.flush() {
                            publish(publisher, &batch)?;
                        }
                        publisher.flush()?;
                        return Ok(());
                    }
                    // Cut off: the batch in progress may lack events.
                    // Drop it and fill the gap from the journal at the
                    // next output.
                    batcher = CommandBatcher::new();
                    pending_events = 0;
                    publisher.flush()?;
                    shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    if pipeline.has_stopped() {
                        // Nothing more will come: complete from the journal.
                        let durable = pipeline.stats().durable_seq.load(Ordering::Acquire);
                        publisher.fill_from_journal(durable, true)?;
                        publisher.flush()?;
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    handle = pipeline.connect(&[], true).1;
                    fresh = true;
                    fresh_check = Instant::now();
                    continue;
                }
            }
            if pending_events > 0 {
                let published = pipeline.stats().events.load(Ordering::Acquire);
                if published == publisher.events_consumed + pending_events {
                    if let Some(batch) = batcher.flush() {
                        pending_events = 0;
                        publish(publisher, &batch)?;
                    }
                }
            }
            publisher.flush()?;
            publisher.heartbeat_if_idle();
        }
    })();
    if let Err(reason) = result {
        let _ = publisher.flush();
        shared.fail(reason);
    }
    pipeline.disconnect(handle.id);
}

fn publish(publisher: &mut Publisher, batch: &CommandBatch) -> Result<(), String> {
    publisher.on_command(batch.seq, batch.timestamp_ns, &batch.events, true)
}

/// Answers MoldUDP64 retransmission requests from the store. A request is
/// exactly a 20-byte header (session, first sequence, count); the answer
/// is one packet with as many of the requested messages as fit, sent to
/// the requester. Requests for another session, for count 0 or 0xFFFF, or
/// for messages not (or no longer) in the store get no answer.
fn retransmit_loop(shared: &Shared, socket: &UdpSocket) {
    let mut buffer = [0u8; 2048];
    while !shared.stop.load(Ordering::Acquire) {
        let (len, from) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(_) => continue,
        };
        let stats = &shared.stats;
        stats.retransmit_requests.fetch_add(1, Ordering::Relaxed);
        match answer(shared, &buffer[..len]) {
            Some((packet, count)) => {
                if socket.send_to(&packet, from).is_ok() {
                    stats.retransmit_served.fetch_add(1, Ordering::Relaxed);
                    stats
                        .retransmit_messages
                        .fetch_add(count, Ordering::Relaxed);
                } else {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                stats.retransmit_ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn answer(shared: &Shared, request: &[u8]) -> Option<(Vec<u8>, u64)> {
    if request.len() != HEADER_BYTES {
        return None;
    }
    let (session, first_seq, count) = mold::decode_header(request).ok()?;
    if session != shared.session || count == 0 || count == END_OF_SESSION {
        return None;
    }
    let room = shared.max_packet_bytes - HEADER_BYTES;
    let feed = shared.lock();
    // Clip the request to what is stored (a request reaching past the
    // newest message is answered up to it).
    let available = feed.store.next_seq().saturating_sub(first_seq);
    let count = u16::try_from(available.min(u64::from(count))).ok()?;
    let wanted = feed.store.get(first_seq, count).ok()?;
    let mut used = 0;
    let fitting: Vec<&[u8]> = wanted
        .into_iter()
        .take_while(|m| {
            used += 2 + m.len();
            used <= room
        })
        .collect();
    let packet = mold::encode_packet(&shared.session, first_seq, &fitting).ok()?;
    Some((packet, fitting.len() as u64))
}
