//! The ops API's agency subscriptions (`/api/v1/subscriptions…`): the list with each one's
//! live figures, enabling a disabled push subscription, and replaying what it missed.
//!
//! # Invariants
//! - **Role-checked like the dead-letter replay.** Enable and replay need an operator token
//!   (a viewer gets 403 and nothing changes); the token's name is recorded as who replayed.
//! - **The disabled state is the store's** (`gw_store::subscriptions`): the list reads it there
//!   and `enable` clears it there, so every instance on the store sees the same; the instance
//!   that cleared it publishes the one `subscription.enabled` event.
//! - **A replay runs in the background**: `POST …/replay` lists what was missed since the time
//!   and answers 202 with that count; `GET …/replay` reads its progress on this instance
//!   (`running`, `done`, `failed`). Refused (409) while the subscription is disabled or a
//!   replay of it is running here; a pull subscription has nothing to replay (409: its agency
//!   pages from a cursor or a time instead).
//! - Figures are per subscription name; nothing of a person is shown.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::reply::{error, require_operator, rfc3339};
use super::state::{Caller, OpsState};
use crate::agencies::Delivery;
use crate::connectors::agency::SubscriptionState;
use crate::model::time::now_ms;

type S = Arc<OpsState>;

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "ops API: subscription state not read");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store did not answer; try again",
    )
}

/// Every agency subscription: what it takes, the fields it is sent, its legal basis, whether
/// it is disabled (the store's word), and its live figures: for push, delivered, retried,
/// refused and lag (the oldest undelivered) on this instance; for pull, the agency's cursor
/// behind the head and the lag of its oldest unfetched entry.
pub(super) async fn list(State(st): State<S>) -> Response {
    let stored = match st.engine.store.clone().subscription_states().states().await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let now = now_ms();
    let list: Vec<Value> = st
        .options
        .subscriptions
        .iter()
        .map(|s| {
            let route = crate::agencies::push_route_name(&s.name);
            let disabled = (s.delivery == Delivery::Push)
                .then(|| stored.iter().find(|r| r.subscription == s.name))
                .flatten()
                .and_then(|r| r.disabled.clone());
            let counts = (s.delivery == Delivery::Push)
                .then(|| st.engine.metrics.route_counts(&route));
            let live = match s.delivery {
                Delivery::Push => live_push(state_of(&st, &s.name).as_deref(), now),
                Delivery::Pull => st.engine.feeds.as_ref().map_or(Value::Null, |f| {
                    json!({
                        "cursor_behind": f.metrics.behind(&s.name),
                        "lag_seconds": f.metrics.lag_seconds(&s.name, now),
                        "pages_served": f.metrics.count(&s.name, crate::agencies::feed::Counted::Pages),
                        "entries_served": f.metrics.count(&s.name, crate::agencies::feed::Counted::Served),
                    })
                }),
            };
            json!({
                "name": s.name,
                "agency": s.agency,
                "delivery": s.delivery.as_str(),
                "kinds": s.filter.kinds,
                "procedures": s.filter.procedures,
                "units": s.filter.units,
                "fields": s.fields.iter().map(|f| f.name).collect::<Vec<_>>(),
                "personal": s.personal.iter().map(|f| f.name).collect::<Vec<_>>(),
                "legal_basis": s.legal_basis,
                "disabled": disabled.map(|d| json!({"reason": d.reason, "since": rfc3339(d.since_ms)})),
                "counts": counts,
                "live": live,
            })
        })
        .collect();
    Json(json!({"subscriptions": list})).into_response()
}

fn live_push(state: Option<&SubscriptionState>, now: i64) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(s) = state else { return Value::Null };
    json!({
        "delivered": s.delivered.load(Relaxed),
        "retried": s.retried.load(Relaxed),
        "refused": s.refused.load(Relaxed),
        "lag_seconds": s.lag_ms(now) as f64 / 1000.0,
    })
}

fn state_of(st: &OpsState, name: &str) -> Option<Arc<SubscriptionState>> {
    st.engine
        .subscriptions
        .iter()
        .find(|s| s.name == name)
        .cloned()
}

