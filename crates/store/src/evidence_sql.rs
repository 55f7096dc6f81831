//! Evidence log tables (migrations 4 and 14) and their statements, for both stores.
//!
//! ```text
//! evidence            PK (chain, seq); unique id; unique exchange; index (dossier, at_ms)
//!                     per-event links (written before migration 14; read, verified, pruned)
//! evidence_batches    PK (chain, seq) → id, at_ms, leaves, root, prev_hash, hash: batch links
//! evidence_leaves     PK (chain, seq, leaf); unique exchange; index (dossier, at_ms): the
//!                     exchanges of each batch link (its Merkle leaves)
//! evidence_heads      PK chain → (seq, hash) of the last link, (anchor_seq, anchor_hash)
//! evidence_timestamps PK (chain, seq) → hash, token, at_ms
//! ```
//!
//! # Invariants
//! - New records are written as batch links only: the records of one chain in one store batch
//!   become one link ([`crate::evidence_merkle::batch_after`]); a chain's seq is shared by
//!   `evidence` and `evidence_batches` (each seq in exactly one of them).
//! - An exchange key is stored at most once across `evidence` and `evidence_leaves`: each
//!   append drops the exchanges either table already has (and repeats within the batch).
//! - Reads of a chain return whole links: a page never ends inside a batch.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::evidence_merkle::batch_after;
use crate::evidence_records::{
    BatchPlace, ChainHead, EvidenceRecord, StoredEvidence, TimeStampRow, GENESIS,
};
use crate::sql::Fail;

pub(crate) const SQLITE_V4: &str = "
CREATE TABLE evidence (
    chain            TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    id               TEXT    NOT NULL UNIQUE,
    exchange         TEXT    NOT NULL UNIQUE,
    at_ms            INTEGER NOT NULL,
    adapter          TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    route            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    dossier          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    request_digest   TEXT    NOT NULL,
    response_digest  TEXT,
    signature_digest TEXT,
    cert_fingerprint TEXT,
    http_status      INTEGER,
    result_code      TEXT,
    mode             TEXT    NOT NULL,
    request_body     BLOB,
    response_body    BLOB,
    prev_hash        TEXT    NOT NULL,
    hash             TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
) STRICT;
CREATE INDEX evidence_by_dossier ON evidence (dossier, at_ms);
CREATE TABLE evidence_heads (
    chain        TEXT    NOT NULL PRIMARY KEY,
    seq          INTEGER NOT NULL,
    hash         TEXT    NOT NULL,
    anchor_seq   INTEGER NOT NULL DEFAULT 0,
    anchor_hash  TEXT    NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000'
) STRICT;
CREATE TABLE evidence_timestamps (
    chain  TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    hash   TEXT    NOT NULL,
    token  BLOB    NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (chain, seq)
) STRICT;
";

