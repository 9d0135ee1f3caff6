//! Binary image of the ledger for snapshots: little-endian, fixed order
//! (accounts by id). The engine frames and checksums the whole snapshot;
//! this only has to round-trip and to refuse truncated input cleanly.

use crate::ledger::{Account, Balance, Ledger, Limits};

fn put(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn take(input: &mut &[u8]) -> Result<u64, &'static str> {
    if input.len() < 8 {
        return Err("ledger image truncated");
    }
    let (head, rest) = input.split_at(8);
    *input = rest;
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

fn take_u32(input: &mut &[u8]) -> Result<u32, &'static str> {
    u32::try_from(take(input)?).map_err(|_| "ledger image: value out of range")
}

fn take_len(input: &mut &[u8], limit: u64) -> Result<usize, &'static str> {
    let n = take(input)?;
    if n > limit {
        return Err("ledger image: count out of range");
    }
    Ok(n as usize)
}

impl Ledger {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (accounts, cash_supply, share_supply, fees) = self.parts();
        put(out, cash_supply);
        put(out, fees);
        put(out, share_supply.len() as u64);
        for supply in share_supply {
            put(out, *supply);
        }
        put(out, accounts.len() as u64);
        for account in accounts {
            let Some(account) = account else {
                put(out, 0);
                continue;
            };
            put(out, 1);
            put(out, account.cash.available);
            put(out, account.cash.reserved);
            put(out, account.limits.max_order_qty);
            put(out, account.limits.max_order_notional);
            put(out, account.limits.max_open_orders as u64);
            put(out, account.open_orders as u64);
            put(out, account.suspended as u64);
            put(out, account.positions().len() as u64);
            for position in account.positions() {
                put(out, position.available);
                put(out, position.reserved);
            }
        }
    }

    pub fn decode(input: &mut &[u8]) -> Result<Ledger, &'static str> {
        let cash_supply = take(input)?;
        let fees = take(input)?;
        let symbols = take_len(input, crate::MAX_SYMBOLS as u64)?;
        let share_supply = (0..symbols)
            .map(|_| take(input))
            .collect::<Result<Vec<_>, _>>()?;
        let count = take_len(input, crate::MAX_ACCOUNTS as u64)?;
        let mut accounts = Vec::with_capacity(count);
        for _ in 0..count {
            if take(input)? == 0 {
                accounts.push(None);
                continue;
            }
            let cash = Balance {
                available: take(input)?,
                reserved: take(input)?,
            };
            let limits = Limits {
                max_order_qty: take(input)?,
                max_order_notional: take(input)?,
                max_open_orders: take_u32(input)?,
            };
            let open_orders = take_u32(input)?;
            let suspended = match take(input)? {
                0 => false,
                1 => true,
                _ => return Err("ledger image: bad flag"),
            };
            let positions = take_len(input, crate::MAX_SYMBOLS as u64)?;
            let positions = (0..positions)
                .map(|_| {
                    Ok(Balance {
                        available: take(input)?,
                        reserved: take(input)?,
                    })
                })
                .collect::<Result<Vec<_>, &'static str>>()?;
            accounts.push(Some(Account::restore(
                cash,
                positions,
                limits,
                open_orders,
                suspended,
            )));
        }
        Ok(Ledger::restore(accounts, cash_supply, share_supply, fees))
    }
}
