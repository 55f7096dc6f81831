//! The csc sandbox's state behind its locks, shared by the router and the operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;

use super::config::CscConfig;

pub(super) struct Shared {
    pub(super) cfg: CscConfig,
    pub(super) core: crate::officials::http::SharedCore,
    /// token → expiry.
    pub(super) tokens: Mutex<HashMap<String, Instant>>,
    /// SAD → what it authorizes.
    pub(super) sads: Mutex<HashMap<String, Sad>>,
    /// (credential, clientData) → responseID: the same request is not pushed twice.
    pub(super) by_client_data: Mutex<HashMap<(String, String), String>>,
}

pub(super) type St = State<Arc<Shared>>;

/// A SAD: for which credential, which hashes, until when.
pub(super) struct Sad {
    pub(super) credential: String,
    pub(super) hashes: Vec<String>,
    pub(super) until: Instant,
}
