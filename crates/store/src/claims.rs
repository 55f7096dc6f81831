//! Delivery claims and exchanges in doubt (migration 6), for both stores.
//!
//! # Invariants ([`crate::suite`] checks them on SQLite and PostgreSQL)
//!
//! 1. **One holder per (destination, key).** [`Store::claim`](crate::Store::claim) is a
//!    conditional write under a row lock (PostgreSQL `INSERT … ON CONFLICT DO NOTHING` then
//!    `SELECT … FOR UPDATE`; SQLite one `BEGIN IMMEDIATE` transaction): it is granted only when
//!    no row exists, the row is the caller's own, or the row's lease has expired. Of any number
//!    of concurrent claims on one key, across instances, exactly one is [`Claim::Granted`]; the
//!    others see [`Claim::Busy`] until the winner releases or its lease runs out.
//! 2. **The version check is part of the claim.** The delivered version and the natural key are
//!    read *after* the claim row is locked, so a holder that recorded a newer version and
//!    released (same transaction, see below) is always seen: a claim for a version not above the
//!    delivered one is [`Claim::Older`], for an effect whose natural key is delivered
//!    [`Claim::Done`]. Nothing older can then be sent after something newer, even when a
//!    redelivery reaches another instance during a take-over.
//! 3. **Sent but not recorded = in doubt.** [`Store::extend_claim`](crate::Store::extend_claim)
//!    with `sending: true` stamps `sent_at_ms` just before the send. A claim taken over after its
//!    lease expired with `sent_at_ms` set (the holder died or hung mid-send) becomes an
//!    `in_doubt` row for that exchange, in the same transaction as the take-over (born settled,
//!    `recorded_before`, when the ledger already has an outcome for it: a redelivery handled it
//!    without a claim, e.g. superseded by coalescing; that look-up scans the ledger by envelope
//!    id, acceptable on the rare take-over path). A later claim
//!    for that very exchange (same ledger id or natural key) is granted with
//!    [`Claim::Granted::in_doubt`] set: the caller must resolve it (ask the party) before
//!    sending again. A claim for an *older* version than one in doubt is [`Claim::Older`]: the
//!    newer one may have arrived.
//! 4. **Release with the outcome.** [`Batch::releases`](crate::Batch::releases) delete the
//!    caller's claim (only if it still holds it) and, when they carry a resolution, settle the
//!    exchange's in-doubt rows, in the same transaction as the outcome: there is no moment where the outcome is recorded and the
//!    claim still blocks, or the claim is gone and the outcome is not recorded.
//! 5. Lease clocks: PostgreSQL uses the database server's clock (`clock_timestamp()`), so
//!    instances with skewed clocks agree; SQLite (one machine) the local clock.
//!
//! SQLite claims need no fsync of their own: they commit with `synchronous=NORMAL` (WAL: a
//! process crash loses nothing committed) and the next ledger write's fsync covers them; a
//! power cut may lose the last claims (see [`sqlite_claim`]). Heartbeats likewise.
//!
//! The statements are `IF NOT EXISTS` (like migration 5), so a file taken back to an older
//! version for a migration test re-runs them harmlessly.
//!
//! ```text
//! claims    PK (destination, key): holder, ledger_id, natural_key?, version?, expires_at_ms,
//!           sent_at_ms? (set when the send starts)
//! in_doubt  PK (destination, ledger_id): key, natural_key?, version?, holder (the one that
//!           died), sent_at_ms, found_at_ms, resolution? (already_there | not_there |
//!           unverified | superseded …), resolved_at_ms?; index (key, found_at_ms)
//! ```

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::sql::Fail;

/// A request to hold (destination, key) while one exchange is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub destination: String,
    /// The ordering key (dossier code).
    pub key: String,
    /// The ledger id of the exchange (envelope id, or its replay id).
    pub ledger_id: String,
    /// The party's natural key of the effect (`CODE@7`, `CODE#step-…`), if it has one.
    pub natural_key: Option<String>,
    /// The dossier version carried, if versioned.
    pub version: Option<i64>,
    /// Who holds it: unique per attempt (instance id + a fresh id), so a stale holder can never
    /// release or extend its successor's claim.
    pub holder: String,
    /// How long the claim lasts without being extended.
    pub lease_ms: i64,
    /// Stamp `sent_at_ms` with the grant: the caller sends right after the claim (no step in
    /// between), so one write does both. `false` when the caller has work to do first (resolve
    /// an exchange in doubt) and stamps with [`Store::extend_claim`](crate::Store::extend_claim).
    pub sending: bool,
}

