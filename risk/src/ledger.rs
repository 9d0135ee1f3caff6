//! The ledger: accounts, their cash and positions, reservations and limits.
//!
//! Every mutation keeps `available + reserved` per account consistent with
//! the supplies, so `check_invariants` can prove conservation at any time.

use crate::{AccountId, RejectCode, Side, SymbolId, MAX_ACCOUNTS, MAX_SYMBOLS};

/// An amount split into the part free to use and the part held for orders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub available: u64,
    pub reserved: u64,
}

impl Balance {
    pub fn total(&self) -> u128 {
        self.available as u128 + self.reserved as u128
    }

    fn reserve(&mut self, amount: u64) {
        assert!(self.available >= amount, "reserve beyond available");
        self.available -= amount;
        self.reserved += amount;
    }

    fn release(&mut self, amount: u64) {
        assert!(self.reserved >= amount, "release beyond reserved");
        self.reserved -= amount;
        self.available += amount;
    }

    fn consume_reserved(&mut self, amount: u64) {
        assert!(self.reserved >= amount, "consume beyond reserved");
        self.reserved -= amount;
    }
}

/// Per-account pre-trade limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest quantity (shares) of a single order.
    pub max_order_qty: u64,
    /// Largest price × quantity of a single order, in minor units.
    pub max_order_notional: u64,
    /// Most orders resting at once.
    pub max_open_orders: u32,
}

impl Limits {
    /// Limits that never bind (still bounded by integer ranges).
    pub const UNLIMITED: Limits = Limits {
        max_order_qty: u64::MAX,
        max_order_notional: u64::MAX,
        max_open_orders: u32::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::UNLIMITED
    }
}

/// One account: cash, positions per symbol, open order count, limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub cash: Balance,
    /// Indexed by symbol id; grown lazily, a missing entry is zero.
    positions: Vec<Balance>,
    pub limits: Limits,
    pub open_orders: u32,
    pub suspended: bool,
}

impl Account {
    fn new(limits: Limits) -> Account {
        Account {
            cash: Balance::default(),
            positions: Vec::new(),
            limits,
            open_orders: 0,
            suspended: false,
        }
    }

    pub(crate) fn restore(
        cash: Balance,
        positions: Vec<Balance>,
        limits: Limits,
        open_orders: u32,
        suspended: bool,
    ) -> Account {
        Account {
            cash,
            positions,
            limits,
            open_orders,
            suspended,
        }
    }

    pub fn position(&self, symbol: SymbolId) -> Balance {
        self.positions
            .get(symbol.0 as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Positions in symbol order, including zero entries.
    pub fn positions(&self) -> &[Balance] {
        &self.positions
    }

    fn position_mut(&mut self, symbol: SymbolId) -> &mut Balance {
        let index = symbol.0 as usize;
        if self.positions.len() <= index {
            self.positions.resize(index + 1, Balance::default());
        }
        &mut self.positions[index]
    }
}

/// What the risk stage needs to know about an order to hold its funds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderTicket {
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    /// Open quantity in shares.
    pub qty: u64,
    /// Price used for the notional limit (limit price, or the protection
    /// price of a market order).
    pub notional_price: u64,
    /// Cash held per share for a buy: price plus the highest fee the order
    /// could pay. Ignored for a sell, which holds shares.
    pub reserve_per_share: u64,
}

impl OrderTicket {
    /// Cash (buy) or shares (sell) this ticket holds.
    pub fn reserve_amount(&self) -> Result<u64, RejectCode> {
        match self.side {
            Side::Buy => mul(self.qty, self.reserve_per_share),
            Side::Sell => Ok(self.qty),
        }
    }

    fn notional(&self) -> Result<u64, RejectCode> {
        mul(self.qty, self.notional_price)
    }
}

/// One fill between a buyer and a seller, to be settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub symbol: SymbolId,
    pub qty: u64,
    pub price: u64,
    pub buyer: AccountId,
    /// What the buy order holds per share (see [`OrderTicket`]).
    pub buyer_reserve_per_share: u64,
    pub buyer_fee_per_share: u64,
    pub seller: AccountId,
    pub seller_fee_per_share: u64,
    /// The buy order has no open quantity left after this fill.
    pub buyer_order_closed: bool,
    /// The sell order has no open quantity left after this fill.
    pub seller_order_closed: bool,
}

impl Settlement {
    /// Fee the buyer pays on this fill.
    pub fn buyer_fee(&self) -> u64 {
        self.qty * self.buyer_fee_per_share
    }

    /// Fee the seller pays: deducted from proceeds, never above them.
    pub fn seller_fee(&self) -> u64 {
        self.qty * self.seller_fee_per_share.min(self.price)
    }
}

fn mul(a: u64, b: u64) -> Result<u64, RejectCode> {
    a.checked_mul(b).ok_or(RejectCode::AmountOverflow)
}

