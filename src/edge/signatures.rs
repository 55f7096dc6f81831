//! `signature.requested` at `POST /in/<source>`: the signing flow's way in.
//!
//! Why the source's own endpoint and not a dedicated one: a signing request comes from the
//! same systems as dossier events, with the same token, the same optional request signature
//! (`verify = PROFILE`, checked on the raw body before this runs), the same body cap and the
//! same envelope shape (`{"kind", "key", "payload"}`); a second endpoint would repeat all of
//! it. What differs is the answer: the event is not routed but handed to the signing flow
//! ([`crate::signatures::SignatureService::accept`]), which checks it at once and answers
//! with the request's stable id.
//!
//! # Invariants
//! - The source must be allowed the kind (`kinds` of `[sources.NAME]`), like any event; 422
//!   `signing_not_configured` when no `[signers.NAME]` is configured.
//! - `202 {"request_id", "state", "new"}` once the request is stored; the same event sent
//!   again answers the same `request_id` with `"new": false`. A refusal is the edge's error
//!   shape with the flow's code (400, 409, 413, 422; 503 with `Retry-After` when the store
//!   could not keep it): nothing is stored and nothing is sent to any phone.
//! - A document by reference whose URL is under no base of `[signatures.documents]`, or a
//!   B-T request without `[signatures.tsa]` (or for XML), is one of those refusals (422): the
//!   flow decides it in `accept`, before anything is stored.
//! - Replays of a signed request are harmless here (same id, no second request), so its
//!   signature is not remembered as the routed events' are.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::answer::{error, unavailable};
use super::parse::InboundEvent;
use super::state::{InboundState, SourceRuntime};
use crate::signatures::Refusal;

pub(super) async fn accept(
    st: &InboundState,
    src: &SourceRuntime,
    source: &str,
    ev: &InboundEvent,
) -> Response {
    if !crate::config::kinds_admit(&src.kinds, &ev.kind) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind_not_allowed",
            format!("source `{source}` may not send kind `{}`", ev.kind),
        );
    }
    let Some(service) = &st.signatures else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signing_not_configured",
            "this gateway has no remote signing service ([signers.NAME])",
        );
    };
    match service.accept(source, &ev.key, &ev.payload).await {
        Ok(a) => (
            StatusCode::ACCEPTED,
            Json(json!({"request_id": a.request_id, "state": a.state.as_str(), "new": a.new})),
        )
            .into_response(),
        Err(e) => {
            let status = match e.refusal() {
                Refusal::BadRequest => StatusCode::BAD_REQUEST,
                Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                Refusal::Conflict => StatusCode::CONFLICT,
                Refusal::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::Unavailable => return unavailable(e.code(), e.to_string(), 5),
            };
            error(status, e.code(), e.to_string())
        }
    }
}
