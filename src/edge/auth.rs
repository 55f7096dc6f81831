//! Who may send: the bearer token and the request signature of a source, and the replay
//! memory of signatures.
//!
//! # Invariants
//! - Tokens are compared in constant time ([`gw_crypto`]'s comparison); a missing and a wrong
//!   token get the same 401.
//! - A signature is checked on the raw bytes, before anything is parsed; its failure is a 401
//!   naming the reason code of [`crate::signing::codes`], or a 503 when it cannot be checked.
//! - An accepted signature is remembered in the store until its window ends, so a replay is
//!   refused on any instance and after a restart; the store's silence is a 503, never a pass.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tracing::warn;

use super::answer::{error, unavailable};
use crate::config::Secret;
use crate::runtime::Engine;

/// 401 unless the request carries `Authorization: Bearer <token>` with the source's token.
#[allow(clippy::result_large_err)]
pub fn check_bearer(headers: &HeaderMap, token: &Secret) -> Result<(), Response> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if gw_crypto::util::ct_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ))
    }
}

/// Check the request's signature on the raw bytes: who signed, or the 401 to answer.
pub(super) async fn verify_signature(
    v: &Arc<crate::signing::InboundVerifier>,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<crate::signing::Verified, Response> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // A TLS-terminating proxy in front says so; a wrong claim only makes @target-uri differ.
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = crate::signing::InboundRequest {
        method: method.as_str().to_string(),
        target_uri: format!("{scheme}://{host}{path}"),
        headers: headers
            .iter()
            .filter_map(|(n, val)| Some((n.as_str().to_string(), val.to_str().ok()?.to_string())))
            .collect(),
        body: body.clone(),
    };
    match v.verify(req).await {
        Ok(verified) => Ok(verified),
        Err(r) => {
            warn!(profile = v.profile(), code = r.code, reason = %r.message, "inbound signature refused");
            let status = if r.code == crate::signing::codes::VERIFICATION_UNAVAILABLE {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            Err(error(status, r.code, r.message))
        }
    }
}

/// Remember an accepted signature in the store: 401 `replayed_signature` when it was seen
/// within its window (here or on another instance), 503 when the store cannot tell. Expired
/// entries are swept at most once a minute per process.
pub(super) async fn remember(
    engine: &Engine,
    r: &crate::signing::ReplayId,
) -> Result<(), Response> {
    static LAST_SWEEP_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = crate::model::time::now_ms();
    let last = LAST_SWEEP_MS.load(std::sync::atomic::Ordering::Relaxed);
    if now - last > 60_000
        && LAST_SWEEP_MS
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        if let Err(e) = engine.store.forget_signatures(now).await {
            warn!(error = %e, "expired signatures not swept");
        }
    }
    match engine
        .store
        .remember_signature(&r.scope, &r.id, r.until_ms, now)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            warn!(
                profile = %r.scope,
                code = crate::signing::codes::REPLAYED_SIGNATURE,
                "inbound signature refused: seen before"
            );
            Err(error(
                StatusCode::UNAUTHORIZED,
                crate::signing::codes::REPLAYED_SIGNATURE,
                "this signature was already used; sign each request anew",
            ))
        }
        Err(e) => {
            warn!(profile = %r.scope, error = %e, "replay store unavailable; refusing the request");
            Err(unavailable(
                crate::signing::codes::VERIFICATION_UNAVAILABLE,
                "the signature could not be checked against replays; retry later",
                5,
            ))
        }
    }
}
