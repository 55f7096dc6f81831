//! The national public service portal (DVCQG) connector. Contract: `shared/CONTRACTS.md` §1-2.
//!
//! # What it does
//! - `dossier.upserted` → `DongBoHoSoMC` (`isUpdating` from the ledger: true when a version of
//!   this dossier was delivered before; or, in `lookup` mode, asked with `TraCuuHoSo` when the
//!   ledger does not know it). Batched: concurrent deliveries of distinct dossiers share one
//!   `data` array, bounded by count and bytes; each lane still waits for its own dossier's
//!   answer, so one dossier's versions stay in order.
//! - `dossier.progress` → `CapNhatTienDoHoSoMC` (batched the same way; never coalesced).
//! - `dossier.status` → `DongBoTrangThaiHoSo`.
//!
//! # Invariants
//! - Every body carries `session` (session auth), `madonvi` and `service`; every request the
//!   `dstcode` header. Dates are `yyyyMMddHHmmss` in Vietnam time (UTC+7).
//! - The session is cached and shared: concurrent callers wait for one login. When the portal
//!   answers "session expired", the session is renewed and the call repeated **once**; a second
//!   expiry is a retryable failure, never a loop. OAuth2 tokens (LGSP) are refreshed a minute
//!   before expiry, one refresh for all waiters.
//! - `error_code` 0 / "0" / "00" (number or string) is success; HTTP 200 with any other code is
//!   an error: retryable if configured so (`retryable_codes`), otherwise a refusal of the
//!   content (dead-lettered with the portal's message).
//! - **One bad item never takes its batch down.** The portal refuses a whole batch for one bad
//!   item and names it (`data[i]`): only the named items get the refusal (a progress step
//!   for a dossier the portal does not know yet waits for it: retried as `awaiting_dossier`),
//!   and the others are sent again together. A refusal naming nobody: each item alone.
//! - One [`Health`] per HTTP exchange: a batch's health is carried by one of its items, so
//!   the circuit breaker counts calls, not items.
//! - Translation errors (unknown procedure code, a malformed canonical payload) are refusals:
//!   retrying cannot fix them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Attempted, Connector, ConnectorError, InDoubtCheck};

/// The progress list in the `TraCuuHoSo` answer. **Assumed name**: the portal's look-up answer
/// is public only for the dossier's own fields; the sandbox answers this list.
pub const PROGRESS_LIST: &str = "TienDoXuLy";
use crate::config::{AdapterSection, DvcqgSection, Secret};
use crate::model::envelope::Envelope;
use crate::model::outcome::{classify, health, Answer, Decision, Health, Reason, TransportFailure};
use crate::model::{Dossier, ProgressStep};
use crate::signing::SigningProfile;
use crate::transport::client::{HttpClient, OutRequest};

pub mod translate;

use translate::{ProcedureTable, TranslateError};

/// Portal operations used here.
pub mod service {
    pub const SYNC_DOSSIERS: &str = "DongBoHoSoMC";
    pub const SYNC_PROGRESS: &str = "CapNhatTienDoHoSoMC";
    pub const SYNC_STATUS: &str = "DongBoTrangThaiHoSo";
    pub const LOOKUP: &str = "TraCuuHoSo";
}

/// How the connector authenticates.
enum Auth {
    Session {
        login_url: String,
        login_service: String,
        username: String,
        password: Secret,
        current: Mutex<Option<String>>,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        current: Mutex<Option<(String, Instant)>>,
    },
}

/// Settings, resolved once.
struct Settings {
    url: String,
    sharing_url: String,
    unit_code: String,
    lookup: bool,
    expired: Vec<String>,
    retryable: Vec<String>,
    exists: Vec<String>,
    not_found: Vec<String>,
    max_items: usize,
    max_bytes: usize,
    linger: Duration,
    in_flight: usize,
}

struct Inner {
    name: String,
    settings: Settings,
    client: HttpClient,
    raw: reqwest::Client,
    auth: Auth,
    procedures: ProcedureTable,
    signing: Arc<dyn SigningProfile>,
    logins: std::sync::atomic::AtomicU64,
}

/// A batch slot: which call the item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Upsert { updating: bool },
    Progress,
}

