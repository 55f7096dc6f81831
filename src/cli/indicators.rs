//! `gateway indicators …`: the service-quality index from the command line.
//!
//! - `rebuild`: fold the indicator journal again into every dossier's state (a progress bar on
//!   standard error); safe while the gateway runs (a state it changes meanwhile is kept).
//! - `report --period 2026-11 [--level province|unit|procedure] [--format json|csv]`: the
//!   period's figures on standard output (the month's report a province files).
//! - `at-risk [--days N]`: open dossiers due within N working days, per unit.
//!
//! Exit codes as every command: 0 done, 1 the store failed, 2 a wrong argument or config.

use std::process::ExitCode;

use crate::config::Loaded;
use crate::indicators::history;
use crate::indicators::Level;
use crate::jobs::indicators::{month_of, Wired};
use crate::model::time::now_ms;

/// What `gateway indicators` was asked.
#[derive(Debug, Clone)]
pub struct Ask {
    pub action: String,
    pub period: Option<String>,
    pub level: String,
    pub format: String,
    pub days: Option<u32>,
}

/// Prints the error and exits 1.
fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

async fn open(loaded: &Loaded) -> Result<Wired, ExitCode> {
    let Some(section) = &loaded.config.indicators else {
        eprintln!("{}: no [indicators] section", loaded.origin);
        return Err(ExitCode::from(2));
    };
    let url = loaded.store_url().map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    let tls = crate::app::store_tls(loaded).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    Wired::open(section, &url, tls).await.map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

/// Run one `gateway indicators` action.
pub async fn run(loaded: Loaded, ask: Ask) -> ExitCode {
    let level = match Level::parse(&ask.level) {
        Some(l) => l,
        None => {
            eprintln!("--level must be province, unit or procedure");
            return ExitCode::from(2);
        }
    };
    if !matches!(ask.format.as_str(), "json" | "csv") {
        eprintln!("--format must be json or csv");
        return ExitCode::from(2);
    }
    if !matches!(ask.action.as_str(), "rebuild" | "report" | "at-risk") {
        eprintln!(
            "unknown indicators action `{}`: use rebuild, report or at-risk",
            ask.action
        );
        return ExitCode::from(2);
    }
    let ix = match open(&loaded).await {
        Ok(w) => w,
        Err(code) => return code,
    };
    match ask.action.as_str() {
        "rebuild" => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} journal entries ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let started = std::time::Instant::now();
            let done = history::rebuild(ix.store.as_ref(), |n, total| {
                bar.set_length(total);
                bar.set_position(n);
            })
            .await;
            bar.finish_and_clear();
            match done {
                Ok(r) => {
                    println!(
                        "rebuilt {} dossiers from {} journal entries in {:.1} s ({} states written)",
                        r.dossiers,
                        r.entries,
                        started.elapsed().as_secs_f64(),
                        r.written
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        "report" => {
            let now = now_ms();
            let period = ask.period.unwrap_or_else(|| month_of(now));
            match history::report(
                ix.store.as_ref(),
                &ix.rules,
                &period,
                level,
                now,
                &ix.synced_to,
            )
            .await
            {
                Ok(r) if ask.format == "csv" => {
                    print!("{}", history::to_csv(&r));
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&r).expect("a report serializes")
                    );
                    ExitCode::SUCCESS
                }
                Err(history::ReportError::Period(e)) => {
                    eprintln!("--period: {e}");
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
        _ => {
            let days = ask.days.unwrap_or(ix.at_risk_days);
            match history::at_risk(ix.store.as_ref(), &ix.rules, now_ms(), days).await {
                Ok(units) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"days": days, "units": units})
                        )
                        .expect("serializes")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
    }
}
