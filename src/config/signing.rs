//! `[signing.NAME]`: signing profiles, how adapters sign what they send and sources verify
//! what they receive (keys are loaded once at start by `crate::signing`).
//!
//! Each profile is checked here on its own; the references to a profile
//! (`adapters.NAME.signing`, `sources.NAME.verify`) are checked in `references.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::duration::Dur;
use super::names::valid_name;
use super::secrets::SecretRef;

/// A signing profile: one scheme with its keys, used to sign what an adapter sends and to
/// verify what a source receives. Keys are loaded once at start (`crate::signing`).
#[derive(Debug, Clone, Deserialize)]
pub struct SigningSection {
    /// required: `jws-compact` (the body becomes a compact JWS, `application/jose`),
    /// `jws-detached` (RFC 7797 detached JWS in a header, body unchanged), `xmldsig-enveloped`
    /// (XML bodies), `http-signature` (RFC 9421 with `content-digest`, `created`, `keyid`,
    /// `nonce`) or `none`.
    pub scheme: String,
    /// JWS: `ES256`, `RS256` or `PS256`; XML-DSig: `ES256`/`RS256` (must fit the key);
    /// HTTP signatures: `ecdsa-p256-sha256`, `rsa-pss-sha512` or `rsa-v1_5-sha256`.
    /// Default: from the key (ES256 / RS256; ecdsa-p256-sha256 / rsa-pss-sha512).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// PEM private key (RSA >= 2048 or P-256), with `certificate`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM certificate of `key`, leaf first, then its chain.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Password of an encrypted `key`, by reference.
    #[serde(default)]
    pub key_password: Option<SecretRef>,
    /// PKCS#12 bundle (key, certificate, chain) instead of `key` + `certificate`.
    #[serde(default)]
    pub pkcs12: Option<PathBuf>,
    /// Password of `pkcs12`, by reference (required with it).
    #[serde(default)]
    pub pkcs12_password: Option<SecretRef>,
    /// The key's id: JWS `kid`, HTTP signature `keyid`. Default: the profile's name.
    #[serde(default)]
    pub key_id: Option<String>,
    /// JWS: send the certificate chain as `x5c` instead of `kid`; XML-DSig: add the chain to
    /// `KeyInfo/X509Data` after the signer certificate. Default false.
    #[serde(default)]
    pub embed_chain: bool,
    /// `jws-detached`: the header that carries the JWS. Default `x-jws-signature`.
    #[serde(default)]
    pub header: Option<String>,
    /// `http-signature`: headers covered besides `@method`, `@target-uri` and
    /// `content-digest`. Default `["content-type"]`.
    #[serde(default)]
    pub cover_headers: Option<Vec<String>>,
    /// Keys of ours still accepted when verifying after a rotation (certificates only).
    #[serde(default)]
    pub previous: Vec<KeyCertificate>,
    /// Verification: PEM file of the CA certificates signers must chain to: the root and the
    /// intermediates that issue signers (a peer sending only its leaf needs them here).
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
    /// Verification: PEM CRLs; with them the signer's issuer must have a current CRL.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Verification: the peers' certificates, pinned, by key id.
    #[serde(default)]
    pub trusted_keys: Vec<KeyCertificate>,
    /// Verification under `trust_anchors`: the subjects a signer certificate may have, written
    /// as `gateway certs` prints them (`C=VN, O=…, CN=…`). Empty: any certificate chaining to
    /// the anchors (which may be a whole national CA) is accepted.
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    /// Verification window: oldest accepted signing time (`http-signature` `created`,
    /// `jws-detached` `iat`). Default 5m.
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// Verification window: furthest accepted signing time ahead (clock skew). Default 1m.
    #[serde(default)]
    pub max_skew: Option<Dur>,
}

/// A key id and the PEM certificate (leaf first, then its chain) carrying that key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCertificate {
    /// The id signers put in `kid` / `keyid`.
    pub key_id: String,
    /// PEM certificate file.
    pub certificate: PathBuf,
}

/// The signing schemes a profile may name.
pub const SIGNING_SCHEMES: &[&str] = &[
    "jws-compact",
    "jws-detached",
    "xmldsig-enveloped",
    "http-signature",
    "none",
];

