//! [`SignatureService`]: accept a request, then one function per state, each a single step
//! recorded in the store, and the round that drives them in bounded batches.
//!
//! # Invariants
//! - A step reads the row, does its one thing, and writes the next state as a compare-and-set
//!   on the state it read: two instances doing the same step write once; a crash between the
//!   work and the write repeats the work (each step is safe to repeat) except the submit,
//!   which the store's send guard makes at most once (resolved by asking the service).
//! - A round does at most `batch` items of each kind (overdue, in-doubt, work, polls per
//!   service, outbox), at most `concurrency` at once, so its memory and its calls are bounded
//!   whatever the backlog.
//! - Transient failures (the service unreachable, a 5xx, a store error) leave the row where it
//!   is for the next round; only a permanent one ends the request with `signature.failed`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use gw_store::signatures::{
    retries_in_state, BlobKind, Change, NewRequest, RequestState, SendGuard, SignatureRequest,
    SignatureStore, Step, Transitioned, DEFAULT_BLOB_CAP,
};
use gw_store::StoreError;
use tracing::{debug, info, warn};

use super::formats::Formats;
use super::metrics::SignatureMetrics;
use super::request::{
    request_id, AcceptError, DocumentField, Level, SignatureRequestBody, VisibleField,
};
use crate::connectors::signer::{
    HashRequest, RemoteSigner, SignStatus, SignerError, SignerId, Submitted, Transaction,
};
use crate::connectors::signers::Signers;
use crate::model::envelope::Envelope;
use crate::model::time::now_ms;
use crate::payments::NoticeSink;
use crate::signing::assemble::{self, Format, Prepared};
use crate::signing::remote::{DigestAlgorithm, Expected, SignatureValue, SignerCertificate};

/// How the service works.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// This instance (the holder of leases and sends).
    pub instance: String,
    /// Items of each kind per round.
    pub batch: u32,
    /// Requests worked on (or polled) at once within a round (a service's quota still
    /// paces its calls).
    pub concurrency: usize,
    /// How long a work or poll lease lasts.
    pub work_lease: Duration,
    /// How long a send may take before it is in doubt: longer than any signer's timeout.
    pub send_lease: Duration,
    /// The largest document accepted.
    pub max_document_bytes: usize,
    /// How long this instance's claim on outbox events lasts (longer than a publish and its
    /// confirm): while it lives no other instance publishes them.
    pub outbox_lease: Duration,
    /// Signed documents up to this size go inline in `signature.completed`
    /// (`document_base64`); larger ones by reference only.
    pub inline_document_bytes: usize,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            instance: "gateway".into(),
            batch: 100,
            concurrency: 16,
            work_lease: Duration::from_secs(60),
            send_lease: Duration::from_secs(120),
            max_document_bytes: DEFAULT_BLOB_CAP,
            outbox_lease: Duration::from_secs(60),
            inline_document_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What [`SignatureService::accept`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub request_id: String,
    pub state: RequestState,
    /// False when the same request had been accepted before.
    pub new: bool,
}

/// What one round did (counts only: no personal data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub expired: usize,
    pub in_doubt: usize,
    pub worked: usize,
    pub polled: usize,
    pub published: usize,
    /// Cancels the services were told of (or attempted).
    pub cancels: usize,
}

impl RoundReport {
    pub fn is_idle(&self) -> bool {
        *self == RoundReport::default()
    }
}

/// The remote-signing flow.
pub struct SignatureService {
    pub store: Arc<dyn SignatureStore>,
    pub(super) signers: Signers,
    settings: ServiceSettings,
    pub metrics: Arc<SignatureMetrics>,
    formats: Formats,
}

/// How a request is to be signed, as the store's `format` column keeps it:
/// `format/digest[/b-t][/visible=PAGE:x1,y1,x2,y2]` (`pdf/sha256`, `cms/sha256/b-t`,
/// `pdf/sha256/b-t/visible=1:50,50,250,110`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spec {
    format: Format,
    digest: DigestAlgorithm,
    level: Level,
    visible: Option<VisibleField>,
}

impl Spec {
    fn column(&self) -> String {
        let mut s = format!("{}/{}", self.format.as_str(), self.digest.as_str());
        if self.level == Level::BT {
            s.push_str("/b-t");
        }
        if let Some(v) = self.visible {
            let [a, b, c, d] = v.rect;
            s.push_str(&format!("/visible={}:{a},{b},{c},{d}", v.page));
        }
        s
    }

    fn parse(s: &str) -> Option<Spec> {
        let mut parts = s.split('/');
        let mut spec = Spec {
            format: parts.next()?.parse().ok()?,
            digest: DigestAlgorithm::parse(parts.next()?)?,
            level: Level::BB,
            visible: None,
        };
        for p in parts {
            match p.split_once('=') {
                None if p == "b-t" => spec.level = Level::BT,
                Some(("visible", v)) => {
                    let (page, rect) = v.split_once(':')?;
                    let n: Vec<f64> = rect
                        .split(',')
                        .map(|x| x.parse().ok())
                        .collect::<Option<_>>()?;
                    spec.visible = Some(VisibleField {
                        page: page.parse().ok()?,
                        rect: n.try_into().ok()?,
                    });
                }
                _ => return None,
            }
        }
        Some(spec)
    }
}

/// A step to try again later (with backoff, through the store's deferral).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The time-stamp authority did not give a token.
    TimeStamp,
    /// The document server did not give the document.
    Fetch,
}

