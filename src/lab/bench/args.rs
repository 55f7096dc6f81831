//! The bench's command line: what to measure, on which backends, with which signatures.

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Messages per raw broker phase (publish, consume with per-message acks, with batched acks).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Events per gateway end-to-end throughput run.
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Events waiting in the queue while the peak RSS of a `gateway run` child is measured
    /// (the goal names 1,000,000; the default keeps the run to minutes).
    #[arg(long, default_value_t = 100_000)]
    pub backlog: usize,
    /// How long the child runs against the backlog, seconds.
    #[arg(long, default_value_t = 15)]
    pub backlog_secs: u64,
    /// Backends: all (RabbitMQ + PostgreSQL when they answer, and embedded), rabbit-pg, embedded.
    #[arg(long, default_value = "all")]
    pub backends: String,
    /// Signing on the dvcqg adapter: all, ecdsa, rsa.
    #[arg(long, default_value = "all")]
    pub signing: String,
    /// Seconds of each raw signing measurement.
    #[arg(long, default_value_t = 2.0)]
    pub sign_secs: f64,
    /// Seconds of publishing at half the peak rate for the latency figures.
    #[arg(long, default_value_t = 5.0)]
    pub latency_secs: f64,
    /// Publish the latency run at this fixed rate (events a second) instead of half the
    /// measured peak: the latency at a province's own load, away from saturation. The goal
    /// lines name half the peak, so they show n/a for a run at a fixed rate.
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// RabbitMQ URL (user, no password); the password from GW_BENCH_AMQP_PASSWORD, default guest.
    #[arg(long, default_value = "amqp://guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// PostgreSQL URL (a `?schema=` is added per run).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Directory of the signing keys (sign-rsa.*, sign-ec.*). Default: the example keys built
    /// into the binary (`certs-example/`).
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Where the bench compares two modes (the evidence log off and in metadata mode; the
    /// engine's publish without and with the index), it runs them alternating this many times
    /// each and compares their medians (one pair of runs moved the evidence cost by ±15 points
    /// on this shared machine).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Give up on one end-to-end run after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run only the backlog-drain scenario (see `src/bench/drain.rs`).
    #[arg(long)]
    pub drain: bool,
    /// Drain: events queued during the portal outage.
    #[arg(long, default_value_t = 200_000)]
    pub drain_events: usize,
    /// Drain: the portal's call quota (calls a second), enforced by the sandbox and configured
    /// on the gateway's adapter.
    #[arg(long, default_value_t = 50.0)]
    pub drain_rate: f64,
    /// Drain: the sandbox's burst allowance.
    #[arg(long, default_value_t = 5)]
    pub drain_burst: u32,
    /// Drain: seconds the outage lasts after the last event was queued.
    #[arg(long, default_value_t = 10)]
    pub drain_outage_secs: u64,
    /// Tiny counts, embedded only (the smoke test).
    #[arg(long)]
    pub smoke: bool,
    /// Which parts to run, comma-separated: raw (broker), sign, e2e (with latency), backlog
    /// (peak RSS), evidence (the log's cost), scale (one and two `gateway run` instances on
    /// RabbitMQ + PostgreSQL; not in the default list), index (the service-quality index's
    /// added CPU per event; not in the default list). Ratios and goals are printed from what
    /// ran.
    #[arg(long, default_value = "raw,sign,e2e,backlog,evidence")]
    pub phases: String,
    /// Lanes of the benchmarked route (`routes.concurrency`): dossiers handled at once per
    /// queue. Batches to the portal and merged ledger writes grow with it.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Scale phase: partitions (queues) of the benchmarked route, shared by the instances.
    #[arg(long, default_value_t = 4)]
    pub scale_partitions: u16,
    /// Index phase: accepted events published at once (requests the edge answers at the same
    /// time); the index's facts of events published together share a message.
    #[arg(long, default_value_t = 32)]
    pub index_in_flight: usize,
}

impl BenchArgs {
    /// The signing keys' folder: `--certs`, or the built-in example keys.
    pub(super) fn certs(&self) -> PathBuf {
        self.certs
            .clone()
            .unwrap_or_else(gw_contract_tests::examples::certs_example)
    }

    /// The latency run's rate: `--latency-rate`, or half the peak `rate` measured just before.
    pub(super) fn latency_rate(&self, rate: f64) -> f64 {
        self.latency_rate.unwrap_or(rate / 2.0).max(1.0)
    }