/// The push subscription called `name` running here, or the answer saying why not.
#[allow(clippy::result_large_err)]
fn push_state(st: &OpsState, name: &str) -> Result<Arc<SubscriptionState>, Response> {
    let Some(sub) = st.options.subscriptions.iter().find(|s| s.name == name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no subscription {name}"),
        ));
    };
    if sub.delivery != Delivery::Push {
        return Err(error(
            StatusCode::CONFLICT,
            "not_push",
            format!("subscription {name} is a pull feed: its agency pages from a cursor or a time"),
        ));
    }
    state_of(st, name).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("subscription {name} does not run on this instance"),
        )
    })
}

/// Enable a disabled push subscription for every instance (operator).
pub(super) async fn enable(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let state = match push_state(&st, &name) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Through the state: it tells the change (the `subscription.enabled` event).
    match state.enable().await {
        Ok(Some(was)) => {
            tracing::info!(subscription = %name, by = %caller.name, reason = %was.reason, "subscription enabled through the ops API");
            let missed = crate::jobs::agency_replay::missed_since(
                st.engine.store.as_ref(),
                &name,
                was.since_ms,
            )
            .await
            .map(|l| l.len())
            .ok();
            Json(json!({
                "name": name,
                "result": "enabled",
                "was": {"reason": was.reason, "since": rfc3339(was.since_ms)},
                "missed": missed,
                "by": caller.name,
            }))
            .into_response()
        }
        Ok(None) => error(
            StatusCode::CONFLICT,
            "not_disabled",
            format!("subscription {name} is not disabled; nothing done"),
        ),
        Err(e) => unavailable(e),
    }
}

/// The body of a replay request.
#[derive(Debug, Deserialize)]
pub(super) struct ReplayBody {
    /// RFC 3339 time, or a duration before now (`2h`).
    since: String,
}

/// Start replaying what a push subscription missed since a time (operator): 202 with the
/// count found; progress at `GET` of the same path.
pub(super) async fn replay(
    State(st): State<S>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = require_operator(&caller) {
        return r;
    }
    let state = match push_state(&st, &name) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<ReplayBody>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "give a JSON body {\"since\": RFC 3339 time or a duration such as 2h}",
        );
    };
    let Some(since_ms) = crate::agencies::parse_since(&body.since, now_ms()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_since",
            format!(
                "since `{}`: give an RFC 3339 time or a duration such as 2h",
                body.since
            ),
        );
    };
    if let Some(d) = state.disabled().await {
        return error(
            StatusCode::CONFLICT,
            "disabled",
            format!(
                "subscription {name} is disabled ({}) since {}: enable it first",
                d.reason,
                rfc3339(d.since_ms)
            ),
        );
    }
    let e = &st.engine;
    match crate::jobs::agency_replay::start(
        state,
        e.broker.clone(),
        e.store.clone(),
        since_ms,
        &caller.name,
    )
    .await
    {
        Ok(p) => {
            tracing::info!(subscription = %name, by = %caller.name, found = p.found, "subscription replay started through the ops API");
            (StatusCode::ACCEPTED, Json(progress_json(&name, &p))).into_response()
        }
        Err(crate::jobs::agency_replay::StartError::Running) => error(
            StatusCode::CONFLICT,
            "replay_running",
            format!("a replay of {name} is already running here"),
        ),
        Err(crate::jobs::agency_replay::StartError::Store(e)) => unavailable(e),
    }
}

/// The progress of the last replay of a push subscription started on this instance.
pub(super) async fn replay_progress(State(st): State<S>, Path(name): Path<String>) -> Response {
    let state = match push_state(&st, &name) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let p = state
        .replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match p {
        Some(p) => Json(progress_json(&name, &p)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_replay",
            format!("no replay of {name} was started on this instance"),
        ),
    }
}

fn progress_json(name: &str, p: &crate::connectors::agency::state::ReplayProgress) -> Value {
    json!({
        "name": name,
        "state": p.state,
        "since": rfc3339(p.since_ms),
        "by": p.by,
        "started": rfc3339(p.started_ms),
        "found": p.found,
        "done": p.done,
        "replayed": p.replayed,
        "already_settled": p.already_settled,
        "error": p.error,
    })
}
