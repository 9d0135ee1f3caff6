//! `Engine::check_invariants`: everything that must hold between commands.
//! The tests call it after every step.

use crate::book::{FLAG_IN_ACCOUNT, FLAG_IN_LEVEL, FLAG_LIVE, NIL};
use crate::Engine;
use brokerx_risk::{AccountId, Side, SymbolId};

impl Engine {
    /// Checks books, order lists, reservations and conservation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.ledger.check_invariants()?;
        let slots = self.orders.nodes.len();
        let mut seen_in_level = vec![false; slots];
        let mut reserved_cash = vec![0u128; self.accounts.len()];
        let mut reserved_shares: Vec<Vec<u128>> = vec![Vec::new(); self.accounts.len()];
        let mut resting_per_account = vec![0u32; self.accounts.len()];

        for (symbol_index, state) in self.symbols.iter().enumerate() {
            let Some(state) = state else { continue };
            let symbol = SymbolId(symbol_index as u32);
            if let (Some(bid), Some(ask)) =
                (state.best_price(Side::Buy), state.best_price(Side::Sell))
            {
                if bid >= ask {
                    return Err(format!("{symbol:?} crossed: bid {bid} >= ask {ask}"));
                }
            }
            for side in [Side::Buy, Side::Sell] {
                let ladder = state.ladder(side);
                ladder.check_bits()?;
                for (index, level) in ladder.levels.iter().enumerate() {
                    let mut cursor = level.head;
                    let mut previous = NIL;
                    let (mut count, mut qty) = (0u32, 0u128);
                    while cursor != NIL {
                        let node = self
                            .orders
                            .nodes
                            .get(cursor as usize)
                            .ok_or("link out of slab")?;
                        let here = format!("{symbol:?} {side:?} level {index} slot {cursor}");
                        if node.flags != FLAG_LIVE | FLAG_IN_LEVEL | FLAG_IN_ACCOUNT {
                            return Err(format!("{here}: flags {:#x}", node.flags));
                        }
                        if std::mem::replace(&mut seen_in_level[cursor as usize], true) {
                            return Err(format!("{here}: order on two levels"));
                        }
                        if node.prev != previous {
                            return Err(format!("{here}: broken back link"));
                        }
                        if node.symbol != symbol.0 || node.side != side as u8 {
                            return Err(format!("{here}: wrong symbol or side"));
                        }
                        let level_price =
                            state.base_price as u128 + index as u128 * state.spec.tick_size as u128;
                        if node.price as u128 != level_price || node.leaves == 0 {
                            return Err(format!("{here}: wrong price or empty order"));
                        }
                        let account = node.account as usize;
                        if self.accounts.get(account).copied().flatten().is_none() {
                            return Err(format!("{here}: order of unknown account"));
                        }
                        resting_per_account[account] += 1;
                        match side {
                            Side::Buy => {
                                let unit = node.price
                                    + state
                                        .spec
                                        .maker_fee_per_share
                                        .max(state.spec.taker_fee_per_share);
                                reserved_cash[account] += node.leaves as u128 * unit as u128;
                            }
                            Side::Sell => {
                                let shares = &mut reserved_shares[account];
                                if shares.len() <= symbol_index {
                                    shares.resize(symbol_index + 1, 0);
                                }
                                shares[symbol_index] += node.leaves as u128;
                            }
                        }
                        count += 1;
                        qty += node.leaves as u128;
                        previous = cursor;
                        cursor = node.next;
                    }
                    if previous != level.tail || count != level.orders || qty != level.qty as u128 {
                        return Err(format!(
                            "{symbol:?} {side:?} level {index}: aggregate mismatch"
                        ));
                    }
                }
            }
        }

        let mut seen_in_account = vec![false; slots];
        for (id, account) in self.ledger.accounts() {
            let engine_account = self
                .accounts
                .get(id.0 as usize)
                .copied()
                .flatten()
                .ok_or(format!("{id:?} missing beside the ledger"))?;
            let mut cursor = engine_account.orders.head;
            let mut previous = NIL;
            while cursor != NIL {
                let node = &self.orders.nodes[cursor as usize];
                if node.account != id.0 || !seen_in_level[cursor as usize] {
                    return Err(format!(
                        "{id:?}: slot {cursor} listed but not its resting order"
                    ));
                }
                if std::mem::replace(&mut seen_in_account[cursor as usize], true)
                    || node.account_prev != previous
                {
                    return Err(format!("{id:?}: account list broken at slot {cursor}"));
                }
                previous = cursor;
                cursor = node.account_next;
            }
            if previous != engine_account.orders.tail {
                return Err(format!("{id:?}: account list tail mismatch"));
            }
            check_account_holds(
                id,
                account,
                &reserved_cash,
                &reserved_shares,
                &resting_per_account,
            )?;
        }

        let resting = seen_in_level.iter().filter(|seen| **seen).count();
        if seen_in_account != seen_in_level || resting != self.orders.live() as usize {
            return Err(format!(
                "orders not each in exactly one place: {resting} on levels, {} live",
                self.orders.live()
            ));
        }
        let free = self.orders.free_slots().count();
        if free + resting != slots {
            return Err(format!(
                "slab leak: {free} free + {resting} live != {slots}"
            ));
        }
        Ok(())
    }
}

fn check_account_holds(
    id: AccountId,
    account: &brokerx_risk::Account,
    reserved_cash: &[u128],
    reserved_shares: &[Vec<u128>],
    resting_per_account: &[u32],
) -> Result<(), String> {
    let index = id.0 as usize;
    if account.cash.reserved as u128 != reserved_cash[index] {
        return Err(format!(
            "{id:?}: cash reserved {} but resting buys need {}",
            account.cash.reserved, reserved_cash[index]
        ));
    }
    for (symbol, position) in account.positions().iter().enumerate() {
        let need = reserved_shares[index].get(symbol).copied().unwrap_or(0);
        if position.reserved as u128 != need {
            return Err(format!(
                "{id:?}: symbol {symbol} shares reserved {} but resting sells need {need}",
                position.reserved
            ));
        }
    }
    if reserved_shares[index].len() > account.positions().len()
        && reserved_shares[index]
            .iter()
            .skip(account.positions().len())
            .any(|n| *n != 0)
    {
        return Err(format!("{id:?}: resting sells without a position"));
    }
    if account.open_orders != resting_per_account[index] {
        return Err(format!(
            "{id:?}: {} open orders counted, {} resting",
            account.open_orders, resting_per_account[index]
        ));
    }
    Ok(())
}
