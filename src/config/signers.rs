//! `[signers.NAME]`: remote signing services (VNPT SmartCA, Viettel MySign, a CSC API v2
//! service) through which officials sign from their phones, and the officials each serves.
//!
//! Not route destinations: their kinds are [`SIGNER_SERVICES`], not `CONNECTORS`, and
//! `crate::connectors::signers` builds them. Each section is checked here on its own; the
//! officials file it may name is read and checked here too (the validator is given the
//! configuration's folder).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::adapters::{RateLimitSection, TlsSection};
use super::defaults;
use super::duration::Dur;
use super::names::valid_name;
use super::secrets::SecretRef;

/// Every service a `[signers.NAME]` may name: the one list (the builder in
/// `crate::connectors::signers` has an arm for each, and its test walks this list).
pub const SIGNER_SERVICES: &[&str] = &["smartca", "mysign", "csc"];

/// The source name the outcomes of signing requests (`signature.completed`,
/// `signature.failed`) are published under: routes take them `from = "signatures"`. No
/// `[sources]` table may have it, so they cannot be posted from outside.
pub const SIGNATURE_SOURCE: &str = "signatures";

/// The digest algorithms a signer may be asked for.
pub const SIGNER_DIGESTS: &[&str] = &["sha256", "sha384", "sha512"];

/// One remote signing service.
#[derive(Debug, Clone, Deserialize)]
pub struct SignerSection {
    /// required: `smartca` (VNPT SmartCA), `mysign` (Viettel MySign) or `csc` (a Cloud
    /// Signature Consortium API v2 service).
    pub service: String,
    /// The service's base URL: SmartCA and MySign the host (`https://…`; the paths
    /// `/v1/…` and `/vtss/service/…` are added), CSC the API root (`https://…/csc/v2`).
    pub url: String,
    /// Whole request timeout. Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// Connect timeout. Default 10s.
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: Dur,
    /// TLS settings (the service's CA, a client certificate for mTLS).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// The service's quota of calls, e.g. `{ per_sec = 5.0, burst = 2 }`: submits and polls of
    /// every request share it. Default: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSection>,
    /// required: PEM file of the CA certificates officials' certificates must chain to (the
    /// service's root and intermediates).
    pub trust_anchors: PathBuf,
    /// What the service answers: `raw` (a bare signature value). (`cms`, a whole CMS
    /// structure, is [open] for every service and not verified by the gateway: refused.)
    /// Default `raw`.
    #[serde(default = "d_form")]
    pub signature_form: String,
    /// How RSA keys sign: `pkcs1` (PKCS#1 v1.5) or `pss` (RSASSA-PSS). Default `pkcs1`.
    #[serde(default = "d_padding")]
    pub rsa_padding: String,
    /// The digest algorithms requests may use: `sha256`, `sha384`, `sha512`. Default
    /// `["sha256"]`.
    #[serde(default = "d_digests")]
    pub digests: Vec<String>,
    /// First wait after a submit and between polls. Default 3s.
    #[serde(default = "d_poll_interval")]
    pub poll_interval: Dur,
    /// The longest wait between two polls of one request. Default 30s.
    #[serde(default = "d_poll_max")]
    pub poll_max_interval: Dur,
    /// How long an official has to confirm. Default 5m.
    #[serde(default = "d_lifetime")]
    pub request_lifetime: Dur,
    /// SmartCA: the service provider's id (`sp_id`).
    #[serde(default)]
    pub sp_id: Option<String>,
    /// SmartCA: the service provider's password (`sp_password`), by reference.
    #[serde(default)]
    pub sp_password: Option<SecretRef>,
    /// MySign, CSC: the client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// MySign, CSC: the client secret, by reference.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// MySign: the `profile_id` of the login.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// CSC: the OAuth2 token endpoint. Default `{url}/oauth2/token`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// CSC: `async` (operationMode "A", then signPolling) or `sync` (operationMode "S": the
    /// call waits for the official). Default `async`.
    #[serde(default)]
    pub operation_mode: Option<String>,
    /// CSC: the poll operation under `url` ([open]). Default `signatures/signPolling`.
    #[serde(default)]
    pub polling_path: Option<String>,
    /// The service's words for a request's state ([open] beyond what CONTRACTS.md saw):
    /// defaults per service, see `gateway.example.toml`.
    #[serde(default)]
    pub codes: Option<SignerCodes>,
    /// The officials this service signs for (or `officials_file`, or both).
    #[serde(default)]
    pub officials: Vec<OfficialSection>,
    /// A TOML file of more officials, `[[officials]]` tables like these (for a province's
    /// hundreds of officials).
    #[serde(default)]
    pub officials_file: Option<PathBuf>,
}

