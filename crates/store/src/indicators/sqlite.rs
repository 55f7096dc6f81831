//! [`IndicatorStore`] on SQLite.
//!
//! # Invariants
//!
//! - Every operation runs as one closure on the store's connection thread; `apply` is one
//!   `BEGIN IMMEDIATE` transaction, so the write lock is taken before the state is read
//!   (invariant 2 of [`super`]).
//! - `apply_batch` is one `BEGIN IMMEDIATE` transaction too; its statements run once per row
//!   (cached, in process: a row costs no round trip), and the journal's `ON CONFLICT DO
//!   NOTHING` is the once-per-event-id check of each row.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::*;
use crate::sql::Fail;
use crate::sqlite::SqliteStore;

const STATE_COLS: &str = "code, unit, procedure, received_ms, end_ms, state, last_seq, updated_ms";

fn state_row(r: &Row<'_>) -> rusqlite::Result<StateRow> {
    Ok(StateRow {
        code: r.get(0)?,
        unit: r.get(1)?,
        procedure: r.get(2)?,
        received_ms: r.get(3)?,
        end_ms: r.get(4)?,
        state: r.get(5)?,
        last_seq: r.get(6)?,
        updated_ms: r.get(7)?,
    })
}

fn upsert(conn: &Connection, row: &StateRow, only_if_not_newer: bool) -> rusqlite::Result<usize> {
    let guard = if only_if_not_newer {
        " WHERE indicator_dossiers.last_seq <= excluded.last_seq"
    } else {
        ""
    };
    conn.prepare_cached(&format!(
        "INSERT INTO indicator_dossiers ({STATE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (code) DO UPDATE SET unit = excluded.unit,
             procedure = excluded.procedure, received_ms = excluded.received_ms,
             end_ms = excluded.end_ms, state = excluded.state, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms{guard}"
    ))?
    .execute(params![
        row.code,
        row.unit,
        row.procedure,
        row.received_ms,
        row.end_ms,
        row.state,
        row.last_seq,
        row.updated_ms
    ])
}

fn apply(
    conn: &mut Connection,
    consumer: &str,
    e: &JournalEntry,
    fold: Fold,
) -> std::result::Result<Applied, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO indicator_journal (event_id, key, kind, fact, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
        )?
        .execute(params![e.event_id, e.key, e.kind, e.fact, e.at_ms])?;
    if inserted == 0 {
        return Ok(Applied::Duplicate);
    }
    let seq = tx.last_insert_rowid();
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM indicator_dossiers WHERE code = ?1")?
        .query_row([&e.key], |r| r.get(0))
        .optional()?;
    let row = fold(stored, seq)
        .map_err(|why| Fail::Malformed(format!("indicator state of {}: {why}", e.key)))?;
    upsert(&tx, &row, false)?;
    tx.prepare_cached(
        "INSERT INTO indicator_position (consumer, applied, last_event, last_seq, updated_ms)
         VALUES (?1, 1, ?2, ?3, ?4)
         ON CONFLICT (consumer) DO UPDATE SET applied = applied + 1,
             last_event = excluded.last_event, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms",
    )?
    .execute(params![consumer, e.event_id, seq, crate::clock::now_ms()])?;
    tx.commit()?;
    Ok(Applied::Applied { seq })
}

