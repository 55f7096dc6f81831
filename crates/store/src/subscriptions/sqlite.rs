//! [`SubscriptionStates`] on SQLite.
//!
//! # Invariants
//!
//! - Every operation is one closure on the store's connection thread; `enable` is one
//!   `BEGIN IMMEDIATE` transaction (the state it answers is the one it cleared).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::*;
use crate::sql::Fail;
use crate::sqlite::SqliteStore;

const COLS: &str = "subscription, disabled_since_ms, disabled_reason, failing_since_ms, updated_ms";

fn read(conn: &Connection, sub: &str) -> std::result::Result<Option<SubscriptionRow>, Fail> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM subscription_state WHERE subscription = ?1"
        ))?
        .query_row([sub], |r| {
            Ok(row_of(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .optional()?)
}

#[async_trait]
impl SubscriptionStates for SqliteStore {
    async fn state(&self, subscription: &str) -> Result<Option<SubscriptionRow>> {
        let sub = subscription.to_owned();
        self.call(move |conn| read(conn, &sub)).await
    }

    async fn states(&self) -> Result<Vec<SubscriptionRow>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLS} FROM subscription_state ORDER BY subscription"
            ))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(row_of(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn disable(&self, subscription: &str, reason: &str, at_ms: i64) -> Result<bool> {
        let (sub, reason) = (subscription.to_owned(), reason.to_owned());
        self.call(move |conn| {
            let n = conn.execute(
                "INSERT INTO subscription_state
                     (subscription, disabled_since_ms, disabled_reason, updated_ms)
                 VALUES (?1, ?2, ?3, ?2)
                 ON CONFLICT (subscription) DO UPDATE SET
                     disabled_since_ms = excluded.disabled_since_ms,
                     disabled_reason = excluded.disabled_reason,
                     updated_ms = excluded.updated_ms
                 WHERE subscription_state.disabled_since_ms IS NULL",
                params![sub, at_ms, reason],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn enable(&self, subscription: &str, at_ms: i64) -> Result<Option<Disabled>> {
        let sub = subscription.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let was = read(&tx, &sub)?.and_then(|r| r.disabled);
            tx.execute(
                "UPDATE subscription_state SET disabled_since_ms = NULL, disabled_reason = NULL,
                     failing_since_ms = NULL, updated_ms = ?2
                 WHERE subscription = ?1",
                params![sub, at_ms],
            )?;
            tx.commit()?;
            Ok(was)
        })
        .await
    }

    async fn failing(&self, subscription: &str, at_ms: i64) -> Result<i64> {
        let sub = subscription.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO subscription_state (subscription, failing_since_ms, updated_ms)
                     VALUES (?1, ?2, ?2)
                     ON CONFLICT (subscription) DO UPDATE SET
                         failing_since_ms = COALESCE(subscription_state.failing_since_ms,
                                                     excluded.failing_since_ms),
                         updated_ms = excluded.updated_ms
                     RETURNING failing_since_ms",
                )?
                .query_row(params![sub, at_ms], |r| r.get(0))?)
        })
        .await
    }

    async fn succeeded(&self, subscription: &str, at_ms: i64) -> Result<()> {
        let sub = subscription.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE subscription_state SET failing_since_ms = NULL, updated_ms = ?2
                 WHERE subscription = ?1 AND failing_since_ms IS NOT NULL",
                params![sub, at_ms],
            )?;
            Ok(())
        })
        .await
    }
}
