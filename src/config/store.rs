//! `[store]`: PostgreSQL, or SQLite under `data_dir`.

use std::path::PathBuf;

use gw_store::tls::SslMode;
use serde::Deserialize;

use super::secrets::{url_has_password, SecretRef};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoreSection {
    /// `postgres://user@host/db` for PostgreSQL (password by `password`); absent = SQLite file
    /// `store.db` under `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL password, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// CA certificate(s), PEM: TLS to PostgreSQL with verify-full semantics (the server's
    /// certificate must chain to one of them and name the URL's host). Relative to the file.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM chain) presented to PostgreSQL; with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Key of `client_cert` (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// Check `store.url` (its form; no password in it).
pub(super) fn validate(s: &StoreSection, p: &mut impl FnMut(String, String, &str)) {
    if let Some(url) = &s.url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            p(
                "store.url".into(),
                format!("`{url}` is not a PostgreSQL URL"),
                "write postgres://user@host/db, or remove it to use SQLite",
            );
        }
        if url_has_password(url) {
            p(
                "store.url".into(),
                "the URL contains a password".into(),
                "move it to store.password = { env = \"NAME\" }",
            );
        }
        let (mode, raw) = SslMode::of_url(url);
        let raw = raw.unwrap_or_default();
        match (mode, s.ca.is_some()) {
            (SslMode::Weak, _) => p(
                "store.url".into(),
                format!("sslmode={raw} does not check that the server is the one in the URL"),
                "write sslmode=verify-full and set store.ca = \"/path/to/db-ca.pem\"",
            ),
            (SslMode::VerifyFull, false) => p(
                "store.url".into(),
                "sslmode=verify-full needs the CA the server's certificate chains to".into(),
                "set store.ca = \"/path/to/db-ca.pem\"",
            ),
            (SslMode::Disable | SslMode::Opportunistic, true) => p(
                "store.url".into(),
                format!("sslmode={raw} contradicts store.ca"),
                "write sslmode=verify-full (or leave sslmode out), or remove store.ca",
            ),
            _ => {}
        }
    } else if s.ca.is_some() || s.client_cert.is_some() || s.client_key.is_some() {
        p(
            "store.ca".into(),
            "TLS files are set but the store is SQLite (no store.url)".into(),
            "set store.url = \"postgres://…\", or remove store.ca/client_cert/client_key",
        );
    }
    if s.client_cert.is_some() != s.client_key.is_some() {
        p(
            "store.client_cert".into(),
            "a client certificate needs its key, and a key its certificate".into(),
            "set both store.client_cert and store.client_key, or neither",
        );
    }
    if s.url.is_some() && s.ca.is_none() && s.client_cert.is_some() {
        p(
            "store.client_cert".into(),
            "a client certificate is only sent over TLS".into(),
            "set store.ca (TLS with verify-full) too",
        );
    }
}

/// Whether the store's connection is clear text (a PostgreSQL URL without TLS).
pub(super) fn plain_text(s: &StoreSection) -> bool {
    s.url
        .as_deref()
        .is_some_and(|u| SslMode::of_url(u).0.is_plain(s.ca.is_some()))
}
