//! Verifying incoming requests of a source (`verify = "NAME"`), before the body is parsed.
//!
//! Every refusal carries one stable code ([`codes`]), answered with 401:
//! - `bad_signature`: no signature, a malformed one, one that does not verify over these bytes
//!   (changed body, changed covered header), a wrong algorithm for the key;
//! - `stale_signature`: `created` (HTTP signatures) or the protected header's `iat` (detached
//!   JWS) older than `max_age`, further ahead than `max_skew`, or past `expires`; a detached
//!   JWS without `iat`;
//! - `replayed_signature`: a nonce this key used before (HTTP signatures) or the same JWS,
//!   within the window: checked in this process's memory here, then in the store
//!   ([`Verified::replay`], by the caller) so a restart or another instance does not forget.
//! - `untrusted_signer`: a key id nobody configured, or a signer certificate that does not
//!   chain to `trust_anchors` (expired, revoked, unknown issuer).
//!
//! With `trust_anchors`, keys found by id are checked against the anchors on every request too
//! (a pinned certificate can expire or be revoked while the gateway runs).

use std::sync::Arc;

use bytes::Bytes;
use gw_crypto::httpsig::{self, HttpSigError, MemoryNonceStore, RequestParts, VerifyPolicy};
use gw_crypto::jws::{self, JwsError, JwsTrust};
use gw_crypto::keys::{KeyError, Usage, VerifyingKey};
use openssl::x509::X509;

use super::cpu::run_cpu;
use super::material::{KeyMaterial, Scheme};
use crate::config::defaults;

/// The error codes of a refused signature, defined once.
pub mod codes {
    pub const BAD_SIGNATURE: &str = "bad_signature";
    pub const STALE_SIGNATURE: &str = "stale_signature";
    pub const REPLAYED_SIGNATURE: &str = "replayed_signature";
    pub const UNTRUSTED_SIGNER: &str = "untrusted_signer";
    /// The nonce store could not record the nonce (full of live nonces): refused, retry later.
    pub const VERIFICATION_UNAVAILABLE: &str = "verification_unavailable";
}

/// The request as received, owned so verification can run on the blocking pool.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    pub method: String,
    /// `scheme://host[:port]/path?query` as the sender addressed it.
    pub target_uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One of [`codes`].
    pub code: &'static str,
    /// The gw-crypto error, for the sender and the log.
    pub message: String,
}

/// Who signed an accepted request.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key_id: Option<String>,
    pub signer: Option<X509>,
    /// What the evidence log records of the signer: see [`signer_fingerprint`].
    pub fingerprint: Option<String>,
    /// What the store must remember to refuse this signature a second time (the caller does:
    /// verification runs off the reactor and the store is async).
    pub replay: ReplayId,
}

/// One accepted signature, as the shared replay store keys it (`gw_store::replay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayId {
    /// The signing profile.
    pub scope: String,
    /// `nonce:KEY:NONCE` (HTTP signatures) or `sha256:HEX` of the compact JWS.
    pub id: String,
    /// Unix milliseconds until which a second use is a replay: the end of the freshness window.
    pub until_ms: i64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How the evidence log names who signed: the SHA-256 (lowercase hex) of the DER of the
/// certificate the signature verified with (`signer`, else the certificate of `key`); for a
/// bare public key (no certificate), `key-id:ID spki-sha256:HEX`, the key id and the SHA-256 of
/// its SubjectPublicKeyInfo DER, so the record says it is not a certificate's fingerprint.
pub fn signer_fingerprint(signer: Option<&X509>, key: Option<&VerifyingKey>) -> Option<String> {
    let sha = |der: Vec<u8>| gw_crypto::digest::sha256_hex(&der);
    if let Some(cert) = signer.or_else(|| key.and_then(|k| k.cert.as_ref())) {
        return cert.to_der().ok().map(sha);
    }
    let key = key?;
    let spki = key
        .pkey
        .public_key_to_der()
        .ok()
        .map(sha)
        .unwrap_or_default();
    Some(format!("key-id:{} spki-sha256:{spki}", key.id))
}

/// Verifies a source's requests with one profile's keys. Built once; holds the profile's
/// nonce store.
pub struct InboundVerifier {
    material: Arc<KeyMaterial>,
    nonces: MemoryNonceStore,
}

fn reject(code: &'static str, message: impl std::fmt::Display) -> Rejection {
    Rejection {
        code,
        message: message.to_string(),
    }
}

