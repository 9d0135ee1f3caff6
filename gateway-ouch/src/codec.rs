//! OUCH 4.2 message codec: the three inbound order messages and the six
//! outbound ones this gateway sends. Big-endian integers, alpha fields
//! left-justified and space padded. Decoding checks only the message type
//! and its length; field validation lives in `book.rs`, where a bad field
//! becomes a Rejected message.

use std::fmt;

pub const TOKEN_BYTES: usize = 14;
pub const STOCK_BYTES: usize = 8;
pub const FIRM_BYTES: usize = 4;

/// Client-chosen order token, unique per session per day.
pub type Token = [u8; TOKEN_BYTES];
/// Stock symbol, space padded.
pub type Stock = [u8; STOCK_BYTES];

pub const ENTER_ORDER_BYTES: usize = 49;
pub const REPLACE_ORDER_BYTES: usize = 47;
pub const CANCEL_ORDER_BYTES: usize = 19;
pub const SYSTEM_EVENT_BYTES: usize = 10;
pub const ACCEPTED_BYTES: usize = 66;
pub const REPLACED_BYTES: usize = 80;
pub const CANCELED_BYTES: usize = 28;
pub const EXECUTED_BYTES: usize = 40;
pub const REJECTED_BYTES: usize = 24;

/// Time in force values (seconds) with a meaning in OUCH 4.2.
pub const TIF_IOC_SECONDS: u32 = 0;
pub const TIF_MARKET_HOURS: u32 = 99_998;
pub const TIF_SYSTEM_HOURS: u32 = 99_999;

/// Enter Order 'O'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnterOrder {
    pub token: Token,
    /// 'B' buy, 'S' sell ('T', 'E' short sales are refused).
    pub side: u8,
    pub shares: u32,
    pub stock: Stock,
    /// 1/10000 currency units.
    pub price: u32,
    pub tif_seconds: u32,
    pub firm: [u8; FIRM_BYTES],
    pub display: u8,
    pub capacity: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: u32,
    pub cross_type: u8,
    pub customer_type: u8,
}

/// Replace Order 'U'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceOrder {
    pub existing_token: Token,
    pub replacement_token: Token,
    /// New open quantity.
    pub shares: u32,
    pub price: u32,
    pub tif_seconds: u32,
    pub display: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: u32,
}

/// Cancel Order 'X': `shares` 0 cancels all, else is the new open quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    pub token: Token,
    pub shares: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    Enter(EnterOrder),
    Replace(ReplaceOrder),
    Cancel(CancelOrder),
}

/// Accepted 'A' (and the body of Replaced 'U').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Nanoseconds since midnight.
    pub timestamp_ns: u64,
    pub token: Token,
    pub side: u8,
    pub shares: u32,
    pub stock: Stock,
    pub price: u32,
    pub tif_seconds: u32,
    pub firm: [u8; FIRM_BYTES],
    pub display: u8,
    /// The engine order id.
    pub order_reference_number: u64,
    pub capacity: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: u32,
    pub cross_type: u8,
    /// 'L' live, 'D' dead.
    pub order_state: u8,
    pub bbo_weight: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// 'S': 'S' start of day, 'E' end of day.
    SystemEvent {
        timestamp_ns: u64,
        event_code: u8,
    },
    Accepted(Accepted),
    /// 'U': the replacement order, then the token it replaced.
    Replaced {
        order: Accepted,
        previous_token: Token,
    },
    /// 'C'
    Canceled {
        timestamp_ns: u64,
        token: Token,
        decrement_shares: u32,
        reason: u8,
    },
    /// 'E'
    Executed {
        timestamp_ns: u64,
        token: Token,
        executed_shares: u32,
        execution_price: u32,
        /// 'A' added liquidity, 'R' removed.
        liquidity_flag: u8,
        match_number: u64,
    },
    /// 'J'
    Rejected {
        timestamp_ns: u64,
        token: Token,
        reason: u8,
    },
}

/// Why a message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    Empty,
    UnknownType(u8),
    WrongLength {
        message_type: u8,
        length_bytes: usize,
        expected_bytes: usize,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Empty => write!(f, "empty message"),
            CodecError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            CodecError::WrongLength {
                message_type,
                length_bytes,
                expected_bytes,
            } => write!(
                f,
                "message '{}' of {length_bytes} bytes, expected {expected_bytes}",
                *message_type as char
            ),
        }
    }
}

