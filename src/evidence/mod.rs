//! The evidence log, gateway side: what is recorded for every exchange with an external party,
//! in which mode, and the commands that check and export it. The chain itself lives in the store
//! ([`gw_store::evidence`]): records go into the same [`gw_store::Batch`] (one transaction) as
//! the ledger outcome of the envelope they belong to.
//!
//! # How an exchange becomes a record
//! - The route runtime runs each delivery inside [`capture::capture`]; the HTTP client
//!   ([`crate::transport::client::HttpClient`]) notes every request it sends and the answer
//!   (digests always; bodies only when the capture keeps them) into the capture in scope. The
//!   DVCQG batcher carries the captures of the envelopes of a batch into its own task, so one
//!   batched call yields a record for each envelope in it.
//! - [`EvidenceLog::records`] turns the captured exchanges into [`EvidenceRecord`]s: SHA-256 of
//!   request and response, SHA-256 of the signature value(s) the signing profile added, HTTP
//!   status, the party's result code (`error_code`, `ErrorCode`, `result_code` or `code` of a
//!   JSON answer). In `full` mode the bodies are sealed with AES-256-GCM ([`seal`]).
//! - The exchange key (`route/ledger id/attempt/n`) is unique in the store, so a batch recorded
//!   twice or a redelivered message never produces a second record of the same exchange.
//! - The store chains the records of one store batch (the recorder merges the lanes' delivery
//!   batches into one transaction) as **one link per chain**, whose Merkle leaves are the
//!   records ([`gw_store::evidence_merkle`]); [`export`] gives each of a dossier's exchanges its
//!   leaf and audit path, which [`proof`] (and `docs/examples/verify_evidence.py`) checks.
//!
//! # Modes
//! `metadata` (the default: digests only), `full` (bodies kept, encrypted at rest with
//! `evidence.body_key`), `off`; `[evidence] mode` for all, `[evidence.adapters] NAME = MODE` per
//! adapter (outbound) or source (inbound).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gw_store::EvidenceRecord;

pub mod archive;
pub mod capture;
pub mod export;
pub mod inbound;
pub mod proof;
pub mod redact;
pub mod retention;
pub mod seal;
pub mod tsa;

pub use crate::config::evidence::{EvidenceSection, Mode, TsaSection};

/// Why the evidence log cannot be set up, by step.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// `evidence.body_key` cannot be read (unset variable, missing file, empty value).
    #[error("{0}")]
    BodyKeySecret(crate::config::SecretProblem),
    /// `evidence.body_key` is not a 256-bit hex key.
    #[error("{0}")]
    BodyKey(seal::SealError),
    /// A `full` mode is configured without `evidence.body_key`.
    #[error("evidence: full mode needs evidence.body_key")]
    NoBodyKey,
}

/// What the records of one delivery attempt share: the party, the direction, the route and
/// the envelope ([`EvidenceLog::records`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The adapter (outbound) or source (inbound) the exchange was with; it decides the mode.
    pub adapter: &'a str,
    /// `out` or `in`.
    pub direction: &'a str,
    /// The route's name (empty when none).
    pub route: &'a str,
    /// Each record's exchange key is `<exchange_prefix>/<n>`.
    pub exchange_prefix: &'a str,
    pub envelope_id: &'a str,
    pub dossier: &'a str,
    /// The operation of an exchange that does not name its own.
    pub operation: &'a str,
}

