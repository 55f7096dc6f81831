//! Why a connector cannot be built (all found at start, never while running).
//!
//! # Invariants
//! - One variant per failing step: the kind is unknown, the HTTP client cannot be built, a
//!   connector's own settings are wrong. No secret appears in a message.

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("adapter {0}: unknown connector kind `{1}`")]
    UnknownKind(String, String),
    #[error(transparent)]
    Client(#[from] crate::transport::client::ClientError),
    #[error("adapter {adapter}: {source}")]
    Dvcqg {
        adapter: String,
        #[source]
        source: crate::connectors::dvcqg::settings::SettingsError,
    },
    #[error("adapter {adapter}: {source}")]
    Axis {
        adapter: String,
        #[source]
        source: crate::connectors::axis::settings::SettingsError,
    },
}
