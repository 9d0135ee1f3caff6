//! `brokerx`: the server and its operator commands.
//!
//! ```text
//! brokerx serve [--config FILE] [--data-dir DIR] [--test-port N] [--durability fsync|none]
//!               [--http-port N] [--fix-port N] [--ouch-port N] [--itch-port N] [--mold-port N]
//!               [--metrics-port N]
//! brokerx replay --data-dir DIR [--verify] [--from-snapshot]
//! brokerx journal dump --data-dir DIR [--from SEQ] [--to SEQ]
//! brokerx snapshot --data-dir DIR
//! brokerx admin [--addr HOST:PORT] [--config FILE] ACTION ARGS...
//! ```

/// `println!` that ignores a closed stdout: the server's status lines must
/// never turn a lost terminal or pipe into a panic (e.g. mid-shutdown).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

mod admin;
mod config;
mod logging;
mod offline;
mod rest;
mod serve;
mod testport;

use std::collections::BTreeMap;
use std::process::ExitCode;

/// Parsed `--flag value` pairs and bare `--switch`es.
pub struct Flags {
    values: BTreeMap<String, String>,
    switches: Vec<String>,
}

const SWITCHES: &[&str] = &["verify", "from-snapshot", "help"];

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut values = BTreeMap::new();
        let mut switches = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            if SWITCHES.contains(&name) {
                switches.push(name.to_string());
                continue;
            }
            let value = iter
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            values.insert(name.to_string(), value.clone());
        }
        Ok(Flags { values, switches })
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.value(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| format!("--{name}: not a number: {text:?}"))
            })
            .transpose()
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        for name in self.values.keys().chain(self.switches.iter()) {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(())
    }
}

const USAGE: &str = "usage:
  brokerx serve [--config FILE] [--data-dir DIR] [--test-port N] [--durability fsync|none]
                [--wait spin|yield|park] [--http-port N] [--fix-port N] [--ouch-port N]
                [--itch-port N] [--mold-port N] [--metrics-port N]
  brokerx replay --data-dir DIR [--verify] [--from-snapshot]
  brokerx journal dump --data-dir DIR [--from SEQ] [--to SEQ]
  brokerx snapshot --data-dir DIR
  brokerx admin [--addr HOST:PORT] [--config FILE] ACTION ARGS...
    (actions: fund ACCOUNT AMOUNT, debit ACCOUNT AMOUNT, halt SYMBOL, resume SYMBOL,
     kill ACCOUNT, reinstate ACCOUNT, mass-cancel ACCOUNT [SYMBOL], end-of-day)";

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = match args {
        [first, second, rest @ ..] if first == "journal" && second == "dump" => {
            ("journal dump", rest)
        }
        [first, rest @ ..] => (first.as_str(), rest),
        [] => return Err(USAGE.to_string()),
    };
    let flags = Flags::parse(rest)?;
    match command {
        "serve" => {
            flags.reject_unknown(&[
                "config",
                "data-dir",
                "test-port",
                "durability",
                "wait",
                "http-port",
                "fix-port",
                "ouch-port",
                "itch-port",
                "mold-port",
                "metrics-port",
            ])?;
            serve::serve(&flags)
        }
        "replay" => {
            flags.reject_unknown(&["data-dir", "verify", "from-snapshot"])?;
            offline::replay(&flags)
        }
        "journal dump" => {
            flags.reject_unknown(&["data-dir", "from", "to"])?;
            offline::dump(&flags)
        }
        "snapshot" => {
            flags.reject_unknown(&["data-dir"])?;
            offline::snapshot(&flags)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// `brokerx admin`: options first, then the action and its arguments.
fn run_admin(args: &[String]) -> ExitCode {
    let mut split = 0;
    while split < args.len() && args[split].starts_with("--") {
        split += 2;
    }
    let split = split.min(args.len());
    let outcome = Flags::parse(&args[..split])
        .and_then(|flags| flags.reject_unknown(&["addr", "config"]).map(|()| flags))
        .map_err(|e| admin::AdminError::Usage(format!("{e}\n{}", admin::USAGE)))
        .and_then(|flags| admin::admin(&flags, &args[split..]));
    match outcome {
        Ok(admin::Outcome::Accepted) => ExitCode::SUCCESS,
        Ok(admin::Outcome::Rejected) => {
            eprintln!("brokerx admin: the engine rejected the action");
            ExitCode::from(1)
        }
        Err(admin::AdminError::Usage(message)) => {
            eprintln!("brokerx admin: {message}");
            ExitCode::from(2)
        }
        Err(admin::AdminError::Connection(message)) => {
            eprintln!("brokerx admin: {message}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("admin") {
        return run_admin(&args[1..]);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("brokerx: {message}");
            ExitCode::from(2)
        }
    }
}
