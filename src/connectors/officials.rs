//! What the three signer connectors share: the officials of one service (who they are, their
//! pinned certificates), the checks made before anything is sent, the in-process guard of one
//! submit per request id, and one JSON call on the service's [`Outbound`] under its quota.
//!
//! # Invariants
//! - A request is checked before any call: the official is configured, the digest algorithm is
//!   one the service's section allows and the official's key accepts, the digest has that
//!   algorithm's length. A refusal is [`SignerError::UnknownSigner`] or [`SignerError::Input`]
//!   and nothing is sent.
//! - A certificate is accepted only through [`Roster::accept_certificate`]: the official's pin,
//!   the trust anchors, validity now, a signing key usage. The accepted certificate is kept per
//!   official; the key check of a submit uses it.
//! - [`Roster::remember`] keeps the transaction of every submitted request id in this process:
//!   a second submit of the same id returns it without a call (the flow's store keeps it across
//!   restarts).
//! - Bodies that carry a credential (SmartCA's `sp_password`, MySign's `client_secret`) are
//!   sent unobserved and noted in the evidence capture with those fields redacted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::signer::{HashRequest, PollPolicy, SignerError, SignerId, Transaction, VerifyAgainst};
use crate::config::{OfficialSection, SignerSection};
use crate::signing::remote::{
    check_digest, DigestAlgorithm, RemoteVerifier, RsaPadding, SignerCertificate, SignerPin,
};
use crate::transport::exchange::{note, OutRequest};
use crate::transport::ratelimit::RateLimiter;
use crate::transport::stack::{Auth, BuildError, Options, Outbound, Reply, TransportError};

