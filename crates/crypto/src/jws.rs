//! JWS (RFC 7515) compact serialization, and detached JWS with unencoded payload (RFC 7797).
//!
//! Invariants:
//! - Algorithms: ES256 (P-256, signature is raw `r || s`, 64 bytes: RFC 7518 §3.4), RS256 and PS256
//!   (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt = 32 bytes). `none`, HMAC and anything else are refused;
//!   the algorithm must fit the key, so an RSA public key is never used as an HMAC secret.
//! - The protected header carries `kid` (key looked up in the caller's keys) or `x5c` (chain validated
//!   against a [`TrustStore`]); both are integrity protected.
//! - `crit` may only name `b64`; `b64` must be listed in `crit` when present (RFC 7797 §6).
//!   Unencoded payloads are only accepted detached (`header..signature`), so the payload can't be
//!   confused with base64url.
//! - Verification returns the header, the payload that was verified and the signer.

use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;
use serde_json::{json, Map, Value};

use crate::keys::{KeyError, KeyKind, KeyResolver, SigningKey, TrustStore, Usage, VerifyingKey};
use crate::util::{sign_with, verify_with, SigningScheme};

/// Errors of JWS signing and verification.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    #[error("malformed JWS: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted (ES256, RS256, PS256 only)")]
    UnsupportedAlgorithm(String),
    #[error("critical header parameter {0:?} is not understood")]
    UnsupportedCritical(String),
    #[error("unencoded (b64:false) payload must be detached and supplied by the caller")]
    DetachedPayloadRequired,
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    #[error("header has neither kid nor x5c")]
    NoKeyHint,
    #[error("wrong key: {0}")]
    WrongKey(String),
    #[error("signature does not verify")]
    SignatureMismatch,
    #[error("signer certificate: {0}")]
    Certificate(#[from] KeyError),
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The accepted algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlgorithm {
    Es256,
    Rs256,
    Ps256,
}

impl JwsAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            JwsAlgorithm::Es256 => "ES256",
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Ps256 => "PS256",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(JwsAlgorithm::Es256),
            "RS256" => Some(JwsAlgorithm::Rs256),
            "PS256" => Some(JwsAlgorithm::Ps256),
            _ => None,
        }
    }
    fn key_kind(self) -> KeyKind {
        match self {
            JwsAlgorithm::Es256 => KeyKind::EcP256,
            JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256 => KeyKind::Rsa,
        }
    }
}

/// How the header identifies the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyHint {
    /// `kid` = the signing key's id.
    #[default]
    Kid,
    /// `x5c` = the signer certificate and the key's chain.
    X5c,
}

/// Signing options.
#[derive(Debug, Clone, Default)]
pub struct JwsOptions {
    /// `None`: ES256 for EC keys, RS256 for RSA keys.
    pub algorithm: Option<JwsAlgorithm>,
    pub key_hint: KeyHint,
    /// `typ` header, e.g. `"JOSE"`.
    pub typ: Option<String>,
    /// Further protected header members (must not redefine `alg`, `kid`, `x5c`, `b64`, `crit`).
    pub extra: Map<String, Value>,
}

/// Which keys may have signed.
#[derive(Clone, Copy)]
pub enum JwsTrust<'a> {
    /// Header `kid` selects a key (a `KeyRing`, a `Vec` or an array of `VerifyingKey`).
    Keys(&'a dyn KeyResolver),
    /// Header `x5c` must chain to this store.
    Chain(&'a TrustStore),
}

/// A verified JWS.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
    pub algorithm: JwsAlgorithm,
    /// `kid` of the key that verified (with [`JwsTrust::Keys`]).
    pub key_id: Option<String>,
    /// Signer certificate (with [`JwsTrust::Chain`]).
    pub signer: Option<X509>,
}

