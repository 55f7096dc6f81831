//! The signature store suite ([`gw_store::signatures::suite`]) on SQLite and PostgreSQL, plus
//! migration 9 applied to a database left at version 8.
//!
//! PostgreSQL is at `GW_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! does not answer the tests print why and pass, unless `CI=true`: then they fail.

use std::sync::Arc;

use gw_store::postgres::PgStore;
use gw_store::signatures::{self, suite, RequestState, SignatureStore};
use gw_store::sqlite::SqliteStore;
use gw_store::Store;
use tokio_postgres::NoTls;

mod common;
use common::{admin, tag, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signature_store_invariants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let open: Box<suite::Opener> = Box::new(move |name: &str| {
        let path = root.join(format!("{name}.db"));
        Box::pin(async move {
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .unwrap()
                .unwrap();
            Arc::new(store) as Arc<dyn SignatureStore>
        })
    });
    suite::all(open.as_ref()).await;
    // The URL form reaches the same file.
    let store = signatures::open(&format!(
        "sqlite:{}",
        dir.path().join("listing.db").display()
    ))
    .await
    .unwrap();
    assert_eq!(
        store.get("M1").await.unwrap().unwrap().state,
        RequestState::Waiting
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signature_store_invariants_on_postgres() {
    common::in_fresh_schemas("sig_", |schema| async move {
        let open: Box<suite::Opener> = Box::new(move |name: &str| {
            let schema = schema(name);
            Box::pin(async move {
                let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
                Arc::new(store) as Arc<dyn SignatureStore>
            })
        });
        suite::all(open.as_ref()).await;
    })
    .await;
}

/// A file at version 8 (before the signature tables) with data in it gains them at open.
#[tokio::test]
async fn migration_9_adds_the_signature_tables_to_a_version_8_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .record(gw_store::Batch {
                outcomes: vec![gw_store::suite::outcome("r1", "env-1", "K", 1_000)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM schema_version WHERE version >= 9;
         DROP TABLE signature_transitions;
         DROP TABLE signature_outbox;
         DROP TABLE signature_blobs;
         DROP TABLE signature_requests;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert!(
        store.outcome("r1", "env-1").await.unwrap().is_some(),
        "old data kept"
    );
    let s: &dyn SignatureStore = &store;
    suite::drive(s, "MIG-1", "smartca", RequestState::Waiting).await;
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let max: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(Some(&max), gw_store::sqlite::migration_versions().last());
}

#[tokio::test]
async fn migration_9_on_a_version_8_postgres_schema() {
    let Some(admin) = admin().await else { return };
    let schema = format!("gwt_{}_sig_migrate", tag());
    let result = {
        let schema = schema.clone();
        tokio::spawn(async move {
            drop(PgStore::connect_with_schema(&url(), &schema).await.unwrap());
            let (client, conn) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "SET search_path = \"{schema}\";
                     DELETE FROM schema_version WHERE version >= 9;
                     DROP TABLE signature_transitions, signature_outbox, signature_blobs,
                         signature_requests;"
                ))
                .await
                .unwrap();
            let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
            let s: &dyn SignatureStore = &store;
            suite::drive(s, "MIG-1", "smartca", RequestState::Completed).await;
            let max: i64 = client
                .query_one(
                    &format!("SELECT MAX(version) FROM \"{schema}\".schema_version"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(Some(&max), gw_store::postgres::migration_versions().last());
        })
        .await
    };
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A row whose state this binary does not know is reported as malformed, naming it, and is
/// never changed.
#[tokio::test]
async fn an_unknown_stored_state_is_malformed_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        suite::drive(&store, "BAD-1", "smartca", RequestState::Waiting).await;
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE signature_requests SET state = 'teleported' WHERE request_id = 'BAD-1'",
            [],
        )
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let s: &dyn SignatureStore = &store;
    match s.get("BAD-1").await {
        Err(gw_store::StoreError::Malformed(m)) => assert!(m.contains("teleported"), "{m}"),
        other => panic!("expected malformed, got {other:?}"),
    }
    assert!(matches!(
        s.cancel("BAD-1", "operator:lan", 1).await,
        Err(gw_store::StoreError::Malformed(_))
    ));
    let state: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT state FROM signature_requests WHERE request_id = 'BAD-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "teleported");
}
