//! One user's order state, pure: OUCH tokens to engine order ids, field
//! validation of inbound messages (bad input becomes a Rejected message and
//! never reaches the engine), the mapping of inbound messages to engine
//! commands, and of engine outputs to outbound OUCH messages. No I/O, so
//! the whole mapping is testable without sockets.
//!
//! Correlation: every command carries `tag = (token index + 1) << 2 | kind`,
//! so the acknowledgement finds its token; fills and cancels name order
//! ids, found through `by_order`.

use crate::codec::{
    Accepted, CancelOrder, EnterOrder, Inbound, Outbound, ReplaceOrder, Stock, Token,
    TIF_IOC_SECONDS, TIF_MARKET_HOURS, TIF_SYSTEM_HOURS,
};
use crate::reasons::{cancel, cancel_reason, reject, reject_reason};
use brokerx_engine::pipeline::Output;
use brokerx_engine::{
    AccountId, Command, Event, OrderId, OrderType, SelfTradePrevention, Side, SymbolId, TimeInForce,
};
use std::collections::HashMap;

pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Nanoseconds since midnight (UTC) of a Unix-epoch timestamp.
pub fn since_midnight_ns(timestamp_ns: u64) -> u64 {
    timestamp_ns % NS_PER_DAY
}

/// Stock names (8 bytes, space padded) to engine symbols and back.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    by_stock: HashMap<Stock, SymbolId>,
    by_symbol: HashMap<SymbolId, Stock>,
}

impl Directory {
    /// Fails on a name longer than 8 bytes or a repeated name or symbol.
    pub fn new(entries: &[(String, SymbolId)]) -> Result<Directory, String> {
        let mut directory = Directory::default();
        for (name, symbol) in entries {
            if name.is_empty() || name.len() > crate::codec::STOCK_BYTES || !name.is_ascii() {
                return Err(format!("stock name {name:?} must be 1-8 ASCII bytes"));
            }
            let stock = crate::codec::alpha(name.as_bytes());
            if directory.by_stock.insert(stock, *symbol).is_some()
                || directory.by_symbol.insert(*symbol, stock).is_some()
            {
                return Err(format!("stock {name:?} or symbol {symbol:?} listed twice"));
            }
        }
        Ok(directory)
    }

    pub fn symbol(&self, stock: &Stock) -> Option<SymbolId> {
        self.by_stock.get(stock).copied()
    }

    pub fn stock(&self, symbol: SymbolId) -> Option<Stock> {
        self.by_symbol.get(&symbol).copied()
    }
}

/// What the command in a tag was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Enter = 0,
    Replace = 1,
    Cancel = 2,
    CancelDown = 3,
}

fn tag(index: usize, kind: Kind) -> u64 {
    ((index as u64 + 1) << 2) | kind as u64
}

fn untag(tag: u64) -> Option<(usize, Kind)> {
    let index = usize::try_from((tag >> 2).checked_sub(1)?).ok()?;
    let kind = match tag & 3 {
        0 => Kind::Enter,
        1 => Kind::Replace,
        2 => Kind::Cancel,
        _ => Kind::CancelDown,
    };
    Some((index, kind))
}

/// True if `tag` has the shape of a tag this gateway puts on its commands.
pub fn is_ouch_tag(tag: u64) -> bool {
    untag(tag).is_some()
}

/// The tag of a command the gateway sends (0 for others).
pub fn command_tag(command: &Command) -> u64 {
    match *command {
        Command::NewOrder { tag, .. }
        | Command::Cancel { tag, .. }
        | Command::Replace { tag, .. }
        | Command::MassCancelAccount { tag, .. } => tag,
        _ => 0,
    }
}

/// The same command with another tag.
pub fn with_tag(command: &Command, new_tag: u64) -> Command {
    let mut command = *command;
    match &mut command {
        Command::NewOrder { tag, .. }
        | Command::Cancel { tag, .. }
        | Command::Replace { tag, .. }
        | Command::MassCancelAccount { tag, .. } => *tag = new_tag,
        _ => {}
    }
    command
}

/// The tag an event echoes (0 if none).
pub fn event_tag(event: &Event) -> u64 {
    match *event {
        Event::Rejected { tag, .. }
        | Event::OrderAccepted { tag, .. }
        | Event::OrderReplaced { tag, .. }
        | Event::OrderCancelled { tag, .. }
        | Event::MassCancelled { tag, .. } => tag,
        _ => 0,
    }
}