pub(crate) const PG_V4: &str = "
CREATE TABLE evidence (
    chain            TEXT    NOT NULL,
    seq              BIGINT  NOT NULL,
    id               TEXT    NOT NULL UNIQUE,
    exchange         TEXT    NOT NULL UNIQUE,
    at_ms            BIGINT  NOT NULL,
    adapter          TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    route            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    dossier          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    request_digest   TEXT    NOT NULL,
    response_digest  TEXT,
    signature_digest TEXT,
    cert_fingerprint TEXT,
    http_status      INTEGER,
    result_code      TEXT,
    mode             TEXT    NOT NULL,
    request_body     BYTEA,
    response_body    BYTEA,
    prev_hash        TEXT    NOT NULL,
    hash             TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX evidence_by_dossier ON evidence (dossier, at_ms);
CREATE TABLE evidence_heads (
    chain        TEXT    NOT NULL PRIMARY KEY,
    seq          BIGINT  NOT NULL,
    hash         TEXT    NOT NULL,
    anchor_seq   BIGINT  NOT NULL DEFAULT 0,
    anchor_hash  TEXT    NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000'
);
CREATE TABLE evidence_timestamps (
    chain  TEXT    NOT NULL,
    seq    BIGINT  NOT NULL,
    hash   TEXT    NOT NULL,
    token  BYTEA   NOT NULL,
    at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (chain, seq)
);
";

/// Batch links and their leaves (see the module doc).
pub(crate) const SQLITE_V14: &str = "
CREATE TABLE IF NOT EXISTS evidence_batches (
    chain      TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    leaves     INTEGER NOT NULL,
    root       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS evidence_leaves (
    chain            TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    leaf             INTEGER NOT NULL,
    id               TEXT    NOT NULL,
    exchange         TEXT    NOT NULL UNIQUE,
    at_ms            INTEGER NOT NULL,
    adapter          TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    route            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    dossier          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    request_digest   TEXT    NOT NULL,
    response_digest  TEXT,
    signature_digest TEXT,
    cert_fingerprint TEXT,
    http_status      INTEGER,
    result_code      TEXT,
    mode             TEXT    NOT NULL,
    request_body     BLOB,
    response_body    BLOB,
    PRIMARY KEY (chain, seq, leaf)
) STRICT;
CREATE INDEX IF NOT EXISTS evidence_leaves_by_dossier ON evidence_leaves (dossier, at_ms);
";

pub(crate) const PG_V14: &str = "
CREATE TABLE IF NOT EXISTS evidence_batches (
    chain      TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    id         TEXT    NOT NULL,
    at_ms      BIGINT  NOT NULL,
    leaves     INTEGER NOT NULL,
    root       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TABLE IF NOT EXISTS evidence_leaves (
    chain            TEXT    NOT NULL,
    seq              BIGINT  NOT NULL,
    leaf             INTEGER NOT NULL,
    id               TEXT    NOT NULL,
    exchange         TEXT    NOT NULL UNIQUE,
    at_ms            BIGINT  NOT NULL,
    adapter          TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    route            TEXT    NOT NULL,
    envelope_id      TEXT    NOT NULL,
    dossier          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    request_digest   TEXT    NOT NULL,
    response_digest  TEXT,
    signature_digest TEXT,
    cert_fingerprint TEXT,
    http_status      INTEGER,
    result_code      TEXT,
    mode             TEXT    NOT NULL,
    request_body     BYTEA,
    response_body    BYTEA,
    PRIMARY KEY (chain, seq, leaf)
);
CREATE INDEX IF NOT EXISTS evidence_leaves_by_dossier ON evidence_leaves (dossier, at_ms);
";

/// A leaf's columns, then its link's, in the order [`COLS`] has them (the row readers take
/// both), then the batch place: `l` is `evidence_leaves`, `b` `evidence_batches`.
const LEAF_COLS: &str = "l.chain, l.seq, l.id, l.exchange, l.at_ms, l.adapter, l.direction, \
     l.route, l.envelope_id, l.dossier, l.operation, l.request_digest, l.response_digest, \
     l.signature_digest, l.cert_fingerprint, l.http_status, l.result_code, l.mode, \
     l.request_body, l.response_body, b.prev_hash, b.hash, b.id, b.at_ms, b.leaves, l.leaf, b.root";
const LEAF_FROM: &str =
    "evidence_leaves l JOIN evidence_batches b ON b.chain = l.chain AND b.seq = l.seq";
const LEAF_INSERT_COLS: &str = "chain, seq, leaf, id, exchange, at_ms, adapter, direction, route, \
     envelope_id, dossier, operation, request_digest, response_digest, signature_digest, \
     cert_fingerprint, http_status, result_code, mode, request_body, response_body";

/// Merge per-event records and batch leaves of one chain, in (seq, leaf) order, keeping the
/// first `limit` links.
fn merge_links(
    mut old: Vec<StoredEvidence>,
    leaves: Vec<StoredEvidence>,
    limit: u32,
) -> Vec<StoredEvidence> {
    old.extend(leaves);
    old.sort_by_key(|r| (r.seq, r.batch.as_ref().map_or(0, |b| b.leaf)));
    let mut links = 0u32;
    let mut last = None;
    old.retain(|r| {
        if last != Some(r.seq) {
            last = Some(r.seq);
            links += 1;
        }
        links <= limit
    });
    old
}

pub(crate) const COLS: &str = "chain, seq, id, exchange, at_ms, adapter, direction, route, \
     envelope_id, dossier, operation, request_digest, response_digest, signature_digest, \
     cert_fingerprint, http_status, result_code, mode, request_body, response_body, prev_hash, hash";

/// Group new records by chain (batch order kept inside a chain), dropping exchanges already
/// stored (`known`) or repeated within the batch.
pub(crate) fn by_chain(
    records: &[EvidenceRecord],
    known: &HashSet<String>,
) -> BTreeMap<String, Vec<EvidenceRecord>> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<String, Vec<EvidenceRecord>> = BTreeMap::new();
    for r in records {
        if known.contains(&r.exchange) || !seen.insert(r.exchange.clone()) {
            continue;
        }
        out.entry(r.chain.clone()).or_default().push(r.clone());
    }
    out
}

// ------------------------------------------------------------------------------------ SQLite

pub(crate) fn sqlite_append(
    tx: &Transaction<'_>,
    records: &[EvidenceRecord],
) -> std::result::Result<(), Fail> {
    let mut known = HashSet::new();
    {
        let mut exists = tx.prepare_cached(
            "SELECT 1 FROM evidence_leaves WHERE exchange = ?1
             UNION ALL SELECT 1 FROM evidence WHERE exchange = ?1",
        )?;
        for r in records {
            if exists.exists([&r.exchange])? {
                known.insert(r.exchange.clone());
            }
        }
    }
    let mut head_stmt =
        tx.prepare_cached("SELECT seq, hash FROM evidence_heads WHERE chain = ?1")?;
    let mut insert_batch = tx.prepare_cached(
        "INSERT INTO evidence_batches (chain, seq, id, at_ms, leaves, root, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO evidence_leaves ({LEAF_INSERT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
         ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))?;
    let mut set_head = tx.prepare_cached(
        "INSERT INTO evidence_heads (chain, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?;
    for (chain, list) in by_chain(records, &known) {
        let head: (i64, String) = head_stmt
            .query_row([&chain], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_owned()));
        let (stored, (seq, hash)) = batch_after(head, uuid::Uuid::now_v7().to_string(), list);
        if let Some(first) = stored.first() {
            let b = first.batch.as_ref().expect("batch_after places leaves");
            insert_batch.execute(params![
                chain,
                seq,
                b.id,
                b.at_ms,
                b.leaves,
                b.root,
                first.prev_hash,
                hash
            ])?;
        }
        for s in &stored {
            let r = &s.record;
            insert.execute(params![
                r.chain,
                s.seq,
                s.batch.as_ref().map_or(0, |b| b.leaf),
                r.id,
                r.exchange,
                r.at_ms,
                r.adapter,
                r.direction,
                r.route,
                r.envelope_id,
                r.dossier,
                r.operation,
                r.request_digest,
                r.response_digest,
                r.signature_digest,
                r.cert_fingerprint,
                r.http_status,
                r.result_code,
                r.mode,
                r.request_body,
                r.response_body,
            ])?;
        }
        set_head.execute(params![chain, seq, hash])?;
    }
    Ok(())
}

fn sqlite_row(r: &Row<'_>) -> rusqlite::Result<StoredEvidence> {
    Ok(StoredEvidence {
        record: EvidenceRecord {
            chain: r.get(0)?,
            id: r.get(2)?,
            exchange: r.get(3)?,
            at_ms: r.get(4)?,
            adapter: r.get(5)?,
            direction: r.get(6)?,
            route: r.get(7)?,
            envelope_id: r.get(8)?,
            dossier: r.get(9)?,
            operation: r.get(10)?,
            request_digest: r.get(11)?,
            response_digest: r.get(12)?,
            signature_digest: r.get(13)?,
            cert_fingerprint: r.get(14)?,
            http_status: r.get(15)?,
            result_code: r.get(16)?,
            mode: r.get(17)?,
            request_body: r.get(18)?,
            response_body: r.get(19)?,
        },
        seq: r.get(1)?,
        prev_hash: r.get(20)?,
        hash: r.get(21)?,
        batch: None,
    })
}

fn sqlite_leaf_row(r: &Row<'_>) -> rusqlite::Result<StoredEvidence> {
    let mut s = sqlite_row(r)?;
    s.batch = Some(BatchPlace {
        id: r.get(22)?,
        at_ms: r.get(23)?,
        leaves: r.get(24)?,
        leaf: r.get(25)?,
        root: r.get(26)?,
    });
    Ok(s)
}

pub(crate) fn sqlite_heads(conn: &Connection) -> rusqlite::Result<Vec<ChainHead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT chain, seq, hash, anchor_seq, anchor_hash FROM evidence_heads ORDER BY chain",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ChainHead {
            chain: r.get(0)?,
            seq: r.get(1)?,
            hash: r.get(2)?,
            anchor_seq: r.get(3)?,
            anchor_hash: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn sqlite_chain(
    conn: &Connection,
    chain: &str,
    after: i64,
    limit: u32,
) -> rusqlite::Result<Vec<StoredEvidence>> {
    let old: Vec<StoredEvidence> = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM evidence WHERE chain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ))?
        .query_map(params![chain, after, limit], sqlite_row)?
        .collect::<rusqlite::Result<_>>()?;
    // The leaves of the first `limit` batch links after `after`.
    let upto: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(seq) FROM (SELECT seq FROM evidence_batches WHERE chain = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3)",
        )?
        .query_row(params![chain, after, limit], |r| r.get(0))?;
    let leaves: Vec<StoredEvidence> = match upto {
        None => vec![],
        Some(upto) => conn
            .prepare_cached(&format!(
                "SELECT {LEAF_COLS} FROM {LEAF_FROM} WHERE l.chain = ?1 AND l.seq > ?2 \
                 AND l.seq <= ?3 ORDER BY l.seq, l.leaf"
            ))?
            .query_map(params![chain, after, upto], sqlite_leaf_row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    Ok(merge_links(old, leaves, limit))
}

pub(crate) fn sqlite_by_dossier(
    conn: &Connection,
    dossier: &str,
) -> rusqlite::Result<Vec<StoredEvidence>> {
    let mut out: Vec<StoredEvidence> = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM evidence WHERE dossier = ?1 ORDER BY chain, seq"
        ))?
        .query_map([dossier], sqlite_row)?
        .collect::<rusqlite::Result<_>>()?;
    let leaves = conn
        .prepare_cached(&format!(
            "SELECT {LEAF_COLS} FROM {LEAF_FROM} WHERE l.dossier = ?1 ORDER BY l.chain, l.seq, l.leaf"
        ))?
        .query_map([dossier], sqlite_leaf_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    out.extend(leaves);
    sort_by_place(&mut out);
    Ok(out)
}

