//! Reconciliation: ask the provider about what is still open, settle what it says, and report
//! what disagrees.
//!
//! 1. **Overdue orders** (still `requested` past their deadline): queried one by one. Paid
//!    there with the same amount → settled paid (source `query`); failed there → failed;
//!    unknown there (the citizen never opened the pay page) → expired; pending there → left.
//! 2. **A day's orders** (`--date`, the local day in GMT+7): the provider's listing when it has
//!    one, else a query per order of that day. Paid there but not here → settled when the order
//!    is open and the amount matches, otherwise reported; paid here but not there, and amounts
//!    that differ, are reported.
//!
//! Mismatches are printed by the command and counted as
//! `gateway_payment_mismatches_total{provider,kind}` (label values from bounded sets).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use gw_store::payments::{OrderState, PaymentOrder};
use serde::Serialize;
use tracing::warn;

use super::orders::PaymentError;
use super::provider::{Provider, ProviderStatus, ProviderTxn};
use super::service::{Payments, Settle, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The provider has it paid; here it is not (and could not be settled).
    PaidThereNotHere,
    /// Paid here; the provider does not have it paid.
    HereNotThere,
    /// Both know it; the amounts differ.
    AmountDiffers,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::PaidThereNotHere => "paid_there_not_here",
            MismatchKind::HereNotThere => "here_not_there",
            MismatchKind::AmountDiffers => "amount_differs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    pub reference: String,
    pub here_state: Option<OrderState>,
    pub here_amount: Option<i64>,
    pub there_amount: Option<i64>,
}

/// What one reconciliation run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub provider: String,
    /// Orders asked about (overdue and of the day).
    pub checked: usize,
    pub settled_paid: usize,
    pub settled_failed: usize,
    pub expired: usize,
    /// Queries that failed (provider unavailable): asked again next run.
    pub errors: usize,
    pub mismatches: Vec<Mismatch>,
}

impl Report {
    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "provider {}: checked {}, settled paid {}, settled failed {}, expired {}, errors {}, mismatches {}",
            self.provider,
            self.checked,
            self.settled_paid,
            self.settled_failed,
            self.expired,
            self.errors,
            self.mismatches.len()
        );
        for m in &self.mismatches {
            let amt = |a: Option<i64>| a.map_or("-".to_string(), |a| a.to_string());
            let _ = writeln!(
                s,
                "  {:<20} {:<20} here {:<9} {:>12}  there {:>12}",
                m.kind.as_str(),
                m.reference,
                m.here_state.map_or("absent", |s| s.as_str()),
                amt(m.here_amount),
                amt(m.there_amount),
            );
        }
        s
    }
}

/// Counters of mismatches, rendered in the Prometheus text format.
#[derive(Default)]
pub struct ReconcileMetrics {
    mismatches: Mutex<BTreeMap<(String, MismatchKind), u64>>,
}

impl ReconcileMetrics {
    pub fn observe(&self, r: &Report) {
        let mut m = self.mismatches.lock().expect("metrics lock");
        for x in &r.mismatches {
            *m.entry((r.provider.clone(), x.kind)).or_default() += 1;
        }
    }

    pub fn count(&self, provider: &str, kind: MismatchKind) -> u64 {
        let m = self.mismatches.lock().expect("metrics lock");
        m.get(&(provider.to_string(), kind)).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let m = self.mismatches.lock().expect("metrics lock");
        let mut out = String::new();
        crate::telemetry::metrics::family(
            &mut out,
            "gateway_payment_mismatches_total",
            "counter",
            "Payments that disagree with the provider, found by reconciliation.",
        );
        for ((p, k), n) in m.iter() {
            let _ = writeln!(
                out,
                "gateway_payment_mismatches_total{{provider=\"{}\",kind=\"{}\"}} {n}",
                crate::telemetry::metrics::esc(p),
                k.as_str()
            );
        }
        out
    }
}

