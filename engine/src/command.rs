//! Commands: the only inputs of the state machine.
//!
//! A gateway builds a [`Command`]; the sequencer wraps it in a
//! [`SequencedCommand`] with a sequence number and a timestamp. The engine
//! never reads a clock: the timestamp travels with the command.

use crate::OrderId;
use brokerx_risk::{AccountId, Limits, Side, SymbolId};

/// Limit or market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    Limit = 1,
    /// Executes against the book up to the symbol's protection price (the
    /// edge of its price band); any remainder is cancelled, never rested.
    Market = 2,
}

/// How long an order may live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeInForce {
    /// Rests until the next end-of-day command.
    Day = 1,
    /// Rests until cancelled.
    Gtc = 2,
    /// Immediate or cancel: the unfilled remainder is cancelled.
    Ioc = 3,
    /// Fill or kill: fills completely at once, or is cancelled untouched.
    Fok = 4,
}

/// What happens when an incoming order would trade with a resting order
/// of the same account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SelfTradePrevention {
    /// Use the account's default mode (only valid on an order).
    AccountDefault = 0,
    /// Cancel the incoming order's remainder.
    CancelNewest = 1,
    /// Cancel the resting order and keep matching.
    CancelOldest = 2,
    /// Cancel both.
    CancelBoth = 3,
}

macro_rules! u8_enum {
    ($ty:ident { $($value:literal => $variant:ident),* }) => {
        impl $ty {
            pub fn from_u8(value: u8) -> Option<$ty> {
                match value {
                    $($value => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

u8_enum!(OrderType { 1 => Limit, 2 => Market });
u8_enum!(TimeInForce { 1 => Day, 2 => Gtc, 3 => Ioc, 4 => Fok });
u8_enum!(SelfTradePrevention { 0 => AccountDefault, 1 => CancelNewest, 2 => CancelOldest, 3 => CancelBoth });

/// Reference data of one symbol. Prices and fees are minor currency units
/// per share; quantities are shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    pub tick_size: u64,
    pub lot_size: u64,
    pub reference_price: u64,
    /// Half-width of the price band, in basis points of the reference.
    pub band_bps: u32,
    pub maker_fee_per_share: u64,
    pub taker_fee_per_share: u64,
}

/// An input of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    CreateAccount {
        account: AccountId,
        limits: Limits,
        self_trade: SelfTradePrevention,
    },
    SetLimits {
        account: AccountId,
        limits: Limits,
    },
    DepositCash {
        account: AccountId,
        amount: u64,
        tag: u64,
    },
    WithdrawCash {
        account: AccountId,
        amount: u64,
        tag: u64,
    },
    DepositShares {
        account: AccountId,
        symbol: SymbolId,
        qty: u64,
        tag: u64,
    },
    WithdrawShares {
        account: AccountId,
        symbol: SymbolId,
        qty: u64,
        tag: u64,
    },
    AddSymbol {
        symbol: SymbolId,
        spec: SymbolSpec,
    },
    /// Moves the band centre (for example to the previous close).
    SetReferencePrice {
        symbol: SymbolId,
        price: u64,
    },
    Halt {
        symbol: SymbolId,
    },
    Resume {
        symbol: SymbolId,
    },
    NewOrder {
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        /// Limit price; ignored (should be 0) for a market order.
        price: u64,
        qty: u64,
        self_trade: SelfTradePrevention,
        /// Opaque correlation value of the sender, echoed in the reply.
        tag: u64,
    },
    Cancel {
        account: AccountId,
        order_id: OrderId,
        tag: u64,
    },
    /// Cancel/replace. `qty` is the new open quantity. Keeping the price
    /// and not raising the quantity keeps time priority.
    Replace {
        account: AccountId,
        order_id: OrderId,
        price: u64,
        qty: u64,
        tag: u64,
    },
    /// Cancel/replace with the order's new *total* quantity, what it has
    /// executed included (FIX OrderQty): the new open quantity is `qty`
    /// minus what the order has filled when the engine applies it, so a
    /// fill racing the request never leaves the order larger than asked.
    /// A positive `qty` at or below the filled quantity cancels the rest
    /// (`OrderCancelled`, reason `Requested`: what FIX prescribes when a
    /// replace and the fills that complete it cross); 0 is rejected
    /// (`InvalidQuantity`). Priority as for `Replace`.
    ReplaceTotal {
        account: AccountId,
        order_id: OrderId,
        price: u64,
        qty: u64,
        tag: u64,
    },
    /// Cancels the resting orders of an account (all its symbols, or one).
    MassCancelAccount {
        account: AccountId,
        symbol: Option<SymbolId>,
        tag: u64,
    },
    /// Cancels every resting order of a symbol (operator action).
    MassCancelSymbol {
        symbol: SymbolId,
        tag: u64,
    },
    /// Kill switch: block new orders and cancel every resting one.
    SuspendAccount {
        account: AccountId,
    },
    ReinstateAccount {
        account: AccountId,
    },
    /// Expires every DAY order.
    EndOfDay,
}

/// A command stamped by the sequencer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequencedCommand {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub command: Command,
}