fn header_for(
    key: &SigningKey,
    opts: &JwsOptions,
    unencoded: bool,
) -> Result<(JwsAlgorithm, String), JwsError> {
    let alg = opts.algorithm.unwrap_or(match key.kind() {
        KeyKind::EcP256 => JwsAlgorithm::Es256,
        KeyKind::Rsa => JwsAlgorithm::Rs256,
    });
    if alg.key_kind() != key.kind() {
        return Err(JwsError::WrongKey(format!(
            "{} needs a {:?} key",
            alg.name(),
            alg.key_kind()
        )));
    }
    let mut h = Map::new();
    h.insert("alg".into(), json!(alg.name()));
    match opts.key_hint {
        KeyHint::Kid => {
            h.insert("kid".into(), json!(key.id()));
        }
        KeyHint::X5c => {
            let cert = key.certificate().ok_or_else(|| {
                JwsError::Malformed("x5c requested but the key has no certificate".into())
            })?;
            let mut chain = vec![json!(B64.encode(cert.to_der()?))];
            for c in key.chain() {
                chain.push(json!(B64.encode(c.to_der()?)));
            }
            h.insert("x5c".into(), Value::Array(chain));
        }
    }
    if let Some(t) = &opts.typ {
        h.insert("typ".into(), json!(t));
    }
    for (k, v) in &opts.extra {
        if matches!(k.as_str(), "alg" | "kid" | "x5c" | "b64" | "crit") {
            return Err(JwsError::Malformed(format!(
                "extra header may not set {k:?}"
            )));
        }
        h.insert(k.clone(), v.clone());
    }
    if unencoded {
        h.insert("b64".into(), json!(false));
        h.insert("crit".into(), json!(["b64"]));
    }
    let header = serde_json::to_vec(&Value::Object(h)).expect("JSON map serialises");
    Ok((alg, B64URL.encode(header)))
}

fn scheme(alg: JwsAlgorithm) -> SigningScheme {
    SigningScheme {
        digest: MessageDigest::sha256(),
        pss: (alg == JwsAlgorithm::Ps256).then(|| (MessageDigest::sha256(), -1)), // -1: salt length = digest length
        ecdsa_raw: alg == JwsAlgorithm::Es256,
    }
}

fn sign_input(key: &SigningKey, alg: JwsAlgorithm, input: &[u8]) -> Result<Vec<u8>, JwsError> {
    Ok(sign_with(key.private_key(), &scheme(alg), input)?)
}

fn verify_input(
    pkey: &PKey<Public>,
    alg: JwsAlgorithm,
    input: &[u8],
    sig: &[u8],
) -> Result<bool, JwsError> {
    Ok(verify_with(pkey, &scheme(alg), input, sig)?)
}

/// Compact JWS: `BASE64URL(header).BASE64URL(payload).BASE64URL(signature)`.
pub fn sign_compact(
    payload: &[u8],
    key: &SigningKey,
    opts: &JwsOptions,
) -> Result<String, JwsError> {
    let (alg, h) = header_for(key, opts, false)?;
    let p = B64URL.encode(payload);
    let input = format!("{h}.{p}");
    let sig = sign_input(key, alg, input.as_bytes())?;
    Ok(format!("{input}.{}", B64URL.encode(sig)))
}

/// Detached JWS with unencoded payload (RFC 7797): `BASE64URL(header)..BASE64URL(signature)`, header
/// `{"b64":false,"crit":["b64"]}`; the signing input is `BASE64URL(header) || '.' || payload`.
pub fn sign_detached(
    payload: &[u8],
    key: &SigningKey,
    opts: &JwsOptions,
) -> Result<String, JwsError> {
    let (alg, h) = header_for(key, opts, true)?;
    let mut input = Vec::with_capacity(h.len() + 1 + payload.len());
    input.extend_from_slice(h.as_bytes());
    input.push(b'.');
    input.extend_from_slice(payload);
    let sig = sign_input(key, alg, &input)?;
    Ok(format!("{h}..{}", B64URL.encode(sig)))
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    B64URL
        .decode(part)
        .map_err(|e| JwsError::Malformed(format!("{what}: {e}")))
}

