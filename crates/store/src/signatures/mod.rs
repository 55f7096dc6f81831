//! Remote signing requests: one persisted state machine per request, its trail, an outbox of
//! `signature.completed` / `signature.failed` events, and the document bytes, on SQLite and
//! PostgreSQL (schema version 9). Officials confirm on their phones within minutes or never, so
//! the state lives here, not in tasks: 10,000 requests may wait at once.
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **One request per request id.** [`SignatureStore::create`] inserts a request or, when the
//!    id exists, returns the stored one unchanged ([`Created::Existing`]): a replayed
//!    `signature.requested` never makes a second request.
//! 2. **One transition table.** [`RequestState::via`] is the only place that says which move is
//!    legal and which method makes it ([`Via`]); [`RequestState::allows`] and
//!    [`RequestState::is_terminal`] derive from it. Every change runs under a write lock on the
//!    request (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE`) and is a
//!    compare-and-set on the state the caller saw ([`Change::from`]): a change to the state the
//!    request already has is [`Transitioned::Unchanged`] and writes nothing; any other
//!    mismatch is [`Transitioned::Refused`] with the reason.
//! 3. **Never a second request to the official's phone.** [`SignatureStore::begin_send`] moves
//!    `hash_computed → sending` and stamps the holder and a send lease *before* the service is
//!    called (SQLite commits it with `synchronous=FULL`): of any number of concurrent callers,
//!    across instances, exactly one gets [`SendGuard::Permit`]. A request still `sending` after
//!    its lease (the holder died or hung between the call and [`SignatureStore::record_sent`])
//!    is *in doubt* ([`SignatureStore::in_doubt_sends`]): it is never sent again by itself. The
//!    flow asks the service (by idempotency key or status) and either records the transaction
//!    it finds, or, only when the service says the first send never arrived,
//!    [`SignatureStore::allow_resend`] moves it back to `hash_computed` (counted in `resends`;
//!    refused while the send lease is live). The lease must be longer than the send call's
//!    timeout, so a slow send is never taken for a dead one.
//! 4. **Leases for work and polls.** [`SignatureStore::due_for_poll`] and
//!    [`SignatureStore::due_for_work`] lease the rows they return to the calling instance until
//!    `now + lease_ms`; a row leased to a live instance is not returned to another, and a dead
//!    instance's lease simply runs out. Lease times are the callers' clocks (unix ms; the
//!    instances are assumed NTP-synchronised: a skew only shortens or lengthens a lease, the
//!    transitions stay compare-and-set). A transition keeps the lease only when its actor holds
//!    it and both states are gateway work states; otherwise it clears it.
//! 5. **The state, the trail and the event are one transaction.** An applied change writes the
//!    new row, one `signature_transitions` row and, for a terminal outcome (completed, rejected,
//!    expired, failed, cancelled), one `signature_outbox` row. Events leave the outbox only by
//!    [`SignatureStore::mark_published`]; until then [`SignatureStore::unpublished`] returns
//!    them oldest first (at least once; consumers dedupe on the request id).
//! 6. **Deadlines.** [`SignatureStore::expire_overdue`] moves every request still waiting for the
//!    official ([`RequestState::expires`]) whose deadline has passed to `expired`, with its trail
//!    row and event, re-checking each under its lock.
//! 7. **Cancels reach the service.** [`SignatureStore::cancel`] is allowed from every
//!    non-terminal state. A request cancelled (or expired) while it may be on the official's
//!    phone (`sending`, `sent`, `waiting`) gets `service_cancel = "pending"` so the flow tells
//!    the service where it can ([`SignatureStore::cancels_to_notify`],
//!    [`SignatureStore::mark_cancel_notified`]); a failed attempt is counted and the next one
//!    scheduled ([`SignatureStore::cancels_due`], [`SignatureStore::note_cancel_attempt`],
//!    migration 15).
//! 8. **Blobs.** The document bytes and the assembled result live in `signature_blobs`, keyed
//!    by (request id, [`BlobKind`]), capped by the caller's `cap` ([`DEFAULT_BLOB_CAP`],
//!    16 MiB); above it [`SignatureStore::put_blob`] fails with [`StoreError::TooLarge`] and
//!    writes nothing. The first stored bytes stay ([`BlobStored`] says whether a later put was
//!    the same or different). PostgreSQL `bytea` is fine at this size: values up to 1 GiB are
//!    allowed and anything above ~2 KiB is TOASTed (compressed, out of line); a few MiB per
//!    row is read whole into memory, which the cap bounds. The prepared state
//!    ([`Step::HashComputed`]) is capped at [`PREPARED_CAP`] (1 MiB).
//! 9. **Deferred work.** A gateway step that failed for now (a time-stamp authority or a
//!    document server down) is [`SignatureStore::defer`]red: the state stays, a trail row from
//!    the state to itself says why, and the work lease is held until the retry time, so
//!    [`SignatureStore::due_for_work`] returns it to no instance before then. The count of
//!    such rows since the state was entered ([`retries_in_state`]) is the attempt count: it
//!    survives a restart.
//! 10. **One publisher per outcome while both live.** [`SignatureStore::claim_unpublished`]
//!     stamps the events it returns with the claiming instance and a lease (migration 15), under
//!     a row lock (PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite `BEGIN IMMEDIATE`): an event
//!     claimed by a live instance is not returned to another, so two instances draining the
//!     outbox publish each event once; a dead claimer's lease runs out and another instance
//!     takes its events over (at least once survives, the envelope id still lets consumers
//!     dedupe). The lease must outlast a publish (its confirm timeout).
//!
//! Personal data: `signer_user_id` may be an official's citizen id (SmartCA uses it); it is
//! stored but never put in the trail's detail, the outbox body, or any count this store gives.
//!
//! Schema (versions 9 and 14; the statements of 9 are `IF NOT EXISTS`):
//! ```text
//! signature_requests     request_id PK, idempotency_key UNIQUE, source, dossier_code?,
//!                        dossier_key?, service, signer_user_id, signer_credential?, format,
//!                        reason, document_ref?, document_sha256, created_ms, deadline_ms,
//!                        state, certificate?, digest?, prepared?, transaction_id?,
//!                        send_holder?, send_started_ms?, send_lease_until_ms?, sends, resends,
//!                        polls, next_poll_ms?, last_poll_ms?, lease_holder?, lease_until_ms?,
//!                        signature?, assembled_location?, failure_kind?, failure_reason?,
//!                        cancelled_by?, service_cancel?, updated_ms,
//!                        cancel_attempts (14, default 0), cancel_next_ms? (14)
//!                        indexes (service, state, next_poll_ms), (state, deadline_ms),
//!                        (state, send_lease_until_ms), (dossier_code), (service_cancel)
//! signature_transitions  (request_id, seq) PK, from_state?, to_state, actor, detail, at_ms
//! signature_outbox       id PK, request_id, kind, body (JSON), created_ms, published_ms?,
//!                        claimed_by?, claimed_until_ms? (14)
//! signature_blobs        (request_id, kind) PK, bytes, size, sha256 (hex), stored_ms
//! ```
//!
//! # Files
//! - this file: the types, the [`SignatureStore`] trait, the transition table and [`decide`],
//!   the one function that computes every change (both backends only load, lock and write).
//! - `schema.rs`: migrations 9 and 14 for both backends.
//! - `sqlite.rs`, `postgres.rs`: the trait on [`crate::sqlite::SqliteStore`] and
//!   [`crate::postgres::PgStore`].
//! - [`suite`] (hidden): the checks both backends run (`tests/signatures.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// The event kind of a completed request.
pub const EVENT_COMPLETED: &str = "signature.completed";
/// The event kind of a request that ended without a signed document.
pub const EVENT_FAILED: &str = "signature.failed";
/// The default cap of one stored blob (document or assembled result).
pub const DEFAULT_BLOB_CAP: usize = 16 * 1024 * 1024;
/// The cap of the format assembler's prepared state.
pub const PREPARED_CAP: usize = 1024 * 1024;
/// The most rows one listing returns.
pub const LIST_MAX: u32 = 1_000;

