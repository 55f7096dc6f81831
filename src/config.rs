//! Configuration: one TOML file, every field documented, named defaults, unknown keys
//! rejected, secrets only by reference.
//!
//! # Invariants
//! - Loading never stops at the first problem: [`load`] collects every unknown key (through
//!   `serde_ignored`) and every semantic problem and reports each as
//!   `file:key: what is wrong: how to fix it`. (A value of the wrong *type* stops serde at that
//!   value; that one is reported with its key path the same way.)
//! - A secret is only ever a reference (`{ env = "NAME" }` or `{ file = "path" }`); its value is
//!   read when resolved and never printed: [`Secret`]'s `Debug` and `Display` redact it.
//! - Every default is a named constant in [`defaults`], stated once.
//! - The example file `gateway.example.toml` at the repository root is loaded by a test, so it
//!   cannot drift from this module.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Every default value, in one place.
pub mod defaults {
    use std::time::Duration;
    pub const INSTANCE: &str = "gw-1";
    pub const DATA_DIR: &str = "./data";
    pub const INBOUND_LISTEN: &str = "127.0.0.1:8080";
    pub const OPS_LISTEN: &str = "127.0.0.1:9090";
    /// An adapter's `rate_limit.burst` when not given: strictly paced calls.
    pub const RATE_LIMIT_BURST: u32 = 1;
    /// Largest accepted inbound body. Dossier events carry attachments by reference, so 1 MiB
    /// is generous.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const PREFETCH: u16 = 256;
    pub const PARTITIONS: u16 = 1;
    /// Redeliveries without an ack (a crash loop) before the broker dead-letters a message.
    pub const DELIVERY_LIMIT: u32 = 20;
    pub const ROUTE_CONCURRENCY: usize = 16;
    pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
    pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(3600);
    /// A national portal can be down for days: retries go on for a week by default.
    pub const RETRY_MAX_ELAPSED: Duration = Duration::from_secs(7 * 24 * 3600);
    /// No attempt cap by default beyond the elapsed limit (0 = unlimited).
    pub const RETRY_MAX_ATTEMPTS: u32 = 0;
    /// Circuit breaker: the share (%) of failed exchanges in the window that opens it. Half:
    /// a portal failing a fifth of its calls is working (retries cover those calls); one
    /// failing most of them is down.
    pub const CIRCUIT_FAILURE_PERCENT: u32 = 50;
    /// Circuit breaker: the fewest exchanges in the window before the rate can open it (a
    /// handful of unlucky calls is not an outage).
    pub const CIRCUIT_MIN_CALLS: u32 = 20;
    /// Circuit breaker: the sliding window the failure rate is measured over.
    pub const CIRCUIT_WINDOW: Duration = Duration::from_secs(10);
    /// Circuit breaker: how long an open circuit keeps away from the destination.
    pub const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(30);
    /// Circuit breaker: probes let through when half-open; that many healthy answers close it.
    pub const CIRCUIT_PROBES: u32 = 3;
    /// OTLP/HTTP export: how often finished spans are sent.
    pub const OTLP_EXPORT_INTERVAL: Duration = Duration::from_secs(1);
    pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
    pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const HTTP_POOL_IDLE: usize = 64;
    /// Largest part of a party's answer kept in the ledger / dead letters.
    pub const ANSWER_SNIPPET_BYTES: usize = 2048;
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// How long a delivery claim lasts without a heartbeat (see `gw_store::claims`).
    pub const CLAIM_LEASE: Duration = Duration::from_secs(15);
    /// DVCQG: the `service` of the login call.
    pub const DVCQG_LOGIN_SERVICE: &str = "DangNhap";
    /// DVCQG: codes meaning the session expired. The portal's code list is not public
    /// ([open] in CONTRACTS.md): these match the portal sandbox and are configurable.
    pub const DVCQG_SESSION_EXPIRED_CODES: &[&str] = &["-2"];
    /// DVCQG: codes worth retrying (the portal's own transient faults).
    pub const DVCQG_RETRYABLE_CODES: &[&str] = &["-10"];
    /// DVCQG: "already exists" (to isUpdating=false).
    pub const DVCQG_EXISTS_CODES: &[&str] = &["-7"];
    /// DVCQG: "no such dossier" (to isUpdating=true).
    pub const DVCQG_NOT_FOUND_CODES: &[&str] = &["-8"];
    pub const DVCQG_BATCH_ITEMS: usize = 20;
    pub const DVCQG_BATCH_BYTES: usize = 256 * 1024;
    pub const DVCQG_BATCH_LINGER: Duration = Duration::ZERO;
    pub const DVCQG_BATCH_IN_FLIGHT: usize = 4;
    /// Signing: oldest accepted `created` of an HTTP message signature.
    pub const SIGNATURE_MAX_AGE: Duration = Duration::from_secs(300);
    /// Signing: furthest accepted `created` in the future (clock skew).
    pub const SIGNATURE_MAX_SKEW: Duration = Duration::from_secs(60);
    /// Signing: the header carrying a detached JWS (RFC 7797).
    pub const JWS_DETACHED_HEADER: &str = "x-jws-signature";
    /// Signing: HTTP message signatures cover these headers besides the method, target and
    /// content-digest.
    pub const SIGNATURE_COVERED_HEADERS: &[&str] = &["content-type"];
    /// Signing: live nonces remembered per verifying profile (replay protection); when full
    /// and none has expired, new requests are refused rather than old nonces forgotten.
    pub const NONCE_CAPACITY: usize = 100_000;
    /// Catalogue sync: how often the portal's catalogue is compared with the last run.
    pub const CATALOGUE_INTERVAL: Duration = Duration::from_secs(3600);
    /// Catalogue sync: the source name its change events carry (routes take `from` it).
    pub const CATALOGUE_SOURCE: &str = "catalogue";
    /// Online dossiers: how often the portal is polled.
    pub const ONLINE_INTERVAL: Duration = Duration::from_secs(300);
    /// Online dossiers: the source name their events carry.
    pub const ONLINE_SOURCE: &str = "online";
    /// Online dossiers: the body field carrying the cursor ([open]; the sandbox's).
    pub const ONLINE_CURSOR_PARAM: &str = "tuNgay";
    /// Online dossiers: the dossier field the cursor follows (a `yyyyMMddHHmmss` date).
    pub const ONLINE_CURSOR_FIELD: &str = "NgayTiepNhan";
    /// Online dossiers: the dossier field holding its code (the event key).
    pub const ONLINE_CODE_FIELD: &str = "MaHoSo";
}

/// A problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.key, self.what, self.fix)
    }
}

/// Every problem of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A reference to a secret. The value is read by [`SecretRef::resolve`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env { env: String },
    /// Read from a file (trailing newline trimmed); relative to the config file.
    File { file: PathBuf },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env { env } => write!(f, "secret(env {env})"),
            SecretRef::File { file } => write!(f, "secret(file {})", file.display()),
        }
    }
}

/// A resolved secret value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SecretRef {
    /// Read the secret. `base` is the config file's folder (for relative file paths).
    ///
    /// An empty or whitespace-only value is an error, never "no secret": an empty token would
    /// otherwise switch authentication off.
    pub fn resolve(&self, base: &Path) -> Result<Secret, String> {
        self.read(base).map_err(|e| e.to_string())
    }

    /// Read the secret, telling apart a reference that cannot be read here (the variable is
    /// unset, the file is missing: perhaps only on the build machine) from one that reads empty
    /// (always a mistake). `check-config` reports the first and refuses the second.
    pub fn read(&self, base: &Path) -> Result<Secret, SecretProblem> {
        let (value, whence) = match self {
            SecretRef::Env { env } => (
                std::env::var(env).map_err(|_| {
                    SecretProblem::Unavailable(format!("environment variable {env} is not set"))
                })?,
                format!("environment variable {env}"),
            ),
            SecretRef::File { file } => {
                let p = if file.is_absolute() {
                    file.clone()
                } else {
                    base.join(file)
                };
                let s = std::fs::read_to_string(&p).map_err(|e| {
                    SecretProblem::Unavailable(format!(
                        "cannot read secret file {}: {e}",
                        p.display()
                    ))
                })?;
                (
                    s.trim_end_matches(['\n', '\r']).to_string(),
                    format!("secret file {}", p.display()),
                )
            }
        };
        if value.trim().is_empty() {
            return Err(SecretProblem::Empty(format!(
                "{whence} is empty: a secret must have a value"
            )));
        }
        Ok(Secret(value))
    }
}

/// Why a secret reference gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// Not readable here: the variable is unset or the file cannot be read.
    Unavailable(String),
    /// Read, but empty or whitespace: never accepted (it would switch a check off).
    Empty(String),
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretProblem::Unavailable(m) | SecretProblem::Empty(m) => f.write_str(m),
        }
    }
}

