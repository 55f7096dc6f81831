//! SQLite store: one file under the data directory, the default.
//!
//! # Schema (version 6, `schema_version` records what was applied)
//!
//! ```text
//! schema_version         (version PK, applied_at_ms)
//! ledger                 PK (route, envelope_id); the first final outcome wins
//!                        index (key, at_ms) for a dossier's trail
//! delivered_natural_keys PK (destination, natural_key); one row per delivered effect
//! delivered_versions     PK (destination, key) → version, only ever raised
//! accepted_versions      PK (route, key) → version, only ever raised; at_ms = store clock at
//!                        the last raise (version 3)
//! attempts               seq (insertion order), index (key, at_ms, seq),
//!                        unique (route, envelope_id, attempt, at_ms) (version 2)
//! dead_letters           PK id; envelope BLOB byte for byte; state open|replayed|dropped
//!                        indexes (route, state, dead_at_ms), (key, dead_at_ms), (state, dead_at_ms)
//! evidence, evidence_heads, evidence_timestamps   the evidence log (version 4, see
//!                        `evidence_sql.rs`); evidence_batches, evidence_leaves (version 15)
//! claims, in_doubt       delivery claims and exchanges in doubt (version 6, see `claims.rs`)
//! signature_*            remote signing requests, trail, outbox, blobs (version 9, see
//!                        `signatures/mod.rs`)
//! feed_heads, feed_entries  agencies' pull feeds (version 10, see `feeds/mod.rs`)
//! ```
//!
//! Every table is `STRICT`, so a BLOB stays a BLOB and an integer stays an integer.
//!
//! # Guarantees
//!
//! - The file is opened with `journal_mode=WAL`, `synchronous=FULL` (a committed batch survives
//!   a power cut), `foreign_keys=ON` and a busy timeout, so another process holding the write lock
//!   briefly makes us wait instead of failing.
//! - One connection lives on one dedicated thread; every operation is a closure sent to it, so
//!   the async runtime never blocks on disk and operations are serialised (SQLite has a single
//!   writer anyway). [`Store::record`] runs as one `BEGIN IMMEDIATE` transaction.
//! - Ledger rows: `INSERT … ON CONFLICT DO NOTHING`, so the first final outcome for
//!   (route, envelope id) wins, also inside one batch.
//! - Each `Delivered` outcome, whether or not its ledger row was new, adds its natural key to
//!   `delivered_natural_keys` and raises `delivered_versions` to max(old, new). Both are
//!   idempotent, and a destination that accepted an effect does have it.
//! - Each [`AcceptedVersion`](crate::AcceptedVersion) of the batch raises `accepted_versions`
//!   for (route, key) to max(old, new) in the same transaction (several for one key in a batch:
//!   the highest wins). [`Store::versions`] reads the delivered and the accepted version in one
//!   statement (two scalar subqueries).
//! - Recording a batch again changes nothing: attempts are unique per
//!   (route, envelope id, attempt, at_ms) and a dead letter identical to the stored one is
//!   skipped. A *different* dead letter under an existing id fails the whole batch
//!   (`StoreError::Query`) and nothing of it is written: ids are UUIDv7, so that is a bug
//!   upstream and must not be hidden.
//! - Replay / drop: `UPDATE … WHERE id = ? AND state = 'open'`; only the caller whose update
//!   changed a row gets [`Settled::Changed`].
//! - Migrations run in one `BEGIN IMMEDIATE` transaction at open; opening twice is a no-op, and a
//!   file migrated by a newer binary is refused rather than misread.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, Value, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::records::{
    AttemptRecord, Batch, DeadLetter, DeadLetterFilter, DeadLetterState, NewDeadLetter, Outcome,
    OutcomeRecord, Settled, Versions,
};
use crate::sql::Fail;
use crate::store::Store;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Ordered migrations: (version, SQL). Append only; never edit an applied one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, crate::evidence_sql::SQLITE_V4),
    (5, crate::payments::schema::SQLITE_V5),
    (6, crate::claims::SQLITE_V6),
    (7, crate::payments::schema::SQLITE_V7),
    (8, crate::replay::SQLITE_V8),
    (9, crate::signatures::schema::SQLITE_V9),
    (10, crate::feeds::schema::SQLITE_V10),
    (11, crate::axis::schema::SQLITE_V11),
    (12, crate::indicators::schema::SQLITE_V12),
    (13, crate::subscriptions::schema::SQLITE_V13),
    (14, crate::evidence_sql::SQLITE_V14),
    (15, crate::signatures::schema::SQLITE_V15),
    (16, SCHEMA_V16),
];

