//! One FIX session's orders, pure: inbound D/F/G/H/q to engine commands
//! (with every FIX-side check first: bad input is answered here and never
//! reaches the engine), and engine outputs to ExecutionReport (8),
//! OrderCancelReject (9) and OrderMassCancelReport (r). No I/O and no clock:
//! the caller passes the time, so the whole mapping is testable without
//! sockets.
//!
//! Correlation: every command carries a `tag` naming a pending request;
//! the acknowledgement (or reject) finds it there. Fills, cancels and
//! expiries name engine order ids, found through `orders`.
//!
//! Restart: every execution report this module builds is also returned as
//! a journal line ([`OrderBook::replay`] folds them back), so ClOrdID
//! chains, CumQty and AvgPx survive a restart of `brokerx`.

use crate::session::{InboundMessage, OutboundMessage};
use brokerx_engine::pipeline::Output;
use brokerx_engine::{
    AccountId, CancelReason, Command, Event, OrderId, OrderType, RejectCode, SelfTradePrevention,
    Side, SymbolId, TimeInForce,
};
use std::collections::HashMap;

/// Reference data the session needs: names, ticks and lots.
#[derive(Clone, Debug)]
pub struct SymbolInfo {
    pub id: SymbolId,
    pub name: String,
    /// Price increment in 1/10000 currency units.
    pub tick: u64,
    pub lot: u64,
}

/// Engine prices are integers in 1/10000 of a currency unit.
pub const PRICE_SCALE: u64 = 10_000;

/// A FIX price ("190.25") in engine units; `None` when malformed, negative,
/// finer than 1/10000 or out of range.
pub fn parse_price(text: &[u8]) -> Option<u64> {
    parse_decimal(text, 4)
}

/// A FIX quantity in whole shares ("100" or "100.00").
pub fn parse_qty(text: &[u8]) -> Option<u64> {
    parse_decimal(text, 0)
}

fn parse_decimal(text: &[u8], scale: u32) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return None;
    }
    let mut value: u64 = int.parse::<u64>().ok()?.checked_mul(10u64.pow(scale))?;
    if !frac.is_empty() {
        let digits: u64 = frac.parse().ok()?;
        value = value.checked_add(digits * 10u64.pow(scale - frac.len() as u32))?;
    }
    Some(value)
}

/// Engine units as a FIX price: "190.25", "190".
pub fn format_price(units: u64) -> String {
    let int = units / PRICE_SCALE;
    let frac = units % PRICE_SCALE;
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:04}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// `notional / qty` in engine units as a decimal with up to 8 places.
fn format_avg(notional: u128, qty: u64) -> String {
    if qty == 0 {
        return "0".into();
    }
    let scaled = notional * 10_000 / qty as u128; // 1e-8 currency units
    let int = scaled / 100_000_000;
    let frac = scaled % 100_000_000;
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:08}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

fn side_code(side: Side) -> &'static [u8] {
    match side {
        Side::Buy => b"1",
        Side::Sell => b"2",
    }
}

fn tif_code(tif: TimeInForce) -> &'static [u8] {
    match tif {
        TimeInForce::Day => b"0",
        TimeInForce::Gtc => b"1",
        TimeInForce::Ioc => b"3",
        TimeInForce::Fok => b"4",
    }
}

fn ord_type_code(t: OrderType) -> &'static [u8] {
    match t {
        OrderType::Market => b"1",
        OrderType::Limit => b"2",
    }
}

/// OrdRejReason (103) for an engine reject code.
pub fn ord_rej_reason(code: RejectCode) -> &'static [u8] {
    match code {
        RejectCode::UnknownSymbol => b"1",
        RejectCode::SymbolHalted => b"2",
        RejectCode::MaxOrderQuantityExceeded
        | RejectCode::MaxOrderNotionalExceeded
        | RejectCode::MaxOpenOrdersExceeded => b"3",
        RejectCode::UnknownOrder | RejectCode::NotOrderOwner => b"5",
        RejectCode::UnknownAccount | RejectCode::AccountSuspended => b"0",
        RejectCode::InsufficientFunds | RejectCode::InsufficientShares => b"0",
        RejectCode::InvalidPrice | RejectCode::PriceOutsideBand => b"99",
        RejectCode::InvalidQuantity => b"13",
        _ => b"99",
    }
}

/// The open part of an order's life, as FIX sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub order_id: u64,
    pub cl_ord_id: String,
    /// The ClOrdID before the last replace or cancel request that took effect.
    pub orig_cl_ord_id: Option<String>,
    pub symbol: SymbolId,
    pub side: Side,
    pub ord_type: OrderType,
    pub tif: TimeInForce,
    pub price: u64,
    pub order_qty: u64,
    pub cum_qty: u64,
    pub cum_notional: u128,
    pub leaves: u64,
    /// OrdStatus (39).
    pub status: u8,
}

impl Order {
    fn working_status(&self) -> u8 {
        if self.cum_qty > 0 {
            b'1'
        } else {
            b'0'
        }
    }
}

#[derive(Clone, Debug)]
enum Pending {
    New(Order),
    Cancel {
        cl_ord_id: String,
        order_id: u64,
    },
    Replace {
        cl_ord_id: String,
        order_id: u64,
        order_qty: u64,
    },
    MassCancel {
        cl_ord_id: String,
        request_type: Vec<u8>,
    },
}

