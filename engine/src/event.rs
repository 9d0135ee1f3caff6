//! Events: the only outputs of the state machine.
//!
//! For one command the engine emits, in this order: the acknowledgement
//! (`OrderAccepted`, `OrderReplaced`, ...) or a `Rejected`; then, per
//! price level the order trades through, each self-trade cancel and each
//! `Trade` in priority order followed by one `BookLevel` for that level;
//! then the fate of the remainder (`BookLevel` where it rests, or
//! `OrderCancelled`). An accepted limit order rests with its open quantity
//! unless an `OrderCancelled` for it follows among the same command's events.

use crate::{OrderId, OrderType, RejectCode, TimeInForce};
use brokerx_risk::{AccountId, Limits, Side, SymbolId};

/// Why an order left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner asked.
    Requested = 1,
    /// The unfilled part of an IOC or market order.
    ImmediateRemainder = 2,
    /// A fill-or-kill order could not fill completely.
    FillOrKill = 3,
    /// Self-trade prevention.
    SelfTrade = 4,
    /// A mass cancel by account or by symbol.
    MassCancel = 5,
    /// The account's kill switch.
    KillSwitch = 6,
}

impl CancelReason {
    pub fn from_u8(value: u8) -> Option<CancelReason> {
        match value {
            1 => Some(CancelReason::Requested),
            2 => Some(CancelReason::ImmediateRemainder),
            3 => Some(CancelReason::FillOrKill),
            4 => Some(CancelReason::SelfTrade),
            5 => Some(CancelReason::MassCancel),
            6 => Some(CancelReason::KillSwitch),
            _ => None,
        }
    }
}

/// An output of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Rejected {
        account: AccountId,
        /// The order a cancel or replace named, else `OrderId::NONE`.
        order_id: OrderId,
        code: RejectCode,
        tag: u64,
    },
    AccountCreated {
        account: AccountId,
        limits: Limits,
    },
    LimitsSet {
        account: AccountId,
        limits: Limits,
    },
    /// A deposit or withdrawal of cash (`credit` false for a withdrawal).
    CashMoved {
        account: AccountId,
        amount: u64,
        credit: bool,
        available: u64,
        tag: u64,
    },
    /// A transfer of shares in or out.
    SharesMoved {
        account: AccountId,
        symbol: SymbolId,
        qty: u64,
        credit: bool,
        available: u64,
        tag: u64,
    },
    SymbolAdded {
        symbol: SymbolId,
        band_low: u64,
        band_high: u64,
    },
    ReferencePriceSet {
        symbol: SymbolId,
        price: u64,
        band_low: u64,
        band_high: u64,
    },
    TradingStatus {
        symbol: SymbolId,
        halted: bool,
    },
    OrderAccepted {
        order_id: OrderId,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: u64,
        qty: u64,
        tag: u64,
    },
    OrderReplaced {
        order_id: OrderId,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        price: u64,
        qty: u64,
        priority_kept: bool,
        tag: u64,
    },
    OrderCancelled {
        order_id: OrderId,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        /// Open quantity removed.
        qty: u64,
        reason: CancelReason,
        tag: u64,
    },
    OrderExpired {
        order_id: OrderId,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        qty: u64,
    },
    /// One execution; carries both sides.
    Trade {
        match_id: u64,
        symbol: SymbolId,
        price: u64,
        qty: u64,
        aggressor: Side,
        maker_order: OrderId,
        maker_account: AccountId,
        maker_leaves: u64,
        maker_fee: u64,
        taker_order: OrderId,
        taker_account: AccountId,
        taker_leaves: u64,
        taker_fee: u64,
    },
    /// Aggregated depth at one price after a change (L2 delta).
    BookLevel {
        symbol: SymbolId,
        side: Side,
        price: u64,
        qty: u64,
        orders: u32,
    },
    MassCancelled {
        account: Option<AccountId>,
        symbol: Option<SymbolId>,
        count: u32,
        tag: u64,
    },
    AccountSuspended {
        account: AccountId,
        cancelled: u32,
    },
    AccountReinstated {
        account: AccountId,
    },
    DayEnded {
        expired: u32,
    },
}
