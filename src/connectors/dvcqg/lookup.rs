//! Look-ups at the portal: `TraCuuHoSo` (does the portal know a dossier, what does it hold),
//! the resolution of exchanges in doubt, and the sharing endpoint's listings.
//!
//! # Invariants
//! - A look-up never sends: it only reads what the portal holds.
//! - "The portal does not know it" is an answer (a configured `not_found` code), not a
//!   failure; every other failure is returned as the attempt it was, to be retried.
//! - An exchange in doubt is `already_there` only when every field we would send equals the
//!   portal's; when the answer cannot tell (no progress list), the step is `unverified`.

use serde_json::Value;

use super::client::Inner;
use super::request::service;
use super::{progress, translate};
use crate::connectors::connector::{Attempted, InDoubtCheck};
use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::outcome::{Answer, Decision};
use crate::model::Dossier;

/// The progress list in the `TraCuuHoSo` answer. **Assumed name**: the portal's look-up answer
/// is public only for the dossier's own fields; the sandbox answers this list.
pub const PROGRESS_LIST: &str = "TienDoXuLy";

/// Why a call on the sharing endpoint gave no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharingError {
    /// The portal answered success, but not with JSON.
    #[error("{service}: the answer is not JSON")]
    NotJson { service: String },
    /// No answer: connect, timeout, a broken exchange, or the request not built.
    #[error("{service}: {}{detail}", code_prefix(.code))]
    Transport {
        service: String,
        code: Option<String>,
        detail: String,
    },
    /// The portal answered with an error (HTTP status or `error_code`).
    #[error("{service}: {}HTTP {status}: {body}", code_prefix(.code))]
    Refused {
        service: String,
        code: Option<String>,
        status: u16,
        /// The answer's start (at most 300 characters).
        body: String,
    },
}

fn code_prefix(code: &Option<String>) -> String {
    code.as_ref()
        .map(|c| format!("error_code {c}: "))
        .unwrap_or_default()
}

/// One authenticated call on the sharing endpoint: the answer's `result` (`null` when absent).
pub(super) async fn sharing_call(
    inner: &Inner,
    service: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<Value, SharingError> {
    let (attempted, code, parsed) = inner
        .call_full(service, &inner.settings.sharing_url, fields)
        .await;
    match attempted.decision {
        Decision::Delivered => parsed
            .map(|v| v.get("result").cloned().unwrap_or(Value::Null))
            .ok_or_else(|| SharingError::NotJson {
                service: service.into(),
            }),
        _ => Err(match attempted.answer {
            Answer::Http { status, body, .. } => SharingError::Refused {
                service: service.into(),
                code,
                status,
                body: body.chars().take(300).collect(),
            },
            Answer::Transport { detail, .. } => SharingError::Transport {
                service: service.into(),
                code,
                detail,
            },
        }),
    }
}

/// In doubt: `TraCuuHoSo` shows the dossier as the portal holds it. A snapshot is there when
/// every field we would send equals the portal's (`TrangThaiHoSo` aside: a later
/// `DongBoTrangThaiHoSo` changes it); a progress step when the answer's progress list has
/// an item equal to ours in every field we send. The list's name, `TienDoXuLy`, is an
/// **assumption** (the portal's look-up answer is not public beyond the dossier fields):
/// an answer without it cannot tell, and the step is sent again as `unverified`.
pub(super) async fn resolve_in_doubt(inner: &Inner, env: &Envelope) -> InDoubtCheck {
    let (ours, progress) = match EventKind::parse(&env.kind) {
        Some(kind @ (EventKind::DossierUpserted | EventKind::DossierStatus)) => {
            let dossier = match env.payload_as::<Dossier>() {
                Ok(d) => d,
                // It cannot be sent either: let the send refuse it.
                Err(_) => return InDoubtCheck::NotThere,
            };
            let item = if kind == EventKind::DossierStatus {
                translate::status_body(&dossier).map(Value::Object)
            } else {
                translate::dossier_item(&dossier, &inner.procedures)
            };
            match item {
                Ok(v) => (v, false),
                Err(_) => return InDoubtCheck::NotThere,
            }
        }
        Some(EventKind::DossierProgress) => match progress::item(&env.payload).ok() {
            Some(v) => (v, true),
            None => return InDoubtCheck::NotThere,
        },
        _ => return InDoubtCheck::Unverifiable("no look-up for this kind"),
    };
    let found = match lookup_item(inner, &env.key).await {
        Ok(Some(found)) => found,
        Ok(None) => return InDoubtCheck::NotThere,
        Err(a) => return InDoubtCheck::LookupFailed(a),
    };
    let holds = |theirs: &Value, skip: &[&str]| match (ours.as_object(), theirs.as_object()) {
        (Some(o), Some(t)) => o
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| t.get(k) == Some(v)),
        _ => false,
    };
    let there = if progress {
        match found.get(PROGRESS_LIST).and_then(Value::as_array) {
            Some(list) => list.iter().any(|step| holds(step, &[])),
            None => return InDoubtCheck::Unverifiable("the look-up lists no progress"),
        }
    } else if EventKind::DossierStatus.is(&env.kind) {
        found.get("TrangThaiHoSo") == ours.get("TrangThaiHoSo")
    } else {
        holds(&found, &["TrangThaiHoSo"])
    };
    if there {
        InDoubtCheck::AlreadyThere
    } else {
        InDoubtCheck::NotThere
    }
}

/// `TraCuuHoSo`, the whole answer: the dossier as the portal holds it (`result`), `None`
/// when the portal does not know it, or why the look-up failed.
async fn lookup_item(inner: &Inner, code: &str) -> Result<Option<Value>, Attempted> {
    let mut fields = serde_json::Map::new();
    fields.insert("mahoso".into(), Value::String(code.to_string()));
    let (attempted, err, parsed) = inner
        .call_full(service::LOOKUP, &inner.settings.sharing_url, fields)
        .await;
    match (&attempted.decision, err.as_deref()) {
        (Decision::Delivered, _) => Ok(Some(
            parsed
                .and_then(|p| p.get("result").cloned())
                .unwrap_or(Value::Null),
        )),
        (_, Some(c)) if inner.settings.not_found.iter().any(|n| n == c) => Ok(None),
        _ => Err(attempted),
    }
}

/// `TraCuuHoSo`: does the portal know this dossier?
pub(super) async fn lookup(inner: &Inner, code: &str) -> Result<bool, Attempted> {
    let mut fields = serde_json::Map::new();
    fields.insert("mahoso".into(), Value::String(code.to_string()));
    let (attempted, err) = inner
        .call(service::LOOKUP, &inner.settings.sharing_url, fields)
        .await;
    match (&attempted.decision, err.as_deref()) {
        (Decision::Delivered, _) => Ok(true),
        (_, Some(c)) if inner.settings.not_found.iter().any(|n| n == c) => Ok(false),
        _ => Err(attempted),
    }
}
