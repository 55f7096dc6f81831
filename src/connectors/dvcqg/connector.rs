//! The connector itself: built once from the settings, it turns each envelope into the
//! portal's call and hands batchable items to their batcher.
//!
//! # Invariants
//! - `dossier.upserted` → `DongBoHoSoMC` (`isUpdating` from the ledger: true when a version of
//!   this dossier was delivered before; or, in `lookup` mode, asked with `TraCuuHoSo` when the
//!   ledger does not know it); `dossier.progress` → `CapNhatTienDoHoSoMC` (both batched);
//!   `dossier.status` → `DongBoTrangThaiHoSo` (alone).
//! - Translation errors (unknown procedure code, a malformed canonical payload) are refusals:
//!   retrying cannot fix them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::client::Inner;
use super::lookup::{self, SharingError};
use super::progress;
use super::request::service;
use super::response::{awaiting_dossier, failed, refused, request_build};
use super::session::Credentials;
use super::settings;
use super::sync::{run_batcher, Item, Op};
use super::translate::{self, TranslateError};
use crate::config::AdapterSection;
use crate::connectors::connector::{Attempted, Connector, InDoubtCheck};
use crate::connectors::error::ConnectorError;
use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::Dossier;
use crate::signing::SigningProfile;
use crate::telemetry::metrics::Metrics;
use crate::transport::client::HttpClient;

pub struct DvcqgConnector {
    inner: Arc<Inner>,
    batchers: HashMap<Op, mpsc::Sender<Item>>,
}

impl DvcqgConnector {
    pub fn new(
        name: &str,
        a: &AdapterSection,
        base: &Path,
        signing: Arc<dyn SigningProfile>,
    ) -> Result<Self, ConnectorError> {
        let r = settings::resolve(name, a, base).map_err(|source| ConnectorError::Dvcqg {
            adapter: name.into(),
            source,
        })?;
        let client = HttpClient::build(name, a, base)?;
        let inner = Arc::new(Inner {
            name: name.into(),
            settings: r.settings,
            client,
            credentials: Credentials::new(name, r.auth),
            procedures: r.procedures,
            signing,
        });
        let mut batchers = HashMap::new();
        for op in Op::ALL {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(run_batcher(inner.clone(), op, rx));
            batchers.insert(op, tx);
        }
        Ok(DvcqgConnector { inner, batchers })
    }

    /// Count failed logins and token refreshes in `metrics`
    /// (`gateway_token_refresh_failures_total{adapter}`).
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        self.inner.credentials.report_to(metrics);
    }

    /// Logins made so far (a client must renew once per expiry, never loop).
    pub fn logins(&self) -> u64 {
        self.inner.credentials.logins()
    }

    /// One authenticated call on the sharing endpoint (catalogue, look-ups, configured
    /// listings): `fields` are added to `session`/`madonvi`/`service`; an expired session is
    /// renewed once. Returns the answer's `result` (`null` when absent), or why it failed.
    pub async fn sharing_call(
        &self,
        service: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<Value, SharingError> {
        lookup::sharing_call(&self.inner, service, fields).await
    }

    async fn submit(&self, op: Op, value: Value) -> Attempted {
        let (done, wait) = oneshot::channel();
        if self.batchers[&op]
            .send(Item {
                bytes: super::request::json_len(&value),
                value,
                done,
                capture: crate::evidence::capture::current(),
            })
            .await
            .is_err()
        {
            return failed(request_build(), "batcher stopped");
        }
        wait.await
            .unwrap_or_else(|_| failed(request_build(), "batcher dropped the item"))
    }
}

#[async_trait]
impl Connector for DvcqgConnector {
    fn adapter(&self) -> &str {
        &self.inner.name
    }

    fn acts_on_snapshot(&self, kind: &str) -> bool {
        matches!(
            EventKind::parse(kind),
            Some(EventKind::DossierProgress | EventKind::DossierStatus)
        )
    }

    /// In doubt: see [`lookup::resolve_in_doubt`].
    async fn resolve_in_doubt(&self, env: &Envelope) -> InDoubtCheck {
        lookup::resolve_in_doubt(&self.inner, env).await
    }

    async fn deliver(&self, env: &Envelope, prior: Option<i64>) -> Attempted {
        match EventKind::parse(&env.kind) {
            Some(EventKind::DossierUpserted) => {
                let dossier = match env.payload_as::<Dossier>() {
                    Ok(d) => d,
                    Err(e) => return refused(TranslateError::Canonical(e.to_string())),
                };
                let item = match translate::dossier_item(&dossier, &self.inner.procedures) {
                    Ok(v) => v,
                    Err(e) => return refused(e),
                };
                let updating = match prior {
                    Some(_) => true,
                    None if self.inner.settings.lookup => {
                        match lookup::lookup(&self.inner, &dossier.code).await {
                            Ok(found) => found,
                            Err(a) => return a,
                        }
                    }
                    None => false,
                };
                self.submit(Op::Upsert { updating }, item).await
            }
            Some(EventKind::DossierProgress) => match progress::item(&env.payload) {
                Ok(v) => self.submit(Op::Progress, v).await,
                Err(e) => refused(e),
            },
            Some(EventKind::DossierStatus) => {
                let dossier = match env.payload_as::<Dossier>() {
                    Ok(d) => d,
                    Err(e) => return refused(TranslateError::Canonical(e.to_string())),
                };
                let item = match translate::status_body(&dossier) {
                    Ok(fields) => Value::Object(fields),
                    Err(e) => return refused(e),
                };
                let mut fields = serde_json::Map::new();
                fields.insert("data".into(), Value::Array(vec![item]));
                let (attempted, code) = self
                    .inner
                    .call(service::SYNC_STATUS, &self.inner.settings.url, fields)
                    .await;
                match code {
                    // The dossier is not at the portal yet: wait for its snapshot.
                    Some(c) if self.inner.settings.not_found.contains(&c) => Attempted {
                        decision: awaiting_dossier(),
                        ..attempted
                    },
                    _ => attempted,
                }
            }
            _ => refused(TranslateError::UnknownKind(env.kind.clone())),
        }
    }
}
