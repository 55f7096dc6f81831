//! The demo's two agencies: the province's operations centre (IOC) is pushed its share by the
//! `agency` connector into the strict agency sandbox, and the department of natural resources
//! and environment pulls its share from its feed, as an agency would: page by page, each
//! page's JWS verified with the province's public key, following the cursor to the end.
//!
//! # Invariants
//! - The same path as production: both are `[subscriptions.NAME]` of the demo's configuration
//!   (secrets by reference through variables of this process), fed by the same inbound events
//!   as the portal.
//! - **A share is complete or the demo fails.** Each agency must hold every dossier's newest
//!   version it is entitled to (the pull agency also every progress step), never an older
//!   version after a newer one (per dossier, the push agency's order across 429s and slow
//!   answers with `--faults`), and no field it did not name: a field outside its allow-list,
//!   or any personal field, fails the demo. A page whose signature does not verify fails it.
//! - With `--faults` the push agency answers 429 (Retry-After 1 s) and slowly (300 ms) part of
//!   the time, in phases of 2 s; the phases stop before the share is checked.
//! - Every wait is bounded (`CHECK_TIMEOUT`, 50 pages per second at most); a failure is a
//!   message, never a hang. Nothing personal is printed: codes and field names only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gw_contract_tests::agency::{AgencySandbox, Faults};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::lab::simulator::Event;
use crate::model::fields::FIELDS;

/// The variables the push secret and the feed token pass through (by reference).
const SECRET_VAR: &str = "GATEWAY_DEMO_AGENCY_SECRET";
const FEED_TOKEN_VAR: &str = "GATEWAY_DEMO_FEED_TOKEN";
/// The subscriptions' names.
pub const PUSH: &str = "ioc";
pub const PULL: &str = "so-tnmt";
/// The fields each agency names (its allow-list; none personal).
const PUSH_FIELDS: &[&str] = &["code", "version", "status", "procedure", "unit", "due_at"];
const PULL_FIELDS: &[&str] = &["code", "version", "status", "procedure", "unit"];
/// The procedures the department takes (land: its own); progress steps name no procedure, so
/// the filter (failing closed) does not take them.
pub const PULL_PROCEDURES: &[&str] = &["1.003003", "1.004227"];
const KEY_ID: &str = "province-feeds";
/// How long the agencies may take to have their share after the portal's summary.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

fn random_hex(bytes: usize) -> Vec<u8> {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes).map(|_| rng.random::<u8>()).collect()
}

/// The push agency's sandbox, its secret and the feed's token, and the fault phases.
pub struct AgenciesDemo {
    push: AgencySandbox,
    feed_token: String,
    faults: CancellationToken,
}