fn jws_code(e: &JwsError) -> &'static str {
    match e {
        JwsError::UnknownKey(_) | JwsError::NoKeyHint | JwsError::Certificate(_) => {
            codes::UNTRUSTED_SIGNER
        }
        _ => codes::BAD_SIGNATURE,
    }
}

fn httpsig_code(e: &HttpSigError) -> &'static str {
    match e {
        HttpSigError::Stale { .. } | HttpSigError::FromFuture { .. } => codes::STALE_SIGNATURE,
        HttpSigError::Replayed => codes::REPLAYED_SIGNATURE,
        HttpSigError::UnknownKey(_) => codes::UNTRUSTED_SIGNER,
        HttpSigError::NonceStore(_) => codes::VERIFICATION_UNAVAILABLE,
        _ => codes::BAD_SIGNATURE,
    }
}

impl InboundVerifier {
    pub fn new(material: Arc<KeyMaterial>) -> Self {
        InboundVerifier {
            material,
            nonces: MemoryNonceStore::new(defaults::NONCE_CAPACITY),
        }
    }

    /// The profile's name.
    pub fn profile(&self) -> &str {
        &self.material.profile
    }

    /// The request headers that carry the signature value this profile verifies (lowercase):
    /// the JWS header of `jws-detached`, `signature` of HTTP message signatures.
    pub fn signature_headers(&self) -> Vec<String> {
        match self.material.scheme {
            Scheme::JwsDetached => vec![self.material.header.to_ascii_lowercase()],
            Scheme::HttpSignature => vec!["signature".to_string()],
            _ => vec![],
        }
    }

    /// Verify on the blocking pool.
    pub async fn verify(self: &Arc<Self>, req: InboundRequest) -> Result<Verified, Rejection> {
        let this = self.clone();
        run_cpu(move || this.verify_now(&req))
            .await
            .unwrap_or_else(|e| Err(reject(codes::VERIFICATION_UNAVAILABLE, e)))
    }

    /// Verify on the calling thread.
    pub fn verify_now(&self, req: &InboundRequest) -> Result<Verified, Rejection> {
        let m = &self.material;
        match m.scheme {
            Scheme::JwsDetached => self.verify_jws(req),
            Scheme::HttpSignature => {
                let parts = RequestParts {
                    method: &req.method,
                    target_uri: &req.target_uri,
                    headers: &req.headers,
                    body: &req.body,
                };
                let policy = VerifyPolicy {
                    max_age: m.max_age,
                    max_future_skew: m.max_skew,
                    ..VerifyPolicy::default()
                };
                let v = httpsig::verify_request(&parts, &m.verifiers, &policy, &self.nonces)
                    .map_err(|e| reject(httpsig_code(&e), e))?;
                let key = m.verifiers.iter().find(|k| k.id == v.key_id);
                self.check_chain(key)?;
                let until = v.created + m.max_age.as_secs() + m.max_skew.as_secs();
                Ok(Verified {
                    replay: ReplayId {
                        scope: m.profile.clone(),
                        id: format!("nonce:{}:{}", v.key_id, v.nonce),
                        until_ms: (until as i64).saturating_mul(1000),
                    },
                    key_id: Some(v.key_id),
                    signer: key.and_then(|k| k.cert.clone()),
                    fingerprint: signer_fingerprint(None, key),
                })
            }
            other => Err(reject(
                codes::BAD_SIGNATURE,
                format!(
                    "profile {} ({}) cannot verify requests",
                    m.profile,
                    other.name()
                ),
            )),
        }
    }

