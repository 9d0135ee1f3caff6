//! The OUCH surface's Prometheus series (`brokerx-metrics`). Counters that
//! the engine thread may bump (inline consumers store outbound messages
//! and engine rejects) are resolved once here, so recording is one atomic
//! add and never a lock.

use crate::reasons::reject;
use brokerx_metrics::prometheus::IntCounter;
use brokerx_metrics::Surface;

/// Outbound OUCH message types by their type byte.
const OUTBOUND: &[(u8, &str)] = &[
    (b'S', "system_event"),
    (b'A', "accepted"),
    (b'U', "replaced"),
    (b'C', "canceled"),
    (b'E', "executed"),
    (b'J', "rejected"),
];

/// The name of an inbound message type (unknown types are "unknown", so a
/// client cannot create series at will).
pub fn inbound_name(kind: Option<&u8>) -> &'static str {
    INBOUND[inbound_index(kind)]
}

/// A Rejected reason's name, for the `code` label and logs.
pub fn reject_name(reason: u8) -> &'static str {
    match reason {
        reject::HALTED => "halted",
        reject::SHARES_OVER_THRESHOLD => "shares_over_threshold",
        reject::INVALID_STOCK => "invalid_stock",
        reject::INVALID_DISPLAY => "invalid_display",
        reject::FIRM_NOT_AUTHORIZED => "firm_not_authorized",
        reject::NOT_ALLOWED_NOW => "not_allowed_now",
        reject::INVALID_PRICE => "invalid_price",
        reject::INVALID_MINIMUM_QUANTITY => "invalid_minimum_quantity",
        reject::INVALID_SHARES => "invalid_shares",
        reject::INVALID_SIDE => "invalid_side",
        reject::INVALID_TIME_IN_FORCE => "invalid_time_in_force",
        reject::DUPLICATE_TOKEN => "duplicate_token",
        reject::UNKNOWN_TOKEN => "unknown_token",
        reject::INSUFFICIENT_FUNDS => "insufficient_funds",
        reject::INSUFFICIENT_SHARES => "insufficient_shares",
        reject::MALFORMED => "malformed",
        reject::BUSY => "busy",
        _ => "other",
    }
}

/// Every reason [`reject_name`] knows, for pre-resolving.
const REASONS: &[u8] = &[
    reject::HALTED,
    reject::SHARES_OVER_THRESHOLD,
    reject::INVALID_STOCK,
    reject::INVALID_DISPLAY,
    reject::FIRM_NOT_AUTHORIZED,
    reject::NOT_ALLOWED_NOW,
    reject::INVALID_PRICE,
    reject::INVALID_MINIMUM_QUANTITY,
    reject::OTHER,
    reject::INVALID_SHARES,
    reject::INVALID_SIDE,
    reject::INVALID_TIME_IN_FORCE,
    reject::DUPLICATE_TOKEN,
    reject::UNKNOWN_TOKEN,
    reject::INSUFFICIENT_FUNDS,
    reject::INSUFFICIENT_SHARES,
    reject::MALFORMED,
    reject::BUSY,
];

/// Inbound type names, in [`inbound_index`] order.
const INBOUND: &[&str] = &["enter_order", "replace_order", "cancel_order", "unknown"];

fn inbound_index(kind: Option<&u8>) -> usize {
    match kind {
        Some(b'O') => 0,
        Some(b'U') => 1,
        Some(b'X') => 2,
        _ => 3,
    }
}

pub(crate) struct Meters {
    pub surface: Surface,
    received: Vec<IntCounter>,
    sent: Vec<(u8, IntCounter)>,
    sent_other: IntCounter,
    rejects: Vec<(u8, IntCounter)>,
}

impl Meters {
    pub fn new() -> Meters {
        let surface = Surface::new("ouch");
        Meters {
            received: INBOUND
                .iter()
                .map(|name| surface.received_counter(name))
                .collect(),
            sent: OUTBOUND
                .iter()
                .map(|&(kind, name)| (kind, surface.sent_counter(name)))
                .collect(),
            sent_other: surface.sent_counter("other"),
            rejects: REASONS
                .iter()
                .map(|&reason| (reason, surface.error_counter(reject_name(reason))))
                .collect(),
            surface,
        }
    }

    /// One inbound message (its first byte is the type).
    pub fn received(&self, message: &[u8]) {
        self.received[inbound_index(message.first())].inc();
    }

    /// One outbound message (its encoding starts with the type byte).
    pub fn sent(&self, message: &[u8]) {
        let kind = message.first().copied().unwrap_or(0);
        self.sent
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&self.sent_other, |(_, c)| c)
            .inc();
    }

    /// One Rejected message with `reason`.
    pub fn rejected(&self, reason: u8) {
        if let Some((_, counter)) = self.rejects.iter().find(|(r, _)| *r == reason) {
            counter.inc();
        } else if let Some((_, counter)) = self.rejects.iter().find(|(r, _)| *r == reject::OTHER) {
            counter.inc();
        }
    }
}
