//! Online fee payment: orders at a provider, verified callbacks, one order per fee,
//! `payment.settled` notices for the one-stop system, and reconciliation.
//!
//! # Invariants
//! - **One order per fee (or per dossier).** The order reference is derived deterministically
//!   from the dossier code, the fee item(s) and the attempt number ([`order_reference`]) and the
//!   order is stored *before* the provider is called; a retried or replayed request finds the
//!   stored order and reuses it (the provider is called again only while no pay URL is known,
//!   with the same reference, which the providers deduplicate).
//! - **No fee paid without proof.** An order moves to `paid` only through [`Payments::settle`],
//!   which callers reach after verifying the provider's checksum (callbacks) or from the
//!   provider's own answer to a query (reconciliation). The amount is checked against the
//!   order before anything is recorded.
//! - **Every transition is recorded** (`gw_store::payments` trail, same transaction as the state
//!   change) and handed to the [`EvidenceHook`]s afterwards (the evidence log:
//!   [`crate::evidence::payments`]), with the provider message that caused it; refused
//!   callbacks are handed to them too ([`Payments::refused`]), before they are answered.
//! - **Every settled order reaches the one-stop system.** The `payment.settled` notice is queued
//!   in the store's outbox in the transaction that settles the order; [`Payments::publish_notices`]
//!   drains it (at least once; the envelope id is the notice id, so consumers deduplicate).
//! - Logs carry references, amounts and result codes only: never a card or bank account number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gw_store::payments::{
    Change, Created, NewOrder, Notice, OrderState, PaymentOrder, PaymentStore, Transitioned,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::model::envelope::Envelope;
use crate::model::time::now_ms;

pub mod cli;
pub mod codes;
pub mod config;
pub mod ipn;
pub mod momo;
pub mod paygov;
pub mod platform;
pub mod reconcile;
pub mod vnpay;

// The `[payments]` settings types live with the rest of the configuration.
pub use crate::config::payments::{
    FeeCheck, Grouping, DEFAULT_DEADLINE_SECS, DEFAULT_MAX_AMOUNT, DEFAULT_REFERENCE_PREFIX,
    DEFAULT_SOURCE_NAME, MAX_AMOUNT_LIMIT,
};

/// The envelope kind of a settlement notice.
pub const SETTLED_KIND: &str = "payment.settled";

/// Longest reference any supported provider takes (`MaThamChieu`: 20).
pub const MAX_REFERENCE_LEN: usize = 20;

/// The reference of an order: `prefix` (upper-case alphanumerics, at most 4) followed by the
/// base-32 SHA-256 of `dossier ␟ fee key ␟ attempt`, cut to [`MAX_REFERENCE_LEN`]. Same input,
/// same reference, on every instance and after every restart; with a 4-character prefix, 16
/// base-32 characters (80 bits) remain, so distinct fees do not collide in practice.
pub fn order_reference(prefix: &str, dossier_code: &str, fee_key: &str, attempt: u32) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let prefix: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .take(4)
        .collect();
    let digest = Sha256::new()
        .chain_update(dossier_code.as_bytes())
        .chain_update([0x1f])
        .chain_update(fee_key.as_bytes())
        .chain_update([0x1f])
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let mut out = prefix;
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for b in digest {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 5 && out.len() < MAX_REFERENCE_LEN {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    out
}

/// One fee of a dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    /// The fee item code (unique within the dossier).
    pub code: String,
    /// Amount in VND.
    pub amount: i64,
}

/// The one-stop system asks for a dossier's fees to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub dossier_code: String,
    pub fees: Vec<Fee>,
    /// 1 for the first try; a new attempt (after a failed or expired order) makes new orders.
    #[serde(default = "one")]
    pub attempt: u32,
}

fn one() -> u32 {
    1
}

/// An order as the requester sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub reference: String,
    pub fee_items: Vec<String>,
    pub amount: i64,
    pub state: OrderState,
    pub pay_url: Option<String>,
}

impl From<&PaymentOrder> for OrderView {
    fn from(o: &PaymentOrder) -> Self {
        OrderView {
            reference: o.order.reference.clone(),
            fee_items: o.order.fee_items.clone(),
            amount: o.order.amount,
            state: o.state,
            pay_url: o.pay_url.clone(),
        }
    }
}

