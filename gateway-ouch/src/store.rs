//! Per-user store of sequenced outbound messages: an append-only file of
//! `u16 big-endian length, message bytes` records, plus the same messages
//! in memory for replay to a reconnecting client. Message N (1-based) is
//! the SoupBinTCP sequence number N.
//!
//! Every message is appended here before any client sees it (the session
//! writer only tails the store), so what was sent is always on file, and a
//! client asking for sequence N after a gateway restart gets the same
//! bytes. Durability: each append is one `write` (in the OS page cache);
//! with `fsync` set it is also `fdatasync`ed before anyone can see it.
//!
//! Besides messages the file holds *meta records* (length word with the
//! high bit set, then a kind byte; they carry no sequence number), which
//! let the gateway regenerate outputs the engine journaled but the store
//! never got (see NOTES.md, "Durability"):
//! - **Intent** `'I'`, tag, inbound OUCH message: written under the user's
//!   lock right after the command was handed to the engine, so before any
//!   output of it can be stored;
//! - **Mark** `'M'`, engine seq S, outputs n, answered k: ends every write
//!   of messages (same `write` call): every output for this user of
//!   commands before S and the first n of command S are reflected above,
//!   and the first k intents of this file have been answered. Messages
//!   after the last mark are a torn write and are cut at open;
//! - **Void** `'V'`: the last intent never reached the engine (queue full);
//! - **Reset** `'R'`: forget the intents so far (the intents still to be
//!   answered are written again after it, at start);
//! - **Day start** `'D'`, engine seq E of the `DayEnded` that opened this
//!   day (0 for the first day).
//!
//! A torn last record (or a run of zero bytes a power loss can leave) is
//! cut off at open.

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

/// High bit of the length word: a meta record, not a message.
const META: u16 = 0x8000;
const INTENT: u8 = b'I';
const MARK: u8 = b'M';
const DAY_START: u8 = b'D';
const VOID: u8 = b'V';
const RESET: u8 = b'R';

/// How far the store reflects the engine's outputs for its user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Engine sequence number of the last command with stored outputs.
    pub seq: u64,
    /// How many outputs of command `seq` (in routing order) are stored.
    pub outputs: u64,
    /// How many intents of this file have been answered by the engine.
    pub answered: u64,
}

/// An inbound message handed to the engine, with the command's tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub tag: u64,
    pub message: Box<[u8]>,
    /// Messages stored before it (its place among them).
    pub after_messages: u64,
}

