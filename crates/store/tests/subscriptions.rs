//! The subscription-state suite ([`gw_store::subscriptions::suite`]) on SQLite and PostgreSQL
//! (two handles on one database stand for two gateway instances), plus migration 13 applied to
//! a database left at version 12.
//!
//! PostgreSQL is at `GW_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! does not answer the tests print why and pass, unless `CI=true`: then they fail.

use std::sync::Arc;

use gw_store::postgres::PgStore;
use gw_store::sqlite::SqliteStore;
use gw_store::subscriptions::{suite, SubscriptionStates};
use gw_store::Store;

mod common;
use common::url;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_states_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let open: Box<suite::Opener> = Box::new(move |name: &str| {
        let path = root.join(format!("{name}.db"));
        Box::pin(async move {
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .unwrap()
                .unwrap();
            Arc::new(store) as Arc<dyn SubscriptionStates>
        })
    });
    suite::all(open.as_ref()).await;
    // The URL form reaches the same file, the states through the delivery store.
    let states = gw_store::open(&format!(
        "sqlite:{}",
        dir.path().join("sub_disable.db").display()
    ))
    .await
    .unwrap()
    .subscription_states();
    assert_eq!(
        states
            .state("ioc")
            .await
            .unwrap()
            .unwrap()
            .disabled
            .unwrap()
            .reason,
        "gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_states_on_postgres() {
    common::in_fresh_schemas("", |schema| async move {
        let open: Box<suite::Opener> = Box::new(move |name: &str| {
            let schema = schema(name);
            Box::pin(async move {
                let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
                Arc::new(store) as Arc<dyn SubscriptionStates>
            })
        });
        suite::all(open.as_ref()).await;
    })
    .await;
}

/// A file at version 12 (before the subscription-state table) with data in it gains it at open.
#[tokio::test]
async fn migration_13_adds_the_subscription_state_to_a_version_12_file() {
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
        "DELETE FROM schema_version WHERE version >= 13;
         DROP TABLE subscription_state;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert!(
        store.outcome("r1", "env-1").await.unwrap().is_some(),
        "old data kept"
    );
    let s: &dyn SubscriptionStates = &store;
    assert!(s.disable("ioc", "gone", 1).await.unwrap());
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let max: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        Some(max),
        gw_store::sqlite::migration_versions().last().copied()
    );
    assert!(max >= 13);
}
