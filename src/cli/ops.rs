//! Operator commands of the `gateway` binary: `trace` (a dossier's trail as a table),
//! `status` (routes, queue depths, open dead letters) and the bulk replay behind
//! `gateway dlq replay` (a progress bar; Ctrl-C stops after the current one).
//!
//! # Invariants
//! - These commands read the store and broker of a configuration directly, like `gateway dlq`.
//!   The embedded queue is locked by a running gateway: `status` then says so and shows what
//!   the store knows (the running gateway's `/api/v1/routes` has the depths).
//! - **An interrupted bulk replay is safe.** Ctrl-C is only looked at between two replays: the
//!   one in progress finishes (published, then marked replayed), the rest stay open, and the
//!   count of what was replayed is printed. Running it again continues where it stopped.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gw_broker::QueueSpec;
use gw_store::{DeadLetterFilter, DeadLetterState};

use crate::app::{self, AppError};
use crate::config::Loaded;
use crate::ops::api::{rfc3339, trail_events};
use crate::runtime::route_queue;
use crate::runtime::{self, ReplayResult};

async fn open_store(loaded: &Loaded) -> Result<Arc<dyn gw_store::Store>, AppError> {
    crate::app::open_store(loaded).await
}

/// `gateway trace DOSSIER`: every attempt and outcome of a dossier on every route.
pub async fn trace(loaded: &Loaded, code: &str) -> Result<ExitCode, AppError> {
    let store = open_store(loaded).await?;
    let (events, outcomes) = trail_events(store.as_ref(), code).await?;
    if events.is_empty() {
        println!("nothing recorded for {code}");
        return Ok(ExitCode::from(1));
    }
    println!(
        "{:<24}  {:<16}  {:<7}  {:<13}  {:>6}  {:<20}  {:>3}  {:>8}  digest / detail",
        "at (UTC)", "route", "event", "result", "status", "reason", "try", "latency"
    );
    for e in &events {
        let status = e
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let latency = e
            .latency_ms
            .map(|l| format!("{l} ms"))
            .unwrap_or_else(|| "-".into());
        let attempt = e.attempt.map(|a| a.to_string()).unwrap_or_default();
        let tail = e
            .digest
            .clone()
            .or_else(|| e.detail.clone())
            .unwrap_or_default();
        println!(
            "{:<24}  {:<16}  {:<7}  {:<13}  {:>6}  {:<20}  {:>3}  {:>8}  {}",
            e.at, e.route, e.event, e.result, status, e.reason, attempt, latency, tail
        );
    }
    let dls = store
        .dead_letters(&DeadLetterFilter {
            key: Some(code.to_string()),
            ..Default::default()
        })
        .await?;
    for d in &dls {
        println!(
            "dead letter {} on {}: {} ({}{})",
            d.letter.id,
            d.letter.route,
            d.letter.reason,
            d.state.as_str(),
            d.settled_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        );
    }
    println!(
        "{} event(s), {} outcome(s), {} dead letter(s)",
        events.len(),
        outcomes.len(),
        dls.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `gateway status`: routes, queue depths and open dead letters.
pub async fn status(loaded: &Loaded) -> Result<ExitCode, AppError> {
    let c = &loaded.config;
    let store = open_store(loaded).await?;
    let broker = match loaded
        .broker_url()
        .map_err(|e| AppError::Config(e.to_string()))
    {
        Ok(url) => match gw_broker::open(&url, &c.gateway.instance).await {
            Ok(b) => Some(b),
            Err(e) => {
                println!("queue depths unavailable: {e}");
                println!("  (the embedded queue is locked by a running gateway: its /api/v1/routes shows them)");
                None
            }
        },
        Err(e) => return Err(e),
    };
    if let Some(b) = &broker {
        // Declaring is idempotent; the embedded queue only reports declared queues.
        let specs: Vec<QueueSpec> = c
            .routes
            .iter()
            .flat_map(|r| (0..c.broker.partitions).map(move |p| route_queue(&r.name, p)))
            .map(|name| QueueSpec {
                name,
                delivery_limit: c.broker.delivery_limit,
            })
            .collect();
        b.declare(&specs).await?;
    }
    println!(
        "store {} ({}), broker {}",
        store.kind(),
        if store.ready().await {
            "ready"
        } else {
            "NOT READY"
        },
        broker
            .as_ref()
            .map(|b| b.kind().to_string())
            .unwrap_or_else(|| "unavailable".into())
    );
    println!(
        "{:<20}  {:<14}  {:<16}  {:>8}  {:>8}  {:>8}  {:>8}",
        "route", "from", "adapter", "ready", "unacked", "delayed", "dead"
    );
    for r in &c.routes {
        let (mut ready, mut unacked, mut delayed) = (0u64, 0u64, None::<u64>);
        if let Some(b) = &broker {
            for p in 0..c.broker.partitions {
                if let Ok(s) = b.stats(&route_queue(&r.name, p)).await {
                    ready += s.ready;
                    unacked += s.unacked;
                    if let Some(d) = s.delayed {
                        delayed = Some(delayed.unwrap_or(0) + d);
                    }
                }
            }
        }
        let open = store
            .dead_letters(&DeadLetterFilter {
                route: Some(r.name.clone()),
                state: Some(DeadLetterState::Open),
                ..Default::default()
            })
            .await?
            .len();
        let show = |v: Option<u64>| match (&broker, v) {
            (None, _) | (_, None) => "-".to_string(),
            (_, Some(v)) => v.to_string(),
        };
        println!(
            "{:<20}  {:<14}  {:<16}  {:>8}  {:>8}  {:>8}  {:>8}",
            r.name,
            r.from,
            r.to,
            show(Some(ready)),
            show(Some(unacked)),
            show(delayed),
            open
        );
    }
    println!("open dead letters: {}", store.open_dead_letters().await?);
    if let Some(b) = broker {
        b.close().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `gateway dlq replay`: replay the given ids, or every open dead letter of `route` with
/// `all`, with a progress bar; Ctrl-C stops after the replay in progress.
pub async fn replay(
    loaded: &Loaded,
    ids: Vec<String>,
    all: bool,
    route: Option<String>,
    by: &str,
) -> Result<ExitCode, AppError> {
    let (broker, store) = app::open_backends(loaded).await?;
    let ids = if all {
        store
            .dead_letters(&DeadLetterFilter {
                route,
                key: None,
                state: Some(DeadLetterState::Open),
                limit: 0,
            })
            .await?
            .into_iter()
            .map(|d| d.letter.id)
            .collect()
    } else {
        ids
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Registered here, before anything is replayed (a spawned `ctrl_c()` would only register
    // when first polled): from now on Ctrl-C only raises the flag.
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Some(sig) = interrupt.as_mut() {
                if sig.recv().await.is_some() {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        })
    };
    let total = ids.len();
    println!("replaying {total} dead letter(s) as {by}; Ctrl-C stops after the current one");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {pos}/{len} ({eta} left) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let (mut replayed, mut already, mut missing) = (0usize, 0usize, 0usize);
    let mut interrupted = false;
    let mut failure = None;
    for id in &ids {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        match runtime::replay(broker.as_ref(), store.as_ref(), id, by).await {
            Ok(ReplayResult::Replayed) => replayed += 1,
            Ok(ReplayResult::AlreadySettled(s)) => {
                already += 1;
                bar.println(format!("{id}: already {s}, nothing done"));
            }
            Ok(ReplayResult::NotFound) => {
                missing += 1;
                bar.println(format!("{id}: not found"));
            }
            Err(e) => {
                // Published or not, it is still open: a rerun replays it (the ledger
                // recognises a duplicate).
                failure = Some(format!("{id}: {e}"));
                break;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    watcher.abort();
    broker.close().await;
    let at = rfc3339(crate::model::time::now_ms());
    if interrupted {
        println!(
            "interrupted at {at}: replayed {replayed} of {total}; {} left open (run again to continue)",
            total - replayed - already - missing
        );
        return Ok(ExitCode::from(130));
    }
    if let Some(f) = failure {
        eprintln!("stopped on an error: {f}");
        println!("replayed {replayed} of {total} before the error");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "replayed {replayed} of {total} by {by}{}{}",
        if already > 0 {
            format!("; {already} already settled")
        } else {
            String::new()
        },
        if missing > 0 {
            format!("; {missing} not found")
        } else {
            String::new()
        }
    );
    Ok(if missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
