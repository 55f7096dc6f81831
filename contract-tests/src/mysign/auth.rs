//! MySign's login and its bearer tokens (one per user).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::state::{Shared, St};
use crate::officials::http::{answer, deliver, json_object, text, unavailable};
use crate::officials::{FaultStep, Received};

pub(super) async fn login_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    record(&sh, "/vtss/service/ras/v1/login", &b);
    let m = match json_object(&h, &b) {
        Ok(m) => m,
        Err(e) => return refuse(&sh, e.status(), &e.to_string()),
    };
    for f in ["client_id", "client_secret", "user_id", "profile_id"] {
        if text(&m, f).is_none() {
            return refuse(&sh, StatusCode::BAD_REQUEST, &format!("missing {f}"));
        }
    }
    if text(&m, "client_id") != Some(&sh.cfg.client_id)
        || text(&m, "client_secret") != Some(&sh.cfg.client_secret)
        || text(&m, "profile_id") != Some(&sh.cfg.profile_id)
    {
        return refuse(
            &sh,
            StatusCode::UNAUTHORIZED,
            "invalid client_id, client_secret or profile_id",
        );
    }
    let user = text(&m, "user_id").unwrap().to_string();
    let step = match take_fault(&sh) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let resp = {
        let mut g = sh.core.lock().unwrap();
        if g.official(&user).is_none() {
            drop(g);
            return refuse(&sh, StatusCode::BAD_REQUEST, "unknown user_id");
        }
        let token = g.next_id("tok-");
        g.records.logins += 1;
        drop(g);
        sh.tokens.lock().unwrap().insert(
            token.clone(),
            (user, Instant::now() + sh.cfg.token_lifetime),
        );
        answer(
            StatusCode::OK,
            json!({"access_token": token, "token_type": "Bearer", "expires_in": sh.cfg.token_lifetime.as_secs()}),
        )
    };
    deliver(step, resp).await
}

pub(super) fn record(sh: &Shared, path: &str, b: &[u8]) {
    sh.core.lock().unwrap().records.received.push(Received {
        path: path.into(),
        bytes: b.len(),
        body: serde_json::from_slice(b).unwrap_or(Value::Null),
    });
}

pub(super) fn refuse(sh: &Shared, status: StatusCode, message: &str) -> Response {
    sh.core.lock().unwrap().records.refused.push(message.into());
    answer(status, json!({"code": status.as_u16(), "message": message}))
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

/// The user of a live bearer token, or the 401.
// The refusal is the answer itself (as in `src/edge`): boxing it buys nothing here.
#[allow(clippy::result_large_err)]
pub(super) fn bearer_user(sh: &Shared, h: &HeaderMap) -> Result<String, Response> {
    let token = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = token else {
        return Err(refuse(sh, StatusCode::UNAUTHORIZED, "missing bearer token"));
    };
    let live = sh
        .tokens
        .lock()
        .unwrap()
        .get(&token)
        .filter(|(_, until)| *until > Instant::now())
        .map(|(u, _)| u.clone());
    live.ok_or_else(|| refuse(sh, StatusCode::UNAUTHORIZED, "token expired or unknown"))
}
