//! The document axis's receiving side: documents and status messages addressed to the
//! province, polled from the axis (`getReceivedEdocList`, `getEdoc`), verified, published as
//! `document.received` / `document.status` events, then acknowledged to the axis with status
//! 01 (`updateStatus inbox`). One poll per `[adapters.NAME.axis]` with `poll_interval` > 0,
//! under store leadership ([`crate::jobs::Singleton`], keyed by the adapter).
//!
//! # Invariants
//! - **Verified before anything else.** A fetched envelope is read and its signature checked
//!   against the trust anchors of the configured profile (`axis.trust`, else the adapter's
//!   `signing`) before any of its fields is used; one that fails (malformed, unsigned,
//!   tampered, untrusted signer, not addressed to the province's organ) is never published:
//!   it is answered `rejection` (02) at the axis and counted `refused`, with the reason logged
//!   (element names and codes only, never the content).
//! - **No loss, no duplicate, across a crash.** Per item: the take is stored first
//!   ([`gw_store::axis::AxisStore::take`], keyed by the DocumentId, or a status message's
//!   `DocumentId#Code@Timestamp`) with the envelope id it is published under; then the
//!   confirmed publish; then `published`; then the acknowledgement; then `acked`. A crash
//!   before the publish is confirmed re-publishes under the **same** envelope id (the route's
//!   ledger settles it once); a crash after it skips the publish and only acknowledges; the
//!   axis keeps listing an item until it is acknowledged, so none is lost.
//! - **Status history in the store.** The automatic 01 of a received document, and every
//!   status message received, are appended to the document's history
//!   ([`gw_store::axis::AxisStore::history`]; `gateway edxml history DOCUMENT_ID`). Statuses
//!   the one-stop system sends go through a route to the axis and are in the route's trail.
//! - The work is CPU-bound where it verifies: on the blocking pool.

use std::sync::Arc;

use gw_edxml::model::Header;
use gw_edxml::read::{read, InMemory};
use gw_edxml::status::Status;
use gw_store::axis::{AxisStore, StatusRow, Take};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Loaded;
use crate::connectors::axis::request::{EDOC, STATUS};
use crate::connectors::axis::translate::{received, status_received};
use crate::connectors::axis::{AxisCallError, AxisClient, ListItem};
use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::time::now_ms;
use crate::runtime::Engine;
use crate::signing::KeyMaterial;

/// The job's fixed name (metric label); leadership is taken per adapter.
pub const AXIS_POLL: &str = "axis-poll";

