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

use crate::error::{Result, StoreError};

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
    open_tls(url, None).await
}

/// [`open`], with TLS to PostgreSQL when `tls` is given (as [`crate::open_tls`]).
pub async fn open_tls(
    url: &str,
    tls: Option<crate::tls::PgTls>,
) -> Result<std::sync::Arc<dyn PaymentStore>> {
    Ok(match crate::open::open_backend(url, tls).await? {
        crate::open::Backend::Postgres(s) => std::sync::Arc::new(*s),
        crate::open::Backend::Sqlite(s) => std::sync::Arc::new(s),
    })
}

fn fees_json(f: &[KnownFee]) -> String {
    serde_json::to_string(f).expect("fees serialise")
}

fn fees_from(dossier_code: &str, json: &str) -> Result<Vec<KnownFee>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Malformed(format!("known fees of {dossier_code}: {e}")))
}

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

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/payments.rs`.
#[doc(hidden)]
pub mod suite;
