//! The JSON ops API (`/api/v1/…`), described by `openapi.yaml` beside this file.
//!
//! # Invariants
//! - [`table`] is the one list of endpoints: the router is built from it and the OpenAPI test
//!   checks it against `openapi.yaml` both ways.
//! - Errors are `{"error": {"code": "…", "message": "…"}}` with a stable code, like inbound.
//! - A trail is the store's record, merged and ordered by time: outcomes and attempts of every
//!   route for one key, with the request digest a delivered outcome carries
//!   (`digest sha256:…`). It never contains a payload.
//! - Replay and drop are operator-only and record the token's name as `settled_by`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use gw_store::{AttemptRecord, DeadLetter, DeadLetterFilter, DeadLetterState, OutcomeRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::state::{Caller, OpsState};
use crate::config::OpsRole;
use crate::model::envelope::{trace_id, Envelope};
use crate::model::time::now_ms;
use crate::runtime::{self, ReplayResult};

/// Largest `limit` of a dead-letter listing.
pub const MAX_LIST: u32 = 1000;
/// Default `limit` of a dead-letter listing.
pub const DEFAULT_LIST: u32 = 100;
/// Open dead letters counted per route in `/routes` (beyond it the count says "at least").
const ROUTE_DL_SCAN: u32 = 10_000;

type S = Arc<OpsState>;

/// Every endpoint: (method, path, handler). The router is built from this list.
pub fn table() -> Vec<(Method, &'static str, MethodRouter<S>)> {
    vec![
        (Method::GET, "/api/v1/status", get(status)),
        (Method::GET, "/api/v1/routes", get(routes)),
        (Method::GET, "/api/v1/messages", get(messages)),
        (Method::GET, "/api/v1/dossiers/{code}/trail", get(trail)),
        (Method::GET, "/api/v1/dead-letters", get(dead_letters)),
        (Method::GET, "/api/v1/dead-letters/{id}", get(dead_letter)),
        (
            Method::POST,
            "/api/v1/dead-letters/{id}/replay",
            post(replay),
        ),
        (Method::POST, "/api/v1/dead-letters/{id}/drop", post(drop_)),
        (
            Method::GET,
            "/api/v1/subscriptions",
            get(super::api_subscriptions::list),
        ),
        (
            Method::POST,
            "/api/v1/subscriptions/{name}/enable",
            post(super::api_subscriptions::enable),
        ),
        (
            Method::POST,
            "/api/v1/subscriptions/{name}/replay",
            post(super::api_subscriptions::replay),
        ),
        (
            Method::GET,
            "/api/v1/subscriptions/{name}/replay",
            get(super::api_subscriptions::replay_progress),
        ),
        (Method::GET, "/api/v1/indicators", get(indicators)),
        (
            Method::GET,
            "/api/v1/indicators/at-risk",
            get(indicators_at_risk),
        ),
        (
            Method::GET,
            "/api/v1/indicators/series",
            get(indicators_series),
        ),
        (
            Method::GET,
            "/api/v1/indicators/lowest",
            get(indicators_lowest),
        ),
        (
            Method::POST,
            "/api/v1/indicators/catalogue/reload",
            post(indicators_catalogue_reload),
        ),
        (Method::GET, "/api/v1/signing/pending", get(signing_pending)),
        (
            Method::POST,
            "/api/v1/signing/{id}/cancel",
            post(signing_cancel),
        ),
    ]
}

/// (method, path) of every endpoint, including the OpenAPI file itself.
pub fn endpoints() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = table()
        .into_iter()
        .map(|(m, p, _)| (m.as_str().to_lowercase(), p.to_string()))
        .collect();
    v.push(("get".into(), "/api/v1/openapi.yaml".into()));
    v
}

pub(super) use super::reply::error;

fn store_error(e: gw_store::StoreError) -> Response {
    tracing::warn!(error = %e, "ops API: store read failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store did not answer; try again",
    )
}

pub use super::reply::rfc3339;

