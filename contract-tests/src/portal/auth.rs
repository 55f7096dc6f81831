//! Authentication: the login service (session tokens) and the OAuth2 token endpoint.
//!
//! # Invariants
//!
//! - A login succeeds only with a configured user and unit; each success counts in
//!   [`Records::logins`](crate::portal::Records::logins).
//! - Sessions and tokens expire after their configured lifetime; an expired one is refused
//!   with `session_expired`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::answer::Answer;
use super::config::PortalConfig;
use super::state::{Inner, St};

/// `POST {token_path}`: OAuth2 client credentials (LGSP mode).
pub(super) async fn token_ep(
    st: St,
    form: axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let Some(clients) = st.cfg.oauth2.clone() else {
        return (StatusCode::NOT_FOUND, "LGSP mode is off").into_response();
    };
    let f = &form.0;
    let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
        && f.get("client_id") == Some(&clients.client_id)
        && f.get("client_secret") == Some(&clients.client_secret);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = format!("{:032x}", rand::rng().random::<u128>());
    let mut g = st.inner.lock().unwrap();
    g.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(clients.token_ttl_secs),
    );
    g.records.tokens_issued += 1;
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": clients.token_ttl_secs})).into_response()
}

pub(super) fn login(cfg: &PortalConfig, g: &mut Inner, body: &Map<String, Value>) -> Answer {
    let user = body.get("username").and_then(Value::as_str);
    let pass = body.get("password").and_then(Value::as_str);
    let (Some(user), Some(pass)) = (user, pass) else {
        return Answer::err(
            &cfg.codes.malformed,
            "login needs username and password strings".into(),
        );
    };
    if user != cfg.username || pass != cfg.password {
        return Answer::err(
            &cfg.codes.login_failed,
            "Tên đăng nhập hoặc mật khẩu không đúng (login failed)".into(),
        );
    }
    let token: String = {
        let mut r = rand::rng();
        (0..32)
            .map(|_| char::from_digit(r.random_range(0..16), 16).unwrap())
            .collect()
    };
    let now = Instant::now();
    g.sessions.retain(|_, exp| *exp > now);
    g.sessions.insert(
        token.clone(),
        now + Duration::from_millis(cfg.session_ttl_ms),
    );
    g.records.logins += 1;
    let mut a = Answer::ok("Đăng nhập thành công", Value::Null);
    a.session = Some(token);
    a
}
