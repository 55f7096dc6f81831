//! Agency push subscriptions end to end over RabbitMQ and PostgreSQL, against the strict agency
//! sandbox: filters and field minimisation (with the evidence of each push), Standard Webhooks
//! signatures during a secret rotation and RFC 9421 with the province's key, order per dossier
//! under 429s and a restart, isolation (a dead agency does not hold back a healthy one), 410
//! disabling a subscription, enable and replay; and the sandbox's refusals of bad deliveries.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use gateway::app;
use gateway::connectors::agency::webhook::{headers, WebhookSecret};
use gw_contract_tests::agency::{AgencySandbox, Faults, Records};
use tokio_util::sync::CancellationToken;

const SECRET_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_OLD: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u";
const SECRET_DEAD: &str = "whsec_ZGVhZC1hZ2VuY3ktc2VjcmV0LWJ5dGVzLTEyMzQ1";

fn dossier(code: &str, version: i64, procedure: &str, unit: &str) -> serde_json::Value {
    serde_json::json!({
        "code": code, "version": version, "procedure_code": procedure,
        "summary": "Cấp giấy phép xây dựng", "received_at": "2026-01-05T08:00:00+07:00",
        "due_at": "2026-01-20T17:00:00+07:00", "status": "in_processing",
        "handling_unit": unit,
        "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567",
                  "phone": "0912345678", "email": "an@example.vn", "address": "12 Lý Thái Tổ"}
    })
}

async fn post(
    client: &reqwest::Client,
    inbound: std::net::SocketAddr,
    key: &str,
    version: i64,
    procedure: &str,
    unit: &str,
) {
    let body = serde_json::json!({"kind": "dossier.upserted", "key": key, "version": version,
        "payload": dossier(key, version, procedure, unit)});
    let s = client
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("inbound answers")
        .status();
    assert_eq!(s, 202, "{key}@{version}");
}

/// The common test gateway (its plain route to `sink`) plus `subscriptions` (TOML), on
/// RabbitMQ + PostgreSQL.
fn config(dir: &std::path::Path, route: &str, sink: &str, subscriptions: &str) -> String {
    let mut text = config_text(Backend::RabbitPg, dir, route, sink, "");
    text.push_str(subscriptions);
    text
}

async fn sink() -> gw_contract_tests::sink::Sink {
    gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap()
}

fn ec_key(dir: &std::path::Path) -> (std::path::PathBuf, gw_crypto::keys::VerifyingKey) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&group).unwrap();
    let pkey = openssl::pkey::PKey::from_ec_key(ec).unwrap();
    let path = dir.join("province-key.pem");
    std::fs::write(&path, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let key = gw_crypto::keys::load_pem(
        "province-2026",
        &pkey.private_key_to_pem_pkcs8().unwrap(),
        None,
        None,
    )
    .unwrap();
    (path, key.verifying_key().unwrap())
}

