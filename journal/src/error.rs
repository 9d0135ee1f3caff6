//! The journal's one error enum. Bad bytes on disk and failed I/O are
//! errors; a caller bug (an out-of-sequence append) is an assertion.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a journal or snapshot operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JournalError {
    /// An I/O call failed. `operation` says what the journal was doing.
    Io {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    /// The bytes on disk are damaged in a way recovery must not repair: a
    /// bad record with a valid one after it, or a sequence gap or repeat.
    /// `offset` is the byte offset inside `segment` where the damage starts.
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// `fdatasync` (or `fsync`) failed. The journal is poisoned: the page
    /// cache may have dropped the dirty pages, so retrying could report
    /// success for data that is not on disk. Every later call returns
    /// [`JournalError::Poisoned`]; restart and recover.
    SyncFailed { path: PathBuf, source: io::Error },
    /// An earlier write or sync failed; this journal accepts nothing more.
    Poisoned,
    /// Another `Journal` (in this or another process) holds the directory.
    Locked { path: PathBuf },
    /// The `JournalConfig` is out of bounds.
    InvalidConfig { reason: String },
    /// A record payload must hold at least one byte (length 0 marks the end
    /// of written data on disk).
    EmptyPayload,
    /// The payload exceeds this journal's maximum record payload.
    PayloadTooLarge {
        payload_bytes: usize,
        max_payload_bytes: usize,
    },
    /// The uncommitted batch is full: `commit`, then append again.
    BatchFull {
        pending_bytes: usize,
        max_batch_bytes: usize,
    },
    /// A snapshot payload exceeds the snapshot size bound.
    SnapshotTooLarge {
        payload_bytes: u64,
        max_payload_bytes: u64,
    },
    /// Snapshot files exist but none of them verifies. Each entry is a file
    /// and why it was rejected.
    SnapshotsDamaged { skipped: Vec<(PathBuf, String)> },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io {
                path,
                operation,
                source,
            } => write!(f, "{operation} {}: {source}", path.display()),
            JournalError::Corrupt {
                segment,
                offset,
                reason,
            } => write!(
                f,
                "journal corrupt in {} at byte offset {offset}: {reason}",
                segment.display()
            ),
            JournalError::SyncFailed { path, source } => write!(
                f,
                "fsync of {} failed, journal poisoned: {source}",
                path.display()
            ),
            JournalError::Poisoned => {
                write!(f, "journal poisoned by an earlier failed write or sync")
            }
            JournalError::Locked { path } => write!(
                f,
                "journal directory is locked by another writer ({})",
                path.display()
            ),
            JournalError::InvalidConfig { reason } => {
                write!(f, "invalid journal config: {reason}")
            }
            JournalError::EmptyPayload => write!(f, "record payload is empty"),
            JournalError::PayloadTooLarge {
                payload_bytes,
                max_payload_bytes,
            } => write!(
                f,
                "record payload of {payload_bytes} bytes exceeds the maximum of {max_payload_bytes}"
            ),
            JournalError::BatchFull {
                pending_bytes,
                max_batch_bytes,
            } => write!(
                f,
                "uncommitted batch holds {pending_bytes} bytes (max {max_batch_bytes}): commit first"
            ),
            JournalError::SnapshotTooLarge {
                payload_bytes,
                max_payload_bytes,
            } => write!(
                f,
                "snapshot payload of {payload_bytes} bytes exceeds the maximum of {max_payload_bytes}"
            ),
            JournalError::SnapshotsDamaged { skipped } => {
                write!(f, "no snapshot verifies:")?;
                for (path, reason) in skipped {
                    write!(f, " {}: {reason};", path.display())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } | JournalError::SyncFailed { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl JournalError {
    /// Builds a [`JournalError::Io`]: `.map_err(JournalError::io(path, "open"))`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        operation: &'static str,
    ) -> impl FnOnce(io::Error) -> JournalError {
        let path = path.into();
        move |source| JournalError::Io {
            path,
            operation,
            source,
        }
    }
}
