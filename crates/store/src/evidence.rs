//! The evidence log: one record per exchange with an external party, hash-chained.
//!
//! # Chain
//!
//! Records are appended to a *chain* (one per gateway instance or partition, named by the
//! writer), so that writers of different chains never wait for each other. Record `n` of a chain
//! commits to record `n - 1`:
//!
//! ```text
//! hash(n) = SHA-256(canonical(n))      canonical(n) contains "prev: " hex(hash(n - 1))
//! ```
//!
//! where [`canonical`] is a line-oriented UTF-8 text (so an auditor can hash it with
//! `openssl dgst -sha256`) of every field of the record except the kept (encrypted) bodies: the
//! bodies are committed to through their digests. The first record of a chain has
//! `prev` = 64 zeros ([`GENESIS`]), or, after retention removed the oldest records, the hash of
//! the last archived record (the chain's *anchor*).
//!
//! # Invariants (the store suite checks them on both stores)
//!
//! 1. Records are written by [`Store::record`](crate::Store::record) in the same transaction as
//!    the ledger rows of their [`Batch`](crate::Batch): an acked message always has its record.
//! 2. The store assigns `seq`, `prev_hash` and `hash` inside that transaction, under the chain's
//!    head row (a row lock in PostgreSQL, the single writer in SQLite): a chain never forks.
//! 3. One record per exchange key ([`EvidenceRecord::exchange`]): recording the same exchange
//!    again (a batch retried after a lost commit answer, a redelivered message) is a no-op and
//!    does not advance the chain.
//! 4. [`verify_chains`] walks every chain from its anchor to its head and reports the first
//!    broken link (modified, deleted, inserted or reordered record; truncated head) with the
//!    record's id, and checks every stored time-stamp against the record it covers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Result, Store};

/// `prev` of the first record of a chain with no archived part.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of every canonical record (versioned, so the format can evolve).
pub const CANONICAL_TAG: &str = "gateway-evidence-v1";

/// A record to append (the store assigns its place in the chain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Record id (UUIDv7 text).
    pub id: String,
    /// The chain it is appended to (instance or partition name).
    pub chain: String,
    /// Exchange key, unique: e.g. `route/ledger-id/attempt/n` (idempotency).
    pub exchange: String,
    /// Unix milliseconds of the exchange.
    pub at_ms: i64,
    /// The adapter (outbound) or source (inbound) the party is reached through.
    pub adapter: String,
    /// `out` (we sent) or `in` (they sent).
    pub direction: String,
    pub route: String,
    pub envelope_id: String,
    /// The dossier code (the key, not personal data).
    pub dossier: String,
    /// Operation (service name or envelope kind).
    pub operation: String,
    /// SHA-256 hex of the request body as sent / received.
    pub request_digest: String,
    /// SHA-256 hex of the response body, when there was one.
    pub response_digest: Option<String>,
    /// SHA-256 hex of the signature value (ours out, theirs in), when signed.
    pub signature_digest: Option<String>,
    /// SHA-256 hex fingerprint (DER) of the signing certificate: ours on the way out, the
    /// sender's on the way in (the one its signature verified with). An inbound signature
    /// verified with a bare public key (no certificate) is named `key-id:ID spki-sha256:HEX`
    /// (key id, SHA-256 of the SubjectPublicKeyInfo DER) instead.
    pub cert_fingerprint: Option<String>,
    pub http_status: Option<u16>,
    /// The party's own result code (e.g. the portal's `error_code`).
    pub result_code: Option<String>,
    /// `full` (bodies kept) or `metadata` (digests only).
    pub mode: String,
    /// Request body sealed with the evidence key (`full` mode), not part of the hash.
    pub request_body: Option<Vec<u8>>,
    /// Response body sealed with the evidence key (`full` mode), not part of the hash.
    pub response_body: Option<Vec<u8>>,
}

/// A record as stored: its place in its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvidence {
    #[serde(flatten)]
    pub record: EvidenceRecord,
    /// 1-based position in the chain.
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A chain's head and anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain: String,
    /// The last record's seq (0: none yet).
    pub seq: i64,
    /// The last record's hash ([`GENESIS`] when none).
    pub hash: String,
    /// Records up to this seq were archived and removed (0: none).
    pub anchor_seq: i64,
    /// The hash of the last archived record ([`GENESIS`] when none).
    pub anchor_hash: String,
}

/// An RFC 3161 time-stamp token over a chain head (its `hash` is the token's imprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeStampRow {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    /// The `TimeStampToken` (CMS ContentInfo DER).
    pub token: Vec<u8>,
    /// When it was stored (unix ms).
    pub at_ms: i64,
}

fn line(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\n');
}

