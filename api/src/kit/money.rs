//! Money at the API's edge: amounts are exact `Decimal`s in GraphQL (serialized as
//! strings) while the columns are `double precision`; conversions happen here only,
//! rounded to 6 decimal places (a millionth of a dollar), trailing zeros dropped.

use rust_decimal::{Decimal, prelude::ToPrimitive};

use crate::error::{ApiError, ApiResult};

/// Decimal places kept for money.
pub const PLACES: u32 = 6;

/// A stored amount as the API shows it.
pub fn from_column(amount: f64) -> Decimal {
    Decimal::from_f64_retain(amount)
        .unwrap_or_default()
        .round_dp(PLACES)
        .normalize()
}

/// An amount to store: finite, not negative (`-0` is zero), rounded to [`PLACES`];
/// `field` names it in the error.
pub fn to_column(field: &str, amount: Decimal) -> ApiResult<f64> {
    if amount < Decimal::ZERO {
        return Err(ApiError::bad_input(format!(
            "{field}: must not be negative"
        )));
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
}
