//! Payment orders: one row per order, every state change in an append-only trail, and an
//! outbox of `payment.settled` notices, on SQLite and PostgreSQL (schema version 5).
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **One order per reference.** [`PaymentStore::create_order`] inserts an order or, when the
//!    reference exists, returns the stored one unchanged ([`Created::Existing`]): a retried or
//!    replayed request never makes a second order.
//! 2. **Only legal transitions.** [`PaymentStore::transition`] applies a change only when
//!    [`OrderState::allows`] says so, under a write lock on the order (SQLite `IMMEDIATE`,
//!    PostgreSQL `SELECT … FOR UPDATE`); a change to the state the order already has is
//!    [`Transitioned::Unchanged`] and writes nothing; any other is [`Transitioned::Refused`].
//! 3. **The trail, the state and the notice are one transaction.** An applied change writes the
//!    new state, one `payment_transitions` row and (when given) one `payment_outbox` row
//!    together: a settled order always has its notice queued.
//! 4. Notices leave the outbox only by [`PaymentStore::mark_notice_published`]; until then
//!    [`PaymentStore::unpublished_notices`] returns them (oldest first), so a crash between
//!    publishing and marking re-publishes (at least once; consumers dedupe on the reference).
//! 5. **Known fees only move forward.** [`PaymentStore::note_fees`] keeps, per dossier, the
//!    fees of the newest snapshot version the one-stop system sent; an older or equal version
//!    changes nothing. Orders are checked against them (`gateway::payments`).
//!
//! Schema (version 5; its statements are `IF NOT EXISTS`, so a file taken back to an older
//! version for a migration test re-runs it harmlessly):
//! ```text
//! payment_orders       reference PK, provider, dossier_code, fee_items (JSON array), amount
//!                      (VND, integer), currency, state, provider_txn, pay_url, created_ms,
//!                      deadline_ms, updated_ms
//! payment_transitions  (reference, seq) PK, from_state, to_state, source, provider_txn,
//!                      detail, at_ms
//! payment_outbox       id PK, reference, body (JSON), created_ms, published_ms
//! payment_known_fees   dossier_code PK, version, fees (JSON [{code, amount, paid}]),
//!                      updated_ms                                     (version 7)
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// A payment order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Created here (and at the provider, once `pay_url` is set); the citizen has not paid.
    Requested,
    /// The provider confirmed the payment (a verified callback or a provider query).
    Paid,
    /// The provider said the payment failed or was cancelled.
    Failed,
    /// Nobody paid before the deadline (a later verified payment still moves it to `Paid`).
    Expired,
    /// Paid, then refunded.
    Refunded,
}

impl OrderState {
    pub const ALL: [OrderState; 5] = [
        OrderState::Requested,
        OrderState::Paid,
        OrderState::Failed,
        OrderState::Expired,
        OrderState::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Requested => "requested",
            OrderState::Paid => "paid",
            OrderState::Failed => "failed",
            OrderState::Expired => "expired",
            OrderState::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state machine: requested → paid | failed | expired; expired → paid (money taken
    /// after our deadline is still recorded, never lost); paid → refunded. Everything else,
    /// `failed → paid` included (a contradiction reconciliation reports), is refused.
    pub fn allows(self, to: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, to),
            (Requested, Paid | Failed | Expired) | (Expired, Paid) | (Paid, Refunded)
        )
    }

    /// No further change is expected (refunds aside).
    pub fn is_settled(self) -> bool {
        !matches!(self, OrderState::Requested)
    }
}

/// An order to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Our reference at the provider (`vnp_TxnRef`, `MaThamChieu`, `orderId`).
    pub reference: String,
    /// The configured provider name.
    pub provider: String,
    pub dossier_code: String,
    /// The fee items this order pays (one, or all of the dossier's).
    pub fee_items: Vec<String>,
    /// Amount in VND (whole đồng).
    pub amount: i64,
    /// ISO 4217, `VND`.
    pub currency: String,
    pub created_ms: i64,
    /// Past this, a still-requested order is queried at the provider and may expire.
    pub deadline_ms: i64,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentOrder {
    #[serde(flatten)]
    pub order: NewOrder,
    pub state: OrderState,
    /// The provider's transaction number, once known.
    pub provider_txn: Option<String>,
    /// Where the citizen pays, once the provider gave it.
    pub pay_url: Option<String>,
    pub updated_ms: i64,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub reference: String,
    /// 0 for the creation (`from` is `None`), then 1, 2, …
    pub seq: i64,
    pub from: Option<OrderState>,
    pub to: OrderState,
    /// What caused it: `request`, `callback`, `query`, `expiry`, `refund` …
    pub source: String,
    pub provider_txn: Option<String>,
    /// Amounts, codes and references only (no personal or card data).
    pub detail: String,
    pub at_ms: i64,
}

