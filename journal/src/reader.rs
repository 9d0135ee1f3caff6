//! Read-only replay of a journal directory, for recovery, replay and dump
//! tools. Applies the recovery scan's rules without repairing anything: a
//! torn tail ends the iteration quietly (it was never committed), any
//! other damage is a `Corrupt` error, after which the reader yields nothing.

use std::path::Path;

use crate::constants::MAX_SEGMENT_BYTES;
use crate::error::JournalError;
use crate::fsio::{list_segments, read_bounded, SegmentFile};
use crate::recovery::resolve_bad;
use crate::scan::{Defect, SegmentCursor, Step};
use crate::TornTail;

/// Yields `(seq, payload)` for each committed record, in order, from the
/// segments present when [`read_journal`] was called (not `archive/`).
#[derive(Debug)]
pub struct JournalReader {
    segments: Vec<SegmentFile>,
    next_index: usize,
    current: Option<Current>,
    last_seq: Option<u64>,
    from_seq: u64,
    torn: Option<TornTail>,
    finished: bool,
}

#[derive(Debug)]
struct Current {
    index: usize,
    data: Vec<u8>,
    cursor: SegmentCursor,
}

/// Opens `dir` for reading records with `seq >= from_seq`. Segments that
/// hold only records below `from_seq` are not read at all (so their
/// contents are not verified); every segment read is verified in full
/// up to the records it yields.
pub fn read_journal(dir: &Path, from_seq: u64) -> Result<JournalReader, JournalError> {
    let segments = list_segments(dir)?;
    // Segment i holds only seqs below segment i+1's first seq.
    let skipped = segments
        .windows(2)
        .take_while(|pair| pair[1].first_seq <= from_seq)
        .count();
    Ok(JournalReader {
        segments,
        next_index: skipped,
        current: None,
        last_seq: None,
        from_seq,
        torn: None,
        finished: false,
    })
}

impl JournalReader {
    /// The torn tail the iteration stopped at, once it has ended on one.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The last seq read (including skipped records below `from_seq`).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    fn fail(&mut self, error: JournalError) -> Option<Result<(u64, Vec<u8>), JournalError>> {
        self.finished = true;
        self.current = None;
        Some(Err(error))
    }

    fn bad(
        &mut self,
        offset: usize,
        defect: Defect,
    ) -> Option<Result<(u64, Vec<u8>), JournalError>> {
        let current = self
            .current
            .take()
            .expect("bad spot found in a loaded segment");
        self.finished = true;
        match resolve_bad(&self.segments, current.index, &current.data, offset, defect) {
            Ok(plan) => {
                self.torn = Some(plan.tail);
                None
            }
            Err(error) => Some(Err(error)),
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<(u64, Vec<u8>), JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return None;
            }
            if self.current.is_none() {
                let Some(segment) = self.segments.get(self.next_index) else {
                    self.finished = true;
                    return None;
                };
                let data = match read_bounded(&segment.path, MAX_SEGMENT_BYTES) {
                    Ok(data) => data,
                    Err(error) => return self.fail(error),
                };
                self.current = Some(Current {
                    index: self.next_index,
                    data,
                    cursor: SegmentCursor::new(segment.first_seq, self.last_seq),
                });
                self.next_index += 1;
            }
            let current = self.current.as_mut().expect("loaded above");
            let is_last = current.index + 1 == self.segments.len();
            match current.cursor.next(&current.data) {
                Step::Record { seq, payload, .. } => {
                    self.last_seq = Some(seq);
                    if seq >= self.from_seq {
                        return Some(Ok((seq, payload.to_vec())));
                    }
                }
                Step::End { offset } => {
                    if current.cursor.records() == 0 && !is_last {
                        return self.bad(offset, Defect::EmptySegmentNotLast);
                    }
                    self.current = None;
                }
                Step::Bad { offset, defect } => return self.bad(offset, defect),
                Step::OutOfSequence { offset, reason } => {
                    let segment = self.segments[current.index].path.clone();
                    return self.fail(JournalError::Corrupt {
                        segment,
                        offset: offset as u64,
                        reason,
                    });
                }
            }
        }
    }
}