fn versions_of(r: &Records, key: &str) -> Vec<i64> {
    r.accepted
        .iter()
        .filter(|a| a.body["key"] == key)
        .map(|a| a.body["version"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_minimise_sign_and_record_evidence() {
    if !services_available("filters_minimise_sign_and_record_evidence") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key_path, verifying) = ec_key(dir.path());
    // The agency still knows only the old secret: the rotation's two signatures let it verify.
    let ioc = AgencySandbox::start(0, &[SECRET_OLD], vec![verifying])
        .await
        .unwrap();
    let dept = AgencySandbox::start(0, &[SECRET_NEW], vec![])
        .await
        .unwrap();
    std::env::set_var("GW_T_IOC_NEW", SECRET_NEW);
    std::env::set_var("GW_T_IOC_OLD", SECRET_OLD);
    // Subscription names (and so their queues) of their own: the broker outlives test runs.
    let (n_ioc, n_xd) = (unique("ioc"), unique("so-xd"));
    let route = unique("agmin");
    let plain = sink().await;
    let text = config(
        dir.path(),
        &route,
        &plain.url(),
        &format!(
            r#"
[subscriptions.{n_ioc}]
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = ["dossier.upserted"]
procedures = ["1.0012"]
units = ["000.00.01.H12"]
fields = ["code", "status", "procedure", "received_at", "due_at"]
personal = ["citizen_id"]
legal_basis = "Nghị định 107/2021/NĐ-CP, Điều 19"
[subscriptions.{n_ioc}.push]
url = "{ioc}"
secret = [{{ env = "GW_T_IOC_NEW" }}, {{ env = "GW_T_IOC_OLD" }}]
rfc9421 = {{ key = {{ file = "{key}" }}, keyid = "province-2026" }}
retry = ["100ms", "200ms"]

[subscriptions.{n_xd}]
agency = "Sở Xây dựng"
delivery = "push"
procedures = ["2."]
fields = ["code", "status"]
[subscriptions.{n_xd}.push]
url = "{dept}"
secret = {{ env = "GW_T_IOC_NEW" }}
retry = ["100ms"]
"#,
            ioc = ioc.url(),
            dept = dept.url(),
            key = key_path.display()
        ),
    );
    std::env::set_var("GW_T_OPS_VIEWER", "viewer-token-0123456789");
    let text = text.replace(
        "[ops]\nlisten = \"127.0.0.1:0\"\n",
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"v\", role = \"viewer\", token = { env = \"GW_T_OPS_VIEWER\" } }]\n",
    );
    assert!(text.contains("GW_T_OPS_VIEWER"));
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    post(
        &client,
        running.inbound_addr,
        "IOC-1",
        1,
        "1.001234",
        "000.00.01.H12",
    )
    .await;
    post(
        &client,
        running.inbound_addr,
        "XD-1",
        1,
        "2.000123",
        "000.00.01.H12",
    )
    .await;
    post(
        &client,
        running.inbound_addr,
        "NONE-1",
        1,
        "1.001234",
        "000.00.09.H12",
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "each agency has its one push",
        || ioc.records().accepted.len() == 1 && dept.records().accepted.len() == 1,
    )
    .await;
    // Whatever else was queued has been handled by now: nothing more, nothing refused.
    post(
        &client,
        running.inbound_addr,
        "IOC-2",
        1,
        "1.0012",
        "000.00.01.H12",
    )
    .await;
    eventually(Duration::from_secs(30), "the marker push", || {
        ioc.records().accepted.len() == 2
    })
    .await;
    let (ri, rd) = (ioc.records(), dept.records());
    assert!(
        ri.refused.is_empty() && rd.refused.is_empty(),
        "{ri:?} {rd:?}"
    );
    assert_eq!(
        rd.accepted.len(),
        1,
        "NONE-1 and the IOC dossiers are not the department's"
    );
    let a = &ri.accepted[0];
    assert_eq!(a.body["key"], "IOC-1");
    assert_eq!(
        a.keyid.as_deref(),
        Some("province-2026"),
        "RFC 9421 verified"
    );
    assert_eq!(
        a.body["data"],
        serde_json::json!({"code": "IOC-1", "status": "in_processing", "procedure_code": "1.001234",
            "received_at": "2026-01-05T08:00:00+07:00", "due_at": "2026-01-20T17:00:00+07:00",
            "owner": {"id_number": "001203004567"}})
    );
    assert_eq!(
        rd.accepted[0].body["data"],
        serde_json::json!({"code": "XD-1", "status": "in_processing"})
    );
    for r in ri.accepted.iter().chain(&rd.accepted) {
        let text = r.body.to_string();
        for personal in ["0912345678", "an@example.vn", "Nguyễn", "Lý Thái Tổ"] {
            assert!(!text.contains(personal), "{personal} sent: {text}");
        }
    }
    assert!(!rd.accepted[0].body.to_string().contains("001203004567"));
    // The evidence of the push: the body's digest, the fields sent and the legal basis.
    let store = running.engine.store.clone();
    let ev = store.evidence_by_dossier("IOC-1").await.unwrap();
    let push = ev
        .iter()
        .find(|e| e.record.adapter == format!("agency.{n_ioc}"))
        .unwrap_or_else(|| panic!("no evidence of the push: {ev:?}"));
    assert_eq!(push.record.operation, format!("subscription={n_ioc}; fields=code,procedure,received_at,due_at,status,citizen_id; legal_basis=Nghị định 107/2021/NĐ-CP, Điều 19"));
    assert_eq!(push.record.http_status, Some(200));
    assert_eq!(push.record.request_digest.len(), 64);
    assert_eq!(
        push.record.request_digest, a.digest,
        "the digest of the exact bytes received"
    );
    // The ops API lists the subscriptions with their legal basis.
    let api: serde_json::Value = client
        .get(format!("http://{}/api/v1/subscriptions", running.ops_addr))
        .bearer_auth("viewer-token-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = api["subscriptions"].as_array().unwrap();
    let s = listed.iter().find(|s| s["name"] == n_ioc.as_str()).unwrap();
    assert_eq!(s["legal_basis"], "Nghị định 107/2021/NĐ-CP, Điều 19");
    assert_eq!(s["personal"], serde_json::json!(["citizen_id"]));
    assert_eq!(s["disabled"], serde_json::Value::Null);
    // Both pushes were queued to it (the second one's outcome may be being recorded still).
    assert_eq!(s["counts"]["messages_in"], 2, "{s}");
    assert!(
        s["counts"]["outcomes"]["delivered"].as_u64() >= Some(1),
        "{s}"
    );
    let m = running.engine.metrics.render();
    assert!(
        m.contains(&format!(
            "gateway_subscription_delivered_total{{subscription=\"{n_ioc}\"}} 2"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "gateway_subscription_disabled{{subscription=\"{n_xd}\"}} 0"
        )),
        "{m}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_isolation_disable_enable_and_replay() {
    if !services_available("order_isolation_disable_enable_and_replay") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let healthy = AgencySandbox::start(0, &[SECRET_NEW], vec![])
        .await
        .unwrap();
    let dead = AgencySandbox::start(0, &[SECRET_DEAD], vec![])
        .await
        .unwrap();
    dead.set_faults(Faults {
        mode: "fail".into(),
        ..Default::default()
    });
    // The healthy agency starts by pushing back: 429 with Retry-After, so early versions are
    // retried while later ones queue behind them.
    healthy.set_faults(Faults {
        mode: "429".into(),
        retry_after_secs: 1,
        ..Default::default()
    });
    std::env::set_var("GW_T_HEALTHY", SECRET_NEW);
    std::env::set_var("GW_T_DEAD", SECRET_DEAD);
    let (n_h, n_d) = (unique("healthy"), unique("dead"));
    let route = unique("agord");
    let plain = sink().await;
    let text = config(
        dir.path(),
        &route,
        &plain.url(),
        &format!(
            r#"
[subscriptions.{n_h}]
agency = "IOC"
delivery = "push"
fields = ["code", "version", "status"]
[subscriptions.{n_h}.push]
url = "{h}"
secret = {{ env = "GW_T_HEALTHY" }}
retry = ["100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]
concurrency = 4

[subscriptions.{n_d}]
agency = "Sở chết"
delivery = "push"
fields = ["code", "version"]
[subscriptions.{n_d}.push]
url = "{d}"
secret = {{ env = "GW_T_DEAD" }}
retry = ["1h"]
concurrency = 4
"#,
            h = healthy.url(),
            d = dead.url()
        ),
    );
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new()).await.unwrap();
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let keys = ["ORD-A", "ORD-B", "ORD-C"];
    for v in 1..=5 {
        for k in keys {
            post(&client, running.inbound_addr, k, v, "1.001234", "u").await;
        }
    }
    eventually(
        Duration::from_secs(20),
        "the healthy agency pushed back",
        || healthy.records().faulted >= 1,
    )
    .await;
    healthy.set_faults(Faults::default());
    // Isolation: the dead agency fails every call, the healthy one gets every dossier's last
    // version all the same.
    eventually(
        Duration::from_secs(60),
        "the healthy agency has every dossier's version 5",
        || {
            let r = healthy.records();
            keys.iter().all(|k| versions_of(&r, k).last() == Some(&5))
        },
    )
    .await;
    assert!(dead.records().accepted.is_empty());
    assert!(dead.records().faulted >= 1, "the dead agency was called");
    let r = healthy.records();
    for k in keys {
        let v = versions_of(&r, k);
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "{k}: never older after newer: {v:?}"
        );
    }
    // A restart: new versions after it still come in order after the old ones.
    running.shutdown().await;
    let running = app::start(&loaded, CancellationToken::new()).await.unwrap();
    let _queues_running = Queues::of(&running);
    for v in 6..=7 {
        for k in keys {
            post(&client, running.inbound_addr, k, v, "1.001234", "u").await;
        }
    }
    eventually(
        Duration::from_secs(60),
        "version 7 of every dossier after the restart",
        || {
            let r = healthy.records();
            keys.iter().all(|k| versions_of(&r, k).last() == Some(&7))
        },
    )
    .await;
    let r = healthy.records();
    for k in keys {
        let v = versions_of(&r, k);
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "{k} after a restart: {v:?}"
        );
    }
    assert!(r.refused.is_empty(), "{:?}", r.refused);

    // 410: the dead agency says it is gone; the subscription is disabled, never silently.
    dead.set_faults(Faults {
        mode: "410".into(),
        ..Default::default()
    });
    let since = gateway::model::time::now_ms() - 60_000;
    post(&client, running.inbound_addr, "GONE-1", 1, "1.001234", "u").await;
    let m = running.engine.metrics.clone();
    eventually(
        Duration::from_secs(60),
        "the dead subscription is disabled",
        || {
            m.render().contains(&format!(
                "gateway_subscription_disabled{{subscription=\"{n_d}\"}} 1"
            ))
        },
    )
    .await;
    // The state is the store's (shared by every instance), not a file.
    let states = running.engine.store.clone().subscription_states();
    assert_eq!(
        states
            .state(&n_d)
            .await
            .unwrap()
            .unwrap()
            .disabled
            .unwrap()
            .reason,
        "gone"
    );
    assert!(!dir.path().join(format!("agencies/{n_d}.disabled")).exists());
    assert!(m.render().contains(&format!(
        "gateway_subscription_disabled{{subscription=\"{n_h}\"}} 0"
    )));
    // While disabled nothing is sent to it: its deliveries are dead-lettered without a call.
    let calls = dead.records().faulted;
    post(&client, running.inbound_addr, "GONE-2", 1, "1.001234", "u").await;
    let store = running.engine.store.clone();
    let dead_route = gateway::app::agencies::route_name(&n_d);
    let mut open = 0;
    for _ in 0..600 {
        open = store
            .dead_letters(&gw_store::DeadLetterFilter {
                route: Some(dead_route.clone()),
                key: Some("GONE-2".into()),
                state: Some(gw_store::DeadLetterState::Open),
                limit: 0,
            })
            .await
            .unwrap()
            .len();
        if open > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 1, "GONE-2 dead-lettered while disabled");
    let letters = store
        .dead_letters(&gw_store::DeadLetterFilter {
            route: Some(dead_route.clone()),
            key: Some("GONE-2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        letters[0]
            .letter
            .reason
            .starts_with("subscription_disabled"),
        "{}",
        letters[0].letter.reason
    );
    assert_eq!(dead.records().faulted, calls, "no call while disabled");
    eventually(
        Duration::from_secs(30),
        "the healthy agency has GONE-2",
        || !versions_of(&healthy.records(), "GONE-2").is_empty(),
    )
    .await;

    // Enable, then replay what it missed: it receives every dossier's latest version.
    dead.set_faults(Faults::default());
    let was = states
        .enable(&n_d, gateway::model::time::now_ms())
        .await
        .unwrap();
    assert_eq!(was.unwrap().reason, "gone");
    let mut steps = 0;
    let count = gateway::app::agencies::replay_since(
        running.engine.broker.as_ref(),
        store.as_ref(),
        &n_d,
        since,
        "test",
        |_, _| steps += 1,
    )
    .await
    .unwrap();
    assert!(
        count.found >= 2 && count.replayed == count.found,
        "{count:?}"
    );
    assert_eq!(steps, count.found);
    eventually(
        Duration::from_secs(60),
        "the enabled agency receives what it missed",
        || {
            let r = dead.records();
            ["GONE-1", "GONE-2"]
                .iter()
                .all(|k| !versions_of(&r, k).is_empty())
        },
    )
    .await;
    let r = dead.records();
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert!(r.accepted.iter().all(|a| a.body["data"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| k == "code" || k == "version")));
    running.shutdown().await;
}

/// A request signed the way the gateway signs (Standard Webhooks), with knobs to break it.
async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    ts: i64,
    body: &[u8],
    sent_body: &[u8],
) -> (u16, String) {
    let h = headers(&[WebhookSecret::parse(secret).unwrap()], id, ts, body).unwrap();
    let mut req = client.post(url).header("content-type", "application/json");
    for (n, v) in h {
        req = req.header(n, v);
    }
    let r = req.body(sent_body.to_vec()).send().await.unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    (status, v["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn the_sandbox_refuses_bad_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, verifying) = ec_key(dir.path());
    let s = AgencySandbox::start(0, &[SECRET_NEW], vec![])
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let now = gateway::model::time::now_ms() / 1000;
    let body = br#"{"type":"dossier.upserted","key":"K","data":{"code":"K"}}"#;
    let other = br#"{"type":"dossier.upserted","key":"K","data":{"code":"X"}}"#;
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m1", now, body, body).await,
        (200, String::new())
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_OLD, "m2", now, body, body).await,
        (401, "bad_signature".into())
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m3", now, body, other).await,
        (401, "bad_signature".into()),
        "tampered"
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m4", now - 301, body, body).await,
        (401, "stale".into())
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m5", now + 301, body, body).await,
        (401, "stale".into())
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m1", now, other, other).await,
        (409, "replayed".into())
    );
    assert_eq!(
        send(&c, &s.url(), SECRET_NEW, "m1", now, body, body)
            .await
            .0,
        200,
        "a duplicate"
    );
    let missing = c.post(s.url()).body(body.to_vec()).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let not_json = send(&c, &s.url(), SECRET_NEW, "m6", now, b"[1]", b"[1]").await;
    assert_eq!(not_json, (400, "bad_body".into()));
    let r = s.records();
    assert_eq!(r.accepted.len(), 1);
    assert_eq!(r.duplicates, 1);
    assert_eq!(r.refused.len(), 7, "{:?}", r.refused);

    // RFC 9421: a good signature passes, a reused nonce and a missing signature are refused.
    let h = AgencySandbox::start(0, &[SECRET_NEW], vec![verifying])
        .await
        .unwrap();
    let key = gw_crypto::keys::load_pem(
        "province-2026",
        &std::fs::read(&key_path).unwrap(),
        None,
        None,
    )
    .unwrap();
    let signed = |id: &str, nonce: Option<String>| {
        let mut hs = headers(&[WebhookSecret::parse(SECRET_NEW).unwrap()], id, now, body).unwrap();
        hs.push(("content-type".into(), "application/json".into()));
        let parts = gw_crypto::httpsig::RequestParts {
            method: "POST",
            target_uri: &h.url(),
            headers: &hs,
            body,
        };
        let sig = gw_crypto::httpsig::sign_request(
            &parts,
            &key,
            &gw_crypto::httpsig::SignParams {
                nonce,
                ..Default::default()
            },
        )
        .unwrap();
        hs.extend(sig.to_pairs());
        hs
    };
    let go = |hs: Vec<(String, String)>| {
        let mut req = c.post(h.url());
        for (n, v) in hs {
            req = req.header(n, v);
        }
        req.body(body.to_vec()).send()
    };
    let nonce = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
    assert_eq!(
        go(signed("r1", Some(nonce.clone())))
            .await
            .unwrap()
            .status(),
        200
    );
    let again = go(signed("r2", Some(nonce))).await.unwrap();
    assert_eq!(again.status(), 401, "a reused nonce");
    let unsigned = go(headers(
        &[WebhookSecret::parse(SECRET_NEW).unwrap()],
        "r3",
        now,
        body,
    )
    .unwrap())
    .await
    .unwrap();
    assert_eq!(unsigned.status(), 401, "no RFC 9421 signature");
    let r = h.records();
    assert_eq!(r.accepted.len(), 1);
    assert_eq!(r.accepted[0].keyid.as_deref(), Some("province-2026"));
    assert!(
        r.refused.iter().all(|x| x.error == "bad_http_signature"),
        "{:?}",
        r.refused
    );
}