/// An exchange whose send started and whose outcome was never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    pub ledger_id: String,
    pub natural_key: Option<String>,
    pub version: Option<i64>,
    /// The holder that started the send.
    pub holder: String,
    pub sent_at_ms: i64,
}

/// What [`Store::claim`](crate::Store::claim) decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    /// The caller holds the key until it releases, or until `lease_ms` passes without an
    /// extension. `in_doubt`: this very exchange was sent before by a holder that never
    /// recorded it; resolve before sending.
    Granted { in_doubt: Option<InDoubt> },
    /// Another holder's lease is live: try later (not a failure).
    Busy { holder: String, expires_at_ms: i64 },
    /// The destination has this version or a newer one (`newest`), or a newer one is in doubt
    /// (`in_doubt: true`): do not send.
    Older { newest: i64, in_doubt: bool },
    /// The effect's natural key is already delivered: do not send.
    Done,
}

/// Release a claim with the outcome of its exchange ([`crate::Batch::releases`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRelease {
    pub destination: String,
    pub key: String,
    pub holder: String,
    /// The exchange; its open in-doubt rows are settled with `resolution`.
    pub ledger_id: String,
    pub natural_key: Option<String>,
    /// How the exchange's open in-doubt notes are settled (`already_there`, `not_there`,
    /// `unverified`, `superseded`, `already_delivered` …). `None` leaves them open: a retry (the
    /// outcome is still unknown) or a look-up that failed must not close a doubt.
    pub resolution: Option<String>,
}

/// An in-doubt row, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubtRow {
    pub destination: String,
    pub key: String,
    pub ledger_id: String,
    pub natural_key: Option<String>,
    pub version: Option<i64>,
    pub holder: String,
    pub sent_at_ms: i64,
    pub found_at_ms: i64,
    /// `None` while nobody resolved it.
    pub resolution: Option<String>,
    pub resolved_at_ms: Option<i64>,
}

pub(crate) const SQLITE_V6: &str = "
CREATE TABLE IF NOT EXISTS claims (
    destination   TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    holder        TEXT    NOT NULL,
    ledger_id     TEXT    NOT NULL,
    natural_key   TEXT,
    version       INTEGER,
    expires_at_ms INTEGER NOT NULL,
    sent_at_ms    INTEGER,
    PRIMARY KEY (destination, key)
) STRICT;
CREATE TABLE IF NOT EXISTS in_doubt (
    destination    TEXT    NOT NULL,
    ledger_id      TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    natural_key    TEXT,
    version        INTEGER,
    holder         TEXT    NOT NULL,
    sent_at_ms     INTEGER NOT NULL,
    found_at_ms    INTEGER NOT NULL,
    resolution     TEXT,
    resolved_at_ms INTEGER,
    PRIMARY KEY (destination, ledger_id)
) STRICT;
CREATE INDEX IF NOT EXISTS in_doubt_by_key ON in_doubt (key, found_at_ms);
";

pub(crate) const PG_V6: &str = "
CREATE TABLE IF NOT EXISTS claims (
    destination   TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    holder        TEXT    NOT NULL,
    ledger_id     TEXT    NOT NULL,
    natural_key   TEXT,
    version       BIGINT,
    expires_at_ms BIGINT  NOT NULL,
    sent_at_ms    BIGINT,
    PRIMARY KEY (destination, key)
);
CREATE TABLE IF NOT EXISTS in_doubt (
    destination    TEXT    NOT NULL,
    ledger_id      TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    natural_key    TEXT,
    version        BIGINT,
    holder         TEXT    NOT NULL,
    sent_at_ms     BIGINT  NOT NULL,
    found_at_ms    BIGINT  NOT NULL,
    resolution     TEXT,
    resolved_at_ms BIGINT,
    PRIMARY KEY (destination, ledger_id)
);
CREATE INDEX IF NOT EXISTS in_doubt_by_key ON in_doubt (key, found_at_ms);
";

/// The claim row as found.
#[derive(Debug, Clone)]
struct Held {
    holder: String,
    ledger_id: String,
    natural_key: Option<String>,
    version: Option<i64>,
    expires_at_ms: i64,
    sent_at_ms: Option<i64>,
}

/// What the version reads say, after the row is locked.
struct Known {
    delivered: Option<i64>,
    done: bool,
    /// The highest version of this key in doubt (open) at the destination.
    doubt_version: Option<i64>,
    /// This exchange's own open in-doubt row.
    own_doubt: Option<InDoubt>,
}

/// `sent_at_ms` written with the grant.
fn stamp(req: &ClaimRequest, now: i64) -> Option<i64> {
    req.sending.then_some(now)
}

