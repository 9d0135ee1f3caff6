//! The file-system calls the journal makes, each in one small function:
//! positional writes that count their syscalls, directory fsync, bounded
//! whole-file reads, zero-filling, and the directory lock (the crate's
//! only `unsafe`, a call to `flock(2)`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::constants::{SEGMENT_PREFIX, SEGMENT_SUFFIX, ZERO_FILL_CHUNK_BYTES};
use crate::error::JournalError;
use crate::format::parse_segment_file_name;

/// A segment file in the journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
}

/// Every `segment-*.log` in `dir`, oldest first. Other names are ignored;
/// a name that looks like a segment but does not parse is corruption (it
/// must not be silently skipped).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(JournalError::io(dir, "list directory"))?;
    for entry in entries {
        let entry = entry.map_err(JournalError::io(dir, "list directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(SEGMENT_PREFIX) && name.ends_with(SEGMENT_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Some(first_seq) = parse_segment_file_name(name) else {
            return Err(JournalError::Corrupt {
                segment: path,
                offset: 0,
                reason: "unrecognised segment file name".to_string(),
            });
        };
        segments.push(SegmentFile { first_seq, path });
    }
    segments.sort_by_key(|segment| segment.first_seq);
    assert!(segments
        .windows(2)
        .all(|pair| pair[0].first_seq < pair[1].first_seq));
    Ok(segments)
}

/// Reads a whole file, refusing one longer than `max_bytes` (a segment is
/// read into memory, so its size is bounded).
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, JournalError> {
    let file = File::open(path).map_err(JournalError::io(path, "open"))?;
    let len_bytes = file
        .metadata()
        .map_err(JournalError::io(path, "stat"))?
        .len();
    if len_bytes > max_bytes {
        return Err(JournalError::Corrupt {
            segment: path.to_path_buf(),
            offset: 0,
            reason: format!("file is {len_bytes} bytes, more than the maximum {max_bytes}"),
        });
    }
    let mut data = Vec::with_capacity(len_bytes as usize);
    // take(): a file growing under us cannot make us read past the bound.
    file.take(max_bytes)
        .read_to_end(&mut data)
        .map_err(JournalError::io(path, "read"))?;
    Ok(data)
}

/// `pwrite` until all of `bytes` is written at `offset`, counting each call.
pub(crate) fn write_all_at(
    file: &File,
    mut bytes: &[u8],
    mut offset: u64,
    write_calls: &mut u64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        *write_calls += 1;
        match file.write_at(bytes, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(written) => {
                bytes = &bytes[written..];
                offset += written as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Overwrites `[from, to)` of `file` with zeros.
pub(crate) fn zero_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    assert!(from <= to);
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut offset = from;
    let mut ignored_calls = 0;
    while offset < to {
        let chunk_bytes = (to - offset).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
        write_all_at(file, &zeros[..chunk_bytes], offset, &mut ignored_calls)?;
        offset += chunk_bytes as u64;
    }
    Ok(())
}

/// fsync a directory, so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let handle = File::open(dir).map_err(JournalError::io(dir, "open directory"))?;
    handle
        .sync_all()
        .map_err(|source| JournalError::SyncFailed {
            path: dir.to_path_buf(),
            source,
        })
}

/// An exclusive `flock` on the journal's lock file, held until dropped
/// (closing the file releases it). Keeps a second writer, in this process
/// or another, from opening the same journal.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(path: &Path) -> Result<DirLock, JournalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(JournalError::io(path, "open lock file"))?;
        // SAFETY: flock takes a file descriptor and flags and touches no
        // memory of ours; the descriptor is open for as long as `file` lives.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Err(JournalError::Locked {
                    path: path.to_path_buf(),
                });
            }
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                operation: "lock",
                source: error,
            });
        }
        Ok(DirLock { _file: file })
    }
}
