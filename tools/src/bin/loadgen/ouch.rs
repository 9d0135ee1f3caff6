//! OUCH 4.2 over SoupBinTCP 3.0: Enter Order -> Accepted (and the first
//! Executed of a marketable order), Replace -> Replaced, Cancel -> Canceled.

use crate::flow::{Action, Book, Flow};
use crate::measure::{Outcome, MARKETABLE};
use crate::stream::{
    fail, format_id, lock, parse_id, read_some, Current, Session, Surface, Writer,
};
use brokerx_gateway_ouch::codec::{
    alpha, CancelOrder, EnterOrder, Inbound, Outbound, ReplaceOrder, TIF_SYSTEM_HOURS,
};
use brokerx_soupbin::{Decoder, Packet};
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SoupBinTCP-framed Enter Order (2 length + 1 type + 47) and Accepted
/// (2 + 1 + 66): the echo baseline's message sizes.
pub const REQUEST_BYTES: usize = 50;
pub const REPLY_BYTES: usize = 69;
const IOC_SECONDS: u32 = 0;

pub struct Login {
    pub username: String,
    pub password: String,
}

fn login(address: &str, user: &Login) -> Result<TcpStream, String> {
    let mut stream =
        TcpStream::connect(address).map_err(|e| format!("OUCH {address}: connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let request = Packet::LoginRequest {
        username: alpha(user.username.as_bytes()),
        password: alpha(user.password.as_bytes()),
        requested_session: [b' '; 10],
        requested_sequence_number: 0,
    };
    let bytes = request
        .to_bytes()
        .map_err(|e| format!("OUCH login {:?}: {e:?}", user.username))?;
    use std::io::Write;
    stream
        .write_all(&bytes)
        .map_err(|e| format!("OUCH {address}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut decoder = Decoder::new(4096);
    let mut buffer = [0u8; 4096];
    loop {
        match decoder.next_packet() {
            Ok(Some(Packet::LoginAccepted { .. })) => {
                if decoder.buffered_bytes() > 0 {
                    return Err(format!(
                        "OUCH login {:?}: unexpected bytes after Login Accepted",
                        user.username
                    ));
                }
                return Ok(stream);
            }
            Ok(Some(Packet::LoginRejected(reason))) => {
                return Err(format!(
                    "OUCH login {:?} rejected: {reason:?} (check the users in the server's config)",
                    user.username
                ))
            }
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => return Err(format!("OUCH login {:?}: {e:?}", user.username)),
        }
        let n = stream
            .read(&mut buffer)
            .map_err(|e| format!("OUCH login {:?}: {e}", user.username))?;
        if n == 0 {
            return Err(format!("OUCH login {:?}: connection closed", user.username));
        }
        decoder.feed(&buffer[..n]);
    }
}

/// Logs every user on and starts their readers.
pub fn connect(
    address: &str,
    users: &[Login],
    flows: Vec<Flow>,
    prefix: &str,
) -> Result<Surface, String> {
    let current: Current = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sessions = Vec::new();
    let mut readers = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let stream = login(address, user)?;
        let reader_stream = stream
            .try_clone()
            .map_err(|e| format!("OUCH: clone socket: {e}"))?;
        let _ = reader_stream.set_read_timeout(Some(Duration::from_millis(100)));
        let session = Arc::new(Session {
            index,
            writer: Mutex::new(Writer {
                stream,
                seq: 0,
                last_send: Instant::now(),
                session: index,
            }),
            book: Mutex::new(Book::default()),
        });
        let (session2, current, stop, prefix) = (
            session.clone(),
            current.clone(),
            stop.clone(),
            prefix.to_string(),
        );
        readers.push(std::thread::spawn(move || {
            read_loop(reader_stream, &session2, &current, &stop, &prefix)
        }));
        sessions.push(session);
    }
    Ok(Surface {
        sessions,
        flows,
        current,
        stop,
        readers,
        next_id: 0,
    })
}

fn read_loop(
    mut stream: TcpStream,
    session: &Session,
    current: &Current,
    stop: &AtomicBool,
    prefix: &str,
) {
    let mut decoder = Decoder::new(4096);
    let mut buffer = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        loop {
            match decoder.next_packet() {
                Ok(Some(Packet::SequencedData(bytes))) => match Outbound::decode(&bytes) {
                    Ok(message) => on_message(session, current, prefix, &message),
                    Err(e) => fail(current, format!("OUCH: undecodable message: {e:?}")),
                },
                Ok(Some(Packet::EndOfSession)) => {
                    fail(current, "OUCH: server ended the session".into());
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    fail(current, format!("OUCH: bad SoupBinTCP framing: {e:?}"));
                    return;
                }
            }
        }
        // Client heartbeats once a second while idle.
        {
            let mut writer = lock(&session.writer);
            if writer.last_send.elapsed() > Duration::from_secs(1) {
                if let Ok(bytes) = Packet::ClientHeartbeat.to_bytes() {
                    let _ = writer.send(&bytes);
                }
            }
        }
        match read_some(&mut stream, &mut buffer, "OUCH", current, stop) {
            Some(n) => decoder.feed(&buffer[..n]),
            None => return,
        }
    }
}

fn on_message(session: &Session, current: &Current, prefix: &str, message: &Outbound) {
    let tracker = lock(current).clone();
    let at = |id: u64| tracker.as_ref().and_then(|t| Some((t, t.index_of(id)?)));
    let s = session.index;
    let mut book = lock(&session.book);
    match message {
        Outbound::Accepted(accepted) => {
            let Some(id) = parse_id(prefix, &accepted.token) else {
                return;
            };
            book.acked(id, u64::from(accepted.shares));
            if let Some((tracker, index)) = at(id) {
                tracker.answer(s, index, Outcome::Ack);
            }
        }
        Outbound::Replaced {
            order,
            previous_token,
        } => {
            let (Some(id), Some(old)) = (
                parse_id(prefix, &order.token),
                parse_id(prefix, previous_token),
            ) else {
                return;
            };
            book.replaced(old, id, u64::from(order.price), u64::from(order.shares));
            if let Some((tracker, index)) = at(id) {
                tracker.answer(s, index, Outcome::Ack);
            }
        }
        Outbound::Canceled {
            token,
            decrement_shares,
            ..
        } => {
            let Some(key) = parse_id(prefix, token) else {
                return;
            };
            if let Some(cancel) = book.pending_cancel.remove(&key) {
                book.closed(key);
                if let Some((tracker, index)) = at(cancel) {
                    tracker.answer(s, index, Outcome::Ack);
                }
            } else if let Some(cancel) = book.reduce(key, u64::from(*decrement_shares)) {
                if let Some((tracker, index)) = at(cancel) {
                    tracker.answer(s, index, Outcome::TooLateSilent);
                }
            }
        }
        Outbound::Executed {
            token,
            executed_shares,
            liquidity_flag,
            ..
        } => {
            let Some(key) = parse_id(prefix, token) else {
                return;
            };
            if *liquidity_flag == b'R' {
                if let Some((tracker, index)) = at(key) {
                    if tracker.kind(index) == MARKETABLE {
                        tracker.execution(s, index);
                    }
                }
            }
            // An order filled while our cancel was in flight: the gateway
            // ignores that cancel, so this is its only answer.
            if let Some(cancel) = book.reduce(key, u64::from(*executed_shares)) {
                if let Some((tracker, index)) = at(cancel) {
                    tracker.answer(s, index, Outcome::TooLateSilent);
                }
            }
        }
        Outbound::Rejected { token, reason, .. } => {
            let Some(id) = parse_id(prefix, token) else {
                return;
            };
            let outcome = match book.pending_replace.remove(&id) {
                // The order it replaced closed meanwhile: too late.
                Some(target) if !book.orders.contains_key(&target) => Outcome::TooLate,
                Some(target) => {
                    book.unpend(target);
                    Outcome::Rejected
                }
                None => {
                    book.closed(id);
                    Outcome::Rejected
                }
            };
            if let Some((tracker, index)) = at(id) {
                if outcome == Outcome::Rejected {
                    tracker.note_error(format!("OUCH Rejected, reason {:?}", char::from(*reason)));
                }
                tracker.answer(s, index, outcome);
            }
        }
        Outbound::SystemEvent { .. } => {}
    }
}

/// The SoupBinTCP-framed OUCH message for `action`.
pub fn encode(prefix: &str, stock: &[[u8; 8]], action: &Action) -> Vec<u8> {
    let token = |id: u64| alpha(format_id(prefix, id).as_bytes());
    let message = match *action {
        Action::New {
            id,
            symbol,
            buy,
            price,
            qty,
            ioc,
            ..
        } => Inbound::Enter(EnterOrder {
            token: token(id),
            side: if buy { b'B' } else { b'S' },
            shares: u32::try_from(qty).unwrap_or(u32::MAX),
            stock: stock[symbol],
            price: u32::try_from(price).unwrap_or(u32::MAX),
            tif_seconds: if ioc { IOC_SECONDS } else { TIF_SYSTEM_HOURS },
            firm: [b' '; 4],
            display: b'Y',
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            customer_type: b' ',
        }),
        Action::Cancel { target, .. } => Inbound::Cancel(CancelOrder {
            token: token(target),
            shares: 0,
        }),
        Action::Replace {
            id,
            target,
            order,
            price,
        } => Inbound::Replace(ReplaceOrder {
            existing_token: token(target),
            replacement_token: token(id),
            shares: u32::try_from(order.open).unwrap_or(u32::MAX),
            price: u32::try_from(price).unwrap_or(u32::MAX),
            tif_seconds: TIF_SYSTEM_HOURS,
            display: b'Y',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
        }),
    };
    Packet::UnsequencedData(message.to_bytes())
        .to_bytes()
        .unwrap_or_default()
}

/// Logs out every session and stops the readers.
pub fn close(surface: Surface) {
    surface.close(|_| Packet::LogoutRequest.to_bytes().unwrap_or_default());
}

/// The 8-byte OUCH stock field of each symbol.
pub fn stocks(flow: &Flow) -> Vec<[u8; 8]> {
    flow.symbols()
        .iter()
        .map(|s| alpha(s.name.as_bytes()))
        .collect()
}

/// The writer-side encoder for `Surface::phase`.
pub fn encoder(prefix: String, stocks: Vec<[u8; 8]>) -> impl Fn(&mut Writer, &Action) -> Vec<u8> {
    move |_writer, action| encode(&prefix, &stocks, action)
}
