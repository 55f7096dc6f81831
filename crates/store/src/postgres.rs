//! PostgreSQL store: for several gateway instances sharing the work.
//!
//! # Schema (`schema_version` records what was applied)
//!
//! The same tables and semantics as the SQLite store (see [`crate::sqlite`]):
//!
//! ```text
//! schema_version         (version PK, applied_at_ms)
//! ledger                 PK (route, envelope_id); seq identity; index (key, at_ms, seq)
//! delivered_natural_keys PK (destination, natural_key); not for a version's own key
//!                        (`natural_keys.rs`: delivered_versions says it)
//! delivered_versions     PK (destination, key) → version, only ever raised
//! accepted_versions      PK (route, key) → version, only ever raised; at_ms = store clock at
//!                        the last raise (version 3)
//! attempts               seq identity (no index: version 16); index (key, at_ms, seq);
//!                        unique (route, envelope_id, attempt, at_ms) (version 2), the only
//!                        unique index: the insert names no conflict target
//! dead_letters           PK id; envelope BYTEA; state open|replayed|dropped
//!                        indexes (route, state, dead_at_ms), (key, dead_at_ms), (state, dead_at_ms)
//! evidence, evidence_heads, evidence_timestamps   the evidence log (version 4, see
//!                        `evidence_sql.rs`; evidence_batches, evidence_leaves: version 15); a chain's head row is locked (`FOR UPDATE`) while
//!                        its records are appended, so one chain never forks
//! claims, in_doubt       delivery claims and exchanges in doubt (version 6, see `claims.rs`)
//! signature_*            remote signing requests, trail, outbox, blobs (version 9, see
//!                        `signatures/mod.rs`)
//! feed_heads, feed_entries  agencies' pull feeds (version 10, see `feeds/mod.rs`)
//! ```
//!
//! Counters (`attempts`, `latency_ms`) are `BIGINT` so every `u32` fits; statuses are `INTEGER`.
//!
//! # Guarantees
//!
//! - [`Store::record`] is one transaction: one statement per table with the batch's rows as
//!   arrays (`UNNEST … WITH ORDINALITY`, batch order kept), plus one per dead letter.
//!   Ledger rows use `ON CONFLICT DO NOTHING` (the first final outcome wins, even between
//!   instances racing on the same envelope); each `Delivered` outcome adds its natural key
//!   (`ON CONFLICT DO NOTHING`) and raises the destination's version (`ON CONFLICT DO UPDATE …
//!   WHERE excluded.version > version`, i.e. `GREATEST` without a pointless write).
//! - The batch's accepted versions raise `accepted_versions` for (route, key) the same way, in
//!   the same transaction. `ON CONFLICT DO UPDATE` may not touch one row twice in a statement,
//!   so the highest version per (route, key) is computed in Rust first (several entries for one
//!   key in a batch: the highest wins). [`Store::versions`] reads the delivered and the accepted
//!   version in one round trip (two scalar subqueries).
//! - Recording a batch again (after a commit whose answer was lost) changes nothing: attempts are
//!   unique per (route, envelope id, attempt, at_ms) and a dead letter identical to the stored
//!   one is skipped. A different letter under an existing id rolls the whole batch back
//!   ([`StoreError::Query`]).
//! - Two instances writing overlapping ledger rows in opposite orders can deadlock; PostgreSQL
//!   aborts one transaction, which surfaces as [`StoreError::Query`] and is retried like any
//!   other. Version rows (delivered and accepted) are written in sorted order, so they never
//!   take part in one.
//! - Replay / drop: `UPDATE … WHERE id = $1 AND state = 'open' RETURNING …`. PostgreSQL re-checks
//!   the `WHERE` after waiting on a concurrent update's row lock, so exactly one caller, across
//!   every instance, gets [`Settled::Changed`].
//! - Migrations run at connect in one transaction holding an advisory lock, so instances starting
//!   together migrate once; a database migrated by a newer binary is refused.
//! - Connections come from a `deadpool-postgres` pool. A connection the server closed is
//!   discarded when it comes back to the pool and a new one is made on demand, so the store heals
//!   by itself after an outage; an operation during the outage fails with
//!   [`StoreError::Query`] and the caller retries.
//! - **Leadership** ([`Store::try_lead`]): a singleton job's leader holds the session-level
//!   advisory lock `lead_key(schema, job)` (FNV-1a of `<schema>/<job>`, so stores in different
//!   schemas of one database do not contend) on a dedicated connection, outside the pool. Its
//!   `application_name` reads `gw-lead <job> until=<hh:mm:ss>Z <holder>` so operators see who
//!   leads in `pg_stat_activity`; a keeper task renews it every third of the lease, and each
//!   renewal moves the guard's lease forward. Leadership is lost (the guard says so, for good)
//!   when the connection ends or a renewal fails or is late; the session also has
//!   `idle_session_timeout = lease`, so a holder that stopped renewing (frozen process, cut
//!   network) loses the lock on the server after at most one lease, and another instance can
//!   take it. Dropping the guard closes the connection, which releases the lock at once.
//! - Isolation by schema: [`PgStore::connect_with_schema`] (or `schema=NAME` in the URL) creates
//!   the schema if missing and pins `search_path` on every pooled connection at startup.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::tls::{PgTls, SslMode};

mod lead {
    //! Leadership through session-level advisory locks (see the module doc of `postgres`).
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::error::{Result, StoreError};
    use crate::store::LeadGuard;

    /// The shortest lease accepted: renewals every third of it must fit round trips.
    const MIN_LEASE: Duration = Duration::from_secs(3);

