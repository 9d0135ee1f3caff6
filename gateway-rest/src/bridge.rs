//! The bridge to the engine pipeline: one engine session for the whole
//! gateway (it receives every event, so it also drives the read model).
//!
//! - **Submit**: handlers call [`Bridge::request`]; the command is pushed
//!   to the ring and a completion queued under one lock, so the queue's
//!   order is the sequencer's order. Every command yields at least one
//!   event, the last one flagged, which completes the queue's head.
//! - **Consume**: one thread drains the session's outputs, folds them into
//!   the read model (`projection::State`), queues SQLite writes in order,
//!   fans stream messages out to WebSocket subscribers, and only then
//!   completes the pending requests, so a handler that got its reply reads
//!   a read model that already includes it.
//! - **History**: before going live, the read model is seeded from a
//!   scratch engine rebuilt from the newest snapshot plus the journal (the
//!   same functions recovery uses). The session connects first, so nothing
//!   sequenced afterwards is missed; a gap (the gateway started after
//!   others submitted) is filled from the journal on the first output.
//! - **Overload**: the engine never waits for the bridge. If the consumer
//!   falls a whole outbound queue behind, the engine cuts it off; the
//!   consumer then subscribes again under the same session id, and the
//!   outputs published before the new subscription are rebuilt from the
//!   journal and go through the same path as live ones (read model, SQLite,
//!   streams, completions), so no update is lost and pending requests are
//!   answered.

use crate::db::Db;
use crate::projection::{order_from_store, Effects, State, StreamItem, Write};
use brokerx_engine::pipeline::{
    load_snapshot_at_most, replay_journal, Busy, Output, Pipeline, SessionHandle, Submitter,
};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{Command, Engine, EngineConfig};
use rusqlite::OptionalExtension;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

type Completion = tokio::sync::oneshot::Sender<Vec<Output>>;

/// A submitted command waiting for its outputs, in sequencer order.
type Pending = VecDeque<(Command, Completion)>;

pub struct Bridge {
    pub state: Arc<RwLock<State>>,
    submitter: Submitter,
    pending: Arc<Mutex<Pending>>,
    /// Test hook: while set, the consumer reads no engine output.
    paused: AtomicBool,
    pub stream_tx: tokio::sync::broadcast::Sender<StreamItem>,
    live: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pipeline: Arc<Pipeline>,
    session: brokerx_engine::pipeline::SessionId,
    next_tag: AtomicU64,
    reattached: AtomicU64,
    pub db: Db,
    /// Connected `/stream` (Alpaca) clients.
    pub alpaca_listeners: AtomicUsize,
    /// Client order ids waiting to be recorded (group commit).
    intents: Arc<Mutex<Vec<Intent>>>,
}

/// A client order id to record before its command is submitted.
struct Intent {
    tag: u64,
    account: u32,
    client_order_id: String,
    recorded: tokio::sync::oneshot::Sender<bool>,
}

#[derive(Debug)]
pub enum RequestError {
    /// The ring is full.
    Busy,
    /// The bridge is not connected (cut off or stopping).
    Down,
}

