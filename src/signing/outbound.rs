//! Signing outgoing requests: one [`SchemeProfile`] per configured profile with a key.
//!
//! The request returned is exactly what the client sends: for `jws-compact` and
//! `xmldsig-enveloped` the body is replaced by the signed body; for `jws-detached` and
//! `http-signature` the body is untouched and the signature travels in headers computed over
//! those very bytes. The work runs on the signing pool ([`super::cpu`]).

use std::sync::Arc;

use async_trait::async_trait;
use gw_crypto::httpsig::{self, HttpSigAlgorithm, RequestParts, SignParams, TargetComponent};
use gw_crypto::jws::{self, JwsAlgorithm, JwsOptions, KeyHint};
use gw_crypto::keys::SigningKey;
use gw_crypto::xmldsig::{self, SignOptions};

use super::cpu::run_cpu;
use super::error::{SignError, SigningError};
use super::material::{KeyMaterial, Scheme};
use super::profile::SigningProfile;
use crate::transport::client::OutRequest;

/// The HTTP method every connector sends with (`HttpClient::post`).
const METHOD: &str = "POST";

enum How {
    JwsCompact(JwsOptions),
    JwsDetached { opts: JwsOptions, header: String },
    XmlDsig(SignOptions),
    HttpSig(SignParams),
}

struct Inner {
    name: String,
    key: SigningKey,
    how: How,
}

/// A profile that signs with one key and one scheme. Cheap to clone.
#[derive(Clone)]
pub struct SchemeProfile(Arc<Inner>);

fn settings(m: &KeyMaterial, what: String) -> SigningError {
    SigningError::Settings {
        profile: m.profile.clone(),
        what,
    }
}

impl SchemeProfile {
    /// Prepare the scheme's options once; the material must hold a key.
    pub fn new(m: Arc<KeyMaterial>) -> Result<Self, SigningError> {
        let key = m
            .key
            .clone()
            .ok_or_else(|| settings(&m, "no key to sign with".into()))?;
        let jws_opts = || -> Result<JwsOptions, SigningError> {
            let algorithm =
                match &m.algorithm {
                    Some(a) => Some(JwsAlgorithm::from_name(a).ok_or_else(|| {
                        settings(&m, format!("`{a}` is not ES256, RS256 or PS256"))
                    })?),
                    None => None,
                };
            Ok(JwsOptions {
                algorithm,
                key_hint: if m.embed_chain {
                    KeyHint::X5c
                } else {
                    KeyHint::Kid
                },
                ..JwsOptions::default()
            })
        };
        let how = match m.scheme {
            Scheme::JwsCompact => How::JwsCompact(jws_opts()?),
            Scheme::JwsDetached => How::JwsDetached {
                opts: jws_opts()?,
                header: m.header.clone(),
            },
            Scheme::XmlDsigEnveloped => {
                if let Some(a) = &m.algorithm {
                    let fits = matches!(
                        (a.as_str(), key.kind()),
                        ("ES256", gw_crypto::keys::KeyKind::EcP256)
                            | ("RS256", gw_crypto::keys::KeyKind::Rsa)
                    );
                    if !fits {
                        return Err(settings(
                            &m,
                            format!("algorithm {a} does not fit a {:?} key", key.kind()),
                        ));
                    }
                }
                How::XmlDsig(SignOptions {
                    include_certificate: key.certificate().is_some(),
                    include_chain: m.embed_chain,
                    ..SignOptions::default()
                })
            }
            Scheme::HttpSignature => How::HttpSig(SignParams {
                target: TargetComponent::TargetUri,
                extra_headers: m.cover_headers.clone(),
                algorithm: match &m.algorithm {
                    Some(a) => Some(HttpSigAlgorithm::from_name(a).ok_or_else(|| {
                        settings(&m, format!("`{a}` is not an RFC 9421 algorithm"))
                    })?),
                    None => None,
                },
                ..SignParams::default()
            }),
            Scheme::None => return Err(settings(&m, "scheme none signs nothing".into())),
        };
        // Fail at start, not on the first message, when algorithm and key do not fit.
        let probe = sign_with(&how, &key, probe_request(&how));
        if let Err(e) = probe {
            return Err(settings(&m, format!("cannot sign with this key: {e}")));
        }
        Ok(SchemeProfile(Arc::new(Inner {
            name: format!("{}:{}", m.scheme.name(), m.profile),
            key,
            how,
        })))
    }

    /// Sign on the calling thread (the commands, tests and benchmarks).
    pub fn sign_now(&self, req: OutRequest) -> Result<OutRequest, SignError> {
        sign_with(&self.0.how, &self.0.key, req)
    }
}

fn probe_request(how: &How) -> OutRequest {
    let body = match how {
        How::XmlDsig(_) => b"<probe/>".to_vec(),
        _ => b"{}".to_vec(),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let How::HttpSig(p) = how {
        for h in &p.extra_headers {
            if !h.eq_ignore_ascii_case("content-type") {
                headers.push((h.clone(), "probe".into()));
            }
        }
    }
    OutRequest {
        url: "https://probe.invalid/".into(),
        headers,
        body,
    }
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}

fn sign_with(how: &How, key: &SigningKey, mut req: OutRequest) -> Result<OutRequest, SignError> {
    match how {
        How::JwsCompact(opts) => {
            let token = jws::sign_compact(&req.body, key, opts)?;
            req.body = token.into_bytes();
            set_header(&mut req.headers, "content-type", "application/jose".into());
        }
        How::JwsDetached { opts, header } => {
            // The signing time, covered by the signature: receivers (this gateway's
            // `verify` among them) refuse a detached JWS that is stale or seen before.
            let mut opts = opts.clone();
            opts.extra.insert("iat".into(), unix_now().into());
            let token = jws::sign_detached(&req.body, key, &opts)?;
            set_header(&mut req.headers, header, token);
        }
        How::XmlDsig(opts) => {
            let xml = std::str::from_utf8(&req.body)
                .ok()
                .filter(|s| {
                    s.trim_start_matches('\u{feff}')
                        .trim_start()
                        .starts_with('<')
                })
                .ok_or(SignError::NotXml)?;
            let signed = xmldsig::sign_enveloped(xml, key, opts)?;
            req.body = signed.into_bytes();
        }
        How::HttpSig(params) => {
            let parts = RequestParts {
                method: METHOD,
                target_uri: &req.url,
                headers: &req.headers,
                body: &req.body,
            };
            let h = httpsig::sign_request(&parts, key, params)?;
            set_header(&mut req.headers, "content-digest", h.content_digest);
            set_header(&mut req.headers, "signature-input", h.signature_input);
            set_header(&mut req.headers, "signature", h.signature);
        }
    }
    Ok(req)
}

#[async_trait]
impl SigningProfile for SchemeProfile {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn sign(&self, req: OutRequest) -> Result<OutRequest, SignError> {
        let this = self.clone();
        run_cpu(move || this.sign_now(req)).await?
    }

    fn signing_key(&self) -> Option<&SigningKey> {
        Some(&self.0.key)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
