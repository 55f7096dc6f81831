//! Reading the fields of a provider's JSON message (callbacks, IPNs, query answers).
//!
//! # Invariants
//! - A field is read as text: a JSON string as is, a number as its decimal text, anything
//!   else (or absent) as "" — providers send amounts and codes either way.
//! - A malformed message is refused with the step that failed ([`FieldError`]); it never
//!   panics and never logs the message's content.

/// Why a provider message's fields cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The body is not a JSON object (`what`: `callback`, `IPN`).
    #[error("the {0} is not a JSON object")]
    NotObject(&'static str),
    #[error("{0} is missing")]
    Missing(String),
    /// Fields that must all be present (`orderId and errorCode`).
    #[error("{0} are required")]
    Required(&'static str),
    #[error("{0} is not a whole number")]
    NotWhole(String),
    #[error("{0} is not a number")]
    NotNumber(String),
    #[error("{0} is too large")]
    TooLarge(String),
}

/// The string value of `field` in a JSON object (numbers as their text; absent = "").
pub fn field(v: &serde_json::Value, field: &str) -> String {
    match v.get(field) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A whole number, as a JSON number or a string of digits.
pub fn whole(v: &serde_json::Value, k: &str) -> Result<i64, FieldError> {
    let s = field(v, k);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotWhole(k.into()));
    }
    s.parse().map_err(|_| FieldError::TooLarge(k.into()))
}