/// The schema versions this build's SQLite migrations bring a database to, oldest first (tests
/// compare a migrated database's `schema_version` with it instead of a hand-kept list).
pub fn migration_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|(v, _)| *v).collect()
}

/// PostgreSQL's migration 16 drops an index SQLite never had (here the attempts' `seq` is the
/// rowid): the number is kept so that both stores count the same migrations.
const SCHEMA_V16: &str = "-- nothing to change on SQLite\n";

const SCHEMA_V1: &str = "
CREATE TABLE ledger (
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    natural_key  TEXT,
    version      INTEGER,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('delivered', 'superseded', 'dead_lettered')),
    attempts     INTEGER NOT NULL,
    status       INTEGER,
    detail       TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (route, envelope_id)
) STRICT;
CREATE INDEX ledger_by_key ON ledger (key, at_ms);

CREATE TABLE delivered_natural_keys (
    destination  TEXT    NOT NULL,
    natural_key  TEXT    NOT NULL,
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (destination, natural_key)
) STRICT;

CREATE TABLE delivered_versions (
    destination  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (destination, key)
) STRICT;

CREATE TABLE attempts (
    seq          INTEGER PRIMARY KEY,
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    result       TEXT    NOT NULL,
    status       INTEGER,
    reason       TEXT    NOT NULL,
    latency_ms   INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL
) STRICT;
CREATE INDEX attempts_by_key ON attempts (key, at_ms, seq);

CREATE TABLE dead_letters (
    id               TEXT    NOT NULL PRIMARY KEY,
    route            TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    envelope         BLOB    NOT NULL,
    reason           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    last_status      INTEGER,
    last_answer      TEXT    NOT NULL,
    first_attempt_ms INTEGER NOT NULL,
    dead_at_ms       INTEGER NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'dropped')),
    settled_by       TEXT,
    settled_at_ms    INTEGER
) STRICT;
CREATE INDEX dead_letters_by_route ON dead_letters (route, state, dead_at_ms);
CREATE INDEX dead_letters_by_key ON dead_letters (key, dead_at_ms);
CREATE INDEX dead_letters_by_state ON dead_letters (state, dead_at_ms);
";

/// One attempt row per (route, envelope id, attempt, at_ms), so that recording a batch again
/// does not double the trail.
const SCHEMA_V2: &str = "
DELETE FROM attempts WHERE seq NOT IN (
    SELECT MIN(seq) FROM attempts GROUP BY route, envelope_id, attempt, at_ms
);
CREATE UNIQUE INDEX attempts_once ON attempts (route, envelope_id, attempt, at_ms);
";

/// The highest version accepted (durably queued) per (route, key), for backlog coalescing.
const SCHEMA_V3: &str = "
CREATE TABLE accepted_versions (
    route        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (route, key)
) STRICT;
";

const LEDGER_COLS: &str = "route, destination, envelope_id, key, kind, natural_key, version, \
                           outcome, attempts, status, detail, at_ms";
const ATTEMPT_COLS: &str =
    "route, envelope_id, key, attempt, result, status, reason, latency_ms, at_ms";
