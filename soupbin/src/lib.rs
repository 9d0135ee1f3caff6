//! SoupBinTCP 3.0 framing, pure: packet types, encoding, and an incremental
//! decoder. No sockets and no clocks here, so every byte rule is testable in
//! isolation and the decoder can be fuzzed (see `fuzz/`).
//!
//! A frame is a 2-byte big-endian length, then that many bytes: one packet
//! type byte and the payload. Alpha fields are left-justified and padded
//! with spaces; numeric fields are ASCII digits, right-justified and padded
//! with spaces on the left.

use std::fmt;

/// Default largest accepted frame (length field value), in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024;

/// Width of the session field, in bytes.
pub const SESSION_BYTES: usize = 10;
/// Width of a numeric sequence number field, in bytes.
pub const SEQUENCE_BYTES: usize = 20;
pub const USERNAME_BYTES: usize = 6;
pub const PASSWORD_BYTES: usize = 10;
/// Payload bytes of a Login Request (without the type byte).
pub const LOGIN_REQUEST_PAYLOAD_BYTES: usize =
    USERNAME_BYTES + PASSWORD_BYTES + SESSION_BYTES + SEQUENCE_BYTES;

/// Packet type bytes.
pub mod packet_type {
    pub const DEBUG: u8 = b'+';
    pub const LOGIN_ACCEPTED: u8 = b'A';
    pub const LOGIN_REJECTED: u8 = b'J';
    pub const SEQUENCED_DATA: u8 = b'S';
    pub const SERVER_HEARTBEAT: u8 = b'H';
    pub const END_OF_SESSION: u8 = b'Z';
    pub const LOGIN_REQUEST: u8 = b'L';
    pub const UNSEQUENCED_DATA: u8 = b'U';
    pub const CLIENT_HEARTBEAT: u8 = b'R';
    pub const LOGOUT_REQUEST: u8 = b'O';
}

/// Why a login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginRejectReason {
    /// 'A': bad username or password.
    NotAuthorized,
    /// 'S': the requested session is not available (or already in use).
    SessionNotAvailable,
}

impl LoginRejectReason {
    pub fn code(self) -> u8 {
        match self {
            LoginRejectReason::NotAuthorized => b'A',
            LoginRejectReason::SessionNotAvailable => b'S',
        }
    }

    pub fn from_code(code: u8) -> Option<LoginRejectReason> {
        match code {
            b'A' => Some(LoginRejectReason::NotAuthorized),
            b'S' => Some(LoginRejectReason::SessionNotAvailable),
            _ => None,
        }
    }
}

/// One SoupBinTCP packet, either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Debug(Vec<u8>),
    LoginAccepted {
        session: [u8; SESSION_BYTES],
        sequence_number: u64,
    },
    LoginRejected(LoginRejectReason),
    SequencedData(Vec<u8>),
    ServerHeartbeat,
    EndOfSession,
    LoginRequest {
        username: [u8; USERNAME_BYTES],
        password: [u8; PASSWORD_BYTES],
        requested_session: [u8; SESSION_BYTES],
        requested_sequence_number: u64,
    },
    UnsequencedData(Vec<u8>),
    ClientHeartbeat,
    LogoutRequest,
}

