//! The axis store's checks, run on SQLite and PostgreSQL by `tests/axis.rs`.

use super::*;

fn take(key: &str, envelope_id: &str) -> Take {
    Take {
        take_key: key.into(),
        axis_id: format!("in-{key}"),
        kind: "document".into(),
        envelope_id: envelope_id.into(),
        taken_ms: 1_000,
        published_ms: None,
        acked_ms: None,
    }
}

fn status(doc: &str, code: &str, direction: &str, at_ms: i64) -> StatusRow {
    StatusRow {
        document_id: doc.into(),
        seq: -1,
        direction: direction.into(),
        code: Some(code.into()),
        word: None,
        axis_id: "in-1".into(),
        detail: "000.00.01.H22".into(),
        at_ms,
    }
}

/// Every invariant of [`super`].
pub async fn all(s: &dyn AxisStore) {
    take_is_once_per_key(s).await;
    steps_move_forward(s).await;
    history_is_ordered_per_document(s).await;
}

async fn take_is_once_per_key(s: &dyn AxisStore) {
    assert_eq!(s.taken("D,2026/12/06,1").await.unwrap(), None);
    let first = s.take(take("D,2026/12/06,1", "env-A")).await.unwrap();
    assert_eq!(first.envelope_id, "env-A");
    // A second take (after a crash) gets the first one's envelope id, not its own.
    let again = s.take(take("D,2026/12/06,1", "env-B")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(s.taken("D,2026/12/06,1").await.unwrap(), Some(first));
}

async fn steps_move_forward(s: &dyn AxisStore) {
    s.take(take("D,2026/12/06,2", "env-C")).await.unwrap();
    s.mark_published("D,2026/12/06,2", 2_000).await.unwrap();
    s.mark_published("D,2026/12/06,2", 9_000).await.unwrap();
    let t = s.taken("D,2026/12/06,2").await.unwrap().unwrap();
    assert_eq!((t.published_ms, t.acked_ms), (Some(2_000), None));
    s.mark_acked("D,2026/12/06,2", 3_000).await.unwrap();
    s.mark_acked("D,2026/12/06,2", 9_000).await.unwrap();
    let t = s.taken("D,2026/12/06,2").await.unwrap().unwrap();
    assert_eq!((t.published_ms, t.acked_ms), (Some(2_000), Some(3_000)));
    // Marking an unknown key changes nothing and is no error.
    s.mark_acked("nope", 1).await.unwrap();
    assert_eq!(s.taken("nope").await.unwrap(), None);
}

async fn history_is_ordered_per_document(s: &dyn AxisStore) {
    assert!(s.history("H,2026/12/06,1").await.unwrap().is_empty());
    assert_eq!(
        s.add_status(status("H,2026/12/06,1", "01", "sent", 10))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.add_status(status("H,2026/12/06,2", "01", "sent", 11))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.add_status(status("H,2026/12/06,1", "05", "sent", 12))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.add_status(status("H,2026/12/06,1", "03", "received", 5))
            .await
            .unwrap(),
        2
    );
    let h = s.history("H,2026/12/06,1").await.unwrap();
    let got: Vec<(i64, Option<&str>, &str)> = h
        .iter()
        .map(|r| (r.seq, r.code.as_deref(), r.direction.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, Some("01"), "sent"),
            (1, Some("05"), "sent"),
            (2, Some("03"), "received")
        ]
    );
    assert_eq!(h[0].detail, "000.00.01.H22");
}