    pub(super) fn phase(&self, name: &str) -> bool {
        self.phases.split(',').any(|p| p.trim() == name)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Backend {
    RabbitPg,
    Embedded,
}

impl Backend {
    pub(super) fn label(self) -> &'static str {
        match self {
            Backend::RabbitPg => "RabbitMQ+PostgreSQL",
            Backend::Embedded => "embedded (SQLite)",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Sig {
    Ecdsa,
    Rsa,
}

impl Sig {
    pub(super) fn label(self) -> &'static str {
        match self {
            Sig::Ecdsa => "ES256 jws-detached",
            Sig::Rsa => "RS256 jws-detached",
        }
    }
    pub(super) fn key(self) -> &'static str {
        match self {
            Sig::Ecdsa => "sign-ec",
            Sig::Rsa => "sign-rsa",
        }
    }
}

pub(super) const WINDOW: usize = 1000;
pub(super) const PREFETCH: u16 = 1000;
pub(super) const ACK_EVERY: usize = 100;
pub(super) const CHUNK: usize = 1000;

/// Insert the password from GW_BENCH_AMQP_PASSWORD (default `guest`) into an `amqp://user@host` URL.
pub(super) fn amqp_with_password(url: &str) -> String {
    let pw = std::env::var("GW_BENCH_AMQP_PASSWORD").unwrap_or_else(|_| "guest".into());
    match url.strip_prefix("amqp://").and_then(|r| r.split_once('@')) {
        Some((user, host)) if !user.contains(':') => format!("amqp://{user}:{pw}@{host}"),
        _ => url.to_string(),
    }
}

/// The phases `--phases` may name, in the order they run.
pub(super) const PHASES: [&str; 7] = [
    "raw", "sign", "e2e", "backlog", "evidence", "scale", "index",
];

/// An argument the bench cannot run with (exit 2).
#[derive(Debug, thiserror::Error)]
pub(super) enum ArgError {
    #[error("--phases: a comma-separated list of {list}, not {bad:?}", list = PHASES.join(", "))]
    Phase { bad: String },
    #[error("--index-in-flight: 1 or more")]
    IndexInFlight,
    #[error("--concurrency: 1 or more")]
    Concurrency,
    #[error("--scale-partitions: 1 or more")]
    ScalePartitions,
    #[error("--signing: all, ecdsa or rsa, not {0}")]
    Signing(String),
    #[error("--backends: all, rabbit-pg or embedded, not {0}")]
    Backends(String),
}

impl BenchArgs {
    /// `--smoke`: every count and time cut to a few seconds (the CI's bench check).
    pub(super) fn apply_smoke(&mut self) {
        self.messages = 100;
        self.events = 100;
        self.backlog = 300;
        self.backlog_secs = 2;
        // The scale phase needs RabbitMQ + PostgreSQL: `--backends rabbit-pg` is kept.
        if self.backends != "rabbit-pg" {
            self.backends = "embedded".into();
        }
        self.sign_secs = 0.2;
        self.latency_secs = 0.5;
        self.rounds = 1;
        // The drain's time varies with the breaker's cool-downs and retry timers, and a
        // delivery whose settle was lost comes back only when its 60 s lease expires: the smoke
        // drain gets room for that (it checks what arrives, not how fast).
        self.timeout_secs = if self.drain { 240 } else { 60 };
        self.drain_events = 2_000;
        self.drain_rate = 100.0;
        self.drain_outage_secs = 1;
    }

    /// The signatures to measure and whether RabbitMQ + PostgreSQL are wanted, or why the
    /// arguments cannot run.
    pub(super) fn check(&self) -> Result<(Vec<Sig>, bool), ArgError> {
        if let Some(bad) = self
            .phases
            .split(',')
            .map(str::trim)
            .find(|p| !PHASES.contains(p))
        {
            return Err(ArgError::Phase {
                bad: bad.to_string(),
            });
        }
        if self.concurrency == 0 {
            return Err(ArgError::Concurrency);
        }
        if self.scale_partitions == 0 {
            return Err(ArgError::ScalePartitions);
        }
        if self.index_in_flight == 0 {
            return Err(ArgError::IndexInFlight);
        }
        let sigs = match self.signing.as_str() {
            "all" => vec![Sig::Ecdsa, Sig::Rsa],
            "ecdsa" => vec![Sig::Ecdsa],
            "rsa" => vec![Sig::Rsa],
            other => return Err(ArgError::Signing(other.to_string())),
        };
        let want_rabbit = match self.backends.as_str() {
            "all" | "rabbit-pg" => true,
            "embedded" => false,
            other => return Err(ArgError::Backends(other.to_string())),
        };
        Ok((sigs, want_rabbit))
    }
}