/// The words a service uses for a request's state. Each list replaces the service's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerCodes {
    #[serde(default)]
    pub waiting: Option<Vec<String>>,
    #[serde(default)]
    pub signed: Option<Vec<String>>,
    #[serde(default)]
    pub rejected: Option<Vec<String>>,
    #[serde(default)]
    pub expired: Option<Vec<String>>,
    #[serde(default)]
    pub not_found: Option<Vec<String>>,
}

/// One official.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialSection {
    /// required: the id the service knows the official by (SmartCA / MySign `user_id`, CSC
    /// `userID`); requests name officials by it.
    pub user_id: String,
    /// The official's credential (MySign `credentialID`, required; CSC `credentialID`,
    /// default: the first of `credentials/list`).
    #[serde(default)]
    pub credential_id: Option<String>,
    /// The certificate's serial (hex, `5000` or `50:00`): the only certificate accepted for
    /// this official. Exactly one of `serial` and `subject`.
    #[serde(default)]
    pub serial: Option<String>,
    /// The certificate's subject as `gateway certs` prints it (`C=VN, O=…, CN=…`).
    #[serde(default)]
    pub subject: Option<String>,
}

/// An officials file: `[[officials]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialsFile {
    #[serde(default)]
    pub officials: Vec<OfficialSection>,
}

/// Why an officials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OfficialsFileError {
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{path} is not an officials file: {detail}")]
    Parse { path: String, detail: String },
}

impl SignerSection {
    /// The officials of the section and of its file (read now), in that order.
    pub fn all_officials(&self, base: &Path) -> Result<Vec<OfficialSection>, OfficialsFileError> {
        let mut v = self.officials.clone();
        if let Some(f) = &self.officials_file {
            let p = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            let text = std::fs::read_to_string(&p).map_err(|e| OfficialsFileError::Read {
                path: p.display().to_string(),
                detail: e.to_string(),
            })?;
            let file: OfficialsFile =
                toml::from_str(&text).map_err(|e| OfficialsFileError::Parse {
                    path: p.display().to_string(),
                    detail: e.message().to_string(),
                })?;
            v.extend(file.officials);
        }
        Ok(v)
    }
}

fn d_timeout() -> Dur {
    Dur(defaults::HTTP_TIMEOUT)
}
fn d_connect_timeout() -> Dur {
    Dur(defaults::HTTP_CONNECT_TIMEOUT)
}
fn d_form() -> String {
    "raw".into()
}
fn d_padding() -> String {
    "pkcs1".into()
}
fn d_digests() -> Vec<String> {
    vec!["sha256".into()]
}
fn d_poll_interval() -> Dur {
    Dur(defaults::SIGNER_POLL_INTERVAL)
}
fn d_poll_max() -> Dur {
    Dur(defaults::SIGNER_POLL_MAX_INTERVAL)
}
fn d_lifetime() -> Dur {
    Dur(defaults::SIGNER_REQUEST_LIFETIME)
}

/// Check `[signers]`: every service on its own, with its officials.
pub(super) fn validate(
    signers: &BTreeMap<String, SignerSection>,
    base: &Path,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, s) in signers {
        validate_one(name, s, base, p);
    }
}