/// What a provider says about an order when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    Paid {
        amount: i64,
        txn: String,
    },
    Failed {
        code: String,
    },
    /// Known, not paid yet.
    Pending,
    /// The provider has no such order.
    Unknown,
}

/// One transaction of a provider's day listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTxn {
    pub reference: String,
    pub amount: i64,
    pub paid: bool,
    pub txn: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time or a transport failure: the outcome is unknown, retry.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered with an error or a reply that does not verify.
    #[error("provider refused: {0}")]
    Refused(String),
}

/// Send a request to a provider: a transport failure is [`ProviderError::Unavailable`].
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    req.send()
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))
}

/// A provider's JSON answer: 5xx is [`ProviderError::Unavailable`] (the outcome is unknown),
/// another non-success status or an unreadable body [`ProviderError::Refused`].
pub(crate) async fn json_answer(r: reqwest::Response) -> Result<serde_json::Value, ProviderError> {
    if r.status().is_server_error() {
        return Err(ProviderError::Unavailable(format!("HTTP {}", r.status())));
    }
    if !r.status().is_success() {
        return Err(ProviderError::Refused(format!("HTTP {}", r.status())));
    }
    r.json()
        .await
        .map_err(|e| ProviderError::Refused(format!("answer: {e}")))
}

/// A payment provider's outbound side (the callback side lives in each provider's module).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The configured provider name (also stored on each order).
    fn name(&self) -> &str;
    /// Create the order at the provider (idempotent on the reference); returns the pay URL.
    async fn create(&self, order: &PaymentOrder) -> Result<String, ProviderError>;
    /// Ask the provider about one order.
    async fn query(&self, order: &PaymentOrder) -> Result<ProviderStatus, ProviderError>;
    /// The provider's transactions created in `[from_ms, to_ms)`, when it can list them.
    async fn transactions(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<ProviderTxn>>, ProviderError> {
        let _ = (from_ms, to_ms);
        Ok(None)
    }
}

/// A provider message as received (a callback), for the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderMessage {
    /// SHA-256 hex of the message exactly as received (the raw IPN query, the JSON body).
    pub digest: String,
    /// SHA-256 hex of the provider's checksum value in it, when it carries one.
    pub signature_digest: Option<String>,
    /// The provider's result code in it (`vnp_ResponseCode`, `MaLoi`, `errorCode`), if any.
    pub code: Option<String>,
    /// The message itself; the evidence log keeps it (encrypted) only in `full` mode.
    #[serde(skip)]
    pub body: Arc<Vec<u8>>,
}

impl ProviderMessage {
    /// `body` as received, with its checksum value and result code (both as the message
    /// states them; empty = absent).
    pub fn new(body: &[u8], checksum: &str, code: &str) -> Self {
        ProviderMessage {
            digest: crate::evidence::sha256_hex(body),
            signature_digest: (!checksum.is_empty())
                .then(|| crate::evidence::sha256_hex(checksum.as_bytes())),
            code: (!code.is_empty()).then(|| code.to_string()),
            body: Arc::new(body.to_vec()),
        }
    }
}

/// A transition as handed to the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceEvent {
    pub reference: String,
    pub dossier_code: String,
    pub provider: String,
    pub from: Option<OrderState>,
    pub to: OrderState,
    pub source: String,
    pub amount: i64,
    pub provider_txn: Option<String>,
    pub at_ms: i64,
    /// The code recorded in the trail (`00/00`, `query:paid`, `deadline`, …).
    pub code: String,
    /// The provider message that caused the transition (callbacks), when known.
    pub message: Option<ProviderMessage>,
    /// The id of the `payment.settled` envelope queued with the transition.
    pub notice_id: Option<String>,
}

/// Why a provider message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBecause {
    /// The checksum / secure hash does not verify (a forged or corrupted message).
    Checksum,
    /// Not parseable, or fields missing or malformed.
    Malformed,
    /// Another merchant / partner code or currency.
    Party,
    /// No order has the reference.
    UnknownOrder,
    /// The amount differs from the order's.
    Amount,
}

impl RefusedBecause {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedBecause::Checksum => "checksum",
            RefusedBecause::Malformed => "malformed",
            RefusedBecause::Party => "party",
            RefusedBecause::UnknownOrder => "unknown_order",
            RefusedBecause::Amount => "amount",
        }
    }
}

