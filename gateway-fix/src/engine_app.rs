//! The application that connects FIX sessions to the BrokerX engine.
//!
//! Threads (std, no async runtime):
//! - the session layer's connection threads call [`Application::on_app_message`]:
//!   D/F/G/H/q go through the session's [`OrderBook`] (checks, then one
//!   engine command), V and x are answered from the market data and the
//!   symbol list;
//! - one *event* thread owns every session's engine subscription (its
//!   account) for the gateway's whole life, so fills that happen while the
//!   counterparty is logged out are still turned into execution reports,
//!   stored under their MsgSeqNums and resent after the next Logon; one
//!   thread for all sessions wakes once per engine batch, not once per
//!   session;
//! - the same thread follows every engine event for market data (after the
//!   journal's history is replayed at start), keeps L1/L2 books and sends
//!   each subscriber its W or X messages after every batch.
//!
//! The engine never waits for a consumer: if this thread falls a whole
//! outbound queue behind (overload), the engine cuts its subscription off.
//! The thread then *re-attaches*: it subscribes again, learns the sequence
//! number P from which the new subscription is fed, and rebuilds what it
//! missed up to P from the journal (the reports a session had not received
//! yet, the market data books), so no report is lost and the market data
//! subscribers catch up with a diff.
//!
//! Lock order: a connection thread holds its session slot, then takes the
//! order book or the market data lock. Event and market data threads take
//! their lock, build the messages, release it, and only then send (which
//! takes the slot): no cycle.

