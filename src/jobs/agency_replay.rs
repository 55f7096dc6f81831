//! Replaying what a push subscription missed: its route's open dead letters since a time,
//! re-published oldest first. Used by `gateway agencies replay` and by the ops API
//! (`POST /api/v1/subscriptions/{name}/replay`), which runs it in the background and reports
//! its progress on the subscription's state.
//!
//! # Invariants
//! - Oldest first (by dead-letter time, then id), so per dossier the versions go back in
//!   order; the runtime still supersedes an older version arriving after a newer one.
//! - Each letter goes through [`crate::runtime::replay`]: re-published with a publisher
//!   confirm, then marked replayed with the caller's name; one already settled (replayed or
//!   dropped meanwhile, by anyone) is counted, never sent twice.
//! - A replay of a disabled subscription is refused by the callers (it would be dead-lettered
//!   again at once).

use std::sync::Arc;

use gw_broker::Broker;
use gw_store::Store;

use crate::connectors::agency::state::{ReplayProgress, SubscriptionState};
use crate::model::time::now_ms;

/// What [`replay_since`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCount {
    /// Open dead letters of the subscription since the time.
    pub found: usize,
    /// Re-published to the subscription's queue.
    pub replayed: usize,
    /// Settled meanwhile by someone else.
    pub already_settled: usize,
}

/// The open dead letters of a push subscription's route dead-lettered at or after
/// `since_ms`, oldest first.
pub async fn missed_since(
    store: &dyn Store,
    subscription: &str,
    since_ms: i64,
) -> Result<Vec<gw_store::NewDeadLetter>, gw_store::StoreError> {
    let mut letters = store
        .dead_letters(&gw_store::DeadLetterFilter {
            route: Some(crate::agencies::push_route_name(subscription)),
            key: None,
            state: Some(gw_store::DeadLetterState::Open),
            limit: 0,
        })
        .await?
        .into_iter()
        .map(|d| d.letter)
        .filter(|l| l.dead_at_ms >= since_ms)
        .collect::<Vec<_>>();
    letters.sort_by(|a, b| (a.dead_at_ms, &a.id).cmp(&(b.dead_at_ms, &b.id)));
    Ok(letters)
}

async fn replay_letters(
    broker: &dyn Broker,
    store: &dyn Store,
    letters: &[gw_store::NewDeadLetter],
    who: &str,
    mut progress: impl FnMut(&ReplayCount, usize),
) -> Result<ReplayCount, crate::runtime::ReplayError> {
    let mut count = ReplayCount {
        found: letters.len(),
        ..Default::default()
    };
    for (i, l) in letters.iter().enumerate() {
        match crate::runtime::replay(broker, store, &l.id, who).await? {
            crate::runtime::ReplayResult::Replayed => count.replayed += 1,
            _ => count.already_settled += 1,
        }
        progress(&count, i + 1);
    }
    Ok(count)
}

/// Replay what a push subscription missed: every open dead letter of its route dead-lettered
/// at or after `since_ms` (while it was disabled, or after its retries ran out), oldest first.
/// `progress(done, total)` is called after each.
pub async fn replay_since(
    broker: &dyn Broker,
    store: &dyn Store,
    subscription: &str,
    since_ms: i64,
    who: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReplayCount, crate::runtime::ReplayError> {
    let letters = missed_since(store, subscription, since_ms).await?;
    let total = letters.len();
    replay_letters(broker, store, &letters, who, |_, done| {
        progress(done, total)
    })
    .await
}

/// Start a replay in the background: lists what was missed now (the answer: how many), then
/// re-publishes them while `state.replay` shows the progress (`running`, then `done` or
/// `failed` with the reason). Refused while another replay of it runs here.
pub async fn start(
    state: Arc<SubscriptionState>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    since_ms: i64,
    by: &str,
) -> Result<ReplayProgress, StartError> {
    let letters = missed_since(store.as_ref(), &state.name, since_ms).await?;
    let progress = ReplayProgress {
        state: "running".into(),
        since_ms,
        by: by.into(),
        started_ms: now_ms(),
        found: letters.len(),
        ..Default::default()
    };
    {
        let mut r = state.replay.lock().unwrap_or_else(|p| p.into_inner());
        if r.as_ref().is_some_and(|p| p.state == "running") {
            return Err(StartError::Running);
        }
        *r = Some(progress.clone());
    }
    let by = by.to_string();
    tokio::spawn(async move {
        let set = |f: &dyn Fn(&mut ReplayProgress)| {
            if let Some(p) = state
                .replay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                f(p)
            }
        };
        let result = replay_letters(broker.as_ref(), store.as_ref(), &letters, &by, |c, done| {
            set(&|p| {
                p.done = done;
                p.replayed = c.replayed;
                p.already_settled = c.already_settled;
            })
        })
        .await;
        match result {
            Ok(c) => {
                tracing::info!(subscription = %state.name, by = %by, replayed = c.replayed, already_settled = c.already_settled, "subscription replay done");
                set(&|p| p.state = "done".into());
            }
            Err(e) => {
                tracing::warn!(subscription = %state.name, error = %e, "subscription replay failed; what was not replayed is still open");
                let why = e.to_string();
                set(&|p| {
                    p.state = "failed".into();
                    p.error = Some(why.clone());
                });
            }
        }
    });
    Ok(progress)
}

/// Why a background replay did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a replay of this subscription is already running")]
    Running,
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
}
