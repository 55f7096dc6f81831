//! The configuration document: the root [`Config`] (one field per section) and reading a file
//! into it — the file's text, its TOML syntax, every unknown key, the first value of a wrong
//! type — before any section is validated.
//!
//! Imports the sections (for their types) and `problem.rs`; never the validation driver
//! (`references.rs`) nor [`Loaded`](super::Loaded) (`loaded.rs`), which call this.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::adapters::AdapterSection;
use super::agencies::SubscriptionSection;
use super::broker::BrokerSection;
use super::catalogue::CatalogueSection;
use super::circuit::CircuitSection;
use super::evidence::EvidenceSection;
use super::gateway::GatewaySection;
use super::inbound::InboundSection;
use super::indicators::IndicatorsSection;
use super::online::OnlineSection;
use super::ops::OpsSection;
use super::payments::PaymentsSection;
use super::problem::{ConfigError, Problem, Step};
use super::retry::RetrySection;
use super::routes::RouteSection;
use super::signatures::SignaturesSection;
use super::signers::SignerSection;
use super::signing::SigningSection;
use super::sources::SourceSection;
use super::store::StoreSection;

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
    pub payments: Option<PaymentsSection>,
    /// The evidence log (`src/evidence`): mode per adapter, body key, time-stamping,
    /// retention. Absent = every adapter in `metadata` mode, no time-stamping, kept forever.
    #[serde(default)]
    pub evidence: EvidenceSection,
    /// Remote signing services (VNPT SmartCA, Viettel MySign, CSC API v2) by name, with the
    /// officials each signs for. Absent = none.
    #[serde(default)]
    pub signers: BTreeMap<String, SignerSection>,
    /// The remote-signing flow's formats and documents: the time-stamp authority of B-T
    /// requests, the servers documents may be fetched from by reference. Absent = neither.
    #[serde(default)]
    pub signatures: SignaturesSection,
    /// Agency subscriptions by name: what each agency receives (kinds, procedures, units,
    /// fields) and how (push or pull). Absent = none.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, SubscriptionSection>,
    /// The live service-quality index of Decision 766 (`crate::indicators`): holidays,
    /// statutory times, the portal adapter that says "synced". Absent = off.
    #[serde(default)]
    pub indicators: Option<IndicatorsSection>,
}

/// The text of the file at `path`, or the [`Step::Read`] problem.
pub(super) fn read(path: &Path, origin: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            step: Step::Read,
            file: origin.to_string(),
            key: "-".into(),
            what: format!("cannot read the file: {e}"),
            fix: "give the path of an existing, readable TOML file".into(),
        }],
    })
}

/// TOML text into a [`Config`], with a [`Step::UnknownKey`] problem for every key no section
/// has. An error for text that is not TOML ([`Step::Syntax`]) or a value of the wrong type
/// ([`Step::WrongType`], after the unknown keys). `origin` names the text in messages.
pub(super) fn deserialize(text: &str, origin: &str) -> Result<(Config, Vec<Problem>), ConfigError> {
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
    match parsed {
        Ok(config) => Ok((config, problems)),
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
            Err(ConfigError { problems })
        }
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
