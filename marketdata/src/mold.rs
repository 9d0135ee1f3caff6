//! MoldUDP64 packet encoding and a bounded retransmission store: how the
//! ITCH feed would travel over UDP multicast. Pure bytes, no sockets.
//!
//! A downstream packet is a 20-byte header - session (10 bytes alpha),
//! sequence number of the first message (u64), message count (u16) - then
//! each message as a u16 length and its bytes, all big-endian. Count 0 is
//! a heartbeat and 0xFFFF marks the end of the session (both carry the
//! next expected sequence number and no messages). A retransmission
//! request is a bare 20-byte header whose count is the number of messages
//! asked for.

use crate::itch::Alpha;
use std::collections::VecDeque;
use std::fmt;

/// Session name width.
pub const SESSION_BYTES: usize = 10;
/// Header bytes: session, sequence number, message count.
pub const HEADER_BYTES: usize = SESSION_BYTES + 8 + 2;
/// Message count of an end-of-session packet.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// A payload that fits a 1500-byte Ethernet MTU after IP and UDP headers.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 1400;

/// A 10-character session name.
pub type Session = Alpha<SESSION_BYTES>;

/// Why a packet could not be built or read, or a retransmission answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoldError {
    /// A message is empty or longer than a u16 length (or the packet limit).
    BadMessageLength { len: usize },
    /// More messages than a count field (below 0xFFFF) can say.
    TooManyMessages { count: usize },
    /// Fewer bytes than the header or than a message block says.
    Truncated { offset: usize },
    /// Bytes after the last message block.
    TrailingBytes { offset: usize },
    /// The session field is not printable ASCII.
    BadSession,
    /// The requested messages are no longer (or not yet) in the store.
    NotAvailable {
        first_seq: u64,
        count: u16,
        oldest_stored: u64,
        next_seq: u64,
    },
}

impl fmt::Display for MoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoldError::BadMessageLength { len } => write!(f, "message of {len} bytes"),
            MoldError::TooManyMessages { count } => write!(f, "{count} messages in one packet"),
            MoldError::Truncated { offset } => write!(f, "truncated at byte {offset}"),
            MoldError::TrailingBytes { offset } => write!(f, "trailing bytes from {offset}"),
            MoldError::BadSession => write!(f, "session is not printable ASCII"),
            MoldError::NotAvailable {
                first_seq,
                count,
                oldest_stored,
                next_seq,
            } => write!(
                f,
                "messages {first_seq}+{count} not stored (have {oldest_stored}..{next_seq})"
            ),
        }
    }
}

impl std::error::Error for MoldError {}

fn header(out: &mut Vec<u8>, session: &Session, seq: u64, count: u16) {
    out.extend_from_slice(session.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
}

/// One downstream packet carrying `messages`, the first of which has
/// sequence number `first_seq`.
pub fn encode_packet(
    session: &Session,
    first_seq: u64,
    messages: &[&[u8]],
) -> Result<Vec<u8>, MoldError> {
    let count = u16::try_from(messages.len())
        .ok()
        .filter(|&c| c != END_OF_SESSION)
        .ok_or(MoldError::TooManyMessages {
            count: messages.len(),
        })?;
    let mut out =
        Vec::with_capacity(HEADER_BYTES + messages.iter().map(|m| 2 + m.len()).sum::<usize>());
    header(&mut out, session, first_seq, count);
    for message in messages {
        let len = u16::try_from(message.len())
            .ok()
            .filter(|&len| len > 0)
            .ok_or(MoldError::BadMessageLength { len: message.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(message);
    }
    Ok(out)
}

/// A heartbeat: no messages, `next_seq` is the next message's number.
pub fn heartbeat(session: &Session, next_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    header(&mut out, session, next_seq, 0);
    out
}

/// The end-of-session marker.
pub fn end_of_session(session: &Session, next_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    header(&mut out, session, next_seq, END_OF_SESSION);
    out
}

/// A retransmission request for `count` messages from `first_seq`.
pub fn request(session: &Session, first_seq: u64, count: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    header(&mut out, session, first_seq, count);
    out
}

/// A decoded packet (or request: then `messages` is empty and `count` is
/// the number asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub session: Session,
    pub seq: u64,
    pub count: u16,
    pub messages: Vec<&'a [u8]>,
}

/// Reads just the 20-byte header (a request, heartbeat or end of session
/// is nothing more).
pub fn decode_header(bytes: &[u8]) -> Result<(Session, u64, u16), MoldError> {
    let head = bytes.get(..HEADER_BYTES).ok_or(MoldError::Truncated {
        offset: bytes.len(),
    })?;
    let text = std::str::from_utf8(&head[..SESSION_BYTES]).map_err(|_| MoldError::BadSession)?;
    let session = Session::new(text).map_err(|_| MoldError::BadSession)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[SESSION_BYTES..SESSION_BYTES + 8]);
    let count = u16::from_be_bytes([head[HEADER_BYTES - 2], head[HEADER_BYTES - 1]]);
    Ok((session, u64::from_be_bytes(seq), count))
}

/// Reads a downstream packet and its message blocks.
pub fn decode_packet(bytes: &[u8]) -> Result<Packet<'_>, MoldError> {
    let (session, seq, count) = decode_header(bytes)?;
    let blocks = if count == END_OF_SESSION { 0 } else { count };
    let mut messages = Vec::with_capacity(blocks as usize);
    let mut offset = HEADER_BYTES;
    for _ in 0..blocks {
        let len = match bytes.get(offset..offset + 2) {
            Some(&[high, low]) => u16::from_be_bytes([high, low]) as usize,
            _ => return Err(MoldError::Truncated { offset }),
        };
        let message = bytes
            .get(offset + 2..offset + 2 + len)
            .ok_or(MoldError::Truncated { offset })?;
        messages.push(message);
        offset += 2 + len;
    }
    if offset != bytes.len() {
        return Err(MoldError::TrailingBytes { offset });
    }
    Ok(Packet {
        session,
        seq,
        count,
        messages,
    })
}

