//! Replaying a dead letter: the one way an operator sends a message again.
//!
//! # Invariants
//! - The original envelope is re-published (confirmed) to the queue it died on, with
//!   [`HDR_REPLAY_OF`] naming the dead letter, *then* the dead letter is marked replayed. A crash
//!   in between leaves it open (replay again; the ledger recognises the duplicate): never
//!   marked replayed but not queued.
//! - A replay is a new delivery with its own ledger id (`<envelope id>/replay/<dead letter>`),
//!   so its own duplicates are still recognised.
//! - Only an open dead letter is replayed; one already replayed or dropped is left as it is.

use gw_broker::{Broker, Message};
use gw_store::{Settled, Store};

use super::route::HDR_REPLAY_OF;
use crate::model::time::now_ms;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the dead letter or marking it replayed failed.
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
    /// The broker did not confirm the re-publish (the dead letter stays open).
    #[error("broker: {0}")]
    Broker(#[from] gw_broker::BrokerError),
}

/// What a replay did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayResult {
    /// Re-published to its route queue and marked replayed.
    Replayed,
    /// It was already replayed or dropped: nothing done.
    AlreadySettled(String),
    NotFound,
}

/// Replay one dead letter: publish the original envelope (confirmed), then mark it replayed
/// by `who`. Publishing first means a crash in between leaves it open (replay again; the
/// ledger recognises the duplicate), never marked replayed but not queued.
pub async fn replay(
    broker: &dyn Broker,
    store: &dyn Store,
    id: &str,
    who: &str,
) -> Result<ReplayResult, ReplayError> {
    let Some(dl) = store.dead_letter(id).await? else {
        return Ok(ReplayResult::NotFound);
    };
    if dl.state != gw_store::DeadLetterState::Open {
        return Ok(ReplayResult::AlreadySettled(dl.state.as_str().into()));
    }
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(HDR_REPLAY_OF.to_string(), dl.letter.id.clone());
    let msg = Message {
        id: dl.letter.envelope_id.clone(),
        key: dl.letter.key.clone(),
        headers,
        attempt: 0,
        body: dl.letter.envelope.clone().into(),
    };
    broker.publish(&dl.letter.queue, msg).await?;
    match store.mark_replayed(id, who, now_ms()).await? {
        Settled::Changed(_) => Ok(ReplayResult::Replayed),
        Settled::AlreadySettled(d) => Ok(ReplayResult::AlreadySettled(d.state.as_str().into())),
        Settled::NotFound => Ok(ReplayResult::NotFound),
    }
}
