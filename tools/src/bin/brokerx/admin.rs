//! `brokerx admin`: operator actions against a running server. Each action
//! is one journaled engine command, sent over the server's line-based
//! operator port (`[ports] test`, loopback only), and answered only once
//! the journal holds it.
//!
//! ```text
//! brokerx admin [--addr HOST:PORT] [--config FILE] ACTION ARGS...
//!   fund ACCOUNT AMOUNT          credit cash (AMOUNT in currency units, up to 4 decimals)
//!   debit ACCOUNT AMOUNT         debit available cash
//!   halt SYMBOL | resume SYMBOL  stop or restart trading in a symbol (name or id)
//!   kill ACCOUNT                 kill switch: suspend the account, cancel its resting orders
//!   reinstate ACCOUNT            lift the kill switch
//!   mass-cancel ACCOUNT [SYMBOL] cancel the account's resting orders (in one symbol)
//!   end-of-day                   expire every DAY order
//! ```
//!
//! Prints the command's events, one per line. Exit status: 0 when the
//! engine accepted the action, 1 when it rejected it (the reject code is
//! printed), 2 for a usage error, 3 when the server cannot be reached.

use crate::config::{Config, DEFAULT_CONFIG};
use crate::Flags;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What became of an action.
pub enum Outcome {
    Accepted,
    Rejected,
}

/// A failure before the engine answered: usage (exit 2) or connection (3).
pub enum AdminError {
    Usage(String),
    Connection(String),
}

pub const USAGE: &str = "brokerx admin [--addr HOST:PORT] [--config FILE] ACTION ARGS...
  fund ACCOUNT AMOUNT | debit ACCOUNT AMOUNT | halt SYMBOL | resume SYMBOL
  kill ACCOUNT | reinstate ACCOUNT | mass-cancel ACCOUNT [SYMBOL] | end-of-day";

/// An amount in currency units ("2500", "0.75", "10.1234") as minor units
/// of 1/10000.
pub fn parse_amount(text: &str) -> Result<u64, String> {
    let bad = || format!("bad amount {text:?}: a positive number with at most 4 decimals");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 4
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut minor: u64 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        minor += u64::from(digit - b'0') * 10u64.pow(3 - i as u32);
    }
    let amount = whole
        .checked_mul(10_000)
        .and_then(|w| w.checked_add(minor))
        .ok_or_else(bad)?;
    if amount == 0 {
        return Err(bad());
    }
    Ok(amount)
}

fn account(text: Option<&String>) -> Result<u32, String> {
    let text = text.ok_or("missing ACCOUNT")?;
    text.parse()
        .map_err(|_| format!("bad account {text:?}: a number"))
}

/// A symbol by id or by its name in the config.
fn symbol(text: Option<&String>, config: &Config) -> Result<u32, String> {
    let text = text.ok_or("missing SYMBOL")?;
    if let Ok(id) = text.parse::<u32>() {
        return Ok(id);
    }
    config
        .symbols
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(text))
        .map(|s| s.id)
        .ok_or_else(|| format!("unknown symbol {text:?} (not in the config; give its id)"))
}

/// The operator-port line for an action.
pub fn command_line(words: &[String], config: &Config) -> Result<String, String> {
    let (action, args) = words.split_first().ok_or("missing ACTION")?;
    let expect = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(format!(
                "{action}: expected {} argument(s), got {}",
                if n.start() == n.end() {
                    n.start().to_string()
                } else {
                    format!("{} to {}", n.start(), n.end())
                },
                args.len()
            ))
        }
    };
    let line = match action.as_str() {
        "fund" | "debit" => {
            expect(2..=2)?;
            let verb = if action == "fund" {
                "DEPOSIT"
            } else {
                "WITHDRAW"
            };
            format!(
                "{verb} {} {}",
                account(args.first())?,
                parse_amount(&args[1])?
            )
        }
        "halt" | "resume" => {
            expect(1..=1)?;
            let verb = if action == "halt" { "HALT" } else { "RESUME" };
            format!("{verb} {}", symbol(args.first(), config)?)
        }
        "kill" => {
            expect(1..=1)?;
            format!("SUSPEND {}", account(args.first())?)
        }
        "reinstate" => {
            expect(1..=1)?;
            format!("REINSTATE {}", account(args.first())?)
        }
        "mass-cancel" => {
            expect(1..=2)?;
            match args.get(1) {
                Some(_) => format!(
                    "MASSCANCEL {} {}",
                    account(args.first())?,
                    symbol(args.get(1), config)?
                ),
                None => format!("MASSCANCEL {}", account(args.first())?),
            }
        }
        "end-of-day" => {
            expect(0..=0)?;
            "ENDOFDAY".to_string()
        }
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(line)
}

