//! Per-session persistent store: next sender/target sequence numbers and sent
//! application messages, kept in an append-only file and replayed on open.
//!
//! Record format (little endian): `S u64` next sender seq, `T u64` next target seq,
//! `C u64` when the sequence numbers were last reset (ms since the Unix epoch),
//! `M u64 seq, u32 len, bytes` a sent message, `F u64` the engine sequence
//! number whose reports are all stored (written after them, in the same
//! flush). A truncated final record (crash mid-write) is ignored on replay.
//! `reset` truncates the file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Message store for one session.
#[derive(Debug)]
pub struct Store {
    path: Option<PathBuf>,
    file: Option<File>,
    next_sender: u64,
    next_target: u64,
    reset_ms: Option<i64>,
    /// The engine sequence number up to which the application's reports
    /// are all in this store.
    folded: u64,
    /// Sent messages by MsgSeqNum: where they are in the file (the message
    /// bodies are not kept in memory), or the bytes for an in-memory store.
    messages: BTreeMap<u64, Stored>,
    /// Records not yet written to the file (see [`Store::flush`]).
    pending: Vec<u8>,
    /// Bytes of the file written so far (the offset `pending` starts at).
    file_len: u64,
}

#[derive(Debug)]
enum Stored {
    Memory(Vec<u8>),
    File { offset: u64, len: u32 },
}

impl Store {
    /// A store that keeps everything in memory only (tests, conformance).
    pub fn in_memory() -> Self {
        Store {
            path: None,
            file: None,
            next_sender: 1,
            next_target: 1,
            reset_ms: None,
            folded: 0,
            messages: BTreeMap::new(),
            pending: Vec::new(),
            file_len: 0,
        }
    }

