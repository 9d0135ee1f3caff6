//! Zero-copy FIX tag=value codec.
//!
//! [`next_frame`] finds one complete, checksummed message in a receive buffer
//! (incomplete input is [`Frame::Incomplete`], never an error), [`parse`] splits a frame
//! into borrowed fields, and [`encode`] writes an outbound message computing BodyLength
//! (9) and CheckSum (10).

/// Field separator.
pub const SOH: u8 = 0x01;
/// Default bound on one message (bytes, whole frame).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Result of looking for a frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes before anything can be decided.
    Incomplete,
    /// `buf[..len]` is a complete message with correct BodyLength and CheckSum.
    Message { len: usize },
    /// `buf[..skip]` is garbage or a garbled message (bad BodyLength/CheckSum,
    /// oversize, 8/9 out of place) and must be dropped.
    Garbled { skip: usize },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Position of the next plausible message start (`8=FIX`) at or after `from`.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    find(buf.get(from..)?, b"8=FIX").map(|p| p + from)
}

fn parse_uint(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

/// Sum of bytes modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Look for one frame at the start of `buf`. `max` bounds the frame size.
pub fn next_frame(buf: &[u8], max: usize) -> Frame {
    if buf.is_empty() {
        return Frame::Incomplete;
    }
    let garbled_from = |from: usize| match resync(buf, from) {
        Some(p) => Frame::Garbled { skip: p.max(1) },
        // Keep a tail that could be the start of "8=FIX".
        None => Frame::Garbled {
            skip: buf.len().saturating_sub(4).max(1),
        },
    };
    if !buf.starts_with(b"8=FIX") {
        if buf.len() < 5 && b"8=FIX".starts_with(buf) {
            return Frame::Incomplete;
        }
        return garbled_from(1);
    }
    let Some(soh1) = buf.iter().position(|&b| b == SOH) else {
        return if buf.len() > 32 {
            garbled_from(1)
        } else {
            Frame::Incomplete
        };
    };
    if soh1 > 32 {
        return garbled_from(1);
    }
    let rest = &buf[soh1 + 1..];
    if rest.len() < 2 {
        return Frame::Incomplete;
    }
    if !rest.starts_with(b"9=") {
        return garbled_from(1);
    }
    let Some(soh2) = rest.iter().position(|&b| b == SOH) else {
        return if rest.len() > 12 {
            garbled_from(1)
        } else {
            Frame::Incomplete
        };
    };
    let Some(body_len) = parse_uint(&rest[2..soh2]) else {
        return garbled_from(1);
    };
    let body_start = soh1 + 1 + soh2 + 1;
    if body_start as u64 + body_len + 7 > max as u64 {
        return garbled_from(1);
    }
    let body_end = body_start + body_len as usize;
    if buf.len() < body_end + 7 {
        return Frame::Incomplete;
    }
    // Like QuickFIX's parser: the frame ends at the first "<SOH>10=...<SOH>" at or
    // after the declared body end. A wrong BodyLength therefore swallows bytes up to
    // the next CheckSum field, and the whole frame is dropped as garbled.
    let search_from = body_end.saturating_sub(1).max(body_start.saturating_sub(1));
    let Some(cs) = find(&buf[search_from..], b"\x0110=").map(|p| p + search_from) else {
        return if buf.len() > max {
            garbled_from(1)
        } else {
            Frame::Incomplete
        };
    };
    let Some(end) = buf[cs + 4..]
        .iter()
        .position(|&b| b == SOH)
        .map(|p| cs + 4 + p + 1)
    else {
        return if buf.len() > max {
            garbled_from(1)
        } else {
            Frame::Incomplete
        };
    };
    if end > max {
        return Frame::Garbled { skip: end };
    }
    let value = &buf[cs + 4..end - 1];
    let ok = cs + 1 == body_end
        && body_len > 0
        && value.len() == 3
        && parse_uint(value).is_some_and(|v| v == u64::from(checksum(&buf[..body_end])));
    if ok {
        Frame::Message { len: end }
    } else {
        Frame::Garbled { skip: end }
    }
}

/// One field of a parsed message, borrowing the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Numeric tag; 0 when the tag text is not a positive number (see `tag_text`).
    pub tag: u32,
    /// The tag exactly as sent (used to echo invalid tags such as `-1`).
    pub tag_text: &'a [u8],
    /// The value bytes (possibly empty).
    pub value: &'a [u8],
}

/// Error from [`parse`]: the frame is not a sequence of tag=value pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garbled;

/// Iterate over fields of a frame (or any SOH-terminated tag=value run).
pub fn fields(frame: &[u8]) -> impl Iterator<Item = Result<Field<'_>, Garbled>> {
    frame
        .split(|&b| b == SOH)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=').ok_or(Garbled)?;
            let tag_text = &pair[..eq];
            if tag_text.is_empty() {
                return Err(Garbled);
            }
            let tag = match parse_uint(tag_text) {
                Some(t) if t > 0 && t <= u64::from(u32::MAX) => t as u32,
                _ => 0,
            };
            Ok(Field {
                tag,
                tag_text,
                value: &pair[eq + 1..],
            })
        })
}

/// Split a frame into fields. Fails on a pair without `=` or an empty tag.
pub fn parse(frame: &[u8]) -> Result<Vec<Field<'_>>, Garbled> {
    let mut out = Vec::with_capacity(24);
    for f in fields(frame) {
        out.push(f?);
    }
    if out.len() < 4 || out[0].tag != 8 || out[1].tag != 9 || out[2].tag != 35 {
        return Err(Garbled);
    }
    Ok(out)
}

