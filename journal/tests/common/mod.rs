//! Helpers shared by the journal's integration tests: a self-deleting
//! temp directory (no `tempfile` dependency), deterministic payloads and
//! randomness, and hand-built segment files for damage tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use brokerx_journal::format::{encode_record, segment_file_name};
use brokerx_journal::{read_journal, Durability, JournalConfig};

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "brokerx-journal-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub fn config(dir: &Path, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        durability: Durability::Fsync,
    }
}

/// A deterministic payload for `seq` with no zero byte (so zeroing any
/// suffix of a record always changes it).
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((seq.wrapping_mul(31).wrapping_add(i as u64 * 7)) % 255) as u8 + 1)
        .collect()
}

/// Every record `read_journal` yields from `from_seq`, panicking on an error.
pub fn read_all(dir: &Path, from_seq: u64) -> Vec<(u64, Vec<u8>)> {
    read_journal(dir, from_seq)
        .expect("read_journal")
        .collect::<Result<Vec<_>, _>>()
        .expect("every record reads back")
}

/// Writes `segment-{first_seq}.log` holding `records` framed as the journal
/// frames them, zero-padded to `len_bytes` (if longer). Returns its path.
pub fn write_segment(
    dir: &Path,
    first_seq: u64,
    records: &[(u64, Vec<u8>)],
    len_bytes: usize,
) -> PathBuf {
    let mut bytes = Vec::new();
    for (seq, payload) in records {
        encode_record(*seq, payload, &mut bytes);
    }
    if bytes.len() < len_bytes {
        bytes.resize(len_bytes, 0);
    }
    let path = dir.join(segment_file_name(first_seq));
    fs::write(&path, bytes).expect("write segment");
    path
}

/// Records `seqs` with `payload(seq, 10)` payloads.
pub fn records(seqs: &[u64]) -> Vec<(u64, Vec<u8>)> {
    seqs.iter().map(|&seq| (seq, payload(seq, 10))).collect()
}

/// xorshift64*: deterministic randomness from a seed, so a failing case
/// reproduces from the seed printed with it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `low..high` (`high > low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(high > low);
        low + self.next_u64() % (high - low)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
