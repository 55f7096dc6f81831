//! `POST /in/<source>`: one event, from the request's head to the broker's confirmation.
//!
//! # Invariants
//! - The checks run cheapest first and before anything is kept: the evidence gate, the
//!   source, its token, `Content-Type` and `Content-Length` on the head; then the body (capped,
//!   with a read timeout), its signature on the raw bytes, its parse, the kinds the source may
//!   send and the routes that take it.
//! - A signature is remembered only after every other check passed, and released again when
//!   the publish (or the evidence record of the signed request) fails, so the sender's retry
//!   with the same signature passes.
//! - 202 only after the broker confirmed the publish to every route (and, for a signed
//!   request, after its evidence record was written); any failure after the checks is a 503
//!   with `Retry-After`, never a 2xx.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::{warn, Instrument};

use super::answer::{error, require_json, unavailable};
use super::auth::{check_bearer, remember, verify_signature};
use super::parse::{parse_event, snapshot_of, InboundEvent};
use super::state::{InboundState, SourceRuntime};
use crate::evidence::inbound::InboundSignature;
use crate::model::envelope::{child_traceparent, parse_traceparent, trace_id, Envelope};
use crate::signing::ReplayId;

/// The handler: answers, and counts the answer per source (unknown sources share one label).
pub(super) async fn accept(
    State(st): State<Arc<InboundState>>,
    Path(source): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let resp = match accept_inner(&st, &source, (&method, &uri), &headers, body).await {
        Ok(r) | Err(r) => r,
    };
    let label = if st.sources.contains_key(&source) {
        source.as_str()
    } else {
        "_unknown"
    };
    st.metrics.inc_inbound(label, resp.status().as_u16());
    resp
}

/// One accepted request on its way to the broker: what the last steps need.
struct Accepted<'a> {
    st: &'a InboundState,
    src: &'a SourceRuntime,
    source: &'a str,
    headers: &'a HeaderMap,
    body: Bytes,
    signature: InboundSignature,
    replay: Option<ReplayId>,
}

async fn accept_inner(
    st: &InboundState,
    source: &str,
    (method, uri): (&axum::http::Method, &axum::http::Uri),
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Response> {
    let src = check_head(st, source, headers)?;
    let Ok(_slot) = src.slots.clone().try_acquire_owned() else {
        return Err(unavailable(
            "busy",
            format!("source `{source}` has too many requests in flight; retry shortly"),
            1,
        ));
    };
    let body = read_body(st, body).await?;
    let mut signature = InboundSignature::default();
    let mut replay = None;
    if let Some(v) = &src.verify {
        let verified = verify_signature(v, method, uri, headers, &body).await?;
        signature.headers = v.signature_headers();
        signature.fingerprint = verified.fingerprint;
        replay = Some(verified.replay);
    }
    let ev = parse_event(src.adapter.as_deref(), &body)
        .map_err(|r| error(r.status, r.code, r.message))?;
    if crate::model::events::EventKind::SignatureRequested.is(&ev.kind) {
        return Ok(super::signatures::accept(st, src, source, &ev).await);
    }
    check_routed(st, src, source, &ev)?;
    // The signature is remembered in the store just before the publish (after every other
    // check), so a replay is refused on any instance and after a restart; a publish that
    // fails releases it, so the sender's retry with the same signature passes.
    if let Some(r) = &replay {
        remember(&st.engine, r).await?;
    }
    let accepted = Accepted {
        st,
        src,
        source,
        headers,
        body,
        signature,
        replay,
    };
    accepted.note_fees(&ev).await?;
    Ok(accepted.publish(ev).await)
}

/// The checks on the request's head, before a byte of the body is read: the evidence gate,
/// the source, its token, `Content-Type` and a declared length over the cap.
#[allow(clippy::result_large_err)]
fn check_head<'a>(
    st: &'a InboundState,
    source: &str,
    headers: &HeaderMap,
) -> Result<&'a SourceRuntime, Response> {
    if crate::evidence::inbound::refuse_new_messages() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "evidence_unavailable",
            "time-stamping of the evidence log is failing; retry later",
        ));
    }
    let Some(src) = st.sources.get(source) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named `{source}` is configured"),
        ));
    };
    if let Some(token) = &src.token {
        check_bearer(headers, token)?;
    }
    require_json(headers)?;
    if headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > st.max_body_bytes as u64)
    {
        return Err(too_large());
    }
    Ok(src)
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the body is larger than this gateway accepts (inbound.max_body_bytes)",
    )
}

