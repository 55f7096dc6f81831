//! [`FeedStore`] on SQLite.
//!
//! # Invariants
//!
//! - Every operation is one closure on the store's connection thread; an append or a purge is
//!   one `BEGIN IMMEDIATE` transaction (the write lock is taken before the head is read), a
//!   page reads the head and its entries in one transaction (one snapshot).
//! - Raw columns are decoded outside rusqlite, so a bad value is `Malformed`, not a failed query.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::*;
use crate::sql::Fail;
use crate::sqlite::SqliteStore;

type RawEntry = (i64, String, String, String, Vec<u8>, String, String, i64);

fn decode(raw: RawEntry) -> Result<Entry> {
    let (seq, event_id, dossier, kind, payload, fields, digest, at_ms) = raw;
    Ok(Entry {
        seq,
        entry: NewEntry {
            event_id,
            dossier,
            kind,
            payload,
            fields: fields_from(&fields)?,
            digest,
            at_ms,
        },
    })
}

/// (last_seq, purged_through, purged_newest_ms, fetched_through)
type Head = (i64, i64, Option<i64>, i64);

fn head(conn: &Connection, sub: &str) -> std::result::Result<Option<Head>, Fail> {
    Ok(conn
        .prepare_cached(
            "SELECT last_seq, purged_through, purged_newest_ms, fetched_through
             FROM feed_heads WHERE subscription = ?1",
        )?
        .query_row([sub], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?)
}

fn append(conn: &mut Connection, sub: &str, e: &NewEntry) -> std::result::Result<Appended, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO feed_heads (subscription, last_seq, purged_through, fetched_through)
         VALUES (?1, 0, 0, 0) ON CONFLICT (subscription) DO NOTHING",
        [sub],
    )?;
    let existing: Option<i64> = tx
        .prepare_cached("SELECT seq FROM feed_entries WHERE subscription = ?1 AND event_id = ?2")?
        .query_row(params![sub, e.event_id], |r| r.get(0))
        .optional()?;
    if let Some(seq) = existing {
        // Nothing to write; the head row inserted above (if any) is rolled back.
        return Ok(Appended::Existing(seq));
    }
    let (last, ..) = head(&tx, sub)?.expect("inserted above");
    let seq = last + 1;
    tx.execute(
        "INSERT INTO feed_entries (subscription, seq, event_id, dossier, kind, payload, fields,
             digest, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            sub,
            seq,
            e.event_id,
            e.dossier,
            e.kind,
            e.payload,
            fields_json(&e.fields),
            e.digest,
            e.at_ms
        ],
    )?;
    tx.execute(
        "UPDATE feed_heads SET last_seq = ?2 WHERE subscription = ?1",
        params![sub, seq],
    )?;
    tx.commit()?;
    Ok(Appended::New(seq))
}

enum RawPage {
    Answer(PageAnswer),
    Rows { last: i64, rows: Vec<RawEntry> },
}

fn page(
    conn: &mut Connection,
    sub: &str,
    after: i64,
    limit: i64,
) -> std::result::Result<RawPage, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let (last, purged, ..) = head(&tx, sub)?.unwrap_or((0, 0, None, 0));
    if let Some(a) = judge(after, last, purged) {
        return Ok(RawPage::Answer(a));
    }
    let rows = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {ENTRY_COLS} FROM feed_entries WHERE subscription = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![sub, after, limit], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(RawPage::Rows { last, rows })
}

