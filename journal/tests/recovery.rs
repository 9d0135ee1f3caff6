//! The recovery scan's rules, one test each: a torn last record at every
//! byte offset is truncated; a damaged middle record, a sequence gap or a
//! repeat is refused as corruption naming the file and offset; malformed
//! and random inputs give clear answers and never a panic.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use brokerx_journal::constants::{MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES};
use brokerx_journal::format::{encode_record, segment_file_name, RecordHeader};
use brokerx_journal::{read_journal, Journal, JournalError, Recovery};
use common::{config, payload, read_all, records, write_segment, Rng, TempDir};

const SEGMENT_BYTES: u64 = 64 << 10;

/// A journal of `count` records (payloads of 10 to 60 bytes, no zero
/// byte), one commit each, in one segment. Returns the segment's bytes and
/// each record's (start, end) offsets.
/// A segment's bytes, its records, and each record's (start, end) offsets.
type Reference = (Vec<u8>, Vec<(u64, Vec<u8>)>, Vec<(usize, usize)>);

fn build_reference(count: u64) -> Reference {
    let temp = TempDir::new("reference");
    let (mut journal, _) = Journal::open(config(temp.path(), SEGMENT_BYTES)).unwrap();
    let mut expected = Vec::new();
    let mut spans = Vec::new();
    let mut offset = 0;
    for seq in 1..=count {
        let body = payload(seq, 10 + (seq as usize * 13) % 51);
        journal.append(seq, &body).unwrap();
        journal.commit().unwrap();
        let end = offset + RECORD_HEADER_BYTES + body.len();
        spans.push((offset, end));
        offset = end;
        expected.push((seq, body));
    }
    let [path] = journal.segment_paths().try_into().unwrap();
    drop(journal);
    (fs::read(path).unwrap(), expected, spans)
}