/// The body, at most `inbound.max_body_bytes`: 413 over it, 408 when it does not arrive.
async fn read_body(st: &InboundState, body: axum::body::Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, st.max_body_bytes)
        .await
        .map_err(|e| {
            let over_limit =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if over_limit {
                return too_large();
            }
            error(
                StatusCode::REQUEST_TIMEOUT,
                "body_not_received",
                "the body did not arrive in time (inbound.body_read_timeout)",
            )
        })
}

/// 422 unless the source may send this kind and some route may take it: a configured route,
/// or an agency subscription taking the kind (`Route::may_take`).
#[allow(clippy::result_large_err)]
fn check_routed(
    st: &InboundState,
    src: &SourceRuntime,
    source: &str,
    ev: &InboundEvent,
) -> Result<(), Response> {
    if !crate::config::kinds_admit(&src.kinds, &ev.kind) {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind_not_allowed",
            format!("source `{source}` may not send kind `{}`", ev.kind),
        ));
    }
    if !st
        .engine
        .routes
        .iter()
        .any(|r| r.may_take(source, &ev.kind))
    {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_route",
            format!("no route takes kind `{}` from source `{source}`", ev.kind),
        ));
    }
    Ok(())
}

impl Accepted<'_> {
    /// Release the remembered signature after a failure, so the sender's retry passes.
    async fn release(&self) {
        if let Some(r) = &self.replay {
            if let Err(e) = self
                .st
                .engine
                .store
                .release_signature(&r.scope, &r.id)
                .await
            {
                warn!(source = self.source, error = %e, "signature not released; the sender must re-sign its retry");
            }
        }
    }

    /// With `[payments]` on, a dossier snapshot's fees become the dossier's known fees (orders
    /// are checked against them); 503 when they cannot be kept.
    async fn note_fees(&self, ev: &InboundEvent) -> Result<(), Response> {
        let (Some(p), Some(d)) = (&self.st.payments, snapshot_of(ev)) else {
            return Ok(());
        };
        if let Err(e) = p.note_snapshot(&d).await {
            warn!(source = self.source, key = %ev.key, error = %e, "known fees not kept; refusing the event");
            self.release().await;
            return Err(unavailable(
                "not_queued",
                "the dossier's fees could not be kept; retry later",
                5,
            ));
        }
        Ok(())
    }

    /// Publish inside the `accept` span, which continues the sender's trace when it sent one
    /// (its span is the parent); the envelope's traceparent names the accept span, so every
    /// delivery is its child.
    async fn publish(self, ev: InboundEvent) -> Response {
        let mut env = Envelope::new(ev.kind, ev.key, self.source, ev.payload);
        env.version = ev.version;
        let mut parent_span = String::new();
        if let Some(tp) = self
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            parent_span = crate::telemetry::span_id(&tp).to_string();
            env.traceparent = child_traceparent(&tp);
        }
        let span = tracing::info_span!("accept", source = self.source, key = %env.key, envelope = %env.id, kind = %env.kind, trace_id = %trace_id(&env.traceparent), span_id = %crate::telemetry::span_id(&env.traceparent), parent_span_id = %parent_span);
        async move {
            let source = self.source;
            match self.st.engine.publish(&env).await {
                Ok(routes) => {
                    tracing::debug!(source, key = %env.key, envelope = %env.id, kind = %env.kind, "accepted");
                    let answer = json!({"id": env.id.to_string(), "routes": routes});
                    if self.src.verify.is_some() {
                        if let Err(r) = self.record_signed(&env, &answer).await {
                            return r;
                        }
                    }
                    (StatusCode::ACCEPTED, Json(answer)).into_response()
                }
                Err(e) => {
                    warn!(source, key = %env.key, error = %e, "publish not confirmed; refusing the event");
                    self.release().await;
                    unavailable("not_queued", "the event could not be queued durably; retry later", 5)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The record of a signed request is written before the 2xx, or there is no 2xx: the
    /// sender retries (its signature is released), and the duplicate publish is absorbed
    /// downstream (versions, natural keys).
    async fn record_signed(
        &self,
        env: &Envelope,
        answer: &serde_json::Value,
    ) -> Result<(), Response> {
        let bytes = answer.to_string();
        let engine = &self.st.engine;
        let recorded = crate::evidence::inbound::record(
            engine.evidence.as_deref(),
            engine.store.as_ref(),
            crate::evidence::inbound::Received {
                source: self.source,
                headers: self.headers,
                signature: self.signature.clone(),
                body: &self.body,
                env,
                answer: bytes.as_bytes(),
            },
        )
        .await;
        if let Err(e) = recorded {
            warn!(source = self.source, envelope = %env.id, error = %e, "the evidence record of a signed request could not be written; refusing it");
            self.release().await;
            return Err(unavailable(
                "evidence_unavailable",
                "the evidence record could not be written; retry later",
                5,
            ));
        }
        Ok(())
    }
}