/// Check `[signing]`: every profile on its own. (The references to a profile, from
/// `adapters.NAME.signing` and `sources.NAME.verify`: `references.rs`.)
pub(super) fn validate(
    profiles: &BTreeMap<String, SigningSection>,
    base: &Path,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, s) in profiles {
        validate_profile(name, s, base, p);
    }
}

/// Check one profile: a valid name and a known scheme, then (for a known scheme) its
/// algorithm, files, settings that go together, settings its scheme uses, and key ids.
fn validate_profile(
    name: &str,
    s: &SigningSection,
    base: &Path,
    p: &mut impl FnMut(String, String, &str),
) {
    let at = format!("signing.{name}");
    if !valid_name(name) {
        p(
            at.clone(),
            "the name has characters other than a-z, 0-9, - and _".into(),
            "rename it",
        );
    }
    let scheme = s.scheme.as_str();
    if !SIGNING_SCHEMES.contains(&scheme) {
        p(
            format!("{at}.scheme"),
            format!("unknown scheme `{scheme}`"),
            "use one of: jws-compact, jws-detached, xmldsig-enveloped, http-signature, none",
        );
        return;
    }
    check_algorithm(&at, scheme, s, p);
    check_files(&at, s, base, p);
    check_pairs(&at, s, p);
    check_scheme_settings(&at, scheme, s, p);
    check_key_ids(&at, name, s, p);
}

/// `algorithm`, when set, is one of the scheme's.
fn check_algorithm(
    at: &str,
    scheme: &str,
    s: &SigningSection,
    p: &mut impl FnMut(String, String, &str),
) {
    if let Some(alg) = &s.algorithm {
        let ok: &[&str] = match scheme {
            "jws-compact" | "jws-detached" => &["ES256", "RS256", "PS256"],
            "xmldsig-enveloped" => &["ES256", "RS256"],
            "http-signature" => &["ecdsa-p256-sha256", "rsa-pss-sha512", "rsa-v1_5-sha256"],
            _ => &[],
        };
        if !ok.contains(&alg.as_str()) {
            p(
                format!("{at}.algorithm"),
                format!("`{alg}` is not an algorithm of scheme {scheme}"),
                &if ok.is_empty() {
                    "remove it".to_string()
                } else {
                    format!(
                        "use one of: {}, or remove it to follow the key",
                        ok.join(", ")
                    )
                },
            );
        }
    }
}

/// Every file the profile names exists (relative to the config file).
fn check_files(
    at: &str,
    s: &SigningSection,
    base: &Path,
    p: &mut impl FnMut(String, String, &str),
) {
    let resolve = |f: &Path| {
        if f.is_absolute() {
            f.to_path_buf()
        } else {
            base.join(f)
        }
    };
    let check_file = |key: String, f: &Path, p: &mut dyn FnMut(String, String, &str)| {
        let full = resolve(f);
        if !full.is_file() {
            p(
                key,
                format!("file {} does not exist", full.display()),
                "give the path of a readable PEM file (relative to this config file)",
            );
        }
    };
    if let Some(f) = &s.key {
        check_file(format!("{at}.key"), f, p);
    }
    if let Some(f) = &s.certificate {
        check_file(format!("{at}.certificate"), f, p);
    }
    if let Some(f) = &s.pkcs12 {
        check_file(format!("{at}.pkcs12"), f, p);
    }
    if let Some(f) = &s.trust_anchors {
        check_file(format!("{at}.trust_anchors"), f, p);
    }
    for (i, f) in s.crls.iter().enumerate() {
        check_file(format!("{at}.crls[{i}]"), f, p);
    }
    for (list, keys) in [("previous", &s.previous), ("trusted_keys", &s.trusted_keys)] {
        for (i, k) in keys.iter().enumerate() {
            check_file(format!("{at}.{list}[{i}].certificate"), &k.certificate, p);
            if k.key_id.trim().is_empty() {
                p(
                    format!("{at}.{list}[{i}].key_id"),
                    "is empty".into(),
                    "give the id signers put in kid / keyid",
                );
            }
        }
    }
}

