//! The FIX surface's Prometheus series (`brokerx-metrics`) and the
//! helpers that read a message type or a field from raw FIX bytes without
//! a full parse. Recorded on connection threads and the event thread,
//! never the engine thread.

use brokerx_metrics::prometheus::IntCounter;
use brokerx_metrics::Surface;
use std::sync::OnceLock;

pub fn surface() -> &'static Surface {
    static SURFACE: OnceLock<Surface> = OnceLock::new();
    SURFACE.get_or_init(|| Surface::new("fix"))
}

/// The value of the first `tag=` field of a raw message (after BeginString).
pub fn field<'a>(message: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    while let Some(soh) = message[at..].iter().position(|&b| b == 1) {
        let start = at + soh + 1;
        let rest = &message[start..];
        if rest.len() > tag.len() && rest.starts_with(tag) && rest[tag.len()] == b'=' {
            let value = &rest[tag.len() + 1..];
            let end = value.iter().position(|&b| b == 1).unwrap_or(value.len());
            return Some(&value[..end]);
        }
        at = start;
    }
    None
}

/// MsgTypes by name; anything else is "other", so a counterparty cannot
/// create series at will.
const TYPES: &[(&[u8], &str)] = &[
    (b"0", "heartbeat"),
    (b"1", "test_request"),
    (b"2", "resend_request"),
    (b"3", "reject"),
    (b"4", "sequence_reset"),
    (b"5", "logout"),
    (b"A", "logon"),
    (b"D", "new_order_single"),
    (b"F", "order_cancel_request"),
    (b"G", "order_cancel_replace_request"),
    (b"H", "order_status_request"),
    (b"q", "order_mass_cancel_request"),
    (b"8", "execution_report"),
    (b"9", "order_cancel_reject"),
    (b"r", "order_mass_cancel_report"),
    (b"j", "business_message_reject"),
    (b"V", "market_data_request"),
    (b"W", "market_data_snapshot"),
    (b"X", "market_data_incremental"),
    (b"Y", "market_data_request_reject"),
];

/// Index into [`TYPES`], or `TYPES.len()` for "other".
fn type_index(msg_type: Option<&[u8]>) -> usize {
    let msg_type = msg_type.unwrap_or_default();
    TYPES
        .iter()
        .position(|(t, _)| *t == msg_type)
        .unwrap_or(TYPES.len())
}

pub fn type_name(msg_type: Option<&[u8]>) -> &'static str {
    TYPES
        .get(type_index(msg_type))
        .map_or("other", |(_, name)| name)
}

/// Per-type counters, resolved once: counting a message is an atomic add.
struct Counters {
    received: Vec<IntCounter>,
    sent: Vec<IntCounter>,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let names = TYPES
            .iter()
            .map(|(_, n)| *n)
            .chain(std::iter::once("other"));
        let s = surface();
        Counters {
            received: names.clone().map(|n| s.received_counter(n)).collect(),
            sent: names.map(|n| s.sent_counter(n)).collect(),
        }
    })
}

/// Requests whose first answer closes a round trip (keyed by ClOrdID).
pub fn is_order_request(msg_type: Option<&[u8]>) -> bool {
    matches!(msg_type, Some(b"D" | b"F" | b"G"))
}

/// One inbound frame.
pub fn received(frame: &[u8]) {
    counters().received[type_index(field(frame, b"35"))].inc();
}

/// One outbound message: counted by type, and as an error when it
/// refuses something.
pub fn sent(message: &[u8]) {
    let msg_type = field(message, b"35");
    counters().sent[type_index(msg_type)].inc();
    let s = surface();
    match msg_type {
        Some(b"3") => s.error("session_reject"),
        Some(b"j") => s.error("business_message_reject"),
        Some(b"9") => s.error("order_cancel_reject"),
        Some(b"Y") => s.error("market_data_request_reject"),
        Some(b"8") if field(message, b"150") == Some(b"8") => s.error("order_rejected"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_exact_tag() {
        let m = b"8=FIX.4.4\x019=20\x0135=8\x01150=8\x0111=abc\x0110=000\x01";
        assert_eq!(field(m, b"35"), Some(&b"8"[..]));
        assert_eq!(field(m, b"150"), Some(&b"8"[..]));
        assert_eq!(field(m, b"11"), Some(&b"abc"[..]));
        assert_eq!(field(m, b"1"), None);
        assert_eq!(field(b"", b"35"), None);
        assert_eq!(field(b"\x0135", b"35"), None);
        assert_eq!(type_name(Some(b"ZZ")), "other");
    }
}