/// The same event echoing another tag (only if it echoed `old`).
pub fn retag_event(event: &Event, old: u64, new: u64) -> Event {
    let mut event = *event;
    match &mut event {
        Event::Rejected { tag, .. }
        | Event::OrderAccepted { tag, .. }
        | Event::OrderReplaced { tag, .. }
        | Event::OrderCancelled { tag, .. }
        | Event::MassCancelled { tag, .. }
            if *tag == old =>
        {
            *tag = new
        }
        _ => {}
    }
    event
}

/// The token whose entry a command for `message` is tagged with.
pub fn tagged_token(message: &Inbound) -> Token {
    match message {
        Inbound::Enter(m) => m.token,
        Inbound::Replace(m) => m.replacement_token,
        Inbound::Cancel(m) => m.token,
    }
}

/// One token of the day.
#[derive(Clone, Copy, Debug)]
struct Entry {
    token: Token,
    order_id: Option<OrderId>,
    stock: Stock,
    side: u8,
    price: u32,
    open_shares: u32,
    tif_seconds: u32,
    firm: [u8; 4],
    display: u8,
    capacity: u8,
    intermarket_sweep: u8,
    minimum_quantity: u32,
    cross_type: u8,
}

/// What to do with one inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Submit this command; `new_token` is the token index it claimed, to
    /// release with [`UserBook::release`] if the engine is busy.
    Submit {
        command: Command,
        new_token: Option<usize>,
        token: Token,
    },
    /// Answer with this Rejected message (timestamp filled by the caller).
    Reject { token: Token, reason: u8 },
    /// The protocol's answer is silence (cancel of an unknown token, or a
    /// cancel-down to at least the open quantity).
    Ignore,
}

/// The state of one user: every token it used today.
#[derive(Debug)]
pub struct UserBook {
    account: AccountId,
    entries: Vec<Entry>,
    by_token: HashMap<Token, usize>,
    by_order: HashMap<OrderId, usize>,
}

fn valid_display(display: u8) -> bool {
    matches!(display, b'Y' | b'A' | b' ')
}

fn time_in_force(tif_seconds: u32, minimum_quantity: u32, shares: u32) -> Result<TimeInForce, u8> {
    let tif = match tif_seconds {
        TIF_IOC_SECONDS => TimeInForce::Ioc,
        TIF_MARKET_HOURS => TimeInForce::Day,
        TIF_SYSTEM_HOURS => TimeInForce::Gtc,
        _ => return Err(reject::INVALID_TIME_IN_FORCE),
    };
    match minimum_quantity {
        0 => Ok(tif),
        // Minimum quantity of the whole order on an IOC is fill-or-kill.
        min if min == shares && tif == TimeInForce::Ioc => Ok(TimeInForce::Fok),
        _ => Err(reject::INVALID_MINIMUM_QUANTITY),
    }
}

impl UserBook {
    pub fn new(account: AccountId) -> UserBook {
        UserBook {
            account,
            entries: Vec::new(),
            by_token: HashMap::new(),
            by_order: HashMap::new(),
        }
    }

    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Tokens used so far (including rejected ones).
    pub fn tokens_used(&self) -> usize {
        self.by_token.len()
    }

    /// The tag `old_tag` (from an earlier run of the gateway, whose token
    /// indices differ) would have in this book, for the entry of `token`.
    pub fn retag(&self, old_tag: u64, token: &Token) -> Option<u64> {
        let (_, kind) = untag(old_tag)?;
        let index = *self.by_token.get(token)?;
        Some(tag(index, kind))
    }

    /// Forgets the token claimed by the command tagged `tag` (a command
    /// the engine never sequenced).
    pub fn release_tag(&mut self, command_tag: u64) {
        if let Some((index, Kind::Enter | Kind::Replace)) = untag(command_tag) {
            self.release(index);
        }
    }

    /// Forgets a token claimed by a command the engine never took (Busy).
    pub fn release(&mut self, index: usize) {
        if let Some(entry) = self.entries.get(index) {
            self.by_token.remove(&entry.token);
        }
    }

    fn claim(&mut self, entry: Entry) -> usize {
        let index = self.entries.len();
        self.entries.push(entry);
        self.by_token.insert(entry.token, index);
        index
    }

    /// Validates one inbound message and decides what to do with it.
    pub fn on_inbound(&mut self, message: &Inbound, directory: &Directory) -> Step {
        match message {
            Inbound::Enter(m) => self.enter(m, directory),
            Inbound::Replace(m) => self.replace(m),
            Inbound::Cancel(m) => self.cancel(m),
        }
    }

