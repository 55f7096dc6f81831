//! Dossier synchronization with the national portal, end to end against the strict portal
//! sandbox: the happy path, every fault kind, a long outage with coalescing, refusals, on the
//! embedded defaults and on RabbitMQ + PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use gateway::app;
use gateway::lab::simulator::{self, Event};
use gateway::model::outcome::{Decision, Reason};
use gw_contract_tests::portal::{FaultKind, Faults, Portal, PortalConfig, Scripted};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn portal_config(
    backend: Backend,
    data: &Path,
    route: &str,
    portal: &Portal,
    extra_retry: &str,
    batch_items: usize,
) -> String {
    let cfg = portal.config();
    let (broker, store) = match backend {
        Backend::Embedded => (String::new(), String::new()),
        Backend::RabbitPg => (
            "url = \"amqp://guest@127.0.0.1:5672/%2f\"\npassword = { env = \"GW_TEST_AMQP_PASSWORD\" }\n".to_string(),
            format!("url = \"postgres://postgres@127.0.0.1:5432/test?schema={route}\"\n"),
        ),
    };
    std::env::set_var("GW_TEST_PORTAL_PASSWORD", &cfg.password);
    format!(
        r#"
[gateway]
instance = "test"
data_dir = "{data}"
shutdown_grace = "5s"

[broker]
{broker}
prefetch = 128

[store]
{store}

[inbound]
listen = "127.0.0.1:0"

[ops]
listen = "127.0.0.1:0"

# A cool-down on the scale of the quick test retries (the default is 30s).
[circuit]
open_for = "500ms"

[retry]
initial = "50ms"
max_delay = "500ms"
max_elapsed = "1h"
{extra_retry}

[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
kinds = ["dossier.*"]

[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "2s"

[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
auth = "session"
username = "{user}"
password = {{ env = "GW_TEST_PORTAL_PASSWORD" }}
batch_max_items = {batch_items}

[[routes]]
name = "{route}"
from = "onestop"
kinds = ["dossier.*"]
to = "dvcqg"
concurrency = 16
"#,
        data = data.display(),
        integration = portal.integration_url(),
        sharing = portal.sharing_url(),
        unit = cfg.units[0],
        user = cfg.username,
    )
}

async fn post(client: &reqwest::Client, inbound: std::net::SocketAddr, e: &Event) -> u16 {
    let mut body = serde_json::json!({"kind": e.kind, "key": e.key, "payload": e.payload});
    if let Some(v) = e.version {
        body["version"] = v.into();
    }
    for _ in 0..50 {
        match client
            .post(format!("http://{inbound}/in/onestop"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 202 => return 202,
            Ok(r) if r.status().is_client_error() => return r.status().as_u16(),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("inbound never accepted {}", e.key);
}

/// Generate `n` dossiers and send every event in order per dossier, dossiers concurrently.
async fn send_dossiers(
    inbound: std::net::SocketAddr,
    first: usize,
    n: usize,
    max_snapshots: usize,
) -> (BTreeMap<String, i64>, BTreeMap<String, usize>, usize) {
    let mut plan = Vec::new();
    let mut rng = rand::rng();
    for seq in first..first + n {
        plan.push(simulator::dossier_events(
            &mut rng,
            "000.00.01.H22",
            seq,
            max_snapshots,
        ));
    }
    let mut newest = BTreeMap::new();
    let mut steps = BTreeMap::new();
    let mut events = 0;
    for evs in &plan {
        for e in evs {
            events += 1;
            if let Some(v) = e.version {
                newest.insert(e.key.clone(), v);
            } else {
                *steps.entry(e.key.clone()).or_insert(0) += 1;
            }
        }
    }
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for evs in plan {
        let client = client.clone();
        tasks.spawn(async move {
            for e in evs {
                assert_eq!(post(&client, inbound, &e).await, 202, "{}", e.key);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    (newest, steps, events)
}

fn version_of(item: &Value) -> Option<i64> {
    item.get("GhiChu")?
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

/// Wait until the portal holds the newest version of every dossier and every progress step.
async fn wait_synced(
    portal: &Portal,
    newest: &BTreeMap<String, i64>,
    steps: &BTreeMap<String, usize>,
    timeout: Duration,
) {
    let start = Instant::now();
    loop {
        let r = portal.records();
        let behind: Vec<&String> = newest
            .iter()
            .filter(|(k, v)| r.latest(k).and_then(version_of) != Some(**v))
            .map(|(k, _)| k)
            .collect();
        let steps_missing: Vec<&String> = steps
            .iter()
            .filter(|(k, n)| r.progress.get(*k).map(Vec::len).unwrap_or(0) < **n)
            .map(|(k, _)| k)
            .collect();
        if behind.is_empty() && steps_missing.is_empty() {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "portal not in sync after {timeout:?}: {} dossiers behind (e.g. {:?}), {} missing progress (e.g. {:?}); refusals: {:?}",
                behind.len(),
                behind.iter().take(3).collect::<Vec<_>>(),
                steps_missing.len(),
                steps_missing.iter().take(3).collect::<Vec<_>>(),
                r.refused.iter().filter(|x| !x.injected).take(3).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No dossier ever went back to an older version at the portal, and nothing was refused by
/// the portal's rules (only injected faults).
fn assert_clean(portal: &Portal) {
    let r = portal.records();
    let violations = r.ordering_violations(|_, item| version_of(item));
    assert!(
        violations.is_empty(),
        "older after newer at the portal: {violations:?}"
    );
    // Refusals the gateway handles by design: an expired session (renewed once) and a progress
    // step that arrived while its dossier's snapshot was still being retried (retried too).
    let handled = |x: &&gw_contract_tests::portal::Refusal| {
        x.injected
            || x.error_code == "-2"
            || (x.error_code == "-8" && x.service == "CapNhatTienDoHoSoMC")
    };
    let refusals: Vec<_> = r.refused.iter().filter(|x| !handled(x)).collect();
    assert!(
        refusals.is_empty(),
        "the portal refused content: {refusals:?}"
    );
    assert!(
        r.unknown_fields.is_empty(),
        "unknown fields sent: {:?}",
        r.unknown_fields
    );
}

async fn happy_path(backend: Backend) {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("portal");
    let loaded = load(&portal_config(backend, dir.path(), &route, &portal, "", 20));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let (newest, steps, events) = send_dossiers(running.inbound_addr, 0, 60, 6).await;
    wait_synced(&portal, &newest, &steps, Duration::from_secs(90)).await;
    assert_clean(&portal);
    let r = portal.records();
    // isUpdating: false for the first version the portal got, true afterwards.
    for (code, versions) in &r.dossiers {
        assert!(!versions[0].is_updating, "{code}: first sync must create");
        assert!(
            versions[1..].iter().all(|v| v.is_updating),
            "{code}: later syncs update"
        );
    }
    assert_eq!(r.logins, 1, "one session shared by all calls");
    println!(
        "happy path ({backend:?}): {events} events, {} portal sync calls",
        r.calls.get("DongBoHoSoMC").copied().unwrap_or(0)
            + r.calls.get("CapNhatTienDoHoSoMC").copied().unwrap_or(0)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_happy_path_embedded() {
    happy_path(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_happy_path_rabbitmq_postgres() {
    if services_available("portal_happy_path_rabbitmq_postgres") {
        happy_path(Backend::RabbitPg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_kind_is_survived() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("faults");
    let loaded = load(&portal_config(
        Backend::Embedded,
        dir.path(),
        &route,
        &portal,
        "",
        5,
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    // Each fault kind, scripted for the next calls, then rates of everything at once.
    portal.set_faults(Faults {
        hold_ms: 3000,
        script: vec![
            Scripted {
                kind: FaultKind::ServerError,
                count: 3,
            },
            Scripted {
                kind: FaultKind::ErrorCode,
                count: 3,
            },
            Scripted {
                kind: FaultKind::TooManyRequests,
                count: 3,
            },
            Scripted {
                kind: FaultKind::Timeout,
                count: 2,
            },
            Scripted {
                kind: FaultKind::Reset,
                count: 3,
            },
            Scripted {
                kind: FaultKind::SessionExpired,
                count: 2,
            },
            Scripted {
                kind: FaultKind::Down,
                count: 3,
            },
        ],
        ..Default::default()
    });
    let (newest, steps, _) = send_dossiers(running.inbound_addr, 0, 20, 4).await;
    wait_synced(&portal, &newest, &steps, Duration::from_secs(90)).await;
    portal.set_faults(Faults {
        server_error_rate: 0.15,
        error_code_rate: 0.1,
        too_many_rate: 0.05,
        reset_rate: 0.05,
        retry_after_secs: 1,
        ..Default::default()
    });
    let (newest2, steps2, _) = send_dossiers(running.inbound_addr, 100, 30, 4).await;
    wait_synced(&portal, &newest2, &steps2, Duration::from_secs(120)).await;
    assert_clean(&portal);
    let r = portal.records();
    for kind in [
        "server_error",
        "error_code",
        "too_many_requests",
        "timeout",
        "reset",
        "session_expired",
        "down",
    ] {
        assert!(
            r.injected.get(kind).copied().unwrap_or(0) > 0,
            "fault {kind} was not exercised: {:?}",
            r.injected
        );
    }
    // Session expiry renews once per expiry, never in a loop.
    assert!(r.logins >= 2 && r.logins <= 6, "logins: {}", r.logins);
    let m = &running.engine.metrics;
    assert!(m.outcome_total("retried") > 0);
    assert_eq!(
        m.outcome_total("dead_lettered"),
        0,
        "faults are retried, not dead-lettered"
    );
    running.shutdown().await;
}

async fn outage_then_recovery(backend: Backend) {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("outage");
    let loaded = load(&portal_config(backend, dir.path(), &route, &portal, "", 20));
    portal.set_down(true);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let (newest, steps, events) = send_dossiers(running.inbound_addr, 0, 80, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_during = portal.records().requests;
    portal.set_down(false);
    let t = Instant::now();
    wait_synced(&portal, &newest, &steps, Duration::from_secs(120)).await;
    assert_clean(&portal);
    let r = portal.records();
    let accepted_versions: usize = r.dossiers.values().map(Vec::len).sum();
    let snapshots: usize = newest.values().map(|v| *v as usize).sum();
    let sync_calls = r.calls.get("DongBoHoSoMC").copied().unwrap_or(0);
    println!(
        "outage ({backend:?}): {events} events ({snapshots} snapshots); portal calls during the outage {calls_during}; after recovery {sync_calls} DongBoHoSoMC calls carrying {accepted_versions} dossier versions, drained in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    if std::env::var("GW_TEST_DEBUG").is_ok() {
        for (code, vs) in r.dossiers.iter().filter(|(_, v)| v.len() > 1).take(2) {
            println!(
                "{code}: portal got {:?}",
                vs.iter().map(|v| version_of(&v.item)).collect::<Vec<_>>()
            );
            for o in running.engine.store.outcomes_by_key(code).await.unwrap() {
                println!("   {:?} v{:?} {}", o.outcome, o.version, o.detail);
            }
        }
    }
    // Coalescing: far fewer snapshot deliveries than snapshots, and batches on top of that.
    assert!(
        accepted_versions < snapshots,
        "queued snapshots were coalesced: {accepted_versions} < {snapshots}"
    );
    // All snapshots were queued before the portal came back: the first snapshot of each dossier
    // (which creates it) and then about one more.
    assert!(
        accepted_versions <= newest.len() * 5 / 2,
        "coalescing left {accepted_versions} deliveries for {} dossiers",
        newest.len()
    );
    // Batching on top of coalescing: the calls carry more versions than there are calls (some
    // call carried several dossiers), so the portal sees fewer calls than deliveries.
    assert!(
        (sync_calls as usize) < accepted_versions,
        "batches: {sync_calls} calls for {accepted_versions} delivered versions"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_then_recovery_embedded() {
    outage_then_recovery(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_then_recovery_rabbitmq_postgres() {
    if services_available("outage_then_recovery_rabbitmq_postgres") {
        outage_then_recovery(Backend::RabbitPg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_content_is_dead_lettered_with_the_portals_message_and_neighbours_pass() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("refused");
    let loaded = load(&portal_config(
        Backend::Embedded,
        dir.path(),
        &route,
        &portal,
        "",
        20,
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let mut rng = rand::rng();
    // A national procedure code the portal's catalogue does not know: the portal refuses it.
    let mut bad = simulator::dossier_events(&mut rng, "000.00.01.H22", 9000, 1).remove(0);
    bad.payload["procedure_code"] = "9.999999".into();
    let client = reqwest::Client::new();
    assert_eq!(post(&client, running.inbound_addr, &bad).await, 202);
    let (newest, steps, _) = send_dossiers(running.inbound_addr, 0, 20, 3).await;
    wait_synced(&portal, &newest, &steps, Duration::from_secs(60)).await;
    let store = running.engine.store.clone();
    let start = Instant::now();
    let dl = loop {
        let dls = store
            .dead_letters(&gw_store::DeadLetterFilter {
                key: Some(bad.key.clone()),
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(d) = dls.into_iter().next() {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the refused dossier never reached the dead letters"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dl.letter.reason.contains("body_error_permanent"),
        "{}",
        dl.letter.reason
    );
    assert!(
        dl.letter.last_answer.contains("-9"),
        "the portal's code is kept: {}",
        dl.letter.last_answer
    );
    assert_eq!(dl.letter.attempts, 1);
    running.shutdown().await;
}

/// Through the provincial integration platform (LGSP): OAuth2 client-credentials tokens, one
/// refresh shared by all waiters, refreshed when the platform stops accepting a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth2_tokens_through_the_integration_platform() {
    use gw_contract_tests::portal::OAuth2Clients;
    let clients = OAuth2Clients {
        client_id: "gateway-h22".into(),
        client_secret: "lgsp-secret".into(),
        token_ttl_secs: 3600,
    };
    let portal = Portal::start(
        0,
        PortalConfig {
            oauth2: Some(clients),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("oauth2");
    std::env::set_var("GW_TEST_LGSP_SECRET", "lgsp-secret");
    let text = portal_config(Backend::Embedded, dir.path(), &route, &portal, "", 20).replace(
        "auth = \"session\"",
        &format!("auth = \"oauth2\"\ntoken_url = \"{}/token\"\nclient_id = \"gateway-h22\"\nclient_secret = {{ env = \"GW_TEST_LGSP_SECRET\" }}", portal.base_url()),
    );
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let (newest, steps, _) = send_dossiers(running.inbound_addr, 0, 30, 4).await;
    wait_synced(&portal, &newest, &steps, Duration::from_secs(60)).await;
    assert_eq!(
        portal.records().tokens_issued,
        1,
        "one token shared by every concurrent call"
    );
    // The platform forgets its tokens (restart, revocation): the next call refreshes once.
    portal.expire_tokens();
    let (newest2, steps2, _) = send_dossiers(running.inbound_addr, 100, 10, 2).await;
    wait_synced(&portal, &newest2, &steps2, Duration::from_secs(60)).await;
    assert_eq!(
        portal.records().tokens_issued,
        2,
        "exactly one refresh after the tokens were dropped"
    );
    assert_clean(&portal);
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The fault path, deterministically: scripted faults, the shipped circuit settings, batches
// gathered by a linger so that twenty items share one call.

/// A gateway whose dvcqg batches gather for 300 ms (so concurrent items share one call),
/// with the shipped circuit breaker (no `[circuit]` override).
async fn batching_gateway(portal: &Portal, dir: &Path, route: &str) -> app::Running {
    let text = portal_config(Backend::Embedded, dir, route, portal, "", 20)
        .replace(
            "batch_max_items = 20",
            "batch_max_items = 20\nbatch_linger = \"300ms\"",
        )
        .replace("[circuit]\nopen_for = \"500ms\"\n", "");
    assert!(!text.contains("[circuit]"), "the shipped circuit settings");
    app::start(&load(&text), CancellationToken::new())
        .await
        .expect("gateway starts")
}

/// One snapshot each of `n` dossiers, posted at once.
async fn post_snapshots(inbound: std::net::SocketAddr, first: usize, n: usize) -> Vec<Event> {
    let mut rng = rand::rng();
    let events: Vec<Event> = (first..first + n)
        .map(|seq| simulator::dossier_events(&mut rng, "000.00.01.H22", seq, 1).remove(0))
        .collect();
    let client = reqwest::Client::new();
    let posts = events.iter().map(|e| post(&client, inbound, e));
    for status in futures::future::join_all(posts).await {
        assert_eq!(status, 202);
    }
    events
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP 500 on a 20-item batch is one failed exchange, not twenty: the circuit stays
/// closed and the twenty arrive on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_500_on_a_20_item_batch_does_not_open_the_circuit() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("one500");
    let running = batching_gateway(&portal, dir.path(), &route).await;
    // Log in first, so the scripted fault meets the batch, not the login.
    post_snapshots(running.inbound_addr, 0, 1).await;
    wait_for("the first dossier", Duration::from_secs(30), || {
        portal.records().dossiers.len() == 1
    })
    .await;
    portal.fail_next(FaultKind::ServerError, 1);
    post_snapshots(running.inbound_addr, 1, 20).await;
    wait_for("twenty dossiers", Duration::from_secs(30), || {
        portal.records().dossiers.len() == 21
    })
    .await;
    let r = portal.records();
    assert_eq!(r.injected.values().sum::<u64>(), 1, "{:?}", r.injected);
    let seqs: std::collections::BTreeSet<u64> = r
        .dossiers
        .values()
        .filter_map(|v| v.last().map(|v| v.seq))
        .collect();
    assert!(
        seqs.len() <= 3,
        "the twenty travelled in one batch (calls: {seqs:?})"
    );
    let m = running.engine.metrics.clone();
    assert_eq!(m.circuit_transitions_total("open"), 0, "{}", m.render());
    running.shutdown().await;
}

/// Twelve session expiries in a row are answers of a working portal: the circuit stays
/// closed, each call renews the session once, and everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_session_expiries_do_not_open_the_circuit() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("expiry");
    let running = batching_gateway(&portal, dir.path(), &route).await;
    portal.fail_next(FaultKind::SessionExpired, 12);
    post_snapshots(running.inbound_addr, 0, 20).await;
    wait_for("twenty dossiers", Duration::from_secs(60), || {
        portal.records().dossiers.len() == 20
    })
    .await;
    let m = running.engine.metrics.clone();
    assert_eq!(m.circuit_transitions_total("open"), 0, "{}", m.render());
    assert_eq!(
        portal.records().injected.values().sum::<u64>(),
        12,
        "every scripted expiry was met"
    );
    running.shutdown().await;
}

/// Nineteen good progress steps and one for a dossier the portal does not know: the portal
/// refuses the batch naming `data[i]`; the nineteen go again together in one call, the
/// twentieth waits for its dossier (retried, not dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_unknown_dossier_does_not_hold_back_nineteen_steps() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("isolate");
    let running = batching_gateway(&portal, dir.path(), &route).await;
    let mut rng = rand::rng();
    // Dossiers with at least one progress step (the simulator draws how many).
    let plans: Vec<Vec<Event>> = (0..20)
        .map(|seq| loop {
            let p = simulator::dossier_events(&mut rng, "000.00.01.H22", seq, 3);
            if p.iter().any(|e| e.kind == "dossier.progress") {
                break p;
            }
        })
        .collect();
    let step = |p: &Vec<Event>| {
        p.iter()
            .find(|e| e.kind == "dossier.progress")
            .cloned()
            .expect("a progress step")
    };
    let client = reqwest::Client::new();
    // Nineteen dossiers reach the portal; the twentieth never does.
    for p in &plans[..19] {
        assert_eq!(post(&client, running.inbound_addr, &p[0]).await, 202);
    }
    wait_for("nineteen dossiers", Duration::from_secs(30), || {
        portal.records().dossiers.len() == 19
    })
    .await;
    // The twenty steps meet in the connector at once, as twenty lanes would hand them over.
    let connector = running.engine.routes[0].connector.clone();
    let calls_before = portal.calls("CapNhatTienDoHoSoMC");
    let envelopes: Vec<gateway::model::envelope::Envelope> = plans
        .iter()
        .map(|p| {
            let e = step(p);
            gateway::model::envelope::Envelope::new(e.kind, &e.key, "onestop", e.payload.clone())
        })
        .collect();
    let answers =
        futures::future::join_all(envelopes.iter().map(|e| connector.deliver(e, None))).await;
    for (i, a) in answers.iter().enumerate() {
        if i < 19 {
            assert_eq!(a.decision, Decision::Delivered, "step {i}: {:?}", a.answer);
        } else {
            assert_eq!(
                a.decision,
                Decision::Retry {
                    reason: Reason::AwaitingDossier,
                    not_before: None
                },
                "the unknown dossier's step waits: {:?}",
                a.answer
            );
            assert!(
                a.answer.summary().contains("data["),
                "its own refusal: {}",
                a.answer.summary()
            );
        }
    }
    let r = portal.records();
    assert_eq!(r.progress.len(), 19);
    let seqs: std::collections::BTreeSet<u64> = r
        .progress
        .values()
        .flat_map(|v| v.iter().map(|e| e.seq))
        .collect();
    assert_eq!(seqs.len(), 1, "the nineteen in one call: {seqs:?}");
    assert_eq!(
        portal.calls("CapNhatTienDoHoSoMC") - calls_before,
        2,
        "one refused call naming data[i], one call with the nineteen"
    );
    assert!(!r.progress.contains_key(&plans[19][0].key));
    // One health signal per exchange: nineteen items shared the second call.
    let silent = answers
        .iter()
        .filter(|a| a.health == gateway::model::outcome::Health::Silent)
        .count();
    assert_eq!(silent, 18, "two exchanges, twenty items");
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Credentials and the evidence log.

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// With `dvcqg = "full"` evidence, the exported bundle of a dossier holds its exchanges with
/// the portal, the login among them, and neither the portal password nor the OAuth2 client
/// secret nor a session / access token (before, `"password":"…"` was there in clear).
async fn credentials_stay_out_of_the_evidence(oauth2: bool) {
    use gw_contract_tests::portal::OAuth2Clients;
    const CLIENT_SECRET: &str = "lgsp-secret-5f1c9e";
    let portal = Portal::start(
        0,
        PortalConfig {
            oauth2: oauth2.then(|| OAuth2Clients {
                client_id: "gateway-h22".into(),
                client_secret: CLIENT_SECRET.into(),
                token_ttl_secs: 3600,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let password = portal.config().password.clone();
    assert!(password.len() >= 6, "a password worth grepping for");
    let dir = tempfile::tempdir().unwrap();
    let route = unique("evcred");
    std::env::set_var("GW_TEST_EVIDENCE_KEY", "5a".repeat(32));
    std::env::set_var("GW_TEST_LGSP_SECRET", CLIENT_SECRET);
    let mut text = portal_config(Backend::Embedded, &dir.path().join("data"), &route, &portal, "", 20)
        + "\n[evidence]\nmode = \"metadata\"\nbody_key = { env = \"GW_TEST_EVIDENCE_KEY\" }\n\n[evidence.adapters]\ndvcqg = \"full\"\n";
    if oauth2 {
        text = text.replace(
            "auth = \"session\"",
            &format!("auth = \"oauth2\"\ntoken_url = \"{}/token\"\nclient_id = \"gateway-h22\"\nclient_secret = {{ env = \"GW_TEST_LGSP_SECRET\" }}", portal.base_url()),
        );
    }
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let (newest, steps, _) = send_dossiers(running.inbound_addr, 0, 3, 2).await;
    wait_synced(&portal, &newest, &steps, Duration::from_secs(60)).await;
    let codes: Vec<String> = newest.keys().cloned().collect();
    let store = running.engine.store.clone();
    let until = Instant::now() + Duration::from_secs(20);
    for code in &codes {
        while store.evidence_by_dossier(code).await.unwrap().is_empty() {
            assert!(Instant::now() < until, "no evidence recorded for {code}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    running.shutdown().await;
    drop(store);

    // The login lands in the evidence of the dossiers whose call needed it: export them all.
    let mut files = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let bundle = dir.path().join(format!("bundle-{i}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["evidence", "export", code, "--out"])
            .arg(&bundle)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        files.extend(files_under(&bundle));
    }
    let bodies: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("bodies"))
        .collect();
    assert!(!bodies.is_empty(), "full mode exports bodies: {files:?}");
    // The session login goes through the captured client: it is there, masked. (The OAuth2
    // token request is not an exchange of the evidence log at all.)
    if !oauth2 {
        assert!(
            bodies
                .iter()
                .any(|(_, b)| String::from_utf8_lossy(b).contains("\"password\":\"***\"")),
            "the login is in the bundles, masked"
        );
    }
    for (p, b) in &files {
        let t = String::from_utf8_lossy(b);
        for secret in [password.as_str(), CLIENT_SECRET] {
            assert!(!t.contains(secret), "{} holds a credential", p.display());
        }
        for field in ["\"session\":\"", "\"access_token\":\""] {
            if let Some(at) = t.find(field) {
                assert!(
                    t[at + field.len()..].starts_with("***"),
                    "{} holds a token: {}",
                    p.display(),
                    &t[at..(at + 60).min(t.len())]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_password_and_session_stay_out_of_the_evidence() {
    credentials_stay_out_of_the_evidence(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth2_client_secret_and_token_stay_out_of_the_evidence() {
    credentials_stay_out_of_the_evidence(true).await;
}

// ---------------------------------------------------------------------------------------------
// Exchanges in doubt (issue 13)

/// One simulated dossier with two snapshots and the progress step of the second.
fn two_snapshot_dossier(seq: usize) -> (Event, Event, Event) {
    let mut rng = rand::rng();
    for _ in 0..200 {
        let ev = simulator::dossier_events(&mut rng, "000.00.01.H22", seq, 2);
        if let [v1, v2, step] = ev.as_slice() {
            return (v1.clone(), v2.clone(), step.clone());
        }
    }
    panic!("the simulator never made two snapshots in 200 tries");
}

/// Call the portal directly, as the gateway did before it "died": login, then one sync call.
async fn portal_direct(portal: &Portal, service: &str, fields: Value) {
    let cfg = portal.config();
    let client = reqwest::Client::new();
    let login: Value = client
        .post(portal.login_url())
        .header("dstcode", cfg.units[0].clone())
        .json(&serde_json::json!({"username": cfg.username, "password": cfg.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(login["session"].is_string(), "login: {login}");
    let mut body = fields;
    body["session"] = login["session"].clone();
    body["madonvi"] = cfg.units[0].clone().into();
    body["service"] = service.into();
    let answer: Value = client
        .post(portal.integration_url())
        .header("dstcode", cfg.units[0].clone())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["error_code"], serde_json::json!(0), "{answer}");
}

/// A claim taken and stamped "sending" by an instance that then died: its lease runs out.
async fn leave_in_doubt(store: &dyn gw_store::Store, env: &gateway::model::envelope::Envelope) {
    let req = gw_store::ClaimRequest {
        destination: "dvcqg".into(),
        key: env.key.clone(),
        ledger_id: format!("lost-{}", env.key),
        natural_key: env.natural_key(),
        version: env.version,
        holder: "dead-instance/1".into(),
        lease_ms: 100,
        sending: true,
    };
    assert_eq!(
        store.claim(&req).await.unwrap(),
        gw_store::Claim::Granted { in_doubt: None }
    );
}

fn envelope_of(e: &Event) -> gateway::model::envelope::Envelope {
    let mut env =
        gateway::model::envelope::Envelope::new(e.kind, &e.key, "onestop", e.payload.clone());
    env.version = e.version;
    env
}

/// Three exchanges left in doubt by a dead instance (claimed, stamped as sending, never
/// recorded): A's v2 did reach the portal, B's v2 did not, C's progress step did. When their
/// messages come back, the look-up (`TraCuuHoSo`, progress in the assumed `TienDoXuLy` list)
/// decides: A and C are recorded as delivered with no second POST, B is sent exactly once,
/// and the in-doubt notes show how each was resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exchanges_in_doubt_are_resolved_with_the_portals_look_up() {
    use gateway::connectors::dvcqg::translate;
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("doubt");
    let loaded = load(&portal_config(
        Backend::Embedded,
        dir.path(),
        &route,
        &portal,
        "",
        5,
    ));
    let (a1, a2, _) = two_snapshot_dossier(901);
    let (b1, b2, _) = two_snapshot_dossier(902);
    let (c1, _, c_step) = two_snapshot_dossier(903);
    let client = reqwest::Client::new();

    // Phase 1: the first versions go through the gateway.
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    for e in [&a1, &b1, &c1] {
        assert_eq!(post(&client, running.inbound_addr, e).await, 202);
    }
    wait_for(
        "first versions at the portal",
        Duration::from_secs(30),
        || {
            [&a1, &b1, &c1]
                .iter()
                .all(|e| portal.dossier_versions(&e.key).len() == 1)
        },
    )
    .await;
    running.shutdown().await;

    // Phase 2: what the dead instance did: A's v2 and C's step reached the portal, B's v2 not;
    // all three claims were stamped and never released.
    let procedures = translate::ProcedureTable::default();
    let a2_dossier: gateway::model::Dossier = serde_json::from_value(a2.payload.clone()).unwrap();
    let a2_item = translate::dossier_item(&a2_dossier, &procedures).unwrap();
    portal_direct(
        &portal,
        "DongBoHoSoMC",
        serde_json::json!({"isUpdating": true, "data": [a2_item]}),
    )
    .await;
    let step: gateway::model::ProgressStep =
        serde_json::from_value(c_step.payload["step"].clone()).unwrap();
    let step_item = translate::progress_item(&c_step.key, &step).unwrap();
    portal_direct(
        &portal,
        "CapNhatTienDoHoSoMC",
        serde_json::json!({"data": [step_item]}),
    )
    .await;
    {
        let store = gw_store::open(&loaded.store_url().unwrap()).await.unwrap();
        for e in [&a2, &b2, &c_step] {
            leave_in_doubt(store.as_ref(), &envelope_of(e)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lookups_before = portal.calls("TraCuuHoSo");

    // Phase 3: a new instance gets the same exchanges again (new envelopes, same natural keys).
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway restarts");
    let _queues_running = Queues::of(&running);
    for e in [&a2, &b2, &c_step] {
        assert_eq!(post(&client, running.inbound_addr, e).await, 202);
    }
    let store = running.engine.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut resolutions = BTreeMap::new();
    loop {
        for e in [&a2, &b2, &c_step] {
            let rows = store.in_doubt_by_key(&e.key).await.unwrap();
            if let Some(how) = rows.first().and_then(|r| r.resolution.clone()) {
                resolutions.insert(e.key.clone(), how);
            }
        }
        if resolutions.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in-doubt exchanges not resolved in 30s: {resolutions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(resolutions[&a2.key], "already_there");
    assert_eq!(resolutions[&b2.key], "not_there");
    assert_eq!(resolutions[&c_step.key], "already_there");
    // A: v1 from the gateway, v2 from the dead instance; no second POST of v2.
    let a_versions: Vec<_> = portal
        .dossier_versions(&a2.key)
        .iter()
        .map(|v| version_of(&v.item))
        .collect();
    assert_eq!(
        a_versions,
        vec![Some(1), Some(2)],
        "A's v2 was not sent again"
    );
    // B: v2 sent once, after the look-up said it was not there.
    let b_versions: Vec<_> = portal
        .dossier_versions(&b2.key)
        .iter()
        .map(|v| version_of(&v.item))
        .collect();
    assert_eq!(
        b_versions,
        vec![Some(1), Some(2)],
        "B's v2 sent exactly once"
    );
    // C: the step once.
    assert_eq!(
        portal.records().progress.get(&c_step.key).map(Vec::len),
        Some(1),
        "C's step was not sent again"
    );
    assert!(portal.calls("TraCuuHoSo") >= lookups_before + 3);
    // The trail shows how: delivered without a send for A and C.
    for (e, how) in [
        (&a2, "already_there"),
        (&c_step, "already_there"),
        (&b2, "not_there"),
    ] {
        let trail = store.outcomes_by_key(&e.key).await.unwrap();
        assert!(
            trail
                .iter()
                .any(|o| o.outcome == gw_store::Outcome::Delivered && o.detail.contains(how)),
            "{}: {trail:?}",
            e.key
        );
    }
    // Operators see it in the dossier's trail (`gateway trace`, the ops API).
    let (events, _) = gateway::ops::api::trail_events(store.as_ref(), &a2.key)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "in_doubt" && e.result == "already_there"),
        "{events:?}"
    );
    assert_clean(&portal);
    running.shutdown().await;
}

/// An exchange in doubt whose look-up fails (the portal answers HTTP 500 to the next calls,
/// login and `TraCuuHoSo` alike) is never sent blindly: the delivery is retried as
/// `lookup_failed` until the look-up answers, then resolved (here: already there, no POST).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_look_up_is_retried_never_sent_blindly() {
    use gateway::connectors::dvcqg::translate;
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("doubtfail");
    let loaded = load(&portal_config(
        Backend::Embedded,
        dir.path(),
        &route,
        &portal,
        "",
        5,
    ));
    let (v1, v2, _) = two_snapshot_dossier(911);
    let client = reqwest::Client::new();
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    assert_eq!(post(&client, running.inbound_addr, &v1).await, 202);
    wait_for("v1 at the portal", Duration::from_secs(30), || {
        portal.dossier_versions(&v1.key).len() == 1
    })
    .await;
    running.shutdown().await;
    // The dead instance's v2 reached the portal; its claim was never released.
    let d: gateway::model::Dossier = serde_json::from_value(v2.payload.clone()).unwrap();
    let item = translate::dossier_item(&d, &translate::ProcedureTable::default()).unwrap();
    portal_direct(
        &portal,
        "DongBoHoSoMC",
        serde_json::json!({"isUpdating": true, "data": [item]}),
    )
    .await;
    {
        let store = gw_store::open(&loaded.store_url().unwrap()).await.unwrap();
        leave_in_doubt(store.as_ref(), &envelope_of(&v2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next calls fail: the new instance's login and look-ups.
    portal.fail_next(FaultKind::ServerError, 4);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway restarts");
    let _queues_running = Queues::of(&running);
    assert_eq!(post(&client, running.inbound_addr, &v2).await, 202);
    let store = running.engine.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let resolution = loop {
        let rows = store.in_doubt_by_key(&v2.key).await.unwrap();
        if let Some(how) = rows.first().and_then(|r| r.resolution.clone()) {
            break how;
        }
        assert!(Instant::now() < deadline, "not resolved in 30s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolution, "already_there");
    let attempts = store.attempts_by_key(&v2.key).await.unwrap();
    assert!(
        attempts.iter().any(|a| a.reason == "lookup_failed"),
        "the failed look-ups are on the trail: {attempts:?}"
    );
    let versions: Vec<_> = portal
        .dossier_versions(&v2.key)
        .iter()
        .map(|v| version_of(&v.item))
        .collect();
    assert_eq!(versions, vec![Some(1), Some(2)], "v2 was never sent again");
    assert_clean(&portal);
    running.shutdown().await;
}
