//! The portal's answer envelope `{error_code, message, result}` and how it is rendered per
//! endpoint and code style.
//!
//! # Invariants
//!
//! - Every refusal decided by the portal's rules is HTTP 200 with its error code; only
//!   transport violations and injected faults use other statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::config::{CodeStyle, PortalConfig};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Login,
    Integration,
    Sharing,
}

/// One portal answer (always JSON).
pub(super) struct Answer {
    pub(super) http: StatusCode,
    /// `None` = success.
    pub(super) code: Option<String>,
    pub(super) message: String,
    pub(super) result: Value,
    pub(super) session: Option<String>,
    pub(super) retry_after: Option<u64>,
}

impl Answer {
    pub(super) fn ok(message: &str, result: Value) -> Answer {
        Answer {
            http: StatusCode::OK,
            code: None,
            message: message.into(),
            result,
            session: None,
            retry_after: None,
        }
    }

    pub(super) fn err(code: &str, message: String) -> Answer {
        Answer {
            http: StatusCode::OK,
            code: Some(code.into()),
            message,
            result: Value::Null,
            session: None,
            retry_after: None,
        }
    }

    pub(super) fn http(mut self, s: StatusCode) -> Answer {
        self.http = s;
        self
    }

    pub(super) fn result(mut self, r: Value) -> Answer {
        self.result = r;
        self
    }
}

pub(super) fn code_value(cfg: &PortalConfig, ep: Endpoint, code: Option<&str>) -> Value {
    let as_string = match cfg.code_style {
        CodeStyle::Number => false,
        CodeStyle::String => true,
        CodeStyle::Mixed => ep == Endpoint::Sharing,
    };
    match (code, as_string) {
        (None, true) => Value::from("00"),
        (None, false) => Value::from(0),
        (Some(c), true) => Value::from(c),
        (Some(c), false) => c.parse::<i64>().map(Value::from).unwrap_or(Value::from(c)),
    }
}

pub(super) fn render(cfg: &PortalConfig, ep: Endpoint, a: Answer) -> Response {
    let mut body = Map::new();
    if let Some(s) = a.session {
        body.insert("session".into(), Value::from(s));
    }
    body.insert("error_code".into(), code_value(cfg, ep, a.code.as_deref()));
    body.insert("message".into(), Value::from(a.message));
    body.insert("result".into(), a.result);
    let mut r = (a.http, Json(Value::Object(body))).into_response();
    if let Some(s) = a.retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}
