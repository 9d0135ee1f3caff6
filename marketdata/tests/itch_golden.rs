//! Golden bytes for every ITCH message type we encode, written out by hand
//! from the TotalView-ITCH 5.0 field tables (offsets and widths), plus a
//! cross-check that the independent `itchy` decoder reads each one back.

use brokerx_marketdata::file::{frame_all, FrameReader};
use brokerx_marketdata::itch::{
    Alpha, Header, ItchError, Message, Mpid, Stock, StockDirectory, SystemEventCode, TradingState,
    MAX_TIMESTAMP_NS,
};
use brokerx_risk::Side;

/// Timestamp 0x010203040506 ns: the 6 bytes read 01 02 03 04 05 06.
const TS: u64 = 0x0102_0304_0506;
const TS_BYTES: [u8; 6] = [1, 2, 3, 4, 5, 6];
/// Order reference 0x0A0B0C0D0E0F1011.
const REF: u64 = 0x0A0B_0C0D_0E0F_1011;
const REF_BYTES: [u8; 8] = [0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11];
/// 123.4500 = 1_234_500 = 0x0012D644.
const PRICE: u32 = 1_234_500;
const PRICE_BYTES: [u8; 4] = [0x00, 0x12, 0xD6, 0x44];
const STOCK_BYTES: &[u8; 8] = b"BRKX    ";

fn header() -> Header {
    // Stock locate 0x0102, tracking number 0x0304.
    Header {
        stock_locate: 0x0102,
        tracking_number: 0x0304,
        timestamp_ns: TS,
    }
}

fn stock() -> Stock {
    Stock::new("BRKX").unwrap()
}

