//! The evidence log's singleton jobs: time-stamping the chain (`[evidence.tsa]`) and hourly
//! retention (`evidence.retention`).
//!
//! # Invariants
//! - Each runs under its [`Singleton`] leadership: one instance stamps a chain, one prunes.
//! - Retention archives before it removes (see [`crate::evidence::retention`]); a failed run
//!   is retried an hour later and removes nothing.
//! - The first retention run waits a minute after start, out of the start-up's way.

use super::{Singleton, EVIDENCE_RETENTION, EVIDENCE_TIMESTAMP};
use crate::evidence::tsa::{self, Stamper, TsaError};

/// Start the evidence log's background tasks: time-stamping (`[evidence.tsa]`) and hourly
/// retention (`evidence.retention`).
pub fn spawn(
    loaded: &crate::config::Loaded,
    engine: &crate::runtime::Engine,
    cancel: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), TsaError> {
    spawn_timestamping(loaded, engine, cancel, tasks)?;
    let ev = &loaded.config.evidence;
    if let Some(keep) = ev.retention {
        let dir = ev
            .archive_dir
            .as_ref()
            .map(|d| loaded.base.join(d))
            .unwrap_or_else(|| loaded.data_dir().join("evidence-archive"));
        let (store, cancel) = (engine.store.clone(), cancel.clone());
        let lead =
            Singleton::for_engine(EVIDENCE_RETENTION, engine, &loaded.config.gateway.instance);
        tasks.spawn(async move {
            // First a minute after start (not in the middle of start-up), then hourly.
            let mut wait = std::time::Duration::from_secs(60);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = std::time::Duration::from_secs(3600);
                let cutoff = crate::model::time::now_ms() - keep.0.as_millis() as i64;
                match lead
                    .tick(|| crate::evidence::retention::prune(store.as_ref(), &dir, cutoff))
                    .await
                {
                    None | Some(Ok(0)) => {}
                    Some(Ok(n)) => {
                        tracing::info!(records = n, "evidence retention: archived and removed")
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "evidence retention failed; retrying in an hour")
                    }
                }
            }
            lead.step_down().await;
        });
    }
    Ok(())
}

/// Start the time-stamping task when `[evidence.tsa]` is configured.
fn spawn_timestamping(
    loaded: &crate::config::Loaded,
    engine: &crate::runtime::Engine,
    cancel: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), TsaError> {
    let c = &loaded.config;
    let Some(t) = &c.evidence.tsa else {
        return Ok(());
    };
    let chain = c
        .evidence
        .chain
        .clone()
        .unwrap_or_else(|| c.gateway.instance.clone());
    let stamper = Stamper::new(
        engine.store.clone(),
        &chain,
        t,
        tsa::trust(t, &loaded.base)?,
    )?;
    // One stamper per chain across instances (a chain shared by several instances is
    // stamped by its leader only).
    let lead = Singleton::for_engine(EVIDENCE_TIMESTAMP, engine, &c.gateway.instance)
        .with_key(format!("{}/{chain}", EVIDENCE_TIMESTAMP));
    tasks.spawn(stamp(stamper, lead, cancel.clone()));
    Ok(())
}

/// Poll until cancelled; only the instance leading the chain's time-stamping polls.
async fn stamp(mut stamper: Stamper, lead: Singleton, cancel: tokio_util::sync::CancellationToken) {
    let tick = stamper.tick();
    let mut streak = 0u64;
    loop {
        if let Some(polled) = lead.tick(|| stamper.poll()).await {
            stamper.observe(&polled, &mut streak);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