/// A failing step of an axis poll; the message names the adapter, the operation, the item.
#[derive(Debug, thiserror::Error)]
pub enum AxisPollError {
    /// The adapter's client cannot be built from its settings.
    #[error("adapters.{adapter}: {detail}")]
    Client { adapter: String, detail: String },
    /// The signing profiles cannot be loaded.
    #[error("adapters.{adapter}: {error}")]
    Signing {
        adapter: String,
        error: crate::signing::SigningError,
    },
    /// No profile with trust anchors to verify received envelopes.
    #[error("adapters.{adapter}: no trust anchors to verify received envelopes (set axis.trust to a profile with trust_anchors)")]
    NoTrust { adapter: String },
    /// The store's URL or TLS files.
    #[error("the store: {0}")]
    StoreConfig(String),
    /// A store operation.
    #[error("the axis store: {0}")]
    Store(#[from] gw_store::StoreError),
    /// A call to the axis.
    #[error(transparent)]
    Axis(#[from] AxisCallError),
    /// The verification task died.
    #[error("verifying item {axis_id}: the task failed: {detail}")]
    Task { axis_id: String, detail: String },
    /// A publish was refused or not confirmed.
    #[error("publishing {kind} of item {axis_id}: {error}")]
    Publish {
        kind: &'static str,
        axis_id: String,
        error: gw_broker::BrokerError,
    },
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PollSummary {
    /// Events published (documents and statuses).
    pub published: usize,
    /// Items taken by an earlier poll (published already): only acknowledged now.
    pub already_published: usize,
    /// Items acknowledged to the axis.
    pub acknowledged: usize,
    /// Items refused (not verified, or not for the province) and answered `rejection`.
    pub refused: usize,
    /// Published events no route took: a configuration gap.
    pub unrouted: usize,
}

/// Where a poll stops: [`Stop::Never`] in production; the others simulate a crash at that
/// step (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Never,
    /// After the confirmed publish, before it is marked (and before the acknowledgement).
    AfterPublish,
    /// After it is marked published, before the acknowledgement.
    AfterMark,
}

/// The poll of one axis adapter.
pub struct AxisPoll {
    adapter: String,
    client: AxisClient,
    trust: Arc<KeyMaterial>,
    store_url: String,
    store_tls: Option<gw_store::TlsFiles>,
    store: tokio::sync::OnceCell<Arc<dyn AxisStore>>,
}

/// One verified item, ready to publish.
struct Verified {
    take_key: String,
    kind: EventKind,
    key: String,
    payload: serde_json::Value,
    /// The history row it adds (a received status).
    history: Option<StatusRow>,
    /// The document whose received 01 is recorded when it is acknowledged.
    document: Option<String>,
}

impl AxisPoll {
    /// One poll per axis adapter of the configuration (whatever its interval).
    pub fn from_config(loaded: &Loaded) -> Result<Vec<AxisPoll>, AxisPollError> {
        let axis: Vec<_> = loaded
            .config
            .adapters
            .iter()
            .filter(|(_, a)| a.connector == "axis")
            .collect();
        if axis.is_empty() {
            return Ok(Vec::new());
        }
        let first = axis[0].0.clone();
        let profiles =
            crate::signing::Profiles::load(loaded).map_err(|error| AxisPollError::Signing {
                adapter: first,
                error,
            })?;
        let store_url = loaded
            .store_url()
            .map_err(|e| AxisPollError::StoreConfig(e.to_string()))?;
        let mut polls = Vec::new();
        for (name, a) in axis {
            let client =
                AxisClient::new(name, a, &loaded.base).map_err(|e| AxisPollError::Client {
                    adapter: name.clone(),
                    detail: e.to_string(),
                })?;
            let trust = client
                .settings
                .trust_profile
                .as_deref()
                .and_then(|p| profiles.material(p))
                .filter(|m| m.trust.is_some())
                .cloned()
                .ok_or_else(|| AxisPollError::NoTrust {
                    adapter: name.clone(),
                })?;
            polls.push(AxisPoll {
                adapter: name.clone(),
                client,
                trust,
                store_url: store_url.clone(),
                store_tls: loaded.store_tls_files(),
                store: tokio::sync::OnceCell::new(),
            });
        }
        Ok(polls)
    }

    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The axis store (opened on first use).
    pub async fn store(&self) -> Result<Arc<dyn AxisStore>, AxisPollError> {
        self.store
            .get_or_try_init(|| async {
                let tls = match &self.store_tls {
                    Some(f) => Some(
                        gw_store::PgTls::from_files(f)
                            .map_err(|e| AxisPollError::StoreConfig(e.to_string()))?,
                    ),
                    None => None,
                };
                Ok(gw_store::axis::open_tls(&self.store_url, tls).await?)
            })
            .await
            .cloned()
    }

    /// One poll: documents, then status messages.
    pub async fn poll_once(&self, engine: &Engine) -> Result<PollSummary, AxisPollError> {
        self.poll_until(engine, Stop::Never).await
    }

    /// [`AxisPoll::poll_once`], stopping at `stop` (a simulated crash) on the first item.
    pub async fn poll_until(
        &self,
        engine: &Engine,
        stop: Stop,
    ) -> Result<PollSummary, AxisPollError> {
        let store = self.store().await?;
        let mut summary = PollSummary::default();
        for messagetype in [EDOC, STATUS] {
            for item in self.client.list(messagetype).await? {
                if self
                    .take_one(engine, &*store, &item, stop, &mut summary)
                    .await?
                {
                    return Ok(summary);
                }
            }
        }
        Ok(summary)
    }

    /// One item; `true` when the poll stops here (a simulated crash).
    async fn take_one(
        &self,
        engine: &Engine,
        store: &dyn AxisStore,
        item: &ListItem,
        stop: Stop,
        summary: &mut PollSummary,
    ) -> Result<bool, AxisPollError> {
        let xml = self.client.get(&item.id).await?;
        let v = match self.verify(item, xml).await? {
            Ok(v) => v,
            Err(reason) => {
                warn!(adapter = %self.adapter, axis_id = %item.id, reason = %reason,
                      "received envelope refused; answered rejection");
                let word = Status::Rejected.word().expect("02 has a word");
                self.client.update_status(&item.id, word).await?;
                summary.refused += 1;
                return Ok(false);
            }
        };
        let proposed = uuid::Uuid::now_v7().to_string();
        let take = store
            .take(Take {
                take_key: v.take_key.clone(),
                axis_id: item.id.clone(),
                kind: if v.kind == EventKind::DocumentReceived {
                    "document".into()
                } else {
                    "status".into()
                },
                envelope_id: proposed.clone(),
                taken_ms: now_ms(),
                published_ms: None,
                acked_ms: None,
            })
            .await?;
        if take.published_ms.is_none() {
            let mut env = Envelope::new(
                v.kind.as_str(),
                v.key.clone(),
                self.client.settings.source_name.clone(),
                v.payload,
            );
            env.id = take.envelope_id.parse().unwrap_or(env.id);
            if take.envelope_id != proposed {
                // Taken by an earlier poll that may have published it: the ledger decides.
                env.headers.insert(
                    crate::runtime::route::HDR_MAY_BE_DUPLICATE.to_string(),
                    "1".to_string(),
                );
            }
            let routed = engine
                .publish(&env)
                .await
                .map_err(|error| AxisPollError::Publish {
                    kind: v.kind.as_str(),
                    axis_id: item.id.clone(),
                    error,
                })?;
            if routed.is_empty() {
                summary.unrouted += 1;
            }
            summary.published += 1;
            if stop == Stop::AfterPublish {
                return Ok(true);
            }
            if let Some(h) = v.history {
                store.add_status(h).await?;
            }
            store.mark_published(&v.take_key, now_ms()).await?;
            if stop == Stop::AfterMark {
                return Ok(true);
            }
        } else {
            summary.already_published += 1;
        }
        if take.acked_ms.is_none() {
            let inbox = Status::Received;
            self.client
                .update_status(&item.id, inbox.word().expect("01 has a word"))
                .await?;
            if let Some(doc) = v.document {
                store
                    .add_status(StatusRow {
                        document_id: doc,
                        seq: 0,
                        direction: "sent".into(),
                        code: inbox.code().map(str::to_string),
                        word: inbox.word().map(str::to_string),
                        axis_id: item.id.clone(),
                        detail: format!(
                            "acknowledged to the axis by {}",
                            self.client.settings.organ_id
                        ),
                        at_ms: now_ms(),
                    })
                    .await?;
            }
            store.mark_acked(&v.take_key, now_ms()).await?;
        }
        summary.acknowledged += 1;
        Ok(false)
    }

    /// Read and verify on the blocking pool: the item to publish, or why it is refused.
    async fn verify(
        &self,
        item: &ListItem,
        xml: Vec<u8>,
    ) -> Result<Result<Verified, String>, AxisPollError> {
        let trust = self.trust.clone();
        let organ = self.client.settings.organ_id.clone();
        let axis_id = item.id.clone();
        tokio::task::spawn_blocking(move || verify_now(&axis_id, &xml, &trust, &organ))
            .await
            .map_err(|e| AxisPollError::Task {
                axis_id: item.id.clone(),
                detail: e.to_string(),
            })
    }

    /// Poll every `poll_interval` until `cancel` (the first poll at once); `0s` = never. Only
    /// the instance leading the adapter's poll polls ([`crate::jobs`]).
    pub async fn run_periodic(
        self,
        engine: Arc<Engine>,
        lead: crate::jobs::Singleton,
        cancel: CancellationToken,
    ) {
        let every = self.client.settings.poll_interval;
        if every.is_zero() {
            return;
        }
        loop {
            match lead.tick(|| self.poll_once(&engine)).await {
                Some(Ok(s)) if s.published + s.refused + s.acknowledged > 0 => info!(
                    adapter = %self.adapter,
                    published = s.published,
                    acknowledged = s.acknowledged,
                    refused = s.refused,
                    unrouted = s.unrouted,
                    "document axis polled"
                ),
                None | Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(adapter = %self.adapter, "document axis poll failed (retried next interval): {e}")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        lead.step_down().await;
    }
}

fn verify_now(
    axis_id: &str,
    xml: &[u8],
    trust: &KeyMaterial,
    organ: &str,
) -> Result<Verified, String> {
    let anchors = trust.trust.as_ref().ok_or("no trust anchors")?;
    let mut sink = InMemory::default();
    let r = read(xml, &mut sink)
        .map_err(|e| e.to_string())?
        .verify(anchors)
        .map_err(|e| e.to_string())?;
    let signer = crate::signing::describe_certificate(&r.signer).subject;
    match &r.envelope.header {
        Header::Document(h) => {
            if !h.to.iter().any(|t| t.organ_id == organ) {
                return Err(format!("the document is not addressed to organ {organ}"));
            }
            let atts: Vec<_> = r
                .attachments
                .iter()
                .map(|i| {
                    let bytes = sink.attachments.remove(&i.content_id).unwrap_or_default();
                    (i.clone(), bytes)
                })
                .collect();
            let doc = h.document_id.to_string();
            Ok(Verified {
                take_key: doc.clone(),
                kind: EventKind::DocumentReceived,
                key: doc.clone(),
                payload: received(axis_id, &r.envelope, &atts, &signer),
                history: None,
                document: Some(doc),
            })
        }
        Header::Status(s) => {
            if s.response_for.organ_id != organ {
                return Err(format!(
                    "the status answers a document not of organ {organ}"
                ));
            }
            let doc = s.response_for.document_id.to_string();
            Ok(Verified {
                take_key: format!("{doc}#{}@{}", s.status.code().unwrap_or(""), s.timestamp),
                kind: EventKind::DocumentStatus,
                key: doc.clone(),
                payload: status_received(axis_id, s),
                history: Some(StatusRow {
                    document_id: doc,
                    seq: 0,
                    direction: "received".into(),
                    code: s.status.code().map(str::to_string),
                    word: s.status.word().map(str::to_string),
                    axis_id: axis_id.to_string(),
                    detail: format!("from {}", s.from.organ_id),
                    at_ms: now_ms(),
                }),
                document: None,
            })
        }
    }
}
