//! The line-based test port: one command per line in, one line per event
//! out, then `END seq=N` once the command's events are complete. Every
//! reply is sent only after the journal is durable past the command. It is
//! a stand-in for the real gateways, used by the crash-safety tests.
//!
//! ```text
//! NEW <account> <symbol> <BUY|SELL> <LIMIT|MARKET> <DAY|GTC|IOC|FOK> <price> <qty> [tag]
//! CANCEL <account> <order-id> [tag]
//! REPLACE <account> <order-id> <price> <qty> [tag]
//! DEPOSIT <account> <amount> [tag]        WITHDRAW <account> <amount> [tag]
//! MASSCANCEL <account> [symbol]           HALT <symbol>    RESUME <symbol>
//! SUSPEND <account>    REINSTATE <account>    ENDOFDAY    PING    QUIT
//! ```
//! A malformed line gets `ERR <reason>` and never reaches the engine; a full
//! ring gets `BUSY`.

use brokerx_engine::pipeline::{Output, Pipeline, Submitter};
use brokerx_engine::{
    AccountId, Command, OrderId, OrderType, SelfTradePrevention, Side, SymbolId, TimeInForce,
};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Longest accepted line; longer input is refused and the connection closed.
const MAX_LINE_BYTES: usize = 512;

fn number<T: std::str::FromStr>(field: Option<&str>, name: &str) -> Result<T, String> {
    let text = field.ok_or_else(|| format!("missing {name}"))?;
    text.parse().map_err(|_| format!("bad {name}: {text:?}"))
}

/// Parses one request line.
pub fn parse(line: &str) -> Result<Command, String> {
    let mut fields = line.split_whitespace();
    let verb = fields.next().ok_or("empty line")?.to_ascii_uppercase();
    let account = |fields: &mut std::str::SplitWhitespace| {
        number::<u32>(fields.next(), "account").map(AccountId)
    };
    let command = match verb.as_str() {
        "NEW" => {
            let account = account(&mut fields)?;
            let symbol = SymbolId(number(fields.next(), "symbol")?);
            let side = match fields.next().map(str::to_ascii_uppercase).as_deref() {
                Some("BUY" | "B") => Side::Buy,
                Some("SELL" | "S") => Side::Sell,
                other => return Err(format!("bad side: {other:?}")),
            };
            let order_type = match fields.next().map(str::to_ascii_uppercase).as_deref() {
                Some("LIMIT") => OrderType::Limit,
                Some("MARKET") => OrderType::Market,
                other => return Err(format!("bad order type: {other:?}")),
            };
            let tif = match fields.next().map(str::to_ascii_uppercase).as_deref() {
                Some("DAY") => TimeInForce::Day,
                Some("GTC") => TimeInForce::Gtc,
                Some("IOC") => TimeInForce::Ioc,
                Some("FOK") => TimeInForce::Fok,
                other => return Err(format!("bad time in force: {other:?}")),
            };
            Command::NewOrder {
                account,
                symbol,
                side,
                order_type,
                tif,
                price: number(fields.next(), "price")?,
                qty: number(fields.next(), "qty")?,
                self_trade: SelfTradePrevention::AccountDefault,
                tag: optional_tag(fields.next())?,
            }
        }
        "CANCEL" => Command::Cancel {
            account: account(&mut fields)?,
            order_id: OrderId(number(fields.next(), "order id")?),
            tag: optional_tag(fields.next())?,
        },
        "REPLACE" => Command::Replace {
            account: account(&mut fields)?,
            order_id: OrderId(number(fields.next(), "order id")?),
            price: number(fields.next(), "price")?,
            qty: number(fields.next(), "qty")?,
            tag: optional_tag(fields.next())?,
        },
        "DEPOSIT" | "WITHDRAW" => {
            let account = account(&mut fields)?;
            let amount = number(fields.next(), "amount")?;
            let tag = optional_tag(fields.next())?;
            if verb == "DEPOSIT" {
                Command::DepositCash {
                    account,
                    amount,
                    tag,
                }
            } else {
                Command::WithdrawCash {
                    account,
                    amount,
                    tag,
                }
            }
        }
        "MASSCANCEL" => Command::MassCancelAccount {
            account: account(&mut fields)?,
            symbol: fields
                .next()
                .map(|s| number(Some(s), "symbol").map(SymbolId))
                .transpose()?,
            tag: 0,
        },
        "HALT" => Command::Halt {
            symbol: SymbolId(number(fields.next(), "symbol")?),
        },
        "RESUME" => Command::Resume {
            symbol: SymbolId(number(fields.next(), "symbol")?),
        },
        "SUSPEND" => Command::SuspendAccount {
            account: account(&mut fields)?,
        },
        "REINSTATE" => Command::ReinstateAccount {
            account: account(&mut fields)?,
        },
        "ENDOFDAY" => Command::EndOfDay,
        other => return Err(format!("unknown command {other:?}")),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected field {extra:?}"));
    }
    Ok(command)
}

