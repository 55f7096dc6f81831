//! The service-quality indicators' persistence: a journal of the facts each dossier event told
//! the indicators, the state folded per dossier, and the consumer's position, on SQLite and
//! PostgreSQL (schema version 11). The fold itself (what a fact does to a state) is the
//! gateway's (`gateway::indicators::state`): this store keeps opaque JSON and the few columns
//! it filters on.
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **One application per event id.** [`IndicatorStore::apply`] journals the fact, writes
//!    the dossier's new state and moves the consumer's position in **one transaction**; an
//!    event id already journalled writes nothing and answers [`Applied::Duplicate`]. So a
//!    redelivered event (the consumer acks only after `apply` returned) is never folded twice,
//!    and a crash before the commit leaves nothing half-applied.
//! 2. **The fold sees the stored state.** `apply` reads the dossier's row under the write lock
//!    (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE`) and hands its JSON to the
//!    caller's fold; a fold that fails rolls everything back ([`StoreError::Malformed`]).
//! 3. **The journal is the history.** Entries are never changed or deleted; `seq` grows with
//!    every entry. [`IndicatorStore::journal_page`] reads them ordered by (key, seq), so a
//!    rebuild folds one dossier at a time, in the order the live consumer applied them.
//! 4. **A rebuild never undoes live work.** [`IndicatorStore::put_states`] writes a rebuilt row
//!    only if the stored row's `last_seq` is not newer than the rebuilt one's (a live apply
//!    that ran during the rebuild wins).
//! 5. **A batch is one transaction.** [`IndicatorStore::apply_batch`] journals every new
//!    event id of a batch, folds them into their dossiers' states and moves the position by
//!    their number, all committed together or not at all. An id journalled before, or
//!    repeated earlier in the same batch, is a [`Applied::Duplicate`] and writes nothing, so a
//!    batch re-delivered after its commit (a crash before the acks) changes nothing.
//! 6. **Synced is the ledger's word.** [`IndicatorStore::states`] says, per dossier, whether
//!    the given destination has a delivered version of it (`delivered_versions`): the portal
//!    accepted it.
//!
//! Schema (version 11; 10 is the pull feeds' on main):
//! ```text
//! indicator_journal   seq PK (grows), event_id UNIQUE, key, kind, fact (JSON), at_ms
//!                     index (key, seq)
//! indicator_dossiers  code PK, unit, procedure, received_ms?, end_ms?, state (JSON),
//!                     last_seq, updated_ms                 index (received_ms, end_ms)
//! indicator_position  consumer PK, applied, last_event, last_seq, updated_ms
//! ```

use async_trait::async_trait;

use crate::error::{Result, StoreError};

/// The most rows one journal page returns.
pub const PAGE_MAX: u32 = 10_000;

/// One journalled fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The envelope id (the idempotency key).
    pub event_id: String,
    /// The dossier code.
    pub key: String,
    pub kind: String,
    /// The fact (JSON, no personal data).
    pub fact: String,
    /// The envelope's `created_ms`.
    pub at_ms: i64,
}

/// A dossier's indicator state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub code: String,
    pub unit: String,
    pub procedure: String,
    pub received_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// The folded state (JSON).
    pub state: String,
    /// The journal entry folded last.
    pub last_seq: i64,
    pub updated_ms: i64,
}

/// A state as read for a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    pub row: StateRow,
    /// The destination asked about has a delivered version of this dossier.
    pub synced: bool,
}

/// What [`IndicatorStore::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Journalled as `seq`, state and position written.
    Applied { seq: i64 },
    /// The event id was journalled before: nothing written.
    Duplicate,
}

/// The consumer's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub consumer: String,
    /// Events applied (duplicates not counted).
    pub applied: i64,
    pub last_event: String,
    pub last_seq: i64,
    pub updated_ms: i64,
}

/// The caller's fold: the stored state's JSON (`None`: a new dossier) and the entry's `seq`
/// to the new row, or why the stored state cannot be read.
pub type Fold =
    Box<dyn FnOnce(Option<String>, i64) -> std::result::Result<StateRow, String> + Send>;

