//! The shared store suite against SQLite (a fresh file in a temporary directory per scenario),
//! plus what only SQLite has: the file's settings and its migrations on reopen.

use std::sync::Arc;

use gw_store::sqlite::SqliteStore;
use gw_store::suite::{self, Scenario};
use gw_store::{Batch, Store, StoreError};

async fn run(_name: &'static str, scenario: Scenario) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("store.db")).expect("open"));
    scenario(store).await;
}

gw_store::store_suite!(run);

#[tokio::test]
async fn reopening_keeps_data_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.db");
    let o = suite::outcome("r1", "env-1", "K", 1_000);
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .record(Batch {
                outcomes: vec![o.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Through the URL form this time.
    let store = gw_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.kind(), "sqlite");
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(o));
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, gw_store::sqlite::migration_versions());
    assert_eq!(
        gw_store::sqlite::migration_versions(),
        gw_store::postgres::migration_versions(),
        "both backends know the same migrations"
    );
    // WAL is a property of the file: it must have stuck.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at_ms) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::Migrate(m)) => assert!(m.contains("99"), "{m}"),
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unopenable_path_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    match SqliteStore::open(dir.path()) {
        Err(StoreError::Open(_)) => {}
        other => panic!("expected an open error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    suite::two_instances_share_the_work(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn migration_2_removes_duplicate_attempts_from_a_version_1_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path).unwrap());
    // Turn the file back into version 1, holding a doubled attempt.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM schema_version WHERE version >= 2;
         DROP TABLE accepted_versions;
         DROP TABLE evidence; DROP TABLE evidence_heads; DROP TABLE evidence_timestamps;
         DROP INDEX attempts_once;
         INSERT INTO attempts (route, envelope_id, key, attempt, result, status, reason, latency_ms, at_ms)
         VALUES ('r1', 'e1', 'K', 1, 'retry', 503, 'busy', 5, 10),
                ('r1', 'e1', 'K', 1, 'retry', 503, 'busy', 5, 10),
                ('r1', 'e1', 'K', 2, 'delivered', 200, '', 5, 20);",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let trail = store.attempts_by_key("K").await.unwrap();
    assert_eq!(
        trail.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn migration_3_adds_accepted_versions_to_a_version_2_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let o = suite::outcome("r1", "env-1", "K", 1_000);
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .record(Batch {
                outcomes: vec![o.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Turn the file back into version 2.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM schema_version WHERE version >= 3;
         DROP TABLE accepted_versions;
         DROP TABLE evidence; DROP TABLE evidence_heads; DROP TABLE evidence_timestamps;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(o));
    store
        .record(Batch {
            accepted: vec![suite::accepted("r1", "K", 4)],
            ..Default::default()
        })
        .await
        .unwrap();
    let versions = store.versions("r1", "national", "K").await.unwrap();
    assert_eq!((versions.delivered, versions.accepted), (None, Some(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let sql: gw_store::evidence_suite::Sql = Arc::new(move |statement: String| {
        let path = path.clone();
        Box::pin(async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(&statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        })
    });
    gw_store::evidence_suite::evidence_tampering_is_detected(store, sql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_mixed_chains_verify_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let sql: gw_store::evidence_suite::Sql = Arc::new(move |statement: String| {
        let path = path.clone();
        Box::pin(async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(&statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        })
    });
    gw_store::evidence_suite::evidence_mixed_chains_verify_and_prune(store, sql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_batch_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let sql: gw_store::evidence_suite::Sql = Arc::new(move |statement: String| {
        let path = path.clone();
        Box::pin(async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(&statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        })
    });
    gw_store::evidence_suite::evidence_batch_tampering_is_detected(store, sql).await;
}

/// SQLite serves one process (the gateway's data-directory lock), so every job leads, and
/// keeps leading.
#[tokio::test]
async fn the_single_process_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    let lease = std::time::Duration::from_secs(3);
    let a = store
        .try_lead("catalogue-sync", "gw-1", lease)
        .await
        .unwrap();
    let a = a.expect("leads");
    assert!(a.is_leading());
    assert_eq!(a.job(), "catalogue-sync");
    let b = store.try_lead("online-poll", "gw-1", lease).await.unwrap();
    assert!(b.is_some_and(|g| g.is_leading()));
}
