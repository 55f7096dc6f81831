//! Evidence-log scenarios of the store suite (see [`crate::suite`]): chaining, idempotency,
//! atomicity with the ledger, retention, and tamper detection through raw SQL (each backend's
//! test file passes an executor on the store's own tables).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::evidence::{
    batch_text, chain_after, link_hash, verify_chains, EvidenceRecord, StoredEvidence,
    TimeStampRow, GENESIS,
};
use crate::evidence_merkle::{leaf_hash, root};
use crate::evidence_records::hex_lower;
use crate::records::Batch;
use crate::store::Store;
use crate::suite_support::{dead_letter, outcome};

/// Runs one SQL statement (no parameters) on the store's tables; panics on failure.
pub type Sql = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A metadata-mode outbound record of `chain` for exchange `n`.
pub fn record(chain: &str, n: u32, dossier: &str) -> EvidenceRecord {
    EvidenceRecord {
        id: format!("{chain}-rec-{n:04}"),
        chain: chain.into(),
        exchange: format!("{chain}/env-{n}/1/0"),
        at_ms: 1_000 + i64::from(n),
        adapter: "national".into(),
        direction: "out".into(),
        route: "r1".into(),
        envelope_id: format!("env-{n}"),
        dossier: dossier.into(),
        operation: "DongBoHoSoMC".into(),
        request_digest: format!("{:064x}", n),
        response_digest: Some(format!("{:064x}", n + 1_000)),
        signature_digest: Some(format!("{:064x}", n + 2_000)),
        cert_fingerprint: Some(format!("{:064x}", 7)),
        http_status: Some(200),
        result_code: Some("0".into()),
        mode: "metadata".into(),
        request_body: None,
        response_body: None,
    }
}

fn evidence(records: Vec<EvidenceRecord>) -> Batch {
    Batch {
        evidence: records,
        ..Default::default()
    }
}

/// A token the suite's checker refuses.
#[derive(Debug, thiserror::Error)]
#[error("token does not verify")]
struct TokenRefused;

/// Accepts tokens whose bytes are `valid`: the real RFC 3161 check is the gateway's.
fn token_check(ts: &TimeStampRow) -> Result<(), TokenRefused> {
    if ts.token == b"valid" {
        Ok(())
    } else {
        Err(TokenRefused)
    }
}

async fn verify(store: &Arc<dyn Store>) -> crate::evidence::VerifyReport {
    verify_chains(store.as_ref(), &token_check).await.unwrap()
}

async fn write_chain(store: &Arc<dyn Store>, chain: &str, n: u32) {
    for i in 1..=n {
        store
            .record(evidence(vec![record(chain, i, "HS-1")]))
            .await
            .unwrap();
    }
}