/// Message type, locate 01 02, tracking 03 04, timestamp.
fn head(kind: u8) -> Vec<u8> {
    let mut bytes = vec![kind, 0x01, 0x02, 0x03, 0x04];
    bytes.extend_from_slice(&TS_BYTES);
    bytes
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Every message type with its hand-built expected bytes.
fn golden() -> Vec<(Message, Vec<u8>)> {
    vec![
        (
            Message::SystemEvent {
                header: header(),
                event: SystemEventCode::StartOfMessages,
            },
            cat(&[&head(b'S'), b"O"]),
        ),
        (
            Message::StockDirectory {
                header: header(),
                directory: StockDirectory::brokerx(stock(), 100),
            },
            cat(&[
                &head(b'R'),
                STOCK_BYTES,
                b" ",            // market category
                b" ",            // financial status
                &[0, 0, 0, 100], // round lot size
                b"N",            // round lots only
                b"C",            // issue classification
                b"Z ",           // issue sub-type
                b"P",            // authenticity
                b" ",            // short sale threshold
                b" ",            // IPO flag
                b" ",            // LULD tier
                b" ",            // ETP flag
                &[0, 0, 0, 0],   // ETP leverage factor
                b"N",            // inverse indicator
            ]),
        ),
        (
            Message::TradingAction {
                header: header(),
                stock: stock(),
                state: TradingState::Halted,
                reason: Mpid::new("T1").unwrap(),
            },
            cat(&[&head(b'H'), STOCK_BYTES, b"H", b" ", b"T1  "]),
        ),
        (
            Message::AddOrder {
                header: header(),
                order_ref: REF,
                side: Side::Buy,
                shares: 300,
                stock: stock(),
                price: PRICE,
                attribution: None,
            },
            cat(&[
                &head(b'A'),
                &REF_BYTES,
                b"B",
                &[0, 0, 0x01, 0x2C],
                STOCK_BYTES,
                &PRICE_BYTES,
            ]),
        ),
        (
            Message::AddOrder {
                header: header(),
                order_ref: REF,
                side: Side::Sell,
                shares: 300,
                stock: stock(),
                price: PRICE,
                attribution: Some(Mpid::new("BRKR").unwrap()),
            },
            cat(&[
                &head(b'F'),
                &REF_BYTES,
                b"S",
                &[0, 0, 0x01, 0x2C],
                STOCK_BYTES,
                &PRICE_BYTES,
                b"BRKR",
            ]),
        ),
        (
            Message::OrderExecuted {
                header: header(),
                order_ref: REF,
                executed_shares: 100,
                match_number: 258,
            },
            cat(&[
                &head(b'E'),
                &REF_BYTES,
                &[0, 0, 0, 0x64],
                &[0, 0, 0, 0, 0, 0, 0x01, 0x02],
            ]),
        ),
        (
            Message::OrderExecutedWithPrice {
                header: header(),
                order_ref: REF,
                executed_shares: 100,
                match_number: 258,
                printable: true,
                price: PRICE,
            },
            cat(&[
                &head(b'C'),
                &REF_BYTES,
                &[0, 0, 0, 0x64],
                &[0, 0, 0, 0, 0, 0, 0x01, 0x02],
                b"Y",
                &PRICE_BYTES,
            ]),
        ),
        (
            Message::OrderCancel {
                header: header(),
                order_ref: REF,
                cancelled_shares: 50,
            },
            cat(&[&head(b'X'), &REF_BYTES, &[0, 0, 0, 0x32]]),
        ),
        (
            Message::OrderDelete {
                header: header(),
                order_ref: REF,
            },
            cat(&[&head(b'D'), &REF_BYTES]),
        ),
        (
            Message::OrderReplace {
                header: header(),
                original_ref: REF,
                new_ref: 0x12,
                shares: 200,
                price: PRICE,
            },
            cat(&[
                &head(b'U'),
                &REF_BYTES,
                &[0, 0, 0, 0, 0, 0, 0, 0x12],
                &[0, 0, 0, 0xC8],
                &PRICE_BYTES,
            ]),
        ),
        (
            Message::Trade {
                header: header(),
                order_ref: 0,
                side: Side::Buy,
                shares: 100,
                stock: stock(),
                price: PRICE,
                match_number: 258,
            },
            cat(&[
                &head(b'P'),
                &[0; 8],
                b"B",
                &[0, 0, 0, 0x64],
                STOCK_BYTES,
                &PRICE_BYTES,
                &[0, 0, 0, 0, 0, 0, 0x01, 0x02],
            ]),
        ),
    ]
}

#[test]
fn every_message_type_matches_its_golden_bytes() {
    for (message, expected) in golden() {
        let bytes = message.to_bytes().unwrap();
        assert_eq!(bytes, expected, "{message:?}");
        assert_eq!(bytes.len(), message.len_bytes(), "{message:?}");
        assert_eq!(bytes[0], message.message_type());
    }
}

#[test]
fn message_lengths_are_the_specs() {
    let lengths: Vec<(u8, usize)> = golden()
        .iter()
        .map(|(m, bytes)| (m.message_type(), bytes.len()))
        .collect();
    assert_eq!(
        lengths,
        vec![
            (b'S', 12),
            (b'R', 39),
            (b'H', 25),
            (b'A', 36),
            (b'F', 40),
            (b'E', 31),
            (b'C', 36),
            (b'X', 23),
            (b'D', 19),
            (b'U', 35),
            (b'P', 44),
        ]
    );
}

#[test]
fn a_real_clock_time_encodes_in_six_bytes() {
    // 09:30:00 = 34_200_000_000_000 ns = 0x1F1ACED9F000.
    let message = Message::OrderDelete {
        header: Header {
            stock_locate: 1,
            tracking_number: 0,
            timestamp_ns: 34_200_000_000_000,
        },
        order_ref: 1,
    };
    let bytes = message.to_bytes().unwrap();
    assert_eq!(&bytes[5..11], &[0x1F, 0x1A, 0xCE, 0xD9, 0xF0, 0x00]);
}

#[test]
fn out_of_range_fields_are_errors_not_panics() {
    let mut out = vec![9];
    let too_late = Message::OrderDelete {
        header: Header {
            stock_locate: 1,
            tracking_number: 0,
            timestamp_ns: MAX_TIMESTAMP_NS + 1,
        },
        order_ref: 1,
    };
    assert_eq!(
        too_late.encode(&mut out),
        Err(ItchError::TimestampTooLarge {
            timestamp_ns: MAX_TIMESTAMP_NS + 1
        })
    );
    assert_eq!(out, vec![9], "nothing appended on error");
    assert_eq!(
        Stock::new("TOOLONGNAME"),
        Err(ItchError::AlphaTooLong { width: 8, len: 11 })
    );
    assert_eq!(
        Alpha::<4>::new("A\u{7}"),
        Err(ItchError::AlphaNotPrintable { byte: 7 })
    );
    assert_eq!(Stock::new("AB").unwrap().as_bytes(), b"AB      ");
    assert_eq!(Stock::new("AB").unwrap().trimmed(), "AB");
}

#[test]
fn the_independent_decoder_reads_every_golden_message() {
    let messages: Vec<Message> = golden().into_iter().map(|(m, _)| m).collect();
    let framed = frame_all(&messages).unwrap();
    // Our own framing reader sees the same payloads.
    let payloads: Vec<&[u8]> = FrameReader::new(&framed).map(|f| f.unwrap()).collect();
    assert_eq!(payloads.len(), messages.len());
    for (payload, (_, expected)) in payloads.iter().zip(golden()) {
        assert_eq!(*payload, &expected[..]);
    }

    let decoded: Vec<itchy::Message> = itchy::MessageStream::from_reader(&framed[..])
        .map(|m| m.unwrap())
        .collect();
    assert_eq!(decoded.len(), messages.len());
    for message in &decoded {
        assert_eq!(message.stock_locate, 0x0102);
        assert_eq!(message.tracking_number, 0x0304);
        assert_eq!(message.timestamp, TS);
    }
    use itchy::Body;
    let tags: Vec<u8> = decoded.iter().map(|m| m.tag).collect();
    assert_eq!(tags, b"SRHAFECXDUP".to_vec());
    match &decoded[1].body {
        Body::StockDirectory(d) => {
            assert_eq!(d.stock.as_str(), "BRKX    ");
            assert_eq!(d.round_lot_size, 100);
            assert!(!d.round_lots_only);
            assert!(d.authenticity);
        }
        other => panic!("{other:?}"),
    }
    match &decoded[2].body {
        Body::TradingAction {
            trading_state,
            reason,
            ..
        } => {
            assert_eq!(*trading_state, itchy::TradingState::Halted);
            assert_eq!(reason.as_str(), "T1  ");
        }
        other => panic!("{other:?}"),
    }
    match &decoded[3].body {
        Body::AddOrder(add) => {
            assert_eq!(add.reference, REF);
            assert_eq!(add.side, itchy::Side::Buy);
            assert_eq!(add.shares, 300);
            assert_eq!(add.price.raw(), PRICE);
            assert_eq!(add.mpid, None);
        }
        other => panic!("{other:?}"),
    }
    match &decoded[4].body {
        Body::AddOrder(add) => {
            assert_eq!(add.side, itchy::Side::Sell);
            assert_eq!(add.mpid.map(|m| m.to_string()), Some("BRKR".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decoded[5].body,
        Body::OrderExecuted {
            reference: REF,
            executed: 100,
            match_number: 258
        }
    );
    assert_eq!(
        decoded[6].body,
        Body::OrderExecutedWithPrice {
            reference: REF,
            executed: 100,
            match_number: 258,
            printable: true,
            price: PRICE.into(),
        }
    );
    assert_eq!(
        decoded[7].body,
        Body::OrderCancelled {
            reference: REF,
            cancelled: 50
        }
    );
    assert_eq!(decoded[8].body, Body::DeleteOrder { reference: REF });
    match &decoded[9].body {
        Body::ReplaceOrder(replace) => {
            assert_eq!(replace.old_reference, REF);
            assert_eq!(replace.new_reference, 0x12);
            assert_eq!(replace.shares, 200);
            assert_eq!(replace.price.raw(), PRICE);
        }
        other => panic!("{other:?}"),
    }
    match &decoded[10].body {
        Body::NonCrossTrade(trade) => {
            assert_eq!(trade.reference, 0);
            assert_eq!(trade.shares, 100);
            assert_eq!(trade.match_number, 258);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn frame_reader_reports_truncation_and_empty_frames() {
    let message = Message::OrderDelete {
        header: header(),
        order_ref: REF,
    };
    let framed = frame_all(&[message]).unwrap();
    assert_eq!(&framed[..2], &[0, 19]);
    let cut = &framed[..framed.len() - 1];
    let results: Vec<_> = FrameReader::new(cut).collect();
    assert_eq!(results.len(), 1);
    assert!(results[0].is_err());
    let mut empty = FrameReader::new(&[0, 0, 1]);
    assert!(empty.next().unwrap().is_err());
    assert!(empty.next().is_none(), "nothing after an error");
    assert!(FrameReader::new(&[0]).next().unwrap().is_err());
}
