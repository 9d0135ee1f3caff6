//! `brokerx serve`: recover, bootstrap a fresh store, open listeners, print
//! `brokerx ready`, and on SIGINT/SIGTERM drain, fsync and snapshot.

use crate::config::{Config, DEFAULT_CONFIG};
use crate::Flags;
use brokerx_engine::pipeline::{Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::EngineConfig;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit status when the journal fails: nothing after the failure was
/// acknowledged, and the process must not carry on.
const EXIT_JOURNAL_FAILED: i32 = 70;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Config file (or the embedded default), then environment, then flags.
fn load_config(flags: &Flags) -> Result<Config, String> {
    let path = flags
        .value("config")
        .map(str::to_string)
        .or_else(|| env("BROKERX_CONFIG"));
    let text = match &path {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config {path}: {e}"))?
        }
        None => DEFAULT_CONFIG.to_string(),
    };
    let mut config = Config::parse(&text)?;
    let server = &mut config.server;
    if let Some(dir) = flags
        .value("data-dir")
        .map(str::to_string)
        .or_else(|| env("BROKERX_DATA_DIR"))
    {
        server.data_dir = PathBuf::from(dir);
    }
    if let Some(durability) = flags
        .value("durability")
        .map(str::to_string)
        .or_else(|| env("BROKERX_DURABILITY"))
    {
        server.durability = durability;
    }
    if let Some(wait) = flags
        .value("wait")
        .map(str::to_string)
        .or_else(|| env("BROKERX_WAIT"))
    {
        server.wait = wait;
    }
    let ports = &mut config.ports;
    for (flag, variable, slot) in [
        ("test-port", "BROKERX_TEST_PORT", &mut ports.test),
        ("http-port", "BROKERX_HTTP_PORT", &mut ports.http),
        ("fix-port", "BROKERX_FIX_PORT", &mut ports.fix),
        ("ouch-port", "BROKERX_OUCH_PORT", &mut ports.ouch),
        ("itch-port", "BROKERX_ITCH_PORT", &mut ports.itch),
        ("mold-port", "BROKERX_MOLD_PORT", &mut ports.mold),
        ("metrics-port", "BROKERX_METRICS_PORT", &mut ports.metrics),
    ] {
        let text = flags
            .value(flag)
            .map(str::to_string)
            .or_else(|| env(variable));
        if let Some(text) = text {
            *slot = Some(
                text.parse()
                    .map_err(|_| format!("--{flag}/{variable}: bad port {text:?}"))?,
            );
        }
    }
    // Re-validate what the overrides changed.
    if !matches!(config.server.durability.as_str(), "fsync" | "none") {
        return Err(format!(
            "durability must be fsync or none, not {:?}",
            config.server.durability
        ));
    }
    if WaitStrategy::parse(&config.server.wait).is_none() {
        return Err(format!(
            "wait must be spin, yield, park or spin-park, not {:?}",
            config.server.wait
        ));
    }
    Ok(config)
}

/// A FIX acceptor profile (`[acceptor]` and `[[session]]` tables, as in
/// `config/quickfix-at.toml`) instead of a server config.
fn is_fix_profile(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "[acceptor]")
}

/// Conformance mode: the FIX session layer in front of the QuickFIX `at`
/// echo application (no engine behind it), for the acceptance suite.
fn serve_fix_profile(flags: &Flags, text: &str) -> Result<(), String> {
    use brokerx_gateway_fix::{AtEcho, FixConfig, FixServer};
    let config = FixConfig::from_toml_str(text).map_err(|e| format!("FIX profile: {e}"))?;
    let port: u16 = match flags
        .value("fix-port")
        .map(str::to_string)
        .or_else(|| env("BROKERX_FIX_PORT"))
    {
        Some(text) => text
            .parse()
            .map_err(|_| format!("--fix-port: bad port {text:?}"))?,
        None => 9878,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("FIX port 127.0.0.1:{port}: {e}"))?;
    let server = FixServer::start(listener, config, Arc::new(AtEcho::new()))
        .map_err(|e| format!("FIX acceptor: {e}"))?;
    crate::say!(
        "fix port listening on {} (FIX 4.4 conformance profile: QuickFIX `at` echo application)",
        server.local_addr()
    );
    crate::say!("brokerx ready");
    let _ = std::io::stdout().flush();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    crate::say!("brokerx stopped");
    Ok(())
}