/// A provider message that was refused (nothing changed), as handed to the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub provider: String,
    /// The reference the message names (unverified when the checksum failed); may be empty.
    pub reference: String,
    /// The dossier of the order with that reference, when there is one; else empty.
    pub dossier_code: String,
    pub because: RefusedBecause,
    pub message: ProviderMessage,
    /// The code of our reply (`97`, `99`, `FAILED`, …).
    pub reply_code: String,
    /// Our reply as sent.
    #[serde(skip)]
    pub reply: Vec<u8>,
    pub at_ms: i64,
}

/// Where transitions go after they are durably recorded (the evidence log plugs in here).
/// A failing hook is logged and does not undo the transition: the store's trail
/// (`PaymentStore::transitions`) is the durable record it can be rebuilt from.
#[async_trait]
pub trait EvidenceHook: Send + Sync + 'static {
    async fn record(&self, event: &EvidenceEvent) -> Result<(), String>;
    /// A provider message that was refused, before the reply is sent. Default: not recorded.
    async fn refused(&self, refusal: &Refusal) -> Result<(), String> {
        let _ = refusal;
        Ok(())
    }
}

/// Where `payment.settled` envelopes are published.
#[async_trait]
pub trait NoticeSink: Send + Sync + 'static {
    async fn publish(&self, env: &Envelope) -> Result<(), String>;
}

/// Publishes notices straight onto a broker queue.
pub struct BrokerSink {
    pub broker: Arc<dyn gw_broker::Broker>,
    pub queue: String,
}

