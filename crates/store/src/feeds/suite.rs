//! The shared checks of [`FeedStore`](crate::feeds::FeedStore), run on both stores by
//! `tests/feeds.rs`.
//!
//! # Invariants
//!
//! - Each check opens its own database by name through the caller's [`Opener`] (a file per name
//!   on SQLite, a schema per name on PostgreSQL), so the checks do not see each other's rows.
//!   Opening a name again reaches the same database: that is how a restart (dropping every
//!   handle) and a second gateway instance (a second handle, appending at the same time) are
//!   simulated.
//! - Times are explicit unix-ms values, never the wall clock.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::*;

/// Opens (creating and migrating if needed) the database called `name`.
pub type Opener =
    dyn Fn(&str) -> Pin<Box<dyn Future<Output = Arc<dyn FeedStore>> + Send>> + Send + Sync;

/// An entry of event `id` appended at `at_ms`.
pub fn entry(id: &str, at_ms: i64) -> NewEntry {
    let payload = format!("{{\"code\":\"D-{id}\",\"status\":\"received\"}}").into_bytes();
    NewEntry {
        event_id: id.into(),
        dossier: format!("D-{id}"),
        kind: "dossier.upserted".into(),
        digest: format!("digest-of-{id}"),
        payload,
        fields: vec!["code".into(), "status".into()],
        at_ms,
    }
}

fn page_of(a: PageAnswer) -> Page {
    match a {
        PageAnswer::Page(p) => p,
        other => panic!("expected a page, got {other:?}"),
    }
}

fn seqs(p: &Page) -> Vec<i64> {
    p.entries.iter().map(|e| e.seq).collect()
}

/// Every check, each in its own database.
pub async fn all(open: &Opener) {
    sequence_and_dedupe(open).await;
    paging(open).await;
    retention_and_replay(open).await;
    fetched_and_lag(open).await;
    refusals_and_caps(open).await;
    concurrent_appenders(open).await;
}

/// Invariants 1 and 2, and a restart.
pub async fn sequence_and_dedupe(open: &Opener) {
    let s = open("feed_seq").await;
    for (i, id) in ["e1", "e2", "e3"].iter().enumerate() {
        assert_eq!(
            s.append("ioc", entry(id, 100)).await.unwrap(),
            Appended::New(i as i64 + 1)
        );
    }
    // A redelivered event: its sequence number, nothing written.
    assert_eq!(
        s.append("ioc", entry("e2", 999)).await.unwrap(),
        Appended::Existing(2)
    );
    // Another subscription has its own sequence; the same event may be in both.
    assert_eq!(
        s.append("so-tnmt", entry("e2", 100)).await.unwrap(),
        Appended::New(1)
    );
    let p = page_of(s.page("ioc", 0, 10).await.unwrap());
    assert_eq!(seqs(&p), vec![1, 2, 3]);
    assert_eq!(
        p.entries[1].entry,
        entry("e2", 100),
        "the first append stays"
    );
    assert_eq!((p.next, p.head), (3, 3));
    drop(s);
    // After a restart: the same entries, and numbering goes on without a gap.
    let s = open("feed_seq").await;
    assert_eq!(page_of(s.page("ioc", 0, 10).await.unwrap()), p);
    assert_eq!(
        s.append("ioc", entry("e1", 100)).await.unwrap(),
        Appended::Existing(1)
    );
    assert_eq!(
        s.append("ioc", entry("e4", 100)).await.unwrap(),
        Appended::New(4)
    );
}

