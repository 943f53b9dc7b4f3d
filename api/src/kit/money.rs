//! Money at the API's edge: amounts are exact `Decimal`s in GraphQL (serialized as
//! strings) while the columns are `double precision`; conversions happen here only,
//! rounded to 6 decimal places (a millionth of a dollar), trailing zeros dropped.

use rust_decimal::{Decimal, prelude::ToPrimitive};

use crate::error::{ApiError, ApiResult};

/// Decimal places kept for money.
pub const PLACES: u32 = 6;

/// The largest amount stored, a billion dollars: a column's `f64` holds it to the
/// millionth, and every sum of such amounts the API shows still converts back to a
/// `Decimal`.
const MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// A stored amount as the API shows it.
pub fn from_column(amount: f64) -> Decimal {
    Decimal::from_f64_retain(amount)
        .unwrap_or_default()
        .round_dp(PLACES)
        .normalize()
}

/// An amount to store: not negative (`-0` is zero), at most a billion dollars,
/// rounded to [`PLACES`]; `field` names it in the error.
pub fn to_column(field: &str, amount: Decimal) -> ApiResult<f64> {
    if amount < Decimal::ZERO {
        return Err(ApiError::bad_input(format!(
            "{field}: must not be negative"
        )));
    }
    if amount > MAX {
        return Err(ApiError::bad_input(format!("{field}: at most {MAX}")));
    }
    amount
        .abs()
        .round_dp(PLACES)
        .to_f64()
        .ok_or_else(|| ApiError::bad_input(format!("{field}: out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_zero_is_zero_and_below_zero_is_refused() {
        let parse = |text: &str| text.parse::<Decimal>().expect("a decimal");
        let zero = to_column("price", parse("-0")).expect("zero");
        assert!(zero == 0.0 && zero.is_sign_positive(), "{zero}");
        assert!(to_column("price", parse("-0.000001")).is_err());
        assert_eq!(to_column("price", parse("1.2345674")).ok(), Some(1.234567));
    }

    /// Beyond what a column keeps to the millionth, an amount is refused rather than
    /// stored to come back as something else (`Decimal::MAX` came back as 0).
    #[test]
    fn an_amount_too_large_to_keep_is_refused() {
        assert_eq!(MAX, Decimal::from(1_000_000_000_u64));
        let stored = to_column("price", MAX).expect("the largest amount");
        assert_eq!(from_column(stored), MAX);
        let cent = Decimal::new(1, 2);
        assert!(to_column("price", MAX + cent).is_err());
        assert!(to_column("price", Decimal::MAX).is_err());
    }
}
