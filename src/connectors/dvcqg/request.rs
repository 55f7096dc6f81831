//! Building the portal's requests: the operations it offers, and the body and headers every
//! call carries.
//!
//! # Invariants
//! - Every body carries `session` (session auth only), `madonvi` and `service`, in that order,
//!   then the operation's fields; every request the `dstcode` header (the unit code).
//! - With OAuth2 (LGSP) the token travels as `Authorization: Bearer`, never in the body.

use serde_json::Value;

use crate::transport::exchange::OutRequest;

/// Portal operations used here.
pub mod service {
    pub const SYNC_DOSSIERS: &str = "DongBoHoSoMC";
    pub const SYNC_PROGRESS: &str = "CapNhatTienDoHoSoMC";
    pub const SYNC_STATUS: &str = "DongBoTrangThaiHoSo";
    pub const LOOKUP: &str = "TraCuuHoSo";
}

/// The credential a call carries.
pub(super) enum Credential<'a> {
    /// In the body, as `session`.
    Session(&'a str),
    /// As `Authorization: Bearer`.
    Bearer(&'a str),
}

/// The call of `service` with `fields` at `url`, before signing.
pub(super) fn call(
    url: &str,
    unit_code: &str,
    service: &str,
    credential: Credential<'_>,
    fields: &serde_json::Map<String, Value>,
) -> OutRequest {
    let mut body = serde_json::Map::new();
    if let Credential::Session(s) = credential {
        body.insert("session".into(), Value::String(s.to_string()));
    }
    body.insert("madonvi".into(), Value::String(unit_code.to_string()));
    body.insert("service".into(), Value::String(service.into()));
    body.extend(fields.clone());
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("dstcode".to_string(), unit_code.to_string()),
    ];
    if let Credential::Bearer(t) = credential {
        headers.push(("authorization".into(), format!("Bearer {t}")));
    }
    OutRequest {
        url: url.to_string(),
        headers,
        body: serde_json::to_vec(&Value::Object(body)).expect("JSON serializes"),
    }
}

/// The session login (`service`, `username`, `password`).
pub(super) fn login(
    url: &str,
    unit_code: &str,
    service: &str,
    username: &str,
    password: &str,
) -> OutRequest {
    let body = serde_json::json!({"service": service, "username": username, "password": password});
    OutRequest {
        url: url.to_string(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("dstcode".into(), unit_code.to_string()),
        ],
        body: serde_json::to_vec(&body).expect("JSON serializes"),
    }
}
