//! `[subscriptions.NAME]`: what an agency is entitled to receive (event kinds, procedures,
//! units, fields) and how it receives it (push to its URL, or a pull feed it fetches).
//!
//! The checks here see one subscription at a time. Field names are checked against the one
//! table of canonical fields, `crate::model::fields` (the only part of the gateway this
//! section uses: the model is the bottom of the house). A personal field is refused in
//! `fields` (it belongs in `personal`, with a `legal_basis`); `legal_basis` is required
//! exactly when `personal` names something.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::adapters::TlsSection;
use super::agencies_pull::{self, PullSection};
use super::defaults;
use super::duration::Dur;
use super::names::valid_name;
use super::routes::kind_matches;
use super::secrets::SecretRef;
use crate::model::fields;

/// The source name of the gateway's operational events about subscriptions
/// (`subscription.disabled`, `subscription.enabled`): a route takes them `from` it. No
/// `[sources]` entry may take this name, so nobody can post such an event from outside.
pub const OPS_SOURCE: &str = "gateway";

/// The ways an agency receives its share: the one list.
pub const DELIVERIES: &[&str] = &["push", "pull"];

/// The RFC 9421 algorithms a push may be signed with.
pub const PUSH_SIGNATURE_ALGORITHMS: &[&str] = &["ecdsa-p256-sha256", "rsa-pss-sha512"];

/// One agency subscription.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionSection {
    /// required: the agency's display name (`Trung tâm IOC tỉnh`).
    pub agency: String,
    /// required: `push` (the gateway calls the agency) or `pull` (the agency fetches a feed).
    pub delivery: String,
    /// Kind patterns, as routes write them (`dossier.*`); empty = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// National procedure codes or prefixes (`1.0012` takes `1.001234`); empty = all. An
    /// event whose payload names no procedure does not pass a non-empty list.
    #[serde(default)]
    pub procedures: Vec<String>,
    /// Processing units or communes, codes or prefixes; empty = all. An event whose payload
    /// names no unit does not pass a non-empty list.
    #[serde(default)]
    pub units: Vec<String>,
    /// required: the canonical fields sent (names of `crate::model::fields::FIELDS`, not
    /// personal ones). Nothing else is ever sent.
    pub fields: Vec<String>,
    /// Personal fields sent too (`citizen_id`, `phone`, …): only with a `legal_basis`.
    #[serde(default)]
    pub personal: Vec<String>,
    /// The legal basis for receiving personal data (free text, shown in the ops API and
    /// recorded with every delivery). Required exactly when `personal` is not empty.
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// How the gateway calls the agency; required exactly when `delivery = "push"`.
    #[serde(default)]
    pub push: Option<PushSection>,
    /// How the agency fetches; required exactly when `delivery = "pull"`.
    #[serde(default)]
    pub pull: Option<PullSection>,
}

/// One secret reference or several (during a rotation every one signs).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretRefs {
    One(SecretRef),
    Many(Vec<SecretRef>),
}

impl SecretRefs {
    /// The references, in the order written.
    pub fn refs(&self) -> Vec<&SecretRef> {
        match self {
            SecretRefs::One(r) => vec![r],
            SecretRefs::Many(v) => v.iter().collect(),
        }
    }
}

/// `[subscriptions.NAME.push]`: the agency's webhook.
#[derive(Debug, Clone, Deserialize)]
pub struct PushSection {
    /// required: the agency's URL (`https://…`; `http://` only for loopback tests).
    pub url: String,
    /// required: the Standard Webhooks secret(s) (`whsec_…` base64), by reference; a list
    /// during a rotation (each signs, the receiver accepts any).
    pub secret: SecretRefs,
    /// RFC 9421 HTTP Message Signatures with the province's key, where the agency asks.
    #[serde(default)]
    pub rfc9421: Option<Rfc9421Section>,
    /// The wait before each retry (jitter added); after the last, the delivery is
    /// dead-lettered. Default 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    #[serde(default = "d_retry")]
    pub retry: Vec<Dur>,
    /// Calls per second to this agency at most. Default: no limit.
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    /// Deliveries in flight at once (distinct dossiers). Default 4.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Failing without a success for this long disables the subscription. Default 5d.
    #[serde(default = "d_disable_after")]
    pub disable_after: Dur,
    /// Whole request timeout. Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// TLS settings: the agency's CA, a client certificate for mTLS.
    #[serde(default)]
    pub tls: Option<TlsSection>,
}