/// All accounts plus the supplies that conservation is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: Vec<Option<Account>>,
    /// Cash deposited minus cash withdrawn.
    cash_supply: u64,
    /// Per symbol: shares deposited minus shares withdrawn.
    share_supply: Vec<u64>,
    /// Fees collected by the venue.
    fees_collected: u64,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    pub(crate) fn parts(&self) -> (&[Option<Account>], u64, &[u64], u64) {
        (
            &self.accounts,
            self.cash_supply,
            &self.share_supply,
            self.fees_collected,
        )
    }

    pub(crate) fn restore(
        accounts: Vec<Option<Account>>,
        cash_supply: u64,
        share_supply: Vec<u64>,
        fees_collected: u64,
    ) -> Ledger {
        Ledger {
            accounts,
            cash_supply,
            share_supply,
            fees_collected,
        }
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn account_mut(&mut self, id: AccountId) -> Result<&mut Account, RejectCode> {
        self.accounts
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(RejectCode::UnknownAccount)
    }

    /// Accounts in id order.
    pub fn accounts(&self) -> impl Iterator<Item = (AccountId, &Account)> {
        self.accounts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|a| (AccountId(i as u32), a)))
    }

    pub fn cash_supply(&self) -> u64 {
        self.cash_supply
    }

    pub fn share_supply(&self, symbol: SymbolId) -> u64 {
        self.share_supply
            .get(symbol.0 as usize)
            .copied()
            .unwrap_or(0)
    }

    pub fn fees_collected(&self) -> u64 {
        self.fees_collected
    }

    pub fn open_account(&mut self, id: AccountId, limits: Limits) -> Result<(), RejectCode> {
        if id.0 >= MAX_ACCOUNTS {
            return Err(RejectCode::AccountIdOutOfRange);
        }
        let index = id.0 as usize;
        if self.accounts.len() <= index {
            self.accounts.resize(index + 1, None);
        }
        if self.accounts[index].is_some() {
            return Err(RejectCode::AccountExists);
        }
        self.accounts[index] = Some(Account::new(limits));
        Ok(())
    }

    pub fn set_limits(&mut self, id: AccountId, limits: Limits) -> Result<(), RejectCode> {
        self.account_mut(id)?.limits = limits;
        Ok(())
    }

    /// Kill switch, step one: block new orders. The engine cancels the
    /// resting ones.
    pub fn suspend(&mut self, id: AccountId) -> Result<(), RejectCode> {
        let account = self.account_mut(id)?;
        if account.suspended {
            return Err(RejectCode::AccountSuspended);
        }
        account.suspended = true;
        Ok(())
    }

    pub fn reinstate(&mut self, id: AccountId) -> Result<(), RejectCode> {
        let account = self.account_mut(id)?;
        if !account.suspended {
            return Err(RejectCode::AccountNotSuspended);
        }
        account.suspended = false;
        Ok(())
    }

    /// Adds cash; returns the new available balance.
    pub fn deposit_cash(&mut self, id: AccountId, amount: u64) -> Result<u64, RejectCode> {
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let supply = self
            .cash_supply
            .checked_add(amount)
            .ok_or(RejectCode::AmountOverflow)?;
        let account = self.account_mut(id)?;
        // The supply bounds every balance, so this cannot overflow.
        account.cash.available += amount;
        let available = account.cash.available;
        self.cash_supply = supply;
        Ok(available)
    }

    /// Removes available cash; returns the new available balance.
    pub fn withdraw_cash(&mut self, id: AccountId, amount: u64) -> Result<u64, RejectCode> {
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let account = self.account_mut(id)?;
        if account.cash.available < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        account.cash.available -= amount;
        let available = account.cash.available;
        self.cash_supply -= amount;
        Ok(available)
    }

    /// Adds shares of a symbol (a transfer in); returns the new available.
    pub fn deposit_shares(
        &mut self,
        id: AccountId,
        symbol: SymbolId,
        qty: u64,
    ) -> Result<u64, RejectCode> {
        assert!(symbol.0 < MAX_SYMBOLS);
        if qty == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let current = self.share_supply(symbol);
        let supply = current.checked_add(qty).ok_or(RejectCode::AmountOverflow)?;
        let position = self.account_mut(id)?.position_mut(symbol);
        position.available += qty;
        let available = position.available;
        let index = symbol.0 as usize;
        if self.share_supply.len() <= index {
            self.share_supply.resize(index + 1, 0);
        }
        self.share_supply[index] = supply;
        Ok(available)
    }

    /// Removes available shares (a transfer out); returns the new available.
    pub fn withdraw_shares(
        &mut self,
        id: AccountId,
        symbol: SymbolId,
        qty: u64,
    ) -> Result<u64, RejectCode> {
        if qty == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let account = self.account_mut(id)?;
        if account.position(symbol).available < qty {
            return Err(RejectCode::InsufficientShares);
        }
        let position = account.position_mut(symbol);
        position.available -= qty;
        let available = position.available;
        self.share_supply[symbol.0 as usize] -= qty;
        Ok(available)
    }

    /// Pre-trade check and hold for a new order. On success the order
    /// counts as open until `release(.., closed = true)` or a closing fill.
    pub fn reserve(&mut self, ticket: &OrderTicket) -> Result<(), RejectCode> {
        let account = self.account_mut(ticket.account)?;
        check_limits(account, ticket)?;
        if account.open_orders >= account.limits.max_open_orders {
            return Err(RejectCode::MaxOpenOrdersExceeded);
        }
        let amount = ticket.reserve_amount()?;
        hold(account, ticket, amount)?;
        account.open_orders += 1;
        Ok(())
    }

    /// Replace: hold what `new` needs instead of what `old` held. On error
    /// nothing changes.
    pub fn re_reserve(&mut self, old: &OrderTicket, new: &OrderTicket) -> Result<(), RejectCode> {
        assert_eq!(old.account, new.account);
        assert_eq!(old.symbol, new.symbol);
        assert_eq!(old.side, new.side);
        let account = self.account_mut(new.account)?;
        check_limits(account, new)?;
        let old_amount = old.reserve_amount().expect("held amount fits");
        let new_amount = new.reserve_amount()?;
        if new_amount > old_amount {
            hold(account, new, new_amount - old_amount)?;
        } else {
            let balance = match new.side {
                Side::Buy => &mut account.cash,
                Side::Sell => account.position_mut(new.symbol),
            };
            balance.release(old_amount - new_amount);
        }
        Ok(())
    }

    /// Gives back what `ticket` holds (cancel, expiry, unfilled remainder).
    /// `closed` ends the order: it no longer counts as open.
    pub fn release(&mut self, ticket: &OrderTicket, closed: bool) {
        let amount = ticket.reserve_amount().expect("held amount fits");
        let account = self.account_mut(ticket.account).expect("known account");
        let balance = match ticket.side {
            Side::Buy => &mut account.cash,
            Side::Sell => account.position_mut(ticket.symbol),
        };
        balance.release(amount);
        if closed {
            close_order(account);
        }
    }

    /// Moves exactly what traded: cash from buyer to seller and venue,
    /// shares from seller to buyer, and returns the buyer's unneeded hold.
    pub fn settle(&mut self, fill: &Settlement) {
        let notional = fill.qty * fill.price;
        let buyer_fee = fill.buyer_fee();
        let seller_fee = fill.seller_fee();
        let held = fill.qty * fill.buyer_reserve_per_share;
        assert!(held >= notional + buyer_fee, "buy hold covers cost and fee");

        let buyer = self.account_mut(fill.buyer).expect("known buyer");
        buyer.cash.consume_reserved(held);
        buyer.cash.available += held - notional - buyer_fee;
        buyer.position_mut(fill.symbol).available += fill.qty;
        if fill.buyer_order_closed {
            close_order(buyer);
        }

        let seller = self.account_mut(fill.seller).expect("known seller");
        seller.position_mut(fill.symbol).consume_reserved(fill.qty);
        seller.cash.available += notional - seller_fee;
        if fill.seller_order_closed {
            close_order(seller);
        }

        self.fees_collected += buyer_fee + seller_fee;
    }

    /// Conservation: every unit of cash and every share deposited is held
    /// by exactly one account (available or reserved) or by the venue.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut cash: u128 = self.fees_collected as u128;
        let mut shares: Vec<u128> = vec![0; self.share_supply.len()];
        for (id, account) in self.accounts() {
            cash += account.cash.total();
            for (symbol, position) in account.positions.iter().enumerate() {
                if position.total() == 0 {
                    continue;
                }
                match shares.get_mut(symbol) {
                    Some(sum) => *sum += position.total(),
                    None => return Err(format!("{id:?} holds symbol {symbol} never deposited")),
                }
            }
        }
        if cash != self.cash_supply as u128 {
            return Err(format!(
                "cash not conserved: accounts+fees {cash} != supply {}",
                self.cash_supply
            ));
        }
        for (symbol, (sum, supply)) in shares.iter().zip(&self.share_supply).enumerate() {
            if *sum != *supply as u128 {
                return Err(format!(
                    "shares of symbol {symbol} not conserved: {sum} != {supply}"
                ));
            }
        }
        Ok(())
    }
}

fn check_limits(account: &Account, ticket: &OrderTicket) -> Result<(), RejectCode> {
    if account.suspended {
        return Err(RejectCode::AccountSuspended);
    }
    if ticket.qty > account.limits.max_order_qty {
        return Err(RejectCode::MaxOrderQuantityExceeded);
    }
    let notional = ticket
        .notional()
        .map_err(|_| RejectCode::MaxOrderNotionalExceeded)?;
    if notional > account.limits.max_order_notional {
        return Err(RejectCode::MaxOrderNotionalExceeded);
    }
    Ok(())
}

fn hold(account: &mut Account, ticket: &OrderTicket, amount: u64) -> Result<(), RejectCode> {
    let (balance, short) = match ticket.side {
        Side::Buy => (&mut account.cash, RejectCode::InsufficientFunds),
        Side::Sell => (
            account.position_mut(ticket.symbol),
            RejectCode::InsufficientShares,
        ),
    };
    if balance.available < amount {
        return Err(short);
    }
    balance.reserve(amount);
    Ok(())
}

fn close_order(account: &mut Account) {
    assert!(account.open_orders > 0, "closing an order that is not open");
    account.open_orders -= 1;
}

#[cfg(test)]
mod tests;
