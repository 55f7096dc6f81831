//! [`AxisStore`] on PostgreSQL: connections from the store's pool; a status is appended in a
//! transaction that locks its document's rows (`pg_advisory_xact_lock` on the document id), so
//! two instances never take the same `seq`.

use tokio_postgres::Row;

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

fn take_of(r: &Row) -> Take {
    Take {
        take_key: r.get(0),
        axis_id: r.get(1),
        kind: r.get(2),
        envelope_id: r.get(3),
        taken_ms: r.get(4),
        published_ms: r.get(5),
        acked_ms: r.get(6),
    }
}

#[async_trait]
impl AxisStore for PgStore {
    async fn take(&self, t: Take) -> Result<Take> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO axis_taken (take_key, axis_id, kind, envelope_id, taken_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (take_key) DO NOTHING",
                &[
                    &t.take_key,
                    &t.axis_id,
                    &t.kind,
                    &t.envelope_id,
                    &t.taken_ms,
                ],
            )
            .await
            .map_err(query)?;
        let row = client
            .query_one(
                &format!("SELECT {TAKE_COLS} FROM axis_taken WHERE take_key = $1"),
                &[&t.take_key],
            )
            .await
            .map_err(query)?;
        Ok(take_of(&row))
    }

    async fn mark_published(&self, take_key: &str, at_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE axis_taken SET published_ms = $2
                 WHERE take_key = $1 AND published_ms IS NULL",
                &[&take_key, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn mark_acked(&self, take_key: &str, at_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE axis_taken SET acked_ms = $2 WHERE take_key = $1 AND acked_ms IS NULL",
                &[&take_key, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn taken(&self, take_key: &str) -> Result<Option<Take>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {TAKE_COLS} FROM axis_taken WHERE take_key = $1"),
                &[&take_key],
            )
            .await
            .map_err(query)?;
        Ok(row.as_ref().map(take_of))
    }

    async fn add_status(&self, s: StatusRow) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('axis_status:' || $1))",
            &[&s.document_id],
        )
        .await
        .map_err(query)?;
        let seq: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM axis_status WHERE document_id = $1",
                &[&s.document_id],
            )
            .await
            .map_err(query)?
            .get(0);
        tx.execute(
            &format!(
                "INSERT INTO axis_status ({STATUS_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &s.document_id,
                &seq,
                &s.direction,
                &s.code,
                &s.word,
                &s.axis_id,
                &s.detail,
                &s.at_ms,
            ],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(seq)
    }

    async fn history(&self, document_id: &str) -> Result<Vec<StatusRow>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {STATUS_COLS} FROM axis_status WHERE document_id = $1 ORDER BY seq"
                ),
                &[&document_id],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| StatusRow {
                document_id: r.get(0),
                seq: r.get(1),
                direction: r.get(2),
                code: r.get(3),
                word: r.get(4),
                axis_id: r.get(5),
                detail: r.get(6),
                at_ms: r.get(7),
            })
            .collect())
    }
}