/// (chain, seq, leaf) order.
fn sort_by_place(v: &mut [StoredEvidence]) {
    v.sort_by(|a, b| {
        (
            &a.record.chain,
            a.seq,
            a.batch.as_ref().map_or(0, |p| p.leaf),
        )
            .cmp(&(
                &b.record.chain,
                b.seq,
                b.batch.as_ref().map_or(0, |p| p.leaf),
            ))
    });
}

pub(crate) fn sqlite_add_timestamp(conn: &Connection, ts: &TimeStampRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO evidence_timestamps (chain, seq, hash, token, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (chain, seq) DO NOTHING",
    )?
    .execute(params![ts.chain, ts.seq, ts.hash, ts.token, ts.at_ms])?;
    Ok(())
}

pub(crate) fn sqlite_timestamps(
    conn: &Connection,
    chain: &str,
) -> rusqlite::Result<Vec<TimeStampRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT chain, seq, hash, token, at_ms FROM evidence_timestamps WHERE chain = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([chain], |r| {
        Ok(TimeStampRow {
            chain: r.get(0)?,
            seq: r.get(1)?,
            hash: r.get(2)?,
            token: r.get(3)?,
            at_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn sqlite_prune(
    conn: &mut Connection,
    chain: &str,
    through: i64,
) -> std::result::Result<u64, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let anchor: Option<String> = tx
        .query_row(
            "SELECT hash FROM evidence WHERE chain = ?1 AND seq = ?2
             UNION ALL SELECT hash FROM evidence_batches WHERE chain = ?1 AND seq = ?2",
            params![chain, through],
            |r| r.get(0),
        )
        .optional()?;
    let Some(anchor) = anchor else {
        return Ok(0);
    };
    let mut removed = tx.execute(
        "DELETE FROM evidence WHERE chain = ?1 AND seq <= ?2",
        params![chain, through],
    )?;
    removed += tx.execute(
        "DELETE FROM evidence_leaves WHERE chain = ?1 AND seq <= ?2",
        params![chain, through],
    )?;
    tx.execute(
        "DELETE FROM evidence_batches WHERE chain = ?1 AND seq <= ?2",
        params![chain, through],
    )?;
    tx.execute(
        "DELETE FROM evidence_timestamps WHERE chain = ?1 AND seq < ?2",
        params![chain, through],
    )?;
    tx.execute(
        "UPDATE evidence_heads SET anchor_seq = ?2, anchor_hash = ?3 WHERE chain = ?1",
        params![chain, through, anchor],
    )?;
    tx.commit()?;
    Ok(removed as u64)
}

// -------------------------------------------------------------------------------- PostgreSQL

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Query(match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    })
}

/// Which of a batch's exchanges are stored already. One index probe per exchange (see
/// `PG_KNOWN_MANY` in `claims`): `exchange = ANY($1)` was planned as a scan of the whole table
/// while it was small enough, comparing every row with every exchange of the batch.
pub const PG_KNOWN_EXCHANGES: &str = "SELECT x FROM UNNEST($1::text[]) AS x
 WHERE (SELECT true FROM evidence_leaves WHERE exchange = x LIMIT 1)
    OR (SELECT true FROM evidence WHERE exchange = x LIMIT 1)";

pub(crate) async fn pg_append(
    tx: &deadpool_postgres::Transaction<'_>,
    records: &[EvidenceRecord],
) -> Result<()> {
    // Two round trips whatever the batch size: (1) which exchanges are stored already, and the
    // chain heads, created if new and locked; (2) the batch links and all their leaves in one
    // statement each, and the heads moved. Statements are prepared once per connection.
    let exchanges: Vec<&str> = records.iter().map(|r| r.exchange.as_str()).collect();
    // Chains in sorted order, so two transactions lock heads in one order.
    let chains: Vec<&str> = records
        .iter()
        .map(|r| r.chain.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let insert_sql = format!(
        "INSERT INTO evidence_leaves ({LEAF_INSERT_COLS}) SELECT * FROM UNNEST($1::text[], \
         $2::bigint[], $3::int[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
         $15::text[], $16::text[], $17::int[], $18::text[], $19::text[], $20::bytea[], \
         $21::bytea[])"
    );
    let (known_stmt, head_stmt, insert, insert_batches, move_head) = futures::try_join!(
        tx.prepare_cached(PG_KNOWN_EXCHANGES),
        // `DO UPDATE` (a no-op write) rather than `DO NOTHING`, so the row is locked and
        // returned whether it is new or not.
        tx.prepare_cached(
            "INSERT INTO evidence_heads (chain, seq, hash) VALUES ($1, 0, $2)
             ON CONFLICT (chain) DO UPDATE SET chain = excluded.chain
             RETURNING seq, hash"
        ),
        tx.prepare_cached(&insert_sql),
        tx.prepare_cached(
            "INSERT INTO evidence_batches (chain, seq, id, at_ms, leaves, root, prev_hash, hash) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
             $5::int[], $6::text[], $7::text[], $8::text[])"
        ),
        tx.prepare_cached("UPDATE evidence_heads SET seq = $2, hash = $3 WHERE chain = $1"),
    )
    .map_err(pg)?;
    let head_stmt = &head_stmt;
    let heads = chains
        .iter()
        .map(|c| async move { tx.query_one(head_stmt, &[c, &GENESIS]).await });
    let known_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&exchanges];
    let (known, heads) = futures::join!(
        tx.query(&known_stmt, &known_params),
        futures::future::join_all(heads)
    );
    let known: HashSet<String> = known.map_err(pg)?.iter().map(|r| r.get(0)).collect();
    let mut head_of: BTreeMap<&str, (i64, String)> = BTreeMap::new();
    for (chain, row) in chains.iter().zip(heads) {
        let row = row.map_err(pg)?;
        head_of.insert(chain, (row.get(0), row.get(1)));
    }
    let mut stored = Vec::new();
    let mut moved = Vec::new();
    for (chain, list) in by_chain(records, &known) {
        let head = head_of
            .remove(chain.as_str())
            .unwrap_or((0, GENESIS.to_owned()));
        let (segment, (seq, hash)) = batch_after(head, uuid::Uuid::now_v7().to_string(), list);
        stored.extend(segment);
        moved.push((chain, seq, hash));
    }
    if stored.is_empty() {
        return Ok(());
    }
    // The links: each one's first leaf carries its fields.
    let firsts: Vec<(&StoredEvidence, &BatchPlace)> = stored
        .iter()
        .filter_map(|s| s.batch.as_ref().filter(|b| b.leaf == 0).map(|b| (s, b)))
        .collect();
    let b_chain: Vec<&str> = firsts
        .iter()
        .map(|(s, _)| s.record.chain.as_str())
        .collect();
    let b_seq: Vec<i64> = firsts.iter().map(|(s, _)| s.seq).collect();
    let b_id: Vec<&str> = firsts.iter().map(|(_, b)| b.id.as_str()).collect();
    let b_at: Vec<i64> = firsts.iter().map(|(_, b)| b.at_ms).collect();
    let b_leaves: Vec<i32> = firsts.iter().map(|(_, b)| b.leaves as i32).collect();
    let b_root: Vec<&str> = firsts.iter().map(|(_, b)| b.root.as_str()).collect();
    let b_prev: Vec<&str> = firsts.iter().map(|(s, _)| s.prev_hash.as_str()).collect();
    let b_hash: Vec<&str> = firsts.iter().map(|(s, _)| s.hash.as_str()).collect();
    let batch_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &b_chain, &b_seq, &b_id, &b_at, &b_leaves, &b_root, &b_prev, &b_hash,
    ];

    let text =
        |f: fn(&EvidenceRecord) -> &str| stored.iter().map(|s| f(&s.record)).collect::<Vec<&str>>();
    let opt = |f: fn(&EvidenceRecord) -> Option<&str>| {
        stored
            .iter()
            .map(|s| f(&s.record))
            .collect::<Vec<Option<&str>>>()
    };
    let seq: Vec<i64> = stored.iter().map(|s| s.seq).collect();
    let leaf: Vec<i32> = stored
        .iter()
        .map(|s| s.batch.as_ref().map_or(0, |b| b.leaf as i32))
        .collect();
    let at_ms: Vec<i64> = stored.iter().map(|s| s.record.at_ms).collect();
    let status: Vec<Option<i32>> = stored
        .iter()
        .map(|s| s.record.http_status.map(i32::from))
        .collect();
    let request_body: Vec<Option<&[u8]>> = stored
        .iter()
        .map(|s| s.record.request_body.as_deref())
        .collect();
    let response_body: Vec<Option<&[u8]>> = stored
        .iter()
        .map(|s| s.record.response_body.as_deref())
        .collect();
    let columns = (
        text(|r| &r.chain),
        text(|r| &r.id),
        text(|r| &r.exchange),
        text(|r| &r.adapter),
        text(|r| &r.direction),
        text(|r| &r.route),
        text(|r| &r.envelope_id),
        text(|r| &r.dossier),
        text(|r| &r.operation),
        text(|r| &r.request_digest),
    );
    let (response_digest, signature_digest, cert_fingerprint, result_code) = (
        opt(|r| r.response_digest.as_deref()),
        opt(|r| r.signature_digest.as_deref()),
        opt(|r| r.cert_fingerprint.as_deref()),
        opt(|r| r.result_code.as_deref()),
    );
    let mode = text(|r| &r.mode);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 21] = [
        &columns.0,
        &seq,
        &leaf,
        &columns.1,
        &columns.2,
        &at_ms,
        &columns.3,
        &columns.4,
        &columns.5,
        &columns.6,
        &columns.7,
        &columns.8,
        &columns.9,
        &response_digest,
        &signature_digest,
        &cert_fingerprint,
        &status,
        &result_code,
        &mode,
        &request_body,
        &response_body,
    ];
    let move_head = &move_head;
    let moves = moved
        .iter()
        .map(|(chain, seq, hash)| async move { tx.execute(move_head, &[chain, seq, hash]).await });
    let (links, inserted, moves) = futures::join!(
        tx.execute(&insert_batches, &batch_params),
        tx.execute(&insert, &params),
        futures::future::join_all(moves)
    );
    links.map_err(pg)?;
    inserted.map_err(pg)?;
    for m in moves {
        m.map_err(pg)?;
    }
    Ok(())
}