    fn verify_jws(&self, req: &InboundRequest) -> Result<Verified, Rejection> {
        let m = &self.material;
        let token = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&m.header))
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| reject(codes::BAD_SIGNATURE, format!("missing header {}", m.header)))?;
        let by_kid = jws::verify(token, Some(&req.body), JwsTrust::Keys(&m.verifiers));
        let v = match (by_kid, &m.trust) {
            // No kid: an x5c chain, judged by the anchors.
            (Err(JwsError::NoKeyHint), Some(trust)) => {
                let v = jws::verify(token, Some(&req.body), JwsTrust::Chain(trust))
                    .map_err(|e| reject(jws_code(&e), e))?;
                if let Some(cert) = &v.signer {
                    m.subject_allowed(cert)
                        .map_err(|e| reject(codes::UNTRUSTED_SIGNER, e))?;
                }
                v
            }
            (Err(e), _) => return Err(reject(jws_code(&e), e)),
            (Ok(v), _) => {
                let key = v
                    .key_id
                    .as_deref()
                    .and_then(|id| m.verifiers.iter().find(|k| k.id == id));
                self.check_chain(key)?;
                v
            }
        };
        let key = v
            .key_id
            .as_deref()
            .and_then(|id| m.verifiers.iter().find(|k| k.id == id));
        let signer = v
            .signer
            .clone()
            .or_else(|| key.and_then(|k| k.cert.clone()));
        let iat = self.fresh_iat(&v.header, unix_now())?;
        let until = iat + m.max_age.as_secs() + m.max_skew.as_secs();
        Ok(Verified {
            replay: ReplayId {
                scope: m.profile.clone(),
                id: format!(
                    "sha256:{}",
                    gw_crypto::digest::sha256_hex(token.trim().as_bytes())
                ),
                until_ms: (until as i64).saturating_mul(1000),
            },
            fingerprint: signer_fingerprint(v.signer.as_ref(), key),
            key_id: v.key_id,
            signer,
        })
    }

    /// A detached JWS carries its signing time in the protected header (`iat`, Unix seconds,
    /// covered by the signature): no older than `max_age`, no further ahead than `max_skew`.
    /// Without it a captured request could be replayed forever.
    fn fresh_iat(
        &self,
        header: &serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) -> Result<u64, Rejection> {
        let m = &self.material;
        let iat = header.get("iat").and_then(|v| v.as_u64()).ok_or_else(|| {
            reject(
                codes::STALE_SIGNATURE,
                "the JWS protected header has no `iat` (signing time, Unix seconds)",
            )
        })?;
        if iat + m.max_age.as_secs() < now {
            return Err(reject(
                codes::STALE_SIGNATURE,
                format!(
                    "signed {}s ago, more than max_age {}s",
                    now - iat,
                    m.max_age.as_secs()
                ),
            ));
        }
        if iat > now + m.max_skew.as_secs() {
            return Err(reject(
                codes::STALE_SIGNATURE,
                format!(
                    "signed {}s in the future, more than max_skew {}s",
                    iat - now,
                    m.max_skew.as_secs()
                ),
            ));
        }
        Ok(iat)
    }

    /// With anchors configured, a key found by id must still chain to them now.
    fn check_chain(&self, key: Option<&VerifyingKey>) -> Result<(), Rejection> {
        let (Some(trust), Some(cert)) = (&self.material.trust, key.and_then(|k| k.cert.as_ref()))
        else {
            return Ok(());
        };
        let chain = key.map(|k| self.material.chain_of(&k.id)).unwrap_or(&[]);
        trust
            .verify(cert, chain, Usage::Signing)
            .map(|_| ())
            .map_err(|e: KeyError| {
                reject(codes::UNTRUSTED_SIGNER, format!("signer certificate: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-example")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn the_signer_is_named_by_certificate_or_by_key() {
        let ec = X509::from_pem(&example("sign-ec.pem")).unwrap();
        let rsa = X509::from_pem(&example("sign-rsa.pem")).unwrap();
        let ec_sha = gw_crypto::digest::sha256_hex(&ec.to_der().unwrap());
        // A certificate: its DER's SHA-256, the signer's over the key's.
        let pinned = VerifyingKey::from_certificate("agency", rsa.clone()).unwrap();
        assert_eq!(signer_fingerprint(Some(&ec), Some(&pinned)), Some(ec_sha));
        assert_eq!(
            signer_fingerprint(None, Some(&pinned)),
            Some(gw_crypto::digest::sha256_hex(&rsa.to_der().unwrap()))
        );
        // A bare public key: said so, with its id and SubjectPublicKeyInfo digest.
        let public = ec.public_key().unwrap().public_key_to_pem().unwrap();
        let bare = VerifyingKey::from_pem("agency-bare", &public).unwrap();
        assert!(bare.cert.is_none());
        let spki =
            gw_crypto::digest::sha256_hex(&ec.public_key().unwrap().public_key_to_der().unwrap());
        assert_eq!(
            signer_fingerprint(None, Some(&bare)),
            Some(format!("key-id:agency-bare spki-sha256:{spki}"))
        );
        assert_eq!(signer_fingerprint(None, None), None);
    }
}