/// `rfc9421 = { key = { file = "…" }, keyid = "…", alg = "ecdsa-p256-sha256" }`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rfc9421Section {
    /// required: the province's private key (PEM), by reference.
    pub key: SecretRef,
    /// required: the key id the agency knows the public key by.
    pub keyid: String,
    /// `ecdsa-p256-sha256` (default) or `rsa-pss-sha512`.
    #[serde(default = "d_alg")]
    pub alg: String,
}

fn d_retry() -> Vec<Dur> {
    defaults::AGENCY_RETRY.iter().copied().map(Dur).collect()
}
fn d_concurrency() -> usize {
    defaults::AGENCY_CONCURRENCY
}
fn d_disable_after() -> Dur {
    Dur(defaults::AGENCY_DISABLE_AFTER)
}
fn d_timeout() -> Dur {
    Dur(defaults::AGENCY_TIMEOUT)
}
fn d_alg() -> String {
    PUSH_SIGNATURE_ALGORITHMS[0].into()
}

impl SubscriptionSection {
    /// Whether a kind passes this subscription's kind patterns.
    pub fn takes_kind(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|p| kind_matches(p, kind))
    }
}

/// Check every subscription, each on its own.
pub(super) fn validate(
    subs: &BTreeMap<String, SubscriptionSection>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, s) in subs {
        validate_one(name, s, p);
    }
}

fn validate_one(name: &str, s: &SubscriptionSection, p: &mut impl FnMut(String, String, &str)) {
    let at = |k: &str| format!("subscriptions.{name}.{k}");
    if !valid_name(name) {
        p(
            format!("subscriptions.{name}"),
            format!("`{name}` has characters other than a-z, 0-9, - and _"),
            "rename the table",
        );
    }
    if s.agency.trim().is_empty() {
        p(
            at("agency"),
            "is empty".into(),
            "name the agency, e.g. \"Trung tâm IOC tỉnh\"",
        );
    }
    if !DELIVERIES.contains(&s.delivery.as_str()) {
        p(
            at("delivery"),
            format!("unknown delivery `{}`", s.delivery),
            "use push or pull",
        );
    }
    match (s.delivery.as_str(), &s.push, &s.pull) {
        ("push", None, _) => p(
            at("push"),
            "delivery is push but there is no push table".into(),
            "add [subscriptions.NAME.push] with url and secret",
        ),
        ("pull", _, None) => p(
            at("pull"),
            "delivery is pull but there is no pull table".into(),
            "add [subscriptions.NAME.pull]",
        ),
        _ => {}
    }
    if s.delivery != "push" && s.push.is_some() {
        p(
            at("push"),
            format!("delivery is `{}`", s.delivery),
            "remove the push table or set delivery = \"push\"",
        );
    }
    if s.delivery != "pull" && s.pull.is_some() {
        p(
            at("pull"),
            format!("delivery is `{}`", s.delivery),
            "remove the pull table or set delivery = \"pull\"",
        );
    }
    for k in &s.kinds {
        if k.trim().is_empty() {
            p(
                at("kinds"),
                "has an empty pattern".into(),
                "write a kind such as dossier.* or remove it",
            );
        }
    }
    for (key, list) in [("procedures", &s.procedures), ("units", &s.units)] {
        if list.iter().any(|c| c.trim().is_empty()) {
            p(
                at(key),
                "has an empty code".into(),
                "remove it (an empty list takes all)",
            );
        }
    }
    validate_fields(&at, s, p);
    if let Some(push) = &s.push {
        validate_push(&at("push"), push, p);
    }
    if let Some(pull) = &s.pull {
        agencies_pull::validate(&at("pull"), pull, p);
    }
}

