//! `adapter.toml`: what an adapter is and how to reach its party.
//!
//! # Format (every key)
//! ```toml
//! name = "onestop-example"     # optional; when given it must equal the folder name
//! description = "…"            # optional, free text
//! connector = "onestop-push"   # onestop-push (the vendor pushes to us, we push online dossiers
//!                              # back) | onestop-poll (we poll the vendor) | http (generic JSON)
//! signing_profile = "province" # optional: name of a signing profile of gateway.toml
//!
//! [inbound]                    # optional: how the vendor's pushes are authenticated
//! auth = "bearer"              # none | bearer | hmac | mtls (default bearer)
//! secret = { env = "NAME" }    # required for bearer and hmac; { env } or { file }, never a value
//!
//! [outbound]                   # where online dossiers (canonical → vendor) are sent
//! url = "https://…"            # https; plain http only to localhost / 127.0.0.1
//! auth = "bearer"              # none | bearer | basic | hmac (default bearer)
//! secret = { env = "NAME" }    # required unless auth = "none"
//! timeout = "30s"              # default 30s
//!
//! [poll]                       # required for onestop-poll, refused otherwise
//! url = "https://…"
//! interval = "1m"              # default 1m, at least 5s
//!
//! [limits]
//! max_body_bytes = 1048576     # default 1 MiB (the gateway's inbound default)
//! max_per_second = 50          # default 50: messages per second we send to the vendor
//! ```
//!
//! # Invariants
//! - Unknown keys are rejected (every one of them reported), like the gateway config.
//! - Secrets are references only ([`SecretRef`]); nothing here holds a secret value.

use serde::Deserialize;

use crate::config::{Dur, SecretRef};

/// Defaults of `adapter.toml`, stated once.
pub mod defaults {
    use std::time::Duration;
    pub const TIMEOUT: Duration = Duration::from_secs(30);
    pub const POLL_INTERVAL: Duration = Duration::from_secs(60);
    pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
    pub const MAX_BODY_BYTES: usize = crate::config::defaults::MAX_BODY_BYTES;
    pub const MAX_PER_SECOND: u32 = 50;
}

/// Connector kinds an adapter folder may name.
pub const CONNECTORS: [&str; 3] = ["onestop-push", "onestop-poll", "http"];

/// The parsed `adapter.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub connector: String,
    #[serde(default)]
    pub signing_profile: Option<String>,
    #[serde(default)]
    pub inbound: Option<InboundDef>,
    #[serde(default)]
    pub outbound: Option<OutboundDef>,
    #[serde(default)]
    pub poll: Option<PollDef>,
    #[serde(default)]
    pub limits: LimitsDef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboundDef {
    #[serde(default = "d_bearer")]
    pub auth: String,
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboundDef {
    pub url: String,
    #[serde(default = "d_bearer")]
    pub auth: String,
    #[serde(default)]
    pub secret: Option<SecretRef>,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PollDef {
    pub url: String,
    #[serde(default = "d_poll")]
    pub interval: Dur,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitsDef {
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
    #[serde(default = "d_rate")]
    pub max_per_second: u32,
}

impl Default for LimitsDef {
    fn default() -> Self {
        LimitsDef {
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_per_second: defaults::MAX_PER_SECOND,
        }
    }
}

fn d_bearer() -> String {
    "bearer".into()
}
fn d_timeout() -> Dur {
    Dur(defaults::TIMEOUT)
}
fn d_poll() -> Dur {
    Dur(defaults::POLL_INTERVAL)
}
fn d_body() -> usize {
    defaults::MAX_BODY_BYTES
}
fn d_rate() -> u32 {
    defaults::MAX_PER_SECOND
}

/// Semantic checks. Each problem is `(key, what, fix)`.
pub(crate) fn validate(def: &AdapterDef, folder_name: &str) -> Vec<(String, String, String)> {
    let mut p = Vec::new();
    let mut add = |k: &str, w: String, f: &str| p.push((k.to_string(), w, f.to_string()));
    if let Some(n) = &def.name {
        if n != folder_name {
            add(
                "name",
                format!("`{n}` differs from the folder name `{folder_name}`"),
                "make them equal, or remove `name`",
            );
        }
    }
    if !CONNECTORS.contains(&def.connector.as_str()) {
        add(
            "connector",
            format!("unknown connector `{}`", def.connector),
            "use one of onestop-push, onestop-poll, http",
        );
    }
    if let Some(sp) = &def.signing_profile {
        if sp.trim().is_empty() {
            add(
                "signing_profile",
                "is empty".into(),
                "name a signing profile, or remove the key",
            );
        }
    }
    if let Some(i) = &def.inbound {
        check_auth(
            &mut add,
            "inbound",
            &i.auth,
            &["none", "bearer", "hmac", "mtls"],
            i.secret.is_some(),
        );
    }
    if let Some(o) = &def.outbound {
        check_url(&mut add, "outbound.url", &o.url);
        check_auth(
            &mut add,
            "outbound",
            &o.auth,
            &["none", "bearer", "basic", "hmac"],
            o.secret.is_some(),
        );
        if o.timeout.0.is_zero() {
            add(
                "outbound.timeout",
                "is zero".into(),
                "give a positive duration, like 30s",
            );
        }
    }
    match (&def.poll, def.connector.as_str()) {
        (None, "onestop-poll") => add(
            "poll",
            "the onestop-poll connector needs a [poll] section".into(),
            "add [poll] with url and interval",
        ),
        (Some(_), c) if c != "onestop-poll" => add(
            "poll",
            format!("[poll] is only used by the onestop-poll connector, not `{c}`"),
            "remove [poll], or set connector = \"onestop-poll\"",
        ),
        (Some(poll), _) => {
            check_url(&mut add, "poll.url", &poll.url);
            if poll.interval.0 < defaults::MIN_POLL_INTERVAL {
                add(
                    "poll.interval",
                    "is shorter than 5s".into(),
                    "poll at most every 5s",
                );
            }
        }
        _ => {}
    }
    if def.limits.max_body_bytes == 0 {
        add(
            "limits.max_body_bytes",
            "is zero".into(),
            "give a positive size, like 1048576",
        );
    }
    if def.limits.max_per_second == 0 {
        add(
            "limits.max_per_second",
            "is zero".into(),
            "give a positive rate, like 50",
        );
    }
    p
}

fn check_url(add: &mut impl FnMut(&str, String, &str), key: &str, url: &str) {
    let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"];
    if url.starts_with("https://") && url.len() > "https://".len() {
        return;
    }
    if local.iter().any(|l| url.starts_with(l)) {
        return;
    }
    add(
        key,
        format!("`{url}` is not an https URL"),
        "use https:// (plain http only to localhost)",
    );
}

fn check_auth(
    add: &mut impl FnMut(&str, String, &str),
    section: &str,
    auth: &str,
    allowed: &[&str],
    has_secret: bool,
) {
    if !allowed.contains(&auth) {
        add(
            &format!("{section}.auth"),
            format!("unknown auth `{auth}`"),
            &format!("use one of {}", allowed.join(", ")),
        );
    } else if matches!(auth, "bearer" | "hmac" | "basic") && !has_secret {
        add(
            &format!("{section}.secret"),
            format!("auth `{auth}` needs a secret"),
            "add secret = { env = \"NAME\" } or { file = \"path\" }",
        );
    }
}