#[async_trait]
impl NoticeSink for BrokerSink {
    async fn publish(&self, env: &Envelope) -> Result<(), String> {
        let msg = gw_broker::Message {
            id: env.id.to_string(),
            key: env.key.clone(),
            headers: BTreeMap::from([("traceparent".to_string(), env.traceparent.clone())]),
            attempt: 0,
            body: env.encode().into(),
        };
        self.broker
            .publish(&self.queue, msg)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Publishes notices through the route runtime (routes taking `payment.settled` from the
/// payments source). No route taking it is an error: the notice stays queued.
pub struct EngineSink(pub Arc<crate::runtime::Engine>);

#[async_trait]
impl NoticeSink for EngineSink {
    async fn publish(&self, env: &Envelope) -> Result<(), String> {
        match self.0.publish(env).await {
            Ok(routes) if routes.is_empty() => Err(format!(
                "no route takes {} from source {}",
                env.kind, env.source
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("unknown payment provider `{0}`")]
    UnknownProvider(String),
    #[error("invalid payment request: {0}")]
    Invalid(String),
    #[error("order {reference} exists with amount {stored}, the request says {requested}: a changed fee needs a new attempt")]
    AmountChanged {
        reference: String,
        stored: i64,
        requested: i64,
    },
    /// `fee_check = "known"` and no dossier snapshot with fees reached the gateway yet.
    #[error("no fees are known for dossier {0}: the one-stop system sends the dossier (with its fees) before asking for payment")]
    FeesUnknown(String),
    /// A requested fee is not among the dossier's known fees, has another amount, or is paid.
    #[error("{0}")]
    FeeMismatch(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
}

/// The checks of an order request that need nothing but the request and the settings: field
/// limits ([`crate::model::limits`]), distinct codes, positive amounts within the maxima, checked sums.
/// Returns the sorted fee codes and, when it fits `max_order_amount`, the total. Pure (fuzzed by
/// `fuzz/fuzz_targets/edge_input.rs`).
pub fn check_request<'r>(
    settings: &Settings,
    req: &'r PaymentRequest,
) -> Result<(Vec<&'r str>, Option<i64>), PaymentError> {
    crate::model::limits::dossier_code("dossier_code", &req.dossier_code)
        .map_err(PaymentError::Invalid)?;
    if req.fees.is_empty() || req.fees.len() > crate::model::limits::MAX_FEES_PER_REQUEST {
        return Err(PaymentError::Invalid(format!(
            "fees: 1 to {} fees are required",
            crate::model::limits::MAX_FEES_PER_REQUEST
        )));
    }
    for (i, f) in req.fees.iter().enumerate() {
        crate::model::limits::fee_code(&format!("fees[{i}].code"), &f.code)
            .map_err(PaymentError::Invalid)?;
    }
    if req.attempt == 0 {
        return Err(PaymentError::Invalid("attempt starts at 1".into()));
    }
    let mut codes: Vec<&str> = req.fees.iter().map(|f| f.code.as_str()).collect();
    codes.sort_unstable();
    if codes.windows(2).any(|w| w[0] == w[1]) || codes.iter().any(|c| c.is_empty()) {
        return Err(PaymentError::Invalid(
            "fees: each code must be distinct".into(),
        ));
    }
    if req.fees.iter().any(|f| f.amount <= 0) {
        return Err(PaymentError::Invalid("fee amounts must be positive".into()));
    }
    let max_fee = settings.max_fee_amount;
    if let Some(f) = req.fees.iter().find(|f| f.amount > max_fee) {
        return Err(PaymentError::Invalid(format!(
            "fee {} amount {} is above the largest allowed fee {max_fee} (payments.max_fee_amount)",
            f.code, f.amount
        )));
    }
    let max_order = settings.max_order_amount;
    let total = req
        .fees
        .iter()
        .try_fold(0i64, |sum, f| sum.checked_add(f.amount))
        .filter(|t| *t <= max_order);
    if matches!(settings.grouping, Grouping::PerDossier) && total.is_none() {
        return Err(PaymentError::Invalid(format!(
                "the fees add up to more than the largest allowed order {max_order} (payments.max_order_amount)"
            )));
    }
    Ok((codes, total))
}

/// What a verified provider message says about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reference: String,
    /// Paid, failed, or not final yet ([`codes`]).
    pub outcome: codes::Finality,
    /// Amount in VND as the provider states it.
    pub amount: i64,
    pub provider_txn: Option<String>,
    /// The provider's result code (for the trail).
    pub code: String,
    /// `callback` or `query`.
    pub source: &'static str,
    /// The provider message the verdict comes from (callbacks), for the evidence log.
    pub message: Option<ProviderMessage>,
}

/// The result of settling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Recorded (and the notice queued).
    Applied(PaymentOrder),
    /// The order was already settled: nothing changed.
    AlreadySettled(PaymentOrder),
    /// No order has this reference (not recorded yet, or never ours).
    NotFound,
    /// The amount differs from the order's: nothing recorded.
    AmountMismatch { expected: i64 },
    /// The provider's code is not final ([`codes::Finality::Pending`]): nothing changed.
    Pending(PaymentOrder),
}

/// Settings of the payment service (from `[payments]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub grouping: Grouping,
    /// A `requested` order older than this is queried and, if the provider never saw a
    /// payment, expired.
    pub deadline: Duration,
    /// Reference prefix (≤ 4 upper-case alphanumerics).
    pub reference_prefix: String,
    /// The envelope source name of `payment.settled`.
    pub source_name: String,
    /// The largest amount (VND) one fee may have; a larger one is refused.
    pub max_fee_amount: i64,
    /// The largest amount (VND) one order may have (the sum of its fees, per dossier).
    pub max_order_amount: i64,
    /// Whether requested fees must match the dossier's known fees.
    pub fee_check: FeeCheck,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            grouping: Grouping::PerFee,
            deadline: Duration::from_secs(crate::payments::DEFAULT_DEADLINE_SECS),
            reference_prefix: DEFAULT_REFERENCE_PREFIX.into(),
            source_name: DEFAULT_SOURCE_NAME.into(),
            max_fee_amount: DEFAULT_MAX_AMOUNT,
            max_order_amount: DEFAULT_MAX_AMOUNT,
            fee_check: FeeCheck::Known,
        }
    }
}

/// The payment service.
pub struct Payments {
    pub store: Arc<dyn PaymentStore>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    pub settings: Settings,
    evidence: Vec<Arc<dyn EvidenceHook>>,
    /// Refused provider messages, counted; the evidence log gets a sample ([`Refusals`]).
    pub refusals: Arc<Refusals>,
}

/// How many refused messages per (provider, reason) reach the evidence log in one minute;
/// beyond that they are only counted, so a flood of forged callbacks cannot fill the disk.
pub const REFUSED_EVIDENCE_PER_MINUTE: u32 = 10;

/// Counts of refused provider messages, and the per-minute sample that goes to the evidence
/// log. Labels are the provider's configured name and the bounded reason, never message data.
#[derive(Default)]
pub struct Refusals {
    inner: std::sync::Mutex<BTreeMap<(String, &'static str), RefusalCount>>,
}

#[derive(Default)]
struct RefusalCount {
    total: u64,
    unsampled: u64,
    minute: i64,
    in_minute: u32,
}

impl Refusals {
    /// Count one refusal at `now_ms`; whether it is in the evidence sample.
    pub fn admit(&self, provider: &str, because: RefusedBecause, now_ms: i64) -> bool {
        let mut g = self.inner.lock().expect("refusals lock");
        let c = g
            .entry((provider.to_string(), because.as_str()))
            .or_default();
        c.total += 1;
        let minute = now_ms.div_euclid(60_000);
        if c.minute != minute {
            c.minute = minute;
            c.in_minute = 0;
        }
        if c.in_minute < REFUSED_EVIDENCE_PER_MINUTE {
            c.in_minute += 1;
            true
        } else {
            c.unsampled += 1;
            false
        }
    }

