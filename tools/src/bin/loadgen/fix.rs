//! FIX 4.4: NewOrderSingle -> ExecutionReport new (and the first fill of
//! a marketable order), OrderCancelReplaceRequest -> ExecutionReport
//! replaced, OrderCancelRequest -> ExecutionReport cancelled (or an
//! OrderCancelReject "too late" when the order filled first).

use crate::flow::{Action, Book, Flow};
use crate::measure::{Outcome, CANCEL, MARKETABLE};
use crate::stream::{
    fail, format_id, lock, parse_id, read_some, Current, Session, Surface, Writer,
};
use brokerx_gateway_fix::codec::{self, Field, Frame};
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::orders::{format_price, parse_price};
use brokerx_gateway_fix::server::now_ms;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BEGIN: &[u8] = b"FIX.4.4";
/// An ExecutionReport (new) as the gateway writes it, about: the echo
/// baseline's reply size.
pub const REPLY_BYTES: usize = 230;

/// One session's identity: we send as `comp_id` to `target`.
#[derive(Clone)]
pub struct Identity {
    pub comp_id: String,
    pub target: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A FIX message from `writer`'s session (MsgSeqNum taken from it).
fn message(
    writer: &mut Writer,
    identity: &Identity,
    msg_type: &[u8],
    body: &[(u32, &[u8])],
) -> Vec<u8> {
    let seq = writer.seq.to_string();
    writer.seq += 1;
    let ts = format_utc_timestamp(now_ms());
    let header: [(u32, &[u8]); 4] = [
        (34, seq.as_bytes()),
        (49, identity.comp_id.as_bytes()),
        (52, ts.as_bytes()),
        (56, identity.target.as_bytes()),
    ];
    let mut fields: Vec<(u32, &[u8])> = header.to_vec();
    fields.extend_from_slice(body);
    codec::encode(BEGIN, msg_type, &[], &fields)
}

fn get<'a>(fields: &'a [Field<'a>], tag: u32) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.tag == tag).map(|f| f.value)
}

fn logon(address: &str, identity: &Identity) -> Result<(TcpStream, Vec<u8>), String> {
    let who = &identity.comp_id;
    let mut stream =
        TcpStream::connect(address).map_err(|e| format!("FIX {address}: connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut writer = Writer {
        stream: stream
            .try_clone()
            .map_err(|e| format!("FIX: clone socket: {e}"))?,
        seq: 1,
        last_send: Instant::now(),
        session: 0,
    };
    let mut body: Vec<(u32, &[u8])> = vec![(98, b"0"), (108, b"30"), (141, b"Y")];
    if let (Some(user), Some(password)) = (&identity.username, &identity.password) {
        body.push((553, user.as_bytes()));
        body.push((554, password.as_bytes()));
    }
    let bytes = message(&mut writer, identity, b"A", &body);
    stream
        .write_all(&bytes)
        .map_err(|e| format!("FIX logon {who}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match codec::next_frame(&buffer, 1 << 16) {
            Frame::Message { len } => {
                let fields = codec::parse(&buffer[..len])
                    .map_err(|_| format!("FIX logon {who}: garbled reply"))?;
                match get(&fields, 35) {
                    Some(b"A") => {
                        let rest = buffer[len..].to_vec();
                        return Ok((stream, rest));
                    }
                    Some(b"5") | Some(b"3") => {
                        return Err(format!(
                        "FIX logon {who} refused: {} (check the sessions in the server's config)",
                        String::from_utf8_lossy(get(&fields, 58).unwrap_or(b"no text"))
                    ))
                    }
                    _ => {
                        buffer.drain(..len);
                        continue;
                    }
                }
            }
            Frame::Garbled { skip } => {
                buffer.drain(..skip);
                continue;
            }
            Frame::Incomplete => {}
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("FIX logon {who}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "FIX logon {who}: connection closed (wrong CompIDs or credentials?)"
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Logs every session on (sequence numbers reset) and starts the readers.
pub fn connect(
    address: &str,
    identities: &[Identity],
    flows: Vec<Flow>,
    prefix: &str,
) -> Result<Surface, String> {
    let current: Current = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sessions = Vec::new();
    let mut readers = Vec::new();
    for (index, identity) in identities.iter().enumerate() {
        let (stream, rest) = logon(address, identity)?;
        let reader_stream = stream
            .try_clone()
            .map_err(|e| format!("FIX: clone socket: {e}"))?;
        let _ = reader_stream.set_read_timeout(Some(Duration::from_millis(100)));
        let session = Arc::new(Session {
            index,
            writer: Mutex::new(Writer {
                stream,
                seq: 2,
                last_send: Instant::now(),
                session: index,
            }),
            book: Mutex::new(Book::default()),
        });
        let (session2, current, stop, prefix, identity) = (
            session.clone(),
            current.clone(),
            stop.clone(),
            prefix.to_string(),
            identity.clone(),
        );
        readers.push(std::thread::spawn(move || {
            read_loop(
                reader_stream,
                rest,
                &session2,
                &identity,
                &current,
                &stop,
                &prefix,
            )
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
    mut buffer: Vec<u8>,
    session: &Session,
    identity: &Identity,
    current: &Current,
    stop: &AtomicBool,
    prefix: &str,
) {
    let mut chunk = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let mut at = 0;
        loop {
            match codec::next_frame(&buffer[at..], 1 << 16) {
                Frame::Message { len } => {
                    let frame = &buffer[at..at + len];
                    at += len;
                    match codec::parse(frame) {
                        Ok(fields) => on_message(session, identity, current, prefix, &fields, stop),
                        Err(_) => fail(current, "FIX: unparseable message".into()),
                    }
                }
                Frame::Garbled { skip } => {
                    at += skip;
                    fail(current, "FIX: garbled bytes from the server".into());
                }
                Frame::Incomplete => break,
            }
        }
        buffer.drain(..at);
        {
            let mut writer = lock(&session.writer);
            if writer.last_send.elapsed() > Duration::from_secs(10) {
                let bytes = message(&mut writer, identity, b"0", &[]);
                let _ = writer.send(&bytes);
            }
        }
        match read_some(&mut stream, &mut chunk, "FIX", current, stop) {
            Some(n) => buffer.extend_from_slice(&chunk[..n]),
            None => return,
        }
    }
}

fn number(value: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}

fn on_message(
    session: &Session,
    identity: &Identity,
    current: &Current,
    prefix: &str,
    fields: &[Field<'_>],
    stop: &AtomicBool,
) {
    let tracker = lock(current).clone();
    let at = |id: u64| tracker.as_ref().and_then(|t| Some((t, t.index_of(id)?)));
    let s = session.index;
    let text = || String::from_utf8_lossy(get(fields, 58).unwrap_or(b"")).into_owned();
    match get(fields, 35) {
        Some(b"8") => {
            let Some(id) = get(fields, 11).and_then(|v| parse_id(prefix, v)) else {
                return;
            };
            let orig = get(fields, 41).and_then(|v| parse_id(prefix, v));
            let leaves = number(get(fields, 151)).unwrap_or(0);
            let mut book = lock(&session.book);
            match get(fields, 150) {
                Some(b"0") => {
                    book.acked(id, leaves);
                    if let Some((tracker, index)) = at(id) {
                        tracker.answer(s, index, Outcome::Ack);
                    }
                }
                Some(b"8") => {
                    book.closed(id);
                    if let Some((tracker, index)) = at(id) {
                        tracker.note_error(format!("FIX order rejected: {}", text()));
                        tracker.answer(s, index, Outcome::Rejected);
                    }
                }
                Some(b"F") => {
                    if let Some((tracker, index)) = at(id) {
                        if tracker.kind(index) == MARKETABLE {
                            tracker.execution(s, index);
                        }
                    }
                    // A cancel in flight gets its own answer (a reject).
                    book.set_open(id, leaves);
                }
                Some(b"4") => {
                    let answers_cancel = match at(id) {
                        Some((tracker, index)) => tracker.kind(index) == CANCEL,
                        None => orig.is_some_and(|o| o != id),
                    };
                    if answers_cancel {
                        if let Some(orig) = orig {
                            book.closed(orig);
                        }
                        if let Some((tracker, index)) = at(id) {
                            tracker.answer(s, index, Outcome::Ack);
                        }
                    } else {
                        book.closed(id);
                    }
                }
                Some(b"5") => {
                    let price = get(fields, 44).and_then(parse_price).unwrap_or(0);
                    if let Some(orig) = orig {
                        book.replaced(orig, id, price, leaves);
                    }
                    if let Some((tracker, index)) = at(id) {
                        tracker.answer(s, index, Outcome::Ack);
                    }
                }
                Some(b"C") | Some(b"3") => {
                    book.closed(id);
                }
                _ => {}
            }
        }
        Some(b"9") => {
            let Some(id) = get(fields, 11).and_then(|v| parse_id(prefix, v)) else {
                return;
            };
            let target = get(fields, 41).and_then(|v| parse_id(prefix, v));
            let mut book = lock(&session.book);
            book.pending_replace.remove(&id);
            let too_late = get(fields, 102) == Some(b"0");
            if let Some(target) = target {
                book.unpend(target);
            }
            if let Some((tracker, index)) = at(id) {
                if too_late {
                    tracker.answer(s, index, Outcome::TooLate);
                } else {
                    tracker.note_error(format!("FIX OrderCancelReject: {}", text()));
                    tracker.answer(s, index, Outcome::Rejected);
                }
            }
        }
        Some(b"1") => {
            let test_id = get(fields, 112).unwrap_or(b"").to_vec();
            let mut writer = lock(&session.writer);
            let bytes = message(&mut writer, identity, b"0", &[(112, &test_id)]);
            let _ = writer.send(&bytes);
        }
        Some(b"3") => fail(current, format!("FIX session Reject: {}", text())),
        Some(b"j") => fail(current, format!("FIX BusinessMessageReject: {}", text())),
        Some(b"5") if !stop.load(Ordering::Relaxed) => {
            fail(current, format!("FIX Logout from the server: {}", text()))
        }
        _ => {}
    }
}

/// The writer-side encoder for `Surface::phase`.
pub fn encoder(
    prefix: String,
    identities: Vec<Identity>,
    symbols: Vec<String>,
) -> impl Fn(&mut Writer, &Action) -> Vec<u8> {
    move |writer, action| {
        let identity = &identities[writer.session % identities.len()];
        encode(writer, identity, &prefix, &symbols, action)
    }
}

/// The FIX message for `action`.
pub fn encode(
    writer: &mut Writer,
    identity: &Identity,
    prefix: &str,
    symbols: &[String],
    action: &Action,
) -> Vec<u8> {
    let ts = format_utc_timestamp(now_ms());
    match *action {
        Action::New {
            id,
            symbol,
            buy,
            price,
            qty,
            ioc,
            ..
        } => {
            let cl = format_id(prefix, id);
            let (qty, price) = (qty.to_string(), format_price(price));
            let body: [(u32, &[u8]); 9] = [
                (11, cl.as_bytes()),
                (21, b"1"),
                (55, symbols[symbol].as_bytes()),
                (54, if buy { b"1" } else { b"2" }),
                (60, ts.as_bytes()),
                (38, qty.as_bytes()),
                (40, b"2"),
                (44, price.as_bytes()),
                (59, if ioc { b"3" } else { b"1" }),
            ];
            message(writer, identity, b"D", &body)
        }
        Action::Cancel { id, target, order } => {
            let (cl, orig) = (format_id(prefix, id), format_id(prefix, target));
            let qty = order.qty.to_string();
            let body: [(u32, &[u8]); 6] = [
                (11, cl.as_bytes()),
                (41, orig.as_bytes()),
                (55, symbols[order.symbol].as_bytes()),
                (54, if order.buy { b"1" } else { b"2" }),
                (60, ts.as_bytes()),
                (38, qty.as_bytes()),
            ];
            message(writer, identity, b"F", &body)
        }
        Action::Replace {
            id,
            target,
            order,
            price,
        } => {
            let (cl, orig) = (format_id(prefix, id), format_id(prefix, target));
            let (qty, price) = (order.qty.to_string(), format_price(price));
            let body: [(u32, &[u8]); 10] = [
                (11, cl.as_bytes()),
                (41, orig.as_bytes()),
                (21, b"1"),
                (55, symbols[order.symbol].as_bytes()),
                (54, if order.buy { b"1" } else { b"2" }),
                (60, ts.as_bytes()),
                (38, qty.as_bytes()),
                (40, b"2"),
                (44, price.as_bytes()),
                (59, b"1"),
            ];
            message(writer, identity, b"G", &body)
        }
    }
}

/// Logs out every session and stops the readers.
pub fn close(surface: Surface, identities: &[Identity]) {
    surface.close(|writer| {
        let identity = &identities[writer.session % identities.len().max(1)];
        message(writer, identity, b"5", &[])
    });
}

/// The size of a typical NewOrderSingle of this session (the echo
/// baseline's request size).
pub fn request_bytes(identity: &Identity, prefix: &str, symbol: &str) -> usize {
    let cl = format_id(prefix, 1_234_567);
    let ts = format_utc_timestamp(now_ms());
    let body: [(u32, &[u8]); 9] = [
        (11, cl.as_bytes()),
        (21, b"1"),
        (55, symbol.as_bytes()),
        (54, b"1"),
        (60, ts.as_bytes()),
        (38, b"5"),
        (40, b"2"),
        (44, b"190.01"),
        (59, b"1"),
    ];
    let seq = "12345".to_string();
    let header: [(u32, &[u8]); 4] = [
        (34, seq.as_bytes()),
        (49, identity.comp_id.as_bytes()),
        (52, ts.as_bytes()),
        (56, identity.target.as_bytes()),
    ];
    let mut fields: Vec<(u32, &[u8])> = header.to_vec();
    fields.extend_from_slice(&body);
    codec::encode(BEGIN, b"D", &[], &fields).len()
}
