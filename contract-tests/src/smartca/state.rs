//! The smartca sandbox's state behind its locks, shared by the router and the operations.

use std::sync::Arc;

use axum::extract::State;

use super::config::SmartCaConfig;

pub(super) struct Shared {
    pub(super) cfg: SmartCaConfig,
    pub(super) core: crate::officials::http::SharedCore,
}

pub(super) type St = State<Arc<Shared>>;
