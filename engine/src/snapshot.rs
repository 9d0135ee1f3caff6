//! Full image of the engine for snapshots, and its decoder.
//!
//! Layout (little-endian): format byte, config, last sequence, next match
//! id, the ledger image, engine accounts, symbols with their non-empty
//! levels, then the order slab verbatim (so slot reuse and generations,
//! hence future order ids, are reproduced exactly). The decoder bounds
//! every count and link and finishes with `check_invariants`, so a
//! decoded engine is a valid one.

use crate::book::{AccountOrders, Best, Ladder, Level, OrderNode, OrderSlab, NIL};
use crate::codec::{CodecError, Field, Reader};
use crate::engine::{EngineAccount, SymbolState};
use crate::{Engine, EngineConfig, SelfTradePrevention, SymbolSpec};
use brokerx_risk::{Ledger, MAX_ACCOUNTS, MAX_SYMBOLS};

const SNAPSHOT_FORMAT: u8 = 1;

/// Why a snapshot image did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    Codec(CodecError),
    Ledger(&'static str),
    /// The image decoded but describes an inconsistent engine.
    Inconsistent(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Codec(e) => write!(f, "engine snapshot: {e}"),
            SnapshotError::Ledger(e) => write!(f, "engine snapshot: {e}"),
            SnapshotError::Inconsistent(e) => write!(f, "engine snapshot inconsistent: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<CodecError> for SnapshotError {
    fn from(error: CodecError) -> SnapshotError {
        SnapshotError::Codec(error)
    }
}

/// Bytes of one encoded order slot: price, leaves and filled (u64), seven
/// u32 links and ids, and four one-byte fields.
const NODE_BYTES: usize = 3 * 8 + 7 * 4 + 4;

fn count(reader: &mut Reader, limit: u64, what: &'static str) -> Result<usize, SnapshotError> {
    let n = u64::get(reader)?;
    if n > limit {
        return Err(SnapshotError::Codec(CodecError::InvalidField(what)));
    }
    Ok(n as usize)
}

impl Engine {
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        out.push(SNAPSHOT_FORMAT);
        self.config.order_capacity.put(out);
        self.config.max_orders.put(out);
        self.config.max_ladder_levels.put(out);
        self.last_seq.put(out);
        self.next_match_id.put(out);
        let mut ledger = Vec::new();
        self.ledger.encode(&mut ledger);
        (ledger.len() as u64).put(out);
        out.extend_from_slice(&ledger);

        (self.accounts.len() as u64).put(out);
        for account in &self.accounts {
            account.is_some().put(out);
            let account = account.unwrap_or(EngineAccount {
                orders: AccountOrders::EMPTY,
                self_trade: SelfTradePrevention::CancelNewest,
            });
            account.orders.head.put(out);
            account.orders.tail.put(out);
            account.self_trade.put(out);
        }

        (self.symbols.len() as u64).put(out);
        for state in &self.symbols {
            state.is_some().put(out);
            let Some(state) = state else { continue };
            state.spec.put(out);
            state.band_low.put(out);
            state.band_high.put(out);
            state.halted.put(out);
            state.base_price.put(out);
            (state.bids.len() as u64).put(out);
            for ladder in [&state.bids, &state.asks] {
                (ladder.iter_best_first().count() as u64).put(out);
                for index in ladder.iter_best_first() {
                    let level = ladder.levels[index as usize];
                    index.put(out);
                    level.head.put(out);
                    level.tail.put(out);
                    level.orders.put(out);
                    level.qty.put(out);
                }
            }
        }

        let (nodes, free_head, live, max_orders) = self.orders.parts();
        max_orders.put(out);
        free_head.put(out);
        live.put(out);
        (nodes.len() as u64).put(out);
        for node in nodes {
            for value in [node.price, node.leaves, node.filled] {
                value.put(out);
            }
            for value in [
                node.account,
                node.symbol,
                node.prev,
                node.next,
                node.account_prev,
                node.account_next,
                node.generation,
            ] {
                value.put(out);
            }
            out.extend_from_slice(&[node.side, node.tif, node.self_trade, node.flags]);
        }
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut reader = Reader::new(bytes);
        if u8::get(&mut reader)? != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Codec(CodecError::InvalidField(
                "snapshot format",
            )));
        }
        let config = EngineConfig {
            order_capacity: u32::get(&mut reader)?,
            max_orders: u32::get(&mut reader)?,
            max_ladder_levels: u32::get(&mut reader)?,
        };
        if config.max_orders == NIL || config.max_ladder_levels > 1 << 26 {
            return Err(SnapshotError::Codec(CodecError::InvalidField("config")));
        }
        let last_seq = u64::get(&mut reader)?;
        let next_match_id = u64::get(&mut reader)?;
        let ledger_len = count(&mut reader, bytes.len() as u64, "ledger length")?;
        let start = reader.position();
        let mut ledger_bytes = &bytes[start..start + ledger_len.min(bytes.len() - start)];
        let ledger = Ledger::decode(&mut ledger_bytes).map_err(SnapshotError::Ledger)?;
        let mut reader = Reader::new(&bytes[start + ledger_len.min(bytes.len() - start)..]);

        let accounts_len = count(&mut reader, MAX_ACCOUNTS as u64, "accounts")?;
        let mut accounts = Vec::with_capacity(accounts_len);
        for _ in 0..accounts_len {
            let present = bool::get(&mut reader)?;
            let orders = AccountOrders {
                head: u32::get(&mut reader)?,
                tail: u32::get(&mut reader)?,
            };
            let self_trade = SelfTradePrevention::get(&mut reader)?;
            accounts.push(present.then_some(EngineAccount { orders, self_trade }));
        }

        let symbols_len = count(&mut reader, MAX_SYMBOLS as u64, "symbols")?;
        let mut symbols = Vec::with_capacity(symbols_len);
        for _ in 0..symbols_len {
            if !bool::get(&mut reader)? {
                symbols.push(None);
                continue;
            }
            symbols.push(Some(decode_symbol(&mut reader, config.max_ladder_levels)?));
        }

        let max_orders = u32::get(&mut reader)?;
        let free_head = u32::get(&mut reader)?;
        let live = u32::get(&mut reader)?;
        let nodes_len = count(&mut reader, max_orders as u64, "order slots")?;
        // A slot count the bytes left cannot hold is damage: refuse it
        // before allocating for it.
        if nodes_len > (reader_len(&reader) - reader.position()) / NODE_BYTES {
            return Err(SnapshotError::Codec(CodecError::InvalidField(
                "order slots",
            )));
        }
        // The engine's up-front capacity, as `Engine::new` sizes it; a
        // damaged config asking for more memory than there is is an error,
        // not an abort.
        let wanted = nodes_len.max(config.order_capacity.min(config.max_orders) as usize);
        let mut nodes = Vec::new();
        nodes
            .try_reserve_exact(wanted)
            .map_err(|_| SnapshotError::Codec(CodecError::InvalidField("order capacity")))?;
        for _ in 0..nodes_len {
            nodes.push(decode_node(&mut reader, nodes_len)?);
        }
        if reader.position() != reader_len(&reader) {
            return Err(SnapshotError::Codec(CodecError::TrailingBytes(
                reader_len(&reader) - reader.position(),
            )));
        }
        let orders = OrderSlab::restore(nodes, free_head, live, max_orders)
            .map_err(SnapshotError::Inconsistent)?;
        let engine = Engine {
            config,
            ledger,
            symbols,
            orders,
            accounts,
            next_match_id,
            last_seq,
        };
        engine
            .check_links()
            .and_then(|()| engine.check_invariants())
            .map_err(SnapshotError::Inconsistent)?;
        Ok(engine)
    }

    /// Every link in levels and account lists points into the slab, so the
    /// invariant walk cannot index out of bounds.
    fn check_links(&self) -> Result<(), String> {
        let len = self.orders.nodes.len() as u32;
        let ok = |slot: u32| slot == NIL || slot < len;
        let ladders = self
            .symbols
            .iter()
            .flatten()
            .flat_map(|s| [&s.bids, &s.asks]);
        for ladder in ladders {
            if ladder.levels.iter().any(|l| !ok(l.head) || !ok(l.tail)) {
                return Err("level link outside the slab".into());
            }
        }
        if self
            .accounts
            .iter()
            .flatten()
            .any(|a| !ok(a.orders.head) || !ok(a.orders.tail))
        {
            return Err("account link outside the slab".into());
        }
        Ok(())
    }
}

