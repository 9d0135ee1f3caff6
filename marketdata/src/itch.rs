//! ITCH 5.0 encoder: the subset of Nasdaq TotalView-ITCH 5.0 messages the
//! BrokerX feed publishes, written byte for byte to the spec layout.
//!
//! Every message starts with the common header: message type (1 byte),
//! stock locate (u16), tracking number (u16) and a 6-byte big-endian
//! timestamp in nanoseconds since midnight. Integers are big-endian; alpha
//! fields are ASCII, left-justified and padded with spaces; prices are
//! `Price(4)`: a u32 with four implied decimals, which is exactly the
//! BrokerX price unit (1/10000 of a currency unit).

use brokerx_risk::Side;
use std::fmt;

/// Largest timestamp the 6-byte field holds.
pub const MAX_TIMESTAMP_NS: u64 = (1 << 48) - 1;

/// Why a value cannot be put into an ITCH field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItchError {
    /// An alpha field is longer than its width.
    AlphaTooLong { width: usize, len: usize },
    /// An alpha field holds a byte that is not printable ASCII.
    AlphaNotPrintable { byte: u8 },
    /// The timestamp does not fit 6 bytes.
    TimestampTooLarge { timestamp_ns: u64 },
}

impl fmt::Display for ItchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItchError::AlphaTooLong { width, len } => {
                write!(f, "alpha field of {len} bytes exceeds its width {width}")
            }
            ItchError::AlphaNotPrintable { byte } => {
                write!(f, "alpha field byte {byte:#04x} is not printable ASCII")
            }
            ItchError::TimestampTooLarge { timestamp_ns } => {
                write!(f, "timestamp {timestamp_ns} ns does not fit 6 bytes")
            }
        }
    }
}

impl std::error::Error for ItchError {}

/// A fixed-width alpha field: printable ASCII, left-justified, space padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alpha<const N: usize>([u8; N]);

/// An 8-character stock symbol.
pub type Stock = Alpha<8>;
/// A 4-character market participant id (or trading action reason).
pub type Mpid = Alpha<4>;

impl<const N: usize> Alpha<N> {
    /// All spaces.
    pub const BLANK: Alpha<N> = Alpha([b' '; N]);

    /// Pads `text` with spaces; fails if it is too long or not printable.
    pub fn new(text: &str) -> Result<Alpha<N>, ItchError> {
        let bytes = text.as_bytes();
        if bytes.len() > N {
            return Err(ItchError::AlphaTooLong {
                width: N,
                len: bytes.len(),
            });
        }
        if let Some(&byte) = bytes.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(ItchError::AlphaNotPrintable { byte });
        }
        let mut field = [b' '; N];
        field[..bytes.len()].copy_from_slice(bytes);
        Ok(Alpha(field))
    }

    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// The text without its padding.
    pub fn trimmed(&self) -> &str {
        // Only printable ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.0)
            .unwrap_or("")
            .trim_end_matches(' ')
    }
}

impl<const N: usize> fmt::Debug for Alpha<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", std::str::from_utf8(&self.0).unwrap_or("?"))
    }
}

/// Fields every message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 0 for messages not tied to a stock.
    pub stock_locate: u16,
    pub tracking_number: u16,
    /// Nanoseconds since midnight; must fit 48 bits.
    pub timestamp_ns: u64,
}

/// System event codes ('S' message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemEventCode {
    StartOfMessages,
    StartOfSystemHours,
    StartOfMarketHours,
    EndOfMarketHours,
    EndOfSystemHours,
    EndOfMessages,
}

impl SystemEventCode {
    pub fn code(self) -> u8 {
        match self {
            SystemEventCode::StartOfMessages => b'O',
            SystemEventCode::StartOfSystemHours => b'S',
            SystemEventCode::StartOfMarketHours => b'Q',
            SystemEventCode::EndOfMarketHours => b'M',
            SystemEventCode::EndOfSystemHours => b'E',
            SystemEventCode::EndOfMessages => b'C',
        }
    }
}

/// Trading states ('H' message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradingState {
    Halted,
    Paused,
    QuotationOnly,
    Trading,
}

impl TradingState {
    pub fn code(self) -> u8 {
        match self {
            TradingState::Halted => b'H',
            TradingState::Paused => b'P',
            TradingState::QuotationOnly => b'Q',
            TradingState::Trading => b'T',
        }
    }
}

