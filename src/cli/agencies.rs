//! `gateway agencies`: list subscriptions, print one's JSON Schema, enable a disabled one,
//! replay what one missed; `gateway schema KIND`: an event kind's schema.
//!
//! # Invariants
//! - `list` reads the configuration and, for the push subscriptions' disabled state, the store
//!   alone (never the broker, so it runs beside a gateway on the embedded queue, which locks
//!   it), read only; a store it cannot open is said, and the configuration still listed.
//! - `enable` only clears the disabled state in the store (`gw_store::subscriptions`, shared by
//!   every instance on it: each sees it within a second) and publishes the one
//!   `subscription.enabled` event (through an engine of the configuration, to the routes that
//!   take it); it never replays by itself, it prints how many deliveries were dead-lettered
//!   since the disabling and the `replay` command that sends them.
//! - `replay` re-publishes open dead letters of the subscription's route, oldest first, each
//!   recorded with `--by` (idempotent: a letter already replayed is not sent twice).

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::args::AgenciesAction;
use crate::agencies::{schema, Delivery, Subscription};
use crate::app;
use crate::config::Loaded;
use crate::connectors::agency::state::legacy_disabled_path;
use crate::connectors::agency::Disabled;
use crate::model::time::now_ms;

/// Why an agencies command failed.
#[derive(Debug, thiserror::Error)]
pub enum AgenciesError {
    #[error(transparent)]
    Subscription(#[from] crate::agencies::SubscriptionError),
    #[error("no subscription named `{name}`")]
    Unknown { name: String },
    #[error(
        "subscription `{name}` is a pull feed: nothing is pushed, nothing to enable or replay"
    )]
    NotPush { name: String },
    #[error("--since `{text}`: give an RFC 3339 time or a duration such as 2h or 3d")]
    Since { text: String },
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error(transparent)]
    Replay(#[from] crate::runtime::ReplayError),
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
}