    fn enter(&mut self, m: &EnterOrder, directory: &Directory) -> Step {
        let token = m.token;
        let refuse = |reason| Step::Reject { token, reason };
        if self.by_token.contains_key(&token) {
            return refuse(reject::DUPLICATE_TOKEN);
        }
        let side = match m.side {
            b'B' => Side::Buy,
            b'S' => Side::Sell,
            _ => return refuse(reject::INVALID_SIDE),
        };
        if m.shares == 0 {
            return refuse(reject::INVALID_SHARES);
        }
        if m.price == 0 {
            return refuse(reject::INVALID_PRICE);
        }
        let Some(symbol) = directory.symbol(&m.stock) else {
            return refuse(reject::INVALID_STOCK);
        };
        let tif = match time_in_force(m.tif_seconds, m.minimum_quantity, m.shares) {
            Ok(tif) => tif,
            Err(reason) => return refuse(reason),
        };
        if !valid_display(m.display) {
            return refuse(reject::INVALID_DISPLAY);
        }
        let index = self.claim(Entry {
            token,
            order_id: None,
            stock: m.stock,
            side: m.side,
            price: m.price,
            open_shares: 0,
            tif_seconds: m.tif_seconds,
            firm: m.firm,
            display: m.display,
            capacity: m.capacity,
            intermarket_sweep: m.intermarket_sweep,
            minimum_quantity: m.minimum_quantity,
            cross_type: m.cross_type,
        });
        Step::Submit {
            command: Command::NewOrder {
                account: self.account,
                symbol,
                side,
                order_type: OrderType::Limit,
                tif,
                price: u64::from(m.price),
                qty: u64::from(m.shares),
                self_trade: SelfTradePrevention::AccountDefault,
                tag: tag(index, Kind::Enter),
            },
            new_token: Some(index),
            token,
        }
    }

    /// The live order behind a token.
    fn live(&self, token: &Token) -> Option<(usize, OrderId)> {
        let index = *self.by_token.get(token)?;
        let entry = self.entries.get(index)?;
        let order_id = entry.order_id?;
        (self.by_order.get(&order_id) == Some(&index)).then_some((index, order_id))
    }

    fn replace(&mut self, m: &ReplaceOrder) -> Step {
        let token = m.replacement_token;
        let refuse = |reason| Step::Reject { token, reason };
        if self.by_token.contains_key(&token) {
            return refuse(reject::DUPLICATE_TOKEN);
        }
        let Some((old, order_id)) = self.live(&m.existing_token) else {
            return refuse(reject::UNKNOWN_TOKEN);
        };
        let original = self.entries[old];
        if m.shares == 0 {
            return refuse(reject::INVALID_SHARES);
        }
        if m.price == 0 {
            return refuse(reject::INVALID_PRICE);
        }
        if m.minimum_quantity != 0 {
            return refuse(reject::INVALID_MINIMUM_QUANTITY);
        }
        if m.tif_seconds != original.tif_seconds {
            // The engine cannot change an order's time in force in place.
            return refuse(reject::INVALID_TIME_IN_FORCE);
        }
        if !valid_display(m.display) {
            return refuse(reject::INVALID_DISPLAY);
        }
        let index = self.claim(Entry {
            token,
            order_id: None,
            price: m.price,
            open_shares: 0,
            display: m.display,
            intermarket_sweep: m.intermarket_sweep,
            ..original
        });
        Step::Submit {
            command: Command::Replace {
                account: self.account,
                order_id,
                price: u64::from(m.price),
                qty: u64::from(m.shares),
                tag: tag(index, Kind::Replace),
            },
            new_token: Some(index),
            token,
        }
    }

    fn cancel(&mut self, m: &CancelOrder) -> Step {
        let Some((index, order_id)) = self.live(&m.token) else {
            return Step::Ignore;
        };
        let entry = self.entries[index];
        let command = if m.shares == 0 {
            Command::Cancel {
                account: self.account,
                order_id,
                tag: tag(index, Kind::Cancel),
            }
        } else if m.shares < entry.open_shares {
            Command::Replace {
                account: self.account,
                order_id,
                price: u64::from(entry.price),
                qty: u64::from(m.shares),
                tag: tag(index, Kind::CancelDown),
            }
        } else {
            return Step::Ignore;
        };
        Step::Submit {
            command,
            new_token: None,
            token: m.token,
        }
    }

    fn accepted(&self, entry: &Entry, timestamp_ns: u64, order_id: OrderId) -> Accepted {
        Accepted {
            timestamp_ns,
            token: entry.token,
            side: entry.side,
            shares: entry.open_shares,
            stock: entry.stock,
            price: entry.price,
            tif_seconds: entry.tif_seconds,
            firm: entry.firm,
            display: entry.display,
            order_reference_number: order_id.0,
            capacity: entry.capacity,
            intermarket_sweep: entry.intermarket_sweep,
            minimum_quantity: entry.minimum_quantity,
            cross_type: entry.cross_type,
            order_state: b'L',
            bbo_weight: b' ',
        }
    }

