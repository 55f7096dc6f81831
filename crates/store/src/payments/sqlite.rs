//! [`PaymentStore`] on SQLite.
//!
//! # Invariants
//!
//! - Every operation runs as one closure on the store's connection thread; a change (order,
//!   trail row, notice) is one `BEGIN IMMEDIATE` transaction, so the write lock is taken before
//!   the order is read (invariant 2 of [`super`]).
//! - Raw columns are decoded outside rusqlite, so a bad value is `Malformed`, not a failed query.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::*;
use crate::sql::Fail;
use crate::sqlite::SqliteStore;

/// Raw columns, decoded outside rusqlite so a bad value is `Malformed`.
type RawOrder = (NewOrderRaw, String, Option<String>, Option<String>, i64);
type NewOrderRaw = (String, String, String, String, i64, String, i64, i64);

fn raw_order(r: &Row<'_>) -> rusqlite::Result<RawOrder> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(9)?,
            r.get(10)?,
        ),
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(11)?,
    ))
}

fn decode(raw: RawOrder) -> Result<PaymentOrder> {
    let (
        (reference, provider, dossier_code, fees, amount, currency, created_ms, deadline_ms),
        st,
        txn,
        url,
        updated_ms,
    ) = raw;
    Ok(PaymentOrder {
        order: NewOrder {
            reference,
            provider,
            dossier_code,
            fee_items: fee_items(&fees)?,
            amount,
            currency,
            created_ms,
            deadline_ms,
        },
        state: state(&st)?,
        provider_txn: txn,
        pay_url: url,
        updated_ms,
    })
}

fn load(conn: &Connection, reference: &str) -> std::result::Result<Option<RawOrder>, Fail> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ORDER_COLS} FROM payment_orders WHERE reference = ?1"
        ))?
        .query_row([reference], raw_order)
        .optional()?)
}

fn list(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> std::result::Result<Vec<RawOrder>, Fail> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, raw_order)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn decode_all(raws: Vec<RawOrder>) -> Result<Vec<PaymentOrder>> {
    raws.into_iter().map(decode).collect()
}

enum RawTransitioned {
    Applied(RawOrder),
    Unchanged(RawOrder),
    Refused(RawOrder),
    NotFound,
}

