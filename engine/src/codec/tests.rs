//! Round trips of every command and event kind, and a table of malformed
//! inputs that must decode to a clear error.

use super::*;
use proptest::prelude::*;

/// splitmix64: a tiny seeded generator for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn account(&mut self) -> AccountId {
        AccountId(self.u32())
    }
    fn symbol(&mut self) -> SymbolId {
        SymbolId(self.u32())
    }
    fn order(&mut self) -> OrderId {
        OrderId(self.next())
    }
    fn side(&mut self) -> Side {
        self.pick(&[Side::Buy, Side::Sell])
    }
    fn limits(&mut self) -> Limits {
        Limits {
            max_order_qty: self.next(),
            max_order_notional: self.next(),
            max_open_orders: self.u32(),
        }
    }
    fn stp(&mut self) -> SelfTradePrevention {
        self.pick(&[
            SelfTradePrevention::AccountDefault,
            SelfTradePrevention::CancelNewest,
            SelfTradePrevention::CancelOldest,
            SelfTradePrevention::CancelBoth,
        ])
    }
}

fn command(rng: &mut Rng, kind: u8) -> Command {
    match kind {
        1 => Command::CreateAccount {
            account: rng.account(),
            limits: rng.limits(),
            self_trade: rng.stp(),
        },
        2 => Command::SetLimits {
            account: rng.account(),
            limits: rng.limits(),
        },
        3 => Command::DepositCash {
            account: rng.account(),
            amount: rng.next(),
            tag: rng.next(),
        },
        4 => Command::WithdrawCash {
            account: rng.account(),
            amount: rng.next(),
            tag: rng.next(),
        },
        5 => Command::DepositShares {
            account: rng.account(),
            symbol: rng.symbol(),
            qty: rng.next(),
            tag: rng.next(),
        },
        6 => Command::WithdrawShares {
            account: rng.account(),
            symbol: rng.symbol(),
            qty: rng.next(),
            tag: rng.next(),
        },
        7 => Command::AddSymbol {
            symbol: rng.symbol(),
            spec: SymbolSpec {
                tick_size: rng.next(),
                lot_size: rng.next(),
                reference_price: rng.next(),
                band_bps: rng.u32(),
                maker_fee_per_share: rng.next(),
                taker_fee_per_share: rng.next(),
            },
        },
        8 => Command::SetReferencePrice {
            symbol: rng.symbol(),
            price: rng.next(),
        },
        9 => Command::Halt {
            symbol: rng.symbol(),
        },
        10 => Command::Resume {
            symbol: rng.symbol(),
        },
        11 => Command::NewOrder {
            account: rng.account(),
            symbol: rng.symbol(),
            side: rng.side(),
            order_type: rng.pick(&[OrderType::Limit, OrderType::Market]),
            tif: rng.pick(&[
                TimeInForce::Day,
                TimeInForce::Gtc,
                TimeInForce::Ioc,
                TimeInForce::Fok,
            ]),
            price: rng.next(),
            qty: rng.next(),
            self_trade: rng.stp(),
            tag: rng.next(),
        },
        12 => Command::Cancel {
            account: rng.account(),
            order_id: rng.order(),
            tag: rng.next(),
        },
        13 => Command::Replace {
            account: rng.account(),
            order_id: rng.order(),
            price: rng.next(),
            qty: rng.next(),
            tag: rng.next(),
        },
        14 => Command::MassCancelAccount {
            account: rng.account(),
            symbol: rng.bool().then(|| rng.symbol()),
            tag: rng.next(),
        },
        15 => Command::MassCancelSymbol {
            symbol: rng.symbol(),
            tag: rng.next(),
        },
        16 => Command::SuspendAccount {
            account: rng.account(),
        },
        17 => Command::ReinstateAccount {
            account: rng.account(),
        },
        18 => Command::EndOfDay,
        19 => Command::ReplaceTotal {
            account: rng.account(),
            order_id: rng.order(),
            price: rng.next(),
            qty: rng.next(),
            tag: rng.next(),
        },
        _ => unreachable!(),
    }
}

