//! `gateway indicators …`: the service-quality index from the command line.
//!
//! - `rebuild`: fold the indicator journal again into every dossier's state (a progress bar on
//!   standard error); safe while the gateway runs (a state it changes meanwhile is kept).
//! - `report --period 2026-11 [--level province|unit|procedure] [--format json|csv]`: the
//!   period's figures on standard output (the month's report a province files).
//! - `report --period 2026-11 --format pdf --out FILE [--font TTF]`: the same month as a PDF
//!   (every unit's indicators in a table, the province's last 12 months in charts).
//! - `at-risk [--days N]`: open dossiers due within N working days, per unit.
//! - `lowest [--period P] [--count N] [--min-dossiers N]`: the units with the lowest on-time
//!   rate among those with enough dossiers (`[indicators] lowest_min_dossiers`).
//!
//! Exit codes as every command: 0 done, 1 the store failed, 2 a wrong argument or config.

use std::process::ExitCode;

use crate::config::Loaded;
use crate::indicators::history;
use crate::indicators::{Level, Report};
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
    pub out: Option<std::path::PathBuf>,
    pub font: Option<std::path::PathBuf>,
    pub count: Option<usize>,
    pub min_dossiers: Option<u64>,
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
    let mut wired = Wired::open(section, &url, tls).await.map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })?;
    wired.rules = crate::indicators::live_rules_of(loaded).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    Ok(wired)
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
    if !matches!(ask.format.as_str(), "json" | "csv" | "pdf") {
        eprintln!("--format must be json, csv or pdf");
        return ExitCode::from(2);
    }
    if ask.format == "pdf" && ask.out.is_none() {
        eprintln!("--format pdf needs --out FILE");
        return ExitCode::from(2);
    }
    if !matches!(
        ask.action.as_str(),
        "rebuild" | "report" | "at-risk" | "lowest"
    ) {
        eprintln!(
            "unknown indicators action `{}`: use rebuild, report, at-risk or lowest",
            ask.action
        );
        return ExitCode::from(2);
    }
    // The font is found before the store is opened: a missing font is a setup error.
    let font = if ask.action == "report" && ask.format == "pdf" {
        match crate::indicators::pdf::find_font(ask.font.as_deref()) {
            Ok((_, bytes)) => Some(bytes),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
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
        "report" if ask.format == "pdf" => {
            let now = now_ms();
            let period = ask.period.unwrap_or_else(|| month_of(now));
            let out = ask.out.expect("checked above");
            match pdf_report(&ix, &period, now, font.as_deref().unwrap_or_default()).await {
                Ok(bytes) => match std::fs::write(&out, bytes) {
                    Ok(()) => {
                        eprintln!("wrote {}", out.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => failed(format!("cannot write {}: {e}", out.display())),
                },
                Err(PdfReportError::Period) => {
                    eprintln!("--period: `{period}` is not YYYY-MM, YYYY-Qn or YYYY");
                    ExitCode::from(2)
                }
                Err(PdfReportError::Pdf(e)) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
        "lowest" => {
            let now = now_ms();
            let period = ask.period.unwrap_or_else(|| month_of(now));
            let count = ask
                .count
                .unwrap_or(crate::config::defaults::INDICATORS_LOWEST_COUNT);
            let min = ask.min_dossiers.unwrap_or(ix.lowest_min_dossiers);
            match history::report(
                ix.store.as_ref(),
                &ix.rules.get(),
                &period,
                Level::Unit,
                now,
                &ix.synced_to,
            )
            .await
            {
                Ok(r) => {
                    let l = history::lowest(&r, count, min);
                    if ask.format == "csv" {
                        print!("{}", history::to_csv(&Report { rows: l.units, ..r }));
                    } else {
                        println!("{}", serde_json::to_string_pretty(&l).expect("serializes"));
                    }
                    ExitCode::SUCCESS
                }
                Err(history::ReportError::Period(e)) => {
                    eprintln!("--period: {e}");
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
        "report" => {
            let now = now_ms();
            let period = ask.period.unwrap_or_else(|| month_of(now));
            match history::report(
                ix.store.as_ref(),
                &ix.rules.get(),
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
            match history::at_risk(ix.store.as_ref(), &ix.rules.get(), now_ms(), days).await {
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

/// Why the PDF report cannot be made, by step.
#[derive(Debug, thiserror::Error)]
enum PdfReportError {
    #[error("the period is malformed")]
    Period,
    #[error("{0}")]
    Report(#[from] history::ReportError),
    #[error("{0}")]
    Series(#[from] history::SeriesError),
    #[error("{0}")]
    Pdf(#[from] crate::indicators::pdf::PdfError),
}

/// The period's unit and province reports and the province's 12 months up to the period's
/// last month, drawn as PDF.
async fn pdf_report(
    ix: &Wired,
    period: &str,
    now: i64,
    font: &[u8],
) -> Result<Vec<u8>, PdfReportError> {
    let p = crate::indicators::Period::parse(period).map_err(|_| PdfReportError::Period)?;
    let (store, rules, to) = (ix.store.as_ref(), &ix.rules.get(), &ix.synced_to);
    let units = history::report(store, rules, period, Level::Unit, now, to).await?;
    let province = history::report(store, rules, period, Level::Province, now, to).await?;
    let last_month = format!("{:04}-{:02}", p.last.year(), u8::from(p.last.month()));
    let series = history::series(store, rules, &last_month, 12, Level::Province, now, to).await?;
    let as_of = crate::indicators::calendar::vn_date(units.as_of_ms).to_string();
    Ok(crate::indicators::pdf::render(
        &units, &province, &series, &as_of, font,
    )?)
}
