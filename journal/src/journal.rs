//! The writer: `open` (recover), `append` (buffer), `commit` (one write and
//! one fdatasync per batch), segment rollover and archiving.
//!
//! Deciding is split from I/O: `append` only encodes into the batch buffer
//! and plans where each record lands (which segment, which offset), so
//! `commit` is a plain loop of write, sync, and roll when the plan says so.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::constants::{
    ARCHIVE_DIR, LOCK_FILE, MAX_BATCH_BYTES, MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES,
};
use crate::error::JournalError;
use crate::format::{encode_record, record_bytes, segment_file_name};
use crate::fsio::{sync_dir, write_all_at, zero_range, DirLock, SegmentFile};
use crate::recovery::{scan_dir, Scan, ScannedSegment, TornPlan};
use crate::types::{Durability, JournalConfig, JournalStats, Recovery};

/// An open journal: the only writer of its directory (an exclusive lock
/// file enforces it).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segment_bytes: u64,
    durability: Durability,
    max_payload_bytes: usize,
    /// Segment files in the directory, oldest first; the last is `active`.
    segments: Vec<SegmentFile>,
    active: Option<ActiveSegment>,
    /// Encoded records appended since the last commit.
    pending_bytes: Vec<u8>,
    /// How `pending_bytes` splits across segments.
    pending_chunks: Vec<PendingChunk>,
    pending_records: u64,
    /// Where the next appended record will land, in the segment the plan
    /// currently ends in, and that segment's capacity (0: no segment yet).
    planned_offset_bytes: u64,
    planned_capacity_bytes: u64,
    last_seq: Option<u64>,
    durable_seq: Option<u64>,
    poisoned: bool,
    stats: JournalStats,
    faults: Faults,
    _lock: DirLock,
}

#[derive(Debug)]
struct ActiveSegment {
    file: File,
    path: PathBuf,
    first_seq: u64,
    write_offset_bytes: u64,
    capacity_bytes: u64,
}

/// A run of `pending_bytes` that goes into one segment.
#[derive(Clone, Copy, Debug)]
struct PendingChunk {
    start_bytes: usize,
    /// `Some(first_seq)`: create segment `first_seq` before writing this.
    new_segment_first_seq: Option<u64>,
    last_seq: u64,
}

/// Test-only fault injection: the next write or sync fails.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    fail_next_write: bool,
    fail_next_sync: bool,
}

impl Journal {
    /// Opens the journal in `config.dir` (creating the directory if
    /// missing), runs the recovery scan over all segments, truncates a torn
    /// tail (reported in [`Recovery::truncated`]) and refuses corruption
    /// with [`JournalError::Corrupt`]. Logs nothing.
    pub fn open(config: JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        config.validate()?;
        let dir = config.dir.clone();
        create_dir(&dir, config.durability)?;
        let lock = DirLock::acquire(&dir.join(LOCK_FILE))?;
        let scan = scan_dir(&dir)?;
        let (segments, recovery) = repair(&dir, scan)?;
        let active = match segments.last() {
            None => None,
            Some(last) => Some(open_active(last)?),
        };
        let segments: Vec<SegmentFile> = segments.into_iter().map(|s| s.file).collect();
        let max_payload_bytes =
            MAX_PAYLOAD_BYTES.min(config.segment_bytes as usize - RECORD_HEADER_BYTES);
        let journal = Journal {
            planned_offset_bytes: active.as_ref().map_or(0, |a| a.write_offset_bytes),
            planned_capacity_bytes: active.as_ref().map_or(0, |a| a.capacity_bytes),
            dir,
            segment_bytes: config.segment_bytes,
            durability: config.durability,
            max_payload_bytes,
            segments,
            active,
            pending_bytes: Vec::new(),
            pending_chunks: Vec::new(),
            pending_records: 0,
            last_seq: recovery.last_seq,
            durable_seq: recovery.last_seq,
            poisoned: false,
            stats: JournalStats::default(),
            faults: Faults::default(),
            _lock: lock,
        };
        journal.check_invariants();
        assert_eq!(journal.segments.len(), recovery.segments);
        Ok((journal, recovery))
    }

