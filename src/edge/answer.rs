//! The edge's answers: one JSON error shape for every refusal of every inbound endpoint.
//!
//! # Invariants
//! - Every refusal is `{"error": {"code": "...", "message": "..."}}` with a stable `code`;
//!   the message explains, and never echoes a secret or personal data from the request.
//! - A 503 always carries `Retry-After`: nothing was accepted, the sender retries.
//! - `Content-Type` is checked on the head, before a byte of the body is read.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why [`parse_event`] refused a body: the HTTP status, the error code and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub(crate) fn refuse(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// 503 with `Retry-After: secs`: the request was not accepted and the sender should retry.
pub fn unavailable(code: &str, message: impl Into<String>, secs: u32) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    r
}

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// 415 unless the request says its body is JSON (`application/json`, parameters allowed).
/// Checked on the head, before the body is read, on every JSON endpoint of the edge.
#[allow(clippy::result_large_err)]
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Response> {
    match headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            format!("Content-Type must be application/json, not {ct}"),
        )),
        None => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            "Content-Type must be application/json",
        )),
    }
}
