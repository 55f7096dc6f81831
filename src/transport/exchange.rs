//! What an outbound exchange is, and who watches it: the small shared type between the HTTP
//! stack and whatever records exchanges (the evidence capture).
//!
//! # Invariants
//! - This module imports nothing from the rest of the gateway: the stack ([`super::stack`])
//!   and the evidence capture ([`crate::evidence::capture`]) both depend on it, never on each
//!   other, so there is no circle between transport and evidence.
//! - Observers are scoped to a task ([`observed`]) and carried into other tasks explicitly
//!   ([`current`]); outside any scope, [`note`] costs one task-local look-up and does nothing.
//! - An observer sees the request as sent (after signing) and the answer's status and body,
//!   or no status when no answer came; it never sees the adapter's fixed headers or bearer.

use std::future::Future;
use std::sync::Arc;

/// An outgoing request, after translation and signing.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Something that records exchanges (the evidence capture implements it).
pub trait ExchangeObserver: Send + Sync + 'static {
    /// One request and its answer: `status` is `None` when no answer came, `response` the
    /// whole answer body when one was read.
    fn observe(&self, req: &OutRequest, status: Option<u16>, response: Option<&[u8]>);
}

tokio::task_local! {
    static OBSERVER: Arc<dyn ExchangeObserver>;
}

/// Run `f` with `observer` seeing every exchange the stack makes within it.
pub async fn observed<F: Future>(observer: Arc<dyn ExchangeObserver>, f: F) -> F::Output {
    OBSERVER.scope(observer, f).await
}

/// The observer in scope, to carry into another task.
pub fn current() -> Option<Arc<dyn ExchangeObserver>> {
    OBSERVER.try_with(Arc::clone).ok()
}

/// Hand an exchange to the observer in scope (no-op outside one).
pub fn note(req: &OutRequest, status: Option<u16>, response: Option<&[u8]>) {
    let _ = OBSERVER.try_with(|o| o.observe(req, status, response));
}
