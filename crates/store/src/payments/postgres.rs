//! [`PaymentStore`] on PostgreSQL.
//!
//! # Invariants
//!
//! - A change locks its order (`SELECT … FOR UPDATE`) in the transaction that writes the new
//!   state, the trail row and the notice (invariants 2 and 3 of [`super`]).
//! - Connections come from the store's pool; a failed statement is `StoreError::Query`.

use tokio_postgres::Row;

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

fn decode(r: &Row) -> Result<PaymentOrder> {
    let fees: String = r.get(3);
    let st: String = r.get(6);
    Ok(PaymentOrder {
        order: NewOrder {
            reference: r.get(0),
            provider: r.get(1),
            dossier_code: r.get(2),
            fee_items: fee_items(&fees)?,
            amount: r.get(4),
            currency: r.get(5),
            created_ms: r.get(9),
            deadline_ms: r.get(10),
        },
        state: state(&st)?,
        provider_txn: r.get(7),
        pay_url: r.get(8),
        updated_ms: r.get(11),
    })
}

impl PgStore {
    async fn orders_where(
        &self,
        cond: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<PaymentOrder>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {ORDER_COLS} FROM payment_orders WHERE {cond}"),
                args,
            )
            .await
            .map_err(query)?;
        rows.iter().map(decode).collect()
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn create_order(&self, o: NewOrder) -> Result<Created> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let inserted = tx
            .execute(
                "INSERT INTO payment_orders (reference, provider, dossier_code, fee_items,
                     amount, currency, state, created_ms, deadline_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, $7)
                 ON CONFLICT (reference) DO NOTHING",
                &[
                    &o.reference,
                    &o.provider,
                    &o.dossier_code,
                    &fee_items_json(&o.fee_items),
                    &o.amount,
                    &o.currency,
                    &o.created_ms,
                    &o.deadline_ms,
                ],
            )
            .await
            .map_err(query)?;
        if inserted == 1 {
            tx.execute(
                "INSERT INTO payment_transitions (reference, seq, from_state, to_state,
                     source, provider_txn, detail, at_ms)
                 VALUES ($1, 0, NULL, 'requested', 'request', NULL, $2, $3)",
                &[&o.reference, &created_detail(&o), &o.created_ms],
            )
            .await
            .map_err(query)?;
        }
        let row = tx
            .query_one(
                &format!("SELECT {ORDER_COLS} FROM payment_orders WHERE reference = $1"),
                &[&o.reference],
            )
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)?;
        let order = decode(&row)?;
        Ok(if inserted == 1 {
            Created::New(order)
        } else {
            Created::Existing(order)
        })
    }

    async fn set_pay_url(&self, reference: &str, url: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE payment_orders SET pay_url = $2 WHERE reference = $1 AND pay_url IS NULL",
                &[&reference, &url],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn order(&self, reference: &str) -> Result<Option<PaymentOrder>> {
        Ok(self
            .orders_where("reference = $1", &[&reference])
            .await?
            .pop())
    }

    async fn orders_for_dossier(&self, dossier_code: &str) -> Result<Vec<PaymentOrder>> {
        self.orders_where(
            "dossier_code = $1 ORDER BY created_ms, reference",
            &[&dossier_code],
        )
        .await
    }

    async fn transition(&self, c: Change) -> Result<Transitioned> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let select =
            format!("SELECT {ORDER_COLS} FROM payment_orders WHERE reference = $1 FOR UPDATE");
        let Some(row) = tx
            .query_opt(&select, &[&c.reference])
            .await
            .map_err(query)?
        else {
            return Ok(Transitioned::NotFound);
        };
        let current = decode(&row)?;
        if current.state == c.to {
            return Ok(Transitioned::Unchanged(current));
        }
        if !current.state.allows(c.to) {
            return Ok(Transitioned::Refused(current));
        }
        tx.execute(
            "UPDATE payment_orders SET state = $2, provider_txn = COALESCE($3, provider_txn),
                 updated_ms = $4 WHERE reference = $1",
            &[&c.reference, &c.to.as_str(), &c.provider_txn, &c.at_ms],
        )
        .await
        .map_err(query)?;
        tx.execute(
            "INSERT INTO payment_transitions (reference, seq, from_state, to_state, source,
                 provider_txn, detail, at_ms)
             SELECT $1, COALESCE(MAX(seq), -1) + 1, $2, $3, $4, $5, $6, $7
             FROM payment_transitions WHERE reference = $1",
            &[
                &c.reference,
                &current.state.as_str(),
                &c.to.as_str(),
                &c.source,
                &c.provider_txn,
                &c.detail,
                &c.at_ms,
            ],
        )
        .await
        .map_err(query)?;
        if let Some(n) = &c.notice {
            tx.execute(
                "INSERT INTO payment_outbox (id, reference, body, created_ms) VALUES ($1, $2, $3, $4)",
                &[&n.id, &n.reference, &n.body, &n.created_ms],
            )
            .await
            .map_err(query)?;
        }
        let row = tx
            .query_one(&select, &[&c.reference])
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(Transitioned::Applied(decode(&row)?))
    }

    async fn transitions(&self, reference: &str) -> Result<Vec<Transition>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TRANSITION_COLS} FROM payment_transitions WHERE reference = $1
                     ORDER BY seq"
                ),
                &[&reference],
            )
            .await
            .map_err(query)?;
        rows.iter()
            .map(|r| {
                let from: Option<String> = r.get(2);
                let to: String = r.get(3);
                Ok(Transition {
                    reference: r.get(0),
                    seq: r.get(1),
                    from: from.as_deref().map(state).transpose()?,
                    to: state(&to)?,
                    source: r.get(4),
                    provider_txn: r.get(5),
                    detail: r.get(6),
                    at_ms: r.get(7),
                })
            })
            .collect()
    }

    async fn overdue(&self, provider: &str, now_ms: i64) -> Result<Vec<PaymentOrder>> {
        self.orders_where(
            "provider = $1 AND state = 'requested' AND deadline_ms < $2
             ORDER BY deadline_ms, reference",
            &[&provider, &now_ms],
        )
        .await
    }

    async fn created_between(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PaymentOrder>> {
        self.orders_where(
            "provider = $1 AND created_ms >= $2 AND created_ms < $3
             ORDER BY created_ms, reference",
            &[&provider, &from_ms, &to_ms],
        )
        .await
    }

    async fn unpublished_notices(&self, limit: u32) -> Result<Vec<Notice>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, reference, body, created_ms FROM payment_outbox
                 WHERE published_ms IS NULL ORDER BY created_ms, id LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| Notice {
                id: r.get(0),
                reference: r.get(1),
                body: r.get(2),
                created_ms: r.get(3),
            })
            .collect())
    }

    async fn mark_notice_published(&self, id: &str, at_ms: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE payment_outbox SET published_ms = $2 WHERE id = $1 AND published_ms IS NULL",
                &[&id, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn note_fees(&self, k: KnownFees) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO payment_known_fees (dossier_code, version, fees, updated_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (dossier_code) DO UPDATE
                   SET version = excluded.version, fees = excluded.fees,
                       updated_ms = excluded.updated_ms
                   WHERE excluded.version > payment_known_fees.version",
                &[
                    &k.dossier_code,
                    &k.version,
                    &fees_json(&k.fees),
                    &k.updated_ms,
                ],
            )
            .await
            .map_err(query)?;
        Ok(n == 1)
    }

    async fn known_fees(&self, dossier_code: &str) -> Result<Option<KnownFees>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT version, fees, updated_ms FROM payment_known_fees
                 WHERE dossier_code = $1",
                &[&dossier_code],
            )
            .await
            .map_err(query)?;
        row.map(|r| {
            let json: String = r.get(1);
            Ok(KnownFees {
                dossier_code: dossier_code.to_owned(),
                version: r.get(0),
                fees: fees_from(dossier_code, &json)?,
                updated_ms: r.get(2),
            })
        })
        .transpose()
    }
}
