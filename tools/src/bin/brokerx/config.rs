//! Server configuration: an embedded default (a small demo universe), an
//! optional TOML file that replaces it, then environment variables, then
//! command-line flags, in that order of precedence (last wins).

use brokerx_engine::{AccountId, Command, Limits, SelfTradePrevention, SymbolId, SymbolSpec};
use serde::Deserialize;
use std::path::PathBuf;

/// The configuration `brokerx serve` runs with when given none.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    #[serde(default)]
    pub ports: Ports,
    #[serde(default)]
    pub symbols: Vec<SymbolConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// OUCH 4.2 logins, each bound to a risk account.
    #[serde(default)]
    pub ouch_users: Vec<OuchUserConfig>,
    /// FIX 4.4 sessions, each bound to a risk account.
    #[serde(default)]
    pub fix_sessions: Vec<FixSessionConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixSessionConfig {
    /// Our CompID (the counterparty's TargetCompID).
    pub sender_comp_id: String,
    /// The counterparty's SenderCompID.
    pub target_comp_id: String,
    /// Logon Username (553) and Password (554). Demo values only: real
    /// deployments put the password in `BROKERX_FIX_PASSWORD_<TARGET>`.
    pub username: Option<String>,
    pub password: Option<String>,
    pub account: u32,
    #[serde(default)]
    pub cancel_on_disconnect: bool,
    /// Reset both sequence numbers at every Logon (default: they persist).
    #[serde(default)]
    pub reset_on_logon: bool,
    /// Daily session reset, "HH:MM" UTC.
    pub reset_time: Option<String>,
}

impl FixSessionConfig {
    /// `reset_time` in ms after midnight.
    pub fn reset_at_ms(&self) -> Result<Option<i64>, String> {
        let Some(text) = &self.reset_time else {
            return Ok(None);
        };
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h * 60 + m) * 60_000)
        });
        parsed.map(Some).ok_or_else(|| {
            format!(
                "config: FIX session {:?}: reset_time must be \"HH:MM\" (UTC), not {text:?}",
                self.target_comp_id
            )
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuchUserConfig {
    /// SoupBinTCP username: 1 to 6 ASCII characters.
    pub username: String,
    /// Up to 10 ASCII characters. Demo values only: real deployments put
    /// secrets in the environment (`BROKERX_OUCH_PASSWORD_<USERNAME>`).
    pub password: String,
    pub account: u32,
    #[serde(default)]
    pub cancel_on_disconnect: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub data_dir: PathBuf,
    #[serde(default = "default_durability")]
    pub durability: String,
    #[serde(default = "default_wait")]
    pub wait: String,
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default)]
    pub snapshot_every: u64,
    /// Move journal segments covered by a snapshot to journal/archive/.
    #[serde(default)]
    pub archive_segments: bool,
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
}

fn default_durability() -> String {
    "fsync".into()
}
fn default_wait() -> String {
    "park".into()
}
fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_queue() -> usize {
    1 << 16
}