pub async fn evidence_records_chain_and_are_written_once(store: Arc<dyn Store>) {
    assert!(store.evidence_heads().await.unwrap().is_empty());
    // One batch: a ledger outcome and two records of chain a, one of chain b.
    let o = outcome("r1", "env-1", "HS-1", 1_000);
    let batch = Batch {
        outcomes: vec![o.clone()],
        evidence: vec![
            record("a", 1, "HS-1"),
            record("a", 2, "HS-2"),
            record("b", 1, "HS-1"),
        ],
        ..Default::default()
    };
    store.record(batch.clone()).await.unwrap();
    // Again (a retried batch) and the same exchange under a new record id: no-ops.
    store.record(batch).await.unwrap();
    let mut again = record("a", 2, "HS-2");
    again.id = "another-id".into();
    store.record(evidence(vec![again])).await.unwrap();

    // One link per chain and batch: chain a's two records are the leaves of link 1.
    let heads = store.evidence_heads().await.unwrap();
    assert_eq!(
        heads
            .iter()
            .map(|h| (h.chain.as_str(), h.seq))
            .collect::<Vec<_>>(),
        vec![("a", 1), ("b", 1)]
    );
    let a = store.evidence_chain("a", 0, 100).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].seq, a[1].seq), (1, 1));
    assert_eq!(
        (a[0].prev_hash.as_str(), a[1].prev_hash.as_str()),
        (GENESIS, GENESIS)
    );
    assert_eq!(a[0].hash, a[1].hash);
    assert_eq!(heads[0].hash, a[0].hash);
    let (p0, p1) = (a[0].batch.clone().unwrap(), a[1].batch.clone().unwrap());
    assert_eq!((p0.leaf, p1.leaf, p0.leaves), (0, 1, 2));
    // The link's hash is SHA-256 over its text (what an auditor recomputes), which holds the
    // Merkle root over the leaves, in batch order.
    let leaves = [
        leaf_hash(&record("a", 1, "HS-1")),
        leaf_hash(&record("a", 2, "HS-2")),
    ];
    assert_eq!(p0.root, hex_lower(&root(&leaves).unwrap()));
    assert_eq!(link_hash(&a[1]), a[1].hash);
    assert!(batch_text("a", 1, GENESIS, &p0).contains(&format!("root: {}\n", p0.root)));
    assert_eq!(a[0].record, record("a", 1, "HS-1"));
    // A page never ends inside a link.
    assert_eq!(store.evidence_chain("a", 0, 1).await.unwrap(), a);
    assert!(store.evidence_chain("a", 1, 100).await.unwrap().is_empty());

    let hs1 = store.evidence_by_dossier("HS-1").await.unwrap();
    assert_eq!(
        hs1.iter()
            .map(|r| (r.record.chain.as_str(), r.seq))
            .collect::<Vec<_>>(),
        vec![("a", 1), ("b", 1)]
    );

    // Full mode bodies (opaque sealed bytes) come back byte for byte.
    let mut full = record("a", 3, "HS-3");
    full.mode = "full".into();
    full.request_body = Some(vec![0, 159, 146, 150, 255]);
    full.response_body = Some(b"{\"error_code\":\"0\"}".to_vec());
    store.record(evidence(vec![full.clone()])).await.unwrap();
    assert_eq!(
        store.evidence_by_dossier("HS-3").await.unwrap()[0].record,
        full
    );

    // Atomic with the ledger: a batch that fails (a conflicting dead letter) leaves no record.
    let letter = dead_letter("r1", "env-9", "HS-9", 5);
    store
        .record(Batch {
            dead_letters: vec![letter.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut conflicting = letter;
    conflicting.reason = "something else".into();
    let failed = store
        .record(Batch {
            dead_letters: vec![conflicting],
            evidence: vec![record("a", 4, "HS-9")],
            ..Default::default()
        })
        .await;
    assert!(failed.is_err());
    assert!(store.evidence_by_dossier("HS-9").await.unwrap().is_empty());
    assert_eq!(store.evidence_heads().await.unwrap()[0].seq, 2);

    let report = verify(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.chains, report.records), (2, 4));
}

pub async fn evidence_chains_grow_concurrently(store: Arc<dyn Store>) {
    // Eight writers on two chains: no fork, no gap.
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let chain = if w % 2 == 0 { "even" } else { "odd" };
            for i in 0..10 {
                let r = record(chain, w * 100 + i, "HS-C");
                store.record(evidence(vec![r])).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = verify(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, 80);
}

pub async fn evidence_timestamps_are_checked(store: Arc<dyn Store>) {
    write_chain(&store, "a", 3).await;
    let chain = store.evidence_chain("a", 0, 10).await.unwrap();
    let ts = |seq: i64, hash: &str, token: &[u8]| TimeStampRow {
        chain: "a".into(),
        seq,
        hash: hash.into(),
        token: token.to_vec(),
        at_ms: 9,
    };
    store
        .add_timestamp(ts(2, &chain[1].hash, b"valid"))
        .await
        .unwrap();
    // A second token for the same head is ignored.
    store
        .add_timestamp(ts(2, &chain[1].hash, b"other"))
        .await
        .unwrap();
    assert_eq!(store.timestamps("a").await.unwrap().len(), 1);
    assert!(verify(&store).await.ok());

    // A forged token, and a token over a hash that is not the record's.
    store
        .add_timestamp(ts(3, &chain[2].hash, b"forged"))
        .await
        .unwrap();
    store
        .add_timestamp(ts(1, &chain[2].hash, b"valid"))
        .await
        .unwrap();
    let report = verify(&store).await;
    let bad: Vec<i64> = report.problems.iter().map(|p| p.seq).collect();
    assert_eq!(bad, vec![1, 3], "{:?}", report.problems);
    assert!(report.problems[0].what.contains("another hash"));
    assert!(report.problems[1].what.contains("does not verify"));
}

pub async fn evidence_retention_keeps_the_rest_verifiable(store: Arc<dyn Store>) {
    write_chain(&store, "a", 6).await;
    let chain = store.evidence_chain("a", 0, 10).await.unwrap();
    assert_eq!(store.evidence_prune("a", 4).await.unwrap(), 4);
    // Pruning an absent seq changes nothing.
    assert_eq!(store.evidence_prune("a", 99).await.unwrap(), 0);
    let head = &store.evidence_heads().await.unwrap()[0];
    assert_eq!(
        (head.anchor_seq, head.anchor_hash.as_str()),
        (4, chain[3].hash.as_str())
    );
    let rest = store.evidence_chain("a", 0, 10).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(
        rest[0].prev_hash, head.anchor_hash,
        "commits to the archived head"
    );
    let report = verify(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    // New records continue the chain.
    store
        .record(evidence(vec![record("a", 7, "HS-1")]))
        .await
        .unwrap();
    assert!(verify(&store).await.ok());
    // The token at the anchor stays live (the archive holds the record it covers): it must
    // cover the anchor's hash.
    store
        .add_timestamp(TimeStampRow {
            chain: "a".into(),
            seq: 4,
            hash: chain[2].hash.clone(),
            token: b"valid".to_vec(),
            at_ms: 9,
        })
        .await
        .unwrap();
    let report = verify(&store).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].seq, 4);
    assert!(report.problems[0].what.contains("anchor"));
}

/// Tamper with five chains through raw SQL, one kind of change each, and check that the verifier
/// names the first broken record of each (and nothing in the untouched chain).
pub async fn evidence_tampering_is_detected(store: Arc<dyn Store>, sql: Sql) {
    // Per-event chains (the format before batch links), as an older gateway wrote them.
    for chain in [
        "clean",
        "modified",
        "deleted",
        "inserted",
        "reordered",
        "truncated",
    ] {
        write_old_chain(&sql, chain, 1..=5, (0, GENESIS.into())).await;
    }
    let ids: BTreeMap<&str, Vec<String>> = {
        let mut m = BTreeMap::new();
        for chain in ["modified", "deleted", "inserted", "reordered"] {
            let rows = store.evidence_chain(chain, 0, 10).await.unwrap();
            m.insert(chain, rows.into_iter().map(|r| r.record.id).collect());
        }
        m
    };
    assert!(verify(&store).await.ok());

    // Modified: one field of record 3.
    sql("UPDATE evidence SET http_status = 500 WHERE chain = 'modified' AND seq = 3".into()).await;
    // Deleted: record 3.
    sql("DELETE FROM evidence WHERE chain = 'deleted' AND seq = 3".into()).await;
    // Inserted: a copy of record 2, made to look like it belongs after record 2, as seq 3 (the
    // rest moved up by one).
    sql("UPDATE evidence SET seq = seq + 1000 WHERE chain = 'inserted' AND seq >= 3".into()).await;
    sql("UPDATE evidence SET seq = seq - 999 WHERE chain = 'inserted' AND seq >= 1000".into())
        .await;
    sql(
        "INSERT INTO evidence SELECT chain, 3, 'forged-id', 'forged-exchange', at_ms, adapter, \
         direction, route, envelope_id, dossier, operation, request_digest, response_digest, \
         signature_digest, cert_fingerprint, http_status, result_code, mode, request_body, \
         response_body, hash, hash FROM evidence WHERE chain = 'inserted' AND seq = 2"
            .into(),
    )
    .await;
    // Reordered: records 2 and 3 swap places.
    sql("UPDATE evidence SET seq = 1002 WHERE chain = 'reordered' AND seq = 2".into()).await;
    sql("UPDATE evidence SET seq = 2 WHERE chain = 'reordered' AND seq = 3".into()).await;
    sql("UPDATE evidence SET seq = 3 WHERE chain = 'reordered' AND seq = 1002".into()).await;
    // Truncated: the last record removed.
    sql("DELETE FROM evidence WHERE chain = 'truncated' AND seq = 5".into()).await;

    let report = verify(&store).await;
    let found: BTreeMap<&str, (i64, Option<String>)> = report
        .problems
        .iter()
        .map(|p| (p.chain.as_str(), (p.seq, p.record_id.clone())))
        .collect();
    let id = |chain: &str, i: usize| Some(ids[chain][i].clone());
    assert_eq!(found.get("clean"), None, "{:?}", report.problems);
    assert_eq!(found["modified"], (3, id("modified", 2)));
    // The gap: record 4 is found where 3 should be.
    assert_eq!(found["deleted"], (4, id("deleted", 3)));
    // The forged record 3 commits to record 2 but its hash is not its own (SQL cannot forge
    // a SHA-256 here; had it, the break would be at the old record 3, now seq 4).
    assert_eq!(found["inserted"], (3, Some("forged-id".to_string())));
    // Old record 3 now at seq 2: its hash covers seq 3.
    let reordered = &report
        .problems
        .iter()
        .find(|p| p.chain == "reordered")
        .unwrap();
    assert_eq!(reordered.seq, 2);
    assert_eq!(reordered.record_id, id("reordered", 2));
    assert_eq!(found["truncated"].0, 5);
    assert!(report
        .problems
        .iter()
        .find(|p| p.chain == "truncated")
        .unwrap()
        .what
        .contains("head"));
    assert_eq!(report.problems.len(), 5, "{:?}", report.problems);
}

/// SQL text of a value: quoted text or NULL.
fn lit(v: Option<&str>) -> String {
    v.map_or("NULL".into(), |v| format!("'{}'", v.replace('\'', "''")))
}

/// Write per-event records `n` of `chain` after `head`, as a gateway before batch links did
/// (raw SQL: the store only writes batch links now); returns the new head.
async fn write_old_chain(
    sql: &Sql,
    chain: &str,
    n: std::ops::RangeInclusive<u32>,
    head: (i64, String),
) -> (i64, String) {
    let records: Vec<EvidenceRecord> = n.map(|i| record(chain, i, "HS-1")).collect();
    let (stored, head) = chain_after(head, records);
    for s in stored {
        let r = &s.record;
        sql(format!(
            "INSERT INTO evidence (chain, seq, id, exchange, at_ms, adapter, direction, route, \
             envelope_id, dossier, operation, request_digest, response_digest, signature_digest, \
             cert_fingerprint, http_status, result_code, mode, prev_hash, hash) VALUES \
             ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            lit(Some(&r.chain)),
            s.seq,
            lit(Some(&r.id)),
            lit(Some(&r.exchange)),
            r.at_ms,
            lit(Some(&r.adapter)),
            lit(Some(&r.direction)),
            lit(Some(&r.route)),
            lit(Some(&r.envelope_id)),
            lit(Some(&r.dossier)),
            lit(Some(&r.operation)),
            lit(Some(&r.request_digest)),
            lit(r.response_digest.as_deref()),
            lit(r.signature_digest.as_deref()),
            lit(r.cert_fingerprint.as_deref()),
            r.http_status.map_or("NULL".into(), |s| s.to_string()),
            lit(r.result_code.as_deref()),
            lit(Some(&r.mode)),
            lit(Some(&s.prev_hash)),
            lit(Some(&s.hash)),
        ))
        .await;
    }
    sql(format!(
        "INSERT INTO evidence_heads (chain, seq, hash) VALUES ({}, {}, {}) \
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        lit(Some(chain)),
        head.0,
        lit(Some(&head.1))
    ))
    .await;
    head
}

/// Records `from..=to` of `chain` as one batch.
async fn write_batch(store: &Arc<dyn Store>, chain: &str, from: u32, to: u32, dossier: &str) {
    let records = (from..=to).map(|i| record(chain, i, dossier)).collect();
    store.record(evidence(records)).await.unwrap();
}

/// Mixed chains: per-event records written before batch links, then batch links; they verify
/// as one chain, read back in order, deduplicate across both formats and prune together.
pub async fn evidence_mixed_chains_verify_and_prune(store: Arc<dyn Store>, sql: Sql) {
    let head = write_old_chain(&sql, "mixed", 1..=2, (0, GENESIS.into())).await;
    write_batch(&store, "mixed", 3, 5, "HS-M").await;
    // A redelivered exchange of an old per-event record, and one of the batch: no new link.
    store
        .record(evidence(vec![
            record("mixed", 1, "HS-1"),
            record("mixed", 4, "HS-M"),
        ]))
        .await
        .unwrap();
    let heads = store.evidence_heads().await.unwrap();
    assert_eq!(
        heads[0].seq, 3,
        "one link for the batch after the two old ones"
    );
    let all: Vec<StoredEvidence> = store.evidence_chain("mixed", 0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.seq, r.batch.is_some()))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, false), (3, true), (3, true), (3, true)]
    );
    assert_eq!(
        all[2].prev_hash, head.1,
        "the first batch link commits to the old head"
    );
    // Pages count links: two old links, then the whole batch.
    assert_eq!(store.evidence_chain("mixed", 0, 2).await.unwrap(), all[..2]);
    assert_eq!(store.evidence_chain("mixed", 2, 1).await.unwrap(), all[2..]);
    let report = verify(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, 5);
    let hs = store.evidence_by_dossier("HS-M").await.unwrap();
    assert_eq!(
        hs.iter()
            .map(|r| r.batch.as_ref().map(|b| b.leaf))
            .collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    // Prune the old part, then the batch (its three leaves count as three records).
    assert_eq!(store.evidence_prune("mixed", 2).await.unwrap(), 2);
    let head = &store.evidence_heads().await.unwrap()[0];
    assert_eq!(
        (head.anchor_seq, head.anchor_hash.as_str()),
        (2, all[1].hash.as_str())
    );
    assert!(verify(&store).await.ok());
    write_batch(&store, "mixed", 6, 7, "HS-M").await;
    assert!(verify(&store).await.ok());
    assert_eq!(store.evidence_prune("mixed", 3).await.unwrap(), 3);
    let rest = store.evidence_chain("mixed", 0, 100).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 4]);
    assert_eq!(rest[0].prev_hash, all[2].hash);
    let report = verify(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, 2);
}

