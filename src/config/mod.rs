//! Configuration: one TOML file, every field documented, named defaults, unknown keys
//! rejected, secrets only by reference.
//!
//! # Invariants
//! - **Unknown keys are rejected.** Loading never stops at the first problem: [`load`] collects
//!   every unknown key (through `serde_ignored`) and every semantic problem.
//! - **Every problem names its place**, reported as `file:key: what is wrong: how to fix it`,
//!   and the [`Step`] that found it (read, syntax, unknown key, wrong type, invalid value).
//!   (A value of the wrong *type* stops serde at that value; that one is reported with its key
//!   path the same way.)
//! - **Secrets by reference only.** A secret is only ever a reference (`{ env = "NAME" }` or
//!   `{ file = "path" }`); its value is read when resolved and never printed: [`Secret`]'s
//!   `Debug` and `Display` redact it.
//! - **One file per section, checking only itself.** Each section's types, defaults and
//!   validator live together in their own file of this folder; a section's validator is given
//!   that section alone. Every check that names another section (a route's `from` and `to`, a
//!   job's adapter, the profiles adapters sign with, `ops.listen` against `inbound.listen`, the
//!   payment events' source name) lives in `references.rs`, with the validation driver, which
//!   runs every check in the order problems have always been reported. This module holds the
//!   root [`Config`] and loading; the problem type is in `problem.rs`, the naming rule in
//!   `names.rs`; sections import those directly, not through this module. Every default is a
//!   named constant in [`defaults`], stated once.
//! - **Dependencies point one way.** This module uses no other part of the gateway: the
//!   payments and evidence sections live here ([`payments`], [`evidence`]) and are re-exported
//!   by `crate::payments` and `crate::evidence`; they, `crate::transport` and the rest build
//!   their runtime objects from the sections.
//! - The example file `gateway.example.toml` at the repository root is loaded by a test, so it
//!   cannot drift from this module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod adapters;
mod broker;
mod catalogue;
mod circuit;
pub mod defaults;
mod duration;
pub mod evidence;
mod gateway;
mod inbound;
mod names;
mod online;
mod ops;
pub mod payments;
mod problem;
mod references;
mod retry;
mod routes;
mod secrets;
mod signing;
mod sources;
mod store;

pub use adapters::{AdapterSection, DvcqgSection, RateLimitSection, TlsSection};
pub use broker::BrokerSection;
pub use catalogue::CatalogueSection;
pub use circuit::CircuitSection;
pub use duration::{parse_duration, Dur, DurationError};
pub use gateway::GatewaySection;
pub use inbound::{listen_is_loopback, InboundSection};
pub use online::OnlineSection;
pub use ops::{OpsRole, OpsSection, OpsTokenSection, OtlpProtocol};
pub use problem::{ConfigError, Problem, Step};
pub use retry::{RetryOverride, RetrySection};
pub use routes::{kind_matches, kinds_admit, RouteSection};
pub use secrets::{Secret, SecretProblem, SecretRef, UrlPasswordError};
pub use signing::{KeyCertificate, SigningSection, SIGNING_SCHEMES};
pub use sources::SourceSection;
pub use store::StoreSection;

use secrets::with_password;

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
    pub payments: Option<payments::PaymentsSection>,
    /// The evidence log (`src/evidence`): mode per adapter, body key, time-stamping,
    /// retention. Absent = every adapter in `metadata` mode, no time-stamping, kept forever.
    #[serde(default)]
    pub evidence: evidence::EvidenceSection,
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

/// Load and validate a file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            step: Step::Read,
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
    let problem = |step: Step, key: &str, what: String, fix: &str| Problem {
        step,
        file: origin.to_string(),
        key: key.to_string(),
        what,
        fix: fix.to_string(),
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
        problems: vec![problem(
            Step::Syntax,
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
            Step::UnknownKey,
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
                Step::WrongType,
                &span_key,
                format!("invalid value: {msg}"),
                "see the field's documentation in gateway.example.toml",
            ));
            return Err(ConfigError { problems });
        }
    };
    references::validate(&config, &base, &mut problems, origin);
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
    pub fn broker_url(&self) -> Result<String, UrlPasswordError> {
        match &self.config.broker.url {
            Some(url) => with_password(url, self.config.broker.password.as_ref(), &self.base),
            None => Ok(format!(
                "sqlite:{}",
                self.data_dir().join("queue.db").display()
            )),
        }
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
            if p.fee_check == payments::FeeCheck::Off {
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
    pub fn store_url(&self) -> Result<String, UrlPasswordError> {
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

#[cfg(test)]
mod tests;
