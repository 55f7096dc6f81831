//! The inbound HTTP server: sources POST events to `/in/<source>`.
//!
//! # The contract a sender sees
//! - `202 Accepted` with `{"id": "<envelope id>", "routes": [...]}` only after the broker
//!   confirmed the publish to every route that takes the event. The sender may forget it.
//! - `503` (with `Retry-After`) when the broker could not confirm: nothing is acknowledged,
//!   the sender retries. (A retry can duplicate what was published for some routes before the
//!   failure; versioned events are deduplicated downstream by their natural key.)
//! - Token and `Content-Type` are checked on the head, before the body is read; `408` when
//!   the body does not arrive within `inbound.body_read_timeout`.
//! - `400` malformed body (not JSON, wrong shape, missing or empty `kind`/`key`, a `kind` other than a
//!   dotted name of at most 64 characters, a `key` with control characters), `401` missing
//!   or wrong token, `404` unknown source, `413` body over the configured cap, `415` not JSON,
//!   `422` valid but no route takes this kind from this source (or the source may not send it).
//!   A source with `verify = "PROFILE"` answers `401` with `bad_signature`, `stale_signature`,
//!   `replayed_signature` or `untrusted_signer` when the request's signature (detached JWS
//!   header or HTTP message signature) does not verify; that check runs on the raw body before
//!   anything is parsed ([`crate::signing`]).
//!   Errors are JSON: `{"error": {"code": "...", "message": "..."}}`. Nothing is queued on any
//!   error.
//!
//! Body shape: `{"kind": "...", "key": "...", "version": 7?, "payload": {...}}`; unknown
//! top-level fields are refused so typos do not silently drop data.
//!
//! # Layout
//! `accept` is the endpoint, step by step; [`auth`] the token, the signature and the replay
//! memory; [`parse`] the untrusted bytes to an event (pure, fuzzed); [`answer`] the one error
//! shape; `state` what the listener shares; `signatures` takes `signature.requested` events
//! to the signing flow (answered with a request id, not routed). The payment endpoints
//! (`payments`) join this router when `[payments]` is on ([`with_payments`]); the agencies'
//! pull feeds ([`feeds`], `GET /feeds/{subscription}`) when a subscription is pulled
//! ([`with_feeds`]).

mod accept;
pub mod answer;
pub mod auth;
pub mod feeds;
pub mod parse;
pub mod payments;
mod signatures;
pub mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;

pub use answer::{require_json, Refusal};
pub use parse::{parse_event, InboundEvent};
pub use state::{InboundState, SourceRuntime};

pub fn router(state: Arc<InboundState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/in/{source}", post(accept::accept))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Add the pull feeds' endpoint (`GET /feeds/{subscription}`, see [`feeds`]) when some
/// subscription is pulled.
pub fn with_feeds(router: Router, feeds: Option<Arc<feeds::FeedsHttp>>) -> Router {
    match feeds {
        Some(f) => router.merge(feeds::router(f)),
        None => router,
    }
}

/// Add the payment endpoints (`POST /payments/NAME/orders`, the providers' callbacks, see
/// [`payments`]) when `[payments]` is configured.
pub fn with_payments(router: Router, payments: Option<Arc<payments::PaymentsHttp>>) -> Router {
    match payments {
        Some(p) => router.merge(payments::router(p)),
        None => router,
    }
}