impl std::error::Error for CodecError {}

/// Left-justified, space-padded alpha field.
pub fn alpha<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut field = [b' '; N];
    let len = text.len().min(N);
    field[..len].copy_from_slice(&text[..len]);
    field
}

/// Big-endian field reader over a message already checked for length.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        // Skip the type byte.
        Reader { bytes, at: 1 }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0u8; N];
        // Lengths are checked before reading; a short slice yields zeros
        // rather than a panic.
        if let Some(slice) = self.bytes.get(self.at..self.at + N) {
            field.copy_from_slice(slice);
        }
        self.at += N;
        field
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
}

fn check(bytes: &[u8], expected_bytes: usize) -> Result<(), CodecError> {
    if bytes.len() == expected_bytes {
        Ok(())
    } else {
        Err(CodecError::WrongLength {
            message_type: bytes[0],
            length_bytes: bytes.len(),
            expected_bytes,
        })
    }
}

/// The order token of an inbound message that failed to decode, when its
/// bytes are there: used to address the Rejected message.
pub fn token_hint(bytes: &[u8]) -> Token {
    let rest = bytes.get(1..).unwrap_or(&[]);
    alpha(&rest[..rest.len().min(TOKEN_BYTES)])
}

impl Inbound {
    pub fn decode(bytes: &[u8]) -> Result<Inbound, CodecError> {
        let kind = *bytes.first().ok_or(CodecError::Empty)?;
        let mut r = Reader::new(bytes);
        Ok(match kind {
            b'O' => {
                check(bytes, ENTER_ORDER_BYTES)?;
                Inbound::Enter(EnterOrder {
                    token: r.take(),
                    side: r.u8(),
                    shares: r.u32(),
                    stock: r.take(),
                    price: r.u32(),
                    tif_seconds: r.u32(),
                    firm: r.take(),
                    display: r.u8(),
                    capacity: r.u8(),
                    intermarket_sweep: r.u8(),
                    minimum_quantity: r.u32(),
                    cross_type: r.u8(),
                    customer_type: r.u8(),
                })
            }
            b'U' => {
                check(bytes, REPLACE_ORDER_BYTES)?;
                Inbound::Replace(ReplaceOrder {
                    existing_token: r.take(),
                    replacement_token: r.take(),
                    shares: r.u32(),
                    price: r.u32(),
                    tif_seconds: r.u32(),
                    display: r.u8(),
                    intermarket_sweep: r.u8(),
                    minimum_quantity: r.u32(),
                })
            }
            b'X' => {
                check(bytes, CANCEL_ORDER_BYTES)?;
                Inbound::Cancel(CancelOrder {
                    token: r.take(),
                    shares: r.u32(),
                })
            }
            other => return Err(CodecError::UnknownType(other)),
        })
    }

    /// Encodes the message (clients and tests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Inbound::Enter(m) => {
                out.push(b'O');
                out.extend_from_slice(&m.token);
                out.push(m.side);
                out.extend_from_slice(&m.shares.to_be_bytes());
                out.extend_from_slice(&m.stock);
                out.extend_from_slice(&m.price.to_be_bytes());
                out.extend_from_slice(&m.tif_seconds.to_be_bytes());
                out.extend_from_slice(&m.firm);
                out.extend_from_slice(&[m.display, m.capacity, m.intermarket_sweep]);
                out.extend_from_slice(&m.minimum_quantity.to_be_bytes());
                out.extend_from_slice(&[m.cross_type, m.customer_type]);
            }
            Inbound::Replace(m) => {
                out.push(b'U');
                out.extend_from_slice(&m.existing_token);
                out.extend_from_slice(&m.replacement_token);
                out.extend_from_slice(&m.shares.to_be_bytes());
                out.extend_from_slice(&m.price.to_be_bytes());
                out.extend_from_slice(&m.tif_seconds.to_be_bytes());
                out.extend_from_slice(&[m.display, m.intermarket_sweep]);
                out.extend_from_slice(&m.minimum_quantity.to_be_bytes());
            }
            Inbound::Cancel(m) => {
                out.push(b'X');
                out.extend_from_slice(&m.token);
                out.extend_from_slice(&m.shares.to_be_bytes());
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTER_ORDER_BYTES);
        self.encode(&mut out);
        out
    }
}