const DEAD_LETTER_COLS: &str = "id, route, queue, envelope_id, key, kind, envelope, reason, \
                                attempts, last_status, last_answer, first_attempt_ms, dead_at_ms, \
                                state, settled_by, settled_at_ms";

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite store. Cheap to share behind an `Arc`; dropping it stops the worker thread.
pub struct SqliteStore {
    /// Jobs for the thread that owns the connection.
    jobs: mpsc::Sender<Job>,
    /// The database file, for messages.
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed, parent directories included) the database at `path`, configure
    /// it and run the migrations. Blocks the calling thread until the file is ready.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Open(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread_path = path.clone();
        thread::Builder::new()
            .name("gw-store-sqlite".into())
            .spawn(move || {
                let mut conn = match open_connection(&thread_path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Ends when every sender (the store) is gone; the connection closes with it.
                while let Ok(job) = inbox.recv() {
                    // A panicking job (a bug) fails its own call (its reply is dropped, any open
                    // transaction rolls back while unwinding) but must not take the store down.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("a sqlite store operation panicked; it was rolled back");
                    }
                }
            })
            .map_err(|e| StoreError::Open(format!("cannot start the sqlite thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| StoreError::Open("the sqlite thread stopped while opening".into()))??;
        Ok(Self { jobs, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the connection's thread and await its answer.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> std::result::Result<T, Fail> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn: &mut Connection| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| StoreError::Query("the sqlite thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Query("the sqlite thread dropped the operation".into()))?
            .map_err(StoreError::from)
    }
}

/// Prepared statements kept per connection (more than the store has).
const STATEMENT_CACHE: usize = 256;

fn open_connection(path: &Path) -> Result<Connection> {
    let open_err = |e: rusqlite::Error| StoreError::Open(format!("{}: {e}", path.display()));
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    // Every statement of the hot path stays prepared: rusqlite's default cache holds 16, fewer
    // than the ledger, claims and evidence statements of one batch, so they were parsed again
    // and again (the SQL parser showed in the profile of the embedded bench).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "{}: journal_mode is {mode}, WAL is required",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    migrate(&mut conn).map_err(|f| match StoreError::from(f) {
        StoreError::Migrate(m) => StoreError::Migrate(m),
        other => StoreError::Migrate(other.to_string()),
    })?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> std::result::Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version       INTEGER PRIMARY KEY,
             applied_at_ms INTEGER NOT NULL
         ) STRICT;",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > latest {
        return Err(Fail::Migrate(format!(
            "the database is at schema version {current}, this binary knows up to {latest}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let sql = add_columns_if_missing(&tx, sql)
            .map_err(|e| Fail::Migrate(format!("migration {version}: {e}")))?;
        tx.execute_batch(&sql)
            .map_err(|e| Fail::Migrate(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (?1, ?2)",
            params![version, crate::clock::now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// SQLite has no `ADD COLUMN IF NOT EXISTS`. A migration line of the form
/// `ALTER TABLE t ADD COLUMN IF NOT EXISTS c …;` (one statement on one line) is run as
/// `ALTER TABLE t ADD COLUMN c …;` when `t` has no column `c`, and left out when it has one, so
/// that a migration run again over a file that already has its columns (a file whose version
/// rows were lost, or rewound by a test to look older) is a no-op, as on PostgreSQL. Other lines
/// pass through unchanged.
fn add_columns_if_missing(tx: &Connection, sql: &str) -> rusqlite::Result<String> {
    const MARK: &str = " ADD COLUMN IF NOT EXISTS ";
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        let trimmed = line.trim_start();
        let Some((head, rest)) = trimmed
            .strip_prefix("ALTER TABLE ")
            .and_then(|r| r.split_once(MARK))
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let table = head.trim();
        let column = rest.split_whitespace().next().unwrap_or_default();
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            params![table, column],
            |r| r.get(0),
        )?;
        if !exists {
            out.push_str(&format!("ALTER TABLE {table} ADD COLUMN {rest}\n"));
        }
    }
    Ok(out)
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        Outcome::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown outcome {s:?}").into()))
    }
}

impl FromSql for DeadLetterState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        DeadLetterState::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown dead-letter state {s:?}").into()))
    }
}

fn ledger_row(r: &Row<'_>) -> rusqlite::Result<OutcomeRecord> {
    Ok(OutcomeRecord {
        route: r.get(0)?,
        destination: r.get(1)?,
        envelope_id: r.get(2)?,
        key: r.get(3)?,
        kind: r.get(4)?,
        natural_key: r.get(5)?,
        version: r.get(6)?,
        outcome: r.get(7)?,
        attempts: r.get(8)?,
        status: r.get(9)?,
        detail: r.get(10)?,
        at_ms: r.get(11)?,
    })
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        route: r.get(0)?,
        envelope_id: r.get(1)?,
        key: r.get(2)?,
        attempt: r.get(3)?,
        result: r.get(4)?,
        status: r.get(5)?,
        reason: r.get(6)?,
        latency_ms: r.get(7)?,
        at_ms: r.get(8)?,
    })
}