pub(crate) fn pg_row(r: &tokio_postgres::Row) -> Result<StoredEvidence> {
    let get = |e: tokio_postgres::Error| StoreError::Malformed(e.to_string());
    let status: Option<i32> = r.try_get(15).map_err(get)?;
    Ok(StoredEvidence {
        record: EvidenceRecord {
            chain: r.try_get(0).map_err(get)?,
            id: r.try_get(2).map_err(get)?,
            exchange: r.try_get(3).map_err(get)?,
            at_ms: r.try_get(4).map_err(get)?,
            adapter: r.try_get(5).map_err(get)?,
            direction: r.try_get(6).map_err(get)?,
            route: r.try_get(7).map_err(get)?,
            envelope_id: r.try_get(8).map_err(get)?,
            dossier: r.try_get(9).map_err(get)?,
            operation: r.try_get(10).map_err(get)?,
            request_digest: r.try_get(11).map_err(get)?,
            response_digest: r.try_get(12).map_err(get)?,
            signature_digest: r.try_get(13).map_err(get)?,
            cert_fingerprint: r.try_get(14).map_err(get)?,
            http_status: status
                .map(|s| {
                    u16::try_from(s)
                        .map_err(|_| StoreError::Malformed(format!("{s} is not a status")))
                })
                .transpose()?,
            result_code: r.try_get(16).map_err(get)?,
            mode: r.try_get(17).map_err(get)?,
            request_body: r.try_get(18).map_err(get)?,
            response_body: r.try_get(19).map_err(get)?,
        },
        seq: r.try_get(1).map_err(get)?,
        prev_hash: r.try_get(20).map_err(get)?,
        hash: r.try_get(21).map_err(get)?,
        batch: None,
    })
}

