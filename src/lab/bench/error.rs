//! The bench's failing steps: why a measurement (raw broker, end to end, backlog RSS, scale-out,
//! backlog drain) did not give its figures. Every variant is printed by its phase as
//! `failed: <message>` (a signing key that cannot be loaded as `cannot load the key: <message>`,
//! a latency run as `note: latency run failed: <message>`), and the next phase still runs.
//!
//! The messages read as they did when these were strings; a step whose message was the bare
//! error of the library it calls still prints only that error.

use std::path::PathBuf;
use std::process::ExitStatus;

use gw_broker::BrokerError;

/// A failing step of one bench measurement.
#[derive(Debug, thiserror::Error)]
pub(super) enum BenchError {
    // ---- the gateway's configuration and engine ----
    /// The bench's generated configuration is not TOML (the drain scenario edits it).
    #[error("bench config: {0}")]
    ConfigToml(#[source] toml::de::Error),
    /// The bench's generated configuration lacks a section the drain scenario tunes.
    #[error("bench config has no [{0}]")]
    ConfigSection(&'static str),
    /// The generated configuration does not pass `config::parse`.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The broker and store it names cannot be opened.
    #[error(transparent)]
    Backends(crate::app::AppError),
    /// The engine (routes, connectors, signing profiles) cannot be built over them.
    #[error(transparent)]
    Engine(crate::app::AppError),
    /// The route's queues (or the raw baseline's queue) cannot be declared.
    #[error(transparent)]
    Declare(BrokerError),

    /// The index phase's store URL cannot be made from the generated configuration.
    #[error("the index's store URL: {0}")]
    IndexStoreUrl(#[source] crate::config::UrlPasswordError),
    /// The index phase cannot open the index's store.
    #[error("the index's store: {0}")]
    IndexStore(#[source] gw_store::StoreError),

    // ---- the broker, through gw-broker ----
    /// The raw baseline cannot connect to RabbitMQ to declare its queue.
    #[error(transparent)]
    Connect(BrokerError),
    /// Preloading a route's queue before the consumers start.
    #[error("preload: {0}")]
    Preload(#[source] BrokerError),
    /// Publishing a measured event (latency runs, the scale-out's batches).
    #[error("publish: {0}")]
    Publish(#[source] BrokerError),
    /// A publishing task of the scale-out's latency run panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),

    // ---- the raw broker baseline, straight on lapin ----
    /// Connecting, opening a channel, confirm mode, QoS, consuming or acking.
    #[error(transparent)]
    Lapin(#[from] lapin::Error),
    /// Sending a raw publish.
    #[error("publish: {0}")]
    RawPublish(#[source] lapin::Error),
    /// Awaiting a raw publish's confirm.
    #[error("confirm: {0}")]
    RawConfirm(#[source] lapin::Error),
    /// The broker nacked a raw publish.
    #[error("publish nacked")]
    Nacked,
    /// No delivery came within 30 s.
    #[error("consume: no delivery {i} of {n}")]
    NoDelivery { i: usize, n: usize },

    // ---- the store and the outcomes ----
    /// The drain scenario notes the newest accepted version of each dossier, as
    /// `Engine::publish` does.
    #[error("noting accepted versions: {0}")]
    NoteAccepted(#[source] gw_store::StoreError),
    /// Not every event settled (delivered, superseded, dead-lettered) in time.
    #[error("timed out: {settled} of {target} settled ({retried} retried)")]
    NotSettled {
        settled: u64,
        target: u64,
        retried: u64,
    },
    /// The index phase: the route or the index did not settle every event in time.
    #[error("timed out: the route settled {route}, the index {index} of {target}")]
    IndexNotSettled { route: u64, index: u64, target: u64 },
    /// The drain scenario's backlog did not settle in time.
    #[error("drain timed out after {secs} s: {settled} of {events} settled")]
    DrainTimedOut {
        secs: u64,
        settled: u64,
        events: usize,
    },

    // ---- `gateway run` children (backlog RSS, scale-out) ----
    /// This program's own path, to start it again as a child.
    #[error(transparent)]
    CurrentExe(std::io::Error),
    /// A child's configuration file cannot be written.
    #[error(transparent)]
    WriteConfig(std::io::Error),
    /// `what` ("the gateway child", "a gateway child") cannot be started.
    #[error("cannot start {what}: {source}")]
    Child {
        what: &'static str,
        source: std::io::Error,
    },
    /// The backlog child exited while it was measured.
    #[error("the gateway child exited early: {0}")]
    ChildExited(ExitStatus),
    /// A scale-out child was started without a stdout to read.
    #[error("no stdout")]
    NoStdout,
    /// A scale-out child printed nothing within 30 s.
    #[error("a gateway child did not start within 30 s")]
    StartTimeout,
    /// A scale-out child's stdout could not be read.
    #[error(transparent)]
    ChildOutput(std::io::Error),
    /// A scale-out child closed its stdout before printing its addresses.
    #[error("a gateway child exited before it started")]
    ExitedBeforeStart,
    /// A scale-out child's first line is not `gateway running: inbound … ops …`.
    #[error("unexpected first line: {0}")]
    FirstLine(String),

    // ---- PostgreSQL, read directly by the scale-out ----
    /// Connecting to PostgreSQL.
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// Counting the route's ledger rows.
    #[error(transparent)]
    LedgerCount(tokio_postgres::Error),
    /// Reading the route's ledger rows (envelope id, time).
    #[error(transparent)]
    LedgerRows(tokio_postgres::Error),
    /// The shared ledger did not hold every outcome in time.
    #[error("timed out: {n} of {target} outcomes in the ledger")]
    TimedOut { n: i64, target: i64 },

    // ---- raw signing ----
    /// A signing key file cannot be read.
    #[error("{}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A signing key file is not a PEM private key.
    #[error("{}: {source}", path.display())]
    ParseKey {
        path: PathBuf,
        source: openssl::error::ErrorStack,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_strings_did() {
        let cases = [
            (
                BenchError::ConfigSection("adapters.dvcqg"),
                "bench config has no [adapters.dvcqg]",
            ),
            (BenchError::Nacked, "publish nacked"),
            (
                BenchError::NoDelivery { i: 3, n: 10 },
                "consume: no delivery 3 of 10",
            ),
            (
                BenchError::NotSettled {
                    settled: 7,
                    target: 10,
                    retried: 2,
                },
                "timed out: 7 of 10 settled (2 retried)",
            ),
            (
                BenchError::DrainTimedOut {
                    secs: 600,
                    settled: 7,
                    events: 10,
                },
                "drain timed out after 600 s: 7 of 10 settled",
            ),
            (
                BenchError::TimedOut { n: 7, target: 10 },
                "timed out: 7 of 10 outcomes in the ledger",
            ),
            (
                BenchError::StartTimeout,
                "a gateway child did not start within 30 s",
            ),
            (
                BenchError::Child {
                    what: "a gateway child",
                    source: std::io::Error::other("boom"),
                },
                "cannot start a gateway child: boom",
            ),
            (
                BenchError::ReadKey {
                    path: PathBuf::from("certs/sign-ec.key"),
                    source: std::io::Error::other("boom"),
                },
                "certs/sign-ec.key: boom",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
