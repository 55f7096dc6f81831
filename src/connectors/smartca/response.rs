//! Reading SmartCA's answers: the envelope `{status_code, message, data}` and its words.

use serde_json::Value;

use super::settings::Settings;
use crate::connectors::officials::{b64, json_of, status_error};
use crate::connectors::signer::{SignStatus, SignerError};
use crate::signing::remote::{SignatureForm, SignatureValue};
use crate::transport::stack::Reply;

/// The envelope's `status_code` and `message`.
fn envelope(step: &'static str, r: &Reply) -> Result<(i64, String, Value), SignerError> {
    let v = json_of(step, r)?;
    let code = v
        .get("status_code")
        .and_then(|c| {
            c.as_i64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| SignerError::Answer {
            step,
            detail: "no status_code".into(),
        })?;
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((code, message, v))
}

/// A refusal of the service (`status_code` other than 200).
fn refused(step: &'static str, code: i64, message: String) -> SignerError {
    SignerError::Refused {
        step,
        code: code.to_string(),
        message,
        retryable: code >= 500,
    }
}

/// The answer of a call whose HTTP status is not 2xx: its envelope when it has one (SmartCA
/// answers 401 with one for bad SP credentials), else the status.
fn non_2xx(step: &'static str, r: &Reply) -> SignerError {
    match envelope(step, r) {
        Ok((code, message, _)) if !(500..600).contains(&(r.status as i64)) => {
            refused(step, code, message)
        }
        _ => status_error(step, r),
    }
}

/// `user_certificates` of a certificate answer.
pub(super) fn certificates(r: &Reply) -> Result<Vec<Value>, SignerError> {
    const STEP: &str = "get_certificate";
    if !(200..300).contains(&r.status) {
        return Err(non_2xx(STEP, r));
    }
    let (code, message, v) = envelope(STEP, r)?;
    if code != 200 {
        return Err(refused(STEP, code, message));
    }
    v.pointer("/data/user_certificates")
        .and_then(Value::as_array)
        .cloned()
        .ok_or(SignerError::Answer {
            step: STEP,
            detail: "no data.user_certificates".into(),
        })
}

/// A sign answer: accepted, or why not.
pub(super) fn signed_request(r: &Reply) -> Result<(), SignerError> {
    const STEP: &str = "sign";
    if !(200..300).contains(&r.status) {
        return Err(non_2xx(STEP, r));
    }
    let (code, message, _) = envelope(STEP, r)?;
    if code != 200 {
        return Err(refused(STEP, code, message));
    }
    Ok(())
}

/// A status answer.
pub(super) fn status(s: &Settings, r: &Reply) -> Result<SignStatus, SignerError> {
    const STEP: &str = "status";
    if !(200..300).contains(&r.status) {
        return Err(non_2xx(STEP, r));
    }
    let (code, message, v) = envelope(STEP, r)?;
    let is = |list: &[String]| list.contains(&message);
    if is(&s.not_found) {
        return Ok(SignStatus::NotFound);
    }
    if code != 200 {
        return Err(refused(STEP, code, message));
    }
    if is(&s.waiting) {
        return Ok(SignStatus::Waiting);
    }
    if is(&s.rejected) {
        return Ok(SignStatus::Rejected(format!(
            "the official refused ({message})"
        )));
    }
    if is(&s.expired) {
        return Ok(SignStatus::Expired);
    }
    if is(&s.signed) {
        let sig = v
            .pointer("/data/signatures/0/signature_value")
            .and_then(Value::as_str)
            .ok_or(SignerError::Answer {
                step: STEP,
                detail: "signed, but no data.signatures[0].signature_value".into(),
            })?;
        return Ok(SignStatus::Signed(SignatureValue {
            bytes: b64(STEP, sig)?,
            form: SignatureForm::Raw,
            certificate: None,
        }));
    }
    Err(SignerError::Answer {
        step: STEP,
        detail: format!("unknown status word `{message}` (signers.{}.codes)", s.name),
    })
}