/// A duration written as `250ms`, `5s`, `2m`, `1h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parse `250ms`, `5s`, `2m`, `1h`, `7d` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "`{s}` is not a duration: write a whole number and a unit, like 500ms, 5s, 2m, 1h, 7d"
        )
    })?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}`: use ms, s, m, h or d, like 500ms or 5s"
            ))
        }
    };
    Ok(Duration::from_millis(ms))
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// The message broker; absent = the embedded durable queue under `data_dir`.
    #[serde(default)]
    pub broker: BrokerSection,
    /// The store; absent = SQLite under `data_dir`.
    #[serde(default)]
    pub store: StoreSection,
    /// The inbound HTTP listener that sources receive events on.
    #[serde(default)]
    pub inbound: InboundSection,
    /// The operations listener (health, metrics).
    #[serde(default)]
    pub ops: OpsSection,
    /// Default retry policy for every route (a route may override it).
    #[serde(default)]
    pub retry: RetrySection,
    /// Circuit breaker of every route (each route has its own; see `src/circuit.rs`).
    #[serde(default)]
    pub circuit: CircuitSection,
    /// Inbound sources by name: where events come from.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    /// Destination adapters by name: where events go.
    #[serde(default)]
    pub adapters: BTreeMap<String, AdapterSection>,
    /// Routes: from a source and a kind pattern to an adapter.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Signing profiles by name: how an adapter signs what it sends (`signing = "NAME"`) and
    /// how a source's requests are verified (`verify = "NAME"`).
    #[serde(default)]
    pub signing: BTreeMap<String, SigningSection>,
    /// Periodic sync of the portal's catalogue (procedures, agencies, fields): only changes
    /// are published, as events of source `catalogue.source_name`. Absent = off.
    #[serde(default)]
    pub catalogue: Option<CatalogueSection>,
    /// Periodic poll of the dossiers citizens submitted on the portal, published as
    /// `dossier.online` events of source `online.source_name`. Absent = off.
    #[serde(default)]
    pub online: Option<OnlineSection>,
    /// Online fee payment (`crate::payments`): providers, grouping, deadlines. Absent = off.
    #[serde(default)]
    pub payments: Option<crate::payments::config::PaymentsSection>,
    /// The evidence log (`src/evidence`): mode per adapter, body key, time-stamping,
    /// retention. Absent = every adapter in `metadata` mode, no time-stamping, kept forever.
    #[serde(default)]
    pub evidence: crate::evidence::EvidenceSection,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySection {
    /// This instance's name (logs, the embedded queue's lease owner). Default `gw-1`.
    #[serde(default = "d_instance")]
    pub instance: String,
    /// Folder for the embedded queue and the SQLite store. Default `./data`.
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
    /// How long shutdown waits for in-flight work. Default 30s.
    #[serde(default = "d_shutdown")]
    pub shutdown_grace: Dur,
    /// How long a delivery claim (the store's hold on a dossier at one destination while an
    /// exchange is sent) lasts without a heartbeat. A claim found expired mid-send marks the
    /// exchange in doubt. Must be above zero; keep it above the destination's request timeout
    /// (the heartbeat extends it every third of the lease). Default 15s.
    #[serde(default = "d_claim_lease")]
    pub claim_lease: Dur,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            instance: d_instance(),
            data_dir: d_data_dir(),
            shutdown_grace: d_shutdown(),
            claim_lease: d_claim_lease(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BrokerSection {
    /// `amqp://user@host:5672/vhost` for RabbitMQ (password by `password`); absent = embedded.
    #[serde(default)]
    pub url: Option<String>,
    /// RabbitMQ password, by reference; inserted into the URL at connect time.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Unacked deliveries per consumer. Default 256.
    #[serde(default = "d_prefetch")]
    pub prefetch: u16,
    /// Queues per route; keys are hashed onto them, each consumed by one active consumer.
    /// Default 1.
    #[serde(default = "d_partitions")]
    pub partitions: u16,
    /// Redeliveries without an ack before the broker dead-letters a message. Default 20.
    #[serde(default = "d_delivery_limit")]
    pub delivery_limit: u32,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            prefetch: d_prefetch(),
            partitions: d_partitions(),
            delivery_limit: d_delivery_limit(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoreSection {
    /// `postgres://user@host/db` for PostgreSQL (password by `password`); absent = SQLite file
    /// `store.db` under `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL password, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboundSection {
    /// Address the inbound listener binds. Default `127.0.0.1:8080`.
    #[serde(default = "d_inbound")]
    pub listen: String,
    /// Largest accepted body in bytes; larger gets 413. Default 1 MiB.
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
    /// A client must send a whole request head within this (also the idle limit of a
    /// kept-alive connection). Default 10s.
    #[serde(default = "d_header_timeout")]
    pub header_read_timeout: Dur,
    /// A request body must arrive within this after its head (else 408). Default 30s.
    #[serde(default = "d_body_timeout")]
    pub body_read_timeout: Dur,
    /// Connections served at once (the inbound and the ops listener each). Default 1024.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Requests of one source handled at once; more get 503 with Retry-After. Default 256.
    #[serde(default = "d_source_concurrency")]
    pub source_concurrency: usize,
}

impl Default for InboundSection {
    fn default() -> Self {
        Self {
            listen: d_inbound(),
            max_body_bytes: d_max_body(),
            header_read_timeout: d_header_timeout(),
            body_read_timeout: d_body_timeout(),
            max_connections: d_max_connections(),
            source_concurrency: d_source_concurrency(),
        }
    }
}

impl InboundSection {
    /// The listener limits ([`crate::transport::serve`]).
    pub fn limits(&self) -> crate::transport::serve::Limits {
        crate::transport::serve::Limits {
            header_read_timeout: self.header_read_timeout.0,
            body_read_timeout: self.body_read_timeout.0,
            max_connections: self.max_connections,
        }
    }
}

fn d_header_timeout() -> Dur {
    Dur(crate::transport::serve::DEFAULT_LIMITS.header_read_timeout)
}
fn d_body_timeout() -> Dur {
    Dur(crate::transport::serve::DEFAULT_LIMITS.body_read_timeout)
}
fn d_max_connections() -> usize {
    crate::transport::serve::DEFAULT_LIMITS.max_connections
}
fn d_source_concurrency() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
pub struct OpsSection {
    /// Address of the ops listener. Default `127.0.0.1:9090`.
    #[serde(default = "d_ops")]
    pub listen: String,
    /// Bearer tokens of the ops API and dashboard (`/api/v1/…`, `/`). None = the API and the
    /// dashboard are off; `/healthz`, `/readyz` and `/metrics` answer either way.
    #[serde(default)]
    pub tokens: Vec<OpsTokenSection>,
    /// OpenTelemetry: the OTLP/HTTP endpoint (collector base URL, e.g.
    /// `http://127.0.0.1:4318`) that per-message spans are exported to, as OTLP JSON at
    /// `<endpoint>/v1/traces`. None (the default) = no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Default for OpsSection {
    fn default() -> Self {
        Self {
            listen: d_ops(),
            tokens: Vec::new(),
            otlp_endpoint: None,
        }
    }
}

/// One ops API token: `{ name = "alice", role = "operator", token = { env = "NAME" } }`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpsTokenSection {
    /// Who holds it: recorded as `settled_by` on every replay and drop made with it.
    pub name: String,
    /// `viewer` (read only) or `operator` (may also replay and drop dead letters).
    pub role: OpsRole,
    /// The token value, by reference.
    pub token: SecretRef,
}

/// What an ops token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpsRole {
    /// Read the API and the dashboard.
    Viewer,
    /// Read, and replay or drop dead letters.
    Operator,
}

/// Capped exponential backoff with full jitter, limited by attempts and by elapsed time.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct RetrySection {
    /// First delay. Default 1s.
    #[serde(default = "d_retry_initial")]
    pub initial: Dur,
    /// Largest delay between attempts. Default 1h.
    #[serde(default = "d_retry_max_delay")]
    pub max_delay: Dur,
    /// Give up after this long since the first attempt. Default 7d.
    #[serde(default = "d_retry_max_elapsed")]
    pub max_elapsed: Dur,
    /// Give up after this many attempts; 0 = no cap (the elapsed limit still applies).
    #[serde(default)]
    pub max_attempts: u32,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            initial: d_retry_initial(),
            max_delay: d_retry_max_delay(),
            max_elapsed: d_retry_max_elapsed(),
            max_attempts: defaults::RETRY_MAX_ATTEMPTS,
        }
    }
}

/// The circuit breaker of each route (see `src/circuit.rs`): when at least `failure_percent`
/// % of at least `min_calls` exchanges in the last `window` failed (transport errors,
/// timeouts, 5xx; never 429 or a business refusal), the route stops calling its destination
/// for `open_for` (nothing is lost: the deliveries wait), then lets `probes` calls through.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct CircuitSection {
    /// Share (%) of failed exchanges in the window that opens the circuit, 1 to 100. Default 50.
    #[serde(default = "d_circuit_failure_percent")]
    pub failure_percent: u32,
    /// Fewest exchanges in the window before the rate counts; 0 = no breaker. Default 20.
    #[serde(default = "d_circuit_min_calls")]
    pub min_calls: u32,
    /// The sliding window. Default 10s.
    #[serde(default = "d_circuit_window")]
    pub window: Dur,
    /// How long an open circuit keeps away from the destination before probing. Default 30s.
    #[serde(default = "d_circuit_open_for")]
    pub open_for: Dur,
    /// Probes when half-open; that many healthy answers close it. Default 3.
    #[serde(default = "d_circuit_probes")]
    pub probes: u32,
}

impl Default for CircuitSection {
    fn default() -> Self {
        Self {
            failure_percent: d_circuit_failure_percent(),
            min_calls: d_circuit_min_calls(),
            window: d_circuit_window(),
            open_for: d_circuit_open_for(),
            probes: d_circuit_probes(),
        }
    }
}

fn d_circuit_failure_percent() -> u32 {
    defaults::CIRCUIT_FAILURE_PERCENT
}
fn d_circuit_min_calls() -> u32 {
    defaults::CIRCUIT_MIN_CALLS
}
fn d_circuit_window() -> Dur {
    Dur(defaults::CIRCUIT_WINDOW)
}
fn d_circuit_probes() -> u32 {
    defaults::CIRCUIT_PROBES
}
fn d_circuit_open_for() -> Dur {
    Dur(defaults::CIRCUIT_OPEN_FOR)
}