/// Body of a Stock Directory ('R') message. Single-byte codes are the
/// spec's raw ASCII codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockDirectory {
    pub stock: Stock,
    pub market_category: u8,
    pub financial_status: u8,
    pub round_lot_size: u32,
    pub round_lots_only: bool,
    pub issue_classification: u8,
    pub issue_sub_type: [u8; 2],
    pub authenticity: u8,
    pub short_sale_threshold: u8,
    pub ipo_flag: u8,
    pub luld_reference_price_tier: u8,
    pub etp_flag: u8,
    pub etp_leverage_factor: u32,
    pub inverse_indicator: bool,
}

impl StockDirectory {
    /// The directory entry BrokerX publishes: a live ('P') common stock
    /// ('C', sub-type "Z " not applicable), other indicators unavailable.
    pub fn brokerx(stock: Stock, round_lot_size: u32) -> StockDirectory {
        StockDirectory {
            stock,
            market_category: b' ',
            financial_status: b' ',
            round_lot_size,
            round_lots_only: false,
            issue_classification: b'C',
            issue_sub_type: *b"Z ",
            authenticity: b'P',
            short_sale_threshold: b' ',
            ipo_flag: b' ',
            luld_reference_price_tier: b' ',
            etp_flag: b' ',
            etp_leverage_factor: 0,
            inverse_indicator: false,
        }
    }
}

/// One ITCH message. Shares are u32 and prices `Price(4)` u32, as on the
/// wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// 'S', 12 bytes.
    SystemEvent {
        header: Header,
        event: SystemEventCode,
    },
    /// 'R', 39 bytes.
    StockDirectory {
        header: Header,
        directory: StockDirectory,
    },
    /// 'H', 25 bytes.
    TradingAction {
        header: Header,
        stock: Stock,
        state: TradingState,
        reason: Mpid,
    },
    /// 'A' (36 bytes), or 'F' (40 bytes) when `attribution` is set.
    AddOrder {
        header: Header,
        order_ref: u64,
        side: Side,
        shares: u32,
        stock: Stock,
        price: u32,
        attribution: Option<Mpid>,
    },
    /// 'E', 31 bytes.
    OrderExecuted {
        header: Header,
        order_ref: u64,
        executed_shares: u32,
        match_number: u64,
    },
    /// 'C', 36 bytes.
    OrderExecutedWithPrice {
        header: Header,
        order_ref: u64,
        executed_shares: u32,
        match_number: u64,
        printable: bool,
        price: u32,
    },
    /// 'X', 23 bytes.
    OrderCancel {
        header: Header,
        order_ref: u64,
        cancelled_shares: u32,
    },
    /// 'D', 19 bytes.
    OrderDelete { header: Header, order_ref: u64 },
    /// 'U', 35 bytes.
    OrderReplace {
        header: Header,
        original_ref: u64,
        new_ref: u64,
        shares: u32,
        price: u32,
    },
    /// 'P', 44 bytes.
    Trade {
        header: Header,
        order_ref: u64,
        side: Side,
        shares: u32,
        stock: Stock,
        price: u32,
        match_number: u64,
    },
}

fn side_code(side: Side) -> u8 {
    match side {
        Side::Buy => b'B',
        Side::Sell => b'S',
    }
}

fn yes_no(flag: bool) -> u8 {
    if flag {
        b'Y'
    } else {
        b'N'
    }
}

impl Message {
    pub fn header(&self) -> &Header {
        match self {
            Message::SystemEvent { header, .. }
            | Message::StockDirectory { header, .. }
            | Message::TradingAction { header, .. }
            | Message::AddOrder { header, .. }
            | Message::OrderExecuted { header, .. }
            | Message::OrderExecutedWithPrice { header, .. }
            | Message::OrderCancel { header, .. }
            | Message::OrderDelete { header, .. }
            | Message::OrderReplace { header, .. }
            | Message::Trade { header, .. } => header,
        }
    }

    /// The message type byte.
    pub fn message_type(&self) -> u8 {
        match self {
            Message::SystemEvent { .. } => b'S',
            Message::StockDirectory { .. } => b'R',
            Message::TradingAction { .. } => b'H',
            Message::AddOrder {
                attribution: None, ..
            } => b'A',
            Message::AddOrder {
                attribution: Some(_),
                ..
            } => b'F',
            Message::OrderExecuted { .. } => b'E',
            Message::OrderExecutedWithPrice { .. } => b'C',
            Message::OrderCancel { .. } => b'X',
            Message::OrderDelete { .. } => b'D',
            Message::OrderReplace { .. } => b'U',
            Message::Trade { .. } => b'P',
        }
    }

