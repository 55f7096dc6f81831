//! `[evidence]`: the evidence log's settings (mode per adapter, body key, time-stamping,
//! retention). The log itself, and the check of the body key, live in `crate::evidence`,
//! which re-exports these types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::Dur;
use super::secrets::SecretRef;

/// What is kept of an exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Bodies kept, encrypted at rest with `evidence.body_key`.
    Full,
    /// Digests, signature digest, status and result code only.
    #[default]
    Metadata,
    /// Nothing recorded.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Metadata => "metadata",
            Mode::Off => "off",
        }
    }
}

/// `[evidence]`: the evidence log. Every field has a named default; the section may be absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EvidenceSection {
    /// Mode of every adapter and source without its own entry. Default `metadata`.
    #[serde(default)]
    pub mode: Mode,
    /// Per adapter (outbound) or source (inbound) mode, e.g. `national = "full"`.
    #[serde(default)]
    pub adapters: BTreeMap<String, Mode>,
    /// The chain this instance appends to. Default: `gateway.instance` (one chain per instance,
    /// so instances never wait for each other).
    #[serde(default)]
    pub chain: Option<String>,
    /// AES-256-GCM key for `full` mode bodies: 64 hex digits, by reference
    /// (`{ env = "NAME" }` or `{ file = "path" }`). Required when any mode is `full`.
    #[serde(default)]
    pub body_key: Option<SecretRef>,
    /// Time-stamping of chain heads through an RFC 3161 authority. Absent = off.
    #[serde(default)]
    pub tsa: Option<TsaSection>,
    /// Keep records this long in the live store; older ones are archived to `archive_dir`
    /// and removed. Absent (the default) = keep forever.
    #[serde(default)]
    pub retention: Option<Dur>,
    /// Where retention writes archives. Default `DATA_DIR/evidence-archive`.
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
}

/// `[evidence.tsa]`.
#[derive(Debug, Clone, Deserialize)]
pub struct TsaSection {
    /// The authority's URL (`application/timestamp-query` is POSTed to it).
    pub url: String,
    /// PEM trust anchors for the authority's certificate (relative to the config file).
    pub ca_file: PathBuf,
    /// PEM intermediates, if the token does not carry them. Default none.
    #[serde(default)]
    pub intermediates_file: Option<PathBuf>,
    /// Time-stamp the head at least this often when it moved. Default `60s`.
    #[serde(default = "d_tsa_interval")]
    pub interval: Dur,
    /// …or as soon as this many records were appended since the last time-stamp. Default 1000.
    #[serde(default = "d_tsa_records")]
    pub max_records: u64,
    /// Request timeout. Default `10s`.
    #[serde(default = "d_tsa_timeout")]
    pub timeout: Dur,
    /// Stop taking new inbound messages when time-stamping failed for longer than `grace`.
    /// Default `false` (warn only).
    #[serde(default)]
    pub fail_closed: bool,
    /// How long failures are tolerated before failing closed. Default `15m`.
    #[serde(default = "d_tsa_grace")]
    pub grace: Dur,
}

fn d_tsa_interval() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn d_tsa_records() -> u64 {
    1000
}
fn d_tsa_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn d_tsa_grace() -> Dur {
    Dur(std::time::Duration::from_secs(15 * 60))
}

impl EvidenceSection {
    pub fn mode_of(&self, adapter: &str) -> Mode {
        self.adapters.get(adapter).copied().unwrap_or(self.mode)
    }
    /// Whether any adapter or source keeps bodies (and so needs `body_key`).
    pub(crate) fn any_full(&self) -> bool {
        self.mode == Mode::Full || self.adapters.values().any(|m| *m == Mode::Full)
    }
}
