//! `adapter.toml`: what an adapter folder is, and the one limit it sets.
//!
//! # Invariants
//! - Every key of this file is read by the gateway; there is no key that is parsed and then
//!   ignored. Unknown keys are rejected (every one of them reported, with file and key path),
//!   like the gateway config; a key that earlier versions had and that was removed is named as
//!   such, with where its job is done now ([`RETIRED`]).
//! - Nothing here is a secret or an endpoint: an adapter folder says how a vendor's JSON reads,
//!   never where to send or how to authenticate (see "Decisions" below).
//!
//! # Format (every key)
//! ```toml
//! name = "onestop-example"     # optional; when given it must equal the folder name
//! description = "…"            # optional, free text for people (not interpreted)
//!
//! [limits]
//! max_body_bytes = 1048576     # default 1 MiB: a vendor message above it is refused before
//!                              # it is parsed (the listener's inbound.max_body_bytes still
//!                              # caps what is read at all)
//! ```
//!
//! # Decisions (where the removed keys' jobs are done)
//! An adapter folder is named by a source (`[sources.NAME] adapter = "adapters/x"`) of the
//! gateway config: the vendor pushes to `POST /in/NAME`, and the folder maps what it pushes.
//! Everything about reaching a party lives in the gateway config, once:
//! - `connector` (`onestop-push` | `onestop-poll` | `http`): gone. A folder is only ever used
//!   by a push source; polling a vendor was never built.
//! - `[inbound] auth / secret`: gone. The source's `token` (and `verify`, a signing profile)
//!   authenticate the push.
//! - `[outbound] url / auth / secret / timeout`: gone. Online dossiers and catalogue changes
//!   reach the one-stop system through a route to an `[adapters.NAME]` with `connector =
//!   "http"`, which holds the URL, the bearer, the TLS settings and the timeout.
//! - `[poll]`: gone with `onestop-poll`.
//! - `signing_profile`: gone. What we send is signed by the destination adapter's `signing`;
//!   what we receive is checked by the source's `verify`.
//! - `limits.max_per_second`: gone. It was meant as the rate we send to the vendor; the
//!   destination adapter's `rate_limit` is that quota. The push endpoint has no rate limiter
//!   (it has `inbound.source_concurrency`, 503 beyond), and a vendor's push is accepted only
//!   once durably queued, so it is paced by the broker rather than refused with 429.

use serde::Deserialize;

/// Defaults of `adapter.toml`, stated once.
pub mod defaults {
    pub const MAX_BODY_BYTES: usize = crate::config::defaults::MAX_BODY_BYTES;
}

/// Keys removed from `adapter.toml`, with where their job is done now: an unknown key that is
/// one of these (or inside one of these tables) is reported with this fix instead of "check
/// its spelling".
pub const RETIRED: [(&str, &str); 6] = [
    (
        "connector",
        "removed: an adapter folder is always the push side of the [sources.NAME] that names it",
    ),
    (
        "inbound",
        "removed: the source's token (and verify) in the gateway config authenticate the push",
    ),
    (
        "outbound",
        "removed: route dossiers to an [adapters.NAME] with connector = \"http\"; it holds url, bearer and timeout",
    ),
    ("poll", "removed: polling a vendor is not supported"),
    (
        "signing_profile",
        "removed: set signing on the destination adapter, or verify on the source",
    ),
    (
        "limits.max_per_second",
        "removed: set rate_limit on the [adapters.NAME] the route sends to",
    ),
];

/// The fix for an unknown key of `adapter.toml` that was removed, if it is one.
pub fn retired(key: &str) -> Option<&'static str> {
    RETIRED.iter().find_map(|(k, why)| {
        (key == *k || key.strip_prefix(k).is_some_and(|r| r.starts_with('.'))).then_some(*why)
    })
}

/// The fix shown for an unknown key of `adapter.toml`: where a removed key's job is done now,
/// else a spelling hint that points at this format.
pub fn unknown_key_fix(key: &str) -> &'static str {
    retired(key)
        .unwrap_or("remove it or check its spelling against the format in src/mapping/def.rs")
}

/// The parsed `adapter.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterDef {
    /// Must equal the folder name when given: a copied folder that kept its old name is caught.
    #[serde(default)]
    pub name: Option<String>,
    /// For people reading the folder; not interpreted.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub limits: LimitsDef,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsDef {
    /// Largest vendor message mapped ([`crate::mapping::Adapter::parse_inbound`]).
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
}

impl Default for LimitsDef {
    fn default() -> Self {
        LimitsDef {
            max_body_bytes: defaults::MAX_BODY_BYTES,
        }
    }
}

fn d_body() -> usize {
    defaults::MAX_BODY_BYTES
}

/// Semantic checks. Each problem is `(key, what, fix)`.
pub(crate) fn validate(def: &AdapterDef, folder_name: &str) -> Vec<(String, String, String)> {
    let mut p = Vec::new();
    if let Some(n) = &def.name {
        if n != folder_name {
            p.push((
                "name".to_string(),
                format!("`{n}` differs from the folder name `{folder_name}`"),
                "make them equal, or remove `name`".to_string(),
            ));
        }
    }
    if def.limits.max_body_bytes == 0 {
        p.push((
            "limits.max_body_bytes".to_string(),
            "is zero".into(),
            "give a positive size, like 1048576".to_string(),
        ));
    }
    p
}