    /// The advisory-lock key of a job: FNV-1a of `<schema>/<job>`, stable across processes.
    pub(super) fn lead_key(schema: Option<&str>, job: &str) -> i64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in schema
            .unwrap_or("")
            .bytes()
            .chain([b'/'])
            .chain(job.bytes())
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h as i64
    }

    /// `gw-lead <job> until=<hh:mm:ss>Z <holder>`, cut to PostgreSQL's 63 bytes, ASCII only.
    pub(super) fn application_name(job: &str, until_ms: i64, holder: &str) -> String {
        let secs = until_ms.div_euclid(1000).rem_euclid(86_400);
        let text = format!(
            "gw-lead {job} until={:02}:{:02}:{:02}Z {holder}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        text.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(63)
            .collect()
    }

    /// Keeps the lock: owns the session's client (dropping it ends the session).
    struct Hold {
        keeper: tokio::task::JoinHandle<()>,
    }

    impl Drop for Hold {
        fn drop(&mut self) {
            // The keeper owns the client: aborting it drops the client, which closes the
            // session, which releases the advisory lock.
            self.keeper.abort();
        }
    }

    pub(super) async fn try_lead(
        base: &tokio_postgres::Config,
        connector: &super::Connector,
        schema: Option<&str>,
        job: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<LeadGuard>> {
        let lease = lease.max(MIN_LEASE);
        let key = lead_key(schema, job);
        let mut plain = base.clone();
        plain.application_name(application_name(job, crate::clock::now_ms(), holder));
        let mut config = plain.clone();
        let idle = format!("-c idle_session_timeout={}", lease.as_millis());
        let options = match config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {idle}"),
            _ => idle,
        };
        config.options(options);
        let mut connect =
            tokio::time::timeout(super::CONNECT_TIMEOUT, connector.connect(&config)).await;
        if matches!(&connect, Ok(Err(e)) if e.to_string().contains("idle_session_timeout")) {
            // PostgreSQL before 14 has no idle_session_timeout: lead without it (a frozen
            // holder then keeps the lock until its TCP connection is found dead).
            connect = tokio::time::timeout(super::CONNECT_TIMEOUT, connector.connect(&plain)).await;
        }
        let (client, connection) = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(StoreError::Query(format!(
                    "leadership of {job}: cannot connect: {}",
                    super::connect_failure(&e)
                )))
            }
            Err(_) => {
                return Err(StoreError::Query(format!(
                    "leadership of {job}: no connection within {:?}",
                    super::CONNECT_TIMEOUT
                )))
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let on_end = lost.clone();
        tokio::spawn(async move {
            connection.await;
            on_end.store(true, Ordering::SeqCst);
        });
        let started = crate::clock::now_ms();
        let got = tokio::time::timeout(
            lease / 3,
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]),
        )
        .await;
        let got: bool = match got {
            Ok(Ok(row)) => row.get(0),
            Ok(Err(e)) => {
                return Err(StoreError::Query(format!(
                    "leadership of {job}: {}",
                    crate::sql::describe(&e)
                )))
            }
            Err(_) => {
                return Err(StoreError::Query(format!(
                    "leadership of {job}: no answer within {:?}",
                    lease / 3
                )))
            }
        };
        if !got {
            return Ok(None);
        }
        let until = Arc::new(AtomicI64::new(started + lease.as_millis() as i64));
        let (k_lost, k_until, k_job, k_holder) = (
            lost.clone(),
            until.clone(),
            job.to_string(),
            holder.to_string(),
        );
        let keeper = tokio::spawn(async move {
            let period = lease / 3;
            loop {
                let sent = crate::clock::now_ms();
                let next = sent + lease.as_millis() as i64;
                let name = application_name(&k_job, next, &k_holder);
                let renewed = tokio::time::timeout(
                    period,
                    client.execute("SELECT set_config('application_name', $1, false)", &[&name]),
                )
                .await;
                if !matches!(renewed, Ok(Ok(_))) || client.is_closed() {
                    tracing::warn!(job = %k_job, "leadership lost: the lease could not be renewed");
                    k_lost.store(true, Ordering::SeqCst);
                    return;
                }
                k_until.store(next, Ordering::SeqCst);
                tokio::time::sleep(period).await;
            }
        });
        Ok(Some(LeadGuard::new(
            job,
            lost,
            until,
            Box::new(Hold { keeper }),
        )))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_are_stable_and_separate_schemas_and_jobs() {
            assert_eq!(lead_key(Some("a"), "job"), lead_key(Some("a"), "job"));
            assert_ne!(lead_key(Some("a"), "job"), lead_key(Some("b"), "job"));
            assert_ne!(lead_key(Some("a"), "job"), lead_key(Some("a"), "job2"));
            assert_ne!(lead_key(None, "a/b"), lead_key(Some("a"), "b/"));
        }

        #[test]
        fn application_name_is_readable_and_bounded() {
            let n = application_name("catalogue", 3_723_000, "gw-1");
            assert_eq!(n, "gw-lead catalogue until=01:02:03Z gw-1");
            let long = application_name(&"j".repeat(100), 0, "h\u{00e9}");
            assert_eq!(long.len(), 63);
        }
    }
}

use crate::error::{Result, StoreError};
use crate::records::{
    AttemptRecord, Batch, DeadLetter, DeadLetterFilter, DeadLetterState, NewDeadLetter, Outcome,
    OutcomeRecord, Settled, Versions,
};
use crate::sql::{describe, query};
use crate::store::Store;

/// Connections per instance: enough for the workers' batches plus the ops API.
const POOL_SIZE: usize = 16;
/// How long an operation waits for a free connection / a new connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `/readyz` must answer quickly, even when the database does not.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Advisory lock serialising migrations between instances ("gwstore" in ASCII).
const MIGRATION_LOCK: i64 = 0x0067_7773_746f_7265;

