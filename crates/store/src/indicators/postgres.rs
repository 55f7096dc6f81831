//! [`IndicatorStore`] on PostgreSQL.
//!
//! # Invariants
//!
//! - `apply` takes a transaction-scoped advisory lock on the dossier code before reading its
//!   state (a row lock cannot cover a dossier not yet stored), so two instances never fold one
//!   dossier at once (invariant 2 of [`super`]).
//! - Connections come from the store's pool; a failed statement is `StoreError::Query`.

use tokio_postgres::Row;

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

const STATE_COLS: &str = "code, unit, procedure, received_ms, end_ms, state, last_seq, updated_ms";

fn state_row(r: &Row) -> StateRow {
    StateRow {
        code: r.get(0),
        unit: r.get(1),
        procedure: r.get(2),
        received_ms: r.get(3),
        end_ms: r.get(4),
        state: r.get(5),
        last_seq: r.get(6),
        updated_ms: r.get(7),
    }
}

fn upsert_sql(only_if_not_newer: bool) -> String {
    let guard = if only_if_not_newer {
        " WHERE indicator_dossiers.last_seq <= excluded.last_seq"
    } else {
        ""
    };
    format!(
        "INSERT INTO indicator_dossiers ({STATE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (code) DO UPDATE SET unit = excluded.unit,
             procedure = excluded.procedure, received_ms = excluded.received_ms,
             end_ms = excluded.end_ms, state = excluded.state, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms{guard}"
    )
}

fn upsert_args(row: &StateRow) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
    [
        &row.code,
        &row.unit,
        &row.procedure,
        &row.received_ms,
        &row.end_ms,
        &row.state,
        &row.last_seq,
        &row.updated_ms,
    ]
}

#[async_trait]
impl IndicatorStore for PgStore {
    async fn apply(&self, consumer: &str, e: JournalEntry, fold: Fold) -> Result<Applied> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&e.key])
            .await
            .map_err(query)?;
        let Some(seq) = tx
            .query_opt(
                "INSERT INTO indicator_journal (event_id, key, kind, fact, at_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING seq",
                &[&e.event_id, &e.key, &e.kind, &e.fact, &e.at_ms],
            )
            .await
            .map_err(query)?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(Applied::Duplicate);
        };
        let stored: Option<String> = tx
            .query_opt(
                "SELECT state FROM indicator_dossiers WHERE code = $1 FOR UPDATE",
                &[&e.key],
            )
            .await
            .map_err(query)?
            .map(|r| r.get(0));
        let row = fold(stored, seq).map_err(|why| fold_failed(&e.key, why))?;
        tx.execute(&upsert_sql(false), &upsert_args(&row))
            .await
            .map_err(query)?;
        tx.execute(
            "INSERT INTO indicator_position (consumer, applied, last_event, last_seq, updated_ms)
             VALUES ($1, 1, $2, $3, $4)
             ON CONFLICT (consumer) DO UPDATE SET applied = indicator_position.applied + 1,
                 last_event = excluded.last_event, last_seq = excluded.last_seq,
                 updated_ms = excluded.updated_ms",
            &[&consumer, &e.event_id, &seq, &crate::clock::now_ms()],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(Applied::Applied { seq })
    }

    async fn journal_page(
        &self,
        after: Option<(String, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, JournalEntry)>> {
        let client = self.client().await?;
        let (key, seq) = after.unwrap_or_default();
        let limit = i64::from(limit.min(PAGE_MAX));
        let rows = client
            .query(
                "SELECT seq, event_id, key, kind, fact, at_ms FROM indicator_journal
                 WHERE (key COLLATE \"C\", seq) > ($1 COLLATE \"C\", $2)
                 ORDER BY key COLLATE \"C\", seq LIMIT $3",
                &[&key, &seq, &limit],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    JournalEntry {
                        event_id: r.get(1),
                        key: r.get(2),
                        kind: r.get(3),
                        fact: r.get(4),
                        at_ms: r.get(5),
                    },
                )
            })
            .collect())
    }

    async fn journal_len(&self) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COUNT(*) FROM indicator_journal", &[])
            .await
            .map_err(query)?
            .get(0))
    }

    async fn put_states(&self, rows: Vec<StateRow>) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let stmt = tx.prepare(&upsert_sql(true)).await.map_err(query)?;
        let mut n = 0;
        for row in &rows {
            n += tx.execute(&stmt, &upsert_args(row)).await.map_err(query)?;
        }
        tx.commit().await.map_err(query)?;
        Ok(n)
    }

    async fn states(
        &self,
        received_until_ms: i64,
        ended_from_ms: i64,
        synced_to: &str,
    ) -> Result<Vec<StoredState>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.code, s.unit, s.procedure, s.received_ms, s.end_ms, s.state,
                        s.last_seq, s.updated_ms,
                        EXISTS (SELECT 1 FROM delivered_versions d
                                WHERE d.destination = $3 AND d.key = s.code)
                 FROM indicator_dossiers s
                 WHERE s.received_ms <= $1 AND (s.end_ms IS NULL OR s.end_ms >= $2)
                 ORDER BY s.code",
                &[&received_until_ms, &ended_from_ms, &synced_to],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| StoredState {
                row: state_row(r),
                synced: r.get(8),
            })
            .collect())
    }

    async fn state(&self, code: &str) -> Result<Option<StateRow>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!("SELECT {STATE_COLS} FROM indicator_dossiers WHERE code = $1"),
                &[&code],
            )
            .await
            .map_err(query)?
            .map(|r| state_row(&r)))
    }

    async fn position(&self, consumer: &str) -> Result<Option<Position>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT consumer, applied, last_event, last_seq, updated_ms
                 FROM indicator_position WHERE consumer = $1",
                &[&consumer],
            )
            .await
            .map_err(query)?
            .map(|r| Position {
                consumer: r.get(0),
                applied: r.get(1),
                last_event: r.get(2),
                last_seq: r.get(3),
                updated_ms: r.get(4),
            }))
    }
}
