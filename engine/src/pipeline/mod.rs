//! The runtime around the pure state machine: inbound ring, sequencer,
//! journal, state machine, gated output routing. Built in one place,
//! stage by stage:
//!
//! 1. **Ring** (`Submitter::submit`): any number of producers push into a
//!    bounded lock-free queue (crossbeam `ArrayQueue`). Full means an
//!    immediate `Busy`; the engine never waits for a producer.
//! 2. **Sequencer** (`engine_loop`): one thread drains what has arrived (up to
//!    `batch_max`), stamps each command with the next sequence number and
//!    the wall-clock time, and appends it to the journal.
//! 3. **State machine**: the same thread applies each command; events are
//!    held back.
//! 4. **Group commit**: one write and one `fdatasync` for the batch.
//! 5. **Outputs**: only now, with the journal durable past every input of
//!    the batch, events go to the originating session, to sessions
//!    subscribed to the accounts involved, and to broadcast consumers
//!    (market data, read models). A consumer whose bounded queue is full is
//!    cut off with a reason; the engine never blocks on it.
//!
//! The pure modules of this crate know nothing of this one.

mod metrics;
mod recovery;
mod routing;

pub use metrics::{
    AtomicHistogram, BookStats, HistogramSnapshot, SymbolBook, BATCH_BOUNDS, LATENCY_BOUNDS_NS,
    MAX_BOOK_SYMBOLS, MAX_REJECT_CODE,
};

pub use recovery::{
    journal_dir, load_snapshot, load_snapshot_at_most, parse_snapshot, recover, replay_journal,
    snapshot_dir, Recovered, RecoveryError, SnapshotHeader,
};
pub use routing::{accounts_of, InlineConsumer, Output, SessionHandle, SessionId, Subscription};

use crate::codec::encode_command;
use crate::state::StableHasher;
use crate::{Command, Engine, Event, SequencedCommand};
use brokerx_journal::{Journal, JournalError};
use crossbeam_queue::ArrayQueue;
use routing::Router;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the engine thread does when the ring is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin: lowest latency, burns a core.
    Spin,
    /// Spin a while, then `yield_now`.
    SpinThenYield { spins: u32 },
    /// Spin a while, then park until a producer unparks us (or `timeout`).
    Park { spins: u32, timeout: Duration },
    /// Busy-poll for `spin` of wall time after the last batch, then park
    /// (as `Park`): no wake-up cost while commands keep coming within
    /// `spin` of each other, no core burnt when they stop.
    SpinPark { spin: Duration, timeout: Duration },
}

impl WaitStrategy {
    pub fn parse(text: &str) -> Option<WaitStrategy> {
        match text {
            "spin" => Some(WaitStrategy::Spin),
            "yield" | "spin-then-yield" => Some(WaitStrategy::SpinThenYield { spins: 1_000 }),
            "park" => Some(WaitStrategy::Park {
                spins: 1_000,
                timeout: Duration::from_millis(50),
            }),
            "spin-park" => Some(WaitStrategy::SpinPark {
                spin: Duration::from_micros(100),
                timeout: Duration::from_millis(50),
            }),
            // "spin-park:300": busy-poll 300 µs.
            _ => {
                let micros = text.strip_prefix("spin-park:")?.parse().ok()?;
                Some(WaitStrategy::SpinPark {
                    spin: Duration::from_micros(micros),
                    timeout: Duration::from_millis(50),
                })
            }
        }
    }
}

/// Sizing and behaviour of the pipeline. Every queue is bounded.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub data_dir: PathBuf,
    pub queue_capacity: usize,
    pub batch_max: usize,
    pub outbound_capacity: usize,
    pub wait: WaitStrategy,
    pub durable: bool,
    pub segment_bytes: u64,
    /// Take a snapshot after this many commands (0: only at shutdown).
    pub snapshot_every: u64,
    /// After each snapshot, move journal segments it fully covers to
    /// `journal/archive/` (off by default: replay from the first command
    /// then needs the archive put back).
    pub archive_after_snapshot: bool,
    /// Publish per-symbol book sizes ([`PipelineStats::books`]) at most
    /// this often, after a batch (a walk over the non-empty levels).
    pub book_stats_interval: Duration,
    /// Fault injection for tests: make the fsync of this batch (1-based)
    /// fail, as a failing disk would.
    #[doc(hidden)]
    pub fail_sync_at_batch: Option<u64>,
}