/// The request digest an outcome's detail carries (`digest sha256:HEX`).
pub fn digest_of(detail: &str) -> Option<String> {
    let rest = &detail[detail.find("digest ")? + "digest ".len()..];
    let d: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
        .collect();
    d.starts_with("sha256:").then_some(d)
}

async fn status(State(st): State<S>, Extension(caller): Extension<Caller>) -> Response {
    let e = &st.engine;
    let broker_ready = e.broker.ready().await;
    let store_ready = e.store.ready().await;
    let open = e.store.open_dead_letters().await.ok();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages_in = 0;
    for r in &e.routes {
        let c = e.metrics.route_counts(&r.name);
        messages_in += c.messages_in;
        for (o, n) in c.outcomes {
            *totals.entry(o).or_default() += n;
        }
    }
    Json(json!({
        "instance": st.options.instance,
        "version": env!("CARGO_PKG_VERSION"),
        "ready": broker_ready && store_ready,
        "broker": {"kind": e.broker.kind(), "ready": broker_ready},
        "store": {"kind": e.store.kind(), "ready": store_ready},
        "started_at": rfc3339(st.started_ms),
        "uptime_seconds": st.started.elapsed().as_secs(),
        "routes": e.routes.len(),
        "dead_letters_open": open,
        "messages_in": messages_in,
        "outcomes": totals,
        "caller": {"name": caller.name, "role": role_str(caller.role)},
    }))
    .into_response()
}

fn role_str(r: OpsRole) -> &'static str {
    match r {
        OpsRole::Viewer => "viewer",
        OpsRole::Operator => "operator",
    }
}

/// Depth of one route's queues, summed over its partitions.
#[derive(Debug, Default, Serialize)]
struct Depth {
    ready: u64,
    unacked: u64,
    /// `null` when the broker cannot tell.
    delayed: Option<u64>,
    /// Seconds the oldest ready message has waited (the largest over the partitions);
    /// `null` when the broker cannot tell yet (see `gw_broker::QueueStats`).
    oldest_ready_age_seconds: Option<f64>,
}

