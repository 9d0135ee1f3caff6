//! Canonical walk over the whole engine state, and `state_hash()`.
//!
//! The walk visits every piece of state in a fixed order (symbols and
//! accounts by id, levels best first, queues in time priority, the free
//! list in order) and feeds fixed-width integers to a [`StateSink`]. The
//! hash sink folds them into a 64-bit digest; snapshots reuse the walk.

use crate::book::NIL;
use crate::Engine;
use brokerx_risk::Side;

/// Receives the canonical sequence of integers.
pub trait StateSink {
    fn u64(&mut self, value: u64);
}

/// A stable, platform-independent 64-bit hash of a `u64` stream
/// (a multiply-xorshift mix; not cryptographic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StableHasher {
    state: u64,
    count: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0x243F_6A88_85A3_08D3,
            count: 0,
        }
    }
}

impl StableHasher {
    /// The raw state, for storing a running hash in a snapshot.
    pub fn parts(&self) -> (u64, u64) {
        (self.state, self.count)
    }

    pub fn from_parts(state: u64, count: u64) -> StableHasher {
        StableHasher { state, count }
    }

    pub fn finish(&self) -> u64 {
        mix(self.state ^ self.count)
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.u64(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.u64(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl StateSink for StableHasher {
    fn u64(&mut self, value: u64) {
        self.state = mix(self.state.rotate_left(23) ^ value);
        self.count += 1;
    }
}

impl Engine {
    /// Feeds the whole state, canonically ordered, to `sink`.
    /// The sequence number is not part of the walk: see [`Engine::state_hash`].
    pub fn walk_state(&self, sink: &mut impl StateSink) {
        sink.u64(self.next_match_id);
        sink.u64(self.symbols.len() as u64);
        for (id, state) in self.symbols.iter().enumerate() {
            let Some(state) = state else { continue };
            sink.u64(id as u64);
            let spec = &state.spec;
            for value in [
                spec.tick_size,
                spec.lot_size,
                spec.reference_price,
                spec.band_bps as u64,
                spec.maker_fee_per_share,
                spec.taker_fee_per_share,
                state.band_low,
                state.band_high,
                state.halted as u64,
                state.base_price,
            ] {
                sink.u64(value);
            }
            for side in [Side::Buy, Side::Sell] {
                let ladder = state.ladder(side);
                sink.u64(ladder.len() as u64);
                for index in ladder.iter_best_first() {
                    let level = ladder.levels[index as usize];
                    sink.u64(index as u64);
                    sink.u64(level.qty);
                    sink.u64(level.orders as u64);
                    let mut cursor = level.head;
                    while cursor != NIL {
                        let node = &self.orders.nodes[cursor as usize];
                        sink.u64(cursor as u64);
                        sink.u64(node.generation as u64);
                        sink.u64(node.price);
                        sink.u64(node.leaves);
                        sink.u64(node.filled);
                        sink.u64(node.account as u64);
                        sink.u64(u64::from_le_bytes([
                            node.side,
                            node.tif,
                            node.self_trade,
                            node.flags,
                            0,
                            0,
                            0,
                            0,
                        ]));
                        cursor = node.next;
                    }
                    sink.u64(u64::MAX);
                }
            }
        }
        for (id, account) in self.ledger.accounts() {
            sink.u64(id.0 as u64);
            sink.u64(account.cash.available);
            sink.u64(account.cash.reserved);
            sink.u64(account.limits.max_order_qty);
            sink.u64(account.limits.max_order_notional);
            sink.u64(account.limits.max_open_orders as u64);
            sink.u64(account.open_orders as u64);
            sink.u64(account.suspended as u64);
            for (symbol, position) in account.positions().iter().enumerate() {
                if position.available | position.reserved != 0 {
                    sink.u64(symbol as u64);
                    sink.u64(position.available);
                    sink.u64(position.reserved);
                }
            }
            let engine_account = self.accounts[id.0 as usize].expect("paired account");
            sink.u64(engine_account.self_trade as u64);
            let mut cursor = engine_account.orders.head;
            while cursor != NIL {
                sink.u64(cursor as u64);
                cursor = self.orders.nodes[cursor as usize].account_next;
            }
            sink.u64(u64::MAX);
        }
        sink.u64(self.ledger.cash_supply());
        sink.u64(self.ledger.fees_collected());
        sink.u64(self.orders.nodes.len() as u64);
        for slot in self.orders.free_slots() {
            sink.u64(slot as u64);
            sink.u64(self.orders.nodes[slot as usize].generation as u64);
        }
    }

    /// Digest of the whole state: equal for two engines fed the same
    /// commands, whatever machine or process ran them.
    /// It covers the last applied sequence number too.
    pub fn state_hash(&self) -> u64 {
        let mut hasher = StableHasher::default();
        hasher.u64(self.last_seq);
        self.walk_state(&mut hasher);
        hasher.finish()
    }

    /// Digest of books and ledgers alone, without the sequence number:
    /// equal before and after a rejected command.
    pub fn content_hash(&self) -> u64 {
        let mut hasher = StableHasher::default();
        self.walk_state(&mut hasher);
        hasher.finish()
    }
}