/// A notice for the one-stop system, queued with the transition that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique id (the envelope id it is published as).
    pub id: String,
    pub reference: String,
    /// The JSON body to publish.
    pub body: String,
    pub created_ms: i64,
}

/// A change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub reference: String,
    pub to: OrderState,
    pub source: String,
    pub provider_txn: Option<String>,
    pub detail: String,
    pub at_ms: i64,
    /// Queued in the same transaction when the change applies.
    pub notice: Option<Notice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created it.
    New(PaymentOrder),
    /// The reference existed: the stored order, unchanged.
    Existing(PaymentOrder),
}

impl Created {
    pub fn order(&self) -> &PaymentOrder {
        match self {
            Created::New(o) | Created::Existing(o) => o,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transitioned {
    /// Applied: the order after the change.
    Applied(PaymentOrder),
    /// The order already had that state: nothing written.
    Unchanged(PaymentOrder),
    /// Illegal from the current state: nothing written.
    Refused(PaymentOrder),
    NotFound,
}

/// Payment orders, their trail and their outbox (invariants in the module docs).
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn create_order(&self, order: NewOrder) -> Result<Created>;
    /// Record where the citizen pays (idempotent; the first URL stays).
    async fn set_pay_url(&self, reference: &str, url: &str) -> Result<()>;
    async fn order(&self, reference: &str) -> Result<Option<PaymentOrder>>;
    async fn orders_for_dossier(&self, dossier_code: &str) -> Result<Vec<PaymentOrder>>;
    async fn transition(&self, change: Change) -> Result<Transitioned>;
    /// The trail of an order, creation first.
    async fn transitions(&self, reference: &str) -> Result<Vec<Transition>>;
    /// Orders of `provider` still `requested` whose deadline is before `now_ms`.
    async fn overdue(&self, provider: &str, now_ms: i64) -> Result<Vec<PaymentOrder>>;
    /// Orders of `provider` created in `[from_ms, to_ms)`.
    async fn created_between(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PaymentOrder>>;
    /// Up to `limit` unpublished notices, oldest first.
    async fn unpublished_notices(&self, limit: u32) -> Result<Vec<Notice>>;
    async fn mark_notice_published(&self, id: &str, at_ms: i64) -> Result<()>;
    /// Keep `fees` as the dossier's known fees when `version` is newer than the one kept;
    /// `true` when they were kept (invariant 5).
    async fn note_fees(&self, fees: KnownFees) -> Result<bool>;
    /// The dossier's known fees, if the one-stop system sent any.
    async fn known_fees(&self, dossier_code: &str) -> Result<Option<KnownFees>>;
}

/// One fee as the one-stop system's dossier snapshot states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFee {
    pub code: String,
    /// VND.
    pub amount: i64,
    /// The snapshot says it is paid already.
    #[serde(default)]
    pub paid: bool,
}

/// A dossier's fees at one snapshot version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFees {
    pub dossier_code: String,
    pub version: i64,
    pub fees: Vec<KnownFee>,
    pub updated_ms: i64,
}

/// Open the payment store at a store URL (the same URL [`crate::open`] takes; runs migrations).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn PaymentStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            crate::postgres::PgStore::connect(url).await?,
        ))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url).to_owned();
        let store = tokio::task::spawn_blocking(move || crate::sqlite::SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Open(format!("sqlite open task failed: {e}")))??;
        Ok(std::sync::Arc::new(store))
    }
}

