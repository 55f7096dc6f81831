//! The evidence log: a record of every exchange with an external party, hash-chained.
//!
//! # Chain
//!
//! Records are appended to a *chain* (one per gateway instance or partition, named by the
//! writer), so that writers of different chains never wait for each other. Since migration 14
//! the records of one chain in one store batch form **one link** of the chain, a *batch link*
//! whose Merkle leaves are the exchanges (see [`crate::evidence_merkle`] for the leaf, node and
//! link hashing); links written before are *per-event* links (one record each), still read and
//! verified, and both kinds chain into each other. Link `n` of a chain commits to link `n - 1`:
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
//! 1. Records are written by [`Store::record`] in the same transaction as
//!    the ledger rows of their [`Batch`](crate::Batch): an acked message always has its record.
//! 2. The store assigns `seq`, `prev_hash` and `hash` inside that transaction, under the chain's
//!    head row (a row lock in PostgreSQL, the single writer in SQLite): a chain never forks.
//! 3. One record per exchange key ([`EvidenceRecord::exchange`]): recording the same exchange
//!    again (a batch retried after a lost commit answer, a redelivered message) is a no-op and
//!    does not advance the chain.
//! 4. [`verify_chains`] walks every chain from its anchor to its head and reports the first
//!    broken link (modified, deleted, inserted or reordered record; truncated head) with the
//!    record's id, and checks every stored time-stamp against the record it covers.
//!
//! # Files
//! The record types and the hashing are in `evidence_records.rs` (re-exported here, so
//! `gw_store::evidence::EvidenceRecord` and the rest keep their paths); this file holds the
//! verification, which reads a [`Store`].

pub use crate::evidence_merkle::{
    batch_text, leaf_text, link_hash, link_text, BATCH_TAG, LEAF_TAG,
};
pub use crate::evidence_records::{
    canonical, chain_after, hex_lower, record_hash, BatchPlace, ChainHead, EvidenceRecord,
    StoredEvidence, TimeStampRow, CANONICAL_TAG, GENESIS,
};
use serde::Serialize;

use crate::error::Result;
use crate::evidence_merkle::Walker;
use crate::store::Store;

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
        let mut walker = Walker::new(head.anchor_seq, &head.anchor_hash);
        let mut broken = None;
        let mut after = head.anchor_seq;
        let mut last_id = None;
        'walk: loop {
            let page = store.evidence_chain(&head.chain, after, PAGE).await?;
            let Some(l) = page.last() else { break };
            after = l.seq;
            for r in page {
                report.records += 1;
                if let Err(what) = walker.step(&r) {
                    broken = Some(Broken {
                        chain: head.chain.clone(),
                        record_id: Some(r.record.id.clone()),
                        seq: r.seq,
                        what,
                    });
                    break 'walk;
                }
                last_id = Some(r.record.id.clone());
                hashes.insert(r.seq, r.hash.clone());
            }
        }
        if broken.is_none() {
            if let Err(what) = walker.end() {
                let (seq, _) = walker.last();
                broken = Some(Broken {
                    chain: head.chain.clone(),
                    record_id: last_id,
                    seq,
                    what,
                });
            }
        }
        let (seq, prev) = walker.last();
        if broken.is_none() && (seq, prev) != (head.seq, head.hash.as_str()) {
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
