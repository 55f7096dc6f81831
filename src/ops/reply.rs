//! The ops API's shared replies: the error shape, the operator check, times as RFC 3339. A
//! leaf of the ops room (it imports nothing of it), so every API file may use it.
//!
//! # Invariants
//! - Errors are `{"error": {"code": "…", "message": "…"}}` with a stable code.
//! - A viewer token gets 403 `forbidden` on anything that changes state.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::Caller;
use crate::config::OpsRole;

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// RFC 3339 (UTC, milliseconds) of a unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    crate::model::time::rfc3339(ms)
}

/// 403 unless the caller is an operator.
pub fn require_operator(caller: &Caller) -> Option<Response> {
    (caller.role != OpsRole::Operator).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "replay, drop and enable need an operator token",
        )
    })
}
