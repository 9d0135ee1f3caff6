//! The gateway's own SQLite store, owned by one dedicated thread: handlers
//! send it closures and await the answer, so blocking SQLite work never
//! runs on the async executor's threads.

use rusqlite::Connection;
use std::path::Path;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Db {
    jobs: crossbeam_channel::Sender<Job>,
}

/// The SQLite thread has gone (it only ends when every handle is dropped).
#[derive(Debug)]
pub struct DbGone;

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    account INTEGER UNIQUE,
    passcode_hash TEXT,
    passcode_expires INTEGER NOT NULL DEFAULT 0,
    passcode_attempts INTEGER NOT NULL DEFAULT 0,
    passcode_sent_at INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    mfa_secret TEXT,
    mfa_enabled INTEGER NOT NULL DEFAULT 0,
    mfa_last_step INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revoked_jti (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    delivery TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    account INTEGER NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    response TEXT,
    created_at INTEGER NOT NULL,
    tag INTEGER,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS client_orders (
    account INTEGER NOT NULL,
    client_order_id TEXT NOT NULL,
    order_id INTEGER NOT NULL,
    PRIMARY KEY (account, client_order_id)
);
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL,
    open INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_account ON orders (account, order_id);
CREATE TABLE IF NOT EXISTS activities (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    account INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (seq, idx, account)
);
CREATE INDEX IF NOT EXISTS activities_account ON activities (account, seq);
CREATE TABLE IF NOT EXISTS trades (
    match_id INTEGER PRIMARY KEY,
    symbol INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stream (
    account INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, seq)
);
CREATE TABLE IF NOT EXISTS cost_basis (
    account INTEGER NOT NULL,
    symbol INTEGER NOT NULL,
    qty INTEGER NOT NULL,
    cost TEXT NOT NULL,
    PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS money_moves (
    account INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (account, tag)
);
CREATE TABLE IF NOT EXISTS order_intents (
    tag INTEGER PRIMARY KEY,
    account INTEGER NOT NULL,
    client_order_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

impl Db {
    /// Opens (or creates) the database and starts its thread.
    pub fn open(path: &Path) -> Result<Db, String> {
        let mut connection =
            Connection::open(path).map_err(|e| format!("sqlite {}: {e}", path.display()))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| format!("sqlite schema: {e}"))?;
        // Columns added since a table was first created.
        let has_tag: bool = connection
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('idempotency') WHERE name = 'tag'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| format!("sqlite schema: {e}"))?
            > 0;
        if !has_tag {
            connection
                .execute_batch("ALTER TABLE idempotency ADD COLUMN tag INTEGER")
                .map_err(|e| format!("sqlite schema: {e}"))?;
        }
        let (jobs, receiver) = crossbeam_channel::unbounded::<Job>();
        std::thread::Builder::new()
            .name("rest-sqlite".into())
            .spawn(move || {
                for job in receiver {
                    job(&mut connection);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Db { jobs })
    }

    /// Runs `f` on the SQLite thread and waits (asynchronously) for it.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, DbGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| DbGone)?;
        rx.await.map_err(|_| DbGone)
    }

    /// Runs `f` on the SQLite thread and blocks this (non-async) thread.
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, DbGone> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| DbGone)?;
        rx.recv().map_err(|_| DbGone)
    }

    /// Queues `f` without waiting (projection writes, in order).
    pub fn send(&self, f: impl FnOnce(&mut Connection) + Send + 'static) {
        let _ = self.jobs.send(Box::new(f));
    }

    /// Waits until every job queued before this call has run.
    pub fn flush_blocking(&self) {
        let _ = self.call_blocking(|_| ());
    }
}
