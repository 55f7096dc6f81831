//! The ops listener: `/healthz` (the process lives), `/readyz` (broker and store answer),
//! `/metrics` (OpenMetrics text, [`crate::telemetry::metrics`]), and — when `[ops] tokens`
//! are configured — the JSON ops API under `/api/v1/` ([`api`], described by
//! `openapi.yaml`) and the web dashboard at `/`.
//! Separate from the inbound listener so it can be firewalled differently and keeps answering
//! when inbound is saturated.
//!
//! # Invariants
//! - **No token, no API.** With no token configured the API, its OpenAPI file and the
//!   dashboard are not served at all (404); health and metrics always are.
//! - **Every API call names its caller.** A request without a valid bearer token gets 401;
//!   a viewer token reads only (403 on replay and drop); the token's configured *name* is
//!   what the store records as `settled_by`. Tokens are compared in constant time
//!   ([`gw_crypto::util::ct_eq`]) and never logged or echoed.
//! - **Read-only views hide payloads from viewers.** A dead letter's original envelope (it may
//!   carry personal data) is shown in full to operators only; viewers see its metadata.
//! - The dashboard is static (HTML, JS and CSS compiled into the binary): no CDN, no external
//!   request; it only talks to this listener with the token the user typed, or the one a
//!   link carried in its fragment (`/#token=…`, never sent to the server; the page clears it
//!   from the address bar). The service-quality index has a page of its own at `/indicators`
//!   (`indicators.{html,js,css}`, same rules): a table per commune and an inline-SVG chart of
//!   each indicator over the last 12 months, in Vietnamese or English.
//!
//! Traces: every message has an `accept` span (the inbound request), a `deliver` span per
//! attempt carrying its route, dossier code (`key`), envelope id, kind, attempt, and a `send`
//! span per call to the destination, all with the W3C `trace_id`, `span_id` and
//! `parent_span_id` of the envelope's `traceparent` (which crosses the broker); the
//! connector sends the `send` span's `traceparent` downstream. `--log-json` writes those
//! spans with every line, and with `[ops] otlp_endpoint` they are exported over OTLP/HTTP
//! ([`crate::telemetry`]).

pub mod api;
pub mod api_subscriptions;
mod reply;
mod signing;
pub mod state;

pub use state::{Caller, OpsOptions, OpsState, OpsToken};

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Engine;
use crate::telemetry::metrics::{esc, family};

/// The OpenAPI 3 description of the API (served at `/api/v1/openapi.yaml`).
pub const OPENAPI_YAML: &str = include_str!("openapi.yaml");
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");
// The service-quality index's page (`/indicators`): its own files, the dashboard's CSS.
const INDICATORS_HTML: &str = include_str!("indicators.html");
const INDICATORS_JS: &str = include_str!("indicators.js");
const INDICATORS_CSS: &str = include_str!("indicators.css");

pub fn router(engine: Arc<Engine>, options: OpsOptions) -> Router {
    let enabled = !options.tokens.is_empty();
    if !enabled {
        tracing::info!("no [ops] tokens configured: the ops API and dashboard are off");
    }
    let state = Arc::new(OpsState {
        engine,
        options,
        started: Instant::now(),
        started_ms: crate::model::time::now_ms(),
    });
    let mut r = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if enabled {
        let mut api_routes = Router::new();
        for (_, path, mr) in api::table() {
            api_routes = api_routes.route(path, mr);
        }
        let api_routes = api_routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
        r = r
            .merge(api_routes)
            .route("/api/v1/openapi.yaml", get(openapi))
            .route("/", get(dashboard_html))
            .route("/assets/dashboard.js", get(dashboard_js))
            .route("/assets/dashboard.css", get(dashboard_css))
            .route("/indicators", get(indicators_html))
            .route("/assets/indicators.js", get(indicators_js))
            .route("/assets/indicators.css", get(indicators_css));
    }
    r.with_state(state)
}

/// The bearer token of a request, if any.
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn authenticate(State(st): State<Arc<OpsState>>, mut req: Request, next: Next) -> Response {
    let Some(given) = bearer(&req) else {
        return api::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an ops token as `Authorization: Bearer …`",
        );
    };
    // Compare with every token (no early exit: the time taken does not say which one matched).
    let mut found: Option<&OpsToken> = None;
    for t in &st.options.tokens {
        if gw_crypto::util::ct_eq(given.as_bytes(), t.secret.expose().as_bytes()) {
            found = Some(t);
        }
    }
    let Some(t) = found else {
        return api::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid",
        );
    };
    req.extensions_mut().insert(Caller {
        name: t.name.clone(),
        role: t.role,
    });
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// Security headers for the dashboard's files: only this origin, no framing, no sniffing.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

