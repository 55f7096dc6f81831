//! Helpers shared by both backends and by the per-topic SQL files (claims, evidence, payments).
//!
//! # Invariants
//!
//! - Dependencies point one way: `sqlite.rs`, `postgres.rs` and the topic files import this
//!   module; it imports nothing of them (only the crate's error type). The topic files that a
//!   backend calls (`claims.rs`, `evidence_sql.rs`) take a `&Connection` / transaction
//!   (SQLite) or a client / transaction (PostgreSQL), never a backend's store struct; the
//!   backends list the topics' migrations (`payments/schema.rs` and the `*_V*` constants).
//!   Only `payments/sqlite.rs` and `payments/postgres.rs` sit on top of a backend struct (they
//!   implement `PaymentStore` for it), and no backend imports them.
//! - Every database failure becomes a [`StoreError`] here, so both backends classify alike:
//!   a value that does not decode into our types is [`StoreError::Malformed`] (bad data), any
//!   other failure of a statement is [`StoreError::Query`] (the caller may retry).

use crate::error::StoreError;

/// Failure inside the SQLite worker thread, turned into a [`StoreError`] at the boundary.
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Migrate(String),
    /// A different dead letter under an existing id.
    Conflict(String),
    /// A stored value that does not decode into our types.
    Malformed(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            // A value that does not decode into our types is bad data, not a failed query.
            Fail::Sql(
                e @ (rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)),
            ) => StoreError::Malformed(e.to_string()),
            Fail::Sql(e) => StoreError::Query(e.to_string()),
            Fail::Migrate(m) => StoreError::Migrate(m),
            Fail::Conflict(id) => duplicate_dead_letter(&id),
            Fail::Malformed(m) => StoreError::Malformed(m),
        }
    }
}

/// The error for a different dead letter recorded under an existing id (invariant 6 of the
/// crate).
pub(crate) fn duplicate_dead_letter(id: &str) -> StoreError {
    StoreError::Query(format!(
        "dead letter {id} already exists with different content; the batch was rolled back"
    ))
}

/// A readable message: tokio-postgres' `Display` alone says little more than "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// A failed PostgreSQL statement.
pub(crate) fn query(e: tokio_postgres::Error) -> StoreError {
    StoreError::Query(describe(&e))
}