    /// Buffers one record. `seq` must be `last_seq + 1`; the first record
    /// of an empty journal may have any `seq >= 1`. A wrong `seq` is a
    /// caller bug and panics. Writes nothing: see [`Journal::commit`].
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), JournalError> {
        match self.last_seq {
            Some(last) => assert!(
                last.checked_add(1) == Some(seq),
                "journal append out of sequence: seq {seq} after {last}"
            ),
            None => assert!(seq >= 1, "journal seq 0 is never valid"),
        }
        self.check_usable()?;
        if payload.is_empty() {
            return Err(JournalError::EmptyPayload);
        }
        if payload.len() > self.max_payload_bytes {
            return Err(JournalError::PayloadTooLarge {
                payload_bytes: payload.len(),
                max_payload_bytes: self.max_payload_bytes,
            });
        }
        let bytes = record_bytes(payload.len());
        if self.pending_bytes.len() + bytes > MAX_BATCH_BYTES {
            return Err(JournalError::BatchFull {
                pending_bytes: self.pending_bytes.len(),
                max_batch_bytes: MAX_BATCH_BYTES,
            });
        }
        let fits = self.planned_capacity_bytes - self.planned_offset_bytes >= bytes as u64;
        if !fits || self.pending_chunks.is_empty() {
            self.pending_chunks.push(PendingChunk {
                start_bytes: self.pending_bytes.len(),
                new_segment_first_seq: (!fits).then_some(seq),
                last_seq: seq,
            });
            if !fits {
                self.planned_offset_bytes = 0;
                self.planned_capacity_bytes = self.segment_bytes;
            }
        }
        encode_record(seq, payload, &mut self.pending_bytes);
        self.planned_offset_bytes += bytes as u64;
        assert!(self.planned_offset_bytes <= self.planned_capacity_bytes);
        self.pending_chunks
            .last_mut()
            .expect("pushed above")
            .last_seq = seq;
        self.pending_records += 1;
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Group commit: writes everything appended since the last commit with
    /// one `pwrite` and makes it durable with one `fdatasync` (in
    /// `Durability::Fsync`). A batch that crosses a segment boundary takes
    /// one write and one sync per segment, each segment synced before the
    /// next is created. Returns the durable seq (0 if the journal holds
    /// nothing). Any write or sync failure poisons the journal.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        self.check_usable()?;
        if self.pending_chunks.is_empty() {
            assert!(self.pending_bytes.is_empty());
            return Ok(self.durable_seq.unwrap_or(0));
        }
        let result = self.commit_pending();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// The last appended seq (committed or not).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The last committed seq (durable in `Durability::Fsync`).
    pub fn durable_seq(&self) -> Option<u64> {
        self.durable_seq
    }

    /// Moves the segments whose records are all `<= seq` into
    /// `dir/archive/` and fsyncs both directories. The segment being
    /// written is never archived. Returns how many segments moved.
    pub fn archive_through(&mut self, seq: u64) -> Result<usize, JournalError> {
        self.check_usable()?;
        let archivable = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].first_seq <= seq.saturating_add(1))
            .count();
        if archivable == 0 {
            return Ok(0);
        }
        let result = self.move_to_archive(archivable);
        if matches!(result, Err(JournalError::SyncFailed { .. })) {
            self.poisoned = true;
        }
        self.check_invariants();
        result
    }

    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest payload `append` accepts (bounded by the segment size).
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Paths of the live segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Makes the next write fail, as a full disk would. Tests only.
    #[doc(hidden)]
    pub fn inject_write_failure(&mut self) {
        self.faults.fail_next_write = true;
    }

    /// Makes the next fsync or fdatasync fail without calling it. Tests only.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self) {
        self.faults.fail_next_sync = true;
    }

    /// Asserts the writer's internal consistency; tests call it after every step.
    pub fn check_invariants(&self) {
        assert!(self.durable_seq <= self.last_seq);
        assert!(self.pending_bytes.len() <= MAX_BATCH_BYTES);
        // A failed commit leaves its batch half written; only `Poisoned` follows.
        if !self.poisoned {
            assert_eq!(
                self.pending_bytes.is_empty(),
                self.pending_chunks.is_empty()
            );
            assert_eq!(self.pending_bytes.is_empty(), self.pending_records == 0);
            if self.pending_records == 0 {
                assert_eq!(self.durable_seq, self.last_seq);
            }
        }
        assert!(self
            .segments
            .windows(2)
            .all(|pair| pair[0].first_seq < pair[1].first_seq));
        assert!(self.pending_chunks.windows(2).all(|pair| {
            pair[0].start_bytes < pair[1].start_bytes && pair[0].last_seq < pair[1].last_seq
        }));
        assert!(self.planned_offset_bytes <= self.planned_capacity_bytes);
        match (&self.active, self.segments.last()) {
            (None, None) => assert!(self.durable_seq.is_none()),
            (Some(active), Some(last)) => {
                assert_eq!(active.path, last.path);
                assert_eq!(active.first_seq, last.first_seq);
                assert!(active.write_offset_bytes <= active.capacity_bytes);
                assert!(self.durable_seq >= Some(active.first_seq) || self.poisoned);
            }
            _ => panic!("active segment and segment list disagree"),
        }
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        if self.poisoned {
            Err(JournalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn commit_pending(&mut self) -> Result<u64, JournalError> {
        let chunks = std::mem::take(&mut self.pending_chunks);
        for (index, chunk) in chunks.iter().enumerate() {
            let end_bytes = chunks
                .get(index + 1)
                .map_or(self.pending_bytes.len(), |next| next.start_bytes);
            if let Some(first_seq) = chunk.new_segment_first_seq {
                self.roll(first_seq)?;
            }
            self.write_active(chunk.start_bytes..end_bytes)?;
            self.sync_active()?;
            self.durable_seq = Some(chunk.last_seq);
        }
        self.stats.commits += 1;
        self.stats.records_committed += self.pending_records;
        self.pending_records = 0;
        self.pending_bytes.clear();
        assert_eq!(self.durable_seq, self.last_seq);
        self.check_invariants();
        Ok(self
            .durable_seq
            .expect("a commit wrote at least one record"))
    }

    /// Creates, preallocates and (in Fsync mode) fsyncs a new segment and
    /// its directory entry, and makes it the active segment.
    fn roll(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if let Some(active) = &self.active {
            assert!(first_seq > active.first_seq);
        }
        let path = self.dir.join(segment_file_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(JournalError::io(&path, "create segment"))?;
        file.set_len(self.segment_bytes)
            .map_err(JournalError::io(&path, "preallocate segment"))?;
        if self.durability == Durability::Fsync {
            self.take_sync_fault(&path)?;
            file.sync_all().map_err(|source| JournalError::SyncFailed {
                path: path.clone(),
                source,
            })?;
            self.stats.file_sync_calls += 1;
            self.sync_directory(&self.dir.clone())?;
        }
        self.segments.push(SegmentFile {
            first_seq,
            path: path.clone(),
        });
        self.active = Some(ActiveSegment {
            file,
            path,
            first_seq,
            write_offset_bytes: 0,
            capacity_bytes: self.segment_bytes,
        });
        self.stats.segments_created += 1;
        Ok(())
    }

    fn write_active(&mut self, range: Range<usize>) -> Result<(), JournalError> {
        let active = self.active.as_mut().expect("commit rolls before writing");
        let bytes = &self.pending_bytes[range];
        let len_bytes = bytes.len() as u64;
        assert!(len_bytes > 0);
        assert!(active.write_offset_bytes + len_bytes <= active.capacity_bytes);
        if std::mem::take(&mut self.faults.fail_next_write) {
            return Err(JournalError::Io {
                path: active.path.clone(),
                operation: "write",
                source: io::Error::other("injected write failure"),
            });
        }
        write_all_at(
            &active.file,
            bytes,
            active.write_offset_bytes,
            &mut self.stats.write_calls,
        )
        .map_err(JournalError::io(&active.path, "write"))?;
        active.write_offset_bytes += len_bytes;
        self.stats.bytes_written += len_bytes;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), JournalError> {
        if self.durability == Durability::None {
            return Ok(());
        }
        let path = self.active.as_ref().expect("written above").path.clone();
        self.take_sync_fault(&path)?;
        let active = self.active.as_ref().expect("written above");
        active
            .file
            .sync_data()
            .map_err(|source| JournalError::SyncFailed { path, source })?;
        self.stats.data_sync_calls += 1;
        Ok(())
    }

    fn sync_directory(&mut self, dir: &Path) -> Result<(), JournalError> {
        self.take_sync_fault(dir)?;
        sync_dir(dir)?;
        self.stats.dir_sync_calls += 1;
        Ok(())
    }

    fn take_sync_fault(&mut self, path: &Path) -> Result<(), JournalError> {
        if std::mem::take(&mut self.faults.fail_next_sync) {
            return Err(JournalError::SyncFailed {
                path: path.to_path_buf(),
                source: io::Error::other("injected sync failure"),
            });
        }
        Ok(())
    }

    fn move_to_archive(&mut self, count: usize) -> Result<usize, JournalError> {
        assert!(count < self.segments.len(), "the active segment stays");
        let archive = self.dir.join(ARCHIVE_DIR);
        let fsync = self.durability == Durability::Fsync;
        match fs::create_dir(&archive) {
            Ok(()) if fsync => self.sync_directory(&self.dir.clone())?,
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(JournalError::io(&archive, "create archive")(error)),
        }
        for _ in 0..count {
            let segment = &self.segments[0];
            let name = segment.path.file_name().expect("segment paths have names");
            let target = archive.join(name);
            if target.exists() {
                return Err(JournalError::Io {
                    path: target,
                    operation: "archive segment",
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            fs::rename(&segment.path, &target)
                .map_err(JournalError::io(&segment.path, "archive segment"))?;
            self.segments.remove(0);
        }
        if fsync {
            self.sync_directory(&archive)?;
            self.sync_directory(&self.dir.clone())?;
        }
        Ok(count)
    }
}

/// Creates the journal directory if missing; in Fsync mode also fsyncs
/// its parent so the new directory entry is durable.
fn create_dir(dir: &Path, durability: Durability) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(JournalError::io(dir, "create directory"))?;
    if durability == Durability::Fsync {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Applies the scan's decision: zeroes a torn tail, removes later segments
/// that held no valid record and a trailing segment left empty, and
/// fsyncs what changed. Returns the kept segments (with their write
/// offset and capacity) and the recovery report.
fn repair(dir: &Path, scan: Scan) -> Result<(Vec<ScannedSegment>, Recovery), JournalError> {
    let Scan {
        segments,
        first_seq,
        last_seq,
        records,
        torn,
    } = scan;
    let mut removed_any = false;
    let truncated = match torn {
        None => None,
        Some(plan) => {
            let TornPlan {
                tail,
                segment_index,
                written_end_bytes,
                later_segments,
            } = plan;
            assert_eq!(segment_index + 1, segments.len());
            let torn_segment = &segments[segment_index];
            assert_eq!(torn_segment.end_offset_bytes, tail.offset);
            if torn_segment.records > 0 {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&torn_segment.file.path)
                    .map_err(JournalError::io(&torn_segment.file.path, "open"))?;
                zero_range(&file, tail.offset, written_end_bytes)
                    .map_err(JournalError::io(&torn_segment.file.path, "zero torn tail"))?;
                file.sync_data()
                    .map_err(|source| JournalError::SyncFailed {
                        path: torn_segment.file.path.clone(),
                        source,
                    })?;
            }
            for later in &later_segments {
                remove_file(&later.path)?;
                removed_any = true;
            }
            Some(tail)
        }
    };
    let mut kept = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment.records == 0 {
            // Empty (a crash right after creating it, or its only records
            // were torn): holds nothing, and the scan allows it only last.
            remove_file(&segment.file.path)?;
            removed_any = true;
            continue;
        }
        kept.push(segment);
    }
    if removed_any {
        sync_dir(dir)?;
    }
    assert_eq!(kept.is_empty(), records == 0);
    let recovery = Recovery {
        first_seq,
        last_seq,
        records,
        segments: kept.len(),
        truncated,
    };
    Ok((kept, recovery))
}

fn remove_file(path: &Path) -> Result<(), JournalError> {
    fs::remove_file(path).map_err(JournalError::io(path, "remove segment"))
}

fn open_active(segment: &ScannedSegment) -> Result<ActiveSegment, JournalError> {
    assert!(segment.end_offset_bytes <= segment.len_bytes);
    assert!(segment.records > 0);
    let path = &segment.file.path;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(JournalError::io(path, "open segment"))?;
    Ok(ActiveSegment {
        file,
        path: path.clone(),
        first_seq: segment.file.first_seq,
        write_offset_bytes: segment.end_offset_bytes,
        capacity_bytes: segment.len_bytes,
    })
}
