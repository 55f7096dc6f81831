//! What the sandbox saw ([`Records`]) and the checks a test runs on it.
//!
//! # Invariants
//!
//! - Only accepted items are stored as versions; every refusal is recorded with its reason.
//! - `seq` is one counter across all requests, so arrival order is total.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One accepted version of a dossier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DossierVersion {
    /// The request's arrival number (one counter for every request).
    pub seq: u64,
    /// The item's place in its batch.
    pub index: usize,
    pub is_updating: bool,
    /// The item exactly as received.
    pub item: Value,
    pub unknown_fields: Vec<String>,
}

/// One accepted progress step or status update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub index: usize,
    pub item: Value,
    pub unknown_fields: Vec<String>,
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub seq: u64,
    pub service: String,
    pub http_status: u16,
    /// The `error_code` answered (empty when the answer was not a portal body).
    pub error_code: String,
    pub reason: String,
    /// True for faults injected on purpose.
    pub injected: bool,
}

/// A field the contract does not know, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownField {
    pub seq: u64,
    pub service: String,
    pub path: String,
}

/// Everything the portal saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    /// Accepted versions by dossier code, in arrival order.
    pub dossiers: BTreeMap<String, Vec<DossierVersion>>,
    /// OAuth2 tokens issued (LGSP mode).
    #[serde(default)]
    pub tokens_issued: u64,
    pub progress: BTreeMap<String, Vec<Entry>>,
    pub statuses: BTreeMap<String, Vec<Entry>>,
    pub refused: Vec<Refusal>,
    pub unknown_fields: Vec<UnknownField>,
    /// Calls per service (login counted as the login service name), faulted ones included.
    pub calls: BTreeMap<String, u64>,
    /// Successful logins.
    pub logins: u64,
    /// Requests answered 429 by the rate limit.
    pub rate_limited: u64,
    /// Injected faults by kind.
    pub injected: BTreeMap<String, u64>,
    /// Requests seen (the last `seq`).
    pub requests: u64,
}

/// An accepted version older than one accepted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderViolation {
    pub dossier: String,
    pub seq: u64,
    pub version: i64,
    pub after_version: i64,
}

/// What the records say about the dossiers a test sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncCheck {
    /// Dossiers whose last sent version is not the last accepted one.
    pub missing: Vec<String>,
    /// Accepted versions that equal one already accepted for that dossier.
    pub duplicates: u64,
    /// Accepted versions sent before one accepted earlier.
    pub older_after_newer: u64,
    /// Accepted items that match nothing the test sent.
    pub unexpected: u64,
    pub accepted: u64,
}

impl Records {
    /// The last accepted item of a dossier.
    pub fn latest(&self, code: &str) -> Option<&Value> {
        self.dossiers
            .get(code)
            .and_then(|v| v.last())
            .map(|v| &v.item)
    }

    /// Accepted versions whose version (read by `version_of` from the item, e.g. from a marker
    /// the test put in `GhiChu`) is lower than one accepted before them for that dossier.
    pub fn ordering_violations<F>(&self, version_of: F) -> Vec<OrderViolation>
    where
        F: Fn(&str, &Value) -> Option<i64>,
    {
        let mut out = Vec::new();
        for (code, versions) in &self.dossiers {
            let mut newest: Option<i64> = None;
            for v in versions {
                let Some(n) = version_of(code, &v.item) else {
                    continue;
                };
                if let Some(m) = newest {
                    if n < m {
                        out.push(OrderViolation {
                            dossier: code.clone(),
                            seq: v.seq,
                            version: n,
                            after_version: m,
                        });
                    }
                }
                newest = Some(newest.map_or(n, |m| m.max(n)));
            }
        }
        out
    }

    /// Compare with what was sent: `sent` maps each dossier code to its items in the order the
    /// test produced them (the version is the position). Items are matched by JSON equality.
    pub fn check_sent(&self, sent: &BTreeMap<String, Vec<Value>>) -> SyncCheck {
        let mut c = SyncCheck::default();
        for (code, versions) in &self.dossiers {
            let list = sent.get(code);
            let mut seen = BTreeSet::new();
            let mut newest: Option<usize> = None;
            for v in versions {
                c.accepted += 1;
                let pos = list.and_then(|l| l.iter().rposition(|s| s == &v.item));
                let Some(p) = pos else {
                    c.unexpected += 1;
                    continue;
                };
                if !seen.insert(p) {
                    c.duplicates += 1;
                }
                if newest.is_some_and(|m| p < m) {
                    c.older_after_newer += 1;
                }
                newest = Some(newest.map_or(p, |m| m.max(p)));
            }
        }
        for (code, items) in sent {
            let ok = match (items.last(), self.latest(code)) {
                (Some(want), Some(got)) => want == got,
                (None, _) => true,
                _ => false,
            };
            if !ok {
                c.missing.push(code.clone());
            }
        }
        c
    }
}