    /// Reduces the open quantity of the order behind `index`, forgetting
    /// the order id once nothing is open.
    fn set_open(&mut self, index: usize, open_shares: u32) {
        let entry = &mut self.entries[index];
        entry.open_shares = open_shares;
        if open_shares == 0 {
            if let Some(order_id) = entry.order_id {
                if self.by_order.get(&order_id) == Some(&index) {
                    self.by_order.remove(&order_id);
                }
            }
        }
    }

    /// Translates one engine output into OUCH messages appended to `out`.
    pub fn on_output(&mut self, output: &Output, out: &mut Vec<Outbound>) {
        let timestamp_ns = since_midnight_ns(output.timestamp_ns);
        let own_tag = |tag: u64| {
            if output.own {
                untag(tag)
            } else {
                None
            }
        };
        match output.event {
            Event::Rejected { tag, code, .. } => {
                let Some((index, kind)) = own_tag(tag) else {
                    return;
                };
                // Refused cancels of closed orders are silent in OUCH.
                if matches!(kind, Kind::Enter | Kind::Replace) {
                    if let Some(entry) = self.entries.get(index) {
                        out.push(Outbound::Rejected {
                            timestamp_ns,
                            token: entry.token,
                            reason: reject_reason(code),
                        });
                    }
                }
            }
            Event::OrderAccepted {
                order_id, qty, tag, ..
            } => {
                let Some((index, Kind::Enter)) = own_tag(tag) else {
                    return;
                };
                let Some(entry) = self.entries.get_mut(index) else {
                    return;
                };
                entry.order_id = Some(order_id);
                entry.open_shares = u32::try_from(qty).unwrap_or(u32::MAX);
                let entry = *entry;
                self.by_order.insert(order_id, index);
                // Entered before a day rollover, accepted after it: the
                // token now belongs to the new day.
                self.by_token.entry(entry.token).or_insert(index);
                out.push(Outbound::Accepted(self.accepted(
                    &entry,
                    timestamp_ns,
                    order_id,
                )));
            }
            Event::OrderReplaced {
                order_id,
                qty,
                price,
                tag,
                ..
            } => {
                let Some((index, kind)) = own_tag(tag) else {
                    return;
                };
                let Some(&old) = self.by_order.get(&order_id) else {
                    return;
                };
                let qty = u32::try_from(qty).unwrap_or(u32::MAX);
                match kind {
                    Kind::Replace if index < self.entries.len() => {
                        let previous_token = self.entries[old].token;
                        self.entries[old].open_shares = 0;
                        let entry = &mut self.entries[index];
                        entry.order_id = Some(order_id);
                        entry.open_shares = qty;
                        entry.price = u32::try_from(price).unwrap_or(entry.price);
                        let entry = *entry;
                        self.by_order.insert(order_id, index);
                        self.by_token.entry(entry.token).or_insert(index);
                        out.push(Outbound::Replaced {
                            order: self.accepted(&entry, timestamp_ns, order_id),
                            previous_token,
                        });
                    }
                    Kind::CancelDown => {
                        let entry = self.entries[old];
                        out.push(Outbound::Canceled {
                            timestamp_ns,
                            token: entry.token,
                            decrement_shares: entry.open_shares.saturating_sub(qty),
                            reason: cancel::USER_REQUESTED,
                        });
                        self.set_open(old, qty);
                    }
                    _ => {}
                }
            }
            Event::OrderCancelled {
                order_id,
                qty,
                reason,
                ..
            } => self.cancelled(order_id, qty, cancel_reason(reason), timestamp_ns, out),
            Event::OrderExpired { order_id, qty, .. } => {
                self.cancelled(order_id, qty, cancel::TIMEOUT, timestamp_ns, out)
            }
            Event::Trade {
                match_id,
                price,
                qty,
                maker_order,
                maker_account,
                maker_leaves,
                taker_order,
                taker_account,
                taker_leaves,
                ..
            } => {
                for (order_id, account, leaves, flag) in [
                    (maker_order, maker_account, maker_leaves, b'A'),
                    (taker_order, taker_account, taker_leaves, b'R'),
                ] {
                    if account != self.account {
                        continue;
                    }
                    let Some(&index) = self.by_order.get(&order_id) else {
                        continue;
                    };
                    out.push(Outbound::Executed {
                        timestamp_ns,
                        token: self.entries[index].token,
                        executed_shares: u32::try_from(qty).unwrap_or(u32::MAX),
                        execution_price: u32::try_from(price).unwrap_or(u32::MAX),
                        liquidity_flag: flag,
                        match_number: match_id,
                    });
                    self.set_open(index, u32::try_from(leaves).unwrap_or(u32::MAX));
                }
            }
            _ => {}
        }
    }

