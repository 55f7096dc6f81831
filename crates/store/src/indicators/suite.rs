//! The shared checks of [`IndicatorStore`], run on both stores by `tests/indicators.rs`.
//!
//! # Invariants
//!
//! - Starts from an empty store; `ledger` is the same store seen as the delivery ledger (for
//!   invariant 6).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::Store;

fn entry(id: &str, key: &str, at_ms: i64) -> JournalEntry {
    JournalEntry {
        event_id: id.into(),
        key: key.into(),
        kind: "dossier.upserted".into(),
        fact: format!("{{\"n\":\"{id}\"}}"),
        at_ms,
    }
}

/// A fold that appends the event id to a JSON list of ids, counting its calls.
fn appending(id: &str, calls: Arc<AtomicUsize>, received: Option<i64>, end: Option<i64>) -> Fold {
    let id = id.to_string();
    Box::new(move |stored: Option<String>, seq: i64| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut ids: Vec<String> = match stored {
            Some(s) => serde_json::from_str(&s).map_err(|e| e.to_string())?,
            None => vec![],
        };
        let code = id.split(':').next().unwrap_or_default().to_string();
        ids.push(id);
        Ok(StateRow {
            code,
            unit: "xã A".into(),
            procedure: "1.001193".into(),
            received_ms: received,
            end_ms: end,
            state: serde_json::to_string(&ids).unwrap(),
            last_seq: seq,
            updated_ms: 1,
        })
    })
}