fn corrupt_parts(error: JournalError) -> (PathBuf, u64, String) {
    let message = error.to_string();
    match error {
        JournalError::Corrupt {
            segment,
            offset,
            reason,
        } => {
            assert!(
                message.contains(&segment.display().to_string()),
                "{message}"
            );
            assert!(message.contains(&format!("offset {offset}")), "{message}");
            (segment, offset, reason)
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn open_corrupt(dir: &Path) -> (PathBuf, u64, String) {
    let error = Journal::open(config(dir, SEGMENT_BYTES)).unwrap_err();
    let parts = corrupt_parts(error);
    // The read-only reader refuses the same journal.
    let read: Result<Vec<_>, _> = read_journal(dir, 0).unwrap().collect();
    let reader_parts = corrupt_parts(read.unwrap_err());
    assert_eq!((&parts.0, parts.1), (&reader_parts.0, reader_parts.1));
    parts
}

#[test]
fn torn_last_record_at_every_byte_offset_is_truncated() {
    let (bytes, expected, spans) = build_reference(50);
    let (last_start, last_end) = spans[49];
    let name = segment_file_name(1);
    for cut in last_start..last_end {
        for shorten_file in [false, true] {
            let label = format!("cut {cut} shorten_file {shorten_file}");
            let temp = TempDir::new("torn");
            let mut damaged = bytes.clone();
            if shorten_file {
                damaged.truncate(cut);
            } else {
                damaged[cut..].fill(0);
            }
            let path = temp.path().join(&name);
            fs::write(&path, &damaged).unwrap();

            // Read-only first: yields the 49 good records, reports the tear.
            let mut reader = read_journal(temp.path(), 0).unwrap();
            let got: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
            assert_eq!(got, expected[..49], "{label}");
            assert_eq!(
                reader.torn_tail().map(|t| t.offset),
                (cut > last_start).then_some(last_start as u64),
                "{label}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                damaged,
                "the reader writes nothing"
            );

            let (mut journal, recovery) =
                Journal::open(config(temp.path(), SEGMENT_BYTES)).unwrap();
            assert_eq!(recovery.records, 49, "{label}");
            assert_eq!((recovery.first_seq, recovery.last_seq), (Some(1), Some(49)));
            match &recovery.truncated {
                None => assert_eq!(cut, last_start, "{label}: only a clean cut is not torn"),
                Some(tail) => {
                    assert!(cut > last_start, "{label}");
                    assert_eq!(tail.segment, path);
                    assert_eq!(tail.offset, last_start as u64);
                    let written_end = damaged.iter().rposition(|&b| b != 0).unwrap() + 1;
                    assert_eq!(
                        tail.bytes_discarded,
                        (written_end - last_start) as u64,
                        "{label}"
                    );
                    assert!(!tail.reason.is_empty());
                }
            }
            let on_disk = fs::read(&path).unwrap();
            assert!(
                on_disk[last_start..].iter().all(|&b| b == 0),
                "{label}: tail zeroed"
            );
            assert_eq!(on_disk[..last_start], bytes[..last_start]);

            // Appending continues at the torn record's seq.
            assert_eq!(journal.last_seq(), Some(49));
            journal.append(50, b"rewritten").unwrap();
            journal.append(51, b"and one more").unwrap();
            assert_eq!(journal.commit().unwrap(), 51);
            drop(journal);
            let (_, recovery) = Journal::open(config(temp.path(), SEGMENT_BYTES)).unwrap();
            assert_eq!(recovery.truncated, None, "{label}");
            let got = read_all(temp.path(), 0);
            assert_eq!(got[..49], expected[..49]);
            assert_eq!(
                got[49..],
                [(50, b"rewritten".to_vec()), (51, b"and one more".to_vec())]
            );
        }
    }
}

#[test]
fn a_torn_record_alone_in_the_last_segment_removes_that_segment() {
    let temp = TempDir::new("torn-segment");
    write_segment(temp.path(), 1, &records(&[1, 2, 3]), 4096);
    let second = write_segment(temp.path(), 4, &records(&[4]), 4096);
    let mut bytes = fs::read(&second).unwrap();
    bytes[20] ^= 0x40; // payload byte of seq 4
    fs::write(&second, &bytes).unwrap();
    let (mut journal, recovery) = Journal::open(config(temp.path(), 4096)).unwrap();
    assert_eq!(recovery.last_seq, Some(3));
    assert_eq!(recovery.segments, 1);
    let tail = recovery.truncated.unwrap();
    assert_eq!((tail.segment, tail.offset), (second.clone(), 0));
    assert!(tail.reason.contains("CRC"), "{}", tail.reason);
    assert!(!second.exists());
    journal.append(4, b"again").unwrap();
    journal.commit().unwrap();
    assert_eq!(read_all(temp.path(), 0).len(), 4);
}

#[test]
fn an_empty_last_segment_is_removed_quietly() {
    let temp = TempDir::new("empty-last");
    write_segment(temp.path(), 1, &records(&[1, 2]), 4096);
    let empty = write_segment(temp.path(), 3, &[], 4096);
    let (mut journal, recovery) = Journal::open(config(temp.path(), 4096)).unwrap();
    assert_eq!(recovery.truncated, None);
    assert_eq!((recovery.records, recovery.segments), (2, 1));
    assert!(!empty.exists());
    journal.append(3, b"c").unwrap();
    journal.commit().unwrap();
}

#[test]
fn one_flipped_byte_in_a_middle_record_is_corruption() {
    let (bytes, _, spans) = build_reference(50);
    let (start, end) = spans[24];
    let positions = [
        ("len low byte", start),
        ("len high byte", start + 3),
        ("seq low byte", start + 4),
        ("seq high byte", start + 11),
        ("crc low byte", start + 12),
        ("crc high byte", start + 15),
        ("first payload byte", start + 16),
        ("last payload byte", end - 1),
    ];
    for (what, position) in positions {
        for flip in [0x01u8, 0x80, 0xFF] {
            let temp = TempDir::new("flip");
            let mut damaged = bytes.clone();
            damaged[position] ^= flip;
            let path = temp.path().join(segment_file_name(1));
            fs::write(&path, &damaged).unwrap();
            let (segment, offset, reason) = open_corrupt(temp.path());
            assert_eq!(segment, path, "{what}");
            assert_eq!(offset, start as u64, "{what} ^ {flip:#x}: {reason}");
            assert!(reason.contains("valid record (seq 26)"), "{what}: {reason}");
            assert_eq!(
                fs::read(&path).unwrap(),
                damaged,
                "refusing changes nothing"
            );
        }
    }
}

#[test]
fn damage_followed_by_a_valid_record_in_a_later_segment_is_corruption() {
    let temp = TempDir::new("cross");
    let first = write_segment(temp.path(), 1, &records(&[1, 2, 3]), 4096);
    write_segment(temp.path(), 4, &records(&[4, 5]), 4096);
    let mut bytes = fs::read(&first).unwrap();
    bytes[26 * 2 + 17] ^= 1; // payload of seq 3, the last record of the first segment
    fs::write(&first, &bytes).unwrap();
    let (segment, offset, reason) = open_corrupt(temp.path());
    assert_eq!((segment, offset), (first, 2 * 26));
    assert!(reason.contains(&segment_file_name(4)), "{reason}");

    // A hole (zeroed record) with a valid record after it is corruption too.
    let temp = TempDir::new("hole");
    let path = write_segment(temp.path(), 1, &records(&[1, 2, 3]), 4096);
    let mut bytes = fs::read(&path).unwrap();
    bytes[26..52].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (_, offset, reason) = open_corrupt(temp.path());
    assert_eq!(offset, 26, "{reason}");

    // An empty segment between two others hides missing records.
    let temp = TempDir::new("empty-middle");
    write_segment(temp.path(), 1, &records(&[1, 2]), 4096);
    let empty = write_segment(temp.path(), 3, &[], 4096);
    write_segment(temp.path(), 5, &records(&[5]), 4096);
    let (segment, offset, reason) = open_corrupt(temp.path());
    assert_eq!((segment, offset), (empty, 0), "{reason}");
}

#[test]
fn sequence_gaps_and_repeats_are_corruption() {
    // (what, segments as (first seq, record seqs), bad segment, bad record index)
    type Case = (&'static str, &'static [(u64, &'static [u64])], u64, usize);
    let cases: [Case; 7] = [
        ("gap within a segment", &[(1, &[1, 2, 4])], 1, 2),
        ("repeat within a segment", &[(1, &[1, 2, 2])], 1, 2),
        ("going back within a segment", &[(1, &[1, 2, 3, 1])], 1, 3),
        (
            "gap across segments",
            &[(1, &[1, 2, 3]), (5, &[5, 6])],
            5,
            0,
        ),
        (
            "repeat across segments",
            &[(1, &[1, 2, 3]), (3, &[3, 4])],
            3,
            0,
        ),
        (
            "file name disagrees with first record",
            &[(1, &[2, 3])],
            1,
            0,
        ),
        ("seq zero", &[(0, &[0, 1])], 0, 0),
    ];
    for (what, segments, bad_segment, bad_record) in cases {
        let temp = TempDir::new("seq");
        for (first_seq, seqs) in segments {
            write_segment(temp.path(), *first_seq, &records(seqs), 4096);
        }
        let (segment, offset, reason) = open_corrupt(temp.path());
        assert_eq!(
            segment,
            temp.path().join(segment_file_name(bad_segment)),
            "{what}: {reason}"
        );
        assert_eq!(offset, bad_record as u64 * 26, "{what}: {reason}");
        assert!(reason.contains("seq"), "{what}: {reason}");
    }
}

fn header(payload_len: u32, seq: u64, crc: u32) -> Vec<u8> {
    RecordHeader {
        payload_len,
        seq,
        crc,
    }
    .encode()
    .to_vec()
}

fn good(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, body) in records(seqs) {
        encode_record(seq, &body, &mut out);
    }
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// What opening a one-segment journal made of these bytes must do.
#[derive(Debug)]
enum Expect {
    /// Opens; keeps this many records; a torn tail at this offset, or none.
    Opens {
        records: u64,
        torn_at: Option<u64>,
        reason: &'static str,
    },
    Corrupt {
        offset: u64,
        reason: &'static str,
    },
}

#[test]
fn malformed_inputs_give_clear_answers() {
    let mut rng = Rng::new(7);
    let garbage = rng.bytes(4096);
    let opens = |records, torn_at, reason| Expect::Opens {
        records,
        torn_at,
        reason,
    };
    let table: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty file", vec![], opens(0, None, "")),
        ("all zeros", vec![0; 4096], opens(0, None, "")),
        (
            "all 0xFF",
            vec![0xFF; 4096],
            opens(0, Some(0), "exceeds the maximum"),
        ),
        ("random garbage", garbage.clone(), opens(0, Some(0), "")),
        (
            "a header claiming 4 GiB",
            cat(&[&header(u32::MAX, 1, 0), &[0; 100]]),
            opens(0, Some(0), "exceeds"),
        ),
        (
            "one past the payload bound",
            cat(&[&good(&[1]), &header(MAX_PAYLOAD_BYTES as u32 + 1, 2, 0)]),
            opens(1, Some(26), "exceeds"),
        ),
        (
            "length running past the file",
            cat(&[&good(&[1, 2]), &header(100, 3, 0), &[9; 20]]),
            opens(2, Some(52), "past the end"),
        ),
        (
            "length running into zeros",
            cat(&[&good(&[1]), &header(10, 2, 0x1234_5678), &[0; 200]]),
            opens(1, Some(26), "CRC mismatch"),
        ),
        (
            "partial header",
            cat(&[&good(&[1]), &[1, 2, 3, 4, 5, 6, 7]]),
            opens(1, Some(26), "partial record header"),
        ),
        (
            "partial header of zeros",
            cat(&[&good(&[1]), &[0; 7]]),
            opens(1, None, ""),
        ),
        (
            "zero length, nonzero seq",
            cat(&[&good(&[1]), &header(0, 2, 0), &[0; 64]]),
            opens(1, Some(26), "length 0"),
        ),
        (
            "garbage after the last record",
            cat(&[&good(&[1, 2, 3]), &garbage]),
            opens(3, Some(78), ""),
        ),
        (
            "no zero padding at all",
            good(&[1, 2, 3]),
            opens(3, None, ""),
        ),
        (
            "garbage, then a valid record",
            cat(&[&[0xAB; 33], &good(&[1])]),
            Expect::Corrupt {
                offset: 0,
                reason: "valid record",
            },
        ),
        (
            "bad record, then a valid one",
            cat(&[&good(&[1]), &header(10, 2, 0), &[5; 10], &good(&[3])]),
            Expect::Corrupt {
                offset: 26,
                reason: "CRC mismatch",
            },
        ),
        (
            "zeros, then a valid record",
            cat(&[&good(&[1]), &[0; 40], &good(&[2])]),
            Expect::Corrupt {
                offset: 26,
                reason: "all-zero header",
            },
        ),
        (
            "zeros, then garbage",
            cat(&[&good(&[1]), &[0; 40], &[7; 3]]),
            opens(1, Some(26), "all-zero header"),
        ),
        (
            "valid CRC, wrong seq",
            good(&[1, 3]),
            Expect::Corrupt {
                offset: 26,
                reason: "gap",
            },
        ),
    ];
    for (what, bytes, expect) in table {
        let temp = TempDir::new("malformed");
        let path = temp.path().join(segment_file_name(1));
        fs::write(&path, &bytes).unwrap();
        let result = Journal::open(config(temp.path(), 4096));
        match (result, expect) {
            (
                Ok((mut journal, recovery)),
                Expect::Opens {
                    records,
                    torn_at,
                    reason,
                },
            ) => {
                let Recovery { truncated, .. } = &recovery;
                assert_eq!(recovery.records, records, "{what}: {recovery:?}");
                assert_eq!(
                    truncated.as_ref().map(|t| t.offset),
                    torn_at,
                    "{what}: {recovery:?}"
                );
                if let Some(tail) = truncated {
                    assert!(tail.reason.contains(reason), "{what}: {}", tail.reason);
                    assert!(tail.bytes_discarded > 0);
                }
                // Whatever was kept reads back, and the journal takes the next record.
                let kept = read_all(temp.path(), 0);
                assert_eq!(kept.len() as u64, records, "{what}");
                journal.append(records + 1, b"next").unwrap();
                journal.commit().unwrap();
                assert_eq!(read_all(temp.path(), 0).len() as u64, records + 1, "{what}");
            }
            (Err(error), Expect::Corrupt { offset, reason }) => {
                let (segment, got_offset, got_reason) = corrupt_parts(error);
                assert_eq!(segment, path, "{what}");
                assert_eq!(got_offset, offset, "{what}: {got_reason}");
                assert!(got_reason.contains(reason), "{what}: {got_reason}");
            }
            (got, expect) => panic!("{what}: expected {expect:?}, got {:?}", got.map(|r| r.1)),
        }
    }
}

#[test]
fn odd_directory_contents() {
    // A name that looks like a segment but does not parse is refused.
    let temp = TempDir::new("names");
    fs::write(temp.path().join("segment-12.log"), b"").unwrap();
    let (segment, offset, reason) =
        corrupt_parts(Journal::open(config(temp.path(), 4096)).unwrap_err());
    assert_eq!(
        (segment.file_name().unwrap(), offset),
        ("segment-12.log".as_ref(), 0)
    );
    assert!(reason.contains("name"));

    // Other files, temp files and the archive directory are ignored.
    let temp = TempDir::new("others");
    write_segment(temp.path(), 1, &records(&[1, 2]), 4096);
    fs::write(temp.path().join("notes.txt"), b"hello").unwrap();
    fs::write(
        temp.path().join("snapshot-00000000000000000001.snap.tmp"),
        b"x",
    )
    .unwrap();
    fs::create_dir(temp.path().join("archive")).unwrap();
    write_segment(&temp.path().join("archive"), 7, &records(&[7]), 4096);
    let (_, recovery) = Journal::open(config(temp.path(), 4096)).unwrap();
    assert_eq!(recovery.records, 2);
}

/// Random damage to a valid multi-segment journal (flipped bytes, zeroed
/// ranges, shortened files, removed or added segments): opening never
/// panics, and when it succeeds, what it keeps is a prefix of the original
/// records, byte for byte. Recovery never invents, reorders or skips a record.
#[test]
fn random_damage_never_panics_and_never_invents_records() {
    let reference = TempDir::new("damage-ref");
    let (mut journal, _) = Journal::open(config(reference.path(), 4096)).unwrap();
    let mut original = Vec::new();
    let mut rng = Rng::new(99);
    for seq in 1..=300u64 {
        let len = rng.range(1, 120) as usize;
        let body = rng.bytes(len);
        journal.append(seq, &body).unwrap();
        original.push((seq, body));
        if rng.range(0, 4) == 0 {
            journal.commit().unwrap();
        }
    }
    journal.commit().unwrap();
    let files: Vec<(PathBuf, Vec<u8>)> = journal
        .segment_paths()
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    drop(journal);
    let (mut opened, mut refused) = (0, 0);
    for case in 0..300u64 {
        let mut rng = Rng::new(1000 + case);
        let temp = TempDir::new("damage");
        let mut segments: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(p, b)| {
                (
                    p.file_name().unwrap().to_str().unwrap().to_string(),
                    b.clone(),
                )
            })
            .collect();
        for _ in 0..rng.range(1, 4) {
            // Half the time damage the last segment, where torn tails live.
            let index = if rng.range(0, 2) == 0 {
                segments.len() - 1
            } else {
                rng.range(0, segments.len() as u64) as usize
            };
            let data = &mut segments[index].1;
            let len = data.len() as u64;
            match rng.range(0, 6) {
                0 => {
                    let at = rng.range(0, len) as usize;
                    data[at] ^= 1 << rng.range(0, 8);
                }
                1 => {
                    let from = rng.range(0, len);
                    let to = rng.range(from, len + 1);
                    data[from as usize..to as usize].fill(0);
                }
                2 => data.truncate(rng.range(0, len) as usize),
                3 => {
                    let at = rng.range(0, len) as usize;
                    let junk_len = rng.range(1, 64) as usize;
                    let junk = rng.bytes(junk_len);
                    let end = (at + junk.len()).min(data.len());
                    data[at..end].copy_from_slice(&junk[..end - at]);
                }
                4 => {
                    segments.remove(index);
                    if segments.is_empty() {
                        break;
                    }
                }
                _ => {
                    let seq = rng.range(1, 400);
                    let junk_len = rng.range(0, 200) as usize;
                    segments.push((segment_file_name(seq), rng.bytes(junk_len)));
                }
            }
        }
        for (name, bytes) in &segments {
            fs::write(temp.path().join(name), bytes).unwrap();
        }
        match Journal::open(config(temp.path(), 4096)) {
            Ok((journal, recovery)) => {
                opened += 1;
                drop(journal);
                let kept = read_all(temp.path(), 0);
                assert_eq!(kept.len() as u64, recovery.records, "case {case}");
                if let Some(first) = kept.first() {
                    let start = original
                        .iter()
                        .position(|r| r.0 == first.0)
                        .expect("an original seq");
                    assert_eq!(kept[..], original[start..start + kept.len()], "case {case}");
                }
            }
            Err(JournalError::Corrupt { .. }) => refused += 1,
            Err(other) => panic!("case {case}: unexpected {other}"),
        }
    }
    assert!(
        opened > 20 && refused > 20,
        "both outcomes exercised: {opened} opened, {refused} refused"
    );
}