/// Why a signer's settings cannot be used (found at start, never while running).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("signers.{name}.{field}: missing")]
    Missing { name: String, field: &'static str },
    #[error("signers.{name}.{field}: {detail}")]
    Secret {
        name: String,
        field: &'static str,
        detail: String,
    },
    #[error("signers.{name}.trust_anchors: {detail}")]
    TrustAnchors { name: String, detail: String },
    #[error("signers.{name}.officials: {detail}")]
    Officials { name: String, detail: String },
    #[error("signers.{name}: {detail}")]
    Invalid { name: String, detail: String },
    #[error(transparent)]
    Client(#[from] BuildError),
}

/// One configured official.
#[derive(Debug, Clone)]
pub struct OfficialEntry {
    pub user_id: String,
    pub credential_id: Option<String>,
    pub pin: SignerPin,
}

/// The officials of one service and what is known of them.
pub struct Roster {
    name: String,
    officials: HashMap<String, OfficialEntry>,
    digests: Vec<DigestAlgorithm>,
    padding: RsaPadding,
    verifier: RemoteVerifier,
    certs: Mutex<HashMap<String, SignerCertificate>>,
    submitted: Mutex<HashMap<String, Transaction>>,
}

impl Roster {
    pub fn new(name: &str, s: &SignerSection, base: &Path) -> Result<Roster, SettingsError> {
        let invalid = |detail: String| SettingsError::Invalid {
            name: name.into(),
            detail,
        };
        let path = if s.trust_anchors.is_absolute() {
            s.trust_anchors.clone()
        } else {
            base.join(&s.trust_anchors)
        };
        let pem = std::fs::read(&path).map_err(|e| SettingsError::TrustAnchors {
            name: name.into(),
            detail: format!("{}: {e}", path.display()),
        })?;
        let verifier = RemoteVerifier::from_pem(&pem).map_err(|e| SettingsError::TrustAnchors {
            name: name.into(),
            detail: e.to_string(),
        })?;
        let all = s
            .all_officials(base)
            .map_err(|e| SettingsError::Officials {
                name: name.into(),
                detail: e.to_string(),
            })?;
        let officials = all
            .iter()
            .map(|o| entry(o).map(|e| (e.user_id.clone(), e)))
            .collect::<Result<HashMap<_, _>, String>>()
            .map_err(|detail| SettingsError::Officials {
                name: name.into(),
                detail,
            })?;
        let digests = s
            .digests
            .iter()
            .map(|d| DigestAlgorithm::parse(d).ok_or_else(|| invalid(format!("digest `{d}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let padding = match s.rsa_padding.as_str() {
            "pss" => RsaPadding::Pss,
            _ => RsaPadding::Pkcs1,
        };
        if s.signature_form != "raw" {
            return Err(invalid(format!(
                "signature_form `{}` is not verified by the gateway",
                s.signature_form
            )));
        }
        Ok(Roster {
            name: name.into(),
            officials,
            digests,
            padding,
            verifier,
            certs: Mutex::new(HashMap::new()),
            submitted: Mutex::new(HashMap::new()),
        })
    }

    pub fn padding(&self) -> RsaPadding {
        self.padding
    }

    pub fn verifier(&self) -> &RemoteVerifier {
        &self.verifier
    }

    /// What `id`'s signatures are verified against.
    pub fn verify_against(&self, id: &SignerId) -> Result<VerifyAgainst<'_>, SignerError> {
        Ok(VerifyAgainst {
            verifier: &self.verifier,
            pin: self.official(id)?.pin.clone(),
            padding: self.padding,
        })
    }

    /// The digest algorithms requests may use.
    pub fn digests(&self) -> &[DigestAlgorithm] {
        &self.digests
    }

    /// The configured official, or [`SignerError::UnknownSigner`].
    pub fn official(&self, id: &SignerId) -> Result<&OfficialEntry, SignerError> {
        self.officials
            .get(&id.0)
            .ok_or_else(|| SignerError::UnknownSigner {
                service: self.name.clone(),
                signer: id.0.clone(),
            })
    }

    /// Accept `cert` as `o`'s certificate (pin, chain, validity now, usage, a digest the key
    /// accepts among the allowed ones) and keep it.
    pub fn accept_certificate(
        &self,
        o: &OfficialEntry,
        cert: SignerCertificate,
    ) -> Result<SignerCertificate, SignerError> {
        let alg = self
            .digests
            .iter()
            .copied()
            .find(|a| cert.key().accepts(*a))
            .unwrap_or(self.digests[0]);
        self.verifier
            .check_certificate(&o.user_id, &o.pin, &cert, alg, now_s())
            .map_err(SignerError::Certificate)?;
        lock(&self.certs).insert(o.user_id.clone(), cert.clone());
        Ok(cert)
    }

    /// The certificate accepted last for `user`.
    pub fn cached(&self, user: &str) -> Option<SignerCertificate> {
        lock(&self.certs).get(user).cloned()
    }

    /// The checks of a request that need no certificate: official, allowed algorithm, length.
    pub fn check_request(&self, req: &HashRequest) -> Result<&OfficialEntry, SignerError> {
        let o = self.official(&req.signer)?;
        if !self.digests.contains(&req.algorithm) {
            return Err(SignerError::Input(format!(
                "signer service `{}` is configured for {} digests, the request asks {} (signers.{}.digests)",
                self.name,
                self.digests.iter().map(|d| d.label()).collect::<Vec<_>>().join(", "),
                req.algorithm,
                self.name
            )));
        }
        if req.digest.is_empty() {
            return Err(SignerError::Input("the digest is empty".into()));
        }
        check_digest(req.algorithm, &req.digest).map_err(|e| SignerError::Input(e.to_string()))?;
        if req.request_id.trim().is_empty() {
            return Err(SignerError::Input("the request id is empty".into()));
        }
        Ok(o)
    }

    /// The key check: `cert`'s key can sign `req`'s algorithm.
    pub fn check_key(
        &self,
        o: &OfficialEntry,
        cert: &SignerCertificate,
        req: &HashRequest,
    ) -> Result<(), SignerError> {
        crate::signing::remote::check_signer(&o.user_id, &o.pin, cert, req.algorithm).map_err(|e| {
            match e {
                crate::signing::remote::RemoteError::AlgorithmMismatch { .. } => {
                    SignerError::Input(e.to_string())
                }
                other => SignerError::Certificate(other),
            }
        })
    }

    /// The transaction a request id was submitted with in this process.
    pub fn remembered(&self, request_id: &str) -> Option<Transaction> {
        lock(&self.submitted).get(request_id).cloned()
    }

    pub fn remember(&self, request_id: &str, tx: &Transaction) {
        lock(&self.submitted).insert(request_id.into(), tx.clone());
    }
}

fn entry(o: &OfficialSection) -> Result<OfficialEntry, String> {
    let pin = match (&o.serial, &o.subject) {
        (Some(s), None) => SignerPin::serial(s),
        (None, Some(s)) => SignerPin::Subject(s.clone()),
        _ => {
            return Err(format!(
                "`{}`: give exactly one of serial and subject",
                o.user_id
            ))
        }
    };
    Ok(OfficialEntry {
        user_id: o.user_id.clone(),
        credential_id: o.credential_id.clone(),
        pin,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A service's HTTP side: the stack, its quota, its poll policy.
pub struct Link {
    pub stack: Outbound,
    pub limiter: Option<Arc<RateLimiter>>,
    pub policy: PollPolicy,
}

impl Link {
    pub fn new(name: &str, s: &SignerSection, base: &Path) -> Result<Link, SettingsError> {
        let stack = Outbound::build(&Options {
            owner: &format!("signers.{name}"),
            timeout: s.timeout.0,
            connect_timeout: Some(s.connect_timeout.0),
            tls: s.tls.as_ref(),
            base,
            user_agent: true,
            headers: None,
        })?;
        Ok(Link {
            stack,
            limiter: s
                .rate_limit
                .map(|r| Arc::new(RateLimiter::new(r.per_sec, r.burst))),
            policy: PollPolicy {
                interval: s.poll_interval.0,
                max_interval: s.poll_max_interval.0,
                per_sec: s.rate_limit.map(|r| r.per_sec),
                lifetime: s.request_lifetime.0,
            },
        })
    }

    /// One JSON POST under the quota; any status is a [`Reply`]. Fields named in `redact` are
    /// credentials: the call is unobserved and noted with them replaced by `***`.
    pub async fn post(
        &self,
        step: &'static str,
        url: &str,
        body: &Value,
        auth: Auth<'_>,
        redact: &[&str],
    ) -> Result<Reply, SignerError> {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let call = self.stack.post_json(url, body).auth(auth);
        let res = if redact.is_empty() {
            call.send().await
        } else {
            let r = call.unobserved().send().await;
            let mut shown = body.clone();
            for k in redact {
                if let Some(v) = shown.get_mut(*k) {
                    *v = Value::String("***".into());
                }
            }
            let req = OutRequest {
                url: url.into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_vec(&shown).unwrap_or_default(),
            };
            match &r {
                Ok(reply) => note(&req, Some(reply.status), Some(&reply.body)),
                Err(_) => note(&req, None, None),
            }
            r
        };
        res.map_err(|error| SignerError::Transport { step, error })
    }
}

/// A reply's body as JSON, or the step's [`SignerError::Answer`].
pub fn json_of(step: &'static str, r: &Reply) -> Result<Value, SignerError> {
    serde_json::from_slice(&r.body).map_err(|e| SignerError::Answer {
        step,
        detail: format!("HTTP {}: not JSON: {e}", r.status),
    })
}

/// A non-2xx reply as the transport error it is.
pub fn status_error(step: &'static str, r: &Reply) -> SignerError {
    SignerError::Transport {
        step,
        error: TransportError::Status {
            status: r.status,
            body: crate::transport::stack::snippet(&r.body),
        },
    }
}

/// Base64 (standard alphabet, whitespace ignored).
pub fn b64(step: &'static str, s: &str) -> Result<Vec<u8>, SignerError> {
    use base64::Engine as _;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| SignerError::Answer {
            step,
            detail: format!("not base64: {e}"),
        })
}

pub fn b64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The service's words for one state: configured, or the service's default.
/// A secret the service needs (`sp_password`, `client_secret`), read from its reference: missing
/// or unreadable is a [`SettingsError`] naming `signers.NAME.FIELD`.
pub fn required_secret(
    name: &str,
    field: &'static str,
    reference: Option<&crate::config::SecretRef>,
    base: &Path,
) -> Result<crate::config::Secret, SettingsError> {
    reference
        .ok_or_else(|| SettingsError::Missing {
            name: name.into(),
            field,
        })?
        .resolve(base)
        .map_err(|e| SettingsError::Secret {
            name: name.into(),
            field,
            detail: e.to_string(),
        })
}

pub fn words(configured: Option<&Vec<String>>, default: &[&str]) -> Vec<String> {
    configured
        .cloned()
        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
}
