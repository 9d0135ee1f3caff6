//! Stable reject codes of the risk stage (range 100..=199).
//!
//! The numbers are part of the wire format (journal, gateways): never
//! renumber a variant, only add new ones.

/// Why the risk stage refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum RejectCode {
    UnknownAccount = 101,
    AccountSuspended = 102,
    InsufficientFunds = 103,
    InsufficientShares = 104,
    MaxOrderQuantityExceeded = 105,
    MaxOrderNotionalExceeded = 106,
    MaxOpenOrdersExceeded = 107,
    AccountExists = 108,
    InvalidAmount = 109,
    AmountOverflow = 110,
    AccountIdOutOfRange = 111,
    AccountNotSuspended = 112,
}

impl RejectCode {
    pub const ALL: [RejectCode; 12] = [
        RejectCode::UnknownAccount,
        RejectCode::AccountSuspended,
        RejectCode::InsufficientFunds,
        RejectCode::InsufficientShares,
        RejectCode::MaxOrderQuantityExceeded,
        RejectCode::MaxOrderNotionalExceeded,
        RejectCode::MaxOpenOrdersExceeded,
        RejectCode::AccountExists,
        RejectCode::InvalidAmount,
        RejectCode::AmountOverflow,
        RejectCode::AccountIdOutOfRange,
        RejectCode::AccountNotSuspended,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<RejectCode> {
        RejectCode::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// A short, stable, human-readable name for logs and reject texts.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::UnknownAccount => "unknown account",
            RejectCode::AccountSuspended => "account suspended",
            RejectCode::InsufficientFunds => "insufficient funds",
            RejectCode::InsufficientShares => "insufficient shares (no naked short selling)",
            RejectCode::MaxOrderQuantityExceeded => "order quantity above account limit",
            RejectCode::MaxOrderNotionalExceeded => "order notional above account limit",
            RejectCode::MaxOpenOrdersExceeded => "too many open orders for account",
            RejectCode::AccountExists => "account already exists",
            RejectCode::InvalidAmount => "amount must be positive",
            RejectCode::AmountOverflow => "amount overflows the ledger",
            RejectCode::AccountIdOutOfRange => "account id out of range",
            RejectCode::AccountNotSuspended => "account is not suspended",
        }
    }
}