fn load_config(flags: &Flags) -> Result<Config, String> {
    let text = match flags.value("config") {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config {path}: {e}"))?
        }
        None => DEFAULT_CONFIG.to_string(),
    };
    Config::parse(&text)
}

pub fn admin(flags: &Flags, words: &[String]) -> Result<Outcome, AdminError> {
    let config = load_config(flags).map_err(AdminError::Usage)?;
    let line =
        command_line(words, &config).map_err(|e| AdminError::Usage(format!("{e}\n{USAGE}")))?;
    let addr = match flags.value("addr") {
        Some(addr) => addr.to_string(),
        None => {
            let port = std::env::var("BROKERX_TEST_PORT")
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .or(config.ports.test)
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    AdminError::Usage(
                        "the config has no fixed operator port ([ports] test); give --addr".into(),
                    )
                })?;
            format!("127.0.0.1:{port}")
        }
    };
    let connection = |e: std::io::Error| AdminError::Connection(format!("{addr}: {e}"));
    let stream = TcpStream::connect(&addr).map_err(connection)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(connection)?;
    (&stream)
        .write_all(format!("{line}\n").as_bytes())
        .map_err(connection)?;
    let mut outcome = Outcome::Accepted;
    for reply in BufReader::new(&stream).lines() {
        let reply = reply.map_err(connection)?;
        if let Some(reason) = reply.strip_prefix("ERR ") {
            return Err(AdminError::Usage(format!(
                "the server refused {line:?}: {reason}"
            )));
        }
        if reply == "BUSY" {
            return Err(AdminError::Connection(
                "the server is busy (its ring is full); try again".into(),
            ));
        }
        if let Some(event) = reply.strip_prefix("EVT ") {
            if event.contains(" Rejected {") {
                outcome = Outcome::Rejected;
            }
            println!("{event}");
        }
        if reply.starts_with("END ") {
            let _ = (&stream).write_all(b"QUIT\n");
            return Ok(outcome);
        }
    }
    Err(AdminError::Connection(format!(
        "{addr}: the connection closed before the answer"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        for (text, want) in [
            ("1", Ok(10_000)),
            ("2500.75", Ok(25_007_500)),
            ("0.0001", Ok(1)),
            ("10.1234", Ok(101_234)),
        ] {
            assert_eq!(parse_amount(text), want, "{text}");
        }
        for text in [
            "",
            "0",
            "0.0",
            "-5",
            "1.",
            ".5",
            "1.23456",
            "1e3",
            "abc",
            "1,5",
            " 1",
            "99999999999999999999",
        ] {
            assert!(parse_amount(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn actions_become_operator_port_lines() {
        let config = Config::parse(DEFAULT_CONFIG).unwrap();
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        for (input, line) in [
            ("fund 7 2500.5", "DEPOSIT 7 25005000"),
            ("debit 7 1", "WITHDRAW 7 10000"),
            ("halt AAPL", "HALT 0"),
            ("resume msft", "RESUME 1"),
            ("halt 2", "HALT 2"),
            ("kill 3", "SUSPEND 3"),
            ("reinstate 3", "REINSTATE 3"),
            ("mass-cancel 3", "MASSCANCEL 3"),
            ("mass-cancel 3 SPY", "MASSCANCEL 3 2"),
            ("end-of-day", "ENDOFDAY"),
        ] {
            assert_eq!(
                command_line(&words(input), &config).unwrap(),
                line,
                "{input}"
            );
        }
        for bad in [
            "",
            "explode",
            "fund",
            "fund 7",
            "fund x 10",
            "fund 7 -1",
            "fund 7 10 11",
            "halt",
            "halt NOPE",
            "kill",
            "kill -1",
            "mass-cancel",
            "mass-cancel 1 NOPE",
            "end-of-day now",
        ] {
            assert!(
                command_line(&words(bad), &config).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
