//! The deterministic state machine: `SequencedCommand` in, `Event`s out.
//!
//! Stages of a new order, on one thread: validate against reference data,
//! reserve funds in the risk ledger, acknowledge, match against the
//! opposite ladder (settling each fill in the ledger as it happens), then
//! rest or cancel the remainder. Nothing here allocates once the slab and
//! the event buffer have grown to their working size.

use crate::book::{
    AccountOrders, Best, Ladder, OrderNode, OrderSlab, FLAG_IN_ACCOUNT, FLAG_IN_LEVEL, FLAG_LIVE,
    NIL,
};
use crate::{
    CancelReason, Command, Event, OrderId, OrderType, RejectCode, SelfTradePrevention,
    SequencedCommand, SymbolSpec, TimeInForce,
};
use brokerx_risk::{AccountId, Ledger, OrderTicket, Settlement, Side, SymbolId, MAX_SYMBOLS};

/// Sizing of the engine's preallocated storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Order slots allocated up front.
    pub order_capacity: u32,
    /// Most orders alive at once; beyond it new orders are rejected.
    pub max_orders: u32,
    /// Most price levels per side of one symbol (bounds band / tick).
    pub max_ladder_levels: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            order_capacity: 1 << 16,
            max_orders: 1 << 26,
            max_ladder_levels: 1 << 20,
        }
    }
}

/// Book and state of one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolState {
    pub spec: SymbolSpec,
    pub band_low: u64,
    pub band_high: u64,
    pub halted: bool,
    /// Price of ladder index 0 on both sides.
    pub base_price: u64,
    pub bids: Ladder,
    pub asks: Ladder,
}

impl SymbolState {
    pub fn price_at(&self, index: u32) -> u64 {
        self.base_price + index as u64 * self.spec.tick_size
    }

    fn index_of(&self, price: u64) -> u32 {
        debug_assert!(price >= self.base_price);
        div_by(price - self.base_price, self.spec.tick_size) as u32
    }

    pub fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    pub fn best_price(&self, side: Side) -> Option<u64> {
        self.ladder(side).best().map(|i| self.price_at(i))
    }

    fn max_fee(&self) -> u64 {
        self.spec
            .maker_fee_per_share
            .max(self.spec.taker_fee_per_share)
    }

    /// Cash a buy holds per share at `price`; zero for a sell.
    fn reserve_per_share(&self, side: Side, price: u64) -> u64 {
        match side {
            Side::Buy => price + self.max_fee(),
            Side::Sell => 0,
        }
    }

    fn ticket(
        &self,
        account: u32,
        symbol: SymbolId,
        side: Side,
        price: u64,
        qty: u64,
    ) -> OrderTicket {
        OrderTicket {
            account: AccountId(account),
            symbol,
            side,
            qty,
            notional_price: price,
            reserve_per_share: self.reserve_per_share(side, price),
        }
    }

    fn level_event(&self, symbol: SymbolId, side: Side, index: u32) -> Event {
        let level = self.ladder(side).levels[index as usize];
        Event::BookLevel {
            symbol,
            side,
            price: self.price_at(index),
            qty: level.qty,
            orders: level.orders,
        }
    }
}

/// Per-account state the engine keeps beside the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineAccount {
    pub orders: AccountOrders,
    pub self_trade: SelfTradePrevention,
}

/// How matching stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    /// The taker has no open quantity left.
    Filled,
    /// No more liquidity within the limit.
    Exhausted,
    /// Self-trade prevention cancels the taker's remainder.
    SelfTrade,
}

/// The state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) ledger: Ledger,
    pub(crate) symbols: Vec<Option<SymbolState>>,
    pub(crate) orders: OrderSlab,
    pub(crate) accounts: Vec<Option<EngineAccount>>,
    pub(crate) next_match_id: u64,
    pub(crate) last_seq: u64,
}

fn side_of(node: &OrderNode) -> Side {
    Side::from_u8(node.side).expect("stored side is valid")
}

fn crosses(taker: Side, limit: u64, level_price: u64) -> bool {
    match taker {
        Side::Buy => level_price <= limit,
        Side::Sell => level_price >= limit,
    }
}

/// `value / divisor`. Tick and lot sizes are usually powers of two (most
/// often 1), where a shift replaces the division on the hot path.
#[inline(always)]
fn div_by(value: u64, divisor: u64) -> u64 {
    if divisor.is_power_of_two() {
        value >> divisor.trailing_zeros()
    } else {
        value / divisor
    }
}

/// `value.is_multiple_of(divisor)`, with a mask for a power of two.
#[inline(always)]
fn multiple_of(value: u64, divisor: u64) -> bool {
    if divisor.is_power_of_two() {
        value & (divisor - 1) == 0
    } else {
        value.is_multiple_of(divisor)
    }
}