/// Invariants 3 and 4: pages in order, no gap, no duplicate, stable, cursors above the head.
pub async fn paging(open: &Opener) {
    let s = open("feed_paging").await;
    // An unknown (empty) feed: an empty page at 0, anything above is ahead.
    let empty = page_of(s.page("ioc", 0, 10).await.unwrap());
    assert!(empty.entries.is_empty());
    assert_eq!((empty.next, empty.head), (0, 0));
    assert_eq!(
        s.page("ioc", 1, 10).await.unwrap(),
        PageAnswer::Ahead { head: 0 }
    );
    for i in 1..=7 {
        s.append("ioc", entry(&format!("p{i}"), i * 10))
            .await
            .unwrap();
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let p = page_of(s.page("ioc", cursor, 3).await.unwrap());
        assert_eq!(p.after, cursor);
        if p.entries.is_empty() {
            assert_eq!(p.next, cursor, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(
            p.entries[0].seq,
            cursor + 1,
            "a page starts right after its cursor"
        );
        // Fetched twice: the same page.
        assert_eq!(page_of(s.page("ioc", cursor, 3).await.unwrap()), p);
        seen.extend(seqs(&p));
        cursor = p.next;
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(
        s.page("ioc", 8, 3).await.unwrap(),
        PageAnswer::Ahead { head: 7 }
    );
    // A page that was not full only grows at its end.
    let partial = page_of(s.page("ioc", 6, 3).await.unwrap());
    assert_eq!(seqs(&partial), vec![7]);
    s.append("ioc", entry("p8", 80)).await.unwrap();
    let grown = page_of(s.page("ioc", 6, 3).await.unwrap());
    assert_eq!(seqs(&grown), vec![7, 8]);
    assert_eq!(grown.entries[0], partial.entries[0]);
}

/// Invariants 5 and 6.
pub async fn retention_and_replay(open: &Opener) {
    let s = open("feed_retention").await;
    assert_eq!(
        s.purge("ioc", 1_000).await.unwrap(),
        Purged {
            through: 0,
            removed: 0
        },
        "an empty feed purges nothing"
    );
    assert_eq!(s.cursor_since("ioc", 0).await.unwrap(), Since::Cursor(0));
    for (i, at) in [100, 200, 300, 400, 500].iter().enumerate() {
        s.append("ioc", entry(&format!("r{i}"), *at)).await.unwrap();
    }
    assert_eq!(s.cursor_since("ioc", 0).await.unwrap(), Since::Cursor(0));
    assert_eq!(s.cursor_since("ioc", 250).await.unwrap(), Since::Cursor(2));
    assert_eq!(s.cursor_since("ioc", 300).await.unwrap(), Since::Cursor(2));
    assert_eq!(
        s.cursor_since("ioc", 9_999).await.unwrap(),
        Since::Cursor(5)
    );
    assert_eq!(
        s.purge("ioc", 300).await.unwrap(),
        Purged {
            through: 2,
            removed: 2
        }
    );
    // Cursors into the purged part are told so, with the oldest cursor served.
    for after in [0, 1] {
        assert_eq!(
            s.page("ioc", after, 10).await.unwrap(),
            PageAnswer::Gone { oldest: 2 }
        );
    }
    assert_eq!(
        seqs(&page_of(s.page("ioc", 2, 10).await.unwrap())),
        vec![3, 4, 5]
    );
    // Replay from a purged time is gone; from a kept time it is a cursor.
    assert_eq!(
        s.cursor_since("ioc", 150).await.unwrap(),
        Since::Gone { oldest: 2 }
    );
    assert_eq!(
        s.cursor_since("ioc", 200).await.unwrap(),
        Since::Gone { oldest: 2 }
    );
    assert_eq!(s.cursor_since("ioc", 201).await.unwrap(), Since::Cursor(2));
    assert_eq!(s.cursor_since("ioc", 450).await.unwrap(), Since::Cursor(4));
    // The same purge again removes nothing.
    assert_eq!(
        s.purge("ioc", 300).await.unwrap(),
        Purged {
            through: 2,
            removed: 0
        }
    );
    // Only a prefix: an entry appended earlier in time but later in sequence (another
    // instance's clock) stays until what precedes it is purged.
    s.append("ioc", entry("r5", 600)).await.unwrap();
    s.append("ioc", entry("r6", 50)).await.unwrap();
    assert_eq!(
        s.purge("ioc", 550).await.unwrap(),
        Purged {
            through: 5,
            removed: 3
        }
    );
    assert_eq!(
        seqs(&page_of(s.page("ioc", 5, 10).await.unwrap())),
        vec![6, 7]
    );
    assert_eq!(
        s.cursor_since("ioc", 450).await.unwrap(),
        Since::Gone { oldest: 5 }
    );
    // Everything purged: the head's cursor still serves (empty), older ones are gone.
    assert_eq!(
        s.purge("ioc", 10_000).await.unwrap(),
        Purged {
            through: 7,
            removed: 2
        }
    );
    let p = page_of(s.page("ioc", 7, 10).await.unwrap());
    assert!(p.entries.is_empty());
    assert_eq!(
        s.page("ioc", 6, 10).await.unwrap(),
        PageAnswer::Gone { oldest: 7 }
    );
    // Numbering goes on after a full purge.
    assert_eq!(
        s.append("ioc", entry("r7", 700)).await.unwrap(),
        Appended::New(8)
    );
    assert_eq!(
        s.cursor_since("ioc", 10_001).await.unwrap(),
        Since::Cursor(8)
    );
}

/// Invariant 7.
pub async fn fetched_and_lag(open: &Opener) {
    let s = open("feed_lag").await;
    assert_eq!(s.stats("ioc").await.unwrap(), FeedStats::default());
    for (i, at) in [100, 200, 300].iter().enumerate() {
        s.append("ioc", entry(&format!("l{i}"), *at)).await.unwrap();
    }
    let st = s.stats("ioc").await.unwrap();
    assert_eq!(
        st,
        FeedStats {
            head: 3,
            purged_through: 0,
            fetched_through: 0,
            entries: 3,
            oldest_unfetched_ms: Some(100)
        }
    );
    s.note_fetched("ioc", 2).await.unwrap();
    s.note_fetched("ioc", 1).await.unwrap(); // never lowered
    s.note_fetched("ioc", 99).await.unwrap(); // above the head: ignored
    let st = s.stats("ioc").await.unwrap();
    assert_eq!(st.fetched_through, 2);
    assert_eq!(st.oldest_unfetched_ms, Some(300));
    s.note_fetched("ioc", 3).await.unwrap();
    assert_eq!(s.stats("ioc").await.unwrap().oldest_unfetched_ms, None);
    // Purged entries are not lag.
    s.append("ioc", entry("l3", 400)).await.unwrap();
    s.append("ioc", entry("l4", 500)).await.unwrap();
    s.purge("ioc", 450).await.unwrap();
    let st = s.stats("ioc").await.unwrap();
    assert_eq!((st.head, st.purged_through, st.entries), (5, 4, 1));
    assert_eq!(st.oldest_unfetched_ms, Some(500));
}

/// Invariant 8.
pub async fn refusals_and_caps(open: &Opener) {
    let s = open("feed_caps").await;
    let mut big = entry("big", 1);
    big.payload = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    match s.append("ioc", big).await {
        Err(StoreError::TooLarge { size, cap, .. }) => {
            assert_eq!((size, cap), (MAX_PAYLOAD_BYTES + 1, MAX_PAYLOAD_BYTES))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(s.stats("ioc").await.unwrap().head, 0, "nothing written");
    let n = i64::from(MAX_PAGE) + 2;
    for i in 0..n {
        s.append("ioc", entry(&format!("c{i}"), i)).await.unwrap();
    }
    let p = page_of(s.page("ioc", 0, u32::MAX).await.unwrap());
    assert_eq!(p.entries.len(), MAX_PAGE as usize, "capped");
    assert_eq!(p.head, n);
    let p = page_of(s.page("ioc", 0, 0).await.unwrap());
    assert_eq!(seqs(&p), vec![1], "a limit of 0 still moves");
}

/// Invariants 1 and 2 with two instances appending at once: gapless, each event once.
pub async fn concurrent_appenders(open: &Opener) {
    let a = open("feed_race").await;
    let b = open("feed_race").await;
    const EVENTS: usize = 40;
    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for part in 0..2 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut got = Vec::new();
                // Both instances append every event (a redelivery racing the first delivery),
                // in opposite orders.
                let order: Vec<usize> = if (n + part) % 2 == 0 {
                    (0..EVENTS).collect()
                } else {
                    (0..EVENTS).rev().collect()
                };
                for i in order {
                    let r = store
                        .append("ioc", entry(&format!("race{i}"), i as i64))
                        .await
                        .expect("append");
                    got.push((i, r));
                }
                got
            });
        }
    }
    let mut new = BTreeSet::new();
    let mut seq_of = std::collections::BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        for (i, appended) in r.unwrap() {
            if let Appended::New(seq) = appended {
                assert!(new.insert(seq), "sequence {seq} given twice");
            }
            // Every appender of one event is told the same sequence number.
            let prev = seq_of.insert(i, appended.seq());
            assert!(prev.is_none() || prev == Some(appended.seq()));
        }
    }
    assert_eq!(
        new,
        (1..=EVENTS as i64).collect(),
        "gapless, one entry per event"
    );
    let p = page_of(b.page("ioc", 0, 1000).await.unwrap());
    assert_eq!(seqs(&p), (1..=EVENTS as i64).collect::<Vec<_>>());
    let ids: BTreeSet<_> = p.entries.iter().map(|e| e.entry.event_id.clone()).collect();
    assert_eq!(ids.len(), EVENTS);
    for e in &p.entries {
        assert_eq!(
            seq_of[&e.entry.event_id[4..].parse::<usize>().unwrap()],
            e.seq
        );
    }
}