pub(crate) const SQLITE_V5: &str = "
CREATE TABLE IF NOT EXISTS payment_orders (
    reference    TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    fee_items    TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    provider_txn TEXT,
    pay_url      TEXT,
    created_ms   INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS payment_orders_dossier ON payment_orders (dossier_code);
CREATE INDEX IF NOT EXISTS payment_orders_pending ON payment_orders (provider, state, deadline_ms);
CREATE INDEX IF NOT EXISTS payment_orders_created ON payment_orders (provider, created_ms);
CREATE TABLE IF NOT EXISTS payment_transitions (
    reference    TEXT NOT NULL REFERENCES payment_orders (reference),
    seq          INTEGER NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    source       TEXT NOT NULL,
    provider_txn TEXT,
    detail       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (reference, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS payment_outbox (
    id           TEXT PRIMARY KEY,
    reference    TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    published_ms INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS payment_outbox_pending ON payment_outbox (published_ms, created_ms);
";

/// Version 7: the fees each dossier's newest snapshot states (invariant 5).
pub(crate) const SQLITE_V7: &str = "
CREATE TABLE IF NOT EXISTS payment_known_fees (
    dossier_code TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    fees         TEXT NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
";

pub(crate) const PG_V7: &str = "
CREATE TABLE IF NOT EXISTS payment_known_fees (
    dossier_code TEXT PRIMARY KEY,
    version      BIGINT NOT NULL,
    fees         TEXT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
";

fn fees_json(f: &[KnownFee]) -> String {
    serde_json::to_string(f).expect("fees serialise")
}

fn fees_from(dossier_code: &str, json: &str) -> Result<Vec<KnownFee>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Malformed(format!("known fees of {dossier_code}: {e}")))
}

pub(crate) const PG_V5: &str = "
CREATE TABLE IF NOT EXISTS payment_orders (
    reference    TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    fee_items    TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    provider_txn TEXT,
    pay_url      TEXT,
    created_ms   BIGINT NOT NULL,
    deadline_ms  BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_orders_dossier ON payment_orders (dossier_code);
CREATE INDEX IF NOT EXISTS payment_orders_pending ON payment_orders (provider, state, deadline_ms);
CREATE INDEX IF NOT EXISTS payment_orders_created ON payment_orders (provider, created_ms);
CREATE TABLE IF NOT EXISTS payment_transitions (
    reference    TEXT NOT NULL REFERENCES payment_orders (reference),
    seq          BIGINT NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    source       TEXT NOT NULL,
    provider_txn TEXT,
    detail       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (reference, seq)
);
CREATE TABLE IF NOT EXISTS payment_outbox (
    id           TEXT PRIMARY KEY,
    reference    TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    published_ms BIGINT
);
CREATE INDEX IF NOT EXISTS payment_outbox_pending ON payment_outbox (published_ms, created_ms);
";

const ORDER_COLS: &str = "reference, provider, dossier_code, fee_items, amount, currency, state, \
                          provider_txn, pay_url, created_ms, deadline_ms, updated_ms";
const TRANSITION_COLS: &str =
    "reference, seq, from_state, to_state, source, provider_txn, detail, at_ms";

fn state(s: &str) -> Result<OrderState> {
    OrderState::parse(s).ok_or_else(|| StoreError::Malformed(format!("unknown order state {s:?}")))
}

fn fee_items(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| StoreError::Malformed(format!("fee_items: {e}")))
}

fn fee_items_json(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

/// The detail recorded for the creation transition.
fn created_detail(o: &NewOrder) -> String {
    format!(
        "amount={} {} fees={}",
        o.amount,
        o.currency,
        o.fee_items.len()
    )
}

mod sqlite_impl {
    use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

    use super::*;
    use crate::sqlite::{Fail, SqliteStore};

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
}

mod pg_impl {
    use tokio_postgres::Row;

    use super::*;
    use crate::postgres::{query, PgStore};

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
}

/// The shared checks, run on both stores by `tests/payments.rs`.
#[doc(hidden)]
pub mod suite {
    use super::*;

    fn order(reference: &str, dossier: &str, created_ms: i64) -> NewOrder {
        NewOrder {
            reference: reference.into(),
            provider: "vnpay".into(),
            dossier_code: dossier.into(),
            fee_items: vec!["LEPHI".into()],
            amount: 50_000,
            currency: "VND".into(),
            created_ms,
            deadline_ms: created_ms + 1_000,
        }
    }

    fn change(reference: &str, to: OrderState, notice: bool, at_ms: i64) -> Change {
        Change {
            reference: reference.into(),
            to,
            source: "callback".into(),
            provider_txn: Some("T1".into()),
            detail: "amount=50000".into(),
            at_ms,
            notice: notice.then(|| Notice {
                id: format!("n-{reference}-{}", to.as_str()),
                reference: reference.into(),
                body: "{}".into(),
                created_ms: at_ms,
            }),
        }
    }

    /// Invariants 1-4.
    pub async fn all(s: &dyn PaymentStore) {
        known_fees(s).await;
        // 1. One order per reference.
        let first = s.create_order(order("R1", "D1", 100)).await.unwrap();
        assert!(matches!(first, Created::New(_)));
        let mut again = order("R1", "D1", 999);
        again.amount = 1;
        let second = s.create_order(again).await.unwrap();
        assert_eq!(second, Created::Existing(first.order().clone()));
        assert_eq!(s.orders_for_dossier("D1").await.unwrap().len(), 1);
        s.set_pay_url("R1", "https://pay/1").await.unwrap();
        s.set_pay_url("R1", "https://pay/2").await.unwrap();
        let o = s.order("R1").await.unwrap().unwrap();
        assert_eq!(o.pay_url.as_deref(), Some("https://pay/1"));
        assert_eq!(o.state, OrderState::Requested);
        assert_eq!(s.order("nope").await.unwrap(), None);

        // 2. Legal, unchanged, refused, not found.
        assert_eq!(
            s.overdue("vnpay", 2_000).await.unwrap().len(),
            1,
            "R1 is past its deadline"
        );
        assert!(s.overdue("vnpay", 1_000).await.unwrap().is_empty());
        let paid = s
            .transition(change("R1", OrderState::Paid, true, 200))
            .await
            .unwrap();
        let Transitioned::Applied(p) = paid else {
            panic!("{paid:?}")
        };
        assert_eq!(p.state, OrderState::Paid);
        assert_eq!(p.provider_txn.as_deref(), Some("T1"));
        assert!(matches!(
            s.transition(change("R1", OrderState::Paid, true, 300))
                .await
                .unwrap(),
            Transitioned::Unchanged(_)
        ));
        assert!(matches!(
            s.transition(change("R1", OrderState::Failed, true, 300))
                .await
                .unwrap(),
            Transitioned::Refused(_)
        ));
        assert!(matches!(
            s.transition(change("R1", OrderState::Requested, false, 300))
                .await
                .unwrap(),
            Transitioned::Refused(_)
        ));
        assert_eq!(
            s.transition(change("zz", OrderState::Paid, true, 300))
                .await
                .unwrap(),
            Transitioned::NotFound
        );
        assert!(s.overdue("vnpay", 2_000).await.unwrap().is_empty());

        // 3. The trail and the notice came with the applied change only.
        let trail = s.transitions("R1").await.unwrap();
        assert_eq!(
            trail
                .iter()
                .map(|t| (t.seq, t.from, t.to))
                .collect::<Vec<_>>(),
            vec![
                (0, None, OrderState::Requested),
                (1, Some(OrderState::Requested), OrderState::Paid)
            ]
        );
        let notices = s.unpublished_notices(10).await.unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].reference, "R1");

        // Expired, then a late verified payment, then a refund.
        s.create_order(order("R2", "D1", 150)).await.unwrap();
        for (to, at) in [
            (OrderState::Expired, 400),
            (OrderState::Paid, 500),
            (OrderState::Refunded, 600),
        ] {
            assert!(matches!(
                s.transition(change("R2", to, false, at)).await.unwrap(),
                Transitioned::Applied(_)
            ));
        }
        assert_eq!(s.transitions("R2").await.unwrap().len(), 4);
        assert_eq!(
            s.created_between("vnpay", 100, 150)
                .await
                .unwrap()
                .iter()
                .map(|o| o.order.reference.as_str())
                .collect::<Vec<_>>(),
            vec!["R1"]
        );
        assert_eq!(s.created_between("vnpay", 0, 1_000).await.unwrap().len(), 2);
        assert!(s
            .created_between("other", 0, 1_000)
            .await
            .unwrap()
            .is_empty());

        // 4. Published notices leave the outbox; marking twice is harmless.
        s.mark_notice_published(&notices[0].id, 700).await.unwrap();
        s.mark_notice_published(&notices[0].id, 800).await.unwrap();
        assert!(s.unpublished_notices(10).await.unwrap().is_empty());
    }

    /// Invariant 5: the newest snapshot's fees are kept; an older or equal one changes nothing.
    async fn known_fees(s: &dyn PaymentStore) {
        let fee = |code: &str, amount: i64, paid: bool| KnownFee {
            code: code.into(),
            amount,
            paid,
        };
        let at = |version: i64, fees: Vec<KnownFee>| KnownFees {
            dossier_code: "KF-1".into(),
            version,
            fees,
            updated_ms: version * 10,
        };
        assert_eq!(s.known_fees("KF-1").await.unwrap(), None);
        assert!(s
            .note_fees(at(2, vec![fee("LEPHI", 500_000, false)]))
            .await
            .unwrap());
        assert!(!s
            .note_fees(at(1, vec![fee("LEPHI", 1, false)]))
            .await
            .unwrap());
        assert!(!s
            .note_fees(at(2, vec![fee("LEPHI", 2, false)]))
            .await
            .unwrap());
        assert_eq!(
            s.known_fees("KF-1").await.unwrap(),
            Some(at(2, vec![fee("LEPHI", 500_000, false)]))
        );
        let newer = vec![fee("LEPHI", 500_000, true), fee("PHI", 30_000, false)];
        assert!(s.note_fees(at(3, newer.clone())).await.unwrap());
        assert_eq!(s.known_fees("KF-1").await.unwrap(), Some(at(3, newer)));
    }
}