/// Settings that go together are set together.
fn check_pairs(at: &str, s: &SigningSection, p: &mut impl FnMut(String, String, &str)) {
    if s.key.is_some() && s.pkcs12.is_some() {
        p(
            format!("{at}.pkcs12"),
            "both key and pkcs12 are set".into(),
            "use key + certificate, or pkcs12, not both",
        );
    }
    if s.key.is_some() != s.certificate.is_some() && s.pkcs12.is_none() {
        p(
            format!("{at}.certificate"),
            "key and certificate go together".into(),
            "set both (PEM files), or use pkcs12",
        );
    }
    if s.key_password.is_some() && s.key.is_none() {
        p(
            format!("{at}.key_password"),
            "set without key".into(),
            "remove it, or set key",
        );
    }
    if s.pkcs12.is_some() != s.pkcs12_password.is_some() {
        p(
            format!("{at}.pkcs12_password"),
            "pkcs12 and pkcs12_password go together".into(),
            "set pkcs12_password = { env = \"NAME\" } with pkcs12",
        );
    }
    if !s.crls.is_empty() && s.trust_anchors.is_none() {
        p(
            format!("{at}.crls"),
            "CRLs without trust_anchors are never consulted".into(),
            "set trust_anchors, or remove crls",
        );
    }
    if !s.allowed_subjects.is_empty() && s.trust_anchors.is_none() {
        p(
            format!("{at}.allowed_subjects"),
            "subjects are checked only for certificates judged by trust_anchors".into(),
            "set trust_anchors, or remove allowed_subjects (pinned trusted_keys are already one peer each)",
        );
    }
}

/// Settings only some schemes use are not set on others; header and window are well formed.
fn check_scheme_settings(
    at: &str,
    scheme: &str,
    s: &SigningSection,
    p: &mut impl FnMut(String, String, &str),
) {
    let windowed = scheme == "http-signature" || scheme == "jws-detached";
    for (k, set, used) in [
        ("max_age", s.max_age.is_some(), windowed),
        ("max_skew", s.max_skew.is_some(), windowed),
        (
            "cover_headers",
            s.cover_headers.is_some(),
            scheme == "http-signature",
        ),
    ] {
        if set && !used {
            p(
                format!("{at}.{k}"),
                format!("this profile is {scheme}, which does not use it"),
                "remove it",
            );
        }
    }
    if s.header.is_some() && scheme != "jws-detached" {
        p(
            format!("{at}.header"),
            format!("only jws-detached uses it, this profile is {scheme}"),
            "remove it",
        );
    }
    if s.embed_chain && matches!(scheme, "http-signature" | "none") {
        p(
            format!("{at}.embed_chain"),
            format!("{scheme} carries no certificates"),
            "remove it",
        );
    }
    if let Some(h) = &s.header {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            p(
                format!("{at}.header"),
                format!("`{h}` is not a header name"),
                "use letters, digits and -, like x-jws-signature",
            );
        }
    }
    if let Some(Dur(d)) = s.max_age {
        if d.is_zero() {
            p(
                format!("{at}.max_age"),
                "must be more than 0".into(),
                "set a window such as 5m",
            );
        }
    }
}

/// The profile's own key id and those of `previous` and `trusted_keys` are distinct.
fn check_key_ids(
    at: &str,
    name: &str,
    s: &SigningSection,
    p: &mut impl FnMut(String, String, &str),
) {
    let mut ids = std::collections::BTreeSet::new();
    ids.insert(s.key_id.clone().unwrap_or_else(|| name.to_string()));
    for (list, keys) in [("previous", &s.previous), ("trusted_keys", &s.trusted_keys)] {
        for (i, k) in keys.iter().enumerate() {
            if !ids.insert(k.key_id.clone()) {
                p(
                    format!("{at}.{list}[{i}].key_id"),
                    format!("key id `{}` is used twice in this profile", k.key_id),
                    "give every key its own id",
                );
            }
        }
    }
}

/// A profile holds a key of its own to sign with.
pub(super) fn has_key(s: &SigningSection) -> bool {
    s.key.is_some() || s.pkcs12.is_some()
}