impl Op {
    fn service(self) -> &'static str {
        match self {
            Op::Upsert { .. } => service::SYNC_DOSSIERS,
            Op::Progress => service::SYNC_PROGRESS,
        }
    }
}

struct Item {
    value: Value,
    done: oneshot::Sender<Attempted>,
    /// The evidence capture of the delivery this item belongs to.
    capture: Option<crate::evidence::capture::Capture>,
}

pub struct DvcqgConnector {
    inner: Arc<Inner>,
    batchers: HashMap<Op, mpsc::Sender<Item>>,
}

impl DvcqgConnector {
    pub fn new(
        name: &str,
        a: &AdapterSection,
        base: &Path,
        signing: Arc<dyn SigningProfile>,
    ) -> Result<Self, ConnectorError> {
        let settings_err = |what: String| ConnectorError::Settings {
            adapter: name.into(),
            what,
        };
        let d: &DvcqgSection = a
            .dvcqg
            .as_ref()
            .ok_or_else(|| settings_err("missing [dvcqg] settings".into()))?;
        let resolve =
            |r: &crate::config::SecretRef| r.resolve(base).map_err(|e| settings_err(e.to_string()));
        let auth = match d.auth.as_str() {
            "oauth2" => Auth::OAuth2 {
                token_url: d
                    .token_url
                    .clone()
                    .ok_or_else(|| settings_err("oauth2 needs token_url".into()))?,
                client_id: d
                    .client_id
                    .clone()
                    .ok_or_else(|| settings_err("oauth2 needs client_id".into()))?,
                client_secret: resolve(
                    d.client_secret
                        .as_ref()
                        .ok_or_else(|| settings_err("oauth2 needs client_secret".into()))?,
                )?,
                current: Mutex::new(None),
            },
            _ => Auth::Session {
                login_url: d.login_url.clone().unwrap_or_else(|| a.url.clone()),
                login_service: d.login_service.clone(),
                username: d
                    .username
                    .clone()
                    .ok_or_else(|| settings_err("session auth needs username".into()))?,
                password: resolve(
                    d.password
                        .as_ref()
                        .ok_or_else(|| settings_err("session auth needs password".into()))?,
                )?,
                current: Mutex::new(None),
            },
        };
        let procedures = match &d.procedures {
            Some(p) => {
                let p = if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                };
                ProcedureTable::load(&p).map_err(settings_err)?
            }
            None => ProcedureTable::default(),
        };
        let settings = Settings {
            url: a.url.clone(),
            sharing_url: d.sharing_url.clone().unwrap_or_else(|| a.url.clone()),
            unit_code: d.unit_code.clone(),
            lookup: d.is_updating == "lookup",
            expired: d.session_expired_codes.clone(),
            retryable: d.retryable_codes.clone(),
            exists: d.exists_codes.clone(),
            not_found: d.not_found_codes.clone(),
            max_items: d.batch_max_items,
            max_bytes: d.batch_max_bytes,
            linger: d.batch_linger.0,
            in_flight: d.batch_in_flight,
        };
        let client = HttpClient::build(name, a, base)?;
        let raw = reqwest::Client::builder()
            .timeout(a.timeout.0)
            .build()
            .map_err(|e| settings_err(format!("cannot build the token client: {e}")))?;
        let inner = Arc::new(Inner {
            name: name.into(),
            settings,
            client,
            raw,
            auth,
            procedures,
            signing,
            logins: Default::default(),
        });
        let mut batchers = HashMap::new();
        for op in [
            Op::Upsert { updating: false },
            Op::Upsert { updating: true },
            Op::Progress,
        ] {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(run_batcher(inner.clone(), op, rx));
            batchers.insert(op, tx);
        }
        Ok(DvcqgConnector { inner, batchers })
    }

    /// Logins made so far (a client must renew once per expiry, never loop).
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One authenticated call on the sharing endpoint (catalogue, look-ups, configured
    /// listings): `fields` are added to `session`/`madonvi`/`service`; an expired session is
    /// renewed once. Returns the answer's `result` (`null` when absent), or why it failed.
    pub async fn sharing_call(
        &self,
        service: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<Value, String> {
        let (attempted, code, parsed) = self
            .inner
            .call_full(service, &self.inner.settings.sharing_url, fields)
            .await;
        match attempted.decision {
            Decision::Delivered => parsed
                .map(|v| v.get("result").cloned().unwrap_or(Value::Null))
                .ok_or_else(|| format!("{service}: the answer is not JSON")),
            _ => Err(format!(
                "{service}: {}{}",
                code.map(|c| format!("error_code {c}: "))
                    .unwrap_or_default(),
                match &attempted.answer {
                    Answer::Http { status, body, .. } => {
                        format!(
                            "HTTP {status}: {}",
                            body.chars().take(300).collect::<String>()
                        )
                    }
                    Answer::Transport { detail, .. } => detail.clone(),
                }
            )),
        }
    }

    async fn submit(&self, op: Op, value: Value) -> Attempted {
        let (done, wait) = oneshot::channel();
        if self.batchers[&op]
            .send(Item {
                value,
                done,
                capture: crate::evidence::capture::current(),
            })
            .await
            .is_err()
        {
            return failed(
                Decision::Retry {
                    reason: Reason::RequestBuild,
                    not_before: None,
                },
                "batcher stopped",
            );
        }
        wait.await.unwrap_or_else(|_| {
            failed(
                Decision::Retry {
                    reason: Reason::RequestBuild,
                    not_before: None,
                },
                "batcher dropped the item",
            )
        })
    }
}

fn failed(decision: Decision, detail: &str) -> Attempted {
    Attempted {
        answer: Answer::Transport {
            failure: TransportFailure::Request,
            detail: detail.to_string(),
        },
        decision,
        latency: Duration::ZERO,
        request_digest: String::new(),
        health: Health::Silent,
    }
}

fn refused(e: TranslateError) -> Attempted {
    failed(
        Decision::Permanent {
            reason: Reason::ClientError,
        },
        &e.to_string(),
    )
}

#[async_trait]
impl Connector for DvcqgConnector {
    fn adapter(&self) -> &str {
        &self.inner.name
    }

    fn acts_on_snapshot(&self, kind: &str) -> bool {
        matches!(kind, "dossier.progress" | "dossier.status")
    }

    /// In doubt: `TraCuuHoSo` shows the dossier as the portal holds it. A snapshot is there when
    /// every field we would send equals the portal's (`TrangThaiHoSo` aside: a later
    /// `DongBoTrangThaiHoSo` changes it); a progress step when the answer's progress list has
    /// an item equal to ours in every field we send. The list's name, `TienDoXuLy`, is an
    /// **assumption** (the portal's look-up answer is not public beyond the dossier fields):
    /// an answer without it cannot tell, and the step is sent again as `unverified`.
    async fn resolve_in_doubt(&self, env: &Envelope) -> InDoubtCheck {
        let (ours, progress) = match env.kind.as_str() {
            "dossier.upserted" | "dossier.status" => {
                let dossier = match Dossier::deserialize(&env.payload) {
                    Ok(d) => d,
                    // It cannot be sent either: let the send refuse it.
                    Err(_) => return InDoubtCheck::NotThere,
                };
                let item = if env.kind == "dossier.status" {
                    translate::status_body(&dossier).map(Value::Object)
                } else {
                    translate::dossier_item(&dossier, &self.inner.procedures)
                };
                match item {
                    Ok(v) => (v, false),
                    Err(_) => return InDoubtCheck::NotThere,
                }
            }
            "dossier.progress" => {
                #[derive(serde::Deserialize)]
                struct Progress {
                    code: String,
                    step: ProgressStep,
                }
                let item = Progress::deserialize(&env.payload)
                    .ok()
                    .and_then(|p| translate::progress_item(&p.code, &p.step).ok());
                match item {
                    Some(v) => (v, true),
                    None => return InDoubtCheck::NotThere,
                }
            }
            _ => return InDoubtCheck::Unverifiable("no look-up for this kind"),
        };
        let found = match self.inner.lookup_item(&env.key).await {
            Ok(Some(found)) => found,
            Ok(None) => return InDoubtCheck::NotThere,
            Err(a) => return InDoubtCheck::LookupFailed(a),
        };
        let holds = |theirs: &Value, skip: &[&str]| match (ours.as_object(), theirs.as_object()) {
            (Some(o), Some(t)) => o
                .iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .all(|(k, v)| t.get(k) == Some(v)),
            _ => false,
        };
        let there = if progress {
            match found.get(PROGRESS_LIST).and_then(Value::as_array) {
                Some(list) => list.iter().any(|step| holds(step, &[])),
                None => return InDoubtCheck::Unverifiable("the look-up lists no progress"),
            }
        } else if env.kind == "dossier.status" {
            found.get("TrangThaiHoSo") == ours.get("TrangThaiHoSo")
        } else {
            holds(&found, &["TrangThaiHoSo"])
        };
        if there {
            InDoubtCheck::AlreadyThere
        } else {
            InDoubtCheck::NotThere
        }
    }

    async fn deliver(&self, env: &Envelope, prior: Option<i64>) -> Attempted {
        match env.kind.as_str() {
            "dossier.upserted" => {
                let dossier = match Dossier::deserialize(&env.payload) {
                    Ok(d) => d,
                    Err(e) => return refused(TranslateError::Canonical(e.to_string())),
                };
                let item = match translate::dossier_item(&dossier, &self.inner.procedures) {
                    Ok(v) => v,
                    Err(e) => return refused(e),
                };
                let updating = match prior {
                    Some(_) => true,
                    None if self.inner.settings.lookup => {
                        match self.inner.lookup(&dossier.code).await {
                            Ok(found) => found,
                            Err(a) => return a,
                        }
                    }
                    None => false,
                };
                self.submit(Op::Upsert { updating }, item).await
            }
            "dossier.progress" => {
                #[derive(serde::Deserialize)]
                struct Progress {
                    code: String,
                    step: ProgressStep,
                }
                let p = match Progress::deserialize(&env.payload) {
                    Ok(p) => p,
                    Err(e) => return refused(TranslateError::Canonical(e.to_string())),
                };
                match translate::progress_item(&p.code, &p.step) {
                    Ok(v) => self.submit(Op::Progress, v).await,
                    Err(e) => refused(e),
                }
            }
            "dossier.status" => {
                let dossier = match Dossier::deserialize(&env.payload) {
                    Ok(d) => d,
                    Err(e) => return refused(TranslateError::Canonical(e.to_string())),
                };
                let item = match translate::status_body(&dossier) {
                    Ok(fields) => Value::Object(fields),
                    Err(e) => return refused(e),
                };
                let mut fields = serde_json::Map::new();
                fields.insert("data".into(), Value::Array(vec![item]));
                let (attempted, code) = self
                    .inner
                    .call(service::SYNC_STATUS, &self.inner.settings.url, fields)
                    .await;
                match code {
                    // The dossier is not at the portal yet: wait for its snapshot.
                    Some(c) if self.inner.settings.not_found.contains(&c) => Attempted {
                        decision: awaiting_dossier(),
                        ..attempted
                    },
                    _ => attempted,
                }
            }
            other => refused(TranslateError::UnknownKind(other.to_string())),
        }
    }
}

/// Collect items of one operation into batches and send them, at most `in_flight` calls at
/// once. A batch takes what is waiting when a call slot frees up (then lingers, if configured,
/// for companions): under load the batches grow, and an idle portal sees each item at once.
async fn run_batcher(inner: Arc<Inner>, op: Op, mut rx: mpsc::Receiver<Item>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(inner.settings.in_flight.max(1)));
    let mut calls = tokio::task::JoinSet::new();
    // An item too big to join the previous batch: it starts the next one.
    let mut carry: Option<Item> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carry.take() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => break,
            },
        };
        // Under a quota, gather only once a call could go: what arrives meanwhile joins it.
        inner.client.until_free().await;
        let mut items = vec![first];
        let mut bytes = items[0].value.to_string().len();
        let deadline = tokio::time::Instant::now() + inner.settings.linger;
        while items.len() < inner.settings.max_items {
            let next = match rx.try_recv() {
                Ok(i) => Some(i),
                Err(mpsc::error::TryRecvError::Empty) if inner.settings.linger.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Ok(None): the channel closed; Err: the linger ran out.
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .unwrap_or(None)
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(item) = next else { break };
            let size = item.value.to_string().len();
            if bytes + size > inner.settings.max_bytes {
                // Too big to join: it starts the next batch.
                carry = Some(item);
                break;
            }
            bytes += size;
            items.push(item);
        }
        let inner2 = inner.clone();
        calls.spawn(async move {
            send_batch(&inner2, op, items).await;
            drop(slot);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// Send a batch, isolating the items the portal names. The portal refuses a whole batch for
/// one bad item and names it (`data[i].…` in `result.errors`): the named items get the
/// refusal (a progress step for a dossier it does not know yet waits; an upsert refused for
/// existing / not existing is sent alone, which flips `isUpdating`), the others are sent
/// again together. A refusal naming nobody (or everybody) of several items: each is sent
/// alone. Each exchange's [`Health`] is carried by exactly one item.
async fn send_batch(inner: &Inner, op: Op, items: Vec<Item>) {
    let mut healths: std::collections::VecDeque<Health> = Default::default();
    let settle =
        |item: Item, mut a: Attempted, healths: &mut std::collections::VecDeque<Health>| {
            a.health = healths.pop_front().unwrap_or(Health::Silent);
            let _ = item.done.send(a);
        };
    let mut pending = items;
    while !pending.is_empty() {
        let values: Vec<Value> = pending.iter().map(|i| i.value.clone()).collect();
        // The batch's call is evidence for every envelope in it.
        let all = crate::evidence::capture::Capture::merge(
            pending.iter().filter_map(|i| i.capture.clone()),
        );
        let (attempted, code, parsed) =
            crate::evidence::capture::within(Some(all), inner.sync(op, values)).await;
        healths.push_back(attempted.health);
        let item_refusal = matches!(
            attempted.answer,
            Answer::Http {
                status: 200..=299,
                ..
            }
        ) && !matches!(attempted.decision, Decision::Delivered);
        if pending.len() == 1 || !item_refusal {
            for item in pending {
                settle(item, attempted.clone(), &mut healths);
            }
            return;
        }
        let named = named_items(parsed.as_ref(), pending.len());
        if named.is_empty() || named.len() == pending.len() {
            if matches!(attempted.decision, Decision::Permanent { .. }) {
                // Refused as a whole without saying for whom: send each alone.
                for item in pending {
                    let (alone, _, _) = crate::evidence::capture::within(
                        item.capture.clone(),
                        inner.sync(op, vec![item.value.clone()]),
                    )
                    .await;
                    let _ = item.done.send(alone);
                }
            } else {
                for item in pending {
                    settle(item, attempted.clone(), &mut healths);
                }
            }
            return;
        }
        let code = code.unwrap_or_default();
        let mut rest = Vec::with_capacity(pending.len());
        for (i, item) in pending.into_iter().enumerate() {
            let Some(errors) = named.get(&i) else {
                rest.push(item);
                continue;
            };
            let is = |codes: &[String]| codes.contains(&code);
            let upsert_flip = matches!(op, Op::Upsert { .. })
                && (is(&inner.settings.exists) || is(&inner.settings.not_found));
            if upsert_flip {
                let (alone, _, _) = crate::evidence::capture::within(
                    item.capture.clone(),
                    inner.sync(op, vec![item.value.clone()]),
                )
                .await;
                let _ = item.done.send(alone);
                continue;
            }
            let decision = if op == Op::Progress && is(&inner.settings.not_found) {
                awaiting_dossier()
            } else {
                attempted.decision.clone()
            };
            let answer = match &attempted.answer {
                Answer::Http {
                    status,
                    retry_after,
                    ..
                } => Answer::Http {
                    status: *status,
                    retry_after: *retry_after,
                    body: format!("error_code {code}: {}", errors.join("; ")),
                },
                other => other.clone(),
            };
            let one = Attempted {
                answer,
                decision,
                ..attempted.clone()
            };
            settle(item, one, &mut healths);
        }
        pending = rest;
    }
}

/// The items a refusal names: `data[i]` at the start of each of `result.errors` (or, when the
/// answer lists none, anywhere in `message`), by index below `n`, with what was said of them.
fn named_items(body: Option<&Value>, n: usize) -> BTreeMap<usize, Vec<String>> {
    let mut named: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let Some(body) = body else { return named };
    let index_at = |s: &str| -> Option<usize> {
        let rest = s.strip_prefix("data[")?;
        let end = rest.find(']')?;
        rest[..end].parse().ok().filter(|i| *i < n)
    };
    if let Some(errors) = body.pointer("/result/errors").and_then(Value::as_array) {
        for e in errors.iter().filter_map(Value::as_str) {
            if let Some(i) = index_at(e.trim()) {
                named.entry(i).or_default().push(e.trim().to_string());
            }
        }
    }
    if named.is_empty() {
        if let Some(m) = body.get("message").and_then(Value::as_str) {
            for (at, _) in m.match_indices("data[") {
                let part = &m[at..];
                let until = part.find(';').unwrap_or(part.len());
                if let Some(i) = index_at(part) {
                    named.entry(i).or_default().push(part[..until].to_string());
                }
            }
        }
    }
    named
}

/// A progress step (or status) for a dossier the portal does not know yet: it waits for the
/// dossier's snapshot (retried, not refused).
fn awaiting_dossier() -> Decision {
    Decision::Retry {
        reason: Reason::AwaitingDossier,
        not_before: None,
    }
}

/// What an answer's `error_code` says.
fn error_code(body: &Value) -> Option<String> {
    match body.get("error_code")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

fn is_success(code: &str) -> bool {
    matches!(code, "0" | "00")
}

impl Inner {
    /// Send one sync call for `op`. A single upsert is sent once more with `isUpdating`
    /// flipped if the portal says the dossier exists / does not exist (a batch is not: its
    /// items are told apart by [`send_batch`]). Returns the attempt, the `error_code` and
    /// the parsed answer.
    async fn sync(&self, op: Op, data: Vec<Value>) -> (Attempted, Option<String>, Option<Value>) {
        let mut updating = matches!(op, Op::Upsert { updating: true });
        let mut flipped = data.len() > 1;
        loop {
            let mut fields = serde_json::Map::new();
            if let Op::Upsert { .. } = op {
                fields.insert("isUpdating".into(), Value::Bool(updating));
            }
            fields.insert("data".into(), Value::Array(data.clone()));
            let (attempted, code, parsed) = self
                .call_full(op.service(), &self.settings.url, fields)
                .await;
            if let (Op::Upsert { .. }, Some(code), false) = (op, code.as_deref(), flipped) {
                let flip = (!updating && self.settings.exists.iter().any(|c| c == code))
                    || (updating && self.settings.not_found.iter().any(|c| c == code));
                if flip {
                    updating = !updating;
                    flipped = true;
                    continue;
                }
            }
            if let (Op::Progress, Some(c)) = (op, code.as_deref()) {
                if self.settings.not_found.iter().any(|n| n == c) {
                    // The dossier is not at the portal yet (its snapshot is still on its way):
                    // wait for it rather than dead-letter the step.
                    let attempted = Attempted {
                        decision: awaiting_dossier(),
                        ..attempted
                    };
                    return (attempted, code, parsed);
                }
            }
            return (attempted, code, parsed);
        }
    }

    /// `TraCuuHoSo`, the whole answer: the dossier as the portal holds it (`result`), `None`
    /// when the portal does not know it, or why the look-up failed.
    async fn lookup_item(&self, code: &str) -> Result<Option<Value>, Attempted> {
        let mut fields = serde_json::Map::new();
        fields.insert("mahoso".into(), Value::String(code.to_string()));
        let (attempted, err, parsed) = self
            .call_full(service::LOOKUP, &self.settings.sharing_url, fields)
            .await;
        match (&attempted.decision, err.as_deref()) {
            (Decision::Delivered, _) => Ok(Some(
                parsed
                    .and_then(|p| p.get("result").cloned())
                    .unwrap_or(Value::Null),
            )),
            (_, Some(c)) if self.settings.not_found.iter().any(|n| n == c) => Ok(None),
            _ => Err(attempted),
        }
    }

    /// `TraCuuHoSo`: does the portal know this dossier?
    async fn lookup(&self, code: &str) -> Result<bool, Attempted> {
        let mut fields = serde_json::Map::new();
        fields.insert("mahoso".into(), Value::String(code.to_string()));
        let (attempted, err) = self
            .call(service::LOOKUP, &self.settings.sharing_url, fields)
            .await;
        match (&attempted.decision, err.as_deref()) {
            (Decision::Delivered, _) => Ok(true),
            (_, Some(c)) if self.settings.not_found.iter().any(|n| n == c) => Ok(false),
            _ => Err(attempted),
        }
    }

    /// One call with authentication; renews an expired session once. Returns the attempt and
    /// the portal's `error_code` when it gave one.
    async fn call(
        &self,
        service: &str,
        url: &str,
        fields: serde_json::Map<String, Value>,
    ) -> (Attempted, Option<String>) {
        let (attempted, code, _) = self.call_full(service, url, fields).await;
        (attempted, code)
    }

    /// [`Inner::call`], also returning the whole answer body parsed (the attempt keeps only
    /// its start, and the `error_code` is read from the whole body, so a large answer is not
    /// mistaken for a malformed one).
    async fn call_full(
        &self,
        service: &str,
        url: &str,
        fields: serde_json::Map<String, Value>,
    ) -> (Attempted, Option<String>, Option<Value>) {
        let mut renewed = false;
        loop {
            let token = match self.credential().await {
                Ok(t) => t,
                Err(a) => return (a, None, None),
            };
            let mut body = serde_json::Map::new();
            if let Auth::Session { .. } = self.auth {
                body.insert("session".into(), Value::String(token.clone()));
            }
            body.insert(
                "madonvi".into(),
                Value::String(self.settings.unit_code.clone()),
            );
            body.insert("service".into(), Value::String(service.into()));
            body.extend(fields.clone());
            let bytes = serde_json::to_vec(&Value::Object(body)).expect("JSON serializes");
            let mut headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("dstcode".to_string(), self.settings.unit_code.clone()),
            ];
            if let Auth::OAuth2 { .. } = self.auth {
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
            let req = OutRequest {
                url: url.to_string(),
                headers,
                body: bytes,
            };
            let req = match self.signing.sign(req).await {
                Ok(r) => r,
                Err(e) => {
                    return (
                        failed(
                            Decision::Retry {
                                reason: Reason::RequestBuild,
                                not_before: None,
                            },
                            &format!("signing failed: {e}"),
                        ),
                        None,
                        None,
                    )
                }
            };
            let request_digest = hex::encode(Sha256::digest(&req.body));
            let (answer, latency, full) = self.client.post_full(&req).await;
            let parsed: Option<Value> = full.and_then(|b| serde_json::from_slice(&b).ok());
            let code = parsed.as_ref().and_then(error_code);
            // A bearer token the platform no longer accepts: refresh it once, like a session.
            let token_refused =
                matches!(self.auth, Auth::OAuth2 { .. }) && answer.status() == Some(401);
            if token_refused {
                self.invalidate(&token).await;
                if !renewed {
                    renewed = true;
                    continue;
                }
            }
            if let Some(c) = &code {
                if self.settings.expired.iter().any(|e| e == c) {
                    self.invalidate(&token).await;
                    if !renewed {
                        renewed = true;
                        continue;
                    }
                }
            }
            let decision = classify(&answer, |_| match (&parsed, &code) {
                (None, _) => Some(Decision::Retry {
                    reason: Reason::BodyErrorRetryable,
                    not_before: None,
                }),
                (Some(_), None) => Some(Decision::Retry {
                    reason: Reason::BodyErrorRetryable,
                    not_before: None,
                }),
                (Some(_), Some(c)) if is_success(c) => None,
                (Some(_), Some(c))
                    if self.settings.retryable.iter().any(|r| r == c)
                        || self.settings.expired.iter().any(|r| r == c) =>
                {
                    Some(Decision::Retry {
                        reason: Reason::BodyErrorRetryable,
                        not_before: None,
                    })
                }
                (Some(_), Some(_)) => Some(Decision::Permanent {
                    reason: Reason::BodyErrorPermanent,
                }),
            });
            return (
                Attempted {
                    health: health(&answer),
                    answer,
                    decision,
                    latency,
                    request_digest,
                },
                code,
                parsed,
            );
        }
    }

    /// The current session or token, logging in / refreshing when needed (one at a time).
    async fn credential(&self) -> Result<String, Attempted> {
        match &self.auth {
            Auth::Session {
                login_url,
                login_service,
                username,
                password,
                current,
            } => {
                let mut cur = current.lock().await;
                if let Some(s) = cur.as_ref() {
                    return Ok(s.clone());
                }
                let body = json!({"service": login_service, "username": username, "password": password.expose()});
                let req = OutRequest {
                    url: login_url.clone(),
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("dstcode".into(), self.settings.unit_code.clone()),
                    ],
                    body: serde_json::to_vec(&body).expect("JSON serializes"),
                };
                self.logins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (answer, latency) = self.client.post(&req).await;
                let session = match &answer {
                    Answer::Http {
                        status: 200, body, ..
                    } => serde_json::from_str::<Value>(body).ok().and_then(|v| {
                        let ok = error_code(&v).map(|c| is_success(&c)).unwrap_or(false);
                        v.get("session")
                            .and_then(Value::as_str)
                            .filter(|_| ok)
                            .map(str::to_string)
                    }),
                    _ => None,
                };
                match session {
                    Some(s) => {
                        *cur = Some(s.clone());
                        Ok(s)
                    }
                    None => {
                        let decision = match classify(&answer, |_| {
                            Some(Decision::Retry {
                                reason: Reason::Unauthorized,
                                not_before: None,
                            })
                        }) {
                            Decision::Permanent { .. } => Decision::Retry {
                                reason: Reason::Unauthorized,
                                not_before: None,
                            },
                            d => d,
                        };
                        tracing::warn!(adapter = %self.name, "portal login failed: {}", answer.status().map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no answer".into()));
                        Err(Attempted {
                            health: health(&answer),
                            answer,
                            decision,
                            latency,
                            request_digest: String::new(),
                        })
                    }
                }
            }
            Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                current,
            } => {
                let mut cur = current.lock().await;
                if let Some((tok, expires)) = cur.as_ref() {
                    if Instant::now() + Duration::from_secs(60) < *expires {
                        return Ok(tok.clone());
                    }
                }
                self.logins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let started = Instant::now();
                let res = self
                    .raw
                    .post(token_url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", client_secret.expose()),
                    ])
                    .send()
                    .await;
                let parsed = match res {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let decision = Decision::Retry {
                            reason: Reason::Unauthorized,
                            not_before: None,
                        };
                        let answer = Answer::Http {
                            status,
                            retry_after: None,
                            body: "token endpoint refused".into(),
                        };
                        return Err(Attempted {
                            health: health(&answer),
                            answer,
                            decision,
                            latency: started.elapsed(),
                            request_digest: String::new(),
                        });
                    }
                    Err(e) => {
                        return Err(Attempted {
                            health: Health::Down,
                            ..failed(
                                Decision::Retry {
                                    reason: Reason::ConnectionError,
                                    not_before: None,
                                },
                                &format!("token endpoint: {e}"),
                            )
                        });
                    }
                };
                let tok = parsed
                    .as_ref()
                    .and_then(|v| v.get("access_token"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let ttl = parsed
                    .as_ref()
                    .and_then(|v| v.get("expires_in"))
                    .and_then(Value::as_u64)
                    .unwrap_or(300);
                match tok {
                    Some(t) => {
                        *cur = Some((t.clone(), Instant::now() + Duration::from_secs(ttl)));
                        Ok(t)
                    }
                    None => Err(failed(
                        Decision::Retry {
                            reason: Reason::Unauthorized,
                            not_before: None,
                        },
                        "token endpoint answered without access_token",
                    )),
                }
            }
        }
    }

    /// Forget a credential the portal said expired (only if nobody renewed it meanwhile).
    async fn invalidate(&self, stale: &str) {
        match &self.auth {
            Auth::Session { current, .. } => {
                let mut cur = current.lock().await;
                if cur.as_deref() == Some(stale) {
                    *cur = None;
                }
            }
            Auth::OAuth2 { current, .. } => {
                let mut cur = current.lock().await;
                if cur.as_ref().map(|(t, _)| t.as_str()) == Some(stale) {
                    *cur = None;
                }
            }
        }
    }
}
