//! The signature store with 10,000 requests waiting for officials, on SQLite and PostgreSQL.
//! Prints figures; asserts nothing about time.
//!
//! ```text
//! cargo run --release -p gw-store --example signature_bench [-- POSTGRES_URL]
//! ```
//!
//! Per backend:
//! 1. the full path of 300 requests with instant confirmation (create, hash computed, send
//!    guard, transaction recorded, signed, verified, assembled, completed, event published):
//!    requests/s and store operations/s;
//! 2. 10,000 `create`s from 8 concurrent writers (timed), then all of them moved to `waiting` with one bulk statement (a
//!    setup shortcut, not measured: the path above measures the transitions);
//! 3. draining them with `due_for_poll` batches of 100 (each batch then `note_polls`ed to the
//!    far future in one transaction, as a poller does): per-batch time (median, 95th percentile, max) and
//!    polls/s;
//! 4. `counts_by_state` and `pending_by_service` over the 10,000 rows, and `expire_overdue` of
//!    all of them in rounds of 500.
//!
//! SQLite runs in a temporary directory (WAL, `synchronous=FULL` for changes); PostgreSQL
//! (default `postgres://postgres@127.0.0.1:5432/test`) in a throwaway schema dropped at the end,
//! and is skipped when it does not answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_store::postgres::PgStore;
use gw_store::signatures::{suite, Change, RequestState, SendGuard, SignatureStore, Step};
use gw_store::sqlite::SqliteStore;

const FULL_PATH: usize = 300;
const WAITING: usize = 10_000;
const BATCH: u32 = 100;
const SERVICE: &str = "bench";
const WRITERS: usize = 8;

fn change(id: &str, from: RequestState, step: Step, at: i64) -> Change {
    Change {
        request_id: id.into(),
        from,
        step,
        actor: "bench".into(),
        detail: String::new(),
        at_ms: at,
    }
}

async fn full_path(s: &dyn SignatureStore) {
    use RequestState::*;
    let started = Instant::now();
    let mut ops = 0usize;
    for i in 0..FULL_PATH {
        let id = format!("full-{i:05}");
        s.create(suite::request(&id, "full", 10_000_000))
            .await
            .unwrap();
        let steps = [
            (Received, suite::step_for(HashComputed).unwrap()),
            (Sent, suite::step_for(Signed).unwrap()),
            (Signed, Step::Verified),
            (Verified, suite::step_for(Assembled).unwrap()),
            (Assembled, Step::Completed),
        ];
        s.transition(change(&id, steps[0].0, steps[0].1.clone(), 2))
            .await
            .unwrap();
        let SendGuard::Permit(_) = s.begin_send(&id, "bench", 3, 60_000).await.unwrap() else {
            panic!("permit")
        };
        s.record_sent(&id, "T", 5, "bench", 4).await.unwrap();
        for (k, (from, step)) in steps[1..].iter().enumerate() {
            let r = s
                .transition(change(&id, *from, step.clone(), 5 + k as i64))
                .await
                .unwrap();
            assert!(r.is_applied(), "{r:?}");
        }
        ops += 8;
    }
    let events = s.unpublished(FULL_PATH as u32).await.unwrap();
    for e in &events {
        s.mark_published(&e.id, 100).await.unwrap();
    }
    ops += 1 + events.len();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  full path, instant confirmation: {FULL_PATH} requests in {secs:.2} s = {:.0} requests/s \
         ({:.0} store operations/s)",
        FULL_PATH as f64 / secs,
        ops as f64 / secs
    );
}

/// 10,000 creates from [`WRITERS`] concurrent tasks (as several consumers would).
async fn create_waiting(s: Arc<dyn SignatureStore>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in (w..WAITING).step_by(WRITERS) {
                    let mut r = suite::request(&format!("w-{i:05}"), SERVICE, 50_000_000);
                    r.created_ms = i as i64;
                    s.create(r).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  create ({WRITERS} writers): {WAITING} requests in {secs:.2} s = {:.0} creates/s",
        WAITING as f64 / secs
    );
}

/// The bulk shortcut: every `bench` request to `waiting`, first polls spread over 0..10,000 ms.
const TO_WAITING: &str = "UPDATE signature_requests SET state = 'waiting', transaction_id = 'T',
    sends = 1, next_poll_ms = created_ms, updated_ms = created_ms WHERE service = 'bench'";

async fn drain(s: &dyn SignatureStore) {
    let mut times = Vec::new();
    let mut polled = 0usize;
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let batch = s
            .due_for_poll(SERVICE, 20_000, BATCH, "bench", 30_000)
            .await
            .unwrap();
        times.push(t.elapsed());
        if batch.is_empty() {
            break;
        }
        let polls: Vec<(String, i64)> = batch
            .iter()
            .map(|r| (r.id().to_owned(), 1_000_000_000))
            .collect();
        let noted = s.note_polls("bench", &polls, 20_000).await.unwrap();
        assert_eq!(noted, batch.len() as u64);
        polled += batch.len();
    }
    let secs = started.elapsed().as_secs_f64();
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  due_for_poll batches of {BATCH} over {WAITING} waiting: {} batches, median {:.2} ms, \
         p95 {:.2} ms, max {:.2} ms",
        times.len(),
        ms(pct(0.5)),
        ms(pct(0.95)),
        ms(*times.last().unwrap())
    );
    println!(
        "  lease + note_polls (one per batch): {polled} polls in {secs:.2} s = {:.0} polls/s",
        polled as f64 / secs
    );
}

async fn reports(s: &dyn SignatureStore) {
    let t = Instant::now();
    let counts = s.counts_by_state().await.unwrap();
    let c = t.elapsed();
    let t = Instant::now();
    let pending = s.pending_by_service().await.unwrap();
    let p = t.elapsed();
    let waiting: i64 = pending
        .iter()
        .filter(|p| p.service == SERVICE)
        .map(|p| p.waiting)
        .sum();
    println!(
        "  counts_by_state: {} rows in {:.2} ms; pending_by_service: {waiting} waiting in {:.2} ms",
        counts.len(),
        c.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut expired = 0;
    loop {
        let n = s.expire_overdue(60_000_000, 500).await.unwrap().len();
        if n == 0 {
            break;
        }
        expired += n;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  expire_overdue (rounds of 500, trail + event each): {expired} in {secs:.2} s = {:.0}/s",
        expired as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    println!("sqlite");
    {
        let sqlite: Arc<dyn SignatureStore> =
            Arc::new(SqliteStore::open(&path).expect("open sqlite"));
        full_path(sqlite.as_ref()).await;
        create_waiting(sqlite).await;
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(TO_WAITING, [])
        .unwrap();
    {
        let sqlite = Arc::new(SqliteStore::open(&path).expect("reopen sqlite"));
        drain(sqlite.as_ref()).await;
        reports(sqlite.as_ref()).await;
    }

    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("gw_sig_bench_{}", std::process::id());
    println!("postgres");
    let connect = PgStore::connect_with_schema(&url, &schema);
    let pg = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(pg)) => pg,
        Ok(Err(e)) => return println!("  skipped: {e}"),
        Err(_) => return println!("  skipped: no answer from {url}"),
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    let pg: Arc<dyn SignatureStore> = Arc::new(pg);
    full_path(pg.as_ref()).await;
    create_waiting(pg.clone()).await;
    client
        .batch_execute(&format!(
            "SET search_path = \"{schema}\"; {TO_WAITING}; ANALYZE"
        ))
        .await
        .unwrap();
    drain(pg.as_ref()).await;
    reports(pg.as_ref()).await;
    drop(pg);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop the bench schema");
}
