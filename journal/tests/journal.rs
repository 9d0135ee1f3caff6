//! The writer's behaviour: round trips across segment rollovers, group
//! commit (counted syscalls), archiving, reading from a seq, sequence
//! assertions, the directory lock, and poisoning after a failed sync.

mod common;

use std::fs;

use brokerx_journal::constants::{MAX_PAYLOAD_BYTES, MIN_SEGMENT_BYTES, RECORD_HEADER_BYTES};
use brokerx_journal::format::parse_segment_file_name;
use brokerx_journal::{read_journal, Durability, Journal, JournalError, JournalStats};
use common::{config, payload, read_all, Rng, TempDir};

const SMALL_SEGMENT_BYTES: u64 = MIN_SEGMENT_BYTES;

fn segment_first_seqs(dir: &std::path::Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_segment_file_name(e.unwrap().file_name().to_str()?))
        .collect();
    seqs.sort_unstable();
    seqs
}

fn delta(after: JournalStats, before: JournalStats) -> JournalStats {
    JournalStats {
        commits: after.commits - before.commits,
        records_committed: after.records_committed - before.records_committed,
        bytes_written: after.bytes_written - before.bytes_written,
        write_calls: after.write_calls - before.write_calls,
        data_sync_calls: after.data_sync_calls - before.data_sync_calls,
        segments_created: after.segments_created - before.segments_created,
        file_sync_calls: after.file_sync_calls - before.file_sync_calls,
        dir_sync_calls: after.dir_sync_calls - before.dir_sync_calls,
    }
}

#[test]
fn round_trip_across_rollovers_archive_and_read_from_seq() {
    let temp = TempDir::new("roundtrip");
    let dir = temp.path().join("journal"); // created by open
    let (mut journal, recovery) = Journal::open(config(&dir, SMALL_SEGMENT_BYTES)).unwrap();
    assert_eq!(recovery.records, 0);
    assert_eq!(recovery.first_seq, None);
    assert_eq!(
        journal.commit().unwrap(),
        0,
        "an empty commit of an empty journal"
    );

    let mut expected = Vec::new();
    for seq in 1..=600u64 {
        let body = payload(seq, 20 + (seq as usize * 37) % 200);
        journal.append(seq, &body).unwrap();
        expected.push((seq, body));
        if seq % 7 == 0 {
            assert_eq!(journal.commit().unwrap(), seq);
            assert_eq!(journal.durable_seq(), Some(seq));
        }
        journal.check_invariants();
    }
    assert_eq!(journal.last_seq(), Some(600));
    assert_eq!(journal.durable_seq(), Some(595));
    assert_eq!(journal.commit().unwrap(), 600);
    let segments = segment_first_seqs(&dir);
    assert!(segments.len() >= 10, "several rollovers: {segments:?}");
    assert_eq!(segments[0], 1);
    for path in journal.segment_paths() {
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            SMALL_SEGMENT_BYTES,
            "preallocated"
        );
    }
    assert_eq!(read_all(&dir, 0), expected);
    drop(journal);

    // Reopen: everything is there, and appending continues.
    let (mut journal, recovery) = Journal::open(config(&dir, SMALL_SEGMENT_BYTES)).unwrap();
    assert_eq!(recovery.first_seq, Some(1));
    assert_eq!(recovery.last_seq, Some(600));
    assert_eq!(recovery.records, 600);
    assert_eq!(recovery.segments, segments.len());
    assert_eq!(recovery.truncated, None);
    assert_eq!(journal.durable_seq(), Some(600));
    for seq in 601..=650u64 {
        let body = payload(seq, 50);
        journal.append(seq, &body).unwrap();
        expected.push((seq, body));
    }
    journal.commit().unwrap();

    // Reading from a seq, in the middle of a segment and at boundaries.
    let segments = segment_first_seqs(&dir);
    for from in [
        0,
        1,
        2,
        299,
        segments[3],
        segments[3] + 1,
        650,
        651,
        u64::MAX,
    ] {
        let got = read_all(&dir, from);
        let want: Vec<_> = expected
            .iter()
            .filter(|(s, _)| *s >= from)
            .cloned()
            .collect();
        assert_eq!(got, want, "from {from}");
    }

    // Archive: a seq inside segment 4 archives segments 0..3 (all <= seq).
    let archive_seq = segments[4] - 1;
    assert_eq!(journal.archive_through(archive_seq - 1).unwrap(), 3);
    assert_eq!(journal.archive_through(archive_seq).unwrap(), 1);
    assert_eq!(journal.archive_through(archive_seq).unwrap(), 0);
    assert_eq!(segment_first_seqs(&dir)[0], segments[4]);
    assert_eq!(
        segment_first_seqs(&dir.join("archive")),
        segments[..4].to_vec()
    );
    // The archive reads back on its own, and the live dir from its start.
    let archived: Vec<_> = expected
        .iter()
        .filter(|(s, _)| *s <= archive_seq)
        .cloned()
        .collect();
    assert_eq!(read_all(&dir.join("archive"), 0), archived);
    let live: Vec<_> = expected
        .iter()
        .filter(|(s, _)| *s > archive_seq)
        .cloned()
        .collect();
    assert_eq!(read_all(&dir, 0), live);
    // The segment being written is never archived.
    let live_segments = segment_first_seqs(&dir).len();
    assert_eq!(
        journal.archive_through(u64::MAX).unwrap(),
        live_segments - 1
    );
    assert_eq!(segment_first_seqs(&dir).len(), 1);
    journal.check_invariants();
    drop(journal);

    let (journal, recovery) = Journal::open(config(&dir, SMALL_SEGMENT_BYTES)).unwrap();
    assert_eq!(recovery.last_seq, Some(650));
    assert_eq!(recovery.segments, 1);
    assert_eq!(journal.last_seq(), Some(650));
}

