//! [`SubscriptionStates`] on PostgreSQL.
//!
//! # Invariants
//!
//! - Connections come from the store's pool; a failed statement is `StoreError::Query`.
//! - `enable` reads the row `FOR UPDATE` and clears it in one transaction (the state it
//!   answers is the one it cleared, even with another instance enabling at once).

use tokio_postgres::Row;

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

const COLS: &str = "subscription, disabled_since_ms, disabled_reason, failing_since_ms, updated_ms";

fn row(r: &Row) -> SubscriptionRow {
    row_of(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

#[async_trait]
impl SubscriptionStates for PgStore {
    async fn state(&self, subscription: &str) -> Result<Option<SubscriptionRow>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!("SELECT {COLS} FROM subscription_state WHERE subscription = $1"),
                &[&subscription],
            )
            .await
            .map_err(query)?
            .map(|r| row(&r)))
    }

    async fn states(&self) -> Result<Vec<SubscriptionRow>> {
        let client = self.client().await?;
        Ok(client
            .query(
                &format!("SELECT {COLS} FROM subscription_state ORDER BY subscription"),
                &[],
            )
            .await
            .map_err(query)?
            .iter()
            .map(row)
            .collect())
    }

    async fn disable(&self, subscription: &str, reason: &str, at_ms: i64) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO subscription_state
                     (subscription, disabled_since_ms, disabled_reason, updated_ms)
                 VALUES ($1, $2, $3, $2)
                 ON CONFLICT (subscription) DO UPDATE SET
                     disabled_since_ms = excluded.disabled_since_ms,
                     disabled_reason = excluded.disabled_reason,
                     updated_ms = excluded.updated_ms
                 WHERE subscription_state.disabled_since_ms IS NULL",
                &[&subscription, &at_ms, &reason],
            )
            .await
            .map_err(query)?;
        Ok(n == 1)
    }

    async fn enable(&self, subscription: &str, at_ms: i64) -> Result<Option<Disabled>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let was = tx
            .query_opt(
                &format!(
                    "SELECT {COLS} FROM subscription_state WHERE subscription = $1 FOR UPDATE"
                ),
                &[&subscription],
            )
            .await
            .map_err(query)?
            .and_then(|r| row(&r).disabled);
        tx.execute(
            "UPDATE subscription_state SET disabled_since_ms = NULL, disabled_reason = NULL,
                 failing_since_ms = NULL, updated_ms = $2
             WHERE subscription = $1",
            &[&subscription, &at_ms],
        )
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(was)
    }

    async fn failing(&self, subscription: &str, at_ms: i64) -> Result<i64> {
        let client = self.client().await?;
        let r = client
            .query_one(
                "INSERT INTO subscription_state (subscription, failing_since_ms, updated_ms)
                 VALUES ($1, $2, $2)
                 ON CONFLICT (subscription) DO UPDATE SET
                     failing_since_ms = COALESCE(subscription_state.failing_since_ms,
                                                 excluded.failing_since_ms),
                     updated_ms = excluded.updated_ms
                 RETURNING failing_since_ms",
                &[&subscription, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(r.get(0))
    }

    async fn succeeded(&self, subscription: &str, at_ms: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE subscription_state SET failing_since_ms = NULL, updated_ms = $2
                 WHERE subscription = $1 AND failing_since_ms IS NOT NULL",
                &[&subscription, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }
}
