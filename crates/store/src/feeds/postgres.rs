//! [`FeedStore`] on PostgreSQL.
//!
//! # Invariants
//!
//! - An append or a purge locks the subscription's head row (`SELECT … FOR UPDATE`) before it
//!   reads anything else, in the transaction that writes: appenders on every instance take
//!   turns, so sequence numbers are gapless and committed in order (invariant 1 of [`super`]);
//!   the event-id check made after the lock sees every earlier append (read committed takes a
//!   new snapshot per statement), so a racing duplicate finds the first one.
//! - A page, a replay cursor and the counters read in one `REPEATABLE READ` read-only
//!   transaction: the head and its entries are one snapshot, so a purge running meanwhile can
//!   never make a page skip entries.
//! - Connections come from the store's pool; a failed statement is `StoreError::Query`.

use tokio_postgres::{IsolationLevel, Row};

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

fn decode(r: &Row) -> Result<Entry> {
    let fields: String = r.get(5);
    Ok(Entry {
        seq: r.get(0),
        entry: NewEntry {
            event_id: r.get(1),
            dossier: r.get(2),
            kind: r.get(3),
            payload: r.get(4),
            fields: fields_from(&fields)?,
            digest: r.get(6),
            at_ms: r.get(7),
        },
    })
}

/// (last_seq, purged_through, purged_newest_ms, fetched_through)
type Head = (i64, i64, Option<i64>, i64);

const HEAD: &str = "SELECT last_seq, purged_through, purged_newest_ms, fetched_through
                    FROM feed_heads WHERE subscription = $1";