#[test]
fn group_commit_is_one_write_and_one_fdatasync() {
    let temp = TempDir::new("group");
    let (mut journal, _) = Journal::open(config(temp.path(), 1 << 20)).unwrap();
    journal.append(1, b"first").unwrap();
    journal.commit().unwrap();
    let first = journal.stats();
    assert_eq!(first.segments_created, 1);
    assert_eq!(first.file_sync_calls, 1);
    assert_eq!(first.dir_sync_calls, 1);

    for round in 0..3u64 {
        let before = journal.stats();
        let base = 2 + round * 500;
        for seq in base..base + 500 {
            journal.append(seq, &payload(seq, 40)).unwrap();
        }
        assert_eq!(journal.stats(), before, "append does no I/O");
        assert_eq!(journal.durable_seq(), Some(base - 1));
        assert_eq!(journal.commit().unwrap(), base + 499);
        let d = delta(journal.stats(), before);
        assert_eq!(d.write_calls, 1, "{d:?}");
        assert_eq!(d.data_sync_calls, 1, "never one fsync per record: {d:?}");
        assert_eq!(d.commits, 1);
        assert_eq!(d.records_committed, 500);
        assert_eq!(d.bytes_written, 500 * (RECORD_HEADER_BYTES as u64 + 40));
        assert_eq!(d.segments_created + d.file_sync_calls + d.dir_sync_calls, 0);
    }
    // An empty commit does nothing.
    let before = journal.stats();
    assert_eq!(journal.commit().unwrap(), 1501);
    assert_eq!(journal.stats(), before);
}

#[test]
fn a_batch_spanning_segments_syncs_each_before_creating_the_next() {
    let temp = TempDir::new("span");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1, &payload(1, 100)).unwrap();
    journal.commit().unwrap();
    let before = journal.stats();
    // Records of 116 bytes: 35 fit in 4 KiB. The first segment takes 34
    // more, the next 35, the last the remaining 31: three writes.
    assert_eq!(SMALL_SEGMENT_BYTES / 116, 35);
    for seq in 2..=101 {
        journal.append(seq, &payload(seq, 100)).unwrap();
    }
    journal.commit().unwrap();
    let d = delta(journal.stats(), before);
    assert_eq!(d.segments_created, 2, "{d:?}");
    assert_eq!(d.write_calls, 3);
    assert_eq!(d.data_sync_calls, 3);
    assert_eq!(d.file_sync_calls, 2);
    assert_eq!(d.dir_sync_calls, 2);
    assert_eq!(segment_first_seqs(temp.path()), vec![1, 36, 71]);
    assert_eq!(read_all(temp.path(), 0).len(), 101);
}

#[test]
fn durability_none_never_syncs() {
    let temp = TempDir::new("nosync");
    let mut cfg = config(temp.path(), SMALL_SEGMENT_BYTES);
    cfg.durability = Durability::None;
    let (mut journal, _) = Journal::open(cfg).unwrap();
    for seq in 1..=200 {
        journal.append(seq, &payload(seq, 64)).unwrap();
        if seq % 10 == 0 {
            journal.commit().unwrap();
        }
    }
    let stats = journal.stats();
    assert_eq!(
        stats.data_sync_calls + stats.file_sync_calls + stats.dir_sync_calls,
        0
    );
    assert!(stats.segments_created > 1);
    assert_eq!(read_all(temp.path(), 0).len(), 200);
}

