//! A naive reference engine: the same rules as `brokerx_engine::Engine`,
//! written the plainest way (vectors of orders, linear scans, sorting,
//! BTreeMaps, u128 arithmetic) so that its correctness is easy to audit.
//! Order ids are a plain counter; the property test maps them to the real
//! engine's ids.

#![allow(dead_code)]

use brokerx_engine::{
    AccountId, CancelReason, Command, Event, Limits, OrderId, OrderType, RejectCode,
    SelfTradePrevention, Side, SymbolId, SymbolSpec, TimeInForce,
};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct ROrder {
    pub id: u64,
    pub account: u32,
    pub symbol: u32,
    pub side: Side,
    pub price: u64,
    pub leaves: u64,
    pub filled: u64,
    pub tif: TimeInForce,
    pub stp: SelfTradePrevention,
    /// Time priority on its level.
    pub time: u64,
    /// When the order first rested (account-list order).
    pub first_rested: u64,
}

#[derive(Clone, Debug)]
pub struct RSymbol {
    pub spec: SymbolSpec,
    pub band_low: u64,
    pub band_high: u64,
    pub halted: bool,
    pub resting: Vec<ROrder>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RAccount {
    pub cash: (u64, u64),
    pub positions: BTreeMap<u32, (u64, u64)>,
    pub limits: Limits,
    pub open_orders: u32,
    pub suspended: bool,
    pub stp: Option<SelfTradePrevention>,
}

pub struct Model {
    pub symbols: BTreeMap<u32, RSymbol>,
    pub accounts: BTreeMap<u32, RAccount>,
    pub max_orders: u32,
    pub max_levels: u64,
    pub next_id: u64,
    pub clock: u64,
    pub next_match: u64,
    pub cash_supply: u64,
    pub share_supply: BTreeMap<u32, u64>,
    pub fees: u64,
}

type R<T> = Result<T, RejectCode>;

fn band(spec: &SymbolSpec) -> R<(u64, u64)> {
    let bad = Err(RejectCode::InvalidSymbolSpec);
    if spec.tick_size == 0 || spec.lot_size == 0 || spec.band_bps == 0 || spec.band_bps > 10_000 {
        return bad;
    }
    if spec.reference_price == 0
        || !spec.reference_price.is_multiple_of(spec.tick_size)
        || spec.reference_price > u64::MAX / 4
    {
        return bad;
    }
    let width = (spec.reference_price as u128 * spec.band_bps as u128 / 10_000) as u64;
    let tick = spec.tick_size;
    let low = (spec.reference_price - width).div_ceil(tick) * tick;
    let high = (spec.reference_price + width) / tick * tick;
    Ok((low.max(tick), high))
}

fn max_fee(spec: &SymbolSpec) -> u64 {
    spec.maker_fee_per_share.max(spec.taker_fee_per_share)
}

fn crosses(taker: Side, limit: u64, price: u64) -> bool {
    match taker {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

impl RSymbol {
    /// Resting orders of `side` in priority order.
    fn sorted(&self, side: Side) -> Vec<ROrder> {
        let mut orders: Vec<ROrder> = self
            .resting
            .iter()
            .filter(|o| o.side == side)
            .cloned()
            .collect();
        orders.sort_by(|a, b| {
            let by_price = match side {
                Side::Buy => b.price.cmp(&a.price),
                Side::Sell => a.price.cmp(&b.price),
            };
            by_price.then(a.time.cmp(&b.time))
        });
        orders
    }

    fn level(&self, symbol: u32, side: Side, price: u64) -> Event {
        let at: Vec<&ROrder> = self
            .resting
            .iter()
            .filter(|o| o.side == side && o.price == price)
            .collect();
        Event::BookLevel {
            symbol: SymbolId(symbol),
            side,
            price,
            qty: at.iter().map(|o| o.leaves).sum(),
            orders: at.len() as u32,
        }
    }

    fn take(&mut self, id: u64) -> ROrder {
        let at = self
            .resting
            .iter()
            .position(|o| o.id == id)
            .expect("resting");
        self.resting.remove(at)
    }
}

enum End {
    Filled,
    Exhausted,
    SelfTrade,
}

impl Model {
    pub fn new(max_orders: u32, max_levels: u64) -> Model {
        Model {
            symbols: BTreeMap::new(),
            accounts: BTreeMap::new(),
            max_orders,
            max_levels,
            next_id: 1,
            clock: 0,
            next_match: 1,
            cash_supply: 0,
            share_supply: BTreeMap::new(),
            fees: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn live(&self) -> usize {
        self.symbols.values().map(|s| s.resting.len()).sum()
    }

    fn account(&mut self, id: AccountId) -> R<&mut RAccount> {
        self.accounts
            .get_mut(&id.0)
            .ok_or(RejectCode::UnknownAccount)
    }

    pub fn apply(&mut self, command: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        if let Err((account, order_id, code, tag)) = self.dispatch(command, &mut out) {
            out.push(Event::Rejected {
                account,
                order_id,
                code,
                tag,
            });
        }
        out
    }

    fn dispatch(
        &mut self,
        command: &Command,
        out: &mut Vec<Event>,
    ) -> Result<(), (AccountId, OrderId, RejectCode, u64)> {
        let none = AccountId(0);
        let no = OrderId::NONE;
        match *command {
            Command::CreateAccount {
                account,
                limits,
                self_trade,
            } => {
                if account.0 >= brokerx_risk::MAX_ACCOUNTS {
                    return Err((account, no, RejectCode::AccountIdOutOfRange, 0));
                }
                if self.accounts.contains_key(&account.0) {
                    return Err((account, no, RejectCode::AccountExists, 0));
                }
                let stp = match self_trade {
                    SelfTradePrevention::AccountDefault => SelfTradePrevention::CancelNewest,
                    mode => mode,
                };
                self.accounts.insert(
                    account.0,
                    RAccount {
                        limits,
                        stp: Some(stp),
                        ..Default::default()
                    },
                );
                out.push(Event::AccountCreated { account, limits });
            }
            Command::SetLimits { account, limits } => {
                self.account(account)
                    .map_err(|c| (account, no, c, 0))?
                    .limits = limits;
                out.push(Event::LimitsSet { account, limits });
            }
            Command::DepositCash {
                account,
                amount,
                tag,
            } => {
                let e = |c| (account, no, c, tag);
                if amount == 0 {
                    return Err(e(RejectCode::InvalidAmount));
                }
                let supply = self
                    .cash_supply
                    .checked_add(amount)
                    .ok_or(e(RejectCode::AmountOverflow))?;
                let a = self.account(account).map_err(e)?;
                a.cash.0 += amount;
                let available = a.cash.0;
                self.cash_supply = supply;
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
                let e = |c| (account, no, c, tag);
                if amount == 0 {
                    return Err(e(RejectCode::InvalidAmount));
                }
                let a = self.account(account).map_err(e)?;
                if a.cash.0 < amount {
                    return Err(e(RejectCode::InsufficientFunds));
                }
                a.cash.0 -= amount;
                let available = a.cash.0;
                self.cash_supply -= amount;
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
                let e = |c| (account, no, c, tag);
                if !self.symbols.contains_key(&symbol.0) {
                    return Err(e(RejectCode::UnknownSymbol));
                }
                if qty == 0 {
                    return Err(e(RejectCode::InvalidAmount));
                }
                let supply = *self.share_supply.get(&symbol.0).unwrap_or(&0);
                let new_supply = if credit {
                    supply
                        .checked_add(qty)
                        .ok_or(e(RejectCode::AmountOverflow))?
                } else {
                    supply.wrapping_sub(qty)
                };
                let a = self.account(account).map_err(e)?;
                let position = a.positions.entry(symbol.0).or_default();
                if credit {
                    position.0 += qty;
                } else {
                    if position.0 < qty {
                        return Err(e(RejectCode::InsufficientShares));
                    }
                    position.0 -= qty;
                }
                let available = position.0;
                self.share_supply.insert(symbol.0, new_supply);
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
                let e = |c| (none, no, c, 0);
                if symbol.0 >= brokerx_risk::MAX_SYMBOLS {
                    return Err(e(RejectCode::InvalidSymbolSpec));
                }
                if self.symbols.contains_key(&symbol.0) {
                    return Err(e(RejectCode::SymbolExists));
                }
                let (band_low, band_high) = band(&spec).map_err(e)?;
                if (band_high - band_low) / spec.tick_size + 1 > self.max_levels {
                    return Err(e(RejectCode::InvalidSymbolSpec));
                }
                self.symbols.insert(
                    symbol.0,
                    RSymbol {
                        spec,
                        band_low,
                        band_high,
                        halted: false,
                        resting: Vec::new(),
                    },
                );
                out.push(Event::SymbolAdded {
                    symbol,
                    band_low,
                    band_high,
                });
            }
            Command::SetReferencePrice { symbol, price } => {
                let e = |c| (none, no, c, 0);
                let max_levels = self.max_levels;
                let s = self
                    .symbols
                    .get_mut(&symbol.0)
                    .ok_or(e(RejectCode::UnknownSymbol))?;
                let spec = SymbolSpec {
                    reference_price: price,
                    ..s.spec
                };
                let (band_low, band_high) = band(&spec).map_err(|_| e(RejectCode::InvalidPrice))?;
                let low = s
                    .resting
                    .iter()
                    .map(|o| o.price)
                    .chain([band_low])
                    .min()
                    .unwrap();
                let high = s
                    .resting
                    .iter()
                    .map(|o| o.price)
                    .chain([band_high])
                    .max()
                    .unwrap();
                if (high - low) / spec.tick_size + 1 > max_levels {
                    return Err(e(RejectCode::PriceOutsideBand));
                }
                s.spec = spec;
                s.band_low = band_low;
                s.band_high = band_high;
                out.push(Event::ReferencePriceSet {
                    symbol,
                    price,
                    band_low,
                    band_high,
                });
            }
            Command::Halt { symbol } | Command::Resume { symbol } => {
                let halt = matches!(command, Command::Halt { .. });
                let e = |c| (none, no, c, 0);
                let s = self
                    .symbols
                    .get_mut(&symbol.0)
                    .ok_or(e(RejectCode::UnknownSymbol))?;
                if halt && s.halted {
                    return Err(e(RejectCode::SymbolAlreadyHalted));
                }
                if !halt && !s.halted {
                    return Err(e(RejectCode::SymbolNotHalted));
                }
                s.halted = halt;
                out.push(Event::TradingStatus {
                    symbol,
                    halted: halt,
                });
            }
            Command::NewOrder { account, tag, .. } => {
                self.new_order(command, out)
                    .map_err(|c| (account, no, c, tag))?;
            }
            Command::Cancel {
                account,
                order_id,
                tag,
            } => {
                let e = |c| (account, order_id, c, tag);
                let (symbol, _) = self.owned(account, order_id).map_err(e)?;
                self.cancel_one(symbol, order_id.0, CancelReason::Requested, tag, out);
            }
            Command::Replace {
                account,
                order_id,
                price,
                qty,
                tag,
            } => {
                self.replace(account, order_id, price, qty, tag, out)
                    .map_err(|c| (account, order_id, c, tag))?;
            }
            Command::ReplaceTotal {
                account,
                order_id,
                price,
                qty,
                tag,
            } => {
                let e = |c| (account, order_id, c, tag);
                let (symbol, order) = self.owned(account, order_id).map_err(e)?;
                if qty == 0 {
                    return Err(e(RejectCode::InvalidQuantity));
                }
                if qty <= order.filled {
                    self.cancel_one(symbol, order_id.0, CancelReason::Requested, tag, out);
                } else {
                    self.replace(account, order_id, price, qty - order.filled, tag, out)
                        .map_err(e)?;
                }
            }
            Command::MassCancelAccount {
                account,
                symbol,
                tag,
            } => {
                let e = |c| (account, no, c, tag);
                if let Some(symbol) = symbol {
                    if !self.symbols.contains_key(&symbol.0) {
                        return Err(e(RejectCode::UnknownSymbol));
                    }
                }
                if !self.accounts.contains_key(&account.0) {
                    return Err(e(RejectCode::UnknownAccount));
                }
                let count = self.cancel_account(
                    account.0,
                    symbol.map(|s| s.0),
                    CancelReason::MassCancel,
                    tag,
                    out,
                );
                out.push(Event::MassCancelled {
                    account: Some(account),
                    symbol,
                    count,
                    tag,
                });
            }
            Command::MassCancelSymbol { symbol, tag } => {
                let s = self.symbols.get(&symbol.0).ok_or((
                    none,
                    no,
                    RejectCode::UnknownSymbol,
                    tag,
                ))?;
                let order: Vec<u64> = s
                    .sorted(Side::Buy)
                    .iter()
                    .chain(s.sorted(Side::Sell).iter())
                    .map(|o| o.id)
                    .collect();
                for id in &order {
                    self.cancel_one(symbol.0, *id, CancelReason::MassCancel, tag, out);
                }
                out.push(Event::MassCancelled {
                    account: None,
                    symbol: Some(symbol),
                    count: order.len() as u32,
                    tag,
                });
            }
            Command::SuspendAccount { account } => {
                let a = self.account(account).map_err(|c| (account, no, c, 0))?;
                if a.suspended {
                    return Err((account, no, RejectCode::AccountSuspended, 0));
                }
                a.suspended = true;
                let cancelled =
                    self.cancel_account(account.0, None, CancelReason::KillSwitch, 0, out);
                out.push(Event::AccountSuspended { account, cancelled });
            }
            Command::ReinstateAccount { account } => {
                let a = self.account(account).map_err(|c| (account, no, c, 0))?;
                if !a.suspended {
                    return Err((account, no, RejectCode::AccountNotSuspended, 0));
                }
                a.suspended = false;
                out.push(Event::AccountReinstated { account });
            }
            Command::EndOfDay => {
                let mut expired = 0;
                let symbols: Vec<u32> = self.symbols.keys().copied().collect();
                for symbol in symbols {
                    for side in [Side::Buy, Side::Sell] {
                        let day: Vec<ROrder> = self.symbols[&symbol]
                            .sorted(side)
                            .into_iter()
                            .filter(|o| o.tif == TimeInForce::Day)
                            .collect();
                        for order in day {
                            let s = self.symbols.get_mut(&symbol).unwrap();
                            s.take(order.id);
                            self.release(&order, true);
                            out.push(Event::OrderExpired {
                                order_id: OrderId(order.id),
                                account: AccountId(order.account),
                                symbol: SymbolId(symbol),
                                side,
                                qty: order.leaves,
                            });
                            out.push(self.symbols[&symbol].level(symbol, side, order.price));
                            expired += 1;
                        }
                    }
                }
                out.push(Event::DayEnded { expired });
            }
        }
        Ok(())
    }

    fn owned(&self, account: AccountId, order_id: OrderId) -> R<(u32, ROrder)> {
        if !self.accounts.contains_key(&account.0) {
            return Err(RejectCode::UnknownAccount);
        }
        let found = self
            .symbols
            .iter()
            .find_map(|(id, s)| {
                s.resting
                    .iter()
                    .find(|o| o.id == order_id.0)
                    .map(|o| (*id, o.clone()))
            })
            .ok_or(RejectCode::UnknownOrder)?;
        if found.1.account != account.0 {
            return Err(RejectCode::NotOrderOwner);
        }
        Ok(found)
    }

    /// What an order holds: cash for a buy, shares for a sell.
    fn hold_of(&self, symbol: u32, side: Side, price: u64, qty: u64) -> R<u64> {
        match side {
            Side::Buy => qty
                .checked_mul(price + max_fee(&self.symbols[&symbol].spec))
                .ok_or(RejectCode::AmountOverflow),
            Side::Sell => Ok(qty),
        }
    }

    fn check_limits(a: &RAccount, qty: u64, price: u64) -> R<()> {
        if a.suspended {
            return Err(RejectCode::AccountSuspended);
        }
        if qty > a.limits.max_order_qty {
            return Err(RejectCode::MaxOrderQuantityExceeded);
        }
        match qty.checked_mul(price) {
            Some(n) if n <= a.limits.max_order_notional => Ok(()),
            _ => Err(RejectCode::MaxOrderNotionalExceeded),
        }
    }

    fn balance(&mut self, account: u32, symbol: u32, side: Side) -> &mut (u64, u64) {
        let a = self.accounts.get_mut(&account).unwrap();
        match side {
            Side::Buy => &mut a.cash,
            Side::Sell => a.positions.entry(symbol).or_default(),
        }
    }

    fn release(&mut self, order: &ROrder, close: bool) {
        let amount = self
            .hold_of(order.symbol, order.side, order.price, order.leaves)
            .unwrap();
        let balance = self.balance(order.account, order.symbol, order.side);
        balance.1 -= amount;
        balance.0 += amount;
        if close {
            self.accounts.get_mut(&order.account).unwrap().open_orders -= 1;
        }
    }

    fn new_order(&mut self, command: &Command, out: &mut Vec<Event>) -> R<()> {
        let Command::NewOrder {
            account,
            symbol,
            side,
            order_type,
            tif,
            price,
            qty,
            self_trade,
            tag,
        } = *command
        else {
            unreachable!()
        };
        if !self.accounts.contains_key(&account.0) {
            return Err(RejectCode::UnknownAccount);
        }
        let s = self
            .symbols
            .get(&symbol.0)
            .ok_or(RejectCode::UnknownSymbol)?;
        if s.halted {
            return Err(RejectCode::SymbolHalted);
        }
        if qty == 0 || qty % s.spec.lot_size != 0 {
            return Err(RejectCode::InvalidQuantity);
        }
        let effective_price = match order_type {
            OrderType::Limit => {
                check_price(s, price)?;
                price
            }
            OrderType::Market => match side {
                Side::Buy => s.band_high,
                Side::Sell => s.band_low,
            },
        };
        if self.live() >= self.max_orders as usize {
            return Err(RejectCode::BookCapacityExceeded);
        }
        let a = &self.accounts[&account.0];
        Self::check_limits(a, qty, effective_price)?;
        if a.open_orders >= a.limits.max_open_orders {
            return Err(RejectCode::MaxOpenOrdersExceeded);
        }
        let amount = self.hold_of(symbol.0, side, effective_price, qty)?;
        let balance = self.balance(account.0, symbol.0, side);
        if balance.0 < amount {
            return Err(match side {
                Side::Buy => RejectCode::InsufficientFunds,
                Side::Sell => RejectCode::InsufficientShares,
            });
        }
        balance.0 -= amount;
        balance.1 += amount;
        self.accounts.get_mut(&account.0).unwrap().open_orders += 1;

        let id = self.next_id;
        self.next_id += 1;
        out.push(Event::OrderAccepted {
            order_id: OrderId(id),
            account,
            symbol,
            side,
            order_type,
            tif,
            price,
            qty,
            tag,
        });
        let tif = match (order_type, tif) {
            (OrderType::Market, TimeInForce::Day | TimeInForce::Gtc) => TimeInForce::Ioc,
            (_, tif) => tif,
        };
        let mut taker = ROrder {
            id,
            account: account.0,
            symbol: symbol.0,
            side,
            price: effective_price,
            leaves: qty,
            filled: 0,
            tif,
            stp: self_trade,
            time: 0,
            first_rested: 0,
        };
        if tif == TimeInForce::Fok && !self.fok_fillable(&taker) {
            self.release(&taker, true);
            out.push(cancelled(&taker, CancelReason::FillOrKill, tag));
            return Ok(());
        }
        let end = self.match_taker(&mut taker, out);
        self.finish(taker, end, tag, out);
        Ok(())
    }

    fn mode(&self, order: &ROrder) -> SelfTradePrevention {
        match order.stp {
            SelfTradePrevention::AccountDefault => self.accounts[&order.account].stp.unwrap(),
            mode => mode,
        }
    }

    fn fok_fillable(&self, taker: &ROrder) -> bool {
        let mode = self.mode(taker);
        let mut available = 0;
        for maker in self.symbols[&taker.symbol].sorted(taker.side.opposite()) {
            if !crosses(taker.side, taker.price, maker.price) {
                break;
            }
            if maker.account == taker.account {
                if mode != SelfTradePrevention::CancelOldest {
                    return false;
                }
                continue;
            }
            available += maker.leaves;
            if available >= taker.leaves {
                return true;
            }
        }
        false
    }

    fn match_taker(&mut self, taker: &mut ROrder, out: &mut Vec<Event>) -> End {
        let mode = self.mode(taker);
        let opposite = taker.side.opposite();
        loop {
            if taker.leaves == 0 {
                return End::Filled;
            }
            let s = &self.symbols[&taker.symbol];
            let Some(best) = s.sorted(opposite).first().map(|o| o.price) else {
                return End::Exhausted;
            };
            if !crosses(taker.side, taker.price, best) {
                return End::Exhausted;
            }
            let queue: Vec<ROrder> = s
                .sorted(opposite)
                .into_iter()
                .filter(|o| o.price == best)
                .collect();
            let mut stopped = false;
            for maker in queue {
                if taker.leaves == 0 {
                    break;
                }
                if maker.account == taker.account {
                    match mode {
                        SelfTradePrevention::CancelOldest => {
                            self.remove(taker.symbol, maker.id, CancelReason::SelfTrade, 0, out);
                            continue;
                        }
                        SelfTradePrevention::CancelBoth => {
                            self.remove(taker.symbol, maker.id, CancelReason::SelfTrade, 0, out);
                        }
                        _ => {}
                    }
                    stopped = true;
                    break;
                }
                self.trade(taker, maker.id, best, out);
            }
            out.push(self.symbols[&taker.symbol].level(taker.symbol, opposite, best));
            if stopped {
                return End::SelfTrade;
            }
        }
    }

    fn trade(&mut self, taker: &mut ROrder, maker_id: u64, price: u64, out: &mut Vec<Event>) {
        let symbol = taker.symbol;
        let spec = self.symbols[&symbol].spec;
        let maker = self.symbols[&symbol]
            .resting
            .iter()
            .find(|o| o.id == maker_id)
            .unwrap()
            .clone();
        let qty = taker.leaves.min(maker.leaves);
        let (buyer, seller) = match taker.side {
            Side::Buy => (taker.clone(), maker.clone()),
            Side::Sell => (maker.clone(), taker.clone()),
        };
        let (buyer_fee_ps, seller_fee_ps) = match taker.side {
            Side::Buy => (spec.taker_fee_per_share, spec.maker_fee_per_share),
            Side::Sell => (spec.maker_fee_per_share, spec.taker_fee_per_share),
        };
        let buyer_fee = qty * buyer_fee_ps;
        let seller_fee = qty * seller_fee_ps.min(price);
        let held = qty * (buyer.price + max_fee(&spec));
        let notional = qty * price;
        taker.leaves -= qty;
        taker.filled += qty;
        let maker_leaves = maker.leaves - qty;
        {
            let s = self.symbols.get_mut(&symbol).unwrap();
            let m = s.resting.iter_mut().find(|o| o.id == maker_id).unwrap();
            m.leaves = maker_leaves;
            m.filled += qty;
            if maker_leaves == 0 {
                s.take(maker_id);
            }
        }
        let buyer_closed = if taker.side == Side::Buy {
            taker.leaves == 0
        } else {
            maker_leaves == 0
        };
        let seller_closed = if taker.side == Side::Sell {
            taker.leaves == 0
        } else {
            maker_leaves == 0
        };
        let b = self.accounts.get_mut(&buyer.account).unwrap();
        b.cash.1 -= held;
        b.cash.0 += held - notional - buyer_fee;
        b.positions.entry(symbol).or_default().0 += qty;
        if buyer_closed {
            b.open_orders -= 1;
        }
        let sl = self.accounts.get_mut(&seller.account).unwrap();
        sl.positions.entry(symbol).or_default().1 -= qty;
        sl.cash.0 += notional - seller_fee;
        if seller_closed {
            sl.open_orders -= 1;
        }
        self.fees += buyer_fee + seller_fee;
        let (taker_fee, maker_fee) = match taker.side {
            Side::Buy => (buyer_fee, seller_fee),
            Side::Sell => (seller_fee, buyer_fee),
        };
        let match_id = self.next_match;
        self.next_match += 1;
        out.push(Event::Trade {
            match_id,
            symbol: SymbolId(symbol),
            price,
            qty,
            aggressor: taker.side,
            maker_order: OrderId(maker.id),
            maker_account: AccountId(maker.account),
            maker_leaves,
            maker_fee,
            taker_order: OrderId(taker.id),
            taker_account: AccountId(taker.account),
            taker_leaves: taker.leaves,
            taker_fee,
        });
    }

    fn finish(&mut self, mut taker: ROrder, end: End, tag: u64, out: &mut Vec<Event>) {
        match end {
            End::Filled => {}
            End::SelfTrade => {
                self.release(&taker, true);
                out.push(cancelled(&taker, CancelReason::SelfTrade, tag));
            }
            End::Exhausted => match taker.tif {
                TimeInForce::Ioc | TimeInForce::Fok => {
                    self.release(&taker, true);
                    out.push(cancelled(&taker, CancelReason::ImmediateRemainder, tag));
                }
                TimeInForce::Day | TimeInForce::Gtc => {
                    taker.time = self.tick();
                    if taker.first_rested == 0 {
                        taker.first_rested = taker.time;
                    }
                    let (symbol, side, price) = (taker.symbol, taker.side, taker.price);
                    let s = self.symbols.get_mut(&symbol).unwrap();
                    s.resting.push(taker);
                    out.push(s.level(symbol, side, price));
                }
            },
        }
    }

    /// Takes a resting order off the book with a cancel event.
    fn remove(
        &mut self,
        symbol: u32,
        id: u64,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> ROrder {
        let order = self.symbols.get_mut(&symbol).unwrap().take(id);
        self.release(&order, true);
        out.push(cancelled(&order, reason, tag));
        order
    }

    fn cancel_one(
        &mut self,
        symbol: u32,
        id: u64,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) {
        let order = self.remove(symbol, id, reason, tag, out);
        out.push(self.symbols[&symbol].level(symbol, order.side, order.price));
    }

    fn cancel_account(
        &mut self,
        account: u32,
        symbol: Option<u32>,
        reason: CancelReason,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> u32 {
        let mut orders: Vec<ROrder> = self
            .symbols
            .values()
            .flat_map(|s| s.resting.iter())
            .filter(|o| o.account == account && symbol.is_none_or(|s| s == o.symbol))
            .cloned()
            .collect();
        orders.sort_by_key(|o| o.first_rested);
        for order in &orders {
            self.cancel_one(order.symbol, order.id, reason, tag, out);
        }
        orders.len() as u32
    }

    fn replace(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        price: u64,
        qty: u64,
        tag: u64,
        out: &mut Vec<Event>,
    ) -> R<()> {
        let (symbol, order) = self.owned(account, order_id)?;
        let s = &self.symbols[&symbol];
        if s.halted {
            return Err(RejectCode::SymbolHalted);
        }
        if qty == 0 || !qty.is_multiple_of(s.spec.lot_size) {
            return Err(RejectCode::InvalidQuantity);
        }
        check_price(s, price)?;
        Self::check_limits(&self.accounts[&account.0], qty, price)?;
        let old = self
            .hold_of(symbol, order.side, order.price, order.leaves)
            .unwrap();
        let new = self.hold_of(symbol, order.side, price, qty)?;
        let balance = self.balance(account.0, symbol, order.side);
        if new > old {
            if balance.0 < new - old {
                return Err(match order.side {
                    Side::Buy => RejectCode::InsufficientFunds,
                    Side::Sell => RejectCode::InsufficientShares,
                });
            }
            balance.0 -= new - old;
            balance.1 += new - old;
        } else {
            balance.1 -= old - new;
            balance.0 += old - new;
        }
        let kept = price == order.price && qty <= order.leaves;
        out.push(Event::OrderReplaced {
            order_id,
            account,
            symbol: SymbolId(symbol),
            side: order.side,
            price,
            qty,
            priority_kept: kept,
            tag,
        });
        let s = self.symbols.get_mut(&symbol).unwrap();
        if kept {
            s.resting
                .iter_mut()
                .find(|o| o.id == order_id.0)
                .unwrap()
                .leaves = qty;
            out.push(s.level(symbol, order.side, price));
            return Ok(());
        }
        let mut taker = s.take(order_id.0);
        out.push(s.level(symbol, order.side, order.price));
        taker.price = price;
        taker.leaves = qty;
        let end = self.match_taker(&mut taker, out);
        self.finish(taker, end, tag, out);
        Ok(())
    }
}

fn check_price(s: &RSymbol, price: u64) -> R<()> {
    if price == 0 || !price.is_multiple_of(s.spec.tick_size) {
        return Err(RejectCode::InvalidPrice);
    }
    if price < s.band_low || price > s.band_high {
        return Err(RejectCode::PriceOutsideBand);
    }
    Ok(())
}

fn cancelled(order: &ROrder, reason: CancelReason, tag: u64) -> Event {
    Event::OrderCancelled {
        order_id: OrderId(order.id),
        account: AccountId(order.account),
        symbol: SymbolId(order.symbol),
        side: order.side,
        qty: order.leaves,
        reason,
        tag,
    }
}