/// Why bytes could not be decoded into a packet. Running out of bytes is
/// not an error: the decoder returns `Ok(None)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length field exceeds the configured maximum.
    FrameTooLarge {
        length_bytes: usize,
        max_bytes: usize,
    },
    /// A length of zero: no room for the packet type.
    EmptyFrame,
    UnknownPacketType(u8),
    /// A fixed-size packet with the wrong payload size.
    WrongLength {
        packet_type: u8,
        payload_bytes: usize,
        expected_bytes: usize,
    },
    /// A numeric field holding something other than digits and spaces.
    BadNumeric,
    /// Login Rejected with a reason other than 'A' or 'S'.
    BadRejectReason(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge {
                length_bytes,
                max_bytes,
            } => write!(f, "frame of {length_bytes} bytes exceeds {max_bytes}"),
            DecodeError::EmptyFrame => write!(f, "frame of length 0"),
            DecodeError::UnknownPacketType(t) => write!(f, "unknown packet type 0x{t:02x}"),
            DecodeError::WrongLength {
                packet_type,
                payload_bytes,
                expected_bytes,
            } => write!(
                f,
                "packet '{}' with {payload_bytes} payload bytes, expected {expected_bytes}",
                *packet_type as char
            ),
            DecodeError::BadNumeric => write!(f, "numeric field is not ASCII digits"),
            DecodeError::BadRejectReason(r) => write!(f, "bad login reject reason 0x{r:02x}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload does not fit the 16-bit length field.
    PayloadTooLarge { payload_bytes: usize },
    /// A sequence number wider than 20 digits cannot happen for u64; kept
    /// for completeness of the numeric encoder.
    NumericTooWide,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PayloadTooLarge { payload_bytes } => {
                write!(f, "payload of {payload_bytes} bytes does not fit a frame")
            }
            EncodeError::NumericTooWide => write!(f, "numeric value too wide for its field"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Left-justifies `text` in an `N`-byte alpha field, space padded;
/// longer text is truncated.
pub fn alpha<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut field = [b' '; N];
    let len = text.len().min(N);
    field[..len].copy_from_slice(&text[..len]);
    field
}

/// The text of an alpha field without its right padding.
pub fn alpha_trimmed(field: &[u8]) -> &[u8] {
    let end = field
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(0, |last| last + 1);
    &field[..end]
}

/// Writes `value` right-justified, space padded, into a 20-byte field.
fn write_numeric(value: u64, out: &mut Vec<u8>) {
    let digits = value.to_string();
    // A u64 has at most 20 digits, so the padding never underflows.
    out.extend(std::iter::repeat_n(
        b' ',
        SEQUENCE_BYTES.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits.as_bytes());
}

/// Parses a numeric field: digits with optional spaces around them; an
/// all-space field is 0.
pub fn parse_numeric(field: &[u8]) -> Result<u64, DecodeError> {
    let start = field.iter().position(|b| *b != b' ').unwrap_or(field.len());
    let digits = alpha_trimmed(&field[start..]);
    if digits.is_empty() {
        return Ok(0);
    }
    let mut value: u64 = 0;
    for byte in digits {
        if !byte.is_ascii_digit() {
            return Err(DecodeError::BadNumeric);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(byte - b'0')))
            .ok_or(DecodeError::BadNumeric)?;
    }
    Ok(value)
}

impl Packet {
    pub fn packet_type(&self) -> u8 {
        use packet_type::*;
        match self {
            Packet::Debug(_) => DEBUG,
            Packet::LoginAccepted { .. } => LOGIN_ACCEPTED,
            Packet::LoginRejected(_) => LOGIN_REJECTED,
            Packet::SequencedData(_) => SEQUENCED_DATA,
            Packet::ServerHeartbeat => SERVER_HEARTBEAT,
            Packet::EndOfSession => END_OF_SESSION,
            Packet::LoginRequest { .. } => LOGIN_REQUEST,
            Packet::UnsequencedData(_) => UNSEQUENCED_DATA,
            Packet::ClientHeartbeat => CLIENT_HEARTBEAT,
            Packet::LogoutRequest => LOGOUT_REQUEST,
        }
    }

    /// Appends the whole frame (length, type, payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.push(self.packet_type());
        match self {
            Packet::Debug(data) | Packet::SequencedData(data) | Packet::UnsequencedData(data) => {
                out.extend_from_slice(data)
            }
            Packet::LoginAccepted {
                session,
                sequence_number,
            } => {
                out.extend_from_slice(session);
                write_numeric(*sequence_number, out);
            }
            Packet::LoginRejected(reason) => out.push(reason.code()),
            Packet::LoginRequest {
                username,
                password,
                requested_session,
                requested_sequence_number,
            } => {
                out.extend_from_slice(username);
                out.extend_from_slice(password);
                out.extend_from_slice(requested_session);
                write_numeric(*requested_sequence_number, out);
            }
            Packet::ServerHeartbeat
            | Packet::EndOfSession
            | Packet::ClientHeartbeat
            | Packet::LogoutRequest => {}
        }
        let length = out.len() - start - 2;
        let Ok(length16) = u16::try_from(length) else {
            out.truncate(start);
            return Err(EncodeError::PayloadTooLarge {
                payload_bytes: length - 1,
            });
        };
        out[start..start + 2].copy_from_slice(&length16.to_be_bytes());
        Ok(())
    }

    /// The whole frame as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes one packet from its type byte and payload (the frame body).
    pub fn decode_body(body: &[u8]) -> Result<Packet, DecodeError> {
        use packet_type::*;
        let (&kind, payload) = body.split_first().ok_or(DecodeError::EmptyFrame)?;
        let fixed = |expected_bytes: usize| {
            if payload.len() == expected_bytes {
                Ok(())
            } else {
                Err(DecodeError::WrongLength {
                    packet_type: kind,
                    payload_bytes: payload.len(),
                    expected_bytes,
                })
            }
        };
        Ok(match kind {
            DEBUG => Packet::Debug(payload.to_vec()),
            SEQUENCED_DATA => Packet::SequencedData(payload.to_vec()),
            UNSEQUENCED_DATA => Packet::UnsequencedData(payload.to_vec()),
            LOGIN_ACCEPTED => {
                fixed(SESSION_BYTES + SEQUENCE_BYTES)?;
                Packet::LoginAccepted {
                    session: alpha(&payload[..SESSION_BYTES]),
                    sequence_number: parse_numeric(&payload[SESSION_BYTES..])?,
                }
            }
            LOGIN_REJECTED => {
                fixed(1)?;
                Packet::LoginRejected(
                    LoginRejectReason::from_code(payload[0])
                        .ok_or(DecodeError::BadRejectReason(payload[0]))?,
                )
            }
            LOGIN_REQUEST => {
                fixed(LOGIN_REQUEST_PAYLOAD_BYTES)?;
                let (username, rest) = payload.split_at(USERNAME_BYTES);
                let (password, rest) = rest.split_at(PASSWORD_BYTES);
                let (session, sequence) = rest.split_at(SESSION_BYTES);
                Packet::LoginRequest {
                    username: alpha(username),
                    password: alpha(password),
                    requested_session: alpha(session),
                    requested_sequence_number: parse_numeric(sequence)?,
                }
            }
            SERVER_HEARTBEAT => {
                fixed(0)?;
                Packet::ServerHeartbeat
            }
            END_OF_SESSION => {
                fixed(0)?;
                Packet::EndOfSession
            }
            CLIENT_HEARTBEAT => {
                fixed(0)?;
                Packet::ClientHeartbeat
            }
            LOGOUT_REQUEST => {
                fixed(0)?;
                Packet::LogoutRequest
            }
            other => return Err(DecodeError::UnknownPacketType(other)),
        })
    }
}

/// Decodes the first whole frame of `bytes`: `Ok(None)` when more bytes
/// are needed, else the packet and the number of bytes it used.
pub fn decode_frame(
    bytes: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let [high, low, ..] = *bytes else {
        return Ok(None);
    };
    let length = usize::from(u16::from_be_bytes([high, low]));
    if length == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if length > max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            length_bytes: length,
            max_bytes: max_frame_bytes,
        });
    }
    let Some(body) = bytes.get(2..2 + length) else {
        return Ok(None);
    };
    Ok(Some((Packet::decode_body(body)?, 2 + length)))
}

