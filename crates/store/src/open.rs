//! [`open`]: a store from a URL, PostgreSQL or SQLite, migrated.
//!
//! # Invariants
//! - Migrations have run when `open` returns (invariant 5 of the crate doc).
//! - This is the one file that picks a backend from a URL; the delivery, payment and signature
//!   stores all open through [`open_backend`], with the same TLS.

use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::tls::PgTls;
use crate::{postgres, sqlite};

/// Open a store from a URL: `postgres://…` / `postgresql://…` for PostgreSQL, `sqlite:PATH`
/// (or a bare path) for SQLite. Runs migrations.
///
/// A PostgreSQL URL may carry `schema=NAME` among its query parameters: the store then lives in
/// that schema (created if missing), see [`postgres::PgStore::connect`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_tls(url, None).await
}

/// [`open`], with TLS to PostgreSQL when `tls` is given (verify-full, see [`crate::tls`]).
/// `tls` with a SQLite URL is refused: it would be silently unused.
pub async fn open_tls(url: &str, tls: Option<PgTls>) -> Result<Arc<dyn Store>> {
    Ok(match open_backend(url, tls).await? {
        Backend::Postgres(s) => Arc::new(*s),
        Backend::Sqlite(s) => Arc::new(s),
    })
}

/// An opened, migrated backend, before it is seen through one of the crate's traits
/// ([`Store`], [`crate::payments::PaymentStore`], [`crate::signatures::SignatureStore`]).
pub(crate) enum Backend {
    // Boxed: the PostgreSQL handle (pool, statements) is much larger than SQLite's.
    Postgres(Box<postgres::PgStore>),
    Sqlite(sqlite::SqliteStore),
}

/// The one place a URL picks a backend: every store of the crate opens through it, so the
/// payment and signature stores reach PostgreSQL with the same TLS as the delivery store.
pub(crate) async fn open_backend(url: &str, tls: Option<PgTls>) -> Result<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres(Box::new(
            postgres::PgStore::connect_tls(url, tls).await?,
        )))
    } else if tls.is_some() {
        Err(StoreError::Open(
            "a CA file is configured for the store but the URL is not PostgreSQL".into(),
        ))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url).to_owned();
        // Opening creates the file and migrates it: keep that disk work off the async threads.
        let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Open(format!("sqlite open task failed: {e}")))??;
        Ok(Backend::Sqlite(store))
    }
}