fn assemble_digest(d: DigestAlgorithm) -> assemble::DigestAlgorithm {
    match d {
        DigestAlgorithm::Sha256 => assemble::DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384 => assemble::DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512 => assemble::DigestAlgorithm::Sha512,
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(DigestAlgorithm::Sha256.digest(b))
}

/// One request's step in a round, boxed so a round's futures have one type.
type Pending<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A permanent end of a request: its `reason_kind` and words.
struct Fail {
    kind: &'static str,
    reason: String,
}

impl Fail {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Fail {
            kind,
            reason: reason.into(),
        }
    }
}

/// The outcome of preparing: the certificate, the digest and the prepared state.
struct Ready {
    certificate: Vec<u8>,
    digest: Vec<u8>,
    prepared: Vec<u8>,
}

/// Why preparing did not produce a [`Ready`].
enum PrepareError {
    /// Permanent: the request cannot be signed as asked.
    Refused(AcceptError),
    /// The service could not be asked now.
    Later(String),
}

impl SignatureService {
    pub fn new(
        store: Arc<dyn SignatureStore>,
        signers: Signers,
        settings: ServiceSettings,
    ) -> Self {
        SignatureService {
            store,
            signers,
            settings,
            metrics: Arc::default(),
            formats: Formats::default(),
        }
    }