/// Ordered migrations: (version, SQL). Append only; never edit an applied one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, crate::evidence_sql::PG_V4),
    (5, crate::payments::schema::PG_V5),
    (6, crate::claims::PG_V6),
    (7, crate::payments::schema::PG_V7),
    (8, crate::replay::PG_V8),
    (9, crate::signatures::schema::PG_V9),
    (10, crate::feeds::schema::PG_V10),
    (11, crate::axis::schema::PG_V11),
    (12, crate::indicators::schema::PG_V12),
    (13, crate::subscriptions::schema::PG_V13),
    (14, crate::evidence_sql::PG_V14),
    (15, crate::signatures::schema::PG_V15),
    (16, SCHEMA_V16),
];

/// The schema versions this build's PostgreSQL migrations bring a database to, oldest first (tests
/// compare a migrated database's `schema_version` with it instead of a hand-kept list).
pub fn migration_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|(v, _)| *v).collect()
}

const SCHEMA_V1: &str = "
CREATE TABLE ledger (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY,
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    natural_key  TEXT,
    version      BIGINT,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('delivered', 'superseded', 'dead_lettered')),
    attempts     BIGINT  NOT NULL,
    status       INTEGER,
    detail       TEXT    NOT NULL,
    at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (route, envelope_id)
);
CREATE INDEX ledger_by_key ON ledger (key, at_ms, seq);

CREATE TABLE delivered_natural_keys (
    destination  TEXT    NOT NULL,
    natural_key  TEXT    NOT NULL,
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (destination, natural_key)
);

CREATE TABLE delivered_versions (
    destination  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (destination, key)
);

CREATE TABLE attempts (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route        TEXT    NOT NULL,
    envelope_id  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    attempt      BIGINT  NOT NULL,
    result       TEXT    NOT NULL,
    status       INTEGER,
    reason       TEXT    NOT NULL,
    latency_ms   BIGINT  NOT NULL,
    at_ms        BIGINT  NOT NULL
);
CREATE INDEX attempts_by_key ON attempts (key, at_ms, seq);

CREATE TABLE dead_letters (
    id               TEXT    NOT NULL PRIMARY KEY,
    route            TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    envelope         BYTEA   NOT NULL,
    reason           TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL,
    last_status      INTEGER,
    last_answer      TEXT    NOT NULL,
    first_attempt_ms BIGINT  NOT NULL,
    dead_at_ms       BIGINT  NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'dropped')),
    settled_by       TEXT,
    settled_at_ms    BIGINT
);
CREATE INDEX dead_letters_by_route ON dead_letters (route, state, dead_at_ms);
CREATE INDEX dead_letters_by_key ON dead_letters (key, dead_at_ms);
CREATE INDEX dead_letters_by_state ON dead_letters (state, dead_at_ms);
";

/// One attempt row per (route, envelope id, attempt, at_ms), so that recording a batch again
/// (after a commit whose answer was lost) does not double the trail.
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
    version      BIGINT  NOT NULL,
    at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (route, key)
);
";

/// The attempts' `seq` loses its primary-key index: no query looks a row up by `seq` (the
/// trail reads by key, through `attempts_by_key`, and a re-recorded batch is matched by
/// `attempts_once`), yet every recorded attempt paid an insert into it. `seq` stays (an
/// identity column, still the trail's tie-break within one millisecond).
const SCHEMA_V16: &str = "
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_pkey;
";

const LEDGER_COLS: &str = "route, destination, envelope_id, key, kind, natural_key, version, \
                           outcome, attempts, status, detail, at_ms";
const ATTEMPT_COLS: &str =
    "route, envelope_id, key, attempt, result, status, reason, latency_ms, at_ms";
const DEAD_LETTER_COLS: &str = "id, route, queue, envelope_id, key, kind, envelope, reason, \
                                attempts, last_status, last_answer, first_attempt_ms, dead_at_ms, \
                                state, settled_by, settled_at_ms";

// The batch's rows go in as arrays, one statement per table, instead of one round trip per row.
// `WITH ORDINALITY … ORDER BY ord` keeps the batch's order, so the first of two records for the
// same (route, envelope id) in one batch is the one kept, and `seq` follows the batch.
const INSERT_LEDGER: &str = "INSERT INTO ledger (route, destination, envelope_id, key, kind, \
     natural_key, version, outcome, attempts, status, detail, at_ms) \
     SELECT route, destination, envelope_id, key, kind, natural_key, version, outcome, attempts, \
            status, detail, at_ms \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::bigint[], $8::text[], $9::bigint[], $10::int[], $11::text[], $12::bigint[]) \
          WITH ORDINALITY AS t(route, destination, envelope_id, key, kind, natural_key, version, \
                               outcome, attempts, status, detail, at_ms, ord) \
     ORDER BY ord \
     ON CONFLICT (route, envelope_id) DO NOTHING";
const INSERT_NATURAL_KEYS: &str = "INSERT INTO delivered_natural_keys \
     (destination, natural_key, route, envelope_id, at_ms) \
     SELECT destination, natural_key, route, envelope_id, at_ms \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
          WITH ORDINALITY AS t(destination, natural_key, route, envelope_id, at_ms, ord) \
     ORDER BY ord \
     ON CONFLICT (destination, natural_key) DO NOTHING";
// One row per (destination, key), highest version first computed by the caller: `DO UPDATE`
// may not touch a row twice in one statement. Sorted, so concurrent batches lock in one order.
const RAISE_VERSIONS: &str = "INSERT INTO delivered_versions (destination, key, version, at_ms) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
     ON CONFLICT (destination, key) DO UPDATE SET version = excluded.version, at_ms = excluded.at_ms \
     WHERE excluded.version > delivered_versions.version";
// Like `RAISE_VERSIONS`: one row per (route, key), the highest version, sorted by the caller.
const RAISE_ACCEPTED: &str = "INSERT INTO accepted_versions (route, key, version, at_ms) \
     SELECT route, key, version, $4::bigint \
     FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(route, key, version) \
     ON CONFLICT (route, key) DO UPDATE SET version = excluded.version, at_ms = excluded.at_ms \
     WHERE excluded.version > accepted_versions.version";
