//! The pure part of the recovery scan: walks the bytes of one segment
//! record by record and classifies what it finds. No I/O, no allocation
//! on the good path, no panics on any input (the fuzzer feeds it garbage).
//!
//! Deciding what a bad record means (torn tail or corruption) needs the
//! bytes after it, possibly in later segment files; `recovery.rs` does
//! that with [`find_valid_record`].

use std::fmt;

use crate::constants::{MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES};
use crate::format::{record_crc, RecordHeader};

/// Why the bytes at an offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defect {
    /// Fewer than a header's bytes remain and they are not all zero.
    PartialHeader {
        bytes_left: usize,
    },
    /// A non-zero header with `payload_len` 0.
    ZeroLength,
    /// `payload_len` above [`MAX_PAYLOAD_BYTES`].
    TooLong {
        payload_len: u32,
    },
    /// The record would end past the end of the file.
    PastEnd {
        record_bytes: u64,
        bytes_left: usize,
    },
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    /// An all-zero header (end of data) with non-zero bytes after it.
    HoleBeforeData {
        nonzero_offset: usize,
    },
    /// A segment that holds no record but is not the last segment.
    EmptySegmentNotLast,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Defect::PartialHeader { bytes_left } => write!(
                f,
                "partial record header: {bytes_left} bytes before the end of the file"
            ),
            Defect::ZeroLength => write!(f, "record header with payload length 0"),
            Defect::TooLong { payload_len } => write!(
                f,
                "record payload length {payload_len} exceeds the maximum {MAX_PAYLOAD_BYTES}"
            ),
            Defect::PastEnd {
                record_bytes,
                bytes_left,
            } => write!(
                f,
                "record of {record_bytes} bytes runs past the end of the file ({bytes_left} bytes left)"
            ),
            Defect::CrcMismatch { stored, computed } => write!(
                f,
                "record CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Defect::HoleBeforeData { nonzero_offset } => write!(
                f,
                "all-zero header (end of data) but non-zero bytes follow at offset {nonzero_offset}"
            ),
            Defect::EmptySegmentNotLast => {
                write!(f, "segment holds no record but later segments follow")
            }
        }
    }
}

/// What the bytes at one offset hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A record whose CRC verifies; it spans `bytes` bytes.
    Record {
        seq: u64,
        payload: &'a [u8],
        bytes: usize,
    },
    /// An all-zero header, or fewer than a header's bytes all zero.
    ZeroHeader,
    Invalid(Defect),
}

/// Decodes the record at `offset`. Total: any `data` and any `offset`.
pub(crate) fn frame_at(data: &[u8], offset: usize) -> Frame<'_> {
    let rest = data.get(offset..).unwrap_or(&[]);
    let Some(header_bytes) = rest.first_chunk::<RECORD_HEADER_BYTES>() else {
        return if rest.iter().all(|&b| b == 0) {
            Frame::ZeroHeader
        } else {
            Frame::Invalid(Defect::PartialHeader {
                bytes_left: rest.len(),
            })
        };
    };
    if header_bytes.iter().all(|&b| b == 0) {
        return Frame::ZeroHeader;
    }
    let header = RecordHeader::decode(header_bytes);
    if header.payload_len == 0 {
        return Frame::Invalid(Defect::ZeroLength);
    }
    // u32 -> usize is lossless on the 32- and 64-bit targets we build for.
    let payload_len = header.payload_len as usize;
    if payload_len > MAX_PAYLOAD_BYTES {
        return Frame::Invalid(Defect::TooLong {
            payload_len: header.payload_len,
        });
    }
    let record_bytes = RECORD_HEADER_BYTES + payload_len;
    let Some(record) = rest.get(..record_bytes) else {
        return Frame::Invalid(Defect::PastEnd {
            record_bytes: record_bytes as u64,
            bytes_left: rest.len(),
        });
    };
    let payload = &record[RECORD_HEADER_BYTES..];
    let computed = record_crc(header.payload_len, header.seq, payload);
    if computed != header.crc {
        return Frame::Invalid(Defect::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    debug_assert_eq!(payload.len(), payload_len);
    Frame::Record {
        seq: header.seq,
        payload,
        bytes: record_bytes,
    }
}

/// One step of [`SegmentCursor::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A valid record in sequence.
    Record {
        offset: usize,
        seq: u64,
        payload: &'a [u8],
    },
    /// Clean end of written data at `offset`: everything from there on is zero.
    End { offset: usize },
    /// Not a record and not a clean end: a torn tail or corruption,
    /// depending on what follows.
    Bad { offset: usize, defect: Defect },
    /// A record whose CRC verifies but whose sequence number is wrong
    /// (a gap, a repeat, or not the one the file name promises). Always
    /// corruption.
    OutOfSequence { offset: usize, reason: String },
}