    fn cancelled(
        &mut self,
        order_id: OrderId,
        qty: u64,
        reason: u8,
        timestamp_ns: u64,
        out: &mut Vec<Outbound>,
    ) {
        let Some(&index) = self.by_order.get(&order_id) else {
            return;
        };
        let entry = self.entries[index];
        let qty = u32::try_from(qty).unwrap_or(u32::MAX);
        out.push(Outbound::Canceled {
            timestamp_ns,
            token: entry.token,
            decrement_shares: qty,
            reason,
        });
        self.set_open(index, entry.open_shares.saturating_sub(qty));
    }

    /// Starts the next trading day: every token is forgotten except those
    /// of orders still open (GTC orders resting after the day's expiry),
    /// which keep working for cancels and replaces and stay duplicates for
    /// new orders. Token indices stay valid, so an engine answer to a
    /// command sent just before the rollover still finds its entry (the
    /// entries themselves are kept until the book is rebuilt at restart).
    pub fn start_next_day(&mut self) {
        self.by_token.clear();
        for &index in self.by_order.values() {
            let entry = &self.entries[index];
            if entry.open_shares > 0 {
                self.by_token.insert(entry.token, index);
            }
        }
    }

    /// The open orders as Accepted messages (current open shares, engine
    /// order id as reference number, timestamp 0), in token index order:
    /// what [`UserBook::replay`] needs to restore them in another day's
    /// book.
    pub fn open_orders(&self) -> Vec<Outbound> {
        let mut indices: Vec<(usize, OrderId)> = self
            .by_order
            .iter()
            .filter(|(_, &index)| self.entries[index].open_shares > 0)
            .map(|(&order_id, &index)| (index, order_id))
            .collect();
        indices.sort_unstable();
        indices
            .into_iter()
            .map(|(index, order_id)| {
                Outbound::Accepted(self.accepted(&self.entries[index], 0, order_id))
            })
            .collect()
    }

    /// Rebuilds the state from a message this book produced earlier (the
    /// stored stream, after a gateway restart).
    pub fn replay(&mut self, message: &Outbound) {
        match message {
            Outbound::Accepted(a) => self.restore(a),
            Outbound::Replaced {
                order,
                previous_token,
            } => {
                if let Some(&old) = self.by_token.get(previous_token) {
                    self.entries[old].open_shares = 0;
                }
                self.restore(order);
            }
            Outbound::Canceled {
                token,
                decrement_shares,
                ..
            } => self.reduce(token, *decrement_shares),
            Outbound::Executed {
                token,
                executed_shares,
                ..
            } => self.reduce(token, *executed_shares),
            Outbound::Rejected { token, .. } => {
                if !self.by_token.contains_key(token) {
                    self.claim(Entry {
                        token: *token,
                        order_id: None,
                        stock: [b' '; 8],
                        side: b' ',
                        price: 0,
                        open_shares: 0,
                        tif_seconds: 0,
                        firm: [b' '; 4],
                        display: b' ',
                        capacity: b' ',
                        intermarket_sweep: b' ',
                        minimum_quantity: 0,
                        cross_type: b' ',
                    });
                }
            }
            Outbound::SystemEvent { .. } => {}
        }
    }

    fn restore(&mut self, a: &Accepted) {
        let order_id = OrderId(a.order_reference_number);
        let index = self.claim(Entry {
            token: a.token,
            order_id: Some(order_id),
            stock: a.stock,
            side: a.side,
            price: a.price,
            open_shares: a.shares,
            tif_seconds: a.tif_seconds,
            firm: a.firm,
            display: a.display,
            capacity: a.capacity,
            intermarket_sweep: a.intermarket_sweep,
            minimum_quantity: a.minimum_quantity,
            cross_type: a.cross_type,
        });
        if a.shares > 0 {
            self.by_order.insert(order_id, index);
        }
    }

