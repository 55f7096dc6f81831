//! Agency subscriptions operated across instances, over RabbitMQ and PostgreSQL, against the
//! strict agency sandbox: the edge accepts a kind only a subscription takes (422 for a kind
//! nobody takes); the disabled state is the store's, so two gateway instances on one
//! PostgreSQL see one disabling, and enabling through the ops API (operator only) enables it
//! for both; the replay through the ops API (viewer 403, operator 202 with the count, progress
//! readable) sends what the agency missed; per-subscription figures in `/metrics` and the API.

mod common;

use std::time::Duration;

use common::*;
use gateway::app;
use gw_contract_tests::agency::{AgencySandbox, Faults, Records};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OPERATOR: &str = "agops-operator-token-0123456789";
const VIEWER: &str = "agops-viewer-token-0123456789ab";

/// The common RabbitMQ + PostgreSQL gateway with two ops tokens, its plain route taking only
/// `route_kinds`, plus `subscriptions` (TOML).
fn config(
    dir: &std::path::Path,
    route: &str,
    sink: &str,
    route_kinds: &str,
    subscriptions: &str,
) -> String {
    std::env::set_var("GW_T_AGOPS_OPERATOR", OPERATOR);
    std::env::set_var("GW_T_AGOPS_VIEWER", VIEWER);
    std::env::set_var("GW_T_AGOPS_SECRET", SECRET);
    let text = config_text(Backend::RabbitPg, dir, route, sink, "");
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    let kinds = "kinds = [\"dossier.*\"]\nto = \"sink\"";
    assert!(text.contains(ops) && text.contains(kinds));
    text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [\n  { name = \"olga\", role = \"operator\", token = { env = \"GW_T_AGOPS_OPERATOR\" } },\n  { name = \"vu\", role = \"viewer\", token = { env = \"GW_T_AGOPS_VIEWER\" } },\n]\n",
    )
    .replace(kinds, &format!("kinds = {route_kinds}\nto = \"sink\""))
        + subscriptions
}

fn push_subscription(name: &str, url: &str, kinds: &str) -> String {
    format!(
        r#"
[subscriptions.{name}]
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = {kinds}
fields = ["code", "version", "status"]
[subscriptions.{name}.push]
url = "{url}"
secret = {{ env = "GW_T_AGOPS_SECRET" }}
retry = ["100ms", "100ms", "100ms"]
concurrency = 4
"#
    )
}

async fn sink() -> gw_contract_tests::sink::Sink {
    gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    inbound: std::net::SocketAddr,
    kind: &str,
    key: &str,
    version: i64,
) -> (u16, Value) {
    let body = json!({"kind": kind, "key": key, "version": version,
        "payload": {"code": key, "version": version, "status": "received",
                    "owner": {"name": "Nguyễn Văn An", "id_number": "001203004567"}}});
    let r = client
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("inbound answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn api(
    client: &reqwest::Client,
    ops: std::net::SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client
        .request(method, format!("http://{ops}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("ops answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn keys_of(r: &Records) -> Vec<String> {
    r.accepted
        .iter()
        .map(|a| a.body["key"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_edge_accepts_a_kind_only_a_subscription_takes() {
    if !services_available("the_edge_accepts_a_kind_only_a_subscription_takes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let agency = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
    let (route, name) = (unique("agedge"), unique("edgesub"));
    let plain = sink().await;
    let text = config(
        dir.path(),
        &route,
        &plain.url(),
        r#"["dossier.status"]"#,
        &push_subscription(&name, &agency.url(), r#"["dossier.upserted"]"#),
    );
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    // No [[routes]] takes dossier.upserted; the subscription does: accepted and pushed.
    let (s, body) = post(
        &client,
        running.inbound_addr,
        "dossier.upserted",
        "EDGE-1",
        1,
    )
    .await;
    assert_eq!(s, 202, "{body}");
    eventually(
        Duration::from_secs(30),
        "the agency receives EDGE-1",
        || keys_of(&agency.records()) == ["EDGE-1"],
    )
    .await;
    // A kind neither a route nor a subscription takes is still refused.
    let (s, body) = post(
        &client,
        running.inbound_addr,
        "dossier.progress",
        "EDGE-2",
        1,
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "no_route", "{body}");
    // A kind the route takes and the subscription does not: accepted, not pushed.
    let (s, _) = post(&client, running.inbound_addr, "dossier.status", "EDGE-3", 1).await;
    assert_eq!(s, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(keys_of(&agency.records()), ["EDGE-1"]);
    assert!(agency.records().refused.is_empty());
    running.shutdown().await;
}

fn disabled_gauge(m: &str, name: &str) -> Option<u8> {
    let prefix = format!("gateway_subscription_disabled{{subscription=\"{name}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_disabled_state_and_the_api_enables_and_replays() {
    if !services_available("two_instances_share_the_disabled_state_and_the_api_enables_and_replays")
    {
        return;
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agency = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
    agency.set_faults(Faults {
        mode: "410".into(),
        ..Default::default()
    });
    let (route, name) = (unique("agshare"), unique("sharesub"));
    let plain = sink().await;
    let subs = push_subscription(&name, &agency.url(), r#"["dossier.*"]"#);
    // Two instances on one broker and one PostgreSQL schema, each with its own data directory
    // (two hosts).
    let a = app::start(
        &load(&config(
            dir_a.path(),
            &route,
            &plain.url(),
            r#"["dossier.*"]"#,
            &subs,
        )),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let _queues_a = Queues::of(&a);
    let b = app::start(
        &load(&config(
            dir_b.path(),
            &route,
            &plain.url(),
            r#"["dossier.*"]"#,
            &subs,
        )),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let _queues_b = Queues::of(&b);
    let since = gateway::model::time::now_ms() - 60_000;
    let client = reqwest::Client::new();
    for k in ["SH-1", "SH-2", "SH-3"] {
        let (s, body) = post(&client, a.inbound_addr, "dossier.upserted", k, 1).await;
        assert_eq!(s, 202, "{body}");
    }
    // Whichever instance met the 410, both report the subscription disabled.
    let (ma, mb) = (a.engine.metrics.clone(), b.engine.metrics.clone());
    eventually(
        Duration::from_secs(30),
        "both instances see it disabled",
        || {
            disabled_gauge(&ma.render(), &name) == Some(1)
                && disabled_gauge(&mb.render(), &name) == Some(1)
        },
    )
    .await;
    let (s, list) = api(
        &client,
        b.ops_addr,
        reqwest::Method::GET,
        "/api/v1/subscriptions",
        VIEWER,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let mine = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["disabled"]["reason"], "gone", "{mine}");
    assert!(mine["live"]["lag_seconds"].is_number(), "{mine}");
    // Every delivery is dead-lettered while disabled, without a call.
    let store = a.engine.store.clone();
    let dead_route = gateway::app::agencies::route_name(&name);
    let mut open = 0;
    for _ in 0..300 {
        open = store
            .dead_letters(&gw_store::DeadLetterFilter {
                route: Some(dead_route.clone()),
                state: Some(gw_store::DeadLetterState::Open),
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        if open == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 3, "SH-1..3 dead-lettered");
    agency.set_faults(Faults::default());

    // A replay while disabled is refused; a viewer may neither enable nor replay.
    let replay_path = format!("/api/v1/subscriptions/{name}/replay");
    let enable_path = format!("/api/v1/subscriptions/{name}/enable");
    let since_body = json!({"since": gateway::ops::api::rfc3339(since)});
    let (s, body) = api(
        &client,
        b.ops_addr,
        reqwest::Method::POST,
        &replay_path,
        OPERATOR,
        Some(since_body.clone()),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("disabled")),
        "{body}"
    );
    let (s, _) = api(
        &client,
        b.ops_addr,
        reqwest::Method::POST,
        &enable_path,
        VIEWER,
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = api(
        &client,
        b.ops_addr,
        reqwest::Method::POST,
        &replay_path,
        VIEWER,
        Some(since_body.clone()),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        disabled_gauge(&ma.render(), &name),
        Some(1),
        "a viewer changed nothing"
    );

    // The operator enables it on instance B: both instances see it enabled.
    let (s, body) = api(
        &client,
        b.ops_addr,
        reqwest::Method::POST,
        &enable_path,
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["was"]["reason"], "gone", "{body}");
    assert_eq!(body["missed"], 3, "{body}");
    assert_eq!(body["by"], "olga");
    eventually(
        Duration::from_secs(10),
        "both instances see it enabled",
        || {
            disabled_gauge(&ma.render(), &name) == Some(0)
                && disabled_gauge(&mb.render(), &name) == Some(0)
        },
    )
    .await;
    let (s, body) = api(
        &client,
        b.ops_addr,
        reqwest::Method::POST,
        &enable_path,
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("not_disabled"))
    );

    // Replay through the API on instance A: the count at once, the progress readable.
    let (s, body) = api(
        &client,
        a.ops_addr,
        reqwest::Method::POST,
        &replay_path,
        OPERATOR,
        Some(json!({"since": "nonsense"})),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("bad_since"))
    );
    let (s, body) = api(
        &client,
        a.ops_addr,
        reqwest::Method::POST,
        &replay_path,
        OPERATOR,
        Some(since_body),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["found"], 3, "{body}");
    let mut progress = Value::Null;
    for _ in 0..200 {
        let (s, p) = api(
            &client,
            a.ops_addr,
            reqwest::Method::GET,
            &replay_path,
            VIEWER,
            None,
        )
        .await;
        assert_eq!(s, 200, "{p}");
        progress = p;
        if progress["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(
        (progress["done"].as_u64(), progress["replayed"].as_u64()),
        (Some(3), Some(3)),
        "{progress}"
    );
    assert_eq!(progress["by"], "olga");
    let (s, _) = api(
        &client,
        b.ops_addr,
        reqwest::Method::GET,
        &replay_path,
        VIEWER,
        None,
    )
    .await;
    assert_eq!(s, 404, "no replay was started on instance B");
    eventually(
        Duration::from_secs(30),
        "the agency receives what it missed",
        || {
            let mut k = keys_of(&agency.records());
            k.sort();
            k == ["SH-1", "SH-2", "SH-3"]
        },
    )
    .await;
    let r = agency.records();
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert!(r.accepted.iter().all(|a| a.body["data"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| ["code", "version", "status"].contains(&k.as_str()))));
    // Delivered counts per subscription, the label its name only.
    let delivered = |m: &str| {
        let prefix = format!("gateway_subscription_delivered_total{{subscription=\"{name}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(10),
        "3 delivered over both instances",
        || delivered(&ma.render()) + delivered(&mb.render()) == 3,
    )
    .await;
    let m = ma.render();
    assert!(
        m.contains(&format!(
            "gateway_subscription_lag_seconds{{subscription=\"{name}\"}} 0.000"
        )),
        "nothing undelivered"
    );
    assert!(
        !m.contains("SH-1") && !m.contains("001203004567"),
        "no dossier or person in metrics"
    );
    // Unknown subscription: 404.
    let (s, _) = api(
        &client,
        a.ops_addr,
        reqwest::Method::POST,
        "/api/v1/subscriptions/nobody/replay",
        OPERATOR,
        Some(json!({"since": "1h"})),
    )
    .await;
    assert_eq!(s, 404);
    a.shutdown().await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Disabling and enabling are operational events: `subscription.disabled` and
// `subscription.enabled`, from the gateway's source, once each, to the routes taking them.

/// `backend`'s gateway (data in `dir`, ops tokens) with the push subscription `name` to
/// `agency`, its plain route `route` to `plain`, and the route `ops_route` taking the
/// gateway's operational events to `ops_sink`.
#[allow(clippy::too_many_arguments)]
fn events_config(
    backend: Backend,
    dir: &std::path::Path,
    route: &str,
    plain: &str,
    ops_route: &str,
    ops_sink: &str,
    name: &str,
    agency: &str,
) -> String {
    std::env::set_var("GW_T_AGOPS_OPERATOR", OPERATOR);
    std::env::set_var("GW_T_AGOPS_SECRET", SECRET);
    let text = config_text(backend, dir, route, plain, "");
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    assert!(text.contains(ops));
    let text = text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [\n  { name = \"olga\", role = \"operator\", token = { env = \"GW_T_AGOPS_OPERATOR\" } },\n]\n",
    );
    format!(
        r#"{text}
[adapters.opsink]
connector = "http"
url = "{ops_sink}"
timeout = "2s"

[[routes]]
name = "{ops_route}"
from = "{source}"
kinds = ["subscription.*"]
to = "opsink"
{sub}"#,
        source = gateway::config::OPS_SOURCE,
        sub = push_subscription(name, agency, r#"["dossier.*"]"#),
    )
}

/// What the operational events' sink received: (kind, body) in arrival order.
fn ops_events(s: &gw_contract_tests::sink::Sink) -> Vec<(String, Value)> {
    s.captured()
        .iter()
        .map(|c| {
            (
                c.header("x-gateway-kind").unwrap_or_default().to_string(),
                serde_json::from_slice(&c.body).unwrap_or_default(),
            )
        })
        .collect()
}

/// Wait until `sink` has `n` events, then a little longer (a second copy would show), and
/// return them.
async fn settled_events(
    sink: &gw_contract_tests::sink::Sink,
    n: usize,
    what: &str,
) -> Vec<(String, Value)> {
    eventually(Duration::from_secs(30), what, || {
        ops_events(sink).len() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ops_events(sink)
}

/// The body of an operational event names the subscription, the state, the reason and since
/// when, and nothing of the dossiers' people.
fn assert_event(body: &Value, name: &str, state: &str) {
    assert_eq!(body["subscription"], name, "{body}");
    assert_eq!(body["state"], state, "{body}");
    assert_eq!(body["reason"], "gone", "{body}");
    assert!(body["since_ms"].as_i64().unwrap() > 0, "{body}");
    assert!(body["since"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(body["enabled_ms"].is_i64(), state == "enabled", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("001203004567") && !text.contains("Nguyễn"),
        "no personal data: {text}"
    );
}

async fn disable_and_enable_publish_one_event_each(backend: Backend) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agency = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
    agency.set_faults(Faults {
        mode: "410".into(),
        ..Default::default()
    });
    let (route, ops_route, name) = (unique("agev"), unique("agevops"), unique("evsub"));
    let plain = sink().await;
    let ops_sink = sink().await;
    ops_sink.set_capture(true);
    let text = |dir: &std::path::Path| {
        events_config(
            backend,
            dir,
            &route,
            &plain.url(),
            &ops_route,
            &ops_sink.url(),
            &name,
            &agency.url(),
        )
    };
    let file = dir_a.path().join("gateway.toml");
    std::fs::write(&file, text(dir_a.path())).unwrap();
    let a = app::start(&load(&text(dir_a.path())), CancellationToken::new())
        .await
        .unwrap();
    let queues = Queues::of(&a);
    // RabbitMQ + PostgreSQL: a second instance on the same broker and store meets the 410s too.
    let b = match backend {
        Backend::RabbitPg => Some(
            app::start(&load(&text(dir_b.path())), CancellationToken::new())
                .await
                .unwrap(),
        ),
        Backend::Embedded => None,
    };
    let client = reqwest::Client::new();
    // Several deliveries meet the 410 at once (concurrency 4, two instances): one disabling.
    for k in ["EV-1", "EV-2", "EV-3", "EV-4", "EV-5", "EV-6"] {
        let inbound = match (&b, k.ends_with(['2', '4', '6'])) {
            (Some(b), true) => b.inbound_addr,
            _ => a.inbound_addr,
        };
        let (s, body) = post(&client, inbound, "dossier.upserted", k, 1).await;
        assert_eq!(s, 202, "{body}");
    }
    let events = settled_events(&ops_sink, 1, "the subscription.disabled event").await;
    assert_eq!(
        events.len(),
        1,
        "exactly one event for one disabling: {events:?}"
    );
    assert_eq!(events[0].0, "subscription.disabled");
    assert_event(&events[0].1, &name, "disabled");
    let rec = &ops_sink.records()[0];
    assert_eq!(rec.key, name, "keyed by the subscription");
    assert_eq!(disabled_gauge(&a.engine.metrics.render(), &name), Some(1));
    agency.set_faults(Faults::default());

    match b {
        // Enabled through the ops API of the other instance.
        Some(b) => {
            let (s, body) = api(
                &client,
                b.ops_addr,
                reqwest::Method::POST,
                &format!("/api/v1/subscriptions/{name}/enable"),
                OPERATOR,
                None,
            )
            .await;
            assert_eq!(s, 200, "{body}");
            // Enabling what is enabled tells nothing.
            let (s, _) = api(
                &client,
                a.ops_addr,
                reqwest::Method::POST,
                &format!("/api/v1/subscriptions/{name}/enable"),
                OPERATOR,
                None,
            )
            .await;
            assert_eq!(s, 409);
            let events = settled_events(&ops_sink, 2, "the subscription.enabled event").await;
            assert_eq!(
                events.len(),
                2,
                "one more event for one enabling: {events:?}"
            );
            assert_eq!(events[1].0, "subscription.enabled");
            assert_event(&events[1].1, &name, "enabled");
            assert_eq!(events[1].1["since_ms"], events[0].1["since_ms"]);
            b.shutdown().await;
            a.shutdown().await;
        }
        // Embedded: `gateway agencies enable` while the gateway is stopped (the embedded queue
        // serves one process); the event waits in the route's queue for the next start.
        None => {
            // `gateway agencies list` beside the running gateway (which locks the embedded
            // queue): the configuration, and the disabled state read from the store.
            let (ok, out) = agencies_list(&file);
            assert!(ok, "{out}");
            assert!(
                out.contains(&format!(
                    "{name}  Trung tâm IOC tỉnh [push] DISABLED (gone) since"
                )),
                "{out}"
            );
            assert!(out.contains("1 subscription(s)"), "{out}");
            a.shutdown().await;
            for expected in ["enabled (it was disabled: gone", "was not disabled"] {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
                    .args(["agencies", "enable", &name, "--config"])
                    .arg(&file)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains(expected),
                    "{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let again = app::start(&load(&text(dir_a.path())), CancellationToken::new())
                .await
                .unwrap();
            let events = settled_events(&ops_sink, 2, "the subscription.enabled event").await;
            assert_eq!(
                events.len(),
                2,
                "one more event for one enabling: {events:?}"
            );
            assert_eq!(events[1].0, "subscription.enabled");
            assert_event(&events[1].1, &name, "enabled");
            again.shutdown().await;
        }
    }
    drop(queues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disable_and_enable_publish_one_event_each_on_the_embedded_defaults() {
    disable_and_enable_publish_one_event_each(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disable_and_enable_publish_one_event_each_on_rabbitmq_and_postgres() {
    if !services_available("disable_and_enable_publish_one_event_each_on_rabbitmq_and_postgres") {
        return;
    }
    disable_and_enable_publish_one_event_each(Backend::RabbitPg).await;
}

/// `gateway agencies list --config FILE`: (exit 0, stdout and stderr).
fn agencies_list(file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["agencies", "list", "--config"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A store that cannot be opened: `list` still shows the configuration, says the state is
/// unknown and why, and where a running gateway shows it.
#[test]
fn agencies_list_without_its_store_lists_the_configuration_and_says_so() {
    std::env::set_var("GW_TEST_SOURCE_TOKEN", TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let text = events_config(
        Backend::Embedded,
        dir.path(),
        "agl",
        "http://127.0.0.1:9/",
        "aglops",
        "http://127.0.0.1:9/",
        "ioc",
        "http://127.0.0.1:9/hook",
    )
    .replace(
        "[store]\n",
        "[store]\nurl = \"postgres://postgres@127.0.0.1:1/nowhere\"\n",
    );
    assert!(text.contains("127.0.0.1:1/nowhere"), "{text}");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let (ok, out) = agencies_list(&file);
    assert!(ok, "{out}");
    assert!(
        out.contains("ioc  Trung tâm IOC tỉnh [push] state unknown"),
        "{out}"
    );
    assert!(out.contains("fields      code, version, status"), "{out}");
    assert!(
        out.contains("the disabled state is not shown:")
            && out.contains("GET /api/v1/subscriptions"),
        "{out}"
    );
}
