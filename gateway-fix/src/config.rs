//! `FixConfig` from a small TOML subset (no external crates): `[acceptor]` and
//! `[[session]]` tables whose values are strings, integers or booleans, `#` comments.
//! Unknown tables or keys are errors, so typos do not pass silently.
//!
//! ```toml
//! [acceptor]
//! store_dir = "data/fix"       # omit to keep stores in memory
//! max_message_size = 65536
//! poll_interval_ms = 20
//! logout_timeout_ms = 2000
//!
//! [[session]]
//! sender_comp_id = "ISLD"      # ours
//! target_comp_id = "TW44"      # theirs
//! begin_string = "FIX.4.4"
//! reset_on_logon = true
//! max_latency_s = 120
//! ```

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::server::FixConfig;
use crate::session::SessionConfig;

/// A configuration error with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line (0 for whole-file problems).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
}

fn parse_value(raw: &str) -> Option<Value> {
    if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return (!s.contains('"') && !s.contains('\\')).then(|| Value::Str(s.to_string()));
    }
    match raw {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => raw.replace('_', "").parse().ok().map(Value::Int),
    }
}

fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

impl FixConfig {
    /// Parse the TOML subset described in the module docs.
    pub fn from_toml_str(text: &str) -> Result<FixConfig, ConfigError> {
        let mut cfg = FixConfig::conformance(None);
        cfg.sessions.clear();
        let mut section = "";
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let err = |m: String| ConfigError {
                line: n,
                message: m,
            };
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            if line == "[acceptor]" {
                section = "acceptor";
                continue;
            }
            if line == "[[session]]" {
                section = "session";
                cfg.sessions.push(SessionConfig::new("", ""));
                continue;
            }
            if line.starts_with('[') {
                return Err(err(format!("unknown table {line}")));
            }
            let (key, raw) = line
                .split_once('=')
                .ok_or_else(|| err("expected key = value".into()))?;
            let (key, raw) = (key.trim(), raw.trim());
            let value = parse_value(raw).ok_or_else(|| err(format!("bad value {raw}")))?;
            let wrong = || err(format!("wrong type for {key}"));
            match (section, key, value) {
                ("acceptor", "store_dir", Value::Str(s)) => cfg.store_dir = Some(s.into()),
                ("acceptor", "max_message_size", Value::Int(v)) => {
                    cfg.max_message_size = v as usize
                }
                ("acceptor", "poll_interval_ms", Value::Int(v)) => {
                    cfg.poll_interval = Duration::from_millis(v.max(1))
                }
                ("acceptor", "logout_timeout_ms", Value::Int(v)) => {
                    cfg.logout_timeout = Duration::from_millis(v)
                }
                ("session", k, v) => {
                    let s = cfg.sessions.last_mut().ok_or_else(wrong)?;
                    match (k, v) {
                        ("sender_comp_id", Value::Str(v)) => s.id.sender_comp_id = v,
                        ("target_comp_id", Value::Str(v)) => s.id.target_comp_id = v,
                        ("begin_string", Value::Str(v)) => s.begin_string = v,
                        ("reset_on_logon", Value::Bool(v)) => s.reset_on_logon = v,
                        ("max_latency_s", Value::Int(v)) => {
                            s.max_latency_ms = (v as i64).saturating_mul(1000)
                        }
                        (
                            "sender_comp_id" | "target_comp_id" | "begin_string" | "reset_on_logon"
                            | "max_latency_s",
                            _,
                        ) => return Err(wrong()),
                        _ => return Err(err(format!("unknown key {key} in [[session]]"))),
                    }
                }
                (
                    "acceptor",
                    "store_dir" | "max_message_size" | "poll_interval_ms" | "logout_timeout_ms",
                    _,
                ) => return Err(wrong()),
                ("acceptor", _, _) => return Err(err(format!("unknown key {key} in [acceptor]"))),
                _ => return Err(err(format!("key {key} outside a table"))),
            }
        }
        for s in &cfg.sessions {
            if s.id.sender_comp_id.is_empty() || s.id.target_comp_id.is_empty() {
                return Err(ConfigError {
                    line: 0,
                    message: "every [[session]] needs sender_comp_id and target_comp_id".into(),
                });
            }
        }
        if cfg.sessions.is_empty() {
            return Err(ConfigError {
                line: 0,
                message: "no [[session]]".into(),
            });
        }
        Ok(cfg)
    }

    /// Read and parse a config file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<FixConfig, ConfigError> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| ConfigError {
            line: 0,
            message: format!("{}: {e}", path.as_ref().display()),
        })?;
        Self::from_toml_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_quickfix_at_config_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/quickfix-at.toml");
        let cfg = FixConfig::from_toml_file(path).unwrap();
        assert_eq!(cfg.sessions.len(), 1);
        let s = &cfg.sessions[0];
        assert_eq!(
            (s.id.sender_comp_id.as_str(), s.id.target_comp_id.as_str()),
            ("ISLD", "TW44")
        );
        assert!(s.reset_on_logon);
        assert_eq!(s.max_latency_ms, 120_000);
        assert_eq!(s.begin_string, "FIX.4.4");
    }

    #[test]
    fn errors_name_the_line() {
        let e = FixConfig::from_toml_str("[acceptor]\nstore_dirr = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = FixConfig::from_toml_str("[[session]]\nsender_comp_id = 5\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(FixConfig::from_toml_str("[acceptor]\n").is_err());
        let ok = FixConfig::from_toml_str("[[session]] # a\nsender_comp_id = \"A#B\"\ntarget_comp_id = \"C\"\nreset_on_logon = false\n").unwrap();
        assert_eq!(ok.sessions[0].id.sender_comp_id, "A#B");
        assert!(!ok.sessions[0].reset_on_logon);
    }
}