fn optional_tag(field: Option<&str>) -> Result<u64, String> {
    field.map_or(Ok(0), |text| number(Some(text), "tag"))
}

/// Accepts connections until the listener is closed.
pub fn serve(listener: TcpListener, pipeline: Arc<Pipeline>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let pipeline = pipeline.clone();
        let _ = std::thread::Builder::new()
            .name("test-port".into())
            .spawn(move || {
                if let Err(error) = connection(stream, &pipeline) {
                    eprintln!("test port: connection ended: {error}");
                }
            });
    }
}

fn connection(stream: TcpStream, pipeline: &Pipeline) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (submitter, handle) = pipeline.connect(&[], false);
    let mut writer = stream.try_clone()?;
    let session = handle.id;
    // Writer thread: outputs, in order, as they become durable.
    let mut out = stream.try_clone()?;
    let writer_thread = std::thread::spawn(move || {
        for output in handle.receiver.iter() {
            if write_output(&mut out, &output).is_err() {
                break;
            }
        }
        if let Some(reason) = handle.cut_reason() {
            let _ = send(&mut out, format!("ERR disconnected: {reason}\n"));
        }
    });
    let result = read_loop(stream, &submitter, &mut writer);
    pipeline.disconnect(session);
    let _ = writer_thread.join();
    result
}

fn read_loop(
    stream: TcpStream,
    submitter: &Submitter,
    writer: &mut TcpStream,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(MAX_LINE_BYTES);
    loop {
        line.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE_BYTES {
            send(
                writer,
                format!("ERR line longer than {MAX_LINE_BYTES} bytes; closing\n"),
            )?;
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            send(writer, "ERR line is not UTF-8\n".into())?;
            continue;
        };
        let text = text.trim();
        match text.to_ascii_uppercase().as_str() {
            "" => continue,
            "QUIT" => return Ok(()),
            "PING" => {
                send(writer, "PONG\n".into())?;
                continue;
            }
            _ => {}
        }
        match parse(text) {
            Ok(command) => {
                if submitter.submit(command).is_err() {
                    send(writer, "BUSY\n".into())?;
                }
            }
            Err(reason) => send(writer, format!("ERR {reason}\n"))?,
        }
    }
}

/// Writes one whole reply with a single `write_all`, so replies from the
/// reader and writer threads never interleave inside a line.
fn send(out: &mut TcpStream, text: String) -> std::io::Result<()> {
    out.write_all(text.as_bytes())
}

fn write_output(out: &mut TcpStream, output: &Output) -> std::io::Result<()> {
    let text = if output.own && output.last {
        format!(
            "EVT seq={} {:?}\nEND seq={}\n",
            output.seq, output.event, output.seq
        )
    } else if output.own {
        format!("EVT seq={} {:?}\n", output.seq, output.event)
    } else {
        format!("NOTE seq={} {:?}\n", output.seq, output.event)
    };
    send(out, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_lines_parse() {
        assert!(matches!(
            parse("NEW 1 0 BUY LIMIT GTC 1900000 10 5"),
            Ok(Command::NewOrder { tag: 5, .. })
        ));
        assert!(matches!(
            parse("deposit 1 100"),
            Ok(Command::DepositCash {
                amount: 100,
                tag: 0,
                ..
            })
        ));
        assert!(matches!(
            parse("MASSCANCEL 1 2"),
            Ok(Command::MassCancelAccount {
                symbol: Some(SymbolId(2)),
                ..
            })
        ));
        assert!(matches!(parse("ENDOFDAY"), Ok(Command::EndOfDay)));
    }

    #[test]
    fn malformed_lines_get_clear_errors() {
        let cases = [
            ("", "empty line"),
            ("FLY 1", "unknown command"),
            ("NEW", "missing account"),
            ("NEW x 0 BUY LIMIT GTC 1 1", "bad account"),
            ("NEW 1 0 UP LIMIT GTC 1 1", "bad side"),
            ("NEW 1 0 BUY STOP GTC 1 1", "bad order type"),
            ("NEW 1 0 BUY LIMIT NOW 1 1", "bad time in force"),
            ("NEW 1 0 BUY LIMIT GTC -5 1", "bad price"),
            ("NEW 1 0 BUY LIMIT GTC 1 99999999999999999999999", "bad qty"),
            ("DEPOSIT 1 5 6 7", "unexpected field"),
            ("CANCEL 1", "missing order id"),
        ];
        for (line, expected) in cases {
            let error = parse(line).unwrap_err();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }
}
