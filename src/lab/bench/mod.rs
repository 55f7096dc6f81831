//! `gateway bench`: in one run on one machine, the raw limits beside the gateway end to end.
//!
//! - **Raw broker**: a lapin publisher with confirms (1,000 in flight), then a consumer with
//!   one awaited ack per message, then one with `multiple` acks every 100; persistent 1 KiB
//!   messages on a fresh quorum queue (the queue type the gateway declares). The approach of
//!   `crates/broker/examples/amqp_bench.rs`, reduced to the three raw figures.
//! - **Raw signing**: OpenSSL signatures per second on one core with the example keys
//!   (`certs-example/sign-rsa.key`, RSA-2048 PKCS#1 v1.5 SHA-256; `sign-ec.key`, ECDSA P-256),
//!   as `crates/crypto/examples/sign_bench.rs` measures them.
//! - **Gateway end to end**, in this process: dossier snapshots (from `src/simulator.rs`, one
//!   per dossier, so nothing coalesces) are published straight into the route's queue before
//!   the consumers start; then the route runtime consumes, translates to the portal's format,
//!   signs (`jws-detached`, ES256 or RS256), POSTs to the portal sandbox with the `dvcqg`
//!   connector (plain HTTP with keep-alive on loopback: the sandbox serves no TLS), records the
//!   ledger and acks. Throughput = events ÷ time to settle them all; CPU = this process's user +
//!   system time (the sandbox runs in it too, and shares the cores, as the issue says).
//! - **Latency** at half the measured peak: events are published one by one at that rate;
//!   the figure is from the publish being confirmed (the event waiting in the queue) to the
//!   outcome being recorded in the ledger (the ack follows at once). Completions are paired
//!   with publishes in order (k-th confirmed ↔ k-th settled), exact for a FIFO queue, and seen
//!   by a poller every 100 µs.
//! - **Peak RSS with a backlog**: the gateway runs as a child process (`gateway run`) with
//!   `--backlog` events waiting in its queue (default 100,000, not the 1,000,000, so
//!   the run ends in minutes here; `--backlog 1000000` is the figure); its VmHWM is
//!   read from `/proc/PID/status`.
//! - **Goals of issue 20** (catch up fast): one line per row of the table, the figure
//!   of this run beside the floor and goal, and whether each is met ([`report`]).
//!
//! Everything is bounded in count and time, on loopback; the RabbitMQ queues and PostgreSQL
//! schemas it creates are deleted at the end, the embedded data directories removed.

use std::process::ExitCode;

use gw_contract_tests::portal::{Portal, PortalConfig};

mod args;
mod drain;
mod error;
mod index;
mod measure;
mod phases;
mod raw;
mod report;
mod scale;
mod setup;
mod sys;

pub use args::BenchArgs;
use args::*;
use setup::*;

pub async fn run(mut args: BenchArgs) -> ExitCode {
    if args.smoke {
        args.apply_smoke();
    }
    let (sigs, want_rabbit) = match args.check() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var("GW_BENCH_AMQP_PASSWORD").is_err() {
        std::env::set_var("GW_BENCH_AMQP_PASSWORD", "guest");
    }
    let backends = available_backends(&args, want_rabbit).await;
    let amqp_url = amqp_with_password(&args.amqp_url);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "gateway bench: {cores} core(s); broker, portal sandbox and gateway share them; loopback only"
    );
    if args.drain {
        return run_drain(&args, &backends).await;
    }

    let raw = phases::raw_broker_phase(&args, &backends, &amqp_url).await;
    let raw_sign = phases::raw_sign_phase(&args).await;
    let (portal, sandbox_tid) = match start_portal().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::env::set_var("GATEWAY_BENCH_PORTAL_PASSWORD", &portal.config().password);
    let mut bench = phases::Bench {
        args: &args,
        backends,
        sigs,
        portal,
        sandbox_tid,
        failures: 0,
    };
    let runs = bench.e2e_phase().await;
    let backlogs = bench.backlog_phase().await;
    let evidence_costs = bench.evidence_phase().await;
    bench.scale_phase().await;
    bench.index_phase().await;
    let figures = report::Figures {
        raw,
        raw_sign,
        runs,
        backlogs,
        evidence_costs,
    };
    report::report(&args, &bench.backends, &bench.sigs, &figures);
    if bench.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// RabbitMQ + PostgreSQL when wanted and both answer on loopback, and the embedded backend
/// unless `--backends rabbit-pg`.
async fn available_backends(args: &BenchArgs, want_rabbit: bool) -> Vec<Backend> {
    let mut backends = Vec::new();
    if want_rabbit {
        let amqp = answers("127.0.0.1:5672").await;
        let pg = answers("127.0.0.1:5432").await;
        if amqp && pg {
            backends.push(Backend::RabbitPg);
        } else {
            println!(
                "note: RabbitMQ ({}) or PostgreSQL ({}) does not answer on loopback: embedded only, no raw broker figures",
                if amqp { "up" } else { "down" },
                if pg { "up" } else { "down" }
            );
        }
    }
    if args.backends != "rabbit-pg" {
        backends.push(Backend::Embedded);
    }
    backends
}

/// `--drain`: the backlog-drain scenario on each backend.
async fn run_drain(args: &BenchArgs, backends: &[Backend]) -> ExitCode {
    let portal = match Portal::start(0, PortalConfig::default()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::env::set_var("GATEWAY_BENCH_PORTAL_PASSWORD", &portal.config().password);
    let mut failed = false;
    for &b in backends {
        println!();
        println!(
            "== backlog drain on {} ({} events queued during a portal outage, then drained at {:.0} calls/s) ==",
            b.label(),
            args.drain_events,
            args.drain_rate
        );
        match drain::run(args, b, &portal).await {
            Ok(d) => drain::print(&d, args),
            Err(e) => {
                println!("  failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