/// A signing request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Accepted and stored; the request id was answered.
    Received,
    /// The signer's certificate is fetched and the digest to sign prepared.
    HashComputed,
    /// A send to the service is in flight (or in doubt once its lease ran out).
    Sending,
    /// The service accepted it: its transaction id is known.
    Sent,
    /// The service says the official has not answered yet; polled with backoff.
    Waiting,
    /// The service returned the signature bytes.
    Signed,
    /// The signature verified over our digest with the pinned signer's certificate.
    Verified,
    /// A time-stamp over the signature value was asked for (PAdES B-T, CAdES-T): the
    /// authority's token is verified and stored ([`BlobKind::TimeStamp`]).
    Timestamped,
    /// The signed document is assembled and stored.
    Assembled,
    /// The `signature.completed` event is queued.
    Completed,
    /// The official refused.
    Rejected,
    /// Nobody confirmed before the deadline.
    Expired,
    /// A step failed for good (certificate refused, wrong signature, service error …).
    Failed,
    /// An operator or the source cancelled it.
    Cancelled,
}

/// Which method makes a legal move (see [`RequestState::via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// [`SignatureStore::transition`] with a [`Step`].
    Transition,
    /// [`SignatureStore::begin_send`].
    BeginSend,
    /// [`SignatureStore::record_sent`].
    RecordSent,
    /// [`SignatureStore::allow_resend`].
    AllowResend,
    /// [`SignatureStore::cancel`].
    Cancel,
}

impl RequestState {
    pub const ALL: [RequestState; 14] = [
        RequestState::Received,
        RequestState::HashComputed,
        RequestState::Sending,
        RequestState::Sent,
        RequestState::Waiting,
        RequestState::Signed,
        RequestState::Verified,
        RequestState::Timestamped,
        RequestState::Assembled,
        RequestState::Completed,
        RequestState::Rejected,
        RequestState::Expired,
        RequestState::Failed,
        RequestState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::HashComputed => "hash_computed",
            RequestState::Sending => "sending",
            RequestState::Sent => "sent",
            RequestState::Waiting => "waiting",
            RequestState::Signed => "signed",
            RequestState::Verified => "verified",
            RequestState::Timestamped => "timestamped",
            RequestState::Assembled => "assembled",
            RequestState::Completed => "completed",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Failed => "failed",
            RequestState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The transition table, the one place that states it: `Some(how)` when `self → to` is
    /// legal, `None` otherwise.
    ///
    /// ```text
    /// received      → hash_computed | failed | expired
    /// hash_computed → sending (begin_send) | failed | expired
    /// sending       → sent (record_sent) | hash_computed (allow_resend) | failed | expired
    /// sent          → waiting | signed | rejected | expired | failed
    /// waiting       → signed | rejected | expired | failed
    /// signed        → verified | failed
    /// verified      → timestamped | assembled | failed
    /// timestamped   → assembled | failed
    /// assembled     → completed | failed
    /// any non-terminal → cancelled (cancel)
    /// completed, rejected, expired, failed, cancelled: terminal
    /// ```
    pub fn via(self, to: RequestState) -> Option<Via> {
        use RequestState::*;
        if self.is_terminal() {
            return None;
        }
        if to == Cancelled {
            return Some(Via::Cancel);
        }
        match (self, to) {
            (HashComputed, Sending) => Some(Via::BeginSend),
            (Sending, Sent) => Some(Via::RecordSent),
            (Sending, HashComputed) => Some(Via::AllowResend),
            (Received, HashComputed | Failed | Expired)
            | (HashComputed, Failed | Expired)
            | (Sending, Failed | Expired)
            | (Sent, Waiting | Signed | Rejected | Expired | Failed)
            | (Waiting, Signed | Rejected | Expired | Failed)
            | (Signed, Verified | Failed)
            | (Verified, Timestamped | Assembled | Failed)
            | (Timestamped, Assembled | Failed)
            | (Assembled, Completed | Failed) => Some(Via::Transition),
            _ => None,
        }
    }

    pub fn allows(self, to: RequestState) -> bool {
        self.via(to).is_some()
    }

    /// Nothing leaves this state.
    pub fn is_terminal(self) -> bool {
        use RequestState::*;
        matches!(self, Completed | Rejected | Expired | Failed | Cancelled)
    }

    /// The official's answer is awaited: [`SignatureStore::expire_overdue`] expires it past its
    /// deadline. Once signed, the deadline no longer applies.
    pub fn expires(self) -> bool {
        use RequestState::*;
        matches!(self, Received | HashComputed | Sending | Sent | Waiting)
    }

    /// The service is asked about it ([`SignatureStore::due_for_poll`]).
    pub fn is_polled(self) -> bool {
        matches!(self, RequestState::Sent | RequestState::Waiting)
    }

    /// The gateway itself has the next step ([`SignatureStore::due_for_work`]).
    pub fn is_work(self) -> bool {
        use RequestState::*;
        matches!(
            self,
            Received | HashComputed | Signed | Verified | Timestamped | Assembled
        )
    }

    /// The request may be on the official's phone: a cancel or an expiry tells the service.
    pub fn may_be_at_service(self) -> bool {
        use RequestState::*;
        matches!(self, Sending | Sent | Waiting)
    }
}

/// A request to create (from a `signature.requested` event). Its `Debug` leaves the signer's
/// user id out (personal data).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRequest {
    /// The stable id answered at once; the key of everything below.
    pub request_id: String,
    /// What the service sees as the request's idempotency key (derived from the request id).
    pub idempotency_key: String,
    /// The route or party the request came from (where the outcome goes back).
    pub source: String,
    pub dossier_code: Option<String>,
    pub dossier_key: Option<String>,
    /// The configured signing service name.
    pub service: String,
    /// The signer at the service (may be personal data: never logged).
    pub signer_user_id: String,
    /// The credential / certificate serial at the service, when the signer has several.
    pub signer_credential: Option<String>,
    /// `pades`, `xmldsig`, `cms` … (the format assembler's name).
    pub format: String,
    /// The signing reason shown to the official.
    pub reason: String,
    /// Where the document can be fetched, when its bytes are not stored here.
    pub document_ref: Option<String>,
    /// SHA-256 (hex) of the document bytes.
    pub document_sha256: String,
    pub created_ms: i64,
    pub deadline_ms: i64,
}

