//! Remote signing services (VNPT SmartCA, Viettel MySign, CSC API v2): the [`RemoteSigner`]
//! trait the signing flow drives, and what one call returns. Contract: `shared/CONTRACTS.md` §4.
//!
//! # Invariants
//! - **Hash-only.** [`RemoteSigner::submit`] is given a digest ([`HashRequest::digest`]),
//!   never a document: the document never leaves the gateway. The sandboxes record every body
//!   they receive so the tests prove it.
//! - **Certificate first.** The flow asks [`RemoteSigner::certificate`] before it computes the
//!   digest (the signed attributes of a CMS or PAdES signature name the signer's certificate);
//!   the certificate is checked against the official's pin before any digest is sent.
//! - **One submit per request id.** The flow derives [`HashRequest::request_id`] from its own
//!   stable request id and calls `submit` once; afterwards it only polls
//!   [`RemoteSigner::status`]. A submit whose answer was lost is **in doubt**
//!   ([`SignerError::InDoubt`]): it is never re-sent blindly. Where the service can be asked
//!   about a transaction the gateway named itself ([`RemoteSigner::transaction_for`], SmartCA),
//!   the flow asks `status`; only [`SignStatus::NotFound`] ("the first never arrived") allows a
//!   second submit. Elsewhere a lost answer fails the request with its reason rather than risk
//!   a second request on the official's phone.
//! - **Bad input is refused before anything is sent**: an unknown signer, an empty digest or
//!   one of the wrong length for its algorithm, an algorithm the official's key or the service
//!   cannot use ([`SignerError::Input`], [`SignerError::UnknownSigner`]).
//! - **Exactly one function decides what is retried**: [`SignerError::is_retryable`], with a
//!   reason ([`SignerError::retry_reason`]). A connector never retries a submit itself; it
//!   renews a login once (MySign, CSC) and never loops.
//! - **Cancels only where the contract has them.** `shared/CONTRACTS.md` §4 marks no cancel
//!   operation for SmartCA, MySign or CSC API v2 (CSC's `signatures/signHash` has none either),
//!   so each connector's [`RemoteSigner::cancel`] answers [`CancelOutcome::NotSupported`] and
//!   calls nothing: the flow records that, and the official's phone keeps the request until
//!   the service expires it.
//! - Connectors return what the service said, unverified: [`crate::signing::remote`] verifies
//!   the signature and the certificate before anything is built on them.
//! - Personal data: a signer is named by its configured user id; the description shown on the
//!   phone is the caller's and is never logged.

use std::time::Duration;

use async_trait::async_trait;

use crate::signing::remote::{
    DigestAlgorithm, RemoteError, RemoteVerifier, RsaPadding, SignatureValue, SignerCertificate,
    SignerPin,
};
use crate::transport::stack::TransportError;

/// The three services the gateway speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignerService {
    SmartCa,
    MySign,
    Csc,
}

impl SignerService {
    /// Every service, in the spelling of `signers.NAME.service`.
    pub const ALL: [SignerService; 3] = [
        SignerService::SmartCa,
        SignerService::MySign,
        SignerService::Csc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignerService::SmartCa => "smartca",
            SignerService::MySign => "mysign",
            SignerService::Csc => "csc",
        }
    }

    pub fn parse(s: &str) -> Option<SignerService> {
        SignerService::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// An official as the request names them: the `user_id` of one of the service's configured
/// officials (`[[signers.NAME.officials]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignerId(pub String);

impl std::fmt::Display for SignerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One digest to be signed by one official.
#[derive(Debug, Clone)]
pub struct HashRequest {
    /// The flow's stable request id (or a key derived from it): the idempotency key. SmartCA's
    /// transaction id is derived from it.
    pub request_id: String,
    pub signer: SignerId,
    /// The digest of what the official signs (for a CMS / PAdES signature: of the signed
    /// attributes), exactly `algorithm.len()` bytes.
    pub digest: Vec<u8>,
    pub algorithm: DigestAlgorithm,
    /// What the phone shows the official ("Result of dossier 000.00.01.H22-…"); never logged.
    pub description: String,
}

/// The service's handle on a submitted request, persisted by the flow and polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction(pub String);

/// What a submit did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Sent to the official's phone: poll `status` with this transaction.
    Waiting(Transaction),
    /// The service answered the signature at once (CSC synchronous mode): verify before use.
    Signed(SignatureValue),
    /// The service answered at once that the official refused (CSC synchronous mode).
    Rejected(String),
    /// The service answered at once that the official did not answer in time (CSC
    /// synchronous mode).
    Expired,
}

