//! The smartca sandbox's state behind its locks, shared by the router and the operations.

use std::sync::{Arc, Mutex};

use axum::extract::State;

use super::config::SmartCaConfig;
use crate::officials::Core;

pub(super) struct Shared {
    pub(super) cfg: SmartCaConfig,
    pub(super) core: Mutex<Core>,
}

pub(super) type St = State<Arc<Shared>>;