/// `gateway schema KIND`: the kind's schema on stdout; exit 2 for a kind the gateway does not
/// know.
pub fn kind_schema(kind: &str) -> ExitCode {
    match schema::kind_schema(kind) {
        Ok(s) => {
            print!("{}", schema::render(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gateway schema: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--since`: RFC 3339, or a duration before now.
pub fn parse_since(text: &str, now: i64) -> Result<i64, AgenciesError> {
    crate::agencies::parse_since(text, now)
        .ok_or_else(|| AgenciesError::Since { text: text.into() })
}

fn push_subscription(l: &Loaded, name: &str) -> Result<Subscription, AgenciesError> {
    let s = Subscription::all(&l.config)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| AgenciesError::Unknown { name: name.into() })?;
    if s.delivery != Delivery::Push {
        return Err(AgenciesError::NotPush { name: name.into() });
    }
    Ok(s)
}

pub async fn agencies(l: &Loaded, action: AgenciesAction) -> Result<ExitCode, AgenciesError> {
    let data_dir = &l.config.gateway.data_dir;
    match action {
        AgenciesAction::List => {
            let subs = Subscription::all(&l.config)?;
            let states = if subs.iter().any(|s| s.delivery == Delivery::Push) {
                disabled_states(l).await
            } else {
                Ok(BTreeMap::new())
            };
            for s in &subs {
                let st = match (s.delivery, &states) {
                    (Delivery::Pull, _) => "enabled".to_string(),
                    (Delivery::Push, Err(_)) => "state unknown".to_string(),
                    (Delivery::Push, Ok(known)) => match known.get(&s.name) {
                        Some(d) => format!("DISABLED ({}) since {}", d.reason, d.since_ms),
                        None if legacy_disabled_path(data_dir, &s.name).exists() => {
                            "DISABLED (legacy file, adopted into the store at the next start)"
                                .to_string()
                        }
                        None => "enabled".to_string(),
                    },
                };
                println!("{}  {} [{}] {}", s.name, s.agency, s.delivery.as_str(), st);
                println!("  kinds       {}", or_all(&s.filter.kinds));
                println!("  procedures  {}", or_all(&s.filter.procedures));
                println!("  units       {}", or_all(&s.filter.units));
                println!("  fields      {}", s.field_names().join(", "));
                if let Some(b) = &s.legal_basis {
                    println!("  legal basis {b}");
                }
            }
            println!("{} subscription(s)", subs.len());
            if let Err(e) = &states {
                println!(
                    "the disabled state is not shown: {e}; a running gateway shows it at GET /api/v1/subscriptions on its ops listener"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgenciesAction::Schema { subscription } => {
            let s = Subscription::all(&l.config)?
                .into_iter()
                .find(|s| s.name == subscription)
                .ok_or(AgenciesError::Unknown { name: subscription })?;
            print!("{}", schema::render(&schema::subscription_schema(&s)));
            Ok(ExitCode::SUCCESS)
        }
        AgenciesAction::Enable { subscription } => {
            push_subscription(l, &subscription)?;
            let (broker, store) = app::open_backends(l).await?;
            let states = store.clone().subscription_states();
            adopt(states.as_ref(), data_dir, &subscription).await?;
            // Through an engine of this configuration, so that the enabling is published as
            // the `subscription.enabled` event to the routes that take it, like the running
            // gateway's.
            let metrics = std::sync::Arc::new(crate::telemetry::metrics::Metrics::new());
            let engine = std::sync::Arc::new(app::build_engine(
                l,
                broker.clone(),
                store.clone(),
                metrics,
            )?);
            engine.declare().await.map_err(app::AppError::from)?;
            app::agencies::tell_changes(&engine);
            let state = engine
                .subscriptions
                .iter()
                .find(|s| s.name == subscription)
                .cloned()
                .ok_or_else(|| AgenciesError::Unknown {
                    name: subscription.clone(),
                })?;
            let was = state.enable().await?;
            let Some(was) = was else {
                println!("{subscription} was not disabled");
                broker.close().await;
                return Ok(ExitCode::SUCCESS);
            };
            let missed = crate::jobs::agency_replay::missed_since(
                store.as_ref(),
                &subscription,
                was.since_ms,
            )
            .await?
            .len();
            broker.close().await;
            println!(
                "{subscription} enabled (it was disabled: {}, since {}); {missed} delivery(ies) missed meanwhile",
                was.reason, was.since_ms
            );
            if missed > 0 {
                let since = time::OffsetDateTime::from_unix_timestamp_nanos(
                    was.since_ms as i128 * 1_000_000,
                )
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
                println!(
                    "replay them with: gateway agencies replay {subscription} --since {since}"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgenciesAction::Replay {
            subscription,
            since,
            by,
        } => {
            push_subscription(l, &subscription)?;
            let since_ms = parse_since(&since, now_ms())?;
            let (broker, store) = app::open_backends(l).await?;
            let states = store.clone().subscription_states();
            adopt(states.as_ref(), data_dir, &subscription).await?;
            if states
                .state(&subscription)
                .await?
                .is_some_and(|r| r.disabled.is_some())
            {
                eprintln!("{subscription} is disabled: enable it first (gateway agencies enable {subscription})");
                broker.close().await;
                return Ok(ExitCode::from(2));
            }
            let count = app::agencies::replay_since(
                broker.as_ref(),
                store.as_ref(),
                &subscription,
                since_ms,
                &by,
                |done, total| {
                    let width = 30;
                    let filled = (done * width).checked_div(total).unwrap_or(width);
                    eprint!(
                        "\r[{}{}] {done}/{total}",
                        "#".repeat(filled),
                        " ".repeat(width - filled)
                    );
                },
            )
            .await?;
            eprintln!();
            println!(
                "{subscription}: {} replayed, {} already settled, of {} dead-lettered since {since}",
                count.replayed, count.already_settled, count.found
            );
            broker.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The disabled push subscriptions, as the store holds them (by name). Only the store is opened
/// (never the broker: the embedded queue is locked by a running gateway; the SQLite store is
/// not, and PostgreSQL never is), read only: nothing is adopted or changed.
async fn disabled_states(l: &Loaded) -> Result<BTreeMap<String, Disabled>, AgenciesError> {
    let store = app::open_store(l).await?;
    let rows = store.subscription_states().states().await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.subscription, r.disabled?)))
        .collect())
}

/// A legacy disabled file (before the state moved to the store) is adopted before the state
/// is read or changed, so `enable` never leaves it to disable the subscription again later.
async fn adopt(
    states: &dyn gw_store::subscriptions::SubscriptionStates,
    data_dir: &std::path::Path,
    name: &str,
) -> Result<(), AgenciesError> {
    crate::connectors::agency::state::adopt_legacy_file(states, data_dir, name).await?;
    Ok(())
}

fn or_all(list: &[String]) -> String {
    if list.is_empty() {
        "all".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_ago() {
        assert_eq!(
            parse_since("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(
            parse_since("2026-12-06T08:00:00+07:00", 0).unwrap(),
            1_796_518_800_000
        );
        assert!(matches!(
            parse_since("yesterday", 0),
            Err(AgenciesError::Since { .. })
        ));
    }
}
