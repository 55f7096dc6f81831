//! [`AxisStore`] on SQLite: each operation one closure on the store's connection thread; a
//! status is appended in one `BEGIN IMMEDIATE` transaction (its `seq` read under the lock).

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::*;
use crate::sqlite::SqliteStore;

fn take_of(r: &Row<'_>) -> rusqlite::Result<Take> {
    Ok(Take {
        take_key: r.get(0)?,
        axis_id: r.get(1)?,
        kind: r.get(2)?,
        envelope_id: r.get(3)?,
        taken_ms: r.get(4)?,
        published_ms: r.get(5)?,
        acked_ms: r.get(6)?,
    })
}

fn status_of(r: &Row<'_>) -> rusqlite::Result<StatusRow> {
    Ok(StatusRow {
        document_id: r.get(0)?,
        seq: r.get(1)?,
        direction: r.get(2)?,
        code: r.get(3)?,
        word: r.get(4)?,
        axis_id: r.get(5)?,
        detail: r.get(6)?,
        at_ms: r.get(7)?,
    })
}

#[async_trait]
impl AxisStore for SqliteStore {
    async fn take(&self, t: Take) -> Result<Take> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO axis_taken (take_key, axis_id, kind, envelope_id, taken_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (take_key) DO NOTHING",
                params![t.take_key, t.axis_id, t.kind, t.envelope_id, t.taken_ms],
            )?;
            let stored = tx.query_row(
                &format!("SELECT {TAKE_COLS} FROM axis_taken WHERE take_key = ?1"),
                [&t.take_key],
                take_of,
            )?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn mark_published(&self, take_key: &str, at_ms: i64) -> Result<()> {
        let k = take_key.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE axis_taken SET published_ms = ?2
                 WHERE take_key = ?1 AND published_ms IS NULL",
                params![k, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn mark_acked(&self, take_key: &str, at_ms: i64) -> Result<()> {
        let k = take_key.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE axis_taken SET acked_ms = ?2 WHERE take_key = ?1 AND acked_ms IS NULL",
                params![k, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn taken(&self, take_key: &str) -> Result<Option<Take>> {
        let k = take_key.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {TAKE_COLS} FROM axis_taken WHERE take_key = ?1"),
                    [&k],
                    take_of,
                )
                .optional()?)
        })
        .await
    }

    async fn add_status(&self, s: StatusRow) -> Result<i64> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM axis_status WHERE document_id = ?1",
                [&s.document_id],
                |r| r.get(0),
            )?;
            tx.execute(
                &format!("INSERT INTO axis_status ({STATUS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![s.document_id, seq, s.direction, s.code, s.word, s.axis_id, s.detail, s.at_ms],
            )?;
            tx.commit()?;
            Ok(seq)
        })
        .await
    }

    async fn history(&self, document_id: &str) -> Result<Vec<StatusRow>> {
        let d = document_id.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {STATUS_COLS} FROM axis_status WHERE document_id = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([&d], status_of)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