fn validate_one(
    name: &str,
    s: &SignerSection,
    base: &Path,
    p: &mut impl FnMut(String, String, &str),
) {
    let at = |k: &str| format!("signers.{name}.{k}");
    if !valid_name(name) {
        p(
            format!("signers.{name}"),
            format!("`{name}` has characters other than a-z, 0-9, - and _"),
            "rename the table",
        );
    }
    if !SIGNER_SERVICES.contains(&s.service.as_str()) {
        p(
            at("service"),
            format!("unknown service `{}`", s.service),
            "use smartca, mysign or csc",
        );
    }
    if !(s.url.starts_with("https://") || s.url.starts_with("http://"))
        || reqwest::Url::parse(&s.url).is_err()
    {
        p(
            at("url"),
            format!("`{}` is not an http(s) URL", s.url),
            "write the service's base URL, e.g. https://signing.example.vn",
        );
    }
    let anchors = if s.trust_anchors.is_absolute() {
        s.trust_anchors.clone()
    } else {
        base.join(&s.trust_anchors)
    };
    match std::fs::read(&anchors) {
        Err(e) => p(
            at("trust_anchors"),
            format!("cannot read {}: {e}", anchors.display()),
            "give the PEM file of the service's CA certificates",
        ),
        Ok(b) if !String::from_utf8_lossy(&b).contains("-----BEGIN CERTIFICATE-----") => p(
            at("trust_anchors"),
            format!("{} holds no PEM certificate", anchors.display()),
            "give the PEM file of the service's CA certificates",
        ),
        Ok(_) => {}
    }
    if s.signature_form != "raw" {
        p(
            at("signature_form"),
            format!("`{}` is not verified by the gateway", s.signature_form),
            "use raw (a bare signature value); a service answering CMS is not supported yet",
        );
    }
    if !["pkcs1", "pss"].contains(&s.rsa_padding.as_str()) {
        p(
            at("rsa_padding"),
            format!("unknown padding `{}`", s.rsa_padding),
            "use pkcs1 or pss",
        );
    }
    if s.digests.is_empty() {
        p(
            at("digests"),
            "no digest algorithm".into(),
            "write e.g. digests = [\"sha256\"]",
        );
    }
    for d in &s.digests {
        if !SIGNER_DIGESTS.contains(&d.as_str()) {
            p(
                at("digests"),
                format!("unknown digest algorithm `{d}`"),
                "use sha256, sha384 or sha512",
            );
        }
    }
    if s.poll_interval.0.is_zero() {
        p(at("poll_interval"), "is zero".into(), "write e.g. 3s");
    }
    if s.poll_max_interval.0 < s.poll_interval.0 {
        p(
            at("poll_max_interval"),
            "is shorter than poll_interval".into(),
            "make it at least poll_interval",
        );
    }
    if s.request_lifetime.0 <= s.poll_interval.0 {
        p(
            at("request_lifetime"),
            "is not longer than poll_interval: no poll would ever happen".into(),
            "give the official minutes, e.g. 5m",
        );
    }
    if let Some(r) = &s.rate_limit {
        if !(r.per_sec.is_finite() && r.per_sec > 0.0) {
            p(
                at("rate_limit.per_sec"),
                format!("{} is not a positive number of calls a second", r.per_sec),
                "write e.g. per_sec = 5.0, or remove rate_limit for no limit",
            );
        }
        if r.burst == 0 {
            p(at("rate_limit.burst"), "is zero".into(), "write 1 or more");
        }
    }
    if let Some(t) = &s.tls {
        if t.client_cert.is_some() != t.client_key.is_some() {
            p(
                at("tls"),
                "client_cert and client_key go together".into(),
                "give both, or neither",
            );
        }
    }
    credentials(name, s, p);
    officials(name, s, base, p);
}