/// Partial retry settings a route can override.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RetryOverride {
    pub initial: Option<Dur>,
    pub max_delay: Option<Dur>,
    pub max_elapsed: Option<Dur>,
    pub max_attempts: Option<u32>,
}

/// An inbound source: events arrive at `POST /in/<name>`.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSection {
    /// Bearer token senders must present, by reference. Absent = no authentication
    /// (allowed only on a loopback listener; `check-config` says so).
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Event kinds this source may send (patterns with a trailing `*`). Default: any.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Signing profile whose keys must have signed every request (`jws-detached` or
    /// `http-signature`), checked before the body is read as an event. Default: none.
    #[serde(default)]
    pub verify: Option<String>,
    /// A declarative one-stop adapter folder (`adapters/<name>/`, relative to this file): the
    /// request body is then the vendor's own JSON, mapped to the canonical dossier by the
    /// adapter's mapping (kind, key and version come from it). Absent: the body is a generic
    /// event `{"kind", "key", "version"?, "payload"}`.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
}

/// A destination adapter.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterSection {
    /// Connector kind: `http` (a generic JSON POST).
    pub connector: String,
    /// Where to send.
    pub url: String,
    /// Whole request timeout. Default 30s.
    #[serde(default = "d_http_timeout")]
    pub timeout: Dur,
    /// Connect timeout. Default 10s.
    #[serde(default = "d_http_connect_timeout")]
    pub connect_timeout: Dur,
    /// Bearer token sent as `Authorization`, by reference.
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    /// TLS settings (server CA, client certificate for mTLS).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Extra fixed headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Settings of the `dvcqg` connector (the national public service portal).
    #[serde(default)]
    pub dvcqg: Option<DvcqgSection>,
    /// Signing profile (a `[signing.NAME]` table) applied to every request. Default: unsigned.
    #[serde(default)]
    pub signing: Option<String>,
    /// The party's call quota, e.g. `{ per_sec = 20.0, burst = 5 }`: every call of this adapter
    /// (deliveries, batches, logins, look-ups) waits for a slot, so a backlog drains at the
    /// quota instead of into 429s. Default: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSection>,
}

/// An adapter's outbound call quota (`crate::transport::ratelimit`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLimitSection {
    /// Calls per second, > 0.
    pub per_sec: f64,
    /// Calls that may go back to back after a quiet time, ≥ 1. Default 1.
    #[serde(default = "d_rate_burst")]
    pub burst: u32,
}

fn d_rate_burst() -> u32 {
    defaults::RATE_LIMIT_BURST
}

/// The national public service portal (DVCQG). `url` of the adapter is the integration
/// endpoint (sync operations); `sharing_url` the sharing endpoint (catalogue, look-ups).
#[derive(Debug, Clone, Deserialize)]
pub struct DvcqgSection {
    /// Sharing endpoint (catalogue, `TraCuuHoSo`). Default: the integration `url`.
    #[serde(default)]
    pub sharing_url: Option<String>,
    /// The unit's code, sent as `madonvi` and the `dstcode` header, e.g. `000.00.01.H22`.
    pub unit_code: String,
    /// `session` (login with username/password, session in every body) or `oauth2` (client
    /// credentials at the provincial integration platform, bearer token). Default `session`.
    #[serde(default = "d_dvcqg_auth")]
    pub auth: String,
    /// Session login: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Session login: password, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Session login: URL of the login call. Default: the integration `url`.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Session login: the `service` value of the login body. Default `DangNhap`.
    #[serde(default = "d_dvcqg_login_service")]
    pub login_service: String,
    /// OAuth2: token endpoint (`POST {token_url}` with `grant_type=client_credentials`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// OAuth2: client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth2: client secret, by reference.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Table of local procedure codes → national codes (`MaTTHC`), a TOML file
    /// `[codes] "LOCAL" = "1.001234"`. A code already national (`d.dddddd`) passes as is.
    #[serde(default)]
    pub procedures: Option<PathBuf>,
    /// How `isUpdating` is decided: `ledger` (true when the gateway delivered a version of the
    /// dossier before) or `lookup` (ask the portal with `TraCuuHoSo` when the ledger does not
    /// know it). Default `ledger`.
    #[serde(default = "d_dvcqg_is_updating")]
    pub is_updating: String,
    /// `error_code` values that mean the session expired (renewed once, transparently).
    #[serde(default = "d_dvcqg_expired_codes")]
    pub session_expired_codes: Vec<String>,
    /// `error_code` values worth retrying (the portal's transient faults). Every other
    /// non-zero code is a refusal of the content: dead-lettered with the portal's message.
    #[serde(default = "d_dvcqg_retryable_codes")]
    pub retryable_codes: Vec<String>,
    /// `error_code` values meaning "this dossier already exists" (answered to isUpdating=false):
    /// the call is repeated once with isUpdating=true.
    #[serde(default = "d_dvcqg_exists_codes")]
    pub exists_codes: Vec<String>,
    /// `error_code` values meaning "no such dossier" (answered to isUpdating=true): repeated
    /// once with isUpdating=false.
    #[serde(default = "d_dvcqg_not_found_codes")]
    pub not_found_codes: Vec<String>,
    /// Most dossiers in one `data` array. Default 20.
    #[serde(default = "d_dvcqg_batch_items")]
    pub batch_max_items: usize,
    /// Most bytes of one batch body. Default 256 KiB.
    #[serde(default = "d_dvcqg_batch_bytes")]
    pub batch_max_bytes: usize,
    /// How long a batch that is not full waits for companions. Default 0: a batch goes as soon
    /// as a call slot is free, and what arrives while the calls are in flight forms the next
    /// one (batches grow with load without adding latency when the portal is idle).
    #[serde(default = "d_dvcqg_linger")]
    pub batch_linger: Dur,
    /// Batch calls of one operation in flight at once. Default 4. (One dossier is never in two
    /// at once: a route lane waits for a dossier's delivery before its next message.)
    #[serde(default = "d_dvcqg_in_flight")]
    pub batch_in_flight: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsSection {
    /// PEM file of the CA(s) that issue the party's server certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mTLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM client private key for mTLS, by reference (it is a secret).
    #[serde(default)]
    pub client_key: Option<SecretRef>,
}

/// A route: from a source and kinds to a destination adapter.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteSection {
    /// Unique name; it names the route's queues (`gw.route.<name>.p<N>`).
    pub name: String,
    /// Source name (a key of `[sources]`).
    pub from: String,
    /// Kind patterns (`dossier.*`, `payment.settled`); default: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Destination adapter (a key of `[adapters]`).
    pub to: String,
    /// Messages processed at once (distinct keys; one key is always one at a time). Default 16.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Retry policy overrides for this route.
    #[serde(default)]
    pub retry: RetryOverride,
}

fn d_instance() -> String {
    defaults::INSTANCE.into()
}
fn d_data_dir() -> PathBuf {
    defaults::DATA_DIR.into()
}
fn d_shutdown() -> Dur {
    Dur(defaults::SHUTDOWN_GRACE)
}
fn d_claim_lease() -> Dur {
    Dur(defaults::CLAIM_LEASE)
}
fn d_prefetch() -> u16 {
    defaults::PREFETCH
}
fn d_partitions() -> u16 {
    defaults::PARTITIONS
}
fn d_delivery_limit() -> u32 {
    defaults::DELIVERY_LIMIT
}
fn d_inbound() -> String {
    defaults::INBOUND_LISTEN.into()
}
fn d_max_body() -> usize {
    defaults::MAX_BODY_BYTES
}
fn d_ops() -> String {
    defaults::OPS_LISTEN.into()
}
fn d_retry_initial() -> Dur {
    Dur(defaults::RETRY_INITIAL)
}
fn d_retry_max_delay() -> Dur {
    Dur(defaults::RETRY_MAX_DELAY)
}
fn d_retry_max_elapsed() -> Dur {
    Dur(defaults::RETRY_MAX_ELAPSED)
}
fn d_http_timeout() -> Dur {
    Dur(defaults::HTTP_TIMEOUT)
}
fn d_http_connect_timeout() -> Dur {
    Dur(defaults::HTTP_CONNECT_TIMEOUT)
}
fn d_dvcqg_auth() -> String {
    "session".into()
}
fn d_dvcqg_login_service() -> String {
    defaults::DVCQG_LOGIN_SERVICE.into()
}
fn d_dvcqg_is_updating() -> String {
    "ledger".into()
}
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn d_dvcqg_expired_codes() -> Vec<String> {
    strings(defaults::DVCQG_SESSION_EXPIRED_CODES)
}
fn d_dvcqg_retryable_codes() -> Vec<String> {
    strings(defaults::DVCQG_RETRYABLE_CODES)
}
fn d_dvcqg_exists_codes() -> Vec<String> {
    strings(defaults::DVCQG_EXISTS_CODES)
}
fn d_dvcqg_not_found_codes() -> Vec<String> {
    strings(defaults::DVCQG_NOT_FOUND_CODES)
}
fn d_dvcqg_batch_items() -> usize {
    defaults::DVCQG_BATCH_ITEMS
}
fn d_dvcqg_batch_bytes() -> usize {
    defaults::DVCQG_BATCH_BYTES
}
fn d_dvcqg_in_flight() -> usize {
    defaults::DVCQG_BATCH_IN_FLIGHT
}
fn d_dvcqg_linger() -> Dur {
    Dur(defaults::DVCQG_BATCH_LINGER)
}
fn d_concurrency() -> usize {
    defaults::ROUTE_CONCURRENCY
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file (or `<embedded>`), for messages.
    pub origin: String,
    /// Folder relative paths and secret files resolve against.
    pub base: PathBuf,
}

