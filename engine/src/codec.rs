//! The binary layout of commands and events (format version 1).
//!
//! Every record starts with a version byte and a kind byte, followed by
//! the kind's fields in declaration order, each fixed width and
//! little-endian. There is no padding and no variable-length field, so a
//! record's length follows from its kind. The tables are in
//! `docs/CODEC.md`. Decoding checks every enum value and boolean, so a
//! record that decodes is a valid command or event; it never panics.

use crate::{
    CancelReason, Command, Event, OrderId, OrderType, RejectCode, SelfTradePrevention,
    SequencedCommand, SymbolSpec, TimeInForce,
};
use brokerx_risk::{AccountId, Limits, Side, SymbolId};

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    UnsupportedVersion(u8),
    UnknownKind(u8),
    /// The input ended inside a record.
    Truncated,
    /// A field holds a value outside its domain.
    InvalidField(&'static str),
    /// Bytes left over after a whole record.
    TrailingBytes(usize),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            CodecError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            CodecError::Truncated => write!(f, "record truncated"),
            CodecError::InvalidField(name) => write!(f, "invalid value in field {name}"),
            CodecError::TrailingBytes(n) => write!(f, "{n} bytes after the record"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A cursor over input bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Length of the whole input.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let end = self.position.checked_add(N).ok_or(CodecError::Truncated)?;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or(CodecError::Truncated)?;
        self.position = end;
        Ok(slice.try_into().expect("length checked"))
    }
}

/// A fixed-width field.
pub trait Field: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(reader: &mut Reader) -> Result<Self, CodecError>;
}

macro_rules! int_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(reader: &mut Reader) -> Result<Self, CodecError> {
                Ok(<$ty>::from_le_bytes(reader.take()?))
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64);

impl Field for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn get(reader: &mut Reader) -> Result<Self, CodecError> {
        match u8::get(reader)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::InvalidField("bool")),
        }
    }
}

macro_rules! newtype_field {
    ($($ty:ident($inner:ty)),*) => {$(
        impl Field for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                self.0.put(out);
            }
            fn get(reader: &mut Reader) -> Result<Self, CodecError> {
                Ok($ty(<$inner>::get(reader)?))
            }
        }
    )*};
}
newtype_field!(AccountId(u32), SymbolId(u32), OrderId(u64));

macro_rules! u8_enum_field {
    ($($ty:ident),*) => {$(
        impl Field for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                out.push(*self as u8);
            }
            fn get(reader: &mut Reader) -> Result<Self, CodecError> {
                $ty::from_u8(u8::get(reader)?).ok_or(CodecError::InvalidField(stringify!($ty)))
            }
        }
    )*};
}
u8_enum_field!(
    Side,
    OrderType,
    TimeInForce,
    SelfTradePrevention,
    CancelReason
);

impl Field for RejectCode {
    fn put(&self, out: &mut Vec<u8>) {
        self.code().put(out);
    }
    fn get(reader: &mut Reader) -> Result<Self, CodecError> {
        RejectCode::from_code(u16::get(reader)?).ok_or(CodecError::InvalidField("RejectCode"))
    }
}

/// `Option<T>` is a presence byte (0 or 1) and then `T`, zero when absent,
/// so the layout stays fixed.
impl<T: Field + Default> Field for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        self.is_some().put(out);
        match self {
            Some(value) => value.put(out),
            None => T::default().put(out),
        }
    }
    fn get(reader: &mut Reader) -> Result<Self, CodecError> {
        let present = bool::get(reader)?;
        let value = T::get(reader)?;
        Ok(present.then_some(value))
    }
}

macro_rules! struct_field {
    ($ty:ident { $($field:ident: $fty:ty),* }) => {
        impl Field for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                $( self.$field.put(out); )*
            }
            fn get(reader: &mut Reader) -> Result<Self, CodecError> {
                Ok($ty { $( $field: <$fty>::get(reader)?, )* })
            }
        }
    };
}
struct_field!(Limits {
    max_order_qty: u64,
    max_order_notional: u64,
    max_open_orders: u32
});
struct_field!(SymbolSpec {
    tick_size: u64,
    lot_size: u64,
    reference_price: u64,
    band_bps: u32,
    maker_fee_per_share: u64,
    taker_fee_per_share: u64
});

/// Kind byte, then the variant's fields in order.
macro_rules! wire_enum {
    ($ty:ident { $($kind:literal => $variant:ident { $($field:ident),* }),* $(,)? }) => {
        impl $ty {
            /// The record's kind byte.
            pub fn kind(&self) -> u8 {
                match self { $( $ty::$variant { .. } => $kind, )* }
            }

            fn put_fields(&self, out: &mut Vec<u8>) {
                match self {
                    $( $ty::$variant { $($field),* } => {
                        $( $field.put(out); )*
                    } )*
                }
            }

            fn get_fields(kind: u8, reader: &mut Reader) -> Result<Self, CodecError> {
                match kind {
                    $( $kind => Ok($ty::$variant { $( $field: Field::get(reader)?, )* }), )*
                    other => Err(CodecError::UnknownKind(other)),
                }
            }
        }
    };
}

