//! The route runtime end to end: inbound HTTP → broker → route → HTTP sink, on the embedded
//! defaults and on RabbitMQ + PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use gateway::app;
use gateway::runtime::{self, ReplayResult};
use gw_contract_tests::sink::{Faults, Sink};
use gw_store::{DeadLetterFilter, DeadLetterState, Outcome};
use tokio_util::sync::CancellationToken;

async fn flow_in_order_with_supersede(backend: Backend) {
    let sink = Sink::start(
        0,
        Faults {
            error_rate: 0.2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("flow");
    let loaded = load(&config_text(backend, dir.path(), &route, &sink.url(), ""));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let mut expected = BTreeMap::new();
    for d in 0..20 {
        let key = format!("H22-{d:03}");
        for v in 1..=3 {
            assert_eq!(
                post_event(&client, running.inbound_addr, &key, v).await,
                202
            );
        }
        expected.insert(key, vec![1, 2, 3]);
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(60), "60 events settled", || {
        m.outcome_total("delivered") + m.outcome_total("superseded") >= 60
    })
    .await;
    // An older version after the newest was delivered is superseded, not sent.
    let before = sink.records().len();
    assert_eq!(
        post_event(&client, running.inbound_addr, "H22-000", 2).await,
        202
    );
    eventually(Duration::from_secs(30), "late v2 settled", || {
        m.outcome_total("delivered") + m.outcome_total("superseded") >= 61
    })
    .await;
    let check = sink.check(&expected);
    assert!(check.missing.is_empty(), "missing: {:?}", check.missing);
    assert_eq!(check.duplicates, 0, "duplicate effects");
    assert_eq!(check.older_after_newer, 0, "older after newer");
    assert_eq!(
        sink.records().len(),
        before,
        "the late older version was not sent"
    );
    let trail = running
        .engine
        .store
        .outcomes_by_key("H22-000")
        .await
        .unwrap();
    assert!(
        trail
            .iter()
            .any(|o| o.outcome == Outcome::Superseded && o.version == Some(2)),
        "trail: {trail:?}"
    );
    assert_eq!(
        running
            .engine
            .store
            .delivered_version("sink", "H22-000")
            .await
            .unwrap(),
        Some(3)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_in_order_with_supersede_embedded() {
    flow_in_order_with_supersede(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_in_order_with_supersede_rabbitmq_postgres() {
    if services_available("flow_in_order_with_supersede_rabbitmq_postgres") {
        flow_in_order_with_supersede(Backend::RabbitPg).await;
    }
}

async fn poison_dead_lettered_while_others_flow(backend: Backend) {
    let faults = Faults {
        poison_keys: ["POISON-400".to_string()].into(),
        failing_keys: ["POISON-500".to_string()].into(),
        ..Default::default()
    };
    let sink = Sink::start(0, faults).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("poison");
    let loaded = load(&config_text(
        backend,
        dir.path(),
        &route,
        &sink.url(),
        "max_attempts = 4",
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    assert_eq!(
        post_event(&client, running.inbound_addr, "POISON-400", 1).await,
        202
    );
    assert_eq!(
        post_event(&client, running.inbound_addr, "POISON-500", 1).await,
        202
    );
    for d in 0..50 {
        assert_eq!(
            post_event(&client, running.inbound_addr, &format!("OK-{d}"), 1).await,
            202
        );
    }
    let store = running.engine.store.clone();
    let m = running.engine.metrics.clone();
    eventually(
        Duration::from_secs(60),
        "others delivered and both poisons dead-lettered",
        || m.outcome_total("delivered") >= 50 && m.outcome_total("dead_lettered") >= 2,
    )
    .await;
    let dls = store
        .dead_letters(&DeadLetterFilter {
            route: Some(route.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dls.len(), 2, "{dls:?}");
    let perm = dls
        .iter()
        .find(|d| d.letter.key == "POISON-400")
        .expect("the 400 one");
    assert_eq!(
        perm.letter.attempts, 1,
        "a permanent refusal is not retried"
    );
    assert_eq!(perm.letter.last_status, Some(400));
    assert!(
        perm.letter.reason.contains("client_error"),
        "{}",
        perm.letter.reason
    );
    let exhausted = dls
        .iter()
        .find(|d| d.letter.key == "POISON-500")
        .expect("the 500 one");
    assert_eq!(exhausted.letter.attempts, 4, "retried up to the budget");
    assert!(
        exhausted.letter.reason.starts_with("retries_exhausted"),
        "{}",
        exhausted.letter.reason
    );
    assert!(
        exhausted.letter.last_answer.contains("HTTP 500"),
        "{}",
        exhausted.letter.last_answer
    );
    // The original envelope is kept byte for byte.
    let env = gateway::model::envelope::Envelope::decode(&exhausted.letter.envelope)
        .expect("original envelope");
    assert_eq!(env.key, "POISON-500");
    assert_eq!(
        sink.records()
            .iter()
            .filter(|r| r.key.starts_with("POISON"))
            .count(),
        0
    );

    // The destination is fixed; an operator replays: delivered once, and a second replay is a no-op.
    sink.set_faults(Faults::default());
    let id = exhausted.letter.id.clone();
    let r = runtime::replay(
        running.engine.broker.as_ref(),
        store.as_ref(),
        &id,
        "operator-a",
    )
    .await
    .unwrap();
    assert_eq!(r, ReplayResult::Replayed);
    let again = runtime::replay(
        running.engine.broker.as_ref(),
        store.as_ref(),
        &id,
        "operator-b",
    )
    .await
    .unwrap();
    assert_eq!(again, ReplayResult::AlreadySettled("replayed".into()));
    eventually(
        Duration::from_secs(30),
        "replayed dossier delivered",
        || sink.records().iter().any(|r| r.key == "POISON-500"),
    )
    .await;
    let dl = store.dead_letter(&id).await.unwrap().unwrap();
    assert_eq!(dl.state, DeadLetterState::Replayed);
    assert_eq!(dl.settled_by.as_deref(), Some("operator-a"));
    assert_eq!(
        sink.records()
            .iter()
            .filter(|r| r.key == "POISON-500")
            .count(),
        1
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_dead_lettered_while_others_flow_embedded() {
    poison_dead_lettered_while_others_flow(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_dead_lettered_while_others_flow_rabbitmq_postgres() {
    if services_available("poison_dead_lettered_while_others_flow_rabbitmq_postgres") {
        poison_dead_lettered_while_others_flow(Backend::RabbitPg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_a_clear_status_and_nothing_is_queued() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("badin");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let url = format!("http://{}/in/onestop", running.inbound_addr);
    let send = |url: String, token: Option<&'static str>, ct: &'static str, body: Vec<u8>| {
        let client = client.clone();
        async move {
            let mut rb = client.post(url).body(body);
            if !ct.is_empty() {
                rb = rb.header("content-type", ct);
            }
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let good = br#"{"kind":"dossier.upserted","key":"K1","version":1,"payload":{}}"#.to_vec();
    let cases: Vec<(&str, (u16, String))> = vec![
        (
            "no token",
            send(url.clone(), None, "application/json", good.clone()).await,
        ),
        (
            "wrong token",
            send(url.clone(), Some("nope"), "application/json", good.clone()).await,
        ),
        (
            "unknown source",
            send(
                format!("http://{}/in/nobody", running.inbound_addr),
                Some(TOKEN),
                "application/json",
                good.clone(),
            )
            .await,
        ),
        (
            "not JSON",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                b"<xml/>".to_vec(),
            )
            .await,
        ),
        (
            "wrong content type",
            send(url.clone(), Some(TOKEN), "text/plain", good.clone()).await,
        ),
        (
            "missing key",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                br#"{"kind":"dossier.upserted","payload":{}}"#.to_vec(),
            )
            .await,
        ),
        (
            "empty key",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                br#"{"kind":"dossier.upserted","key":" ","payload":{}}"#.to_vec(),
            )
            .await,
        ),
        (
            "unknown field",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                br#"{"kind":"dossier.upserted","key":"K","payload":{},"verison":2}"#.to_vec(),
            )
            .await,
        ),
        (
            "kind not allowed",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                br#"{"kind":"payment.settled","key":"K","payload":{}}"#.to_vec(),
            )
            .await,
        ),
        (
            "newline in kind (log injection)",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                br#"{"kind":"dossier.upserted\nlevel=ERROR forged","key":"K","payload":{}}"#
                    .to_vec(),
            )
            .await,
        ),
        (
            "no content type",
            send(
                url.clone(),
                Some(TOKEN),
                "",
                br#"{"kind":"dossier.upserted","key":"K","payload":{}}"#.to_vec(),
            )
            .await,
        ),
        (
            "kind too long",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                format!(
                    r#"{{"kind":"dossier.{}","key":"K","payload":{{}}}}"#,
                    "u".repeat(60)
                )
                .into_bytes(),
            )
            .await,
        ),
        (
            "oversized",
            send(
                url.clone(),
                Some(TOKEN),
                "application/json",
                format!(
                    r#"{{"kind":"dossier.upserted","key":"K","payload":"{}"}}"#,
                    "x".repeat(5000)
                )
                .into_bytes(),
            )
            .await,
        ),
    ];
    let expected = [
        (401, "unauthorized"),
        (401, "unauthorized"),
        (404, "unknown_source"),
        (400, "malformed_body"),
        (415, "not_json"),
        (400, "malformed_body"),
        (400, "bad_key"),
        (400, "malformed_body"),
        (422, "kind_not_allowed"),
        (400, "bad_kind"),
        (415, "not_json"),
        (400, "bad_kind"),
        (413, "body_too_large"),
    ];
    for ((name, got), (status, code)) in cases.iter().zip(expected) {
        assert_eq!(got, &(status, code.to_string()), "case `{name}`");
    }
    // Nothing was queued or delivered for any of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = running
        .engine
        .broker
        .stats(&gateway::runtime::route_queue(&route, 0))
        .await
        .unwrap();
    assert_eq!((stats.ready, stats.unacked), (0, 0));
    assert!(sink.records().is_empty());
    assert!(running
        .engine
        .store
        .outcomes_by_key("K")
        .await
        .unwrap()
        .is_empty());
    // And the well-formed one goes through.
    assert_eq!(
        send(url.clone(), Some(TOKEN), "application/json", good)
            .await
            .0,
        202
    );
    eventually(Duration::from_secs(20), "good event delivered", || {
        sink.records().len() == 1
    })
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_then_restart_loses_nothing() {
    let sink = Sink::start(
        0,
        // Slow enough that 8 lanes need ~5 s for the 200 events, while posting them takes
        // well under that even on a loaded machine: the shutdown comes mid-flow.
        Faults {
            delay_ms: 200,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("shutdown");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let mut expected = BTreeMap::new();
    for d in 0..200 {
        let key = format!("S-{d:03}");
        assert_eq!(
            post_event(&client, running.inbound_addr, &key, 1).await,
            202
        );
        expected.insert(key, vec![1]);
    }
    // Stop while work is in flight (the sink is slow), then start again on the same data.
    running.shutdown().await;
    let delivered_first = sink.records().len();
    assert!(
        delivered_first < 200,
        "the shutdown came mid-flow ({delivered_first} delivered)"
    );
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway restarts");
    let _queues_running = Queues::of(&running);
    eventually(
        Duration::from_secs(60),
        "all 200 delivered after restart",
        || sink.check(&expected).missing.is_empty(),
    )
    .await;
    let check = sink.check(&expected);
    assert_eq!(
        check.duplicates, 0,
        "a graceful shutdown creates no duplicate"
    );
    running.shutdown().await;
}

#[test]
fn check_config_reports_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[broker]\nprefetch = 0\nurl = \"amqp://u:p@h/\"\n[[routes]]\nname = \"r\"\nfrom = \"x\"\nto = \"y\"\nbogus = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check-config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = f.display().to_string();
    for needle in [
        format!("{name}:routes[0].bogus: unknown key"),
        format!("{name}:broker.prefetch: must be at least 1"),
        format!("{name}:broker.url: the URL contains a password"),
        format!("{name}:routes[0].from: no source named `x`"),
        format!("{name}:routes[0].to: no adapter named `y`"),
    ] {
        assert!(err.contains(&needle), "missing `{needle}` in:\n{err}");
    }
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// `check-config` reads every secret reference: one that reads empty is a problem (exit 2,
/// named by its key), one that cannot be read here is a warning naming it, and the count of
/// those read is printed. Before, no reference was read at all and empty tokens passed.
#[test]
fn check_config_reads_every_secret_reference() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty-token"), "  \n").unwrap();
    std::fs::write(dir.path().join("good-token"), "s3cret-value\n").unwrap();
    let body = |portal_token: &str| {
        format!(
            "[sources.portal]\ntoken = {portal_token}\n[sources.shop]\ntoken = {{ file = \"good-token\" }}\n\
             [sources.clerk]\ntoken = {{ env = \"GW_TEST_SURELY_UNSET_TOKEN\" }}\n"
        )
    };
    let run = |text: String| {
        let f = dir.path().join("gw.toml");
        std::fs::write(&f, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("check-config")
            .arg(&f)
            .env_remove("GW_TEST_SURELY_UNSET_TOKEN")
            .output()
            .unwrap()
    };
    let bad = run(body("{ file = \"empty-token\" }"));
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an empty secret fails the check"
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("sources.portal.token: secret file") && err.contains("is empty"),
        "the empty secret is named by its key:\n{err}"
    );
    let ok = run(body("{ file = \"good-token\" }"));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("secrets: 2 of 3 read"), "{out}");
    assert!(
        out.contains("secret not checked (cannot be read here): sources.clerk.token: environment variable GW_TEST_SURELY_UNSET_TOKEN is not set"),
        "{out}"
    );
    assert!(
        !out.contains("s3cret-value"),
        "a secret value is never printed"
    );
}

/// A party without a look-up (the generic `http` connector): an exchange left in doubt by a
/// dead instance is sent again (once, with its natural key as the idempotency key, which the
/// party dedupes on) and shown as `unverified` in the in-doubt note and the dossier's trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_doubt_without_a_look_up_is_sent_again_and_shown_unverified() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("nolookup");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    {
        let store = gw_store::open(&loaded.store_url().unwrap()).await.unwrap();
        let req = gw_store::ClaimRequest {
            destination: "sink".into(),
            key: "H22-DOUBT".into(),
            ledger_id: "lost-1".into(),
            natural_key: Some("H22-DOUBT@1".into()),
            version: Some(1),
            holder: "dead-instance/1".into(),
            lease_ms: 100,
            sending: true,
        };
        assert_eq!(
            store.claim(&req).await.unwrap(),
            gw_store::Claim::Granted { in_doubt: None }
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    assert_eq!(
        post_event(&client, running.inbound_addr, "H22-DOUBT", 1).await,
        202
    );
    let store = running.engine.store.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let how = loop {
        let rows = store.in_doubt_by_key("H22-DOUBT").await.unwrap();
        if let Some(how) = rows.first().and_then(|r| r.resolution.clone()) {
            break how;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(how, "unverified");
    let records = sink.records();
    assert_eq!(records.len(), 1, "sent once");
    assert_eq!(records[0].idempotency_key, "H22-DOUBT@1");
    let (events, _) = gateway::ops::api::trail_events(store.as_ref(), "H22-DOUBT")
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "in_doubt" && e.result == "unverified"),
        "{events:?}"
    );
    running.shutdown().await;
}

/// A key outside ASCII (a decision number "QĐ-UBND") reaches an `http` receiver: the key headers
/// arrive percent-encoded and decode back to the key, versions stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vietnamese_key_reaches_the_receiver_intact() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("vikey");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let key = "123/QĐ-UBND";
    for v in 1..=2 {
        assert_eq!(post_event(&client, running.inbound_addr, key, v).await, 202);
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(30), "2 events delivered", || {
        m.outcome_total("delivered") + m.outcome_total("superseded") >= 2
    })
    .await;
    assert_eq!(sink.refused(), 0, "the sink refused a request");
    let records = sink.records();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.key == key), "{records:?}");
    assert!(
        records.iter().all(|r| r.idempotency_key.starts_with(key)),
        "{records:?}"
    );
    let check = sink.check(&BTreeMap::from([(key.to_string(), vec![1, 2])]));
    assert!(check.missing.is_empty(), "missing: {:?}", check.missing);
    assert_eq!(check.older_after_newer, 0);
    running.shutdown().await;
}