/// What a message from the counterparty turned into.
#[derive(Debug, Default)]
pub struct Step {
    /// Answers to send now (rejects, order status).
    pub replies: Vec<OutboundMessage>,
    /// The command for the engine; `tag` is already set.
    pub command: Option<Command>,
    /// Journal lines (see [`OrderBook::replay`]).
    pub journal: Vec<String>,
}

/// One session's order state.
pub struct OrderBook {
    account: AccountId,
    symbols: Vec<SymbolInfo>,
    orders: HashMap<u64, Order>,
    /// Every ClOrdID this session used, with the order it named (0: none).
    cl_ord_ids: HashMap<String, u64>,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    /// Gateway-side ExecIDs: `G<n>`.
    next_gateway_exec: u64,
    /// The last engine sequence number whose outputs were folded in.
    last_seq: u64,
}

/// Tags carry the session's index in their top 16 bits, so two sessions
/// bound to the same account never answer each other's requests.
pub const TAG_SESSION_SHIFT: u32 = 48;

fn msg(msg_type: &[u8], body: Vec<(u32, Vec<u8>)>) -> OutboundMessage {
    OutboundMessage {
        msg_type: msg_type.to_vec(),
        header: Vec::new(),
        body,
    }
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn transact_time(timestamp_ns: u64) -> Vec<u8> {
    crate::dictionary::format_utc_timestamp((timestamp_ns / 1_000_000) as i64).into_bytes()
}

impl OrderBook {
    /// `session_index` (below 2^16) makes this session's tags unique.
    pub fn new(account: AccountId, symbols: Vec<SymbolInfo>, session_index: u16) -> OrderBook {
        OrderBook {
            account,
            symbols,
            orders: HashMap::new(),
            cl_ord_ids: HashMap::new(),
            pending: HashMap::new(),
            next_tag: ((session_index as u64) << TAG_SESSION_SHIFT) | 1,
            next_gateway_exec: 1,
            last_seq: 0,
        }
    }

    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The last engine sequence number folded in (from the journal's `S`
    /// lines and [`OrderBook::on_output`]).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Is `tag` one of this session's?
    pub fn owns_tag(&self, tag: u64) -> bool {
        tag != 0 && tag >> TAG_SESSION_SHIFT == self.next_tag >> TAG_SESSION_SHIFT
    }

    /// Removes a pending request, journaling that it is resolved.
    fn take_pending(&mut self, tag: u64, journal: &mut Vec<String>) -> Option<Pending> {
        let pending = self.pending.remove(&tag)?;
        journal.push(format!("X {tag}"));
        Some(pending)
    }

    /// A journal line for a pending request, written before its command is
    /// submitted so a restart knows what the engine's reply answers.
    fn pending_line(&self, tag: u64) -> Option<String> {
        Some(match self.pending.get(&tag)? {
            Pending::New(order) => format!("PN {tag} {}", order_fields(order)),
            Pending::Cancel {
                cl_ord_id,
                order_id,
            } => format!("PC {tag} {order_id} {cl_ord_id}"),
            Pending::Replace {
                cl_ord_id,
                order_id,
                order_qty,
            } => format!("PR {tag} {order_id} {order_qty} {cl_ord_id}"),
            Pending::MassCancel {
                cl_ord_id,
                request_type,
            } => format!(
                "PM {tag} {} {cl_ord_id}",
                String::from_utf8_lossy(request_type)
            ),
        })
    }

    /// Open orders of this session.
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values().filter(|o| o.leaves > 0)
    }

    pub fn order_by_cl_ord_id(&self, cl_ord_id: &str) -> Option<&Order> {
        self.cl_ord_ids
            .get(cl_ord_id)
            .and_then(|id| self.orders.get(id))
    }

    fn symbol(&self, name: &[u8]) -> Option<&SymbolInfo> {
        self.symbols.iter().find(|s| s.name.as_bytes() == name)
    }

    fn symbol_name(&self, id: SymbolId) -> Vec<u8> {
        self.symbols
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.as_bytes().to_vec())
            .unwrap_or_default()
    }

    fn tag(&mut self, pending: Pending) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.pending.insert(tag, pending);
        tag
    }

    fn gateway_exec_id(&mut self, now_ms: i64) -> Vec<u8> {
        let n = self.next_gateway_exec;
        self.next_gateway_exec += 1;
        format!("G{now_ms}-{n}").into_bytes()
    }

    /// An ExecutionReport for `order` (ExecID, ExecType and the last fill
    /// given by the caller).
    fn report(
        &self,
        order: &Order,
        exec_id: Vec<u8>,
        exec_type: u8,
        last: Option<(u64, u64)>,
        timestamp_ns: u64,
        extra: Vec<(u32, Vec<u8>)>,
    ) -> OutboundMessage {
        let mut body = vec![
            (37, order.order_id.to_string().into_bytes()),
            (11, text(&order.cl_ord_id)),
        ];
        if let Some(orig) = &order.orig_cl_ord_id {
            if exec_type == b'5' || exec_type == b'4' {
                body.push((41, text(orig)));
            }
        }
        body.push((17, exec_id));
        body.push((150, vec![exec_type]));
        body.push((39, vec![order.status]));
        body.push((55, self.symbol_name(order.symbol)));
        body.push((54, side_code(order.side).to_vec()));
        body.push((38, order.order_qty.to_string().into_bytes()));
        body.push((40, ord_type_code(order.ord_type).to_vec()));
        if order.ord_type == OrderType::Limit {
            body.push((44, format_price(order.price).into_bytes()));
        }
        body.push((59, tif_code(order.tif).to_vec()));
        if let Some((qty, px)) = last {
            body.push((32, qty.to_string().into_bytes()));
            body.push((31, format_price(px).into_bytes()));
        }
        body.push((151, order.leaves.to_string().into_bytes()));
        body.push((14, order.cum_qty.to_string().into_bytes()));
        body.push((
            6,
            format_avg(order.cum_notional, order.cum_qty).into_bytes(),
        ));
        body.push((60, transact_time(timestamp_ns)));
        body.extend(extra);
        msg(b"8", body)
    }

    /// An ExecutionReport rejecting an order that never reached the book.
    fn reject_new(
        &mut self,
        order: &Order,
        reason: &[u8],
        why: &str,
        now_ms: i64,
    ) -> OutboundMessage {
        let mut rejected = order.clone();
        rejected.status = b'8';
        rejected.leaves = 0;
        let exec_id = self.gateway_exec_id(now_ms);
        let mut m = self.report(
            &rejected,
            exec_id,
            b'8',
            None,
            (now_ms as u64) * 1_000_000,
            vec![(103, reason.to_vec()), (58, text(why))],
        );
        // A rejected order has no engine id.
        m.body[0].1 = b"NONE".to_vec();
        m
    }

    fn cancel_reject(
        &self,
        cl_ord_id: &[u8],
        orig: &[u8],
        order: Option<&Order>,
        response_to: &[u8],
        reason: &[u8],
        why: &str,
    ) -> OutboundMessage {
        let (order_id, status) = match order {
            Some(o) => (o.order_id.to_string().into_bytes(), vec![o.status]),
            None => (b"NONE".to_vec(), b"8".to_vec()),
        };
        msg(
            b"9",
            vec![
                (37, order_id),
                (11, cl_ord_id.to_vec()),
                (41, orig.to_vec()),
                (39, status),
                (434, response_to.to_vec()),
                (102, reason.to_vec()),
                (58, text(why)),
            ],
        )
    }

    /// D, F, G, H or q from the counterparty (other types are not ours).
    /// A D, F or G whose ClOrdID was
    /// seen before is rejected as a duplicate, unless it carries
    /// PossDupFlag or PossResend (a peer resending what it may have sent
    /// before a reconnect): that one was processed already and is ignored,
    /// as FIX prescribes.
    pub fn on_message(&mut self, m: &InboundMessage<'_>, now_ms: i64) -> Step {
        let mut step = match m.msg_type {
            b"D" => self.new_order(m, now_ms),
            b"F" => self.cancel(m),
            b"G" => self.replace(m),
            b"H" => self.status(m, now_ms),
            b"q" => self.mass_cancel(m),
            _ => Step::default(),
        };
        if let Some(tag) = step.command.as_ref().and_then(command_tag) {
            if let Some(line) = self.pending_line(tag) {
                step.journal.push(line);
            }
        }
        step
    }

    fn new_order(&mut self, m: &InboundMessage<'_>, now_ms: i64) -> Step {
        let mut step = Step::default();
        let cl_ord_id = String::from_utf8_lossy(m.get(11).unwrap_or_default()).into_owned();
        let side = match m.get(54) {
            Some(b"1") => Some(Side::Buy),
            Some(b"2") => Some(Side::Sell),
            _ => None,
        };
        let ord_type = match m.get(40) {
            Some(b"1") => Some(OrderType::Market),
            Some(b"2") => Some(OrderType::Limit),
            _ => None,
        };
        let tif = match m.get(59) {
            None | Some(b"0") => Some(TimeInForce::Day),
            Some(b"1") => Some(TimeInForce::Gtc),
            Some(b"3") => Some(TimeInForce::Ioc),
            Some(b"4") => Some(TimeInForce::Fok),
            _ => None,
        };
        let symbol = m.get(55).and_then(|s| self.symbol(s)).cloned();
        let qty = m.get(38).and_then(parse_qty);
        let price = m.get(44).and_then(parse_price);
        let mut order = Order {
            order_id: 0,
            cl_ord_id: cl_ord_id.clone(),
            orig_cl_ord_id: None,
            symbol: symbol.as_ref().map(|s| s.id).unwrap_or_default(),
            side: side.unwrap_or(Side::Buy),
            ord_type: ord_type.unwrap_or(OrderType::Limit),
            tif: tif.unwrap_or(TimeInForce::Day),
            price: price.unwrap_or(0),
            order_qty: qty.unwrap_or(0),
            cum_qty: 0,
            cum_notional: 0,
            leaves: 0,
            status: b'A',
        };
        let problem: Option<(&[u8], String)> = if self.cl_ord_ids.contains_key(&cl_ord_id) {
            Some((b"6", format!("duplicate ClOrdID {cl_ord_id}")))
        } else if symbol.is_none() {
            Some((b"1", "unknown symbol".into()))
        } else if side.is_none() {
            Some((b"99", "unsupported Side (only 1 buy and 2 sell)".into()))
        } else if ord_type.is_none() {
            Some((
                b"99",
                "unsupported OrdType (only 1 market and 2 limit)".into(),
            ))
        } else if tif.is_none() {
            Some((
                b"99",
                "unsupported TimeInForce (0 DAY, 1 GTC, 3 IOC, 4 FOK)".into(),
            ))
        } else if qty.is_none_or(|q| q == 0) {
            Some((b"13", "OrderQty must be a positive whole number".into()))
        } else if ord_type == Some(OrderType::Limit) && price.is_none_or(|p| p == 0) {
            Some((b"99", "a limit order needs a positive Price (44)".into()))
        } else if ord_type == Some(OrderType::Market) && m.get(44).is_some() {
            Some((b"99", "a market order takes no Price (44)".into()))
        } else {
            None
        };
        if cl_ord_id.is_empty() {
            // Required and non-empty by the dictionary; kept as a guard.
            return step;
        }
        if let Some((reason, why)) = problem {
            let duplicate = reason == b"6";
            if duplicate && possibly_resent(m) {
                // A peer resending after a reconnect: already processed.
                return step;
            }
            step.replies
                .push(self.reject_new(&order, reason, &why, now_ms));
            if !duplicate {
                self.cl_ord_ids.insert(cl_ord_id.clone(), 0);
                step.journal.push(format!("R {cl_ord_id}"));
            }
            return step;
        }
        order.leaves = order.order_qty;
        let command_fields = (order.symbol, order.side, order.ord_type, order.tif);
        let (symbol, side, ord_type, tif) = command_fields;
        let price = if ord_type == OrderType::Market {
            0
        } else {
            order.price
        };
        let qty = order.order_qty;
        self.cl_ord_ids.insert(cl_ord_id, 0);
        let tag = self.tag(Pending::New(order));
        step.command = Some(Command::NewOrder {
            account: self.account,
            symbol,
            side,
            order_type: ord_type,
            tif,
            price,
            qty,
            self_trade: SelfTradePrevention::AccountDefault,
            tag,
        });
        step
    }

    /// The order an F or G names by OrigClOrdID (41) or OrderID (37).
    fn target(&self, m: &InboundMessage<'_>) -> Option<&Order> {
        if let Some(id) = m
            .get(37)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        {
            if let Some(o) = self.orders.get(&id) {
                return Some(o);
            }
        }
        let orig = String::from_utf8_lossy(m.get(41)?);
        self.order_by_cl_ord_id(&orig)
    }

    fn cancel(&mut self, m: &InboundMessage<'_>) -> Step {
        let mut step = Step::default();
        let cl = m.get(11).unwrap_or_default();
        let orig = m.get(41).unwrap_or_default();
        let cl_text = String::from_utf8_lossy(cl).into_owned();
        if self.cl_ord_ids.contains_key(&cl_text) {
            if possibly_resent(m) {
                return step;
            }
            step.replies.push(self.cancel_reject(
                cl,
                orig,
                self.target(m),
                b"1",
                b"6",
                "duplicate ClOrdID",
            ));
            return step;
        }
        let Some(order) = self.target(m).filter(|o| o.leaves > 0).cloned() else {
            let known = self.target(m).is_some();
            step.replies.push(self.cancel_reject(
                cl,
                orig,
                self.target(m),
                b"1",
                if known { b"0" } else { b"1" },
                if known {
                    "order already closed (too late to cancel)"
                } else {
                    "unknown order"
                },
            ));
            return step;
        };
        if m.get(54) != Some(side_code(order.side)) {
            step.replies.push(self.cancel_reject(
                cl,
                orig,
                Some(&order),
                b"1",
                b"99",
                "Side does not match the order",
            ));
            return step;
        }
        self.cl_ord_ids.insert(cl_text.clone(), order.order_id);
        let tag = self.tag(Pending::Cancel {
            cl_ord_id: cl_text,
            order_id: order.order_id,
        });
        step.command = Some(Command::Cancel {
            account: self.account,
            order_id: OrderId(order.order_id),
            tag,
        });
        step
    }

    fn replace(&mut self, m: &InboundMessage<'_>) -> Step {
        let mut step = Step::default();
        let cl = m.get(11).unwrap_or_default();
        let orig = m.get(41).unwrap_or_default();
        let cl_text = String::from_utf8_lossy(cl).into_owned();
        let reject = |this: &Self, order: Option<&Order>, reason: &[u8], why: &str| {
            this.cancel_reject(cl, orig, order, b"2", reason, why)
        };
        if self.cl_ord_ids.contains_key(&cl_text) {
            if !possibly_resent(m) {
                step.replies
                    .push(reject(self, self.target(m), b"6", "duplicate ClOrdID"));
            }
            return step;
        }
        let Some(order) = self.target(m).filter(|o| o.leaves > 0).cloned() else {
            let known = self.target(m).is_some();
            let (reason, why): (&[u8], &str) = if known {
                (b"0", "order already closed (too late to replace)")
            } else {
                (b"1", "unknown order")
            };
            step.replies.push(reject(self, self.target(m), reason, why));
            return step;
        };
        let problem = if m.get(54) != Some(side_code(order.side)) {
            Some("Side does not match the order")
        } else if m
            .get(55)
            .is_some_and(|s| s != self.symbol_name(order.symbol))
        {
            Some("Symbol does not match the order")
        } else if m.get(40) != Some(ord_type_code(order.ord_type)) {
            Some("OrdType cannot change")
        } else if m.get(59).unwrap_or(b"0") != tif_code(order.tif) {
            Some("TimeInForce cannot change")
        } else {
            None
        };
        if let Some(why) = problem {
            step.replies.push(reject(self, Some(&order), b"99", why));
            return step;
        }
        let Some(order_qty) = m.get(38).and_then(parse_qty).filter(|&q| q > 0) else {
            step.replies.push(reject(
                self,
                Some(&order),
                b"99",
                "OrderQty must be a positive whole number",
            ));
            return step;
        };
        if order_qty <= order.cum_qty {
            step.replies.push(reject(
                self,
                Some(&order),
                b"99",
                "OrderQty must exceed the quantity already executed",
            ));
            return step;
        }
        let price = match (order.ord_type, m.get(44).and_then(parse_price)) {
            (OrderType::Limit, Some(p)) if p > 0 => p,
            (OrderType::Limit, _) => {
                step.replies.push(reject(
                    self,
                    Some(&order),
                    b"99",
                    "a limit order needs a positive Price (44)",
                ));
                return step;
            }
            (OrderType::Market, _) => 0,
        };
        self.cl_ord_ids.insert(cl_text.clone(), order.order_id);
        let tag = self.tag(Pending::Replace {
            cl_ord_id: cl_text,
            order_id: order.order_id,
            order_qty,
        });
        // By total quantity: the engine takes off what the order has
        // executed by the time it applies the replace, fills in flight
        // included.
        step.command = Some(Command::ReplaceTotal {
            account: self.account,
            order_id: OrderId(order.order_id),
            price,
            qty: order_qty,
            tag,
        });
        step
    }

    fn status(&mut self, m: &InboundMessage<'_>, now_ms: i64) -> Step {
        let mut step = Step::default();
        let by_id = m
            .get(37)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .and_then(|id| self.orders.get(&id));
        let cl = String::from_utf8_lossy(m.get(11).unwrap_or_default()).into_owned();
        let order = by_id.or_else(|| self.order_by_cl_ord_id(&cl)).cloned();
        let exec_id = self.gateway_exec_id(now_ms);
        let now_ns = (now_ms as u64) * 1_000_000;
        let reply = match order {
            Some(order) => self.report(&order, exec_id, b'I', None, now_ns, vec![]),
            None => {
                let body = vec![
                    (37, m.get(37).unwrap_or(b"NONE").to_vec()),
                    (11, cl.into_bytes()),
                    (17, exec_id),
                    (150, b"I".to_vec()),
                    (39, b"8".to_vec()),
                    (55, m.get(55).unwrap_or_default().to_vec()),
                    (54, m.get(54).unwrap_or(b"1").to_vec()),
                    (151, b"0".to_vec()),
                    (14, b"0".to_vec()),
                    (6, b"0".to_vec()),
                    (58, text("unknown order")),
                ];
                msg(b"8", body)
            }
        };
        step.replies.push(reply);
        step
    }

    fn mass_cancel(&mut self, m: &InboundMessage<'_>) -> Step {
        let mut step = Step::default();
        let cl = String::from_utf8_lossy(m.get(11).unwrap_or_default()).into_owned();
        let request_type = m.get(530).unwrap_or_default().to_vec();
        let reject = |why: &str, reason: &[u8]| {
            msg(
                b"r",
                vec![
                    (11, cl.clone().into_bytes()),
                    (37, b"NONE".to_vec()),
                    (530, request_type.clone()),
                    (531, b"0".to_vec()),
                    (532, reason.to_vec()),
                    (58, text(why)),
                ],
            )
        };
        let symbol = match request_type.as_slice() {
            b"1" => match m.get(55).and_then(|s| self.symbol(s)) {
                Some(s) => Some(s.id),
                None => {
                    step.replies.push(reject("unknown symbol", b"1"));
                    return step;
                }
            },
            b"7" => None,
            _ => {
                step.replies.push(reject(
                    "only MassCancelRequestType 1 (security) and 7 (all orders) are supported",
                    b"99",
                ));
                return step;
            }
        };
        let tag = self.tag(Pending::MassCancel {
            cl_ord_id: cl.clone(),
            request_type: request_type.clone(),
        });
        step.command = Some(Command::MassCancelAccount {
            account: self.account,
            symbol,
            tag,
        });
        step
    }

    /// The engine refused the command (the ring was full): forget the
    /// request and answer as a reject.
    pub fn busy(&mut self, command: &Command, now_ms: i64) -> Step {
        let mut step = Step::default();
        let Some(tag) = command_tag(command) else {
            return step;
        };
        let Some(pending) = self.take_pending(tag, &mut step.journal) else {
            return step;
        };
        step.replies = self.busy_replies(command, pending, now_ms);
        step
    }

    fn busy_replies(
        &mut self,
        command: &Command,
        pending: Pending,
        now_ms: i64,
    ) -> Vec<OutboundMessage> {
        let why = "engine busy, retry";
        match pending {
            Pending::New(order) => {
                self.cl_ord_ids.remove(&order.cl_ord_id);
                vec![self.reject_new(&order, b"99", why, now_ms)]
            }
            Pending::Cancel {
                cl_ord_id,
                order_id,
            }
            | Pending::Replace {
                cl_ord_id,
                order_id,
                ..
            } => {
                self.cl_ord_ids.remove(&cl_ord_id);
                let order = self.orders.get(&order_id);
                let orig = order.map(|o| o.cl_ord_id.clone()).unwrap_or_default();
                let to: &[u8] = if matches!(command, Command::Cancel { .. }) {
                    b"1"
                } else {
                    b"2"
                };
                vec![self.cancel_reject(
                    cl_ord_id.as_bytes(),
                    orig.as_bytes(),
                    order,
                    to,
                    b"99",
                    why,
                )]
            }
            Pending::MassCancel {
                cl_ord_id,
                request_type,
            } => vec![msg(
                b"r",
                vec![
                    (11, cl_ord_id.into_bytes()),
                    (37, b"NONE".to_vec()),
                    (530, request_type),
                    (531, b"0".to_vec()),
                    (532, b"99".to_vec()),
                    (58, text(why)),
                ],
            )],
        }
    }

    /// One engine output for this session's account: the messages it means
    /// for the counterparty, and journal lines.
    pub fn on_output(&mut self, out: &Output, exec_n: &mut u32) -> Step {
        let mut step = Step::default();
        self.last_seq = self.last_seq.max(out.seq);
        let ts = out.timestamp_ns;
        let exec_id = |n: &mut u32| {
            *n += 1;
            format!("{}-{}", out.seq, n).into_bytes()
        };
        match out.event {
            Event::OrderAccepted { order_id, tag, .. } if out.own => {
                if let Some(Pending::New(mut order)) = self.take_pending(tag, &mut step.journal) {
                    order.order_id = order_id.0;
                    order.status = b'0';
                    self.cl_ord_ids.insert(order.cl_ord_id.clone(), order_id.0);
                    let m = self.report(&order, exec_id(exec_n), b'0', None, ts, vec![]);
                    self.remember(&order, &mut step);
                    self.orders.insert(order_id.0, order);
                    step.replies.push(m);
                }
            }
            Event::Rejected { code, tag, .. } if out.own => {
                match self.take_pending(tag, &mut step.journal) {
                    Some(Pending::New(order)) => {
                        let mut rejected = order.clone();
                        rejected.status = b'8';
                        rejected.leaves = 0;
                        let mut m = self.report(
                            &rejected,
                            exec_id(exec_n),
                            b'8',
                            None,
                            ts,
                            vec![
                                (103, ord_rej_reason(code).to_vec()),
                                (58, text(&format!("{} ({})", code.name(), code.code()))),
                            ],
                        );
                        m.body[0].1 = b"NONE".to_vec();
                        step.journal.push(format!("R {}", order.cl_ord_id));
                        step.replies.push(m);
                    }
                    Some(Pending::Cancel {
                        cl_ord_id,
                        order_id,
                    }) => {
                        let m = self.engine_cancel_reject(&cl_ord_id, order_id, b"1", code);
                        step.replies.push(m);
                    }
                    Some(Pending::Replace {
                        cl_ord_id,
                        order_id,
                        ..
                    }) => {
                        let m = self.engine_cancel_reject(&cl_ord_id, order_id, b"2", code);
                        step.replies.push(m);
                    }
                    Some(Pending::MassCancel {
                        cl_ord_id,
                        request_type,
                    }) => {
                        step.replies.push(msg(
                            b"r",
                            vec![
                                (11, cl_ord_id.into_bytes()),
                                (37, b"NONE".to_vec()),
                                (530, request_type),
                                (531, b"0".to_vec()),
                                (532, b"99".to_vec()),
                                (58, text(&format!("{} ({})", code.name(), code.code()))),
                            ],
                        ));
                    }
                    None => {}
                }
            }
            Event::OrderReplaced {
                order_id,
                price,
                qty,
                tag,
                ..
            } => {
                let pending = if out.own {
                    self.take_pending(tag, &mut step.journal)
                } else {
                    None
                };
                let Some(order) = self.orders.get_mut(&order_id.0) else {
                    return step;
                };
                if let Some(Pending::Replace {
                    cl_ord_id,
                    order_qty,
                    ..
                }) = pending
                {
                    order.orig_cl_ord_id = Some(std::mem::replace(&mut order.cl_ord_id, cl_ord_id));
                    debug_assert_eq!(order_qty, order.cum_qty + qty);
                }
                order.price = price;
                order.leaves = qty;
                order.order_qty = order.cum_qty + qty;
                order.status = order.working_status();
                let order = order.clone();
                let m = self.report(&order, exec_id(exec_n), b'5', None, ts, vec![]);
                self.remember(&order, &mut step);
                step.replies.push(m);
            }
            Event::Trade {
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
                for (id, account, leaves) in [
                    (maker_order, maker_account, maker_leaves),
                    (taker_order, taker_account, taker_leaves),
                ] {
                    if account != self.account {
                        continue;
                    }
                    let Some(order) = self.orders.get_mut(&id.0) else {
                        continue;
                    };
                    order.cum_qty += qty;
                    order.cum_notional += price as u128 * qty as u128;
                    order.leaves = leaves;
                    order.status = if leaves == 0 { b'2' } else { b'1' };
                    let order = order.clone();
                    let m = self.report(
                        &order,
                        exec_id(exec_n),
                        b'F',
                        Some((qty, price)),
                        ts,
                        vec![],
                    );
                    self.remember(&order, &mut step);
                    step.replies.push(m);
                }
            }
            Event::OrderCancelled {
                order_id,
                reason,
                tag,
                ..
            } => {
                let pending = if out.own && reason == CancelReason::Requested {
                    self.take_pending(tag, &mut step.journal)
                } else {
                    None
                };
                let Some(order) = self.orders.get_mut(&order_id.0) else {
                    return step;
                };
                if let Some(Pending::Replace { cl_ord_id, .. }) = pending {
                    // A replace to an OrderQty the order had already filled
                    // (fills crossed it): the balance is cancelled and the
                    // replace reported with the order filled (FIX 4.4,
                    // Volume 4, the replace that crosses an execution).
                    order.orig_cl_ord_id = Some(std::mem::replace(&mut order.cl_ord_id, cl_ord_id));
                    order.leaves = 0;
                    order.order_qty = order.cum_qty;
                    order.status = b'2';
                    let order = order.clone();
                    let m = self.report(
                        &order,
                        exec_id(exec_n),
                        b'5',
                        None,
                        ts,
                        vec![(58, text("replaced to the quantity already filled"))],
                    );
                    self.remember(&order, &mut step);
                    step.replies.push(m);
                    return step;
                }
                if let Some(Pending::Cancel { cl_ord_id, .. }) = pending {
                    order.orig_cl_ord_id = Some(std::mem::replace(&mut order.cl_ord_id, cl_ord_id));
                }
                order.leaves = 0;
                order.status = b'4';
                let order = order.clone();
                let why = match reason {
                    CancelReason::Requested => "cancelled on request",
                    CancelReason::ImmediateRemainder => {
                        "unfilled remainder of an IOC or market order"
                    }
                    CancelReason::FillOrKill => "fill or kill could not fill completely",
                    CancelReason::SelfTrade => "self-trade prevention",
                    CancelReason::MassCancel => "mass cancel",
                    CancelReason::KillSwitch => "account suspended (kill switch)",
                };
                let m = self.report(
                    &order,
                    exec_id(exec_n),
                    b'4',
                    None,
                    ts,
                    vec![(58, text(why))],
                );
                self.remember(&order, &mut step);
                step.replies.push(m);
            }
            Event::OrderExpired { order_id, .. } => {
                let Some(order) = self.orders.get_mut(&order_id.0) else {
                    return step;
                };
                order.leaves = 0;
                order.status = b'C';
                let order = order.clone();
                let m = self.report(&order, exec_id(exec_n), b'C', None, ts, vec![]);
                self.remember(&order, &mut step);
                step.replies.push(m);
            }
            Event::MassCancelled { count, tag, .. } if out.own => {
                if let Some(Pending::MassCancel {
                    cl_ord_id,
                    request_type,
                }) = self.take_pending(tag, &mut step.journal)
                {
                    let response: &[u8] = if request_type == b"1" { b"1" } else { b"7" };
                    step.replies.push(msg(
                        b"r",
                        vec![
                            (11, cl_ord_id.into_bytes()),
                            (37, out.seq.to_string().into_bytes()),
                            (530, request_type),
                            (531, response.to_vec()),
                            (533, count.to_string().into_bytes()),
                            (60, transact_time(ts)),
                        ],
                    ));
                }
            }
            _ => {}
        }
        step
    }

    /// OrderCancelReject for a cancel or replace the engine refused (the
    /// order filled or was cancelled meanwhile: too late).
    fn engine_cancel_reject(
        &self,
        cl_ord_id: &str,
        order_id: u64,
        response_to: &[u8],
        code: RejectCode,
    ) -> OutboundMessage {
        let order = self.orders.get(&order_id);
        let orig = order.map(|o| o.cl_ord_id.clone()).unwrap_or_default();
        let reason: &[u8] = match code {
            RejectCode::UnknownOrder => b"0",
            _ => b"99",
        };
        self.cancel_reject(
            cl_ord_id.as_bytes(),
            orig.as_bytes(),
            order,
            response_to,
            reason,
            &format!("{} ({})", code.name(), code.code()),
        )
    }

    /// A journal line with the order's whole state.
    fn remember(&self, order: &Order, step: &mut Step) {
        step.journal.push(format!("O {}", order_fields(order)));
    }

    /// Folds a journal line back in (at start-up). Malformed lines (a torn
    /// tail) are ignored.
    pub fn replay(&mut self, line: &str) {
        let Some((kind, rest)) = line.split_once(' ') else {
            return;
        };
        match kind {
            "R" => {
                self.cl_ord_ids.entry(rest.to_string()).or_insert(0);
            }
            "S" => {
                if let Ok(seq) = rest.parse::<u64>() {
                    self.last_seq = self.last_seq.max(seq);
                }
            }
            "X" => {
                if let Ok(tag) = rest.parse::<u64>() {
                    self.pending.remove(&tag);
                }
            }
            "O" => {
                if let Some(order) = parse_order(rest) {
                    self.cl_ord_ids
                        .insert(order.cl_ord_id.clone(), order.order_id);
                    if let Some(orig) = &order.orig_cl_ord_id {
                        self.cl_ord_ids.insert(orig.clone(), order.order_id);
                    }
                    self.orders.insert(order.order_id, order);
                }
            }
            "PN" | "PC" | "PR" | "PM" => {
                let Some((tag, rest)) = rest.split_once(' ') else {
                    return;
                };
                let Ok(tag) = tag.parse::<u64>() else { return };
                let pending = match kind {
                    "PN" => parse_order(rest).map(Pending::New),
                    "PC" => rest.split_once(' ').and_then(|(id, cl)| {
                        Some(Pending::Cancel {
                            cl_ord_id: cl.to_string(),
                            order_id: id.parse().ok()?,
                        })
                    }),
                    "PR" => {
                        let mut p = rest.splitn(3, ' ');
                        (|| {
                            let order_id = p.next()?.parse().ok()?;
                            let order_qty = p.next()?.parse().ok()?;
                            Some(Pending::Replace {
                                order_id,
                                order_qty,
                                cl_ord_id: p.next()?.to_string(),
                            })
                        })()
                    }
                    _ => rest.split_once(' ').map(|(rt, cl)| Pending::MassCancel {
                        cl_ord_id: cl.to_string(),
                        request_type: rt.as_bytes().to_vec(),
                    }),
                };
                let Some(pending) = pending else { return };
                let cl = match &pending {
                    Pending::New(o) => o.cl_ord_id.clone(),
                    Pending::Cancel { cl_ord_id, .. }
                    | Pending::Replace { cl_ord_id, .. }
                    | Pending::MassCancel { cl_ord_id, .. } => cl_ord_id.clone(),
                };
                if !matches!(pending, Pending::MassCancel { .. }) {
                    self.cl_ord_ids.entry(cl).or_insert(0);
                }
                if self.owns_tag(tag) {
                    self.next_tag = self.next_tag.max(tag + 1);
                }
                self.pending.insert(tag, pending);
            }
            _ => {}
        }
    }
}

