//! Every bound and magic number of the journal in one place, with
//! compile-time checks of how they relate. The on-disk layout these
//! describe is documented in `FORMAT.md`.

/// Bytes in a record header: `payload_len u32`, `seq u64`, `crc32c u32`.
pub const RECORD_HEADER_BYTES: usize = 16;

/// The largest payload a record may carry. A header claiming more is
/// never valid, which bounds how far the recovery scan ever reads ahead.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The largest record (header and payload).
pub const MAX_RECORD_BYTES: usize = RECORD_HEADER_BYTES + MAX_PAYLOAD_BYTES;

/// Segment size used by [`crate::JournalConfig::new`].
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The smallest segment a journal may be configured with (tests use it to
/// force many rollovers).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;

/// The largest segment file the journal writes or reads. Recovery reads a
/// whole segment into memory, so this bounds its memory use.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// The most bytes `append` buffers before a `commit`. `append` returns
/// `BatchFull` past it, so the in-memory batch is bounded.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// Zero-filled buffer size used when recovery zeroes a torn tail.
pub const ZERO_FILL_CHUNK_BYTES: usize = 64 << 10;

/// Segment file names: `segment-{first_seq:020}.log`.
pub const SEGMENT_PREFIX: &str = "segment-";
pub const SEGMENT_SUFFIX: &str = ".log";

/// Digits in the zero-padded sequence number of a file name (`u64::MAX`
/// has 20), so names sort in sequence order.
pub const SEQ_DIGITS: usize = 20;

/// The sub-directory `archive_through` moves old segments into.
pub const ARCHIVE_DIR: &str = "archive";

/// The lock file a writer holds (flock, exclusive) for the journal's life.
pub const LOCK_FILE: &str = "journal.lock";

/// Snapshot file names: `snapshot-{seq:020}.snap`; while being written,
/// the same name with `.tmp` appended.
pub const SNAPSHOT_PREFIX: &str = "snapshot-";
pub const SNAPSHOT_SUFFIX: &str = ".snap";
pub const SNAPSHOT_TEMP_SUFFIX: &str = ".tmp";

/// First eight bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"BRKXSNAP";

/// The only snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Snapshot header: magic 8, version u32, crc32c u32, seq u64, payload_len u64.
pub const SNAPSHOT_HEADER_BYTES: usize = 32;

/// The largest snapshot payload written or loaded (16 GiB).
pub const MAX_SNAPSHOT_PAYLOAD_BYTES: u64 = 16 << 30;

// How the bounds relate.
const _: () = assert!(RECORD_HEADER_BYTES == 4 + 8 + 4);
const _: () = assert!(MAX_PAYLOAD_BYTES > 0 && MAX_PAYLOAD_BYTES <= u32::MAX as usize);
const _: () = assert!(MIN_SEGMENT_BYTES as usize > RECORD_HEADER_BYTES);
const _: () = assert!(MIN_SEGMENT_BYTES <= DEFAULT_SEGMENT_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES <= MAX_SEGMENT_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES >= MAX_RECORD_BYTES as u64);
const _: () = assert!(MAX_SEGMENT_BYTES <= usize::MAX as u64);
const _: () = assert!(MAX_BATCH_BYTES >= MAX_RECORD_BYTES);
const _: () = assert!(SNAPSHOT_HEADER_BYTES == 8 + 4 + 4 + 8 + 8);
const _: () = assert!(ZERO_FILL_CHUNK_BYTES > 0);