#[test]
fn first_record_may_start_anywhere_and_uncommitted_records_are_lost_on_drop() {
    let temp = TempDir::new("start");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1000, b"after a snapshot").unwrap();
    journal.append(1001, b"x").unwrap();
    assert_eq!(journal.commit().unwrap(), 1001);
    journal.append(1002, b"never committed").unwrap();
    assert_eq!(journal.last_seq(), Some(1002));
    assert_eq!(journal.durable_seq(), Some(1001));
    drop(journal);
    assert_eq!(segment_first_seqs(temp.path()), vec![1000]);
    let (mut journal, recovery) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    assert_eq!(
        (recovery.first_seq, recovery.last_seq),
        (Some(1000), Some(1001))
    );
    journal.append(1002, b"again").unwrap();
    journal.commit().unwrap();
    assert_eq!(
        read_all(temp.path(), 0),
        vec![
            (1000, b"after a snapshot".to_vec()),
            (1001, b"x".to_vec()),
            (1002, b"again".to_vec())
        ]
    );
}

#[test]
#[should_panic(expected = "out of sequence")]
fn append_gap_is_a_caller_bug() {
    let temp = TempDir::new("gap");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1, b"a").unwrap();
    let _ = journal.append(3, b"b");
}

#[test]
#[should_panic(expected = "out of sequence")]
fn append_repeat_is_a_caller_bug() {
    let temp = TempDir::new("repeat");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(5, b"a").unwrap();
    journal.commit().unwrap();
    let _ = journal.append(5, b"b");
}

#[test]
#[should_panic(expected = "seq 0")]
fn append_seq_zero_is_a_caller_bug() {
    let temp = TempDir::new("zero");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    let _ = journal.append(0, b"a");
}

#[test]
fn bad_payloads_and_configs_are_errors_not_panics() {
    let temp = TempDir::new("bad");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    assert!(matches!(
        journal.append(1, b""),
        Err(JournalError::EmptyPayload)
    ));
    let max = journal.max_payload_bytes();
    assert_eq!(max, SMALL_SEGMENT_BYTES as usize - RECORD_HEADER_BYTES);
    assert!(matches!(
        journal.append(1, &vec![1; max + 1]),
        Err(JournalError::PayloadTooLarge { .. })
    ));
    // The failed appends changed nothing; a record filling a whole segment works.
    journal.append(1, &vec![7; max]).unwrap();
    journal.append(2, &[8]).unwrap();
    journal.commit().unwrap();
    assert_eq!(segment_first_seqs(temp.path()), vec![1, 2]);
    drop(journal);

    let temp = TempDir::new("big");
    let (mut journal, _) = Journal::open(config(temp.path(), 4 << 20)).unwrap();
    assert_eq!(journal.max_payload_bytes(), MAX_PAYLOAD_BYTES);
    journal.append(1, &vec![1; MAX_PAYLOAD_BYTES]).unwrap();
    journal.commit().unwrap();
    assert_eq!(read_all(temp.path(), 0)[0].1.len(), MAX_PAYLOAD_BYTES);

    for segment_bytes in [0, MIN_SEGMENT_BYTES - 1, (1 << 30) + 1] {
        assert!(matches!(
            Journal::open(config(temp.path(), segment_bytes)),
            Err(JournalError::InvalidConfig { .. })
        ));
    }
    let file = temp.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let error = Journal::open(config(&file, SMALL_SEGMENT_BYTES)).unwrap_err();
    assert!(matches!(error, JournalError::Io { .. }), "{error}");
}

#[test]
fn batch_bound_is_enforced() {
    let temp = TempDir::new("batch");
    let mut cfg = config(temp.path(), 1 << 30);
    cfg.durability = Durability::None;
    let (mut journal, _) = Journal::open(cfg).unwrap();
    let body = vec![3u8; MAX_PAYLOAD_BYTES];
    let mut seq = 1;
    let error = loop {
        match journal.append(seq, &body) {
            Ok(()) => seq += 1,
            Err(error) => break error,
        }
        assert!(seq < 100, "the batch bound must stop this");
    };
    assert!(matches!(error, JournalError::BatchFull { .. }), "{error}");
    journal.commit().unwrap();
    journal.append(seq, &body).unwrap();
    journal.commit().unwrap();
}

