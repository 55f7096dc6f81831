//! What the axis sandbox holds: the documents it accepted, the items held for each system, the
//! statuses it was given, the refusals, and the switchable faults.
//!
//! # Invariants
//! - An accepted envelope is kept byte for byte; its DocumentId is unique among them.
//! - Faults apply to the four operations, never to `/_sandbox/*`.

use serde::{Deserialize, Serialize};

use crate::officials::FaultStep;

/// A document (or status message) accepted by `sendEdoc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentDoc {
    /// The axis's id (`docID`).
    pub doc_id: String,
    pub document_id: String,
    pub messagetype: String,
    pub from_system: String,
    pub from_organ: String,
    pub to_organs: Vec<String>,
    pub subject: Option<String>,
    /// For a status message: its code.
    pub status_code: Option<String>,
    pub bytes: usize,
    pub sha256: String,
    /// The signer certificate's subject.
    pub signer: String,
    /// Times the same bytes were sent again (answered with the same `docID`).
    pub resends: u32,
    #[serde(skip)]
    pub xml: Vec<u8>,
}

/// An item held for a system to fetch (`getReceivedEdocList`, `getEdoc`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    pub to_system: String,
    pub from: String,
    pub messagetype: String,
    /// The statuses the receiving system gave it (`updateStatus`), in order.
    pub statuses: Vec<String>,
    /// Times it was fetched.
    pub fetched: u32,
    pub created_ms: i64,
    #[serde(skip)]
    pub xml: Vec<u8>,
}

/// One `updateStatus` accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub system: String,
    pub doc_id: String,
    pub status: String,
}

/// One refusal: the operation, the axis's error code, its description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    pub operation: String,
    pub code: String,
    pub desc: String,
}

/// The sandbox's records, what tests read (`GET /_sandbox/records`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AxisRecords {
    pub sent: Vec<SentDoc>,
    pub held: Vec<Held>,
    pub statuses: Vec<StatusUpdate>,
    pub refused: Vec<Refusal>,
    /// Calls per operation (`sendEdoc`, `getReceivedEdocList`, `getEdoc`, `updateStatus`).
    pub calls: std::collections::BTreeMap<String, u64>,
}

impl AxisRecords {
    pub fn refusals(&self, code: &str) -> usize {
        self.refused.iter().filter(|r| r.code == code).count()
    }
    pub fn statuses_of(&self, doc_id: &str) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|s| s.doc_id == doc_id)
            .map(|s| s.status.clone())
            .collect()
    }
    pub fn calls(&self, op: &str) -> u64 {
        self.calls.get(op).copied().unwrap_or(0)
    }
}

/// The switchable faults of the four operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AxisFaults {
    /// The next N calls answer HTTP 503 before any effect.
    pub fail_before: u32,
    /// The next N calls take effect, then answer HTTP 500 (the answer is lost).
    pub fail_after: u32,
    /// The next N calls take effect, then hold the answer `stall_ms` (a client times out).
    pub stall: u32,
    pub stall_ms: u64,
    /// Only calls of this operation are faulted (`sendEdoc`, …); empty: every operation.
    pub only: String,
}

impl AxisFaults {
    /// Consume this call's fault, if it applies to `op`.
    pub fn take(&mut self, op: &str) -> FaultStep {
        if !self.only.is_empty() && self.only != op {
            return FaultStep::None;
        }
        if self.fail_before > 0 {
            self.fail_before -= 1;
            return FaultStep::FailBefore;
        }
        if self.fail_after > 0 {
            self.fail_after -= 1;
            return FaultStep::FailAfter;
        }
        if self.stall > 0 {
            self.stall -= 1;
            return FaultStep::Stall(self.stall_ms);
        }
        FaultStep::None
    }
}

/// Everything behind the sandbox's lock.
#[derive(Debug, Default)]
pub struct State {
    pub records: AxisRecords,
    pub faults: AxisFaults,
    pub next_id: u64,
}

impl State {
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}", self.next_id)
    }
}
