//! The feed store suite ([`gw_store::feeds::suite`]) on SQLite and PostgreSQL (two handles on
//! one database appending at once stand for two gateway instances), plus migration 10 applied
//! to a database left at version 9.
//!
//! PostgreSQL is at `GW_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! does not answer the tests print why and pass, unless `CI=true`: then they fail.

use std::sync::Arc;

use gw_store::feeds::{suite, Appended, FeedStore, PageAnswer};
use gw_store::postgres::PgStore;
use gw_store::sqlite::SqliteStore;
use gw_store::Store;

mod common;
use common::url;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_store_invariants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let open: Box<suite::Opener> = Box::new(move |name: &str| {
        let path = root.join(format!("{name}.db"));
        Box::pin(async move {
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .unwrap()
                .unwrap();
            Arc::new(store) as Arc<dyn FeedStore>
        })
    });
    suite::all(open.as_ref()).await;
    // The URL form reaches the same file, the feeds through the delivery store.
    let store = gw_store::open(&format!(
        "sqlite:{}",
        dir.path().join("feed_seq.db").display()
    ))
    .await
    .unwrap()
    .feeds();
    assert_eq!(store.stats("ioc").await.unwrap().head, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_store_invariants_on_postgres() {
    common::in_fresh_schemas("", |schema| async move {
        let open: Box<suite::Opener> = Box::new(move |name: &str| {
            let schema = schema(name);
            Box::pin(async move {
                let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
                Arc::new(store) as Arc<dyn FeedStore>
            })
        });
        suite::all(open.as_ref()).await;
    })
    .await;
}

/// A file at version 9 (before the feed tables) with data in it gains them at open.
#[tokio::test]
async fn migration_10_adds_the_feed_tables_to_a_version_9_file() {
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
        "DELETE FROM schema_version WHERE version >= 10;
         DROP TABLE feed_entries;
         DROP TABLE feed_heads;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert!(
        store.outcome("r1", "env-1").await.unwrap().is_some(),
        "old data kept"
    );
    let s: &dyn FeedStore = &store;
    assert_eq!(
        s.append("ioc", suite::entry("m1", 1)).await.unwrap(),
        Appended::New(1)
    );
    assert!(
        matches!(s.page("ioc", 0, 10).await.unwrap(), PageAnswer::Page(p) if p.entries.len() == 1)
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let max: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        Some(max),
        gw_store::sqlite::migration_versions().last().copied()
    );
}
