//! Accounts and pre-trade risk for BrokerX.
//!
//! This crate owns every unit of cash and every share in the system. The
//! matching engine asks it to *reserve* before an order may reach a book, to
//! *settle* exactly what traded after each fill, and to *release* what an
//! order no longer needs (cancel, expiry, immediate-or-cancel remainder).
//!
//! Money is integer minor units (the same units as prices: price × quantity
//! is money), quantities are integer shares. Nothing here reads a clock,
//! draws randomness or iterates a hash map, so the ledger is deterministic.
//!
//! The ledger keeps two totals, `cash_supply` and one share supply per
//! symbol, that change only through deposits and withdrawals. Conservation
//! (`check_invariants`) says that the sum over all accounts of available
//! plus reserved, plus collected fees, equals that supply.

mod codes;
mod ledger;
mod snapshot;

pub use codes::RejectCode;
pub use ledger::{Account, Balance, Ledger, Limits, OrderTicket, Settlement};

/// Dense account identifier. Account ids index a vector, so they are
/// bounded by [`MAX_ACCOUNTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AccountId(pub u32);

/// Dense symbol identifier, bounded by [`MAX_SYMBOLS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SymbolId(pub u32);

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Side {
    Buy = 1,
    Sell = 2,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    pub fn from_u8(value: u8) -> Option<Side> {
        match value {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Upper bound on account ids; the ledger refuses larger ones.
pub const MAX_ACCOUNTS: u32 = 1 << 22;
/// Upper bound on symbol ids.
pub const MAX_SYMBOLS: u32 = 1 << 16;