/// Walks one segment's bytes, checking each record's sequence number
/// against the previous record (which may be in the previous segment)
/// and the first one against the segment's file name. After it returns
/// anything but `Record` it keeps returning the same kind of answer.
#[derive(Debug)]
pub(crate) struct SegmentCursor {
    name_seq: u64,
    last_seq: Option<u64>,
    offset: usize,
    records: u64,
}

impl SegmentCursor {
    /// `name_seq`: the first sequence number from the file name.
    /// `last_seq`: the last record of the previous segment, if any.
    pub(crate) fn new(name_seq: u64, last_seq: Option<u64>) -> SegmentCursor {
        SegmentCursor {
            name_seq,
            last_seq,
            offset: 0,
            records: 0,
        }
    }

    /// Records returned so far from this segment.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The last in-sequence record seen (in this or an earlier segment).
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    pub(crate) fn next<'a>(&mut self, data: &'a [u8]) -> Step<'a> {
        let offset = self.offset;
        match frame_at(data, offset) {
            Frame::ZeroHeader => match last_nonzero(data, offset) {
                None => Step::End { offset },
                Some(nonzero_offset) => Step::Bad {
                    offset,
                    defect: Defect::HoleBeforeData { nonzero_offset },
                },
            },
            Frame::Invalid(defect) => Step::Bad { offset, defect },
            Frame::Record {
                seq,
                payload,
                bytes,
            } => {
                if let Some(reason) = self.sequence_problem(seq) {
                    return Step::OutOfSequence { offset, reason };
                }
                self.last_seq = Some(seq);
                self.records += 1;
                self.offset = offset + bytes;
                assert!(self.offset <= data.len());
                Step::Record {
                    offset,
                    seq,
                    payload,
                }
            }
        }
    }

    fn sequence_problem(&self, seq: u64) -> Option<String> {
        if seq == 0 {
            return Some("record has seq 0, which is never valid".to_string());
        }
        if self.records == 0 && seq != self.name_seq {
            return Some(format!(
                "first record has seq {seq} but the file name says {}",
                self.name_seq
            ));
        }
        let last = self.last_seq?;
        match last.checked_add(1) {
            Some(expected) if expected == seq => None,
            Some(expected) if seq > expected => Some(format!(
                "sequence gap: expected seq {expected}, found {seq} ({} missing)",
                seq - expected
            )),
            _ => Some(format!("sequence repeat: seq {seq} after seq {last}")),
        }
    }
}

/// The offset of the last non-zero byte at or after `from`, if any.
pub(crate) fn last_nonzero(data: &[u8], from: usize) -> Option<usize> {
    let rest = data.get(from..)?;
    rest.iter().rposition(|&b| b != 0).map(|i| from + i)
}

/// One past the last non-zero byte: the end of written data.
pub(crate) fn written_end(data: &[u8]) -> usize {
    last_nonzero(data, 0).map_or(0, |i| i + 1)
}

