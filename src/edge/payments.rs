//! The payment endpoints on the inbound server.
//!
//! - `POST /payments/{provider}/orders` (bearer token when `payments.token` is set): body
//!   [`PaymentRequest`](crate::payments::PaymentRequest); `200 {"orders": [OrderView…]}` with where the
//!   citizen pays. Repeating the request answers the same orders (one order per fee).
//!   `400` invalid request (the message names the field; limits in `crate::model::limits`), `401`
//!   token, `415` not `application/json`, `404` unknown provider, `409` no fees known for
//!   the dossier (`fees_unknown`), `422` a fee not among the dossier's known fees, with another
//!   amount or already paid (`fee_mismatch`), `409` a fee's amount changed
//!   for an existing order, `503` provider or store unavailable (retry: the same order is
//!   reused).
//! - `GET /payments/{provider}/ipn`: VNPay's IPN, answered `{"RspCode", "Message"}`
//!   ([`crate::payments::vnpay::VnPay::handle_ipn`]).
//! - `POST /payments/{provider}/ipn`: MoMo's IPN, answered `204` when recorded
//!   ([`crate::payments::momo::MoMo::handle_ipn`]).
//! - `POST /payments/{provider}/callback`: the payment platform's result callback, answered
//!   `{MaLoi, …}` ([`crate::payments::platform::Platform::handle_callback`]), or PayGov's, answered
//!   `{"error_code", "error_message"}` ([`crate::payments::paygov::PayGov::handle_callback`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::Secret;
use crate::payments::orders::{PaymentError, PaymentRequest};
use crate::payments::provider::ProviderError;
use crate::payments::service::Payments;
use crate::payments::vnpay::{IpnReply, VnPay};

/// What the payment endpoints need.
pub struct PaymentsHttp {
    pub payments: Arc<Payments>,
    /// VNPay connectors by provider name (their IPNs arrive here).
    pub vnpay: BTreeMap<String, Arc<VnPay>>,
    /// Payment platform connectors by provider name.
    pub platform: BTreeMap<String, Arc<crate::payments::platform::Platform>>,
    /// PayGov connectors by provider name.
    pub paygov: BTreeMap<String, Arc<crate::payments::paygov::PayGov>>,
    /// MoMo connectors by provider name.
    pub momo: BTreeMap<String, Arc<crate::payments::momo::MoMo>>,
    /// Bearer token the one-stop system presents to create orders; `None` = no check.
    pub token: Option<Secret>,
}

/// The largest body the payment endpoints read: providers send a few KiB, an order request
/// is a dossier code and its fees. Larger ones get 413 before anything is parsed or stored.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: Arc<PaymentsHttp>) -> Router {
    Router::new()
        .route("/payments/{provider}/orders", post(create_orders))
        .route("/payments/{provider}/ipn", get(vnpay_ipn).post(momo_ipn))
        .route("/payments/{provider}/callback", post(json_callback))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn create_orders(
    State(st): State<Arc<PaymentsHttp>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = &st.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !gw_crypto::util::ct_eq(given.as_bytes(), token.expose().as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
        }
    }
    if let Err(r) = super::answer::require_json(&headers) {
        return r;
    }
    let req: PaymentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_body", e.to_string()),
    };
    match st.payments.request(&provider, &req).await {
        Ok(orders) => (StatusCode::OK, Json(json!({"orders": orders}))).into_response(),
        Err(e @ PaymentError::UnknownProvider(_)) => {
            error(StatusCode::NOT_FOUND, "unknown_provider", e.to_string())
        }
        Err(e @ PaymentError::Invalid(_)) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
        }
        Err(e @ PaymentError::FeesUnknown(_)) => {
            error(StatusCode::CONFLICT, "fees_unknown", e.to_string())
        }
        Err(e @ PaymentError::FeeMismatch(_)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fee_mismatch",
            e.to_string(),
        ),
        Err(e @ PaymentError::AmountChanged { .. }) => {
            error(StatusCode::CONFLICT, "amount_changed", e.to_string())
        }
        Err(e @ PaymentError::Provider(ProviderError::Refused(_))) => {
            error(StatusCode::BAD_GATEWAY, "provider_refused", e.to_string())
        }
        Err(e) => {
            tracing::warn!(provider, dossier = %req.dossier_code, error = %e, "payment request not completed; the caller retries");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
            r
        }
    }
}

async fn vnpay_ipn(
    State(st): State<Arc<PaymentsHttp>>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(v) = st.vnpay.get(&provider) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no VNPay provider named `{provider}`"),
        );
    };
    let reply: IpnReply = v
        .handle_ipn(&st.payments, query.as_deref().unwrap_or(""))
        .await;
    (StatusCode::OK, Json(reply.body())).into_response()
}

async fn momo_ipn(
    State(st): State<Arc<PaymentsHttp>>,
    Path(provider): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match st.momo.get(&provider) {
        Some(m) => m.handle_ipn(&st.payments, &body).await.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no MoMo provider named `{provider}`"),
        ),
    }
}

async fn json_callback(
    State(st): State<Arc<PaymentsHttp>>,
    Path(provider): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(p) = st.platform.get(&provider) {
        return (
            StatusCode::OK,
            Json(p.handle_callback(&st.payments, &body).await),
        )
            .into_response();
    }
    if let Some(p) = st.paygov.get(&provider) {
        return (
            StatusCode::OK,
            Json(p.handle_callback(&st.payments, &body).await),
        )
            .into_response();
    }
    error(
        StatusCode::NOT_FOUND,
        "unknown_provider",
        format!("no callback provider named `{provider}`"),
    )
}
