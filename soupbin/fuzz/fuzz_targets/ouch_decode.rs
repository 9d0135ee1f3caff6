//! Fuzz target: arbitrary bytes as an OUCH 4.2 inbound and outbound
//! message. Decoding must never panic, and whatever decodes must encode
//! and decode back to the same value.
#![no_main]

use brokerx_gateway_ouch::codec::{Inbound, Outbound};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Inbound::decode(data) {
        let again = Inbound::decode(&message.to_bytes()).expect("re-decode inbound");
        assert_eq!(again, message);
    }
    if let Ok(message) = Outbound::decode(data) {
        let again = Outbound::decode(&message.to_bytes()).expect("re-decode outbound");
        assert_eq!(again, message);
    }
});
