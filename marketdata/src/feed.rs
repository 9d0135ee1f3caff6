//! The feed deriver: turns the engine's events, one command at a time,
//! into ITCH 5.0 messages from which a consumer can rebuild every
//! symbol's order-by-order book.
//!
//! It keeps only what the events do not carry: the ITCH order reference
//! of each order on the feed (assigned here from a counter, so every Add
//! and every Replace gets a fresh, unique reference) and that order's
//! shares as the feed shows them. Output depends only on the input
//! stream, so replaying the journal gives the same bytes. The exact
//! event -> message mapping is in NOTES.md.

use crate::file::frame_into;
use crate::itch::{
    Header, ItchError, Message, Stock, StockDirectory, SystemEventCode, TradingState,
};
use brokerx_engine::{Event, OrderId, Side, SymbolId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Nanoseconds in a day: ITCH timestamps count from midnight (UTC here).
pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Why the deriver could not translate a command's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedError {
    /// A message could not be encoded.
    Itch(ItchError),
    /// The symbol has no entry in the directory.
    UnknownSymbol { symbol: u32 },
    /// The symbol id + 1 does not fit the u16 stock locate.
    LocateOverflow { symbol: u32 },
    /// A price above the u32 `Price(4)` range.
    PriceTooLarge { price: u64 },
    /// A quantity above the u32 shares range.
    QtyTooLarge { qty: u64 },
    /// An event names an order the feed does not show (the stream did not
    /// start from an empty book, or is not the engine's).
    UnknownOrder { order_id: u64 },
    /// The feed's shares for an order disagree with the engine's.
    Diverged {
        order_id: u64,
        feed_shares: u64,
        engine_leaves: u64,
    },
    /// Commands must arrive in increasing sequence order.
    SequenceNotIncreasing { last: u64, got: u64 },
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedError::Itch(error) => write!(f, "itch: {error}"),
            FeedError::UnknownSymbol { symbol } => write!(f, "symbol {symbol} not in directory"),
            FeedError::LocateOverflow { symbol } => {
                write!(f, "symbol {symbol} has no u16 stock locate")
            }
            FeedError::PriceTooLarge { price } => write!(f, "price {price} exceeds Price(4)"),
            FeedError::QtyTooLarge { qty } => write!(f, "quantity {qty} exceeds u32 shares"),
            FeedError::UnknownOrder { order_id } => write!(f, "order {order_id} not on the feed"),
            FeedError::Diverged {
                order_id,
                feed_shares,
                engine_leaves,
            } => write!(
                f,
                "order {order_id}: feed shows {feed_shares} shares, engine {engine_leaves}"
            ),
            FeedError::SequenceNotIncreasing { last, got } => {
                write!(f, "sequence {got} after {last}")
            }
        }
    }
}

impl std::error::Error for FeedError {}

impl From<ItchError> for FeedError {
    fn from(error: ItchError) -> Self {
        FeedError::Itch(error)
    }
}

/// Name and round lot of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub stock: Stock,
    pub round_lot_size: u32,
}

/// Symbol id -> ITCH stock name. The stock locate is the id + 1 (0 means
/// "no stock" in ITCH).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolDirectory {
    entries: BTreeMap<u32, DirectoryEntry>,
}

impl SymbolDirectory {
    pub fn new() -> SymbolDirectory {
        SymbolDirectory::default()
    }

    /// Adds or replaces a symbol's entry. `name` is at most 8 printable
    /// ASCII characters.
    pub fn insert(
        &mut self,
        symbol: SymbolId,
        name: &str,
        round_lot_size: u32,
    ) -> Result<(), FeedError> {
        SymbolDirectory::locate(symbol)?;
        let stock = Stock::new(name)?;
        self.entries.insert(
            symbol.0,
            DirectoryEntry {
                stock,
                round_lot_size,
            },
        );
        Ok(())
    }

    pub fn get(&self, symbol: SymbolId) -> Option<&DirectoryEntry> {
        self.entries.get(&symbol.0)
    }

