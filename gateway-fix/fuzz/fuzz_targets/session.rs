//! Arbitrary bytes after a valid Logon: the framer, parser, validator and
//! session must never panic, and whatever reaches the application must be
//! an in-sequence message the dictionary accepted; the order mapping must
//! not panic on it either.
#![no_main]

use brokerx_engine::{AccountId, SymbolId};
use brokerx_gateway_fix::codec::{self, Frame};
use brokerx_gateway_fix::orders::{OrderBook, SymbolInfo};
use brokerx_gateway_fix::store::Store;
use brokerx_gateway_fix::{
    Action, Application, InboundMessage, OutboundMessage, Session, SessionConfig, SessionId,
};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

struct Orders(Mutex<OrderBook>);

impl Application for Orders {
    fn on_app_message(&self, _: &SessionId, m: &InboundMessage<'_>) -> Vec<OutboundMessage> {
        let mut book = self.0.lock().unwrap();
        book.on_message(m, 1_700_000_000_000).replies
    }
}

const NOW: i64 = 1_795_000_000_000;

fuzz_target!(|data: &[u8]| {
    let app = Orders(Mutex::new(OrderBook::new(
        AccountId(1),
        vec![SymbolInfo {
            id: SymbolId(0),
            name: "AAPL".into(),
            tick: 100,
            lot: 1,
        }],
        0,
    )));
    let mut session = Session::new(SessionConfig::new("BRKX", "T"), Store::in_memory(), NOW);
    let mut out: Vec<Action> = Vec::new();
    let ts = brokerx_gateway_fix::dictionary::format_utc_timestamp(NOW);
    let logon = codec::encode(
        b"FIX.4.4",
        b"A",
        &[],
        &[
            (34, b"1"),
            (49, b"T"),
            (52, ts.as_bytes()),
            (56, b"BRKX"),
            (98, b"0"),
            (108, b"30"),
        ],
    );
    session.on_frame(&logon, NOW, &app, &mut out);
    assert!(session.is_logged_on());
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Raw bytes: the framer's checks come first.
        let mut at = 0;
        while at < data.len() {
            match codec::next_frame(&data[at..], 4096) {
                Frame::Incomplete => break,
                Frame::Garbled { skip } => {
                    assert!(skip > 0);
                    at += skip;
                    session.on_garbled(&app, &mut out);
                }
                Frame::Message { len } => {
                    let frame = &data[at..at + len];
                    at += len;
                    session.on_frame(frame, NOW, &app, &mut out);
                }
            }
            session.on_timer(NOW + 1_000, &app, &mut out);
            out.clear();
        }
        return;
    }
    // Lines of `MsgType|tag=value|...`, framed with a correct BodyLength and
    // CheckSum so the fuzzer reaches validation, sequencing and the orders.
    for line in data.split(|&b| b == b'\n') {
        let body: Vec<u8> = line.iter().map(|&b| if b == b'|' { 1 } else { b }).collect();
        let (msg_type, rest) = match body.iter().position(|&b| b == 1) {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (&body[..], &[][..]),
        };
        let frame = codec::encode_raw(b"FIX.4.4", msg_type, rest);
        session.on_frame(&frame, NOW, &app, &mut out);
        session.on_timer(NOW + 1_000, &app, &mut out);
        out.clear();
    }
});
