//! Outcome records per second for both stores, at batch sizes 1 and 100, one writer.
//!
//! ```text
//! cargo run --release -p gw-store --example store_bench [-- POSTGRES_URL]
//! ```
//!
//! Each outcome is `Delivered` with a natural key and a version, so every record writes a ledger
//! row, a natural-key row and a version upsert, as the gateway's workers do. SQLite runs in a
//! temporary directory (WAL, `synchronous=FULL`: one fsync per batch); PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`) in a throwaway schema dropped at the end, and is
//! skipped when it does not answer. Counts are bounded so a run takes seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_store::postgres::PgStore;
use gw_store::sqlite::SqliteStore;
use gw_store::{Batch, Store};

/// (batch size, outcomes written) per run.
const RUNS: &[(usize, usize)] = &[(1, 1_000), (100, 20_000)];

async fn bench(store: &Arc<dyn Store>, batch_size: usize, total: usize, run: usize) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let outcomes = (n..(n + batch_size).min(total))
            .map(|i| {
                let key = format!("DOSSIER-{}", i % 500);
                let mut o =
                    gw_store::suite::outcome("bench", &format!("env-{run}-{i}"), &key, i as i64);
                o.version = Some(i as i64);
                o.natural_key = Some(gw_store::natural_keys::of_version(&key, i as i64));
                o
            })
            .collect::<Vec<_>>();
        n += outcomes.len();
        store
            .record(Batch {
                outcomes,
                ..Default::default()
            })
            .await
            .expect("record");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn bench_all(name: &str, store: Arc<dyn Store>) {
    for (run, &(batch_size, total)) in RUNS.iter().enumerate() {
        let rate = bench(&store, batch_size, total, run).await;
        println!("{name:<9} batch {batch_size:>3}: {total:>6} outcomes, {rate:>9.0} outcomes/s");
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path().join("bench.db")).expect("open sqlite");
    bench_all("sqlite", Arc::new(sqlite)).await;

    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("gw_store_bench_{}", std::process::id());
    let connect = PgStore::connect_with_schema(&url, &schema);
    let pg = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(pg)) => pg,
        Ok(Err(e)) => return println!("postgres  skipped: {e}"),
        Err(_) => return println!("postgres  skipped: no answer from {url}"),
    };
    bench_all("postgres", Arc::new(pg)).await;

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to drop the bench schema");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop the bench schema");
}
