//! `gateway dlq`: list, show, replay and drop dead letters over the configured store.
//!
//! # Invariants
//! - Every change is recorded with who made it (`--by`, default `$USER`); replay and drop of a
//!   letter already settled change nothing and say so.
//! - Replay goes through [`super::ops::replay`], which opens its own backends (the embedded
//!   queue allows one opener), so this file closes its own first.

use std::process::ExitCode;

use crate::app;
use crate::config::Loaded;
use crate::model::time::now_ms;

use super::args::DlqAction;

pub async fn dlq(loaded: &Loaded, action: DlqAction) -> Result<ExitCode, app::AppError> {
    let (broker, store) = app::open_backends(loaded).await?;
    let result = match action {
        DlqAction::List {
            route,
            key,
            state,
            limit,
        } => {
            let state = match state.as_str() {
                "all" => None,
                s => match gw_store::DeadLetterState::parse(s) {
                    Some(s) => Some(s),
                    None => {
                        eprintln!("--state {s}: use open, replayed, dropped or all");
                        return Ok(ExitCode::from(2));
                    }
                },
            };
            let list = store
                .dead_letters(&gw_store::DeadLetterFilter {
                    route,
                    key,
                    state,
                    limit,
                })
                .await?;
            println!(
                "{:<36}  {:<16}  {:<28}  {:>8}  {:<9}  reason",
                "id", "route", "key", "attempts", "state"
            );
            for d in &list {
                println!(
                    "{:<36}  {:<16}  {:<28}  {:>8}  {:<9}  {}",
                    d.letter.id,
                    d.letter.route,
                    d.letter.key,
                    d.letter.attempts,
                    d.state.as_str(),
                    d.letter.reason
                );
            }
            println!("{} dead letter(s)", list.len());
            ExitCode::SUCCESS
        }
        DlqAction::Show { id } => match store.dead_letter(&id).await? {
            Some(d) => {
                let envelope = String::from_utf8_lossy(&d.letter.envelope).into_owned();
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["envelope"] =
                    serde_json::from_str(&envelope).unwrap_or(serde_json::Value::String(envelope));
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no dead letter {id}");
                ExitCode::from(1)
            }
        },
        DlqAction::Replay {
            ids,
            all,
            route,
            by,
        } => {
            // The bulk replay opens its own backends (the embedded queue allows one opener).
            broker.close().await;
            drop((broker, store));
            return crate::cli::ops::replay(loaded, ids, all, route, &by).await;
        }
        DlqAction::Drop { ids, by } => {
            let mut failed = 0;
            for id in &ids {
                match store.mark_dropped(id, &by, now_ms()).await? {
                    gw_store::Settled::Changed(_) => println!("{id}: dropped"),
                    gw_store::Settled::AlreadySettled(d) => {
                        println!("{id}: already {}, nothing done", d.state.as_str())
                    }
                    gw_store::Settled::NotFound => {
                        failed += 1;
                        println!("{id}: not found")
                    }
                }
            }
            if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    broker.close().await;
    Ok(result)
}