fn dead_letter_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        letter: NewDeadLetter {
            id: r.get(0)?,
            route: r.get(1)?,
            queue: r.get(2)?,
            envelope_id: r.get(3)?,
            key: r.get(4)?,
            kind: r.get(5)?,
            envelope: r.get(6)?,
            reason: r.get(7)?,
            attempts: r.get(8)?,
            last_status: r.get(9)?,
            last_answer: r.get(10)?,
            first_attempt_ms: r.get(11)?,
            dead_at_ms: r.get(12)?,
        },
        state: r.get(13)?,
        settled_by: r.get(14)?,
        settled_at_ms: r.get(15)?,
    })
}

fn record_batch(conn: &mut Connection, batch: &Batch) -> std::result::Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut ledger = tx.prepare_cached(&format!(
            "INSERT INTO ledger ({LEDGER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (route, envelope_id) DO NOTHING"
        ))?;
        let mut natural = tx.prepare_cached(
            "INSERT INTO delivered_natural_keys (destination, natural_key, route, envelope_id, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (destination, natural_key) DO NOTHING",
        )?;
        let mut version = tx.prepare_cached(
            "INSERT INTO delivered_versions (destination, key, version, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (destination, key) DO UPDATE
                 SET version = excluded.version, at_ms = excluded.at_ms
                 WHERE excluded.version > delivered_versions.version",
        )?;
        for o in &batch.outcomes {
            ledger.execute(params![
                o.route,
                o.destination,
                o.envelope_id,
                o.key,
                o.kind,
                o.natural_key,
                o.version,
                o.outcome.as_str(),
                o.attempts,
                o.status,
                o.detail,
                o.at_ms,
            ])?;
            if o.outcome != Outcome::Delivered {
                continue;
            }
            // A version's own key is said by `delivered_versions` (raised below).
            if let Some(nk) = o
                .natural_key
                .as_ref()
                .filter(|_| !crate::natural_keys::implied_by_version(o))
            {
                natural.execute(params![o.destination, nk, o.route, o.envelope_id, o.at_ms])?;
            }
            if let Some(v) = o.version {
                version.execute(params![o.destination, o.key, v, o.at_ms])?;
            }
        }
        let mut attempt = tx.prepare_cached(&format!(
            "INSERT INTO attempts ({ATTEMPT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (route, envelope_id, attempt, at_ms) DO NOTHING"
        ))?;
        for a in &batch.attempts {
            attempt.execute(params![
                a.route,
                a.envelope_id,
                a.key,
                a.attempt,
                a.result,
                a.status,
                a.reason,
                a.latency_ms,
                a.at_ms,
            ])?;
        }
        let mut dead = tx.prepare_cached(
            "INSERT INTO dead_letters (id, route, queue, envelope_id, key, kind, envelope, reason,
                 attempts, last_status, last_answer, first_attempt_ms, dead_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO NOTHING",
        )?;
        for d in &batch.dead_letters {
            let inserted = dead.execute(params![
                d.id,
                d.route,
                d.queue,
                d.envelope_id,
                d.key,
                d.kind,
                d.envelope,
                d.reason,
                d.attempts,
                d.last_status,
                d.last_answer,
                d.first_attempt_ms,
                d.dead_at_ms,
            ])?;
            if inserted == 0 {
                // The id exists: the same letter again is a retried batch, anything else a
                // conflict that must not pass silently.
                let existing = get_dead_letter(&tx, &d.id)?;
                if existing.map(|e| e.letter).as_ref() != Some(d) {
                    return Err(Fail::Conflict(d.id.clone()));
                }
            }
        }
    }
    {
        // Several entries for one (route, key) each raise it: the highest one wins.
        let mut accepted = tx.prepare_cached(
            "INSERT INTO accepted_versions (route, key, version, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (route, key) DO UPDATE
                 SET version = excluded.version, at_ms = excluded.at_ms
                 WHERE excluded.version > accepted_versions.version",
        )?;
        let now = crate::clock::now_ms();
        for a in &batch.accepted {
            accepted.execute(params![a.route, a.key, a.version, now])?;
        }
    }
    if !batch.evidence.is_empty() {
        crate::evidence_sql::sqlite_append(&tx, &batch.evidence)?;
    }
    if !batch.releases.is_empty() {
        crate::claims::sqlite_release(&tx, &batch.releases, crate::clock::now_ms())?;
    }
    // Any `?` above drops `tx`, which rolls the whole batch back.
    tx.commit()?;
    Ok(())
}