/// The tag of a command this module builds.
pub fn command_tag(command: &Command) -> Option<u64> {
    match *command {
        Command::NewOrder { tag, .. }
        | Command::Cancel { tag, .. }
        | Command::Replace { tag, .. }
        | Command::ReplaceTotal { tag, .. }
        | Command::MassCancelAccount { tag, .. } => Some(tag),
        _ => None,
    }
}

/// An order's whole state as one journal line's fields.
fn order_fields(order: &Order) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        order.order_id,
        order.symbol.0,
        side_code(order.side)[0] as char,
        ord_type_code(order.ord_type)[0] as char,
        tif_code(order.tif)[0] as char,
        order.price,
        order.order_qty,
        order.cum_qty,
        order.cum_notional,
        order.leaves,
        order.status as char,
        order.cl_ord_id.len(),
        order.cl_ord_id,
        order.orig_cl_ord_id.as_deref().unwrap_or(""),
    )
}

fn parse_order(rest: &str) -> Option<Order> {
    {
        let mut parts = rest.splitn(13, ' ');
        let mut next = || parts.next();
        let parsed = (|| {
            let order_id: u64 = next()?.parse().ok()?;
            let symbol = SymbolId(next()?.parse().ok()?);
            let side = match next()? {
                "1" => Side::Buy,
                "2" => Side::Sell,
                _ => return None,
            };
            let ord_type = match next()? {
                "1" => OrderType::Market,
                "2" => OrderType::Limit,
                _ => return None,
            };
            let tif = match next()? {
                "0" => TimeInForce::Day,
                "1" => TimeInForce::Gtc,
                "3" => TimeInForce::Ioc,
                "4" => TimeInForce::Fok,
                _ => return None,
            };
            let price = next()?.parse().ok()?;
            let order_qty = next()?.parse().ok()?;
            let cum_qty = next()?.parse().ok()?;
            let cum_notional = next()?.parse().ok()?;
            let leaves = next()?.parse().ok()?;
            let status = next()?.bytes().next()?;
            let len: usize = next()?.parse().ok()?;
            let tail = next()?;
            let cl_ord_id = tail.get(..len)?.to_string();
            let orig = tail.get(len + 1..).unwrap_or("");
            Some(Order {
                order_id,
                cl_ord_id,
                orig_cl_ord_id: (!orig.is_empty()).then(|| orig.to_string()),
                symbol,
                side,
                ord_type,
                tif,
                price,
                order_qty,
                cum_qty,
                cum_notional,
                leaves,
                status,
            })
        })();
        parsed
    }
}

/// The message says it may have been sent before (PossDupFlag 43 or
/// PossResend 97).
fn possibly_resent(m: &InboundMessage<'_>) -> bool {
    m.get(43) == Some(b"Y") || m.get(97) == Some(b"Y")
}