/// The decision, from what was found (shared by both stores so they cannot drift).
fn decide(req: &ClaimRequest, known: &Known) -> Option<Claim> {
    if known.done {
        return Some(Claim::Done);
    }
    if let Some(v) = req.version {
        if let Some(d) = known.delivered.filter(|d| *d >= v) {
            return Some(Claim::Older {
                newest: d,
                in_doubt: false,
            });
        }
        let own = known.own_doubt.is_some();
        if let Some(n) = known.doubt_version.filter(|n| *n > v || (*n == v && !own)) {
            return Some(Claim::Older {
                newest: n,
                in_doubt: true,
            });
        }
    }
    None
}

const SQLITE_KNOWN: &str = "SELECT
    (SELECT version FROM delivered_versions WHERE destination = ?1 AND key = ?2),
    EXISTS (SELECT 1 FROM delivered_natural_keys WHERE destination = ?1 AND natural_key = ?3),
    (SELECT MAX(version) FROM in_doubt
       WHERE destination = ?1 AND key = ?2 AND resolution IS NULL)";
const SQLITE_OWN_DOUBT: &str = "SELECT ledger_id, natural_key, version, holder, sent_at_ms
    FROM in_doubt WHERE destination = ?1 AND resolution IS NULL
      AND (ledger_id = ?2 OR (?3 IS NOT NULL AND natural_key = ?3))
    ORDER BY sent_at_ms DESC LIMIT 1";

/// SQLite: the claim commits with `synchronous=NORMAL` (no fsync of its own; in WAL mode a
/// process crash, what claims are for, loses nothing committed), then `FULL` is restored: the
/// next ledger write's fsync makes the claim durable with it. A power cut can lose the last
/// claims, and with them the in-doubt note of an exchange in flight at that moment.
pub(crate) fn sqlite_claim(
    conn: &mut rusqlite::Connection,
    req: &ClaimRequest,
    now: i64,
) -> std::result::Result<Claim, Fail> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = sqlite_claim_tx(conn, req, now);
    conn.pragma_update(None, "synchronous", "FULL")?;
    result
}

fn sqlite_claim_tx(
    conn: &mut rusqlite::Connection,
    req: &ClaimRequest,
    now: i64,
) -> std::result::Result<Claim, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claim = sqlite_claim_in(&tx, req, now)?;
    tx.commit()?;
    Ok(claim)
}

/// [`sqlite_claim`] of many requests in one `BEGIN IMMEDIATE` transaction, one after another
/// in the order given (a second request for a key sees the first's row, as it would alone).
pub(crate) fn sqlite_claim_many(
    conn: &mut rusqlite::Connection,
    reqs: &[ClaimRequest],
    now: i64,
) -> std::result::Result<Vec<Claim>, Fail> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claims = reqs
            .iter()
            .map(|r| sqlite_claim_in(&tx, r, now))
            .collect::<std::result::Result<Vec<_>, Fail>>()?;
        tx.commit()?;
        Ok(claims)
    })();
    conn.pragma_update(None, "synchronous", "FULL")?;
    result
}

/// One claim inside the caller's transaction (committed by the caller).
fn sqlite_claim_in(
    tx: &Transaction<'_>,
    req: &ClaimRequest,
    now: i64,
) -> std::result::Result<Claim, Fail> {
    let held: Option<Held> = tx
        .prepare_cached(
            "SELECT holder, ledger_id, natural_key, version, expires_at_ms, sent_at_ms
             FROM claims WHERE destination = ?1 AND key = ?2",
        )?
        .query_row(params![req.destination, req.key], |r| {
            Ok(Held {
                holder: r.get(0)?,
                ledger_id: r.get(1)?,
                natural_key: r.get(2)?,
                version: r.get(3)?,
                expires_at_ms: r.get(4)?,
                sent_at_ms: r.get(5)?,
            })
        })
        .optional()?;
    if let Some(h) = &held {
        if h.holder != req.holder && h.expires_at_ms > now {
            return Ok(Claim::Busy {
                holder: h.holder.clone(),
                expires_at_ms: h.expires_at_ms,
            });
        }
        if h.holder != req.holder {
            if let Some(sent) = h.sent_at_ms {
                sqlite_note_doubt(tx, req, h, sent, now)?;
            }
        }
    }
    let known = sqlite_known(tx, req)?;
    if let Some(refused) = decide(req, &known) {
        return Ok(refused);
    }
    tx.prepare_cached(
        "INSERT INTO claims (destination, key, holder, ledger_id, natural_key, version,
                             expires_at_ms, sent_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (destination, key) DO UPDATE SET holder = excluded.holder,
             ledger_id = excluded.ledger_id, natural_key = excluded.natural_key,
             version = excluded.version, expires_at_ms = excluded.expires_at_ms,
             sent_at_ms = excluded.sent_at_ms",
    )?
    .execute(params![
        req.destination,
        req.key,
        req.holder,
        req.ledger_id,
        req.natural_key,
        req.version,
        now + req.lease_ms,
        stamp(req, now)
    ])?;
    Ok(Claim::Granted {
        in_doubt: known.own_doubt,
    })
}