fn pg_leaf_row(r: &tokio_postgres::Row) -> Result<StoredEvidence> {
    let get = |e: tokio_postgres::Error| StoreError::Malformed(e.to_string());
    let mut s = pg_row(r)?;
    let leaves: i32 = r.try_get(24).map_err(get)?;
    let leaf: i32 = r.try_get(25).map_err(get)?;
    let count = |v: i32| {
        u32::try_from(v).map_err(|_| StoreError::Malformed(format!("{v} is not a leaf count")))
    };
    s.batch = Some(BatchPlace {
        id: r.try_get(22).map_err(get)?,
        at_ms: r.try_get(23).map_err(get)?,
        leaves: count(leaves)?,
        leaf: count(leaf)?,
        root: r.try_get(26).map_err(get)?,
    });
    Ok(s)
}

pub(crate) async fn pg_heads(client: &tokio_postgres::Client) -> Result<Vec<ChainHead>> {
    Ok(client
        .query(
            "SELECT chain, seq, hash, anchor_seq, anchor_hash FROM evidence_heads ORDER BY chain",
            &[],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| ChainHead {
            chain: r.get(0),
            seq: r.get(1),
            hash: r.get(2),
            anchor_seq: r.get(3),
            anchor_hash: r.get(4),
        })
        .collect())
}