    /// The stock locate of a symbol: its id + 1.
    pub fn locate(symbol: SymbolId) -> Result<u16, FeedError> {
        symbol
            .0
            .checked_add(1)
            .and_then(|locate| u16::try_from(locate).ok())
            .ok_or(FeedError::LocateOverflow { symbol: symbol.0 })
    }

    fn entry(&self, symbol: SymbolId) -> Result<DirectoryEntry, FeedError> {
        self.get(symbol)
            .copied()
            .ok_or(FeedError::UnknownSymbol { symbol: symbol.0 })
    }
}

/// An order as the feed shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedOrder {
    pub order_ref: u64,
    pub symbol: SymbolId,
    pub side: Side,
    /// `Price(4)`.
    pub price: u32,
    pub shares: u32,
}

/// The order of the command that may rest at its end.
#[derive(Clone, Copy, Debug)]
struct Taker {
    order_id: OrderId,
    symbol: SymbolId,
    side: Side,
    price: u64,
    leaves: u64,
}

fn price32(price: u64) -> Result<u32, FeedError> {
    u32::try_from(price).map_err(|_| FeedError::PriceTooLarge { price })
}

fn shares32(qty: u64) -> Result<u32, FeedError> {
    u32::try_from(qty).map_err(|_| FeedError::QtyTooLarge { qty })
}

/// Derives the ITCH feed from the engine's per-command event batches.
#[derive(Clone, Debug)]
pub struct FeedDeriver {
    directory: SymbolDirectory,
    orders: HashMap<u64, FeedOrder>,
    next_ref: u64,
    started: bool,
    last_seq: u64,
    last_timestamp_ns: u64,
}

impl FeedDeriver {
    pub fn new(directory: SymbolDirectory) -> FeedDeriver {
        FeedDeriver {
            directory,
            orders: HashMap::new(),
            next_ref: 1,
            started: false,
            last_seq: 0,
            last_timestamp_ns: 0,
        }
    }

    pub fn directory(&self) -> &SymbolDirectory {
        &self.directory
    }

    /// Orders currently on the feed.
    pub fn orders_on_feed(&self) -> usize {
        self.orders.len()
    }

    /// How an engine order currently shows on the feed.
    pub fn feed_order(&self, order_id: OrderId) -> Option<&FeedOrder> {
        self.orders.get(&order_id.0)
    }

    fn take_ref(&mut self) -> u64 {
        let order_ref = self.next_ref;
        self.next_ref += 1;
        order_ref
    }

    fn on_feed(&self, order_id: OrderId) -> Result<FeedOrder, FeedError> {
        self.orders
            .get(&order_id.0)
            .copied()
            .ok_or(FeedError::UnknownOrder {
                order_id: order_id.0,
            })
    }

    /// Translates all events of one command (stamped `seq`, `timestamp_ns`
    /// since the Unix epoch) and appends the messages to `out`. On error
    /// nothing is appended, but the deriver's state is then unreliable and
    /// it should be rebuilt from the start of the stream.
    pub fn on_command(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        events: &[Event],
        out: &mut Vec<Message>,
    ) -> Result<(), FeedError> {
        if seq <= self.last_seq {
            return Err(FeedError::SequenceNotIncreasing {
                last: self.last_seq,
                got: seq,
            });
        }
        self.last_seq = seq;
        self.last_timestamp_ns = timestamp_ns;
        let time_ns = timestamp_ns % NS_PER_DAY;
        let mut messages = Vec::new();
        self.translate(time_ns, events, &mut messages)?;
        if !messages.is_empty() && !self.started {
            self.started = true;
            out.push(Message::SystemEvent {
                header: Header {
                    stock_locate: 0,
                    tracking_number: 0,
                    timestamp_ns: time_ns,
                },
                event: SystemEventCode::StartOfMessages,
            });
        }
        out.append(&mut messages);
        Ok(())
    }