impl From<Busy> for RequestError {
    fn from(_: Busy) -> RequestError {
        RequestError::Busy
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rebuilds the engine at `until` (or the journal's end) in a scratch
/// engine from the newest snapshot plus the journal.
fn scratch_engine(
    data_dir: &Path,
    config: EngineConfig,
    engine: Option<Engine>,
    until: Option<u64>,
) -> Result<Engine, String> {
    let mut engine = match engine {
        Some(engine) => engine,
        None => match load_snapshot_at_most(data_dir, until.unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?
        {
            Some((_, engine, _)) => engine,
            None => Engine::new(config),
        },
    };
    let mut hasher = StableHasher::default();
    let mut count = 0u64;
    replay_journal(
        data_dir,
        &mut engine,
        &mut hasher,
        &mut count,
        until,
        |_, _| {},
    )
    .map_err(|e| format!("journal replay: {e}"))?;
    Ok(engine)
}

/// Loads the stored read model into `state`. Returns the sequence number
/// the store is complete through: `Some(0)` for a store that has never
/// projected anything, `None` for one written without a watermark.
fn load_store(db: &Db, state: &mut State) -> Result<Option<u64>, String> {
    type Loaded = (
        Vec<String>,
        Vec<(u32, u32, u64, String)>,
        Vec<(u32, u64)>,
        Vec<(u32, String)>,
        Option<u64>,
        Vec<(i64, u32, String)>,
    );
    let loaded: Result<Loaded, rusqlite::Error> = db
        .call_blocking(|c| {
            let orders = c
                .prepare("SELECT body FROM orders ORDER BY order_id")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let costs = c
                .prepare("SELECT account, symbol, qty, cost FROM cost_basis")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let seqs = c
                .prepare("SELECT account, MAX(seq) FROM stream GROUP BY account")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let trades = c
                .prepare("SELECT symbol, body FROM trades ORDER BY match_id DESC LIMIT 2000")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let stored: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'projected_through'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let activities: i64 =
                c.query_row("SELECT COUNT(*) FROM activities", [], |r| r.get(0))?;
            let watermark = match stored {
                Some(text) => text.parse().ok(),
                None if orders.is_empty() && activities == 0 => Some(0),
                None => None,
            };
            let intents = c
                .prepare("SELECT tag, account, client_order_id FROM order_intents")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((orders, costs, seqs, trades, watermark, intents))
        })
        .map_err(|_| "sqlite thread gone".to_string())?;
    let (orders, costs, seqs, trades, watermark, intents) =
        loaded.map_err(|e| format!("sqlite: {e}"))?;
    for (tag, account, client_order_id) in intents {
        state.intents.insert(tag as u64, (account, client_order_id));
    }
    for body in orders {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        if let Some(order) = order_from_store(&value) {
            state
                .client_ids
                .insert((order.account, order.client_order_id.clone()), order.id);
            state
                .account_orders
                .entry(order.account)
                .or_default()
                .push(order.id);
            state.orders.insert(order.id, order);
        }
    }
    for (account, symbol, _qty, cost) in costs {
        let position = state
            .accounts
            .entry(account)
            .or_default()
            .positions
            .entry(symbol)
            .or_default();
        position.cost = cost.parse().unwrap_or(0);
    }
    for (account, seq) in seqs {
        state.stream_seq.insert(account, seq);
    }
    for (symbol, body) in trades.into_iter().rev() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let price = v["price"]
            .as_str()
            .and_then(|p| crate::money::parse_scaled(p, 4).ok());
        let qty = v["qty"].as_str().and_then(|q| q.parse().ok());
        if let (Some(price), Some(qty), Some(id)) = (price, qty, v["id"].as_u64()) {
            state
                .trades
                .entry(symbol)
                .or_default()
                .push_back(crate::projection::TradeRec {
                    match_id: id,
                    symbol,
                    price,
                    qty,
                    aggressor: if v["aggressor"] == "sell" {
                        brokerx_engine::Side::Sell
                    } else {
                        brokerx_engine::Side::Buy
                    },
                    ts_ns: 0,
                });
        }
    }
    Ok(watermark)
}

fn write_all(db: &Db, writes: Vec<Write>) {
    if writes.is_empty() {
        return;
    }
    db.send(move |c| {
        let Ok(tx) = c.transaction() else {
            return;
        };
        for write in writes {
            let result = match write {
                Write::Order {
                    id,
                    account,
                    open,
                    body,
                } => tx.execute(
                    "INSERT INTO orders (order_id, account, open, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(order_id) DO UPDATE SET open = ?3, body = ?4",
                    rusqlite::params![id as i64, account, open, body],
                ),
                Write::Activity {
                    seq,
                    idx,
                    account,
                    kind,
                    body,
                } => tx.execute(
                    "INSERT OR IGNORE INTO activities (seq, idx, account, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![seq as i64, idx, account, kind, body],
                ),
                Write::Trade {
                    match_id,
                    symbol,
                    body,
                } => tx.execute(
                    "INSERT OR IGNORE INTO trades (match_id, symbol, body) VALUES (?1, ?2, ?3)",
                    rusqlite::params![match_id as i64, symbol, body],
                ),
                Write::Stream { account, seq, body } => tx.execute(
                    "INSERT OR IGNORE INTO stream (account, seq, body) VALUES (?1, ?2, ?3)",
                    rusqlite::params![account, seq as i64, &*body],
                ),
                Write::Cost {
                    account,
                    symbol,
                    qty,
                    cost,
                } => tx.execute(
                    "INSERT INTO cost_basis (account, symbol, qty, cost) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(account, symbol) DO UPDATE SET qty = ?3, cost = ?4",
                    rusqlite::params![account, symbol, qty as i64, cost.to_string()],
                ),
                Write::MoneyMove {
                    account,
                    tag,
                    response,
                } => tx.execute(
                    "INSERT OR REPLACE INTO money_moves (account, tag, response) VALUES (?1, ?2, ?3)",
                    rusqlite::params![account, tag as i64, response],
                ),
                Write::IntentDone { tag } => tx.execute(
                    "DELETE FROM order_intents WHERE tag = ?1",
                    rusqlite::params![tag as i64],
                ),
                Write::Watermark(seq) => tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('projected_through', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = ?1",
                    rusqlite::params![seq.to_string()],
                ),
            };
            if let Err(e) = result {
                tracing::error!(gateway = "rest", error = %e, "read model write failed");
            }
        }
        let _ = tx.commit();
    });
}

impl Bridge {
    /// Connects to the pipeline, seeds the read model from the journal,
    /// and starts the consumer thread.
    pub fn start(
        pipeline: Arc<Pipeline>,
        data_dir: PathBuf,
        engine_config: EngineConfig,
        names: BTreeMap<u32, String>,
        specs: BTreeMap<u32, brokerx_engine::SymbolSpec>,
        db: Db,
    ) -> Result<Arc<Bridge>, String> {
        let (submitter, handle) = pipeline.connect(&[], true);
        let session = handle.id;
        let mut state = State {
            names: names.clone(),
            specs,
            ..State::default()
        };
        let until = pipeline.recovered.last_seq;
        // The store is complete through its watermark: seed the state as
        // of then, and run what the journal holds after it through the
        // projection below, as if live (a crash may have lost the writes
        // of outputs the clients already saw). A store without one
        // (written before watermarks) is seeded at the journal's end.
        let seeded = (|| -> Result<(Engine, u64), String> {
            let watermark = load_store(&db, &mut state)?;
            let from = match watermark {
                Some(w) if w < until => w,
                _ => until,
            };
            let engine = scratch_engine(&data_dir, engine_config, None, Some(from))?;
            state.seed(&engine, &names, crate::time::now_ns());
            Ok((engine, from))
        })();
        let (engine, seeded_through) = match seeded {
            Ok(seeded) => seeded,
            Err(e) => {
                pipeline.disconnect(session);
                return Err(e);
            }
        };
        let (stream_tx, _) = tokio::sync::broadcast::channel(4096);
        let bridge = Arc::new(Bridge {
            state: Arc::new(RwLock::new(state)),
            submitter,
            pending: Arc::default(),
            paused: AtomicBool::new(false),
            stream_tx,
            live: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
            pipeline: pipeline.clone(),
            session,
            next_tag: AtomicU64::new(crate::time::now_ns()),
            reattached: AtomicU64::new(0),
            db,
            alpaca_listeners: AtomicUsize::new(0),
            intents: Arc::default(),
        });
        let mut consumer = Consumer {
            bridge: bridge.clone(),
            handle,
            scratch: None,
            data_dir,
            engine_config,
            seeded_through,
            collected: Vec::new(),
            completions: Vec::new(),
            current_seq: 0,
            index_in_command: 0,
            held: Vec::new(),
            done_through: seeded_through,
        };
        let engine = match consumer.catch_up(engine, until) {
            Ok(engine) => engine,
            Err(e) => {
                pipeline.disconnect(session);
                return Err(e);
            }
        };
        consumer.scratch = Some(engine);
        let thread = std::thread::Builder::new()
            .name("rest-bridge".into())
            .spawn(move || consumer.run())
            .map_err(|e| e.to_string())?;
        *lock(&bridge.thread) = Some(thread);
        Ok(bridge)
    }

    /// A fresh correlation tag for a command.
    pub fn tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) && !self.pipeline.has_stopped()
    }

    pub fn durable_seq(&self) -> u64 {
        self.pipeline.stats().durable_seq.load(Ordering::Acquire)
    }

    /// Queues `client_order_id` of the command tagged `tag` for SQLite
    /// (the journal holds only the tag), so that a restart's replay gives
    /// it back to the order. Call it before submitting the command: the
    /// write is queued ahead of the projection's writes for the command's
    /// outputs. Concurrent calls share one transaction. The receiver says
    /// whether it was written.
    pub fn record_intent(
        &self,
        tag: u64,
        account: u32,
        client_order_id: String,
    ) -> tokio::sync::oneshot::Receiver<bool> {
        let (recorded, done) = tokio::sync::oneshot::channel();
        let first = {
            let mut queue = lock(&self.intents);
            queue.push(Intent {
                tag,
                account,
                client_order_id,
                recorded,
            });
            queue.len() == 1
        };
        if first {
            // The job takes whatever is queued when it runs; a call that
            // finds the queue non-empty is taken by the job already queued.
            let intents = self.intents.clone();
            self.db.send(move |c| {
                let batch = std::mem::take(&mut *lock(&intents));
                let written = (|| -> rusqlite::Result<()> {
                    let tx = c.transaction()?;
                    {
                        let mut insert = tx.prepare_cached(
                            "INSERT OR REPLACE INTO order_intents (tag, account, client_order_id) VALUES (?1, ?2, ?3)",
                        )?;
                        for intent in &batch {
                            insert.execute(rusqlite::params![
                                intent.tag as i64,
                                intent.account,
                                intent.client_order_id
                            ])?;
                        }
                    }
                    tx.commit()
                })();
                if let Err(e) = &written {
                    tracing::error!(gateway = "rest", error = %e, "client order ids not recorded");
                }
                for intent in batch {
                    let _ = intent.recorded.send(written.is_ok());
                }
            });
        }
        done
    }

    /// Forgets a recorded client order id whose command was never
    /// submitted.
    pub fn forget_intent(&self, tag: u64) {
        write_all(&self.db, vec![Write::IntentDone { tag }]);
    }

    /// Submits `command` and waits for all of its events.
    pub async fn request(&self, command: Command) -> Result<Vec<Output>, RequestError> {
        if !self.is_live() {
            return Err(RequestError::Down);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            self.submitter.submit(command)?;
            pending.push_back((command, tx));
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(outputs)) => Ok(outputs),
            _ => Err(RequestError::Down),
        }
    }

