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

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tracing::{warn, Instrument};

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::envelope::{child_traceparent, parse_traceparent, trace_id, Envelope};
use crate::runtime::Engine;

/// One configured source.
pub struct SourceRuntime {
    pub token: Option<Secret>,
    pub kinds: Vec<String>,
    /// The signature every request must carry (`verify = "NAME"`), checked before parsing.
    pub verify: Option<Arc<crate::signing::InboundVerifier>>,
    /// The one-stop adapter whose mapping turns the vendor's JSON into the canonical dossier.
    pub adapter: Option<Arc<crate::mapping::Adapter>>,
    /// Requests of this source handled at once (`inbound.source_concurrency`).
    pub slots: Arc<tokio::sync::Semaphore>,
}

pub struct InboundState {
    pub engine: Arc<Engine>,
    pub sources: HashMap<String, SourceRuntime>,
    pub metrics: Arc<Metrics>,
    /// `inbound.max_body_bytes`: the body is read only after the token was checked.
    pub max_body_bytes: usize,
    /// The payment service, when `[payments]` is on: dossier snapshots accepted here keep
    /// their fees as the dossier's known fees (orders are checked against them).
    pub payments: Option<Arc<crate::payments::Payments>>,
}

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

/// Why [`parse_event`] refused a body: the HTTP status, the error code and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

use crate::model::limits::{MAX_KEY_LEN, MAX_KIND_LEN};

pub fn router(state: Arc<InboundState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/in/{source}", post(accept))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Add the payment endpoints (`POST /payments/NAME/orders`, the providers' callbacks, see
/// [`crate::payments::ipn`]) when `[payments]` is configured.
pub fn with_payments(
    router: Router,
    payments: Option<Arc<crate::payments::ipn::PaymentsHttp>>,
) -> Router {
    match payments {
        Some(p) => router.merge(crate::payments::ipn::router(p)),
        None => router,
    }
}

/// 503 with `Retry-After: secs`: the request was not accepted and the sender should retry.
fn unavailable(code: &str, message: impl Into<String>, secs: u32) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    r
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn accept(
    State(st): State<Arc<InboundState>>,
    Path(source): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let resp = accept_inner(&st, &source, (&method, &uri), &headers, body).await;
    let label = if st.sources.contains_key(&source) {
        source.as_str()
    } else {
        "_unknown"
    };
    st.metrics.inc_inbound(label, resp.status().as_u16());
    resp
}

async fn accept_inner(
    st: &InboundState,
    source: &str,
    (method, uri): (&axum::http::Method, &axum::http::Uri),
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Response {
    if crate::evidence::inbound::refuse_new_messages() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "evidence_unavailable",
            "time-stamping of the evidence log is failing; retry later",
        );
    }
    let Some(src) = st.sources.get(source) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named `{source}` is configured"),
        );
    };
    if let Some(token) = &src.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
        }
    }
    // Checked on the head, before a byte of the body is read.
    if let Err(r) = require_json(headers) {
        return r;
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is larger than this gateway accepts (inbound.max_body_bytes)",
        )
    };
    if headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > st.max_body_bytes as u64)
    {
        return too_large();
    }
    let Ok(_slot) = src.slots.clone().try_acquire_owned() else {
        return unavailable(
            "busy",
            format!("source `{source}` has too many requests in flight; retry shortly"),
            1,
        );
    };
    let body: Bytes = match axum::body::to_bytes(body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let over_limit =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if over_limit {
                return too_large();
            }
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_not_received",
                "the body did not arrive in time (inbound.body_read_timeout)",
            );
        }
    };
    let mut signature = crate::evidence::inbound::InboundSignature::default();
    let mut replay = None;
    if let Some(v) = &src.verify {
        match verify_signature(v, method, uri, headers, &body).await {
            Ok(verified) => {
                signature.headers = v.signature_headers();
                signature.fingerprint = verified.fingerprint;
                replay = Some(verified.replay);
            }
            Err(resp) => return resp,
        }
    }
    let ev = match parse_event(src.adapter.as_deref(), &body) {
        Ok(ev) => ev,
        Err(r) => return error(r.status, r.code, r.message),
    };
    if !crate::config::kinds_admit(&src.kinds, &ev.kind) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind_not_allowed",
            format!("source `{source}` may not send kind `{}`", ev.kind),
        );
    }
    if st.engine.routes_for(source, &ev.kind).is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_route",
            format!("no route takes kind `{}` from source `{source}`", ev.kind),
        );
    }
    // The signature is remembered in the store just before the publish (after every other
    // check), so a replay is refused on any instance and after a restart; a publish that
    // fails releases it, so the sender's retry with the same signature passes.
    if let Some(r) = &replay {
        if let Err(resp) = remember(&st.engine, r).await {
            return resp;
        }
    }
    let release = || async {
        if let Some(r) = &replay {
            if let Err(e) = st.engine.store.release_signature(&r.scope, &r.id).await {
                warn!(source, error = %e, "signature not released; the sender must re-sign its retry");
            }
        }
    };
    if let Some(p) = &st.payments {
        if let Some(d) = snapshot_of(&ev) {
            if let Err(e) = p.note_snapshot(&d).await {
                warn!(source, key = %ev.key, error = %e, "known fees not kept; refusing the event");
                release().await;
                return unavailable(
                    "not_queued",
                    "the dossier's fees could not be kept; retry later",
                    5,
                );
            }
        }
    }
    let mut env = Envelope::new(ev.kind, ev.key, source, ev.payload);
    env.version = ev.version;
    // The `accept` span continues the sender's trace when it sent one (its span is the
    // parent); the envelope's traceparent names the accept span, so every delivery is its child.
    let mut parent_span = String::new();
    if let Some(tp) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
    {
        parent_span = crate::telemetry::span_id(&tp).to_string();
        env.traceparent = child_traceparent(&tp);
    }
    let span = tracing::info_span!("accept", source, key = %env.key, envelope = %env.id, kind = %env.kind, trace_id = %trace_id(&env.traceparent), span_id = %crate::telemetry::span_id(&env.traceparent), parent_span_id = %parent_span);
    async move {
        match st.engine.publish(&env).await {
            Ok(routes) => {
                tracing::debug!(source, key = %env.key, envelope = %env.id, kind = %env.kind, "accepted");
                let answer = json!({"id": env.id.to_string(), "routes": routes});
                if src.verify.is_some() {
                    let bytes = answer.to_string();
                    // The record of a signed request is written before the 2xx, or there is
                    // no 2xx: the sender retries (its signature is released), and the
                    // duplicate publish is absorbed downstream (versions, natural keys).
                    if let Err(e) = crate::evidence::inbound::record(
                        &st.engine,
                        source,
                        headers,
                        signature,
                        &body,
                        &env,
                        bytes.as_bytes(),
                    )
                    .await
                    {
                        warn!(source, envelope = %env.id, error = %e, "the evidence record of a signed request could not be written; refusing it");
                        release().await;
                        return unavailable("evidence_unavailable", "the evidence record could not be written; retry later", 5);
                    }
                }
                (StatusCode::ACCEPTED, Json(answer)).into_response()
            }
            Err(e) => {
                warn!(source, key = %env.key, error = %e, "publish not confirmed; refusing the event");
                release().await;
                unavailable("not_queued", "the event could not be queued durably; retry later", 5)
            }
        }
    }
    .instrument(span)
    .await
}