impl RouteSection {
    /// This route's effective retry policy.
    pub fn retry_policy(&self, defaults: &RetrySection) -> RetrySection {
        RetrySection {
            initial: self.retry.initial.unwrap_or(defaults.initial),
            max_delay: self.retry.max_delay.unwrap_or(defaults.max_delay),
            max_elapsed: self.retry.max_elapsed.unwrap_or(defaults.max_elapsed),
            max_attempts: self.retry.max_attempts.unwrap_or(defaults.max_attempts),
        }
    }
}

/// Whether a kind list (of a route or a source) admits `kind`: an empty list admits every kind.
pub fn kinds_admit(patterns: &[String], kind: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| kind_matches(p, kind))
}

/// `dossier.*` matches `dossier.upserted`; `*` matches everything; otherwise exact.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Load and validate a file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            file: origin.clone(),
            key: "-".into(),
            what: format!("cannot read the file: {e}"),
            fix: "give the path of an existing, readable TOML file".into(),
        }],
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &origin, base)
}

/// Parse and validate TOML text. `origin` names it in messages.
pub fn parse(text: &str, origin: &str, base: PathBuf) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let problem = |key: &str, what: String, fix: &str| Problem {
        file: origin.to_string(),
        key: key.to_string(),
        what,
        fix: fix.to_string(),
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
        problems: vec![problem(
            "-",
            format!("not valid TOML: {}", e.message()),
            "fix the syntax at the position shown",
        )],
    });
    let de = de?;
    let mut unknown = Vec::new();
    let parsed: Result<Config, _> = serde_ignored::deserialize(de, |p| unknown.push(p.to_string()));
    for key in unknown {
        problems.push(problem(
            &bracket_indices(&key),
            "unknown key".into(),
            "remove it or check its spelling against gateway.example.toml",
        ));
    }
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            let msg = e.message().to_string();
            let span_key = e
                .span()
                .map(|s| locate_key(text, s.start))
                .unwrap_or_else(|| "-".to_string());
            problems.push(problem(
                &span_key,
                format!("invalid value: {msg}"),
                "see the field's documentation in gateway.example.toml",
            ));
            return Err(ConfigError { problems });
        }
    };
    validate(&config, &mut problems, origin);
    validate_signing(&config, &base, &mut problems, origin);
    if problems.is_empty() {
        Ok(Loaded {
            config,
            origin: origin.to_string(),
            base,
        })
    } else {
        Err(ConfigError { problems })
    }
}

/// `routes.0.name` → `routes[0].name`, the way validation messages name array items.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.') {
        // serde_ignored writes `?` for the inside of an `Option` (`tls.?.ca`): not a key.
        if seg == "?" {
            continue;
        }
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The `key = ` or `[table]` a byte offset falls in, for messages.
fn locate_key(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    match (
        table.is_empty(),
        key.is_empty() || line.trim_start().starts_with('['),
    ) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn validate(c: &Config, problems: &mut Vec<Problem>, origin: &str) {
    let mut p = |key: String, what: String, fix: &str| {
        problems.push(Problem {
            file: origin.to_string(),
            key,
            what,
            fix: fix.to_string(),
        })
    };
    if c.gateway.claim_lease.0.is_zero() {
        p(
            "gateway.claim_lease".into(),
            "the claim lease is zero: every claim would expire at once".into(),
            "write a duration above zero, e.g. claim_lease = \"15s\"",
        );
    }
    if let Some(url) = &c.broker.url {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            p(
                "broker.url".into(),
                format!("`{url}` is not an AMQP URL"),
                "write amqp://user@host:5672/%2f, or remove it to use the embedded queue",
            );
        }
        if url_has_password(url) {
            p(
                "broker.url".into(),
                "the URL contains a password".into(),
                "move it to broker.password = { env = \"NAME\" }",
            );
        }
    }
    if let Some(url) = &c.store.url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            p(
                "store.url".into(),
                format!("`{url}` is not a PostgreSQL URL"),
                "write postgres://user@host/db, or remove it to use SQLite",
            );
        }
        if url_has_password(url) {
            p(
                "store.url".into(),
                "the URL contains a password".into(),
                "move it to store.password = { env = \"NAME\" }",
            );
        }
    }
    if c.broker.prefetch == 0 {
        p(
            "broker.prefetch".into(),
            "must be at least 1".into(),
            "set a value such as 256",
        );
    }
    if c.broker.partitions == 0 {
        p(
            "broker.partitions".into(),
            "must be at least 1".into(),
            "set 1, or more to spread keys over several queues",
        );
    }
    if c.broker.delivery_limit < 2 {
        p(
            "broker.delivery_limit".into(),
            "must be at least 2".into(),
            "set a value such as 20",
        );
    }
    for (key, addr) in [
        ("inbound.listen", &c.inbound.listen),
        ("ops.listen", &c.ops.listen),
    ] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            p(
                key.into(),
                format!("`{addr}` is not an address"),
                "write IP:PORT, like 127.0.0.1:8080",
            );
        }
    }
    if c.inbound.listen == c.ops.listen && !c.inbound.listen.ends_with(":0") {
        p(
            "ops.listen".into(),
            "the same address as inbound.listen".into(),
            "give the ops listener its own port",
        );
    }
    if let Some(u) = &c.ops.otlp_endpoint {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            p(
                "ops.otlp_endpoint".into(),
                format!("`{u}` is not an http(s) URL"),
                "write the collector's OTLP/HTTP base URL, like http://127.0.0.1:4318",
            );
        }
    }
    if c.circuit.min_calls > 0 {
        if c.circuit.open_for.0.is_zero() {
            p(
                "circuit.open_for".into(),
                "must be more than 0 while the breaker is on".into(),
                "set a cool-down such as 30s, or circuit.min_calls = 0 to turn the breaker off",
            );
        }
        if c.circuit.window.0.is_zero() {
            p(
                "circuit.window".into(),
                "must be more than 0 while the breaker is on".into(),
                "set a window such as 10s",
            );
        }
        if !(1..=100).contains(&c.circuit.failure_percent) {
            p(
                "circuit.failure_percent".into(),
                format!("{} is not a share from 1 to 100", c.circuit.failure_percent),
                "set a share such as 50",
            );
        }
        if c.circuit.probes == 0 {
            p(
                "circuit.probes".into(),
                "must be at least 1".into(),
                "set a few probes, such as 3",
            );
        }
    }
    let mut token_names = std::collections::BTreeSet::new();
    for (i, t) in c.ops.tokens.iter().enumerate() {
        if !valid_name(&t.name) {
            p(
                format!("ops.tokens[{i}].name"),
                format!("`{}` has characters other than a-z, 0-9, - and _", t.name),
                "name the token after its holder, like alice",
            );
        }
        if !token_names.insert(t.name.clone()) {
            p(
                format!("ops.tokens[{i}].name"),
                format!("token `{}` is defined twice", t.name),
                "give each token its own name: replays and drops are recorded under it",
            );
        }
    }
    if c.inbound.max_body_bytes == 0 {
        p(
            "inbound.max_body_bytes".into(),
            "must be more than 0".into(),
            "set a cap such as 1048576",
        );
    }
    for (at, zero) in [
        (
            "inbound.header_read_timeout",
            c.inbound.header_read_timeout.0.is_zero(),
        ),
        (
            "inbound.body_read_timeout",
            c.inbound.body_read_timeout.0.is_zero(),
        ),
        ("inbound.max_connections", c.inbound.max_connections == 0),
        (
            "inbound.source_concurrency",
            c.inbound.source_concurrency == 0,
        ),
    ] {
        if zero {
            p(
                at.into(),
                "must be more than 0".into(),
                "leave it out for the default",
            );
        }
    }
    check_retry(&c.retry, "retry", &mut p);
    let inbound_loopback = listen_is_loopback(&c.inbound.listen);
    if let Some(pay) = &c.payments {
        if pay.token.is_none() && !inbound_loopback {
            p(
                "payments.token".into(),
                "no token on a non-loopback listener: anyone could create payment orders".into(),
                "set token = { env = \"NAME\" } (the one-stop system presents it)",
            );
        }
    }
    for (name, s) in &c.sources {
        if !valid_name(name) {
            p(
                format!("sources.{name}"),
                "the name has characters other than a-z, 0-9, - and _".into(),
                "rename it",
            );
        }
        if s.token.is_none() && !inbound_loopback {
            p(
                format!("sources.{name}.token"),
                "no token on a non-loopback listener: anyone could inject events".into(),
                "set token = { env = \"NAME\" }",
            );
        }
    }
    for (name, a) in &c.adapters {
        if !valid_name(name) {
            p(
                format!("adapters.{name}"),
                "the name has characters other than a-z, 0-9, - and _".into(),
                "rename it",
            );
        }
        match a.connector.as_str() {
            "http" => {}
            "dvcqg" => validate_dvcqg(name, a.dvcqg.as_ref(), &mut p),
            other => p(
                format!("adapters.{name}.connector"),
                format!("unknown connector `{other}`"),
                "use one of: http, dvcqg",
            ),
        }
        if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
            p(
                format!("adapters.{name}.url"),
                format!("`{}` is not an http(s) URL", a.url),
                "write https://host/path",
            );
        }
        if let Some(r) = &a.rate_limit {
            if !(r.per_sec.is_finite() && r.per_sec > 0.0) {
                p(
                    format!("adapters.{name}.rate_limit.per_sec"),
                    format!("{} is not a positive number of calls a second", r.per_sec),
                    "write e.g. per_sec = 20.0, or remove rate_limit for no limit",
                );
            }
            if r.burst == 0 {
                p(
                    format!("adapters.{name}.rate_limit.burst"),
                    "0 would let no call through".into(),
                    "write burst = 1 or more",
                );
            }
        }
        if let Some(tls) = &a.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                p(
                    format!("adapters.{name}.tls"),
                    "client_cert and client_key go together".into(),
                    "set both for mTLS, or neither",
                );
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !valid_name(&r.name) {
            p(
                format!("{at}.name"),
                format!("`{}` has characters other than a-z, 0-9, - and _", r.name),
                "rename it",
            );
        }
        if !seen.insert(r.name.clone()) {
            p(
                format!("{at}.name"),
                format!("route `{}` is defined twice", r.name),
                "give each route its own name",
            );
        }
        let job_source = c.catalogue.as_ref().map(|j| &j.source_name) == Some(&r.from)
            || c.online.as_ref().map(|j| &j.source_name) == Some(&r.from)
            || c.payments.as_ref().map(|j| &j.source_name) == Some(&r.from);
        if !c.sources.contains_key(&r.from) && !job_source {
            p(
                format!("{at}.from"),
                format!("no source named `{}`", r.from),
                "name a [sources.NAME] table, or catalogue.source_name / online.source_name",
            );
        }
        if !c.adapters.contains_key(&r.to) {
            p(
                format!("{at}.to"),
                format!("no adapter named `{}`", r.to),
                "name an [adapters.NAME] table",
            );
        }
        if r.concurrency == 0 {
            p(
                format!("{at}.concurrency"),
                "must be at least 1".into(),
                "set a value such as 16",
            );
        }
        check_retry(&r.retry_policy(&c.retry), &format!("{at}.retry"), &mut p);
    }
    validate_jobs(c, &mut p);
    if let Some(pay) = &c.payments {
        crate::payments::config::validate(pay, &mut p);
        // payment.settled events carry this source name: an inbound source of the same name
        // could post them with its token.
        if c.sources.contains_key(&pay.source_name) {
            p(
                "payments.source_name".into(),
                format!("`{}` is also a [sources] name", pay.source_name),
                "give the payment events their own source name, so they cannot be posted from outside",
            );
        }
        for (at, job) in [
            ("catalogue", c.catalogue.as_ref().map(|j| &j.source_name)),
            ("online", c.online.as_ref().map(|j| &j.source_name)),
        ] {
            if job == Some(&pay.source_name) {
                p(
                    "payments.source_name".into(),
                    format!("`{}` is also {at}.source_name", pay.source_name),
                    "give each job its own source name",
                );
            }
        }
    }
}