fn encode_accepted(a: &Accepted, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.timestamp_ns.to_be_bytes());
    out.extend_from_slice(&a.token);
    out.push(a.side);
    out.extend_from_slice(&a.shares.to_be_bytes());
    out.extend_from_slice(&a.stock);
    out.extend_from_slice(&a.price.to_be_bytes());
    out.extend_from_slice(&a.tif_seconds.to_be_bytes());
    out.extend_from_slice(&a.firm);
    out.push(a.display);
    out.extend_from_slice(&a.order_reference_number.to_be_bytes());
    out.extend_from_slice(&[a.capacity, a.intermarket_sweep]);
    out.extend_from_slice(&a.minimum_quantity.to_be_bytes());
    out.extend_from_slice(&[a.cross_type, a.order_state]);
}

fn decode_accepted(r: &mut Reader) -> Accepted {
    Accepted {
        timestamp_ns: r.u64(),
        token: r.take(),
        side: r.u8(),
        shares: r.u32(),
        stock: r.take(),
        price: r.u32(),
        tif_seconds: r.u32(),
        firm: r.take(),
        display: r.u8(),
        order_reference_number: r.u64(),
        capacity: r.u8(),
        intermarket_sweep: r.u8(),
        minimum_quantity: r.u32(),
        cross_type: r.u8(),
        order_state: r.u8(),
        bbo_weight: 0,
    }
}

