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
//!   the run ends in minutes here); its VmHWM is read from `/proc/PID/status`.
//!
//! Everything is bounded in count and time, on loopback; the RabbitMQ queues and PostgreSQL
//! schemas it creates are deleted at the end, the embedded data directories removed.

use std::collections::BTreeMap;
use std::process::ExitCode;

use gw_contract_tests::portal::{Portal, PortalConfig};

mod args;
mod drain;
mod measure;
mod raw;
mod scale;
mod setup;
mod sys;

pub use args::BenchArgs;
use args::*;
use measure::*;
use raw::*;
use setup::*;
use sys::*;

pub async fn run(mut args: BenchArgs) -> ExitCode {
    if args.smoke {
        args.messages = 100;
        args.events = 100;
        args.backlog = 300;
        args.backlog_secs = 2;
        // The scale phase needs RabbitMQ + PostgreSQL: `--backends rabbit-pg` is kept.
        if args.backends != "rabbit-pg" {
            args.backends = "embedded".into();
        }
        args.sign_secs = 0.2;
        args.latency_secs = 0.5;
        // The drain's time varies with the breaker's cool-downs and retry timers, and a
        // delivery whose settle was lost comes back only when its 60 s lease expires: the smoke
        // drain gets room for that (it checks what arrives, not how fast).
        args.timeout_secs = if args.drain { 240 } else { 60 };
        args.drain_events = 2_000;
        args.drain_rate = 100.0;
        args.drain_outage_secs = 1;
    }
    const PHASES: [&str; 6] = ["raw", "sign", "e2e", "backlog", "evidence", "scale"];
    if let Some(bad) = args
        .phases
        .split(',')
        .map(str::trim)
        .find(|p| !PHASES.contains(p))
    {
        eprintln!(
            "--phases: a comma-separated list of {}, not {bad:?}",
            PHASES.join(", ")
        );
        return ExitCode::from(2);
    }
    if args.concurrency == 0 {
        eprintln!("--concurrency: 1 or more");
        return ExitCode::from(2);
    }
    if args.scale_partitions == 0 {
        eprintln!("--scale-partitions: 1 or more");
        return ExitCode::from(2);
    }
    if std::env::var("GW_BENCH_AMQP_PASSWORD").is_err() {
        std::env::set_var("GW_BENCH_AMQP_PASSWORD", "guest");
    }
    let sigs: Vec<Sig> = match args.signing.as_str() {
        "all" => vec![Sig::Ecdsa, Sig::Rsa],
        "ecdsa" => vec![Sig::Ecdsa],
        "rsa" => vec![Sig::Rsa],
        other => {
            eprintln!("--signing: all, ecdsa or rsa, not {other}");
            return ExitCode::from(2);
        }
    };
    let want_rabbit = match args.backends.as_str() {
        "all" | "rabbit-pg" => true,
        "embedded" => false,
        other => {
            eprintln!("--backends: all, rabbit-pg or embedded, not {other}");
            return ExitCode::from(2);
        }
    };
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

    // Raw broker.
    println!();
    println!(
        "== raw broker (lapin, quorum queue, {} persistent 1 KiB messages per phase) ==",
        args.messages
    );
    let raw = if !args.phase("raw") {
        println!("  skipped (--phases)");
        None
    } else if backends.contains(&Backend::RabbitPg) {
        match raw_broker(&amqp_url, args.messages).await {
            Ok(r) => {
                println!(
                    "  publish with confirms ({WINDOW} in flight)     {:>9.0} msg/s",
                    r.publish
                );
                println!(
                    "  consume, each ack awaited (prefetch {PREFETCH})  {:>9.0} msg/s",
                    r.ack_each
                );
                println!(
                    "  consume, multiple ack every {ACK_EVERY}          {:>9.0} msg/s",
                    r.ack_batched
                );
                Some(r)
            }
            Err(e) => {
                println!("  failed: {e}");
                None
            }
        }
    } else {
        println!("  skipped (no RabbitMQ)");
        None
    };

    // Raw signing.
    println!();
    println!(
        "== raw signing (OpenSSL, one core, SHA-256 over 32 B, {:.1} s each) ==",
        args.sign_secs
    );
    let mut raw_sign = BTreeMap::new();
    let sign_phase: &[(Sig, &str)] = if args.phase("sign") {
        &[
            (Sig::Rsa, "RSA-2048 PKCS#1 v1.5"),
            (Sig::Ecdsa, "ECDSA P-256"),
        ]
    } else {
        println!("  skipped (--phases)");
        &[]
    };
    for &(sig, label) in sign_phase {
        match load_key(&args.certs, sig.key()) {
            Ok(k) => {
                let secs = args.sign_secs;
                let r = tokio::task::spawn_blocking(move || raw_sign_rate(&k, secs))
                    .await
                    .unwrap_or(0.0);
                println!("  {label:<22} ({}.key)  {r:>9.0} sig/s", sig.key());
                raw_sign.insert(sig.key(), r);
            }
            Err(e) => println!("  {label}: cannot load the key: {e}"),
        }
    }

    // Gateway end to end.
    let (portal, sandbox_tid) = match start_portal().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::env::set_var("GATEWAY_BENCH_PORTAL_PASSWORD", &portal.config().password);
    println!();
    println!(
        "== gateway end to end ({} events preloaded per run; dvcqg connector → portal sandbox, plain HTTP keep-alive on loopback) ==",
        args.events
    );
    println!(
        "  latency: publish confirmed → outcome in the ledger (ack follows), at half the peak rate;"
    );
    println!(
        "  ev/call: events per portal sync call (the connector batches; one signature per call)"
    );
    println!(
        "  CPU s/1k: CPU seconds per 1,000 events of the gateway (this process without the sandbox's thread), \
         the sandbox, PostgreSQL and RabbitMQ (all their local processes; others' load counts too); the lanes: {} (--concurrency)",
        args.concurrency
    );
    println!(
        "  {:<20} {:<19} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "backend",
        "signing",
        "msg/s",
        "gw CPU",
        "sbx CPU",
        "pg CPU",
        "mq CPU",
        "ev/call",
        "lat rate",
        "p50 ms",
        "p99 ms",
        "p99.9 ms"
    );
    let mut runs = Vec::new();
    let mut failures = 0;
    let e2e_backends: &[Backend] = if args.phase("e2e") { &backends } else { &[] };
    for &b in e2e_backends {
        for &sig in &sigs {
            let s = setup(&args, b, sig, &portal);
            // The sandbox's records (and dossiers) are cleared after each run.
            let mut first = 0usize;
            match e2e(&args, &s, &portal, sandbox_tid.as_deref(), &mut first).await {
                Ok(r) => {
                    let (lr, p50, p99, p999) = match &r.lat {
                        Some(l) => (
                            format!("{:.0}/s", l.rate),
                            format!("{:.2}", l.p50),
                            format!("{:.2}", l.p99),
                            format!("{:.2}", l.p999),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    println!(
                        "  {:<20} {:<19} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.1} {:>8} {:>8} {:>8} {:>8}",
                        b.label(),
                        sig.label(),
                        r.rate,
                        r.cpu_per_1k,
                        r.sandbox_cpu_per_1k,
                        r.pg_cpu_per_1k,
                        r.mq_cpu_per_1k,
                        r.per_call,
                        lr,
                        p50,
                        p99,
                        p999
                    );
                    runs.push(r);
                }
                Err(e) => {
                    failures += 1;
                    println!("  {:<20} {:<19} failed: {e}", b.label(), sig.label());
                }
            }
            portal.clear_records();
        }
    }
    let samples: Vec<String> = runs
        .iter()
        .filter_map(|r| r.lat.as_ref().map(|l| l.n.to_string()))
        .collect();
    println!(
        "  latency samples per run (in table order): {}",
        samples.join(", ")
    );

    // Backlog RSS.
    println!();
    println!(
        "== peak RSS of a `gateway run` child with {} events waiting in its queue (ES256; the goal names 1,000,000) ==",
        args.backlog
    );
    let mut backlogs = Vec::new();
    let backlog_backends: &[Backend] = if args.phase("backlog") {
        &backends
    } else {
        &[]
    };
    for &b in backlog_backends {
        let s = setup(&args, b, Sig::Ecdsa, &portal);
        let mut first = 0usize;
        match backlog_rss(&args, &s, &portal, &mut first).await {
            Ok(r) => {
                println!(
                    "  {:<20} VmHWM {:>7.1} MiB over {:.1} s of draining",
                    r.backend.label(),
                    r.hwm_kib as f64 / 1024.0,
                    r.secs
                );
                backlogs.push(r);
            }
            Err(e) => {
                failures += 1;
                println!("  {:<20} failed: {e}", b.label());
            }
        }
        portal.clear_records();
    }

    // The evidence log's cost: the same run with the log off, then in metadata mode.
    println!();
    println!(
        "== evidence log cost (ES256; {} events per run; the table above ran in metadata mode, the default) ==",
        args.events
    );
    let evidence_backends: &[Backend] = if args.phase("evidence") {
        &backends
    } else {
        &[]
    };
    for &b in evidence_backends {
        let mut rates = Vec::new();
        for mode in ["off", "metadata"] {
            let mut s = setup(&args, b, Sig::Ecdsa, &portal);
            s.text
                .push_str(&format!("\n[evidence]\nmode = \"{mode}\"\n"));
            let mut first = 0usize;
            match e2e(&args, &s, &portal, sandbox_tid.as_deref(), &mut first).await {
                Ok(r) => {
                    println!(
                        "  {:<20} evidence {mode:<8} {:>8.0} msg/s   CPU s/1k: gateway {:.3}, PostgreSQL {:.3}, RabbitMQ {:.3}",
                        b.label(),
                        r.rate,
                        r.cpu_per_1k,
                        r.pg_cpu_per_1k,
                        r.mq_cpu_per_1k
                    );
                    rates.push(r.rate)
                }
                Err(e) => {
                    failures += 1;
                    println!("  {:<20} evidence {mode}: failed: {e}", b.label());
                }
            }
            portal.clear_records();
        }
        if let [off, meta] = rates[..] {
            let cost = (1.0 - meta / off) * 100.0;
            println!(
                "  {:<20} off {off:>8.0} msg/s   metadata {meta:>8.0} msg/s   cost {cost:>5.1} % (goal < 10 %: {})",
                b.label(),
                goal(Some(cost < 10.0))
            );
        }
    }

    // Several instances.
    if args.phase("scale") {
        println!();
        println!(
            "== scale-out: 1 and 2 `gateway run` instances on RabbitMQ + PostgreSQL ({} events, {} partitions, ES256; latency at half the rate, publish confirmed → ledger) ==",
            args.events, args.scale_partitions
        );
        if backends.contains(&Backend::RabbitPg) {
            let mut rates = Vec::new();
            for n in [1, 2] {
                match scale::run(&args, &portal, n).await {
                    Ok(r) => {
                        scale::print(&r);
                        rates.push(r.rate);
                    }
                    Err(e) => {
                        failures += 1;
                        println!("  {n} instance(s): failed: {e}");
                    }
                }
                portal.clear_records();
            }
            if let [one, two] = rates[..] {
                println!(
                    "  ratio 2 instances ÷ 1: {:.2}  (single active consumer per partition: a second instance is mostly a hot standby)",
                    two / one
                );
            }
        } else {
            println!("  skipped (needs RabbitMQ and PostgreSQL: --backends rabbit-pg or all)");
        }
    }

    // Ratios and goals.
    let find = |b: Backend, s: Sig| runs.iter().find(|r| r.backend == b && r.sig == s);
    let main_backend = if backends.contains(&Backend::RabbitPg) {
        Backend::RabbitPg
    } else {
        Backend::Embedded
    };
    println!();
    println!("== ratios ==");
    let mut ecdsa_ratio = None;
    for &b in &backends {
        for &sig in &sigs {
            if let (Some(r), Some(raw)) = (find(b, sig), raw.as_ref()) {
                let x = r.rate / raw.ack_each;
                println!(
                    "  gateway {} {} ÷ raw per-message-ack consume: {x:.2}  (÷ batched-ack consume: {:.2})",
                    b.label(),
                    sig.label(),
                    r.rate / raw.ack_batched
                );
                if b == Backend::RabbitPg && sig == Sig::Ecdsa {
                    ecdsa_ratio = Some(x);
                }
            }
        }
    }
    if raw.is_none() {
        println!("  gateway ÷ raw broker: n/a (no raw broker figures)");
    }
    let mut rsa_ratio = None;
    for &b in &backends {
        if let (Some(r), Some(raw)) = (find(b, Sig::Rsa), raw_sign.get("sign-rsa")) {
            let x = r.rate / raw;
            println!(
                "  gateway {} RSA ÷ raw one-core RSA sign: {x:.2}",
                b.label()
            );
            if b == main_backend {
                rsa_ratio = Some(x);
            }
        }
    }
    let p99 = find(main_backend, Sig::Ecdsa)
        .or_else(|| runs.first())
        .and_then(|r| r.lat.as_ref())
        .map(|l| l.p99);
    let rss = backlogs.iter().map(|b| b.hwm_kib).max();
    println!();
    println!("== goals (printed, not asserted) ==");
    println!(
        "  ECDSA end to end ≥ 0.8 × raw per-message-ack consume ({}):  {}",
        ecdsa_ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
        goal(ecdsa_ratio.map(|x| x >= 0.8))
    );
    println!(
        "  RSA-2048 end to end ≥ 0.7 × raw one-core sign ({}, {}):  {}",
        rsa_ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
        main_backend.label(),
        goal(rsa_ratio.map(|x| x >= 0.7))
    );
    println!(
        "  p99 added latency < 2 ms at half the peak ({}, {}):  {}",
        p99.map_or("n/a".into(), |x| format!("{x:.2} ms")),
        main_backend.label(),
        goal(p99.map(|x| x < 2.0))
    );
    println!(
        "  peak RSS < 64 MiB with a backlog of {} waiting ({}):  {}",
        args.backlog,
        rss.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        goal(rss.map(|k| k < 64 * 1024))
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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