/// Whether a listen address only ever binds loopback: an IP address is decided on directly, a
/// host name by every address it resolves to (none resolved: not loopback).
pub fn listen_is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => match listen.to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<_> = addrs.collect();
                !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
            }
            Err(_) => false,
        },
    }
}

fn validate_dvcqg(name: &str, d: Option<&DvcqgSection>, p: &mut impl FnMut(String, String, &str)) {
    let at = format!("adapters.{name}.dvcqg");
    let Some(d) = d else {
        p(
            at,
            "the dvcqg connector needs its settings".into(),
            "add an [adapters.NAME.dvcqg] table with unit_code and auth",
        );
        return;
    };
    match d.auth.as_str() {
        "session" => {
            if d.username.is_none() || d.password.is_none() {
                p(
                    format!("{at}.username"),
                    "session auth needs username and password".into(),
                    "set username and password = { env = \"NAME\" }",
                );
            }
        }
        "oauth2" => {
            if d.token_url.is_none() || d.client_id.is_none() || d.client_secret.is_none() {
                p(
                    format!("{at}.token_url"),
                    "oauth2 auth needs token_url, client_id and client_secret".into(),
                    "set all three (client_secret by reference)",
                );
            }
        }
        other => p(
            format!("{at}.auth"),
            format!("unknown auth `{other}`"),
            "use session or oauth2",
        ),
    }
    if !matches!(d.is_updating.as_str(), "ledger" | "lookup") {
        p(
            format!("{at}.is_updating"),
            format!("unknown mode `{}`", d.is_updating),
            "use ledger or lookup",
        );
    }
    if d.unit_code.trim().is_empty() {
        p(
            format!("{at}.unit_code"),
            "must not be empty".into(),
            "set the unit's code, like 000.00.01.H22",
        );
    }
    if d.batch_in_flight == 0 {
        p(
            format!("{at}.batch_in_flight"),
            "0 would send nothing".into(),
            "write batch_in_flight = 1 or more",
        );
    }
    if d.batch_max_items == 0 || d.batch_max_bytes < 1024 {
        p(
            format!("{at}.batch_max_items"),
            "batches must hold at least 1 item and 1 KiB".into(),
            "raise batch_max_items / batch_max_bytes",
        );
    }
}

fn check_retry(r: &RetrySection, at: &str, p: &mut impl FnMut(String, String, &str)) {
    if r.initial.0.is_zero() {
        p(
            format!("{at}.initial"),
            "must be more than 0".into(),
            "set a first delay such as 1s",
        );
    }
    if r.max_delay.0 < r.initial.0 {
        p(
            format!("{at}.max_delay"),
            "is smaller than initial".into(),
            "make max_delay at least initial",
        );
    }
    if r.max_elapsed.0 < Duration::from_secs(1) {
        p(
            format!("{at}.max_elapsed"),
            "must be at least 1s".into(),
            "set how long to keep retrying, such as 7d",
        );
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn url_has_password(url: &str) -> bool {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|auth| auth.contains('@') && auth.split('@').next().is_some_and(|ui| ui.contains(':')))
        .unwrap_or(false)
}

impl Loaded {
    /// The embedded defaults: no file at all.
    pub fn embedded_defaults() -> Loaded {
        Loaded {
            config: Config::default(),
            origin: "<defaults>".into(),
            base: PathBuf::from("."),
        }
    }

    /// Broker URL with the password inserted, or the embedded queue's file.
    pub fn broker_url(&self) -> Result<String, String> {
        match &self.config.broker.url {
            Some(url) => with_password(url, self.config.broker.password.as_ref(), &self.base),
            None => Ok(format!(
                "sqlite:{}",
                self.data_dir().join("queue.db").display()
            )),
        }
    }

    /// Every secret reference of the configuration, with the key that holds it
    /// (`sources.portal.token`), in file order of sections. `check-config` reads each one.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let c = &self.config;
        let mut v: Vec<(String, &SecretRef)> = Vec::new();
        if let Some(r) = &c.broker.password {
            v.push(("broker.password".into(), r));
        }
        if let Some(r) = &c.store.password {
            v.push(("store.password".into(), r));
        }
        for t in &c.ops.tokens {
            v.push((format!("ops.tokens[{}].token", t.name), &t.token));
        }
        for (name, s) in &c.sources {
            if let Some(r) = &s.token {
                v.push((format!("sources.{name}.token"), r));
            }
        }
        for (name, a) in &c.adapters {
            if let Some(r) = &a.bearer {
                v.push((format!("adapters.{name}.bearer"), r));
            }
            if let Some(r) = a.tls.as_ref().and_then(|t| t.client_key.as_ref()) {
                v.push((format!("adapters.{name}.tls.client_key"), r));
            }
            if let Some(d) = &a.dvcqg {
                if let Some(r) = &d.password {
                    v.push((format!("adapters.{name}.dvcqg.password"), r));
                }
                if let Some(r) = &d.client_secret {
                    v.push((format!("adapters.{name}.dvcqg.client_secret"), r));
                }
            }
        }
        for (name, s) in &c.signing {
            if let Some(r) = &s.key_password {
                v.push((format!("signing.{name}.key_password"), r));
            }
            if let Some(r) = &s.pkcs12_password {
                v.push((format!("signing.{name}.pkcs12_password"), r));
            }
        }
        if let Some(p) = &c.payments {
            if let Some(r) = &p.token {
                v.push(("payments.token".into(), r));
            }
            for (name, s) in &p.vnpay {
                v.push((format!("payments.vnpay.{name}.hash_secret"), &s.hash_secret));
            }
            for (name, s) in &p.platform {
                v.push((format!("payments.platform.{name}.hash_key"), &s.hash_key));
            }
            for (name, s) in &p.paygov {
                v.push((format!("payments.paygov.{name}.secret_key"), &s.secret_key));
                v.push((
                    format!("payments.paygov.{name}.client_secret"),
                    &s.client_secret,
                ));
            }
            for (name, s) in &p.momo {
                v.push((format!("payments.momo.{name}.secret_key"), &s.secret_key));
            }
        }
        if let Some(r) = &c.evidence.body_key {
            v.push(("evidence.body_key".into(), r));
        }
        v
    }

    /// What `check-config` warns about without refusing: plain-text connections to a backend
    /// that is not on this machine.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let remote = |url: &str| {
            let u = reqwest::Url::parse(url).ok()?;
            let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
            let local = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host == "localhost",
            };
            (!local).then(|| host.to_string())
        };
        if let Some(url) = &self.config.broker.url {
            if url.starts_with("amqp://") {
                if let Some(host) = remote(url) {
                    w.push(format!("broker.url: plain-text AMQP to {host}: the password and dossier data cross the network unencrypted; keep the broker on a protected network segment"));
                }
            }
        }
        if let Some(p) = &self.config.payments {
            if p.fee_check == crate::payments::FeeCheck::Off {
                w.push("payments.fee_check = \"off\": order amounts are not checked against the dossier's fees; whoever holds payments.token can create an order for any amount".to_string());
            }
        }
        if let Some(url) = &self.config.store.url {
            let tls = [
                "sslmode=require",
                "sslmode=verify-ca",
                "sslmode=verify-full",
            ]
            .iter()
            .any(|m| url.contains(m));
            if !tls {
                if let Some(host) = remote(url) {
                    w.push(format!("store.url: PostgreSQL at {host} without sslmode=require/verify-full: the password and dossier data cross the network unencrypted"));
                }
            }
        }
        w
    }

    /// Store URL with the password inserted, or the SQLite file.
    pub fn store_url(&self) -> Result<String, String> {
        match &self.config.store.url {
            Some(url) => with_password(url, self.config.store.password.as_ref(), &self.base),
            None => Ok(format!(
                "sqlite:{}",
                self.data_dir().join("store.db").display()
            )),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        let d = &self.config.gateway.data_dir;
        if d.is_absolute() {
            d.clone()
        } else {
            self.base.join(d)
        }
    }
}