fn sqlite_note_doubt(
    tx: &Transaction<'_>,
    req: &ClaimRequest,
    h: &Held,
    sent: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO in_doubt (destination, ledger_id, key, natural_key, version, holder,
                               sent_at_ms, found_at_ms, resolution, resolved_at_ms)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, r, CASE WHEN r IS NULL THEN NULL ELSE ?8 END
         FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM ledger
                                        WHERE destination = ?1 AND envelope_id = ?2)
                      THEN 'recorded_before' END AS r) AS before
         WHERE true
         ON CONFLICT (destination, ledger_id) DO NOTHING",
    )?
    .execute(params![
        req.destination,
        h.ledger_id,
        req.key,
        h.natural_key,
        h.version,
        h.holder,
        sent,
        now
    ])
}

fn sqlite_known(tx: &Transaction<'_>, req: &ClaimRequest) -> rusqlite::Result<Known> {
    let (delivered, done, doubt_version) = tx.prepare_cached(SQLITE_KNOWN)?.query_row(
        params![req.destination, req.key, req.natural_key],
        |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        },
    )?;
    let own_doubt = tx
        .prepare_cached(SQLITE_OWN_DOUBT)?
        .query_row(
            params![req.destination, req.ledger_id, req.natural_key],
            |r| {
                Ok(InDoubt {
                    ledger_id: r.get(0)?,
                    natural_key: r.get(1)?,
                    version: r.get(2)?,
                    holder: r.get(3)?,
                    sent_at_ms: r.get(4)?,
                })
            },
        )
        .optional()?;
    Ok(Known {
        delivered,
        done,
        doubt_version,
        own_doubt,
    })
}

pub(crate) fn sqlite_extend(
    conn: &mut rusqlite::Connection,
    destination: &str,
    key: &str,
    holder: &str,
    lease_ms: i64,
    sending: bool,
    now: i64,
) -> std::result::Result<bool, Fail> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let n = conn
        .prepare_cached(
            "UPDATE claims SET expires_at_ms = ?4,
                 sent_at_ms = CASE WHEN ?5 THEN COALESCE(sent_at_ms, ?6) ELSE sent_at_ms END
             WHERE destination = ?1 AND key = ?2 AND holder = ?3 AND expires_at_ms > ?6",
        )?
        .execute(params![
            destination,
            key,
            holder,
            now + lease_ms,
            sending,
            now
        ]);
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(n? == 1)
}

/// Inside the record transaction.
pub(crate) fn sqlite_release(
    tx: &Transaction<'_>,
    releases: &[ClaimRelease],
    now: i64,
) -> rusqlite::Result<()> {
    let mut delete = tx
        .prepare_cached("DELETE FROM claims WHERE destination = ?1 AND key = ?2 AND holder = ?3")?;
    let mut settle = tx.prepare_cached(
        "UPDATE in_doubt SET resolution = ?4, resolved_at_ms = ?5
         WHERE destination = ?1 AND resolution IS NULL
           AND (ledger_id = ?2 OR (?3 IS NOT NULL AND natural_key = ?3))",
    )?;
    for r in releases {
        delete.execute(params![r.destination, r.key, r.holder])?;
        if let Some(how) = &r.resolution {
            settle.execute(params![r.destination, r.ledger_id, r.natural_key, how, now])?;
        }
    }
    Ok(())
}

