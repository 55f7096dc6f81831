//! The evidence log's records and their chaining: [`EvidenceRecord`] (to append),
//! [`StoredEvidence`] (with its place in the chain), [`ChainHead`], [`TimeStampRow`], and the
//! hashing that links them ([`canonical`], [`record_hash`], `chain_after`). The chain format is
//! described in [`crate::evidence`].
//!
//! # Invariants
//! - `hash(n) = SHA-256(canonical(n))`, and `canonical(n)` contains `prev: ` and `hash(n - 1)`;
//!   the first record of a chain has `prev` = [`GENESIS`] or the chain's anchor.
//! - [`canonical`] covers every field except the kept (sealed) bodies, which are committed to
//!   through their digests; its first line is [`CANONICAL_TAG`], so the format can evolve.
//! - Pure data and hashing: this file imports nothing else of the crate, so the SQL backends
//!   ([`crate::evidence_sql`]) and the [`Store`](crate::Store) trait import it without a circle.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// This record's hash; for a leaf of a batch link, the link's hash.
    pub hash: String,
    /// For an exchange recorded in a batch link (see `evidence_merkle.rs`): the link and the
    /// leaf's place in it; `seq`, `prev_hash` and `hash` are then the link's. None for a
    /// per-event record (the format before batch links, still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchPlace>,
}

impl StoredEvidence {
    /// When its chain link was made: the batch's (newest leaf) time, or the record's own.
    /// Every leaf of a batch has the same, so a cut-off by time never splits a link.
    pub fn link_at_ms(&self) -> i64 {
        self.batch.as_ref().map_or(self.record.at_ms, |b| b.at_ms)
    }
}

/// A batch link's fields and one leaf's place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlace {
    /// The link's id (UUIDv7 text).
    pub id: String,
    /// The newest leaf's `at_ms`.
    pub at_ms: i64,
    /// How many leaves the link commits to.
    pub leaves: u32,
    /// This leaf's index (0-based).
    pub leaf: u32,
    /// The Merkle root over the leaves (hex).
    pub root: String,
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

pub(crate) fn line(out: &mut String, name: &str, value: &str) {
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

/// Place `records` after `head` (seq, hash), one per-event link each: returns the stored forms
/// and the new head. The store writes batch links (`evidence_merkle::batch_after`); this stays
/// for the tests that build chains of the older format.
pub fn chain_after(
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
            batch: None,
        });
    }
    (out, (seq, prev))
}