fn validate_fields(
    at: &impl Fn(&str) -> String,
    s: &SubscriptionSection,
    p: &mut impl FnMut(String, String, &str),
) {
    if s.fields.is_empty() {
        p(
            at("fields"),
            "names no field: the agency would receive nothing".into(),
            "list the canonical fields it needs, e.g. [\"code\", \"status\"]",
        );
    }
    let mut seen = BTreeSet::new();
    for f in &s.fields {
        if !seen.insert(f) {
            p(
                at("fields"),
                format!("`{f}` is listed twice"),
                "list it once",
            );
        }
        match fields::field(f) {
            None => p(
                at("fields"),
                format!("unknown field `{f}`"),
                &format!("use canonical field names: {}", fields::names()),
            ),
            Some(c) if c.personal => p(
                at("fields"),
                format!("`{f}` is personal data"),
                "name it in `personal` instead, with a `legal_basis`",
            ),
            Some(_) => {}
        }
    }
    for f in &s.personal {
        if !seen.insert(f) {
            p(
                at("personal"),
                format!("`{f}` is listed twice"),
                "list it once",
            );
        }
        match fields::field(f) {
            None => p(
                at("personal"),
                format!("unknown field `{f}`"),
                &format!("use canonical field names: {}", fields::names()),
            ),
            Some(c) if !c.personal => p(
                at("personal"),
                format!("`{f}` is not personal data"),
                "name it in `fields`",
            ),
            Some(_) => {}
        }
    }
    let basis = s.legal_basis.as_deref().map(str::trim).unwrap_or("");
    if !s.personal.is_empty() && basis.is_empty() {
        p(
            at("legal_basis"),
            "personal fields are named without a legal basis".into(),
            "state the legal basis (e.g. the decree and article), or remove `personal`",
        );
    }
    if s.personal.is_empty() && s.legal_basis.is_some() {
        p(
            at("legal_basis"),
            "is set but `personal` names no field".into(),
            "remove it, or name the personal fields it covers",
        );
    }
}

fn validate_push(at: &str, push: &PushSection, p: &mut impl FnMut(String, String, &str)) {
    if !(push.url.starts_with("https://") || push.url.starts_with("http://")) {
        p(
            format!("{at}.url"),
            format!("`{}` is not an http(s) URL", push.url),
            "write https://…",
        );
    }
    if push.secret.refs().is_empty() {
        p(
            format!("{at}.secret"),
            "names no secret".into(),
            "give { env = \"NAME\" } or a list of them during a rotation",
        );
    }
    if push.retry.iter().any(|d| d.0.is_zero()) {
        p(
            format!("{at}.retry"),
            "has a zero wait".into(),
            "use waits such as 5s, 5m",
        );
    }
    if let Some(r) = push.rate_per_s {
        if !(r.is_finite() && r > 0.0) {
            p(
                format!("{at}.rate_per_s"),
                format!("{r} is not a positive rate"),
                "use e.g. 10.0, or remove it",
            );
        }
    }
    if push.concurrency == 0 {
        p(
            format!("{at}.concurrency"),
            "must be at least 1".into(),
            "use e.g. 4",
        );
    }
    if push.disable_after.0.is_zero() {
        p(
            format!("{at}.disable_after"),
            "must be more than zero".into(),
            "use e.g. 5d",
        );
    }
    if let Some(s) = &push.rfc9421 {
        if s.keyid.trim().is_empty() {
            p(
                format!("{at}.rfc9421.keyid"),
                "is empty".into(),
                "give the key id the agency knows",
            );
        }
        if !PUSH_SIGNATURE_ALGORITHMS.contains(&s.alg.as_str()) {
            p(
                format!("{at}.rfc9421.alg"),
                format!("unknown algorithm `{}`", s.alg),
                "use ecdsa-p256-sha256 or rsa-pss-sha512",
            );
        }
    }
}
