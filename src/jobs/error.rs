//! Why a portal job ([`super::catalogue`], [`super::online`]) failed, by step. Both jobs read and
//! write a JSON state file, build a `dvcqg` connector, fetch one list from the portal's sharing
//! endpoint and publish each new item, so they share one enum.

use std::path::PathBuf;

use crate::connectors::dvcqg::SharingError;
use crate::connectors::ConnectorError;
use crate::signing::SigningError;

/// A failing step of a catalogue sync or an online-dossier poll; the message names the file,
/// the configuration key or the portal operation.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The state file exists but cannot be read.
    #[error("{}: cannot read: {error}", path.display())]
    ReadState {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The state file is not JSON of the expected shape.
    #[error(
        "{}: not a state file the gateway wrote ({error}): move it away to start afresh",
        path.display()
    )]
    BadState {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// The state file's folder cannot be created.
    #[error("{}: cannot create: {error}", dir.display())]
    CreateDir { dir: PathBuf, error: std::io::Error },
    /// The state file cannot be written (temporary file, fsync or rename).
    #[error("{}: cannot write: {error}", path.display())]
    WriteState {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `<key>` (`catalogue.from`, `online.from`) names no adapter.
    #[error("{key}: no adapter named `{adapter}`")]
    NoAdapter { key: &'static str, adapter: String },
    /// The adapter's signing profile cannot be loaded.
    #[error("{key}: {error}")]
    Signing {
        key: &'static str,
        error: SigningError,
    },
    /// The `dvcqg` connector cannot be built from the adapter's settings.
    #[error("{key}: {error}")]
    Connector {
        key: &'static str,
        error: ConnectorError,
    },
    /// The sharing call gave no result.
    #[error(transparent)]
    Fetch(#[from] SharingError),
    /// The call's `result` is not a list.
    #[error("{service}: the result is not a list")]
    NotAList { service: String },
    /// An item of the list lacks its code (or cursor) field.
    #[error("{service}: result[{index}] has no {field}")]
    MissingField {
        service: String,
        index: usize,
        field: String,
    },
    /// An event could not be published (the broker refused or did not confirm it).
    #[error("publishing {kind} {code}: {error}")]
    Publish {
        kind: String,
        code: String,
        error: gw_broker::BrokerError,
    },
}
