//! The command line's shape: every subcommand and its arguments, as clap reads them. Nothing
//! here runs; [`super::run`] dispatches each [`Command`] to the file that does it.
//!
//! # Invariants
//! - A lab command (`demo`, `bench`, `sink`, `sandbox`) exists in every build: with the `lab`
//!   feature it is the tool, without it a hidden [`LabOff`] that refuses with a clear error
//!   (exit 2), never clap's "unrecognized subcommand".
//! - Every command that needs a configuration takes `--config` (or `GATEWAY_CONFIG`), except
//!   `check-config`, whose file is its argument.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "Integration gateway: one-stop system ↔ national platforms"
)]
pub struct Cli {
    /// Log as JSON lines (for log collectors) instead of human-readable text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway with a configuration file.
    Run {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// The demo: embedded queue and store, a recording sandbox and a traffic simulator, all
    /// in-process; runs dossier events through and checks nothing is missing.
    #[cfg(feature = "lab")]
    Demo(crate::lab::demo::DemoArgs),
    /// Benchmark: raw RabbitMQ and OpenSSL limits beside the gateway end to end, in one run.
    #[cfg(feature = "lab")]
    Bench(crate::lab::bench::BenchArgs),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Demo(LabOff),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Bench(LabOff),
    /// Validate a configuration file without starting; prints every problem.
    CheckConfig { file: PathBuf },
    /// Dead letters: list, show, replay, drop.
    Dlq {
        /// Before or after the subcommand (`dlq --config F list` = `dlq list --config F`).
        #[arg(long, short, env = "GATEWAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Agency subscriptions: list them, enable a disabled one, replay what one missed.
    Agencies {
        /// Before or after the subcommand (`agencies --config F list` = `agencies list --config F`).
        #[arg(long, short, env = "GATEWAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AgenciesAction,
    },
    /// A dossier's trail: every attempt and outcome on every route, as a table.
    Trace {
        /// The dossier code (the ordering key).
        dossier: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// The evidence log: verify every chain and time-stamp, export a dossier's proof, prune.
    Evidence {
        #[command(subcommand)]
        action: crate::cli::evidence::EvidenceAction,
    },
    /// An agency's pull feed as the store holds it: the page for `--after N` (the bytes the
    /// agency gets, unsigned), or with `--since TIME` the cursor to page from. Reads only.
    Feed {
        /// The pull subscription.
        subscription: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// The cursor after which to read (0: from the start).
        #[arg(long, conflicts_with = "since")]
        after: Option<u64>,
        /// Entries at most (up to 1000).
        #[arg(long, conflicts_with = "since")]
        limit: Option<u32>,
        /// An RFC 3339 time: print the cursor from which every entry since then follows.
        #[arg(long)]
        since: Option<String>,
    },
    /// The JSON Schema of what an agency can receive for an event kind (every field, personal
    /// ones marked), generated from the code; docs/schemas/kinds/ holds copies.
    Schema {
        /// The event kind, e.g. `dossier.upserted`.
        kind: String,
    },
    /// Routes, queue depths and open dead letters.
    Status {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Sign a file with a profile or a key: XML → XML-DSig enveloped, JSON → JWS compact
    /// (`--detached`: RFC 7797). Exit 2 on usage/config errors.
    Sign(crate::cli::sign::SignArgs),
    /// Verify a signed file (XML-DSig, compact or detached JWS) with a profile, a pinned
    /// certificate or trust anchors; says by whom, or exactly why not. Exit 1 when it fails.
    Verify(crate::cli::sign::VerifyArgs),
    /// edXML envelopes of the document axis (QCVN 102:2016): build (and sign) one from a JSON
    /// description and files, inspect one, verify one's structure and signature (exit 1 if not).
    Edxml {
        #[command(subcommand)]
        action: crate::cli::edxml::EdxmlAction,
    },
    /// The portal's catalogue: `sync` compares it with the last run once and publishes only
    /// the changes (the `[catalogue]` section); prints added/changed/removed/unchanged.
    Catalogue {
        /// Only `sync`.
        action: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Online fee payment: `reconcile` asks the providers about overdue orders (and, with
    /// `--date`, that day's orders), settles what they say and prints the mismatches.
    Payments {
        /// Only `reconcile`.
        action: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// The day to reconcile, `yyyy-mm-dd` (GMT+7).
        #[arg(long)]
        date: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Remote-signing requests: `list` them, `show` one with its states and times (and
    /// `--document FILE` its signed document), `cancel` one that has not finished.
    Signing {
        #[command(subcommand)]
        action: crate::cli::signing::SigningAction,
    },
    /// The service-quality index of Decision 766 (`[indicators]`): `rebuild` folds the
    /// indicator journal again (progress bar); `report` prints a period's figures
    /// (`--period 2026-11`, `2026-Q4` or `2026`; `--level`; `--format json|csv|pdf`, a PDF
    /// to `--out FILE`); `at-risk` lists open dossiers due within `--days` working days, per
    /// unit; `lowest` ranks the units by on-time rate (`--count`, `--min-dossiers`).
    Indicators {
        /// `rebuild`, `report`, `at-risk` or `lowest`.
        action: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// `YYYY-MM`, `YYYY-Qn` or `YYYY` (default: the current month, so far).
        #[arg(long)]
        period: Option<String>,
        /// `province`, `unit` or `procedure`.
        #[arg(long, default_value = "unit")]
        level: String,
        /// `json` or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
        /// The at-risk horizon in working days (default `[indicators] at_risk_days`).
        #[arg(long)]
        days: Option<u32>,
        /// Where `--format pdf` writes the report (required with it).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The TrueType font the PDF embeds (a subset of): default DejaVu Sans from Debian's
        /// fonts-dejavu-core.
        #[arg(long, env = "GATEWAY_PDF_FONT")]
        font: Option<PathBuf>,
        /// `lowest`: how many units (default 3).
        #[arg(long)]
        count: Option<usize>,
        /// `lowest`: the fewest dossiers in 2.1's denominator to be ranked (default
        /// `[indicators] lowest_min_dossiers`).
        #[arg(long)]
        min_dossiers: Option<u64>,
    },
    /// Run the recording HTTP sink sandbox standalone.
    #[cfg(feature = "lab")]
    Sink {
        #[arg(long, default_value_t = 8181)]
        port: u16,
    },
    /// Run a strict sandbox of an external party standalone: the portal (DVCQG) or a payment
    /// provider.
    #[cfg(feature = "lab")]
    Sandbox {
        // The names come from `lab::standalone::SANDBOXES`, the one list.
        /// Which party.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            crate::lab::standalone::SANDBOXES.iter().map(|(name, _, _)| *name)
        ))]
        party: String,
        #[arg(long, default_value_t = 8282)]
        port: u16,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Sink(LabOff),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Sandbox(LabOff),
    /// Ask a running gateway's ops listener for /healthz (or /readyz with `--ready`); exit 0
    /// on 200. For container health checks on images without curl.
    Health {
        /// The configuration whose `[ops] listen` to ask.
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// The ops listener's HOST:PORT (instead of the configuration's).
        #[arg(long)]
        addr: Option<String>,
        /// Ask /readyz (broker and store answer) instead of /healthz (the process lives).
        #[arg(long)]
        ready: bool,
    },
    /// Show what a one-stop adapter makes of a sample: the canonical dossier, the national
    /// portal's payload and the vendor JSON it maps back to, schema-checked, without sending.
    Map {
        /// The adapter folder, e.g. adapters/onestop-example.
        adapter: PathBuf,
        /// A vendor JSON sample.
        sample: PathBuf,
    },
}

/// A lab command (`demo`, `bench`, `sink`, `sandbox`) in a build without the `lab` feature:
/// hidden from `--help`, takes any arguments and refuses with a clear error (exit 2) rather
/// than clap's "unrecognized subcommand".
#[cfg(not(feature = "lab"))]
#[derive(clap::Args, Debug)]
pub struct LabOff {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AgenciesAction {
    /// Every subscription: agency, delivery, kinds, fields, legal basis, enabled or not.
    List,
    /// Enable a disabled push subscription (after a 410 or a long failure); says what it
    /// missed and how to replay it.
    Enable { subscription: String },
    /// The JSON Schema of what a subscription is sent (only the fields it names, every
    /// object closed), generated from the code; docs/schemas/subscriptions/ holds copies.
    Schema { subscription: String },
    /// Send a push subscription again what was dead-lettered for it since a time.
    Replay {
        subscription: String,
        /// RFC 3339 time (`2026-12-06T08:00:00+07:00`) or a duration ago (`2h`, `3d`).
        #[arg(long)]
        since: String,
        /// Who is replaying (recorded).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List dead letters (open ones by default).
    List {
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        key: Option<String>,
        /// open, replayed, dropped or all.
        #[arg(long, default_value = "open")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one dead letter with its original envelope.
    Show { id: String },
    /// Re-publish dead letters to their route queue (recorded, idempotent).
    Replay {
        ids: Vec<String>,
        /// Replay every open dead letter of `--route`.
        #[arg(long, requires = "route")]
        all: bool,
        #[arg(long)]
        route: Option<String>,
        /// Who is replaying (recorded).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
    /// Drop dead letters (recorded; the envelope is kept for the record).
    Drop {
        ids: Vec<String>,
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
}
