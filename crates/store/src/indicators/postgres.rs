//! [`IndicatorStore`] on PostgreSQL.
//!
//! # Invariants
//!
//! - `apply` takes a transaction-scoped advisory lock on the dossier code before reading its
//!   state (a row lock cannot cover a dossier not yet stored), so two instances never fold one
//!   dossier at once (invariant 2 of [`super`]).
//! - `apply_batch` and `put_states` send each step of a batch as one statement over arrays
//!   (`unnest`), a handful of round trips per batch whatever its size; `apply_batch` takes
//!   the advisory locks of its dossiers in one statement, in hash order (two batches never
//!   wait on each other crosswise), and journals in batch order (`seq` follows it).
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

/// The upsert of one live row.
fn upsert_sql() -> String {
    format!(
        "INSERT INTO indicator_dossiers ({STATE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (code) DO UPDATE SET unit = excluded.unit,
             procedure = excluded.procedure, received_ms = excluded.received_ms,
             end_ms = excluded.end_ms, state = excluded.state, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms"
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

/// The upsert of many rows at once, from one array per column.
fn upsert_many_sql(only_if_not_newer: bool) -> String {
    let guard = if only_if_not_newer {
        " WHERE indicator_dossiers.last_seq <= excluded.last_seq"
    } else {
        ""
    };
    format!(
        "INSERT INTO indicator_dossiers ({STATE_COLS})
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                              $6::text[], $7::int8[], $8::int8[])
         ON CONFLICT (code) DO UPDATE SET unit = excluded.unit,
             procedure = excluded.procedure, received_ms = excluded.received_ms,
             end_ms = excluded.end_ms, state = excluded.state, last_seq = excluded.last_seq,
             updated_ms = excluded.updated_ms{guard}"
    )
}

/// Rows as one array per column (for [`upsert_many_sql`]).
struct Columns {
    code: Vec<String>,
    unit: Vec<String>,
    procedure: Vec<String>,
    received_ms: Vec<Option<i64>>,
    end_ms: Vec<Option<i64>>,
    state: Vec<String>,
    last_seq: Vec<i64>,
    updated_ms: Vec<i64>,
}

impl Columns {
    fn of(rows: Vec<StateRow>) -> Columns {
        let mut c = Columns {
            code: Vec::with_capacity(rows.len()),
            unit: Vec::with_capacity(rows.len()),
            procedure: Vec::with_capacity(rows.len()),
            received_ms: Vec::with_capacity(rows.len()),
            end_ms: Vec::with_capacity(rows.len()),
            state: Vec::with_capacity(rows.len()),
            last_seq: Vec::with_capacity(rows.len()),
            updated_ms: Vec::with_capacity(rows.len()),
        };
        for r in rows {
            c.code.push(r.code);
            c.unit.push(r.unit);
            c.procedure.push(r.procedure);
            c.received_ms.push(r.received_ms);
            c.end_ms.push(r.end_ms);
            c.state.push(r.state);
            c.last_seq.push(r.last_seq);
            c.updated_ms.push(r.updated_ms);
        }
        c
    }

    fn args(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.code,
            &self.unit,
            &self.procedure,
            &self.received_ms,
            &self.end_ms,
            &self.state,
            &self.last_seq,
            &self.updated_ms,
        ]
    }
}

/// One row per code: of rows sharing a code, the one a row-by-row guarded upsert would leave
/// (the highest `last_seq`, the later one on a tie). One statement cannot touch a row twice.
fn one_per_code(rows: Vec<StateRow>) -> Vec<StateRow> {
    let mut at = std::collections::HashMap::with_capacity(rows.len());
    let mut out: Vec<StateRow> = Vec::with_capacity(rows.len());
    for r in rows {
        match at.get(&r.code) {
            Some(&i) => {
                let kept: &mut StateRow = &mut out[i];
                if r.last_seq >= kept.last_seq {
                    *kept = r;
                }
            }
            None => {
                at.insert(r.code.clone(), out.len());
                out.push(r);
            }
        }
    }
    out
}

#[async_trait]
impl IndicatorStore for PgStore {
    async fn apply_batch(
        &self,
        consumer: &str,
        entries: Vec<JournalEntry>,
        fold: BatchFold,
    ) -> Result<Vec<Applied>> {
        let mut out = vec![Applied::Duplicate; entries.len()];
        if entries.is_empty() {
            return Ok(out);
        }
        let firsts = first_occurrences(&entries);
        let ids: Vec<&str> = firsts
            .iter()
            .map(|&i| entries[i].event_id.as_str())
            .collect();
        let keys: Vec<&str> = firsts.iter().map(|&i| entries[i].key.as_str()).collect();
        let kinds: Vec<&str> = firsts.iter().map(|&i| entries[i].kind.as_str()).collect();
        let facts: Vec<&str> = firsts.iter().map(|&i| entries[i].fact.as_str()).collect();
        let ats: Vec<i64> = firsts.iter().map(|&i| entries[i].at_ms).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(h)
             FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k) l ORDER BY h",
            &[&keys],
        )
        .await
        .map_err(query)?;
        let journalled = tx
            .query(
                "INSERT INTO indicator_journal (event_id, key, kind, fact, at_ms)
                 SELECT e, k, t, f, a
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
                      WITH ORDINALITY AS b(e, k, t, f, a, n)
                 ORDER BY n
                 ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq",
                &[&ids, &keys, &kinds, &facts, &ats],
            )
            .await
            .map_err(query)?;
        let seqs: std::collections::HashMap<String, i64> =
            journalled.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut applied: Vec<(usize, i64)> = firsts
            .iter()
            .filter_map(|&i| seqs.get(&entries[i].event_id).map(|&seq| (i, seq)))
            .collect();
        applied.sort_by_key(|&(i, _)| i);
        let Some(&(last, last_seq)) = applied.last() else {
            return Ok(out); // all duplicates: nothing to write (the transaction rolls back)
        };
        for &(i, seq) in &applied {
            out[i] = Applied::Applied { seq };
        }
        let touched: Vec<&str> = applied
            .iter()
            .map(|&(i, _)| entries[i].key.as_str())
            .collect();
        let stored: std::collections::HashMap<String, String> = tx
            .query(
                "SELECT code, state FROM indicator_dossiers WHERE code = ANY($1) FOR UPDATE",
                &[&touched],
            )
            .await
            .map_err(query)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let n = applied.len() as i64;
        let rows = fold(BatchInput {
            stored,
            applied: applied.clone(),
        })
        .and_then(|rows| check_batch_rows(&entries, &applied, &rows).map(|()| rows))
        .map_err(|why| StoreError::Malformed(batch_fold_failed(why)))?;
        let cols = Columns::of(rows);
        tx.execute(&upsert_many_sql(false), &cols.args())
            .await
            .map_err(query)?;
        tx.execute(
            "INSERT INTO indicator_position (consumer, applied, last_event, last_seq, updated_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (consumer) DO UPDATE SET
                 applied = indicator_position.applied + excluded.applied,
                 last_event = excluded.last_event, last_seq = excluded.last_seq,
                 updated_ms = excluded.updated_ms",
            &[
                &consumer,
                &n,
                &entries[last].event_id,
                &last_seq,
                &crate::clock::now_ms(),
            ],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(out)
    }

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
        tx.execute(&upsert_sql(), &upsert_args(&row))
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
        if rows.is_empty() {
            return Ok(0);
        }
        let cols = Columns::of(one_per_code(rows));
        let client = self.client().await?;
        client
            .execute(&upsert_many_sql(true), &cols.args())
            .await
            .map_err(query)
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