fn with_password(url: &str, password: Option<&SecretRef>, base: &Path) -> Result<String, String> {
    let Some(secret) = password else {
        return Ok(url.to_string());
    };
    let pw = secret.resolve(base)?;
    let (scheme, rest) = url.split_once("://").ok_or("URL without scheme")?;
    let (auth, tail) = match rest.split_once('@') {
        Some((a, t)) => (a, t),
        None => return Err("the URL names no user to attach the password to".into()),
    };
    Ok(format!(
        "{scheme}://{auth}:{}@{tail}",
        percent_encode(pw.expose())
    ))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A signing profile: one scheme with its keys, used to sign what an adapter sends and to
/// verify what a source receives. Keys are loaded once at start (`crate::signing`).
#[derive(Debug, Clone, Deserialize)]
pub struct SigningSection {
    /// required: `jws-compact` (the body becomes a compact JWS, `application/jose`),
    /// `jws-detached` (RFC 7797 detached JWS in a header, body unchanged), `xmldsig-enveloped`
    /// (XML bodies), `http-signature` (RFC 9421 with `content-digest`, `created`, `keyid`,
    /// `nonce`) or `none`.
    pub scheme: String,
    /// JWS: `ES256`, `RS256` or `PS256`; XML-DSig: `ES256`/`RS256` (must fit the key);
    /// HTTP signatures: `ecdsa-p256-sha256`, `rsa-pss-sha512` or `rsa-v1_5-sha256`.
    /// Default: from the key (ES256 / RS256; ecdsa-p256-sha256 / rsa-pss-sha512).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// PEM private key (RSA >= 2048 or P-256), with `certificate`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM certificate of `key`, leaf first, then its chain.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Password of an encrypted `key`, by reference.
    #[serde(default)]
    pub key_password: Option<SecretRef>,
    /// PKCS#12 bundle (key, certificate, chain) instead of `key` + `certificate`.
    #[serde(default)]
    pub pkcs12: Option<PathBuf>,
    /// Password of `pkcs12`, by reference (required with it).
    #[serde(default)]
    pub pkcs12_password: Option<SecretRef>,
    /// The key's id: JWS `kid`, HTTP signature `keyid`. Default: the profile's name.
    #[serde(default)]
    pub key_id: Option<String>,
    /// JWS: send the certificate chain as `x5c` instead of `kid`; XML-DSig: add the chain to
    /// `KeyInfo/X509Data` after the signer certificate. Default false.
    #[serde(default)]
    pub embed_chain: bool,
    /// `jws-detached`: the header that carries the JWS. Default `x-jws-signature`.
    #[serde(default)]
    pub header: Option<String>,
    /// `http-signature`: headers covered besides `@method`, `@target-uri` and
    /// `content-digest`. Default `["content-type"]`.
    #[serde(default)]
    pub cover_headers: Option<Vec<String>>,
    /// Keys of ours still accepted when verifying after a rotation (certificates only).
    #[serde(default)]
    pub previous: Vec<KeyCertificate>,
    /// Verification: PEM file of the CA certificates signers must chain to: the root and the
    /// intermediates that issue signers (a peer sending only its leaf needs them here).
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
    /// Verification: PEM CRLs; with them the signer's issuer must have a current CRL.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Verification: the peers' certificates, pinned, by key id.
    #[serde(default)]
    pub trusted_keys: Vec<KeyCertificate>,
    /// Verification under `trust_anchors`: the subjects a signer certificate may have, written
    /// as `gateway certs` prints them (`C=VN, O=…, CN=…`). Empty: any certificate chaining to
    /// the anchors (which may be a whole national CA) is accepted.
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    /// Verification window: oldest accepted signing time (`http-signature` `created`,
    /// `jws-detached` `iat`). Default 5m.
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// Verification window: furthest accepted signing time ahead (clock skew). Default 1m.
    #[serde(default)]
    pub max_skew: Option<Dur>,
}

/// A key id and the PEM certificate (leaf first, then its chain) carrying that key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCertificate {
    /// The id signers put in `kid` / `keyid`.
    pub key_id: String,
    /// PEM certificate file.
    pub certificate: PathBuf,
}

/// The signing schemes a profile may name.
pub const SIGNING_SCHEMES: &[&str] = &[
    "jws-compact",
    "jws-detached",
    "xmldsig-enveloped",
    "http-signature",
    "none",
];

