//! The Nasdaq sample-file framing: each ITCH message is preceded by its
//! length as a 2-byte big-endian integer. This is how Nasdaq publishes
//! historical TotalView-ITCH files, and what off-the-shelf ITCH parsers
//! read.

use crate::itch::{ItchError, Message};
use std::fmt;
use std::io::{self, Write};

/// Why framing or unframing failed.
#[derive(Debug)]
pub enum FileError {
    /// A message could not be encoded.
    Encode(ItchError),
    /// A frame of zero length, which no ITCH message has.
    EmptyFrame { offset: usize },
    /// The input ends inside a length prefix or a message.
    Truncated { offset: usize },
    /// The writer failed.
    Io(io::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Encode(error) => write!(f, "encoding: {error}"),
            FileError::EmptyFrame { offset } => write!(f, "empty frame at byte {offset}"),
            FileError::Truncated { offset } => write!(f, "truncated frame at byte {offset}"),
            FileError::Io(error) => write!(f, "i/o: {error}"),
        }
    }
}

impl std::error::Error for FileError {}

impl From<ItchError> for FileError {
    fn from(error: ItchError) -> Self {
        FileError::Encode(error)
    }
}

impl From<io::Error> for FileError {
    fn from(error: io::Error) -> Self {
        FileError::Io(error)
    }
}

/// Appends one framed message (length prefix, then the message).
pub fn frame_into(message: &Message, out: &mut Vec<u8>) -> Result<(), ItchError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    match message.encode(out) {
        Ok(len) => {
            // ITCH messages are at most 50 bytes, so the length fits u16.
            out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
            Ok(())
        }
        Err(error) => {
            out.truncate(start);
            Err(error)
        }
    }
}

/// Frames a sequence of messages into one buffer.
pub fn frame_all(messages: &[Message]) -> Result<Vec<u8>, ItchError> {
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.len_bytes() + 2).sum());
    for message in messages {
        frame_into(message, &mut out)?;
    }
    Ok(out)
}

/// Writes framed messages to any `Write`.
pub struct FileWriter<W: Write> {
    writer: W,
    buffer: Vec<u8>,
    messages_written: u64,
}

impl<W: Write> FileWriter<W> {
    pub fn new(writer: W) -> FileWriter<W> {
        FileWriter {
            writer,
            buffer: Vec::with_capacity(64),
            messages_written: 0,
        }
    }

    pub fn write(&mut self, message: &Message) -> Result<(), FileError> {
        self.buffer.clear();
        frame_into(message, &mut self.buffer)?;
        self.writer.write_all(&self.buffer)?;
        self.messages_written += 1;
        Ok(())
    }

    pub fn messages_written(&self) -> u64 {
        self.messages_written
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, FileError> {
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// Iterates over the message payloads of a framed buffer. After an error
/// it yields nothing more.
pub struct FrameReader<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> FrameReader<'a> {
    pub fn new(bytes: &'a [u8]) -> FrameReader<'a> {
        FrameReader {
            bytes,
            offset: 0,
            failed: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Result<&'a [u8], FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset == self.bytes.len() {
            return None;
        }
        let offset = self.offset;
        let rest = &self.bytes[offset..];
        let result = match rest {
            [high, low, body @ ..] => {
                let len = u16::from_be_bytes([*high, *low]) as usize;
                if len == 0 {
                    Err(FileError::EmptyFrame { offset })
                } else if body.len() < len {
                    Err(FileError::Truncated { offset })
                } else {
                    self.offset += 2 + len;
                    Ok(&body[..len])
                }
            }
            _ => Err(FileError::Truncated { offset }),
        };
        self.failed = result.is_err();
        Some(result)
    }
}