    fn reduce(&mut self, token: &Token, shares: u32) {
        if let Some(&index) = self.by_token.get(token) {
            let open = self.entries[index].open_shares.saturating_sub(shares);
            self.set_open(index, open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{alpha, ReplaceOrder};
    use brokerx_engine::RejectCode;

    fn directory() -> Directory {
        Directory::new(&[("AAPL".into(), SymbolId(0)), ("MSFT".into(), SymbolId(1))]).unwrap()
    }

    fn enter(token: &[u8]) -> EnterOrder {
        EnterOrder {
            token: alpha(token),
            side: b'B',
            shares: 100,
            stock: alpha(b"AAPL"),
            price: 1_000_000,
            tif_seconds: TIF_SYSTEM_HOURS,
            firm: alpha(b"FIRM"),
            display: b'Y',
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            customer_type: b'R',
        }
    }

    fn output(event: Event, own: bool) -> Output {
        Output {
            seq: 1,
            timestamp_ns: NS_PER_DAY * 3 + 5,
            event,
            own,
            last: false,
        }
    }

    #[test]
    fn malformed_fields_are_rejected_before_the_engine() {
        let directory = directory();
        let mut book = UserBook::new(AccountId(1));
        let cases: Vec<(EnterOrder, u8)> = vec![
            (
                EnterOrder {
                    shares: 0,
                    ..enter(b"A1")
                },
                reject::INVALID_SHARES,
            ),
            (
                EnterOrder {
                    side: b'X',
                    ..enter(b"A2")
                },
                reject::INVALID_SIDE,
            ),
            (
                EnterOrder {
                    side: b'T',
                    ..enter(b"A3")
                },
                reject::INVALID_SIDE,
            ),
            (
                EnterOrder {
                    price: 0,
                    ..enter(b"A4")
                },
                reject::INVALID_PRICE,
            ),
            (
                EnterOrder {
                    stock: alpha(b"ZZZZ"),
                    ..enter(b"A5")
                },
                reject::INVALID_STOCK,
            ),
            (
                EnterOrder {
                    tif_seconds: 30,
                    ..enter(b"A6")
                },
                reject::INVALID_TIME_IN_FORCE,
            ),
            (
                EnterOrder {
                    minimum_quantity: 10,
                    ..enter(b"A7")
                },
                reject::INVALID_MINIMUM_QUANTITY,
            ),
            (
                EnterOrder {
                    display: b'Q',
                    ..enter(b"A8")
                },
                reject::INVALID_DISPLAY,
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(
                book.on_inbound(&Inbound::Enter(message), &directory),
                Step::Reject {
                    token: message.token,
                    reason
                },
                "{message:?}"
            );
        }
        assert_eq!(book.tokens_used(), 0);
    }

    #[test]
    fn time_in_force_mapping() {
        assert_eq!(time_in_force(0, 0, 5), Ok(TimeInForce::Ioc));
        assert_eq!(time_in_force(99_998, 0, 5), Ok(TimeInForce::Day));
        assert_eq!(time_in_force(99_999, 0, 5), Ok(TimeInForce::Gtc));
        assert_eq!(time_in_force(0, 5, 5), Ok(TimeInForce::Fok));
        assert_eq!(
            time_in_force(99_999, 5, 5),
            Err(reject::INVALID_MINIMUM_QUANTITY)
        );
        assert_eq!(time_in_force(1, 0, 5), Err(reject::INVALID_TIME_IN_FORCE));
    }

    #[test]
    fn lifecycle_enter_fill_replace_cancel_down_cancel() {
        let directory = directory();
        let mut book = UserBook::new(AccountId(1));
        let Step::Submit {
            command: Command::NewOrder { tag, .. },
            ..
        } = book.on_inbound(&Inbound::Enter(enter(b"T1")), &directory)
        else {
            panic!("enter submits");
        };
        // Duplicate token.
        assert_eq!(
            book.on_inbound(&Inbound::Enter(enter(b"T1")), &directory),
            Step::Reject {
                token: alpha(b"T1"),
                reason: reject::DUPLICATE_TOKEN
            }
        );
        let id = OrderId(77);
        let mut out = Vec::new();
        book.on_output(
            &output(
                Event::OrderAccepted {
                    order_id: id,
                    account: AccountId(1),
                    symbol: SymbolId(0),
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Gtc,
                    price: 1_000_000,
                    qty: 100,
                    tag,
                },
                true,
            ),
            &mut out,
        );
        let Outbound::Accepted(a) = out[0] else {
            panic!("accepted")
        };
        assert_eq!(
            (a.order_reference_number, a.shares, a.timestamp_ns),
            (77, 100, 5)
        );
        out.clear();
        book.on_output(
            &output(
                Event::Trade {
                    match_id: 9,
                    symbol: SymbolId(0),
                    price: 1_000_000,
                    qty: 30,
                    aggressor: Side::Sell,
                    maker_order: id,
                    maker_account: AccountId(1),
                    maker_leaves: 70,
                    maker_fee: 0,
                    taker_order: OrderId(5),
                    taker_account: AccountId(2),
                    taker_leaves: 0,
                    taker_fee: 0,
                },
                false,
            ),
            &mut out,
        );
        assert!(matches!(
            out[0],
            Outbound::Executed {
                executed_shares: 30,
                liquidity_flag: b'A',
                match_number: 9,
                ..
            }
        ));
        // Cancel down to 80 when 70 are open: nothing to do.
        let down = |shares| {
            Inbound::Cancel(CancelOrder {
                token: alpha(b"T1"),
                shares,
            })
        };
        assert_eq!(book.on_inbound(&down(80), &directory), Step::Ignore);
        let Step::Submit {
            command: Command::Replace { qty: 50, tag, .. },
            ..
        } = book.on_inbound(&down(50), &directory)
        else {
            panic!("cancel down is a replace");
        };
        out.clear();
        let replaced = |qty, tag| Event::OrderReplaced {
            order_id: id,
            account: AccountId(1),
            symbol: SymbolId(0),
            side: Side::Buy,
            price: 1_000_000,
            qty,
            priority_kept: true,
            tag,
        };
        book.on_output(&output(replaced(50, tag), true), &mut out);
        assert!(matches!(
            out[0],
            Outbound::Canceled {
                decrement_shares: 20,
                reason: b'U',
                ..
            }
        ));
        // Replace to a new token.
        let replace = Inbound::Replace(ReplaceOrder {
            existing_token: alpha(b"T1"),
            replacement_token: alpha(b"T2"),
            shares: 40,
            price: 1_000_000,
            tif_seconds: TIF_SYSTEM_HOURS,
            display: b'Y',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
        });
        let Step::Submit {
            command: Command::Replace { qty: 40, tag, .. },
            ..
        } = book.on_inbound(&replace, &directory)
        else {
            panic!("replace submits");
        };
        out.clear();
        book.on_output(&output(replaced(40, tag), true), &mut out);
        let Outbound::Replaced {
            order,
            previous_token,
        } = out[0]
        else {
            panic!("replaced");
        };
        assert_eq!((order.token, previous_token), (alpha(b"T2"), alpha(b"T1")));
        // The old token is gone; the new one cancels.
        assert_eq!(book.on_inbound(&down(0), &directory), Step::Ignore);
        let cancel = Inbound::Cancel(CancelOrder {
            token: alpha(b"T2"),
            shares: 0,
        });
        assert!(matches!(
            book.on_inbound(&cancel, &directory),
            Step::Submit {
                command: Command::Cancel { .. },
                ..
            }
        ));
        out.clear();
        book.on_output(
            &output(
                Event::OrderCancelled {
                    order_id: id,
                    account: AccountId(1),
                    symbol: SymbolId(0),
                    side: Side::Buy,
                    qty: 40,
                    reason: brokerx_engine::CancelReason::Requested,
                    tag: 0,
                },
                true,
            ),
            &mut out,
        );
        assert!(matches!(
            out[0],
            Outbound::Canceled {
                decrement_shares: 40,
                ..
            }
        ));
        assert_eq!(book.on_inbound(&cancel, &directory), Step::Ignore);
    }

    #[test]
    fn engine_rejects_become_rejected_with_the_mapped_reason() {
        let directory = directory();
        let mut book = UserBook::new(AccountId(1));
        let Step::Submit {
            command: Command::NewOrder { tag, .. },
            ..
        } = book.on_inbound(&Inbound::Enter(enter(b"R1")), &directory)
        else {
            panic!("submits");
        };
        let mut out = Vec::new();
        let rejected = Event::Rejected {
            account: AccountId(1),
            order_id: OrderId::NONE,
            code: RejectCode::InsufficientFunds,
            tag,
        };
        // Another session's reject with the same tag is not ours.
        book.on_output(&output(rejected, false), &mut out);
        assert!(out.is_empty());
        book.on_output(&output(rejected, true), &mut out);
        assert_eq!(
            out,
            vec![Outbound::Rejected {
                timestamp_ns: 5,
                token: alpha(b"R1"),
                reason: reject::INSUFFICIENT_FUNDS
            }]
        );
    }

    #[test]
    fn replay_restores_tokens_and_open_orders() {
        let mut book = UserBook::new(AccountId(1));
        let accepted = Accepted {
            timestamp_ns: 1,
            token: alpha(b"T1"),
            side: b'B',
            shares: 100,
            stock: alpha(b"AAPL"),
            price: 10,
            tif_seconds: TIF_SYSTEM_HOURS,
            firm: alpha(b"F"),
            display: b'Y',
            order_reference_number: 42,
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            order_state: b'L',
            bbo_weight: b' ',
        };
        book.replay(&Outbound::Accepted(accepted));
        book.replay(&Outbound::Executed {
            timestamp_ns: 2,
            token: alpha(b"T1"),
            executed_shares: 60,
            execution_price: 10,
            liquidity_flag: b'A',
            match_number: 1,
        });
        book.replay(&Outbound::Rejected {
            timestamp_ns: 3,
            token: alpha(b"T9"),
            reason: b'X',
        });
        let directory = directory();
        assert!(matches!(
            book.on_inbound(&Inbound::Enter(enter(b"T9")), &directory),
            Step::Reject {
                reason: reject::DUPLICATE_TOKEN,
                ..
            }
        ));
        let down = Inbound::Cancel(CancelOrder {
            token: alpha(b"T1"),
            shares: 20,
        });
        assert!(matches!(
            book.on_inbound(&down, &directory),
            Step::Submit {
                command: Command::Replace {
                    order_id: OrderId(42),
                    qty: 20,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn next_day_keeps_open_orders_and_in_flight_tags() {
        let directory = directory();
        let mut book = UserBook::new(AccountId(1));
        let mut out = Vec::new();
        let submit = |book: &mut UserBook, token: &[u8], tif_seconds| {
            let message = EnterOrder {
                tif_seconds,
                ..enter(token)
            };
            match book.on_inbound(&Inbound::Enter(message), &directory) {
                Step::Submit {
                    command: Command::NewOrder { tag, .. },
                    ..
                } => tag,
                other => panic!("{other:?}"),
            }
        };
        let accepted = |id, tag| Event::OrderAccepted {
            order_id: OrderId(id),
            account: AccountId(1),
            symbol: SymbolId(0),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 1_000_000,
            qty: 100,
            tag,
        };
        let gtc = submit(&mut book, b"G1", TIF_SYSTEM_HOURS);
        book.on_output(&output(accepted(1, gtc), true), &mut out);
        let day = submit(&mut book, b"D1", TIF_MARKET_HOURS);
        book.on_output(&output(accepted(2, day), true), &mut out);
        book.on_output(
            &output(
                Event::OrderExpired {
                    order_id: OrderId(2),
                    account: AccountId(1),
                    symbol: SymbolId(0),
                    side: Side::Buy,
                    qty: 100,
                },
                false,
            ),
            &mut out,
        );
        // Sent before the rollover, answered after it.
        let in_flight = submit(&mut book, b"F1", TIF_SYSTEM_HOURS);
        book.start_next_day();
        assert_eq!(book.tokens_used(), 1);
        let duplicate = Step::Reject {
            token: alpha(b"G1"),
            reason: reject::DUPLICATE_TOKEN,
        };
        assert_eq!(
            book.on_inbound(&Inbound::Enter(enter(b"G1")), &directory),
            duplicate
        );
        submit(&mut book, b"D1", TIF_MARKET_HOURS);
        out.clear();
        book.on_output(&output(accepted(3, in_flight), true), &mut out);
        assert!(matches!(out[0], Outbound::Accepted(a) if a.token == alpha(b"F1")));
        let cancels = |book: &mut UserBook, token: &[u8]| {
            let cancel = Inbound::Cancel(CancelOrder {
                token: alpha(token),
                shares: 0,
            });
            matches!(
                book.on_inbound(&cancel, &directory),
                Step::Submit {
                    command: Command::Cancel { .. },
                    ..
                }
            )
        };
        assert!(cancels(&mut book, b"G1") && cancels(&mut book, b"F1"));
        // The open orders restore another book (the next day's, at restart).
        let open = book.open_orders();
        assert_eq!(open.len(), 2);
        let mut restored = UserBook::new(AccountId(1));
        for message in &open {
            restored.replay(message);
        }
        assert!(cancels(&mut restored, b"G1") && cancels(&mut restored, b"F1"));
        assert!(!cancels(&mut restored, b"D1"));
        assert_eq!(
            restored.on_inbound(&Inbound::Enter(enter(b"G1")), &directory),
            duplicate
        );
    }

    #[test]
    fn tags_round_trip() {
        for index in [0usize, 1, 1000] {
            for kind in [Kind::Enter, Kind::Replace, Kind::Cancel, Kind::CancelDown] {
                assert_eq!(untag(tag(index, kind)), Some((index, kind)));
            }
        }
        assert_eq!(untag(0), None);
        assert_eq!(untag(3), None);
    }
}