fn event(rng: &mut Rng, kind: u8) -> Event {
    match kind {
        1 => Event::Rejected {
            account: rng.account(),
            order_id: rng.order(),
            code: rng.pick(RejectCode::ALL),
            tag: rng.next(),
        },
        2 => Event::AccountCreated {
            account: rng.account(),
            limits: rng.limits(),
        },
        3 => Event::LimitsSet {
            account: rng.account(),
            limits: rng.limits(),
        },
        4 => Event::CashMoved {
            account: rng.account(),
            amount: rng.next(),
            credit: rng.bool(),
            available: rng.next(),
            tag: rng.next(),
        },
        5 => Event::SharesMoved {
            account: rng.account(),
            symbol: rng.symbol(),
            qty: rng.next(),
            credit: rng.bool(),
            available: rng.next(),
            tag: rng.next(),
        },
        6 => Event::SymbolAdded {
            symbol: rng.symbol(),
            band_low: rng.next(),
            band_high: rng.next(),
        },
        7 => Event::ReferencePriceSet {
            symbol: rng.symbol(),
            price: rng.next(),
            band_low: rng.next(),
            band_high: rng.next(),
        },
        8 => Event::TradingStatus {
            symbol: rng.symbol(),
            halted: rng.bool(),
        },
        9 => Event::OrderAccepted {
            order_id: rng.order(),
            account: rng.account(),
            symbol: rng.symbol(),
            side: rng.side(),
            order_type: rng.pick(&[OrderType::Limit, OrderType::Market]),
            tif: rng.pick(&[
                TimeInForce::Day,
                TimeInForce::Gtc,
                TimeInForce::Ioc,
                TimeInForce::Fok,
            ]),
            price: rng.next(),
            qty: rng.next(),
            tag: rng.next(),
        },
        10 => Event::OrderReplaced {
            order_id: rng.order(),
            account: rng.account(),
            symbol: rng.symbol(),
            side: rng.side(),
            price: rng.next(),
            qty: rng.next(),
            priority_kept: rng.bool(),
            tag: rng.next(),
        },
        11 => Event::OrderCancelled {
            order_id: rng.order(),
            account: rng.account(),
            symbol: rng.symbol(),
            side: rng.side(),
            qty: rng.next(),
            reason: CancelReason::from_u8(1 + (rng.next() % 6) as u8).unwrap(),
            tag: rng.next(),
        },
        12 => Event::OrderExpired {
            order_id: rng.order(),
            account: rng.account(),
            symbol: rng.symbol(),
            side: rng.side(),
            qty: rng.next(),
        },
        13 => Event::Trade {
            match_id: rng.next(),
            symbol: rng.symbol(),
            price: rng.next(),
            qty: rng.next(),
            aggressor: rng.side(),
            maker_order: rng.order(),
            maker_account: rng.account(),
            maker_leaves: rng.next(),
            maker_fee: rng.next(),
            taker_order: rng.order(),
            taker_account: rng.account(),
            taker_leaves: rng.next(),
            taker_fee: rng.next(),
        },
        14 => Event::BookLevel {
            symbol: rng.symbol(),
            side: rng.side(),
            price: rng.next(),
            qty: rng.next(),
            orders: rng.u32(),
        },
        15 => Event::MassCancelled {
            account: rng.bool().then(|| rng.account()),
            symbol: rng.bool().then(|| rng.symbol()),
            count: rng.u32(),
            tag: rng.next(),
        },
        16 => Event::AccountSuspended {
            account: rng.account(),
            cancelled: rng.u32(),
        },
        17 => Event::AccountReinstated {
            account: rng.account(),
        },
        18 => Event::DayEnded { expired: rng.u32() },
        _ => unreachable!(),
    }
}

#[test]
fn every_command_kind_round_trips_with_a_fixed_length() {
    let mut rng = Rng(1);
    for kind in 1..=19u8 {
        let mut length = None;
        for _ in 0..200 {
            let sequenced = SequencedCommand {
                seq: rng.next(),
                timestamp_ns: rng.next(),
                command: command(&mut rng, kind),
            };
            assert_eq!(sequenced.command.kind(), kind);
            let mut bytes = Vec::new();
            encode_command(&sequenced, &mut bytes);
            assert_eq!(bytes[0], FORMAT_VERSION);
            assert_eq!(bytes[1], kind);
            assert_eq!(decode_command(&bytes), Ok(sequenced));
            assert_eq!(
                *length.get_or_insert(bytes.len()),
                bytes.len(),
                "kind {kind} has a fixed length"
            );
        }
    }
}

#[test]
fn every_event_kind_round_trips_with_a_fixed_length() {
    let mut rng = Rng(2);
    for kind in 1..=18u8 {
        let mut length = None;
        for _ in 0..200 {
            let value = event(&mut rng, kind);
            let mut bytes = Vec::new();
            encode_event(&value, &mut bytes);
            assert_eq!(bytes[1], kind);
            assert_eq!(decode_event(&bytes), Ok(value));
            assert_eq!(
                *length.get_or_insert(bytes.len()),
                bytes.len(),
                "kind {kind} has a fixed length"
            );
        }
    }
}

#[test]
fn known_layout_of_a_new_order_is_little_endian() {
    let sequenced = SequencedCommand {
        seq: 0x0102,
        timestamp_ns: 7,
        command: Command::NewOrder {
            account: AccountId(3),
            symbol: SymbolId(4),
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 10_000,
            qty: 100,
            self_trade: SelfTradePrevention::CancelBoth,
            tag: 9,
        },
    };
    let mut bytes = Vec::new();
    encode_command(&sequenced, &mut bytes);
    let mut expected = vec![1u8, 11];
    expected.extend_from_slice(&0x0102u64.to_le_bytes());
    expected.extend_from_slice(&7u64.to_le_bytes());
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(&4u32.to_le_bytes());
    expected.extend_from_slice(&[2, 1, 2]);
    expected.extend_from_slice(&10_000u64.to_le_bytes());
    expected.extend_from_slice(&100u64.to_le_bytes());
    expected.push(3);
    expected.extend_from_slice(&9u64.to_le_bytes());
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), 54);
}

