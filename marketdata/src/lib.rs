//! BrokerX market data: L1/L2 books kept from engine events, and a
//! deterministic Nasdaq TotalView-ITCH 5.0 feed derived from the same
//! events. See README.md for the invariants and NOTES.md for the mapping.

pub mod feed;
pub mod file;
pub mod itch;
pub mod l1;
pub mod l2;
pub mod mold;
pub mod publisher;

pub use feed::{
    CommandBatch, CommandBatcher, DirectoryEntry, FeedDeriver, FeedError, FeedOrder,
    SymbolDirectory, NS_PER_DAY,
};
pub use itch::{Alpha, Header, ItchError, Message, Mpid, Stock, SystemEventCode, TradingState};
pub use l1::{LastTrade, Quote, L1};
pub use l2::{Level, MarketData, L2};
pub use publisher::{ItchConfig, ItchPublisher, ItchStatsSnapshot, PublisherError};
