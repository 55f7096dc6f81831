//! The rows the store writes and reads back: outcomes, attempts, dead letters, accepted
//! versions, and the [`Batch`] that carries them into one transaction.
//!
//! # Invariants
//! - Plain data: this file holds no behaviour beyond naming states (`as_str`/`parse`) and
//!   imports only the row types of its topic files ([`crate::claims`] for releases,
//!   [`crate::evidence_records`] for evidence), never the [`Store`](crate::Store) or a backend.
//! - A [`Batch`] is written whole or not at all ([`Store::record`](crate::Store::record));
//!   the invariants of what each row means are listed in the crate doc.

use serde::{Deserialize, Serialize};

use crate::claims::ClaimRelease;
use crate::evidence_records::EvidenceRecord;

/// Final outcome of one envelope on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The destination accepted it.
    Delivered,
    /// Not sent: the destination already has this dossier at the same or a newer version.
    Superseded,
    /// Moved to the dead letters (permanent refusal or retry budget exhausted).
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Superseded => "superseded",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(Outcome::Delivered),
            "superseded" => Some(Outcome::Superseded),
            "dead_lettered" => Some(Outcome::DeadLettered),
            _ => None,
        }
    }
}

/// A final outcome to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub route: String,
    /// The destination adapter (versions are tracked per destination).
    pub destination: String,
    pub envelope_id: String,
    /// Ordering key (dossier code).
    pub key: String,
    /// Envelope kind, e.g. `dossier.upserted`.
    pub kind: String,
    /// The party's natural key of the effect, e.g. `DOSSIER-CODE@7`.
    pub natural_key: Option<String>,
    /// Dossier version delivered (moves the destination's version forward when delivered).
    pub version: Option<i64>,
    pub outcome: Outcome,
    /// Attempts made, including the last one.
    pub attempts: u32,
    /// HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
    /// Reason / last answer summary (no personal data).
    pub detail: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// One attempt (for the trail): every try, failed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub route: String,
    pub envelope_id: String,
    pub key: String,
    pub attempt: u32,
    /// `delivered`, `retry`, `permanent`, `superseded`, `skipped_duplicate` …
    pub result: String,
    pub status: Option<u16>,
    pub reason: String,
    pub latency_ms: u32,
    pub at_ms: i64,
}

/// A dead letter to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeadLetter {
    /// Dead-letter id (a UUIDv7 as text).
    pub id: String,
    pub route: String,
    /// The queue the original came from (replay publishes there).
    pub queue: String,
    pub envelope_id: String,
    pub key: String,
    pub kind: String,
    /// The original envelope, byte for byte.
    pub envelope: Vec<u8>,
    pub reason: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// The last answer, truncated by the caller, no personal data.
    pub last_answer: String,
    pub first_attempt_ms: i64,
    pub dead_at_ms: i64,
}

/// State of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    Open,
    Replayed,
    Dropped,
}

impl DeadLetterState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterState::Open => "open",
            DeadLetterState::Replayed => "replayed",
            DeadLetterState::Dropped => "dropped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "replayed" => Some(Self::Replayed),
            "dropped" => Some(Self::Dropped),
            _ => None,
        }
    }
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub letter: NewDeadLetter,
    pub state: DeadLetterState,
    /// Who replayed or dropped it, and when (unix ms).
    pub settled_by: Option<String>,
    pub settled_at_ms: Option<i64>,
}

/// Filter for listing dead letters. Empty fields match everything; `limit: 0` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub route: Option<String>,
    pub key: Option<String>,
    pub state: Option<DeadLetterState>,
    pub limit: u32,
}

/// What happened when settling (replay / drop) a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// This call changed the state; the caller must now do the effect (publish for replay).
    Changed(DeadLetter),
    /// It was already replayed or dropped: nothing changed.
    AlreadySettled(DeadLetter),
    NotFound,
}

/// A ledger row as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    #[serde(flatten)]
    pub record: OutcomeRecord,
}

/// A version of a key that was accepted (durably queued) for a route: the newest one queued.
/// Used to coalesce a backlog: an older queued snapshot is superseded by a newer one that is
/// already queued for the same route, without being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedVersion {
    pub route: String,
    pub key: String,
    pub version: i64,
}

/// What is known of a key's versions for one route and its destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// The highest version delivered to the destination.
    pub delivered: Option<i64>,
    /// The highest version accepted (queued) for the route.
    pub accepted: Option<i64>,
}

/// One question of [`Store::versions_many`](crate::Store::versions_many): the versions of
/// `key` delivered to `destination` and accepted for `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsAsk {
    pub route: String,
    pub destination: String,
    pub key: String,
}

/// Everything recorded in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub outcomes: Vec<OutcomeRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub dead_letters: Vec<NewDeadLetter>,
    /// Accepted versions: each raises (route, key) to max(old, new), like delivered versions.
    pub accepted: Vec<AcceptedVersion>,
    /// Evidence records, appended to their chains in the same transaction (see [`evidence`](crate::evidence)).
    pub evidence: Vec<EvidenceRecord>,
    /// Claims to release (and their exchanges' in-doubt rows to settle), in the same
    /// transaction as the outcomes (see [`claims`](crate::claims)).
    pub releases: Vec<ClaimRelease>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
            && self.attempts.is_empty()
            && self.dead_letters.is_empty()
            && self.accepted.is_empty()
            && self.evidence.is_empty()
            && self.releases.is_empty()
    }
}
