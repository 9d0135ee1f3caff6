//! L1 market data: best bid and offer with their sizes, and the last
//! trade. Derived on demand from the L2 book in `l2.rs`, so the two can
//! never disagree.

use brokerx_engine::Side;

/// The best level of one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Price in 1/10000 currency units.
    pub price: u64,
    /// Open shares at the price.
    pub qty: u64,
    /// Resting orders at the price.
    pub orders: u32,
}

/// The most recent execution of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastTrade {
    /// Price in 1/10000 currency units.
    pub price: u64,
    /// Shares.
    pub qty: u64,
    /// Side of the incoming order.
    pub aggressor: Side,
    pub match_id: u64,
}

/// Top of book of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1 {
    pub bid: Option<Quote>,
    pub ask: Option<Quote>,
    pub last_trade: Option<LastTrade>,
    pub halted: bool,
}

impl L1 {
    /// Ask minus bid, when both sides are present.
    pub fn spread(&self) -> Option<u64> {
        match (self.bid, self.ask) {
            (Some(bid), Some(ask)) => ask.price.checked_sub(bid.price),
            _ => None,
        }
    }
}
