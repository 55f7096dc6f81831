//! The payment side of a running gateway, wired from `[payments]`: the HTTP handlers, the
//! evidence hook, the notice publisher and the scheduled reconciliation.
//!
//! # Invariants
//! - Built once at start; no `[payments]` section, no payment side.
//! - Every PayGov provider's failed token fetch is counted in the process metrics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::edge::payments as ipn;
use crate::model::envelope::Envelope;
use crate::payments::hooks::EvidenceHook;
use crate::payments::notices::{NoticeError, NoticeSink};
use crate::payments::{config, reconcile};

/// Why the payment side cannot be wired, by step.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    StoreUrl(String),
    #[error(transparent)]
    Build(#[from] config::BuildFailure),
    #[error("payments.token: {0}")]
    Token(String),
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
    ) -> Result<Option<Wired>, WireError> {
        let Some(s) = &loaded.config.payments else {
            return Ok(None);
        };
        let evidence = engine.evidence.clone().map(|log| {
            Arc::new(crate::payments::evidence::PaymentEvidence::new(
                engine.store.clone(),
                log,
            )) as Arc<dyn EvidenceHook>
        });
        let built = config::build(
            s,
            &loaded.base,
            &loaded
                .store_url()
                .map_err(|e| WireError::StoreUrl(e.to_string()))?,
            super::backends::store_tls(loaded).map_err(|e| WireError::StoreUrl(e.to_string()))?,
            evidence,
        )
        .await?;
        for p in built.paygov.values() {
            p.report_to(engine.metrics.clone());
        }
        let payments = built.payments;
        let token = match &s.token {
            Some(r) => Some(
                r.resolve(&loaded.base)
                    .map_err(|e| WireError::Token(e.to_string()))?,
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
        crate::jobs::payments::run(
            self.http.payments.clone(),
            self.sink.clone(),
            self.interval,
            self.metrics.clone(),
            lead,
            cancel,
        )
    }
}

/// Publishes notices through the route runtime (routes taking `payment.settled` from the
/// payments source). No route taking it is an error: the notice stays queued.
pub struct EngineSink(pub Arc<crate::runtime::Engine>);

#[async_trait]
impl NoticeSink for EngineSink {
    async fn publish(&self, env: &Envelope) -> Result<(), NoticeError> {
        match self.0.publish(env).await {
            Ok(routes) if routes.is_empty() => Err(NoticeError::NoRoute {
                kind: env.kind.clone(),
                source_name: env.source.clone(),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(NoticeError::Engine(e.to_string())),
        }
    }
}