impl std::fmt::Debug for NewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRequest")
            .field("request_id", &self.request_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("source", &self.source)
            .field("dossier_code", &self.dossier_code)
            .field("dossier_key", &self.dossier_key)
            .field("service", &self.service)
            .field("signer_user_id", &"<personal data>")
            .field("signer_credential", &self.signer_credential)
            .field("format", &self.format)
            .field("document_ref", &self.document_ref)
            .field("document_sha256", &self.document_sha256)
            .field("created_ms", &self.created_ms)
            .field("deadline_ms", &self.deadline_ms)
            .finish_non_exhaustive()
    }
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRequest {
    #[serde(flatten)]
    pub request: NewRequest,
    pub state: RequestState,
    /// The signer's certificate (DER), once fetched.
    pub certificate: Option<Vec<u8>>,
    /// The digest sent to the service.
    pub digest: Option<Vec<u8>>,
    /// The format assembler's opaque prepared state.
    pub prepared: Option<Vec<u8>>,
    /// The service's transaction id, once it accepted the request.
    pub transaction_id: Option<String>,
    /// Who started the current or last send, when, and until when it is live.
    pub send_holder: Option<String>,
    pub send_started_ms: Option<i64>,
    pub send_lease_until_ms: Option<i64>,
    /// Send permits granted (1 normally; more only after [`SignatureStore::allow_resend`]).
    pub sends: i64,
    /// Resends allowed because the service said the send never arrived.
    pub resends: i64,
    /// Polls made at the service.
    pub polls: i64,
    pub next_poll_ms: Option<i64>,
    pub last_poll_ms: Option<i64>,
    /// The instance working on or polling it, until `lease_until_ms`.
    pub lease_holder: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// The signature bytes the service returned.
    pub signature: Option<Vec<u8>>,
    /// Where the signed document is (`blob:assembled` when stored here, or a URL).
    pub assembled_location: Option<String>,
    /// Why it ended without a signed document: `rejected`, `expired`, `cancelled`, or the
    /// flow's kind (`certificate_refused`, `signature_invalid`, `service_error` …).
    pub failure_kind: Option<String>,
    pub failure_reason: Option<String>,
    pub cancelled_by: Option<String>,
    /// `pending` while the service should be told of a cancel or expiry, then what it said.
    pub service_cancel: Option<String>,
    pub updated_ms: i64,
}

impl SignatureRequest {
    pub fn id(&self) -> &str {
        &self.request.request_id
    }

    /// A send is marked and its lease has run out: the outcome of that send is unknown.
    pub fn send_in_doubt(&self, now_ms: i64) -> bool {
        self.state == RequestState::Sending && self.send_lease_until_ms.is_none_or(|t| t <= now_ms)
    }
}

/// What a [`Change`] sets, one variant per target state reachable through
/// [`SignatureStore::transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    HashComputed {
        certificate: Vec<u8>,
        digest: Vec<u8>,
        prepared: Vec<u8>,
    },
    /// The service answered "pending"; poll again at `next_poll_ms`.
    Waiting {
        next_poll_ms: i64,
    },
    Signed {
        signature: Vec<u8>,
    },
    Verified,
    /// The time-stamp token is stored (as [`BlobKind::TimeStamp`], before this change).
    Timestamped,
    Assembled {
        location: String,
    },
    Completed,
    Rejected {
        reason: String,
    },
    Expired {
        reason: String,
    },
    Failed {
        kind: String,
        reason: String,
    },
}

impl Step {
    pub fn to(&self) -> RequestState {
        match self {
            Step::HashComputed { .. } => RequestState::HashComputed,
            Step::Waiting { .. } => RequestState::Waiting,
            Step::Signed { .. } => RequestState::Signed,
            Step::Verified => RequestState::Verified,
            Step::Timestamped => RequestState::Timestamped,
            Step::Assembled { .. } => RequestState::Assembled,
            Step::Completed => RequestState::Completed,
            Step::Rejected { .. } => RequestState::Rejected,
            Step::Expired { .. } => RequestState::Expired,
            Step::Failed { .. } => RequestState::Failed,
        }
    }
}

/// A change: `from → step.to()`, applied only if the request is in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub request_id: String,
    pub from: RequestState,
    pub step: Step,
    /// Who made it: the instance id, or `operator:NAME`.
    pub actor: String,
    /// Words for the trail (codes and ids; no personal data).
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created it.
    New(SignatureRequest),
    /// The request id existed: the stored request, unchanged.
    Existing(SignatureRequest),
}