pub struct MessageStore {
    path: PathBuf,
    file: File,
    fsync: bool,
    messages: Vec<Box<[u8]>>,
    intents: Vec<Intent>,
    mark: Option<Mark>,
    day_start: Option<u64>,
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn meta_record(payload: &[u8], out: &mut Vec<u8>) {
    let length = u16::try_from(payload.len()).expect("meta records are small") | META;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
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
        let mut messages: Vec<Box<[u8]>> = Vec::new();
        let mut intents = Vec::new();
        let mut mark = None;
        let mut day_start = None;
        let mut at = 0usize;
        // Byte offset just past the last mark, and the messages before it.
        let mut marked: Option<(usize, usize)> = None;
        while let [high, low, ..] = bytes[at..] {
            let word = u16::from_be_bytes([high, low]);
            let corrupt = || StoreError::Corrupt {
                path: path.to_path_buf(),
                offset_bytes: at as u64,
            };
            if word == 0 {
                // Zeros where a record should be: what a power loss can
                // leave past the last synced byte. The rest is a torn tail.
                break;
            }
            let length = usize::from(word & !META);
            if length == 0 || length > MAX_MESSAGE_BYTES {
                return Err(corrupt());
            }
            let Some(record) = bytes.get(at + 2..at + 2 + length) else {
                break;
            };
            if word & META == 0 {
                messages.push(record.into());
            } else {
                match (record[0], record.len()) {
                    (VOID, 1) => {
                        intents.pop();
                    }
                    (RESET, 1) => intents.clear(),
                    (INTENT, n) if n > 9 => intents.push(Intent {
                        tag: be_u64(&record[1..]),
                        message: record[9..].into(),
                        after_messages: messages.len() as u64,
                    }),
                    (MARK, 25) => {
                        mark = Some(Mark {
                            seq: be_u64(&record[1..]),
                            outputs: be_u64(&record[9..]),
                            answered: be_u64(&record[17..]),
                        });
                        marked = Some((at + 2 + length, messages.len()));
                    }
                    (DAY_START, 9) => day_start = Some(be_u64(&record[1..])),
                    _ => return Err(corrupt()),
                }
            }
            at += 2 + length;
        }
        if at < bytes.len() {
            // A torn last record: the message was never sent (the append
            // comes first), so dropping it loses nothing a client saw.
            file.set_len(at as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let mut store = MessageStore {
            path: path.to_path_buf(),
            file,
            fsync,
            messages,
            intents,
            mark,
            day_start,
        };
        // Every write of messages ends with a mark, in the same `write`. So
        // messages after the last mark are a write torn by a power loss:
        // cut them (their batch is regenerated from the journal, and with
        // `fsync` none of it was sent), keeping the intents.
        if let Some((end, count)) = marked {
            if store.messages.len() > count {
                store.messages.truncate(count);
                store.file.set_len(end as u64).map_err(io)?;
                store.file.seek(SeekFrom::End(0)).map_err(io)?;
                let intents: Vec<Intent> = store
                    .intents
                    .iter()
                    .map(|intent| Intent {
                        after_messages: intent.after_messages.min(count as u64),
                        ..intent.clone()
                    })
                    .collect();
                let mark = store.mark.unwrap_or_default();
                store.reset_intents(&intents, mark)?;
            }
        }
        Ok(store)
    }

    /// The last mark written (none in a file from before marks existed).
    pub fn mark(&self) -> Option<Mark> {
        self.mark
    }

    /// The engine sequence number of the `DayEnded` that opened this day.
    pub fn day_start(&self) -> Option<u64> {
        self.day_start
    }

    /// Every intent of this file, in the order written.
    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    /// Records the command just handed to the engine (one write; with
    /// `fsync` also an `fdatasync`, so that it is durable before the
    /// journal can be).
    pub fn append_intent(&mut self, tag: u64, message: &[u8]) -> Result<(), StoreError> {
        if message.is_empty() || message.len() + 9 > MAX_MESSAGE_BYTES {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                offset_bytes: 0,
            });
        }
        let mut payload = Vec::with_capacity(9 + message.len());
        payload.push(INTENT);
        payload.extend_from_slice(&tag.to_be_bytes());
        payload.extend_from_slice(message);
        let mut record = Vec::with_capacity(2 + payload.len());
        meta_record(&payload, &mut record);
        self.write(&record)?;
        self.intents.push(Intent {
            tag,
            message: message.into(),
            after_messages: self.len(),
        });
        Ok(())
    }

    /// Takes back the last intent: its command never reached the engine
    /// (queue full).
    pub fn void_last_intent(&mut self) -> Result<(), StoreError> {
        let mut record = Vec::new();
        meta_record(&[VOID], &mut record);
        self.write(&record)?;
        self.intents.pop();
        Ok(())
    }

    /// Replaces the file's intents by `keep` (written again, after the
    /// last message) and writes `mark`, in one write: at start, once the
    /// journal has told which unanswered intents were sequenced.
    pub fn reset_intents(&mut self, keep: &[Intent], mark: Mark) -> Result<(), StoreError> {
        let mut records = Vec::new();
        meta_record(&[RESET], &mut records);
        for intent in keep {
            let mut payload = Vec::with_capacity(9 + intent.message.len());
            payload.push(INTENT);
            payload.extend_from_slice(&intent.tag.to_be_bytes());
            payload.extend_from_slice(&intent.message);
            meta_record(&payload, &mut records);
        }
        let mut payload = vec![MARK];
        for value in [mark.seq, mark.outputs, mark.answered] {
            payload.extend_from_slice(&value.to_be_bytes());
        }
        meta_record(&payload, &mut records);
        self.write(&records)?;
        let after_messages = self.len();
        self.intents = keep
            .iter()
            .map(|intent| Intent {
                after_messages,
                ..intent.clone()
            })
            .collect();
        self.mark = Some(mark);
        Ok(())
    }

