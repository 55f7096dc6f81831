//! SmartCA's paths and bodies, with its field names as SmartCA spells them.

use serde_json::{json, Value};

use super::settings::Settings;
use crate::connectors::signer::HashRequest;

pub(super) const CERTIFICATE: &str = "/v1/credentials/get_certificate";
pub(super) const SIGN: &str = "/v1/signatures/sign";

/// `/v1/signatures/sign/{transaction_id}/status`.
pub(super) fn status_path(tx: &str) -> String {
    format!("/v1/signatures/sign/{tx}/status")
}

fn with_sp(s: &Settings, mut v: Value) -> Value {
    v["sp_id"] = json!(s.sp_id);
    v["sp_password"] = json!(s.sp_password.expose());
    v
}

pub(super) fn certificate(s: &Settings, user_id: &str, serial: Option<&str>, tx: &str) -> Value {
    let mut v = json!({"user_id": user_id, "transaction_id": tx});
    if let Some(sr) = serial {
        v["serial_number"] = json!(sr);
    }
    with_sp(s, v)
}

/// The signing request: one file, `sign_type` "hash", the hex digest.
pub(super) fn sign(
    s: &Settings,
    req: &HashRequest,
    serial: &str,
    tx: &str,
    time_stamp: &str,
) -> Value {
    with_sp(
        s,
        json!({
            "user_id": req.signer.0,
            "transaction_id": tx,
            "transaction_desc": req.description,
            "serial_number": serial,
            "time_stamp": time_stamp,
            "sign_files": [{
                "doc_id": req.request_id,
                "file_type": "other",
                "sign_type": "hash",
                "data_to_be_signed": hex::encode(&req.digest),
            }],
        }),
    )
}

pub(super) fn status(s: &Settings) -> Value {
    with_sp(s, json!({}))
}

/// `yyyyMMddHHmmss` in Vietnam time.
pub(super) fn time_stamp() -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(crate::model::time::VIETNAM);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