    /// With a time-stamp authority (B-T) and a document fetcher (documents by reference).
    pub fn with_formats(mut self, formats: Formats) -> Self {
        self.formats = formats;
        self
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    fn signer(&self, name: &str) -> Result<&Arc<dyn RemoteSigner>, AcceptError> {
        self.signers
            .get(name)
            .ok_or_else(|| AcceptError::UnknownService {
                name: name.into(),
                known: self.signers.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Accept one `signature.requested` event (see the room's invariants): checked, stored,
    /// prepared when the service answers, and its request id answered.
    pub async fn accept(
        &self,
        source: &str,
        key: &str,
        payload: &serde_json::Value,
    ) -> Result<Accepted, AcceptError> {
        let body = SignatureRequestBody::parse(payload)?;
        let signer = self.signer(&body.signer)?.clone();
        let official = SignerId(body.official.clone());
        signer
            .verify_against(&official)
            .map_err(|_| AcceptError::UnknownOfficial {
                service: body.signer.clone(),
            })?;
        let format: Format = body
            .format
            .parse()
            .map_err(|_| AcceptError::UnknownFormat {
                format: body.format.clone(),
            })?;
        let allowed = signer.digests();
        let digest = match &body.digest {
            None => allowed.first().copied().unwrap_or(DigestAlgorithm::Sha256),
            Some(d) => DigestAlgorithm::parse(d)
                .filter(|a| allowed.contains(a))
                .ok_or_else(|| AcceptError::DigestNotAllowed {
                    digest: d.clone(),
                    service: body.signer.clone(),
                    allowed: allowed
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
        };
        let level = Level::parse(body.level.as_deref())?;
        if level == Level::BT {
            if format == Format::Xml {
                return Err(AcceptError::LevelNotSupported {
                    format: format.as_str().into(),
                });
            }
            if self.formats.tsa.is_none() {
                return Err(AcceptError::TimeStampNotConfigured);
            }
        }
        if body.visible.is_some() {
            if format != Format::Pdf {
                return Err(AcceptError::VisibleNotSupported);
            }
            if let (Some(v), Some(font)) = (&body.visible, &self.formats.font) {
                assemble::Visible {
                    page: v.page,
                    rect: v.rect,
                    font: font.clone(),
                }
                .checked_rect()
                .map_err(|e| AcceptError::Visible {
                    detail: e.to_string(),
                })?;
            } else {
                return Err(AcceptError::VisibleNotConfigured);
            }
        }
        let spec = Spec {
            format,
            digest,
            level,
            visible: body.visible,
        };
        let (document, document_ref, document_sha256) = match &body.document {
            DocumentField::Inline(_) => {
                let d = body.document_bytes(self.settings.max_document_bytes)?;
                let sha = sha256_hex(&d);
                (Some(d), None, sha)
            }
            DocumentField::Reference(r) => {
                let fetcher = self
                    .formats
                    .documents
                    .as_ref()
                    .ok_or(AcceptError::DocumentsNotConfigured)?;
                if !fetcher.allows(&r.url) {
                    return Err(AcceptError::DocumentUrlNotAllowed);
                }
                (None, Some(r.url.clone()), r.sha256_hex()?)
            }
        };
        let now = now_ms();
        let deadline_ms = match body.deadline_ms {
            Some(d) if d <= now => return Err(AcceptError::DeadlinePassed { deadline_ms: d }),
            Some(d) => d,
            None => now + signer.poll_policy().lifetime.as_millis() as i64,
        };
        let id = request_id(source, key);
        let new = NewRequest {
            request_id: id.clone(),
            idempotency_key: id.clone(),
            source: source.into(),
            dossier_code: body.dossier_code.clone(),
            dossier_key: Some(key.into()),
            service: body.signer.clone(),
            signer_user_id: body.official.clone(),
            signer_credential: None,
            format: spec.column(),
            reason: body.reason.clone(),
            document_ref,
            document_sha256,
            created_ms: now,
            deadline_ms,
        };
        if let Some(existing) = self.store.get(&id).await.map_err(store_err)? {
            return same_request(&existing, &new, key).map(|()| Accepted {
                request_id: id,
                state: existing.state,
                new: false,
            });
        }
        // A document by reference is fetched and prepared by the round (`received`).
        let ready = match &document {
            None => None,
            Some(document) => match self
                .prepare(signer.as_ref(), &official, &spec, document, &body.reason)
                .await
            {
                Ok(r) => Some(r),
                Err(PrepareError::Refused(e)) => return Err(e),
                Err(PrepareError::Later(why)) => {
                    warn!(service = %body.signer, error = %why, "the official's certificate cannot be fetched now; the request is prepared later");
                    None
                }
            },
        };
        if let Some(document) = &document {
            self.store
                .put_blob(
                    &id,
                    BlobKind::Document,
                    document,
                    self.settings.max_document_bytes,
                    now,
                )
                .await
                .map_err(store_err)?;
        }
        let created = self.store.create(new.clone()).await.map_err(store_err)?;
        if let gw_store::signatures::Created::Existing(existing) = &created {
            // Another instance accepted the same event in between.
            return same_request(existing, &new, key).map(|()| Accepted {
                request_id: id,
                state: existing.state,
                new: false,
            });
        }
        let mut state = RequestState::Received;
        if let Some(r) = ready {
            match self.hash_computed(&id, r).await {
                Ok(Transitioned::Applied(after)) => state = after.state,
                Ok(other) => warn!(request = %id, "preparation not recorded: {other:?}"),
                Err(e) => {
                    warn!(request = %id, error = %e, "preparation not recorded; the next round prepares it")
                }
            }
        }
        debug!(request = %id, service = %body.signer, format = format.as_str(), state = state.as_str(), "signing request accepted");
        Ok(Accepted {
            request_id: id,
            state,
            new: true,
        })
    }

    async fn hash_computed(&self, id: &str, r: Ready) -> Result<Transitioned, StoreError> {
        self.store
            .transition(Change {
                request_id: id.into(),
                from: RequestState::Received,
                step: Step::HashComputed {
                    certificate: r.certificate,
                    digest: r.digest,
                    prepared: r.prepared,
                },
                actor: self.settings.instance.clone(),
                detail: "certificate fetched, digest computed".into(),
                at_ms: now_ms(),
            })
            .await
    }

    /// The official's certificate from the service, then the document prepared around it.
    async fn prepare(
        &self,
        signer: &dyn RemoteSigner,
        official: &SignerId,
        spec: &Spec,
        document: &[u8],
        reason: &str,
    ) -> Result<Ready, PrepareError> {
        let Spec {
            format,
            digest,
            level,
            visible,
        } = *spec;
        let visible = match visible {
            None => None,
            Some(v) => Some(assemble::Visible {
                page: v.page,
                rect: v.rect,
                font: self
                    .formats
                    .font
                    .clone()
                    .ok_or(PrepareError::Refused(AcceptError::VisibleNotConfigured))?,
            }),
        };
        let cert = match signer.certificate(official).await {
            Ok(c) => c,
            Err(SignerError::Certificate(e)) => {
                return Err(PrepareError::Refused(AcceptError::Certificate {
                    code: e.code(),
                    detail: scrub(&e, &official.0),
                }))
            }
            Err(SignerError::UnknownSigner { service, .. }) => {
                return Err(PrepareError::Refused(AcceptError::UnknownOfficial {
                    service,
                }))
            }
            Err(e) if e.is_retryable() || e.may_have_arrived() => {
                return Err(PrepareError::Later(scrub(&e, &official.0)))
            }
            Err(e) => {
                return Err(PrepareError::Refused(AcceptError::Certificate {
                    code: "certificate_unavailable",
                    detail: scrub(&e, &official.0),
                }))
            }
        };
        if !cert.key().accepts(digest) {
            return Err(PrepareError::Refused(AcceptError::AlgorithmMismatch {
                detail: format!(
                    "the official's key is {}, which cannot sign a {digest} digest (it accepts {})",
                    cert.key(),
                    cert.key()
                        .accepted()
                        .iter()
                        .map(|a| a.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }));
        }
        let options = assemble::Options {
            digest: assemble_digest(digest),
            reason: (format == Format::Pdf).then(|| reason.to_owned()),
            timestamp: level == Level::BT,
            visible,
            ..assemble::Options::default()
        };
        let prepared = assemble::prepare(format, document, cert.x509(), cert.chain(), &options)
            .map_err(|e| {
                PrepareError::Refused(match e {
                    assemble::AssembleError::NotFormat { .. } | assemble::AssembleError::Pdf(_) => {
                        AcceptError::DocumentNotFormat {
                            detail: e.to_string(),
                        }
                    }
                    assemble::AssembleError::Appearance(a) => AcceptError::Visible {
                        detail: a.to_string(),
                    },
                    other => AcceptError::AlgorithmMismatch {
                        detail: other.to_string(),
                    },
                })
            })?;
        Ok(Ready {
            certificate: cert.der(),
            digest: prepared.to_sign().to_vec(),
            prepared: serde_json::to_vec(&prepared).expect("Prepared serialises"),
        })
    }

    /// One round: expire overdue requests, resolve sends in doubt, do due work, poll each
    /// service, publish outcomes. Each part bounded by `batch`.
    pub async fn round(&self, sink: &dyn NoticeSink) -> Result<RoundReport, StoreError> {
        let mut report = RoundReport::default();
        let batch = self.settings.batch;
        let now = now_ms();
        report.expired = self.store.expire_overdue(now, batch).await?.len();
        for r in self.store.in_doubt_sends(now, batch).await? {
            self.resolve_in_doubt(&r).await?;
            report.in_doubt += 1;
        }
        let lease = self.settings.work_lease.as_millis() as i64;
        let due = self
            .store
            .due_for_work(now_ms(), batch, &self.settings.instance, lease)
            .await?;
        report.worked = due.len();
        // Requests are independent: their steps overlap (the calls to the services), bounded.
        let steps: Vec<Pending<'_, ()>> = due.iter().map(|r| Box::pin(self.work(r)) as _).collect();
        let mut steps =
            futures::stream::iter(steps).buffer_unordered(self.settings.concurrency.max(1));
        while let Some(done) = steps.next().await {
            done?;
        }
        drop(steps);
        let services: Vec<String> = self.signers.names().map(str::to_owned).collect();
        for service in services {
            let due = self
                .store
                .due_for_poll(&service, now_ms(), batch, &self.settings.instance, lease)
                .await?;
            report.polled += due.len();
            self.metrics.count_polls(&service, due.len() as u64);
            let mut waiting = Vec::new();
            let polls: Vec<Pending<'_, Option<(String, i64)>>> = due
                .iter()
                .map(|r| {
                    Box::pin(async move {
                        let next = self.poll(r).await?;
                        Ok(next.map(|n| (r.request.request_id.clone(), n)))
                    }) as _
                })
                .collect();
            let mut polls =
                futures::stream::iter(polls).buffer_unordered(self.settings.concurrency.max(1));
            while let Some(done) = polls.next().await {
                waiting.extend(done?);
            }
            drop(polls);
            if !waiting.is_empty() {
                self.store
                    .note_polls(&self.settings.instance, &waiting, now_ms())
                    .await?;
            }
        }
        report.cancels = self.notify_cancels(batch).await?;
        report.published = self.publish_outcomes(sink, batch).await?;
        self.metrics
            .set_by_state(self.store.counts_by_state().await?);
        Ok(report)
    }

    /// The gateway's steps for a request in a work state: one step, then the next while the
    /// request stays in a work state under this instance's lease (a transition between work
    /// states keeps the lease of its actor), so a request is not left waiting a lease per step.
    pub async fn work(&self, r: &SignatureRequest) -> Result<(), StoreError> {
        self.step(r).await?;
        let mut prev = r.state;
        for _ in 0..RequestState::ALL.len() {
            let Some(next) = self.store.get(&r.request.request_id).await? else {
                break;
            };
            let mine = next.lease_holder.as_deref() == Some(self.settings.instance.as_str());
            if !next.state.is_work() || !mine || next.state == prev {
                break;
            }
            prev = next.state;
            self.step(&next).await?;
        }
        Ok(())
    }

    /// One step of a request in a work state (what [`SignatureService::work`] repeats).
    pub async fn step(&self, r: &SignatureRequest) -> Result<(), StoreError> {
        let result = match r.state {
            RequestState::Received => self.step_prepare(r).await,
            RequestState::HashComputed => self.step_send(r).await,
            RequestState::Signed => self.step_verify(r).await,
            RequestState::Verified if wants_timestamp(r) => self.step_timestamp(r).await,
            RequestState::Verified | RequestState::Timestamped => self.step_assemble(r).await,
            RequestState::Assembled => {
                self.change(r, Step::Completed, "the signed document is ready".into())
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(StepError::Fail(f)) => {
                self.fail(r, f).await?;
                Ok(())
            }
            Err(StepError::Retry(kind, detail)) => self.retry_later(r, kind, detail).await,
            Err(StepError::Store(e)) => Err(e),
        }
    }

    /// A step that failed for now: deferred with backoff, or failed once its attempts are
    /// spent (counted in the trail, so a restart does not reset them).
    async fn retry_later(
        &self,
        r: &SignatureRequest,
        kind: Retry,
        detail: String,
    ) -> Result<(), StoreError> {
        let (what, fail_kind, attempts, initial, max) = match kind {
            Retry::TimeStamp => {
                let t = self.formats.tsa.as_ref().map(|t| &t.section);
                (
                    "time-stamp",
                    "timestamp_failed",
                    t.map_or(1, |t| t.attempts),
                    t.map(|t| t.retry_initial),
                    t.map(|t| t.retry_max_delay),
                )
            }
            Retry::Fetch => {
                let d = self.formats.documents.as_ref().map(|d| &d.section);
                (
                    "document fetch",
                    "document_fetch_failed",
                    d.map_or(1, |d| d.attempts),
                    d.map(|d| d.retry_initial),
                    d.map(|d| d.retry_max_delay),
                )
            }
        };
        let trail = self.store.trail(&r.request.request_id).await?;
        let attempt = retries_in_state(&trail, r.state) as u32 + 1;
        let (Some(initial), Some(max)) = (initial, max) else {
            return self.fail(r, Fail::new(fail_kind, detail)).await;
        };
        if attempt >= attempts {
            return self
                .fail(
                    r,
                    Fail::new(fail_kind, format!("{detail} (after {attempt} attempts)")),
                )
                .await;
        }
        let now = now_ms();
        let wait = crate::config::retry_delay(initial, max, attempt);
        let until = now + wait.as_millis() as i64;
        warn!(request = %r.request.request_id, service = %r.request.service, attempt, error = %detail, "{what} failed; retried later");
        let t = self
            .store
            .defer(
                &r.request.request_id,
                r.state,
                &self.settings.instance,
                &format!(
                    "{what} attempt {attempt} of {attempts} failed: {detail}; retried in {} ms",
                    wait.as_millis()
                ),
                until,
                now,
            )
            .await?;
        if let Transitioned::Refused { why, .. } = t {
            debug!(request = %r.request.request_id, why, "deferral not recorded");
        }
        Ok(())
    }

    async fn change(
        &self,
        r: &SignatureRequest,
        step: Step,
        detail: String,
    ) -> Result<Transitioned, StoreError> {
        self.store
            .transition(Change {
                request_id: r.request.request_id.clone(),
                from: r.state,
                step,
                actor: self.settings.instance.clone(),
                detail,
                at_ms: now_ms(),
            })
            .await
    }

    async fn fail(&self, r: &SignatureRequest, f: Fail) -> Result<(), StoreError> {
        info!(request = %r.request.request_id, service = %r.request.service, kind = f.kind, "signing request failed");
        let t = self
            .change(
                r,
                Step::Failed {
                    kind: f.kind.into(),
                    reason: scrub(f.reason, &r.request.signer_user_id),
                },
                format!("failed: {}", f.kind),
            )
            .await?;
        if let Transitioned::Refused { why, .. } = t {
            warn!(request = %r.request.request_id, why, "failure not recorded (the request moved on)");
        }
        Ok(())
    }

    fn signer_of(&self, r: &SignatureRequest) -> Result<&Arc<dyn RemoteSigner>, StepError> {
        self.signers.get(&r.request.service).ok_or_else(|| {
            StepError::Fail(Fail::new(
                "unknown_signer_service",
                format!(
                    "signer service `{}` is no longer configured",
                    r.request.service
                ),
            ))
        })
    }

    async fn step_prepare(&self, r: &SignatureRequest) -> Result<(), StepError> {
        let signer = self.signer_of(r)?.clone();
        let spec = Spec::parse(&r.request.format).ok_or_else(|| {
            StepError::Fail(Fail::new(
                "bad_request",
                format!("unknown format `{}`", r.request.format),
            ))
        })?;
        let document = self.document(r).await?;
        let official = SignerId(r.request.signer_user_id.clone());
        match self
            .prepare(
                signer.as_ref(),
                &official,
                &spec,
                &document,
                &r.request.reason,
            )
            .await
        {
            Ok(ready) => {
                self.hash_computed(&r.request.request_id, ready).await?;
                Ok(())
            }
            Err(PrepareError::Refused(e)) => {
                Err(StepError::Fail(Fail::new(e.code(), e.to_string())))
            }
            Err(PrepareError::Later(why)) => {
                warn!(request = %r.request.request_id, error = %why, "certificate not fetched; retried next round");
                Ok(())
            }
        }
    }

    /// The document to sign: stored, or (a reference not fetched yet) fetched and stored.
    async fn document(&self, r: &SignatureRequest) -> Result<Vec<u8>, StepError> {
        if let Some(d) = self
            .store
            .blob(&r.request.request_id, BlobKind::Document)
            .await?
        {
            return Ok(d);
        }
        let Some(url) = &r.request.document_ref else {
            return Err(StepError::Fail(Fail::new(
                "document_missing",
                "the document to sign is not stored",
            )));
        };
        let Some(fetcher) = &self.formats.documents else {
            return Err(StepError::Fail(Fail::new(
                "document_fetch_failed",
                "documents by reference are no longer configured ([signatures.documents])",
            )));
        };
        let document = match fetcher.fetch(url, &r.request.document_sha256).await {
            Ok(d) => d,
            Err(e) if e.retryable() => return Err(StepError::Retry(Retry::Fetch, e.to_string())),
            Err(e) => return Err(StepError::Fail(Fail::new(e.kind(), e.to_string()))),
        };
        // A crash after this put fetches nothing again: the stored bytes are used.
        self.store
            .put_blob(
                &r.request.request_id,
                BlobKind::Document,
                &document,
                fetcher.max_bytes.max(self.settings.max_document_bytes),
                now_ms(),
            )
            .await?;
        info!(request = %r.request.request_id, bytes = document.len(), "document fetched by reference");
        Ok(document)
    }

    /// `verified` of a B-T request: the time-stamp over the signature value, verified and
    /// stored before the state moves (a restart after the authority answered reuses it).
    async fn step_timestamp(&self, r: &SignatureRequest) -> Result<(), StepError> {
        let id = &r.request.request_id;
        if let Some(token) = self.store.blob(id, BlobKind::TimeStamp).await? {
            self.change(
                r,
                Step::Timestamped,
                format!("time-stamp token ({} bytes) found stored", token.len()),
            )
            .await?;
            return Ok(());
        }
        let Some(tsa) = &self.formats.tsa else {
            return Err(StepError::Fail(Fail::new(
                "timestamp_failed",
                "no time-stamp authority is configured anymore ([signatures.tsa])",
            )));
        };
        let prepared = stored_preparation(r)?;
        let document = self.document(r).await?;
        let signature = r.signature.clone().unwrap_or_default();
        let req = assemble::signature_timestamp_request(&prepared, &document, &signature)
            .map_err(|e| StepError::Fail(Fail::new("assemble", e.to_string())))?;
        let token = tsa
            .stamp(&req)
            .await
            .map_err(|e| StepError::Retry(Retry::TimeStamp, e.to_string()))?;
        self.store
            .put_blob(id, BlobKind::TimeStamp, &token, DEFAULT_BLOB_CAP, now_ms())
            .await?;
        self.change(
            r,
            Step::Timestamped,
            format!(
                "time-stamp token ({} bytes) verified and stored",
                token.len()
            ),
        )
        .await?;
        Ok(())
    }

    /// The hash request the service is asked with (the same for the submit and every poll).
    fn hash_request(r: &SignatureRequest) -> Result<HashRequest, StepError> {
        let digest = r.digest.clone().unwrap_or_default();
        let algorithm = DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.len() == digest.len())
            .ok_or_else(|| {
                StepError::Fail(Fail::new(
                    "bad_request",
                    "the stored digest has no known length",
                ))
            })?;
        Ok(HashRequest {
            request_id: r.request.idempotency_key.clone(),
            signer: SignerId(r.request.signer_user_id.clone()),
            digest,
            algorithm,
            description: r.request.reason.clone(),
        })
    }

    /// `hash_computed`: through the send guard, one submit.
    async fn step_send(&self, r: &SignatureRequest) -> Result<(), StepError> {
        let signer = self.signer_of(r)?.clone();
        let hr = Self::hash_request(r)?;
        let now = now_ms();
        let guard = self
            .store
            .begin_send(
                &r.request.request_id,
                &self.settings.instance,
                now,
                self.settings.send_lease.as_millis() as i64,
            )
            .await?;
        let permit = match guard {
            SendGuard::Permit(p) => p,
            other => {
                tracing::debug!(request = %r.request.request_id, "no send: {other:?}");
                return Ok(());
            }
        };
        let id = &r.request.request_id;
        let policy = signer.poll_policy();
        match signer.submit(&hr).await {
            Ok(Submitted::Waiting(tx)) => {
                let next = now_ms() + policy.wait(0).as_millis() as i64;
                self.store
                    .record_sent(id, &tx.0, next, &self.settings.instance, now_ms())
                    .await?;
            }
            Ok(answered) => {
                // Answered at once (CSC synchronous mode): the answer kept first, then
                // recorded as sent under a transaction of our own, then the answer applied.
                // A crash after the record finds the answer again (`poll`), never asks CSC
                // about a transaction CSC never named.
                self.store
                    .put_blob(
                        id,
                        BlobKind::SyncAnswer,
                        &super::sync_answer::encode(&answered),
                        super::sync_answer::CAP,
                        now_ms(),
                    )
                    .await?;
                let tx = format!("{}{}", super::sync_answer::PREFIX, permit.idempotency_key);
                let sent = self
                    .store
                    .record_sent(id, &tx, now_ms(), &self.settings.instance, now_ms())
                    .await?;
                let Transitioned::Applied(sent) = sent else {
                    return Ok(());
                };
                let status = match answered {
                    Submitted::Signed(v) => SignStatus::Signed(v),
                    Submitted::Rejected(w) => SignStatus::Rejected(w),
                    Submitted::Expired => SignStatus::Expired,
                    Submitted::Waiting(_) => unreachable!("matched above"),
                };
                self.apply_status(&sent, status).await?;
            }
            Err(e) if e.may_have_arrived() => {
                // The phone may have it: left `sending`; once the send lease runs out it is
                // in doubt and resolved by asking the service, never by sending again.
                let error = scrub(&e, &r.request.signer_user_id);
                warn!(request = %id, service = %r.request.service, error, "the submit's answer was lost; resolved by asking the service");
            }
            Err(e) if e.is_retryable() => {
                // Nothing reached the service: this holder releases its own send.
                self.store
                    .allow_resend(
                        id,
                        &format!("the submit did not reach the service: {e}"),
                        &self.settings.instance,
                        permit.lease_until_ms,
                    )
                    .await?;
            }
            Err(e) => {
                // Refused for good before anything reached the phone: fail from `sending`.
                if let Some(sending) = self.store.get(id).await? {
                    self.fail(&sending, Fail::new(signer_error_kind(&e), e.to_string()))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Apply what the service says of a sent request.
    async fn apply_status(
        &self,
        r: &SignatureRequest,
        status: SignStatus,
    ) -> Result<Option<i64>, StoreError> {
        let id = &r.request.request_id;
        match status {
            SignStatus::Waiting => {
                let policy = self
                    .signers
                    .get(&r.request.service)
                    .map(|s| s.poll_policy());
                let wait = policy
                    .map(|p| p.wait(r.polls.max(0) as u32 + 1))
                    .unwrap_or(Duration::from_secs(5));
                let next = now_ms() + wait.as_millis() as i64;
                if r.state == RequestState::Sent {
                    self.change(
                        r,
                        Step::Waiting { next_poll_ms: next },
                        "the official has not answered yet".into(),
                    )
                    .await?;
                    return Ok(None);
                }
                Ok(Some(next))
            }
            SignStatus::Signed(v) => {
                let waited = (now_ms() - r.request.created_ms).max(0) as f64 / 1000.0;
                self.metrics.observe_confirm(&r.request.service, waited);
                self.change(
                    r,
                    Step::Signed { signature: v.bytes },
                    "the service returned a signature".into(),
                )
                .await?;
                Ok(None)
            }
            SignStatus::Rejected(why) => {
                info!(request = %id, service = %r.request.service, "the official refused");
                self.change(
                    r,
                    Step::Rejected {
                        reason: scrub(
                            format!("the official refused: {why}"),
                            &r.request.signer_user_id,
                        ),
                    },
                    "rejected by the official".into(),
                )
                .await?;
                Ok(None)
            }
            SignStatus::Expired => {
                info!(request = %id, service = %r.request.service, "the official did not answer in time");
                self.change(
                    r,
                    Step::Expired {
                        reason: "the service reports that the official did not answer in time"
                            .into(),
                    },
                    "expired at the service".into(),
                )
                .await?;
                Ok(None)
            }
            SignStatus::NotFound => {
                self.fail(
                    r,
                    Fail::new(
                        "service_lost",
                        "the service no longer knows the transaction it accepted",
                    ),
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// `sent` / `waiting`: ask the service. `Some(next poll)` while still waiting.
    async fn poll(&self, r: &SignatureRequest) -> Result<Option<i64>, StoreError> {
        let signer = match self.signer_of(r) {
            Ok(s) => s.clone(),
            Err(StepError::Fail(f)) => {
                self.fail(r, f).await?;
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        let hr = match Self::hash_request(r) {
            Ok(h) => h,
            Err(StepError::Fail(f)) => {
                self.fail(r, f).await?;
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        let tx = Transaction(r.transaction_id.clone().unwrap_or_default());
        if tx.0.starts_with(super::sync_answer::PREFIX) {
            return self.resume_sync(r).await;
        }
        match signer.status(&tx, &hr).await {
            Ok(st) => self.apply_status(r, st).await,
            Err(e) if e.is_retryable() => {
                let wait = signer.poll_policy().wait(r.polls.max(0) as u32 + 1);
                let error = scrub(&e, &r.request.signer_user_id);
                warn!(request = %r.request.request_id, service = %r.request.service, error, "poll failed; polled again later");
                Ok(Some(now_ms() + wait.as_millis() as i64))
            }
            Err(e) => {
                self.fail(r, Fail::new(signer_error_kind(&e), e.to_string()))
                    .await?;
                Ok(None)
            }
        }
    }

    /// `sent` under the gateway's own `sync:` transaction (a synchronous answer, CSC): the
    /// kept answer applied; never a poll at the service, which never named that transaction.
    async fn resume_sync(&self, r: &SignatureRequest) -> Result<Option<i64>, StoreError> {
        let kept = self
            .store
            .blob(&r.request.request_id, BlobKind::SyncAnswer)
            .await?;
        match kept.as_deref().and_then(super::sync_answer::decode) {
            Some(status) => {
                info!(request = %r.request.request_id, service = %r.request.service, "a synchronous answer found again after a restart: applied");
                self.apply_status(r, status).await
            }
            None => {
                self.fail(
                    r,
                    Fail::new(
                        "sync_answer_lost",
                        format!(
                            "signer service `{}` answered the synchronous signing request, but the answer was not kept (the gateway stopped in between); not asked again, so the official is not asked twice",
                            r.request.service
                        ),
                    ),
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// `signed`: the signature verified over our digest with the pinned official's
    /// certificate.
    async fn step_verify(&self, r: &SignatureRequest) -> Result<(), StepError> {
        let signer = self.signer_of(r)?.clone();
        let official = SignerId(r.request.signer_user_id.clone());
        let against = signer
            .verify_against(&official)
            .map_err(|e| StepError::Fail(Fail::new("unknown_official", e.to_string())))?;
        let cert = SignerCertificate::from_der(&r.certificate.clone().unwrap_or_default(), &[])
            .map_err(|e| StepError::Fail(Fail::new(e.code(), e.to_string())))?;
        let hr = Self::hash_request(r)?;
        let value = SignatureValue {
            bytes: r.signature.clone().unwrap_or_default(),
            form: crate::signing::remote::SignatureForm::Raw,
            certificate: None,
        };
        let want = Expected {
            official: "the requested official",
            pin: &against.pin,
            digest: &hr.digest,
            algorithm: hr.algorithm,
            padding: against.padding,
            signed_at: now_ms() / 1000,
        };
        match against.verifier.verify(&value, &cert, &want) {
            Ok(_) => {
                self.change(r, Step::Verified, "signature verified".into())
                    .await?;
                Ok(())
            }
            Err(e) => {
                warn!(request = %r.request.request_id, service = %r.request.service, code = e.code(), "the returned signature is refused");
                Err(StepError::Fail(Fail::new(e.code(), e.to_string())))
            }
        }
    }

    /// `verified`: the signed document built around the signature and stored.
    async fn step_assemble(&self, r: &SignatureRequest) -> Result<(), StepError> {
        let prepared = stored_preparation(r)?;
        let document = self.document(r).await?;
        let signature = r.signature.clone().unwrap_or_default();
        let signed = if prepared.wants_timestamp() {
            let token = self
                .store
                .blob(&r.request.request_id, BlobKind::TimeStamp)
                .await?
                .ok_or_else(|| {
                    StepError::Fail(Fail::new(
                        "timestamp_failed",
                        "the time-stamp token is not stored",
                    ))
                })?;
            let tsa = self.formats.tsa.as_ref().ok_or_else(|| {
                StepError::Fail(Fail::new(
                    "timestamp_failed",
                    "no time-stamp authority is configured anymore ([signatures.tsa])",
                ))
            })?;
            assemble::finish_timestamped(&prepared, &document, &signature, &token, tsa.trust())
        } else {
            assemble::finish(&prepared, &document, &signature)
        }
        .map_err(|e| StepError::Fail(Fail::new("assemble", e.to_string())))?;
        self.store
            .put_blob(
                &r.request.request_id,
                BlobKind::Assembled,
                &signed,
                DEFAULT_BLOB_CAP,
                now_ms(),
            )
            .await?;
        self.change(
            r,
            Step::Assembled {
                location: "blob:assembled".into(),
            },
            format!("{} bytes assembled", signed.len()),
        )
        .await?;
        Ok(())
    }

    /// A send whose answer was lost (its lease ran out while `sending`): ask the service where
    /// it can be asked; a resend only when it says the first never arrived.
    async fn resolve_in_doubt(&self, r: &SignatureRequest) -> Result<(), StoreError> {
        let id = &r.request.request_id;
        let (signer, hr) = match (self.signer_of(r), Self::hash_request(r)) {
            (Ok(s), Ok(h)) => (s.clone(), h),
            (Err(StepError::Fail(f)), _) | (_, Err(StepError::Fail(f))) => {
                return self.fail(r, f).await
            }
            _ => return Ok(()),
        };
        let Some(tx) = signer.transaction_for(&hr) else {
            return self
                .fail(
                    r,
                    Fail::new(
                        "in_doubt",
                        format!(
                            "the submit's answer was lost and signer service `{}` cannot be asked about it; not sent again (the official may have been asked once)",
                            r.request.service
                        ),
                    ),
                )
                .await;
        };
        match signer.status(&tx, &hr).await {
            Ok(SignStatus::NotFound) => {
                info!(request = %id, service = %r.request.service, "the service never received the send in doubt: allowed again");
                self.store
                    .allow_resend(
                        id,
                        "the service has no trace of the first send",
                        &self.settings.instance,
                        now_ms(),
                    )
                    .await?;
            }
            Ok(_) => {
                info!(request = %id, service = %r.request.service, "the send in doubt had arrived: recorded, not sent again");
                self.store
                    .record_sent(id, &tx.0, now_ms(), &self.settings.instance, now_ms())
                    .await?;
            }
            Err(e) => {
                let error = scrub(&e, &r.request.signer_user_id);
                warn!(request = %id, service = %r.request.service, error, "cannot ask about the send in doubt; asked again next round");
            }
        }
        Ok(())
    }

    /// Publish up to `max` queued outcomes; how many went out. The events are claimed for
    /// this instance first ([`SignatureStore::claim_unpublished`], `outbox_lease`), so a second
    /// instance draining at the same time publishes none of them. A failed publish stops the
    /// drain, keeps the rest queued and gives their claims back.
    pub async fn publish_outcomes(
        &self,
        sink: &dyn NoticeSink,
        max: u32,
    ) -> Result<usize, StoreError> {
        let mut sent = 0;
        let lease = self.settings.outbox_lease.as_millis() as i64;
        let claimed = self
            .store
            .claim_unpublished(&self.settings.instance, now_ms(), lease, max)
            .await?;
        let mut left: Vec<String> = claimed.iter().map(|e| e.id.clone()).collect();
        left.reverse();
        for ev in claimed {
            left.pop();
            let mut payload: serde_json::Value = match serde_json::from_str(&ev.body) {
                Ok(v) => v,
                Err(e) => {
                    warn!(request = %ev.request_id, error = %e, "a queued signature outcome is malformed; skipped");
                    continue;
                }
            };
            if ev.kind == gw_store::signatures::EVENT_COMPLETED {
                if let Some(doc) = self
                    .store
                    .blob(&ev.request_id, BlobKind::Assembled)
                    .await?
                    .filter(|d| d.len() <= self.settings.inline_document_bytes)
                {
                    use base64::Engine as _;
                    payload["document_base64"] = serde_json::Value::String(
                        base64::engine::general_purpose::STANDARD.encode(doc),
                    );
                }
            }
            let key = payload
                .get("dossier_code")
                .and_then(|v| v.as_str())
                .unwrap_or(&ev.request_id)
                .to_owned();
            let mut env = Envelope::new(
                ev.kind.clone(),
                key,
                crate::config::SIGNATURE_SOURCE,
                payload,
            );
            if let Ok(id) = uuid::Uuid::parse_str(&ev.id) {
                env.id = id;
            }
            if let Err(e) = sink.publish(&env).await {
                warn!(request = %ev.request_id, error = %e, "signature outcome not published; kept for the next round");
                // Another instance may take them at once rather than after the lease.
                left.push(ev.id.clone());
                self.store
                    .release_claims(&self.settings.instance, &left)
                    .await?;
                break;
            }
            self.store.mark_published(&ev.id, now_ms()).await?;
            let payload = env.payload_value();
            let label = |k: &str| {
                payload
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("none")
                    .to_owned()
            };
            self.metrics
                .count_outcome(&label("service"), &label("outcome"), &label("reason_kind"));
            sent += 1;
        }
        Ok(sent)
    }
}

/// The hash request a stored request was (or would be) sent with; `None` when its stored
/// digest is unusable.
pub(super) fn hash_request_of(r: &SignatureRequest) -> Option<HashRequest> {
    SignatureService::hash_request(r).ok()
}

/// A step's end: a permanent failure, a failure to retry later, or a store error (left for
/// the next round).
enum StepError {
    Fail(Fail),
    Retry(Retry, String),
    Store(StoreError),
}

/// The format assembler's state stored at `hash_computed`.
fn stored_preparation(r: &SignatureRequest) -> Result<Prepared, StepError> {
    serde_json::from_slice(&r.prepared.clone().unwrap_or_default()).map_err(|e| {
        StepError::Fail(Fail::new(
            "assemble",
            format!("the stored preparation is unreadable: {e}"),
        ))
    })
}

/// The request asked for a time-stamp (level B-T).
fn wants_timestamp(r: &SignatureRequest) -> bool {
    Spec::parse(&r.request.format).is_some_and(|s| s.level == Level::BT)
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

/// The `reason_kind` of a signer error.
fn signer_error_kind(e: &SignerError) -> &'static str {
    match e {
        SignerError::UnknownSigner { .. } => "unknown_official",
        SignerError::Input(_) => "bad_request",
        SignerError::Certificate(c) => c.code(),
        SignerError::Login { .. } => "service_login",
        SignerError::Transport { .. }
        | SignerError::Refused { .. }
        | SignerError::Answer { .. } => "service_error",
        SignerError::InDoubt { .. } => "in_doubt",
    }
}

/// The stored request is this one (same document, service, official, format), or the refusal
/// naming what differs.
fn same_request(stored: &SignatureRequest, new: &NewRequest, key: &str) -> Result<(), AcceptError> {
    let s = &stored.request;
    let what = if s.document_sha256 != new.document_sha256 || s.document_ref != new.document_ref {
        Some("document")
    } else if s.service != new.service {
        Some("signer service")
    } else if s.signer_user_id != new.signer_user_id {
        Some("official")
    } else if s.format != new.format {
        Some("format, digest, level or appearance")
    } else {
        None
    };
    match what {
        None => Ok(()),
        Some(what) => Err(AcceptError::KeyReused {
            key: key.into(),
            request_id: s.request_id.clone(),
            what,
        }),
    }
}

/// `text` without the official's user id (it may be a citizen id): services and the verifier
/// name the official in their words; reasons and logs say `<official>` instead.
fn scrub(text: impl std::fmt::Display, official: &str) -> String {
    let text = text.to_string();
    if official.is_empty() {
        text
    } else {
        text.replace(official, "<official>")
    }
}

fn store_err(e: StoreError) -> AcceptError {
    AcceptError::Store {
        detail: e.to_string(),
    }
}