impl Outbound {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Outbound::SystemEvent {
                timestamp_ns,
                event_code,
            } => {
                out.push(b'S');
                out.extend_from_slice(&timestamp_ns.to_be_bytes());
                out.push(*event_code);
            }
            Outbound::Accepted(a) => {
                out.push(b'A');
                encode_accepted(a, out);
                out.push(a.bbo_weight);
            }
            Outbound::Replaced {
                order,
                previous_token,
            } => {
                out.push(b'U');
                encode_accepted(order, out);
                out.extend_from_slice(previous_token);
                out.push(order.bbo_weight);
            }
            Outbound::Canceled {
                timestamp_ns,
                token,
                decrement_shares,
                reason,
            } => {
                out.push(b'C');
                out.extend_from_slice(&timestamp_ns.to_be_bytes());
                out.extend_from_slice(token);
                out.extend_from_slice(&decrement_shares.to_be_bytes());
                out.push(*reason);
            }
            Outbound::Executed {
                timestamp_ns,
                token,
                executed_shares,
                execution_price,
                liquidity_flag,
                match_number,
            } => {
                out.push(b'E');
                out.extend_from_slice(&timestamp_ns.to_be_bytes());
                out.extend_from_slice(token);
                out.extend_from_slice(&executed_shares.to_be_bytes());
                out.extend_from_slice(&execution_price.to_be_bytes());
                out.push(*liquidity_flag);
                out.extend_from_slice(&match_number.to_be_bytes());
            }
            Outbound::Rejected {
                timestamp_ns,
                token,
                reason,
            } => {
                out.push(b'J');
                out.extend_from_slice(&timestamp_ns.to_be_bytes());
                out.extend_from_slice(token);
                out.push(*reason);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPLACED_BYTES);
        self.encode(&mut out);
        out
    }

    /// Decodes an outbound message (clients, tests, and the store scan).
    pub fn decode(bytes: &[u8]) -> Result<Outbound, CodecError> {
        let kind = *bytes.first().ok_or(CodecError::Empty)?;
        let mut r = Reader::new(bytes);
        Ok(match kind {
            b'S' => {
                check(bytes, SYSTEM_EVENT_BYTES)?;
                Outbound::SystemEvent {
                    timestamp_ns: r.u64(),
                    event_code: r.u8(),
                }
            }
            b'A' => {
                check(bytes, ACCEPTED_BYTES)?;
                let mut order = decode_accepted(&mut r);
                order.bbo_weight = r.u8();
                Outbound::Accepted(order)
            }
            b'U' => {
                check(bytes, REPLACED_BYTES)?;
                let mut order = decode_accepted(&mut r);
                let previous_token = r.take();
                order.bbo_weight = r.u8();
                Outbound::Replaced {
                    order,
                    previous_token,
                }
            }
            b'C' => {
                check(bytes, CANCELED_BYTES)?;
                Outbound::Canceled {
                    timestamp_ns: r.u64(),
                    token: r.take(),
                    decrement_shares: r.u32(),
                    reason: r.u8(),
                }
            }
            b'E' => {
                check(bytes, EXECUTED_BYTES)?;
                Outbound::Executed {
                    timestamp_ns: r.u64(),
                    token: r.take(),
                    executed_shares: r.u32(),
                    execution_price: r.u32(),
                    liquidity_flag: r.u8(),
                    match_number: r.u64(),
                }
            }
            b'J' => {
                check(bytes, REJECTED_BYTES)?;
                Outbound::Rejected {
                    timestamp_ns: r.u64(),
                    token: r.take(),
                    reason: r.u8(),
                }
            }
            other => return Err(CodecError::UnknownType(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: [u8; 8] = [0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05];
    const TS_NS: u64 = 0x01_0203_0405;

    fn token(text: &[u8]) -> Token {
        alpha(text)
    }

    fn golden_inbound(message: Inbound, golden: Vec<u8>, expected_bytes: usize) {
        assert_eq!(golden.len(), expected_bytes);
        assert_eq!(message.to_bytes(), golden, "{message:?}");
        assert_eq!(Inbound::decode(&golden), Ok(message));
    }

    fn golden_outbound(message: Outbound, golden: Vec<u8>, expected_bytes: usize) {
        assert_eq!(golden.len(), expected_bytes);
        assert_eq!(message.to_bytes(), golden, "{message:?}");
        assert_eq!(Outbound::decode(&golden), Ok(message));
    }

    fn enter() -> EnterOrder {
        EnterOrder {
            token: token(b"TOKEN1"),
            side: b'B',
            shares: 100,
            stock: alpha(b"AAPL"),
            price: 1_500_000,
            tif_seconds: TIF_SYSTEM_HOURS,
            firm: alpha(b"FIRM"),
            display: b'Y',
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            customer_type: b'R',
        }
    }

    fn accepted() -> Accepted {
        Accepted {
            timestamp_ns: TS_NS,
            token: token(b"TOKEN1"),
            side: b'S',
            shares: 300,
            stock: alpha(b"MSFT"),
            price: 2_000_000,
            tif_seconds: TIF_MARKET_HOURS,
            firm: alpha(b"FIRM"),
            display: b'Y',
            order_reference_number: 0x0000_0001_0000_0007,
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            order_state: b'L',
            bbo_weight: b' ',
        }
    }

    fn accepted_body() -> Vec<u8> {
        [
            &TS[..],
            b"TOKEN1        ",
            b"S",
            &300u32.to_be_bytes(),
            b"MSFT    ",
            &2_000_000u32.to_be_bytes(),
            &99_998u32.to_be_bytes(),
            b"FIRM",
            b"Y",
            &[0, 0, 0, 1, 0, 0, 0, 7],
            b"AN",
            &[0, 0, 0, 0],
            b"NL",
        ]
        .concat()
    }

    #[test]
    fn golden_enter_order() {
        let golden = [
            &b"OTOKEN1        B"[..],
            &[0, 0, 0, 100],
            b"AAPL    ",
            &[0x00, 0x16, 0xe3, 0x60],
            &[0x00, 0x01, 0x86, 0x9f],
            b"FIRMYAN",
            &[0, 0, 0, 0],
            b"NR",
        ]
        .concat();
        golden_inbound(Inbound::Enter(enter()), golden, ENTER_ORDER_BYTES);
    }

    #[test]
    fn golden_replace_order() {
        let message = Inbound::Replace(ReplaceOrder {
            existing_token: token(b"OLD"),
            replacement_token: token(b"NEW"),
            shares: 50,
            price: 1_500_100,
            tif_seconds: 0,
            display: b'Y',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
        });
        let golden = [
            &b"UOLD           NEW           "[..],
            &50u32.to_be_bytes(),
            &1_500_100u32.to_be_bytes(),
            &[0, 0, 0, 0],
            b"YN",
            &[0, 0, 0, 0],
        ]
        .concat();
        golden_inbound(message, golden, REPLACE_ORDER_BYTES);
    }

    #[test]
    fn golden_cancel_order() {
        let message = Inbound::Cancel(CancelOrder {
            token: token(b"TOKEN1"),
            shares: 0x0102,
        });
        golden_inbound(
            message,
            b"XTOKEN1        \x00\x00\x01\x02".to_vec(),
            CANCEL_ORDER_BYTES,
        );
    }

    #[test]
    fn golden_system_event() {
        let message = Outbound::SystemEvent {
            timestamp_ns: TS_NS,
            event_code: b'S',
        };
        golden_outbound(message, [&b"S"[..], &TS, b"S"].concat(), SYSTEM_EVENT_BYTES);
    }

    #[test]
    fn golden_accepted() {
        let golden = [&b"A"[..], &accepted_body(), b" "].concat();
        golden_outbound(Outbound::Accepted(accepted()), golden, ACCEPTED_BYTES);
    }

    #[test]
    fn golden_replaced() {
        let golden = [&b"U"[..], &accepted_body(), b"PREVIOUS      ", b" "].concat();
        let message = Outbound::Replaced {
            order: accepted(),
            previous_token: token(b"PREVIOUS"),
        };
        golden_outbound(message, golden, REPLACED_BYTES);
    }

    #[test]
    fn golden_canceled() {
        let message = Outbound::Canceled {
            timestamp_ns: TS_NS,
            token: token(b"TOKEN1"),
            decrement_shares: 70,
            reason: b'U',
        };
        let golden = [&b"C"[..], &TS, b"TOKEN1        ", &[0, 0, 0, 70], b"U"].concat();
        golden_outbound(message, golden, CANCELED_BYTES);
    }

    #[test]
    fn golden_executed() {
        let message = Outbound::Executed {
            timestamp_ns: TS_NS,
            token: token(b"TOKEN1"),
            executed_shares: 30,
            execution_price: 1_500_000,
            liquidity_flag: b'A',
            match_number: 9,
        };
        let golden = [
            &b"E"[..],
            &TS,
            b"TOKEN1        ",
            &[0, 0, 0, 30],
            &[0x00, 0x16, 0xe3, 0x60],
            b"A",
            &[0, 0, 0, 0, 0, 0, 0, 9],
        ]
        .concat();
        golden_outbound(message, golden, EXECUTED_BYTES);
    }

    #[test]
    fn golden_rejected() {
        let message = Outbound::Rejected {
            timestamp_ns: TS_NS,
            token: token(b"TOKEN1"),
            reason: b'X',
        };
        let golden = [&b"J"[..], &TS, b"TOKEN1        ", b"X"].concat();
        golden_outbound(message, golden, REJECTED_BYTES);
    }

    #[test]
    fn structural_errors() {
        let enter = Inbound::Enter(enter()).to_bytes();
        let cases: Vec<(Vec<u8>, CodecError)> = vec![
            (vec![], CodecError::Empty),
            (b"Q123".to_vec(), CodecError::UnknownType(b'Q')),
            (
                enter[..48].to_vec(),
                CodecError::WrongLength {
                    message_type: b'O',
                    length_bytes: 48,
                    expected_bytes: 49,
                },
            ),
            (
                [&enter[..], b"x"].concat(),
                CodecError::WrongLength {
                    message_type: b'O',
                    length_bytes: 50,
                    expected_bytes: 49,
                },
            ),
            (
                b"X".to_vec(),
                CodecError::WrongLength {
                    message_type: b'X',
                    length_bytes: 1,
                    expected_bytes: 19,
                },
            ),
            (
                b"U".to_vec(),
                CodecError::WrongLength {
                    message_type: b'U',
                    length_bytes: 1,
                    expected_bytes: 47,
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Inbound::decode(&bytes), Err(expected), "{bytes:?}");
        }
        assert_eq!(token_hint(b"X"), [b' '; 14]);
        assert_eq!(&token_hint(b"OABC")[..4], b"ABC ");
    }
}
