//! The BrokerX journal: an append-only log of framed, sequenced records
//! with group commit, a recovery scan that truncates a torn tail and
//! refuses corruption, and atomic snapshots. Bytes in, bytes out: it knows
//! nothing of commands or events, and depends on no other BrokerX crate.
//!
//! Layers, from the bottom:
//! - [`constants`]: every bound and magic number.
//! - [`format`](mod@format): the record layout, its CRC32C and the file names (pure).
//! - `scan`: walks one segment's bytes and classifies each record (pure,
//!   total on any input).
//! - `fsio`: the file-system calls (positional writes, fsync, the lock).
//! - `recovery`: the scan over a directory, deciding torn tail or corruption.
//! - [`Journal`]: the writer (append, group commit, rollover, archive).
//! - [`JournalReader`]: read-only replay with the same checks.
//! - [`snapshot`]: atomic snapshot files.
//!
//! The on-disk format is described in `FORMAT.md`. Unix only (`pwrite`,
//! `flock`).

pub mod constants;
mod error;
pub mod format;
mod fsio;
mod journal;
mod reader;
mod recovery;
mod scan;
pub mod snapshot;
mod types;

pub use error::JournalError;
pub use journal::Journal;
pub use reader::{read_journal, JournalReader};
pub use snapshot::LoadedSnapshot;
pub use types::{Durability, JournalConfig, JournalStats, Recovery, TornTail};
