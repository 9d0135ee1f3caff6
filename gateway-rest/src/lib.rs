//! BrokerX REST/JSON and WebSocket gateway for retail clients (UC-01 to
//! UC-08) under `/api/v1`, with an Alpaca-compatible surface under `/v2`
//! and `/stream`. See README.md.
//!
//! Threads: a tokio runtime (axum) for HTTP and WebSocket; one SQLite
//! thread (`db`) that owns the gateway's own store; one bridge thread
//! (`bridge`) that drains the engine session's outputs into the read model.
//! Balances, reservations and orders are owned by the engine: deposits,
//! withdrawals and orders are journaled engine commands.

pub mod alpaca;
pub mod app;
pub mod auth;
pub mod bridge;
pub mod crypto;
pub mod db;
pub mod error;
pub mod mail;
pub mod money;
pub mod openapi;
pub mod projection;
pub mod ratelimit;
pub mod time;
pub mod trading;
pub mod wallet;
pub mod ws;

use brokerx_engine::pipeline::Pipeline;
use brokerx_engine::EngineConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// SMTP relay for verification mail (plain SMTP; a local relay or sink).
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub from: String,
}

/// The simulated payment provider's limits (minor units, 1/10000).
#[derive(Clone, Debug)]
pub struct WalletLimits {
    pub max_deposit: u64,
    pub max_withdrawal: u64,
    /// A deposit may not take available cash above this.
    pub max_wallet: u64,
}

impl Default for WalletLimits {
    fn default() -> Self {
        WalletLimits {
            max_deposit: 10_000 * money::SCALE,
            max_withdrawal: 10_000 * money::SCALE,
            max_wallet: 1_000_000 * money::SCALE,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RestConfig {
    /// The pipeline's data directory (its journal seeds the read model).
    pub data_dir: PathBuf,
    /// The gateway's SQLite file.
    pub db_path: PathBuf,
    pub engine_config: EngineConfig,
    /// Symbol id -> name.
    pub symbols: BTreeMap<u32, String>,
    /// Reference data of symbols added while the gateway runs (the
    /// engine's `SymbolAdded` event carries only the band).
    pub symbol_specs: BTreeMap<u32, brokerx_engine::SymbolSpec>,
    /// HMAC key for JWTs. Empty: a random key per process.
    pub jwt_secret: Vec<u8>,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub smtp: Option<SmtpConfig>,
    /// Serve the development mailbox at `/api/v1/dev/mailbox`.
    pub dev_mailbox: bool,
    /// Engine account of user `n` is `account_base + n`.
    pub account_base: u32,
    pub lockout_after: u32,
    pub lockout_secs: u64,
    pub resend_interval_secs: u64,
    /// Requests per second (and burst) per client IP.
    pub rate_per_ip: u32,
    /// Requests per second (and burst) per account.
    pub rate_per_account: u32,
    pub wallet: WalletLimits,
    pub max_body_bytes: usize,
    pub worker_threads: usize,
}

impl RestConfig {
    pub fn new(data_dir: PathBuf) -> RestConfig {
        RestConfig {
            db_path: data_dir.join("rest.sqlite"),
            data_dir,
            engine_config: EngineConfig::default(),
            symbols: BTreeMap::new(),
            symbol_specs: BTreeMap::new(),
            jwt_secret: Vec::new(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 86_400,
            smtp: None,
            dev_mailbox: true,
            account_base: 1_000,
            lockout_after: 5,
            lockout_secs: 900,
            resend_interval_secs: 30,
            rate_per_ip: 2_000,
            rate_per_account: 1_000,
            wallet: WalletLimits::default(),
            max_body_bytes: 64 * 1024,
            worker_threads: 2,
        }
    }
}

/// A running gateway.
pub struct RestServer {
    addr: SocketAddr,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    bridge: Arc<bridge::Bridge>,
}

impl RestServer {
    /// Connects to `pipeline` (before anything else submits, ideally; a
    /// gap is filled from the journal), opens the store and serves HTTP on
    /// `listener`.
    pub fn start(
        listener: std::net::TcpListener,
        pipeline: Arc<Pipeline>,
        mut config: RestConfig,
    ) -> Result<RestServer, String> {
        if config.jwt_secret.is_empty() {
            config.jwt_secret = crypto::random_bytes::<32>().to_vec();
        }
        if let Some(parent) = config.db_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let db = db::Db::open(&config.db_path)?;
        let bridge = bridge::Bridge::start(
            pipeline,
            config.data_dir.clone(),
            config.engine_config,
            config.symbols.clone(),
            config.symbol_specs.clone(),
            db.clone(),
        )?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("rest-http")
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let state = app::AppState::new(config, bridge.clone(), db)?;
        let router = app::router(state);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?
        };
        runtime.spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(RestServer {
            addr,
            runtime: Mutex::new(Some(runtime)),
            stop: Mutex::new(Some(stop_tx)),
            bridge,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bridge to the engine (tests stall it to provoke a cut-off).
    #[doc(hidden)]
    pub fn bridge(&self) -> &Arc<bridge::Bridge> {
        &self.bridge
    }

    /// Stops accepting, closes connections (within about a second), stops
    /// the bridge and flushes the store.
    pub fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
        self.bridge.shutdown();
        self.bridge.db.flush_blocking();
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