/// What a [`BatchFold`] is given: the stored state (JSON) of each dossier the batch's new
/// entries touch (absent: a new dossier), and the entries to fold, in batch order, as
/// (index into the batch, `seq` it was journalled as).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchInput {
    pub stored: std::collections::HashMap<String, String>,
    pub applied: Vec<(usize, i64)>,
}

/// The caller's fold of a batch: one new row per dossier touched (at most one per code), or
/// why a stored state cannot be read (the whole batch is then rolled back).
pub type BatchFold =
    Box<dyn FnOnce(BatchInput) -> std::result::Result<Vec<StateRow>, String> + Send>;

/// The indices of `entries` whose event id does not occur earlier in the batch.
fn first_occurrences(entries: &[JournalEntry]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    (0..entries.len())
        .filter(|&i| seen.insert(entries[i].event_id.as_str()))
        .collect()
}

/// Check a batch fold's rows: each a dossier the batch touched, none twice.
fn check_batch_rows(
    entries: &[JournalEntry],
    applied: &[(usize, i64)],
    rows: &[StateRow],
) -> std::result::Result<(), String> {
    let touched: std::collections::HashSet<&str> = applied
        .iter()
        .map(|(i, _)| entries[*i].key.as_str())
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for r in rows {
        if !touched.contains(r.code.as_str()) {
            return Err(format!(
                "a row for {}, which the batch does not touch",
                r.code
            ));
        }
        if !seen.insert(r.code.as_str()) {
            return Err(format!("two rows for {}", r.code));
        }
    }
    Ok(())
}

/// The indicator store (see the invariants above).
#[async_trait]
pub trait IndicatorStore: Send + Sync {
    /// Journal `entry`, fold it into its dossier's state and advance `consumer`'s position,
    /// in one transaction (invariants 1 and 2).
    async fn apply(&self, consumer: &str, entry: JournalEntry, fold: Fold) -> Result<Applied>;

    /// [`IndicatorStore::apply`] for a batch, in one transaction (invariant 5): one answer
    /// per entry, in order. `fold` runs once, only if the batch has a new event id; if it
    /// fails nothing is written ([`StoreError::Malformed`]).
    async fn apply_batch(
        &self,
        consumer: &str,
        entries: Vec<JournalEntry>,
        fold: BatchFold,
    ) -> Result<Vec<Applied>>;

    /// Journal entries after `after` (a (key, seq) cursor; `None` = from the start), ordered
    /// by (key, seq), at most `limit` (≤ [`PAGE_MAX`]).
    async fn journal_page(
        &self,
        after: Option<(String, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, JournalEntry)>>;

    /// How many entries the journal holds.
    async fn journal_len(&self) -> Result<i64>;

    /// Write rebuilt rows, each unless the stored one is newer (invariant 4). Returns how many
    /// were written.
    async fn put_states(&self, rows: Vec<StateRow>) -> Result<u64>;

    /// States of dossiers received by `received_until_ms` whose processing had not ended
    /// before `ended_from_ms` (open ones included), each with whether `synced_to` has a
    /// delivered version of it.
    async fn states(
        &self,
        received_until_ms: i64,
        ended_from_ms: i64,
        synced_to: &str,
    ) -> Result<Vec<StoredState>>;

    /// One dossier's state.
    async fn state(&self, code: &str) -> Result<Option<StateRow>>;

    /// The consumer's position, if it applied anything.
    async fn position(&self, consumer: &str) -> Result<Option<Position>>;
}

/// Open the indicator store at a store URL (as [`crate::open`]; runs migrations).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn IndicatorStore>> {
    open_tls(url, None).await
}

/// [`open`], with TLS to PostgreSQL when `tls` is given.
pub async fn open_tls(
    url: &str,
    tls: Option<crate::tls::PgTls>,
) -> Result<std::sync::Arc<dyn IndicatorStore>> {
    Ok(match crate::open::open_backend(url, tls).await? {
        crate::open::Backend::Postgres(s) => std::sync::Arc::new(*s),
        crate::open::Backend::Sqlite(s) => std::sync::Arc::new(s),
    })
}

fn fold_failed(code: &str, why: String) -> StoreError {
    StoreError::Malformed(format!("indicator state of {code}: {why}"))
}

fn batch_fold_failed(why: String) -> String {
    format!("indicator states of a batch: {why}")
}

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/indicators.rs`.
#[doc(hidden)]
pub mod suite;
