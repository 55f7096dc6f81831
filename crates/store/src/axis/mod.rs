//! The document axis's receiving side: which received items were taken (published to the
//! broker, acknowledged to the axis), and each document's status history, on SQLite and
//! PostgreSQL (migration 11).
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **One take per key.** [`AxisStore::take`] inserts a take (the key is a document's
//!    DocumentId, or a status message's `DocumentId#Code@Timestamp`) with the envelope id it
//!    will be published under, or returns the stored take unchanged: a poll that crashed
//!    between publishing and marking re-publishes under the **same** envelope id (the route
//!    ledger recognises it), never under a new one.
//! 2. **Steps only move forward.** `published_ms` and `acked_ms` are set once
//!    ([`AxisStore::mark_published`], [`AxisStore::mark_acked`]); setting again keeps the first.
//! 3. **The history is append-only**, ordered per document by `seq` (0, 1, …), each row with
//!    its direction (`received` from the axis, `sent` to it), status code and axis word.
//!
//! Schema (version 10):
//! ```text
//! axis_taken   take_key PK, axis_id, kind, envelope_id, taken_ms, published_ms, acked_ms
//! axis_status  (document_id, seq) PK, direction, code, word, axis_id, detail, at_ms
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A received item taken by the poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Take {
    pub take_key: String,
    /// The axis's id of the item.
    pub axis_id: String,
    /// `document` or `status`.
    pub kind: String,
    /// The envelope id it is (to be) published under.
    pub envelope_id: String,
    pub taken_ms: i64,
    pub published_ms: Option<i64>,
    pub acked_ms: Option<i64>,
}

/// One status of a document, as received or sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    pub document_id: String,
    /// Set by the store (0, 1, …); ignored on insert.
    pub seq: i64,
    /// `received` (from the axis) or `sent` (to it).
    pub direction: String,
    /// The `StatusCode` (`01`…), when the status has one.
    pub code: Option<String>,
    /// The axis word (`inbox`…), when the status has one.
    pub word: Option<String>,
    pub axis_id: String,
    /// Organ ids and the description only (no personal data).
    pub detail: String,
    pub at_ms: i64,
}

#[async_trait]
pub trait AxisStore: Send + Sync {
    /// Insert the take, or return the one already stored under its key (invariant 1).
    async fn take(&self, t: Take) -> Result<Take>;
    async fn mark_published(&self, take_key: &str, at_ms: i64) -> Result<()>;
    async fn mark_acked(&self, take_key: &str, at_ms: i64) -> Result<()>;
    async fn taken(&self, take_key: &str) -> Result<Option<Take>>;
    /// Append a status to its document's history; returns its `seq`.
    async fn add_status(&self, s: StatusRow) -> Result<i64>;
    /// A document's history, oldest first.
    async fn history(&self, document_id: &str) -> Result<Vec<StatusRow>>;
}

/// Open the axis store at a store URL (as [`crate::open_tls`]; runs migrations).
pub async fn open_tls(
    url: &str,
    tls: Option<crate::tls::PgTls>,
) -> Result<std::sync::Arc<dyn AxisStore>> {
    Ok(match crate::open::open_backend(url, tls).await? {
        crate::open::Backend::Postgres(s) => std::sync::Arc::new(*s),
        crate::open::Backend::Sqlite(s) => std::sync::Arc::new(s),
    })
}

const TAKE_COLS: &str = "take_key, axis_id, kind, envelope_id, taken_ms, published_ms, acked_ms";
const STATUS_COLS: &str = "document_id, seq, direction, code, word, axis_id, detail, at_ms";

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/axis.rs`.
#[doc(hidden)]
pub mod suite;