/// Numbers messages from 1, packs them into packets no larger than a
/// limit, and keeps the most recent ones for retransmission.
#[derive(Clone, Debug)]
pub struct MoldSession {
    session: Session,
    max_packet_bytes: usize,
    next_seq: u64,
    store: RetransmitStore,
}

impl MoldSession {
    pub fn new(session: Session, max_packet_bytes: usize, store_capacity: usize) -> MoldSession {
        MoldSession {
            session,
            max_packet_bytes: max_packet_bytes.max(HEADER_BYTES + 2 + 1),
            next_seq: 1,
            store: RetransmitStore::new(store_capacity),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn store(&self) -> &RetransmitStore {
        &self.store
    }

    /// Sequences `messages` (in order) and returns the packets to send.
    /// Every message is stored for retransmission.
    pub fn publish(&mut self, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, MoldError> {
        let room = self.max_packet_bytes - HEADER_BYTES;
        if let Some(message) = messages
            .iter()
            .find(|m| m.is_empty() || 2 + m.len() > room || m.len() > u16::MAX as usize)
        {
            return Err(MoldError::BadMessageLength { len: message.len() });
        }
        let mut packets = Vec::new();
        let mut start = 0;
        while start < messages.len() {
            let mut end = start;
            let mut used = 0;
            while end < messages.len()
                && used + 2 + messages[end].len() <= room
                && end - start < (END_OF_SESSION - 1) as usize
            {
                used += 2 + messages[end].len();
                end += 1;
            }
            let first_seq = self.next_seq;
            packets.push(encode_packet(
                &self.session,
                first_seq,
                &messages[start..end],
            )?);
            for message in &messages[start..end] {
                self.store.push(self.next_seq, message);
                self.next_seq += 1;
            }
            start = end;
        }
        Ok(packets)
    }

    pub fn heartbeat(&self) -> Vec<u8> {
        heartbeat(&self.session, self.next_seq)
    }

    pub fn end_of_session(&self) -> Vec<u8> {
        end_of_session(&self.session, self.next_seq)
    }

    /// Answers a retransmission request with one packet holding as many of
    /// the requested messages as fit. A request for another session, or
    /// for messages no longer stored, is an error.
    pub fn answer(&self, request: &[u8]) -> Result<Vec<u8>, MoldError> {
        let (session, first_seq, count) = decode_header(request)?;
        if session != self.session {
            return Err(MoldError::BadSession);
        }
        let wanted = self.store.get(first_seq, count)?;
        let room = self.max_packet_bytes - HEADER_BYTES;
        let mut used = 0;
        let fitting: Vec<&[u8]> = wanted
            .into_iter()
            .take_while(|m| {
                used += 2 + m.len();
                used <= room
            })
            .collect();
        encode_packet(&self.session, first_seq, &fitting)
    }
}

/// The last `capacity` messages by sequence number.
#[derive(Clone, Debug)]
pub struct RetransmitStore {
    capacity: usize,
    /// Sequence number of `messages[0]`.
    oldest_seq: u64,
    messages: VecDeque<Vec<u8>>,
}

impl RetransmitStore {
    pub fn new(capacity: usize) -> RetransmitStore {
        RetransmitStore {
            capacity,
            oldest_seq: 1,
            messages: VecDeque::with_capacity(capacity),
        }
    }

    /// Stores message `seq`, evicting the oldest beyond capacity. Sequence
    /// numbers must follow on; a gap restarts the store at `seq`.
    pub fn push(&mut self, seq: u64, message: &[u8]) {
        if self.capacity == 0 {
            self.oldest_seq = seq.saturating_add(1);
            return;
        }
        if seq != self.next_seq() {
            self.messages.clear();
            self.oldest_seq = seq;
        }
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
            self.oldest_seq += 1;
        }
        self.messages.push_back(message.to_vec());
    }

    /// Sequence number the next stored message would have.
    pub fn next_seq(&self) -> u64 {
        self.oldest_seq + self.messages.len() as u64
    }

    pub fn oldest_seq(&self) -> u64 {
        self.oldest_seq
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Messages `first_seq .. first_seq + count`, all of which must be
    /// stored.
    pub fn get(&self, first_seq: u64, count: u16) -> Result<Vec<&[u8]>, MoldError> {
        let unavailable = MoldError::NotAvailable {
            first_seq,
            count,
            oldest_stored: self.oldest_seq,
            next_seq: self.next_seq(),
        };
        let end = first_seq
            .checked_add(count as u64)
            .ok_or(unavailable.clone())?;
        if count == 0
            || count == END_OF_SESSION
            || first_seq < self.oldest_seq
            || end > self.next_seq()
        {
            return Err(unavailable);
        }
        let start = (first_seq - self.oldest_seq) as usize;
        Ok(self
            .messages
            .range(start..start + count as usize)
            .map(Vec::as_slice)
            .collect())
    }
}