pub(crate) fn sqlite_in_doubt_by_key(
    conn: &mut rusqlite::Connection,
    key: &str,
) -> std::result::Result<Vec<InDoubtRow>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {IN_DOUBT_COLS} FROM in_doubt WHERE key = ?1 ORDER BY found_at_ms, ledger_id"
    ))?;
    let rows = stmt
        .query_map([key], |r| {
            Ok(InDoubtRow {
                destination: r.get(0)?,
                key: r.get(1)?,
                ledger_id: r.get(2)?,
                natural_key: r.get(3)?,
                version: r.get(4)?,
                holder: r.get(5)?,
                sent_at_ms: r.get(6)?,
                found_at_ms: r.get(7)?,
                resolution: r.get(8)?,
                resolved_at_ms: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

const IN_DOUBT_COLS: &str = "destination, key, ledger_id, natural_key, version, holder, \
                             sent_at_ms, found_at_ms, resolution, resolved_at_ms";

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const PG_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    crate::sql::query(e)
}

/// Delivered version, natural key delivered, highest open in-doubt version of the key, and this
/// exchange's own open in-doubt row (if any), in one statement.
const PG_KNOWN: &str = "SELECT
   (SELECT version FROM delivered_versions WHERE destination = $1 AND key = $2),
   COALESCE((SELECT true FROM delivered_natural_keys
              WHERE destination = $1 AND natural_key = $3 LIMIT 1), false),
   (SELECT MAX(version) FROM in_doubt
      WHERE destination = $1 AND key = $2 AND resolution IS NULL),
   d.ledger_id, d.natural_key, d.version, d.holder, d.sent_at_ms
 FROM (SELECT 1) AS one LEFT JOIN LATERAL (
   SELECT ledger_id, natural_key, version, holder, sent_at_ms FROM in_doubt
   WHERE destination = $1 AND resolution IS NULL
     AND (ledger_id = $4 OR ($3::text IS NOT NULL AND natural_key = $3))
   ORDER BY sent_at_ms DESC LIMIT 1) d ON true";

fn pg_known(k: &tokio_postgres::Row) -> Known {
    pg_known_at(k, 0)
}

/// [`pg_known`] of a row whose columns of [`PG_KNOWN`] start at `at`.
fn pg_known_at(k: &tokio_postgres::Row, at: usize) -> Known {
    let ledger_id: Option<String> = k.get(at + 3);
    Known {
        delivered: k.get(at),
        done: k.get(at + 1),
        doubt_version: k.get(at + 2),
        own_doubt: ledger_id.map(|ledger_id| InDoubt {
            ledger_id,
            natural_key: k.get(at + 4),
            version: k.get(at + 5),
            holder: k.get(at + 6),
            sent_at_ms: k.get(at + 7),
        }),
    }
}

/// [`PG_KNOWN`] of many requests: the ordinal (1-based), then the same columns.
///
/// Every lookup is a correlated scalar subquery, never `EXISTS`: PostgreSQL may plan an
/// `EXISTS` over a set of requests as a hashed subplan, a scan of the whole table on every
/// call, which it did while the tables were young (measured: 5 ms a call at 1,300 natural keys,
/// 58 % of PostgreSQL's time in the bench); a scalar subquery is always an index probe per
/// request.
pub const PG_KNOWN_MANY: &str = "SELECT r.i,
   (SELECT version FROM delivered_versions WHERE destination = r.d AND key = r.k),
   COALESCE((SELECT true FROM delivered_natural_keys
              WHERE destination = r.d AND natural_key = r.nk LIMIT 1), false),
   (SELECT MAX(version) FROM in_doubt
      WHERE destination = r.d AND key = r.k AND resolution IS NULL),
   x.ledger_id, x.natural_key, x.version, x.holder, x.sent_at_ms
 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS r(d, k, nk, lid, i)
 LEFT JOIN LATERAL (
   SELECT ledger_id, natural_key, version, holder, sent_at_ms FROM in_doubt
   WHERE destination = r.d AND resolution IS NULL
     AND (ledger_id = r.lid OR (r.nk IS NOT NULL AND natural_key = r.nk))
   ORDER BY sent_at_ms DESC LIMIT 1) x ON true
 ORDER BY r.i";

/// Drop rows a claim batch inserted for requests it refused.
const PG_DROP_MANY: &str = "DELETE FROM claims c
 USING UNNEST($1::text[], $2::text[], $3::text[]) AS r(d, k, h)
 WHERE c.destination = r.d AND c.key = r.k AND c.holder = r.h";

/// The common path is three round trips: `BEGIN`, the insert pipelined with the reads, `COMMIT`.
/// A fresh insert holds the row's lock until commit, so reads issued after it on this
/// transaction see every holder that released before (invariant 2). When the row exists, it is
/// locked (`FOR UPDATE`) and the reads are made again after the lock.
pub(crate) async fn pg_claim(
    client: &mut deadpool_postgres::Object,
    req: &ClaimRequest,
) -> Result<Claim> {
    let tx = client.transaction().await.map_err(pg_err)?;
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO claims (destination, key, holder, ledger_id, natural_key, version,
                                 expires_at_ms, sent_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, {PG_NOW} + $7,
                     CASE WHEN $8 THEN {PG_NOW} END)
             ON CONFLICT (destination, key) DO NOTHING"
        ))
        .await
        .map_err(pg_err)?;
    let known_stmt = tx.prepare_cached(PG_KNOWN).await.map_err(pg_err)?;
    let known_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&req.destination, &req.key, &req.natural_key, &req.ledger_id];
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &req.destination,
        &req.key,
        &req.holder,
        &req.ledger_id,
        &req.natural_key,
        &req.version,
        &req.lease_ms,
        &req.sending,
    ];
    let (inserted, k) = futures::join!(
        tx.execute(&insert, &insert_params),
        tx.query_one(&known_stmt, &known_params)
    );
    let inserted = inserted.map_err(pg_err)?;
    let mut known = pg_known(&k.map_err(pg_err)?);
    let mut now = None;
    if inserted == 0 {
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT holder, ledger_id, natural_key, version, expires_at_ms, sent_at_ms, {PG_NOW}
                 FROM claims WHERE destination = $1 AND key = $2 FOR UPDATE"
            ))
            .await
            .map_err(pg_err)?;
        let Some(row) = tx
            .query_opt(&stmt, &[&req.destination, &req.key])
            .await
            .map_err(pg_err)?
        else {
            // Released between the insert and the lock: ask again shortly.
            return Ok(Claim::Busy {
                holder: String::new(),
                expires_at_ms: 0,
            });
        };
        let t: i64 = row.get(6);
        now = Some(t);
        let h = Held {
            holder: row.get(0),
            ledger_id: row.get(1),
            natural_key: row.get(2),
            version: row.get(3),
            expires_at_ms: row.get(4),
            sent_at_ms: row.get(5),
        };
        if h.holder != req.holder && h.expires_at_ms > t {
            return Ok(Claim::Busy {
                holder: h.holder,
                expires_at_ms: h.expires_at_ms,
            });
        }
        if let (Some(sent), true) = (h.sent_at_ms, h.holder != req.holder) {
            let note = tx
                .prepare_cached(
                    "INSERT INTO in_doubt (destination, ledger_id, key, natural_key, version,
                                           holder, sent_at_ms, found_at_ms, resolution,
                                           resolved_at_ms)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8::bigint, r,
                            CASE WHEN r IS NULL THEN NULL ELSE $8::bigint END
                     FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM ledger
                                                    WHERE destination = $1 AND envelope_id = $2)
                                  THEN 'recorded_before' END AS r) AS before
                     ON CONFLICT (destination, ledger_id) DO NOTHING",
                )
                .await
                .map_err(pg_err)?;
            tx.execute(
                &note,
                &[
                    &req.destination,
                    &h.ledger_id,
                    &req.key,
                    &h.natural_key,
                    &h.version,
                    &h.holder,
                    &sent,
                    &t,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        // Read again, after the lock (invariant 2).
        let k = tx
            .query_one(&known_stmt, &known_params)
            .await
            .map_err(pg_err)?;
        known = pg_known(&k);
    }
    if let Some(refused) = decide(req, &known) {
        if inserted == 1 {
            // Nothing is held: drop the row this call inserted.
            let drop_own = tx
                .prepare_cached(
                    "DELETE FROM claims WHERE destination = $1 AND key = $2 AND holder = $3",
                )
                .await
                .map_err(pg_err)?;
            tx.execute(&drop_own, &[&req.destination, &req.key, &req.holder])
                .await
                .map_err(pg_err)?;
        }
        // Keeps an in-doubt note written above.
        tx.commit().await.map_err(pg_err)?;
        return Ok(refused);
    }
    if let Some(t) = now {
        let take = tx
            .prepare_cached(
                "UPDATE claims SET holder = $3, ledger_id = $4, natural_key = $5, version = $6,
                     expires_at_ms = $7, sent_at_ms = $8
                 WHERE destination = $1 AND key = $2",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(
            &take,
            &[
                &req.destination,
                &req.key,
                &req.holder,
                &req.ledger_id,
                &req.natural_key,
                &req.version,
                &(t + req.lease_ms),
                &stamp(req, t),
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(Claim::Granted {
        in_doubt: known.own_doubt,
    })
}

/// Many claims in one transaction (the fast path of [`pg_claim`] for a batch): one multi-row
/// `INSERT … ON CONFLICT DO NOTHING` in (destination, key) order, then, as a statement of its
/// own (so its snapshot is taken after the inserts: invariant 2), the known facts of every
/// request in one query; the rows of refused requests are deleted before the commit, so they
/// are never seen. A request whose row exists already (another holder, a take-over, an own row)
/// or whose (destination, key) came earlier in the batch goes through [`pg_claim`] alone, after
/// the commit: the answers are those the requests would have got one after another.
pub(crate) async fn pg_claim_many(
    client: &mut deadpool_postgres::Object,
    reqs: &[ClaimRequest],
) -> Result<Vec<Claim>> {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by(|&a, &b| {
        (&reqs[a].destination, &reqs[a].key, a).cmp(&(&reqs[b].destination, &reqs[b].key, b))
    });
    let mut first = Vec::with_capacity(order.len());
    let mut alone = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let dup = n > 0 && {
            let p = &reqs[order[n - 1]];
            p.destination == reqs[i].destination && p.key == reqs[i].key
        };
        if dup {
            alone.push(i);
        } else {
            first.push(i);
        }
    }
    let mut answers: Vec<Option<Claim>> = vec![None; reqs.len()];
    if !first.is_empty() {
        let tx = client.transaction().await.map_err(pg_err)?;
        let insert_sql = format!(
            "INSERT INTO claims (destination, key, holder, ledger_id, natural_key, version,
                                 expires_at_ms, sent_at_ms)
             SELECT d, k, h, lid, nk, v, {PG_NOW} + lease, CASE WHEN s THEN {PG_NOW} END
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::bigint[], $8::bool[])
                  AS r(d, k, h, lid, nk, v, lease, s)
             ORDER BY d, k
             ON CONFLICT (destination, key) DO NOTHING
             RETURNING destination, key"
        );
        let (insert, known) = futures::try_join!(
            tx.prepare_cached(&insert_sql),
            tx.prepare_cached(PG_KNOWN_MANY)
        )
        .map_err(pg_err)?;
        let pick = |f: fn(&ClaimRequest) -> &str| -> Vec<&str> {
            first.iter().map(|&i| f(&reqs[i])).collect()
        };
        let destination = pick(|r| &r.destination);
        let key = pick(|r| &r.key);
        let holder = pick(|r| &r.holder);
        let ledger_id = pick(|r| &r.ledger_id);
        let natural_key: Vec<Option<&str>> = first
            .iter()
            .map(|&i| reqs[i].natural_key.as_deref())
            .collect();
        let version: Vec<Option<i64>> = first.iter().map(|&i| reqs[i].version).collect();
        let lease: Vec<i64> = first.iter().map(|&i| reqs[i].lease_ms).collect();
        let sending: Vec<bool> = first.iter().map(|&i| reqs[i].sending).collect();
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &destination,
            &key,
            &holder,
            &ledger_id,
            &natural_key,
            &version,
            &lease,
            &sending,
        ];
        let known_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&destination, &key, &natural_key, &ledger_id];
        // Issued together (pipelined, run in this order): the read is a statement of its own,
        // after the inserts.
        let (inserted, known) = futures::join!(
            tx.query(&insert, &insert_params),
            tx.query(&known, &known_params)
        );
        let inserted: std::collections::HashSet<(String, String)> = inserted
            .map_err(pg_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let known = known.map_err(pg_err)?;
        let mut refused_own: Vec<usize> = Vec::new();
        for row in &known {
            let n = usize::try_from(row.get::<_, i64>(0) - 1)
                .map_err(|_| StoreError::Malformed("claim batch: ordinal out of range".into()))?;
            let Some(&i) = first.get(n) else {
                return Err(StoreError::Malformed(
                    "claim batch: ordinal out of range".into(),
                ));
            };
            let req = &reqs[i];
            if !inserted.contains(&(req.destination.clone(), req.key.clone())) {
                alone.push(i);
                continue;
            }
            let k = pg_known_at(row, 1);
            match decide(&reqs[i], &k) {
                Some(refused) => {
                    refused_own.push(i);
                    answers[i] = Some(refused);
                }
                None => {
                    answers[i] = Some(Claim::Granted {
                        in_doubt: k.own_doubt,
                    })
                }
            }
        }
        if !refused_own.is_empty() {
            // Nothing is held for them: drop the rows this batch inserted, in key order.
            let drop_own = tx.prepare_cached(PG_DROP_MANY).await.map_err(pg_err)?;
            let d: Vec<&str> = refused_own
                .iter()
                .map(|&i| reqs[i].destination.as_str())
                .collect();
            let k: Vec<&str> = refused_own.iter().map(|&i| reqs[i].key.as_str()).collect();
            let h: Vec<&str> = refused_own
                .iter()
                .map(|&i| reqs[i].holder.as_str())
                .collect();
            tx.execute(&drop_own, &[&d, &k, &h]).await.map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
    }
    alone.sort_unstable();
    for i in alone {
        answers[i] = Some(pg_claim(client, &reqs[i]).await?);
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| StoreError::Malformed("claim batch: a request unanswered".into())))
        .collect()
}