async fn dashboard_html() -> Response {
    static_file("text/html; charset=utf-8", DASHBOARD_HTML)
}
async fn dashboard_js() -> Response {
    static_file("text/javascript; charset=utf-8", DASHBOARD_JS)
}
async fn dashboard_css() -> Response {
    static_file("text/css; charset=utf-8", DASHBOARD_CSS)
}
async fn indicators_html() -> Response {
    static_file("text/html; charset=utf-8", INDICATORS_HTML)
}
async fn indicators_js() -> Response {
    static_file("text/javascript; charset=utf-8", INDICATORS_JS)
}
async fn indicators_css() -> Response {
    static_file("text/css; charset=utf-8", INDICATORS_CSS)
}

async fn readyz(State(st): State<Arc<OpsState>>) -> impl IntoResponse {
    let e = &st.engine;
    let broker = e.broker.ready().await;
    let store = e.store.ready().await;
    let status = if broker && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({"broker": broker, "broker_kind": e.broker.kind(), "store": store, "store_kind": e.store.kind()}),
        ),
    )
}

async fn metrics(State(st): State<Arc<OpsState>>) -> impl IntoResponse {
    let e = &st.engine;
    // The families rendered here at scrape time, placed by `render_with` before `# EOF`.
    let mut text = String::new();
    let mut ready = String::new();
    let mut unacked = String::new();
    let mut delayed = String::new();
    let mut head_age = String::new();
    for r in &e.routes {
        for q in r.queues() {
            if let Ok(s) = e.broker.stats(&q).await {
                let labels = format!(
                    "route=\"{}\",adapter=\"{}\",queue=\"{}\"",
                    esc(&r.name),
                    esc(&r.destination),
                    esc(&q)
                );
                ready.push_str(&format!("gateway_queue_ready{{{labels}}} {}\n", s.ready));
                unacked.push_str(&format!(
                    "gateway_queue_unacked{{{labels}}} {}\n",
                    s.unacked
                ));
                if let Some(d) = s.delayed {
                    delayed.push_str(&format!("gateway_queue_delayed{{{labels}}} {d}\n"));
                }
                if let Some(a) = s.oldest_ready_age {
                    head_age.push_str(&format!(
                        "gateway_queue_oldest_ready_age_seconds{{{labels}}} {}\n",
                        a.as_secs_f64()
                    ));
                }
            }
        }
    }
    family(
        &mut text,
        "gateway_broker_orphaned_retries",
        "gauge",
        "Retries whose queue was deleted while they waited, kept in the broker's orphans queue (RabbitMQ gw.orphans; absent on the embedded broker).",
    );
    if let Some(q) = e.broker.orphans_queue() {
        if let Ok(s) = e.broker.stats(q).await {
            text.push_str(&format!(
                "gateway_broker_orphaned_retries{{queue=\"{}\"}} {}\n",
                esc(q),
                s.ready
            ));
        }
    }
    family(
        &mut text,
        "gateway_queue_ready",
        "gauge",
        "Messages waiting in each route queue.",
    );
    text.push_str(&ready);
    family(
        &mut text,
        "gateway_queue_unacked",
        "gauge",
        "Messages being delivered (taken, not yet settled) per route queue.",
    );
    text.push_str(&unacked);
    family(
        &mut text,
        "gateway_queue_delayed",
        "gauge",
        "Retry backlog: messages waiting for a delayed redelivery, where the broker can tell.",
    );
    text.push_str(&delayed);
    family(
        &mut text,
        "gateway_queue_oldest_ready_age_seconds",
        "gauge",
        "How long the oldest ready message of each route queue has waited since it became deliverable (0 when none waits; RabbitMQ: an upper bound seen by this process's consumer, absent until it took a message).",
    );
    text.push_str(&head_age);
    family(
        &mut text,
        "gateway_dead_letters_open",
        "gauge",
        "Dead letters waiting for an operator.",
    );
    if let Ok(n) = e.store.open_dead_letters().await {
        text.push_str(&format!("gateway_dead_letters_open {n}\n"));
    }
    family(
        &mut text,
        "gateway_up",
        "gauge",
        "1 when the broker and the store both answer.",
    );
    let up = e.broker.ready().await && e.store.ready().await;
    text.push_str(&format!("gateway_up {}\n", u8::from(up)));
    family(
        &mut text,
        "gateway_build_info",
        "gauge",
        "The gateway's version and backends (always 1).",
    );
    text.push_str(&format!(
        "gateway_build_info{{version=\"{}\",broker=\"{}\",store=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        e.broker.kind(),
        e.store.kind()
    ));
    (
        [(
            header::CONTENT_TYPE,
            crate::telemetry::metrics::CONTENT_TYPE,
        )],
        e.metrics.render_with(&text),
    )
}
