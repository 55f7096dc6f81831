//! Every check that names more than one section, and the validation driver that runs every
//! check of the configuration.
//!
//! # Invariants
//! - **Each section checks only itself.** A section's validator (in its own file) is given
//!   its own section and the problem sink `p(key, what, fix)`, at most with a fact the driver
//!   derived (whether the inbound listener is loopback) or the configuration's folder. Whatever
//!   compares two sections is here: a route's `from` and `to`, a job's `from` adapter and
//!   source name, the payment events' source name, the profiles adapters sign with and sources
//!   verify with, `ops.listen` against `inbound.listen`, a route's retry policy over `[retry]`.
//! - **The order of problems is the order they have always been reported in**: [`validate`]
//!   calls the section validators and the checks here one after the other in that order (so a
//!   route's own checks and its references are interleaved, route by route).
//! - Imports point one way: this file uses `document.rs` (the root `Config`), `problem.rs`,
//!   `names.rs` and the sections; only `loaded.rs` uses it.

use std::collections::BTreeSet;
use std::path::Path;

use super::agencies;
use super::document::Config;
use super::inbound::listen_is_loopback;
use super::names::valid_name;
use super::problem::{Problem, Step};
use super::routes::RouteSection;
use super::signatures;
use super::signers;
use super::signing::{has_key, SigningSection};
use super::{adapters, broker, circuit, gateway, inbound, indicators, online, ops};
use super::{payments, retry, routes, signing, sources, store};

/// Check every section, each with its own validator, and every reference between sections;
/// each problem found is pushed to `problems` as a [`Step::Invalid`] problem of `origin`.
pub(super) fn validate(c: &Config, base: &Path, problems: &mut Vec<Problem>, origin: &str) {
    let mut p = |key: String, what: String, fix: &str| {
        problems.push(Problem {
            step: Step::Invalid,
            file: origin.to_string(),
            key,
            what,
            fix: fix.to_string(),
        })
    };
    let p = &mut p;
    gateway::validate(&c.gateway, p);
    broker::validate_url(&c.broker, p);
    store::validate(&c.store, p);
    broker::validate_limits(&c.broker, p);
    inbound::validate_listen(&c.inbound, p);
    ops::validate_listen(&c.ops, p);
    ops_not_on_inbound(c, p);
    ops::validate_otlp(&c.ops, p);
    circuit::validate(&c.circuit, p);
    ops::validate_tokens(&c.ops, p);
    inbound::validate_limits(&c.inbound, p);
    retry::validate(&c.retry, "retry", p);
    let inbound_loopback = listen_is_loopback(&c.inbound.listen);
    if let Some(pay) = &c.payments {
        payments::validate_token(pay, inbound_loopback, p);
    }
    sources::validate(&c.sources, inbound_loopback, p);
    adapters::validate(&c.adapters, p);
    routes_with_references(c, p);
    if let Some(j) = &c.catalogue {
        job("catalogue", &j.from, &j.source_name, c, p);
    }
    online_with_references(c, p);
    payments_with_references(c, p);
    signing::validate(&c.signing, base, p);
    signing_of_adapters(c, p);
    axis_with_references(c, p);
    verify_of_sources(c, p);
    signers::validate(&c.signers, base, p);
    signatures::validate(&c.signatures, base, p);
    if !c.signers.is_empty() && c.sources.contains_key(signers::SIGNATURE_SOURCE) {
        p(
            format!("sources.{}", signers::SIGNATURE_SOURCE),
            "the outcomes of signing requests are published under this source name".into(),
            "rename the source, so signature outcomes cannot be posted from outside",
        );
    }
    if c.sources.contains_key(agencies::OPS_SOURCE) {
        p(
            format!("sources.{}", agencies::OPS_SOURCE),
            "the gateway's operational events (a subscription disabled or enabled) are published under this source name".into(),
            "rename the source, so operational events cannot be posted from outside",
        );
    }
    agencies::validate(&c.subscriptions, p);
    signing_of_feeds(c, p);
    if let Some(i) = &c.indicators {
        indicators::validate(i, p);
    }
}

/// `ops.listen` is not `inbound.listen` (unless both ask for any free port, `:0`).
fn ops_not_on_inbound(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    if c.inbound.listen == c.ops.listen && !c.inbound.listen.ends_with(":0") {
        p(
            "ops.listen".into(),
            "the same address as inbound.listen".into(),
            "give the ops listener its own port",
        );
    }
}

/// Check `[[routes]]`, route by route: its name (distinct, valid), its `from` and `to`, its
/// concurrency, and its effective retry policy (its overrides over `[retry]`).
fn routes_with_references(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    let mut seen = BTreeSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        routes::validate_name(&at, r, &mut seen, p);
        route_ends(&at, r, c, p);
        routes::validate_concurrency(&at, r, p);
        retry::validate(&r.retry_policy(&c.retry), &format!("{at}.retry"), p);
    }
}