pub(crate) async fn pg_extend(
    client: &deadpool_postgres::Object,
    destination: &str,
    key: &str,
    holder: &str,
    lease_ms: i64,
    sending: bool,
) -> Result<bool> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE claims SET expires_at_ms = {PG_NOW} + $4,
                 sent_at_ms = CASE WHEN $5 THEN COALESCE(sent_at_ms, {PG_NOW}) ELSE sent_at_ms END
             WHERE destination = $1 AND key = $2 AND holder = $3 AND expires_at_ms > {PG_NOW}"
        ))
        .await
        .map_err(pg_err)?;
    let n = client
        .execute(&stmt, &[&destination, &key, &holder, &lease_ms, &sending])
        .await
        .map_err(pg_err)?;
    Ok(n == 1)
}

/// Inside the record transaction. Sorted by (destination, key) so concurrent batches lock in
/// one order.
/// Release many claims (destinations, keys, holders; sorted by destination and key): see
/// [`pg_release`].
pub const PG_RELEASE_MANY: &str = "WITH locked AS (
     SELECT l.t FROM UNNEST($1::text[], $2::text[], $3::text[]) AS r(d, k, h)
     CROSS JOIN LATERAL (
         SELECT c.ctid AS t FROM claims c
         WHERE c.destination = r.d AND c.key = r.k AND c.holder = r.h
         FOR UPDATE) l)
 DELETE FROM claims WHERE ctid = ANY (ARRAY(SELECT t FROM locked))";