/// Where a submitted request stands.
#[derive(Debug, Clone)]
pub enum SignStatus {
    /// The official has not answered yet.
    Waiting,
    /// Signed: verify before use.
    Signed(SignatureValue),
    /// The official refused (the service's words).
    Rejected(String),
    /// The official did not answer in time; the service gave up.
    Expired,
    /// The service does not know this transaction: the submit never arrived.
    NotFound,
}

/// What telling a service of a cancel did ([`RemoteSigner::cancel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The service withdrew the request from the official's phone.
    Cancelled,
    /// The service had already finished the transaction (signed, refused or expired there).
    AlreadyFinal,
    /// The service's contract has no cancel operation: the official may still see the request
    /// until it expires there (whatever the official does, the gateway's request stays
    /// cancelled and no outcome but `cancelled` goes out).
    NotSupported,
}

impl CancelOutcome {
    /// What the store records in `service_cancel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::AlreadyFinal => "already_final",
            CancelOutcome::NotSupported => "not_supported_by_service",
        }
    }
}

/// How the flow polls one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// First wait after a submit, and between polls while nothing changes.
    pub interval: Duration,
    /// The longest wait between two polls of one request (the interval doubles up to it).
    pub max_interval: Duration,
    /// The service's quota of calls per second, shared by every request (polls included).
    pub per_sec: Option<f64>,
    /// How long the official has to confirm; after it the request is expired by the gateway
    /// even if the service never says so.
    pub lifetime: Duration,
}

impl PollPolicy {
    /// The wait before poll number `n` (0-based): `interval · 2ⁿ`, capped.
    pub fn wait(&self, n: u32) -> Duration {
        let f = 2u32.saturating_pow(n.min(16));
        self.interval.saturating_mul(f).min(self.max_interval)
    }
}

/// Why a remote signing step failed, one variant per step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The request names an official the service's configuration does not have.
    #[error("signer `{signer}` is not an official of signer service `{service}`: add it to [[signers.{service}.officials]] or fix the request")]
    UnknownSigner { service: String, signer: String },
    /// The request itself is wrong (digest, algorithm): refused before anything was sent.
    #[error("refused before sending: {0}")]
    Input(String),
    /// The certificate the service gave is not acceptable (not the pinned one, expired, …).
    #[error("the official's certificate is refused: {0}")]
    Certificate(RemoteError),
    /// Logging in (MySign) or getting a token (CSC) failed.
    #[error("login at {service} failed: {detail}")]
    Login {
        service: String,
        detail: String,
        retryable: bool,
    },
    /// The call did not get an answer, or an HTTP error status.
    #[error("{step}: {error}")]
    Transport {
        step: &'static str,
        error: TransportError,
    },
    /// The service answered with an error code of its own.
    #[error("{step}: the service refused ({code}): {message}")]
    Refused {
        step: &'static str,
        code: String,
        message: String,
        retryable: bool,
    },
    /// The answer is not what the contract says (a field missing, not base64, …).
    #[error("{step}: unexpected answer: {detail}")]
    Answer { step: &'static str, detail: String },
    /// A submit was sent and its answer lost: the official's phone may have the request.
    #[error("the signing request was sent but its answer was lost ({detail}); it is not sent again blindly")]
    InDoubt { detail: String },
}

impl SignerError {
    /// Whether trying the same step again later may succeed (the one place that decides).
    pub fn is_retryable(&self) -> bool {
        self.retry_reason().is_some()
    }

    /// Why the step may be tried again, or `None` when it is permanent.
    pub fn retry_reason(&self) -> Option<&'static str> {
        match self {
            SignerError::UnknownSigner { .. }
            | SignerError::Input(_)
            | SignerError::Certificate(_)
            | SignerError::InDoubt { .. } => None,
            SignerError::Login { retryable, .. } => retryable.then_some("login failed"),
            SignerError::Refused { retryable, .. } => {
                retryable.then_some("the service reported a transient error")
            }
            SignerError::Answer { .. } => Some("malformed answer (a poll may read a good one)"),
            SignerError::Transport { error, .. } => match error {
                TransportError::Request(_) | TransportError::Decode(_) => None,
                TransportError::Connect(_) => Some("cannot connect"),
                TransportError::Timeout(_) => Some("timed out"),
                TransportError::Broken(_) | TransportError::BodyRead { .. } => {
                    Some("the exchange broke")
                }
                TransportError::Status { status, .. } => match status {
                    408 | 429 => Some("the service asks to slow down"),
                    500..=599 => Some("server error"),
                    _ => None,
                },
            },
        }
    }

    /// Whether the failure left the service's side unknown (nothing arrived, or the answer was
    /// lost): true for a call that may have reached the service.
    pub fn may_have_arrived(&self) -> bool {
        match self {
            SignerError::Transport { error, .. } => matches!(
                error,
                TransportError::Timeout(_)
                    | TransportError::Broken(_)
                    | TransportError::BodyRead { .. }
                    | TransportError::Status { .. }
            ),
            SignerError::Answer { .. } | SignerError::InDoubt { .. } => true,
            _ => false,
        }
    }
}

