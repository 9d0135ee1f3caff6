//! Starts the REST/JSON + WebSocket gateway (`gateway-rest`) for `serve`.

use crate::config::Config;
use brokerx_engine::pipeline::Pipeline;
use brokerx_gateway_rest::{RestConfig, RestServer, SmtpConfig};
use std::net::TcpListener;
use std::sync::Arc;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The JWT signing key: `BROKERX_JWT_SECRET`, else a random key kept in
/// `<data>/rest/jwt.key` (created on first start, mode 0600), so tokens
/// survive a restart and no secret lives in the repo.
fn jwt_secret(dir: &std::path::Path) -> Result<Vec<u8>, String> {
    if let Some(secret) = env("BROKERX_JWT_SECRET") {
        return Ok(secret.into_bytes());
    }
    let path = dir.join("jwt.key");
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() >= 32 {
            return Ok(bytes);
        }
    }
    let key = brokerx_gateway_rest::crypto::random_bytes::<32>().to_vec();
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(&key)
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(key)
}

pub fn start_rest(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    bind: &str,
    port: u16,
) -> Result<RestServer, String> {
    let dir = config.server.data_dir.join("rest");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut rest = RestConfig::new(config.server.data_dir.clone());
    rest.db_path = dir.join("rest.sqlite");
    rest.jwt_secret = jwt_secret(&dir)?;
    for symbol in &config.symbols {
        rest.symbols.insert(symbol.id, symbol.name.clone());
        rest.symbol_specs.insert(
            symbol.id,
            brokerx_engine::SymbolSpec {
                tick_size: symbol.tick,
                lot_size: symbol.lot,
                reference_price: symbol.reference,
                band_bps: symbol.band_bps,
                maker_fee_per_share: symbol.maker_fee,
                taker_fee_per_share: symbol.taker_fee,
            },
        );
    }
    // Engine accounts of REST clients start above every configured one.
    let highest = config.accounts.iter().map(|a| a.id).max().unwrap_or(0);
    rest.account_base = rest.account_base.max(highest.saturating_add(1));
    if let Some(host) = env("BROKERX_SMTP_HOST") {
        let port = match env("BROKERX_SMTP_PORT") {
            Some(text) => text
                .parse()
                .map_err(|_| format!("BROKERX_SMTP_PORT: bad port {text:?}"))?,
            None => 25,
        };
        rest.smtp = Some(SmtpConfig {
            host,
            port,
            from: env("BROKERX_SMTP_FROM").unwrap_or_else(|| "BrokerX <no-reply@localhost>".into()),
        });
        rest.dev_mailbox = false;
    }
    let rest_dev_mailbox = rest.dev_mailbox;
    let listener =
        TcpListener::bind((bind, port)).map_err(|e| format!("HTTP port {bind}:{port}: {e}"))?;
    let server = RestServer::start(listener, pipeline.clone(), rest)
        .map_err(|e| format!("REST gateway: {e}"))?;
    crate::say!(
        "http port listening on {} (REST/JSON /api/v1, Alpaca-compatible /v2 and /stream, WebSocket /api/v1/ws)",
        server.local_addr()
    );
    if rest_dev_mailbox {
        crate::say!(
            "http: sign up with POST /api/v1/auth/register; passcodes land in the dev mailbox (GET /api/v1/dev/mailbox?email=...); API docs at /api/v1/docs/"
        );
    }
    Ok(server)
}