    /// (refused, of which not written to the evidence log) for a provider and reason.
    pub fn count(&self, provider: &str, because: RefusedBecause) -> (u64, u64) {
        let g = self.inner.lock().expect("refusals lock");
        g.get(&(provider.to_string(), because.as_str()))
            .map(|c| (c.total, c.unsampled))
            .unwrap_or_default()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let g = self.inner.lock().expect("refusals lock");
        let mut out = String::new();
        crate::metrics::family(
            &mut out,
            "gateway_payment_refused_total",
            "counter",
            "Provider messages (callbacks, IPNs) refused: bad checksum, unknown order, wrong amount, ...",
        );
        for ((p, b), c) in g.iter() {
            let _ = writeln!(
                out,
                "gateway_payment_refused_total{{provider=\"{}\",because=\"{b}\"}} {}",
                crate::metrics::esc(p),
                c.total
            );
        }
        crate::metrics::family(
            &mut out,
            "gateway_payment_refused_unsampled_total",
            "counter",
            "Refused provider messages counted but not written to the evidence log (over the per-minute sample).",
        );
        for ((p, b), c) in g.iter() {
            let _ = writeln!(
                out,
                "gateway_payment_refused_unsampled_total{{provider=\"{}\",because=\"{b}\"}} {}",
                crate::metrics::esc(p),
                c.unsampled
            );
        }
        out
    }
}

impl Payments {
    pub fn new(store: Arc<dyn PaymentStore>, settings: Settings) -> Self {
        Payments {
            store,
            providers: BTreeMap::new(),
            settings,
            evidence: Vec::new(),
            refusals: Arc::default(),
        }
    }

    pub fn with_provider(mut self, p: Arc<dyn Provider>) -> Self {
        self.providers.insert(p.name().to_string(), p);
        self
    }