fn apply_batch(
    conn: &mut Connection,
    consumer: &str,
    entries: &[JournalEntry],
    fold: BatchFold,
) -> std::result::Result<Vec<Applied>, Fail> {
    let mut out = vec![Applied::Duplicate; entries.len()];
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut applied = Vec::new();
    {
        let mut journal = tx.prepare_cached(
            "INSERT INTO indicator_journal (event_id, key, kind, fact, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
        )?;
        for i in first_occurrences(entries) {
            let e = &entries[i];
            if journal.execute(params![e.event_id, e.key, e.kind, e.fact, e.at_ms])? == 1 {
                let seq = tx.last_insert_rowid();
                out[i] = Applied::Applied { seq };
                applied.push((i, seq));
            }
        }
    }
    let Some(&(last, last_seq)) = applied.last() else {
        return Ok(out); // all duplicates: nothing to write (the transaction rolls back)
    };
    let mut stored = std::collections::HashMap::new();
    {
        let mut read = tx.prepare_cached("SELECT state FROM indicator_dossiers WHERE code = ?1")?;
        for (i, _) in &applied {
            let key = &entries[*i].key;
            if !stored.contains_key(key) {
                if let Some(state) = read.query_row([key], |r| r.get(0)).optional()? {
                    stored.insert(key.clone(), state);
                }
            }
        }
    }
    let n = applied.len() as i64;
    let rows = fold(BatchInput {
        stored,
        applied: applied.clone(),
    })
    .and_then(|rows| check_batch_rows(entries, &applied, &rows).map(|()| rows))
    .map_err(|why| Fail::Malformed(batch_fold_failed(why)))?;
    for row in &rows {
        upsert(&tx, row, false)?;
    }
    tx.prepare_cached(
        "INSERT INTO indicator_position (consumer, applied, last_event, last_seq, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (consumer) DO UPDATE SET applied = applied + excluded.applied,
             last_event = excluded.last_event, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms",
    )?
    .execute(params![
        consumer,
        n,
        entries[last].event_id,
        last_seq,
        crate::clock::now_ms()
    ])?;
    tx.commit()?;
    Ok(out)
}

#[async_trait]
impl IndicatorStore for SqliteStore {
    async fn apply_batch(
        &self,
        consumer: &str,
        entries: Vec<JournalEntry>,
        fold: BatchFold,
    ) -> Result<Vec<Applied>> {
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let consumer = consumer.to_string();
        self.call(move |conn| apply_batch(conn, &consumer, &entries, fold))
            .await
    }

    async fn apply(&self, consumer: &str, entry: JournalEntry, fold: Fold) -> Result<Applied> {
        let consumer = consumer.to_string();
        self.call(move |conn| apply(conn, &consumer, &entry, fold))
            .await
    }

    async fn journal_page(
        &self,
        after: Option<(String, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, JournalEntry)>> {
        let limit = limit.min(PAGE_MAX);
        self.call(move |conn| {
            let (key, seq) = after.unwrap_or_default();
            let mut stmt = conn.prepare_cached(
                "SELECT seq, event_id, key, kind, fact, at_ms FROM indicator_journal
                 WHERE (key, seq) > (?1, ?2) ORDER BY key, seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![key, seq, limit], |r| {
                Ok((
                    r.get(0)?,
                    JournalEntry {
                        event_id: r.get(1)?,
                        key: r.get(2)?,
                        kind: r.get(3)?,
                        fact: r.get(4)?,
                        at_ms: r.get(5)?,
                    },
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn journal_len(&self) -> Result<i64> {
        self.call(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM indicator_journal", [], |r| r.get(0))?)
        })
        .await
    }

    async fn put_states(&self, rows: Vec<StateRow>) -> Result<u64> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            for row in &rows {
                n += upsert(&tx, row, true)? as u64;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn states(
        &self,
        received_until_ms: i64,
        ended_from_ms: i64,
        synced_to: &str,
    ) -> Result<Vec<StoredState>> {
        let dest = synced_to.to_string();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.code, s.unit, s.procedure, s.received_ms, s.end_ms, s.state,
                        s.last_seq, s.updated_ms,
                        EXISTS (SELECT 1 FROM delivered_versions d
                                WHERE d.destination = ?3 AND d.key = s.code)
                 FROM indicator_dossiers s
                 WHERE s.received_ms <= ?1 AND (s.end_ms IS NULL OR s.end_ms >= ?2)
                 ORDER BY s.code",
            )?;
            let rows = stmt.query_map(params![received_until_ms, ended_from_ms, dest], |r| {
                Ok(StoredState {
                    row: state_row(r)?,
                    synced: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn state(&self, code: &str) -> Result<Option<StateRow>> {
        let code = code.to_string();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {STATE_COLS} FROM indicator_dossiers WHERE code = ?1"
                ))?
                .query_row([code], state_row)
                .optional()?)
        })
        .await
    }

    async fn position(&self, consumer: &str) -> Result<Option<Position>> {
        let consumer = consumer.to_string();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT consumer, applied, last_event, last_seq, updated_ms
                     FROM indicator_position WHERE consumer = ?1",
                )?
                .query_row([consumer], |r| {
                    Ok(Position {
                        consumer: r.get(0)?,
                        applied: r.get(1)?,
                        last_event: r.get(2)?,
                        last_seq: r.get(3)?,
                        updated_ms: r.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }
}
