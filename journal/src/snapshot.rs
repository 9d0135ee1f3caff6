//! Snapshot files: one opaque payload (the engine's state image) stamped
//! with the seq it includes, written atomically (temp file, fsync, rename,
//! fsync directory) and verified on load (magic, version, seq, length,
//! CRC32C). Loading falls back past damaged newer snapshots, reporting them.
//!
//! Layout (little-endian): `magic [u8; 8] = "BRKXSNAP"`, `version u32 = 1`,
//! `crc32c u32`, `seq u64`, `payload_len u64`, then the payload. The CRC
//! covers every header byte except its own four, then the payload.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::constants::{
    MAX_SNAPSHOT_PAYLOAD_BYTES, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC,
    SNAPSHOT_TEMP_SUFFIX,
};
use crate::error::JournalError;
use crate::format::{parse_snapshot_file_name, snapshot_file_name};
use crate::fsio::sync_dir;

/// A snapshot that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// The last journal seq the snapshot includes: replay from `seq + 1`.
    pub seq: u64,
    pub payload: Vec<u8>,
    pub path: PathBuf,
    /// Newer snapshot files that failed verification, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Atomically writes `snapshot-{seq:020}.snap` in `dir` (created if
/// missing): temp file, write, fsync, rename, fsync the directory. An
/// existing snapshot with the same seq is replaced.
pub fn write(dir: &Path, seq: u64, payload: &[u8]) -> Result<PathBuf, JournalError> {
    let payload_bytes = payload.len() as u64;
    if payload_bytes > MAX_SNAPSHOT_PAYLOAD_BYTES {
        return Err(JournalError::SnapshotTooLarge {
            payload_bytes,
            max_payload_bytes: MAX_SNAPSHOT_PAYLOAD_BYTES,
        });
    }
    fs::create_dir_all(dir).map_err(JournalError::io(dir, "create directory"))?;
    let path = dir.join(snapshot_file_name(seq));
    let temp = dir.join(format!("{}{SNAPSHOT_TEMP_SUFFIX}", snapshot_file_name(seq)));
    let header = encode_header(seq, payload);
    let mut file = File::create(&temp).map_err(JournalError::io(&temp, "create snapshot"))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(payload))
        .map_err(JournalError::io(&temp, "write snapshot"))?;
    file.sync_all().map_err(|source| JournalError::SyncFailed {
        path: temp.clone(),
        source,
    })?;
    drop(file);
    fs::rename(&temp, &path).map_err(JournalError::io(&temp, "rename snapshot"))?;
    sync_dir(dir)?;
    Ok(path)
}

/// The newest snapshot in `dir` that verifies, with any newer damaged ones
/// listed in `skipped`. `Ok(None)` if `dir` holds no snapshot file (or does
/// not exist); [`JournalError::SnapshotsDamaged`] if it holds some but none
/// verifies. Temp files (`*.snap.tmp`) and other names are ignored.
pub fn load_latest(dir: &Path) -> Result<Option<LoadedSnapshot>, JournalError> {
    load_newest_at_most(dir, u64::MAX)
}

/// Like [`load_latest`], among the snapshots that include no command after
/// `max_seq` (a reader that needs the state as of an earlier point).
pub fn load_newest_at_most(
    dir: &Path,
    max_seq: u64,
) -> Result<Option<LoadedSnapshot>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::io(dir, "list directory")(error)),
    };
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(JournalError::io(dir, "list directory"))?;
        if let Some(seq) = entry
            .file_name()
            .to_str()
            .and_then(parse_snapshot_file_name)
        {
            if seq <= max_seq {
                candidates.push((seq, entry.path()));
            }
        }
    }
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.0));
    let mut skipped = Vec::new();
    for (seq, path) in candidates {
        match read_verified(&path, seq)? {
            Ok(payload) => {
                return Ok(Some(LoadedSnapshot {
                    seq,
                    payload,
                    path,
                    skipped,
                }))
            }
            Err(reason) => skipped.push((path, reason)),
        }
    }
    if skipped.is_empty() {
        Ok(None)
    } else {
        Err(JournalError::SnapshotsDamaged { skipped })
    }
}

fn encode_header(seq: u64, payload: &[u8]) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = snapshot_crc(&header, payload);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// CRC32C over the header without its CRC field, then the payload.
fn snapshot_crc(header: &[u8; SNAPSHOT_HEADER_BYTES], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[0..12]);
    let crc = crc32c::crc32c_append(crc, &header[16..]);
    crc32c::crc32c_append(crc, payload)
}

/// Reads and verifies one snapshot file. The outer error is an I/O failure
/// (reported to the caller); the inner one is why the bytes are damaged
/// (the file is skipped).
fn read_verified(path: &Path, name_seq: u64) -> Result<Result<Vec<u8>, String>, JournalError> {
    let mut file = File::open(path).map_err(JournalError::io(path, "open snapshot"))?;
    let file_bytes = file
        .metadata()
        .map_err(JournalError::io(path, "stat snapshot"))?
        .len();
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    if file_bytes < SNAPSHOT_HEADER_BYTES as u64 {
        return Ok(Err(format!(
            "file is {file_bytes} bytes, shorter than the {SNAPSHOT_HEADER_BYTES}-byte header"
        )));
    }
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err("file shorter than its header".to_string()))
        }
        Err(error) => return Err(JournalError::io(path, "read snapshot")(error)),
    }
    if header[0..8] != SNAPSHOT_MAGIC {
        return Ok(Err("bad magic: not a BrokerX snapshot".to_string()));
    }
    let field = |range: std::ops::Range<usize>| -> u64 {
        header[range]
            .iter()
            .rev()
            .fold(0u64, |value, &byte| value << 8 | u64::from(byte))
    };
    let version = field(8..12);
    if version != u64::from(SNAPSHOT_FORMAT_VERSION) {
        return Ok(Err(format!(
            "unsupported snapshot format version {version}"
        )));
    }
    let stored_crc = field(12..16) as u32;
    let seq = field(16..24);
    let payload_bytes = field(24..32);
    if seq != name_seq {
        return Ok(Err(format!(
            "header says seq {seq} but the file name says {name_seq}"
        )));
    }
    if payload_bytes > MAX_SNAPSHOT_PAYLOAD_BYTES
        || payload_bytes != file_bytes - SNAPSHOT_HEADER_BYTES as u64
    {
        return Ok(Err(format!(
            "header says {payload_bytes} payload bytes but the file holds {}",
            file_bytes - SNAPSHOT_HEADER_BYTES as u64
        )));
    }
    // Bounded by the file's length, checked above.
    let mut payload = vec![0u8; payload_bytes as usize];
    match file.read_exact(&mut payload) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err("file shrank while being read".to_string()))
        }
        Err(error) => return Err(JournalError::io(path, "read snapshot")(error)),
    }
    let computed_crc = snapshot_crc(&header, &payload);
    if computed_crc != stored_crc {
        return Ok(Err(format!(
            "CRC mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        )));
    }
    Ok(Ok(payload))
}