pub fn serve(flags: &Flags) -> Result<(), String> {
    crate::logging::install()?;
    let result = serve_logged(flags);
    crate::logging::flush(Duration::from_secs(2));
    result
}

fn serve_logged(flags: &Flags) -> Result<(), String> {
    if let Some(path) = flags
        .value("config")
        .map(str::to_string)
        .or_else(|| env("BROKERX_CONFIG"))
    {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config {path}: {e}"))?;
        if is_fix_profile(&text) {
            return serve_fix_profile(flags, &text);
        }
    }
    let config = load_config(flags)?;
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let lock = std::fs::File::create(data_dir.join("LOCK"))
        .map_err(|e| format!("cannot create lock file: {e}"))?;
    lock.try_lock().map_err(|_| {
        format!(
            "{} is in use by another brokerx process",
            data_dir.display()
        )
    })?;

    let durable = config.server.durability == "fsync";
    if !durable {
        eprintln!("################################################################");
        eprintln!("# WARNING: --durability none: the journal is NOT fsynced.      #");
        eprintln!("# Acknowledged orders can be lost on a crash. Benchmarks only.  #");
        eprintln!("################################################################");
    }
    let mut pipeline_config = PipelineConfig::new(data_dir.clone());
    pipeline_config.durable = durable;
    pipeline_config.wait = WaitStrategy::parse(&config.server.wait).expect("validated");
    pipeline_config.snapshot_every = config.server.snapshot_every;
    pipeline_config.archive_after_snapshot = config.server.archive_segments;
    pipeline_config.queue_capacity = config.server.queue_capacity.max(1);
    // Fault injection for the end-to-end test of a failing disk.
    pipeline_config.fail_sync_at_batch =
        env("BROKERX_TEST_FAIL_SYNC_AT_BATCH").and_then(|v| v.parse().ok());

    let pipeline = Pipeline::start(pipeline_config, EngineConfig::default())
        .map_err(|e| format!("recovery failed: {e}"))?;
    report_recovery(&pipeline);
    let pipeline = Arc::new(pipeline);
    brokerx_metrics::engine_source(
        pipeline.clone(),
        config
            .symbols
            .iter()
            .map(|s| (s.id, s.name.clone()))
            .collect(),
    );
    brokerx_metrics::global().add_source("build", |out| {
        out.push(brokerx_metrics::family::gauge(
            "brokerx_build_info",
            "Always 1; the version in a label",
            &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        ));
    });
    // The feed connects before anything else submits, so it sees every
    // command (it replays the journal for what came before).
    let itch = if config.ports.itch.is_some() || config.ports.mold.is_some() {
        if config.server.archive_segments {
            return Err(
                "the ITCH feed replays the journal from sequence 1: archive_segments must be off"
                    .into(),
            );
        }
        let publisher = Arc::new(start_itch(&config, &pipeline, &bind_address(&config))?);
        itch_source(publisher.clone());
        Some(publisher)
    } else {
        None
    };
    // The FIX gateway also follows every event from the first command on
    // (market data), so it connects before the bootstrap too.
    let fix = match config.ports.fix {
        Some(port) if !config.fix_sessions.is_empty() => {
            Some(start_fix(&config, &pipeline, &bind_address(&config), port)?)
        }
        _ => None,
    };
    // The REST gateway's read model follows every event as well.
    let rest = match config.ports.http {
        Some(port) => Some(crate::rest::start_rest(
            &config,
            &pipeline,
            &bind_address(&config),
            port,
        )?),
        None => None,
    };
    if pipeline.recovered.last_seq == 0 {
        bootstrap(&pipeline, &config)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }

    let bind = config.server.bind.clone();
    if let Some(port) = config.ports.test {
        let listener = TcpListener::bind((bind.as_str(), port))
            .map_err(|e| format!("test port {bind}:{port}: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        crate::say!("test port listening on {address} (line protocol; see `brokerx help`)");
        let pipeline = pipeline.clone();
        std::thread::Builder::new()
            .name("test-port-accept".into())
            .spawn(move || crate::testport::serve(listener, pipeline))
            .map_err(|e| e.to_string())?;
    }
    let _ouch = match config.ports.ouch {
        Some(port) => Some(start_ouch(&config, &pipeline, &bind, port, durable)?),
        None => None,
    };
    // Every surface's series exist from the start (zero until used).
    for surface in ["fix", "ouch", "rest"] {
        brokerx_metrics::Surface::new(surface);
    }
    let metrics = match config.ports.metrics {
        Some(port) => {
            let listener = TcpListener::bind((bind.as_str(), port))
                .map_err(|e| format!("metrics port {bind}:{port}: {e}"))?;
            let server = brokerx_metrics::MetricsServer::start(listener)
                .map_err(|e| format!("metrics listener: {e}"))?;
            crate::say!(
                "metrics port listening on {} (Prometheus text format at GET /metrics)",
                server.local_addr()
            );
            Some(server)
        }
        None => None,
    };
    for account in &config.accounts {
        crate::say!(
            "demo account {} ({}), funded by the config",
            account.id,
            account.name
        );
    }
    crate::say!("brokerx ready");
    let _ = std::io::stdout().flush();
    tracing::info!(
        data_dir = %data_dir.display(),
        seq = pipeline.recovered.last_seq,
        durable,
        "brokerx ready"
    );

    while !stop.load(Ordering::Relaxed) && !pipeline.has_stopped() {
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!("brokerx stopping: draining, fsyncing and snapshotting");
    if let Some(metrics) = &metrics {
        metrics.shutdown();
    }
    if let Some(rest) = &rest {
        rest.shutdown();
    }
    if let Some(ouch) = &_ouch {
        ouch.shutdown();
    }
    if let Some((server, app)) = fix {
        server.stop();
        app.shutdown();
    }
    if let Some(itch) = &itch {
        itch.shutdown();
    }
    match pipeline.shutdown() {
        Some(Ok(finished)) => {
            crate::say!(
                "brokerx stopped: seq {} durable, {} events, event hash {:016x}, state hash {:016x}",
                finished.last_seq, finished.event_count, finished.event_hash, finished.state_hash
            );
            Ok(())
        }
        Some(Err(error)) => {
            tracing::error!(error = %error, "journal failure: stopping; nothing after it was acknowledged");
            crate::logging::flush(Duration::from_secs(2));
            eprintln!("brokerx: FATAL: journal failure: {error}. Stopping; nothing after it was acknowledged.");
            std::process::exit(EXIT_JOURNAL_FAILED);
        }
        None => Ok(()),
    }
}

fn report_recovery(pipeline: &Pipeline) {
    let recovered = &pipeline.recovered;
    match recovered.from_snapshot {
        Some(seq) => crate::say!(
            "recovered from snapshot at seq {seq}, then {} journaled commands",
            recovered.replayed
        ),
        None => crate::say!(
            "recovered {} journaled commands (no snapshot)",
            recovered.replayed
        ),
    }
    if let Some(torn) = &recovered.torn_tail {
        crate::say!("journal: truncated a torn last record: {torn}");
    }
    for skipped in &recovered.skipped_snapshots {
        crate::say!("snapshot skipped: {skipped}");
    }
    crate::say!("state at seq {}", recovered.last_seq);
}

/// A fresh store: journal the configured symbols and funded accounts.
fn bootstrap(pipeline: &Pipeline, config: &Config) -> Result<(), String> {
    let commands = config.bootstrap_commands();
    let (submitter, handle) = pipeline.connect(&[], false);
    for command in &commands {
        while submitter.submit(*command).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut done = 0;
    while done < commands.len() {
        let output = handle
            .receiver
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "bootstrap: no reply from the engine".to_string())?;
        if let brokerx_engine::Event::Rejected { code, .. } = output.event {
            return Err(format!(
                "bootstrap command at seq {} rejected: {}",
                output.seq,
                code.name()
            ));
        }
        if output.last {
            done += 1;
        }
    }
    pipeline.disconnect(handle.id);
    crate::say!(
        "bootstrapped {} symbols and {} accounts from the config",
        config.symbols.len(),
        config.accounts.len()
    );
    Ok(())
}

/// Starts the OUCH 4.2 gateway (SoupBinTCP) on `bind:port`.
fn start_ouch(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    bind: &str,
    port: u16,
    durable: bool,
) -> Result<brokerx_gateway_ouch::OuchServer, String> {
    use brokerx_gateway_ouch::{OuchConfig, OuchServer, OuchUser};
    let mut ouch = OuchConfig::new(config.server.data_dir.join("ouch"));
    // The journal is what makes an acknowledgement durable; the OUCH
    // message store is written before each send and each command's intent
    // before it reaches the engine, so after a kill -9 the stores are
    // completed from the journal at start. Fsyncing them too (intent before
    // submit, messages before send) also covers a power loss, at the cost
    // of two more fsyncs per order: BROKERX_OUCH_FSYNC=1 with
    // `--durability fsync`. See gateway-ouch/NOTES.md ("Durability").
    ouch.fsync = durable && env("BROKERX_OUCH_FSYNC").is_some_and(|v| v == "1" || v == "true");
    ouch.symbols = config
        .symbols
        .iter()
        .map(|s| (s.name.clone(), brokerx_engine::SymbolId(s.id)))
        .collect();
    ouch.users = config
        .ouch_users
        .iter()
        .map(|u| OuchUser {
            username: u.username.clone(),
            password: env(&format!(
                "BROKERX_OUCH_PASSWORD_{}",
                u.username.to_ascii_uppercase()
            ))
            .unwrap_or_else(|| u.password.clone()),
            account: brokerx_engine::AccountId(u.account),
            cancel_on_disconnect: u.cancel_on_disconnect,
        })
        .collect();
    let listener =
        TcpListener::bind((bind, port)).map_err(|e| format!("OUCH port {bind}:{port}: {e}"))?;
    let server = OuchServer::start(listener, pipeline.clone(), ouch)
        .map_err(|e| format!("OUCH gateway: {e}"))?;
    crate::say!(
        "ouch port listening on {} (OUCH 4.2 over SoupBinTCP 3.0)",
        server.local_addr()
    );
    let stats = server.stats();
    crate::say!(
        "ouch stores: {} outputs regenerated from the journal, {} unsequenced intents released, {} orphans",
        stats.outputs_regenerated, stats.intents_unsequenced, stats.regeneration_orphans
    );
    for user in &config.ouch_users {
        crate::say!(
            "ouch login {:?} / {:?} -> account {}",
            user.username,
            user.password,
            user.account
        );
    }
    Ok(server)
}

/// Starts the FIX 4.4 gateway on `bind:port`, with the configured sessions
/// bound to their accounts. Session stores and order journals live under
/// `data/fix/`.
fn start_fix(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    bind: &str,
    port: u16,
) -> Result<
    (
        brokerx_gateway_fix::FixServer,
        Arc<brokerx_gateway_fix::EngineApp>,
    ),
    String,
> {
    use brokerx_gateway_fix::{
        EngineApp, EngineAppConfig, EngineSession, FixConfig, FixServer, SessionConfig, Sessions,
        SymbolInfo,
    };
    let dir = config.server.data_dir.join("fix");
    let mut fix = FixConfig::conformance(Some(dir.clone()));
    fix.sessions.clear();
    let mut bound = Vec::new();
    for s in &config.fix_sessions {
        let mut session = SessionConfig::new(&s.sender_comp_id, &s.target_comp_id);
        session.reset_on_logon = s.reset_on_logon;
        session.reset_at_ms = s.reset_at_ms()?;
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            let password = env(&format!(
                "BROKERX_FIX_PASSWORD_{}",
                s.target_comp_id.to_ascii_uppercase()
            ))
            .unwrap_or_else(|| password.clone());
            session.credentials = Some((user.clone(), password));
        }
        bound.push(EngineSession {
            id: session.id.clone(),
            account: brokerx_engine::AccountId(s.account),
            cancel_on_disconnect: s.cancel_on_disconnect,
        });
        fix.sessions.push(session);
    }
    let sessions = Sessions::open(&fix).map_err(|e| format!("FIX session stores: {e}"))?;
    let app = EngineApp::start(
        pipeline.clone(),
        sessions.clone(),
        EngineAppConfig {
            sessions: bound,
            symbols: config
                .symbols
                .iter()
                .map(|s| SymbolInfo {
                    id: brokerx_engine::SymbolId(s.id),
                    name: s.name.clone(),
                    tick: s.tick,
                    lot: s.lot,
                })
                .collect(),
            dir: dir.join("orders"),
            data_dir: config.server.data_dir.clone(),
            engine_config: EngineConfig::default(),
            drop_outputs: None,
        },
    )
    .map_err(|e| format!("FIX gateway: {e}"))?;
    let listener =
        TcpListener::bind((bind, port)).map_err(|e| format!("FIX port {bind}:{port}: {e}"))?;
    let server = FixServer::start_with(listener, fix, sessions, app.clone())
        .map_err(|e| format!("FIX gateway: {e}"))?;
    crate::say!("fix port listening on {} (FIX 4.4)", server.local_addr());
    for s in &config.fix_sessions {
        crate::say!(
            "fix session {} -> {} (Username {:?} / Password {:?}) -> account {}",
            s.target_comp_id,
            s.sender_comp_id,
            s.username.as_deref().unwrap_or("-"),
            s.password.as_deref().unwrap_or("-"),
            s.account
        );
    }
    Ok((server, app))
}

/// The ITCH feed's golden signals, read from its counters at scrape time
/// (the latency histogram is copied under the publisher's own lock, never
/// the engine's).
fn itch_source(publisher: Arc<brokerx_marketdata::ItchPublisher>) {
    use brokerx_metrics::family;
    brokerx_metrics::global().add_source("itch", move |out| {
        let s = publisher.stats();
        let gateway = ("gateway", "itch");
        let typed = |kind| [gateway, ("type", kind)];
        let coded = |code| [gateway, ("code", code)];
        let (mold, soup, retrans) = (
            typed("mold_packet"),
            typed("soup_message"),
            typed("mold_retransmission"),
        );
        out.push(family::counter(
            "brokerx_gateway_messages_sent_total",
            "",
            &[
                (&mold[..], s.packets as f64),
                (&soup[..], s.soup_messages_sent as f64),
                (&retrans[..], s.retransmit_messages as f64),
            ],
        ));
        let (request, login) = (typed("retransmit_request"), typed("soup_login"));
        out.push(family::counter(
            "brokerx_gateway_messages_received_total",
            "",
            &[
                (&request[..], s.retransmit_requests as f64),
                (&login[..], s.soup_logins as f64),
            ],
        ));
        let (send, ignored, rejected, closed) = (
            coded("send_error"),
            coded("retransmit_ignored"),
            coded("login_rejected"),
            coded("closed_before_login"),
        );
        out.push(family::counter(
            "brokerx_gateway_errors_total",
            "",
            &[
                (&send[..], s.send_errors as f64),
                (&ignored[..], s.retransmit_ignored as f64),
                (&rejected[..], s.soup_logins_rejected as f64),
                (&closed[..], s.soup_closed_before_login as f64),
            ],
        ));
        out.push(family::counter(
            "brokerx_gateway_slow_consumer_disconnects_total",
            "",
            &[(&[gateway], s.soup_overrun as f64)],
        ));
        out.push(family::gauge(
            "brokerx_gateway_sessions",
            "",
            &[(&[gateway], s.soup_logged_in as f64)],
        ));
        let histogram = publisher.latency_histogram();
        out.push(family::histogram(
            "brokerx_gateway_latency_seconds",
            "",
            vec![brokerx_metrics::engine::hdr_series(&[gateway], &histogram)],
        ));
    });
}

fn bind_address(config: &Config) -> String {
    config.server.bind.clone()
}

/// Starts the ITCH 5.0 feed: MoldUDP64 to `bind:mold` (retransmission
/// requests on `mold + 1`, or a free port when `mold` is 0), SoupBinTCP on
/// `bind:itch`, and the day's file under `data/itch/`.
fn start_itch(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    bind: &str,
) -> Result<brokerx_marketdata::ItchPublisher, String> {
    use brokerx_marketdata::{ItchConfig, ItchPublisher, SymbolDirectory};
    use std::net::{SocketAddr, UdpSocket};
    let mut directory = SymbolDirectory::new();
    for symbol in &config.symbols {
        let lot = u32::try_from(symbol.lot)
            .map_err(|_| format!("symbol {}: lot too large for ITCH", symbol.name))?;
        directory
            .insert(brokerx_engine::SymbolId(symbol.id), &symbol.name, lot)
            .map_err(|e| format!("ITCH symbol directory: {e}"))?;
    }
    let mut itch = ItchConfig::new(directory, config.server.data_dir.clone());
    let itch_dir = config.server.data_dir.join("itch");
    std::fs::create_dir_all(&itch_dir).map_err(|e| format!("{}: {e}", itch_dir.display()))?;
    itch.file_path = Some(itch_dir.join("feed.itch"));
    if let Some(port) = config.ports.mold {
        let socket = UdpSocket::bind((bind, 0)).map_err(|e| format!("MoldUDP64 socket: {e}"))?;
        let destination: SocketAddr = format!("{bind}:{port}")
            .parse()
            .map_err(|e| format!("MoldUDP64 destination {bind}:{port}: {e}"))?;
        let retransmit_port = if port == 0 { 0 } else { port.saturating_add(1) };
        let retransmit = UdpSocket::bind((bind, retransmit_port))
            .map_err(|e| format!("MoldUDP64 retransmission port {bind}:{retransmit_port}: {e}"))?;
        itch.mold_socket = Some(socket);
        itch.mold_destination = destination;
        itch.mold_retransmit = Some(retransmit);
    }
    if let Some(port) = config.ports.itch {
        let listener =
            TcpListener::bind((bind, port)).map_err(|e| format!("ITCH port {bind}:{port}: {e}"))?;
        itch.soup_listener = Some(listener);
    }
    let destination = itch.mold_socket.as_ref().map(|_| itch.mold_destination);
    let publisher =
        ItchPublisher::start(pipeline.clone(), itch).map_err(|e| format!("ITCH feed: {e}"))?;
    if let Some(address) = publisher.soup_addr() {
        crate::say!("itch port listening on {address} (ITCH 5.0 over SoupBinTCP 3.0)");
    }
    if let (Some(destination), Some(source)) = (destination, publisher.mold_addr()) {
        crate::say!("mold feed sending to {destination} from {source} (ITCH 5.0 over MoldUDP64)");
    }
    if let Some(address) = publisher.retransmit_addr() {
        crate::say!("mold-retransmit port listening on {address} (MoldUDP64 requests)");
    }
    Ok(publisher)
}