pub(crate) async fn pg_chain(
    client: &tokio_postgres::Client,
    chain: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvidence>> {
    let limit = i64::from(limit);
    let old = client
        .query(
            &format!(
                "SELECT {COLS} FROM evidence WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            &[&chain, &after, &limit],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(pg_row)
        .collect::<Result<Vec<_>>>()?;
    // The leaves of the first `limit` batch links after `after`.
    let leaves = client
        .query(
            &format!(
                "SELECT {LEAF_COLS} FROM {LEAF_FROM} WHERE l.chain = $1 AND l.seq > $2 \
                 AND l.seq <= (SELECT MAX(seq) FROM (SELECT seq FROM evidence_batches \
                 WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3) s) ORDER BY l.seq, l.leaf"
            ),
            &[&chain, &after, &limit],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(pg_leaf_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(merge_links(old, leaves, limit as u32))
}

pub(crate) async fn pg_by_dossier(
    client: &tokio_postgres::Client,
    dossier: &str,
) -> Result<Vec<StoredEvidence>> {
    let mut out = client
        .query(
            &format!("SELECT {COLS} FROM evidence WHERE dossier = $1 ORDER BY chain, seq"),
            &[&dossier],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(pg_row)
        .collect::<Result<Vec<_>>>()?;
    let leaves = client
        .query(
            &format!(
                "SELECT {LEAF_COLS} FROM {LEAF_FROM} WHERE l.dossier = $1 \
                 ORDER BY l.chain, l.seq, l.leaf"
            ),
            &[&dossier],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(pg_leaf_row)
        .collect::<Result<Vec<_>>>()?;
    out.extend(leaves);
    sort_by_place(&mut out);
    Ok(out)
}

pub(crate) async fn pg_add_timestamp(
    client: &tokio_postgres::Client,
    ts: &TimeStampRow,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO evidence_timestamps (chain, seq, hash, token, at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain, seq) DO NOTHING",
            &[&ts.chain, &ts.seq, &ts.hash, &ts.token, &ts.at_ms],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

pub(crate) async fn pg_timestamps(
    client: &tokio_postgres::Client,
    chain: &str,
) -> Result<Vec<TimeStampRow>> {
    Ok(client
        .query(
            "SELECT chain, seq, hash, token, at_ms FROM evidence_timestamps WHERE chain = $1 \
             ORDER BY seq",
            &[&chain],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| TimeStampRow {
            chain: r.get(0),
            seq: r.get(1),
            hash: r.get(2),
            token: r.get(3),
            at_ms: r.get(4),
        })
        .collect())
}

pub(crate) async fn pg_prune(
    client: &mut deadpool_postgres::Client,
    chain: &str,
    through: i64,
) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT 1 FROM evidence_heads WHERE chain = $1 FOR UPDATE",
        &[&chain],
    )
    .await
    .map_err(pg)?;
    let Some(anchor) = tx
        .query_opt(
            "SELECT hash FROM evidence WHERE chain = $1 AND seq = $2
             UNION ALL SELECT hash FROM evidence_batches WHERE chain = $1 AND seq = $2",
            &[&chain, &through],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(0);
    };
    let anchor: String = anchor.get(0);
    let mut removed = 0;
    for table in ["evidence", "evidence_leaves", "evidence_batches"] {
        let n = tx
            .execute(
                &format!("DELETE FROM {table} WHERE chain = $1 AND seq <= $2"),
                &[&chain, &through],
            )
            .await
            .map_err(pg)?;
        if table != "evidence_batches" {
            removed += n;
        }
    }
    tx.execute(
        "DELETE FROM evidence_timestamps WHERE chain = $1 AND seq < $2",
        &[&chain, &through],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE evidence_heads SET anchor_seq = $2, anchor_hash = $3 WHERE chain = $1",
        &[&chain, &through, &anchor],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(removed)
}