    /// Submits and waits, from a non-async thread.
    pub fn request_blocking(&self, command: Command) -> Result<Vec<Output>, RequestError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            self.submitter.submit(command)?;
            pending.push_back((command, tx));
        }
        rx.blocking_recv().map_err(|_| RequestError::Down)
    }

    /// Test hook: while paused, the consumer reads no engine output (as a
    /// thread starved of CPU would not), so the engine cuts it off once its
    /// queue is full.
    #[doc(hidden)]
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Times the engine cut the bridge off and it re-attached.
    pub fn reattached(&self) -> u64 {
        self.reattached.load(Ordering::Relaxed)
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
        self.pipeline.disconnect(self.session);
    }
}

struct Consumer {
    bridge: Arc<Bridge>,
    handle: SessionHandle,
    scratch: Option<Engine>,
    data_dir: PathBuf,
    engine_config: EngineConfig,
    /// Outputs of commands up to here are already in the seeded state.
    seeded_through: u64,
    /// Outputs of the command being received that are this bridge's own.
    collected: Vec<Output>,
    completions: Vec<(Completion, Vec<Output>)>,
    /// The command whose outputs are arriving, and the index of the last
    /// one received.
    current_seq: u64,
    index_in_command: u32,
    /// Store writes of the last command received, while more of its
    /// outputs may still come: they go out with the rest of it, so a
    /// watermark never falls inside a command.
    held: Vec<Write>,
    /// Every output of the commands up to here has been received.
    done_through: u64,
}

