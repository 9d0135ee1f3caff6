//! Codec speed on a typical NewOrderSingle: framing (BodyLength and
//! CheckSum checks), parsing into borrowed fields, the FIX 4.4 dictionary
//! validation the session runs on every message, the gateway's own field
//! checks (OrderBook::on_message, which builds the engine command), and
//! encoding an ExecutionReport-sized message.
//!
//! `cargo bench -p brokerx-gateway-fix --bench codec`

use brokerx_engine::{AccountId, SymbolId};
use brokerx_gateway_fix::codec::{self, Frame};
use brokerx_gateway_fix::orders::{OrderBook, SymbolInfo};
use brokerx_gateway_fix::{dictionary, InboundMessage};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn new_order_single() -> Vec<u8> {
    let fields: Vec<(u32, &[u8])> = vec![
        (34, b"1234"),
        (49, b"ALICEFIX"),
        (52, b"20261122-10:15:30.123"),
        (56, b"BRKX"),
        (11, b"ORD-000001234"),
        (21, b"1"),
        (55, b"AAPL"),
        (54, b"1"),
        (60, b"20261122-10:15:30.123"),
        (38, b"100"),
        (40, b"2"),
        (44, b"190.25"),
        (59, b"0"),
    ];
    codec::encode(b"FIX.4.4", b"D", &[], &fields)
}

fn bench(c: &mut Criterion) {
    let msg = new_order_single();
    c.bench_function("frame+parse NewOrderSingle", |b| {
        b.iter(|| {
            let Frame::Message { len } = codec::next_frame(black_box(&msg), 65536) else {
                panic!("framed")
            };
            let fields = codec::parse(&msg[..len]).expect("parses");
            black_box(fields.len())
        })
    });
    c.bench_function("frame+parse+validate NewOrderSingle", |b| {
        b.iter(|| {
            let Frame::Message { len } = codec::next_frame(black_box(&msg), 65536) else {
                panic!("framed")
            };
            let fields = codec::parse(&msg[..len]).expect("parses");
            black_box(dictionary::validate(&fields).is_ok())
        })
    });
    let symbols = vec![SymbolInfo {
        id: SymbolId(0),
        name: "AAPL".into(),
        tick: 100,
        lot: 1,
    }];
    c.bench_function("parse+validate+to engine command", |b| {
        let mut book = OrderBook::new(AccountId(1), symbols.clone(), 0);
        let mut n = 0u64;
        b.iter(|| {
            let fields = codec::parse(black_box(&msg)).expect("parses");
            dictionary::validate(&fields).expect("valid");
            // A fresh ClOrdID each time, as a real flow has.
            n += 1;
            let cl = n.to_string().into_bytes();
            let mut fields = fields;
            for f in fields.iter_mut() {
                if f.tag == 11 {
                    f.value = &cl;
                }
            }
            let m = InboundMessage {
                msg_type: b"D",
                seq: 1,
                fields: &fields,
            };
            black_box(book.on_message(&m, 0).command)
        })
    });
    let body: Vec<(u32, &[u8])> = vec![
        (34, b"1234"),
        (49, b"BRKX"),
        (52, b"20261122-10:15:30.123"),
        (56, b"ALICEFIX"),
        (37, b"4294967296"),
        (11, b"ORD-000001234"),
        (17, b"1234-1"),
        (150, b"F"),
        (39, b"1"),
        (55, b"AAPL"),
        (54, b"1"),
        (38, b"100"),
        (40, b"2"),
        (44, b"190.25"),
        (32, b"40"),
        (31, b"190.25"),
        (151, b"60"),
        (14, b"40"),
        (6, b"190.25"),
        (60, b"20261122-10:15:30.123"),
    ];
    c.bench_function("encode ExecutionReport", |b| {
        b.iter(|| black_box(codec::encode(b"FIX.4.4", b"8", &[], black_box(&body))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