    /// Open (or create) the store file at `path` and replay it.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut data = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut data)?;
        }
        let mut store = Store::in_memory();
        let mut at = 0usize;
        let u64_at = |d: &[u8], i: usize| {
            d.get(i..i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        };
        let mut valid_len = 0usize;
        while at < data.len() {
            match data[at] {
                b'C' => {
                    let Some(v) = u64_at(&data, at + 1) else {
                        break;
                    };
                    store.reset_ms = Some(v as i64);
                    at += 9;
                }
                b'F' => {
                    let Some(v) = u64_at(&data, at + 1) else {
                        break;
                    };
                    store.folded = store.folded.max(v);
                    at += 9;
                }
                b'S' | b'T' => {
                    let Some(v) = u64_at(&data, at + 1) else {
                        break;
                    };
                    if data[at] == b'S' {
                        store.next_sender = v;
                    } else {
                        store.next_target = v;
                    }
                    at += 9;
                }
                b'M' => {
                    let Some(seq) = u64_at(&data, at + 1) else {
                        break;
                    };
                    let Some(len) = data.get(at + 9..at + 13) else {
                        break;
                    };
                    let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
                    let Some(msg) = data.get(at + 13..at + 13 + len) else {
                        break;
                    };
                    store.messages.insert(
                        seq,
                        Stored::File {
                            offset: (at + 13) as u64,
                            len: msg.len() as u32,
                        },
                    );
                    at += 13 + len;
                }
                _ => break,
            }
            valid_len = at;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if valid_len < data.len() {
            file.set_len(valid_len as u64)?;
        }
        store.file_len = valid_len as u64;
        store.file = Some(file);
        store.path = Some(path);
        Ok(store)
    }

    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        if self.file.is_some() {
            self.pending.extend_from_slice(record);
        }
        Ok(())
    }

    /// Writes the records buffered since the last flush in one call. The
    /// session layer flushes before anything it stored goes on the wire, so
    /// a crash of the process never loses a message the peer has seen.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Some(f) = &mut self.file {
            f.write_all(&self.pending)?;
            self.file_len += self.pending.len() as u64;
        }
        self.pending.clear();
        Ok(())
    }

    /// Next MsgSeqNum we will send.
    pub fn next_sender(&self) -> u64 {
        self.next_sender
    }
    /// Next MsgSeqNum we expect to receive.
    pub fn next_target(&self) -> u64 {
        self.next_target
    }

    /// Persist the next sender seq.
    pub fn set_next_sender(&mut self, v: u64) -> io::Result<()> {
        self.next_sender = v;
        let mut r = [0u8; 9];
        r[0] = b'S';
        r[1..].copy_from_slice(&v.to_le_bytes());
        self.append(&r)
    }

    /// Persist the next target seq.
    pub fn set_next_target(&mut self, v: u64) -> io::Result<()> {
        self.next_target = v;
        let mut r = [0u8; 9];
        r[0] = b'T';
        r[1..].copy_from_slice(&v.to_le_bytes());
        self.append(&r)
    }

    /// Records that every report of the engine's commands up to `seq` is
    /// stored (call it after saving them, before the flush).
    pub fn set_folded(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.folded {
            return Ok(());
        }
        self.folded = seq;
        let mut r = [0u8; 9];
        r[0] = b'F';
        r[1..].copy_from_slice(&seq.to_le_bytes());
        self.append(&r)
    }

    /// The engine sequence number whose reports are all stored.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Save a sent message under its MsgSeqNum.
    pub fn save(&mut self, seq: u64, msg: &[u8]) -> io::Result<()> {
        let mut r = Vec::with_capacity(13 + msg.len());
        r.push(b'M');
        r.extend_from_slice(&seq.to_le_bytes());
        r.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        r.extend_from_slice(msg);
        let stored = if self.file.is_some() {
            Stored::File {
                offset: self.file_len + self.pending.len() as u64 + 13,
                len: msg.len() as u32,
            }
        } else {
            Stored::Memory(msg.to_vec())
        };
        self.messages.insert(seq, stored);
        self.append(&r)
    }

    /// A saved message (read back from the file when it has been written).
    pub fn get(&self, seq: u64) -> Option<Vec<u8>> {
        match self.messages.get(&seq)? {
            Stored::Memory(bytes) => Some(bytes.clone()),
            Stored::File { offset, len } => {
                let (offset, len) = (*offset, *len as usize);
                if offset >= self.file_len {
                    let at = (offset - self.file_len) as usize;
                    return self.pending.get(at..at + len).map(<[u8]>::to_vec);
                }
                let mut bytes = vec![0u8; len];
                use std::os::unix::fs::FileExt;
                self.file.as_ref()?.read_exact_at(&mut bytes, offset).ok()?;
                Some(bytes)
            }
        }
    }

    /// Forget everything: both sequence numbers back to 1, no messages;
    /// `now_ms` is recorded as the time of this reset.
    pub fn reset(&mut self, now_ms: i64) -> io::Result<()> {
        self.next_sender = 1;
        self.next_target = 1;
        self.messages.clear();
        self.folded = 0;
        self.reset_ms = Some(now_ms);
        self.pending.clear();
        if let Some(f) = &mut self.file {
            f.set_len(0)?;
            self.file_len = 0;
        }
        let mut r = [0u8; 9];
        r[0] = b'C';
        r[1..].copy_from_slice(&(now_ms as u64).to_le_bytes());
        self.append(&r)
    }

    /// When the sequence numbers were last reset (`None`: never, or a store
    /// written before this record existed).
    pub fn reset_ms(&self) -> Option<i64> {
        self.reset_ms
    }

    /// Flush to disk (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match &mut self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Backing file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("brokerx-fix-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn survives_reopen_and_reset() {
        let p = tmp("reopen");
        {
            let mut s = Store::open(&p).unwrap();
            assert_eq!((s.next_sender(), s.next_target()), (1, 1));
            s.save(1, b"hello").unwrap();
            s.set_next_sender(2).unwrap();
            s.set_next_target(7).unwrap();
            s.set_folded(40).unwrap();
            s.set_folded(39).unwrap(); // never goes back
        }
        {
            let mut s = Store::open(&p).unwrap();
            assert_eq!((s.next_sender(), s.next_target()), (2, 7));
            assert_eq!(s.get(1), Some(b"hello".to_vec()));
            assert_eq!(s.folded(), 40, "the fold mark survives a reopen");
            s.reset(5).unwrap();
            assert_eq!(s.folded(), 0, "and a reset");
            s.set_next_sender(3).unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!((s.next_sender(), s.next_target()), (3, 1));
        assert_eq!(s.reset_ms(), Some(5));
        assert_eq!(s.get(1), None);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn records_reach_the_file_at_flush() {
        let p = tmp("flush");
        let mut s = Store::open(&p).unwrap();
        s.save(1, b"one").unwrap();
        s.set_next_sender(2).unwrap();
        assert_eq!(Store::open(&p).unwrap().get(1), None, "buffered");
        s.flush().unwrap();
        let other = Store::open(&p).unwrap();
        assert_eq!(
            (other.get(1), other.next_sender()),
            (Some(b"one".to_vec()), 2)
        );
        // Read back from the file, and from the unwritten buffer.
        s.save(2, b"two").unwrap();
        assert_eq!(s.get(1), Some(b"one".to_vec()));
        assert_eq!(s.get(2), Some(b"two".to_vec()));
        drop(s);
        assert_eq!(
            Store::open(&p).unwrap().get(2),
            Some(b"two".to_vec()),
            "drop flushes"
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn truncated_tail_is_ignored() {
        let p = tmp("trunc");
        {
            let mut s = Store::open(&p).unwrap();
            s.set_next_sender(5).unwrap();
            s.save(4, b"abcdef").unwrap();
        }
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let mut s = Store::open(&p).unwrap();
        assert_eq!(s.next_sender(), 5);
        assert_eq!(s.get(4), None);
        s.set_next_target(9).unwrap();
        drop(s);
        assert_eq!(Store::open(&p).unwrap().next_target(), 9);
        let _ = std::fs::remove_file(&p);
    }
}
