//! The read model: engine events folded into balances, positions, orders,
//! books, trades, activities and per-account stream messages. Seeded from
//! a scratch engine rebuilt from the journal, then fed live outputs by the
//! bridge thread. Balances mirror the ledger exactly: a buy holds
//! `leaves × (limit + max fee)` (a market buy at its band edge), a sell
//! holds `leaves` shares, and settlement releases what the fill did not use.

use crate::crypto::order_uuid;
use crate::money::{format_money, format_qty};
use crate::time::rfc3339;
use brokerx_engine::pipeline::Output;
use brokerx_engine::{
    AccountId, CancelReason, Engine, Event, OrderId, OrderType, Side, SymbolId, TimeInForce,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SymbolInfo {
    pub id: u32,
    pub name: String,
    pub tick: u64,
    pub lot: u64,
    pub reference: u64,
    pub band_low: u64,
    pub band_high: u64,
    pub maker_fee: u64,
    pub taker_fee: u64,
    pub halted: bool,
}

impl SymbolInfo {
    pub fn max_fee(&self) -> u64 {
        self.maker_fee.max(self.taker_fee)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Balance {
    pub available: u64,
    pub reserved: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Position {
    pub available: u64,
    pub reserved: u64,
    /// Cost of the shares held, in minor units (average cost × shares).
    pub cost: u128,
}

impl Position {
    pub fn total(&self) -> u64 {
        self.available + self.reserved
    }
}

#[derive(Clone, Debug, Default)]
pub struct AccountState {
    pub cash: Balance,
    pub positions: BTreeMap<u32, Position>,
    pub suspended: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Expired,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::PartiallyFilled => "partially_filled",
            Status::Filled => "filled",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, Status::New | Status::PartiallyFilled)
    }
}

#[derive(Clone, Debug)]
pub struct OrderRec {
    pub id: u64,
    pub account: u32,
    pub symbol: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// Limit price (0 for a market order).
    pub limit_price: u64,
    /// The price the hold is computed at (the band edge for a market order).
    pub hold_price: u64,
    pub qty: u64,
    pub leaves: u64,
    pub filled: u64,
    pub filled_notional: u128,
    pub status: Status,
    pub client_order_id: String,
    pub created_ns: u64,
    pub updated_ns: u64,
    pub filled_ns: u64,
    pub canceled_ns: u64,
    pub replaced_ns: u64,
    pub reason: Option<String>,
}

pub fn side_str(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub fn type_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

pub fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Day => "day",
        TimeInForce::Gtc => "gtc",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Fok => "fok",
    }
}

fn time_or_null(ns: u64) -> Value {
    if ns == 0 {
        Value::Null
    } else {
        Value::String(rfc3339(ns))
    }
}

impl OrderRec {
    pub fn uuid(&self) -> String {
        order_uuid(self.id)
    }

    pub fn avg_price(&self) -> Option<u64> {
        (self.filled > 0).then(|| (self.filled_notional / self.filled as u128) as u64)
    }

    /// The BrokerX JSON shape.
    pub fn to_json(&self, symbol: &str) -> Value {
        json!({
            "id": self.uuid(),
            "client_order_id": self.client_order_id,
            "symbol": symbol,
            "side": side_str(self.side),
            "type": type_str(self.order_type),
            "time_in_force": tif_str(self.tif),
            "limit_price": (self.order_type == OrderType::Limit).then(|| format_money(self.limit_price)),
            "qty": format_qty(self.qty),
            "filled_qty": format_qty(self.filled),
            "leaves_qty": format_qty(self.leaves),
            "filled_avg_price": self.avg_price().map(format_money),
            "status": self.status.as_str(),
            "reject_reason": self.reason,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns),
        })
    }

    /// Alpaca Trading API v2 order shape.
    pub fn to_alpaca(&self, symbol: &str) -> Value {
        let status = match self.status {
            Status::Canceled if self.reason.as_deref() == Some("replaced") => "replaced",
            other => other.as_str(),
        };
        json!({
            "id": self.uuid(),
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns),
            "submitted_at": rfc3339(self.created_ns),
            "filled_at": time_or_null(self.filled_ns),
            "expired_at": if self.status == Status::Expired { time_or_null(self.updated_ns) } else { Value::Null },
            "canceled_at": time_or_null(self.canceled_ns),
            "failed_at": if self.status == Status::Rejected { time_or_null(self.updated_ns) } else { Value::Null },
            "replaced_at": time_or_null(self.replaced_ns),
            "replaced_by": null,
            "replaces": null,
            "asset_id": asset_uuid(self.symbol),
            "symbol": symbol,
            "asset_class": "us_equity",
            "notional": null,
            "qty": format_qty(self.qty),
            "filled_qty": format_qty(self.filled),
            "filled_avg_price": self.avg_price().map(format_money),
            "order_class": "simple",
            "order_type": type_str(self.order_type),
            "type": type_str(self.order_type),
            "side": side_str(self.side),
            "position_intent": null,
            "time_in_force": tif_str(self.tif),
            "limit_price": (self.order_type == OrderType::Limit).then(|| format_money(self.limit_price)),
            "stop_price": null,
            "status": status,
            "extended_hours": false,
            "legs": null,
            "trail_percent": null,
            "trail_price": null,
            "hwm": null,
        })
    }
}

