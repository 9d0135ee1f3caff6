//! The BrokerX matching core: order books, matching, and the deterministic
//! state machine that turns a sequenced [`Command`] into [`Event`]s.
//!
//! Layers, from the bottom:
//! - [`bitset`]: a hierarchical bitmap over price levels, for O(log64 n)
//!   best-price search when a level empties.
//! - [`book`]: the order slab (preallocated, 56 bytes per order, O(1)
//!   lookup by [`OrderId`]) and the per-symbol price ladders.
//! - [`engine`]: the state machine. Risk (`brokerx-risk`) runs before the
//!   book, settlement after each fill, on the same thread.
//! - [`codec`]: the versioned little-endian wire layout of commands and
//!   events, used by the journal and replay (see `docs/CODEC.md`).
//! - [`state`]: a canonical encoding of the whole state and its hash.
//!
//! Nothing in this crate reads a clock, draws randomness, performs I/O or
//! iterates a hash map: the output depends only on the command stream.

pub mod bitset;
pub mod book;
pub mod codec;
mod codes;
mod command;
pub mod engine;
mod event;
mod invariants;
pub mod pipeline;
pub mod snapshot;
pub mod state;

pub use brokerx_risk::{AccountId, Limits, Side, SymbolId};
pub use codes::RejectCode;
pub use command::{
    Command, OrderType, SelfTradePrevention, SequencedCommand, SymbolSpec, TimeInForce,
};
pub use engine::{Engine, EngineConfig};
pub use event::{CancelReason, Event};

/// Engine-assigned order identifier: `generation << 32 | slot`. The slot
/// indexes the order slab, so lookup is O(1); the generation makes every
/// id unique even when a slot is reused. Zero is never a valid id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OrderId(pub u64);

impl OrderId {
    pub const NONE: OrderId = OrderId(0);

    pub fn new(slot: u32, generation: u32) -> OrderId {
        OrderId(((generation as u64) << 32) | slot as u64)
    }

    pub fn slot(self) -> u32 {
        self.0 as u32
    }

    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}