/// A delivered natural key: its row, or for a version's key ($3 key, $4 version) the version
/// delivered ([`crate::natural_keys`]).
const NATURAL_KEY_DONE: &str = "SELECT \
     COALESCE((SELECT true FROM delivered_natural_keys \
               WHERE destination = $1 AND natural_key = $2 LIMIT 1), false) \
     OR COALESCE((SELECT version >= $4 FROM delivered_versions \
                  WHERE destination = $1 AND key = $3), false)";
const VERSIONS: &str = "SELECT \
     (SELECT version FROM delivered_versions WHERE destination = $1 AND key = $3), \
     (SELECT version FROM accepted_versions WHERE route = $2 AND key = $3)";
/// [`VERSIONS`] of many keys, in the order asked: $1 routes, $2 destinations, $3 keys.
const VERSIONS_MANY: &str = "SELECT \
     (SELECT version FROM delivered_versions WHERE destination = a.d AND key = a.k), \
     (SELECT version FROM accepted_versions WHERE route = a.r AND key = a.k) \
     FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS a(r, d, k, i) \
     ORDER BY a.i";
// No conflict target: the one unique index of `attempts` decides, whatever its columns, so that
// a later migration may merge the trail's index and this one into a single unique index
// (key, route, envelope id, attempt, at_ms) without breaking the inserts of instances still
// running this code during a rolling upgrade (a test records under both layouts).
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (route, envelope_id, key, attempt, result, \
     status, reason, latency_ms, at_ms) \
     SELECT route, envelope_id, key, attempt, result, status, reason, latency_ms, at_ms \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], \
                 $7::text[], $8::bigint[], $9::bigint[]) \
          WITH ORDINALITY AS t(route, envelope_id, key, attempt, result, status, reason, \
                               latency_ms, at_ms, ord) \
     ORDER BY ord \
     ON CONFLICT DO NOTHING";