/// Reconcile one provider: its overdue orders at `now_ms`, and, when `day` is given, the
/// orders created in `[day.0, day.1)`.
pub async fn reconcile(
    payments: &Payments,
    provider: &dyn Provider,
    now_ms: i64,
    day: Option<(i64, i64)>,
) -> Result<Report, PaymentError> {
    let name = provider.name().to_string();
    let mut r = Report {
        provider: name.clone(),
        ..Default::default()
    };
    for o in payments.store.overdue(&name, now_ms).await? {
        r.checked += 1;
        match provider.query(&o).await {
            Ok(ProviderStatus::Unknown) => {
                if let Settle::Applied(_) = payments.expire(&o).await? {
                    r.expired += 1;
                }
            }
            Ok(ProviderStatus::Pending) => {}
            Ok(status) => apply(payments, &o, status, &mut r).await?,
            Err(e) => {
                warn!(provider = %name, reference = %o.order.reference, error = %e, "reconciliation query failed");
                r.errors += 1;
            }
        }
    }
    if let Some((from, to)) = day {
        let ours = payments.store.created_between(&name, from, to).await?;
        match provider.transactions(from, to).await {
            Ok(Some(list)) => {
                let mut by_ref: HashMap<&str, &PaymentOrder> = ours
                    .iter()
                    .map(|o| (o.order.reference.as_str(), o))
                    .collect();
                for t in &list {
                    r.checked += 1;
                    match by_ref.remove(t.reference.as_str()) {
                        None if t.paid => {
                            // Maybe created on another day: look it up before calling it missing.
                            match payments.store.order(&t.reference).await? {
                                Some(o) => {
                                    let st = status_of(t);
                                    apply(payments, &o, st, &mut r).await?
                                }
                                None => r.mismatches.push(Mismatch {
                                    kind: MismatchKind::PaidThereNotHere,
                                    reference: t.reference.clone(),
                                    here_state: None,
                                    here_amount: None,
                                    there_amount: Some(t.amount),
                                }),
                            }
                        }
                        None => {}
                        Some(o) => {
                            let st = status_of(t);
                            apply(payments, o, st, &mut r).await?
                        }
                    }
                }
                for o in by_ref.into_values() {
                    if o.state == OrderState::Paid {
                        r.mismatches.push(here_not_there(o, None));
                    }
                }
            }
            Ok(None) => {
                for o in &ours {
                    r.checked += 1;
                    match provider.query(o).await {
                        Ok(st) => apply(payments, o, st, &mut r).await?,
                        Err(e) => {
                            warn!(provider = %name, reference = %o.order.reference, error = %e, "reconciliation query failed");
                            r.errors += 1;
                        }
                    }
                }
            }
            Err(e) => {
                warn!(provider = %name, error = %e, "the provider's transaction listing failed");
                r.errors += 1;
            }
        }
    }
    r.mismatches
        .sort_by(|a, b| (a.kind, &a.reference).cmp(&(b.kind, &b.reference)));
    r.mismatches.dedup();
    Ok(r)
}

fn status_of(t: &ProviderTxn) -> ProviderStatus {
    if t.paid {
        ProviderStatus::Paid {
            amount: t.amount,
            txn: t.txn.clone(),
        }
    } else {
        ProviderStatus::Pending
    }
}

fn here_not_there(o: &PaymentOrder, there: Option<i64>) -> Mismatch {
    Mismatch {
        kind: MismatchKind::HereNotThere,
        reference: o.order.reference.clone(),
        here_state: Some(o.state),
        here_amount: Some(o.order.amount),
        there_amount: there,
    }
}

/// Settle an order from what the provider said, or note the disagreement.
async fn apply(
    payments: &Payments,
    o: &PaymentOrder,
    status: ProviderStatus,
    r: &mut Report,
) -> Result<(), PaymentError> {
    let n = &o.order;
    match status {
        ProviderStatus::Paid { amount, txn } => {
            if amount != n.amount {
                r.mismatches.push(Mismatch {
                    kind: MismatchKind::AmountDiffers,
                    reference: n.reference.clone(),
                    here_state: Some(o.state),
                    here_amount: Some(n.amount),
                    there_amount: Some(amount),
                });
                return Ok(());
            }
            if o.state == OrderState::Paid || o.state == OrderState::Refunded {
                return Ok(());
            }
            let v = Verdict {
                reference: n.reference.clone(),
                outcome: super::codes::Finality::Paid,
                amount,
                provider_txn: (!txn.is_empty()).then_some(txn),
                code: "query:paid".into(),
                source: "query",
                message: None,
            };
            match payments.settle(&v).await? {
                Settle::Applied(_) => r.settled_paid += 1,
                _ => r.mismatches.push(Mismatch {
                    kind: MismatchKind::PaidThereNotHere,
                    reference: n.reference.clone(),
                    here_state: Some(o.state),
                    here_amount: Some(n.amount),
                    there_amount: Some(amount),
                }),
            }
        }
        ProviderStatus::Failed { code } => {
            if o.state == OrderState::Paid {
                r.mismatches.push(here_not_there(o, None));
            } else if o.state == OrderState::Requested {
                let v = Verdict {
                    reference: n.reference.clone(),
                    outcome: super::codes::Finality::Failed,
                    amount: n.amount,
                    provider_txn: None,
                    code: format!("query:{code}"),
                    source: "query",
                    message: None,
                };
                if let Settle::Applied(_) = payments.settle(&v).await? {
                    r.settled_failed += 1;
                }
            }
        }
        ProviderStatus::Pending | ProviderStatus::Unknown => {
            if o.state == OrderState::Paid {
                r.mismatches.push(here_not_there(o, None));
            }
        }
    }
    Ok(())
}

/// A `--date` that is not a day.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--date {date:?}: {detail} (expected yyyy-mm-dd)")]
pub struct DayError {
    pub date: String,
    pub detail: String,
}

/// The local day `yyyy-mm-dd` (GMT+7) as unix milliseconds `[start, end)`.
pub fn day_bounds(date: &str) -> Result<(i64, i64), DayError> {
    let d = time::Date::parse(
        date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| DayError {
        date: date.into(),
        detail: e.to_string(),
    })?;
    let start = d
        .with_hms(0, 0, 0)
        .expect("midnight")
        .assume_offset(crate::model::time::VIETNAM);
    let ms = (start.unix_timestamp_nanos() / 1_000_000) as i64;
    Ok((ms, ms + 86_400_000))
}
