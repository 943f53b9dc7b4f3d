//! Validation of the free text clients send, in one place: trimmed, bounded, and free
//! of control characters (Postgres refuses NUL outright, and none belong in a name), so
//! both backends store the same thing and bad input is `BAD_USER_INPUT`, never a
//! database error. Instants too: within the years both backends store and compare.

use chrono::{DateTime, Datelike as _, Utc};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// What a piece of text may span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A name: no control characters at all.
    One,
    /// A description: line breaks and tabs allowed.
    Many,
}

fn check(field: &str, value: &str, max: usize, lines: Lines) -> ApiResult<()> {
    let allowed = |c: char| lines == Lines::Many && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ApiError::bad_input(format!(
            "{field}: must not contain control characters"
        )));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_input(format!(
            "{field}: at most {max} characters"
        )));
    }
    Ok(())
}

/// An instant a client sent, in the years 1 to 9999. GraphQL's `DateTime` (RFC 3339,
/// read by chrono) takes any signed year, but Postgres refuses timestamps before 4714
/// BC (an error, not the client's), and SQLite stores them as RFC 3339 text, where a
/// year past 9999 is written `+10000…` and sorts before every other.
pub fn instant(field: &str, at: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(ApiError::bad_input(format!(
            "{field}: must be within the years 1 to 9999"
        )))
    }
}

/// Required text: trimmed, not empty, at most `max` characters.
pub fn required(field: &str, raw: &str, max: usize, lines: Lines) -> ApiResult<String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::bad_input(format!("{field}: must not be empty")));
    }
    check(field, value, max, lines)?;
    Ok(value.to_owned())
}

/// Optional text: trimmed; blank becomes absent.
pub fn optional(
    field: &str,
    raw: Option<&str>,
    max: usize,
    lines: Lines,
) -> ApiResult<Option<String>> {
    match raw.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) => {
            check(field, value, max, lines)?;
            Ok(Some(value.to_owned()))
        }
        None => Ok(None),
    }
}

/// A provider name (`openai`, `github`, ...): one line of at most 100 characters, kept in
/// lower case, so the catalog, keys and integrations compare providers alike.
pub fn provider(field: &str, raw: &str) -> ApiResult<String> {
    Ok(required(field, raw, 100, Lines::One)?.to_lowercase())
}

/// A JSON value clients send: no NUL anywhere in its strings or keys, which Postgres'
/// `jsonb` cannot store (SQLite would), so both backends keep the same values.
pub fn json(field: &str, value: &Value) -> ApiResult<()> {
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(map) => map
                .iter()
                .any(|(key, value)| key.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    if holds_nul(value) {
        return Err(ApiError::bad_input(format!(
            "{field}: must not contain the NUL character"
        )));
    }
    Ok(())
}

/// [`json`], and an object.
pub fn json_object(field: &str, value: &Value) -> ApiResult<()> {
    if !value.is_object() {
        return Err(ApiError::bad_input(format!(
            "{field}: must be a JSON object"
        )));
    }
    json(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_refuse_nul_anywhere() {
        assert!(json_object("input", &serde_json::json!({ "a": [1, "b"] })).is_ok());
        assert!(json_object("input", &serde_json::json!([1])).is_err());
        for bad in [
            serde_json::json!({ "a": "x\u{0}" }),
            serde_json::json!({ "a\u{0}": 1 }),
            serde_json::json!({ "a": [{ "b": "\u{0}" }] }),
        ] {
            assert!(json("input", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_refuse_control_characters() {
        assert_eq!(
            required("name", "  Site ", 10, Lines::One).ok().as_deref(),
            Some("Site")
        );
        assert!(required("name", "   ", 10, Lines::One).is_err());
        assert!(required("name", "a\u{0}b", 10, Lines::One).is_err());
        assert!(required("name", "a\nb", 10, Lines::One).is_err());
        assert!(required("name", "abcdefghijk", 10, Lines::One).is_err());
        assert_eq!(
            required("name", "ééé", 3, Lines::One).ok().as_deref(),
            Some("ééé")
        );
    }

    #[test]
    fn descriptions_keep_line_breaks_but_not_nul() {
        assert_eq!(
            optional("d", Some("one\ntwo"), 20, Lines::Many)
                .ok()
                .flatten()
                .as_deref(),
            Some("one\ntwo")
        );
        assert!(optional("d", Some("a\u{0}"), 20, Lines::Many).is_err());
        assert_eq!(
            optional("d", Some("  "), 20, Lines::Many).ok().flatten(),
            None
        );
    }
}