impl EvidenceSection {
    /// Problems with this section (for `check-config` and start): (key, what).
    pub fn problems(&self, base: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.any_full() {
            match &self.body_key {
                None => out.push((
                    "evidence.body_key".to_string(),
                    "full mode keeps bodies and needs an encryption key".to_string(),
                )),
                Some(r) => {
                    if let Err(e) = r
                        .resolve(base)
                        .map_err(EvidenceError::BodyKeySecret)
                        .and_then(|s| seal::Key::parse(s.expose()).map_err(EvidenceError::BodyKey))
                    {
                        out.push(("evidence.body_key".to_string(), e.to_string()));
                    }
                }
            }
        }
        if let Some(t) = &self.tsa {
            let p = base.join(&t.ca_file);
            if !p.is_file() {
                out.push((
                    "evidence.tsa.ca_file".to_string(),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        out
    }
}

/// The evidence log of a running gateway: mode per adapter, chain name, body key.
pub struct EvidenceLog {
    section: EvidenceSection,
    chain: String,
    key: Option<seal::Key>,
    /// SHA-256 of the certificate each adapter signs with.
    certificates: BTreeMap<String, String>,
}

impl EvidenceLog {
    /// Build from the configuration (`instance` names the chain unless `evidence.chain` does).
    pub fn new(
        section: &EvidenceSection,
        instance: &str,
        base: &Path,
    ) -> Result<Self, EvidenceError> {
        let key = match &section.body_key {
            Some(r) if section.any_full() => Some(
                seal::Key::parse(
                    r.resolve(base)
                        .map_err(EvidenceError::BodyKeySecret)?
                        .expose(),
                )
                .map_err(EvidenceError::BodyKey)?,
            ),
            _ => None,
        };
        if section.any_full() && key.is_none() {
            return Err(EvidenceError::NoBodyKey);
        }
        Ok(EvidenceLog {
            section: section.clone(),
            chain: section
                .chain
                .clone()
                .unwrap_or_else(|| instance.to_string()),
            key,
            certificates: BTreeMap::new(),
        })
    }

    /// The fingerprint (SHA-256 hex of the DER) of the certificate `adapter` signs with.
    pub fn set_certificate(&mut self, adapter: &str, sha256: String) {
        self.certificates.insert(adapter.to_string(), sha256);
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn mode_of(&self, adapter: &str) -> Mode {
        self.section.mode_of(adapter)
    }

    /// The capture to run a delivery to `adapter` in, if its mode records anything.
    pub fn capture_for(&self, adapter: &str) -> Option<capture::Capture> {
        match self.mode_of(adapter) {
            Mode::Off => None,
            Mode::Metadata => Some(capture::Capture::new(false)),
            Mode::Full => Some(capture::Capture::new(true)),
        }
    }

    /// The records of the exchanges of one delivery attempt.
    pub fn records(
        &self,
        cx: &RecordContext<'_>,
        exchanges: Vec<capture::Exchange>,
    ) -> Vec<EvidenceRecord> {
        let adapter = cx.adapter;
        let mode = self.mode_of(adapter);
        if mode == Mode::Off {
            return vec![];
        }
        exchanges
            .into_iter()
            .enumerate()
            .map(|(n, x)| {
                let id = uuid::Uuid::now_v7().to_string();
                let seal = |body: &Option<Arc<Vec<u8>>>| match (&self.key, mode, body) {
                    (Some(k), Mode::Full, Some(b)) => Some(k.seal(b, id.as_bytes())),
                    _ => None,
                };
                // Our certificate, when the request carried our signature.
                let certificate = x
                    .signature_digest
                    .as_ref()
                    .and_then(|_| self.certificates.get(adapter).cloned());
                EvidenceRecord {
                    request_body: seal(&x.request_body),
                    response_body: seal(&x.response_body),
                    id: id.clone(),
                    chain: self.chain.clone(),
                    exchange: format!("{}/{n}", cx.exchange_prefix),
                    at_ms: x.at_ms,
                    adapter: adapter.to_string(),
                    direction: cx.direction.to_string(),
                    route: cx.route.to_string(),
                    envelope_id: cx.envelope_id.to_string(),
                    dossier: cx.dossier.to_string(),
                    operation: x.operation.unwrap_or_else(|| cx.operation.to_string()),
                    request_digest: x.request_digest,
                    response_digest: x.response_digest,
                    signature_digest: x.signature_digest,
                    cert_fingerprint: x.cert_fingerprint.or(certificate),
                    http_status: x.status,
                    result_code: x.result_code,
                    mode: mode.as_str().to_string(),
                }
            })
            .collect()
    }

    /// The key that opens `full` mode bodies, if configured.
    pub fn key(&self) -> Option<&seal::Key> {
        self.key.as_ref()
    }
}

/// SHA-256 hex.
/// Create (or truncate) a file only its owner can read and write (0600): exports and
/// archives hold dossier data and, in full mode, message bodies.
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        // `mode` only applies on creation: an existing file is narrowed too.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// Create a directory (and its parents) only its owner can enter (0700).
pub fn create_private_dir_all(path: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
}
