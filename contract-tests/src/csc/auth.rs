//! The CSC service's OAuth2 token endpoint, bearer tokens and SADs.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde_json::{json, Value};

use super::state::{Shared, St};
use crate::officials::http::{answer, deliver, unavailable};
use crate::officials::{FaultStep, Received};

pub(super) async fn token_ep(
    State(sh): St,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    record(&sh, "oauth2/token", Value::Null, 0);
    let basic = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let (id, secret) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((i, s)) => (Some(i.to_string()), Some(s.to_string())),
        None => (f.get("client_id").cloned(), f.get("client_secret").cloned()),
    };
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(
            &sh,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if id.as_deref() != Some(&sh.cfg.client_id) || secret.as_deref() != Some(&sh.cfg.client_secret)
    {
        return error(
            &sh,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let step = match take_fault(&sh) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let token = {
        let mut g = sh.core.lock().unwrap();
        g.records.logins += 1;
        g.next_id("csc-")
    };
    sh.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + sh.cfg.token_lifetime);
    deliver(
        step,
        answer(
            StatusCode::OK,
            json!({"access_token": token, "token_type": "Bearer", "expires_in": sh.cfg.token_lifetime.as_secs()}),
        ),
    )
    .await
}

pub(super) fn record(sh: &Shared, path: &str, body: Value, bytes: usize) {
    sh.core.lock().unwrap().records.received.push(Received {
        path: path.into(),
        bytes,
        body,
    });
}

/// A CSC error answer `{error, error_description}`, recorded as a refusal.
pub(super) fn error(sh: &Shared, status: StatusCode, code: &str, description: &str) -> Response {
    sh.core
        .lock()
        .unwrap()
        .records
        .refused
        .push(format!("{code}: {description}"));
    answer(
        status,
        json!({"error": code, "error_description": description}),
    )
}

// The refusal is the answer itself (as in `src/edge`): boxing it buys nothing here.
#[allow(clippy::result_large_err)]
pub(super) fn take_fault(sh: &Shared) -> Result<FaultStep, Response> {
    let mut g = sh.core.lock().unwrap();
    let rolled = g.roll_server_error();
    match g.faults.take(rolled) {
        FaultStep::FailBefore => Err(unavailable()),
        s => Ok(s),
    }
}

/// A live bearer token, or the 401.
// The refusal is the answer itself (as in `src/edge`): boxing it buys nothing here.
#[allow(clippy::result_large_err)]
pub(super) fn bearer(sh: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let token = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let live = token.is_some_and(|t| {
        sh.tokens
            .lock()
            .unwrap()
            .get(t)
            .is_some_and(|until| *until > Instant::now())
    });
    if live {
        Ok(())
    } else {
        Err(error(
            sh,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "missing, unknown or expired bearer token",
        ))
    }
}
