//! Stable reject codes for the whole core.
//!
//! Ranges by stage, as in exchange-core: 1xx risk (mirrors
//! `brokerx_risk::RejectCode`), 2xx matching and reference data. Gateways
//! own 3xx and up. The numbers are part of the wire format: never
//! renumber, only add.

use brokerx_risk::RejectCode as RiskCode;

macro_rules! reject_codes {
    ($($name:ident = $value:literal, $text:literal;)*) => {
        /// Why the core refused a command.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum RejectCode {
            $($name = $value,)*
        }

        impl RejectCode {
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$name,)*];

            pub fn from_code(code: u16) -> Option<RejectCode> {
                match code {
                    $($value => Some(RejectCode::$name),)*
                    _ => None,
                }
            }

            /// Short stable text for logs and reject messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(RejectCode::$name => $text,)*
                }
            }
        }
    };
}

reject_codes! {
    UnknownAccount = 101, "unknown account";
    AccountSuspended = 102, "account suspended";
    InsufficientFunds = 103, "insufficient funds";
    InsufficientShares = 104, "insufficient shares (no naked short selling)";
    MaxOrderQuantityExceeded = 105, "order quantity above account limit";
    MaxOrderNotionalExceeded = 106, "order notional above account limit";
    MaxOpenOrdersExceeded = 107, "too many open orders for account";
    AccountExists = 108, "account already exists";
    InvalidAmount = 109, "amount must be positive";
    AmountOverflow = 110, "amount overflows the ledger";
    AccountIdOutOfRange = 111, "account id out of range";
    AccountNotSuspended = 112, "account is not suspended";
    UnknownSymbol = 201, "unknown symbol";
    SymbolHalted = 202, "symbol is halted";
    InvalidPrice = 203, "price must be a positive multiple of the tick size";
    InvalidQuantity = 204, "quantity must be a positive multiple of the lot size";
    PriceOutsideBand = 205, "price outside the symbol's price band";
    UnknownOrder = 206, "unknown or closed order";
    NotOrderOwner = 207, "order belongs to another account";
    SymbolExists = 208, "symbol already exists";
    InvalidSymbolSpec = 209, "invalid symbol reference data";
    BookCapacityExceeded = 210, "order capacity of the engine exhausted";
    SymbolNotHalted = 211, "symbol is not halted";
    SymbolAlreadyHalted = 212, "symbol is already halted";
}

impl RejectCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}

impl From<RiskCode> for RejectCode {
    fn from(code: RiskCode) -> RejectCode {
        RejectCode::from_code(code.code()).expect("every risk code has an engine code")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_risk_code_maps_to_the_same_number() {
        for code in RiskCode::ALL {
            assert_eq!(RejectCode::from(code).code(), code.code());
        }
    }

    #[test]
    fn codes_round_trip_and_sit_in_their_stage_range() {
        for code in RejectCode::ALL {
            assert_eq!(RejectCode::from_code(code.code()), Some(*code));
            assert!((101..300).contains(&code.code()));
        }
        assert_eq!(RejectCode::from_code(0), None);
        assert_eq!(RejectCode::from_code(199), None);
    }
}
