//! The record layout and file names, as pure functions over bytes and
//! strings. Public so tools (dump, fuzzers) can frame and check records
//! exactly as the journal does. See `FORMAT.md`.
//!
//! Record: `payload_len u32 LE`, `seq u64 LE`, `crc32c u32 LE`, then
//! `payload_len` bytes of payload. The CRC covers the first twelve header
//! bytes and the payload. `payload_len` 0 is never valid, so an all-zero
//! header marks the end of written data in a zero-filled segment.

use crate::constants::{
    MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES, SEGMENT_PREFIX, SEGMENT_SUFFIX, SEQ_DIGITS,
    SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX,
};

/// A decoded record header (not yet checked against its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub seq: u64,
    pub crc: u32,
}

impl RecordHeader {
    pub fn decode(bytes: &[u8; RECORD_HEADER_BYTES]) -> RecordHeader {
        let [l0, l1, l2, l3, s0, s1, s2, s3, s4, s5, s6, s7, c0, c1, c2, c3] = *bytes;
        RecordHeader {
            payload_len: u32::from_le_bytes([l0, l1, l2, l3]),
            seq: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut bytes = [0u8; RECORD_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        bytes[4..12].copy_from_slice(&self.seq.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }
}

/// CRC32C over `payload_len LE`, `seq LE`, then the payload.
pub fn record_crc(payload_len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut prefix = [0u8; 12];
    prefix[0..4].copy_from_slice(&payload_len.to_le_bytes());
    prefix[4..12].copy_from_slice(&seq.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&prefix), payload)
}

/// Appends one framed record to `out`. The caller has checked the payload
/// length (1 to [`MAX_PAYLOAD_BYTES`]); anything else is a bug.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(!payload.is_empty(), "a record payload is never empty");
    assert!(
        payload.len() <= MAX_PAYLOAD_BYTES,
        "record payload too large"
    );
    let payload_len = u32::try_from(payload.len()).expect("bounded by MAX_PAYLOAD_BYTES");
    let start_bytes = out.len();
    let header = RecordHeader {
        payload_len,
        seq,
        crc: record_crc(payload_len, seq, payload),
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    assert_eq!(out.len() - start_bytes, RECORD_HEADER_BYTES + payload.len());
}

/// Bytes a record with this payload occupies on disk.
pub fn record_bytes(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len
}

/// `segment-{first_seq:020}.log`
pub fn segment_file_name(first_seq: u64) -> String {
    format!(
        "{SEGMENT_PREFIX}{first_seq:0width$}{SEGMENT_SUFFIX}",
        width = SEQ_DIGITS
    )
}

/// `snapshot-{seq:020}.snap`
pub fn snapshot_file_name(seq: u64) -> String {
    format!(
        "{SNAPSHOT_PREFIX}{seq:0width$}{SNAPSHOT_SUFFIX}",
        width = SEQ_DIGITS
    )
}

/// The first sequence number in a segment file name, or `None` if the
/// name is not exactly `segment-` + 20 digits + `.log`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_seq_name(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)
}

/// The sequence number in a snapshot file name, or `None` if the name is
/// not exactly `snapshot-` + 20 digits + `.snap` (temp files are not).
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    parse_seq_name(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX)
}

fn parse_seq_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let header = RecordHeader {
            payload_len: 0x0403_0201,
            seq: 0x0c0b_0a09_0807_0605,
            crc: 0x100f_0e0d,
        };
        let bytes = header.encode();
        assert_eq!(
            bytes,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        );
        assert_eq!(RecordHeader::decode(&bytes), header);
    }

    #[test]
    fn encoded_record_carries_crc_over_len_seq_payload() {
        let mut out = Vec::new();
        encode_record(7, b"abc", &mut out);
        assert_eq!(out.len(), record_bytes(3));
        let header = RecordHeader::decode(out[..16].try_into().unwrap());
        assert_eq!(header.payload_len, 3);
        assert_eq!(header.seq, 7);
        let mut covered = out[..12].to_vec();
        covered.extend_from_slice(b"abc");
        assert_eq!(header.crc, crc32c::crc32c(&covered));
        assert_ne!(header.crc, record_crc(3, 8, b"abc"));
    }

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn file_names_round_trip_and_reject_near_misses() {
        assert_eq!(segment_file_name(42), "segment-00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(9)), Some(9));
        for bad in [
            "segment-42.log",
            "segment-0000000000000000004x.log",
            "segment-99999999999999999999.log",
            "segment-00000000000000000042.log.tmp",
            "snapshot-00000000000000000042.snap.tmp",
            "segment-+0000000000000000042.log",
            "",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
            assert_eq!(parse_snapshot_file_name(bad), None, "{bad}");
        }
    }
}