#[test]
fn a_second_writer_is_refused() {
    let temp = TempDir::new("lock");
    let (journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    let error = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap_err();
    assert!(matches!(error, JournalError::Locked { .. }), "{error}");
    // Readers need no lock.
    assert_eq!(read_journal(temp.path(), 0).unwrap().count(), 0);
    drop(journal);
    Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
}

#[test]
fn failed_data_sync_poisons_the_journal() {
    let temp = TempDir::new("poison");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1, b"a").unwrap();
    journal.commit().unwrap();
    journal.append(2, b"b").unwrap();
    journal.inject_sync_failure();
    let error = journal.commit().unwrap_err();
    assert!(matches!(error, JournalError::SyncFailed { .. }), "{error}");
    assert!(error.to_string().contains("poisoned"));
    assert_eq!(
        journal.durable_seq(),
        Some(1),
        "the failed batch is not durable"
    );
    assert!(matches!(journal.commit(), Err(JournalError::Poisoned)));
    assert!(matches!(
        journal.append(3, b"c"),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(
        journal.archive_through(10),
        Err(JournalError::Poisoned)
    ));
    assert_eq!(
        journal.stats().data_sync_calls,
        1,
        "the sync is never retried"
    );
    journal.check_invariants();
    drop(journal);
    // Restart and recover: the data that was written may or may not be there.
    let (_, recovery) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    assert!(recovery.last_seq >= Some(1));
}

#[test]
fn failed_sync_of_a_new_segment_or_a_failed_write_poisons_too() {
    let temp = TempDir::new("poison-roll");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1, b"a").unwrap();
    journal.inject_sync_failure();
    assert!(matches!(
        journal.commit(),
        Err(JournalError::SyncFailed { .. })
    ));
    assert!(matches!(
        journal.append(2, b"b"),
        Err(JournalError::Poisoned)
    ));
    drop(journal);

    let temp = TempDir::new("poison-write");
    let (mut journal, _) = Journal::open(config(temp.path(), SMALL_SEGMENT_BYTES)).unwrap();
    journal.append(1, b"a").unwrap();
    journal.commit().unwrap();
    journal.append(2, b"b").unwrap();
    journal.inject_write_failure();
    assert!(matches!(journal.commit(), Err(JournalError::Io { .. })));
    assert!(matches!(journal.commit(), Err(JournalError::Poisoned)));
    journal.check_invariants();
}

/// Random appends, commits, reopens (dropping whatever was not committed)
/// and archives, checked against a plain list of what was committed.
#[test]
fn randomized_operations_match_a_model() {
    for seed in 1..=8u64 {
        let mut rng = Rng::new(seed);
        let temp = TempDir::new("model");
        let mut cfg = config(temp.path(), SMALL_SEGMENT_BYTES * rng.range(1, 4));
        cfg.durability = Durability::None;
        let (mut journal, _) = Journal::open(cfg.clone()).unwrap();
        let mut committed: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut archived_through = 0u64;
        let mut next_seq = rng.range(1, 50);
        for step in 0..400 {
            match rng.range(0, 100) {
                0..=69 => {
                    let len = if rng.range(0, 20) == 0 {
                        journal.max_payload_bytes()
                    } else {
                        rng.range(1, 300) as usize
                    };
                    let body = rng.bytes(len);
                    journal.append(next_seq, &body).unwrap();
                    pending.push((next_seq, body));
                    next_seq += 1;
                }
                70..=89 => {
                    let durable = journal.commit().unwrap();
                    committed.append(&mut pending);
                    assert_eq!(durable, committed.last().map_or(0, |r| r.0));
                }
                90..=95 => {
                    drop(journal);
                    let (reopened, recovery) = Journal::open(cfg.clone()).unwrap();
                    journal = reopened;
                    assert_eq!(recovery.truncated, None, "seed {seed} step {step}");
                    assert_eq!(recovery.last_seq, committed.last().map(|r| r.0));
                    next_seq -= pending.len() as u64;
                    pending.clear();
                    if committed.is_empty() {
                        next_seq = rng.range(1, 50);
                    }
                }
                _ => {
                    let through = committed.last().map_or(0, |r| r.0);
                    let through = rng.range(0, through + 1);
                    journal.archive_through(through).unwrap();
                    archived_through = archived_through.max(through);
                }
            }
            journal.check_invariants();
        }
        journal.commit().unwrap();
        committed.append(&mut pending);
        let live = read_all(temp.path(), 0);
        // The live segments hold a suffix of what was committed, starting
        // no later than the first record above the archive point.
        let first_live = live.first().map_or(u64::MAX, |r| r.0);
        assert!(first_live <= archived_through + 1 || live.len() == committed.len());
        let model: Vec<_> = committed
            .iter()
            .filter(|r| r.0 >= first_live)
            .cloned()
            .collect();
        assert_eq!(live, model, "seed {seed}");
        if temp.path().join("archive").is_dir() {
            let mut all = read_all(&temp.path().join("archive"), 0);
            all.extend(live);
            assert_eq!(all, committed, "seed {seed}: archive + live = everything");
        }
    }
}