fn validate_signing(c: &Config, base: &Path, problems: &mut Vec<Problem>, origin: &str) {
    let mut p = |key: String, what: String, fix: &str| {
        problems.push(Problem {
            file: origin.to_string(),
            key,
            what,
            fix: fix.to_string(),
        })
    };
    let resolve = |f: &Path| {
        if f.is_absolute() {
            f.to_path_buf()
        } else {
            base.join(f)
        }
    };
    for (name, s) in &c.signing {
        let at = format!("signing.{name}");
        if !valid_name(name) {
            p(
                at.clone(),
                "the name has characters other than a-z, 0-9, - and _".into(),
                "rename it",
            );
        }
        let scheme = s.scheme.as_str();
        if !SIGNING_SCHEMES.contains(&scheme) {
            p(
                format!("{at}.scheme"),
                format!("unknown scheme `{scheme}`"),
                "use one of: jws-compact, jws-detached, xmldsig-enveloped, http-signature, none",
            );
            continue;
        }
        if let Some(alg) = &s.algorithm {
            let ok: &[&str] = match scheme {
                "jws-compact" | "jws-detached" => &["ES256", "RS256", "PS256"],
                "xmldsig-enveloped" => &["ES256", "RS256"],
                "http-signature" => &["ecdsa-p256-sha256", "rsa-pss-sha512", "rsa-v1_5-sha256"],
                _ => &[],
            };
            if !ok.contains(&alg.as_str()) {
                p(
                    format!("{at}.algorithm"),
                    format!("`{alg}` is not an algorithm of scheme {scheme}"),
                    &if ok.is_empty() {
                        "remove it".to_string()
                    } else {
                        format!(
                            "use one of: {}, or remove it to follow the key",
                            ok.join(", ")
                        )
                    },
                );
            }
        }
        let check_file = |key: String, f: &Path, p: &mut dyn FnMut(String, String, &str)| {
            let full = resolve(f);
            if !full.is_file() {
                p(
                    key,
                    format!("file {} does not exist", full.display()),
                    "give the path of a readable PEM file (relative to this config file)",
                );
            }
        };
        if let Some(f) = &s.key {
            check_file(format!("{at}.key"), f, &mut p);
        }
        if let Some(f) = &s.certificate {
            check_file(format!("{at}.certificate"), f, &mut p);
        }
        if let Some(f) = &s.pkcs12 {
            check_file(format!("{at}.pkcs12"), f, &mut p);
        }
        if let Some(f) = &s.trust_anchors {
            check_file(format!("{at}.trust_anchors"), f, &mut p);
        }
        for (i, f) in s.crls.iter().enumerate() {
            check_file(format!("{at}.crls[{i}]"), f, &mut p);
        }
        for (list, keys) in [("previous", &s.previous), ("trusted_keys", &s.trusted_keys)] {
            for (i, k) in keys.iter().enumerate() {
                check_file(
                    format!("{at}.{list}[{i}].certificate"),
                    &k.certificate,
                    &mut p,
                );
                if k.key_id.trim().is_empty() {
                    p(
                        format!("{at}.{list}[{i}].key_id"),
                        "is empty".into(),
                        "give the id signers put in kid / keyid",
                    );
                }
            }
        }
        if s.key.is_some() && s.pkcs12.is_some() {
            p(
                format!("{at}.pkcs12"),
                "both key and pkcs12 are set".into(),
                "use key + certificate, or pkcs12, not both",
            );
        }
        if s.key.is_some() != s.certificate.is_some() && s.pkcs12.is_none() {
            p(
                format!("{at}.certificate"),
                "key and certificate go together".into(),
                "set both (PEM files), or use pkcs12",
            );
        }
        if s.key_password.is_some() && s.key.is_none() {
            p(
                format!("{at}.key_password"),
                "set without key".into(),
                "remove it, or set key",
            );
        }
        if s.pkcs12.is_some() != s.pkcs12_password.is_some() {
            p(
                format!("{at}.pkcs12_password"),
                "pkcs12 and pkcs12_password go together".into(),
                "set pkcs12_password = { env = \"NAME\" } with pkcs12",
            );
        }
        if !s.crls.is_empty() && s.trust_anchors.is_none() {
            p(
                format!("{at}.crls"),
                "CRLs without trust_anchors are never consulted".into(),
                "set trust_anchors, or remove crls",
            );
        }
        if !s.allowed_subjects.is_empty() && s.trust_anchors.is_none() {
            p(
                format!("{at}.allowed_subjects"),
                "subjects are checked only for certificates judged by trust_anchors".into(),
                "set trust_anchors, or remove allowed_subjects (pinned trusted_keys are already one peer each)",
            );
        }
        let windowed = scheme == "http-signature" || scheme == "jws-detached";
        for (k, set, used) in [
            ("max_age", s.max_age.is_some(), windowed),
            ("max_skew", s.max_skew.is_some(), windowed),
            (
                "cover_headers",
                s.cover_headers.is_some(),
                scheme == "http-signature",
            ),
        ] {
            if set && !used {
                p(
                    format!("{at}.{k}"),
                    format!("this profile is {scheme}, which does not use it"),
                    "remove it",
                );
            }
        }
        if s.header.is_some() && scheme != "jws-detached" {
            p(
                format!("{at}.header"),
                format!("only jws-detached uses it, this profile is {scheme}"),
                "remove it",
            );
        }
        if s.embed_chain && matches!(scheme, "http-signature" | "none") {
            p(
                format!("{at}.embed_chain"),
                format!("{scheme} carries no certificates"),
                "remove it",
            );
        }
        if let Some(h) = &s.header {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                p(
                    format!("{at}.header"),
                    format!("`{h}` is not a header name"),
                    "use letters, digits and -, like x-jws-signature",
                );
            }
        }
        if let Some(Dur(d)) = s.max_age {
            if d.is_zero() {
                p(
                    format!("{at}.max_age"),
                    "must be more than 0".into(),
                    "set a window such as 5m",
                );
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        ids.insert(s.key_id.clone().unwrap_or_else(|| name.clone()));
        for (list, keys) in [("previous", &s.previous), ("trusted_keys", &s.trusted_keys)] {
            for (i, k) in keys.iter().enumerate() {
                if !ids.insert(k.key_id.clone()) {
                    p(
                        format!("{at}.{list}[{i}].key_id"),
                        format!("key id `{}` is used twice in this profile", k.key_id),
                        "give every key its own id",
                    );
                }
            }
        }
    }
    let has_key = |s: &SigningSection| s.key.is_some() || s.pkcs12.is_some();
    for (name, a) in &c.adapters {
        let Some(prof) = &a.signing else { continue };
        let at = format!("adapters.{name}.signing");
        let Some(s) = c.signing.get(prof) else {
            p(
                at,
                format!("no signing profile named `{prof}`"),
                "name a [signing.NAME] table",
            );
            continue;
        };
        let scheme = s.scheme.as_str();
        if scheme != "none" && !has_key(s) {
            p(
                at.clone(),
                format!("profile `{prof}` has no key to sign with"),
                &format!("set key + certificate (or pkcs12) in [signing.{prof}]"),
            );
        }
        // Both connectors send JSON and their parties read it as such.
        if scheme == "xmldsig-enveloped" {
            p(
                at.clone(),
                format!(
                    "profile `{prof}` signs XML, but connector `{}` sends JSON",
                    a.connector
                ),
                "use jws-compact, jws-detached or http-signature for this adapter",
            );
        }
        if scheme == "jws-compact" && a.connector == "dvcqg" {
            p(
                at,
                format!(
                    "profile `{prof}` replaces the body by a JWS, which the portal cannot read"
                ),
                "use jws-detached or http-signature for this adapter",
            );
        }
    }
    for (name, src) in &c.sources {
        let Some(prof) = &src.verify else { continue };
        let at = format!("sources.{name}.verify");
        let Some(s) = c.signing.get(prof) else {
            p(
                at,
                format!("no signing profile named `{prof}`"),
                "name a [signing.NAME] table",
            );
            continue;
        };
        let scheme = s.scheme.as_str();
        if !matches!(scheme, "jws-detached" | "http-signature") {
            p(
                at.clone(),
                format!("profile `{prof}` is {scheme}: inbound requests can be verified with jws-detached or http-signature only"),
                "name a jws-detached or http-signature profile",
            );
            continue;
        }
        let pinned = has_key(s) || !s.previous.is_empty() || !s.trusted_keys.is_empty();
        let chain_ok = scheme == "jws-detached" && s.trust_anchors.is_some();
        if !pinned && !chain_ok {
            p(
                at,
                format!("profile `{prof}` trusts no key"),
                &format!(
                    "list the senders' certificates in [signing.{prof}] trusted_keys{}",
                    if scheme == "jws-detached" {
                        ", or set trust_anchors for x5c"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
}

/// `[catalogue]`: the periodic catalogue sync (`crate::catalogue`).
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueSection {
    /// required: the `dvcqg` adapter whose sharing endpoint serves `LayDanhSachTTHC`,
    /// `LayDanhMucCoQuan` and `LayDanhMucLinhVuc` (a key of `[adapters]`).
    pub from: String,
    /// How often to sync; `0s` = never on its own, only `gateway catalogue sync`. Default 1h.
    #[serde(default = "d_catalogue_interval")]
    pub interval: Dur,
    /// The source name of the change events (a route's `from`). Default `catalogue`.
    #[serde(default = "d_catalogue_source")]
    pub source_name: String,
}

/// `[online]`: the periodic poll of online dossiers (`crate::online`). The portal's listing
/// operation is not public ([open] in CONTRACTS.md): its name and fields are configured.
#[derive(Debug, Clone, Deserialize)]
pub struct OnlineSection {
    /// required: the `dvcqg` adapter to poll on its sharing endpoint (a key of `[adapters]`).
    pub from: String,
    /// required: the `service` of the listing call, e.g. `LayDanhSachHoSoTrucTuyen`.
    pub service: String,
    /// How often to poll; `0s` = never on its own. Default 5m.
    #[serde(default = "d_online_interval")]
    pub interval: Dur,
    /// The source name of the `dossier.online` events (a route's `from`). Default `online`.
    #[serde(default = "d_online_source")]
    pub source_name: String,
    /// The body field carrying the cursor (the last seen `cursor_field` value; absent on the
    /// first poll). Default `tuNgay`.
    #[serde(default = "d_online_cursor_param")]
    pub cursor_param: String,
    /// The dossier field the cursor follows: a `yyyyMMddHHmmss` date, so later sorts higher.
    /// Default `NgayTiepNhan`.
    #[serde(default = "d_online_cursor_field")]
    pub cursor_field: String,
    /// The dossier field holding its code (the event key). Default `MaHoSo`.
    #[serde(default = "d_online_code_field")]
    pub code_field: String,
    /// A dossier field holding a whole-number version (the event's version). Default: none.
    #[serde(default)]
    pub version_field: Option<String>,
}

fn d_catalogue_interval() -> Dur {
    Dur(defaults::CATALOGUE_INTERVAL)
}
fn d_catalogue_source() -> String {
    defaults::CATALOGUE_SOURCE.into()
}
fn d_online_interval() -> Dur {
    Dur(defaults::ONLINE_INTERVAL)
}
fn d_online_source() -> String {
    defaults::ONLINE_SOURCE.into()
}
fn d_online_cursor_param() -> String {
    defaults::ONLINE_CURSOR_PARAM.into()
}
fn d_online_cursor_field() -> String {
    defaults::ONLINE_CURSOR_FIELD.into()
}
fn d_online_code_field() -> String {
    defaults::ONLINE_CODE_FIELD.into()
}

/// `[catalogue]` and `[online]`: the adapter is a `dvcqg` one, names are valid and distinct.
fn validate_jobs(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    let jobs = [
        (
            "catalogue",
            c.catalogue.as_ref().map(|j| (&j.from, &j.source_name)),
        ),
        (
            "online",
            c.online.as_ref().map(|j| (&j.from, &j.source_name)),
        ),
    ];
    for (at, job) in jobs {
        let Some((from, source)) = job else { continue };
        match c.adapters.get(from) {
            None => p(
                format!("{at}.from"),
                format!("no adapter named `{from}`"),
                "name the [adapters.NAME] table of the portal (connector = \"dvcqg\")",
            ),
            Some(a) if a.connector != "dvcqg" => p(
                format!("{at}.from"),
                format!("adapter `{from}` is a {} adapter", a.connector),
                "name an adapter with connector = \"dvcqg\"",
            ),
            Some(_) => {}
        }
        if !valid_name(source) {
            p(
                format!("{at}.source_name"),
                format!("`{source}` has characters other than a-z, 0-9, - and _"),
                "rename it",
            );
        }
        if c.sources.contains_key(source) {
            p(
                format!("{at}.source_name"),
                format!("`{source}` is also a [sources] name"),
                "give the job its own source name, so its events cannot be posted from outside",
            );
        }
    }
    if let (Some(a), Some(b)) = (&c.catalogue, &c.online) {
        if a.source_name == b.source_name {
            p(
                "online.source_name".into(),
                format!("`{}` is also catalogue.source_name", b.source_name),
                "give each job its own source name",
            );
        }
    }
    if let Some(o) = &c.online {
        for (key, v) in [
            ("service", &o.service),
            ("cursor_param", &o.cursor_param),
            ("cursor_field", &o.cursor_field),
            ("code_field", &o.code_field),
        ] {
            if v.trim().is_empty() {
                p(
                    format!("online.{key}"),
                    "must not be empty".into(),
                    "set it, or remove the line to take the default",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Loaded, ConfigError> {
        parse(s, "test.toml", PathBuf::from("."))
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let loaded = load(&path).unwrap_or_else(|e| panic!("example config must load:\n{e}"));
        assert!(
            !loaded.config.routes.is_empty(),
            "the example shows at least one route"
        );
        assert!(!loaded.config.adapters.is_empty());
    }

    #[test]
    fn empty_file_is_the_embedded_defaults() {
        let l = parse_str("").unwrap();
        assert_eq!(l.config.broker.prefetch, defaults::PREFETCH);
        assert!(l.broker_url().unwrap().starts_with("sqlite:"));
        assert!(l.store_url().unwrap().starts_with("sqlite:"));
        assert_eq!(l.config.retry.max_elapsed.0, defaults::RETRY_MAX_ELAPSED);
    }

    #[test]
    fn every_unknown_key_and_problem_is_reported() {
        let e = parse_str(
            r#"
[gateway]
instanse = "x"
[broker]
prefetch = 0
colour = "red"
[[routes]]
name = "r"
from = "nowhere"
to = "nobody"
"#,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("test.toml:gateway.instanse: unknown key"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:broker.colour: unknown key"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:broker.prefetch: must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:routes[0].from: no source named `nowhere`"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:routes[0].to: no adapter named `nobody`"),
            "{text}"
        );
        assert_eq!(e.problems.len(), 5, "{text}");
    }

    #[test]
    fn rate_limit_is_checked() {
        let base = "[adapters.p]\nconnector = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n";
        let ok = parse_str(&format!("{base}rate_limit = {{ per_sec = 2.5 }}\n")).unwrap();
        let r = ok.config.adapters["p"].rate_limit.expect("set");
        assert_eq!((r.per_sec, r.burst), (2.5, defaults::RATE_LIMIT_BURST));
        let e = parse_str(&format!(
            "{base}rate_limit = {{ per_sec = 0.0, burst = 0, colour = 1 }}\n"
        ))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("test.toml:adapters.p.rate_limit.per_sec: 0 is not a positive"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:adapters.p.rate_limit.burst: 0 would let no call"),
            "{text}"
        );
        assert!(
            text.contains("test.toml:adapters.p.rate_limit.colour: unknown key"),
            "{text}"
        );
    }

    #[test]
    fn circuit_and_otlp_settings_are_checked() {
        let c = parse_str("").unwrap().config;
        assert_eq!(c.circuit, CircuitSection::default());
        assert_eq!(c.circuit.min_calls, defaults::CIRCUIT_MIN_CALLS);
        assert_eq!(c.circuit.failure_percent, 50);
        assert_eq!(c.ops.otlp_endpoint, None, "no export by default");
        let e = parse_str(
            "[ops]\notlp_endpoint = \"grpc://x:4317\"\n[circuit]\nopen_for = \"0s\"\nthreshold = 3\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("ops.otlp_endpoint: `grpc://x:4317` is not an http(s) URL"),
            "{text}"
        );
        assert!(
            text.contains("circuit.open_for: must be more than 0"),
            "{text}"
        );
        assert!(text.contains("circuit.threshold: unknown key"), "{text}");
        let e =
            parse_str("[circuit]\nfailure_percent = 0\nprobes = 0\nfailures = 10\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("circuit.failure_percent: 0 is not a share"),
            "{text}"
        );
        assert!(
            text.contains("circuit.probes: must be at least 1"),
            "{text}"
        );
        assert!(text.contains("circuit.failures: unknown key"), "{text}");
        let ok = parse_str("[ops]\notlp_endpoint = \"http://127.0.0.1:4318\"\n[circuit]\nmin_calls = 0\nopen_for = \"0s\"\n")
            .unwrap()
            .config;
        assert_eq!(ok.circuit.min_calls, 0, "0 turns the breaker off");
    }

    #[test]
    fn claim_lease_defaults_to_15s_and_must_be_above_zero() {
        let c = parse_str("").unwrap().config;
        assert_eq!(c.gateway.claim_lease.0, Duration::from_secs(15));
        let c = parse_str("[gateway]\nclaim_lease = \"2s\"\n")
            .unwrap()
            .config;
        assert_eq!(c.gateway.claim_lease.0, Duration::from_secs(2));
        let text = parse_str("[gateway]\nclaim_lease = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("gateway.claim_lease: the claim lease is zero"),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse_str("[broker]\nprefetch = \"many\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("test.toml:broker.prefetch: invalid value"),
            "{text}"
        );
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = parse_str("[retry]\ninitial = \"5 parsecs\"\n").unwrap_err();
        assert!(e.to_string().contains("retry.initial"), "{e}");
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
    }

    #[test]
    fn passwords_in_urls_are_refused_and_secrets_redacted() {
        let e =
            parse_str("[broker]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("broker.url: the URL contains a password"),
            "{e}"
        );
        std::env::set_var("GW_TEST_SECRET_X", "s3cr3t-value");
        let l = parse_str(
            "[broker]\nurl = \"amqp://guest@127.0.0.1:5672/%2f\"\npassword = { env = \"GW_TEST_SECRET_X\" }\n",
        )
        .unwrap();
        let dbg = format!("{:?}", l.config);
        assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        let s = l
            .config
            .broker
            .password
            .as_ref()
            .unwrap()
            .resolve(Path::new("."))
            .unwrap();
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(
            l.broker_url().unwrap(),
            "amqp://guest:s3cr3t-value@127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn missing_secret_is_a_clear_error() {
        let r = SecretRef::Env {
            env: "GW_TEST_SURELY_UNSET_42".into(),
        };
        assert_eq!(
            r.resolve(Path::new(".")).unwrap_err(),
            "environment variable GW_TEST_SURELY_UNSET_42 is not set"
        );
    }

    #[test]
    fn empty_secrets_are_refused_not_taken_as_no_secret() {
        std::env::set_var("GW_TEST_EMPTY_SECRET_1", "");
        std::env::set_var("GW_TEST_BLANK_SECRET_1", "  \t ");
        for name in ["GW_TEST_EMPTY_SECRET_1", "GW_TEST_BLANK_SECRET_1"] {
            let r = SecretRef::Env { env: name.into() };
            assert_eq!(
                r.resolve(Path::new(".")).unwrap_err(),
                format!("environment variable {name} is empty: a secret must have a value")
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "\n").unwrap();
        let r = SecretRef::File {
            file: "token".into(),
        };
        let e = r.resolve(dir.path()).unwrap_err();
        assert!(
            e.ends_with("token is empty: a secret must have a value"),
            "{e}"
        );
        std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
        assert_eq!(r.resolve(dir.path()).unwrap().expose(), "t0ken");
    }

    #[test]
    fn listen_addresses_are_decided_on_what_they_bind() {
        assert!(listen_is_loopback("127.0.0.1:8080"));
        assert!(listen_is_loopback("[::1]:8080"));
        assert!(listen_is_loopback("localhost:8080"));
        assert!(!listen_is_loopback("0.0.0.0:8080"));
        assert!(!listen_is_loopback("10.1.2.3:8080"));
        // Before, anything that was not an IP address counted as loopback.
        assert!(!listen_is_loopback("gateway.invalid:8080"));
        assert!(!listen_is_loopback("not an address"));
    }

    /// Payment orders need a token wherever the listener is not loopback (before, an open
    /// listener let anyone pre-create a low-amount order for a dossier's fee).
    #[test]
    fn payments_without_a_token_are_refused_off_loopback() {
        let pay = "[payments]\n[payments.vnpay.v]\ntmn_code = \"T\"\nhash_secret = { env = \"X\" }\nreturn_url = \"https://r\"\n";
        let problems =
            |listen: &str| match parse_str(&format!("[inbound]\nlisten = \"{listen}\"\n{pay}")) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
        let e = problems("0.0.0.0:8080");
        assert!(
            e.contains("payments.token: no token on a non-loopback listener"),
            "{e}"
        );
        assert!(problems("gateway.invalid:8080").contains("payments.token"));
        assert_eq!(problems("127.0.0.1:8080"), "");
        let with_token = format!(
            "[inbound]\nlisten = \"0.0.0.0:8080\"\n{}",
            pay.replacen("[payments]\n", "[payments]\ntoken = { env = \"PT\" }\n", 1)
        );
        assert!(parse_str(&with_token).is_ok());
    }

    #[test]
    fn plain_text_backends_off_this_machine_are_warned_about() {
        let w = |broker: &str, store: &str| {
            parse_str(&format!(
                "[broker]\nurl = \"{broker}\"\n[store]\nurl = \"{store}\"\n"
            ))
            .unwrap()
            .warnings()
        };
        assert!(w(
            "amqp://gw@127.0.0.1:5672/%2f",
            "postgres://gw@localhost:5432/gw"
        )
        .is_empty());
        let got = w(
            "amqp://gw@10.0.0.5:5672/%2f",
            "postgres://gw@db.internal:5432/gw",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("broker.url: plain-text AMQP to 10.0.0.5"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("store.url: PostgreSQL at db.internal"),
            "{got:?}"
        );
        assert!(w(
            "amqps://gw@10.0.0.5:5671/%2f",
            "postgres://gw@db.internal:5432/gw?sslmode=verify-full"
        )
        .is_empty());
    }

    #[test]
    fn kinds_match_patterns() {
        assert!(kind_matches("dossier.*", "dossier.upserted"));
        assert!(!kind_matches("dossier.*", "payment.settled"));
        assert!(kind_matches("*", "x"));
        assert!(kind_matches("a.b", "a.b"));
        assert!(!kind_matches("a.b", "a.bc"));
        assert!(kinds_admit(&[], "anything"));
        assert!(kinds_admit(&["dossier.*".to_string()], "dossier.progress"));
        assert!(!kinds_admit(&["dossier.*".to_string()], "payment.settled"));
    }
}
