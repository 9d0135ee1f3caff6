//! Per-user store of sequenced outbound messages: an append-only file of
//! `u16 big-endian length, message bytes` records, plus the same messages
//! in memory for replay to a reconnecting client. Message N (1-based) is
//! the SoupBinTCP sequence number N.
//!
//! Every message is appended here before any client sees it (the session
//! writer only tails the store), so what was sent is always on file, and a
//! client asking for sequence N after a gateway restart gets the same
//! bytes. Durability: each append is one `write` (in the OS page cache);
//! with `fsync` set it is also `fdatasync`ed. Without fsync a machine crash
//! can lose the tail: those messages derive from engine events already
//! durable in the journal, so they could be regenerated from it (not done
//! here: see NOTES.md). A torn last record is cut off at open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum StoreError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A record longer than any OUCH message: not our file.
    Corrupt { path: PathBuf, offset_bytes: u64 },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Corrupt { path, offset_bytes } => {
                write!(
                    f,
                    "{}: corrupt record at byte {offset_bytes}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Largest message the store accepts (the biggest OUCH message is 80).
pub const MAX_MESSAGE_BYTES: usize = 1024;

pub struct MessageStore {
    path: PathBuf,
    file: File,
    fsync: bool,
    messages: Vec<Box<[u8]>>,
}

impl MessageStore {
    /// Opens (or creates) the store at `path`, loading every whole record.
    pub fn open(path: &Path, fsync: bool) -> Result<MessageStore, StoreError> {
        let io = |error| StoreError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut messages = Vec::new();
        let mut at = 0usize;
        while let [high, low, ..] = bytes[at..] {
            let length = usize::from(u16::from_be_bytes([high, low]));
            if length == 0 || length > MAX_MESSAGE_BYTES {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    offset_bytes: at as u64,
                });
            }
            let Some(message) = bytes.get(at + 2..at + 2 + length) else {
                break;
            };
            messages.push(message.into());
            at += 2 + length;
        }
        if at < bytes.len() {
            // A torn last record: the message was never sent (the append
            // comes first), so dropping it loses nothing a client saw.
            file.set_len(at as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        Ok(MessageStore {
            path: path.to_path_buf(),
            file,
            fsync,
            messages,
        })
    }

    /// Number of stored messages: the sequence number of the last one.
    pub fn len(&self) -> u64 {
        self.messages.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Message with sequence number `sequence` (1-based).
    pub fn get(&self, sequence: u64) -> Option<&[u8]> {
        let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.messages.get(index).map(|m| &m[..])
    }

    /// Appends one message; returns its sequence number.
    pub fn append(&mut self, message: &[u8]) -> Result<u64, StoreError> {
        self.append_all(&[message])
    }

    /// Appends messages with one write and, with fsync, one `fdatasync`
    /// for the whole group (never one per message); returns the sequence
    /// number of the last.
    pub fn append_all(&mut self, messages: &[&[u8]]) -> Result<u64, StoreError> {
        let io = |error| StoreError::Io {
            path: self.path.clone(),
            error,
        };
        let mut records = Vec::with_capacity(messages.iter().map(|m| 2 + m.len()).sum());
        for message in messages {
            let length = u16::try_from(message.len())
                .ok()
                .filter(|l| *l > 0 && usize::from(*l) <= MAX_MESSAGE_BYTES)
                .ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    offset_bytes: 0,
                })?;
            records.extend_from_slice(&length.to_be_bytes());
            records.extend_from_slice(message);
        }
        self.file.write_all(&records).map_err(io)?;
        if self.fsync {
            self.file.sync_data().map_err(io)?;
        }
        for message in messages {
            self.messages.push((*message).into());
        }
        Ok(self.len())
    }

    /// `fdatasync`s the file (whatever the `fsync` setting).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|error| StoreError::Io {
            path: self.path.clone(),
            error,
        })
    }

    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.messages.iter().map(|m| &m[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("brokerx-ouch-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("user.msgs")
    }

    #[test]
    fn reopening_keeps_every_message_and_cuts_a_torn_tail() {
        let path = temp("reopen");
        let mut store = MessageStore::open(&path, true).unwrap();
        assert_eq!(store.append(b"first").unwrap(), 1);
        assert_eq!(store.append(b"second").unwrap(), 2);
        drop(store);
        // A torn record: length says 9, only 3 bytes follow.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 9, b'a', b'b', b'c']).unwrap();
        drop(file);
        let mut store = MessageStore::open(&path, false).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(1), Some(&b"first"[..]));
        assert_eq!(store.get(2), Some(&b"second"[..]));
        assert_eq!(store.get(0), None);
        assert_eq!(store.get(3), None);
        assert_eq!(store.append(b"third").unwrap(), 3);
        drop(store);
        let store = MessageStore::open(&path, false).unwrap();
        let all: Vec<&[u8]> = store.messages().collect();
        assert_eq!(all, vec![&b"first"[..], b"second", b"third"]);
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let path = temp("corrupt");
        std::fs::write(&path, [0xff, 0xff, 1, 2, 3]).unwrap();
        assert!(matches!(
            MessageStore::open(&path, false),
            Err(StoreError::Corrupt {
                offset_bytes: 0,
                ..
            })
        ));
    }
}
