//! `[store]`: PostgreSQL, or SQLite under `data_dir`.

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
    }
}