/// The exact bytes hashed for a record at `seq` after `prev_hash`.
pub fn canonical(r: &EvidenceRecord, seq: i64, prev_hash: &str) -> String {
    let mut s = String::with_capacity(512);
    s.push_str(CANONICAL_TAG);
    s.push('\n');
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    line(&mut s, "chain", &r.chain);
    line(&mut s, "seq", &seq.to_string());
    line(&mut s, "prev", prev_hash);
    line(&mut s, "id", &r.id);
    line(&mut s, "exchange", &r.exchange);
    line(&mut s, "at_ms", &r.at_ms.to_string());
    line(&mut s, "adapter", &r.adapter);
    line(&mut s, "direction", &r.direction);
    line(&mut s, "route", &r.route);
    line(&mut s, "envelope_id", &r.envelope_id);
    line(&mut s, "dossier", &r.dossier);
    line(&mut s, "operation", &r.operation);
    line(&mut s, "request_sha256", &r.request_digest);
    line(&mut s, "response_sha256", &opt(&r.response_digest));
    line(&mut s, "signature_sha256", &opt(&r.signature_digest));
    line(&mut s, "certificate_sha256", &opt(&r.cert_fingerprint));
    line(
        &mut s,
        "http_status",
        &r.http_status.map(|s| s.to_string()).unwrap_or_default(),
    );
    line(&mut s, "result_code", &opt(&r.result_code));
    line(&mut s, "mode", &r.mode);
    s
}

/// SHA-256 hex of a record's canonical text.
pub fn record_hash(r: &EvidenceRecord, seq: i64, prev_hash: &str) -> String {
    hex_lower(&Sha256::digest(canonical(r, seq, prev_hash).as_bytes()))
}

/// Lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Place `records` after `head` (seq, hash): returns the stored forms and the new head.
pub(crate) fn chain_after(
    head: (i64, String),
    records: impl IntoIterator<Item = EvidenceRecord>,
) -> (Vec<StoredEvidence>, (i64, String)) {
    let (mut seq, mut prev) = head;
    let mut out = Vec::new();
    for record in records {
        seq += 1;
        let hash = record_hash(&record, seq, &prev);
        out.push(StoredEvidence {
            record,
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    (out, (seq, prev))
}

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub chain: String,
    /// The record at which the chain breaks (the first one that does not verify), if any.
    pub record_id: Option<String>,
    pub seq: i64,
    pub what: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {} broken at seq {} (record {}): {}",
            self.chain,
            self.seq,
            self.record_id.as_deref().unwrap_or("-"),
            self.what
        )
    }
}

/// What [`verify_chains`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub chains: usize,
    pub records: u64,
    pub timestamps: u64,
    /// The first broken link of each broken chain, and every bad time-stamp.
    pub problems: Vec<Broken>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Records read per page while verifying.
const PAGE: u32 = 1_000;

/// Walk every chain from its anchor to its head; check each time-stamp row against the record it
/// covers and with `check_token` (the token's signature, trust and imprint: the caller's, since
/// that needs the TSA trust anchors).
pub async fn verify_chains<E: std::fmt::Display>(
    store: &dyn Store,
    check_token: &(dyn Fn(&TimeStampRow) -> std::result::Result<(), E> + Sync),
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for head in store.evidence_heads().await? {
        report.chains += 1;
        let mut hashes = std::collections::HashMap::new();
        let (mut seq, mut prev) = (head.anchor_seq, head.anchor_hash.clone());
        let mut broken = None;
        'walk: loop {
            let page = store.evidence_chain(&head.chain, seq, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for r in page {
                report.records += 1;
                let at = |what: String| Broken {
                    chain: head.chain.clone(),
                    record_id: Some(r.record.id.clone()),
                    seq: r.seq,
                    what,
                };
                if r.seq != seq + 1 {
                    broken = Some(at(format!(
                        "expected seq {} next, found {} (records deleted or reordered)",
                        seq + 1,
                        r.seq
                    )));
                    break 'walk;
                }
                if r.prev_hash != prev {
                    broken = Some(at(format!(
                        "does not commit to the previous record (prev {} , expected {prev})",
                        r.prev_hash
                    )));
                    break 'walk;
                }
                let again = record_hash(&r.record, r.seq, &r.prev_hash);
                if again != r.hash {
                    broken = Some(at(
                        "content does not match its hash (record modified)".to_string()
                    ));
                    break 'walk;
                }
                hashes.insert(r.seq, r.hash.clone());
                seq = r.seq;
                prev = r.hash;
            }
        }
        if broken.is_none() && (seq, prev.as_str()) != (head.seq, head.hash.as_str()) {
            broken = Some(Broken {
                chain: head.chain.clone(),
                record_id: None,
                seq: seq + 1,
                what: format!(
                    "chain ends at seq {seq} but its head is seq {} (records removed at the end)",
                    head.seq
                ),
            });
        }
        report.problems.extend(broken);
        for ts in store.timestamps(&head.chain).await? {
            report.timestamps += 1;
            let bad = |what: String| Broken {
                chain: head.chain.clone(),
                record_id: None,
                seq: ts.seq,
                what: format!("time-stamp: {what}"),
            };
            if ts.seq == head.anchor_seq && ts.hash != head.anchor_hash {
                // The token over the last archived record stays with the live chain.
                report
                    .problems
                    .push(bad("covers another hash than the chain's anchor".into()));
                continue;
            }
            if ts.seq > head.anchor_seq {
                match hashes.get(&ts.seq) {
                    Some(h) if *h == ts.hash => {}
                    Some(_) => {
                        report
                            .problems
                            .push(bad("covers another hash than the record's".into()));
                        continue;
                    }
                    None => {
                        report
                            .problems
                            .push(bad("covers a record that is not in the chain".into()));
                        continue;
                    }
                }
            }
            if let Err(e) = check_token(&ts) {
                report.problems.push(bad(e.to_string()));
            }
        }
    }
    Ok(report)
}