/// Verifies a compact JWS, or a detached one when `detached_payload` is given (either RFC 7797
/// unencoded, or a regular detached JWS whose payload is base64url-encoded for the signing input).
pub fn verify(
    jws: &str,
    detached_payload: Option<&[u8]>,
    trust: JwsTrust<'_>,
) -> Result<VerifiedJws, JwsError> {
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let [h_b64, p_b64, s_b64] = parts.as_slice() else {
        return Err(JwsError::Malformed(format!(
            "{} parts, expected 3",
            parts.len()
        )));
    };
    let header: Map<String, Value> = serde_json::from_slice(&b64url(h_b64, "header")?)
        .map_err(|e| JwsError::Malformed(format!("header JSON: {e}")))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::Malformed("no alg".into()))?;
    let alg = JwsAlgorithm::from_name(alg_name)
        .ok_or_else(|| JwsError::UnsupportedAlgorithm(alg_name.to_owned()))?;

    // crit / b64 (RFC 7515 §4.1.11, RFC 7797 §3, §6)
    let crit: Vec<&str> = match header.get("crit") {
        None => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| JwsError::Malformed("crit entries must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwsError::Malformed("crit must be a non-empty array".into())),
    };
    for c in &crit {
        if *c != "b64" {
            return Err(JwsError::UnsupportedCritical((*c).to_owned()));
        }
        if !header.contains_key(*c) {
            return Err(JwsError::Malformed(format!(
                "crit names {c:?} but the header lacks it"
            )));
        }
    }
    let encoded = match header.get("b64") {
        None => true,
        Some(Value::Bool(b)) if crit.contains(&"b64") => *b,
        Some(Value::Bool(_)) => {
            return Err(JwsError::Malformed("b64 present but not critical".into()))
        }
        Some(_) => return Err(JwsError::Malformed("b64 must be a boolean".into())),
    };

    let (payload, input): (Vec<u8>, Vec<u8>) = match (encoded, detached_payload) {
        (true, None) => (
            b64url(p_b64, "payload")?,
            format!("{h_b64}.{p_b64}").into_bytes(),
        ),
        (true, Some(p)) => {
            if !p_b64.is_empty() {
                return Err(JwsError::Malformed(
                    "payload both attached and detached".into(),
                ));
            }
            (
                p.to_vec(),
                format!("{h_b64}.{}", B64URL.encode(p)).into_bytes(),
            )
        }
        (false, Some(p)) => {
            if !p_b64.is_empty() {
                return Err(JwsError::Malformed(
                    "payload both attached and detached".into(),
                ));
            }
            let mut input = Vec::with_capacity(h_b64.len() + 1 + p.len());
            input.extend_from_slice(h_b64.as_bytes());
            input.push(b'.');
            input.extend_from_slice(p);
            (p.to_vec(), input)
        }
        (false, None) => return Err(JwsError::DetachedPayloadRequired),
    };
    let sig = b64url(s_b64, "signature")?;

    let (pkey, kind, key_id, signer) = match trust {
        JwsTrust::Keys(keys) => {
            let kid = header
                .get("kid")
                .and_then(Value::as_str)
                .ok_or(JwsError::NoKeyHint)?;
            let k = keys
                .resolve(kid)
                .ok_or_else(|| JwsError::UnknownKey(kid.to_owned()))?;
            (k.pkey.clone(), k.kind, Some(kid.to_owned()), None)
        }
        JwsTrust::Chain(store) => {
            let x5c = header
                .get("x5c")
                .and_then(Value::as_array)
                .ok_or(JwsError::NoKeyHint)?;
            let certs: Vec<X509> = x5c
                .iter()
                .map(|v| {
                    let der = B64
                        .decode(v.as_str().unwrap_or_default())
                        .map_err(|e| JwsError::Malformed(format!("x5c: {e}")))?;
                    X509::from_der(&der).map_err(|e| JwsError::Malformed(format!("x5c: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let leaf = certs
                .first()
                .ok_or_else(|| JwsError::Malformed("empty x5c".into()))?;
            store.verify(leaf, &certs[1..], Usage::Signing)?;
            let vk = VerifyingKey::from_certificate("x5c", leaf.clone())?;
            (vk.pkey, vk.kind, None, Some(leaf.clone()))
        }
    };
    if kind != alg.key_kind() {
        return Err(JwsError::WrongKey(format!(
            "{} with a {kind:?} key",
            alg.name()
        )));
    }
    if !verify_input(&pkey, alg, &input, &sig)? {
        return Err(JwsError::SignatureMismatch);
    }
    Ok(VerifiedJws {
        header,
        payload,
        algorithm: alg,
        key_id,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{ec_key, rsa_key, trust};

    #[test]
    fn round_trips() {
        let t = trust();
        for (key, alg) in [
            (ec_key(), JwsAlgorithm::Es256),
            (rsa_key(), JwsAlgorithm::Rs256),
            (rsa_key(), JwsAlgorithm::Ps256),
        ] {
            let keys = [key.verifying_key().unwrap()];
            let opts = JwsOptions {
                algorithm: Some(alg),
                ..JwsOptions::default()
            };
            let c = sign_compact(b"{\"a\":1}", &key, &opts).unwrap();
            let v = verify(&c, None, JwsTrust::Keys(&keys)).unwrap();
            assert_eq!(v.payload, b"{\"a\":1}");
            let ring = crate::keys::KeyRing::new(key.clone()).unwrap();
            verify(&c, None, JwsTrust::Keys(&ring)).unwrap();
            assert_eq!(v.algorithm, alg);
            let d = sign_detached(b"raw $.payload", &key, &opts).unwrap();
            assert!(d.contains(".."));
            let v = verify(&d, Some(b"raw $.payload"), JwsTrust::Keys(&keys)).unwrap();
            assert_eq!(v.key_id.as_deref(), Some(key.id()));
            assert!(matches!(
                verify(&d, Some(b"raw $.payloaD"), JwsTrust::Keys(&keys)),
                Err(JwsError::SignatureMismatch)
            ));
            assert!(matches!(
                verify(&d, None, JwsTrust::Keys(&keys)),
                Err(JwsError::DetachedPayloadRequired)
            ));
            let x = JwsOptions {
                algorithm: Some(alg),
                key_hint: KeyHint::X5c,
                ..JwsOptions::default()
            };
            let c = sign_compact(b"x", &key, &x).unwrap();
            let v = verify(&c, None, JwsTrust::Chain(&t)).unwrap();
            assert_eq!(
                v.signer.unwrap().to_der().unwrap(),
                key.certificate().unwrap().to_der().unwrap()
            );
        }
    }

    #[test]
    fn refuses_bad_headers_and_keys() {
        let key = ec_key();
        let keys = [key.verifying_key().unwrap()];
        let c = sign_compact(b"x", &key, &JwsOptions::default()).unwrap();
        let parts: Vec<&str> = c.split('.').collect();
        let forge = |h: &str| format!("{}.{}.{}", B64URL.encode(h), parts[1], parts[2]);
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"none\",\"kid\":\"ec-1\"}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"HS256\",\"kid\":\"ec-1\"}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"crit\":[\"exp\"],\"exp\":1}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::UnsupportedCritical(_))
        ));
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"b64\":false}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::Malformed(_))
        ));
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"RS256\",\"kid\":\"ec-1\"}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::WrongKey(_))
        ));
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"ES256\",\"kid\":\"other\"}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::UnknownKey(_))
        ));
        // Header changed (kid kept): signature no longer verifies.
        assert!(matches!(
            verify(
                &forge("{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"typ\":\"x\"}"),
                None,
                JwsTrust::Keys(&keys)
            ),
            Err(JwsError::SignatureMismatch)
        ));
        // x5c with an expired certificate, and with one from outside the trust store.
        let expired = crate::keys::load_pem(
            "exp",
            &crate::keys::tests::example("sign-expired.key"),
            Some(&crate::keys::tests::example("sign-expired.pem")),
            None,
        )
        .unwrap();
        let x5c = JwsOptions {
            key_hint: KeyHint::X5c,
            ..JwsOptions::default()
        };
        let c = sign_compact(b"x", &expired, &x5c).unwrap();
        assert!(matches!(
            verify(&c, None, JwsTrust::Chain(&trust())),
            Err(JwsError::Certificate(KeyError::Expired { .. }))
        ));
        let c = sign_compact(b"x", &key, &x5c).unwrap();
        assert!(matches!(
            verify(&c, None, JwsTrust::Keys(&keys)),
            Err(JwsError::NoKeyHint)
        ));

        let rsa = [rsa_key().verifying_key().unwrap()];
        let c2 = sign_compact(b"x", &rsa_key(), &JwsOptions::default()).unwrap();
        let forged_kid = c2.replace(
            c2.split('.').next().unwrap(),
            &B64URL.encode("{\"alg\":\"RS256\",\"kid\":\"ec-1\"}"),
        );
        assert!(matches!(
            verify(&forged_kid, None, JwsTrust::Keys(&rsa)),
            Err(JwsError::UnknownKey(_))
        ));
    }
}
