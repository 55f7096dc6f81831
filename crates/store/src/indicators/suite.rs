//! The shared checks of [`IndicatorStore`], run on both stores by `tests/indicators.rs`.
//!
//! # Invariants
//!
//! - Starts from an empty store; `ledger` is the same store seen as the delivery ledger (for
//!   invariant 5).

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

/// Invariants 1-5.
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

    // 5. The window and the ledger's word on sync.
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