/// The first offset at or after `from` where a record's CRC verifies,
/// with that record's seq. Searches byte by byte: this is how recovery
/// tells a torn tail (nothing valid after the damage) from corruption.
pub(crate) fn find_valid_record(data: &[u8], from: usize) -> Option<(usize, u64)> {
    let last_start = data.len().checked_sub(RECORD_HEADER_BYTES + 1)?;
    (from..=last_start).find_map(|offset| {
        // Cheap filter first: most offsets fail on the length field.
        let len_bytes = data.get(offset..offset + 4)?;
        let payload_len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
        if payload_len == 0 || payload_len > MAX_PAYLOAD_BYTES {
            return None;
        }
        match frame_at(data, offset) {
            Frame::Record { seq, .. } => Some((offset, seq)),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_record;

    fn records(seqs: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &seq in seqs {
            encode_record(seq, &[seq as u8 | 1; 5], &mut out);
        }
        out
    }

    #[test]
    fn walks_records_then_clean_end() {
        let mut data = records(&[3, 4, 5]);
        data.resize(data.len() + 100, 0);
        let mut cursor = SegmentCursor::new(3, None);
        for (i, seq) in [3u64, 4, 5].into_iter().enumerate() {
            match cursor.next(&data) {
                Step::Record { offset, seq: s, .. } => {
                    assert_eq!(s, seq);
                    assert_eq!(offset, i * 21);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(cursor.next(&data), Step::End { offset: 63 });
        assert_eq!(cursor.records(), 3);
        assert_eq!(cursor.last_seq(), Some(5));
    }

    #[test]
    fn sequence_problems() {
        let cases: [(&[u64], u64, Option<u64>, &str); 5] = [
            (&[1, 2, 4], 1, None, "gap"),
            (&[1, 2, 2], 1, None, "repeat"),
            (&[2, 3], 1, None, "file name"),
            (&[6], 6, Some(4), "gap"),
            (&[0], 0, None, "seq 0"),
        ];
        for (seqs, name, last, needle) in cases {
            let data = records(seqs);
            let mut cursor = SegmentCursor::new(name, last);
            let step = loop {
                match cursor.next(&data) {
                    Step::Record { .. } => continue,
                    step => break step,
                }
            };
            match step {
                Step::OutOfSequence { reason, .. } => assert!(reason.contains(needle), "{reason}"),
                other => panic!("{seqs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn seq_after_u64_max_is_out_of_sequence() {
        let data = records(&[1]);
        let mut cursor = SegmentCursor::new(1, Some(u64::MAX));
        assert!(matches!(cursor.next(&data), Step::OutOfSequence { .. }));
    }

    #[test]
    fn hole_before_data_is_bad_not_end() {
        let mut data = records(&[1]);
        data.resize(data.len() + 40, 0);
        data.push(7);
        let mut cursor = SegmentCursor::new(1, None);
        assert!(matches!(cursor.next(&data), Step::Record { .. }));
        assert_eq!(
            cursor.next(&data),
            Step::Bad {
                offset: 21,
                defect: Defect::HoleBeforeData { nonzero_offset: 61 }
            }
        );
    }

    #[test]
    fn find_valid_record_skips_garbage() {
        let mut data = vec![0xFFu8; 7];
        data.extend(records(&[9]));
        assert_eq!(find_valid_record(&data, 0), Some((7, 9)));
        assert_eq!(find_valid_record(&data, 8), None);
        assert_eq!(find_valid_record(&[], 0), None);
        assert_eq!(find_valid_record(&data, 10_000), None);
    }

    #[test]
    fn frame_at_is_total_on_short_and_odd_inputs() {
        assert_eq!(frame_at(&[], 0), Frame::ZeroHeader);
        assert_eq!(frame_at(&[0; 3], 0), Frame::ZeroHeader);
        assert_eq!(frame_at(&[1; 3], 99), Frame::ZeroHeader);
        assert_eq!(
            frame_at(&[0, 0, 1], 0),
            Frame::Invalid(Defect::PartialHeader { bytes_left: 3 })
        );
        assert_eq!(
            frame_at(&[0xFF; 64], 0),
            Frame::Invalid(Defect::TooLong {
                payload_len: u32::MAX
            })
        );
        let mut zero_len = [0u8; 16];
        zero_len[5] = 1;
        assert_eq!(frame_at(&zero_len, 0), Frame::Invalid(Defect::ZeroLength));
    }
}
