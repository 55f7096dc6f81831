//! The mysign sandbox's state behind its locks, shared by the router and the operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;

use super::config::MySignConfig;

pub(super) struct Shared {
    pub(super) cfg: MySignConfig,
    pub(super) core: crate::officials::http::SharedCore,
    /// token → (user id, expiry).
    pub(super) tokens: Mutex<HashMap<String, (String, Instant)>>,
}

pub(super) type St = State<Arc<Shared>>;