impl AgenciesDemo {
    /// Start the push agency's sandbox (with fault phases when `faults`); set the variables.
    pub async fn start(faults: bool) -> Result<AgenciesDemo, String> {
        use base64::Engine as _;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(random_hex(32))
        );
        let feed_token = hex::encode(random_hex(32));
        let push = AgencySandbox::start(0, &[secret.as_str()], vec![])
            .await
            .map_err(|e| format!("cannot start the agency sandbox: {e}"))?;
        std::env::set_var(SECRET_VAR, &secret);
        std::env::set_var(FEED_TOKEN_VAR, &feed_token);
        let stop = CancellationToken::new();
        if faults {
            tokio::spawn(fault_phases(push.clone(), stop.clone()));
        }
        Ok(AgenciesDemo {
            push,
            feed_token,
            faults: stop,
        })
    }

    /// The demo's subscriptions: one push, one pull (signed with the province's example EC
    /// key).
    pub fn config(&self) -> String {
        let certs = gw_contract_tests::officials::certs_example();
        let list = |f: &[&str]| {
            f.iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            r#"
[signing.feeds]
scheme = "jws-detached"
key = "{key}"
certificate = "{cert}"
key_id = "{KEY_ID}"

[subscriptions.{PUSH}]
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = ["dossier.upserted"]
fields = [{push_fields}]
[subscriptions.{PUSH}.push]
url = "{url}"
secret = {{ env = "{SECRET_VAR}" }}
retry = ["200ms", "1s", "2s", "5s"]
concurrency = 16

[subscriptions.{PULL}]
agency = "Sở Tài nguyên và Môi trường"
delivery = "pull"
kinds = ["dossier.*"]
procedures = [{pull_procedures}]
fields = [{pull_fields}]
[subscriptions.{PULL}.pull]
token = {{ env = "{FEED_TOKEN_VAR}" }}
signing = "feeds"
"#,
            key = certs.join("sign-ec.key").display(),
            cert = certs.join("sign-ec.pem").display(),
            url = self.push.url(),
            push_fields = list(PUSH_FIELDS),
            pull_fields = list(PULL_FIELDS),
            pull_procedures = list(PULL_PROCEDURES),
        )
    }

    /// Stop the fault phases, then check both shares against what was sent (`events`: every
    /// dossier's events in order), print them, and say whether both are complete.
    pub async fn check(&self, inbound: std::net::SocketAddr, events: &[Vec<Event>]) -> bool {
        let newest = &newest_of(events, |_| true);
        let land = &newest_of(events, |p| PULL_PROCEDURES.contains(&p));
        let steps = &BTreeMap::new();
        self.faults.cancel();
        self.push.set_faults(Faults::default());
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let push = loop {
            let share = PushShare::read(&self.push, newest);
            if share.missing == 0 || Instant::now() > deadline {
                break share;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let pull = loop {
            let share = match PullShare::page(inbound, &self.feed_token).await {
                Ok(s) => s,
                Err(e) => {
                    println!("  agency {PULL} FAILED: {e}");
                    return false;
                }
            };
            let complete = share.missing(land, steps) == 0;
            if complete || Instant::now() > deadline {
                break share;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        println!();
        println!("agencies (subscriptions: one pushed, one pulling its signed feed)");
        let push_ok = push.print(self.push.records().faulted);
        let pull_ok = pull.print(land, steps);
        push_ok && pull_ok
    }
}

/// Each dossier's newest version, of the dossiers whose newest snapshot names a procedure
/// `takes` accepts.
fn newest_of(events: &[Vec<Event>], takes: impl Fn(&str) -> bool) -> BTreeMap<String, i64> {
    events
        .iter()
        .filter_map(|d| d.iter().rev().find(|e| e.version.is_some()))
        .filter(|e| takes(e.payload["procedure_code"].as_str().unwrap_or_default()))
        .map(|e| (e.key.clone(), e.version.unwrap_or_default()))
        .collect()
}

/// 429 for 2 s, normal for 2 s, slow for 2 s, normal for 2 s, … until `stop` (at most 10 min).
async fn fault_phases(agency: AgencySandbox, stop: CancellationToken) {
    let phases = [
        Faults {
            mode: "429".into(),
            retry_after_secs: 1,
            ..Default::default()
        },
        Faults::default(),
        Faults {
            mode: "slow".into(),
            delay_ms: 300,
            ..Default::default()
        },
        Faults::default(),
    ];
    for phase in phases.iter().cycle().take(300) {
        agency.set_faults(phase.clone());
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    agency.set_faults(Faults::default());
}

/// The canonical field names a projected `data` object holds, and whether anything else is in
/// it (a key no field of [`FIELDS`] explains).
fn fields_in(data: &Value) -> (BTreeSet<&'static str>, bool) {
    let mut seen = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for f in FIELDS {
        let mut v = data;
        let mut found = true;
        for p in f.path {
            match v.get(p) {
                Some(x) => v = x,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            seen.insert(f.name);
            roots.insert(f.path[0]);
        }
    }
    let stray = data
        .as_object()
        .is_none_or(|o| o.keys().any(|k| !roots.contains(k.as_str())));
    (seen, stray)
}

/// Field names outside `allowed`, and the personal ones, among `seen`.
fn unnamed_and_personal(seen: &BTreeSet<&str>, allowed: &[&str]) -> (Vec<String>, usize) {
    let unnamed = seen
        .iter()
        .filter(|f| !allowed.contains(*f))
        .map(|f| f.to_string())
        .collect();
    let personal = seen
        .iter()
        .filter(|n| FIELDS.iter().any(|f| f.name == **n && f.personal))
        .count();
    (unnamed, personal)
}

/// What the push agency holds.
struct PushShare {
    events: usize,
    kinds: BTreeSet<String>,
    fields: BTreeSet<&'static str>,
    stray: bool,
    /// Dossiers whose newest version it does not hold.
    missing: usize,
    /// Versions received after a newer one of the same dossier.
    older_after_newer: usize,
    refused: usize,
}

impl PushShare {
    fn read(agency: &AgencySandbox, newest: &BTreeMap<String, i64>) -> PushShare {
        let r = agency.records();
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut share = PushShare {
            events: r.accepted.len(),
            kinds: BTreeSet::new(),
            fields: BTreeSet::new(),
            stray: false,
            missing: 0,
            older_after_newer: 0,
            refused: r.refused.len(),
        };
        for a in &r.accepted {
            share
                .kinds
                .insert(a.body["type"].as_str().unwrap_or("?").to_string());
            let (seen, stray) = fields_in(&a.body["data"]);
            share.fields.extend(seen);
            share.stray |= stray;
            let (Some(key), Some(v)) = (a.body["key"].as_str(), a.body["version"].as_i64()) else {
                share.stray = true;
                continue;
            };
            let prev = last.entry(key.to_string()).or_insert(0);
            if v < *prev {
                share.older_after_newer += 1;
            }
            *prev = (*prev).max(v);
        }
        share.missing = newest
            .iter()
            .filter(|(code, v)| last.get(*code) != Some(v))
            .count();
        share
    }

    fn print(&self, faulted: u64) -> bool {
        let (unnamed, personal) = unnamed_and_personal(&self.fields, PUSH_FIELDS);
        let ok = self.missing == 0
            && self.older_after_newer == 0
            && unnamed.is_empty()
            && personal == 0
            && !self.stray
            && self.refused == 0;
        println!("  {PUSH} (push, Trung tâm IOC tỉnh)");
        println!(
            "    events received      {} ({} answered 429/slow/failed first)",
            self.events, faulted
        );
        println!("    kinds                {}", join(&self.kinds));
        println!("    fields seen          {}", join(&self.fields));
        println!(
            "    personal fields      {personal}{}",
            if unnamed.is_empty() && !self.stray {
                String::new()
            } else {
                format!("; UNNAMED fields: {unnamed:?}")
            }
        );
        println!(
            "    missing newest       {}   older-after-newer {}   refused by the agency {}",
            self.missing, self.older_after_newer, self.refused
        );
        println!(
            "    result               {}",
            if ok { "OK" } else { "FAILED" }
        );
        ok
    }
}

/// What the pull agency fetched: every page from cursor 0 to the end.
struct PullShare {
    pages: usize,
    entries: usize,
    kinds: BTreeSet<String>,
    fields: BTreeSet<&'static str>,
    stray: bool,
    /// Per dossier, the versions in feed order and the progress steps.
    versions: BTreeMap<String, Vec<i64>>,
    steps: BTreeMap<String, usize>,
}

impl PullShare {
    /// Page the feed as an agency would: verify each page's signature over its exact bytes
    /// with the province's public key, follow `next` until a page comes back empty.
    async fn page(inbound: std::net::SocketAddr, token: &str) -> Result<PullShare, String> {
        let pem = std::fs::read(gw_contract_tests::officials::certs_example().join("sign-ec.pem"))
            .map_err(|e| format!("the province's certificate: {e}"))?;
        let keys = vec![gw_crypto::keys::VerifyingKey::from_pem(KEY_ID, &pem)
            .map_err(|e| format!("the province's certificate: {e}"))?];
        let client = reqwest::Client::new();
        let mut share = PullShare {
            pages: 0,
            entries: 0,
            kinds: BTreeSet::new(),
            fields: BTreeSet::new(),
            stray: false,
            versions: BTreeMap::new(),
            steps: BTreeMap::new(),
        };
        let mut after = 0i64;
        // 100 entries a page (the default max_limit): 2000 pages cover 200 000 events.
        for _ in 0..2000 {
            let r = client
                .get(format!(
                    "http://{inbound}/feeds/{PULL}?after={after}&limit=100"
                ))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| format!("page after {after}: {e}"))?;
            if r.status().as_u16() != 200 {
                return Err(format!("page after {after}: HTTP {}", r.status()));
            }
            let jws = r
                .headers()
                .get(crate::agencies::feed::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| format!("page after {after}: no signature"))?;
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            gw_crypto::jws::verify(&jws, Some(&body[..]), gw_crypto::jws::JwsTrust::Keys(&keys))
                .map_err(|e| format!("page after {after}: the signature does not verify: {e}"))?;
            share.pages += 1;
            let page: Value =
                serde_json::from_slice(&body).map_err(|e| format!("page after {after}: {e}"))?;
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return Ok(share);
            }
            for e in &entries {
                let cursor = e["cursor"].as_i64().unwrap_or(-1);
                if cursor != after + 1 {
                    return Err(format!("a gap or a repeat: cursor {cursor} after {after}"));
                }
                after = cursor;
                share.entries += 1;
                let kind = e["kind"].as_str().unwrap_or("?").to_string();
                let (seen, stray) = fields_in(&e["event"]["data"]);
                share.fields.extend(seen);
                share.stray |= stray;
                let dossier = e["dossier"].as_str().unwrap_or_default().to_string();
                match e["event"]["version"].as_i64() {
                    Some(v) => share.versions.entry(dossier).or_default().push(v),
                    None => *share.steps.entry(dossier).or_default() += 1,
                }
                share.kinds.insert(kind);
            }
            if page["next"].as_i64() != Some(after) {
                return Err(format!("page after {after}: next is not its last cursor"));
            }
        }
        Err("more than 2000 pages".into())
    }

    fn missing(&self, newest: &BTreeMap<String, i64>, steps: &BTreeMap<String, usize>) -> usize {
        let versions = newest
            .iter()
            .filter(|(code, v)| self.versions.get(*code).and_then(|l| l.iter().max()) != Some(v))
            .count();
        let step_gaps: usize = steps
            .iter()
            .map(|(code, n)| n.saturating_sub(self.steps.get(code).copied().unwrap_or(0)))
            .sum();
        versions + step_gaps
    }

    fn print(&self, newest: &BTreeMap<String, i64>, steps: &BTreeMap<String, usize>) -> bool {
        let (unnamed, personal) = unnamed_and_personal(&self.fields, PULL_FIELDS);
        let older_after_newer = self
            .versions
            .values()
            .map(|l| l.windows(2).filter(|w| w[1] < w[0]).count())
            .sum::<usize>();
        let missing = self.missing(newest, steps);
        let ok = missing == 0
            && older_after_newer == 0
            && unnamed.is_empty()
            && personal == 0
            && !self.stray;
        println!("  {PULL} (pull, Sở Tài nguyên và Môi trường)");
        println!(
            "    events received      {} in {} signed pages (each verified with the province's public key)",
            self.entries, self.pages
        );
        println!("    kinds                {}", join(&self.kinds));
        println!("    fields seen          {}", join(&self.fields));
        println!(
            "    personal fields      {personal}{}",
            if unnamed.is_empty() && !self.stray {
                String::new()
            } else {
                format!("; UNNAMED fields: {unnamed:?}")
            }
        );
        println!("    missing              {missing}   older-after-newer {older_after_newer}");
        println!(
            "    result               {}",
            if ok { "OK" } else { "FAILED" }
        );
        ok
    }
}

fn join<T: std::fmt::Display>(set: &BTreeSet<T>) -> String {
    set.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_by_their_paths_and_strays_are_caught() {
        let (seen, stray) = fields_in(&serde_json::json!({"code": "C", "status": "x"}));
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["code", "status"]);
        assert!(!stray);
        let (seen, stray) =
            fields_in(&serde_json::json!({"code": "C", "owner": {"name": "N"}, "secret": 1}));
        assert!(seen.contains("owner_name"));
        assert!(stray, "a key no canonical field explains");
        let (unnamed, personal) = unnamed_and_personal(&seen, PUSH_FIELDS);
        assert_eq!((unnamed, personal), (vec!["owner_name".to_string()], 1));
    }
}
