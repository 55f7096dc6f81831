//! `gateway payments …` commands.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::payments::reconcile::{day_bounds, reconcile, ReconcileMetrics};

/// `gateway payments reconcile`: reconcile every provider (or one) now: overdue orders, and
/// with `date` (`yyyy-mm-dd`, GMT+7) that day's orders. Prints the report and the mismatch
/// metric; exit 0 when everything agrees, 1 when there are mismatches or failed queries, 2 on
/// configuration errors.
pub async fn reconcile_command(
    config: &Path,
    date: Option<&str>,
    provider: Option<&str>,
) -> ExitCode {
    let loaded = match crate::config::load(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(section) = &loaded.config.payments else {
        eprintln!("{}: no [payments] section", config.display());
        return ExitCode::from(2);
    };
    let day = match date.map(day_bounds).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let store_url = match loaded.store_url() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let store_tls = match crate::app::store_tls(&loaded) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Transitions settled here reach the evidence log like the running gateway's (same chain;
    // the store serialises appends to it).
    let evidence = match evidence_hook(&loaded, &store_url, store_tls.clone()).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("evidence: {e}");
            return ExitCode::from(2);
        }
    };
    let built =
        crate::payments::config::build(section, &loaded.base, &store_url, store_tls, evidence)
            .await;
    let payments = match built {
        Ok(b) => b.payments,
        Err(e) => {
            eprintln!("payments: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(name) = provider {
        if payments.provider(name).is_none() {
            eprintln!("no payment provider named `{name}`");
            return ExitCode::from(2);
        }
    }
    let metrics = ReconcileMetrics::default();
    let mut clean = true;
    let providers: Vec<_> = payments
        .providers()
        .filter(|p| provider.is_none_or(|n| n == p.name()))
        .cloned()
        .collect();
    for p in providers {
        match reconcile(&payments, p.as_ref(), crate::model::time::now_ms(), day).await {
            Ok(r) => {
                print!("{}", r.render());
                clean &= r.mismatches.is_empty() && r.errors == 0;
                metrics.observe(&r);
            }
            Err(e) => {
                eprintln!("provider {}: {e}", p.name());
                clean = false;
            }
        }
    }
    print!("{}", metrics.render());
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Why the evidence log cannot be opened for the command, by step.
#[derive(Debug, thiserror::Error)]
enum EvidenceSetupError {
    #[error("{0}")]
    Log(#[from] crate::evidence::EvidenceError),
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
}

/// The evidence log as a payment hook (its modes decide what is recorded).
async fn evidence_hook(
    loaded: &crate::config::Loaded,
    store_url: &str,
    store_tls: Option<gw_store::PgTls>,
) -> Result<Option<Arc<dyn crate::payments::hooks::EvidenceHook>>, EvidenceSetupError> {
    let c = &loaded.config;
    let log = crate::evidence::EvidenceLog::new(&c.evidence, &c.gateway.instance, &loaded.base)?;
    let store = gw_store::open_tls(store_url, store_tls).await?;
    Ok(Some(Arc::new(
        crate::payments::evidence::PaymentEvidence::new(store, Arc::new(log)),
    )))
}