impl PipelineConfig {
    pub fn new(data_dir: PathBuf) -> PipelineConfig {
        PipelineConfig {
            data_dir,
            queue_capacity: 1 << 16,
            batch_max: 4_096,
            outbound_capacity: 1 << 16,
            wait: WaitStrategy::Park {
                spins: 1_000,
                timeout: Duration::from_millis(50),
            },
            durable: true,
            segment_bytes: 64 << 20,
            snapshot_every: 0,
            archive_after_snapshot: false,
            book_stats_interval: Duration::from_secs(1),
            fail_sync_at_batch: None,
        }
    }
}

/// The ring is full: tell the client to retry later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "engine busy: inbound queue full, retry")
    }
}

impl std::error::Error for Busy {}

struct Inbound {
    session: SessionId,
    command: Command,
}

/// Counters and histograms readable from any thread. The engine thread
/// records into them with relaxed atomic operations only: no lock.
#[derive(Debug)]
pub struct PipelineStats {
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub busy_rejections: AtomicU64,
    /// The last sequence number stamped (ahead of `durable_seq` while a
    /// batch awaits its fsync).
    pub sequenced_seq: AtomicU64,
    pub durable_seq: AtomicU64,
    pub events: AtomicU64,
    pub consumers_cut_off: AtomicU64,
    pub snapshots: AtomicU64,
    /// Journal bytes and records written since start.
    pub journal_bytes: AtomicU64,
    pub journal_records: AtomicU64,
    /// Commands per group commit.
    pub batch_size: AtomicHistogram,
    /// `Engine::apply` of one command, ns; sampled, one command in
    /// [`SERVICE_SAMPLE_EVERY`].
    pub service_ns: AtomicHistogram,
    /// One group commit (its write and its fdatasync), ns.
    pub commit_ns: AtomicHistogram,
    /// `Rejected` events by reject code (index = code).
    pub rejects: Box<[AtomicU64]>,
    pub books: BookStats,
}

/// One command in this many has its state-machine service time measured
/// (two clock reads).
pub const SERVICE_SAMPLE_EVERY: u64 = 16;

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            commands: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            busy_rejections: AtomicU64::new(0),
            sequenced_seq: AtomicU64::new(0),
            durable_seq: AtomicU64::new(0),
            events: AtomicU64::new(0),
            consumers_cut_off: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
            journal_records: AtomicU64::new(0),
            batch_size: AtomicHistogram::new(BATCH_BOUNDS),
            service_ns: AtomicHistogram::latency(),
            commit_ns: AtomicHistogram::latency(),
            rejects: (0..MAX_REJECT_CODE).map(|_| AtomicU64::new(0)).collect(),
            books: BookStats::default(),
        }
    }
}

enum Control {
    Register(Subscription),
    Unregister(SessionId),
}

struct Shared {
    ring: ArrayQueue<Inbound>,
    control: Mutex<Vec<Control>>,
    has_control: AtomicBool,
    stop: AtomicBool,
    sleeping: AtomicBool,
    engine_thread: Mutex<Option<Thread>>,
    next_session: AtomicU64,
    outbound_capacity: usize,
    stats: PipelineStats,
}

impl Shared {
    /// Called after a push. The fence pairs with the one in `wait`: either
    /// the engine sees the pushed item, or we see it sleeping (Dekker).
    fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(thread) = self.engine_thread.lock().expect("not poisoned").as_ref() {
                thread.unpark();
            }
        }
    }
}

/// A producer's handle: cheap to clone, one per gateway session.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
    session: SessionId,
}