impl Created {
    pub fn request(&self) -> &SignatureRequest {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transitioned {
    /// Applied: the request after the change.
    Applied(SignatureRequest),
    /// The request already had the target state: nothing written.
    Unchanged(SignatureRequest),
    /// Not legal now (`why` says what): nothing written.
    Refused {
        current: SignatureRequest,
        why: String,
    },
    NotFound,
}

impl Transitioned {
    pub fn is_applied(&self) -> bool {
        matches!(self, Transitioned::Applied(_))
    }
}

/// The right to call the service once for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPermit {
    pub request: Box<SignatureRequest>,
    /// 1 for the first send, 2 … after allowed resends.
    pub attempt: i64,
    /// The idempotency key to give the service.
    pub idempotency_key: String,
    /// Record the transaction before this, or the send becomes in doubt.
    pub lease_until_ms: i64,
}

/// What [`SignatureStore::begin_send`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendGuard {
    /// Call the service now, then [`SignatureStore::record_sent`].
    Permit(SendPermit),
    /// The service has it already: do not send.
    AlreadySent {
        transaction_id: String,
        state: RequestState,
    },
    /// A send is marked by `holder` (live, or in doubt once its lease ran out): do not send.
    InFlight {
        holder: Option<String>,
        since_ms: Option<i64>,
        in_doubt: bool,
    },
    /// The request is not ready to send (`received`), or over (`terminal` without a
    /// transaction), or past its deadline.
    NotReady {
        state: RequestState,
        why: String,
    },
    NotFound,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub request_id: String,
    /// 0 for the creation (`from` is `None`), then 1, 2, …
    pub seq: i64,
    pub from: Option<RequestState>,
    pub to: RequestState,
    pub actor: String,
    pub detail: String,
    pub at_ms: i64,
}

/// An event queued with the terminal transition that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Unique id (the envelope id it is published as).
    pub id: String,
    pub request_id: String,
    /// [`EVENT_COMPLETED`] or [`EVENT_FAILED`].
    pub kind: String,
    /// The JSON [`OutcomeBody`].
    pub body: String,
    pub created_ms: i64,
}

/// A cancel the service is still to be told of ([`SignatureStore::cancels_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelDue {
    pub request_id: String,
    /// Failed attempts so far ([`SignatureStore::note_cancel_attempt`]).
    pub attempts: u32,
}

/// The body of `signature.completed` / `signature.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeBody {
    pub request_id: String,
    /// The terminal state: `completed`, `rejected`, `expired`, `failed`, `cancelled`.
    pub outcome: RequestState,
    pub reason_kind: Option<String>,
    pub reason: Option<String>,
    /// Where the signed document is (completed only).
    pub document: Option<String>,
    pub service: String,
    pub transaction_id: Option<String>,
    pub source: String,
    pub dossier_code: Option<String>,
    pub dossier_key: Option<String>,
    pub at_ms: i64,
}

/// What a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// The document to sign, as received.
    Document,
    /// The signed document the format assembler produced.
    Assembled,
    /// The RFC 3161 time-stamp token over the signature value (B-T, CAdES-T), DER.
    TimeStamp,
    /// A synchronous service's answer, kept before the request is recorded as sent
    /// (migration-free: a kind of blob).
    SyncAnswer,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Document => "document",
            BlobKind::Assembled => "assembled",
            BlobKind::TimeStamp => "timestamp",
            BlobKind::SyncAnswer => "sync_answer",
        }
    }
}

/// What [`SignatureStore::put_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobStored {
    New,
    /// The same bytes were there already.
    Same,
    /// Different bytes were there: they stay (the first one wins).
    Different,
}

/// A listing's filter; `after` is the last request id of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub state: Option<RequestState>,
    pub service: Option<String>,
    pub dossier_code: Option<String>,
    pub after: Option<String>,
    /// At most [`LIST_MAX`]; 0 means [`LIST_MAX`].
    pub limit: u32,
}

/// How many requests of one service are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub service: String,
    pub state: RequestState,
    pub count: i64,
}

/// Requests of one service not yet terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePending {
    pub service: String,
    pub pending: i64,
    /// Of those, waiting for the official (`sent`, `waiting`).
    pub waiting: i64,
    pub oldest_created_ms: i64,
}