/// Incremental decoder: feed bytes as they arrive, take whole packets out.
/// Holds at most one partial frame plus whatever was fed since; after an
/// error the stream is unusable (the caller closes the connection).
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    /// Start of the unconsumed bytes in `buffer`.
    start: usize,
    max_frame_bytes: usize,
}

impl Decoder {
    pub fn new(max_frame_bytes: usize) -> Decoder {
        Decoder {
            buffer: Vec::with_capacity(max_frame_bytes + 2),
            start: 0,
            max_frame_bytes,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > self.max_frame_bytes {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet returned as packets.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next whole packet, `Ok(None)` if it has not fully arrived.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        match decode_frame(&self.buffer[self.start..], self.max_frame_bytes)? {
            Some((packet, used)) => {
                self.start += used;
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(packet: Packet, golden: &[u8]) {
        let bytes = packet.to_bytes().unwrap();
        assert_eq!(bytes, golden, "encoding of {packet:?}");
        let (decoded, used) = decode_frame(golden, DEFAULT_MAX_FRAME_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(decoded, packet);
        assert_eq!(used, golden.len());
    }

    #[test]
    fn golden_bytes_of_every_packet_type() {
        round_trip(Packet::Debug(b"hi".to_vec()), b"\x00\x03+hi");
        round_trip(
            Packet::LoginAccepted {
                session: alpha(b"SESSION1"),
                sequence_number: 42,
            },
            b"\x00\x1fASESSION1                    42",
        );
        round_trip(
            Packet::LoginRejected(LoginRejectReason::NotAuthorized),
            b"\x00\x02JA",
        );
        round_trip(
            Packet::LoginRejected(LoginRejectReason::SessionNotAvailable),
            b"\x00\x02JS",
        );
        round_trip(
            Packet::SequencedData(vec![1, 2, 3]),
            b"\x00\x04S\x01\x02\x03",
        );
        round_trip(Packet::ServerHeartbeat, b"\x00\x01H");
        round_trip(Packet::EndOfSession, b"\x00\x01Z");
        round_trip(
            Packet::LoginRequest {
                username: alpha(b"ALICE"),
                password: alpha(b"secret"),
                requested_session: alpha(b""),
                requested_sequence_number: 7,
            },
            &[
                &b"\x00\x2fL"[..],
                b"ALICE ",
                b"secret    ",
                b"          ",
                b"                   7",
            ]
            .concat(),
        );
        round_trip(Packet::UnsequencedData(b"O".to_vec()), b"\x00\x02UO");
        round_trip(Packet::ClientHeartbeat, b"\x00\x01R");
        round_trip(Packet::LogoutRequest, b"\x00\x01O");
    }

    #[test]
    fn login_request_is_47_bytes_after_the_length() {
        let bytes = Packet::LoginRequest {
            username: alpha(b"U"),
            password: alpha(b"P"),
            requested_session: alpha(b"S"),
            requested_sequence_number: u64::MAX,
        }
        .to_bytes()
        .unwrap();
        assert_eq!(bytes.len(), 2 + 47);
        assert_eq!(&bytes[..2], &[0, 47]);
        assert_eq!(&bytes[29..], b"18446744073709551615");
    }

    #[test]
    fn numeric_fields_accept_spaces_either_side_and_blank_is_zero() {
        assert_eq!(parse_numeric(b"    "), Ok(0));
        assert_eq!(parse_numeric(b"12  "), Ok(12));
        assert_eq!(parse_numeric(b"  12"), Ok(12));
        assert_eq!(parse_numeric(b"0012"), Ok(12));
        assert_eq!(parse_numeric(b"1 2"), Err(DecodeError::BadNumeric));
        assert_eq!(parse_numeric(b"-1"), Err(DecodeError::BadNumeric));
        assert_eq!(
            parse_numeric(b"99999999999999999999"),
            Err(DecodeError::BadNumeric)
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut login = Packet::LoginRequest {
            username: alpha(b"U"),
            password: alpha(b"P"),
            requested_session: alpha(b""),
            requested_sequence_number: 1,
        }
        .to_bytes()
        .unwrap();
        let last = login.len() - 1;
        login[last] = b'x';
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (b"\x00\x00".to_vec(), DecodeError::EmptyFrame),
            (
                b"\x04\x01S".to_vec(),
                DecodeError::FrameTooLarge {
                    length_bytes: 1025,
                    max_bytes: 1024,
                },
            ),
            (b"\x00\x01Q".to_vec(), DecodeError::UnknownPacketType(b'Q')),
            (b"\x00\x01\x00".to_vec(), DecodeError::UnknownPacketType(0)),
            (
                b"\x00\x02HH".to_vec(),
                DecodeError::WrongLength {
                    packet_type: b'H',
                    payload_bytes: 1,
                    expected_bytes: 0,
                },
            ),
            (
                b"\x00\x03LAB".to_vec(),
                DecodeError::WrongLength {
                    packet_type: b'L',
                    payload_bytes: 2,
                    expected_bytes: 46,
                },
            ),
            (
                b"\x00\x01J".to_vec(),
                DecodeError::WrongLength {
                    packet_type: b'J',
                    payload_bytes: 0,
                    expected_bytes: 1,
                },
            ),
            (b"\x00\x02JX".to_vec(), DecodeError::BadRejectReason(b'X')),
            (login, DecodeError::BadNumeric),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                decode_frame(&bytes, DEFAULT_MAX_FRAME_BYTES),
                Err(expected.clone()),
                "{bytes:?}"
            );
            let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_BYTES);
            decoder.feed(&bytes);
            assert_eq!(decoder.next_packet(), Err(expected));
        }
    }

    #[test]
    fn incomplete_input_is_not_an_error() {
        for bytes in [&b""[..], b"\x00", b"\x00\x03", b"\x00\x03+h"] {
            assert_eq!(decode_frame(bytes, DEFAULT_MAX_FRAME_BYTES), Ok(None));
        }
    }

    #[test]
    fn decoder_reassembles_packets_fed_one_byte_at_a_time() {
        let packets = [
            Packet::ClientHeartbeat,
            Packet::UnsequencedData(vec![b'X'; 19]),
            Packet::Debug(Vec::new()),
            Packet::LogoutRequest,
        ];
        let mut stream = Vec::new();
        for packet in &packets {
            packet.encode(&mut stream).unwrap();
        }
        let mut decoder = Decoder::new(64);
        let mut decoded = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(packet) = decoder.next_packet().unwrap() {
                decoded.push(packet);
            }
        }
        assert_eq!(decoded, packets);
        assert_eq!(decoder.buffered_bytes(), 0);
        // And all at once.
        let mut decoder = Decoder::new(64);
        decoder.feed(&stream);
        let mut count = 0;
        while decoder.next_packet().unwrap().is_some() {
            count += 1;
        }
        assert_eq!(count, packets.len());
    }

    #[test]
    fn the_decoder_buffer_stays_bounded() {
        let mut decoder = Decoder::new(16);
        let frame = Packet::Debug(vec![b'x'; 15]).to_bytes().unwrap();
        for _ in 0..10_000 {
            decoder.feed(&frame);
            assert!(decoder.next_packet().unwrap().is_some());
            assert!(decoder.buffer.len() <= 2 * (16 + 2));
        }
    }

    #[test]
    fn oversize_payload_does_not_encode() {
        let error = Packet::SequencedData(vec![0; 70_000])
            .to_bytes()
            .unwrap_err();
        assert_eq!(
            error,
            EncodeError::PayloadTooLarge {
                payload_bytes: 70_000
            }
        );
    }
}
