//! Reading CSC answers: `{error, error_description}` on failure, the fields of each operation
//! on success.

use serde_json::Value;

use super::settings::Settings;
use crate::connectors::officials::{b64, json_of, status_error};
use crate::connectors::signer::{SignStatus, SignerError};
use crate::signing::remote::{SignatureForm, SignatureValue};
use crate::transport::stack::Reply;

/// The CSC `error` of a failed answer, when it has one.
fn error_of(r: &Reply) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let e = v.get("error")?.as_str()?.to_string();
    let d = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((e, d))
}

/// A failed answer as an error: the service's `error` for a 4xx, the status otherwise.
fn failed(step: &'static str, r: &Reply) -> SignerError {
    match error_of(r) {
        Some((code, message)) if (400..500).contains(&r.status) => SignerError::Refused {
            step,
            code,
            message,
            retryable: false,
        },
        _ => status_error(step, r),
    }
}

/// The body of a 2xx answer, else the error.
pub(super) fn ok(step: &'static str, r: &Reply) -> Result<Value, SignerError> {
    if !(200..300).contains(&r.status) {
        return Err(failed(step, r));
    }
    json_of(step, r)
}

pub(super) fn first_credential(v: &Value) -> Option<String> {
    v.pointer("/credentialIDs/0")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `cert.certificates` (base64 DER, leaf first).
pub(super) fn certificates(v: &Value) -> Result<Vec<String>, SignerError> {
    v.pointer("/cert/certificates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|a| !a.is_empty())
        .ok_or(SignerError::Answer {
            step: "credentials/info",
            detail: "no cert.certificates".into(),
        })
}

pub(super) fn sad(v: &Value) -> Result<String, SignerError> {
    v.get("SAD")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or(SignerError::Answer {
            step: "credentials/authorize",
            detail: "no SAD".into(),
        })
}

/// What a signHash or signPolling answer says: signed, or the state its `error` names.
pub(super) fn outcome(
    s: &Settings,
    step: &'static str,
    r: &Reply,
) -> Result<SignStatus, SignerError> {
    if (200..300).contains(&r.status) {
        let v = json_of(step, r)?;
        let sig =
            v.pointer("/signatures/0")
                .and_then(Value::as_str)
                .ok_or(SignerError::Answer {
                    step,
                    detail: "no signatures[0]".into(),
                })?;
        return Ok(SignStatus::Signed(SignatureValue {
            bytes: b64(step, sig)?,
            form: SignatureForm::Raw,
            certificate: None,
        }));
    }
    if let Some((code, desc)) = error_of(r) {
        let is = |l: &[String]| l.contains(&code);
        if is(&s.waiting) {
            return Ok(SignStatus::Waiting);
        }
        if is(&s.rejected) {
            return Ok(SignStatus::Rejected(format!(
                "the official refused ({desc})"
            )));
        }
        if is(&s.expired) {
            return Ok(SignStatus::Expired);
        }
        if is(&s.not_found) {
            return Ok(SignStatus::NotFound);
        }
    }
    Err(failed(step, r))
}

/// The `responseID` of an asynchronous signHash.
pub(super) fn response_id(v: &Value) -> Result<String, SignerError> {
    v.get("responseID")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or(SignerError::Answer {
            step: "signatures/signHash",
            detail: "no responseID".into(),
        })
}
