//! `gateway check-config` and `gateway run`: the two commands that take a configuration as it
//! is written and either judge it or start the gateway with it.
//!
//! # Invariants
//! - `check-config` never starts anything: it loads (every problem of the file at once), then
//!   checks the files the configuration names and the secrets it can read here. A secret that
//!   reads empty is a problem (an empty token would switch a check off); one that cannot be read
//!   on this machine is a warning, since the machine that runs the gateway may read it.
//! - Exit codes: 0 fine, 2 the configuration is wrong, 1 (from `run`) it could not start.
//! - No secret's value is printed, only its key.

use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{self, Loaded};

/// `gateway check-config FILE`.
pub fn check_config(file: &Path) -> ExitCode {
    let l = match config::load(file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.problems.len());
            return ExitCode::from(2);
        }
    };
    let problems = check_problems(&l);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("{} problem(s) found", problems.len());
        return ExitCode::from(2);
    }
    println!(
        "{}: ok ({} sources, {} adapters, {} routes; broker {}, store {})",
        l.origin,
        l.config.sources.len(),
        l.config.adapters.len(),
        l.config.routes.len(),
        if l.config.broker.url.is_some() {
            "rabbitmq"
        } else {
            "embedded"
        },
        if l.config.store.url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    for w in l.warnings() {
        println!("warning: {w}");
    }
    if !l.config.signers.is_empty() {
        println!(
            "signers: {}",
            l.config
                .signers
                .iter()
                .map(|(n, s)| format!(
                    "{n} ({}, {} official(s) inline{})",
                    s.service,
                    s.officials.len(),
                    if s.officials_file.is_some() {
                        " + file"
                    } else {
                        ""
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let secrets = l.secret_refs();
    let unread: Vec<String> = secrets
        .iter()
        .filter_map(|(key, r)| match r.read(&l.base) {
            Err(config::SecretProblem::Unavailable(why)) => Some(format!("{key}: {why}")),
            _ => None,
        })
        .collect();
    println!(
        "secrets: {} of {} read and non-empty here",
        secrets.len() - unread.len(),
        secrets.len()
    );
    for u in &unread {
        println!("warning: secret not checked (cannot be read here): {u}");
    }
    if l.config.ops.tokens.is_empty() {
        println!("note: no [ops] tokens: the ops API and dashboard are off (/healthz, /readyz and /metrics answer)");
    } else {
        println!(
            "ops API and dashboard on http://{}/ for {} token(s)",
            l.config.ops.listen,
            l.config.ops.tokens.len()
        );
    }
    ExitCode::SUCCESS
}

/// What makes `check-config` fail on a configuration that parsed: files it names that are
/// missing or unreadable, and secrets that read empty (an empty token would switch a check
/// off). Secrets that cannot be read on this machine are reported as warnings instead.
fn check_problems(l: &Loaded) -> Vec<String> {
    let mut problems = app::check_files(l);
    for (key, r) in l.secret_refs() {
        if let Err(config::SecretProblem::Empty(why)) = r.read(&l.base) {
            problems.push(format!("{key}: {why}"));
        }
    }
    problems
}

/// `gateway run --config FILE`: start, say where it listens, tell a service manager it is
/// ready once every route consumes (`crate::app::service`), and on SIGINT/SIGTERM finish the
/// work in flight before exiting. SIGHUP is logged (reload is not supported) and ignored.
pub async fn run_gateway(loaded: &Loaded) -> ExitCode {
    let cancel = CancellationToken::new();
    app::service::status("starting: opening the broker and the store");
    // The stop signals are listened for from here on: a SIGHUP during start-up is ignored too.
    let mut stop = tokio::spawn(app::service::wait_for_stop());
    let mut running = match app::start(loaded, cancel.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            app::service::status(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    println!(
        "gateway running: inbound http://{} ops http://{}",
        running.inbound_addr, running.ops_addr
    );
    tokio::select! {
        consuming = running.consuming() => {
            if !consuming {
                eprintln!("cannot start: the route runtime stopped before every route was consuming (see the log above)");
                app::service::stopping("cannot start: a route could not consume");
                running.shutdown().await;
                return ExitCode::FAILURE;
            }
            app::service::ready(&format!(
                "ready: {} route(s) consuming; inbound {}, ops {}",
                running.engine.routes.len(),
                running.inbound_addr,
                running.ops_addr
            ));
            if let Some(every) = app::service::spawn_watchdog(cancel.clone()) {
                tracing::info!(interval = ?every, "feeding the service manager's watchdog");
            }
            let _ = (&mut stop).await;
        }
        // Stopped while the routes were still starting to consume.
        _ = &mut stop => {}
    }
    tracing::info!("shutting down: finishing in-flight work");
    app::service::stopping(&format!(
        "stopping: finishing in-flight work (at most {:?})",
        loaded.config.gateway.shutdown_grace.0
    ));
    running.shutdown().await;
    ExitCode::SUCCESS
}