    /// Records the day's opening `DayEnded` sequence number.
    pub fn append_day_start(&mut self, seq: u64) -> Result<(), StoreError> {
        let mut payload = vec![DAY_START];
        payload.extend_from_slice(&seq.to_be_bytes());
        let mut record = Vec::new();
        meta_record(&payload, &mut record);
        self.write(&record)?;
        self.day_start = Some(seq);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let io = |error| StoreError::Io {
            path: self.path.clone(),
            error,
        };
        self.file.write_all(bytes).map_err(io)?;
        if self.fsync {
            self.file.sync_data().map_err(io)?;
        }
        Ok(())
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
        self.append_marked(messages, None)
    }

    /// Appends messages and, after them, `mark`, all in one write (and
    /// with fsync one `fdatasync`); returns the sequence number of the
    /// last message.
    pub fn append_marked(
        &mut self,
        messages: &[&[u8]],
        mark: Option<Mark>,
    ) -> Result<u64, StoreError> {
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
        if let Some(mark) = mark {
            let mut payload = vec![MARK];
            for value in [mark.seq, mark.outputs, mark.answered] {
                payload.extend_from_slice(&value.to_be_bytes());
            }
            meta_record(&payload, &mut records);
        }
        self.write(&records)?;
        for message in messages {
            self.messages.push((*message).into());
        }
        if mark.is_some() {
            self.mark = mark;
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
    fn meta_records_are_kept_apart_from_messages() {
        let path = temp("meta");
        let mut store = MessageStore::open(&path, false).unwrap();
        store.append_day_start(7).unwrap();
        store.append(b"first").unwrap();
        store.append_intent(42, b"OTOKEN").unwrap();
        let mark = Mark {
            seq: 9,
            outputs: 2,
            answered: 1,
        };
        assert_eq!(
            store
                .append_marked(&[b"second", b"third"], Some(mark))
                .unwrap(),
            3
        );
        store.append_intent(43, b"XTOKEN2").unwrap();
        store.append_intent(44, b"XTOKEN3").unwrap();
        store.void_last_intent().unwrap();
        drop(store);
        let mut again = MessageStore::open(&path, false).unwrap();
        let keep = again.intents()[1].clone();
        let reset = Mark {
            answered: 0,
            ..mark
        };
        again.reset_intents(&[keep], reset).unwrap();
        drop(again);
        let written = std::fs::metadata(&path).unwrap().len();
        // Zeros after the last record (a power loss) are a torn tail.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; 40]).unwrap();
        drop(file);
        let store = MessageStore::open(&path, false).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.get(3), Some(&b"third"[..]));
        assert_eq!(store.mark(), Some(reset));
        assert_eq!(store.day_start(), Some(7));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
        let intents: Vec<(u64, &[u8], u64)> = store
            .intents()
            .iter()
            .map(|i| (i.tag, &i.message[..], i.after_messages))
            .collect();
        assert_eq!(intents, vec![(43, &b"XTOKEN2"[..], 3)]);
    }

    #[test]
    fn a_write_torn_after_some_messages_is_cut_back_to_its_mark() {
        let path = temp("torn-batch");
        let mut store = MessageStore::open(&path, false).unwrap();
        let mark = Mark {
            seq: 5,
            outputs: 1,
            answered: 0,
        };
        store.append_marked(&[b"one"], Some(mark)).unwrap();
        store.append_intent(9, b"OTOKEN").unwrap();
        drop(store);
        // Two messages of a batch made it to disk, its mark did not.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 3, b't', b'w', b'o', 0, 5, b't', b'h', b'r', b'e', b'e'])
            .unwrap();
        drop(file);
        let store = MessageStore::open(&path, false).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.mark(), Some(mark));
        assert_eq!(store.intents().len(), 1);
        assert_eq!(store.intents()[0].tag, 9);
        drop(store);
        let store = MessageStore::open(&path, false).unwrap();
        assert_eq!((store.len(), store.intents().len()), (1, 1));
        assert_eq!(store.mark(), Some(mark));
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
