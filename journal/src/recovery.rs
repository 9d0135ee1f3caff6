//! The recovery scan over a journal directory: reads every segment, checks
//! every record (length, CRC, sequence), and decides what a bad record
//! means. Nothing valid after it anywhere: a torn tail, to be truncated.
//! Anything valid after it: corruption, refused. `Journal::open` applies
//! the decision; `JournalReader` uses the same rules read-only.

use std::path::Path;

use crate::constants::MAX_SEGMENT_BYTES;
use crate::error::JournalError;
use crate::fsio::{list_segments, read_bounded, SegmentFile};
use crate::scan::{find_valid_record, written_end, Defect, SegmentCursor, Step};
use crate::TornTail;

/// One segment as the scan found it.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    pub file: SegmentFile,
    /// Valid, in-sequence records kept.
    pub records: u64,
    /// Where the next record goes: the end of the last kept record.
    pub end_offset_bytes: u64,
    pub len_bytes: u64,
}

/// A torn tail and what truncating it involves.
#[derive(Debug)]
pub(crate) struct TornPlan {
    pub tail: TornTail,
    /// Index (in the scanned list) of the segment holding the bad record.
    pub segment_index: usize,
    /// Bytes from `tail.offset` to here are to be zeroed in that segment.
    pub written_end_bytes: u64,
    /// Segments after it (no valid record in any), to be removed.
    pub later_segments: Vec<SegmentFile>,
}

/// What the scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Segments up to and including the one with the torn tail, if any.
    pub segments: Vec<ScannedSegment>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub records: u64,
    pub torn: Option<TornPlan>,
}

/// Scans every segment in `dir`. Returns `Corrupt` for damage that is not
/// a torn tail; reads, never writes.
pub(crate) fn scan_dir(dir: &Path) -> Result<Scan, JournalError> {
    let files = list_segments(dir)?;
    let mut scan = Scan {
        segments: Vec::with_capacity(files.len()),
        first_seq: None,
        last_seq: None,
        records: 0,
        torn: None,
    };
    for (index, file) in files.iter().enumerate() {
        let data = read_bounded(&file.path, MAX_SEGMENT_BYTES)?;
        let mut cursor = SegmentCursor::new(file.first_seq, scan.last_seq);
        let (end_offset, bad) = loop {
            match cursor.next(&data) {
                Step::Record { seq, .. } => {
                    scan.first_seq.get_or_insert(seq);
                    scan.records += 1;
                }
                Step::End { offset } => {
                    let is_last = index + 1 == files.len();
                    if cursor.records() == 0 && !is_last {
                        break (offset, Some(Defect::EmptySegmentNotLast));
                    }
                    break (offset, None);
                }
                Step::Bad { offset, defect } => break (offset, Some(defect)),
                Step::OutOfSequence { offset, reason } => {
                    return Err(JournalError::Corrupt {
                        segment: file.path.clone(),
                        offset: offset as u64,
                        reason,
                    });
                }
            }
        };
        scan.last_seq = cursor.last_seq();
        scan.segments.push(ScannedSegment {
            file: file.clone(),
            records: cursor.records(),
            end_offset_bytes: end_offset as u64,
            len_bytes: data.len() as u64,
        });
        if let Some(defect) = bad {
            scan.torn = Some(resolve_bad(&files, index, &data, end_offset, defect)?);
            break;
        }
    }
    assert_eq!(
        scan.records,
        scan.segments.iter().map(|s| s.records).sum::<u64>()
    );
    assert_eq!(scan.first_seq.is_some(), scan.records > 0);
    Ok(scan)
}

/// Decides what the bad spot at `offset` in `files[index]` (whose bytes are
/// `data`) is. Any record whose CRC verifies after it, in this segment
/// (searching byte by byte) or in a later one, makes it corruption;
/// otherwise it is a torn tail.
pub(crate) fn resolve_bad(
    files: &[SegmentFile],
    index: usize,
    data: &[u8],
    offset: usize,
    defect: Defect,
) -> Result<TornPlan, JournalError> {
    let file = &files[index];
    let corrupt = |reason: String| JournalError::Corrupt {
        segment: file.path.clone(),
        offset: offset as u64,
        reason,
    };
    if let Some((found_offset, seq)) = find_valid_record(data, offset + 1) {
        return Err(corrupt(format!(
            "{defect}, and a valid record (seq {seq}) follows at offset {found_offset}"
        )));
    }
    let written_end_bytes = written_end(data).max(offset);
    let mut discarded_bytes = (written_end_bytes - offset) as u64;
    for later in &files[index + 1..] {
        let later_data = read_bounded(&later.path, MAX_SEGMENT_BYTES)?;
        if let Some((found_offset, seq)) = find_valid_record(&later_data, 0) {
            return Err(corrupt(format!(
                "{defect}, and a valid record (seq {seq}) follows in {} at offset {found_offset}",
                later.path.display()
            )));
        }
        discarded_bytes += written_end(&later_data) as u64;
    }
    Ok(TornPlan {
        tail: TornTail {
            segment: file.path.clone(),
            offset: offset as u64,
            bytes_discarded: discarded_bytes,
            reason: defect.to_string(),
        },
        segment_index: index,
        written_end_bytes: written_end_bytes as u64,
        later_segments: files[index + 1..].to_vec(),
    })
}