wire_enum!(Command {
    1 => CreateAccount { account, limits, self_trade },
    2 => SetLimits { account, limits },
    3 => DepositCash { account, amount, tag },
    4 => WithdrawCash { account, amount, tag },
    5 => DepositShares { account, symbol, qty, tag },
    6 => WithdrawShares { account, symbol, qty, tag },
    7 => AddSymbol { symbol, spec },
    8 => SetReferencePrice { symbol, price },
    9 => Halt { symbol },
    10 => Resume { symbol },
    11 => NewOrder { account, symbol, side, order_type, tif, price, qty, self_trade, tag },
    12 => Cancel { account, order_id, tag },
    13 => Replace { account, order_id, price, qty, tag },
    14 => MassCancelAccount { account, symbol, tag },
    15 => MassCancelSymbol { symbol, tag },
    16 => SuspendAccount { account },
    17 => ReinstateAccount { account },
    18 => EndOfDay {},
    19 => ReplaceTotal { account, order_id, price, qty, tag },
});

wire_enum!(Event {
    1 => Rejected { account, order_id, code, tag },
    2 => AccountCreated { account, limits },
    3 => LimitsSet { account, limits },
    4 => CashMoved { account, amount, credit, available, tag },
    5 => SharesMoved { account, symbol, qty, credit, available, tag },
    6 => SymbolAdded { symbol, band_low, band_high },
    7 => ReferencePriceSet { symbol, price, band_low, band_high },
    8 => TradingStatus { symbol, halted },
    9 => OrderAccepted { order_id, account, symbol, side, order_type, tif, price, qty, tag },
    10 => OrderReplaced { order_id, account, symbol, side, price, qty, priority_kept, tag },
    11 => OrderCancelled { order_id, account, symbol, side, qty, reason, tag },
    12 => OrderExpired { order_id, account, symbol, side, qty },
    13 => Trade {
        match_id, symbol, price, qty, aggressor, maker_order, maker_account, maker_leaves,
        maker_fee, taker_order, taker_account, taker_leaves, taker_fee
    },
    14 => BookLevel { symbol, side, price, qty, orders },
    15 => MassCancelled { account, symbol, count, tag },
    16 => AccountSuspended { account, cancelled },
    17 => AccountReinstated { account },
    18 => DayEnded { expired },
});

fn check_version(reader: &mut Reader) -> Result<(), CodecError> {
    match u8::get(reader)? {
        FORMAT_VERSION => Ok(()),
        other => Err(CodecError::UnsupportedVersion(other)),
    }
}

/// Appends a sequenced command: version, kind, seq, timestamp, fields.
pub fn encode_command(command: &SequencedCommand, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.push(command.command.kind());
    command.seq.put(out);
    command.timestamp_ns.put(out);
    command.command.put_fields(out);
}

/// Decodes one sequenced command from the front of `bytes`; returns it
/// and the bytes it used.
pub fn decode_command_prefix(bytes: &[u8]) -> Result<(SequencedCommand, usize), CodecError> {
    let mut reader = Reader::new(bytes);
    check_version(&mut reader)?;
    let kind = u8::get(&mut reader)?;
    let seq = u64::get(&mut reader)?;
    let timestamp_ns = u64::get(&mut reader)?;
    let command = Command::get_fields(kind, &mut reader)?;
    let sequenced = SequencedCommand {
        seq,
        timestamp_ns,
        command,
    };
    Ok((sequenced, reader.position()))
}

/// Decodes exactly one sequenced command.
pub fn decode_command(bytes: &[u8]) -> Result<SequencedCommand, CodecError> {
    let (command, used) = decode_command_prefix(bytes)?;
    whole(bytes, used)?;
    Ok(command)
}

/// Appends an event: version, kind, fields.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.push(event.kind());
    event.put_fields(out);
}

/// Decodes one event from the front of `bytes`.
pub fn decode_event_prefix(bytes: &[u8]) -> Result<(Event, usize), CodecError> {
    let mut reader = Reader::new(bytes);
    check_version(&mut reader)?;
    let kind = u8::get(&mut reader)?;
    let event = Event::get_fields(kind, &mut reader)?;
    Ok((event, reader.position()))
}

/// Decodes exactly one event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let (event, used) = decode_event_prefix(bytes)?;
    whole(bytes, used)?;
    Ok(event)
}

fn whole(bytes: &[u8], used: usize) -> Result<(), CodecError> {
    match bytes.len() - used {
        0 => Ok(()),
        extra => Err(CodecError::TrailingBytes(extra)),
    }
}

#[cfg(test)]
mod tests;