/// A stable UUID for a symbol (Alpaca's asset id).
pub fn asset_uuid(symbol: u32) -> String {
    format!("{symbol:08x}-0000-4000-a000-000000000000")
}

#[derive(Clone, Debug)]
pub struct TradeRec {
    pub match_id: u64,
    pub symbol: u32,
    pub price: u64,
    pub qty: u64,
    pub aggressor: Side,
    pub ts_ns: u64,
}

impl TradeRec {
    pub fn to_json(&self, symbol: &str) -> Value {
        json!({
            "id": self.match_id,
            "symbol": symbol,
            "price": format_money(self.price),
            "qty": format_qty(self.qty),
            "aggressor": side_str(self.aggressor),
            "timestamp": rfc3339(self.ts_ns),
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct BookView {
    /// price -> (qty, orders)
    pub bids: BTreeMap<u64, (u64, u32)>,
    pub asks: BTreeMap<u64, (u64, u32)>,
}

/// One message of an account's stream (or of the quotes stream, with
/// account `u32::MAX`).
#[derive(Clone, Debug)]
pub struct StreamItem {
    pub account: u32,
    pub seq: u64,
    /// `{"stream": ..., "seq": ..., "data": ...}` (BrokerX shape).
    pub body: Arc<str>,
    /// Alpaca `trade_updates` shape, if this is an order update.
    pub alpaca: Option<Arc<str>>,
}

pub const QUOTES: u32 = u32::MAX;
const STREAM_KEEP: usize = 4096;
const TRADES_KEEP: usize = 200;

/// A write the bridge hands to the SQLite thread.
pub enum Write {
    Order {
        id: u64,
        account: u32,
        open: bool,
        body: String,
    },
    Activity {
        seq: u64,
        idx: u32,
        account: u32,
        kind: &'static str,
        body: String,
    },
    Trade {
        match_id: u64,
        symbol: u32,
        body: String,
    },
    Stream {
        account: u32,
        seq: u64,
        body: Arc<str>,
    },
    Cost {
        account: u32,
        symbol: u32,
        qty: u64,
        cost: u128,
    },
    /// Every output of the commands up to this sequence number is in the
    /// store (written in the same transaction as the writes before it): a
    /// restart replays the journal after it through the projection.
    Watermark(u64),
    /// The order a recorded client order id was for has its outcome.
    IntentDone { tag: u64 },
    /// A deposit or withdrawal, with the wallet endpoint's answer to it.
    MoneyMove {
        account: u32,
        tag: u64,
        response: String,
    },
}

/// The wallet endpoint's answer to a deposit or withdrawal the engine
/// applied as command `seq`.
pub fn transfer_json(seq: u64, credit: bool, amount: u64, available: u64, ts_ns: u64) -> Value {
    json!({
        "id": format!("{seq}"),
        "type": if credit { "deposit" } else { "withdrawal" },
        "status": "completed",
        "amount": format_money(amount),
        "available": format_money(available),
        "created_at": rfc3339(ts_ns),
    })
}

#[derive(Default)]
pub struct State {
    /// Symbol names and specs from the configuration.
    pub names: BTreeMap<u32, String>,
    pub specs: BTreeMap<u32, brokerx_engine::SymbolSpec>,
    pub symbols: BTreeMap<u32, SymbolInfo>,
    pub by_name: HashMap<String, u32>,
    pub accounts: HashMap<u32, AccountState>,
    pub orders: HashMap<u64, OrderRec>,
    /// Per account, order ids in creation order.
    pub account_orders: HashMap<u32, Vec<u64>>,
    pub client_ids: HashMap<(u32, String), u64>,
    pub books: HashMap<u32, BookView>,
    pub trades: HashMap<u32, VecDeque<TradeRec>>,
    pub streams: HashMap<u32, VecDeque<StreamItem>>,
    pub stream_seq: HashMap<u32, u64>,
    pub last_seq: u64,
    /// Client order ids of orders in flight: tag -> client id.
    pub pending_client_ids: HashMap<u64, String>,
    /// At start: client order ids recorded before their command was
    /// submitted whose outcome is not in the store (tag -> account, id);
    /// the journal's catch-up gives them back to their orders.
    pub intents: HashMap<u64, (u32, String)>,
    /// Render Alpaca-shaped stream messages (only while a `/stream`
    /// client is connected; that stream does not resume).
    pub render_alpaca: bool,
    /// Orders in flight from this gateway, by tag: a reject is streamed
    /// as a `rejected` update of this draft (it never got an engine id).
    pub pending_orders: HashMap<u64, OrderRec>,
}

impl State {
    pub fn symbol_name(&self, id: u32) -> String {
        self.symbols
            .get(&id)
            .map_or_else(|| format!("#{id}"), |s| s.name.clone())
    }

    pub fn order_json(&self, order: &OrderRec) -> Value {
        order.to_json(&self.symbol_name(order.symbol))
    }

    pub fn order_alpaca(&self, order: &OrderRec) -> Value {
        order.to_alpaca(&self.symbol_name(order.symbol))
    }

    /// Builds the state from an engine image (after journal replay).
    /// `names`: symbol id -> name.
    pub fn seed(&mut self, engine: &Engine, names: &BTreeMap<u32, String>, now_ns: u64) {
        self.symbols.clear();
        self.by_name.clear();
        self.books.clear();
        for id in 0..brokerx_risk::MAX_SYMBOLS {
            let Some(state) = engine.symbol(SymbolId(id)) else {
                continue;
            };
            let name = names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("SYM{id}"));
            self.by_name.insert(name.clone(), id);
            self.symbols.insert(
                id,
                SymbolInfo {
                    id,
                    name,
                    tick: state.spec.tick_size,
                    lot: state.spec.lot_size,
                    reference: state.spec.reference_price,
                    band_low: state.band_low,
                    band_high: state.band_high,
                    maker_fee: state.spec.maker_fee_per_share,
                    taker_fee: state.spec.taker_fee_per_share,
                    halted: state.halted,
                },
            );
            let mut book = BookView::default();
            for side in [Side::Buy, Side::Sell] {
                let ladder = state.ladder(side);
                for index in ladder.iter_best_first() {
                    let level = &ladder.levels[index as usize];
                    let map = match side {
                        Side::Buy => &mut book.bids,
                        Side::Sell => &mut book.asks,
                    };
                    map.insert(state.price_at(index), (level.qty, level.orders));
                }
            }
            self.books.insert(id, book);
        }
        let ledger = engine.ledger();
        let mut open_now: Vec<u64> = Vec::new();
        for (account_id, account) in ledger.accounts() {
            let entry = self.accounts.entry(account_id.0).or_default();
            entry.cash = Balance {
                available: account.cash.available,
                reserved: account.cash.reserved,
            };
            let costs: BTreeMap<u32, u128> =
                entry.positions.iter().map(|(s, p)| (*s, p.cost)).collect();
            entry.positions.clear();
            for (symbol, balance) in account.positions().iter().enumerate() {
                if balance.available + balance.reserved > 0 {
                    entry.positions.insert(
                        symbol as u32,
                        Position {
                            available: balance.available,
                            reserved: balance.reserved,
                            cost: costs.get(&(symbol as u32)).copied().unwrap_or(0),
                        },
                    );
                }
            }
            for order_id in engine.account_orders(account_id) {
                let Some(node) = engine.order(order_id) else {
                    continue;
                };
                open_now.push(order_id.0);
                let side = Side::from_u8(node.side).unwrap_or(Side::Buy);
                let tif = TimeInForce::from_u8(node.tif).unwrap_or(TimeInForce::Gtc);
                let rec = self.orders.entry(order_id.0).or_insert_with(|| OrderRec {
                    id: order_id.0,
                    account: node.account,
                    symbol: node.symbol,
                    side,
                    order_type: OrderType::Limit,
                    tif,
                    limit_price: node.price,
                    hold_price: node.price,
                    qty: node.leaves + node.filled,
                    leaves: node.leaves,
                    filled: node.filled,
                    filled_notional: node.filled as u128 * node.price as u128,
                    status: Status::New,
                    client_order_id: order_uuid(order_id.0),
                    created_ns: now_ns,
                    updated_ns: now_ns,
                    filled_ns: 0,
                    canceled_ns: 0,
                    replaced_ns: 0,
                    reason: None,
                });
                rec.leaves = node.leaves;
                rec.filled = node.filled;
                rec.limit_price = node.price;
                rec.hold_price = node.price;
                rec.qty = node.leaves + node.filled;
                rec.status = if node.filled > 0 {
                    Status::PartiallyFilled
                } else {
                    Status::New
                };
                let list = self.account_orders.entry(node.account).or_default();
                if !list.contains(&order_id.0) {
                    list.push(order_id.0);
                }
            }
        }
        // Orders the store thought open but the engine no longer holds
        // (closed while the read model was behind): closed, outcome unknown.
        open_now.sort_unstable();
        for order in self.orders.values_mut() {
            if order.status.is_open() && open_now.binary_search(&order.id).is_err() {
                order.status = Status::Canceled;
                order.leaves = 0;
                order.reason = Some("closed while the gateway was down".into());
            }
        }
        self.last_seq = engine.last_seq();
    }

    fn account(&mut self, id: AccountId) -> &mut AccountState {
        self.accounts.entry(id.0).or_default()
    }

    fn hold_per_share(&self, order: &OrderRec) -> u64 {
        match order.side {
            Side::Buy => {
                order.hold_price
                    + self
                        .symbols
                        .get(&order.symbol)
                        .map_or(0, SymbolInfo::max_fee)
            }
            Side::Sell => 0,
        }
    }

    /// Releases the hold of `qty` open shares of `order`.
    fn release(&mut self, order_id: u64, qty: u64) {
        let Some(order) = self.orders.get(&order_id).cloned() else {
            return;
        };
        let hold = self.hold_per_share(&order) * qty;
        let account = self.account(AccountId(order.account));
        match order.side {
            Side::Buy => {
                let amount = hold.min(account.cash.reserved);
                account.cash.reserved -= amount;
                account.cash.available += amount;
            }
            Side::Sell => {
                let position = account.positions.entry(order.symbol).or_default();
                let amount = qty.min(position.reserved);
                position.reserved -= amount;
                position.available += amount;
            }
        }
    }

    fn reserve(&mut self, order_id: u64, qty: u64) {
        let Some(order) = self.orders.get(&order_id).cloned() else {
            return;
        };
        let hold = self.hold_per_share(&order) * qty;
        let account = self.account(AccountId(order.account));
        match order.side {
            Side::Buy => {
                let amount = hold.min(account.cash.available);
                account.cash.available -= amount;
                account.cash.reserved += amount;
            }
            Side::Sell => {
                let position = account.positions.entry(order.symbol).or_default();
                let amount = qty.min(position.available);
                position.available -= amount;
                position.reserved += amount;
            }
        }
    }

    fn next_stream_seq(&mut self, account: u32) -> u64 {
        let seq = self.stream_seq.entry(account).or_insert(0);
        *seq += 1;
        *seq
    }

    fn push_stream(
        &mut self,
        account: u32,
        stream: &str,
        data: Value,
        alpaca: Option<Value>,
        out: &mut Effects,
    ) {
        let seq = self.next_stream_seq(account);
        let body: Arc<str> = json!({"stream": stream, "seq": seq, "data": data})
            .to_string()
            .into();
        let alpaca = alpaca.map(|data| -> Arc<str> {
            json!({"stream": "trade_updates", "data": data})
                .to_string()
                .into()
        });
        let item = StreamItem {
            account,
            seq,
            body: body.clone(),
            alpaca,
        };
        let ring = self.streams.entry(account).or_default();
        ring.push_back(item.clone());
        if ring.len() > STREAM_KEEP {
            ring.pop_front();
        }
        if account != QUOTES {
            out.writes.push(Write::Stream { account, seq, body });
        }
        out.stream.push(item);
    }

    fn order_update(
        &mut self,
        order_id: u64,
        event: &str,
        ts_ns: u64,
        fill: Option<(u64, u64, u64)>,
        out: &mut Effects,
    ) {
        let Some(order) = self.orders.get(&order_id).cloned() else {
            return;
        };
        let symbol = self.symbol_name(order.symbol);
        let mut data = json!({
            "event": event,
            "order": order.to_json(&symbol),
            "timestamp": rfc3339(ts_ns),
        });
        let mut alpaca = if self.render_alpaca {
            json!({
                "event": event,
                "order": order.to_alpaca(&symbol),
                "timestamp": rfc3339(ts_ns),
            })
        } else {
            Value::Null
        };
        if let Some((price, qty, match_id)) = fill {
            let position = self
                .accounts
                .get(&order.account)
                .and_then(|a| a.positions.get(&order.symbol))
                .map_or(0, Position::total);
            let values: &mut [&mut Value] = if self.render_alpaca {
                &mut [&mut data, &mut alpaca]
            } else {
                &mut [&mut data]
            };
            for value in values.iter_mut() {
                value["price"] = json!(format_money(price));
                value["qty"] = json!(format_qty(qty));
                value["position_qty"] = json!(format_qty(position));
            }
            data["execution_id"] = json!(format!("{match_id}"));
            if self.render_alpaca {
                alpaca["execution_id"] = json!(format!("00000000-0000-4000-9000-{match_id:012x}"));
            }
        }
        out.writes.push(Write::Order {
            id: order.id,
            account: order.account,
            open: order.status.is_open(),
            body: serde_json::to_string(&order_store_json(&order)).unwrap_or_default(),
        });
        let alpaca = (!alpaca.is_null()).then_some(alpaca);
        self.push_stream(order.account, "trade_updates", data, alpaca, out);
    }

    fn quote_update(&mut self, symbol: u32, out: &mut Effects) {
        let quote = self.quote(symbol);
        self.push_stream(QUOTES, "quotes", quote, None, out);
    }

    pub fn quote(&self, symbol: u32) -> Value {
        let book = self.books.get(&symbol);
        let bid = book.and_then(|b| b.bids.iter().next_back());
        let ask = book.and_then(|b| b.asks.iter().next());
        let last = self.trades.get(&symbol).and_then(|t| t.back());
        json!({
            "symbol": self.symbol_name(symbol),
            "bid_price": bid.map(|(p, _)| format_money(*p)),
            "bid_size": bid.map(|(_, (q, _))| format_qty(*q)),
            "ask_price": ask.map(|(p, _)| format_money(*p)),
            "ask_size": ask.map(|(_, (q, _))| format_qty(*q)),
            "last_price": last.map(|t| format_money(t.price)),
            "last_size": last.map(|t| format_qty(t.qty)),
            "last_time": last.map(|t| rfc3339(t.ts_ns)),
        })
    }

    fn activity(
        &mut self,
        output: &Output,
        idx: u32,
        account: u32,
        kind: &'static str,
        body: Value,
        out: &mut Effects,
    ) {
        let mut body = body;
        body["id"] = json!(format!("{}:{}:{}", output.seq, idx, account));
        body["activity_type"] = json!(kind);
        body["timestamp"] = json!(rfc3339(output.timestamp_ns));
        out.writes.push(Write::Activity {
            seq: output.seq,
            idx,
            account,
            kind,
            body: body.to_string(),
        });
    }

    /// Folds one live output. `idx` is its index among its command's events.
    pub fn apply(&mut self, output: &Output, idx: u32, out: &mut Effects) {
        let ts = output.timestamp_ns;
        self.last_seq = self.last_seq.max(output.seq);
        match output.event {
            Event::Rejected {
                account, tag, code, ..
            } => {
                if self.pending_client_ids.remove(&tag).is_some()
                    || self
                        .intents
                        .remove(&tag)
                        .is_some_and(|(owner, _)| owner == account.0)
                {
                    out.writes.push(Write::IntentDone { tag });
                }
                let draft = if output.own {
                    self.pending_orders.remove(&tag)
                } else {
                    None
                };
                if let Some(mut draft) = draft.filter(|d| d.account == account.0) {
                    draft.status = Status::Rejected;
                    draft.reason = Some(code.name().to_string());
                    draft.updated_ns = ts;
                    let symbol = self.symbol_name(draft.symbol);
                    let data = json!({
                        "event": "rejected",
                        "order": draft.to_json(&symbol),
                        "timestamp": rfc3339(ts),
                    });
                    let alpaca = self.render_alpaca.then(|| {
                        json!({
                            "event": "rejected",
                            "order": draft.to_alpaca(&symbol),
                            "timestamp": rfc3339(ts),
                        })
                    });
                    self.push_stream(draft.account, "trade_updates", data, alpaca, out);
                }
            }
            Event::AccountCreated { account, .. } => {
                self.account(account);
            }
            Event::LimitsSet { .. } => {}
            Event::CashMoved {
                account,
                amount,
                credit,
                available,
                tag,
            } => {
                self.account(account).cash.available = available;
                // What the wallet endpoint answered, by the command's tag:
                // a retried Idempotency-Key whose first answer was lost in
                // a crash gets it from here instead of moving money twice.
                out.writes.push(Write::MoneyMove {
                    account: account.0,
                    tag,
                    response: transfer_json(
                        output.seq,
                        credit,
                        amount,
                        available,
                        output.timestamp_ns,
                    )
                    .to_string(),
                });
                let kind = if credit { "CSD" } else { "CSW" };
                let body = json!({
                    "net_amount": if credit { format_money(amount) } else { format!("-{}", format_money(amount)) },
                    "description": if credit { "deposit" } else { "withdrawal" },
                });
                self.activity(output, idx, account.0, kind, body, out);
            }
            Event::SharesMoved {
                account,
                symbol,
                qty,
                credit,
                available,
                ..
            } => {
                let position = self.account(account).positions.entry(symbol.0).or_default();
                position.available = available;
                if !credit {
                    let total = position.total() + qty;
                    if total > 0 {
                        position.cost -= position.cost * qty as u128 / total as u128;
                    }
                }
                let name = self.symbol_name(symbol.0);
                let body = json!({
                    "symbol": name,
                    "qty": format_qty(qty),
                    "description": if credit { "shares in" } else { "shares out" },
                });
                self.activity(output, idx, account.0, "JNLS", body, out);
            }
            Event::SymbolAdded {
                symbol,
                band_low,
                band_high,
            } => {
                let name = self
                    .names
                    .get(&symbol.0)
                    .cloned()
                    .unwrap_or_else(|| format!("SYM{}", symbol.0));
                let spec = self.specs.get(&symbol.0).copied();
                self.by_name.insert(name.clone(), symbol.0);
                self.books.entry(symbol.0).or_default();
                let entry = self.symbols.entry(symbol.0).or_insert_with(|| SymbolInfo {
                    id: symbol.0,
                    name,
                    tick: spec.map_or(1, |s| s.tick_size),
                    lot: spec.map_or(1, |s| s.lot_size),
                    reference: spec.map_or(0, |s| s.reference_price),
                    band_low,
                    band_high,
                    maker_fee: spec.map_or(0, |s| s.maker_fee_per_share),
                    taker_fee: spec.map_or(0, |s| s.taker_fee_per_share),
                    halted: false,
                });
                entry.band_low = band_low;
                entry.band_high = band_high;
            }
            Event::ReferencePriceSet {
                symbol,
                price,
                band_low,
                band_high,
            } => {
                if let Some(s) = self.symbols.get_mut(&symbol.0) {
                    s.reference = price;
                    s.band_low = band_low;
                    s.band_high = band_high;
                }
            }
            Event::TradingStatus { symbol, halted } => {
                if let Some(s) = self.symbols.get_mut(&symbol.0) {
                    s.halted = halted;
                }
            }
            Event::OrderAccepted {
                order_id,
                account,
                symbol,
                side,
                order_type,
                tif,
                price,
                qty,
                tag,
            } => {
                let hold_price = match (order_type, side) {
                    (OrderType::Limit, _) => price,
                    (OrderType::Market, Side::Buy) => {
                        self.symbols.get(&symbol.0).map_or(0, |s| s.band_high)
                    }
                    (OrderType::Market, Side::Sell) => {
                        self.symbols.get(&symbol.0).map_or(0, |s| s.band_low)
                    }
                };
                if output.own {
                    self.pending_orders.remove(&tag);
                }
                let client_order_id = if output.own {
                    self.pending_client_ids.remove(&tag)
                } else {
                    // Replayed after a crash: the id recorded before submit.
                    self.intents
                        .remove(&tag)
                        .filter(|(owner, _)| *owner == account.0)
                        .map(|(_, id)| id)
                };
                if client_order_id.is_some() {
                    out.writes.push(Write::IntentDone { tag });
                }
                let client_order_id = client_order_id.unwrap_or_else(|| order_uuid(order_id.0));
                self.client_ids
                    .insert((account.0, client_order_id.clone()), order_id.0);
                self.orders.insert(
                    order_id.0,
                    OrderRec {
                        id: order_id.0,
                        account: account.0,
                        symbol: symbol.0,
                        side,
                        order_type,
                        tif,
                        limit_price: price,
                        hold_price,
                        qty,
                        leaves: qty,
                        filled: 0,
                        filled_notional: 0,
                        status: Status::New,
                        client_order_id,
                        created_ns: ts,
                        updated_ns: ts,
                        filled_ns: 0,
                        canceled_ns: 0,
                        replaced_ns: 0,
                        reason: None,
                    },
                );
                self.account_orders
                    .entry(account.0)
                    .or_default()
                    .push(order_id.0);
                self.reserve(order_id.0, qty);
                self.order_update(order_id.0, "new", ts, None, out);
            }
            Event::OrderReplaced {
                order_id,
                price,
                qty,
                ..
            } => {
                let Some(old) = self.orders.get(&order_id.0).cloned() else {
                    return;
                };
                self.release(order_id.0, old.leaves);
                if let Some(order) = self.orders.get_mut(&order_id.0) {
                    order.limit_price = price;
                    order.hold_price = price;
                    order.leaves = qty;
                    order.qty = order.filled + qty;
                    order.updated_ns = ts;
                    order.replaced_ns = ts;
                }
                self.reserve(order_id.0, qty);
                self.order_update(order_id.0, "replaced", ts, None, out);
            }
            Event::OrderCancelled {
                order_id,
                qty,
                reason,
                ..
            } => {
                self.release(order_id.0, qty);
                if let Some(order) = self.orders.get_mut(&order_id.0) {
                    order.leaves = order.leaves.saturating_sub(qty);
                    order.status = Status::Canceled;
                    order.updated_ns = ts;
                    order.canceled_ns = ts;
                    order.reason = Some(cancel_reason(reason).into());
                }
                self.order_update(order_id.0, "canceled", ts, None, out);
            }
            Event::OrderExpired { order_id, qty, .. } => {
                self.release(order_id.0, qty);
                if let Some(order) = self.orders.get_mut(&order_id.0) {
                    order.leaves = order.leaves.saturating_sub(qty);
                    order.status = Status::Expired;
                    order.updated_ns = ts;
                }
                self.order_update(order_id.0, "expired", ts, None, out);
            }
            Event::Trade {
                match_id,
                symbol,
                price,
                qty,
                aggressor,
                maker_order,
                maker_account,
                maker_leaves,
                maker_fee,
                taker_order,
                taker_account,
                taker_leaves,
                taker_fee,
            } => {
                let (buy_order, buyer, buyer_fee, sell_order, seller, seller_fee) = match aggressor
                {
                    Side::Buy => (
                        taker_order,
                        taker_account,
                        taker_fee,
                        maker_order,
                        maker_account,
                        maker_fee,
                    ),
                    Side::Sell => (
                        maker_order,
                        maker_account,
                        maker_fee,
                        taker_order,
                        taker_account,
                        taker_fee,
                    ),
                };
                let notional = price * qty;
                // Buyer: the hold of `qty` shares is consumed; what the fill
                // did not cost goes back to available.
                let held = self
                    .orders
                    .get(&buy_order.0)
                    .map_or(notional + buyer_fee, |o| self.hold_per_share(o) * qty);
                {
                    let account = self.account(buyer);
                    let consumed = held.min(account.cash.reserved);
                    account.cash.reserved -= consumed;
                    account.cash.available += held.saturating_sub(notional + buyer_fee);
                    let position = account.positions.entry(symbol.0).or_default();
                    position.available += qty;
                    position.cost += notional as u128 + buyer_fee as u128;
                }
                {
                    let account = self.account(seller);
                    let position = account.positions.entry(symbol.0).or_default();
                    let before = position.total();
                    if before > 0 {
                        position.cost -= position.cost * qty.min(before) as u128 / before as u128;
                    }
                    position.reserved = position.reserved.saturating_sub(qty);
                    account.cash.available += notional - seller_fee;
                }
                for (order_id, leaves) in [(maker_order, maker_leaves), (taker_order, taker_leaves)]
                {
                    if let Some(order) = self.orders.get_mut(&order_id.0) {
                        order.leaves = leaves;
                        order.filled += qty;
                        order.filled_notional += notional as u128;
                        order.updated_ns = ts;
                        if leaves == 0 {
                            order.status = Status::Filled;
                            order.filled_ns = ts;
                        } else {
                            order.status = Status::PartiallyFilled;
                        }
                    }
                }
                let trade = TradeRec {
                    match_id,
                    symbol: symbol.0,
                    price,
                    qty,
                    aggressor,
                    ts_ns: ts,
                };
                let name = self.symbol_name(symbol.0);
                out.writes.push(Write::Trade {
                    match_id,
                    symbol: symbol.0,
                    body: trade.to_json(&name).to_string(),
                });
                let ring = self.trades.entry(symbol.0).or_default();
                ring.push_back(trade);
                if ring.len() > TRADES_KEEP {
                    ring.pop_front();
                }
                for (order_id, account, side, fee) in [
                    (buy_order, buyer, Side::Buy, buyer_fee),
                    (sell_order, seller, Side::Sell, seller_fee),
                ] {
                    let leaves = if order_id == maker_order {
                        maker_leaves
                    } else {
                        taker_leaves
                    };
                    let event = if leaves == 0 { "fill" } else { "partial_fill" };
                    self.order_update(order_id.0, event, ts, Some((price, qty, match_id)), out);
                    let position = self
                        .accounts
                        .get(&account.0)
                        .and_then(|a| a.positions.get(&symbol.0))
                        .copied()
                        .unwrap_or_default();
                    out.writes.push(Write::Cost {
                        account: account.0,
                        symbol: symbol.0,
                        qty: position.total(),
                        cost: position.cost,
                    });
                    let body = json!({
                        "symbol": name,
                        "side": side_str(side),
                        "qty": format_qty(qty),
                        "price": format_money(price),
                        "fee": format_money(fee),
                        "order_id": order_uuid(order_id.0),
                        "leaves_qty": format_qty(leaves),
                        "type": event,
                        "transaction_time": rfc3339(ts),
                    });
                    self.activity(output, idx, account.0, "FILL", body, out);
                }
            }
            Event::BookLevel {
                symbol,
                side,
                price,
                qty,
                orders,
            } => {
                let book = self.books.entry(symbol.0).or_default();
                let map = match side {
                    Side::Buy => &mut book.bids,
                    Side::Sell => &mut book.asks,
                };
                if qty == 0 {
                    map.remove(&price);
                } else {
                    map.insert(price, (qty, orders));
                }
                self.quote_update(symbol.0, out);
            }
            Event::MassCancelled { .. } => {}
            Event::AccountSuspended { account, .. } => self.account(account).suspended = true,
            Event::AccountReinstated { account } => self.account(account).suspended = false,
            Event::DayEnded { .. } => {}
        }
    }
}

pub fn cancel_reason(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Requested => "requested",
        CancelReason::ImmediateRemainder => "immediate_or_cancel_remainder",
        CancelReason::FillOrKill => "fill_or_kill",
        CancelReason::SelfTrade => "self_trade_prevention",
        CancelReason::MassCancel => "mass_cancel",
        CancelReason::KillSwitch => "kill_switch",
    }
}

/// What applying outputs produced: SQLite writes and stream messages.
#[derive(Default)]
pub struct Effects {
    pub writes: Vec<Write>,
    pub stream: Vec<StreamItem>,
}

/// The stored form of an order (all fields, for reloading).
pub fn order_store_json(order: &OrderRec) -> Value {
    json!({
        "id": order.id,
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side as u8,
        "type": order.order_type as u8,
        "tif": order.tif as u8,
        "limit_price": order.limit_price,
        "hold_price": order.hold_price,
        "qty": order.qty,
        "leaves": order.leaves,
        "filled": order.filled,
        "filled_notional": order.filled_notional.to_string(),
        "status": order.status.as_str(),
        "client_order_id": order.client_order_id,
        "created_ns": order.created_ns,
        "updated_ns": order.updated_ns,
        "filled_ns": order.filled_ns,
        "canceled_ns": order.canceled_ns,
        "replaced_ns": order.replaced_ns,
        "reason": order.reason,
    })
}

pub fn order_from_store(value: &Value) -> Option<OrderRec> {
    let u = |k: &str| value.get(k).and_then(Value::as_u64);
    let status = match value.get("status")?.as_str()? {
        "new" => Status::New,
        "partially_filled" => Status::PartiallyFilled,
        "filled" => Status::Filled,
        "canceled" => Status::Canceled,
        "expired" => Status::Expired,
        _ => Status::Rejected,
    };
    Some(OrderRec {
        id: u("id")?,
        account: u("account")? as u32,
        symbol: u("symbol")? as u32,
        side: Side::from_u8(u("side")? as u8)?,
        order_type: OrderType::from_u8(u("type")? as u8)?,
        tif: TimeInForce::from_u8(u("tif")? as u8)?,
        limit_price: u("limit_price")?,
        hold_price: u("hold_price")?,
        qty: u("qty")?,
        leaves: u("leaves")?,
        filled: u("filled")?,
        filled_notional: value.get("filled_notional")?.as_str()?.parse().ok()?,
        status,
        client_order_id: value.get("client_order_id")?.as_str()?.to_string(),
        created_ns: u("created_ns")?,
        updated_ns: u("updated_ns")?,
        filled_ns: u("filled_ns").unwrap_or(0),
        canceled_ns: u("canceled_ns").unwrap_or(0),
        replaced_ns: u("replaced_ns").unwrap_or(0),
        reason: value
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Engine order id newtype helper.
pub fn oid(id: u64) -> OrderId {
    OrderId(id)
}