pub(crate) async fn pg_release(
    tx: &deadpool_postgres::Transaction<'_>,
    releases: &[ClaimRelease],
) -> Result<()> {
    // One statement for the lot. Each row is found by its primary key and locked, in
    // (destination, key) order (the arrays are sorted here), so concurrent batches lock in one
    // order; the locked rows are then deleted by their tuple ids. Not a join: the planner
    // hash-joined the batch with a scan of the whole table, dead rows included, which grew with
    // every claim released until a vacuum (measured: 2 ms a call, the first statement of
    // PostgreSQL's time in the bench).
    let delete = tx.prepare_cached(PG_RELEASE_MANY).await.map_err(pg_err)?;
    let mut order: Vec<&ClaimRelease> = releases.iter().collect();
    order.sort_by(|a, b| (&a.destination, &a.key).cmp(&(&b.destination, &b.key)));
    let pick = |f: fn(&ClaimRelease) -> &str| order.iter().map(|r| f(r)).collect::<Vec<&str>>();
    tx.execute(
        &delete,
        &[
            &pick(|r| &r.destination),
            &pick(|r| &r.key),
            &pick(|r| &r.holder),
        ],
    )
    .await
    .map_err(pg_err)?;
    let settled: Vec<&ClaimRelease> = releases.iter().filter(|r| r.resolution.is_some()).collect();
    if settled.is_empty() {
        return Ok(());
    }
    let settle = tx
        .prepare_cached(&format!(
            "UPDATE in_doubt SET resolution = $4, resolved_at_ms = {PG_NOW}
             WHERE destination = $1 AND resolution IS NULL
               AND (ledger_id = $2 OR ($3::text IS NOT NULL AND natural_key = $3))"
        ))
        .await
        .map_err(pg_err)?;
    for r in settled {
        tx.execute(
            &settle,
            &[&r.destination, &r.ledger_id, &r.natural_key, &r.resolution],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

pub(crate) async fn pg_in_doubt_by_key(
    client: &deadpool_postgres::Object,
    key: &str,
) -> Result<Vec<InDoubtRow>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {IN_DOUBT_COLS} FROM in_doubt WHERE key = $1 ORDER BY found_at_ms, ledger_id"
        ))
        .await
        .map_err(pg_err)?;
    let rows = client.query(&stmt, &[&key]).await.map_err(pg_err)?;
    Ok(rows
        .iter()
        .map(|r| InDoubtRow {
            destination: r.get(0),
            key: r.get(1),
            ledger_id: r.get(2),
            natural_key: r.get(3),
            version: r.get(4),
            holder: r.get(5),
            sent_at_ms: r.get(6),
            found_at_ms: r.get(7),
            resolution: r.get(8),
            resolved_at_ms: r.get(9),
        })
        .collect())
}