/// Invariants 1-6.
pub async fn all(s: &dyn IndicatorStore, ledger: &dyn Store) {
    let calls = Arc::new(AtomicUsize::new(0));
    // 1. Applied once; a second application of the same event id writes nothing.
    let a1 = s
        .apply(
            "c",
            entry("K1:e1", "K1", 10),
            appending("K1:e1", calls.clone(), Some(100), None),
        )
        .await
        .unwrap();
    let Applied::Applied { seq: seq1 } = a1 else {
        panic!("{a1:?}")
    };
    let dup = s
        .apply(
            "c",
            entry("K1:e1", "K1", 10),
            appending("K1:e1", calls.clone(), Some(100), None),
        )
        .await
        .unwrap();
    assert_eq!(dup, Applied::Duplicate);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the fold of a duplicate never runs"
    );
    // 2. The fold sees the stored state.
    s.apply(
        "c",
        entry("K1:e2", "K1", 11),
        appending("K1:e2", calls.clone(), Some(100), Some(500)),
    )
    .await
    .unwrap();
    let row = s.state("K1").await.unwrap().unwrap();
    assert_eq!(row.state, r#"["K1:e1","K1:e2"]"#);
    assert_eq!(row.end_ms, Some(500));
    assert!(row.last_seq > seq1);
    let pos = s.position("c").await.unwrap().unwrap();
    assert_eq!((pos.applied, pos.last_event.as_str()), (2, "K1:e2"));
    assert_eq!(pos.last_seq, row.last_seq);
    assert_eq!(s.position("other").await.unwrap(), None);
    // A failing fold rolls everything back: no journal entry, no position move.
    let failing: Fold = Box::new(|_, _| Err("unreadable".into()));
    match s.apply("c", entry("K1:e3", "K1", 12), failing).await {
        Err(StoreError::Malformed(m)) => {
            assert!(m.contains("K1") && m.contains("unreadable"), "{m}")
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    assert_eq!(s.journal_len().await.unwrap(), 2);
    assert_eq!(s.position("c").await.unwrap().unwrap().applied, 2);
    // The event can be applied once its fold works.
    s.apply(
        "c",
        entry("K1:e3", "K1", 12),
        appending("K1:e3", calls.clone(), Some(100), Some(500)),
    )
    .await
    .unwrap();

    // 3. The journal in (key, seq) order, paged.
    for (id, key) in [("K0:a", "K0"), ("K2:a", "K2"), ("K0:b", "K0")] {
        s.apply(
            "c",
            entry(id, key, 20),
            appending(id, calls.clone(), Some(200), None),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.journal_page(after.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|(seq, e)| (e.key.clone(), *seq));
        seen.extend(page.into_iter().map(|(_, e)| e.event_id));
    }
    assert_eq!(seen, ["K0:a", "K0:b", "K1:e1", "K1:e2", "K1:e3", "K2:a"]);
    assert_eq!(s.journal_len().await.unwrap(), 6);

    // 4. A rebuilt row never replaces a newer one.
    let stored = s.state("K1").await.unwrap().unwrap();
    let mut stale = stored.clone();
    stale.state = "[\"stale\"]".into();
    stale.last_seq = stored.last_seq - 1;
    let mut fresh = s.state("K2").await.unwrap().unwrap();
    fresh.state = "[\"rebuilt\"]".into();
    let mut new = fresh.clone();
    new.code = "K9".into();
    assert_eq!(s.put_states(vec![stale, fresh, new]).await.unwrap(), 2);
    assert_eq!(s.state("K1").await.unwrap().unwrap().state, stored.state);
    assert_eq!(s.state("K2").await.unwrap().unwrap().state, "[\"rebuilt\"]");
    assert!(s.state("K9").await.unwrap().is_some());

    // 6. The window and the ledger's word on sync.
    ledger
        .record(crate::Batch {
            outcomes: vec![{
                let mut o = crate::suite::outcome("sync", "env-K2", "K2", 1_000);
                o.destination = "dvcqg".into();
                o.version = Some(1);
                o
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    // K1 (received 100, ended 500), K0/K2/K9 (received 200, open).
    let codes = |v: Vec<StoredState>| {
        v.into_iter()
            .map(|s| (s.row.code, s.synced))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        codes(s.states(1_000, 0, "dvcqg").await.unwrap()),
        [
            ("K0".to_string(), false),
            ("K1".to_string(), false),
            ("K2".to_string(), true),
            ("K9".to_string(), false)
        ]
    );
    assert_eq!(
        codes(s.states(150, 0, "dvcqg").await.unwrap()),
        [("K1".to_string(), false)],
        "received later: left out"
    );
    assert_eq!(
        codes(s.states(1_000, 501, "other").await.unwrap()).len(),
        3,
        "ended before the window: left out"
    );
}

/// A batch fold that appends each entry's event id to its dossier's JSON list, counting its
/// calls (the batch analogue of `appending`).
fn appending_batch(entries: &[JournalEntry], calls: Arc<AtomicUsize>) -> BatchFold {
    let entries = entries.to_vec();
    Box::new(move |input: BatchInput| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut lists: std::collections::BTreeMap<String, (Vec<String>, i64)> =
            std::collections::BTreeMap::new();
        for (i, seq) in input.applied {
            let e = &entries[i];
            if !lists.contains_key(&e.key) {
                let ids = match input.stored.get(&e.key) {
                    Some(s) => {
                        serde_json::from_str(s).map_err(|err| format!("{}: {err}", e.key))?
                    }
                    None => vec![],
                };
                lists.insert(e.key.clone(), (ids, seq));
            }
            let (ids, at) = lists.get_mut(&e.key).expect("inserted above");
            ids.push(e.event_id.clone());
            *at = seq;
        }
        Ok(lists
            .into_iter()
            .map(|(code, (ids, seq))| StateRow {
                code,
                unit: "xã B".into(),
                procedure: "1.001193".into(),
                received_ms: Some(100),
                end_ms: None,
                state: serde_json::to_string(&ids).unwrap(),
                last_seq: seq,
                updated_ms: 1,
            })
            .collect())
    })
}

/// The list of event ids `appending_batch` stored for `code`.
async fn list(s: &dyn IndicatorStore, code: &str) -> Vec<String> {
    let row = s.state(code).await.unwrap().unwrap();
    serde_json::from_str(&row.state).unwrap()
}

/// Invariant 5, on an empty store: a batch is applied in one transaction, each event id once
/// (also when repeated within the batch), a batch applied again changes nothing, and a fold
/// that fails writes nothing.
pub async fn batches(s: &dyn IndicatorStore) {
    let calls = Arc::new(AtomicUsize::new(0));
    let b1 = vec![
        entry("B1:a", "B1", 1),
        entry("B1:b", "B1", 2),
        entry("B2:a", "B2", 3),
        entry("B1:a", "B1", 1),
    ];
    let out = s
        .apply_batch("c", b1.clone(), appending_batch(&b1, calls.clone()))
        .await
        .unwrap();
    let seqs: Vec<i64> = out[..3]
        .iter()
        .map(|a| match a {
            Applied::Applied { seq } => *seq,
            other => panic!("expected applied, got {other:?}"),
        })
        .collect();
    assert!(
        seqs[0] < seqs[1] && seqs[1] < seqs[2],
        "seq follows the batch: {seqs:?}"
    );
    assert_eq!(out[3], Applied::Duplicate, "repeated within the batch");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one fold per batch");
    assert_eq!(list(s, "B1").await, ["B1:a", "B1:b"]);
    assert_eq!(list(s, "B2").await, ["B2:a"]);
    assert_eq!(s.state("B1").await.unwrap().unwrap().last_seq, seqs[1]);
    assert_eq!(s.journal_len().await.unwrap(), 3);
    let pos = s.position("c").await.unwrap().unwrap();
    assert_eq!(
        (pos.applied, pos.last_event.as_str(), pos.last_seq),
        (3, "B2:a", seqs[2])
    );

    // The same batch again (redelivered after its commit): nothing written, no fold.
    let states_before = s.states(i64::MAX, i64::MIN, "").await.unwrap();
    let again = s
        .apply_batch("c", b1.clone(), appending_batch(&b1, calls.clone()))
        .await
        .unwrap();
    assert_eq!(again, vec![Applied::Duplicate; 4]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no fold for a batch of duplicates"
    );
    assert_eq!(
        s.states(i64::MAX, i64::MIN, "").await.unwrap(),
        states_before
    );
    assert_eq!(s.position("c").await.unwrap().unwrap(), pos);

    // A journalled id next to new ones: only the new ones are folded, onto the stored state.
    let b2 = vec![
        entry("B2:a", "B2", 3),
        entry("B2:b", "B2", 4),
        entry("B3:a", "B3", 5),
    ];
    let out = s
        .apply_batch("c", b2.clone(), appending_batch(&b2, calls.clone()))
        .await
        .unwrap();
    assert_eq!(out[0], Applied::Duplicate);
    assert!(matches!(out[1], Applied::Applied { .. }) && matches!(out[2], Applied::Applied { .. }));
    assert_eq!(list(s, "B2").await, ["B2:a", "B2:b"]);
    assert_eq!(s.position("c").await.unwrap().unwrap().applied, 5);

    // A fold that fails, or answers for a dossier the batch does not touch: nothing written.
    let b3 = vec![entry("B1:c", "B1", 6), entry("B4:a", "B4", 7)];
    let failing: BatchFold = Box::new(|_| Err("B1: unreadable".into()));
    match s.apply_batch("c", b3.clone(), failing).await {
        Err(StoreError::Malformed(m)) => assert!(m.contains("B1: unreadable"), "{m}"),
        other => panic!("expected malformed, got {other:?}"),
    }
    let stray: BatchFold = {
        let inner = appending_batch(&b3, calls.clone());
        Box::new(move |input| {
            let mut rows = inner(input)?;
            rows[0].code = "B9".into();
            Ok(rows)
        })
    };
    match s.apply_batch("c", b3.clone(), stray).await {
        Err(StoreError::Malformed(m)) => assert!(m.contains("B9"), "{m}"),
        other => panic!("expected malformed, got {other:?}"),
    }
    assert_eq!(s.journal_len().await.unwrap(), 5);
    assert_eq!(s.position("c").await.unwrap().unwrap().applied, 5);
    assert_eq!(s.state("B4").await.unwrap(), None);
    assert_eq!(list(s, "B1").await, ["B1:a", "B1:b"]);

    // Single applies and batches interleave on one dossier.
    s.apply(
        "c",
        entry("B1:c", "B1", 6),
        appending("B1:c", calls.clone(), Some(100), None),
    )
    .await
    .unwrap();
    let b4 = vec![entry("B1:d", "B1", 8)];
    s.apply_batch("c", b4.clone(), appending_batch(&b4, calls.clone()))
        .await
        .unwrap();
    assert_eq!(list(s, "B1").await, ["B1:a", "B1:b", "B1:c", "B1:d"]);
    assert_eq!(
        s.apply_batch("c", vec![], appending_batch(&[], calls))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(s.position("c").await.unwrap().unwrap().applied, 7);
}
