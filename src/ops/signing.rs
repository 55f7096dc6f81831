//! The ops API's view of the remote-signing flow: requests pending per service (and per
//! state), for the dashboard, and the operator's cancel (what `gateway signing cancel` does).
//!
//! # Invariants
//! - Counts and codes only: no official's user id (it may be a citizen id), no document, no
//!   reason's words. Services are the configured names, states the store's words.
//! - Without `[signers]` the view is empty (`"services": []`) and a cancel is 404.
//! - A cancel needs an operator token and is recorded with the token's name
//!   (`operator:<name>`, as the CLI records `operator:<by>`); telling the service is the
//!   signing job's (`SignatureService::notify_cancels`), so the answer says whether the
//!   service is still to be told (`service_cancel: "pending"`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gw_store::signatures::Transitioned;
use serde_json::{json, Value};

use super::api::{error, require_operator, rfc3339, store_error};
use super::state::{Caller, OpsState, SignatureRequests};
use crate::model::time::now_ms;

type S = Arc<OpsState>;

/// `GET /api/v1/signing/pending`: per service, the requests not yet finished, how many wait
/// for the official, since when, and the count in each state.
pub(super) async fn pending(State(st): State<S>) -> Response {
    let Some(SignatureRequests(store)) = &st.options.signatures else {
        return Json(json!({"services": []})).into_response();
    };
    let (pending, counts) =
        match tokio::try_join!(store.pending_by_service(), store.counts_by_state()) {
            Ok(x) => x,
            Err(e) => return store_error(e),
        };
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
    Json(json!({"services": services})).into_response()
}

/// `POST /api/v1/signing/{id}/cancel` (operator).
pub(super) async fn cancel(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let Some(SignatureRequests(store)) = &st.options.signatures else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no signing request `{id}`"),
        );
    };
    let who = format!("operator:{}", caller.name);
    match store.cancel(&id, &who, now_ms()).await {
        Ok(Transitioned::Applied(r)) => {
            tracing::info!(request = %id, by = %caller.name, "signing request cancelled through the ops API");
            Json(json!({
                "request_id": id,
                "result": "cancelled",
                "by": who,
                "service_cancel": r.service_cancel,
            }))
            .into_response()
        }
        Ok(Transitioned::Unchanged(r)) => Json(json!({
            "request_id": id,
            "result": "already_cancelled",
            "by": r.cancelled_by,
            "service_cancel": r.service_cancel,
        }))
        .into_response(),
        Ok(Transitioned::Refused { current, .. }) => error(
            StatusCode::CONFLICT,
            "already_final",
            format!(
                "signing request `{id}` is {}: a finished request cannot be cancelled",
                current.state.as_str()
            ),
        ),
        Ok(Transitioned::NotFound) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no signing request `{id}`"),
        ),
        Err(e) => store_error(e),
    }
}
