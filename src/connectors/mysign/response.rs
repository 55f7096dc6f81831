//! Reading MySign's answers.

use serde_json::Value;

use super::settings::Settings;
use crate::connectors::officials::{b64, json_of, status_error};
use crate::connectors::signer::{SignStatus, SignerError};
use crate::signing::remote::{SignatureForm, SignatureValue};
use crate::transport::stack::Reply;

/// A non-2xx answer: a 4xx with the service's `message` is a refusal, anything else the
/// status itself.
fn failed(step: &'static str, r: &Reply) -> SignerError {
    if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 {
        if let Ok(v) = json_of(step, r) {
            if let Some(m) = v.get("message").and_then(Value::as_str) {
                return SignerError::Refused {
                    step,
                    code: r.status.to_string(),
                    message: m.into(),
                    retryable: false,
                };
            }
        }
    }
    status_error(step, r)
}

/// The certificates (base64 DER, leaf first) of `credential` in a certificates/info answer.
pub(super) fn certificates(r: &Reply, credential: &str) -> Result<Vec<String>, SignerError> {
    const STEP: &str = "certificates/info";
    if !(200..300).contains(&r.status) {
        return Err(failed(STEP, r));
    }
    let v = json_of(STEP, r)?;
    let list = match &v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let item = list
        .iter()
        .find(|c| {
            c.get("credential_id")
                .or_else(|| c.get("credentialID"))
                .and_then(Value::as_str)
                == Some(credential)
        })
        .ok_or(SignerError::Answer {
            step: STEP,
            detail: format!("credential `{credential}` is not among the user's credentials"),
        })?;
    item.pointer("/cert/certificates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .ok_or(SignerError::Answer {
            step: STEP,
            detail: "no cert.certificates".into(),
        })
}

pub(super) fn transaction(r: &Reply) -> Result<String, SignerError> {
    const STEP: &str = "signHash";
    if !(200..300).contains(&r.status) {
        return Err(failed(STEP, r));
    }
    json_of(STEP, r)?
        .get("transactionId")
        .and_then(|t| {
            t.as_str()
                .map(str::to_string)
                .or_else(|| t.as_i64().map(|n| n.to_string()))
        })
        .filter(|t| !t.is_empty())
        .ok_or(SignerError::Answer {
            step: STEP,
            detail: "no transactionId".into(),
        })
}

pub(super) fn status(s: &Settings, r: &Reply) -> Result<SignStatus, SignerError> {
    const STEP: &str = "requests/status";
    if r.status == 404 {
        return Ok(SignStatus::NotFound);
    }
    if !(200..300).contains(&r.status) {
        return Err(failed(STEP, r));
    }
    let v = json_of(STEP, r)?;
    let st = v
        .get("status")
        .and_then(|t| {
            t.as_str()
                .map(str::to_string)
                .or_else(|| t.as_i64().map(|n| n.to_string()))
        })
        .ok_or(SignerError::Answer {
            step: STEP,
            detail: "no status".into(),
        })?;
    let is = |l: &[String]| l.contains(&st);
    if is(&s.waiting) {
        Ok(SignStatus::Waiting)
    } else if is(&s.signed) {
        let sig =
            v.pointer("/signatures/0")
                .and_then(Value::as_str)
                .ok_or(SignerError::Answer {
                    step: STEP,
                    detail: "signed, but no signatures[0]".into(),
                })?;
        Ok(SignStatus::Signed(SignatureValue {
            bytes: b64(STEP, sig)?,
            form: SignatureForm::Raw,
            certificate: None,
        }))
    } else if is(&s.rejected) {
        Ok(SignStatus::Rejected(format!(
            "the official refused ({})",
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        )))
    } else if is(&s.expired) {
        Ok(SignStatus::Expired)
    } else {
        Err(SignerError::Answer {
            step: STEP,
            detail: format!("unknown status `{st}` (signers.{}.codes)", s.name),
        })
    }
}
