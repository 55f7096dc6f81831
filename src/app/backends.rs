//! TLS to the store, read from the configuration once per opening: the one function every
//! place that opens the store (the running gateway, its payment side, the commands that read the
//! store) calls, so that none of them reaches PostgreSQL in clear text when `[store] ca` is set.

use crate::config::Loaded;

/// TLS to PostgreSQL from `[store]` `ca`, `client_cert`, `client_key`: `None` without a CA.
pub fn store_tls(loaded: &Loaded) -> Result<Option<gw_store::PgTls>, gw_store::TlsError> {
    match loaded.store_tls_files() {
        Some(files) => Ok(Some(gw_store::PgTls::from_files(&files)?)),
        None => Ok(None),
    }
}
