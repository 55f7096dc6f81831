//! Strict JSON reading for the signing sandboxes' endpoints.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Why a body is refused before the operation reads it.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("Content-Type must be application/json")]
    ContentType,
    #[error("the body is not a JSON object: {0}")]
    NotObject(String),
}

/// The body as a JSON object, or the refusal (415, 400).
pub fn json_object(h: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(BodyError::ContentType);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BodyError::NotObject("not an object".into())),
        Err(e) => Err(BodyError::NotObject(e.to_string())),
    }
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::NotObject(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A JSON answer with a status.
pub fn answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// A string field, non-empty.
pub fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Answer `resp` as the call's fault says: at once, after a stall, or lost behind a 500.
pub async fn deliver(step: super::FaultStep, resp: Response) -> Response {
    match step {
        super::FaultStep::FailAfter => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "injected fault after the effect"}),
        ),
        super::FaultStep::Stall(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            resp
        }
        _ => resp,
    }
}

/// The 503 of a fault before any effect.
pub fn unavailable() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": "injected fault before the effect"}),
    )
}

/// A sandbox's state, shared between its handlers and [`control_routes`].
pub type SharedCore = std::sync::Arc<std::sync::Mutex<super::Core>>;

/// `GET /_sandbox/records`, `GET|POST /_sandbox/faults`: what every signing sandbox offers its
/// tests, over the same [`super::Core`] its handlers use; merged into each sandbox's router.
pub fn control_routes(core: SharedCore) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    use axum::Json;
    async fn records(State(c): State<SharedCore>) -> Json<super::SignRecords> {
        Json(c.lock().unwrap().records.clone())
    }
    async fn faults(State(c): State<SharedCore>) -> Json<super::SignFaults> {
        Json(c.lock().unwrap().faults.clone())
    }
    async fn set_faults(
        State(c): State<SharedCore>,
        Json(f): Json<super::SignFaults>,
    ) -> StatusCode {
        c.lock().unwrap().faults = f;
        StatusCode::NO_CONTENT
    }
    axum::Router::new()
        .route("/_sandbox/records", get(records))
        .route("/_sandbox/faults", get(faults).post(set_faults))
        .with_state(core)
}
