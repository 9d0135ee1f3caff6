//! MoldUDP64: golden packet bytes, decoding, packing under a size limit,
//! and the bounded retransmission store.

use brokerx_marketdata::itch::{Header, Message};
use brokerx_marketdata::mold::{
    decode_packet, encode_packet, end_of_session, heartbeat, request, MoldError, MoldSession,
    RetransmitStore, Session, HEADER_BYTES,
};

fn session() -> Session {
    Session::new("BRKX000001").unwrap()
}

const SESSION_BYTES: &[u8; 10] = b"BRKX000001";

#[test]
fn downstream_packet_golden_bytes() {
    let packet = encode_packet(&session(), 0x0102_0304_0506_0708, &[b"abc", b"z"]).unwrap();
    let expected = [
        SESSION_BYTES.as_slice(),
        &[1, 2, 3, 4, 5, 6, 7, 8], // sequence number of the first message
        &[0, 2],                   // message count
        &[0, 3],
        b"abc",
        &[0, 1],
        b"z",
    ]
    .concat();
    assert_eq!(packet, expected);
    let decoded = decode_packet(&packet).unwrap();
    assert_eq!(decoded.session, session());
    assert_eq!(decoded.seq, 0x0102_0304_0506_0708);
    assert_eq!(decoded.count, 2);
    assert_eq!(decoded.messages, vec![b"abc".as_slice(), b"z".as_slice()]);
}

#[test]
fn heartbeat_end_of_session_and_request_golden_bytes() {
    let short_session = Session::new("S1").unwrap();
    assert_eq!(
        heartbeat(&short_session, 42),
        [
            b"S1        ".as_slice(),
            &[0, 0, 0, 0, 0, 0, 0, 42],
            &[0, 0]
        ]
        .concat()
    );
    assert_eq!(
        end_of_session(&short_session, 42),
        [
            b"S1        ".as_slice(),
            &[0, 0, 0, 0, 0, 0, 0, 42],
            &[0xFF, 0xFF]
        ]
        .concat()
    );
    assert_eq!(
        request(&short_session, 7, 3),
        [b"S1        ".as_slice(), &[0, 0, 0, 0, 0, 0, 0, 7], &[0, 3]].concat()
    );
    let end_bytes = end_of_session(&short_session, 42);
    let end = decode_packet(&end_bytes).unwrap();
    assert_eq!((end.count, end.messages.len()), (0xFFFF, 0));
}

#[test]
fn malformed_packets_are_errors() {
    let good = encode_packet(&session(), 1, &[b"abc"]).unwrap();
    assert!(matches!(
        decode_packet(&good[..good.len() - 1]),
        Err(MoldError::Truncated { .. })
    ));
    assert!(matches!(
        decode_packet(&good[..10]),
        Err(MoldError::Truncated { .. })
    ));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        decode_packet(&long),
        Err(MoldError::TrailingBytes { .. })
    ));
    let mut bad_session = good.clone();
    bad_session[0] = 0xFF;
    assert_eq!(decode_packet(&bad_session), Err(MoldError::BadSession));
    assert!(matches!(
        encode_packet(&session(), 1, &[b""]),
        Err(MoldError::BadMessageLength { len: 0 })
    ));
}

fn itch_messages(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            Message::OrderDelete {
                header: Header {
                    stock_locate: 1,
                    tracking_number: 0,
                    timestamp_ns: i,
                },
                order_ref: i + 1,
            }
            .to_bytes()
            .unwrap()
        })
        .collect()
}

#[test]
fn publishing_packs_under_the_limit_and_numbers_from_one() {
    let limit = HEADER_BYTES + 3 * (2 + 19);
    let mut mold = MoldSession::new(session(), limit, 100);
    let messages = itch_messages(7);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let packets = mold.publish(&refs).unwrap();
    assert_eq!(packets.len(), 3, "3 + 3 + 1 messages");
    let mut seen = Vec::new();
    let mut expected_seq = 1;
    for packet in &packets {
        assert!(packet.len() <= limit);
        let decoded = decode_packet(packet).unwrap();
        assert_eq!(decoded.seq, expected_seq);
        expected_seq += decoded.count as u64;
        seen.extend(decoded.messages.iter().map(|m| m.to_vec()));
    }
    assert_eq!(seen, messages);
    assert_eq!(mold.next_seq(), 8);
    assert_eq!(
        decode_packet(&mold.heartbeat()).unwrap().seq,
        8,
        "heartbeat carries the next sequence number"
    );
    let too_big = vec![b'x'; limit];
    assert!(matches!(
        mold.publish(&[&too_big]),
        Err(MoldError::BadMessageLength { .. })
    ));
}

#[test]
fn retransmission_answers_from_the_bounded_store() {
    let mut mold = MoldSession::new(session(), 1400, 5);
    let messages = itch_messages(8);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    mold.publish(&refs).unwrap();
    // Only messages 4..=8 are kept.
    assert_eq!(mold.store().oldest_seq(), 4);
    assert_eq!(mold.store().len(), 5);
    let answer = mold.answer(&request(&session(), 5, 2)).unwrap();
    let decoded = decode_packet(&answer).unwrap();
    assert_eq!(decoded.seq, 5);
    assert_eq!(decoded.messages, vec![&messages[4][..], &messages[5][..]]);
    assert!(matches!(
        mold.answer(&request(&session(), 3, 1)),
        Err(MoldError::NotAvailable {
            oldest_stored: 4,
            ..
        })
    ));
    assert!(matches!(
        mold.answer(&request(&session(), 8, 2)),
        Err(MoldError::NotAvailable { next_seq: 9, .. })
    ));
    assert_eq!(
        mold.answer(&request(&Session::new("OTHER").unwrap(), 5, 1)),
        Err(MoldError::BadSession)
    );
}

#[test]
fn store_restarts_on_a_gap_and_handles_zero_capacity() {
    let mut store = RetransmitStore::new(3);
    store.push(1, b"a");
    store.push(2, b"b");
    store.push(10, b"j");
    assert_eq!(store.oldest_seq(), 10);
    assert_eq!(store.get(10, 1).unwrap(), vec![b"j".as_slice()]);
    assert!(store.get(2, 1).is_err());
    let mut none = RetransmitStore::new(0);
    none.push(1, b"a");
    assert!(none.is_empty());
    assert!(none.get(1, 1).is_err());
    assert!(store.get(u64::MAX, 2).is_err(), "no overflow");
}