impl Consumer {
    /// Client order ids recorded for commands the journal does not hold
    /// (the process died before submitting them; their clients got no
    /// answer): the ids are free again.
    fn forget_unsubmitted_intents(&mut self) {
        let tags: Vec<u64> = {
            let mut state = self.bridge.state.write().unwrap_or_else(|e| e.into_inner());
            state.intents.drain().map(|(tag, _)| tag).collect()
        };
        if !tags.is_empty() {
            tracing::info!(
                gateway = "rest",
                count = tags.len(),
                "client order ids of orders never submitted are released"
            );
            write_all(
                &self.bridge.db,
                tags.into_iter()
                    .map(|tag| Write::IntentDone { tag })
                    .collect(),
            );
        }
    }

    /// At start: the journal's commands after what the store holds, up to
    /// `until`, through [`Consumer::process`] (in bounded chunks).
    fn catch_up(&mut self, mut engine: Engine, until: u64) -> Result<Engine, String> {
        let from = engine.last_seq();
        if from >= until {
            self.forget_unsubmitted_intents();
            return Ok(engine);
        }
        let mut outputs = Vec::new();
        let mut hasher = StableHasher::default();
        let mut count = 0u64;
        let data_dir = self.data_dir.clone();
        replay_journal(
            &data_dir,
            &mut engine,
            &mut hasher,
            &mut count,
            Some(until),
            |command, events| {
                for (k, event) in events.iter().enumerate() {
                    outputs.push(Output {
                        seq: command.seq,
                        timestamp_ns: command.timestamp_ns,
                        event: *event,
                        own: false,
                        last: k + 1 == events.len(),
                    });
                }
                if outputs.len() >= 4096 {
                    self.process(&mut outputs);
                }
            },
        )
        .map_err(|e| format!("journal replay: {e}"))?;
        self.process(&mut outputs);
        self.forget_unsubmitted_intents();
        self.bridge.db.flush_blocking();
        tracing::info!(
            gateway = "rest",
            from = from + 1,
            until,
            "rest read model caught up from the journal"
        );
        self.seeded_through = until;
        Ok(engine)
    }