/// Check the request's signature on the raw bytes: who signed, or the 401 to answer.
async fn verify_signature(
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

/// The event a mapped vendor message becomes: a snapshot (`dossier.upserted` /
/// `dossier.status`, versioned) or its newest progress step (`dossier.progress`, unversioned:
/// steps are never coalesced).
fn event_from_mapping(inb: crate::mapping::Inbound) -> Result<InboundEvent, String> {
    let kind = inb.kind.envelope_kind().to_string();
    let key = inb.dossier.code.clone();
    match inb.kind {
        crate::mapping::InboundKind::Progress => {
            let step = inb
                .dossier
                .progress
                .last()
                .cloned()
                .ok_or_else(|| "a progress message carries no progress step".to_string())?;
            Ok(InboundEvent {
                kind,
                key: key.clone(),
                version: None,
                payload: serde_json::json!({"code": key, "step": step}),
            })
        }
        _ => Ok(InboundEvent {
            kind,
            key,
            version: Some(inb.version),
            payload: serde_json::to_value(&inb.dossier).map_err(|e| e.to_string())?,
        }),
    }
}

/// Remember an accepted signature in the store: 401 `replayed_signature` when it was seen
/// within its window (here or on another instance), 503 when the store cannot tell. Expired
/// entries are swept at most once a minute per process.
async fn remember(engine: &Engine, r: &crate::signing::ReplayId) -> Result<(), Response> {
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

/// The dossier a versioned snapshot event carries (`dossier.upserted` / `dossier.status`
/// with a dossier payload), for its fees; `None` for anything else.
fn snapshot_of(ev: &InboundEvent) -> Option<crate::model::Dossier> {
    if ev.version.is_none() || !matches!(ev.kind.as_str(), "dossier.upserted" | "dossier.status") {
        return None;
    }
    let d = crate::model::Dossier::deserialize(&ev.payload).ok()?;
    (d.code == ev.key).then_some(d)
}

/// 415 unless the request says its body is JSON (`application/json`, parameters allowed).
/// Checked on the head, before the body is read, on every JSON endpoint of the edge.
#[allow(clippy::result_large_err)]
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Response> {
    match headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            format!("Content-Type must be application/json, not {ct}"),
        )),
        None => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            "Content-Type must be application/json",
        )),
    }
}

/// Compare secrets without leaking their length through timing of early exits.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0 && a.len() == b.len()
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
                    event_from_mapping(inb).map_err(|msg| {
                        refuse(StatusCode::UNPROCESSABLE_ENTITY, "mapping_failed", msg)
                    })?
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