use crate::orders::{format_price, OrderBook, Step, SymbolInfo};
use crate::server::{now_ms, Sessions};
use crate::session::{Application, InboundMessage, OutboundMessage, SessionId};
use brokerx_engine::pipeline::{
    accounts_of, load_snapshot_at_most, replay_journal, Output, Pipeline, SessionHandle, Submitter,
};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{AccountId, Command, Engine, EngineConfig, Event, Side, SymbolId};
use brokerx_marketdata::{Level, MarketData};
use crossbeam_channel::{Select, TryRecvError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A FIX session's binding to the engine.
#[derive(Clone, Debug)]
pub struct EngineSession {
    pub id: SessionId,
    pub account: AccountId,
    /// Cancel the account's resting orders when this session disconnects.
    pub cancel_on_disconnect: bool,
}

/// Settings of the engine application.
#[derive(Clone, Debug)]
pub struct EngineAppConfig {
    pub sessions: Vec<EngineSession>,
    pub symbols: Vec<SymbolInfo>,
    /// Per-session order journals (`<sender>-<target>.orders`) live here.
    pub dir: PathBuf,
    /// The engine's data directory and config, to replay market data history.
    pub data_dir: PathBuf,
    pub engine_config: EngineConfig,
    /// Test hook: while set, event threads drop engine outputs, as a process
    /// that died between the engine's commit and the gateway's reports would.
    #[doc(hidden)]
    pub drop_outputs: Option<Arc<AtomicBool>>,
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct EngineAppStats {
    pub commands: AtomicU64,
    pub busy: AtomicU64,
    pub reports: AtomicU64,
    pub md_messages: AtomicU64,
    pub business_rejects: AtomicU64,
    /// Subscriptions the engine cut off and the event thread re-attached.
    pub reattached: AtomicU64,
}

struct PerSession {
    spec: EngineSession,
    submitter: Submitter,
    book: Mutex<OrderBook>,
    journal: Mutex<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PerSession {
    fn write_journal(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        if let Err(e) = lock(&self.journal).write_all(text.as_bytes()) {
            tracing::error!(
                gateway = "fix",
                session = %format_args!("{}->{}", self.spec.id.target_comp_id, self.spec.id.sender_comp_id),
                error = %e,
                "order journal write failed"
            );
        }
    }
}

/// One market data subscription (a V with SubscriptionRequestType 1).
struct Subscription {
    session: SessionId,
    req_id: Vec<u8>,
    symbol: SymbolId,
    depth: usize,
    /// MDUpdateType 1 (X deltas) or 0 (a new W each time).
    incremental: bool,
    bids: bool,
    offers: bool,
    trades: bool,
    /// What the subscriber was last sent.
    view: (Vec<Level>, Vec<Level>),
}

struct MdState {
    book: MarketData,
    subs: Vec<Subscription>,
}

/// The engine application. Create with [`EngineApp::start`].
pub struct EngineApp {
    sessions: Arc<Sessions>,
    per: BTreeMap<SessionId, Arc<PerSession>>,
    symbols: Vec<SymbolInfo>,
    md: Arc<Mutex<MdState>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pipeline: Arc<Pipeline>,
    pub stats: Arc<EngineAppStats>,
    /// Test hook: while set, the event thread reads no engine output.
    paused: Arc<AtomicBool>,
}

impl EngineApp {
    /// Opens the order journals, subscribes every session to its account
    /// and starts the event and market data threads. Start it before any
    /// other producer submits, so the market data history is exact.
    pub fn start(
        pipeline: Arc<Pipeline>,
        sessions: Arc<Sessions>,
        config: EngineAppConfig,
    ) -> std::io::Result<Arc<EngineApp>> {
        std::fs::create_dir_all(&config.dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EngineAppStats::default());
        let mut per = BTreeMap::new();
        let mut threads = Vec::new();
        let mut started: Vec<(Arc<PerSession>, SessionHandle)> = Vec::new();
        for (index, spec) in config.sessions.iter().enumerate() {
            let index = u16::try_from(index)
                .map_err(|_| std::io::Error::other("at most 65536 FIX sessions"))?;
            if !sessions.ids().any(|id| id == &spec.id) {
                return Err(std::io::Error::other(format!(
                    "FIX session {:?} has no session-layer config",
                    spec.id
                )));
            }
            let path = config.dir.join(format!(
                "{}-{}.orders",
                spec.id.sender_comp_id, spec.id.target_comp_id
            ));
            let mut book = OrderBook::new(spec.account, config.symbols.clone(), index);
            if path.exists() {
                for line in BufReader::new(File::open(&path)?).lines() {
                    match line {
                        Ok(line) => book.replay(&line),
                        Err(_) => break,
                    }
                }
            }
            let journal = OpenOptions::new().create(true).append(true).open(&path)?;
            let (submitter, handle) = pipeline.connect(&[spec.account], false);
            let session = Arc::new(PerSession {
                spec: spec.clone(),
                submitter,
                book: Mutex::new(book),
                journal: Mutex::new(journal),
            });
            per.insert(spec.id.clone(), session.clone());
            started.push((session, handle));
        }
        // One pass over the journal's history: the market data books, and
        // each session's catch-up on outputs it had not folded in before
        // the last stop (a crash between the engine's commit and the
        // gateway's journal write loses no report).
        let (_, md_handle) = pipeline.connect(&[], true);
        let until = pipeline.recovered.last_seq;
        let sessions_list: Vec<Arc<PerSession>> = started.iter().map(|(s, _)| s.clone()).collect();
        let history = history(
            &config.data_dir,
            config.engine_config,
            until,
            &sessions_list,
            &sessions,
        )
        .map_err(|e| std::io::Error::other(format!("journal history: {e}")))?;
        let md = Arc::new(Mutex::new(MdState {
            book: history,
            subs: Vec::new(),
        }));
        let paused = Arc::new(AtomicBool::new(false));
        {
            let (sessions, stop, stats) = (sessions.clone(), stop.clone(), stats.clone());
            let drop_outputs = config.drop_outputs.clone();
            let pipeline2 = pipeline.clone();
            let mut started = started;
            let context = EventContext {
                pipeline: pipeline.clone(),
                data_dir: config.data_dir.clone(),
                engine_config: config.engine_config,
                paused: paused.clone(),
                drop_outputs,
            };
            let mut feed = MdFeed {
                md: md.clone(),
                handle: md_handle,
                history_until: until,
                symbols: config.symbols.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("fix-events".into())
                    .spawn(move || {
                        event_loop(&context, &mut started, &mut feed, &sessions, &stop, &stats);
                        pipeline2.disconnect(feed.handle.id);
                        for (_, handle) in &started {
                            pipeline2.disconnect(handle.id);
                        }
                    })?,
            );
        }
        Ok(Arc::new(EngineApp {
            sessions,
            per,
            symbols: config.symbols,
            md,
            stop,
            threads: Mutex::new(threads),
            pipeline,
            stats,
            paused,
        }))
    }

    /// Test hook: while paused, the event thread reads no engine output, as
    /// a thread starved of CPU under overload would not; the engine then
    /// cuts its subscriptions off once their queues fill.
    #[doc(hidden)]
    pub fn pause_events(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// The session table this application sends through.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Stops the event and market data threads.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }

    fn symbol(&self, name: &[u8]) -> Option<&SymbolInfo> {
        self.symbols.iter().find(|s| s.name.as_bytes() == name)
    }

    fn orders(&self, session: &PerSession, m: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        let now = now_ms();
        let mut book = lock(&session.book);
        let Step {
            mut replies,
            command,
            journal,
        } = book.on_message(m, now);
        session.write_journal(&journal);
        if let Some(command) = command {
            if session.submitter.submit(command).is_ok() {
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                let step = book.busy(&command, now);
                session.write_journal(&step.journal);
                replies.extend(step.replies);
            }
        }
        replies
    }

    fn business_reject(&self, m: &InboundMessage<'_>, reason: &[u8], why: &str) -> OutboundMessage {
        self.stats.business_rejects.fetch_add(1, Ordering::Relaxed);
        let mut body = vec![
            (45, m.seq.to_string().into_bytes()),
            (372, m.msg_type.to_vec()),
        ];
        for id_tag in [11u32, 262, 320] {
            if let Some(v) = m.get(id_tag) {
                body.push((379, v.to_vec()));
                break;
            }
        }
        body.push((380, reason.to_vec()));
        body.push((58, why.as_bytes().to_vec()));
        OutboundMessage {
            msg_type: b"j".to_vec(),
            header: vec![],
            body,
        }
    }

    fn security_list(&self, m: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        let req = m.get(320).unwrap_or_default().to_vec();
        let wanted = m.get(55);
        let list: Vec<&SymbolInfo> = self
            .symbols
            .iter()
            .filter(|s| wanted.is_none_or(|w| w == s.name.as_bytes()))
            .collect();
        let mut body = vec![
            (320, req.clone()),
            (322, req),
            (
                560,
                if list.is_empty() {
                    b"2".to_vec()
                } else {
                    b"0".to_vec()
                },
            ),
            (146, list.len().to_string().into_bytes()),
        ];
        for s in list {
            body.push((55, s.name.as_bytes().to_vec()));
            body.push((15, b"USD".to_vec()));
        }
        vec![OutboundMessage {
            msg_type: b"y".to_vec(),
            header: vec![],
            body,
        }]
    }

    fn market_data_request(&self, id: &SessionId, m: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        let req_id = m.get(262).unwrap_or_default().to_vec();
        let reject = |reason: &[u8], why: &str| {
            vec![OutboundMessage {
                msg_type: b"Y".to_vec(),
                header: vec![],
                body: vec![
                    (262, req_id.clone()),
                    (281, reason.to_vec()),
                    (58, why.as_bytes().to_vec()),
                ],
            }]
        };
        let kind = m.get(263).unwrap_or_default();
        let mut state = lock(&self.md);
        if kind == b"2" {
            let before = state.subs.len();
            state
                .subs
                .retain(|s| !(s.session == *id && s.req_id == req_id));
            if state.subs.len() == before {
                return reject(b"0", "no subscription with this MDReqID");
            }
            return vec![];
        }
        if kind != b"0" && kind != b"1" {
            return reject(b"4", "SubscriptionRequestType must be 0, 1 or 2");
        }
        if kind == b"1"
            && state
                .subs
                .iter()
                .any(|s| s.session == *id && s.req_id == req_id)
        {
            return reject(b"1", "duplicate MDReqID");
        }
        let depth = match m
            .get(264)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok())
        {
            Some(0) => usize::MAX,
            Some(d) => d,
            None => return reject(b"5", "bad MarketDepth"),
        };
        let incremental = match m.get(265) {
            None | Some(b"1") => true,
            Some(b"0") => false,
            Some(_) => return reject(b"6", "MDUpdateType must be 0 or 1"),
        };
        let types: Vec<&[u8]> = m
            .fields
            .iter()
            .filter(|f| f.tag == 269)
            .map(|f| f.value)
            .collect();
        if types.is_empty() || types.iter().any(|t| !matches!(*t, b"0" | b"1" | b"2")) {
            return reject(b"8", "MDEntryType must be 0 (bid), 1 (offer) or 2 (trade)");
        }
        let names: Vec<&[u8]> = m
            .fields
            .iter()
            .filter(|f| f.tag == 55)
            .map(|f| f.value)
            .collect();
        if names.is_empty() {
            return reject(b"0", "no Symbol in NoRelatedSym");
        }
        let mut symbols = Vec::new();
        for name in &names {
            match self.symbol(name) {
                Some(s) => symbols.push(s.id),
                None => {
                    return reject(
                        b"0",
                        &format!("unknown symbol {}", String::from_utf8_lossy(name)),
                    )
                }
            }
        }
        let mut out = Vec::new();
        for symbol in symbols {
            let mut sub = Subscription {
                session: id.clone(),
                req_id: req_id.clone(),
                symbol,
                depth,
                incremental,
                bids: types.contains(&&b"0"[..]),
                offers: types.contains(&&b"1"[..]),
                trades: types.contains(&&b"2"[..]),
                view: (Vec::new(), Vec::new()),
            };
            let l2 = state.book.l2(symbol, depth);
            sub.view = (l2.bids, l2.asks);
            out.push(snapshot(&sub, &state.book, &self.symbols));
            if kind == b"1" {
                state.subs.push(sub);
            }
        }
        self.stats
            .md_messages
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }
}

impl Application for EngineApp {
    fn on_logout(&self, id: &SessionId) {
        lock(&self.md).subs.retain(|s| s.session != *id);
        let Some(session) = self.per.get(id) else {
            return;
        };
        if session.spec.cancel_on_disconnect && !self.pipeline.has_stopped() {
            let command = Command::MassCancelAccount {
                account: session.spec.account,
                symbol: None,
                tag: 0,
            };
            // The cancels come back as execution reports, stored for the
            // next Logon. A full ring is retried briefly.
            for _ in 0..100 {
                if session.submitter.submit(command).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn on_app_message(&self, id: &SessionId, m: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        match m.msg_type {
            b"D" | b"F" | b"G" | b"H" | b"q" => match self.per.get(id) {
                Some(session) => self.orders(session, m),
                None => vec![self.business_reject(m, b"4", "session has no trading account")],
            },
            b"V" => self.market_data_request(id, m),
            b"x" => self.security_list(m),
            _ => vec![self.business_reject(m, b"3", "unsupported message type")],
        }
    }
}

/// The market data book as of `until`, from the journal, and every
/// session's reports for outputs after its last folded sequence number
/// (stored for its next Logon).
fn history(
    data_dir: &std::path::Path,
    engine_config: EngineConfig,
    until: u64,
    per: &[Arc<PerSession>],
    sessions: &Sessions,
) -> Result<MarketData, String> {
    if until == 0 {
        return Ok(MarketData::new());
    }
    // From the newest snapshot before the first command some session has
    // not folded in (its books read from the engine image), else from the
    // journal's start: start-up costs one snapshot interval, and a journal
    // whose old segments are archived still works.
    let first_needed = per
        .iter()
        .map(|s| lock(&s.book).last_seq() + 1)
        .min()
        .unwrap_or(until + 1);
    let (mut engine, mut hasher) =
        engine_before(data_dir, engine_config, first_needed.min(until + 1));
    let mut book = MarketData::from_engine(&engine);
    let mut count = 0;
    let mut replies: Vec<Vec<OutboundMessage>> = per.iter().map(|_| Vec::new()).collect();
    let mut journals: Vec<Vec<String>> = per.iter().map(|_| Vec::new()).collect();
    // Reports already in a session's store (stored, then the process died
    // before its order journal caught up): folded again, not sent again.
    let stored: Vec<u64> = per.iter().map(|s| sessions.folded(&s.spec.id)).collect();
    replay_journal(
        data_dir,
        &mut engine,
        &mut hasher,
        &mut count,
        Some(until),
        |command, events| {
            book.apply_all(events);
            let (account, tag) = command_origin(&command.command);
            for (i, session) in per.iter().enumerate() {
                let mut orders = lock(&session.book);
                if command.seq <= orders.last_seq() {
                    continue;
                }
                let own = account == Some(session.spec.account) && orders.owns_tag(tag);
                let mut exec_n = 0;
                for (k, event) in events.iter().enumerate() {
                    let out = Output {
                        seq: command.seq,
                        timestamp_ns: command.timestamp_ns,
                        event: *event,
                        own,
                        last: k + 1 == events.len(),
                    };
                    let step = orders.on_output(&out, &mut exec_n);
                    if command.seq > stored[i] {
                        replies[i].extend(step.replies);
                    }
                    journals[i].extend(step.journal);
                }
            }
        },
    )
    .map_err(|e| e.to_string())?;
    for (i, session) in per.iter().enumerate() {
        // The reports first (stored with their fold mark), then the order
        // journal: a crash between the two repeats no report and loses none.
        let replies = std::mem::take(&mut replies[i]);
        if !replies.is_empty() {
            sessions.send_folded(&session.spec.id, replies, Some(until));
        }
        let mut journal = std::mem::take(&mut journals[i]);
        journal.push(format!("S {until}"));
        session.write_journal(&journal);
    }
    Ok(book)
}

/// Per session: the last engine sequence number seen and the ExecID counter
/// within it.
struct Cursor {
    seq: u64,
    exec_n: u32,
    /// Outputs of `seq` received so far (a subscription can be cut off in
    /// the middle of a command's outputs).
    seen: u32,
    /// The first outputs of a command whose `last` output has not come
    /// yet: folded with the rest, so that the order journal's and the
    /// store's fold marks always fall between commands.
    held: Vec<Output>,
}

/// What the event thread needs besides its subscriptions.
struct EventContext {
    pipeline: Arc<Pipeline>,
    data_dir: PathBuf,
    engine_config: EngineConfig,
    paused: Arc<AtomicBool>,
    drop_outputs: Option<Arc<AtomicBool>>,
}

/// One thread for every session's engine outputs and for market data: it
/// wakes once for an engine batch, however many sessions and subscribers it
/// concerns.
fn event_loop(
    context: &EventContext,
    per: &mut [(Arc<PerSession>, SessionHandle)],
    feed: &mut MdFeed,
    sessions: &Sessions,
    stop: &AtomicBool,
    stats: &EngineAppStats,
) {
    let drop_outputs = &context.drop_outputs;
    let mut cursors: Vec<Cursor> = per
        .iter()
        .map(|_| Cursor {
            seq: 0,
            exec_n: 0,
            seen: 0,
            held: Vec::new(),
        })
        .collect();
    let mut alive: Vec<bool> = per.iter().map(|_| true).collect();
    let mut batch: Vec<Output> = Vec::with_capacity(256);
    let mut md_alive = true;
    while !stop.load(Ordering::Relaxed) && (md_alive || alive.iter().any(|a| *a)) {
        if context.paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut select = Select::new();
        let mut index = Vec::new();
        for (i, (_, handle)) in per.iter().enumerate() {
            if alive[i] {
                select.recv(&handle.receiver);
                index.push(i);
            }
        }
        if md_alive {
            select.recv(&feed.handle.receiver);
        }
        // Sleep until some session has output; then serve all of them.
        if select.ready_timeout(Duration::from_millis(100)).is_err() {
            continue;
        }
        for i in index {
            let mut cut = false;
            let (session, handle) = &per[i];
            loop {
                match handle.receiver.try_recv() {
                    Ok(o) => {
                        batch.push(o);
                        if batch.len() >= 4096 {
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        alive[i] = false;
                        if let Some(reason) = handle.cut_reason() {
                            crate::meters::surface().slow_consumers.inc();
                            tracing::error!(
                                gateway = "fix",
                                session = %format_args!("{}->{}", session.spec.id.target_comp_id, session.spec.id.sender_comp_id),
                                reason = %reason,
                                "engine session cut off by the engine; re-attaching"
                            );
                            cut = !stop.load(Ordering::Relaxed);
                        }
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                if drop_outputs
                    .as_ref()
                    .is_some_and(|d| d.load(Ordering::Relaxed))
                {
                    batch.clear();
                } else {
                    serve(session, &mut batch, &mut cursors[i], sessions, stats);
                }
            }
            if cut {
                // Held outputs were not folded: the rebuild delivers them.
                cursors[i].held.clear();
                // Everything the old subscription delivered is served.
                match reattach_session(context, session, &mut cursors[i], sessions, stats) {
                    Ok(handle) => {
                        per[i].1 = handle;
                        alive[i] = true;
                        stats.reattached.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(
                        gateway = "fix",
                        session = %format_args!("{}->{}", session.spec.id.target_comp_id, session.spec.id.sender_comp_id),
                        error = %e,
                        "could not re-attach the engine session; its reports resume after a restart"
                    ),
                }
            }
        }
        // Market data after the reports of the same batch.
        let mut md_cut = false;
        while md_alive && batch.len() < 8192 {
            match feed.handle.receiver.try_recv() {
                Ok(o) => batch.push(o),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    md_alive = false;
                    if let Some(reason) = feed.handle.cut_reason() {
                        crate::meters::surface().slow_consumers.inc();
                        tracing::error!(
                            gateway = "fix",
                            reason = %reason,
                            "market data session cut off by the engine; re-attaching"
                        );
                        md_cut = !stop.load(Ordering::Relaxed);
                    }
                }
            }
        }
        if !batch.is_empty() {
            md_step(feed, &mut batch, sessions, stats, false);
        }
        if md_cut {
            match reattach_market_data(context, feed) {
                Ok(()) => {
                    md_alive = true;
                    stats.reattached.fetch_add(1, Ordering::Relaxed);
                    // Every subscriber gets the difference to the rebuilt books.
                    md_step(feed, &mut batch, sessions, stats, true);
                }
                Err(e) => tracing::error!(
                    gateway = "fix",
                    error = %e,
                    "could not re-attach market data; it resumes after a restart"
                ),
            }
        }
    }
}

/// Subscribes again and waits until the journal holds every command before
/// the new subscription's first: returns that last command's sequence number.
fn subscribe_again(
    context: &EventContext,
    session: brokerx_engine::pipeline::SessionId,
    accounts: &[AccountId],
    everything: bool,
) -> Result<(SessionHandle, u64), String> {
    // Under the same engine session id: outputs of the session's commands
    // stay its own.
    let handle = context.pipeline.reconnect(session, accounts, everything);
    let until = handle
        .registered_after(Duration::from_secs(10))
        .ok_or("the engine did not register the new subscription (stopped?)")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while context.pipeline.stats().durable_seq.load(Ordering::Acquire) < until {
        if std::time::Instant::now() >= deadline {
            return Err(format!("the journal did not reach sequence {until}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((handle, until))
}

/// Re-attaches a session the engine cut off: a new subscription, and the
/// outputs between what the old one delivered and what the new one starts
/// with, from the journal, turned into reports as if they had arrived live.
fn reattach_session(
    context: &EventContext,
    session: &PerSession,
    cursor: &mut Cursor,
    sessions: &Sessions,
    stats: &EngineAppStats,
) -> Result<SessionHandle, String> {
    let account = session.spec.account;
    let (handle, until) = subscribe_again(context, session.submitter.session(), &[account], false)?;
    let mut replies = Vec::new();
    let mut journal = Vec::new();
    {
        let mut book = lock(&session.book);
        let folded = book.last_seq();
        // Replay from the newest snapshot before the first command needed,
        // or from the start.
        let first_needed = if cursor.seq != 0 {
            cursor.seq
        } else {
            folded + 1
        };
        let (mut engine, mut hasher) =
            engine_before(&context.data_dir, context.engine_config, first_needed);
        let mut count = 0;
        replay_journal(
            &context.data_dir,
            &mut engine,
            &mut hasher,
            &mut count,
            Some(until),
            |command, events| {
                let partial = command.seq == cursor.seq && cursor.seq != 0;
                if command.seq <= folded && !partial {
                    return;
                }
                let (origin, tag) = command_origin(&command.command);
                let own = origin == Some(account) && book.owns_tag(tag);
                if !partial {
                    cursor.seq = command.seq;
                    cursor.exec_n = 0;
                    cursor.seen = 0;
                }
                // The outputs the engine routes to this session, in order:
                // all of its own commands', and those naming its account.
                let mut routed = 0;
                for (k, event) in events.iter().enumerate() {
                    if !own && !accounts_of(event).contains(&Some(account)) {
                        continue;
                    }
                    routed += 1;
                    if partial && routed <= cursor.seen {
                        continue; // delivered before the cut
                    }
                    cursor.seen += 1;
                    let out = Output {
                        seq: command.seq,
                        timestamp_ns: command.timestamp_ns,
                        event: *event,
                        own,
                        last: k + 1 == events.len(),
                    };
                    let step = book.on_output(&out, &mut cursor.exec_n);
                    replies.extend(step.replies);
                    journal.extend(step.journal);
                }
            },
        )
        .map_err(|e| e.to_string())?;
        journal.push(format!("S {}", book.last_seq()));
    }
    let folded = lock(&session.book).last_seq();
    if !replies.is_empty() {
        stats
            .reports
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        sessions.send_folded(&session.spec.id, replies, Some(folded));
    }
    session.write_journal(&journal);
    tracing::warn!(
        gateway = "fix",
        session = %format_args!("{}->{}", session.spec.id.target_comp_id, session.spec.id.sender_comp_id),
        seq = until,
        "engine session re-attached; reports up to seq caught up from the journal"
    );
    Ok(handle)
}

/// Re-attaches the market data feed: a new broadcast subscription, and the
/// books rebuilt from the journal up to where it starts.
fn reattach_market_data(context: &EventContext, feed: &mut MdFeed) -> Result<(), String> {
    let (handle, until) = subscribe_again(context, feed.handle.id, &[], true)?;
    // From the newest snapshot at or before `until` (its books read from
    // the engine image), or from the start.
    let (mut engine, mut hasher) =
        engine_before(&context.data_dir, context.engine_config, until + 1);
    let mut book = MarketData::from_engine(&engine);
    let mut count = 0;
    replay_journal(
        &context.data_dir,
        &mut engine,
        &mut hasher,
        &mut count,
        Some(until),
        |_, events| book.apply_all(events),
    )
    .map_err(|e| e.to_string())?;
    let mut state = lock(&feed.md);
    book.keep_last_trades(&state.book);
    state.book = book;
    drop(state);
    feed.handle = handle;
    feed.history_until = until;
    tracing::warn!(
        gateway = "fix",
        seq = until,
        "market data re-attached; books rebuilt from the journal"
    );
    Ok(())
}

/// Turns one session's outputs into reports, journals and sends them.
/// The outputs of a last command whose `last` output has not come yet are
/// held until the rest of it comes.
fn serve(
    session: &PerSession,
    batch: &mut Vec<Output>,
    cursor: &mut Cursor,
    sessions: &Sessions,
    stats: &EngineAppStats,
) {
    if !cursor.held.is_empty() {
        let mut outputs = std::mem::take(&mut cursor.held);
        outputs.append(batch);
        *batch = outputs;
    }
    let Some(last) = batch.last().copied() else {
        return;
    };
    if !last.last {
        let from = batch.partition_point(|o| o.seq < last.seq);
        cursor.held = batch.split_off(from);
        if batch.is_empty() {
            return;
        }
    }
    let mut replies = Vec::new();
    let mut journal = Vec::new();
    {
        let mut book = lock(&session.book);
        for out in batch.drain(..) {
            if out.seq <= book.last_seq() && out.seq != cursor.seq {
                continue; // folded in at start-up
            }
            if out.seq != cursor.seq {
                cursor.seq = out.seq;
                cursor.exec_n = 0;
                cursor.seen = 0;
            }
            cursor.seen += 1;
            let step = book.on_output(&out, &mut cursor.exec_n);
            replies.extend(step.replies);
            journal.extend(step.journal);
        }
        journal.push(format!("S {}", book.last_seq()));
    }
    // The reports first (stored with their fold mark, then on the wire),
    // then the order journal: a crash between the two leaves the reports
    // in the store, and the start-up catch-up folds their outputs again
    // without sending them twice.
    if !replies.is_empty() {
        stats
            .reports
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        let folded = lock(&session.book).last_seq();
        sessions.send_folded(&session.spec.id, replies, Some(folded));
    }
    session.write_journal(&journal);
}

fn name_of(symbols: &[SymbolInfo], id: SymbolId) -> Vec<u8> {
    symbols
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.name.as_bytes().to_vec())
        .unwrap_or_default()
}

fn level_entry(entry_type: &[u8], level: &Level) -> [(u32, Vec<u8>); 4] {
    [
        (269, entry_type.to_vec()),
        (270, format_price(level.price).into_bytes()),
        (271, level.qty.to_string().into_bytes()),
        (346, level.orders.to_string().into_bytes()),
    ]
}

/// MarketDataSnapshotFullRefresh (W) of one subscription.
fn snapshot(sub: &Subscription, book: &MarketData, symbols: &[SymbolInfo]) -> OutboundMessage {
    let mut entries: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut n = 0;
    let (bids, asks) = &sub.view;
    if sub.bids {
        for l in bids {
            entries.extend(level_entry(b"0", l));
            n += 1;
        }
    }
    if sub.offers {
        for l in asks {
            entries.extend(level_entry(b"1", l));
            n += 1;
        }
    }
    if sub.trades {
        if let Some(t) = book.l1(sub.symbol).and_then(|l1| l1.last_trade) {
            entries.push((269, b"2".to_vec()));
            entries.push((270, format_price(t.price).into_bytes()));
            entries.push((271, t.qty.to_string().into_bytes()));
            n += 1;
        }
    }
    let mut body = vec![
        (262, sub.req_id.clone()),
        (55, name_of(symbols, sub.symbol)),
        (268, n.to_string().into_bytes()),
    ];
    body.extend(entries);
    OutboundMessage {
        msg_type: b"W".to_vec(),
        header: vec![],
        body,
    }
}

/// X entries that turn `old` into `new` for one side.
fn diff(
    entry_type: &[u8],
    symbol: &[u8],
    old: &[Level],
    new: &[Level],
    out: &mut Vec<(u32, Vec<u8>)>,
    n: &mut usize,
) {
    let mut push = |action: &[u8], l: &Level, out: &mut Vec<(u32, Vec<u8>)>| {
        out.push((279, action.to_vec()));
        out.push((269, entry_type.to_vec()));
        out.push((55, symbol.to_vec()));
        out.push((270, format_price(l.price).into_bytes()));
        out.push((271, l.qty.to_string().into_bytes()));
        out.push((346, l.orders.to_string().into_bytes()));
        *n += 1;
    };
    for l in old {
        if !new.iter().any(|x| x.price == l.price) {
            push(b"2", l, out);
        }
    }
    for l in new {
        match old.iter().find(|x| x.price == l.price) {
            None => push(b"0", l, out),
            Some(o) if o != l => push(b"1", l, out),
            Some(_) => {}
        }
    }
}

/// The market data side of the event thread: what the broadcast
/// subscription needs.
struct MdFeed {
    md: Arc<Mutex<MdState>>,
    handle: SessionHandle,
    history_until: u64,
    symbols: Vec<SymbolInfo>,
}

/// Applies one batch of broadcast outputs to the books and sends every
/// subscriber its W or X messages.
/// With `everything`, every subscriber is brought up to date with the
/// books, whatever the batch touched (after the books were rebuilt).
fn md_step(
    feed: &MdFeed,
    batch: &mut Vec<Output>,
    sessions: &Sessions,
    stats: &EngineAppStats,
    everything: bool,
) {
    let (md, history_until, symbols) = (&*feed.md, feed.history_until, &feed.symbols[..]);
    {
        let mut touched = BTreeSet::new();
        let mut trades: Vec<(SymbolId, u64, u64, Side)> = Vec::new();
        let mut outgoing: Vec<(SessionId, OutboundMessage)> = Vec::new();
        {
            let mut state = lock(md);
            for out in batch.drain(..) {
                if out.seq <= history_until {
                    continue;
                }
                state.book.apply(&out.event);
                match out.event {
                    Event::BookLevel { symbol, .. } => {
                        touched.insert(symbol);
                    }
                    Event::Trade {
                        symbol,
                        price,
                        qty,
                        aggressor,
                        ..
                    } => trades.push((symbol, price, qty, aggressor)),
                    _ => {}
                }
            }
            if state.subs.is_empty() {
                return;
            }
            if everything {
                touched.extend(state.subs.iter().map(|s| s.symbol));
            }
            let MdState { book, subs, .. } = &mut *state;
            for sub in subs.iter_mut() {
                let sub_trades: Vec<_> = if sub.trades {
                    trades.iter().filter(|t| t.0 == sub.symbol).collect()
                } else {
                    Vec::new()
                };
                if !touched.contains(&sub.symbol) && sub_trades.is_empty() {
                    continue;
                }
                let l2 = book.l2(sub.symbol, sub.depth);
                let new_view = (l2.bids, l2.asks);
                if !sub.incremental {
                    if new_view != sub.view || !sub_trades.is_empty() {
                        sub.view = new_view;
                        outgoing.push((sub.session.clone(), snapshot(sub, book, symbols)));
                    }
                    continue;
                }
                let name = name_of(symbols, sub.symbol);
                let mut entries = Vec::new();
                let mut n = 0;
                if sub.bids {
                    diff(b"0", &name, &sub.view.0, &new_view.0, &mut entries, &mut n);
                }
                if sub.offers {
                    diff(b"1", &name, &sub.view.1, &new_view.1, &mut entries, &mut n);
                }
                for (_, price, qty, _) in &sub_trades {
                    entries.push((279, b"0".to_vec()));
                    entries.push((269, b"2".to_vec()));
                    entries.push((55, name.clone()));
                    entries.push((270, format_price(*price).into_bytes()));
                    entries.push((271, qty.to_string().into_bytes()));
                    n += 1;
                }
                sub.view = new_view;
                if n == 0 {
                    continue;
                }
                let mut body = vec![(262, sub.req_id.clone()), (268, n.to_string().into_bytes())];
                body.extend(entries);
                outgoing.push((
                    sub.session.clone(),
                    OutboundMessage {
                        msg_type: b"X".to_vec(),
                        header: vec![],
                        body,
                    },
                ));
            }
        }
        stats
            .md_messages
            .fetch_add(outgoing.len() as u64, Ordering::Relaxed);
        for (session, m) in outgoing {
            sessions.send(&session, vec![m]);
        }
    }
}

/// The account and tag of an order command (what tells which session's
/// request it was), or `(None, 0)`.
fn command_origin(command: &Command) -> (Option<AccountId>, u64) {
    match *command {
        Command::NewOrder { account, tag, .. }
        | Command::Cancel { account, tag, .. }
        | Command::Replace { account, tag, .. }
        | Command::ReplaceTotal { account, tag, .. }
        | Command::MassCancelAccount { account, tag, .. } => (Some(account), tag),
        _ => (None, 0),
    }
}

/// A scratch engine to replay the journal on: the newest snapshot taken
/// before sequence number `before`, or an empty engine (replay from the
/// start).
fn engine_before(
    data_dir: &std::path::Path,
    config: EngineConfig,
    before: u64,
) -> (Engine, StableHasher) {
    // The newest snapshot before `before`, not just the newest: a snapshot
    // taken since would otherwise mean a replay from the journal's start.
    match before
        .checked_sub(1)
        .map(|at_most| load_snapshot_at_most(data_dir, at_most))
    {
        Some(Ok(Some((header, engine, _)))) => (engine, header.event_hasher),
        _ => (Engine::new(config), StableHasher::default()),
    }
}
