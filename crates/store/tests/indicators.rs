//! The indicator store suite ([`gw_store::indicators::suite`]) on SQLite and PostgreSQL, plus
//! migration 12 applied to a database left before it.
//!
//! PostgreSQL is at `GW_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! does not answer the tests print why and pass, unless `CI=true`: then they fail.

use gw_store::indicators::{self, IndicatorStore, JournalEntry, StateRow};
use gw_store::postgres::PgStore;
use gw_store::sqlite::SqliteStore;

mod common;
use common::{admin, tag, url};

#[tokio::test]
async fn indicator_store_invariants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        indicators::suite::all(&store, &store).await;
    }
    // Reopening keeps the journal and migrates nothing twice.
    let store = indicators::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.journal_len().await.unwrap(), 6);
}

#[tokio::test]
async fn indicator_store_invariants_on_postgres() {
    let Some(admin) = admin().await else { return };
    let schema = format!("gwt_{}_indicators", tag());
    let result = {
        let schema = schema.clone();
        tokio::spawn(async move {
            let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
            indicators::suite::all(&store, &store).await;
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

#[tokio::test]
async fn indicator_batches_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    indicators::suite::batches(&store).await;
}

#[tokio::test]
async fn indicator_batches_on_postgres() {
    let Some(admin) = admin().await else { return };
    let schema = format!("gwt_{}_ixbatch", tag());
    let result = {
        let schema = schema.clone();
        tokio::spawn(async move {
            let store = PgStore::connect_with_schema(&url(), &schema).await.unwrap();
            indicators::suite::batches(&store).await;
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

/// A file from before the indicator tables gains them at open, its data kept.
#[tokio::test]
async fn migration_11_adds_the_indicator_tables_to_an_older_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM schema_version WHERE version >= 11;
         DROP TABLE indicator_journal;
         DROP TABLE indicator_dossiers;
         DROP TABLE indicator_position;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let s: &dyn IndicatorStore = &store;
    let applied = s
        .apply(
            "c",
            JournalEntry {
                event_id: "e1".into(),
                key: "K".into(),
                kind: "dossier.upserted".into(),
                fact: "{}".into(),
                at_ms: 1,
            },
            Box::new(|_, seq| {
                Ok(StateRow {
                    code: "K".into(),
                    unit: "U".into(),
                    procedure: "P".into(),
                    received_ms: Some(1),
                    end_ms: None,
                    state: "{}".into(),
                    last_seq: seq,
                    updated_ms: 1,
                })
            }),
        )
        .await
        .unwrap();
    assert!(matches!(applied, indicators::Applied::Applied { .. }));
    drop(store);
    let max: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        Some(max),
        gw_store::sqlite::migration_versions().last().copied()
    );
}