#[test]
fn malformed_inputs_give_clear_errors() {
    let mut good = Vec::new();
    encode_command(
        &SequencedCommand {
            seq: 1,
            timestamp_ns: 2,
            command: Command::Halt {
                symbol: SymbolId(1),
            },
        },
        &mut good,
    );
    let mut order = Vec::new();
    encode_command(
        &SequencedCommand {
            seq: 1,
            timestamp_ns: 2,
            command: command(&mut Rng(5), 11),
        },
        &mut order,
    );
    let with = |bytes: &[u8], at: usize, value: u8| {
        let mut copy = bytes.to_vec();
        copy[at] = value;
        copy
    };
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>, CodecError)> = vec![
        ("empty input", vec![], CodecError::Truncated),
        ("version only", vec![1], CodecError::Truncated),
        (
            "future version",
            with(&good, 0, 2),
            CodecError::UnsupportedVersion(2),
        ),
        (
            "version zero",
            with(&good, 0, 0),
            CodecError::UnsupportedVersion(0),
        ),
        (
            "unknown kind 0",
            with(&good, 1, 0),
            CodecError::UnknownKind(0),
        ),
        (
            "unknown kind 200",
            with(&good, 1, 200),
            CodecError::UnknownKind(200),
        ),
        (
            "cut in the header",
            good[..9].to_vec(),
            CodecError::Truncated,
        ),
        (
            "cut in a field",
            good[..good.len() - 1].to_vec(),
            CodecError::Truncated,
        ),
        ("trailing byte", trailing, CodecError::TrailingBytes(1)),
        (
            "side out of range",
            with(&order, 26, 9),
            CodecError::InvalidField("Side"),
        ),
        (
            "order type out of range",
            with(&order, 27, 0),
            CodecError::InvalidField("OrderType"),
        ),
        (
            "tif out of range",
            with(&order, 28, 5),
            CodecError::InvalidField("TimeInForce"),
        ),
        (
            "stp out of range",
            with(&order, 45, 4),
            CodecError::InvalidField("SelfTradePrevention"),
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(decode_command(&bytes), Err(expected), "{name}");
    }
    let mut reject = Vec::new();
    encode_event(
        &Event::Rejected {
            account: AccountId(1),
            order_id: OrderId(2),
            code: RejectCode::UnknownOrder,
            tag: 0,
        },
        &mut reject,
    );
    reject[14] = 0;
    reject[15] = 0;
    assert_eq!(
        decode_event(&reject),
        Err(CodecError::InvalidField("RejectCode"))
    );
    let mut status = Vec::new();
    encode_event(
        &Event::TradingStatus {
            symbol: SymbolId(1),
            halted: true,
        },
        &mut status,
    );
    *status.last_mut().unwrap() = 2;
    assert_eq!(decode_event(&status), Err(CodecError::InvalidField("bool")));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(command) = decode_command(&bytes) {
            let mut again = Vec::new();
            encode_command(&command, &mut again);
            prop_assert_eq!(again, bytes.clone());
        }
        if let Ok(event) = decode_event(&bytes) {
            let mut again = Vec::new();
            encode_event(&event, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }
}

/// The record lengths published in docs/CODEC.md match the code.
#[test]
fn documented_lengths_match_the_encoder() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CODEC.md"))
        .expect("docs/CODEC.md exists");
    let section = |title: &str| -> Vec<(u8, usize)> {
        let start = doc.find(title).expect("section present");
        doc[start..]
            .lines()
            .skip(1)
            .take_while(|line| !line.starts_with("## "))
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let kind = cells.get(1)?.parse().ok()?;
                let total = cells.get(cells.len().checked_sub(2)?)?.parse().ok()?;
                Some((kind, total))
            })
            .collect()
    };
    let commands = section("## Command kinds");
    let events = section("## Event kinds");
    assert_eq!(commands.len(), 19);
    assert_eq!(events.len(), 18);
    let mut rng = Rng(9);
    for (kind, total) in commands {
        let mut bytes = Vec::new();
        let sequenced = SequencedCommand {
            seq: 1,
            timestamp_ns: 1,
            command: command(&mut rng, kind),
        };
        encode_command(&sequenced, &mut bytes);
        assert_eq!(bytes.len(), total, "command kind {kind}");
    }
    for (kind, total) in events {
        let mut bytes = Vec::new();
        encode_event(&event(&mut rng, kind), &mut bytes);
        assert_eq!(bytes.len(), total, "event kind {kind}");
    }
}