fn get_dead_letter(conn: &Connection, id: &str) -> rusqlite::Result<Option<DeadLetter>> {
    conn.prepare_cached(&format!(
        "SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE id = ?1"
    ))?
    .query_row([id], dead_letter_row)
    .optional()
}

fn settle(
    conn: &mut Connection,
    id: &str,
    to: DeadLetterState,
    who: &str,
    at_ms: i64,
) -> std::result::Result<Settled, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx
        .prepare_cached(
            "UPDATE dead_letters SET state = ?2, settled_by = ?3, settled_at_ms = ?4
             WHERE id = ?1 AND state = 'open'",
        )?
        .execute(params![id, to.as_str(), who, at_ms])?;
    let letter = get_dead_letter(&tx, id)?;
    tx.commit()?;
    Ok(match (changed, letter) {
        (_, None) => Settled::NotFound,
        (1, Some(l)) => Settled::Changed(l),
        (_, Some(l)) => Settled::AlreadySettled(l),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn feeds(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn crate::feeds::FeedStore> {
        self
    }

    fn subscription_states(
        self: std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn crate::subscriptions::SubscriptionStates> {
        self
    }

    async fn record_shared(&self, batch: std::sync::Arc<Batch>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.call(move |conn| record_batch(conn, &batch)).await
    }

    async fn outcome(&self, route: &str, envelope_id: &str) -> Result<Option<OutcomeRecord>> {
        let (route, envelope_id) = (route.to_owned(), envelope_id.to_owned());
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLS} FROM ledger WHERE route = ?1 AND envelope_id = ?2"
                ))?
                .query_row([route, envelope_id], ledger_row)
                .optional()?)
        })
        .await
    }

    async fn natural_key_done(&self, destination: &str, natural_key: &str) -> Result<bool> {
        let (destination, natural_key) = (destination.to_owned(), natural_key.to_owned());
        self.call(move |conn| {
            let (key, version) = crate::natural_keys::version_of(&natural_key).unzip();
            // Its row, or for a version's key the version delivered (`crate::natural_keys`).
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM delivered_natural_keys
                                    WHERE destination = ?1 AND natural_key = ?2)
                         OR COALESCE((SELECT version >= ?4 FROM delivered_versions
                                      WHERE destination = ?1 AND key = ?3), 0)",
                )?
                .query_row(params![destination, natural_key, key, version], |r| {
                    r.get(0)
                })?)
        })
        .await
    }

    async fn delivered_version(&self, destination: &str, key: &str) -> Result<Option<i64>> {
        let (destination, key) = (destination.to_owned(), key.to_owned());
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT version FROM delivered_versions WHERE destination = ?1 AND key = ?2",
                )?
                .query_row([destination, key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn versions(&self, route: &str, destination: &str, key: &str) -> Result<Versions> {
        let (route, destination, key) = (route.to_owned(), destination.to_owned(), key.to_owned());
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT (SELECT version FROM delivered_versions
                             WHERE destination = ?1 AND key = ?3),
                            (SELECT version FROM accepted_versions
                             WHERE route = ?2 AND key = ?3)",
                )?
                .query_row([destination, route, key], |r| {
                    Ok(Versions {
                        delivered: r.get(0)?,
                        accepted: r.get(1)?,
                    })
                })?)
        })
        .await
    }

    async fn versions_many(&self, asks: &[crate::records::VersionsAsk]) -> Result<Vec<Versions>> {
        let asks = asks.to_vec();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT (SELECT version FROM delivered_versions
                         WHERE destination = ?1 AND key = ?3),
                        (SELECT version FROM accepted_versions
                         WHERE route = ?2 AND key = ?3)",
            )?;
            let mut out = Vec::with_capacity(asks.len());
            for a in &asks {
                out.push(stmt.query_row([&a.destination, &a.route, &a.key], |r| {
                    Ok(Versions {
                        delivered: r.get(0)?,
                        accepted: r.get(1)?,
                    })
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn claim(&self, req: &crate::claims::ClaimRequest) -> Result<crate::claims::Claim> {
        let req = req.clone();
        self.call(move |conn| crate::claims::sqlite_claim(conn, &req, crate::clock::now_ms()))
            .await
    }

    async fn claim_many(
        &self,
        reqs: &[crate::claims::ClaimRequest],
    ) -> Result<Vec<crate::claims::Claim>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let reqs = reqs.to_vec();
        self.call(move |conn| crate::claims::sqlite_claim_many(conn, &reqs, crate::clock::now_ms()))
            .await
    }

    async fn extend_claim(
        &self,
        destination: &str,
        key: &str,
        holder: &str,
        lease_ms: i64,
        sending: bool,
    ) -> Result<bool> {
        let (d, k, h) = (destination.to_owned(), key.to_owned(), holder.to_owned());
        self.call(move |conn| {
            crate::claims::sqlite_extend(
                conn,
                &d,
                &k,
                &h,
                lease_ms,
                sending,
                crate::clock::now_ms(),
            )
        })
        .await
    }

    async fn in_doubt_by_key(&self, key: &str) -> Result<Vec<crate::claims::InDoubtRow>> {
        let key = key.to_owned();
        self.call(move |conn| crate::claims::sqlite_in_doubt_by_key(conn, &key))
            .await
    }

    async fn outcomes_by_key(&self, key: &str) -> Result<Vec<OutcomeRecord>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE key = ?1 ORDER BY at_ms, rowid"
            ))?;
            let rows = stmt.query_map([key], ledger_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn attempts_by_key(&self, key: &str) -> Result<Vec<AttemptRecord>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE key = ?1 ORDER BY at_ms, seq"
            ))?;
            let rows = stmt.query_map([key], attempt_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let mut conds = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(route) = &filter.route {
            args.push(Value::Text(route.clone()));
            conds.push(format!("route = ?{}", args.len()));
        }
        if let Some(key) = &filter.key {
            args.push(Value::Text(key.clone()));
            conds.push(format!("key = ?{}", args.len()));
        }
        if let Some(state) = filter.state {
            args.push(Value::Text(state.as_str().to_owned()));
            conds.push(format!("state = ?{}", args.len()));
        }
        let mut sql = format!("SELECT {DEAD_LETTER_COLS} FROM dead_letters");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY dead_at_ms, id");
        if filter.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", filter.limit));
        }
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), dead_letter_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>> {
        let id = id.to_owned();
        self.call(move |conn| Ok(get_dead_letter(conn, &id)?)).await
    }

    async fn mark_replayed(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled> {
        let (id, who) = (id.to_owned(), who.to_owned());
        self.call(move |conn| settle(conn, &id, DeadLetterState::Replayed, &who, at_ms))
            .await
    }

    async fn mark_dropped(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled> {
        let (id, who) = (id.to_owned(), who.to_owned());
        self.call(move |conn| settle(conn, &id, DeadLetterState::Dropped, &who, at_ms))
            .await
    }

    async fn open_dead_letters(&self) -> Result<u64> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE state = 'open'")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn ready(&self) -> bool {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .is_ok()
    }

    async fn remember_signature(
        &self,
        scope: &str,
        id: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.call(move |conn| {
            let n = conn.execute(
                crate::replay::REMEMBER_SQLITE,
                rusqlite::params![scope, id, expires_ms, now_ms],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_signature(&self, scope: &str, id: &str) -> Result<()> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM seen_signatures WHERE scope = ?1 AND id = ?2",
                [scope, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn forget_signatures(&self, now_ms: i64) -> Result<u64> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM seen_signatures WHERE expires_ms < ?1",
                [now_ms],
            )? as u64)
        })
        .await
    }

    async fn evidence_heads(&self) -> Result<Vec<crate::evidence_records::ChainHead>> {
        self.call(|conn| Ok(crate::evidence_sql::sqlite_heads(conn)?))
            .await
    }

    async fn evidence_chain(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<crate::evidence_records::StoredEvidence>> {
        let chain = chain.to_owned();
        self.call(move |conn| {
            Ok(crate::evidence_sql::sqlite_chain(
                conn, &chain, after_seq, limit,
            )?)
        })
        .await
    }

    async fn evidence_by_dossier(
        &self,
        dossier: &str,
    ) -> Result<Vec<crate::evidence_records::StoredEvidence>> {
        let dossier = dossier.to_owned();
        self.call(move |conn| Ok(crate::evidence_sql::sqlite_by_dossier(conn, &dossier)?))
            .await
    }

    async fn add_timestamp(&self, ts: crate::evidence_records::TimeStampRow) -> Result<()> {
        self.call(move |conn| Ok(crate::evidence_sql::sqlite_add_timestamp(conn, &ts)?))
            .await
    }

    async fn timestamps(&self, chain: &str) -> Result<Vec<crate::evidence_records::TimeStampRow>> {
        let chain = chain.to_owned();
        self.call(move |conn| Ok(crate::evidence_sql::sqlite_timestamps(conn, &chain)?))
            .await
    }

    async fn evidence_prune(&self, chain: &str, through_seq: i64) -> Result<u64> {
        let chain = chain.to_owned();
        self.call(move |conn| crate::evidence_sql::sqlite_prune(conn, &chain, through_seq))
            .await
    }

    /// SQLite serves one process (the gateway holds the data-directory lock), so the caller
    /// always leads.
    async fn try_lead(
        &self,
        job: &str,
        _holder: &str,
        _lease: std::time::Duration,
    ) -> Result<Option<crate::store::LeadGuard>> {
        Ok(Some(crate::store::LeadGuard::sole(job)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connection_is_configured_for_durability() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let (sync, fk, mode): (i64, i64, String) = store
            .call(|conn| {
                let sync = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let fk = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                let mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                Ok((sync, fk, mode))
            })
            .await
            .unwrap();
        assert_eq!((sync, fk, mode.as_str()), (2, 1, "wal"), "FULL, ON, WAL");
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let failed = store
            .call(|conn| -> std::result::Result<(), Fail> {
                let tx = conn.transaction()?;
                tx.execute_batch("CREATE TABLE half_done (x INTEGER)")?;
                panic!("a bug in an operation");
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Query(_))));
        assert!(store.ready().await);
        let tables: i64 = store
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(tables, 0, "the panicking transaction was rolled back");
    }
}