fn apply(conn: &mut Connection, c: &Change) -> std::result::Result<RawTransitioned, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(raw) = load(&tx, &c.reference)? else {
        return Ok(RawTransitioned::NotFound);
    };
    let Some(from) = OrderState::parse(&raw.1) else {
        // Decoding reports it as malformed.
        return Ok(RawTransitioned::Refused(raw));
    };
    if from == c.to {
        return Ok(RawTransitioned::Unchanged(raw));
    }
    if !from.allows(c.to) {
        return Ok(RawTransitioned::Refused(raw));
    }
    tx.execute(
        "UPDATE payment_orders SET state = ?2, provider_txn = COALESCE(?3, provider_txn),
             updated_ms = ?4 WHERE reference = ?1",
        params![c.reference, c.to.as_str(), c.provider_txn, c.at_ms],
    )?;
    tx.execute(
        "INSERT INTO payment_transitions (reference, seq, from_state, to_state, source,
             provider_txn, detail, at_ms)
         SELECT ?1, COALESCE(MAX(seq), -1) + 1, ?2, ?3, ?4, ?5, ?6, ?7
         FROM payment_transitions WHERE reference = ?1",
        params![
            c.reference,
            from.as_str(),
            c.to.as_str(),
            c.source,
            c.provider_txn,
            c.detail,
            c.at_ms
        ],
    )?;
    if let Some(n) = &c.notice {
        tx.execute(
            "INSERT INTO payment_outbox (id, reference, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![n.id, n.reference, n.body, n.created_ms],
        )?;
    }
    let after = load(&tx, &c.reference)?.expect("the row was just updated");
    tx.commit()?;
    Ok(RawTransitioned::Applied(after))
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn create_order(&self, o: NewOrder) -> Result<Created> {
        let (created, raw) = self
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let inserted = tx.execute(
                    "INSERT INTO payment_orders (reference, provider, dossier_code, fee_items,
                         amount, currency, state, created_ms, deadline_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'requested', ?7, ?8, ?7)
                     ON CONFLICT (reference) DO NOTHING",
                    params![
                        o.reference,
                        o.provider,
                        o.dossier_code,
                        fee_items_json(&o.fee_items),
                        o.amount,
                        o.currency,
                        o.created_ms,
                        o.deadline_ms
                    ],
                )?;
                if inserted == 1 {
                    tx.execute(
                        "INSERT INTO payment_transitions (reference, seq, from_state, to_state,
                             source, provider_txn, detail, at_ms)
                         VALUES (?1, 0, NULL, 'requested', 'request', NULL, ?2, ?3)",
                        params![o.reference, created_detail(&o), o.created_ms],
                    )?;
                }
                let raw = load(&tx, &o.reference)?.expect("inserted or existing");
                tx.commit()?;
                Ok((inserted == 1, raw))
            })
            .await?;
        let order = decode(raw)?;
        Ok(if created {
            Created::New(order)
        } else {
            Created::Existing(order)
        })
    }

    async fn set_pay_url(&self, reference: &str, url: &str) -> Result<()> {
        let (reference, url) = (reference.to_owned(), url.to_owned());
        self.call(move |conn| {
            conn.execute(
                "UPDATE payment_orders SET pay_url = ?2 WHERE reference = ?1 AND pay_url IS NULL",
                params![reference, url],
            )?;
            Ok(())
        })
        .await
    }

    async fn order(&self, reference: &str) -> Result<Option<PaymentOrder>> {
        let reference = reference.to_owned();
        self.call(move |conn| load(conn, &reference))
            .await?
            .map(decode)
            .transpose()
    }

    async fn orders_for_dossier(&self, dossier_code: &str) -> Result<Vec<PaymentOrder>> {
        let code = dossier_code.to_owned();
        decode_all(
            self.call(move |conn| {
                list(
                    conn,
                    &format!(
                        "SELECT {ORDER_COLS} FROM payment_orders WHERE dossier_code = ?1
                         ORDER BY created_ms, reference"
                    ),
                    [code],
                )
            })
            .await?,
        )
    }

    async fn transition(&self, change: Change) -> Result<Transitioned> {
        Ok(match self.call(move |conn| apply(conn, &change)).await? {
            RawTransitioned::Applied(r) => Transitioned::Applied(decode(r)?),
            RawTransitioned::Unchanged(r) => Transitioned::Unchanged(decode(r)?),
            RawTransitioned::Refused(r) => Transitioned::Refused(decode(r)?),
            RawTransitioned::NotFound => Transitioned::NotFound,
        })
    }

    async fn transitions(&self, reference: &str) -> Result<Vec<Transition>> {
        let reference = reference.to_owned();
        type Raw = (
            String,
            i64,
            Option<String>,
            String,
            String,
            Option<String>,
            String,
            i64,
        );
        let raws: Vec<Raw> = self
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {TRANSITION_COLS} FROM payment_transitions WHERE reference = ?1
                     ORDER BY seq"
                ))?;
                let rows = stmt.query_map([reference], |r| {
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
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        raws.into_iter()
            .map(
                |(reference, seq, from, to, source, provider_txn, detail, at_ms)| {
                    Ok(Transition {
                        reference,
                        seq,
                        from: from.as_deref().map(state).transpose()?,
                        to: state(&to)?,
                        source,
                        provider_txn,
                        detail,
                        at_ms,
                    })
                },
            )
            .collect()
    }

    async fn overdue(&self, provider: &str, now_ms: i64) -> Result<Vec<PaymentOrder>> {
        let provider = provider.to_owned();
        decode_all(
            self.call(move |conn| {
                list(
                    conn,
                    &format!(
                        "SELECT {ORDER_COLS} FROM payment_orders
                         WHERE provider = ?1 AND state = 'requested' AND deadline_ms < ?2
                         ORDER BY deadline_ms, reference"
                    ),
                    params![provider, now_ms],
                )
            })
            .await?,
        )
    }

    async fn created_between(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PaymentOrder>> {
        let provider = provider.to_owned();
        decode_all(
            self.call(move |conn| {
                list(
                    conn,
                    &format!(
                        "SELECT {ORDER_COLS} FROM payment_orders
                         WHERE provider = ?1 AND created_ms >= ?2 AND created_ms < ?3
                         ORDER BY created_ms, reference"
                    ),
                    params![provider, from_ms, to_ms],
                )
            })
            .await?,
        )
    }

    async fn unpublished_notices(&self, limit: u32) -> Result<Vec<Notice>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, reference, body, created_ms FROM payment_outbox
                 WHERE published_ms IS NULL ORDER BY created_ms, id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(Notice {
                    id: r.get(0)?,
                    reference: r.get(1)?,
                    body: r.get(2)?,
                    created_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn mark_notice_published(&self, id: &str, at_ms: i64) -> Result<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE payment_outbox SET published_ms = ?2 WHERE id = ?1 AND published_ms IS NULL",
                params![id, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn note_fees(&self, k: KnownFees) -> Result<bool> {
        let json = fees_json(&k.fees);
        self.call(move |conn| {
            let n = conn.execute(
                "INSERT INTO payment_known_fees (dossier_code, version, fees, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (dossier_code) DO UPDATE
                   SET version = excluded.version, fees = excluded.fees,
                       updated_ms = excluded.updated_ms
                   WHERE excluded.version > payment_known_fees.version",
                params![k.dossier_code, k.version, json, k.updated_ms],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn known_fees(&self, dossier_code: &str) -> Result<Option<KnownFees>> {
        let code = dossier_code.to_owned();
        let row: Option<(i64, String, i64)> = self
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT version, fees, updated_ms FROM payment_known_fees
                         WHERE dossier_code = ?1",
                        [code],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?)
            })
            .await?;
        row.map(|(version, json, updated_ms)| {
            Ok(KnownFees {
                dossier_code: dossier_code.to_owned(),
                version,
                fees: fees_from(dossier_code, &json)?,
                updated_ms,
            })
        })
        .transpose()
    }
}
