//! The payment side's singleton job: publishing `payment.settled` notices every second and
//! reconciling each provider's transactions against the orders every `interval`.
//!
//! # Invariants
//! - Both run on the instance leading the `payments` job only ([`super::Singleton`]).
//! - A failed publish or reconciliation is logged and retried on the next tick; notices stay
//!   queued until a sink accepted them (at least once, deduplicated by notice id).

use tracing::warn;

/// The scheduled side: every second, publish queued `payment.settled` notices; every
/// `interval` (when not zero), reconcile every provider's overdue orders. Ends on `cancel`.
pub async fn run(
    payments: std::sync::Arc<crate::payments::Payments>,
    sink: std::sync::Arc<dyn crate::payments::NoticeSink>,
    interval: std::time::Duration,
    metrics: std::sync::Arc<crate::payments::reconcile::ReconcileMetrics>,
    lead: super::Singleton,
    cancel: tokio_util::sync::CancellationToken,
) {
    let tick = std::time::Duration::from_secs(1);
    let mut since_reconcile = std::time::Duration::ZERO;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        since_reconcile += tick;
        let reconcile_now = !interval.is_zero() && since_reconcile >= interval;
        // Notices and reconciliation run on the instance leading the job only.
        let ran = lead
            .tick(|| async {
                if let Err(e) = payments.publish_notices(sink.as_ref(), 500).await {
                    warn!(error = %e, "publishing payment notices failed; retried next tick");
                }
                if !reconcile_now {
                    return Ok::<(), std::convert::Infallible>(());
                }
                let providers: Vec<_> = payments.providers().cloned().collect();
                for p in providers {
                    match crate::payments::reconcile::reconcile(
                        &payments,
                        p.as_ref(),
                        crate::model::time::now_ms(),
                        None,
                    )
                    .await
                    {
                        Ok(r) => {
                            metrics.observe(&r);
                            if !r.mismatches.is_empty() || r.errors > 0 {
                                warn!(
                                    provider = p.name(),
                                    mismatches = r.mismatches.len(),
                                    errors = r.errors,
                                    "payment reconciliation found problems"
                                );
                            }
                        }
                        Err(e) => {
                            warn!(provider = p.name(), error = %e, "payment reconciliation failed")
                        }
                    }
                }
                Ok(())
            })
            .await;
        if reconcile_now && ran.is_some() {
            since_reconcile = std::time::Duration::ZERO;
        }
    }
    lead.step_down().await;
}
