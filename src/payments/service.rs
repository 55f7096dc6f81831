//! The payment service: orders created once, settled only on proof, every transition recorded
//! and handed to the evidence hooks, every settlement noticed to the one-stop system.
//!
//! # Invariants
//! - The order is stored *before* the provider is called; a retried or replayed request finds
//!   the stored order and reuses it (the provider is called again only while no pay URL is
//!   known, with the same reference, which the providers deduplicate).
//! - An order moves to `paid` only through [`Payments::settle`], reached after verifying the
//!   provider's checksum (callbacks) or from the provider's own answer to a query
//!   (reconciliation). The amount is checked against the order before anything is recorded.
//! - The `payment.settled` notice is queued in the transaction that settles the order.

use std::collections::BTreeMap;
use std::sync::Arc;

use gw_store::payments::{
    Change, Created, NewOrder, Notice, OrderState, PaymentOrder, PaymentStore, Transitioned,
};
use tracing::{info, warn};

use super::codes;
use super::hooks::{EvidenceEvent, EvidenceHook, ProviderMessage, Refusal, RefusedBecause};
use super::notices::{NoticeSink, SETTLED_KIND};
use super::orders::{
    check_request, order_reference, OrderView, PaymentError, PaymentRequest, Settings,
    MAX_REFERENCE_LEN,
};
use super::provider::Provider;
use super::refusals::Refusals;
use crate::config::payments::{FeeCheck, Grouping};
use crate::model::envelope::Envelope;
use crate::model::time::now_ms;

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

/// The payment service.
pub struct Payments {
    pub store: Arc<dyn PaymentStore>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    pub settings: Settings,
    evidence: Vec<Arc<dyn EvidenceHook>>,
    /// Refused provider messages, counted; the evidence log gets a sample ([`Refusals`]).
    pub refusals: Arc<Refusals>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