fn purge(conn: &mut Connection, sub: &str, before_ms: i64) -> std::result::Result<Purged, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some((last, purged, old_newest, _)) = head(&tx, sub)? else {
        return Ok(Purged {
            through: 0,
            removed: 0,
        });
    };
    let first_kept: Option<i64> = tx.query_row(
        "SELECT MIN(seq) FROM feed_entries
         WHERE subscription = ?1 AND seq > ?2 AND at_ms >= ?3",
        params![sub, purged, before_ms],
        |r| r.get(0),
    )?;
    let through = first_kept.map_or(last, |s| s - 1);
    if through <= purged {
        return Ok(Purged {
            through: purged,
            removed: 0,
        });
    }
    let newest: Option<i64> = tx.query_row(
        "SELECT MAX(at_ms) FROM feed_entries WHERE subscription = ?1 AND seq > ?2 AND seq <= ?3",
        params![sub, purged, through],
        |r| r.get(0),
    )?;
    let removed = tx.execute(
        "DELETE FROM feed_entries WHERE subscription = ?1 AND seq > ?2 AND seq <= ?3",
        params![sub, purged, through],
    )?;
    tx.execute(
        "UPDATE feed_heads SET purged_through = ?2, purged_newest_ms = ?3
         WHERE subscription = ?1",
        params![sub, through, old_newest.max(newest)],
    )?;
    tx.commit()?;
    Ok(Purged {
        through,
        removed: removed as u64,
    })
}

fn since(conn: &mut Connection, sub: &str, at_ms: i64) -> std::result::Result<Since, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let Some((last, purged, purged_newest, _)) = head(&tx, sub)? else {
        return Ok(Since::Cursor(0));
    };
    if purged_newest.is_some_and(|p| at_ms <= p) {
        return Ok(Since::Gone { oldest: purged });
    }
    let first: Option<i64> = tx.query_row(
        "SELECT MIN(seq) FROM feed_entries
         WHERE subscription = ?1 AND seq > ?2 AND at_ms >= ?3",
        params![sub, purged, at_ms],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok(Since::Cursor(first.map_or(last, |s| s - 1)))
}

fn stats(conn: &mut Connection, sub: &str) -> std::result::Result<FeedStats, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let Some((last, purged, _, fetched)) = head(&tx, sub)? else {
        return Ok(FeedStats::default());
    };
    let (entries, oldest): (i64, Option<i64>) = tx.query_row(
        "SELECT (SELECT COUNT(*) FROM feed_entries WHERE subscription = ?1),
                (SELECT at_ms FROM feed_entries WHERE subscription = ?1 AND seq > ?2
                 ORDER BY seq LIMIT 1)",
        params![sub, fetched.max(purged)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.commit()?;
    Ok(FeedStats {
        head: last,
        purged_through: purged,
        fetched_through: fetched,
        entries,
        oldest_unfetched_ms: oldest,
    })
}

#[async_trait]
impl FeedStore for SqliteStore {
    async fn append(&self, subscription: &str, entry: NewEntry) -> Result<Appended> {
        check_size(subscription, &entry)?;
        let sub = subscription.to_owned();
        self.call(move |conn| append(conn, &sub, &entry)).await
    }

    async fn page(&self, subscription: &str, after: i64, limit: u32) -> Result<PageAnswer> {
        let sub = subscription.to_owned();
        let limit = clamp(limit);
        match self
            .call(move |conn| page(conn, &sub, after, limit))
            .await?
        {
            RawPage::Answer(a) => Ok(a),
            RawPage::Rows { last, rows } => {
                let entries = rows.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
                Ok(PageAnswer::Page(Page {
                    after,
                    next: entries.last().map_or(after, |e| e.seq),
                    entries,
                    head: last,
                }))
            }
        }
    }

    async fn cursor_since(&self, subscription: &str, at_ms: i64) -> Result<Since> {
        let sub = subscription.to_owned();
        self.call(move |conn| since(conn, &sub, at_ms)).await
    }

    async fn purge(&self, subscription: &str, before_ms: i64) -> Result<Purged> {
        let sub = subscription.to_owned();
        self.call(move |conn| purge(conn, &sub, before_ms)).await
    }

    async fn note_fetched(&self, subscription: &str, through: i64) -> Result<()> {
        let sub = subscription.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE feed_heads SET fetched_through = ?2
                 WHERE subscription = ?1 AND fetched_through < ?2 AND ?2 <= last_seq",
                params![sub, through],
            )?;
            Ok(())
        })
        .await
    }

    async fn stats(&self, subscription: &str) -> Result<FeedStats> {
        let sub = subscription.to_owned();
        self.call(move |conn| stats(conn, &sub)).await
    }
}