impl Submitter {
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Hands a command to the engine, or fails at once with `Busy`.
    pub fn submit(&self, command: Command) -> Result<(), Busy> {
        // Stopping: what is in the ring is drained, nothing new gets in, so
        // producers that keep sending cannot hold the shutdown up.
        if self.shared.stop.load(Ordering::Acquire) {
            self.shared
                .stats
                .busy_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        }
        let inbound = Inbound {
            session: self.session,
            command,
        };
        match self.shared.ring.push(inbound) {
            Ok(()) => {
                self.shared.wake();
                Ok(())
            }
            Err(_) => {
                self.shared
                    .stats
                    .busy_rejections
                    .fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}

/// How the engine thread ended.
#[derive(Debug)]
pub struct Finished {
    pub last_seq: u64,
    pub event_count: u64,
    pub event_hash: u64,
    pub state_hash: u64,
}

/// A running pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<Result<Finished, JournalError>>>>,
    pub recovered: Recovered,
    data_dir: PathBuf,
    engine_config: crate::EngineConfig,
}

impl Pipeline {
    /// Recovers state from `data_dir` (snapshot plus journal) and starts
    /// the engine thread.
    pub fn start(
        config: PipelineConfig,
        engine_config: crate::EngineConfig,
    ) -> Result<Pipeline, RecoveryError> {
        let (journal, recovered, engine) = recover(&config, engine_config)?;
        let shared = Arc::new(Shared {
            ring: ArrayQueue::new(config.queue_capacity),
            control: Mutex::new(Vec::new()),
            has_control: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            engine_thread: Mutex::new(None),
            next_session: AtomicU64::new(1),
            outbound_capacity: config.outbound_capacity,
            stats: PipelineStats::default(),
        });
        shared
            .stats
            .durable_seq
            .store(recovered.last_seq, Ordering::Release);
        shared
            .stats
            .sequenced_seq
            .store(recovered.last_seq, Ordering::Release);
        shared.stats.books.publish(&engine);
        let state = LoopState {
            engine,
            journal,
            seq: recovered.last_seq,
            last_timestamp_ns: 0,
            event_count: recovered.event_count,
            event_hasher: recovered.event_hasher,
            since_snapshot: 0,
            config: config.clone(),
        };
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("brokerx-engine".into())
            .spawn(move || engine_loop(thread_shared, state))
            .map_err(|e| RecoveryError::Io(e.to_string()))?;
        *shared.engine_thread.lock().expect("not poisoned") = Some(handle.thread().clone());
        Ok(Pipeline {
            shared,
            handle: Mutex::new(Some(handle)),
            recovered,
            data_dir: config.data_dir.clone(),
            engine_config,
        })
    }

    /// The data directory (journal and snapshots) this pipeline runs on:
    /// consumers that rebuild history replay its journal.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The engine configuration, for a scratch engine replaying the journal.
    pub fn engine_config(&self) -> crate::EngineConfig {
        self.engine_config
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.shared.stats
    }

    /// Commands waiting in the inbound ring now.
    pub fn ring_depth(&self) -> usize {
        self.shared.ring.len()
    }

    pub fn ring_capacity(&self) -> usize {
        self.shared.ring.capacity()
    }

    /// Registers a session: its submitter and the queue its outputs arrive
    /// on. `accounts`: also receive events of these accounts caused by
    /// other sessions (fills of resting orders, kill switch). `everything`:
    /// receive every event (market data, read models).
    pub fn connect(
        &self,
        accounts: &[brokerx_risk::AccountId],
        everything: bool,
    ) -> (Submitter, SessionHandle) {
        self.register(accounts, everything, None)
    }

    /// Like [`Pipeline::connect`], but the outputs are handed to `consumer`
    /// on the engine thread as they are published (no queue, no thread
    /// hand-off; see [`InlineConsumer`] for what it may do). The handle's
    /// receiver never receives; `registered_after` works as usual.
    pub fn connect_inline(
        &self,
        accounts: &[brokerx_risk::AccountId],
        everything: bool,
        consumer: Arc<dyn InlineConsumer>,
    ) -> (Submitter, SessionHandle) {
        self.register(accounts, everything, Some(consumer))
    }

    fn register(
        &self,
        accounts: &[brokerx_risk::AccountId],
        everything: bool,
        inline: Option<Arc<dyn InlineConsumer>>,
    ) -> (Submitter, SessionHandle) {
        let id = SessionId(self.shared.next_session.fetch_add(1, Ordering::Relaxed));
        let (subscription, handle) = routing::subscription(
            id,
            accounts,
            everything,
            self.shared.outbound_capacity,
            inline,
        );
        self.control(Control::Register(subscription));
        let submitter = Submitter {
            shared: self.shared.clone(),
            session: id,
        };
        (submitter, handle)
    }

    /// Subscribes `session` again after the engine cut it off: the same
    /// id, so outputs of its submitter's commands are its own again, and a
    /// new queue. Outputs published before the registration are not
    /// delivered; a consumer that must see every command reads those from
    /// the journal, up to the handle's `registered_after`.
    pub fn reconnect(
        &self,
        session: SessionId,
        accounts: &[brokerx_risk::AccountId],
        everything: bool,
    ) -> SessionHandle {
        let (subscription, handle) = routing::subscription(
            session,
            accounts,
            everything,
            self.shared.outbound_capacity,
            None,
        );
        self.control(Control::Register(subscription));
        handle
    }

    pub fn disconnect(&self, session: SessionId) {
        self.control(Control::Unregister(session));
    }

    fn control(&self, control: Control) {
        self.shared
            .control
            .lock()
            .expect("not poisoned")
            .push(control);
        self.shared.has_control.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// True once the engine thread has ended: after `shutdown`, or on a
    /// fatal journal error (which the next `shutdown` call returns).
    pub fn has_stopped(&self) -> bool {
        self.handle
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_none_or(|handle| handle.is_finished())
    }

    /// Drains the ring, commits, writes a final snapshot and stops. Only
    /// the first call has a result to report; later calls return `None`.
    pub fn shutdown(&self) -> Option<Result<Finished, JournalError>> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self
            .shared
            .engine_thread
            .lock()
            .expect("not poisoned")
            .as_ref()
        {
            thread.unpark();
        }
        let handle = self.handle.lock().expect("not poisoned").take()?;
        Some(handle.join().expect("engine thread does not panic"))
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Everything the engine thread owns.
struct LoopState {
    engine: Engine,
    journal: Journal,
    seq: u64,
    last_timestamp_ns: u64,
    event_count: u64,
    event_hasher: StableHasher,
    since_snapshot: u64,
    config: PipelineConfig,
}

/// One command of the batch awaiting its fsync.
struct Pending {
    seq: u64,
    timestamp_ns: u64,
    session: SessionId,
    events_end: usize,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn engine_loop(shared: Arc<Shared>, mut state: LoopState) -> Result<Finished, JournalError> {
    let mut router = Router::default();
    let mut batch: Vec<Inbound> = Vec::with_capacity(state.config.batch_max);
    let mut pending: Vec<Pending> = Vec::with_capacity(state.config.batch_max);
    let mut events: Vec<Event> = Vec::with_capacity(state.config.batch_max * 4);
    let mut record: Vec<u8> = Vec::with_capacity(128);
    let mut idle_spins = 0u32;
    let mut idle_since: Option<std::time::Instant> = None;
    let mut books_published = std::time::Instant::now();
    let mut books_dirty = false;
    loop {
        // Everything sequenced so far has been published.
        apply_controls(&shared, &mut router, state.seq);
        while batch.len() < state.config.batch_max {
            match shared.ring.pop() {
                Some(inbound) => batch.push(inbound),
                None => break,
            }
        }
        if batch.is_empty() {
            if shared.stop.load(Ordering::Acquire) && shared.ring.is_empty() {
                break;
            }
            // Idle: bring the book sizes up to date once the interval is
            // over (at most one clock read per wake-up with work pending).
            if books_dirty && books_published.elapsed() >= state.config.book_stats_interval {
                shared.stats.books.publish(&state.engine);
                books_published = std::time::Instant::now();
                books_dirty = false;
            }
            idle_spins = wait(&shared, state.config.wait, idle_spins, &mut idle_since);
            continue;
        }
        idle_spins = 0;
        idle_since = None;

        // Sequence, journal, apply: outputs are held back.
        for inbound in batch.drain(..) {
            state.seq += 1;
            state.last_timestamp_ns = state.last_timestamp_ns.max(now_ns());
            let sequenced = SequencedCommand {
                seq: state.seq,
                timestamp_ns: state.last_timestamp_ns,
                command: inbound.command,
            };
            record.clear();
            encode_command(&sequenced, &mut record);
            state.journal.append(sequenced.seq, &record)?;
            if sequenced.seq.is_multiple_of(SERVICE_SAMPLE_EVERY) {
                let started = std::time::Instant::now();
                state.engine.apply(&sequenced, &mut events);
                shared
                    .stats
                    .service_ns
                    .record(started.elapsed().as_nanos() as u64);
            } else {
                state.engine.apply(&sequenced, &mut events);
            }
            pending.push(Pending {
                seq: sequenced.seq,
                timestamp_ns: sequenced.timestamp_ns,
                session: inbound.session,
                events_end: events.len(),
            });
        }

        // Group commit: one write, one fdatasync. A failure is fatal and
        // nothing of this batch is ever acknowledged.
        let batch_commands = pending.len() as u64;
        shared
            .stats
            .sequenced_seq
            .store(state.seq, Ordering::Release);
        shared.stats.batch_size.record(batch_commands);
        let batch_number = shared.stats.batches.load(Ordering::Relaxed) + 1;
        if state.config.fail_sync_at_batch == Some(batch_number) {
            state.journal.inject_sync_failure();
        }
        let commit_started = std::time::Instant::now();
        let durable = state.journal.commit()?;
        let committed = std::time::Instant::now();
        shared
            .stats
            .commit_ns
            .record(committed.duration_since(commit_started).as_nanos() as u64);
        debug_assert_eq!(durable, state.seq);
        shared.stats.durable_seq.store(durable, Ordering::Release);
        let journal = state.journal.stats();
        shared
            .stats
            .journal_bytes
            .store(journal.bytes_written, Ordering::Relaxed);
        shared
            .stats
            .journal_records
            .store(journal.records_committed, Ordering::Relaxed);
        shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .commands
            .fetch_add(batch_commands, Ordering::Relaxed);

        // Publish, now that every input of the batch is durable. A session
        // registered before it submitted is visible here: its registration
        // happened before its push, which happened before our pop.
        apply_controls(&shared, &mut router, state.seq - batch_commands);
        let mut start = 0;
        for item in pending.drain(..) {
            let slice = &events[start..item.events_end];
            for event in slice {
                hash_event(&mut state.event_hasher, event, &mut record);
                if let Event::Rejected { code, .. } = event {
                    if let Some(count) = shared.stats.rejects.get(code.code() as usize) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            state.event_count += slice.len() as u64;
            router.publish(item.session, item.seq, item.timestamp_ns, slice);
            start = item.events_end;
        }
        router.flush_inline();
        shared
            .stats
            .events
            .store(state.event_count, Ordering::Relaxed);
        shared
            .stats
            .consumers_cut_off
            .store(router.cut_off(), Ordering::Relaxed);
        events.clear();
        books_dirty = true;
        if committed.duration_since(books_published) >= state.config.book_stats_interval {
            shared.stats.books.publish(&state.engine);
            books_published = committed;
            books_dirty = false;
        }

        state.since_snapshot += batch_commands;
        if state.config.snapshot_every > 0 && state.since_snapshot >= state.config.snapshot_every {
            write_snapshot(&state)?;
            if state.config.archive_after_snapshot {
                state.journal.archive_through(state.seq)?;
            }
            state.since_snapshot = 0;
            shared.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        }
    }
    let durable = state.journal.commit()?;
    shared.stats.durable_seq.store(durable, Ordering::Release);
    write_snapshot(&state)?;
    shared.stats.snapshots.fetch_add(1, Ordering::Relaxed);
    Ok(Finished {
        last_seq: state.seq,
        event_count: state.event_count,
        event_hash: state.event_hasher.finish(),
        state_hash: state.engine.state_hash(),
    })
}

/// Registers and unregisters sessions asked for since the last call.
/// `published`: the last sequence number whose outputs are all out.
fn apply_controls(shared: &Shared, router: &mut Router, published: u64) {
    if shared.has_control.swap(false, Ordering::AcqRel) {
        let controls = std::mem::take(&mut *shared.control.lock().expect("not poisoned"));
        for control in controls {
            match control {
                Control::Register(subscription) => router.register(subscription, published),
                Control::Unregister(session) => router.unregister(session),
            }
        }
    }
}

/// Folds one event, in its wire encoding, into the running event hash.
pub fn hash_event(hasher: &mut StableHasher, event: &Event, scratch: &mut Vec<u8>) {
    scratch.clear();
    crate::codec::encode_event(event, scratch);
    hasher.bytes(scratch);
}

fn write_snapshot(state: &LoopState) -> Result<(), JournalError> {
    let header = SnapshotHeader {
        seq: state.seq,
        event_count: state.event_count,
        event_hasher: state.event_hasher,
        state_hash: state.engine.state_hash(),
    };
    write_snapshot_file(&state.config.data_dir, &header, &state.engine)?;
    Ok(())
}

/// Writes a snapshot of `engine` into the store at `data_dir`.
pub fn write_snapshot_file(
    data_dir: &std::path::Path,
    header: &SnapshotHeader,
    engine: &Engine,
) -> Result<PathBuf, JournalError> {
    let payload = recovery::snapshot_payload(header, engine);
    brokerx_journal::snapshot::write(&recovery::snapshot_dir(data_dir), header.seq, &payload)
}

fn wait(
    shared: &Shared,
    strategy: WaitStrategy,
    spins: u32,
    idle_since: &mut Option<std::time::Instant>,
) -> u32 {
    match strategy {
        WaitStrategy::SpinPark { spin, timeout } => {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            // Look at the clock every 64 turns only.
            if spins % 64 != 63 || since.elapsed() < spin {
                std::hint::spin_loop();
                return spins.wrapping_add(1);
            }
            park(shared, timeout);
            spins.wrapping_add(1)
        }
        WaitStrategy::Spin => {
            std::hint::spin_loop();
            spins
        }
        WaitStrategy::SpinThenYield { spins: limit } => {
            if spins < limit {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            spins.saturating_add(1)
        }
        WaitStrategy::Park {
            spins: limit,
            timeout,
        } => {
            if spins < limit {
                std::hint::spin_loop();
                return spins + 1;
            }
            park(shared, timeout);
            spins
        }
    }
}

fn park(shared: &Shared, timeout: Duration) {
    shared.sleeping.store(true, Ordering::SeqCst);
    // Re-check after announcing sleep so a push that raced with us is not
    // missed (pairs with the fence in `Shared::wake`).
    std::sync::atomic::fence(Ordering::SeqCst);
    if shared.ring.is_empty()
        && !shared.stop.load(Ordering::Acquire)
        && !shared.has_control.load(Ordering::Acquire)
    {
        std::thread::park_timeout(timeout);
    }
    shared.sleeping.store(false, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, Limits, SelfTradePrevention};

    /// Records what the engine thread hands it, and the durable sequence
    /// number at that moment.
    struct Recorder {
        shared: Arc<Shared>,
        seen: Mutex<Vec<(u64, u64)>>,
        flushes: AtomicU64,
    }

    impl InlineConsumer for Recorder {
        fn output(&self, output: &Output) {
            let durable = self.shared.stats.durable_seq.load(Ordering::Acquire);
            self.seen.lock().unwrap().push((output.seq, durable));
        }

        fn flush(&self) {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn inline_consumers_get_durable_outputs_from_their_registration_on() {
        let dir = std::env::temp_dir().join(format!("brokerx-inline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = PipelineConfig::new(dir.clone());
        config.segment_bytes = 1 << 20;
        let pipeline = Pipeline::start(config, crate::EngineConfig::default()).unwrap();
        let recorder = |pipeline: &Pipeline| {
            Arc::new(Recorder {
                shared: pipeline.shared.clone(),
                seen: Mutex::new(Vec::new()),
                flushes: AtomicU64::new(0),
            })
        };
        let first = recorder(&pipeline);
        let (submitter, handle) = pipeline.connect_inline(&[], true, first.clone());
        assert_eq!(handle.registered_after(Duration::from_secs(10)), Some(0));
        let create = |account| Command::CreateAccount {
            account: AccountId(account),
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        };
        let wait_for = |recorder: &Recorder, seq: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !recorder.seen.lock().unwrap().iter().any(|(s, _)| *s == seq) {
                assert!(std::time::Instant::now() < deadline, "seq {seq} never came");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for account in 1..=3 {
            submitter.submit(create(account)).unwrap();
        }
        wait_for(&first, 3);
        let second = recorder(&pipeline);
        let (_, late) = pipeline.connect_inline(&[], true, second.clone());
        let after = late.registered_after(Duration::from_secs(10)).unwrap();
        assert_eq!(after, 3, "registered once the first three were out");
        submitter.submit(create(4)).unwrap();
        wait_for(&second, 4);
        for recorder in [&first, &second] {
            let seen = recorder.seen.lock().unwrap();
            assert!(seen.iter().all(|(seq, durable)| seq <= durable), "{seen:?}");
            assert!(recorder.flushes.load(Ordering::Relaxed) >= 1);
        }
        assert!(second
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|(seq, _)| *seq > after));
        pipeline.disconnect(late.id);
        pipeline.shutdown().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
