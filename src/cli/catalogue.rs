//! `gateway catalogue sync`: one run of the catalogue job over the configured broker and store
//! (the running gateway, or the next start, delivers what it published).
//!
//! # Invariants
//! - The same job as the running gateway's (`jobs::catalogue::CatalogueSync::run_once`): the
//!   same state file, so a run by hand and the periodic one never publish a change twice.
//! - Each failing step is its own [`CatalogueCmdError`] variant; the command prints it.

use crate::app::{self, AppError};
use crate::config::Loaded;
use crate::jobs::catalogue::{CatalogueSync, Summary};
use crate::jobs::JobError;

/// Why `gateway catalogue sync` did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueCmdError {
    #[error("{0}:catalogue: no [catalogue] section: add one with from = \"<dvcqg adapter>\"")]
    NoSection(String),
    /// The job's own set-up or run failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The broker, the store or the engine could not be opened.
    #[error(transparent)]
    Backends(#[from] AppError),
    /// The route queues could not be declared.
    #[error(transparent)]
    Declare(#[from] gw_broker::BrokerError),
}

/// One run: added, changed, removed and unchanged procedures.
pub async fn sync(loaded: &Loaded) -> Result<Summary, CatalogueCmdError> {
    let Some(job) = CatalogueSync::from_config(loaded)? else {
        return Err(CatalogueCmdError::NoSection(loaded.origin.clone()));
    };
    let (broker, store) = app::open_backends(loaded).await?;
    let metrics = std::sync::Arc::new(crate::telemetry::metrics::Metrics::new());
    let engine = app::build_engine(loaded, broker.clone(), store, metrics)?;
    let declared = engine.declare().await;
    let result = match declared {
        Ok(()) => job.run_once(&engine).await.map_err(CatalogueCmdError::from),
        Err(e) => Err(e.into()),
    };
    broker.close().await;
    result
}