const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (id, route, queue, envelope_id, key, \
     kind, envelope, reason, attempts, last_status, last_answer, first_attempt_ms, dead_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (id) DO NOTHING";

/// The PostgreSQL store: a pool of connections, cheap to share behind an `Arc`.
pub struct PgStore {
    pool: Pool,
    /// The connection settings, for the dedicated connections of [`Store::try_lead`].
    config: tokio_postgres::Config,
    /// The schema the tables live in, when not the server's default `search_path`.
    schema: Option<String>,
    /// Plain or TLS, for the same dedicated connections.
    connector: Connector,
}

/// How connections are made: in clear text, or over TLS with verify-full semantics.
#[derive(Clone, Debug)]
pub(crate) enum Connector {
    Plain,
    Tls(PgTls),
}

/// A fresh client and the future driving its connection (ends when the session does).
type Session = (
    tokio_postgres::Client,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
);

impl Connector {
    /// One connection outside the pool (leadership sessions).
    pub(crate) async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::result::Result<Session, tokio_postgres::Error> {
        match self {
            Connector::Plain => {
                let (client, conn) = config.connect(NoTls).await?;
                Ok((
                    client,
                    Box::pin(async move {
                        let _ = conn.await;
                    }),
                ))
            }
            Connector::Tls(t) => {
                let (client, conn) = config.connect(t.connector.clone()).await?;
                Ok((
                    client,
                    Box::pin(async move {
                        let _ = conn.await;
                    }),
                ))
            }
        }
    }
}

/// Why a connection could not be made: the certificate problem in plain words when TLS
/// refused the server, the database's own message otherwise.
pub(crate) fn connect_failure(e: &tokio_postgres::Error) -> String {
    match crate::tls::explain(e) {
        Some(why) => format!("TLS to PostgreSQL refused: {why}"),
        None => describe(e),
    }
}

/// The same for a pool error (its source chain holds the tokio-postgres error).
fn pool_failure(e: &deadpool_postgres::PoolError) -> String {
    match crate::tls::explain(e) {
        Some(why) => format!("TLS to PostgreSQL refused: {why}"),
        None => match e {
            deadpool_postgres::PoolError::Backend(b) => describe(b),
            other => other.to_string(),
        },
    }
}

/// Which connector a URL's `sslmode` and the configured TLS call for; the refusals name the fix.
fn pick_connector(url: &str, tls: Option<PgTls>) -> Result<Connector> {
    let (mode, raw) = SslMode::of_url(url);
    let raw = raw.unwrap_or_default();
    match (mode, tls) {
        (SslMode::Weak, _) => Err(StoreError::Open(format!(
            "sslmode={raw} is refused: it does not check that the server is the one named in \
             the URL; write sslmode=verify-full and set the CA file (store.ca)"
        ))),
        (SslMode::VerifyFull, None) => Err(StoreError::Open(
            "sslmode=verify-full needs the CA the server's certificate chains to: set the CA \
             file (store.ca)"
                .into(),
        )),
        (SslMode::Disable | SslMode::Opportunistic, Some(_)) => Err(StoreError::Open(format!(
            "sslmode={raw} contradicts the configured CA file (store.ca): write \
             sslmode=verify-full, or remove store.ca for a plain connection"
        ))),
        (SslMode::VerifyFull | SslMode::Unset, Some(t)) => Ok(Connector::Tls(t)),
        (_, None) => Ok(Connector::Plain),
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db?…`) and run the migrations. A `schema=NAME`
    /// query parameter (not a libpq one: it is removed before connecting) does what
    /// [`PgStore::connect_with_schema`] does.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_tls(url, None).await
    }

    /// [`PgStore::connect`] over TLS when `tls` is given (verify-full: see [`crate::tls`]).
    /// The URL's `sslmode` may be absent or `verify-full` then; without `tls` it may be absent,
    /// `disable` or `prefer`. `require` and `verify-ca` are refused either way.
    pub async fn connect_tls(url: &str, tls: Option<PgTls>) -> Result<Self> {
        let (url, schema) = split_schema_param(url);
        Self::build(&url, schema, tls).await
    }

    /// Connect to `url`, keeping every table in `schema`: created if missing, and pinned as the
    /// `search_path` of every pooled connection. `schema` must be a lowercase SQL identifier
    /// (`[a-z_][a-z0-9_]*`, at most 63 bytes), so that it means the same thing quoted or not.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        let (url, _) = split_schema_param(url);
        Self::build(&url, Some(schema.to_owned()), None).await
    }

    /// The schema given at connect, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    async fn build(url: &str, schema: Option<String>, tls: Option<PgTls>) -> Result<Self> {
        let connector = pick_connector(url, tls)?;
        let url = match connector {
            Connector::Tls(_) => crate::tls::strip_sslmode(url),
            Connector::Plain => url.to_owned(),
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("bad PostgreSQL URL: {e}")))?;
        if let Connector::Tls(_) = connector {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        if let Some(schema) = &schema {
            check_schema_name(schema)?;
            let pin = format!("-c search_path={schema}");
            let options = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {pin}"),
                _ => pin,
            };
            config.options(options);
        }
        if config.get_application_name().is_none() {
            config.application_name("gw-store");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let lead_config = config.clone();
        // `is_closed` is enough to drop connections the server ended; a connection that
        // died silently fails its next query, which the caller retries.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &connector {
            Connector::Plain => Manager::from_config(config, NoTls, manager_config),
            Connector::Tls(t) => Manager::from_config(config, t.connector.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::Open(format!("cannot build the connection pool: {e}")))?;
        let store = Self {
            pool,
            config: lead_config,
            schema,
            connector,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Query(format!("no database connection: {e}")))
    }

    async fn migrate(&self) -> Result<()> {
        let mig = |e: tokio_postgres::Error| StoreError::Migrate(describe(&e));
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect: {}", pool_failure(&e))))?;
        let tx = client.transaction().await.map_err(mig)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(mig)?;
        if let Some(schema) = &self.schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await
                .map_err(mig)?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version       BIGINT PRIMARY KEY,
                 applied_at_ms BIGINT NOT NULL
             )",
        )
        .await
        .map_err(mig)?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(mig)?
            .get(0);
        let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if current > latest {
            return Err(StoreError::Migrate(format!(
                "the database is at schema version {current}, this binary knows up to {latest}"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await.map_err(|e| {
                StoreError::Migrate(format!("migration {version}: {}", describe(&e)))
            })?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, $2)",
                &[version, &crate::clock::now_ms()],
            )
            .await
            .map_err(mig)?;
        }
        tx.commit().await.map_err(mig)
    }

    async fn settle(
        &self,
        id: &str,
        to: DeadLetterState,
        who: &str,
        at_ms: i64,
    ) -> Result<Settled> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE dead_letters SET state = $2, settled_by = $3, settled_at_ms = $4 \
                 WHERE id = $1 AND state = 'open' RETURNING {DEAD_LETTER_COLS}"
            ))
            .await
            .map_err(query)?;
        let changed = client
            .query_opt(&stmt, &[&id, &to.as_str(), &who, &at_ms])
            .await
            .map_err(query)?;
        if let Some(row) = changed {
            return Ok(Settled::Changed(dead_letter_row(&row)?));
        }
        // Not open (a settled letter never reopens, so this read cannot go stale) or absent.
        drop(client);
        Ok(match self.dead_letter(id).await? {
            Some(letter) => Settled::AlreadySettled(letter),
            None => Settled::NotFound,
        })
    }
}

/// Remove a `schema=NAME` query parameter from `url`, returning the rest and the name.
fn split_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|param| match param.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => !param.is_empty(),
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), schema)
    } else {
        (format!("{base}?{}", kept.join("&")), schema)
    }
}

fn check_schema_name(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::Open(format!(
            "schema name {schema:?} must match [a-z_][a-z0-9_]* and be at most 63 bytes"
        )))
    }
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| StoreError::Malformed(format!("column {idx}: {}", describe(&e))))
}

fn col_u32(row: &Row, idx: usize) -> Result<u32> {
    let v: i64 = col(row, idx)?;
    u32::try_from(v).map_err(|_| StoreError::Malformed(format!("column {idx}: {v} is not a u32")))
}

fn col_status(row: &Row, idx: usize) -> Result<Option<u16>> {
    let v: Option<i32> = col(row, idx)?;
    v.map(|v| {
        u16::try_from(v)
            .map_err(|_| StoreError::Malformed(format!("column {idx}: {v} is not a status")))
    })
    .transpose()
}

fn ledger_row(r: &Row) -> Result<OutcomeRecord> {
    let outcome: String = col(r, 7)?;
    Ok(OutcomeRecord {
        route: col(r, 0)?,
        destination: col(r, 1)?,
        envelope_id: col(r, 2)?,
        key: col(r, 3)?,
        kind: col(r, 4)?,
        natural_key: col(r, 5)?,
        version: col(r, 6)?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Malformed(format!("unknown outcome {outcome:?}")))?,
        attempts: col_u32(r, 8)?,
        status: col_status(r, 9)?,
        detail: col(r, 10)?,
        at_ms: col(r, 11)?,
    })
}

fn attempt_row(r: &Row) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        route: col(r, 0)?,
        envelope_id: col(r, 1)?,
        key: col(r, 2)?,
        attempt: col_u32(r, 3)?,
        result: col(r, 4)?,
        status: col_status(r, 5)?,
        reason: col(r, 6)?,
        latency_ms: col_u32(r, 7)?,
        at_ms: col(r, 8)?,
    })
}

fn dead_letter_row(r: &Row) -> Result<DeadLetter> {
    let state: String = col(r, 13)?;
    Ok(DeadLetter {
        letter: NewDeadLetter {
            id: col(r, 0)?,
            route: col(r, 1)?,
            queue: col(r, 2)?,
            envelope_id: col(r, 3)?,
            key: col(r, 4)?,
            kind: col(r, 5)?,
            envelope: col(r, 6)?,
            reason: col(r, 7)?,
            attempts: col_u32(r, 8)?,
            last_status: col_status(r, 9)?,
            last_answer: col(r, 10)?,
            first_attempt_ms: col(r, 11)?,
            dead_at_ms: col(r, 12)?,
        },
        state: DeadLetterState::parse(&state)
            .ok_or_else(|| StoreError::Malformed(format!("unknown dead-letter state {state:?}")))?,
        settled_by: col(r, 14)?,
        settled_at_ms: col(r, 15)?,
    })
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
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
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(query)?;
        // The statements of a batch do not depend on each other's results: they are issued
        // together and tokio-postgres pipelines them on the transaction's connection (one round
        // trip for the lot instead of one or two per statement; they still run in order, and
        // the first error aborts the transaction).
        let tx = &txn;
        let batch: &Batch = &batch;
        let mut parts: Vec<futures::future::BoxFuture<'_, Result<()>>> = Vec::new();
        if !batch.outcomes.is_empty() {
            parts.push(Box::pin(async move {
                let os = &batch.outcomes;
                let text = |f: fn(&OutcomeRecord) -> &str| os.iter().map(f).collect::<Vec<&str>>();
                let natural_key: Vec<Option<&str>> =
                    os.iter().map(|o| o.natural_key.as_deref()).collect();
                let version: Vec<Option<i64>> = os.iter().map(|o| o.version).collect();
                let outcome: Vec<&str> = os.iter().map(|o| o.outcome.as_str()).collect();
                let attempts: Vec<i64> = os.iter().map(|o| i64::from(o.attempts)).collect();
                let status: Vec<Option<i32>> = os.iter().map(|o| o.status.map(i32::from)).collect();
                let at_ms: Vec<i64> = os.iter().map(|o| o.at_ms).collect();
                let stmt = tx.prepare_cached(INSERT_LEDGER).await.map_err(query)?;
                tx.execute(
                    &stmt,
                    &[
                        &text(|o| &o.route),
                        &text(|o| &o.destination),
                        &text(|o| &o.envelope_id),
                        &text(|o| &o.key),
                        &text(|o| &o.kind),
                        &natural_key,
                        &version,
                        &outcome,
                        &attempts,
                        &status,
                        &text(|o| &o.detail),
                        &at_ms,
                    ],
                )
                .await
                .map_err(query)?;
                Ok(())
            }));
            let delivered = || {
                batch
                    .outcomes
                    .iter()
                    .filter(|o| o.outcome == Outcome::Delivered)
            };
            // A version's own key is said by `delivered_versions` (raised below).
            let effects: Vec<(&OutcomeRecord, &str)> = delivered()
                .filter(|o| !crate::natural_keys::implied_by_version(o))
                .filter_map(|o| o.natural_key.as_deref().map(|nk| (o, nk)))
                .collect();
            if !effects.is_empty() {
                parts.push(Box::pin(async move {
                    let stmt = tx
                        .prepare_cached(INSERT_NATURAL_KEYS)
                        .await
                        .map_err(query)?;
                    let destination: Vec<&str> = effects
                        .iter()
                        .map(|(o, _)| o.destination.as_str())
                        .collect();
                    let natural_key: Vec<&str> = effects.iter().map(|(_, nk)| *nk).collect();
                    let route: Vec<&str> = effects.iter().map(|(o, _)| o.route.as_str()).collect();
                    let envelope_id: Vec<&str> = effects
                        .iter()
                        .map(|(o, _)| o.envelope_id.as_str())
                        .collect();
                    let at_ms: Vec<i64> = effects.iter().map(|(o, _)| o.at_ms).collect();
                    tx.execute(
                        &stmt,
                        &[&destination, &natural_key, &route, &envelope_id, &at_ms],
                    )
                    .await
                    .map_err(query)?;
                    Ok(())
                }));
            }

            let mut highest: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
            for o in delivered() {
                if let Some(v) = o.version {
                    let entry = highest
                        .entry((o.destination.as_str(), o.key.as_str()))
                        .or_insert((v, o.at_ms));
                    if v > entry.0 {
                        *entry = (v, o.at_ms);
                    }
                }
            }
            if !highest.is_empty() {
                parts.push(Box::pin(async move {
                    let stmt = tx.prepare_cached(RAISE_VERSIONS).await.map_err(query)?;
                    let destination: Vec<&str> = highest.keys().map(|(d, _)| *d).collect();
                    let key: Vec<&str> = highest.keys().map(|(_, k)| *k).collect();
                    let version: Vec<i64> = highest.values().map(|(v, _)| *v).collect();
                    let at_ms: Vec<i64> = highest.values().map(|(_, at)| *at).collect();
                    tx.execute(&stmt, &[&destination, &key, &version, &at_ms])
                        .await
                        .map_err(query)?;
                    Ok(())
                }));
            }
        }
        if !batch.attempts.is_empty() {
            parts.push(Box::pin(async move {
                let at = &batch.attempts;
                let text = |f: fn(&AttemptRecord) -> &str| at.iter().map(f).collect::<Vec<&str>>();
                let attempt: Vec<i64> = at.iter().map(|a| i64::from(a.attempt)).collect();
                let status: Vec<Option<i32>> = at.iter().map(|a| a.status.map(i32::from)).collect();
                let latency: Vec<i64> = at.iter().map(|a| i64::from(a.latency_ms)).collect();
                let at_ms: Vec<i64> = at.iter().map(|a| a.at_ms).collect();
                let stmt = tx.prepare_cached(INSERT_ATTEMPTS).await.map_err(query)?;
                tx.execute(
                    &stmt,
                    &[
                        &text(|a| &a.route),
                        &text(|a| &a.envelope_id),
                        &text(|a| &a.key),
                        &attempt,
                        &text(|a| &a.result),
                        &status,
                        &text(|a| &a.reason),
                        &latency,
                        &at_ms,
                    ],
                )
                .await
                .map_err(query)?;
                Ok(())
            }));
        }
        if !batch.dead_letters.is_empty() {
            parts.push(Box::pin(async move {
                let dead = tx.prepare_cached(INSERT_DEAD_LETTER).await.map_err(query)?;
                for d in &batch.dead_letters {
                    let status = d.last_status.map(i32::from);
                    let inserted = tx
                        .execute(
                            &dead,
                            &[
                                &d.id,
                                &d.route,
                                &d.queue,
                                &d.envelope_id,
                                &d.key,
                                &d.kind,
                                &d.envelope,
                                &d.reason,
                                &i64::from(d.attempts),
                                &status,
                                &d.last_answer,
                                &d.first_attempt_ms,
                                &d.dead_at_ms,
                            ],
                        )
                        .await
                        .map_err(query)?;
                    if inserted == 0 {
                        // The id exists: the same letter again is a retried batch, anything
                        // else a conflict that must not pass silently.
                        let stmt = tx
                            .prepare_cached(&format!(
                                "SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE id = $1"
                            ))
                            .await
                            .map_err(query)?;
                        let row = tx.query_one(&stmt, &[&d.id]).await.map_err(query)?;
                        if dead_letter_row(&row)?.letter != *d {
                            return Err(crate::sql::duplicate_dead_letter(&d.id));
                        }
                    }
                }
                Ok(())
            }));
        }
        if !batch.accepted.is_empty() {
            let mut highest: BTreeMap<(&str, &str), i64> = BTreeMap::new();
            for a in &batch.accepted {
                let v = highest
                    .entry((a.route.as_str(), a.key.as_str()))
                    .or_insert(a.version);
                *v = (*v).max(a.version);
            }
            parts.push(Box::pin(async move {
                let stmt = tx.prepare_cached(RAISE_ACCEPTED).await.map_err(query)?;
                let route: Vec<&str> = highest.keys().map(|(r, _)| *r).collect();
                let key: Vec<&str> = highest.keys().map(|(_, k)| *k).collect();
                let version: Vec<i64> = highest.values().copied().collect();
                tx.execute(&stmt, &[&route, &key, &version, &crate::clock::now_ms()])
                    .await
                    .map_err(query)?;
                Ok(())
            }));
        }
        if !batch.evidence.is_empty() {
            parts.push(Box::pin(crate::evidence_sql::pg_append(
                tx,
                &batch.evidence,
            )));
        }
        if !batch.releases.is_empty() {
            parts.push(Box::pin(crate::claims::pg_release(tx, &batch.releases)));
        }
        // The first error in issue order is the cause (the later statements fail only because
        // the transaction was aborted); any error drops `tx` uncommitted: all is rolled back.
        for r in futures::future::join_all(parts).await {
            r?;
        }
        txn.commit().await.map_err(query)
    }

    async fn outcome(&self, route: &str, envelope_id: &str) -> Result<Option<OutcomeRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE route = $1 AND envelope_id = $2"
            ))
            .await
            .map_err(query)?;
        client
            .query_opt(&stmt, &[&route, &envelope_id])
            .await
            .map_err(query)?
            .as_ref()
            .map(ledger_row)
            .transpose()
    }

    async fn natural_key_done(&self, destination: &str, natural_key: &str) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(NATURAL_KEY_DONE)
            .await
            .map_err(query)?;
        let (key, version) = crate::natural_keys::version_of(natural_key).unzip();
        let row = client
            .query_one(&stmt, &[&destination, &natural_key, &key, &version])
            .await
            .map_err(query)?;
        col(&row, 0)
    }

    async fn delivered_version(&self, destination: &str, key: &str) -> Result<Option<i64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT version FROM delivered_versions WHERE destination = $1 AND key = $2",
            )
            .await
            .map_err(query)?;
        client
            .query_opt(&stmt, &[&destination, &key])
            .await
            .map_err(query)?
            .map(|row| col(&row, 0))
            .transpose()
    }

    async fn versions(&self, route: &str, destination: &str, key: &str) -> Result<Versions> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(VERSIONS).await.map_err(query)?;
        let row = client
            .query_one(&stmt, &[&destination, &route, &key])
            .await
            .map_err(query)?;
        Ok(Versions {
            delivered: col(&row, 0)?,
            accepted: col(&row, 1)?,
        })
    }

    async fn versions_many(&self, asks: &[crate::records::VersionsAsk]) -> Result<Vec<Versions>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client.prepare_cached(VERSIONS_MANY).await.map_err(query)?;
        let pick =
            |f: fn(&crate::records::VersionsAsk) -> &str| asks.iter().map(f).collect::<Vec<&str>>();
        let rows = client
            .query(
                &stmt,
                &[
                    &pick(|a| &a.route),
                    &pick(|a| &a.destination),
                    &pick(|a| &a.key),
                ],
            )
            .await
            .map_err(query)?;
        if rows.len() != asks.len() {
            return Err(StoreError::Malformed(format!(
                "versions of {asked} keys answered with {got} rows",
                asked = asks.len(),
                got = rows.len()
            )));
        }
        rows.iter()
            .map(|row| {
                Ok(Versions {
                    delivered: col(row, 0)?,
                    accepted: col(row, 1)?,
                })
            })
            .collect()
    }

    async fn claim(&self, req: &crate::claims::ClaimRequest) -> Result<crate::claims::Claim> {
        let mut client = self.client().await?;
        crate::claims::pg_claim(&mut client, req).await
    }

    async fn claim_many(
        &self,
        reqs: &[crate::claims::ClaimRequest],
    ) -> Result<Vec<crate::claims::Claim>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        crate::claims::pg_claim_many(&mut client, reqs).await
    }

    async fn extend_claim(
        &self,
        destination: &str,
        key: &str,
        holder: &str,
        lease_ms: i64,
        sending: bool,
    ) -> Result<bool> {
        let client = self.client().await?;
        crate::claims::pg_extend(&client, destination, key, holder, lease_ms, sending).await
    }

    async fn in_doubt_by_key(&self, key: &str) -> Result<Vec<crate::claims::InDoubtRow>> {
        let client = self.client().await?;
        crate::claims::pg_in_doubt_by_key(&client, key).await
    }

    async fn outcomes_by_key(&self, key: &str) -> Result<Vec<OutcomeRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE key = $1 ORDER BY at_ms, seq"
            ))
            .await
            .map_err(query)?;
        let rows = client.query(&stmt, &[&key]).await.map_err(query)?;
        rows.iter().map(ledger_row).collect()
    }

    async fn attempts_by_key(&self, key: &str) -> Result<Vec<AttemptRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE key = $1 ORDER BY at_ms, seq"
            ))
            .await
            .map_err(query)?;
        let rows = client.query(&stmt, &[&key]).await.map_err(query)?;
        rows.iter().map(attempt_row).collect()
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let mut conds = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(route) = &filter.route {
            args.push(route.clone());
            conds.push(format!("route = ${}", args.len()));
        }
        if let Some(key) = &filter.key {
            args.push(key.clone());
            conds.push(format!("key = ${}", args.len()));
        }
        if let Some(state) = filter.state {
            args.push(state.as_str().to_owned());
            conds.push(format!("state = ${}", args.len()));
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
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(query)?;
        let rows = client.query(&stmt, &params).await.map_err(query)?;
        rows.iter().map(dead_letter_row).collect()
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE id = $1"
            ))
            .await
            .map_err(query)?;
        client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(query)?
            .as_ref()
            .map(dead_letter_row)
            .transpose()
    }

    async fn mark_replayed(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled> {
        self.settle(id, DeadLetterState::Replayed, who, at_ms).await
    }

    async fn mark_dropped(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled> {
        self.settle(id, DeadLetterState::Dropped, who, at_ms).await
    }

    async fn open_dead_letters(&self) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE state = 'open'")
            .await
            .map_err(query)?;
        let row = client.query_one(&stmt, &[]).await.map_err(query)?;
        let n: i64 = col(&row, 0)?;
        u64::try_from(n).map_err(|_| StoreError::Malformed(format!("negative count {n}")))
    }

    async fn ready(&self) -> bool {
        let probe = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(query)
        };
        matches!(tokio::time::timeout(READY_TIMEOUT, probe).await, Ok(Ok(_)))
    }

    async fn remember_signature(
        &self,
        scope: &str,
        id: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                crate::replay::REMEMBER_PG,
                &[&scope, &id, &expires_ms, &now_ms],
            )
            .await
            .map_err(query)?;
        Ok(n == 1)
    }

    async fn release_signature(&self, scope: &str, id: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM seen_signatures WHERE scope = $1 AND id = $2",
                &[&scope, &id],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn forget_signatures(&self, now_ms: i64) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM seen_signatures WHERE expires_ms < $1",
                &[&now_ms],
            )
            .await
            .map_err(query)
    }

    async fn evidence_heads(&self) -> Result<Vec<crate::evidence_records::ChainHead>> {
        crate::evidence_sql::pg_heads(&*self.client().await?).await
    }

    async fn evidence_chain(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<crate::evidence_records::StoredEvidence>> {
        crate::evidence_sql::pg_chain(&*self.client().await?, chain, after_seq, limit).await
    }

    async fn evidence_by_dossier(
        &self,
        dossier: &str,
    ) -> Result<Vec<crate::evidence_records::StoredEvidence>> {
        crate::evidence_sql::pg_by_dossier(&*self.client().await?, dossier).await
    }

    async fn add_timestamp(&self, ts: crate::evidence_records::TimeStampRow) -> Result<()> {
        crate::evidence_sql::pg_add_timestamp(&*self.client().await?, &ts).await
    }

    async fn timestamps(&self, chain: &str) -> Result<Vec<crate::evidence_records::TimeStampRow>> {
        crate::evidence_sql::pg_timestamps(&*self.client().await?, chain).await
    }

    async fn evidence_prune(&self, chain: &str, through_seq: i64) -> Result<u64> {
        let mut client = self.client().await?;
        crate::evidence_sql::pg_prune(&mut client, chain, through_seq).await
    }

    /// A session-level `pg_try_advisory_lock` on a connection of its own, held while leading.
    /// See "Leadership" in the module doc.
    async fn try_lead(
        &self,
        job: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<crate::store::LeadGuard>> {
        lead::try_lead(
            &self.config,
            &self.connector,
            self.schema.as_deref(),
            job,
            holder,
            lease,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_param_is_split_from_the_url() {
        assert_eq!(
            split_schema_param("postgres://u@h/db?schema=s1"),
            ("postgres://u@h/db".to_owned(), Some("s1".to_owned()))
        );
        assert_eq!(
            split_schema_param("postgres://u@h/db?sslmode=disable&schema=s1&application_name=x"),
            (
                "postgres://u@h/db?sslmode=disable&application_name=x".to_owned(),
                Some("s1".to_owned())
            )
        );
        assert_eq!(
            split_schema_param("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        assert!(check_schema_name("gw_test_1").is_ok());
        assert!(check_schema_name("_x").is_ok());
        for bad in ["", "1abc", "Upper", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
