//! BrokerX OUCH 4.2 gateway: order entry over SoupBinTCP 3.0 for the
//! matching engine's pipeline. See README.md (contract) and NOTES.md
//! (reason and time-in-force tables, what is left out).
//!
//! - [`codec`]: OUCH message layouts, encode and decode.
//! - [`reasons`]: engine reject codes and cancel reasons to OUCH reasons.
//! - [`book`]: per-user token state, validation, command/event mapping.
//! - [`store`]: per-user append-only store of sequenced messages.
//! - [`day`]: trading days on disk (close, archive, reopen).
//! - [`regen`]: outputs the journal has and a store lacks, rebuilt at start.
//! - [`server`]: the TCP session server.

pub mod book;
pub mod codec;
pub mod day;
pub mod meters;
pub mod reasons;
pub mod regen;
pub mod server;
pub mod store;

pub use book::Directory;
pub use server::{OuchConfig, OuchError, OuchServer, OuchStats, OuchStatsSnapshot, OuchUser};