fn reader_len(reader: &Reader) -> usize {
    reader.len()
}

fn decode_symbol(reader: &mut Reader, max_levels: u32) -> Result<SymbolState, SnapshotError> {
    let spec = SymbolSpec::get(reader)?;
    let band_low = u64::get(reader)?;
    let band_high = u64::get(reader)?;
    let halted = bool::get(reader)?;
    let base_price = u64::get(reader)?;
    let len = count(reader, max_levels as u64, "ladder length")?;
    let bad = || SnapshotError::Codec(CodecError::InvalidField("symbol"));
    if crate::engine::band(&spec).ok() != Some((band_low, band_high)) || len == 0 {
        return Err(bad());
    }
    let top = (len as u64 - 1)
        .checked_mul(spec.tick_size)
        .and_then(|span| base_price.checked_add(span))
        .ok_or_else(bad)?;
    if !base_price.is_multiple_of(spec.tick_size)
        || base_price > band_low
        || top < band_high
        || top > u64::MAX / 4
    {
        return Err(bad());
    }
    let mut ladders = [
        Ladder::new(len, Best::Highest),
        Ladder::new(len, Best::Lowest),
    ];
    for ladder in &mut ladders {
        let levels = count(reader, len as u64, "levels")?;
        for _ in 0..levels {
            let index = u32::get(reader)?;
            let level = Level {
                head: u32::get(reader)?,
                tail: u32::get(reader)?,
                orders: u32::get(reader)?,
                qty: u64::get(reader)?,
            };
            if index as usize >= len || level.orders == 0 {
                return Err(SnapshotError::Codec(CodecError::InvalidField("level")));
            }
            ladder.restore_level(index, level);
        }
    }
    let [bids, asks] = ladders;
    Ok(SymbolState {
        spec,
        band_low,
        band_high,
        halted,
        base_price,
        bids,
        asks,
    })
}

fn decode_node(reader: &mut Reader, slots: usize) -> Result<OrderNode, SnapshotError> {
    let node = OrderNode {
        price: u64::get(reader)?,
        leaves: u64::get(reader)?,
        filled: u64::get(reader)?,
        account: u32::get(reader)?,
        symbol: u32::get(reader)?,
        prev: u32::get(reader)?,
        next: u32::get(reader)?,
        account_prev: u32::get(reader)?,
        account_next: u32::get(reader)?,
        generation: u32::get(reader)?,
        side: u8::get(reader)?,
        tif: u8::get(reader)?,
        self_trade: u8::get(reader)?,
        flags: u8::get(reader)?,
    };
    let ok = |slot: u32| slot == NIL || (slot as usize) < slots;
    if ![node.prev, node.next, node.account_prev, node.account_next]
        .into_iter()
        .all(ok)
    {
        return Err(SnapshotError::Codec(CodecError::InvalidField("order link")));
    }
    Ok(node)
}
