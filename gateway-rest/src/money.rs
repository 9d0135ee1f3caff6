//! Decimal text <-> integer minor units. Prices and cash are integers in
//! 1/10000 of a currency unit (4 implied decimals, as in the engine, ITCH
//! and OUCH); quantities are whole shares. Input may be a JSON number or a
//! string; output is always a string.

use serde_json::Value;

/// Minor units per currency unit.
pub const SCALE: u64 = 10_000;
const DECIMALS: usize = 4;

/// Why a decimal was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    NotANumber,
    Negative,
    TooManyDecimals,
    TooLarge,
}

impl std::fmt::Display for DecimalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecimalError::NotANumber => "not a decimal number",
            DecimalError::Negative => "must not be negative",
            DecimalError::TooManyDecimals => "too many decimal places",
            DecimalError::TooLarge => "too large",
        })
    }
}

/// Parses `text` ("12", "12.5", "0.0001") into units of 10^-`decimals`.
pub fn parse_scaled(text: &str, decimals: usize) -> Result<u64, DecimalError> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b == b'0' || b == b'.') {
            return Ok(0);
        }
        return Err(DecimalError::Negative);
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(DecimalError::NotANumber);
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotANumber);
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > decimals {
        return Err(DecimalError::TooManyDecimals);
    }
    let mut value: u64 = 0;
    for b in whole.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as u64))
            .ok_or(DecimalError::TooLarge)?;
    }
    for _ in 0..decimals {
        value = value.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    let mut frac: u64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        frac += (b - b'0') as u64 * 10u64.pow((decimals - 1 - i) as u32);
    }
    value.checked_add(frac).ok_or(DecimalError::TooLarge)
}

fn value_text(value: &Value) -> Result<String, DecimalError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => {
            let text = n.to_string();
            if text.contains(['e', 'E']) {
                // A float printed in exponent form: re-print it plainly.
                let f = n.as_f64().ok_or(DecimalError::NotANumber)?;
                if f < 0.0 {
                    return Err(DecimalError::Negative);
                }
                if f >= 1e15 {
                    return Err(DecimalError::TooLarge);
                }
                Ok(format!("{f:.10}"))
            } else {
                Ok(text)
            }
        }
        _ => Err(DecimalError::NotANumber),
    }
}

/// A price or cash amount: minor units (1/10000).
pub fn parse_money(value: &Value) -> Result<u64, DecimalError> {
    parse_scaled(&value_text(value)?, DECIMALS)
}

/// A quantity: whole shares.
pub fn parse_qty(value: &Value) -> Result<u64, DecimalError> {
    parse_scaled(&value_text(value)?, 0)
}

/// Minor units as decimal text with at least two decimals ("190.00",
/// "0.0035").
pub fn format_money(units: u64) -> String {
    let whole = units / SCALE;
    let frac = units % SCALE;
    let mut text = format!("{whole}.{frac:04}");
    while text.ends_with('0') && text.len() - text.find('.').unwrap_or(0) > 3 {
        text.pop();
    }
    text
}

/// Signed minor units (for P/L).
pub fn format_signed(units: i128) -> String {
    if units < 0 {
        format!(
            "-{}",
            format_money(units.unsigned_abs().min(u64::MAX as u128) as u64)
        )
    } else {
        format_money(units.min(u64::MAX as i128) as u64)
    }
}

pub fn format_qty(qty: u64) -> String {
    qty.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_numbers_and_strings() {
        assert_eq!(parse_money(&json!("190.5")), Ok(1_905_000));
        assert_eq!(parse_money(&json!(190.5)), Ok(1_905_000));
        assert_eq!(parse_money(&json!(190)), Ok(1_900_000));
        assert_eq!(parse_money(&json!("0.0001")), Ok(1));
        assert_eq!(parse_money(&json!("1.00000")), Ok(10_000));
        assert_eq!(parse_money(&json!(".5")), Ok(5_000));
        assert_eq!(parse_qty(&json!("10")), Ok(10));
        assert_eq!(parse_qty(&json!(10)), Ok(10));
        assert_eq!(parse_qty(&json!("10.0")), Ok(10));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse_money(&json!("-1")), Err(DecimalError::Negative));
        assert_eq!(parse_money(&json!(-1.5)), Err(DecimalError::Negative));
        assert_eq!(
            parse_money(&json!("1.00001")),
            Err(DecimalError::TooManyDecimals)
        );
        assert_eq!(parse_qty(&json!("1.5")), Err(DecimalError::TooManyDecimals));
        assert_eq!(parse_money(&json!("abc")), Err(DecimalError::NotANumber));
        assert_eq!(parse_money(&json!("1e3")), Err(DecimalError::NotANumber));
        assert_eq!(parse_money(&json!("")), Err(DecimalError::NotANumber));
        assert_eq!(parse_money(&json!(".")), Err(DecimalError::NotANumber));
        assert_eq!(parse_money(&json!(null)), Err(DecimalError::NotANumber));
        assert_eq!(parse_money(&json!(true)), Err(DecimalError::NotANumber));
        assert_eq!(
            parse_money(&json!("99999999999999999999")),
            Err(DecimalError::TooLarge)
        );
        assert_eq!(parse_money(&json!(1e300)), Err(DecimalError::TooLarge));
    }

    #[test]
    fn formats_with_two_to_four_decimals() {
        assert_eq!(format_money(1_900_000), "190.00");
        assert_eq!(format_money(1_905_000), "190.50");
        assert_eq!(format_money(35), "0.0035");
        assert_eq!(format_money(0), "0.00");
        assert_eq!(format_signed(-35), "-0.0035");
    }
}
