//! The bench's phases, one function each, in the order they run and print: the raw limits
//! first (broker, signing), then the gateway end to end, its peak RSS with a backlog, the
//! evidence log's cost and the scale-out.
//!
//! # Invariants
//! - A phase left out by `--phases` prints `skipped (--phases)`; one that needs what is not
//!   here (RabbitMQ) says so. Neither counts as a failure.
//! - A phase that fails prints `failed: <why>` in its own table and counts in
//!   [`Bench::failures`]; the next phase still runs, so one run shows every figure it can.
//! - The portal sandbox's records are cleared after each run, so runs do not see each other.

use std::collections::BTreeMap;

use gw_contract_tests::portal::Portal;

use super::args::*;
use super::measure::*;
use super::raw::*;
use super::scale;
use super::setup::*;
use super::sys::*;

/// What every gateway phase shares: the arguments, the backends and signatures to measure,
/// the portal sandbox and the count of failed runs.
pub(super) struct Bench<'a> {
    pub(super) args: &'a BenchArgs,
    pub(super) backends: Vec<Backend>,
    pub(super) sigs: Vec<Sig>,
    pub(super) portal: Portal,
    /// The sandbox's thread, so its CPU is told apart from the gateway's.
    pub(super) sandbox_tid: Option<String>,
    pub(super) failures: usize,
}

/// The raw broker: publish with confirms, consume with per-message and batched acks.
pub(super) async fn raw_broker_phase(
    args: &BenchArgs,
    backends: &[Backend],
    amqp_url: &str,
) -> Option<RawBroker> {
    println!();
    println!(
        "== raw broker (lapin, quorum queue, {} persistent 1 KiB messages per phase) ==",
        args.messages
    );
    if !args.phase("raw") {
        println!("  skipped (--phases)");
        None
    } else if backends.contains(&Backend::RabbitPg) {
        match raw_broker(amqp_url, args.messages).await {
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
    }
}

/// OpenSSL signatures per second on one core, by key name.
pub(super) async fn raw_sign_phase(args: &BenchArgs) -> BTreeMap<&'static str, f64> {
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
        match load_key(&args.certs(), sig.key()) {
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
    raw_sign
}

impl Bench<'_> {
    /// Throughput and latency end to end, per backend and signature.
    pub(super) async fn e2e_phase(&mut self) -> Vec<E2e> {
        let (args, portal) = (self.args, &self.portal);
        println!();
        println!(
            "== gateway end to end ({} events preloaded per run; dvcqg connector → portal sandbox, plain HTTP keep-alive on loopback) ==",
            args.events
        );
        let at = match args.latency_rate {
            Some(r) => format!("at a fixed {r} events/s (--latency-rate)"),
            None => "at half the peak rate".into(),
        };
        println!("  latency: publish confirmed → outcome in the ledger (ack follows), {at};");
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
        let e2e_backends: &[Backend] = if args.phase("e2e") {
            &self.backends
        } else {
            &[]
        };
        for &b in e2e_backends {
            for &sig in &self.sigs {
                let s = setup(args, b, sig, portal);
                // The sandbox's records (and dossiers) are cleared after each run.
                let mut first = 0usize;
                match e2e(args, &s, portal, self.sandbox_tid.as_deref(), &mut first).await {
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
                        self.failures += 1;
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
        runs
    }

    /// Peak RSS of a `gateway run` child with a backlog waiting, per backend.
    pub(super) async fn backlog_phase(&mut self) -> Vec<Backlog> {
        let (args, portal) = (self.args, &self.portal);
        println!();
        println!(
            "== peak RSS of a `gateway run` child with {} events waiting in its queue (ES256; the goal names 1,000,000) ==",
            args.backlog
        );
        let mut backlogs = Vec::new();
        let backlog_backends: &[Backend] = if args.phase("backlog") {
            &self.backends
        } else {
            &[]
        };
        for &b in backlog_backends {
            let s = setup(args, b, Sig::Ecdsa, portal);
            let mut first = 0usize;
            match backlog_rss(args, &s, portal, &mut first).await {
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
                    self.failures += 1;
                    println!("  {:<20} failed: {e}", b.label());
                }
            }
            portal.clear_records();
        }
        backlogs
    }

    /// The evidence log's cost: the same run with the log off and in metadata mode,
    /// alternating, `--rounds` times each. Returns the cost (percent of the median
    /// throughput with the log off) per backend measured, from the two modes' median rates.
    pub(super) async fn evidence_phase(&mut self) -> Vec<(Backend, f64)> {
        let mut costs = Vec::new();
        let (args, portal) = (self.args, &self.portal);
        let rounds = args.rounds.max(1);
        println!();
        println!(
            "== evidence log cost (ES256; {} events per run; off and metadata alternating, {rounds} run(s) each; the table above ran in metadata mode, the default) ==",
            args.events
        );
        let evidence_backends: &[Backend] = if args.phase("evidence") {
            &self.backends
        } else {
            &[]
        };
        for &b in evidence_backends {
            // Rates per mode: [off, metadata].
            let mut rates: [Vec<f64>; 2] = Default::default();
            for _ in 0..rounds {
                for (m, mode) in ["off", "metadata"].into_iter().enumerate() {
                    let mut s = setup(args, b, Sig::Ecdsa, portal);
                    s.text
                        .push_str(&format!("\n[evidence]\nmode = \"{mode}\"\n"));
                    let mut first = 0usize;
                    match e2e(args, &s, portal, self.sandbox_tid.as_deref(), &mut first).await {
                        Ok(r) => {
                            println!(
                                "  {:<20} evidence {mode:<8} {:>8.0} msg/s   CPU s/1k: gateway {:.3}, PostgreSQL {:.3}, RabbitMQ {:.3}",
                                b.label(),
                                r.rate,
                                r.cpu_per_1k,
                                r.pg_cpu_per_1k,
                                r.mq_cpu_per_1k
                            );
                            rates[m].push(r.rate)
                        }
                        Err(e) => {
                            self.failures += 1;
                            println!("  {:<20} evidence {mode}: failed: {e}", b.label());
                        }
                    }
                    portal.clear_records();
                }
            }
            if let (Some(off), Some(meta)) = (median(&rates[0]), median(&rates[1])) {
                let cost = (1.0 - meta / off) * 100.0;
                println!(
                    "  {:<20} off {off:>8.0} msg/s   metadata {meta:>8.0} msg/s (medians)   cost {cost:>5.1} % (goal < 10 %: {})",
                    b.label(),
                    goal(Some(cost < 10.0))
                );
                costs.push((b, cost));
            }
        }
        costs
    }

    /// One and two `gateway run` instances on RabbitMQ + PostgreSQL.
    pub(super) async fn scale_phase(&mut self) {
        let (args, portal) = (self.args, &self.portal);
        if args.phase("scale") {
            println!();
            println!(
                "== scale-out: 1 and 2 `gateway run` instances on RabbitMQ + PostgreSQL ({} events, {} partitions, ES256; latency at half the rate, publish confirmed → ledger) ==",
                args.events, args.scale_partitions
            );
            if self.backends.contains(&Backend::RabbitPg) {
                let mut rates = Vec::new();
                for n in [1, 2] {
                    match scale::run(args, portal, n).await {
                        Ok(r) => {
                            scale::print(&r);
                            rates.push(r.rate);
                        }
                        Err(e) => {
                            self.failures += 1;
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
    }
}
