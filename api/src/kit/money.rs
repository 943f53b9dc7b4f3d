//! Money at the API's edge: amounts are exact `Decimal`s in GraphQL (serialized as
//! strings) while the columns are `double precision`; conversions happen here only,
//! rounded to 6 decimal places (a millionth of a dollar), trailing zeros dropped.

use rust_decimal::{Decimal, prelude::ToPrimitive};

use crate::error::{ApiError, ApiResult};

/// Decimal places kept for money.
const PLACES: u32 = 6;

/// A stored amount as the API shows it.
pub fn from_column(amount: f64) -> Decimal {
    Decimal::from_f64_retain(amount)
        .unwrap_or_default()
        .round_dp(PLACES)
        .normalize()
}

/// An amount to store: finite, not negative, rounded to [`PLACES`]; `field` names it
/// in the error.
pub fn to_column(field: &str, amount: Decimal) -> ApiResult<f64> {
    if amount.is_sign_negative() {
        return Err(ApiError::bad_input(format!(
            "{field}: must not be negative"
        )));
    }
    amount
        .round_dp(PLACES)
        .to_f64()
        .ok_or_else(|| ApiError::bad_input(format!("{field}: out of range")))
}
