//! The journal's plain public data: configuration, what recovery found,
//! and the I/O counters. No behaviour beyond validation.

use std::path::PathBuf;

use crate::constants::{DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use crate::error::JournalError;

/// Whether `commit` waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` once per commit; new segments and directory entries are
    /// fsynced too. The only mode for real use.
    Fsync,
    /// No fsync at all: a commit is durable only once the OS writes it back.
    /// For benchmarks only; the caller must label results as such
    /// (`Journal::open` prints nothing itself).
    None,
}

/// Where and how a journal is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory holding the segments (created if missing).
    pub dir: PathBuf,
    /// Size each new segment file is preallocated to, in bytes.
    pub segment_bytes: u64,
    pub durability: Durability,
}

impl JournalConfig {
    /// 64 MiB segments, `Durability::Fsync`.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            durability: Durability::Fsync,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), JournalError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(JournalError::InvalidConfig {
                reason: format!(
                    "segment_bytes {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        if self.dir.as_os_str().is_empty() {
            return Err(JournalError::InvalidConfig {
                reason: "dir is empty".to_string(),
            });
        }
        Ok(())
    }
}

/// What `Journal::open` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The first and last record kept (`None` for an empty journal).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Records kept.
    pub records: u64,
    /// Segment files kept.
    pub segments: usize,
    /// The torn tail recovery truncated, if there was one.
    pub truncated: Option<TornTail>,
}

/// A torn (partly written) last record, and what was discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment holding the first bad byte.
    pub segment: PathBuf,
    /// Byte offset of the torn record's start in that segment.
    pub offset: u64,
    /// Written (non-zero) bytes discarded, including any in later segments
    /// that held no valid record.
    pub bytes_discarded: u64,
    /// Why the record at `offset` is not valid.
    pub reason: String,
}

/// Counters of the journal's own I/O since `open` (recovery's repairs are
/// not counted). `write_calls` counts `pwrite` syscalls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// `commit` calls that had records to write.
    pub commits: u64,
    pub records_committed: u64,
    pub bytes_written: u64,
    pub write_calls: u64,
    /// `fdatasync` calls on segment data (one per commit, or one per
    /// segment a commit spans).
    pub data_sync_calls: u64,
    pub segments_created: u64,
    /// `fsync` calls on newly created segment files.
    pub file_sync_calls: u64,
    /// `fsync` calls on directories.
    pub dir_sync_calls: u64,
}
