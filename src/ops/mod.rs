//! The ops listener: `/healthz` (the process lives), `/readyz` (broker and store answer),
//! `/metrics` (Prometheus text). Separate from the inbound listener so it can be firewalled
//! differently and keeps answering when inbound is saturated.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::pipeline::Engine;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(engine)
}

async fn readyz(State(e): State<Arc<Engine>>) -> impl IntoResponse {
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

async fn metrics(State(e): State<Arc<Engine>>) -> impl IntoResponse {
    let mut text = e.metrics.render();
    text.push_str("# HELP gateway_queue_ready Messages waiting in each route queue.\n# TYPE gateway_queue_ready gauge\n");
    for r in &e.routes {
        for q in r.queues() {
            if let Ok(s) = e.broker.stats(&q).await {
                text.push_str(&format!(
                    "gateway_queue_ready{{route=\"{}\",queue=\"{q}\"}} {}\n",
                    r.name, s.ready
                ));
            }
        }
    }
    text.push_str("# HELP gateway_dead_letters_open Dead letters waiting for an operator.\n# TYPE gateway_dead_letters_open gauge\n");
    if let Ok(n) = e.store.open_dead_letters().await {
        text.push_str(&format!("gateway_dead_letters_open {n}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