    /// Add an evidence hook (the evidence log, when configured).
    pub fn with_evidence(mut self, hook: Arc<dyn EvidenceHook>) -> Self {
        self.evidence.push(hook);
        self
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// Every requested fee must be one of the dossier's known fees (its newest snapshot),
    /// with the same amount, and not marked paid there. Before this check anyone holding the
    /// order token could pre-create a 1,000 VND order for a 500,000 VND fee.
    async fn check_known_fees(&self, req: &PaymentRequest) -> Result<(), PaymentError> {
        let known = self
            .store
            .known_fees(&req.dossier_code)
            .await?
            .ok_or_else(|| PaymentError::FeesUnknown(req.dossier_code.clone()))?;
        for (i, f) in req.fees.iter().enumerate() {
            let Some(k) = known.fees.iter().find(|k| k.code == f.code) else {
                return Err(PaymentError::FeeMismatch(format!(
                    "fees[{i}].code: {} is not a fee of dossier {} (snapshot version {})",
                    f.code, req.dossier_code, known.version
                )));
            };
            if k.amount != f.amount {
                return Err(PaymentError::FeeMismatch(format!(
                    "fees[{i}].amount: {} VND, but dossier {} states {} VND for {} (snapshot version {})",
                    f.amount, req.dossier_code, k.amount, f.code, known.version
                )));
            }
            if k.paid {
                return Err(PaymentError::FeeMismatch(format!(
                    "fees[{i}].code: {} of dossier {} is already paid (snapshot version {})",
                    f.code, req.dossier_code, known.version
                )));
            }
        }
        Ok(())
    }

    /// Keep a dossier snapshot's fees as the dossier's known fees (when its version is newer
    /// than the one kept). Called at the edge for every accepted snapshot event.
    pub async fn note_snapshot(
        &self,
        dossier: &crate::model::Dossier,
    ) -> Result<bool, gw_store::StoreError> {
        self.store
            .note_fees(gw_store::payments::KnownFees {
                dossier_code: dossier.code.clone(),
                version: dossier.version,
                fees: dossier
                    .fees
                    .iter()
                    .map(|f| gw_store::payments::KnownFee {
                        code: f.code.clone(),
                        amount: f.amount_vnd,
                        paid: f.paid,
                    })
                    .collect(),
                updated_ms: now_ms(),
            })
            .await
    }

    /// Create (or find) the orders for a request and make sure each has a pay URL. A provider
    /// failure leaves the order stored without a URL: the retried request reuses it.
    pub async fn request(
        &self,
        provider: &str,
        req: &PaymentRequest,
    ) -> Result<Vec<OrderView>, PaymentError> {
        let p = self
            .providers
            .get(provider)
            .ok_or_else(|| PaymentError::UnknownProvider(provider.into()))?;
        let (codes, total) = check_request(&self.settings, req)?;
        if self.settings.fee_check == FeeCheck::Known {
            self.check_known_fees(req).await?;
        }
        let groups: Vec<(String, Vec<String>, i64)> = match self.settings.grouping {
            Grouping::PerFee => req
                .fees
                .iter()
                .map(|f| (f.code.clone(), vec![f.code.clone()], f.amount))
                .collect(),
            Grouping::PerDossier => vec![(
                format!("*{}", codes.join(",")),
                codes.iter().map(|c| c.to_string()).collect(),
                total.unwrap_or_default(),
            )],
        };
        let now = now_ms();
        let mut views = Vec::with_capacity(groups.len());
        for (fee_key, items, amount) in groups {
            let reference = order_reference(
                &self.settings.reference_prefix,
                &req.dossier_code,
                &fee_key,
                req.attempt,
            );
            let created = self
                .store
                .create_order(NewOrder {
                    reference: reference.clone(),
                    provider: provider.into(),
                    dossier_code: req.dossier_code.clone(),
                    fee_items: items,
                    amount,
                    currency: "VND".into(),
                    created_ms: now,
                    deadline_ms: now + self.settings.deadline.as_millis() as i64,
                })
                .await?;
            let mut order = created.order().clone();
            if order.order.amount != amount {
                return Err(PaymentError::AmountChanged {
                    reference,
                    stored: order.order.amount,
                    requested: amount,
                });
            }
            if let Created::New(o) = &created {
                info!(reference = %o.order.reference, amount = o.order.amount, provider, "payment order created");
                self.evidence(
                    o,
                    None,
                    OrderState::Requested,
                    ("request", "requested", None),
                    None,
                    now,
                )
                .await;
            }
            if order.pay_url.is_none() && order.state == OrderState::Requested {
                let url = p.create(&order).await?;
                self.store.set_pay_url(&reference, &url).await?;
                order = self
                    .store
                    .order(&reference)
                    .await?
                    .expect("the order was just stored");
            }
            views.push(OrderView::from(&order));
        }
        Ok(views)
    }

    /// Settle an order from a verified provider message (see the module invariants).
    pub async fn settle(&self, v: &Verdict) -> Result<Settle, PaymentError> {
        let Some(order) = self.store.order(&v.reference).await? else {
            return Ok(Settle::NotFound);
        };
        if v.amount != order.order.amount {
            warn!(reference = %v.reference, expected = order.order.amount, got = v.amount, "payment amount differs; not recorded");
            return Ok(Settle::AmountMismatch {
                expected: order.order.amount,
            });
        }
        let to = match v.outcome {
            codes::Finality::Paid => OrderState::Paid,
            codes::Finality::Failed => OrderState::Failed,
            // Not final: the order stays as it is; a later paid notification settles it.
            codes::Finality::Pending => {
                info!(reference = %v.reference, code = %v.code, source = v.source, "payment pending at the provider; order left open");
                return Ok(Settle::Pending(order));
            }
        };
        self.apply(
            &order,
            to,
            v.source,
            v.provider_txn.clone(),
            &v.code,
            v.message.as_ref(),
        )
        .await
    }

    /// Expire an overdue order the provider never saw paid.
    pub async fn expire(&self, order: &PaymentOrder) -> Result<Settle, PaymentError> {
        self.apply(order, OrderState::Expired, "expiry", None, "deadline", None)
            .await
    }

    /// Hand a refused provider message to the evidence hooks (before the reply is sent). The
    /// dossier is looked up by the reference the message names, so a forged callback shows in
    /// the dossier's evidence.
    pub async fn refused(
        &self,
        provider: &str,
        reference: &str,
        because: RefusedBecause,
        message: ProviderMessage,
        reply_code: &str,
        reply: &[u8],
    ) {
        let sampled = self.refusals.admit(provider, because, now_ms());
        if self.evidence.is_empty() || !sampled {
            return;
        }
        let dossier_code = if reference.is_empty() || reference.len() > MAX_REFERENCE_LEN {
            String::new()
        } else {
            match self.store.order(reference).await {
                Ok(Some(o)) => o.order.dossier_code,
                _ => String::new(),
            }
        };
        let r = Refusal {
            provider: provider.into(),
            reference: reference.into(),
            dossier_code,
            because,
            message,
            reply_code: reply_code.into(),
            reply: reply.to_vec(),
            at_ms: now_ms(),
        };
        for h in &self.evidence {
            if let Err(e) = h.refused(&r).await {
                warn!(provider, error = %e, "evidence hook failed on a refused payment message");
            }
        }
    }

    async fn apply(
        &self,
        order: &PaymentOrder,
        to: OrderState,
        source: &'static str,
        provider_txn: Option<String>,
        code: &str,
        message: Option<&ProviderMessage>,
    ) -> Result<Settle, PaymentError> {
        let at = now_ms();
        let o = &order.order;
        let env = Envelope::new(
            SETTLED_KIND,
            o.dossier_code.clone(),
            self.settings.source_name.clone(),
            serde_json::json!({
                "dossier_code": o.dossier_code,
                "reference": o.reference,
                "provider": o.provider,
                "fee_items": o.fee_items,
                "amount": o.amount,
                "currency": o.currency,
                "status": to.as_str(),
                "provider_txn": provider_txn,
                "at_ms": at,
            }),
        );
        let change = Change {
            reference: o.reference.clone(),
            to,
            source: source.into(),
            provider_txn: provider_txn.clone(),
            detail: format!("code={code} amount={}", o.amount),
            at_ms: at,
            notice: Some(Notice {
                id: env.id.to_string(),
                reference: o.reference.clone(),
                body: String::from_utf8(env.encode()).expect("JSON is UTF-8"),
                created_ms: at,
            }),
        };
        Ok(match self.store.transition(change).await? {
            Transitioned::Applied(after) => {
                info!(reference = %o.reference, amount = o.amount, state = to.as_str(), source, "payment order settled");
                self.evidence(
                    &after,
                    Some(order.state),
                    to,
                    (source, code, message),
                    Some(env.id.to_string()),
                    at,
                )
                .await;
                Settle::Applied(after)
            }
            Transitioned::Unchanged(o) | Transitioned::Refused(o) => Settle::AlreadySettled(o),
            Transitioned::NotFound => Settle::NotFound,
        })
    }

    /// `cause`: the source, the trail code and the provider message of the transition.
    async fn evidence(
        &self,
        o: &PaymentOrder,
        from: Option<OrderState>,
        to: OrderState,
        cause: (&str, &str, Option<&ProviderMessage>),
        notice_id: Option<String>,
        at_ms: i64,
    ) {
        let (source, code, message) = cause;
        if self.evidence.is_empty() {
            return;
        }
        let ev = EvidenceEvent {
            reference: o.order.reference.clone(),
            dossier_code: o.order.dossier_code.clone(),
            provider: o.order.provider.clone(),
            from,
            to,
            source: source.into(),
            amount: o.order.amount,
            provider_txn: o.provider_txn.clone(),
            at_ms,
            code: code.into(),
            message: message.cloned(),
            notice_id,
        };
        for h in &self.evidence {
            if let Err(e) = h.record(&ev).await {
                warn!(reference = %ev.reference, error = %e, "evidence hook failed; the store trail keeps the transition");
            }
        }
    }

    /// Publish every queued `payment.settled` notice (bounded to `max` per call); returns how
    /// many went out. A failed publish stops the drain and leaves the rest queued.
    pub async fn publish_notices(
        &self,
        sink: &dyn NoticeSink,
        max: u32,
    ) -> Result<usize, PaymentError> {
        let notices = self.store.unpublished_notices(max).await?;
        let mut sent = 0;
        for n in notices {
            let env = match Envelope::decode(n.body.as_bytes()) {
                Ok(env) => env,
                Err(e) => {
                    warn!(reference = %n.reference, error = %e, "a queued payment notice is malformed; skipped");
                    continue;
                }
            };
            if let Err(e) = sink.publish(&env).await {
                warn!(reference = %n.reference, error = %e, "payment notice not published; kept for the next drain");
                break;
            }
            self.store.mark_notice_published(&n.id, now_ms()).await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// The payment side of a running gateway (from `[payments]`).
pub struct Wired {
    pub http: Arc<ipn::PaymentsHttp>,
    pub metrics: Arc<reconcile::ReconcileMetrics>,
    interval: Duration,
    sink: Arc<dyn NoticeSink>,
}

impl Wired {
    /// Build from the configuration; `None` when there is no `[payments]` section.
    pub async fn from_config(
        loaded: &crate::config::Loaded,
        engine: &Arc<crate::runtime::Engine>,
    ) -> Result<Option<Wired>, String> {
        let Some(s) = &loaded.config.payments else {
            return Ok(None);
        };
        let evidence = engine.evidence.clone().map(|log| {
            Arc::new(crate::evidence::payments::PaymentEvidence::new(
                engine.store.clone(),
                log,
            )) as Arc<dyn EvidenceHook>
        });
        let built = config::build(
            s,
            &loaded.base,
            &loaded.store_url().map_err(|e| e.to_string())?,
            evidence,
        )
        .await?;
        let payments = built.payments;
        let token = match &s.token {
            Some(r) => Some(
                r.resolve(&loaded.base)
                    .map_err(|e| format!("payments.token: {e}"))?,
            ),
            None => None,
        };
        let metrics = Arc::new(reconcile::ReconcileMetrics::default());
        let m = metrics.clone();
        engine.metrics.add_renderer(Arc::new(move || m.render()));
        let refusals = payments.refusals.clone();
        engine
            .metrics
            .add_renderer(Arc::new(move || refusals.render()));
        Ok(Some(Wired {
            http: Arc::new(ipn::PaymentsHttp {
                payments,
                vnpay: built.vnpay,
                platform: built.platform,
                paygov: built.paygov,
                momo: built.momo,
                token,
            }),
            metrics,
            interval: s.reconcile_interval.0,
            sink: Arc::new(EngineSink(engine.clone())),
        }))
    }

    /// The notice publisher and the scheduled reconciliation, until `cancel`.
    pub fn scheduled(
        &self,
        lead: crate::jobs::Singleton,
        cancel: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        reconcile::run_scheduled(
            self.http.payments.clone(),
            self.sink.clone(),
            self.interval,
            self.metrics.clone(),
            lead,
            cancel,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_deterministic_short_and_distinct() {
        let a = order_reference("GW", "H01.2-240101-0001", "LEPHI", 1);
        assert_eq!(a, order_reference("GW", "H01.2-240101-0001", "LEPHI", 1));
        assert_eq!(a.len(), MAX_REFERENCE_LEN);
        assert!(a.starts_with("GW"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0001", "PHI", 1));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0001", "LEPHI", 2));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0002", "LEPHI", 1));
        // Separator: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(
            order_reference("", "ab", "c", 1),
            order_reference("", "a", "bc", 1)
        );
        assert_eq!(order_reference("x-y!zz9", "D", "F", 1).len(), 20);
        assert!(order_reference("x-y!zz9", "D", "F", 1).starts_with("XYZZ"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(order_reference("GW", &format!("D{i}"), "F", 1)));
        }
    }

    #[test]
    fn the_state_machine_refuses_illegal_moves() {
        use OrderState::*;
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                let legal = matches!(
                    (from, to),
                    (Requested, Paid | Failed | Expired) | (Expired, Paid) | (Paid, Refunded)
                );
                assert_eq!(from.allows(to), legal, "{from:?} → {to:?}");
            }
        }
    }
}
