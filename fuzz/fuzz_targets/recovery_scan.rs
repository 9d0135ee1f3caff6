//! Fuzz target for the journal's recovery scan: the input becomes one to
//! three segment files in a fresh directory, and `Journal::open` runs on
//! them. It must never panic. If it opens, the segments left on disk must
//! hold only records whose CRC verifies, with contiguous seqs, followed by
//! zeros (checked by an independent parser here, not the journal's own);
//! the reader must yield exactly those records; a second open must find
//! nothing to repair; and the journal must accept the next record.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use brokerx_journal::constants::{MIN_SEGMENT_BYTES, RECORD_HEADER_BYTES};
use brokerx_journal::format::{parse_segment_file_name, record_crc, segment_file_name};
use brokerx_journal::{read_journal, Durability, Journal, JournalConfig, JournalError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let dir = ScratchDir::new();
    for (first_seq, bytes) in split_into_segments(data) {
        fs::write(dir.0.join(segment_file_name(first_seq)), bytes).expect("write segment");
    }
    let config = JournalConfig {
        dir: dir.0.clone(),
        segment_bytes: MIN_SEGMENT_BYTES,
        durability: Durability::None,
    };
    let (mut journal, recovery) = match Journal::open(config.clone()) {
        Ok(opened) => opened,
        Err(JournalError::Corrupt { .. }) => return,
        Err(other) => panic!("only Corrupt may refuse fuzzed segments, got {other}"),
    };
    let on_disk = independent_parse(&dir.0);
    assert_eq!(on_disk.len() as u64, recovery.records);
    assert_eq!(on_disk.first().map(|r| r.0), recovery.first_seq);
    assert_eq!(on_disk.last().map(|r| r.0), recovery.last_seq);
    let read: Vec<(u64, Vec<u8>)> = read_journal(&dir.0, 0)
        .expect("read_journal")
        .collect::<Result<_, _>>()
        .expect("a recovered journal reads back");
    assert_eq!(read, on_disk);

    drop(journal);
    let (reopened, again) = Journal::open(config).expect("a recovered journal reopens");
    assert_eq!(again.truncated, None, "recovery is idempotent");
    assert_eq!(again.records, recovery.records);
    journal = reopened;
    let next = match recovery.last_seq {
        Some(u64::MAX) => return,
        Some(last) => last + 1,
        None => 1,
    };
    journal.append(next, b"after recovery").expect("append");
    assert_eq!(journal.commit().expect("commit"), next);
    let read = read_journal(&dir.0, next).expect("read_journal").next();
    assert_eq!(
        read.expect("the new record").expect("reads"),
        (next, b"after recovery".to_vec())
    );
}

/// Byte 0 picks one to three segments, bytes 1 and 2 where to cut the rest.
/// Each segment is named after the seq in its first header when that is
/// plausible (so the fuzzer can reach valid journals), else after the
/// previous name plus one.
fn split_into_segments(data: &[u8]) -> Vec<(u64, &[u8])> {
    let Some((&control, rest)) = data.split_first() else {
        return vec![(1, &[])];
    };
    let count = 1 + usize::from(control % 3);
    let (cuts, body) = rest.split_at(rest.len().min(2));
    let mut points: Vec<usize> = cuts
        .iter()
        .take(count - 1)
        .map(|&c| usize::from(c) * body.len() / 256)
        .collect();
    points.sort_unstable();
    let mut parts = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([body.len()]) {
        parts.push(&body[start..point]);
        start = point;
    }
    let mut segments: Vec<(u64, &[u8])> = Vec::new();
    let mut previous = 0u64;
    for part in parts {
        let header_seq = part
            .get(4..12)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
            .filter(|&seq| seq != 0);
        let name = header_seq.unwrap_or(previous.saturating_add(1));
        if segments.iter().any(|(seq, _)| *seq == name) {
            continue;
        }
        segments.push((name, part));
        previous = name;
    }
    segments
}

/// Walks every segment file left in `dir` with a parser written here, not
/// the journal's: records with verified CRCs and contiguous seqs, then
/// only zeros.
fn independent_parse(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .expect("list")
        .filter_map(|entry| {
            let path = entry.expect("entry").path();
            let seq = parse_segment_file_name(path.file_name()?.to_str()?)?;
            Some((seq, path))
        })
        .collect();
    segments.sort();
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    for (first_seq, path) in segments {
        let bytes = fs::read(&path).expect("read segment");
        let mut offset = 0;
        let mut in_segment = 0;
        while offset + RECORD_HEADER_BYTES <= bytes.len()
            && bytes[offset..offset + RECORD_HEADER_BYTES]
                .iter()
                .any(|&b| b != 0)
        {
            let field = |at: usize, len: usize| {
                bytes[offset + at..offset + at + len]
                    .iter()
                    .rev()
                    .fold(0u64, |v, &b| v << 8 | u64::from(b))
            };
            let payload_len = field(0, 4) as usize;
            let seq = field(4, 8);
            let crc = field(12, 4) as u32;
            let end = offset + RECORD_HEADER_BYTES + payload_len;
            assert!(
                payload_len > 0 && end <= bytes.len(),
                "kept record is whole"
            );
            let payload = &bytes[offset + RECORD_HEADER_BYTES..end];
            assert_eq!(
                crc,
                record_crc(payload_len as u32, seq, payload),
                "kept record has a valid CRC"
            );
            match records.last() {
                Some(&(last, _)) => assert_eq!(seq, last + 1, "contiguous seqs"),
                None => assert!(seq >= 1),
            }
            if in_segment == 0 {
                assert_eq!(seq, first_seq, "first record matches the file name");
            }
            records.push((seq, payload.to_vec()));
            in_segment += 1;
            offset = end;
        }
        assert!(in_segment > 0, "no empty segment is kept");
        assert!(
            bytes[offset..].iter().all(|&b| b == 0),
            "only zeros after the last record"
        );
    }
    records
}

/// A fresh directory (in /dev/shm when there is one, for speed), removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "brokerx-fuzz-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
