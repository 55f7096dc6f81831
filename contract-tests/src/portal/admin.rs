//! The sandbox endpoints `/_sandbox/*`: records, faults, session expiry, catalogue.
//!
//! # Invariants
//!
//! - No fault and no rate limit applies here, so a test can always read and steer the sandbox.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::catalogue::Catalogue;
use super::faults::Faults;
use super::records::Records;
use super::state::St;

pub(super) async fn records_ep(State(sh): St) -> Json<Records> {
    Json(sh.inner.lock().unwrap().records.clone())
}

pub(super) async fn get_faults_ep(State(sh): St) -> Json<Faults> {
    Json(sh.inner.lock().unwrap().faults.clone())
}

pub(super) async fn set_faults_ep(State(sh): St, Json(f): Json<Faults>) -> StatusCode {
    sh.inner.lock().unwrap().set_faults(f);
    StatusCode::NO_CONTENT
}

pub(super) async fn expire_ep(State(sh): St) -> StatusCode {
    sh.inner.lock().unwrap().sessions.clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn get_catalogue_ep(State(sh): St) -> Json<Catalogue> {
    Json(sh.inner.lock().unwrap().catalogue.clone())
}

pub(super) async fn set_catalogue_ep(State(sh): St, Json(c): Json<Catalogue>) -> StatusCode {
    sh.inner.lock().unwrap().catalogue = c;
    StatusCode::NO_CONTENT
}
