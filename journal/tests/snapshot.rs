//! Snapshot files: round trip, the newest at or before a seq, falling back past a damaged newest
//! snapshot (with the reason reported), ignoring temp files, and a clear
//! error when no snapshot verifies.

mod common;

use std::fs;

use brokerx_journal::constants::SNAPSHOT_HEADER_BYTES;
use brokerx_journal::format::snapshot_file_name;
use brokerx_journal::{snapshot, JournalError};
use common::{payload, TempDir};

#[test]
fn write_then_load_latest() {
    let temp = TempDir::new("snap");
    assert_eq!(snapshot::load_latest(temp.path()).unwrap(), None);
    assert_eq!(
        snapshot::load_latest(&temp.path().join("missing")).unwrap(),
        None
    );
    let dir = temp.path().join("snapshots"); // created by write
    let first = snapshot::write(&dir, 100, &payload(100, 1000)).unwrap();
    assert_eq!(first, dir.join(snapshot_file_name(100)));
    assert_eq!(
        fs::metadata(&first).unwrap().len(),
        SNAPSHOT_HEADER_BYTES as u64 + 1000
    );
    snapshot::write(&dir, 250, b"").unwrap();
    snapshot::write(&dir, 200, &payload(200, 10)).unwrap();
    let loaded = snapshot::load_latest(&dir).unwrap().unwrap();
    assert_eq!(loaded.seq, 250);
    assert_eq!(loaded.payload, b"");
    assert!(loaded.skipped.is_empty());
    // The newest that includes nothing after a given seq.
    let at_most = |seq| {
        snapshot::load_newest_at_most(&dir, seq)
            .unwrap()
            .map(|l| l.seq)
    };
    assert_eq!(at_most(249), Some(200));
    assert_eq!(at_most(200), Some(200));
    assert_eq!(at_most(150), Some(100));
    assert_eq!(at_most(99), None);
    assert_eq!(at_most(u64::MAX), Some(250));
    // Rewriting the same seq replaces it atomically.
    snapshot::write(&dir, 250, b"second").unwrap();
    assert_eq!(
        snapshot::load_latest(&dir).unwrap().unwrap().payload,
        b"second"
    );
    // No temp file is left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".snap")), "{names:?}");
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_older_one() {
    type Damage = (&'static str, fn(&mut Vec<u8>));
    let damages: [Damage; 7] = [
        ("payload byte", |b| b[SNAPSHOT_HEADER_BYTES + 3] ^= 1),
        ("crc byte", |b| b[13] ^= 0x80),
        ("seq byte", |b| b[16] ^= 1),
        ("magic", |b| b[0] = b'X'),
        ("version", |b| b[8] = 9),
        ("truncated payload", |b| b.truncate(b.len() - 1)),
        ("truncated header", |b| b.truncate(10)),
    ];
    for (what, damage) in damages {
        let temp = TempDir::new("snap-damage");
        snapshot::write(temp.path(), 10, b"older").unwrap();
        let newest = snapshot::write(temp.path(), 20, b"newest state").unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        damage(&mut bytes);
        fs::write(&newest, &bytes).unwrap();
        let loaded = snapshot::load_latest(temp.path()).unwrap().unwrap();
        assert_eq!(
            (loaded.seq, loaded.payload.as_slice()),
            (10, b"older".as_slice()),
            "{what}"
        );
        assert_eq!(loaded.skipped.len(), 1, "{what}");
        assert_eq!(loaded.skipped[0].0, newest);
        assert!(!loaded.skipped[0].1.is_empty());
    }
}

#[test]
fn temp_files_and_other_names_are_ignored() {
    let temp = TempDir::new("snap-temp");
    snapshot::write(temp.path(), 5, b"good").unwrap();
    // A crash mid-write leaves a temp file with a newer seq.
    fs::write(
        temp.path().join(format!("{}.tmp", snapshot_file_name(9))),
        b"half written",
    )
    .unwrap();
    fs::write(temp.path().join("snapshot-9.snap"), b"bad name").unwrap();
    fs::write(
        temp.path().join(format!("{}.log", snapshot_file_name(9))),
        b"x",
    )
    .unwrap();
    let loaded = snapshot::load_latest(temp.path()).unwrap().unwrap();
    assert_eq!(loaded.seq, 5);
    assert!(loaded.skipped.is_empty());
}

#[test]
fn a_snapshot_renamed_to_another_seq_is_rejected() {
    let temp = TempDir::new("snap-rename");
    let path = snapshot::write(temp.path(), 5, b"state at 5").unwrap();
    fs::rename(&path, temp.path().join(snapshot_file_name(6))).unwrap();
    match snapshot::load_latest(temp.path()) {
        Err(JournalError::SnapshotsDamaged { skipped }) => {
            assert_eq!(skipped.len(), 1);
            assert!(skipped[0].1.contains("file name"), "{}", skipped[0].1);
        }
        other => panic!("expected SnapshotsDamaged, got {other:?}"),
    }
}

#[test]
fn no_valid_snapshot_is_an_error_listing_each_file() {
    let temp = TempDir::new("snap-none");
    for seq in [1, 2] {
        let path = snapshot::write(temp.path(), seq, b"state").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
    }
    let error = snapshot::load_latest(temp.path()).unwrap_err();
    match &error {
        JournalError::SnapshotsDamaged { skipped } => assert_eq!(skipped.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("CRC mismatch"), "{error}");
}
