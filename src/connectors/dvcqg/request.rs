//! Building the portal's requests: the operations it offers, and the body and headers every
//! call carries.
//!
//! # Invariants
//! - Every body carries `session` (session auth only), `madonvi` and `service`, in that order,
//!   then the operation's fields; every request the `dstcode` header (the unit code).
//! - With OAuth2 (LGSP) the token travels as `Authorization: Bearer`, never in the body.

use std::collections::BTreeMap;

use serde::Serialize;
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

/// The call of `service` with `fields` at `url`, before signing; a batch's `data` array is
/// given by reference: its items are written into the body as they are, never copied into a
/// map first. The body is the same bytes as with `data` among the fields (keys in the order
/// of a `serde_json::Map`: sorted).
pub(super) fn call(
    url: &str,
    unit_code: &str,
    service: &str,
    credential: Credential<'_>,
    fields: &serde_json::Map<String, Value>,
    data: Option<&[&Value]>,
) -> OutRequest {
    let (session, madonvi, service) = (
        match credential {
            Credential::Session(s) => Some(Value::String(s.to_string())),
            Credential::Bearer(_) => None,
        },
        Value::String(unit_code.to_string()),
        Value::String(service.into()),
    );
    let mut body: BTreeMap<&str, Field<'_>> = BTreeMap::new();
    if let Some(s) = &session {
        body.insert("session", Field::One(s));
    }
    body.insert("madonvi", Field::One(&madonvi));
    body.insert("service", Field::One(&service));
    for (k, v) in fields {
        body.insert(k, Field::One(v));
    }
    if let Some(items) = data {
        body.insert("data", Field::Items(items));
    }
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
        body: serde_json::to_vec(&body).expect("JSON serializes"),
    }
}

/// A body field, borrowed: one value, or a batch's items as an array.
enum Field<'a> {
    One(&'a Value),
    Items(&'a [&'a Value]),
}

impl Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::One(v) => v.serialize(s),
            Field::Items(items) => items.serialize(s),
        }
    }
}

/// The length of `v` written as compact JSON, counted without building the text.
pub(super) fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
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