async fn routes(State(st): State<S>) -> Response {
    let e = &st.engine;
    let mut out = Vec::new();
    for r in &e.routes {
        let mut depth = Depth::default();
        for q in r.queues() {
            if let Ok(s) = e.broker.stats(&q).await {
                depth.ready += s.ready;
                depth.unacked += s.unacked;
                if let Some(d) = s.delayed {
                    depth.delayed = Some(depth.delayed.unwrap_or(0) + d);
                }
                if let Some(a) = s.oldest_ready_age {
                    let a = a.as_secs_f64();
                    depth.oldest_ready_age_seconds =
                        Some(depth.oldest_ready_age_seconds.map_or(a, |b| b.max(a)));
                }
            }
        }
        let open = match e
            .store
            .dead_letters(&DeadLetterFilter {
                route: Some(r.name.clone()),
                key: None,
                state: Some(DeadLetterState::Open),
                limit: ROUTE_DL_SCAN,
            })
            .await
        {
            Ok(v) => v.len(),
            Err(err) => return store_error(err),
        };
        out.push(json!({
            "name": r.name,
            "source": r.source,
            "kinds": r.kinds,
            "adapter": r.destination,
            "partitions": r.partitions,
            "concurrency": r.concurrency,
            "queue": depth,
            "circuit": r.circuit.state().as_str(),
            "counts": e.metrics.route_counts(&r.name),
            "dead_letters_open": open,
            "dead_letters_open_capped": open as u32 >= ROUTE_DL_SCAN,
        }));
    }
    Json(json!({"routes": out})).into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

fn outcome_json(o: &OutcomeRecord) -> Value {
    json!({
        "route": o.route,
        "adapter": o.destination,
        "envelope_id": o.envelope_id,
        "key": o.key,
        "kind": o.kind,
        "version": o.version,
        "natural_key": o.natural_key,
        "outcome": o.outcome.as_str(),
        "attempts": o.attempts,
        "status": o.status,
        "detail": o.detail,
        "digest": digest_of(&o.detail),
        "at_ms": o.at_ms,
        "at": rfc3339(o.at_ms),
    })
}

async fn messages(State(st): State<S>, Query(q): Query<KeyQuery>) -> Response {
    let Some(key) = q.key.filter(|k| !k.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_key",
            "give the dossier code as ?key=…",
        );
    };
    match st.engine.store.outcomes_by_key(&key).await {
        Ok(v) => Json(json!({
            "key": key,
            "messages": v.iter().map(outcome_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// One event of a trail.
#[derive(Debug, Clone, Serialize)]
pub struct TrailEvent {
    /// `attempt`, `outcome` or `in_doubt` (an exchange sent and never recorded; `result` says
    /// how it was resolved, `open` while it is not).
    pub event: &'static str,
    pub at_ms: i64,
    pub at: String,
    pub route: String,
    pub envelope_id: String,
    /// The attempt's result (`delivered`, `retry`, `dead_lettered`, `superseded`) or the
    /// outcome (`delivered`, `superseded`, `dead_lettered`).
    pub result: String,
    pub status: Option<u16>,
    pub reason: String,
    pub attempt: Option<u32>,
    pub latency_ms: Option<u32>,
    pub version: Option<i64>,
    pub kind: Option<String>,
    pub digest: Option<String>,
    pub detail: Option<String>,
}

/// A key's trail: its outcomes and attempts on every route, merged and ordered by time
/// (attempts before outcomes at equal times: an attempt is recorded with its outcome).
pub async fn trail_events(
    store: &dyn gw_store::Store,
    key: &str,
) -> Result<(Vec<TrailEvent>, Vec<OutcomeRecord>), gw_store::StoreError> {
    let outcomes = store.outcomes_by_key(key).await?;
    let attempts = store.attempts_by_key(key).await?;
    let doubts = store.in_doubt_by_key(key).await?;
    let mut events: Vec<TrailEvent> = attempts.iter().map(attempt_event).collect();
    events.extend(outcomes.iter().map(outcome_event));
    events.extend(doubts.iter().map(in_doubt_event));
    events.sort_by_key(|e| (e.at_ms, e.event == "outcome"));
    Ok((events, outcomes))
}

/// An exchange found in doubt (sent by a holder that died before recording it): `result` is how
/// it was resolved (`already_there`, `not_there`, `unverified` …) or `open` while nobody has.
fn in_doubt_event(d: &gw_store::InDoubtRow) -> TrailEvent {
    TrailEvent {
        event: "in_doubt",
        at_ms: d.found_at_ms,
        at: rfc3339(d.found_at_ms),
        route: d.destination.clone(),
        envelope_id: d.ledger_id.clone(),
        result: d.resolution.clone().unwrap_or_else(|| "open".into()),
        status: None,
        reason: "sent_not_recorded".into(),
        attempt: None,
        latency_ms: None,
        version: d.version,
        kind: None,
        digest: None,
        detail: Some(format!(
            "send started {} by {}, never recorded{}",
            rfc3339(d.sent_at_ms),
            d.holder,
            d.natural_key
                .as_ref()
                .map(|k| format!(" (natural key {k})"))
                .unwrap_or_default()
        )),
    }
}

fn attempt_event(a: &AttemptRecord) -> TrailEvent {
    TrailEvent {
        event: "attempt",
        at_ms: a.at_ms,
        at: rfc3339(a.at_ms),
        route: a.route.clone(),
        envelope_id: a.envelope_id.clone(),
        result: a.result.clone(),
        status: a.status,
        reason: a.reason.clone(),
        attempt: Some(a.attempt),
        latency_ms: Some(a.latency_ms),
        version: None,
        kind: None,
        digest: None,
        detail: None,
    }
}

fn outcome_event(o: &OutcomeRecord) -> TrailEvent {
    TrailEvent {
        event: "outcome",
        at_ms: o.at_ms,
        at: rfc3339(o.at_ms),
        route: o.route.clone(),
        envelope_id: o.envelope_id.clone(),
        result: o.outcome.as_str().to_string(),
        status: o.status,
        // A failure's detail starts with its reason label (`retries_exhausted: …`); a
        // delivery's detail is its digest, shown as such.
        reason: if digest_of(&o.detail).is_some() {
            String::new()
        } else {
            o.detail
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        },
        attempt: Some(o.attempts),
        latency_ms: None,
        version: o.version,
        kind: Some(o.kind.clone()),
        digest: digest_of(&o.detail),
        detail: Some(o.detail.clone()),
    }
}

async fn trail(State(st): State<S>, Path(code): Path<String>) -> Response {
    let store = &st.engine.store;
    let (events, outcomes) = match trail_events(store.as_ref(), &code).await {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    let dls = match store
        .dead_letters(&DeadLetterFilter {
            key: Some(code.clone()),
            limit: MAX_LIST,
            ..Default::default()
        })
        .await
    {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    // The latest outcome per route: the dossier's current state at each destination.
    let mut latest: BTreeMap<&str, &OutcomeRecord> = BTreeMap::new();
    for o in &outcomes {
        latest.insert(&o.route, o);
    }
    let routes: BTreeMap<&str, Value> = latest
        .into_iter()
        .map(|(r, o)| {
            (
                r,
                json!({"outcome": o.outcome.as_str(), "version": o.version, "at": rfc3339(o.at_ms)}),
            )
        })
        .collect();
    let traces: std::collections::BTreeSet<String> = dls
        .iter()
        .filter_map(|d| Envelope::decode(&d.letter.envelope).ok())
        .map(|e| trace_id(&e.traceparent).to_string())
        .collect();
    let signatures = match signing_trail(&st, &code).await {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    Json(json!({
        "key": code,
        "routes": routes,
        "events": events,
        "signatures": signatures,
        "dead_letters": dls.iter().map(dead_letter_summary).collect::<Vec<_>>(),
        "trace_ids": traces,
    }))
    .into_response()
}

/// The dossier's remote-signing requests, each with its states and times (no official's
/// user id: it may be a citizen id).
async fn signing_trail(st: &OpsState, code: &str) -> Result<Vec<Value>, gw_store::StoreError> {
    let Some(crate::ops::state::SignatureRequests(store)) = &st.options.signatures else {
        return Ok(Vec::new());
    };
    let requests = store
        .list(gw_store::signatures::ListFilter {
            dossier_code: Some(code.to_owned()),
            limit: MAX_LIST,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let states: Vec<Value> = store
            .trail(r.id())
            .await?
            .iter()
            .map(|t| json!({"state": t.to.as_str(), "at": rfc3339(t.at_ms), "actor": t.actor, "detail": t.detail}))
            .collect();
        out.push(json!({
            "request_id": r.id(),
            "service": r.request.service,
            "format": r.request.format,
            "state": r.state.as_str(),
            "reason_kind": r.failure_kind,
            "reason": r.failure_reason,
            "created": rfc3339(r.request.created_ms),
            "deadline": rfc3339(r.request.deadline_ms),
            "states": states,
        }));
    }
    Ok(out)
}

/// Remote-signing requests not yet finished, per service and state ([`super::signing`]).
async fn signing_pending(State(st): State<S>) -> Response {
    let Some(crate::ops::state::SignatureRequests(store)) = &st.options.signatures else {
        return Json(json!({"services": []})).into_response();
    };
    match super::signing::pending(store.as_ref(), rfc3339).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

/// An operator cancels a remote-signing request ([`super::signing`]).
async fn signing_cancel(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    use super::signing::Cancel;
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let no_request = |id: &str| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no signing request `{id}`"),
        )
    };
    let Some(crate::ops::state::SignatureRequests(store)) = &st.options.signatures else {
        return error(
            StatusCode::CONFLICT,
            "signing_not_configured",
            "this gateway has no remote signing service ([signers.NAME])",
        );
    };
    match super::signing::cancel(store.as_ref(), &id, &caller.name, now_ms()).await {
        Ok(Cancel::Done(v)) => Json(v).into_response(),
        Ok(Cancel::Final(state)) => error(
            StatusCode::CONFLICT,
            "already_final",
            format!("signing request `{id}` is {state}: a finished request cannot be cancelled"),
        ),
        Ok(Cancel::NotFound) => no_request(&id),
        Err(e) => store_error(e),
    }
}

fn dead_letter_summary(d: &DeadLetter) -> Value {
    let l = &d.letter;
    json!({
        "id": l.id,
        "route": l.route,
        "queue": l.queue,
        "envelope_id": l.envelope_id,
        "key": l.key,
        "kind": l.kind,
        "reason": l.reason,
        "attempts": l.attempts,
        "last_status": l.last_status,
        "last_answer": l.last_answer,
        "first_attempt_ms": l.first_attempt_ms,
        "dead_at_ms": l.dead_at_ms,
        "dead_at": rfc3339(l.dead_at_ms),
        "state": d.state.as_str(),
        "settled_by": d.settled_by,
        "settled_at_ms": d.settled_at_ms,
    })
}

#[derive(Deserialize)]
struct DlQuery {
    route: Option<String>,
    key: Option<String>,
    /// open (default), replayed, dropped or all.
    state: Option<String>,
    limit: Option<u32>,
}

async fn dead_letters(State(st): State<S>, Query(q): Query<DlQuery>) -> Response {
    let state = match q.state.as_deref().unwrap_or("open") {
        "all" => None,
        s => match DeadLetterState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_state",
                    format!("state `{s}`: use open, replayed, dropped or all"),
                )
            }
        },
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIST);
    if limit == 0 || limit > MAX_LIST {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be 1 to {MAX_LIST}"),
        );
    }
    let filter = DeadLetterFilter {
        route: q.route.filter(|s| !s.is_empty()),
        key: q.key.filter(|s| !s.is_empty()),
        state,
        limit,
    };
    match st.engine.store.dead_letters(&filter).await {
        Ok(v) => Json(json!({
            "dead_letters": v.iter().map(dead_letter_summary).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn dead_letter(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let d = match st.engine.store.dead_letter(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(&id),
        Err(e) => return store_error(e),
    };
    let mut v = dead_letter_summary(&d);
    v["envelope"] = match Envelope::decode(&d.letter.envelope) {
        Ok(env) if caller.role == OpsRole::Operator => {
            serde_json::to_value(&env).unwrap_or(Value::Null)
        }
        Ok(env) => json!({
            "id": env.id, "kind": env.kind, "key": env.key, "source": env.source,
            "version": env.version, "traceparent": env.traceparent, "created_ms": env.created_ms,
            "payload": null, "payload_hidden": "the payload is shown to operators only",
        }),
        Err(_) if caller.role == OpsRole::Operator => {
            Value::String(String::from_utf8_lossy(&d.letter.envelope).into_owned())
        }
        Err(_) => json!({"payload_hidden": "the payload is shown to operators only"}),
    };
    Json(v).into_response()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no dead letter {id}"),
    )
}

use super::reply::require_operator;

async fn replay(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let e = &st.engine;
    match runtime::replay(e.broker.as_ref(), e.store.as_ref(), &id, &caller.name).await {
        Ok(ReplayResult::Replayed) => {
            tracing::info!(dead_letter = %id, by = %caller.name, "dead letter replayed through the ops API");
            Json(json!({"id": id, "result": "replayed", "by": caller.name})).into_response()
        }
        Ok(ReplayResult::AlreadySettled(s)) => error(
            StatusCode::CONFLICT,
            "already_settled",
            format!("dead letter {id} is already {s}; nothing done"),
        ),
        Ok(ReplayResult::NotFound) => not_found(&id),
        Err(err) => {
            tracing::warn!(dead_letter = %id, error = %err, "replay through the ops API failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "replay_failed",
                format!("the replay did not complete ({err}); it is still open: try again"),
            )
        }
    }
}

async fn drop_(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    match st
        .engine
        .store
        .mark_dropped(&id, &caller.name, now_ms())
        .await
    {
        Ok(gw_store::Settled::Changed(_)) => {
            tracing::info!(dead_letter = %id, by = %caller.name, "dead letter dropped through the ops API");
            Json(json!({"id": id, "result": "dropped", "by": caller.name})).into_response()
        }
        Ok(gw_store::Settled::AlreadySettled(d)) => error(
            StatusCode::CONFLICT,
            "already_settled",
            format!(
                "dead letter {id} is already {}; nothing done",
                d.state.as_str()
            ),
        ),
        Ok(gw_store::Settled::NotFound) => not_found(&id),
        Err(e) => store_error(e),
    }
}

// The service-quality index (`crate::indicators`): read-only, any token (but the catalogue
// reload, operator-only); 404 `indicators_off`
// without `[indicators]`; a bad period, level or horizon is a 400 naming it; the at-risk list
// names dossiers by code with their unit and procedure, never citizen data.

/// The longest at-risk horizon asked, in working days.
pub const MAX_AT_RISK_DAYS: u32 = 60;

#[derive(Debug, Deserialize)]
struct ReportQuery {
    period: Option<String>,
    level: Option<String>,
}

fn indicators_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "indicators_off",
        "the service-quality index is off: add an [indicators] section",
    )
}

/// `GET /api/v1/indicators?period=2026-11&level=unit`
async fn indicators(State(st): State<S>, Query(q): Query<ReportQuery>) -> Response {
    let Some(ix) = &st.options.indicators else {
        return indicators_off();
    };
    let now = now_ms();
    let period = q
        .period
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| crate::jobs::indicators::month_of(now));
    let level = match q.level.as_deref().map(crate::indicators::Level::parse) {
        None => crate::indicators::Level::Province,
        Some(Some(l)) => l,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_level",
                "level must be province, unit or procedure",
            )
        }
    };
    match crate::indicators::history::report(
        ix.store.as_ref(),
        &ix.rules.get(),
        &period,
        level,
        now,
        &ix.synced_to,
    )
    .await
    {
        Ok(r) => Json(r).into_response(),
        Err(crate::indicators::history::ReportError::Period(e)) => {
            error(StatusCode::BAD_REQUEST, "bad_period", e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "ops API: indicators not computed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the indicators could not be read; try again",
            )
        }
    }
}

/// `POST /api/v1/indicators/catalogue/reload` (operator): the catalogue's terms read again
/// ([`crate::indicators::LiveRules::reload`]); a bad file keeps the terms in force.
async fn indicators_catalogue_reload(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let Some(ix) = &st.options.indicators else {
        return indicators_off();
    };
    match ix.rules.reload() {
        Ok(r) => {
            tracing::info!(procedures = r.procedures, changed = r.changed, by = %caller.name,
                "the index's catalogue terms reloaded through the ops API");
            Json(json!({
                "result": "reloaded",
                "procedures": r.procedures,
                "changed": r.changed,
                "by": caller.name,
            }))
            .into_response()
        }
        Err(e @ crate::indicators::ReloadError::NoCatalogue) => error(
            StatusCode::CONFLICT,
            "catalogue_not_configured",
            e.to_string(),
        ),
        Err(e @ crate::indicators::ReloadError::Terms(_)) => {
            tracing::warn!(error = %e, by = %caller.name, "the index's catalogue terms not reloaded");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "terms_unreadable",
                e.to_string(),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct AtRiskQuery {
    days: Option<String>,
}

/// `GET /api/v1/indicators/at-risk?days=N`
async fn indicators_at_risk(State(st): State<S>, Query(q): Query<AtRiskQuery>) -> Response {
    let Some(ix) = &st.options.indicators else {
        return indicators_off();
    };
    let days = match q.days.as_deref().map(str::parse::<u32>) {
        None => ix.at_risk_days,
        Some(Ok(d)) if d <= MAX_AT_RISK_DAYS => d,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_days",
                format!("days must be a whole number of working days from 0 to {MAX_AT_RISK_DAYS}"),
            )
        }
    };
    let now = now_ms();
    match crate::indicators::history::at_risk(ix.store.as_ref(), &ix.rules.get(), now, days).await {
        Ok(units) => Json(json!({
            "days": days,
            "as_of_ms": now,
            "units": units,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "ops API: at-risk list not computed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the at-risk list could not be read; try again",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct SeriesQuery {
    to: Option<String>,
    months: Option<String>,
    level: Option<String>,
}

/// `GET /api/v1/indicators/series?to=2026-11&months=12&level=unit`: each key's indicators
/// month by month (the dashboard's charts). Level province or unit (default province).
async fn indicators_series(State(st): State<S>, Query(q): Query<SeriesQuery>) -> Response {
    use crate::indicators::history::{self, SeriesError, MAX_SERIES_MONTHS};
    let Some(ix) = &st.options.indicators else {
        return indicators_off();
    };
    let now = now_ms();
    let to =
        q.to.filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| crate::jobs::indicators::month_of(now));
    let months = match q.months.as_deref().map(str::parse::<u32>) {
        None => 12,
        Some(Ok(m)) if (1..=MAX_SERIES_MONTHS).contains(&m) => m,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_months",
                format!("months must be a whole number from 1 to {MAX_SERIES_MONTHS}"),
            )
        }
    };
    let level = match q.level.as_deref().map(crate::indicators::Level::parse) {
        None => crate::indicators::Level::Province,
        Some(Some(l)) => l,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_level",
                "level must be province, unit or procedure",
            )
        }
    };
    match history::series(
        ix.store.as_ref(),
        &ix.rules.get(),
        &to,
        months,
        level,
        now,
        &ix.synced_to,
    )
    .await
    {
        Ok(s) => Json(s).into_response(),
        Err(SeriesError::Range) => error(
            StatusCode::BAD_REQUEST,
            "bad_period",
            "to must be a month, YYYY-MM",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "ops API: indicator series not computed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the indicators could not be read; try again",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct LowestQuery {
    period: Option<String>,
    count: Option<String>,
    min_dossiers: Option<String>,
}

/// `GET /api/v1/indicators/lowest?period=2026-11&count=3&min_dossiers=10`: the units with the
/// lowest on-time rate among those with at least `min_dossiers` (default `[indicators]
/// lowest_min_dossiers`) in 2.1's denominator; the others are listed as `too_few`.
async fn indicators_lowest(State(st): State<S>, Query(q): Query<LowestQuery>) -> Response {
    use crate::config::defaults::INDICATORS_LOWEST_COUNT;
    use crate::indicators::history;
    let Some(ix) = &st.options.indicators else {
        return indicators_off();
    };
    let count = match q.count.as_deref().map(str::parse::<usize>) {
        None => INDICATORS_LOWEST_COUNT,
        Some(Ok(c)) if (1..=1000).contains(&c) => c,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_count",
                "count must be a whole number from 1 to 1000",
            )
        }
    };
    let min = match q.min_dossiers.as_deref().map(str::parse::<u64>) {
        None => ix.lowest_min_dossiers,
        Some(Ok(m)) => m,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_min_dossiers",
                "min_dossiers must be a whole number",
            )
        }
    };
    let now = now_ms();
    let period = q
        .period
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| crate::jobs::indicators::month_of(now));
    match history::report(
        ix.store.as_ref(),
        &ix.rules.get(),
        &period,
        crate::indicators::Level::Unit,
        now,
        &ix.synced_to,
    )
    .await
    {
        Ok(r) => Json(history::lowest(&r, count, min)).into_response(),
        Err(history::ReportError::Period(e)) => {
            error(StatusCode::BAD_REQUEST, "bad_period", e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "ops API: lowest units not computed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the indicators could not be read; try again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_read_from_the_detail() {
        assert_eq!(
            digest_of("digest sha256:abc123").as_deref(),
            Some("sha256:abc123")
        );
        assert_eq!(digest_of("retries_exhausted: HTTP 500"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