    fn run(mut self) {
        let mut batch: Vec<Output> = Vec::with_capacity(1024);
        loop {
            if self.bridge.stop.load(Ordering::Acquire) {
                // What is queued, and the writes of its last command if
                // it is whole, go to the store before the thread ends.
                batch.extend(self.handle.receiver.try_iter());
                self.process(&mut batch);
                break;
            }
            if self.bridge.paused.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match self.handle.receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(output) => batch.push(output),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    if self.bridge.stop.load(Ordering::Acquire) {
                        break;
                    }
                    let reason = self.handle.cut_reason().unwrap_or_default();
                    crate::app::surface().slow_consumers.inc();
                    tracing::error!(gateway = "rest", reason = %reason, "rest bridge cut off by the engine; re-attaching");
                    match self.reattach() {
                        Ok(()) => {
                            self.bridge.reattached.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(gateway = "rest", error = %e, "rest bridge could not re-attach; not ready until restarted");
                            self.bridge.live.store(false, Ordering::Release);
                            lock(&self.bridge.pending).clear();
                            break;
                        }
                    }
                }
            }
            while batch.len() < 1024 {
                match self.handle.receiver.try_recv() {
                    Ok(output) => batch.push(output),
                    Err(_) => break,
                }
            }
            // A gap before the first live output (others submitted before
            // this session was registered): its commands go through the
            // projection from the journal, as at start, so the store has
            // them too.
            if let Some(engine) = self.scratch.take() {
                let first = batch[0].seq;
                if first > self.seeded_through + 1 {
                    if let Err(e) = self.catch_up(engine, first - 1) {
                        tracing::error!(gateway = "rest", error = %e, "rest read model gap fill failed");
                    }
                }
            }
            self.process(&mut batch);
        }
    }

    /// Folds outputs into the read model, writes and streams what they
    /// change, then answers the requests they complete.
    ///
    /// The store's writes go out whole commands at a time with a watermark
    /// after them; those of a command whose `last` output has not come yet
    /// wait for the rest.
    fn process(&mut self, batch: &mut Vec<Output>) {
        // Whether the last command received has had its `last` output (a
        // command held from before is not, until more of it comes).
        let mut command_whole = self.held.is_empty();
        let mut effects = Effects {
            writes: std::mem::take(&mut self.held),
            ..Effects::default()
        };
        // Where the writes of the last command received begin.
        let mut last_command_writes = 0;
        {
            let mut state = self.bridge.state.write().unwrap_or_else(|e| e.into_inner());
            state.render_alpaca = self.bridge.alpaca_listeners.load(Ordering::Acquire) > 0;
            for output in batch.drain(..) {
                if output.seq != self.current_seq {
                    // Outputs come in sequence order: the command before
                    // this one has had all of its outputs.
                    self.done_through = self.done_through.max(self.current_seq);
                    last_command_writes = effects.writes.len();
                    self.current_seq = output.seq;
                    self.index_in_command = 0;
                } else {
                    self.index_in_command += 1;
                }
                command_whole = output.last;
                if output.seq > self.seeded_through {
                    state.apply(&output, self.index_in_command, &mut effects);
                }
                if output.own {
                    self.collected.push(output);
                    if output.last {
                        if let Some((_, tx)) = lock(&self.bridge.pending).pop_front() {
                            self.completions
                                .push((tx, std::mem::take(&mut self.collected)));
                        } else {
                            self.collected.clear();
                        }
                    }
                }
            }
        }
        if command_whole {
            self.done_through = self.done_through.max(self.current_seq);
        } else {
            self.held = effects.writes.split_off(last_command_writes);
        }
        let mut writes = std::mem::take(&mut effects.writes);
        // Only with writes: outputs that change nothing in the store leave
        // it complete through the older watermark too (replaying them
        // after a crash writes nothing either).
        if !writes.is_empty() {
            writes.push(Write::Watermark(self.done_through.max(self.seeded_through)));
        }
        write_all(&self.bridge.db, writes);
        for item in effects.stream {
            let _ = self.bridge.stream_tx.send(item);
        }
        for (tx, outputs) in self.completions.drain(..) {
            let _ = tx.send(outputs);
        }
    }

    /// After a cut-off: subscribes again under the same session id and
    /// runs the outputs published before the new subscription through
    /// [`Consumer::process`], rebuilt from the journal.
    fn reattach(&mut self) -> Result<(), String> {
        let pipeline = self.bridge.pipeline.clone();
        let handle = pipeline.reconnect(self.bridge.session, &[], true);
        let until = handle
            .registered_after(Duration::from_secs(10))
            .ok_or("the engine did not register the new subscription (stopped?)")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pipeline.stats().durable_seq.load(Ordering::Acquire) < until {
            if std::time::Instant::now() >= deadline {
                return Err(format!("the journal did not reach sequence {until}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Commands submitted from now on are sequenced after `until`; those
        // waiting now are, in order, the bridge's own among the journal's.
        let waiting: Vec<Command> = lock(&self.bridge.pending)
            .iter()
            .map(|(command, _)| *command)
            .collect();
        let first_needed = if self.current_seq != 0 {
            self.current_seq
        } else {
            self.seeded_through + 1
        };
        let mut engine = match load_snapshot_at_most(&self.data_dir, first_needed - 1) {
            Ok(Some((_, engine, _))) => engine,
            _ => Engine::new(self.engine_config),
        };
        let (current_seq, received) = (self.current_seq, self.index_in_command);
        // Cut in the middle of a command: it is the bridge's own (and the
        // first one waiting) if its first outputs were.
        let partial_own = !self.collected.is_empty();
        let mut next_own = 0;
        let mut outputs = Vec::new();
        let mut hasher = StableHasher::default();
        let mut count = 0u64;
        replay_journal(
            &self.data_dir,
            &mut engine,
            &mut hasher,
            &mut count,
            Some(until),
            |command, events| {
                if command.seq < first_needed {
                    return;
                }
                let partial = command.seq == current_seq;
                let own = if partial {
                    partial_own
                } else {
                    waiting.get(next_own) == Some(&command.command)
                };
                if own {
                    next_own += 1;
                }
                for (k, event) in events.iter().enumerate() {
                    if partial && k as u32 <= received {
                        continue; // delivered before the cut
                    }
                    outputs.push(Output {
                        seq: command.seq,
                        timestamp_ns: command.timestamp_ns,
                        event: *event,
                        own,
                        last: k + 1 == events.len(),
                    });
                }
            },
        )
        .map_err(|e| format!("journal replay: {e}"))?;
        self.handle = handle;
        let rebuilt = outputs.len();
        self.process(&mut outputs);
        tracing::warn!(
            gateway = "rest",
            seq = until,
            outputs = rebuilt,
            "rest bridge re-attached; outputs up to seq rebuilt from the journal"
        );
        Ok(())
    }
}
