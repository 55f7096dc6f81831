//! Event payloads ↔ edXML, pure.
//!
//! - `document.send` (to the axis): `{"envelope": <the edXML description, as `gateway edxml
//!   build` reads it>, "attachments": [{"content_id", "base64"}]}`; the event's key is the
//!   DocumentId.
//! - `document.status` (to the axis): `{"axis_id": <the axis's id of the received item>,
//!   "status": <an axis word (`processing`) or a StatusCode (`05`)>}`.
//! - `document.received` and `document.status` (from the axis): built by [`received`] and
//!   [`status_received`] from a verified envelope.
//!
//! # Invariants
//! - A payload that does not translate is an error naming the field: the route dead-letters
//!   it; nothing half-built is sent.
//! - Received text (Vietnamese subjects, names) is passed on exactly as the envelope has it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use gw_edxml::model::{Envelope, Header, StatusHeader};
use gw_edxml::read::AttachmentInfo;
use gw_edxml::status::Status;
use serde::Deserialize;
use serde_json::{json, Value};

/// Why a payload cannot become what the axis takes.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("document.send payload: {0}")]
    SendPayload(String),
    #[error("document.send attachment {content_id:?}: not base64: {why}")]
    Base64 { content_id: String, why: String },
    #[error("the envelope comes From organ {from}, but this adapter sends for organ {ours}")]
    NotOurOrgan { from: String, ours: String },
    #[error(
        "document.send carries a {what}; only documents are sent (statuses go as document.status)"
    )]
    NotADocument { what: &'static str },
    #[error("document.status payload: {0}")]
    StatusPayload(String),
    #[error("status {status:?} is neither an axis word nor a StatusCode")]
    UnknownStatus { status: String },
    #[error("status {status:?} has no axis word; updateStatus cannot carry it")]
    NoWord { status: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendPayload {
    envelope: Envelope,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    content_id: String,
    base64: String,
}

/// Attachments' bytes by ContentId, in the payload's order.
pub type Attachments = Vec<(String, Vec<u8>)>;

/// A `document.send` payload: the description and its attachments' bytes, checked to come
/// From `organ_id`.
pub fn document_to_send(
    payload: &Value,
    organ_id: &str,
) -> Result<(Envelope, Attachments), TranslateError> {
    let p: SendPayload = serde_json::from_value(payload.clone())
        .map_err(|e| TranslateError::SendPayload(e.to_string()))?;
    let Header::Document(h) = &p.envelope.header else {
        return Err(TranslateError::NotADocument {
            what: "status message",
        });
    };
    if h.from.organ_id != organ_id {
        return Err(TranslateError::NotOurOrgan {
            from: h.from.organ_id.clone(),
            ours: organ_id.to_string(),
        });
    }
    let mut atts = Vec::with_capacity(p.attachments.len());
    for a in p.attachments {
        let bytes = B64
            .decode(a.base64.as_bytes())
            .map_err(|e| TranslateError::Base64 {
                content_id: a.content_id.clone(),
                why: e.to_string(),
            })?;
        atts.push((a.content_id, bytes));
    }
    Ok((p.envelope, atts))
}

/// A `document.status` payload: the axis id and the axis word.
pub fn status_to_send(payload: &Value) -> Result<(String, Status), TranslateError> {
    let axis_id = payload
        .get("axis_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TranslateError::StatusPayload("no axis_id".into()))?;
    let status = payload
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::StatusPayload("no status".into()))?;
    let st = Status::from_word(status)
        .or_else(|| Status::from_code(status))
        .ok_or_else(|| TranslateError::UnknownStatus {
            status: status.into(),
        })?;
    if st.word().is_none() {
        return Err(TranslateError::NoWord {
            status: status.into(),
        });
    }
    Ok((axis_id.to_string(), st))
}

/// The `document.received` payload of a verified document: the axis's id, the envelope (its
/// description), the attachments with their bytes, the signer.
pub fn received(
    axis_id: &str,
    envelope: &Envelope,
    attachments: &[(AttachmentInfo, Vec<u8>)],
    signer: &str,
) -> Value {
    let atts: Vec<Value> = attachments
        .iter()
        .map(|(i, bytes)| {
            json!({"content_id": i.content_id, "attachment_name": i.attachment_name,
                   "content_type": i.content_type, "size": i.size,
                   "sha256": hex::encode(i.sha256), "base64": B64.encode(bytes)})
        })
        .collect();
    json!({"axis_id": axis_id, "envelope": envelope, "attachments": atts, "signer": signer})
}

/// The `document.status` payload of a verified status message.
pub fn status_received(axis_id: &str, s: &StatusHeader) -> Value {
    json!({"axis_id": axis_id,
           "document_id": s.response_for.document_id.to_string(),
           "code": s.status.code(), "status": s.status.word(),
           "meaning": s.status.meaning(),
           "from": s.from.organ_id, "description": s.description,
           "timestamp": s.timestamp})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> Value {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/edxml/samples/document.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn send_payloads_translate_or_name_what_is_wrong() {
        let p = json!({"envelope": description(), "attachments": [
            {"content_id": "a", "base64": "SGVsbG8="}]});
        let (env, atts) = document_to_send(&p, "000.00.00.H22").unwrap();
        assert_eq!(atts, vec![("a".to_string(), b"Hello".to_vec())]);
        let Header::Document(h) = env.header else {
            panic!()
        };
        assert!(h.subject.starts_with("V/v cấp giấy"));
        let e = document_to_send(&p, "000.00.01.H22").unwrap_err();
        assert!(matches!(e, TranslateError::NotOurOrgan { .. }), "{e}");
        let bad = json!({"envelope": description(), "attachments": [
            {"content_id": "a", "base64": "***"}]});
        assert!(matches!(
            document_to_send(&bad, "000.00.00.H22"),
            Err(TranslateError::Base64 { .. })
        ));
        let e = document_to_send(&json!({"envelope": {}}), "x").unwrap_err();
        assert!(e.to_string().starts_with("document.send payload"), "{e}");
    }

    #[test]
    fn status_payloads_take_words_or_codes() {
        let (id, st) = status_to_send(&json!({"axis_id": "in-1", "status": "05"})).unwrap();
        assert_eq!((id.as_str(), st.word()), ("in-1", Some("processing")));
        let (_, st) = status_to_send(&json!({"axis_id": "in-1", "status": "done"})).unwrap();
        assert_eq!(st.code(), Some("06"));
        assert!(matches!(
            status_to_send(&json!({"axis_id": "in-1", "status": "15"})),
            Err(TranslateError::NoWord { .. })
        ));
        assert!(matches!(
            status_to_send(&json!({"axis_id": "in-1", "status": "07"})),
            Err(TranslateError::UnknownStatus { .. })
        ));
        assert!(matches!(
            status_to_send(&json!({"status": "done"})),
            Err(TranslateError::StatusPayload(_))
        ));
    }
}