pub(crate) fn band(spec: &SymbolSpec) -> Result<(u64, u64), RejectCode> {
    let invalid = Err(RejectCode::InvalidSymbolSpec);
    if spec.tick_size == 0 || spec.lot_size == 0 || spec.band_bps == 0 || spec.band_bps > 10_000 {
        return invalid;
    }
    if spec.reference_price == 0
        || !spec.reference_price.is_multiple_of(spec.tick_size)
        || spec.reference_price > u64::MAX / 4
    {
        return invalid;
    }
    let width = (spec.reference_price as u128 * spec.band_bps as u128 / 10_000) as u64;
    let tick = spec.tick_size;
    let low = (spec.reference_price - width).div_ceil(tick) * tick;
    let high = (spec.reference_price + width) / tick * tick;
    Ok((low.max(tick), high))
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            ledger: Ledger::new(),
            symbols: Vec::new(),
            orders: OrderSlab::new(
                config.order_capacity.min(config.max_orders),
                config.max_orders,
            ),
            accounts: Vec::new(),
            next_match_id: 1,
            last_seq: 0,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn symbol(&self, symbol: SymbolId) -> Option<&SymbolState> {
        self.symbols.get(symbol.0 as usize).and_then(Option::as_ref)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn resting_orders(&self) -> u32 {
        self.orders.live()
    }

    /// A live order's node.
    pub fn order(&self, id: OrderId) -> Option<&OrderNode> {
        self.orders
            .find(id)
            .map(|slot| &self.orders.nodes[slot as usize])
    }

    /// Resting orders of one side of a symbol, in priority order.
    pub fn orders_in_priority(
        &self,
        symbol: SymbolId,
        side: Side,
    ) -> impl Iterator<Item = (OrderId, &OrderNode)> + '_ {
        let ladder = self.symbol(symbol).map(|state| state.ladder(side));
        let levels = ladder.into_iter().flat_map(|ladder| {
            ladder
                .iter_best_first()
                .map(move |index| ladder.levels[index as usize].head)
        });
        levels.flat_map(move |head| {
            let mut cursor = head;
            std::iter::from_fn(move || {
                (cursor != NIL).then(|| {
                    let slot = cursor;
                    cursor = self.orders.nodes[slot as usize].next;
                    (self.orders.id(slot), &self.orders.nodes[slot as usize])
                })
            })
        })
    }

    /// An account's resting orders, in the order they first rested.
    pub fn account_orders(&self, account: AccountId) -> impl Iterator<Item = OrderId> + '_ {
        let head = self
            .engine_account(account)
            .map_or(NIL, |account| account.orders.head);
        let mut cursor = head;
        std::iter::from_fn(move || {
            (cursor != NIL).then(|| {
                let slot = cursor;
                cursor = self.orders.nodes[slot as usize].account_next;
                self.orders.id(slot)
            })
        })
    }

    /// Bytes held by preallocated order and level storage.
    pub fn bytes_reserved(&self) -> usize {
        let ladders: usize = self
            .symbols
            .iter()
            .flatten()
            .map(|s| s.bids.bytes_reserved() + s.asks.bytes_reserved())
            .sum();
        self.orders.bytes_reserved() + ladders
    }

    /// Applies one command and appends its events to `out`.
    pub fn apply(&mut self, command: &SequencedCommand, out: &mut Vec<Event>) {
        assert!(command.seq > self.last_seq, "sequence numbers increase");
        self.last_seq = command.seq;
        match command.command {
            Command::NewOrder {
                account,
                symbol,
                side,
                order_type,
                tif,
                price,
                qty,
                self_trade,
                tag,
            } => {
                let order = NewOrder {
                    account,
                    symbol,
                    side,
                    order_type,
                    tif,
                    price,
                    qty,
                    self_trade,
                    tag,
                };
                if let Err(code) = self.new_order(&order, out) {
                    out.push(reject(account, OrderId::NONE, code, tag));
                }
            }
            Command::Cancel {
                account,
                order_id,
                tag,
            } => {
                if let Err(code) = self.cancel(account, order_id, tag, out) {
                    out.push(reject(account, order_id, code, tag));
                }
            }
            Command::Replace {
                account,
                order_id,
                price,
                qty,
                tag,
            } => {
                if let Err(code) = self.replace(account, order_id, price, qty, tag, out) {
                    out.push(reject(account, order_id, code, tag));
                }
            }
            Command::ReplaceTotal {
                account,
                order_id,
                price,
                qty,
                tag,
            } => {
                let result = self.owned_resting(account, order_id).and_then(|slot| {
                    let filled = self.orders.nodes[slot as usize].filled;
                    match qty.checked_sub(filled) {
                        _ if qty == 0 => Err(RejectCode::InvalidQuantity),
                        Some(open) if open > 0 => {
                            self.replace_at(slot, account, order_id, price, open, tag, out)
                        }
                        // Filled up to the new total already: the rest goes.
                        _ => {
                            self.cancel_at(slot, tag, out);
                            Ok(())
                        }
                    }
                });
                if let Err(code) = result {
                    out.push(reject(account, order_id, code, tag));
                }
            }
            other => {
                if let Err((account, code, tag)) = self.apply_admin(other, out) {
                    out.push(reject(account, OrderId::NONE, code, tag));
                }
            }
        }
    }

    fn apply_admin(
        &mut self,
        command: Command,
        out: &mut Vec<Event>,
    ) -> Result<(), (AccountId, RejectCode, u64)> {
        let none = AccountId(0);
        match command {
            Command::CreateAccount {
                account,
                limits,
                self_trade,
            } => {
                self.ledger
                    .open_account(account, limits)
                    .map_err(|c| (account, c.into(), 0))?;
                let index = account.0 as usize;
                if self.accounts.len() <= index {
                    self.accounts.resize(index + 1, None);
                }
                let self_trade = match self_trade {
                    SelfTradePrevention::AccountDefault => SelfTradePrevention::CancelNewest,
                    mode => mode,
                };
                self.accounts[index] = Some(EngineAccount {
                    orders: AccountOrders::EMPTY,
                    self_trade,
                });
                out.push(Event::AccountCreated { account, limits });
            }
            Command::SetLimits { account, limits } => {
                self.ledger
                    .set_limits(account, limits)
                    .map_err(|c| (account, c.into(), 0))?;
                out.push(Event::LimitsSet { account, limits });
            }
            Command::DepositCash {
                account,
                amount,
                tag,
            } => {
                let available = self
                    .ledger
                    .deposit_cash(account, amount)
                    .map_err(|c| (account, c.into(), tag))?;
                out.push(Event::CashMoved {
                    account,
                    amount,
                    credit: true,
                    available,
                    tag,
                });
            }
            Command::WithdrawCash {
                account,
                amount,
                tag,
            } => {
                let available = self
                    .ledger
                    .withdraw_cash(account, amount)
                    .map_err(|c| (account, c.into(), tag))?;
                out.push(Event::CashMoved {
                    account,
                    amount,
                    credit: false,
                    available,
                    tag,
                });
            }
            Command::DepositShares {
                account,
                symbol,
                qty,
                tag,
            }
            | Command::WithdrawShares {
                account,
                symbol,
                qty,
                tag,
            } => {
                let credit = matches!(command, Command::DepositShares { .. });
                self.symbol(symbol)
                    .ok_or((account, RejectCode::UnknownSymbol, tag))?;
                let moved = if credit {
                    self.ledger.deposit_shares(account, symbol, qty)
                } else {
                    self.ledger.withdraw_shares(account, symbol, qty)
                };
                let available = moved.map_err(|c| (account, c.into(), tag))?;
                out.push(Event::SharesMoved {
                    account,
                    symbol,
                    qty,
                    credit,
                    available,
                    tag,
                });
            }
            Command::AddSymbol { symbol, spec } => {
                self.add_symbol(symbol, spec, out)
                    .map_err(|c| (none, c, 0))?;
            }
            Command::SetReferencePrice { symbol, price } => {
                self.set_reference_price(symbol, price, out)
                    .map_err(|c| (none, c, 0))?;
            }
            Command::Halt { symbol } | Command::Resume { symbol } => {
                let halt = matches!(command, Command::Halt { .. });
                let state = self.symbol_mut(symbol).map_err(|c| (none, c, 0))?;
                match (halt, state.halted) {
                    (true, true) => return Err((none, RejectCode::SymbolAlreadyHalted, 0)),
                    (false, false) => return Err((none, RejectCode::SymbolNotHalted, 0)),
                    _ => state.halted = halt,
                }
                out.push(Event::TradingStatus {
                    symbol,
                    halted: halt,
                });
            }
            Command::MassCancelAccount {
                account,
                symbol,
                tag,
            } => {
                if let Some(symbol) = symbol {
                    self.symbol(symbol)
                        .ok_or((account, RejectCode::UnknownSymbol, tag))?;
                }
                let count = self
                    .cancel_account_orders(account, symbol, CancelReason::MassCancel, tag, out)
                    .map_err(|c| (account, c, tag))?;
                out.push(Event::MassCancelled {
                    account: Some(account),
                    symbol,
                    count,
                    tag,
                });
            }
            Command::MassCancelSymbol { symbol, tag } => {
                let count = self
                    .cancel_symbol_orders(symbol, tag, out)
                    .map_err(|c| (none, c, tag))?;
                out.push(Event::MassCancelled {
                    account: None,
                    symbol: Some(symbol),
                    count,
                    tag,
                });
            }
            Command::SuspendAccount { account } => {
                self.ledger
                    .suspend(account)
                    .map_err(|c| (account, c.into(), 0))?;
                let cancelled = self
                    .cancel_account_orders(account, None, CancelReason::KillSwitch, 0, out)
                    .expect("suspended account exists");
                out.push(Event::AccountSuspended { account, cancelled });
            }
            Command::ReinstateAccount { account } => {
                self.ledger
                    .reinstate(account)
                    .map_err(|c| (account, c.into(), 0))?;
                out.push(Event::AccountReinstated { account });
            }
            Command::EndOfDay => {
                let expired = self.end_of_day(out);
                out.push(Event::DayEnded { expired });
            }
            Command::NewOrder { .. }
            | Command::Cancel { .. }
            | Command::Replace { .. }
            | Command::ReplaceTotal { .. } => {
                unreachable!("order commands are dispatched in apply")
            }
        }
        Ok(())
    }

    fn symbol_mut(&mut self, symbol: SymbolId) -> Result<&mut SymbolState, RejectCode> {
        self.symbols
            .get_mut(symbol.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(RejectCode::UnknownSymbol)
    }

    fn add_symbol(
        &mut self,
        symbol: SymbolId,
        spec: SymbolSpec,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        if symbol.0 >= MAX_SYMBOLS {
            return Err(RejectCode::InvalidSymbolSpec);
        }
        if self.symbol(symbol).is_some() {
            return Err(RejectCode::SymbolExists);
        }
        let (band_low, band_high) = band(&spec)?;
        let levels = (band_high - band_low) / spec.tick_size + 1;
        if levels > self.config.max_ladder_levels as u64 {
            return Err(RejectCode::InvalidSymbolSpec);
        }
        let index = symbol.0 as usize;
        if self.symbols.len() <= index {
            self.symbols.resize(index + 1, None);
        }
        self.symbols[index] = Some(SymbolState {
            spec,
            band_low,
            band_high,
            halted: false,
            base_price: band_low,
            bids: Ladder::new(levels as usize, Best::Highest),
            asks: Ladder::new(levels as usize, Best::Lowest),
        });
        out.push(Event::SymbolAdded {
            symbol,
            band_low,
            band_high,
        });
        Ok(())
    }

    /// Moves the band. The ladders are rebuilt to cover the new band and
    /// every order still resting outside it.
    fn set_reference_price(
        &mut self,
        symbol: SymbolId,
        price: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        let max_levels = self.config.max_ladder_levels as u64;
        let state = self.symbol_mut(symbol)?;
        let spec = SymbolSpec {
            reference_price: price,
            ..state.spec
        };
        let (band_low, band_high) = band(&spec).map_err(|_| RejectCode::InvalidPrice)?;
        let mut low = band_low;
        let mut high = band_high;
        for side in [Side::Buy, Side::Sell] {
            let ladder = state.ladder(side);
            for index in ladder
                .best()
                .into_iter()
                .chain(ladder.iter_best_first().last())
            {
                let resting = state.price_at(index);
                low = low.min(resting);
                high = high.max(resting);
            }
        }
        let levels = (high - low) / spec.tick_size + 1;
        if levels > max_levels {
            return Err(RejectCode::PriceOutsideBand);
        }
        let shift = (state.base_price as i128 - low as i128) / spec.tick_size as i128;
        state.bids = state.bids.rebase(levels as usize, shift as i64);
        state.asks = state.asks.rebase(levels as usize, shift as i64);
        state.base_price = low;
        state.spec = spec;
        state.band_low = band_low;
        state.band_high = band_high;
        out.push(Event::ReferencePriceSet {
            symbol,
            price,
            band_low,
            band_high,
        });
        Ok(())
    }

    fn engine_account(&self, account: AccountId) -> Result<&EngineAccount, RejectCode> {
        self.accounts
            .get(account.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(RejectCode::UnknownAccount)
    }

    fn new_order(&mut self, order: &NewOrder, out: &mut Vec<Event>) -> Result<(), RejectCode> {
        self.engine_account(order.account)?;
        let state = self.symbol(order.symbol).ok_or(RejectCode::UnknownSymbol)?;
        if state.halted {
            return Err(RejectCode::SymbolHalted);
        }
        if order.qty == 0 || !multiple_of(order.qty, state.spec.lot_size) {
            return Err(RejectCode::InvalidQuantity);
        }
        let price = match order.order_type {
            OrderType::Limit => {
                check_price(state, order.price)?;
                order.price
            }
            OrderType::Market => match order.side {
                Side::Buy => state.band_high,
                Side::Sell => state.band_low,
            },
        };
        if order.order_type == OrderType::Limit && self.orders.is_large() {
            // Where a remainder would rest: start loading the level's last
            // order and the account's last order, which resting writes.
            // At a million resting orders both are usually cold, and the
            // loads now overlap the reserve, the acknowledgement and the
            // match instead of stalling the rest.
            let index = state.index_of(price);
            let tail = state.ladder(order.side).levels[index as usize].tail;
            let account_tail = self.accounts[order.account.0 as usize]
                .as_ref()
                .map_or(NIL, |a| a.orders.tail);
            self.orders.prefetch_link(tail, false);
            self.orders.prefetch_link(account_tail, true);
        }
        if self.orders.is_full() {
            return Err(RejectCode::BookCapacityExceeded);
        }
        let ticket = state.ticket(order.account.0, order.symbol, order.side, price, order.qty);
        self.ledger.reserve(&ticket)?;

        // Market orders never rest: whatever their time in force, the
        // remainder is cancelled like an IOC.
        let tif = match (order.order_type, order.tif) {
            (OrderType::Market, TimeInForce::Day | TimeInForce::Gtc) => TimeInForce::Ioc,
            (_, tif) => tif,
        };
        let (slot, order_id) = self.orders.alloc(OrderNode {
            price,
            leaves: order.qty,
            filled: 0,
            account: order.account.0,
            symbol: order.symbol.0,
            side: order.side as u8,
            tif: tif as u8,
            self_trade: order.self_trade as u8,
            ..OrderNode::FREE
        });
        out.push(Event::OrderAccepted {
            order_id,
            account: order.account,
            symbol: order.symbol,
            side: order.side,
            order_type: order.order_type,
            tif: order.tif,
            price: order.price,
            qty: order.qty,
            tag: order.tag,
        });

        if tif == TimeInForce::Fok && !self.fok_fillable(slot) {
            self.release_and_free(slot, CancelReason::FillOrKill, order.tag, out);
            return Ok(());
        }
        let end = self.match_taker(slot, out);
        self.finish_taker(slot, end, order.tag, out);
        Ok(())
    }

    fn self_trade_mode(&self, node: &OrderNode) -> SelfTradePrevention {
        match SelfTradePrevention::from_u8(node.self_trade) {
            Some(SelfTradePrevention::AccountDefault) | None => {
                self.accounts[node.account as usize]
                    .expect("order of a known account")
                    .self_trade
            }
            Some(mode) => mode,
        }
    }

    /// Dry run of matching for a fill-or-kill order.
    fn fok_fillable(&self, slot: u32) -> bool {
        let taker = self.orders.nodes[slot as usize];
        let side = side_of(&taker);
        let mode = self.self_trade_mode(&taker);
        let state = self.symbol(SymbolId(taker.symbol)).expect("known symbol");
        let ladder = state.ladder(side.opposite());
        let mut available = 0u64;
        for index in ladder.iter_best_first() {
            if !crosses(side, taker.price, state.price_at(index)) {
                break;
            }
            let mut cursor = ladder.levels[index as usize].head;
            while cursor != NIL {
                let maker = &self.orders.nodes[cursor as usize];
                if maker.account == taker.account {
                    if mode != SelfTradePrevention::CancelOldest {
                        return false;
                    }
                } else {
                    available += maker.leaves;
                    if available >= taker.leaves {
                        return true;
                    }
                }
                cursor = maker.next;
            }
        }
        false
    }

    /// Matches the order in `slot` (live, on no level) against the
    /// opposite side, up to its price.
    fn match_taker(&mut self, slot: u32, out: &mut Vec<Event>) -> MatchEnd {
        let taker = self.orders.nodes[slot as usize];
        let side = side_of(&taker);
        let mode = self.self_trade_mode(&taker);
        let symbol = SymbolId(taker.symbol);
        loop {
            if self.orders.nodes[slot as usize].leaves == 0 {
                return MatchEnd::Filled;
            }
            let state = self.symbols[symbol.0 as usize]
                .as_ref()
                .expect("known symbol");
            let Some(index) = state.ladder(side.opposite()).best() else {
                return MatchEnd::Exhausted;
            };
            let level_price = state.price_at(index);
            if !crosses(side, taker.price, level_price) {
                return MatchEnd::Exhausted;
            }
            let stopped = self.match_level(slot, index, level_price, mode, out);
            let state = self.symbols[symbol.0 as usize]
                .as_ref()
                .expect("known symbol");
            out.push(state.level_event(symbol, side.opposite(), index));
            if stopped {
                return MatchEnd::SelfTrade;
            }
        }
    }

    /// Trades the taker against one level, in time priority. Returns true
    /// when self-trade prevention stops the taker.
    fn match_level(
        &mut self,
        taker_slot: u32,
        index: u32,
        price: u64,
        mode: SelfTradePrevention,
        out: &mut Vec<Event>,
    ) -> bool {
        let taker = self.orders.nodes[taker_slot as usize];
        let side = side_of(&taker);
        let symbol = SymbolId(taker.symbol);
        let mut cursor = self.symbols[symbol.0 as usize]
            .as_ref()
            .expect("known symbol")
            .ladder(side.opposite())
            .levels[index as usize]
            .head;
        while cursor != NIL && self.orders.nodes[taker_slot as usize].leaves > 0 {
            let maker_slot = cursor;
            cursor = self.orders.nodes[maker_slot as usize].next;
            if self.orders.nodes[maker_slot as usize].account == taker.account {
                match mode {
                    SelfTradePrevention::CancelOldest => {
                        self.remove_resting(maker_slot, CancelReason::SelfTrade, 0, out);
                    }
                    SelfTradePrevention::CancelBoth => {
                        self.remove_resting(maker_slot, CancelReason::SelfTrade, 0, out);
                        return true;
                    }
                    SelfTradePrevention::CancelNewest | SelfTradePrevention::AccountDefault => {
                        return true;
                    }
                }
                continue;
            }
            self.execute(taker_slot, maker_slot, index, price, out);
        }
        false
    }

    /// One fill between the taker and a resting maker at `price`.
    fn execute(
        &mut self,
        taker_slot: u32,
        maker_slot: u32,
        index: u32,
        price: u64,
        out: &mut Vec<Event>,
    ) {
        if self.orders.is_large()
            && self.orders.nodes[maker_slot as usize].leaves
                <= self.orders.nodes[taker_slot as usize].leaves
        {
            // The maker leaves the book below: its neighbours get written.
            self.orders.prefetch_neighbours(maker_slot);
        }
        let nodes = &mut self.orders.nodes;
        let taker = nodes[taker_slot as usize];
        let maker = nodes[maker_slot as usize];
        let qty = taker.leaves.min(maker.leaves);
        let side = side_of(&taker);
        let symbol = SymbolId(taker.symbol);
        let state = self.symbols[symbol.0 as usize]
            .as_mut()
            .expect("known symbol");

        let (buyer, seller) = match side {
            Side::Buy => (&taker, &maker),
            Side::Sell => (&maker, &taker),
        };
        let (buyer_fee, seller_fee) = match side {
            Side::Buy => (
                state.spec.taker_fee_per_share,
                state.spec.maker_fee_per_share,
            ),
            Side::Sell => (
                state.spec.maker_fee_per_share,
                state.spec.taker_fee_per_share,
            ),
        };
        let taker_leaves = taker.leaves - qty;
        let maker_leaves = maker.leaves - qty;
        let settlement = Settlement {
            symbol,
            qty,
            price,
            buyer: AccountId(buyer.account),
            buyer_reserve_per_share: state.reserve_per_share(Side::Buy, buyer.price),
            buyer_fee_per_share: buyer_fee,
            seller: AccountId(seller.account),
            seller_fee_per_share: seller_fee,
            buyer_order_closed: if side == Side::Buy {
                taker_leaves == 0
            } else {
                maker_leaves == 0
            },
            seller_order_closed: if side == Side::Sell {
                taker_leaves == 0
            } else {
                maker_leaves == 0
            },
        };
        self.ledger.settle(&settlement);
        let (taker_fee, maker_fee) = match side {
            Side::Buy => (settlement.buyer_fee(), settlement.seller_fee()),
            Side::Sell => (settlement.seller_fee(), settlement.buyer_fee()),
        };

        nodes[taker_slot as usize].leaves = taker_leaves;
        nodes[taker_slot as usize].filled += qty;
        let level = &mut state.ladder_mut(side.opposite()).levels[index as usize];
        level.qty -= qty;
        nodes[maker_slot as usize].leaves = maker_leaves;
        nodes[maker_slot as usize].filled += qty;

        let match_id = self.next_match_id;
        self.next_match_id += 1;
        out.push(Event::Trade {
            match_id,
            symbol,
            price,
            qty,
            aggressor: side,
            maker_order: OrderId::new(maker_slot, maker.generation),
            maker_account: AccountId(maker.account),
            maker_leaves,
            maker_fee,
            taker_order: OrderId::new(taker_slot, taker.generation),
            taker_account: AccountId(taker.account),
            taker_leaves,
            taker_fee,
        });
        if maker_leaves == 0 {
            // Fully filled: off its level and account list; the ledger
            // already closed it.
            state
                .ladder_mut(side.opposite())
                .unlink(nodes, index, maker_slot);
            self.accounts[maker.account as usize]
                .as_mut()
                .expect("known account")
                .orders
                .unlink(nodes, maker_slot);
            self.orders.free(maker_slot);
        }
    }

    /// What happens to a taker after matching: rest, or cancel the rest.
    fn finish_taker(&mut self, slot: u32, end: MatchEnd, tag: u64, out: &mut Vec<Event>) {
        let node = self.orders.nodes[slot as usize];
        let tif = TimeInForce::from_u8(node.tif).expect("stored tif is valid");
        match end {
            MatchEnd::Filled => {
                if node.has(FLAG_IN_ACCOUNT) {
                    account_orders(&mut self.accounts, node.account)
                        .unlink(&mut self.orders.nodes, slot);
                }
                self.orders.free(slot);
            }
            MatchEnd::SelfTrade => self.release_and_free(slot, CancelReason::SelfTrade, tag, out),
            MatchEnd::Exhausted => match tif {
                TimeInForce::Ioc | TimeInForce::Fok => {
                    self.release_and_free(slot, CancelReason::ImmediateRemainder, tag, out)
                }
                TimeInForce::Day | TimeInForce::Gtc => self.rest(slot, out),
            },
        }
    }

    /// Puts a live order at the back of its price level.
    fn rest(&mut self, slot: u32, out: &mut Vec<Event>) {
        let node = self.orders.nodes[slot as usize];
        let side = side_of(&node);
        let symbol = SymbolId(node.symbol);
        if !node.has(FLAG_IN_ACCOUNT) {
            account_orders(&mut self.accounts, node.account)
                .push_back(&mut self.orders.nodes, slot);
        }
        let state = self.symbols[symbol.0 as usize]
            .as_mut()
            .expect("known symbol");
        let index = state.index_of(node.price);
        state
            .ladder_mut(side)
            .push_back(&mut self.orders.nodes, index, slot);
        out.push(state.level_event(symbol, side, index));
    }

    /// Removes a resting order from the book with a cancel event. The
    /// caller emits the level update.
    #[inline]
    fn remove_resting(
        &mut self,
        slot: u32,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> u32 {
        let node = self.orders.nodes[slot as usize];
        let side = side_of(&node);
        let state = self.symbols[node.symbol as usize]
            .as_mut()
            .expect("known symbol");
        let index = state.index_of(node.price);
        state
            .ladder_mut(side)
            .unlink(&mut self.orders.nodes, index, slot);
        self.release_and_free(slot, reason, tag, out);
        index
    }

    /// Cancels the open quantity of an order that is on no level (a
    /// taker's remainder, or a resting order already unlinked), releases
    /// its hold and frees it.
    #[inline]
    fn release_and_free(
        &mut self,
        slot: u32,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) {
        let (order_id, node) = self.retire(slot);
        out.push(Event::OrderCancelled {
            order_id,
            account: AccountId(node.account),
            symbol: SymbolId(node.symbol),
            side: side_of(&node),
            qty: node.leaves,
            reason,
            tag,
        });
    }

    /// Ends an order that is on no price level: off its account list, its
    /// hold released, its slot freed. Returns its id and last state.
    #[inline]
    fn retire(&mut self, slot: u32) -> (OrderId, OrderNode) {
        let node = self.orders.nodes[slot as usize];
        assert!(!node.has(FLAG_IN_LEVEL));
        let symbol = SymbolId(node.symbol);
        if node.has(FLAG_IN_ACCOUNT) {
            account_orders(&mut self.accounts, node.account).unlink(&mut self.orders.nodes, slot);
        }
        let state = self.symbols[symbol.0 as usize]
            .as_ref()
            .expect("known symbol");
        let ticket = state.ticket(
            node.account,
            symbol,
            side_of(&node),
            node.price,
            node.leaves,
        );
        self.ledger.release(&ticket, true);
        self.orders.free(slot);
        (OrderId::new(slot, node.generation), node)
    }

    /// The slot of a resting order `account` may act on.
    #[inline]
    fn owned_resting(&self, account: AccountId, order_id: OrderId) -> Result<u32, RejectCode> {
        self.engine_account(account)?;
        let slot = self.orders.find(order_id).ok_or(RejectCode::UnknownOrder)?;
        let node = &self.orders.nodes[slot as usize];
        assert!(
            node.has(FLAG_IN_LEVEL),
            "between commands every live order rests"
        );
        if node.account != account.0 {
            return Err(RejectCode::NotOrderOwner);
        }
        Ok(slot)
    }

    fn cancel(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        let slot = self.owned_resting(account, order_id)?;
        self.cancel_at(slot, tag, out);
        Ok(())
    }

    /// Cancels the owned resting order in `slot` on request.
    fn cancel_at(&mut self, slot: u32, tag: u64, out: &mut Vec<Event>) {
        if self.orders.is_large() {
            self.orders.prefetch_neighbours(slot);
        }
        self.cancel_resting(slot, CancelReason::Requested, tag, out);
    }

    /// Cancels a resting order with the same effects and events as
    /// [`Engine::cancel_with_level`], in an order chosen for a large book.
    /// The four writes to the order's neighbours (its level queue and its
    /// account list), which at a million resting orders usually miss the
    /// cache, come last: everything else, including the events, is
    /// written first, so that the stores waiting for those lines do not
    /// hold up the rest of this command or the start of the next one.
    fn cancel_resting(&mut self, slot: u32, reason: CancelReason, tag: u64, out: &mut Vec<Event>) {
        let node = self.orders.nodes[slot as usize];
        assert!(node.has(FLAG_IN_LEVEL) && node.has(FLAG_IN_ACCOUNT));
        let side = side_of(&node);
        let symbol = SymbolId(node.symbol);
        let state = self.symbols[node.symbol as usize]
            .as_mut()
            .expect("known symbol");
        let index = state.index_of(node.price);
        let ticket = state.ticket(node.account, symbol, side, node.price, node.leaves);
        state
            .ladder_mut(side)
            .remove_from_level(index, node.prev, node.next, node.leaves);
        let state = self.symbols[node.symbol as usize]
            .as_ref()
            .expect("known symbol");
        out.push(Event::OrderCancelled {
            order_id: OrderId::new(slot, node.generation),
            account: AccountId(node.account),
            symbol,
            side,
            qty: node.leaves,
            reason,
            tag,
        });
        out.push(state.level_event(symbol, side, index));
        self.ledger.release(&ticket, true);
        let orders = account_orders(&mut self.accounts, node.account);
        if node.account_prev == NIL {
            orders.head = node.account_next;
        }
        if node.account_next == NIL {
            orders.tail = node.account_prev;
        }
        let stored = &mut self.orders.nodes[slot as usize];
        stored.flags = FLAG_LIVE;
        self.orders.free(slot);
        let nodes = &mut self.orders.nodes;
        if node.prev != NIL {
            nodes[node.prev as usize].next = node.next;
        }
        if node.next != NIL {
            nodes[node.next as usize].prev = node.prev;
        }
        if node.account_prev != NIL {
            nodes[node.account_prev as usize].account_next = node.account_next;
        }
        if node.account_next != NIL {
            nodes[node.account_next as usize].account_prev = node.account_prev;
        }
    }

    #[inline]
    fn cancel_with_level(
        &mut self,
        slot: u32,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) {
        let node = self.orders.nodes[slot as usize];
        let index = self.remove_resting(slot, reason, tag, out);
        let state = self.symbols[node.symbol as usize]
            .as_ref()
            .expect("known symbol");
        out.push(state.level_event(SymbolId(node.symbol), side_of(&node), index));
    }

    fn replace(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        price: u64,
        qty: u64,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        let slot = self.owned_resting(account, order_id)?;
        self.replace_at(slot, account, order_id, price, qty, tag, out)
    }

    /// Replaces the owned resting order in `slot` (`order_id`).
    #[allow(clippy::too_many_arguments)]
    fn replace_at(
        &mut self,
        slot: u32,
        account: AccountId,
        order_id: OrderId,
        price: u64,
        qty: u64,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        let node = self.orders.nodes[slot as usize];
        let side = side_of(&node);
        let symbol = SymbolId(node.symbol);
        let state = self.symbol(symbol).expect("known symbol");
        if state.halted {
            return Err(RejectCode::SymbolHalted);
        }
        if qty == 0 || !multiple_of(qty, state.spec.lot_size) {
            return Err(RejectCode::InvalidQuantity);
        }
        check_price(state, price)?;
        if price != node.price && self.orders.is_large() {
            // The order moves: start loading what unlinking it writes
            // and the last order of the level it may rest at.
            self.orders.prefetch_level_neighbours(slot);
            let tail = state.ladder(side).levels[state.index_of(price) as usize].tail;
            self.orders.prefetch_link(tail, false);
        }
        let old = state.ticket(node.account, symbol, side, node.price, node.leaves);
        let new = state.ticket(node.account, symbol, side, price, qty);
        self.ledger.re_reserve(&old, &new)?;

        let priority_kept = price == node.price && qty <= node.leaves;
        out.push(Event::OrderReplaced {
            order_id,
            account,
            symbol,
            side,
            price,
            qty,
            priority_kept,
            tag,
        });
        let state = self.symbols[symbol.0 as usize]
            .as_mut()
            .expect("known symbol");
        let old_index = state.index_of(node.price);
        if priority_kept {
            state.ladder_mut(side).levels[old_index as usize].qty -= node.leaves - qty;
            self.orders.nodes[slot as usize].leaves = qty;
            out.push(state.level_event(symbol, side, old_index));
            return Ok(());
        }
        if price == node.price {
            // Back of the same level.
            state
                .ladder_mut(side)
                .unlink(&mut self.orders.nodes, old_index, slot);
            out.push(state.level_event(symbol, side, old_index));
            let stored = &mut self.orders.nodes[slot as usize];
            stored.leaves = qty;
            let end = self.match_taker(slot, out);
            self.finish_taker(slot, end, tag, out);
            return Ok(());
        }
        // A move to another level. As in `cancel_resting`, the writes to
        // the old neighbours, which usually miss the cache in a large
        // book, come last. Until then nothing reads them: matching only
        // touches the other side, and the order rests on another level.
        state
            .ladder_mut(side)
            .remove_from_level(old_index, node.prev, node.next, node.leaves);
        out.push(state.level_event(symbol, side, old_index));
        let stored = &mut self.orders.nodes[slot as usize];
        stored.flags &= !FLAG_IN_LEVEL;
        stored.prev = NIL;
        stored.next = NIL;
        stored.price = price;
        stored.leaves = qty;
        let end = self.match_taker(slot, out);
        self.finish_taker(slot, end, tag, out);
        let nodes = &mut self.orders.nodes;
        if node.prev != NIL {
            nodes[node.prev as usize].next = node.next;
        }
        if node.next != NIL {
            nodes[node.next as usize].prev = node.prev;
        }
        Ok(())
    }

    /// Cancels an account's resting orders (optionally of one symbol) in
    /// the order they first rested.
    fn cancel_account_orders(
        &mut self,
        account: AccountId,
        symbol: Option<SymbolId>,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> Result<u32, RejectCode> {
        let mut cursor = self.engine_account(account)?.orders.head;
        let mut count = 0;
        while cursor != NIL {
            let slot = cursor;
            let node = self.orders.nodes[slot as usize];
            cursor = node.account_next;
            if symbol.is_some_and(|s| s.0 != node.symbol) {
                continue;
            }
            self.cancel_with_level(slot, reason, tag, out);
            count += 1;
        }
        Ok(count)
    }

    /// Cancels every resting order of a symbol: bids best to worst, then
    /// asks, each level in time priority.
    fn cancel_symbol_orders(
        &mut self,
        symbol: SymbolId,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> Result<u32, RejectCode> {
        self.symbol(symbol).ok_or(RejectCode::UnknownSymbol)?;
        let mut count = 0;
        for side in [Side::Buy, Side::Sell] {
            loop {
                let state = self.symbols[symbol.0 as usize]
                    .as_ref()
                    .expect("known symbol");
                let ladder = state.ladder(side);
                let Some(index) = ladder.best() else { break };
                let head = ladder.levels[index as usize].head;
                self.cancel_with_level(head, CancelReason::MassCancel, tag, out);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Expires every DAY order: symbols in id order, bids then asks, best
    /// level first, each level in time priority.
    fn end_of_day(&mut self, out: &mut Vec<Event>) -> u32 {
        let mut expired = 0;
        for symbol_index in 0..self.symbols.len() {
            if self.symbols[symbol_index].is_none() {
                continue;
            }
            for side in [Side::Buy, Side::Sell] {
                let mut level = self.symbols[symbol_index]
                    .as_ref()
                    .expect("present")
                    .ladder(side)
                    .best();
                while let Some(index) = level {
                    expired += self.expire_level(symbol_index, side, index, out);
                    // The level may be empty now, so step from its index.
                    level = self.symbols[symbol_index]
                        .as_ref()
                        .expect("present")
                        .ladder(side)
                        .next_worse(index);
                }
            }
        }
        expired
    }

    fn expire_level(
        &mut self,
        symbol_index: usize,
        side: Side,
        index: u32,
        out: &mut Vec<Event>,
    ) -> u32 {
        let symbol = SymbolId(symbol_index as u32);
        let mut cursor = self.symbols[symbol_index]
            .as_ref()
            .expect("present")
            .ladder(side)
            .levels[index as usize]
            .head;
        let mut expired = 0;
        while cursor != NIL {
            let slot = cursor;
            let node = self.orders.nodes[slot as usize];
            cursor = node.next;
            if node.tif != TimeInForce::Day as u8 {
                continue;
            }
            self.symbols[symbol_index]
                .as_mut()
                .expect("present")
                .ladder_mut(side)
                .unlink(&mut self.orders.nodes, index, slot);
            let (order_id, node) = self.retire(slot);
            out.push(Event::OrderExpired {
                order_id,
                account: AccountId(node.account),
                symbol,
                side,
                qty: node.leaves,
            });
            let state = self.symbols[symbol_index].as_ref().expect("present");
            out.push(state.level_event(symbol, side, index));
            expired += 1;
        }
        expired
    }
}

/// The fields of a new-order command.
struct NewOrder {
    account: AccountId,
    symbol: SymbolId,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    price: u64,
    qty: u64,
    self_trade: SelfTradePrevention,
    tag: u64,
}

fn reject(account: AccountId, order_id: OrderId, code: RejectCode, tag: u64) -> Event {
    Event::Rejected {
        account,
        order_id,
        code,
        tag,
    }
}

fn check_price(state: &SymbolState, price: u64) -> Result<(), RejectCode> {
    if price == 0 || !multiple_of(price, state.spec.tick_size) {
        return Err(RejectCode::InvalidPrice);
    }
    if price < state.band_low || price > state.band_high {
        return Err(RejectCode::PriceOutsideBand);
    }
    Ok(())
}

fn account_orders(accounts: &mut [Option<EngineAccount>], account: u32) -> &mut AccountOrders {
    &mut accounts[account as usize]
        .as_mut()
        .expect("order of a known account")
        .orders
}
