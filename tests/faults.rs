//! The fault-injection suite: streams of versioned dossier events through the gateway while
//! something breaks, then the ledger checker (`gw_testkit::checker`, definitions in its
//! module doc) compares what was acked with the effects the sandboxes recorded and the dead
//! letters the store holds. Every scenario prints one `FAULTS <scenario>: …` line of figures
//! and fails unless lost = 0, duplicate effects = 0, older-after-newer = 0 (and no phantom
//! effects).
//!
//! 1. `faults_sigkill_embedded`, `faults_sigkill_portal_embedded`: the gateway binary SIGKILLed
//!    at random points, half of them right after the sink / the portal answered (before the
//!    ledger write and the ack).
//! 2. `faults_rabbitmq_stop_start`: a private RabbitMQ node `stop_app` / `start_app` twice
//!    mid-stream (PostgreSQL store).
//! 3. `faults_postgres_restart`: a private PostgreSQL cluster stopped (immediate) and started
//!    twice mid-stream (RabbitMQ broker).
//! 4. `faults_portal_sandbox`: the DVCQG portal sandbox with 50% 5xx, timeouts, 429 with
//!    Retry-After, resets, slow answers and HTTP-200-with-error, then a long outage and recovery.
//! 5. `faults_tcp_proxy`: our own TCP proxy between the gateway and RabbitMQ and between the
//!    gateway and the portal: cuts, resets, stalls, slowness, refusals (RabbitMQ + PostgreSQL).
//! 6. `faults_poison_*`: poison mixed in: dossiers the sink always refuses, and garbage
//!    published straight onto the route's queue; dead-lettered with a reason, nothing else lost.
//! 7. `faults_disk_full_embedded`: the embedded data directory on a small tmpfs filled to the
//!    brim, then space freed.
//!
//! Short by default (a few hundred events each); `GW_FAULTS_SCALE=10` multiplies events, kills
//! and fault rounds for a long run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gateway::app;
use gateway::lab::simulator;
use gw_contract_tests::portal::{Faults as PortalFaults, Portal, PortalConfig};
use gw_contract_tests::sink::{Faults, Sink};
use gw_store::{DeadLetterFilter, Store};
use gw_testkit::checker::{self, Call, Dead, Input, Report, Semantics, Sent};
use gw_testkit::proxy::Proxy;
use gw_testkit::services::{PgCluster, RabbitNode};
use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// `GW_FAULTS_SCALE` (default 1): multiplies events, kills and fault rounds.
fn scale() -> usize {
    gw_testkit::scale_from("GW_FAULTS_SCALE")
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The gateway config of one route `route` → adapter `adapter_toml` (`[adapters.x]` named `to`).
fn config(
    broker: &str,
    store: &str,
    data: &Path,
    route: &str,
    to: &str,
    adapter_toml: &str,
) -> String {
    format!(
        r#"
[gateway]
instance = "test"
data_dir = "{data}"
shutdown_grace = "3s"

[broker]
{broker}
prefetch = 64

[store]
{store}

[inbound]
listen = "127.0.0.1:0"

[ops]
listen = "127.0.0.1:0"

[retry]
initial = "50ms"
max_delay = "500ms"
max_elapsed = "1h"

[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
kinds = ["dossier.*"]

{adapter_toml}

[[routes]]
name = "{route}"
from = "onestop"
kinds = ["dossier.*"]
to = "{to}"
concurrency = 8
"#,
        data = data.display()
    )
}

fn amqp(url: &str) -> String {
    format!("url = \"{url}\"\npassword = {{ env = \"GW_TEST_AMQP_PASSWORD\" }}\n")
}

fn pg(url: &str) -> String {
    format!("url = \"{url}\"\n")
}

const SHARED_AMQP: &str = "amqp://guest@127.0.0.1:5672/%2f";

fn shared_pg(schema: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}")
}

fn sink_adapter(url: &str) -> String {
    format!("[adapters.sink]\nconnector = \"http\"\nurl = \"{url}\"\ntimeout = \"2s\"\n")
}

fn portal_adapter(portal: &Portal, integration: &str, sharing: &str) -> String {
    let cfg = portal.config();
    std::env::set_var("GW_TEST_PORTAL_PASSWORD", &cfg.password);
    format!(
        r#"[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "2s"

[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
auth = "session"
username = "{user}"
password = {{ env = "GW_TEST_PORTAL_PASSWORD" }}
batch_max_items = 5
"#,
        unit = cfg.units[0],
        user = cfg.username,
    )
}

// ---------------------------------------------------------------------------------------------
// The event stream

/// One event of the plan.
#[derive(Clone)]
struct Ev {
    key: String,
    version: i64,
    payload: Value,
}

/// `dossiers` dossiers of `versions` versions each, for the sink: the payload names the event.
fn sink_plan(prefix: &str, dossiers: usize, versions: i64) -> Vec<Vec<Ev>> {
    (0..dossiers)
        .map(|d| {
            let key = format!("{prefix}-{d:05}");
            (1..=versions)
                .map(|v| Ev {
                    payload: json!({"event_id": format!("{key}#{v}"), "dossier": key, "seq": v}),
                    key: key.clone(),
                    version: v,
                })
                .collect()
        })
        .collect()
}

/// Simulated dossiers for the portal: their snapshots only (versions 1, 2, … marked `vN` in
/// `GhiChu`). Progress steps are left out: the portal has no idempotency key for them, so a
/// step repeated after a lost answer cannot be told from a new one.
fn portal_plan(first: usize, dossiers: usize, max_snapshots: usize) -> Vec<Vec<Ev>> {
    let mut rng = rand::rng();
    (first..first + dossiers)
        .map(|seq| {
            simulator::dossier_events(&mut rng, "000.00.01.H22", seq, max_snapshots)
                .into_iter()
                .filter_map(|e| {
                    Some(Ev {
                        version: e.version?,
                        key: e.key,
                        payload: e.payload,
                    })
                })
                .collect()
        })
        .collect()
}

/// Where the senders post (None while the gateway is down).
type Target = Arc<Mutex<Option<String>>>;

/// The test's side of the ledger: every event offered (acked or indeterminate), and how the
/// gateway's inbound answered the attempts.
#[derive(Default)]
struct Ledger {
    sent: Mutex<Vec<Sent>>,
    accepted: AtomicU64,
    /// 5xx / 429 answers (retried).
    unavailable: AtomicU64,
    /// Connection refused (gateway down; retried, it never got the event).
    unreachable: AtomicU64,
    /// No answer (timeout, connection dropped; retried).
    no_answer: AtomicU64,
    /// Final 4xx refusals.
    refused: AtomicU64,
}

impl Ledger {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
    fn answers(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "202 {}, 5xx/429 {}, unreachable {}, no answer {}, refused {}",
            g(&self.accepted),
            g(&self.unavailable),
            g(&self.unreachable),
            g(&self.no_answer),
            g(&self.refused)
        )
    }
}

type Log = Arc<Ledger>;

/// Send one event: retried while the gateway is unreachable or answers 5xx (the one-stop
/// system's behaviour), until `202` (acked) or `deadline` (indeterminate if any attempt may
/// have reached it). A 4xx refusal is final and not recorded.
async fn send_one(
    client: &reqwest::Client,
    target: &Target,
    ev: &Ev,
    log: &Log,
    deadline: Instant,
) {
    let body = json!({"kind": "dossier.upserted", "key": ev.key, "version": ev.version, "payload": ev.payload});
    let mut maybe = false;
    let record = |acked: bool| {
        log.sent.lock().unwrap().push(Sent {
            id: format!("{}#{}", ev.key, ev.version),
            dossier: ev.key.clone(),
            seq: ev.version,
            idempotency_key: Sent::key_for(&ev.key, ev.version),
            acked,
        })
    };
    let count = |a: &AtomicU64| a.fetch_add(1, Ordering::Relaxed);
    while Instant::now() < deadline {
        let url = target.lock().unwrap().clone();
        let Some(url) = url else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        match client
            .post(format!("{url}/in/onestop"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 202 => {
                count(&log.accepted);
                return record(true);
            }
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                count(&log.refused);
                eprintln!("refused {}@{}: {}", ev.key, ev.version, r.status());
                return;
            }
            Ok(_) => {
                count(&log.unavailable);
                maybe = true
            }
            Err(e) if e.is_connect() => {
                count(&log.unreachable);
            }
            Err(_) => {
                count(&log.no_answer);
                maybe = true
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if maybe {
        record(false);
    }
}

/// Send `plan` with `workers` concurrent senders (each owns whole dossiers, so each dossier's
/// versions go out in order), spread over about `spread`; each event is retried for at most
/// `per_event`. Returns when everything was sent or `deadline` passed.
async fn stream(
    target: Target,
    plan: Vec<Vec<Ev>>,
    workers: usize,
    spread: Duration,
    log: Log,
    deadline: Instant,
) {
    stream_with(
        target,
        plan,
        workers,
        spread,
        log,
        deadline,
        Duration::from_secs(60),
    )
    .await
}

async fn stream_with(
    target: Target,
    plan: Vec<Vec<Ev>>,
    workers: usize,
    spread: Duration,
    log: Log,
    deadline: Instant,
    per_event: Duration,
) {
    let events: usize = plan.iter().map(Vec::len).sum();
    let pause = spread * workers as u32 / events.max(1) as u32;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut mine: Vec<Vec<Vec<Ev>>> = vec![Vec::new(); workers];
    for (i, d) in plan.into_iter().enumerate() {
        mine[i % workers].push(d);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for dossiers in mine {
        let (client, target, log) = (client.clone(), target.clone(), log.clone());
        tasks.spawn(async move {
            let rounds = dossiers.iter().map(Vec::len).max().unwrap_or(0);
            for round in 0..rounds {
                for d in &dossiers {
                    if let Some(ev) = d.get(round) {
                        let until = deadline.min(Instant::now() + per_event);
                        send_one(&client, &target, ev, &log, until).await;
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// What the parties saw

fn sink_calls(sink: &Sink) -> (Vec<Call>, u64) {
    let calls = sink
        .records()
        .into_iter()
        .map(|r| Call {
            idempotency_key: r.idempotency_key,
            dossier: r.key,
            seq: r.version.unwrap_or(-1),
        })
        .collect();
    (calls, sink.refused())
}

fn version_of(item: &Value) -> Option<i64> {
    item.get("GhiChu")?
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

/// The portal's accepted dossier items as calls; refused = `DongBoHoSoMC` requests that stored
/// nothing (a batch of items counts as one request).
fn portal_calls(portal: &Portal) -> (Vec<Call>, u64) {
    let r = portal.records();
    let mut calls = Vec::new();
    let mut requests = BTreeSet::new();
    for (code, versions) in &r.dossiers {
        for v in versions {
            requests.insert(v.seq);
            let seq = version_of(&v.item).unwrap_or(-1);
            calls.push(Call {
                idempotency_key: Sent::key_for(code, seq),
                dossier: code.clone(),
                seq,
            });
        }
    }
    let total = r.calls.get("DongBoHoSoMC").copied().unwrap_or(0);
    (calls, total.saturating_sub(requests.len() as u64))
}

async fn dead_letters(store: &dyn Store) -> Vec<Dead> {
    store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|d| Dead {
            seq: serde_json::from_slice::<Value>(&d.letter.envelope)
                .ok()
                .and_then(|e| e.get("version").and_then(Value::as_i64)),
            dossier: d.letter.key,
            reason: d.letter.reason,
        })
        .collect()
}

/// Which sandbox a scenario checks.
enum Party<'a> {
    Sink(&'a Sink),
    Portal(&'a Portal),
}

impl Party<'_> {
    fn calls(&self) -> (Vec<Call>, u64) {
        match self {
            Party::Sink(s) => sink_calls(s),
            Party::Portal(p) => portal_calls(p),
        }
    }
    fn semantics(&self) -> Semantics {
        match self {
            Party::Sink(_) => Semantics::IdempotencyKey,
            Party::Portal(_) => Semantics::LastWriteWins,
        }
    }
}

async fn report(party: &Party<'_>, log: &Log, store: &dyn Store) -> Report {
    let (calls, refused_calls) = party.calls();
    let input = Input {
        sent: log.sent(),
        calls,
        refused_calls,
        dead: dead_letters(store).await,
    };
    checker::check(&input, party.semantics())
}

/// Wait until nothing acked is lost any more (or `timeout`), let late calls land, then check.
async fn settle(party: &Party<'_>, log: &Log, store: &dyn Store, timeout: Duration) -> Report {
    let start = Instant::now();
    loop {
        let r = report(party, log, store).await;
        if r.lost.is_empty() || start.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late retries of older versions would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    report(party, log, store).await
}

/// Print the inbound's answers and the gateway's outcomes, then the checker's figures; fail
/// unless the checker is satisfied.
fn verdict(scenario: &str, r: &Report, log: &Log, outcomes: &str) {
    println!(
        "FAULTS {scenario}: inbound answers: {}; gateway outcomes: {outcomes}",
        log.answers()
    );
    r.print_and_assert(scenario);
}

async fn start_gateway(text: &str) -> app::Running {
    let loaded = load(text);
    app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts")
}

fn target_of(running: &app::Running) -> Target {
    Arc::new(Mutex::new(Some(format!("http://{}", running.inbound_addr))))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL

struct Child9 {
    child: Child,
}

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many effects the party has recorded (to kill right after one).
fn effects_so_far(party: &Party<'_>) -> usize {
    match party {
        Party::Sink(s) => s.records().len(),
        Party::Portal(p) => p.records().dossiers.values().map(Vec::len).sum(),
    }
}

async fn sigkill(to_portal: bool) {
    let n = scale();
    let kills = 8 * n;
    // Slow-ish parties keep deliveries in flight when the kill lands.
    let sink = Sink::start(
        0,
        Faults {
            delay_ms: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    portal.set_faults(PortalFaults {
        delay_ms: 5,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let route = unique("fk");
    let cfg = dir.path().join("gateway.toml");
    let data = dir.path().join("data");
    let (to, adapter, plan, party, name) = if to_portal {
        (
            "dvcqg",
            portal_adapter(&portal, &portal.integration_url(), &portal.sharing_url()),
            portal_plan(0, 100 * n, 6),
            Party::Portal(&portal),
            "portal",
        )
    } else {
        (
            "sink",
            sink_adapter(&sink.url()),
            sink_plan("kill", 120 * n, 5),
            Party::Sink(&sink),
            "sink",
        )
    };
    std::fs::write(&cfg, config("", "", &data, &route, to, &adapter)).unwrap();
    let log: Log = Arc::default();
    let target: Target = Arc::default();
    let started = Instant::now();
    let sender = tokio::spawn(stream(
        target.clone(),
        plan,
        8,
        Duration::from_secs(10 * n as u64),
        log.clone(),
        Instant::now() + Duration::from_secs(60 * n as u64),
    ));
    let mut after_answer = 0;
    for round in 0..kills {
        let (child, inbound) = common::spawn_gateway(&cfg, "error");
        let mut g = Child9 { child };
        *target.lock().unwrap() = Some(inbound);
        let live = Duration::from_millis(rand::rng().random_range(300..1500));
        tokio::time::sleep(live).await;
        if round % 2 == 1 {
            // Right after the party answered: its record is written just before the answer
            // leaves, so the gateway holds an answer it has neither recorded nor acked.
            let before = effects_so_far(&party);
            let wait = Instant::now() + Duration::from_secs(3);
            while effects_so_far(&party) == before && Instant::now() < wait {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if effects_so_far(&party) > before {
                after_answer += 1;
            }
        }
        *target.lock().unwrap() = None;
        g.child.kill().expect("SIGKILL");
        g.child.wait().expect("reaped");
    }
    // The final run: no more kills.
    let (child, inbound) = common::spawn_gateway(&cfg, "error");
    let g = Child9 { child };
    *target.lock().unwrap() = Some(inbound);
    sender.await.unwrap();
    let loaded = load(&std::fs::read_to_string(&cfg).unwrap());
    let store = gw_store::open(&loaded.store_url().unwrap()).await.unwrap();
    let r = settle(&party, &log, store.as_ref(), Duration::from_secs(120)).await;
    let outcomes = "(in the killed child processes)".to_string();
    drop(g);
    println!(
        "FAULTS sigkill (embedded, {name}): {kills} SIGKILLs ({after_answer} right after an answer), {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(r.acked > 100, "too little acked to mean anything: {r:?}");
    verdict(
        &format!("1 sigkill (embedded, {name})"),
        &r,
        &log,
        &outcomes,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_sigkill_embedded() {
    sigkill(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_sigkill_portal_embedded() {
    sigkill(true).await;
}

// ---------------------------------------------------------------------------------------------
// 2. RabbitMQ stopped and started

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_rabbitmq_stop_start() {
    const T: &str = "faults_rabbitmq_stop_start";
    if !services_available(T) {
        return;
    }
    if !RabbitNode::available() {
        return gw_testkit::skip(
            T,
            "RabbitMQ's scripts are not installed (/usr/lib/rabbitmq/bin)",
        );
    }
    let n = scale();
    let node = blocking(RabbitNode::start)
        .await
        .expect("a private RabbitMQ node starts");
    let node = Arc::new(node);
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("frmq");
    let text = config(
        &amqp(&node.url()),
        &pg(&shared_pg(&route)),
        dir.path(),
        &route,
        "sink",
        &sink_adapter(&sink.url()),
    );
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let spread = Duration::from_secs(12 * n as u64);
    let sender = tokio::spawn(stream(
        target_of(&running),
        sink_plan("rmq", 100 * n, 5),
        8,
        spread,
        log.clone(),
        Instant::now() + spread + Duration::from_secs(60),
    ));
    let started = Instant::now();
    let mut outages = 0;
    for _ in 0..2 * n {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1500..3000))).await;
        let nd = node.clone();
        blocking(move || nd.stop_app()).await.expect("stop_app");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let nd = node.clone();
        blocking(move || nd.start_app()).await.expect("start_app");
        outages += 1;
    }
    sender.await.unwrap();
    let store = running.engine.store.clone();
    let r = settle(
        &Party::Sink(&sink),
        &log,
        store.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    println!(
        "FAULTS rabbitmq stop_app/start_app (private node, PostgreSQL store): {outages} outages of 3s, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    running.shutdown().await;
    assert!(r.acked > 100, "too little acked: {r:?}");
    verdict("2 rabbitmq stop/start", &r, &log, &outcomes);
}

// ---------------------------------------------------------------------------------------------
// 3. PostgreSQL restarted

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_postgres_restart() {
    const T: &str = "faults_postgres_restart";
    if !services_available(T) {
        return;
    }
    if !PgCluster::available() {
        return gw_testkit::skip(
            T,
            "a private PostgreSQL cluster needs PostgreSQL's binaries, runuser and root",
        );
    }
    let n = scale();
    let cluster = Arc::new(
        blocking(PgCluster::start)
            .await
            .expect("a private PostgreSQL cluster starts"),
    );
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("fpg");
    let text = config(
        &amqp(SHARED_AMQP),
        &pg(&cluster.url(&route)),
        dir.path(),
        &route,
        "sink",
        &sink_adapter(&sink.url()),
    );
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let spread = Duration::from_secs(12 * n as u64);
    let sender = tokio::spawn(stream(
        target_of(&running),
        sink_plan("pg", 100 * n, 5),
        8,
        spread,
        log.clone(),
        Instant::now() + spread + Duration::from_secs(60),
    ));
    let started = Instant::now();
    let mut restarts = 0;
    for _ in 0..2 * n {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1500..3000))).await;
        let c = cluster.clone();
        blocking(move || c.stop()).await.expect("pg stop");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = cluster.clone();
        blocking(move || c.start_again()).await.expect("pg start");
        restarts += 1;
    }
    sender.await.unwrap();
    let store = running.engine.store.clone();
    let r = settle(
        &Party::Sink(&sink),
        &log,
        store.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    println!(
        "FAULTS postgres restart (private cluster, RabbitMQ broker): {restarts} immediate stops of 2s, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    running.shutdown().await;
    assert!(r.acked > 100, "too little acked: {r:?}");
    verdict("3 postgres restart", &r, &log, &outcomes);
}

// ---------------------------------------------------------------------------------------------
// 4. Portal sandbox faults

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_portal_sandbox() {
    let n = scale();
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("fportal");
    let text = config(
        "",
        "",
        dir.path(),
        &route,
        "dvcqg",
        &portal_adapter(&portal, &portal.integration_url(), &portal.sharing_url()),
    );
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let spread = Duration::from_secs(12 * n as u64);
    let sender = tokio::spawn(stream(
        target_of(&running),
        portal_plan(0, 80 * n, 6),
        8,
        spread,
        log.clone(),
        Instant::now() + spread + Duration::from_secs(60),
    ));
    let started = Instant::now();
    // Everything at once: half the calls 5xx, and the rest of the menu.
    portal.set_faults(PortalFaults {
        reset_rate: 0.05,
        timeout_rate: 0.03,
        hold_ms: 2500,
        server_error_rate: 0.5,
        too_many_rate: 0.07,
        retry_after_secs: 1,
        error_code_rate: 0.08,
        delay_ms: 30,
        ..Default::default()
    });
    tokio::time::sleep(spread / 2).await;
    // A long outage, then recovery.
    portal.set_faults(PortalFaults {
        down: true,
        ..Default::default()
    });
    let outage = Duration::from_secs(6 * n as u64);
    tokio::time::sleep(outage).await;
    portal.set_faults(PortalFaults::default());
    sender.await.unwrap();
    let store = running.engine.store.clone();
    let r = settle(
        &Party::Portal(&portal),
        &log,
        store.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    let rec = portal.records();
    println!(
        "FAULTS portal sandbox (embedded): injected {:?}, outage {outage:?}, {:.1}s",
        rec.injected,
        started.elapsed().as_secs_f64()
    );
    running.shutdown().await;
    assert!(r.acked > 100, "too little acked: {r:?}");
    verdict("4 portal sandbox faults", &r, &log, &outcomes);
}

// ---------------------------------------------------------------------------------------------
// 5. TCP proxy between the gateway and RabbitMQ / the portal

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_tcp_proxy() {
    const T: &str = "faults_tcp_proxy";
    if !services_available(T) {
        return;
    }
    let n = scale();
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let to_portal = Proxy::start(portal.addr).await.unwrap();
    let to_rabbit = Proxy::start(([127, 0, 0, 1], 5672).into()).await.unwrap();
    let swap = |url: String| url.replace(&portal.addr.to_string(), &to_portal.addr.to_string());
    let dir = tempfile::tempdir().unwrap();
    let route = unique("fproxy");
    let text = config(
        &amqp(&format!("amqp://guest@{}/%2f", to_rabbit.addr)),
        &pg(&shared_pg(&route)),
        dir.path(),
        &route,
        "dvcqg",
        &portal_adapter(
            &portal,
            &swap(portal.integration_url()),
            &swap(portal.sharing_url()),
        ),
    );
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let spread = Duration::from_secs(15 * n as u64);
    let sender = tokio::spawn(stream(
        target_of(&running),
        portal_plan(0, 80 * n, 6),
        8,
        spread,
        log.clone(),
        Instant::now() + spread + Duration::from_secs(60),
    ));
    let started = Instant::now();
    let mut actions = Vec::new();
    let pause = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
    for _ in 0..n {
        pause(800).await;
        to_portal.slow(Duration::from_millis(30));
        actions.push("portal slow");
        pause(1500).await;
        to_portal.heal();
        to_portal.stall(true);
        actions.push("portal stall");
        pause(2500).await;
        to_portal.heal();
        to_portal.reset();
        actions.push("portal reset");
        pause(500).await;
        to_portal.set_down(true);
        to_portal.cut();
        actions.push("portal cut+down");
        pause(2000).await;
        to_portal.heal();
        to_rabbit.cut();
        actions.push("broker cut");
        pause(1000).await;
        to_rabbit.slow(Duration::from_millis(20));
        actions.push("broker slow");
        pause(1500).await;
        to_rabbit.heal();
        to_rabbit.stall(true);
        actions.push("broker stall");
        pause(2000).await;
        to_rabbit.heal();
        to_rabbit.reset();
        actions.push("broker reset");
        pause(500).await;
        to_rabbit.set_down(true);
        to_rabbit.cut();
        actions.push("broker cut+down");
        pause(2000).await;
        to_rabbit.heal();
    }
    sender.await.unwrap();
    let store = running.engine.store.clone();
    let r = settle(
        &Party::Portal(&portal),
        &log,
        store.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    println!(
        "FAULTS tcp proxy (RabbitMQ + PostgreSQL, portal): {} actions ({}), portal proxy {:?}, broker proxy {:?}, {:.1}s",
        actions.len(),
        actions[..actions.len().min(9)].join(", "),
        to_portal.stats(),
        to_rabbit.stats(),
        started.elapsed().as_secs_f64()
    );
    running.shutdown().await;
    assert!(r.acked > 100, "too little acked: {r:?}");
    verdict("5 tcp proxy", &r, &log, &outcomes);
}

// ---------------------------------------------------------------------------------------------
// 6. Poison messages

async fn poison(backend: Backend) {
    let n = scale();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("fpoison");
    let plan = sink_plan("poison", 100 * n, 4);
    // Every tenth dossier is refused by the sink whatever the version (HTTP 400).
    let poison_keys: BTreeSet<String> = plan.iter().step_by(10).map(|d| d[0].key.clone()).collect();
    let sink = Sink::start(
        0,
        Faults {
            poison_keys: poison_keys.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (broker, store) = match backend {
        Backend::Embedded => (String::new(), String::new()),
        Backend::RabbitPg => (amqp(SHARED_AMQP), pg(&shared_pg(&route))),
    };
    let text = config(
        &broker,
        &store,
        dir.path(),
        &route,
        "sink",
        &sink_adapter(&sink.url()),
    );
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let spread = Duration::from_secs(6 * n as u64);
    let sender = tokio::spawn(stream(
        target_of(&running),
        plan,
        8,
        spread,
        log.clone(),
        Instant::now() + spread + Duration::from_secs(60),
    ));
    // Garbage straight onto the route's queue, between the good events.
    let garbage: Vec<&[u8]> = vec![
        b"not json at all",
        b"{\"json\": \"but not an envelope\"}",
        b"\xff\xfe\x00 binary",
        b"",
        b"{\"id\": \"nope\", \"kind\": 7}",
    ];
    let queue = running.engine.routes[0].queue(0);
    for (i, g) in garbage.iter().enumerate() {
        tokio::time::sleep(spread / 8).await;
        running
            .engine
            .broker
            .publish(
                &queue,
                gw_broker::Message {
                    id: format!("garbage-{i}"),
                    key: format!("garbage-{i}"),
                    headers: Default::default(),
                    attempt: 0,
                    body: g.to_vec().into(),
                },
            )
            .await
            .expect("garbage published");
    }
    sender.await.unwrap();
    let st = running.engine.store.clone();
    let r = settle(
        &Party::Sink(&sink),
        &log,
        st.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    // Every garbage message and every poison dossier is a dead letter with a reason.
    let dead = dead_letters(st.as_ref()).await;
    let dead_keys: BTreeSet<&str> = dead.iter().map(|d| d.dossier.as_str()).collect();
    for i in 0..garbage.len() {
        assert!(
            dead_keys.contains(format!("garbage-{i}").as_str()),
            "garbage-{i} was not dead-lettered: {dead:?}"
        );
    }
    for k in &poison_keys {
        assert!(
            dead_keys.contains(k.as_str()),
            "poison {k} not dead-lettered"
        );
    }
    assert!(dead.iter().all(|d| !d.reason.is_empty()), "{dead:?}");
    let garbage_reasons: BTreeSet<&str> = dead
        .iter()
        .filter(|d| d.dossier.starts_with("garbage-"))
        .map(|d| d.reason.as_str())
        .collect();
    println!(
        "FAULTS poison ({backend:?}): {} poison dossiers, {} garbage messages, garbage reasons {garbage_reasons:?}",
        poison_keys.len(),
        garbage.len()
    );
    running.shutdown().await;
    // Each version of a poison dossier is refused on its own (none coalesced away while the
    // previous one was being refused): exactly the poison dossiers' acked events are dead letters.
    let poison_acked = log
        .sent()
        .iter()
        .filter(|s| s.acked && poison_keys.contains(&s.dossier))
        .count();
    assert_eq!(
        r.dead_lettered.values().sum::<u64>() as usize,
        poison_acked,
        "only the poison dossiers end as dead letters: {r:?}"
    );
    verdict(&format!("6 poison ({backend:?})"), &r, &log, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_poison_embedded() {
    poison(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_poison_rabbitmq_postgres() {
    if services_available("faults_poison_rabbitmq_postgres") {
        poison(Backend::RabbitPg).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Disk nearly full

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("gwfaults-disk")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill `dir` with `filler` until writing fails, then free `keep` bytes.
fn fill(filler: &Path, keep: usize) -> std::io::Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(filler)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => written += k as u64,
        }
    }
    let _ = f.flush();
    let len = written.saturating_sub(keep as u64);
    f.set_len(len)?;
    Ok(len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_disk_full_embedded() {
    let n = scale();
    let fs = match Tmpfs::mount("16m") {
        Ok(fs) => fs,
        Err(why) => {
            // Mounting needs CAP_SYS_ADMIN; without it there is no honest way to fill a disk
            // here (filling the real one would hurt everyone else on the machine).
            eprintln!("SKIPPED faults_disk_full_embedded: {why}");
            return;
        }
    };
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let route = unique("fdisk");
    let data = fs.path().join("data");
    let text = config("", "", &data, &route, "sink", &sink_adapter(&sink.url()));
    let running = start_gateway(&text).await;
    let _queues = Queues::of(&running);
    let log: Log = Arc::default();
    let target = target_of(&running);
    // A first part with room.
    stream(
        target.clone(),
        sink_plan("disk-a", 40 * n, 3),
        8,
        Duration::from_secs(2),
        log.clone(),
        Instant::now() + Duration::from_secs(60),
    )
    .await;
    // Nearly full: 32 KiB left, and the sink holds its answers, so the queue grows.
    let filler = fs.path().join("filler");
    let filled = blocking({
        let f = filler.clone();
        move || fill(&f, 32 * 1024)
    })
    .await
    .expect("filler written");
    sink.set_faults(Faults {
        down: true,
        ..Default::default()
    });
    let before = log.sent().iter().filter(|s| s.acked).count();
    stream_with(
        target.clone(),
        sink_plan("disk-b", 100 * n, 3),
        8,
        Duration::from_secs(4),
        log.clone(),
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await;
    let acked_full = log.sent().iter().filter(|s| s.acked).count() - before;
    let offered_full = 300 * n;
    let answers_full = log.answers();
    // Space again, and the sink back.
    std::fs::remove_file(&filler).unwrap();
    sink.set_faults(Faults::default());
    let freed = Instant::now();
    stream(
        target.clone(),
        sink_plan("disk-c", 40 * n, 3),
        8,
        Duration::from_secs(2),
        log.clone(),
        Instant::now() + Duration::from_secs(60),
    )
    .await;
    let store = running.engine.store.clone();
    let r = settle(
        &Party::Sink(&sink),
        &log,
        store.as_ref(),
        Duration::from_secs(120),
    )
    .await;
    let outcomes = format!("{:?}", running.engine.metrics.route_counts(&route).outcomes);
    let recovered = freed.elapsed().as_secs_f64();
    println!(
        "FAULTS disk full (embedded on a 16 MiB tmpfs, {filled} bytes of filler): while full {acked_full} of {offered_full} events acked (inbound so far: {answers_full}); settled {recovered:.1}s after space was freed (a settle lost in a rolled-back batch waits for its lease to expire, 60s)"
    );
    running.shutdown().await;
    verdict("7 disk nearly full (embedded)", &r, &log, &outcomes);
}
