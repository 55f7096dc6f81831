//! `/api/v1/indicators` and `/api/v1/indicators/at-risk`: the service-quality index as JSON.
//!
//! # Invariants
//! - Read-only: any token (viewer or operator) may read them.
//! - A gateway without `[indicators]` answers 404 `indicators_off`; a bad period, level or
//!   horizon is a 400 naming the parameter; a store failure is a 503.
//! - The at-risk list names dossiers by code with their unit and procedure; no citizen data.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::api::error;
use super::state::OpsState;
use crate::indicators::history::{self, ReportError};
use crate::indicators::Level;
use crate::model::time::now_ms;

type S = Arc<OpsState>;

/// The longest at-risk horizon asked, in working days.
pub const MAX_AT_RISK_DAYS: u32 = 60;

#[derive(Debug, Deserialize)]
pub(super) struct ReportQuery {
    period: Option<String>,
    level: Option<String>,
}

fn off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "indicators_off",
        "the service-quality index is off: add an [indicators] section",
    )
}

/// `GET /api/v1/indicators?period=2026-11&level=unit`
pub(super) async fn report(State(st): State<S>, Query(q): Query<ReportQuery>) -> Response {
    let Some(ix) = &st.options.indicators else {
        return off();
    };
    let now = now_ms();
    let period = q
        .period
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| crate::jobs::indicators::month_of(now));
    let level = match q.level.as_deref().map(Level::parse) {
        None => Level::Province,
        Some(Some(l)) => l,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_level",
                "level must be province, unit or procedure",
            )
        }
    };
    match history::report(
        ix.store.as_ref(),
        &ix.rules,
        &period,
        level,
        now,
        &ix.synced_to,
    )
    .await
    {
        Ok(r) => Json(r).into_response(),
        Err(ReportError::Period(e)) => error(StatusCode::BAD_REQUEST, "bad_period", e.to_string()),
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

#[derive(Debug, Deserialize)]
pub(super) struct AtRiskQuery {
    days: Option<String>,
}

/// `GET /api/v1/indicators/at-risk?days=N`
pub(super) async fn at_risk(State(st): State<S>, Query(q): Query<AtRiskQuery>) -> Response {
    let Some(ix) = &st.options.indicators else {
        return off();
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
    match history::at_risk(ix.store.as_ref(), &ix.rules, now, days).await {
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
