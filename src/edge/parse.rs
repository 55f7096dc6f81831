//! Untrusted bytes to an event: the part of the inbound contract the body reaches first.
//!
//! # Invariants
//! - Pure: no I/O, so it is fuzzed (`fuzz/fuzz_targets/inbound_event.rs`).
//! - A body is either mapped by the source's adapter (vendor JSON to the canonical dossier) or
//!   read as the generic `{"kind", "key", "version"?, "payload"}` shape with unknown fields
//!   refused; then `kind` and `key` are checked against [`crate::model::limits`].
//! - Not JSON is a 400; JSON that breaks a mapping rule is a 422.

use axum::http::StatusCode;
use serde::Deserialize;

use super::answer::{refuse, Refusal};
use crate::model::events::EventKind;
use crate::model::limits::{MAX_KEY_LEN, MAX_KIND_LEN};

/// A body accepted by [`parse_event`]: what the envelope is built from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundEvent {
    pub kind: String,
    pub key: String,
    #[serde(default)]
    pub version: Option<i64>,
    pub payload: serde_json::Value,
}

/// The event a mapped vendor message becomes: a snapshot (`dossier.upserted` /
/// `dossier.status`, versioned) or its newest progress step (`dossier.progress`, unversioned:
/// steps are never coalesced; the payload is [`crate::model::progress::Progress`]).
fn event_from_mapping(inb: crate::mapping::Inbound) -> Result<InboundEvent, Refusal> {
    let kind = inb.kind.envelope_kind().to_string();
    let key = inb.dossier.code.clone();
    let mapping_failed =
        |msg: String| refuse(StatusCode::UNPROCESSABLE_ENTITY, "mapping_failed", msg);
    match inb.kind {
        crate::mapping::InboundKind::Progress => {
            let step = inb.dossier.progress.last().cloned().ok_or_else(|| {
                mapping_failed("a progress message carries no progress step".into())
            })?;
            let progress = crate::model::progress::Progress {
                code: key.clone(),
                step,
            };
            Ok(InboundEvent {
                kind,
                key,
                version: None,
                payload: serde_json::to_value(&progress)
                    .map_err(|e| mapping_failed(e.to_string()))?,
            })
        }
        _ => Ok(InboundEvent {
            kind,
            key,
            version: Some(inb.version),
            payload: serde_json::to_value(&inb.dossier)
                .map_err(|e| mapping_failed(e.to_string()))?,
        }),
    }
}

/// The dossier a versioned snapshot event carries (`dossier.upserted` / `dossier.status`
/// with a dossier payload), for its fees; `None` for anything else.
pub(super) fn snapshot_of(ev: &InboundEvent) -> Option<crate::model::Dossier> {
    let snapshot = EventKind::parse(&ev.kind).is_some_and(EventKind::is_snapshot);
    if ev.version.is_none() || !snapshot {
        return None;
    }
    let d = crate::model::Dossier::deserialize(&ev.payload).ok()?;
    (d.code == ev.key).then_some(d)
}

/// Parse a request body into an event: through the source's adapter mapping when it has one,
/// else as the generic `{"kind", "key", "version"?, "payload"}` shape; then check `kind` and
/// `key`. Pure (no I/O): the part of the inbound contract that untrusted bytes reach first
/// (fuzzed by `fuzz/fuzz_targets/inbound_event.rs`).
pub fn parse_event(
    adapter: Option<&crate::mapping::Adapter>,
    body: &[u8],
) -> Result<InboundEvent, Refusal> {
    let ev: InboundEvent = match adapter {
        Some(adapter) => {
            // A body that is not JSON at all is a 400; JSON that breaks a mapping rule is a 422.
            let not_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err();
            match adapter.parse_inbound(body, "inbound request") {
                Ok(mut inb) => {
                    // Local procedure codes become national ones at the edge when the source
                    // adapter's table knows them (the portal adapter's table covers the rest).
                    if let Some(n) = adapter.national_procedure_code(&inb.dossier.procedure_code) {
                        inb.dossier.procedure_code = n.to_string();
                    }
                    event_from_mapping(inb)?
                }
                Err(e) if not_json => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        e.to_string(),
                    ))
                }
                Err(e) => {
                    return Err(refuse(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "mapping_failed",
                        e.to_string(),
                    ))
                }
            }
        }
        None => serde_json::from_slice(body).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the body is not a valid event: {e}"),
            )
        })?,
    };
    if ev.kind.trim().is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing_kind",
            "`kind` must not be empty",
        ));
    }
    // The kind reaches logs, metric labels and routing: a dotted name, nothing else (a
    // newline in it forged log lines).
    if ev.kind.len() > MAX_KIND_LEN
        || !ev
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_kind",
            format!("`kind` must be 1 to {MAX_KIND_LEN} of a-z, A-Z, 0-9, '.', '_', '-'"),
        ));
    }
    if ev.key.trim().is_empty()
        || ev.key.len() > MAX_KEY_LEN
        || ev.key.chars().any(char::is_control)
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_key",
            format!("`key` must be 1 to {MAX_KEY_LEN} printable characters"),
        ));
    }
    Ok(ev)
}