/// Listener ports; 0 picks a free port. `test` is the line-based test port
/// (a stand-in until the FIX and OUCH gateways exist); `None` disables it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub fix: Option<u16>,
    pub ouch: Option<u16>,
    pub itch: Option<u16>,
    pub mold: Option<u16>,
    pub test: Option<u16>,
    /// Prometheus `GET /metrics` (plain HTTP).
    pub metrics: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolConfig {
    pub id: u32,
    pub name: String,
    /// Prices are minor units of 1/10000 of the currency (4 implied
    /// decimals, as in ITCH and OUCH).
    pub tick: u64,
    pub lot: u64,
    pub reference: u64,
    pub band_bps: u32,
    #[serde(default)]
    pub maker_fee: u64,
    #[serde(default)]
    pub taker_fee: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: u32,
    pub name: String,
    #[serde(default)]
    pub cash: u64,
    /// Shares per symbol name.
    #[serde(default)]
    pub shares: std::collections::BTreeMap<String, u64>,
    pub max_order_qty: Option<u64>,
    pub max_order_notional: Option<u64>,
    pub max_open_orders: Option<u32>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| format!("config: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if !matches!(self.server.durability.as_str(), "fsync" | "none") {
            return Err(format!(
                "config: durability must be \"fsync\" or \"none\", not {:?}",
                self.server.durability
            ));
        }
        if brokerx_engine::pipeline::WaitStrategy::parse(&self.server.wait).is_none() {
            return Err(format!(
                "config: wait must be spin, yield, park or spin-park, not {:?}",
                self.server.wait
            ));
        }
        for user in &self.ouch_users {
            if !self.accounts.iter().any(|a| a.id == user.account) {
                return Err(format!(
                    "config: OUCH user {:?} names unknown account {}",
                    user.username, user.account
                ));
            }
        }
        for (i, session) in self.fix_sessions.iter().enumerate() {
            if !self.accounts.iter().any(|a| a.id == session.account) {
                return Err(format!(
                    "config: FIX session {:?} names unknown account {}",
                    session.target_comp_id, session.account
                ));
            }
            let comp_ok =
                |c: &str| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic());
            if !comp_ok(&session.sender_comp_id) || !comp_ok(&session.target_comp_id) {
                return Err(format!(
                    "config: FIX session {i}: CompIDs must be 1 to 64 printable ASCII characters"
                ));
            }
            if session.username.is_some() != session.password.is_some() {
                return Err(format!(
                    "config: FIX session {:?}: give both username and password, or neither",
                    session.target_comp_id
                ));
            }
            session.reset_at_ms()?;
            if self.fix_sessions[..i].iter().any(|o| {
                o.sender_comp_id == session.sender_comp_id
                    && o.target_comp_id == session.target_comp_id
            }) {
                return Err(format!(
                    "config: FIX session {:?} -> {:?} listed twice",
                    session.target_comp_id, session.sender_comp_id
                ));
            }
        }
        for symbol in &self.symbols {
            if symbol.name.is_empty() || symbol.name.len() > 8 || !symbol.name.is_ascii() {
                return Err(format!("config: symbol name {:?} must be 1 to 8 ASCII characters (OUCH and ITCH stock field)", symbol.name));
            }
        }
        for account in &self.accounts {
            for symbol in account.shares.keys() {
                if self.symbol_id(symbol).is_none() {
                    return Err(format!(
                        "config: account {} holds unknown symbol {symbol:?}",
                        account.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn symbol_id(&self, name: &str) -> Option<SymbolId> {
        self.symbols
            .iter()
            .find(|s| s.name == name)
            .map(|s| SymbolId(s.id))
    }

    /// The journaled commands that set up a fresh store: symbols, then
    /// accounts with their limits, cash and shares.
    pub fn bootstrap_commands(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        for symbol in &self.symbols {
            commands.push(Command::AddSymbol {
                symbol: SymbolId(symbol.id),
                spec: SymbolSpec {
                    tick_size: symbol.tick,
                    lot_size: symbol.lot,
                    reference_price: symbol.reference,
                    band_bps: symbol.band_bps,
                    maker_fee_per_share: symbol.maker_fee,
                    taker_fee_per_share: symbol.taker_fee,
                },
            });
        }
        for account in &self.accounts {
            let id = AccountId(account.id);
            let limits = Limits {
                max_order_qty: account.max_order_qty.unwrap_or(u64::MAX),
                max_order_notional: account.max_order_notional.unwrap_or(u64::MAX),
                max_open_orders: account.max_open_orders.unwrap_or(u32::MAX),
            };
            commands.push(Command::CreateAccount {
                account: id,
                limits,
                self_trade: SelfTradePrevention::CancelNewest,
            });
            if account.cash > 0 {
                commands.push(Command::DepositCash {
                    account: id,
                    amount: account.cash,
                    tag: 0,
                });
            }
            for (symbol, qty) in &account.shares {
                let symbol = self.symbol_id(symbol).expect("validated");
                commands.push(Command::DepositShares {
                    account: id,
                    symbol,
                    qty: *qty,
                    tag: 0,
                });
            }
        }
        commands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_parses_and_bootstraps() {
        let config = Config::parse(DEFAULT_CONFIG).unwrap();
        assert!(config.symbols.len() >= 3);
        assert!(config.bootstrap_commands().len() > config.symbols.len());
    }

    #[test]
    fn bad_configs_give_clear_errors() {
        let cases = [
            ("", "missing field `server`"),
            ("[server]\ndata_dir = 1", "invalid type"),
            ("[server]\ndata_dir = \"d\"\ndurability = \"sometimes\"", "durability must be"),
            ("[server]\ndata_dir = \"d\"\nwait = \"nap\"", "wait must be"),
            ("[server]\ndata_dir = \"d\"\ncolour = \"red\"", "unknown field"),
            ("[server]\ndata_dir = \"d\"\n[[accounts]]\nid = 1\nname = \"a\"\nshares = { XYZ = 1 }", "unknown symbol"),
            ("[server]\ndata_dir = \"d\"\n[[ouch_users]]\nusername = \"u\"\npassword = \"p\"\naccount = 9", "unknown account"),
            ("[server]\ndata_dir = \"d\"\n[[fix_sessions]]\nsender_comp_id = \"B\"\ntarget_comp_id = \"C\"\naccount = 9", "unknown account"),
            ("[server]\ndata_dir = \"d\"\n[[accounts]]\nid = 1\nname = \"a\"\n[[fix_sessions]]\nsender_comp_id = \"B\"\ntarget_comp_id = \"C\"\naccount = 1\nreset_time = \"25:00\"", "HH:MM"),
            ("[server]\ndata_dir = \"d\"\n[[accounts]]\nid = 1\nname = \"a\"\n[[fix_sessions]]\nsender_comp_id = \"B\"\ntarget_comp_id = \"C\"\naccount = 1\nusername = \"u\"", "both username and password"),
            ("[server]\ndata_dir = \"d\"\n[[accounts]]\nid = 1\nname = \"a\"\n[[fix_sessions]]\nsender_comp_id = \"B C\"\ntarget_comp_id = \"C\"\naccount = 1", "printable ASCII"),
            ("[server]\ndata_dir = \"d\"\n[[symbols]]\nid = 0\nname = \"TOOLONGNAME\"\ntick = 1\nlot = 1\nreference = 1\nband_bps = 1", "1 to 8 ASCII"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
