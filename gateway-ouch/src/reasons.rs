//! Reason characters: engine reject codes and cancel reasons mapped to the
//! OUCH 4.2 Rejected and Canceled reason bytes, in one table each, plus the
//! reasons the gateway itself gives for input it refuses before the engine.
//! NOTES.md documents the same tables; the tests below pin them.

use brokerx_engine::{CancelReason, RejectCode};

/// OUCH 4.2 Rejected reasons used here (standard letters).
pub mod reject {
    pub const HALTED: u8 = b'H';
    /// Shares exceed the configured safety threshold.
    pub const SHARES_OVER_THRESHOLD: u8 = b'Z';
    pub const INVALID_STOCK: u8 = b'S';
    pub const INVALID_DISPLAY: u8 = b'D';
    /// Requested firm not authorized (here: the account may not trade).
    pub const FIRM_NOT_AUTHORIZED: u8 = b'L';
    /// Order not allowed at this time.
    pub const NOT_ALLOWED_NOW: u8 = b'R';
    pub const INVALID_PRICE: u8 = b'X';
    pub const INVALID_MINIMUM_QUANTITY: u8 = b'N';
    pub const OTHER: u8 = b'O';
    /// BrokerX extensions, lower case so they never collide with the
    /// upper-case standard letters; clients may treat them as 'O'.
    pub const INVALID_SHARES: u8 = b'q';
    pub const INVALID_SIDE: u8 = b's';
    pub const INVALID_TIME_IN_FORCE: u8 = b't';
    pub const DUPLICATE_TOKEN: u8 = b'd';
    pub const UNKNOWN_TOKEN: u8 = b'u';
    pub const INSUFFICIENT_FUNDS: u8 = b'f';
    pub const INSUFFICIENT_SHARES: u8 = b'p';
    pub const MALFORMED: u8 = b'm';
    /// The engine's inbound queue was full: retry.
    pub const BUSY: u8 = b'b';
}

/// OUCH 4.2 Canceled reasons used here.
pub mod cancel {
    pub const USER_REQUESTED: u8 = b'U';
    pub const IMMEDIATE_OR_CANCEL: u8 = b'I';
    pub const TIMEOUT: u8 = b'T';
    pub const SUPERVISORY: u8 = b'S';
    pub const SELF_MATCH_PREVENTION: u8 = b'Q';
}

/// The one table from engine reject codes to OUCH reasons.
pub fn reject_reason(code: RejectCode) -> u8 {
    use reject::*;
    match code {
        RejectCode::UnknownAccount => FIRM_NOT_AUTHORIZED,
        RejectCode::AccountSuspended => NOT_ALLOWED_NOW,
        RejectCode::InsufficientFunds => INSUFFICIENT_FUNDS,
        RejectCode::InsufficientShares => INSUFFICIENT_SHARES,
        RejectCode::MaxOrderQuantityExceeded => SHARES_OVER_THRESHOLD,
        RejectCode::MaxOrderNotionalExceeded => SHARES_OVER_THRESHOLD,
        RejectCode::MaxOpenOrdersExceeded => NOT_ALLOWED_NOW,
        RejectCode::AccountExists => OTHER,
        RejectCode::InvalidAmount => OTHER,
        RejectCode::AmountOverflow => OTHER,
        RejectCode::AccountIdOutOfRange => FIRM_NOT_AUTHORIZED,
        RejectCode::AccountNotSuspended => OTHER,
        RejectCode::UnknownSymbol => INVALID_STOCK,
        RejectCode::SymbolHalted => HALTED,
        RejectCode::InvalidPrice => INVALID_PRICE,
        RejectCode::InvalidQuantity => INVALID_SHARES,
        RejectCode::PriceOutsideBand => INVALID_PRICE,
        RejectCode::UnknownOrder => UNKNOWN_TOKEN,
        RejectCode::NotOrderOwner => UNKNOWN_TOKEN,
        RejectCode::SymbolExists => OTHER,
        RejectCode::InvalidSymbolSpec => OTHER,
        RejectCode::BookCapacityExceeded => NOT_ALLOWED_NOW,
        RejectCode::SymbolNotHalted => OTHER,
        RejectCode::SymbolAlreadyHalted => OTHER,
        // The enum is non-exhaustive: a code added later reads as "other"
        // until this table learns it (a test lists every known code).
        _ => OTHER,
    }
}

/// Engine cancel reasons to OUCH Canceled reasons.
pub fn cancel_reason(reason: CancelReason) -> u8 {
    match reason {
        CancelReason::Requested => cancel::USER_REQUESTED,
        CancelReason::ImmediateRemainder => cancel::IMMEDIATE_OR_CANCEL,
        CancelReason::FillOrKill => cancel::IMMEDIATE_OR_CANCEL,
        CancelReason::SelfTrade => cancel::SELF_MATCH_PREVENTION,
        // Mass cancels come from the user's own request or from
        // cancel-on-disconnect, which the user opted into.
        CancelReason::MassCancel => cancel::USER_REQUESTED,
        CancelReason::KillSwitch => cancel::SUPERVISORY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_reject_code_has_a_deliberate_reason() {
        let expected: &[(u16, u8)] = &[
            (101, b'L'),
            (102, b'R'),
            (103, b'f'),
            (104, b'p'),
            (105, b'Z'),
            (106, b'Z'),
            (107, b'R'),
            (108, b'O'),
            (109, b'O'),
            (110, b'O'),
            (111, b'L'),
            (112, b'O'),
            (201, b'S'),
            (202, b'H'),
            (203, b'X'),
            (204, b'q'),
            (205, b'X'),
            (206, b'u'),
            (207, b'u'),
            (208, b'O'),
            (209, b'O'),
            (210, b'R'),
            (211, b'O'),
            (212, b'O'),
        ];
        // The table covers every code the engine knows: a new code fails
        // here until it is mapped on purpose.
        assert_eq!(expected.len(), RejectCode::ALL.len());
        for (number, reason) in expected {
            let code = RejectCode::from_code(*number).unwrap();
            assert_eq!(reject_reason(code), *reason, "{code:?}");
        }
    }

    #[test]
    fn cancel_reasons() {
        let table = [
            (CancelReason::Requested, b'U'),
            (CancelReason::ImmediateRemainder, b'I'),
            (CancelReason::FillOrKill, b'I'),
            (CancelReason::SelfTrade, b'Q'),
            (CancelReason::MassCancel, b'U'),
            (CancelReason::KillSwitch, b'S'),
        ];
        for (reason, expected) in table {
            assert_eq!(cancel_reason(reason), expected, "{reason:?}");
        }
    }
}