    /// Encoded length in bytes (without any framing).
    pub fn len_bytes(&self) -> usize {
        match self.message_type() {
            b'S' => 12,
            b'R' => 39,
            b'H' => 25,
            b'A' => 36,
            b'F' => 40,
            b'E' => 31,
            b'C' => 36,
            b'X' => 23,
            b'D' => 19,
            b'U' => 35,
            _ => 44, // 'P'
        }
    }

    /// Appends the encoded message to `out`; returns its length. On error
    /// nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, ItchError> {
        let header = self.header();
        if header.timestamp_ns > MAX_TIMESTAMP_NS {
            return Err(ItchError::TimestampTooLarge {
                timestamp_ns: header.timestamp_ns,
            });
        }
        let start = out.len();
        out.push(self.message_type());
        out.extend_from_slice(&header.stock_locate.to_be_bytes());
        out.extend_from_slice(&header.tracking_number.to_be_bytes());
        out.extend_from_slice(&header.timestamp_ns.to_be_bytes()[2..]);
        match self {
            Message::SystemEvent { event, .. } => out.push(event.code()),
            Message::StockDirectory { directory: d, .. } => {
                out.extend_from_slice(d.stock.as_bytes());
                out.push(d.market_category);
                out.push(d.financial_status);
                out.extend_from_slice(&d.round_lot_size.to_be_bytes());
                out.push(yes_no(d.round_lots_only));
                out.push(d.issue_classification);
                out.extend_from_slice(&d.issue_sub_type);
                out.push(d.authenticity);
                out.push(d.short_sale_threshold);
                out.push(d.ipo_flag);
                out.push(d.luld_reference_price_tier);
                out.push(d.etp_flag);
                out.extend_from_slice(&d.etp_leverage_factor.to_be_bytes());
                out.push(yes_no(d.inverse_indicator));
            }
            Message::TradingAction {
                stock,
                state,
                reason,
                ..
            } => {
                out.extend_from_slice(stock.as_bytes());
                out.push(state.code());
                out.push(b' '); // reserved
                out.extend_from_slice(reason.as_bytes());
            }
            Message::AddOrder {
                order_ref,
                side,
                shares,
                stock,
                price,
                attribution,
                ..
            } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
                out.push(side_code(*side));
                out.extend_from_slice(&shares.to_be_bytes());
                out.extend_from_slice(stock.as_bytes());
                out.extend_from_slice(&price.to_be_bytes());
                if let Some(mpid) = attribution {
                    out.extend_from_slice(mpid.as_bytes());
                }
            }
            Message::OrderExecuted {
                order_ref,
                executed_shares,
                match_number,
                ..
            } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
                out.extend_from_slice(&executed_shares.to_be_bytes());
                out.extend_from_slice(&match_number.to_be_bytes());
            }
            Message::OrderExecutedWithPrice {
                order_ref,
                executed_shares,
                match_number,
                printable,
                price,
                ..
            } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
                out.extend_from_slice(&executed_shares.to_be_bytes());
                out.extend_from_slice(&match_number.to_be_bytes());
                out.push(yes_no(*printable));
                out.extend_from_slice(&price.to_be_bytes());
            }
            Message::OrderCancel {
                order_ref,
                cancelled_shares,
                ..
            } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
                out.extend_from_slice(&cancelled_shares.to_be_bytes());
            }
            Message::OrderDelete { order_ref, .. } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
            }
            Message::OrderReplace {
                original_ref,
                new_ref,
                shares,
                price,
                ..
            } => {
                out.extend_from_slice(&original_ref.to_be_bytes());
                out.extend_from_slice(&new_ref.to_be_bytes());
                out.extend_from_slice(&shares.to_be_bytes());
                out.extend_from_slice(&price.to_be_bytes());
            }
            Message::Trade {
                order_ref,
                side,
                shares,
                stock,
                price,
                match_number,
                ..
            } => {
                out.extend_from_slice(&order_ref.to_be_bytes());
                out.push(side_code(*side));
                out.extend_from_slice(&shares.to_be_bytes());
                out.extend_from_slice(stock.as_bytes());
                out.extend_from_slice(&price.to_be_bytes());
                out.extend_from_slice(&match_number.to_be_bytes());
            }
        }
        let written = out.len() - start;
        debug_assert_eq!(written, self.len_bytes());
        Ok(written)
    }

    /// The encoded message as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ItchError> {
        let mut out = Vec::with_capacity(self.len_bytes());
        self.encode(&mut out)?;
        Ok(out)
    }
}