fn head_of(r: &Row) -> Head {
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The head row locked for this transaction, created first if missing.
async fn lock_head(tx: &tokio_postgres::Transaction<'_>, sub: &str) -> Result<Head> {
    tx.execute(
        "INSERT INTO feed_heads (subscription, last_seq, purged_through, fetched_through)
         VALUES ($1, 0, 0, 0) ON CONFLICT (subscription) DO NOTHING",
        &[&sub],
    )
    .await
    .map_err(query)?;
    let row = tx
        .query_one(&format!("{HEAD} FOR UPDATE"), &[&sub])
        .await
        .map_err(query)?;
    Ok(head_of(&row))
}

impl PgStore {
    /// A read-only snapshot transaction on `client`.
    async fn snapshot<'a>(
        client: &'a mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'a>> {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(query)
    }
}

#[async_trait]
impl FeedStore for PgStore {
    async fn append(&self, subscription: &str, e: NewEntry) -> Result<Appended> {
        check_size(subscription, &e)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let (last, ..) = lock_head(&tx, subscription).await?;
        if let Some(row) = tx
            .query_opt(
                "SELECT seq FROM feed_entries WHERE subscription = $1 AND event_id = $2",
                &[&subscription, &e.event_id],
            )
            .await
            .map_err(query)?
        {
            tx.commit().await.map_err(query)?;
            return Ok(Appended::Existing(row.get(0)));
        }
        let seq = last + 1;
        tx.execute(
            "INSERT INTO feed_entries (subscription, seq, event_id, dossier, kind, payload,
                 fields, digest, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &subscription,
                &seq,
                &e.event_id,
                &e.dossier,
                &e.kind,
                &e.payload,
                &fields_json(&e.fields),
                &e.digest,
                &e.at_ms,
            ],
        )
        .await
        .map_err(query)?;
        tx.execute(
            "UPDATE feed_heads SET last_seq = $2 WHERE subscription = $1",
            &[&subscription, &seq],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(Appended::New(seq))
    }

    async fn page(&self, subscription: &str, after: i64, limit: u32) -> Result<PageAnswer> {
        let mut client = self.client().await?;
        let tx = Self::snapshot(&mut client).await?;
        let (last, purged, ..) = tx
            .query_opt(HEAD, &[&subscription])
            .await
            .map_err(query)?
            .map_or((0, 0, None, 0), |r| head_of(&r));
        if let Some(a) = judge(after, last, purged) {
            return Ok(a);
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTRY_COLS} FROM feed_entries WHERE subscription = $1 AND seq > $2
                     ORDER BY seq LIMIT $3"
                ),
                &[&subscription, &after, &clamp(limit)],
            )
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)?;
        let entries = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(PageAnswer::Page(Page {
            after,
            next: entries.last().map_or(after, |e| e.seq),
            entries,
            head: last,
        }))
    }

    async fn cursor_since(&self, subscription: &str, at_ms: i64) -> Result<Since> {
        let mut client = self.client().await?;
        let tx = Self::snapshot(&mut client).await?;
        let Some((last, purged, purged_newest, _)) = tx
            .query_opt(HEAD, &[&subscription])
            .await
            .map_err(query)?
            .map(|r| head_of(&r))
        else {
            return Ok(Since::Cursor(0));
        };
        if purged_newest.is_some_and(|p| at_ms <= p) {
            return Ok(Since::Gone { oldest: purged });
        }
        let first: Option<i64> = tx
            .query_one(
                "SELECT MIN(seq) FROM feed_entries
                 WHERE subscription = $1 AND seq > $2 AND at_ms >= $3",
                &[&subscription, &purged, &at_ms],
            )
            .await
            .map_err(query)?
            .get(0);
        tx.commit().await.map_err(query)?;
        Ok(Since::Cursor(first.map_or(last, |s| s - 1)))
    }

    async fn purge(&self, subscription: &str, before_ms: i64) -> Result<Purged> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let (last, purged, old_newest, _) = lock_head(&tx, subscription).await?;
        let first_kept: Option<i64> = tx
            .query_one(
                "SELECT MIN(seq) FROM feed_entries
                 WHERE subscription = $1 AND seq > $2 AND at_ms >= $3",
                &[&subscription, &purged, &before_ms],
            )
            .await
            .map_err(query)?
            .get(0);
        let through = first_kept.map_or(last, |s| s - 1);
        if through <= purged {
            tx.commit().await.map_err(query)?;
            return Ok(Purged {
                through: purged,
                removed: 0,
            });
        }
        let newest: Option<i64> = tx
            .query_one(
                "SELECT MAX(at_ms) FROM feed_entries
                 WHERE subscription = $1 AND seq > $2 AND seq <= $3",
                &[&subscription, &purged, &through],
            )
            .await
            .map_err(query)?
            .get(0);
        let removed = tx
            .execute(
                "DELETE FROM feed_entries WHERE subscription = $1 AND seq > $2 AND seq <= $3",
                &[&subscription, &purged, &through],
            )
            .await
            .map_err(query)?;
        tx.execute(
            "UPDATE feed_heads SET purged_through = $2, purged_newest_ms = $3
             WHERE subscription = $1",
            &[&subscription, &through, &old_newest.max(newest)],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(Purged { through, removed })
    }

    async fn note_fetched(&self, subscription: &str, through: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE feed_heads SET fetched_through = $2
                 WHERE subscription = $1 AND fetched_through < $2 AND $2 <= last_seq",
                &[&subscription, &through],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn stats(&self, subscription: &str) -> Result<FeedStats> {
        let mut client = self.client().await?;
        let tx = Self::snapshot(&mut client).await?;
        let Some((last, purged, _, fetched)) = tx
            .query_opt(HEAD, &[&subscription])
            .await
            .map_err(query)?
            .map(|r| head_of(&r))
        else {
            return Ok(FeedStats::default());
        };
        let row = tx
            .query_one(
                "SELECT (SELECT COUNT(*) FROM feed_entries WHERE subscription = $1),
                        (SELECT at_ms FROM feed_entries WHERE subscription = $1 AND seq > $2
                         ORDER BY seq LIMIT 1)",
                &[&subscription, &fetched.max(purged)],
            )
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(FeedStats {
            head: last,
            purged_through: purged,
            fetched_through: fetched,
            entries: row.get(0),
            oldest_unfetched_ms: row.get(1),
        })
    }
}