/// Tamper with batch links and their leaves through raw SQL, one kind of change per chain:
/// the verifier names the batch and why (and nothing in the untouched chain).
pub async fn evidence_batch_tampering_is_detected(store: Arc<dyn Store>, sql: Sql) {
    let chains = [
        "clean", "leafmod", "leafdel", "leaflast", "leafins", "leafswap", "rootmod",
    ];
    for chain in chains {
        write_batch(&store, chain, 1, 1, "HS-1").await;
        write_batch(&store, chain, 2, 4, "HS-1").await;
        write_batch(&store, chain, 5, 5, "HS-1").await;
    }
    assert!(verify(&store).await.ok());
    let leaves = "evidence_leaves";
    // A field of one leaf.
    sql(format!(
        "UPDATE {leaves} SET http_status = 500 WHERE chain = 'leafmod' AND seq = 2 AND leaf = 1"
    ))
    .await;
    // A leaf removed from the middle, and the last leaf removed.
    sql(format!(
        "DELETE FROM {leaves} WHERE chain = 'leafdel' AND seq = 2 AND leaf = 1"
    ))
    .await;
    sql(format!(
        "DELETE FROM {leaves} WHERE chain = 'leaflast' AND seq = 2 AND leaf = 2"
    ))
    .await;
    // A fourth leaf added (a copy of leaf 2 under another exchange key).
    sql(format!(
        "INSERT INTO {leaves} SELECT chain, seq, 3, id, 'forged-exchange', at_ms, adapter, \
         direction, route, envelope_id, dossier, operation, request_digest, response_digest, \
         signature_digest, cert_fingerprint, http_status, result_code, mode, request_body, \
         response_body FROM {leaves} WHERE chain = 'leafins' AND seq = 2 AND leaf = 2"
    ))
    .await;
    // Leaves 0 and 1 swap places.
    sql(format!(
        "UPDATE {leaves} SET leaf = 9 WHERE chain = 'leafswap' AND seq = 2 AND leaf = 0"
    ))
    .await;
    sql(format!(
        "UPDATE {leaves} SET leaf = 0 WHERE chain = 'leafswap' AND seq = 2 AND leaf = 1"
    ))
    .await;
    sql(format!(
        "UPDATE {leaves} SET leaf = 1 WHERE chain = 'leafswap' AND seq = 2 AND leaf = 9"
    ))
    .await;
    // The root of a link replaced by another batch's.
    sql(
        "UPDATE evidence_batches SET root = (SELECT root FROM evidence_batches \
         WHERE chain = 'clean' AND seq = 1) WHERE chain = 'rootmod' AND seq = 2"
            .into(),
    )
    .await;

    let report = verify(&store).await;
    let found: BTreeMap<&str, (i64, String)> = report
        .problems
        .iter()
        .map(|p| (p.chain.as_str(), (p.seq, p.what.clone())))
        .collect();
    assert_eq!(found.get("clean"), None, "{:?}", report.problems);
    let says = |chain: &str, seq: i64, what: &str| {
        let (s, w) = &found[chain];
        assert_eq!(*s, seq, "{chain}: {w}");
        assert!(w.contains(what), "{chain}: {w}");
    };
    says("leafmod", 2, "do not match its Merkle root");
    says("leafdel", 2, "leaf 2 of batch seq 2 is out of place");
    says("leaflast", 3, "batch seq 2 has 2 of the 3 leaves");
    says("leafins", 2, "more leaves than the 3");
    says("leafswap", 2, "do not match its Merkle root");
    says("rootmod", 2, "content does not match its hash");
    assert_eq!(report.problems.len(), 6, "{:?}", report.problems);
}
