//! Fuzz target: arbitrary bytes through the incremental SoupBinTCP decoder,
//! fed in two chunks split by the first byte. It must never panic; every
//! packet it returns must re-encode to the exact bytes it consumed.
#![no_main]

use brokerx_soupbin::{decode_frame, Decoder, Packet};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = Decoder::new(MAX_FRAME_BYTES);
    let mut packets: Vec<Packet> = Vec::new();
    let mut failed = false;
    for chunk in [&data[..split], &data[split..]] {
        if failed {
            break;
        }
        decoder.feed(chunk);
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    // One-shot decoding of the same bytes agrees packet by packet.
    let mut rest = data;
    for packet in &packets {
        let Ok(Some((again, used))) = decode_frame(rest, MAX_FRAME_BYTES) else {
            panic!("one-shot decode disagrees");
        };
        assert_eq!(&again, packet);
        // Numeric fields may be written differently (leading zeros), so
        // compare re-encoded lengths only.
        assert_eq!(packet.to_bytes().map(|b| b.len()).ok(), Some(used));
        rest = &rest[used..];
    }
});
