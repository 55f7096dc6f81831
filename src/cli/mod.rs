//! The `gateway` command line: [`args`] says what can be typed, [`run`] sends each command to
//! the file that does it, one file per command family.
//!
//! # Invariants
//! - **`String` errors end here.** A command's helpers return their module's error enum; the
//!   command prints it and picks the exit code. Codes: 0 done, 1 the work failed (a refused
//!   sample, a backend down, a dead letter not found), 2 the invocation or configuration is
//!   wrong.
//! - A command that needs a configuration loads it once ([`with_config`]): a configuration
//!   with problems prints every one and exits 2 before anything is opened.
//! - The lab commands exist only with the `lab` feature; without it they refuse with exit 2
//!   (see [`args::LabOff`]).

pub mod agencies;
pub mod args;
pub mod catalogue;
pub mod dlq;
pub mod edxml;
pub mod evidence;
pub mod feeds;
pub mod gateway;
pub mod health;
pub mod indicators;
pub mod map;
pub mod ops;
pub mod payments;
pub mod sign;
pub mod signing;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command, DlqAction};

use crate::config::Loaded;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::logging::init_logging(cli.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(cli.command))
}

/// The configuration at `path`, or every problem in it printed and exit code 2.
fn load_or_exit(path: &Path) -> Result<Loaded, ExitCode> {
    crate::config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Loads the configuration, then runs `command` with it.
/// [`with_config`] for a command whose `--config` is global to its subcommands (so optional to
/// clap): without it and without `GATEWAY_CONFIG`, a usage error (exit 2).
async fn with_global_config<F, Fut>(path: Option<&Path>, command: F) -> ExitCode
where
    F: FnOnce(Loaded) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match path {
        Some(path) => with_config(path, command).await,
        None => {
            eprintln!("--config FILE is required (or set GATEWAY_CONFIG)");
            ExitCode::from(2)
        }
    }
}

async fn with_config<F, Fut>(path: &Path, command: F) -> ExitCode
where
    F: FnOnce(Loaded) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match load_or_exit(path) {
        Ok(loaded) => command(loaded).await,
        Err(code) => code,
    }
}

/// Prints a command's error and exits 1.
fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

async fn run(cmd: Command) -> ExitCode {
    match cmd {
        Command::CheckConfig { file } => gateway::check_config(&file),
        Command::Run { config } => {
            with_config(&config, |l| async move { gateway::run_gateway(&l).await }).await
        }
        #[cfg(feature = "lab")]
        Command::Demo(args) => crate::lab::demo::run(args).await,
        #[cfg(feature = "lab")]
        Command::Bench(args) => crate::lab::bench::run(args).await,
        #[cfg(feature = "lab")]
        Command::Sandbox { party, port } => crate::lab::standalone::sandbox(&party, port).await,
        #[cfg(feature = "lab")]
        Command::Sink { port } => crate::lab::standalone::sink(port).await,
        #[cfg(not(feature = "lab"))]
        Command::Demo(_) => lab_off("demo"),
        #[cfg(not(feature = "lab"))]
        Command::Bench(_) => lab_off("bench"),
        #[cfg(not(feature = "lab"))]
        Command::Sandbox(_) => lab_off("sandbox"),
        #[cfg(not(feature = "lab"))]
        Command::Sink(_) => lab_off("sink"),
        Command::Sign(args) => sign::sign(args),
        Command::Verify(args) => sign::verify(args),
        Command::Edxml { action } => edxml::run(action).await,
        Command::Map { adapter, sample } => map::map(&adapter, &sample),
        Command::Health {
            config,
            addr,
            ready,
        } => health::health(addr.as_deref(), config.as_deref(), ready).await,
        Command::Indicators {
            action,
            config,
            period,
            level,
            format,
            days,
            out,
            font,
            count,
            min_dossiers,
        } => {
            let ask = indicators::Ask {
                action,
                period,
                level,
                format,
                days,
                out,
                font,
                count,
                min_dossiers,
            };
            with_config(&config, |loaded| indicators::run(loaded, ask)).await
        }
        Command::Payments {
            action,
            config,
            date,
            provider,
        } => match action.as_str() {
            "reconcile" => {
                payments::reconcile_command(&config, date.as_deref(), provider.as_deref()).await
            }
            other => {
                eprintln!("unknown payments action `{other}`: use reconcile");
                ExitCode::from(2)
            }
        },
        Command::Signing { action } => signing::run(action).await,
        Command::Trace { dossier, config } => {
            with_config(&config, |l| async move {
                ops::trace(&l, &dossier).await.unwrap_or_else(failed)
            })
            .await
        }
        Command::Catalogue { action, config } => {
            if action != "sync" {
                eprintln!("unknown catalogue action `{action}`: use `gateway catalogue sync --config FILE`");
                return ExitCode::from(2);
            }
            with_config(&config, |l| async move {
                match catalogue::sync(&l).await {
                    Ok(summary) => {
                        println!("catalogue sync: {summary}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => failed(format!("catalogue sync failed: {e}")),
                }
            })
            .await
        }
        Command::Evidence { action } => {
            let path = action.config().to_path_buf();
            with_config(&path, |l| async move { evidence::run(&l, action).await }).await
        }
        Command::Feed {
            subscription,
            config,
            after,
            limit,
            since,
        } => {
            with_config(&config, |l| async move {
                feeds::feed(&l, &subscription, after, limit, since.as_deref()).await
            })
            .await
        }
        Command::Status { config } => {
            with_config(&config, |l| async move {
                ops::status(&l).await.unwrap_or_else(failed)
            })
            .await
        }
        Command::Schema { kind } => agencies::kind_schema(&kind),
        Command::Agencies { config, action } => {
            with_global_config(config.as_deref(), |l| async move {
                agencies::agencies(&l, action).await.unwrap_or_else(failed)
            })
            .await
        }
        Command::Dlq { config, action } => {
            with_global_config(config.as_deref(), |l| async move {
                dlq::dlq(&l, action).await.unwrap_or_else(failed)
            })
            .await
        }
    }
}

#[cfg(not(feature = "lab"))]
fn lab_off(command: &str) -> ExitCode {
    eprintln!(
        "gateway {command}: this binary was built without the `lab` feature (the production \
         build): the demo, bench and sandboxes are not in it. They are in the default build \
         (`cargo build --release`, or `cargo run --release -- demo` from the repository root)."
    );
    ExitCode::from(2)
}