/// Signing requests, their trail, their outbox and their blobs (invariants in the module doc).
#[async_trait]
pub trait SignatureStore: Send + Sync + 'static {
    /// Store a new request in `received` (invariant 1).
    async fn create(&self, request: NewRequest) -> Result<Created>;
    async fn get(&self, request_id: &str) -> Result<Option<SignatureRequest>>;
    /// The trail, creation first.
    async fn trail(&self, request_id: &str) -> Result<Vec<Transition>>;
    /// A request with its trail (`gateway signing show`).
    async fn show(&self, request_id: &str) -> Result<Option<(SignatureRequest, Vec<Transition>)>> {
        let Some(request) = self.get(request_id).await? else {
            return Ok(None);
        };
        Ok(Some((request, self.trail(request_id).await?)))
    }
    /// A [`Step`] from [`Change::from`] (invariants 2 and 5).
    async fn transition(&self, change: Change) -> Result<Transitioned>;

    /// Mark a send in flight before calling the service (invariant 3).
    async fn begin_send(
        &self,
        request_id: &str,
        instance: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<SendGuard>;
    /// `sending → sent` with the service's transaction id, first poll at `next_poll_ms`.
    /// Unchanged when already recorded with the same transaction, refused with another.
    async fn record_sent(
        &self,
        request_id: &str,
        transaction_id: &str,
        next_poll_ms: i64,
        actor: &str,
        at_ms: i64,
    ) -> Result<Transitioned>;
    /// Requests `sending` whose send lease ran out, oldest send first.
    async fn in_doubt_sends(&self, now_ms: i64, limit: u32) -> Result<Vec<SignatureRequest>>;
    /// `sending → hash_computed` after the service said the send never arrived; only in doubt.
    async fn allow_resend(
        &self,
        request_id: &str,
        reason: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Transitioned>;

    /// Up to `limit` requests of `service` in `sent`/`waiting` with `next_poll_ms ≤ now`, not
    /// leased to a live instance, leased to `instance` until `now + lease_ms` (invariant 4).
    /// Soonest poll first.
    async fn due_for_poll(
        &self,
        service: &str,
        now_ms: i64,
        limit: u32,
        instance: &str,
        lease_ms: i64,
    ) -> Result<Vec<SignatureRequest>>;
    /// One poll was made: `polls + 1`, next poll at `next_poll_ms`, the caller's lease
    /// released. `false` when the request is no longer polled.
    async fn note_poll(
        &self,
        request_id: &str,
        instance: &str,
        next_poll_ms: i64,
        at_ms: i64,
    ) -> Result<bool> {
        let polls = [(request_id.to_owned(), next_poll_ms)];
        Ok(self.note_polls(instance, &polls, at_ms).await? == 1)
    }
    /// [`SignatureStore::note_poll`] for a whole batch in one transaction (a poller's round);
    /// how many were still polled.
    async fn note_polls(&self, instance: &str, polls: &[(String, i64)], at_ms: i64) -> Result<u64>;
    /// Up to `limit` requests whose next step is the gateway's ([`RequestState::is_work`]),
    /// leased like [`SignatureStore::due_for_poll`]; oldest update first. This is how work
    /// left by a crashed instance resumes.
    async fn due_for_work(
        &self,
        now_ms: i64,
        limit: u32,
        instance: &str,
        lease_ms: i64,
    ) -> Result<Vec<SignatureRequest>>;
    /// A work step failed for now: stay in `from`, note why in the trail (a row from `from`
    /// to `from`: [`retries_in_state`] counts them) and hold the work lease until `until_ms`,
    /// so no instance retries before then (invariant 9).
    async fn defer(
        &self,
        request_id: &str,
        from: RequestState,
        actor: &str,
        detail: &str,
        until_ms: i64,
        at_ms: i64,
    ) -> Result<Transitioned>;
    /// Expire up to `limit` overdue requests (invariant 6); their ids.
    async fn expire_overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<String>>;

    /// Up to `limit` unpublished events, oldest first.
    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
    async fn mark_published(&self, id: &str, at_ms: i64) -> Result<()>;
    /// Claim up to `limit` unpublished events for `instance` until `now_ms + lease_ms`, oldest
    /// first (invariant 9): an event another instance holds a live claim on is skipped; this
    /// instance's own claims and claims whose lease ran out are taken.
    async fn claim_unpublished(
        &self,
        instance: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>>;
    /// Give back `instance`'s claims on these events (not published: another instance need not
    /// wait for the lease); how many were released.
    async fn release_claims(&self, instance: &str, ids: &[String]) -> Result<u64>;

    async fn list(&self, filter: ListFilter) -> Result<Vec<SignatureRequest>>;
    /// Cancel from any non-terminal state (invariant 7).
    async fn cancel(&self, request_id: &str, who: &str, at_ms: i64) -> Result<Transitioned>;
    /// Requests whose service should be told of a cancel or expiry.
    async fn cancels_to_notify(&self, limit: u32) -> Result<Vec<SignatureRequest>>;
    /// Record what the service said (`cancelled`, `unsupported`, `already_final` …).
    async fn mark_cancel_notified(&self, request_id: &str, outcome: &str) -> Result<()>;
    /// Up to `limit` requests whose service is still to be told of a cancel and whose next
    /// attempt is due at `now_ms` (invariant 7), oldest first, with the attempts made so far.
    async fn cancels_due(&self, now_ms: i64, limit: u32) -> Result<Vec<CancelDue>>;
    /// A failed attempt at telling the service: counted, the next one not before `next_ms`.
    async fn note_cancel_attempt(&self, request_id: &str, next_ms: i64) -> Result<()>;

    /// Per service and state, every service and state that has rows.
    async fn counts_by_state(&self) -> Result<Vec<StateCount>>;
    /// Per service, the requests not yet terminal.
    async fn pending_by_service(&self) -> Result<Vec<ServicePending>>;

    /// Store a blob, refusing one above `cap` bytes (invariant 8).
    async fn put_blob(
        &self,
        request_id: &str,
        kind: BlobKind,
        bytes: &[u8],
        cap: usize,
        at_ms: i64,
    ) -> Result<BlobStored>;
    async fn blob(&self, request_id: &str, kind: BlobKind) -> Result<Option<Vec<u8>>>;
}

/// The deferrals ([`SignatureStore::defer`]) noted since the request last entered `state`,
/// from its trail: how many times the step of that state was retried.
pub fn retries_in_state(trail: &[Transition], state: RequestState) -> usize {
    trail
        .iter()
        .rev()
        .take_while(|t| !(t.to == state && t.from != Some(state)))
        .filter(|t| t.from == Some(state) && t.to == state)
        .count()
}

/// Open the signature store at a store URL (the same URL [`crate::open`] takes; runs
/// migrations).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn SignatureStore>> {
    open_tls(url, None).await
}

/// [`open`], with TLS to PostgreSQL when `tls` is given (as [`crate::open_tls`]).
pub async fn open_tls(
    url: &str,
    tls: Option<crate::tls::PgTls>,
) -> Result<std::sync::Arc<dyn SignatureStore>> {
    Ok(match crate::open::open_backend(url, tls).await? {
        crate::open::Backend::Postgres(s) => std::sync::Arc::new(*s),
        crate::open::Backend::Sqlite(s) => std::sync::Arc::new(s),
    })
}

// ---- shared by both backends ------------------------------------------------------------

/// Every column of `signature_requests`, in the order [`decode`] reads them.
const COLS: [&str; 36] = [
    "request_id",
    "idempotency_key",
    "source",
    "dossier_code",
    "dossier_key",
    "service",
    "signer_user_id",
    "signer_credential",
    "format",
    "reason",
    "document_ref",
    "document_sha256",
    "created_ms",
    "deadline_ms",
    "state",
    "certificate",
    "digest",
    "prepared",
    "transaction_id",
    "send_holder",
    "send_started_ms",
    "send_lease_until_ms",
    "sends",
    "resends",
    "polls",
    "next_poll_ms",
    "last_poll_ms",
    "lease_holder",
    "lease_until_ms",
    "signature",
    "assembled_location",
    "failure_kind",
    "failure_reason",
    "cancelled_by",
    "service_cancel",
    "updated_ms",
];

/// The first column a change may write (`state`); the ones before are fixed at creation.
const FIRST_MUTABLE: usize = 14;

fn select_cols() -> String {
    COLS.join(", ")
}

/// `col = <placeholder i>` for every mutable column, the request id being placeholder 1.
fn update_sql(placeholder: impl Fn(usize) -> String) -> String {
    let sets = COLS[FIRST_MUTABLE..]
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {}", placeholder(i + 2)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE signature_requests SET {sets} WHERE request_id = {}",
        placeholder(1)
    )
}

fn insert_sql(placeholder: impl Fn(usize) -> String) -> String {
    let values = (1..=COLS.len())
        .map(placeholder)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO signature_requests ({}) VALUES ({values}) ON CONFLICT (request_id) DO NOTHING",
        select_cols()
    )
}