/// A route's `from` is a source or a job's source name; its `to` is an adapter.
fn route_ends(at: &str, r: &RouteSection, c: &Config, p: &mut impl FnMut(String, String, &str)) {
    let job_source = c.catalogue.as_ref().map(|j| &j.source_name) == Some(&r.from)
        || c.online.as_ref().map(|j| &j.source_name) == Some(&r.from)
        || c.payments.as_ref().map(|j| &j.source_name) == Some(&r.from)
        || (!c.signers.is_empty() && r.from == signers::SIGNATURE_SOURCE)
        || r.from == agencies::OPS_SOURCE
        || c.adapters
            .values()
            .filter_map(|a| a.axis.as_ref())
            .any(|x| x.source_name == r.from);
    if !c.sources.contains_key(&r.from) && !job_source {
        p(
            format!("{at}.from"),
            format!("no source named `{}`", r.from),
            "name a [sources.NAME] table, or catalogue.source_name / online.source_name",
        );
    }
    if !c.adapters.contains_key(&r.to) {
        p(
            format!("{at}.to"),
            format!("no adapter named `{}`", r.to),
            "name an [adapters.NAME] table",
        );
    }
}

/// `[catalogue]` and `[online]` alike: `from` is a `dvcqg` adapter; `source` is a valid name
/// that no `[sources]` table has (its events cannot be posted from outside).
fn job(at: &str, from: &str, source: &str, c: &Config, p: &mut impl FnMut(String, String, &str)) {
    match c.adapters.get(from) {
        None => p(
            format!("{at}.from"),
            format!("no adapter named `{from}`"),
            "name the [adapters.NAME] table of the portal (connector = \"dvcqg\")",
        ),
        Some(a) if a.connector != "dvcqg" => p(
            format!("{at}.from"),
            format!("adapter `{from}` is a {} adapter", a.connector),
            "name an adapter with connector = \"dvcqg\"",
        ),
        Some(_) => {}
    }
    if !valid_name(source) {
        p(
            format!("{at}.source_name"),
            format!("`{source}` has characters other than a-z, 0-9, - and _"),
            "rename it",
        );
    }
    if c.sources.contains_key(source) {
        p(
            format!("{at}.source_name"),
            format!("`{source}` is also a [sources] name"),
            "give the job its own source name, so its events cannot be posted from outside",
        );
    }
}

/// Check `[online]`: a job (see [`job`]) whose source name is not the catalogue's, then the
/// section on its own.
fn online_with_references(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    let Some(o) = &c.online else { return };
    job("online", &o.from, &o.source_name, c, p);
    if let Some(a) = &c.catalogue {
        if a.source_name == o.source_name {
            p(
                "online.source_name".into(),
                format!("`{}` is also catalogue.source_name", o.source_name),
                "give each job its own source name",
            );
        }
    }
    online::validate(o, p);
}

/// Check `[payments]` on its own, then that its source name is its own.
fn payments_with_references(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    let Some(pay) = &c.payments else { return };
    payments::validate(pay, p);
    // payment.settled events carry this source name: an inbound source of the same name
    // could post them with its token.
    if c.sources.contains_key(&pay.source_name) {
        p(
            "payments.source_name".into(),
            format!("`{}` is also a [sources] name", pay.source_name),
            "give the payment events their own source name, so they cannot be posted from outside",
        );
    }
    for (at, job) in [
        ("catalogue", c.catalogue.as_ref().map(|j| &j.source_name)),
        ("online", c.online.as_ref().map(|j| &j.source_name)),
    ] {
        if job == Some(&pay.source_name) {
            p(
                "payments.source_name".into(),
                format!("`{}` is also {at}.source_name", pay.source_name),
                "give each job its own source name",
            );
        }
    }
}

/// The `[signing.NAME]` table `at` names, or the problem that there is none.
fn named_profile<'c>(
    c: &'c Config,
    prof: &str,
    at: &str,
    p: &mut impl FnMut(String, String, &str),
) -> Option<&'c SigningSection> {
    let found = c.signing.get(prof);
    if found.is_none() {
        p(
            at.to_string(),
            format!("no signing profile named `{prof}`"),
            "name a [signing.NAME] table",
        );
    }
    found
}

