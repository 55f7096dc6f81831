//! `gateway agencies`: list subscriptions, print one's JSON Schema, enable a disabled one,
//! replay what one missed; `gateway schema KIND`: an event kind's schema.
//!
//! # Invariants
//! - `enable` only removes the disabled state (`<data_dir>/agencies/NAME.disabled`); it never
//!   replays by itself, it prints how many deliveries were dead-lettered since the disabling
//!   and the `replay` command that sends them.
//! - `replay` re-publishes open dead letters of the subscription's route, oldest first, each
//!   recorded with `--by` (idempotent: a letter already replayed is not sent twice).

use std::process::ExitCode;

use super::args::AgenciesAction;
use crate::agencies::{schema, Delivery, Subscription};
use crate::app;
use crate::config::Loaded;
use crate::connectors::agency::state;
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
    #[error("cannot change the disabled state: {detail}")]
    State { detail: String },
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
    if let Ok(d) = crate::config::parse_duration(text) {
        return Ok(now - d.as_millis() as i64);
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| AgenciesError::Since { text: text.into() })
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
            for s in &subs {
                let st = match (s.delivery, state::read_disabled(data_dir, &s.name)) {
                    (Delivery::Push, Some(d)) => {
                        format!("DISABLED ({}) since {}", d.reason, d.since_ms)
                    }
                    _ => "enabled".into(),
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
            let was = state::enable(data_dir, &subscription).map_err(|e| AgenciesError::State {
                detail: e.to_string(),
            })?;
            let Some(was) = was else {
                println!("{subscription} was not disabled");
                return Ok(ExitCode::SUCCESS);
            };
            let (_broker, store) = app::open_backends(l).await?;
            let missed = store
                .dead_letters(&gw_store::DeadLetterFilter {
                    route: Some(app::agencies::route_name(&subscription)),
                    key: None,
                    state: Some(gw_store::DeadLetterState::Open),
                    limit: 0,
                })
                .await?
                .into_iter()
                .filter(|d| d.letter.dead_at_ms >= was.since_ms)
                .count();
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
            if state::read_disabled(data_dir, &subscription).is_some() {
                eprintln!("{subscription} is disabled: enable it first (gateway agencies enable {subscription})");
                return Ok(ExitCode::from(2));
            }
            let (broker, store) = app::open_backends(l).await?;
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