/// The credentials each service needs, and no other service's keys.
fn credentials(name: &str, s: &SignerSection, p: &mut impl FnMut(String, String, &str)) {
    let at = |k: &str| format!("signers.{name}.{k}");
    let svc = s.service.as_str();
    let mut need = |present: bool, key: &str, what: &str| {
        if !present {
            p(at(key), format!("missing: {svc} needs {what}"), "add it");
        }
    };
    match svc {
        "smartca" => {
            need(s.sp_id.is_some(), "sp_id", "the service provider's id");
            need(
                s.sp_password.is_some(),
                "sp_password",
                "the service provider's password (a secret reference)",
            );
        }
        "mysign" => {
            need(s.client_id.is_some(), "client_id", "the client id");
            need(
                s.client_secret.is_some(),
                "client_secret",
                "the client secret (a secret reference)",
            );
            need(
                s.profile_id.is_some(),
                "profile_id",
                "the login's profile_id",
            );
        }
        "csc" => {
            need(s.client_id.is_some(), "client_id", "the OAuth2 client id");
            need(
                s.client_secret.is_some(),
                "client_secret",
                "the OAuth2 client secret (a secret reference)",
            );
        }
        _ => return,
    }
    let mut only = |present: bool, key: &str, owner: &str| {
        if present && svc != owner {
            p(
                at(key),
                format!("is a {owner} setting; this service is {svc}"),
                "remove it",
            );
        }
    };
    only(s.sp_id.is_some(), "sp_id", "smartca");
    only(s.sp_password.is_some(), "sp_password", "smartca");
    only(s.profile_id.is_some(), "profile_id", "mysign");
    only(s.token_url.is_some(), "token_url", "csc");
    only(s.operation_mode.is_some(), "operation_mode", "csc");
    only(s.polling_path.is_some(), "polling_path", "csc");
    if svc == "smartca" {
        if s.client_id.is_some() {
            p(
                at("client_id"),
                "is not a smartca setting".into(),
                "use sp_id",
            );
        }
        if s.client_secret.is_some() {
            p(
                at("client_secret"),
                "is not a smartca setting".into(),
                "use sp_password",
            );
        }
    }
    if let Some(m) = &s.operation_mode {
        if m != "async" && m != "sync" {
            p(
                at("operation_mode"),
                format!("unknown mode `{m}`"),
                "use async (signHash \"A\" then polling) or sync (\"S\")",
            );
        }
    }
}

/// Officials: at least one; ids unique and non-empty; one pin each; MySign's credential.
fn officials(name: &str, s: &SignerSection, base: &Path, p: &mut impl FnMut(String, String, &str)) {
    let all = match s.all_officials(base) {
        Ok(v) => v,
        Err(e) => {
            p(
                format!("signers.{name}.officials_file"),
                e.to_string(),
                "give a readable TOML file of [[officials]] tables (user_id, credential_id, serial or subject)",
            );
            return;
        }
    };
    if all.is_empty() {
        p(
            format!("signers.{name}.officials"),
            "no official".into(),
            "add [[signers.NAME.officials]] tables (or officials_file)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, o) in all.iter().enumerate() {
        let at = |k: &str| format!("signers.{name}.officials[{i}].{k}");
        if o.user_id.trim().is_empty() {
            p(
                at("user_id"),
                "is empty".into(),
                "write the official's id at the service",
            );
        } else if !seen.insert(o.user_id.clone()) {
            p(
                at("user_id"),
                format!("`{}` is listed twice", o.user_id),
                "list each official once",
            );
        }
        match (&o.serial, &o.subject) {
            (None, None) => p(
                at("serial"),
                "the official's certificate is not pinned".into(),
                "write serial = \"…\" (hex) or subject = \"C=VN, …, CN=…\"",
            ),
            (Some(_), Some(_)) => p(
                at("subject"),
                "both serial and subject are given".into(),
                "keep one of them",
            ),
            (Some(sr), None) => {
                let hex: String = sr.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
                let hex = hex.trim_start_matches("0x");
                if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    p(
                        at("serial"),
                        format!("`{sr}` is not a hexadecimal serial"),
                        "write it as openssl x509 -serial prints it, e.g. 5000 or 50:00",
                    );
                }
            }
            (None, Some(_)) => {}
        }
        if s.service == "mysign" && o.credential_id.is_none() {
            p(
                at("credential_id"),
                "missing: mysign needs the official's credentialID".into(),
                "add credential_id",
            );
        }
        if s.service == "smartca" && o.credential_id.is_some() {
            p(
                at("credential_id"),
                "smartca has no credential ids".into(),
                "remove it (SmartCA knows an official by user_id and certificate serial)",
            );
        }
    }
}