/// Write `tag=value\x01`.
pub fn put(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    let mut digits = [0u8; 10];
    let mut n = tag;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(SOH);
}

/// Encode a message: `8=begin`, `9=`, `35=msg_type`, then `rest` (already-encoded
/// header and body fields, each `tag=value\x01`), then `10=`.
pub fn encode_raw(begin: &[u8], msg_type: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(rest.len() + 16);
    put(&mut body, 35, msg_type);
    body.extend_from_slice(rest);
    let mut out = Vec::with_capacity(body.len() + 32);
    put(&mut out, 8, begin);
    put(&mut out, 9, body.len().to_string().as_bytes());
    out.extend_from_slice(&body);
    let sum = checksum(&out);
    put(&mut out, 10, format!("{sum:03}").as_bytes());
    out
}

/// Encode from field lists: header fields (written in the order given, callers
/// sort them ascending) then body fields.
pub fn encode(
    begin: &[u8],
    msg_type: &[u8],
    header: &[(u32, &[u8])],
    body: &[(u32, &[u8])],
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(128);
    for (t, v) in header.iter().chain(body) {
        put(&mut rest, *t, v);
    }
    encode_raw(begin, msg_type, &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Vec<u8> {
        s.replace('|', "\x01").into_bytes()
    }

    #[test]
    fn encode_then_frame_and_parse() {
        let m = encode(
            b"FIX.4.4",
            b"0",
            &[
                (34, b"2"),
                (49, b"ISLD"),
                (52, b"20240101-00:00:00.000"),
                (56, b"TW44"),
            ],
            &[(112, b"HI")],
        );
        let text = String::from_utf8(m.clone()).unwrap().replace('\x01', "|");
        assert!(
            text.starts_with("8=FIX.4.4|9=58|35=0|34=2|49=ISLD|"),
            "{text}"
        );
        assert_eq!(
            next_frame(&m, DEFAULT_MAX_MESSAGE),
            Frame::Message { len: m.len() }
        );
        let f = parse(&m).unwrap();
        assert_eq!(f[2].value, b"0");
        assert_eq!(f.last().unwrap().tag, 10);
        assert_eq!(f[7].value, b"HI");
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let m = encode(b"FIX.4.4", b"0", &[(34, b"2")], &[]);
        for cut in 0..m.len() {
            assert_eq!(
                next_frame(&m[..cut], DEFAULT_MAX_MESSAGE),
                Frame::Incomplete,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn two_messages_back_to_back() {
        let mut m = encode(b"FIX.4.4", b"0", &[(34, b"2")], &[]);
        let first = m.len();
        m.extend(encode(b"FIX.4.4", b"1", &[(34, b"3")], &[(112, b"X")]));
        assert_eq!(
            next_frame(&m, DEFAULT_MAX_MESSAGE),
            Frame::Message { len: first }
        );
        assert!(matches!(
            next_frame(&m[first..], DEFAULT_MAX_MESSAGE),
            Frame::Message { .. }
        ));
    }

    #[test]
    fn malformed_table() {
        let good = encode(b"FIX.4.4", b"0", &[(34, b"2")], &[]);
        let mut bad_sum = good.clone();
        let n = bad_sum.len();
        bad_sum[n - 2] = if bad_sum[n - 2] == b'9' { b'0' } else { b'9' };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "garbage",
                b"hello world this is not fix at all......".to_vec(),
            ),
            ("bad checksum", bad_sum),
            ("9 not second", msg("8=FIX.4.4|35=0|9=5|34=2|10=000|")),
            ("length not numeric", msg("8=FIX.4.4|9=abc|35=0|10=000|")),
            ("length too short", msg("8=FIX.4.4|9=3|35=0|34=2|10=000|")),
            ("oversize", msg("8=FIX.4.4|9=99999999|35=0|")),
            ("checksum not digits", msg("8=FIX.4.4|9=5|35=0|10=abc|")),
            ("35 first", msg("35=0|8=FIX.4.4|9=5|35=0|10=000|")),
        ];
        for (name, bytes) in cases {
            match next_frame(&bytes, 4096) {
                Frame::Garbled { skip } => assert!(skip > 0 && skip <= bytes.len(), "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbled_then_good_resyncs() {
        let mut buf = msg("8=FIX.4.4|9=3|35=0|34=2|10=000|");
        let good = encode(b"FIX.4.4", b"0", &[(34, b"2")], &[]);
        buf.extend_from_slice(&good);
        let mut at = 0;
        let mut got = None;
        for _ in 0..100 {
            match next_frame(&buf[at..], 4096) {
                Frame::Garbled { skip } => at += skip,
                Frame::Message { len } => {
                    got = Some(&buf[at..at + len]);
                    break;
                }
                Frame::Incomplete => break,
            }
        }
        assert_eq!(got, Some(&good[..]));
    }

    #[test]
    fn parse_rejects_pairs_without_equals() {
        assert_eq!(
            parse(&msg("8=FIX.4.4|9=5|35=0|4garbled|10=000|")),
            Err(Garbled)
        );
        let m = msg("8=FIX.4.4|9=5|35=0|-1=HI|0=X|56=|10=000|");
        let f = parse(&m).unwrap();
        assert_eq!((f[3].tag, f[3].tag_text), (0, &b"-1"[..]));
        assert_eq!(f[4].tag, 0);
        assert_eq!(f[5].value, b"");
    }
}