/// What a returned signature of one official is verified against: the service's trust
/// anchors, the official's pin, how the service's RSA keys sign.
#[derive(Debug, Clone)]
pub struct VerifyAgainst<'a> {
    pub verifier: &'a RemoteVerifier,
    pub pin: SignerPin,
    pub padding: RsaPadding,
}

/// One remote signing service, as the signing flow drives it.
#[async_trait]
pub trait RemoteSigner: Send + Sync + 'static {
    /// The configured name (`[signers.NAME]`).
    fn name(&self) -> &str;

    fn service(&self) -> SignerService;

    fn poll_policy(&self) -> PollPolicy;

    /// What a signature of `signer` is verified against ([`SignerError::UnknownSigner`] for an
    /// official the service's configuration does not have).
    fn verify_against(&self, signer: &SignerId) -> Result<VerifyAgainst<'_>, SignerError>;

    /// The digest algorithms the service's section allows (`signers.NAME.digests`).
    fn digests(&self) -> &[DigestAlgorithm];

    /// The transaction the gateway itself names for `req` (derived from its request id), when
    /// the service lets the client choose it (SmartCA): then `status` can be asked before (or
    /// without) a submit's answer, and an in-doubt submit is resolved by asking. `None` for
    /// services that choose their own ids.
    fn transaction_for(&self, req: &HashRequest) -> Option<Transaction>;

    /// The official's signing certificate (leaf, then the chain the service gives), checked
    /// against the official's pin; the flow computes the digest with it.
    async fn certificate(&self, signer: &SignerId) -> Result<SignerCertificate, SignerError>;

    /// Send one digest to the official's phone (once per request id).
    async fn submit(&self, req: &HashRequest) -> Result<Submitted, SignerError>;

    /// Where a submitted request stands.
    async fn status(&self, tx: &Transaction, req: &HashRequest) -> Result<SignStatus, SignerError>;

    /// Tell the service that the gateway cancelled a request it may have put on the official's
    /// phone (`tx` when the service gave one). Only where the service's contract has such an
    /// operation; otherwise [`CancelOutcome::NotSupported`] without any call. Retried by the
    /// flow while [`SignerError::is_retryable`].
    async fn cancel(
        &self,
        tx: Option<&Transaction>,
        req: &HashRequest,
    ) -> Result<CancelOutcome, SignerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions_have_reasons() {
        let t = |error| SignerError::Transport {
            step: "submit",
            error,
        };
        assert!(t(TransportError::Timeout("x".into())).is_retryable());
        assert!(t(TransportError::Status {
            status: 503,
            body: String::new()
        })
        .is_retryable());
        assert!(!t(TransportError::Status {
            status: 400,
            body: String::new()
        })
        .is_retryable());
        assert!(!SignerError::Input("empty digest".into()).is_retryable());
        assert!(!SignerError::InDoubt { detail: "x".into() }.is_retryable());
        assert!(!t(TransportError::Connect("x".into())).may_have_arrived());
        assert!(t(TransportError::Timeout("x".into())).may_have_arrived());
    }

    #[test]
    fn poll_waits_double_up_to_the_cap() {
        let p = PollPolicy {
            interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(30),
            per_sec: None,
            lifetime: Duration::from_secs(300),
        };
        assert_eq!(p.wait(0), Duration::from_secs(2));
        assert_eq!(p.wait(2), Duration::from_secs(8));
        assert_eq!(p.wait(10), Duration::from_secs(30));
        assert_eq!(p.wait(400), Duration::from_secs(30));
    }

    #[test]
    fn service_names() {
        for s in SignerService::ALL {
            assert_eq!(SignerService::parse(s.as_str()), Some(s));
        }
        assert_eq!(SignerService::parse("vnpt"), None);
    }
}