/// `'a', 'b'` for an SQL `IN` list of states.
fn state_list(pred: impl Fn(RequestState) -> bool) -> String {
    RequestState::ALL
        .into_iter()
        .filter(|s| pred(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

const TRANSITION_COLS: &str = "request_id, seq, from_state, to_state, actor, detail, at_ms";

/// One column value of a row, for [`decode`] on either backend.
pub(crate) trait Columns {
    type Error;
    fn text(&self, i: usize) -> std::result::Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> std::result::Result<Option<String>, Self::Error>;
    fn int(&self, i: usize) -> std::result::Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> std::result::Result<Option<i64>, Self::Error>;
    fn opt_bytes(&self, i: usize) -> std::result::Result<Option<Vec<u8>>, Self::Error>;
    fn malformed(&self, what: String) -> Self::Error;
}

fn decode<C: Columns>(c: &C) -> std::result::Result<SignatureRequest, C::Error> {
    let st = c.text(14)?;
    let state = RequestState::parse(&st)
        .ok_or_else(|| c.malformed(format!("signature request: unknown state {st:?}")))?;
    Ok(SignatureRequest {
        request: NewRequest {
            request_id: c.text(0)?,
            idempotency_key: c.text(1)?,
            source: c.text(2)?,
            dossier_code: c.opt_text(3)?,
            dossier_key: c.opt_text(4)?,
            service: c.text(5)?,
            signer_user_id: c.text(6)?,
            signer_credential: c.opt_text(7)?,
            format: c.text(8)?,
            reason: c.text(9)?,
            document_ref: c.opt_text(10)?,
            document_sha256: c.text(11)?,
            created_ms: c.int(12)?,
            deadline_ms: c.int(13)?,
        },
        state,
        certificate: c.opt_bytes(15)?,
        digest: c.opt_bytes(16)?,
        prepared: c.opt_bytes(17)?,
        transaction_id: c.opt_text(18)?,
        send_holder: c.opt_text(19)?,
        send_started_ms: c.opt_int(20)?,
        send_lease_until_ms: c.opt_int(21)?,
        sends: c.int(22)?,
        resends: c.int(23)?,
        polls: c.int(24)?,
        next_poll_ms: c.opt_int(25)?,
        last_poll_ms: c.opt_int(26)?,
        lease_holder: c.opt_text(27)?,
        lease_until_ms: c.opt_int(28)?,
        signature: c.opt_bytes(29)?,
        assembled_location: c.opt_text(30)?,
        failure_kind: c.opt_text(31)?,
        failure_reason: c.opt_text(32)?,
        cancelled_by: c.opt_text(33)?,
        service_cancel: c.opt_text(34)?,
        updated_ms: c.int(35)?,
    })
}

/// A value to bind, for the writes of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Option<Vec<u8>>),
}

fn t(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

/// The values of every column, in [`COLS`] order.
fn values(r: &SignatureRequest) -> Vec<Value> {
    let n = &r.request;
    vec![
        t(&n.request_id),
        t(&n.idempotency_key),
        t(&n.source),
        Value::Text(n.dossier_code.clone()),
        Value::Text(n.dossier_key.clone()),
        t(&n.service),
        t(&n.signer_user_id),
        Value::Text(n.signer_credential.clone()),
        t(&n.format),
        t(&n.reason),
        Value::Text(n.document_ref.clone()),
        t(&n.document_sha256),
        Value::Int(Some(n.created_ms)),
        Value::Int(Some(n.deadline_ms)),
        t(r.state.as_str()),
        Value::Bytes(r.certificate.clone()),
        Value::Bytes(r.digest.clone()),
        Value::Bytes(r.prepared.clone()),
        Value::Text(r.transaction_id.clone()),
        Value::Text(r.send_holder.clone()),
        Value::Int(r.send_started_ms),
        Value::Int(r.send_lease_until_ms),
        Value::Int(Some(r.sends)),
        Value::Int(Some(r.resends)),
        Value::Int(Some(r.polls)),
        Value::Int(r.next_poll_ms),
        Value::Int(r.last_poll_ms),
        Value::Text(r.lease_holder.clone()),
        Value::Int(r.lease_until_ms),
        Value::Bytes(r.signature.clone()),
        Value::Text(r.assembled_location.clone()),
        Value::Text(r.failure_kind.clone()),
        Value::Text(r.failure_reason.clone()),
        Value::Text(r.cancelled_by.clone()),
        Value::Text(r.service_cancel.clone()),
        Value::Int(Some(r.updated_ms)),
    ]
}

/// The bindings of [`update_sql`]: the request id, then the mutable columns.
fn update_values(r: &SignatureRequest) -> Vec<Value> {
    let mut all = values(r);
    let mutable = all.split_off(FIRST_MUTABLE);
    let mut out = vec![t(&r.request.request_id)];
    out.extend(mutable);
    out
}

/// A new request's row, in `received`.
fn fresh(n: NewRequest) -> SignatureRequest {
    let updated_ms = n.created_ms;
    SignatureRequest {
        request: n,
        state: RequestState::Received,
        certificate: None,
        digest: None,
        prepared: None,
        transaction_id: None,
        send_holder: None,
        send_started_ms: None,
        send_lease_until_ms: None,
        sends: 0,
        resends: 0,
        polls: 0,
        next_poll_ms: None,
        last_poll_ms: None,
        lease_holder: None,
        lease_until_ms: None,
        signature: None,
        assembled_location: None,
        failure_kind: None,
        failure_reason: None,
        cancelled_by: None,
        service_cancel: None,
        updated_ms,
    }
}

/// The creation's trail detail (no personal data).
fn created_detail(n: &NewRequest) -> String {
    format!(
        "service={} format={} deadline_ms={}",
        n.service, n.format, n.deadline_ms
    )
}

/// What a backend is asked to apply to one locked request.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Step(Change),
    BeginSend {
        instance: String,
        now_ms: i64,
        lease_ms: i64,
    },
    RecordSent {
        transaction_id: String,
        next_poll_ms: i64,
        actor: String,
        at_ms: i64,
    },
    AllowResend {
        reason: String,
        actor: String,
        now_ms: i64,
    },
    Cancel {
        who: String,
        at_ms: i64,
    },
    Expire {
        now_ms: i64,
    },
    Defer {
        from: RequestState,
        actor: String,
        detail: String,
        until_ms: i64,
        at_ms: i64,
    },
}

/// A trail row to insert (its seq is the next one).
#[derive(Debug, Clone)]
pub(crate) struct TrailEntry {
    pub(crate) from: RequestState,
    pub(crate) to: RequestState,
    pub(crate) actor: String,
    pub(crate) detail: String,
    pub(crate) at_ms: i64,
}

/// What [`decide`] wants written.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) next: SignatureRequest,
    pub(crate) trail: TrailEntry,
    pub(crate) event: Option<OutboxEvent>,
}

pub(crate) enum Decision {
    Apply(Box<Write>),
    Unchanged,
    Refused(String),
}

/// What a backend reports for one [`Op`].
pub(crate) enum OpResult {
    NotFound,
    Applied(SignatureRequest),
    Unchanged(SignatureRequest),
    Refused(SignatureRequest, String),
}

impl From<OpResult> for Transitioned {
    fn from(r: OpResult) -> Self {
        match r {
            OpResult::NotFound => Transitioned::NotFound,
            OpResult::Applied(r) => Transitioned::Applied(r),
            OpResult::Unchanged(r) => Transitioned::Unchanged(r),
            OpResult::Refused(current, why) => Transitioned::Refused { current, why },
        }
    }
}

/// The send guard's answer from the outcome of [`Op::BeginSend`].
fn send_guard(r: OpResult, now_ms: i64) -> SendGuard {
    match r {
        OpResult::NotFound => SendGuard::NotFound,
        OpResult::Applied(request) => SendGuard::Permit(SendPermit {
            attempt: request.sends,
            idempotency_key: request.request.idempotency_key.clone(),
            lease_until_ms: request.send_lease_until_ms.unwrap_or(now_ms),
            request: Box::new(request),
        }),
        OpResult::Unchanged(r) | OpResult::Refused(r, _) if r.state == RequestState::Sending => {
            SendGuard::InFlight {
                in_doubt: r.send_in_doubt(now_ms),
                holder: r.send_holder,
                since_ms: r.send_started_ms,
            }
        }
        OpResult::Unchanged(r) | OpResult::Refused(r, _) if r.transaction_id.is_some() => {
            SendGuard::AlreadySent {
                transaction_id: r.transaction_id.unwrap_or_default(),
                state: r.state,
            }
        }
        OpResult::Unchanged(r) => SendGuard::NotReady {
            state: r.state,
            why: "nothing to send".into(),
        },
        OpResult::Refused(r, why) => SendGuard::NotReady {
            state: r.state,
            why,
        },
    }
}

fn entry(
    cur: &SignatureRequest,
    to: RequestState,
    actor: &str,
    detail: String,
    at_ms: i64,
) -> TrailEntry {
    TrailEntry {
        from: cur.state,
        to,
        actor: actor.to_owned(),
        detail,
        at_ms,
    }
}

/// The event of a terminal row.
fn event_for(r: &SignatureRequest, at_ms: i64) -> Option<OutboxEvent> {
    if !r.state.is_terminal() {
        return None;
    }
    let body = OutcomeBody {
        request_id: r.request.request_id.clone(),
        outcome: r.state,
        reason_kind: r.failure_kind.clone(),
        reason: r.failure_reason.clone(),
        document: r.assembled_location.clone(),
        service: r.request.service.clone(),
        transaction_id: r.transaction_id.clone(),
        source: r.request.source.clone(),
        dossier_code: r.request.dossier_code.clone(),
        dossier_key: r.request.dossier_key.clone(),
        at_ms,
    };
    Some(OutboxEvent {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: r.request.request_id.clone(),
        kind: if r.state == RequestState::Completed {
            EVENT_COMPLETED
        } else {
            EVENT_FAILED
        }
        .to_owned(),
        body: serde_json::to_string(&body).expect("the outcome body serialises"),
        created_ms: at_ms,
    })
}

/// Our own cancel or expiry of a request that may be on the official's phone: the service is
/// to be told (invariant 7). An expiry the service reported itself needs no message back.
fn note_service_cancel(cur: &SignatureRequest, next: &mut SignatureRequest) {
    if cur.state.may_be_at_service() {
        next.service_cancel = Some("pending".into());
    }
}

/// Move `cur` to `to` with the common bookkeeping (leases, updated_ms, event).
fn apply_to(
    cur: &SignatureRequest,
    mut next: SignatureRequest,
    to: RequestState,
    actor: &str,
    detail: String,
    at_ms: i64,
) -> Decision {
    next.state = to;
    next.updated_ms = at_ms;
    let keep_lease =
        cur.lease_holder.as_deref() == Some(actor) && cur.state.is_work() && to.is_work();
    if !keep_lease {
        next.lease_holder = None;
        next.lease_until_ms = None;
    }
    if cur.state == RequestState::Sending {
        // The send is over either way; its holder and start stay for the record.
        next.send_lease_until_ms = None;
    }
    if !to.is_polled() {
        next.next_poll_ms = None;
    }
    let event = event_for(&next, at_ms);
    Decision::Apply(Box::new(Write {
        trail: entry(cur, to, actor, detail, at_ms),
        next,
        event,
    }))
}

/// The one function that computes every change (invariants 2, 3, 6, 7).
pub(crate) fn decide(cur: &SignatureRequest, op: &Op) -> Decision {
    use RequestState::*;
    match op {
        Op::Step(c) => {
            let to = c.step.to();
            if cur.state == to {
                return Decision::Unchanged;
            }
            if cur.state != c.from {
                return Decision::Refused(format!(
                    "the request is {}, the change expects {}",
                    cur.state.as_str(),
                    c.from.as_str()
                ));
            }
            match cur.state.via(to) {
                Some(Via::Transition) => {}
                Some(other) => {
                    return Decision::Refused(format!(
                        "{} → {} is made by {other:?}, not by a transition",
                        cur.state.as_str(),
                        to.as_str()
                    ))
                }
                None => {
                    return Decision::Refused(format!(
                        "{} → {} is not a legal move",
                        cur.state.as_str(),
                        to.as_str()
                    ))
                }
            }
            let mut next = cur.clone();
            match &c.step {
                Step::HashComputed {
                    certificate,
                    digest,
                    prepared,
                } => {
                    next.certificate = Some(certificate.clone());
                    next.digest = Some(digest.clone());
                    next.prepared = Some(prepared.clone());
                }
                Step::Waiting { next_poll_ms } => next.next_poll_ms = Some(*next_poll_ms),
                Step::Signed { signature } => next.signature = Some(signature.clone()),
                Step::Verified | Step::Timestamped | Step::Completed => {}
                Step::Assembled { location } => next.assembled_location = Some(location.clone()),
                Step::Rejected { reason } => {
                    next.failure_kind = Some("rejected".into());
                    next.failure_reason = Some(reason.clone());
                }
                Step::Expired { reason } => {
                    next.failure_kind = Some("expired".into());
                    next.failure_reason = Some(reason.clone());
                }
                Step::Failed { kind, reason } => {
                    next.failure_kind = Some(kind.clone());
                    next.failure_reason = Some(reason.clone());
                }
            }
            apply_to(cur, next, to, &c.actor, c.detail.clone(), c.at_ms)
        }
        Op::BeginSend {
            instance,
            now_ms,
            lease_ms,
        } => {
            if cur.state != HashComputed {
                return Decision::Refused(format!("the request is {}", cur.state.as_str()));
            }
            if *now_ms >= cur.request.deadline_ms {
                return Decision::Refused(format!(
                    "the deadline ({}) has passed",
                    cur.request.deadline_ms
                ));
            }
            let mut next = cur.clone();
            next.sends += 1;
            next.send_holder = Some(instance.clone());
            next.send_started_ms = Some(*now_ms);
            next.send_lease_until_ms = Some(now_ms.saturating_add(*lease_ms));
            let detail = format!("send attempt {} by {instance}", next.sends);
            apply_to(cur, next, Sending, instance, detail, *now_ms)
        }
        Op::RecordSent {
            transaction_id,
            next_poll_ms,
            actor,
            at_ms,
        } => {
            if cur.state != Sending {
                return if cur.transaction_id.as_deref() == Some(transaction_id.as_str()) {
                    Decision::Unchanged
                } else {
                    Decision::Refused(format!(
                        "the request is {} (transaction {:?})",
                        cur.state.as_str(),
                        cur.transaction_id
                    ))
                };
            }
            let mut next = cur.clone();
            next.transaction_id = Some(transaction_id.clone());
            next.next_poll_ms = Some(*next_poll_ms);
            let detail = format!("transaction {transaction_id}");
            apply_to(cur, next, Sent, actor, detail, *at_ms)
        }
        Op::AllowResend {
            reason,
            actor,
            now_ms,
        } => {
            if cur.state != Sending {
                return Decision::Refused(format!(
                    "the request is {}, a resend is allowed only for a send in doubt",
                    cur.state.as_str()
                ));
            }
            if !cur.send_in_doubt(*now_ms) {
                return Decision::Refused(format!(
                    "the send by {} is live until {}",
                    cur.send_holder.as_deref().unwrap_or("?"),
                    cur.send_lease_until_ms.unwrap_or_default()
                ));
            }
            let mut next = cur.clone();
            next.resends += 1;
            let detail = format!("resend {} allowed: {reason}", next.resends);
            apply_to(cur, next, HashComputed, actor, detail, *now_ms)
        }
        Op::Cancel { who, at_ms } => {
            if cur.state == Cancelled {
                return Decision::Unchanged;
            }
            if cur.state.via(Cancelled) != Some(Via::Cancel) {
                return Decision::Refused(format!(
                    "the request is {} (terminal)",
                    cur.state.as_str()
                ));
            }
            let mut next = cur.clone();
            next.cancelled_by = Some(who.clone());
            note_service_cancel(cur, &mut next);
            next.failure_kind = Some("cancelled".into());
            next.failure_reason = Some(format!("cancelled by {who}"));
            apply_to(cur, next, Cancelled, who, "cancelled".into(), *at_ms)
        }
        Op::Expire { now_ms } => {
            if cur.state == Expired {
                return Decision::Unchanged;
            }
            if !cur.state.expires() || cur.request.deadline_ms > *now_ms {
                return Decision::Refused(format!(
                    "the request is {} with deadline {}",
                    cur.state.as_str(),
                    cur.request.deadline_ms
                ));
            }
            let mut next = cur.clone();
            note_service_cancel(cur, &mut next);
            next.failure_kind = Some("expired".into());
            next.failure_reason = Some("the deadline passed without the official's answer".into());
            let detail = format!("deadline {} passed", cur.request.deadline_ms);
            apply_to(cur, next, Expired, "expiry", detail, *now_ms)
        }
        Op::Defer {
            from,
            actor,
            detail,
            until_ms,
            at_ms,
        } => {
            if cur.state != *from || !from.is_work() {
                return Decision::Refused(format!(
                    "the request is {}, the deferral expects {} (a work state)",
                    cur.state.as_str(),
                    from.as_str()
                ));
            }
            if cur
                .lease_holder
                .as_deref()
                .is_some_and(|h| h != actor && cur.lease_until_ms.is_some_and(|u| u > *at_ms))
            {
                return Decision::Refused(format!(
                    "the request is leased to {}",
                    cur.lease_holder.as_deref().unwrap_or("?")
                ));
            }
            // Same state, a trail row, and the work lease held until the retry: no change of
            // `updated_ms` (it stays the time the state was entered).
            let mut next = cur.clone();
            next.lease_holder = Some(actor.clone());
            next.lease_until_ms = Some(*until_ms);
            Decision::Apply(Box::new(Write {
                trail: entry(cur, cur.state, actor, detail.clone(), *at_ms),
                next,
                event: None,
            }))
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Invariant 8's cap check.
fn check_cap(what: &str, size: usize, cap: usize) -> Result<()> {
    if size > cap {
        return Err(StoreError::TooLarge {
            what: what.to_owned(),
            size,
            cap,
        });
    }
    Ok(())
}

/// The checks of a change made before any I/O.
fn check_change(c: &Change) -> Result<()> {
    if let Step::HashComputed { prepared, .. } = &c.step {
        check_cap(
            &format!("the prepared state of {}", c.request_id),
            prepared.len(),
            PREPARED_CAP,
        )?;
    }
    Ok(())
}

fn list_limit(limit: u32) -> u32 {
    if limit == 0 {
        LIST_MAX
    } else {
        limit.min(LIST_MAX)
    }
}

fn parse_state(s: &str) -> Result<RequestState> {
    RequestState::parse(s)
        .ok_or_else(|| StoreError::Malformed(format!("unknown signature request state {s:?}")))
}

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/signatures.rs`.
#[doc(hidden)]
pub mod suite;