    /// Like `on_command`, but appends the messages framed as in a Nasdaq
    /// sample file (see `file.rs`).
    pub fn on_command_framed(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        events: &[Event],
        out: &mut Vec<u8>,
    ) -> Result<(), FeedError> {
        let mut messages = Vec::new();
        self.on_command(seq, timestamp_ns, events, &mut messages)?;
        let start = out.len();
        for message in &messages {
            if let Err(error) = frame_into(message, out) {
                out.truncate(start);
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Closes the feed: an End of Messages ('C') system event stamped with
    /// the last command's time, if anything was published.
    pub fn finish(&mut self, out: &mut Vec<Message>) {
        if self.started {
            out.push(Message::SystemEvent {
                header: Header {
                    stock_locate: 0,
                    tracking_number: 0,
                    timestamp_ns: self.last_timestamp_ns % NS_PER_DAY,
                },
                event: SystemEventCode::EndOfMessages,
            });
        }
    }

    fn translate(
        &mut self,
        time_ns: u64,
        events: &[Event],
        out: &mut Vec<Message>,
    ) -> Result<(), FeedError> {
        let header = |symbol: SymbolId| -> Result<Header, FeedError> {
            Ok(Header {
                stock_locate: SymbolDirectory::locate(symbol)?,
                tracking_number: 0,
                timestamp_ns: time_ns,
            })
        };
        let mut taker: Option<Taker> = None;
        for (index, event) in events.iter().enumerate() {
            match *event {
                Event::SymbolAdded { symbol, .. } => {
                    let entry = self.directory.entry(symbol)?;
                    out.push(Message::StockDirectory {
                        header: header(symbol)?,
                        directory: StockDirectory::brokerx(entry.stock, entry.round_lot_size),
                    });
                    out.push(Message::TradingAction {
                        header: header(symbol)?,
                        stock: entry.stock,
                        state: TradingState::Trading,
                        reason: crate::itch::Mpid::BLANK,
                    });
                }
                Event::TradingStatus { symbol, halted } => {
                    let entry = self.directory.entry(symbol)?;
                    out.push(Message::TradingAction {
                        header: header(symbol)?,
                        stock: entry.stock,
                        state: if halted {
                            TradingState::Halted
                        } else {
                            TradingState::Trading
                        },
                        reason: crate::itch::Mpid::BLANK,
                    });
                }
                Event::OrderAccepted {
                    order_id,
                    symbol,
                    side,
                    price,
                    qty,
                    ..
                } => {
                    taker = Some(Taker {
                        order_id,
                        symbol,
                        side,
                        price,
                        leaves: qty,
                    });
                }
                Event::OrderReplaced {
                    order_id,
                    symbol,
                    side,
                    price,
                    qty,
                    priority_kept,
                    ..
                } => {
                    let old = self.on_feed(order_id)?;
                    if priority_kept {
                        let shares = shares32(qty)?;
                        let reduction =
                            old.shares.checked_sub(shares).ok_or(FeedError::Diverged {
                                order_id: order_id.0,
                                feed_shares: old.shares as u64,
                                engine_leaves: qty,
                            })?;
                        if reduction > 0 {
                            out.push(Message::OrderCancel {
                                header: header(symbol)?,
                                order_ref: old.order_ref,
                                cancelled_shares: reduction,
                            });
                            self.orders.insert(order_id.0, FeedOrder { shares, ..old });
                        }
                        continue;
                    }
                    let matches = events[index + 1..].iter().any(|later| match *later {
                        Event::Trade { taker_order, .. } => taker_order == order_id,
                        Event::OrderCancelled { .. } => true,
                        _ => false,
                    });
                    if matches {
                        // It trades (or meets a self-trade cancel) as an
                        // aggressor: off the book now, and added back at
                        // the end if a remainder rests.
                        out.push(Message::OrderDelete {
                            header: header(symbol)?,
                            order_ref: old.order_ref,
                        });
                        self.orders.remove(&order_id.0);
                        taker = Some(Taker {
                            order_id,
                            symbol,
                            side,
                            price,
                            leaves: qty,
                        });
                    } else {
                        let moved = FeedOrder {
                            order_ref: self.take_ref(),
                            symbol,
                            side,
                            price: price32(price)?,
                            shares: shares32(qty)?,
                        };
                        out.push(Message::OrderReplace {
                            header: header(symbol)?,
                            original_ref: old.order_ref,
                            new_ref: moved.order_ref,
                            shares: moved.shares,
                            price: moved.price,
                        });
                        self.orders.insert(order_id.0, moved);
                    }
                }
                Event::Trade {
                    match_id,
                    symbol,
                    qty,
                    maker_order,
                    maker_leaves,
                    taker_order,
                    taker_leaves,
                    ..
                } => {
                    let maker = self.on_feed(maker_order)?;
                    let executed = shares32(qty)?;
                    let left = maker.shares.checked_sub(executed);
                    if left.map(u64::from) != Some(maker_leaves) {
                        return Err(FeedError::Diverged {
                            order_id: maker_order.0,
                            feed_shares: maker.shares as u64,
                            engine_leaves: maker_leaves,
                        });
                    }
                    out.push(Message::OrderExecuted {
                        header: header(symbol)?,
                        order_ref: maker.order_ref,
                        executed_shares: executed,
                        match_number: match_id,
                    });
                    if maker_leaves == 0 {
                        self.orders.remove(&maker_order.0);
                    } else {
                        self.orders.insert(
                            maker_order.0,
                            FeedOrder {
                                shares: maker_leaves as u32,
                                ..maker
                            },
                        );
                    }
                    if let Some(t) = taker.as_mut().filter(|t| t.order_id == taker_order) {
                        t.leaves = taker_leaves;
                    }
                }
                Event::OrderCancelled {
                    order_id, symbol, ..
                }
                | Event::OrderExpired {
                    order_id, symbol, ..
                } => {
                    if taker.is_some_and(|t| t.order_id == order_id) {
                        // The command's own order never reached the book.
                        taker = None;
                        continue;
                    }
                    let gone = self.on_feed(order_id)?;
                    out.push(Message::OrderDelete {
                        header: header(symbol)?,
                        order_ref: gone.order_ref,
                    });
                    self.orders.remove(&order_id.0);
                }
                Event::DayEnded { .. } => {
                    out.push(Message::SystemEvent {
                        header: Header {
                            stock_locate: 0,
                            tracking_number: 0,
                            timestamp_ns: time_ns,
                        },
                        event: SystemEventCode::EndOfSystemHours,
                    });
                }
                _ => {}
            }
        }
        if let Some(t) = taker.filter(|t| t.leaves > 0) {
            let entry = self.directory.entry(t.symbol)?;
            let rested = FeedOrder {
                order_ref: self.take_ref(),
                symbol: t.symbol,
                side: t.side,
                price: price32(t.price)?,
                shares: shares32(t.leaves)?,
            };
            out.push(Message::AddOrder {
                header: header(t.symbol)?,
                order_ref: rested.order_ref,
                side: t.side,
                shares: rested.shares,
                stock: entry.stock,
                price: rested.price,
                attribution: None,
            });
            self.orders.insert(t.order_id.0, rested);
        }
        Ok(())
    }
}

/// Groups a broadcast consumer's events into per-command batches: all
/// events of one command share a `seq` and arrive contiguously, so a batch
/// is complete when an event of a later command arrives (or on `flush`).
#[derive(Clone, Debug, Default)]
pub struct CommandBatcher {
    current: Option<(u64, u64)>,
    events: Vec<Event>,
}

/// All events of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandBatch {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub events: Vec<Event>,
}

impl CommandBatcher {
    pub fn new() -> CommandBatcher {
        CommandBatcher::default()
    }

    /// Adds one event; returns the previous command's batch when this
    /// event starts a new command.
    pub fn push(&mut self, seq: u64, timestamp_ns: u64, event: Event) -> Option<CommandBatch> {
        let done = match self.current {
            Some((current, _)) if current != seq => self.flush(),
            _ => None,
        };
        self.current = Some((seq, timestamp_ns));
        self.events.push(event);
        done
    }

    /// The batch in progress, if any.
    pub fn flush(&mut self) -> Option<CommandBatch> {
        let (seq, timestamp_ns) = self.current.take()?;
        Some(CommandBatch {
            seq,
            timestamp_ns,
            events: std::mem::take(&mut self.events),
        })
    }
}