/// `adapters.NAME.signing`: the profile exists, has a key, and signs in a form the
/// adapter's connector can send.
fn signing_of_adapters(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    for (name, a) in &c.adapters {
        let Some(prof) = &a.signing else { continue };
        let at = format!("adapters.{name}.signing");
        let Some(s) = named_profile(c, prof, &at, p) else {
            continue;
        };
        let scheme = s.scheme.as_str();
        if scheme != "none" && !has_key(s) {
            p(
                at.clone(),
                format!("profile `{prof}` has no key to sign with"),
                &format!("set key + certificate (or pkcs12) in [signing.{prof}]"),
            );
        }
        // The axis signs its edXML envelopes with the profile's key, itself: XML-DSig only.
        if a.connector == "axis" {
            if scheme != "xmldsig-enveloped" {
                p(
                    at.clone(),
                    format!("profile `{prof}` is {scheme}, but the axis takes edXML signed with XML-DSig"),
                    "name an xmldsig-enveloped profile holding the province's key",
                );
            }
            continue;
        }
        // Both connectors send JSON and their parties read it as such.
        if scheme == "xmldsig-enveloped" {
            p(
                at.clone(),
                format!(
                    "profile `{prof}` signs XML, but connector `{}` sends JSON",
                    a.connector
                ),
                "use jws-compact, jws-detached or http-signature for this adapter",
            );
        }
        if scheme == "jws-compact" && a.connector == "dvcqg" {
            p(
                at,
                format!(
                    "profile `{prof}` replaces the body by a JWS, which the portal cannot read"
                ),
                "use jws-detached or http-signature for this adapter",
            );
        }
    }
}

/// `subscriptions.NAME.pull.signing`: the profile exists and has a key, and signs ES256 if it
/// names an algorithm (the key itself must be P-256: checked when it is read, at start).
fn signing_of_feeds(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    for (name, sub) in &c.subscriptions {
        let Some(pull) = &sub.pull else { continue };
        let at = format!("subscriptions.{name}.pull.signing");
        let Some(s) = named_profile(c, &pull.signing, &at, p) else {
            continue;
        };
        if !has_key(s) {
            p(
                at.clone(),
                format!("profile `{}` has no key to sign with", pull.signing),
                &format!(
                    "set key + certificate (or pkcs12) in [signing.{}]",
                    pull.signing
                ),
            );
        }
        if let Some(alg) = s.algorithm.as_deref().filter(|a| *a != "ES256") {
            p(
                at,
                format!(
                    "profile `{}` signs {alg}; feed pages are signed ES256",
                    pull.signing
                ),
                "use a profile with a P-256 key and no algorithm (or ES256)",
            );
        }
    }
}

/// `adapters.NAME.axis`: the adapter signs (its `signing` profile holds the province's key);
/// the profile received envelopes are verified with (`trust`, else `signing`) has
/// `trust_anchors`; the poll's source name is no `[sources]` table's.
fn axis_with_references(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    for (name, a) in &c.adapters {
        let Some(x) = a.axis.as_ref().filter(|_| a.connector == "axis") else {
            continue;
        };
        if a.signing.is_none() {
            p(
                format!("adapters.{name}.signing"),
                "the axis refuses unsigned envelopes".into(),
                "name an xmldsig-enveloped [signing.NAME] profile with the province's key",
            );
        }
        let (key, prof) = match (&x.trust, &a.signing) {
            (Some(t), _) => (format!("adapters.{name}.axis.trust"), t),
            (None, Some(s)) => (format!("adapters.{name}.signing"), s),
            (None, None) => continue,
        };
        if let Some(s) = named_profile(c, prof, &key, p) {
            if s.trust_anchors.is_none() {
                p(
                    key,
                    format!("profile `{prof}` has no trust_anchors to verify received envelopes"),
                    "set trust_anchors in that profile, or name another with axis.trust",
                );
            }
        }
        if c.sources.contains_key(&x.source_name) {
            p(
                format!("adapters.{name}.axis.source_name"),
                format!("`{}` is also a [sources] table", x.source_name),
                "give the axis poll its own source name, so its events cannot be posted from outside",
            );
        }
    }
}

/// `sources.NAME.verify`: the profile exists, is an inbound scheme, and trusts some key.
fn verify_of_sources(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    for (name, src) in &c.sources {
        let Some(prof) = &src.verify else { continue };
        let at = format!("sources.{name}.verify");
        let Some(s) = named_profile(c, prof, &at, p) else {
            continue;
        };
        let scheme = s.scheme.as_str();
        if !matches!(scheme, "jws-detached" | "http-signature") {
            p(
                at.clone(),
                format!("profile `{prof}` is {scheme}: inbound requests can be verified with jws-detached or http-signature only"),
                "name a jws-detached or http-signature profile",
            );
            continue;
        }
        let pinned = has_key(s) || !s.previous.is_empty() || !s.trusted_keys.is_empty();
        let chain_ok = scheme == "jws-detached" && s.trust_anchors.is_some();
        if !pinned && !chain_ok {
            p(
                at,
                format!("profile `{prof}` trusts no key"),
                &format!(
                    "list the senders' certificates in [signing.{prof}] trusted_keys{}",
                    if scheme == "jws-detached" {
                        ", or set trust_anchors for x5c"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
}
