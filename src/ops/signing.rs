//! The ops API's view of the remote-signing flow: requests pending per service (and per
//! state), for the dashboard, and the operator's cancel (what `gateway signing cancel` does).
//! The handlers in [`super::api`] answer with these.
//!
//! # Invariants
//! - Counts and codes only: no official's user id (it may be a citizen id), no document, no
//!   reason's words. Services are the configured names, states the store's words.
//! - Without `[signers]` the view is empty (`"services": []`) and a cancel is refused (409
//!   `signing_not_configured`).
//! - A cancel is recorded with the caller's name (`operator:<name>`, as the CLI records
//!   `operator:<by>`); telling the service is the signing job's
//!   (`SignatureService::notify_cancels`), so the answer says whether the service is still to
//!   be told (`service_cancel: "pending"`).

use std::collections::BTreeMap;

use gw_store::signatures::{SignatureStore, Transitioned};
use gw_store::StoreError;
use serde_json::{json, Value};

/// `GET /api/v1/signing/pending`: per service, the requests not yet finished, how many wait
/// for the official, since when (`rfc3339` formats the time), and the count in each state.
pub(super) async fn pending(
    store: &dyn SignatureStore,
    rfc3339: fn(i64) -> String,
) -> Result<Value, StoreError> {
    let (pending, counts) = tokio::try_join!(store.pending_by_service(), store.counts_by_state())?;
    let mut states: BTreeMap<String, BTreeMap<&'static str, i64>> = BTreeMap::new();
    for c in counts.iter().filter(|c| !c.state.is_terminal()) {
        states
            .entry(c.service.clone())
            .or_default()
            .insert(c.state.as_str(), c.count);
    }
    let services: Vec<Value> = pending
        .iter()
        .map(|p| {
            json!({
                "service": p.service,
                "pending": p.pending,
                "waiting_for_official": p.waiting,
                "oldest_created": rfc3339(p.oldest_created_ms),
                "states": states.remove(&p.service).unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({ "services": services }))
}

/// What an operator's cancel came to.
pub(super) enum Cancel {
    /// Cancelled now, or already (the body to answer).
    Done(Value),
    /// Finished before: the state it is in.
    Final(&'static str),
    NotFound,
}

/// `POST /api/v1/signing/{id}/cancel`, by the operator `name`.
pub(super) async fn cancel(
    store: &dyn SignatureStore,
    id: &str,
    name: &str,
    at_ms: i64,
) -> Result<Cancel, StoreError> {
    let who = format!("operator:{name}");
    Ok(match store.cancel(id, &who, at_ms).await? {
        Transitioned::Applied(r) => {
            tracing::info!(request = %id, by = %name, "signing request cancelled through the ops API");
            Cancel::Done(json!({
                "request_id": id,
                "result": "cancelled",
                "by": who,
                "service_cancel": r.service_cancel,
            }))
        }
        Transitioned::Unchanged(r) => Cancel::Done(json!({
            "request_id": id,
            "result": "already_cancelled",
            "by": r.cancelled_by,
            "service_cancel": r.service_cancel,
        })),
        Transitioned::Refused { current, .. } => Cancel::Final(current.state.as_str()),
        Transitioned::NotFound => Cancel::NotFound,
    })
}
