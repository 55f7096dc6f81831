//! The agencies' pull feed end to end: events accepted at the edge → a pull subscription's
//! queue on the broker → the feed writer → the feed in the store → `GET /feeds/{subscription}`,
//! signed pages, and the Python agency client of `docs/agencies.md` (jwcrypto) against it.
//!
//! Scenarios: cursor semantics across pages and a restart (embedded and RabbitMQ +
//! PostgreSQL), one entry per redelivered event, field minimisation in the feed, evidence and
//! metrics of pages served; refusals (token, feed, query, cursor ahead), the retention answer,
//! a long-poll that returns when an entry arrives; the documented Python client paging,
//! detecting a tampered page and reading the retention answer.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gateway::app;
use gateway::model::envelope::Envelope;
use gw_crypto::jws::JwsTrust;
use gw_crypto::keys::VerifyingKey;
use gw_store::feeds::FeedStore;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const FEED_TOKEN: &str = "feed-token-so-tnmt";
const OTHER_TOKEN: &str = "feed-token-ioc";
const CITIZEN_ID: &str = "001099012345";
const OWNER: &str = "Nguyễn Văn An";
const LEGAL_BASIS: &str = "Nghị định 107/2021/NĐ-CP, Điều 19";
const KEY_ID: &str = "province-feeds";

/// The base configuration plus two pull subscriptions (`sub` takes procedures 1.004…, pages of
/// 3; `other` everything) signed by the example EC key.
fn feed_config(
    backend: Backend,
    dir: &Path,
    route: &str,
    sink: &str,
    sub: &str,
    other: &str,
) -> String {
    std::env::set_var("GW_TEST_FEED_TOKEN", FEED_TOKEN);
    std::env::set_var("GW_TEST_FEED_TOKEN_OTHER", OTHER_TOKEN);
    let base = config_text(backend, dir, route, sink, "");
    format!(
        r#"{base}
[signing.feeds]
scheme = "jws-detached"
key = "certs-example/sign-ec.key"
certificate = "certs-example/sign-ec.pem"
key_id = "{KEY_ID}"

[subscriptions.{sub}]
agency = "Sở Tài nguyên và Môi trường"
delivery = "pull"
kinds = ["dossier.*"]
procedures = ["1.004"]
fields = ["code", "status", "procedure"]
personal = ["owner_name"]
legal_basis = "{LEGAL_BASIS}"

[subscriptions.{sub}.pull]
token = {{ env = "GW_TEST_FEED_TOKEN" }}
signing = "feeds"
max_limit = 3
max_wait = "20s"

[subscriptions.{other}]
agency = "Trung tâm IOC tỉnh"
delivery = "pull"
fields = ["code"]

[subscriptions.{other}.pull]
token = {{ env = "GW_TEST_FEED_TOKEN_OTHER" }}
signing = "feeds"
"#
    )
}

/// A dossier snapshot of procedure `procedure`, with personal data the feed must not carry
/// (the citizen ID) and one it may (the owner's name, named with a legal basis).
async fn post(
    client: &reqwest::Client,
    inbound: std::net::SocketAddr,
    key: &str,
    version: i64,
    procedure: &str,
) {
    let body = json!({"kind": "dossier.upserted", "key": key, "version": version, "payload": {
        "code": key, "version": version, "status": "received", "procedure_code": procedure,
        "note": "internal note", "owner": {"name": OWNER, "citizen_id": CITIZEN_ID}}});
    let r = client
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("inbound answers");
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
}

struct Got {
    status: u16,
    body: Vec<u8>,
    signature: Option<String>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn cursors(&self) -> Vec<i64> {
        self.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["cursor"].as_i64().unwrap())
            .collect()
    }
}

async fn get(
    client: &reqwest::Client,
    inbound: std::net::SocketAddr,
    sub: &str,
    token: Option<&str>,
    query: &str,
) -> Got {
    let mut req = client.get(format!("http://{inbound}/feeds/{sub}?{query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("the feed answers");
    let status = r.status().as_u16();
    let signature = r
        .headers()
        .get("feed-signature")
        .map(|v| v.to_str().unwrap().to_string());
    Got {
        status,
        body: r.bytes().await.unwrap().to_vec(),
        signature,
    }
}

fn province_key() -> Vec<VerifyingKey> {
    let pem = std::fs::read("certs-example/sign-ec.pem").unwrap();
    vec![VerifyingKey::from_pem(KEY_ID, &pem).unwrap()]
}

/// The page's signature verifies over its exact bytes with the province's key.
fn assert_signed(got: &Got) {
    let jws = got.signature.as_deref().expect("a Feed-Signature header");
    let keys = province_key();
    let v = gw_crypto::jws::verify(jws, Some(&got.body), JwsTrust::Keys(&keys))
        .unwrap_or_else(|e| panic!("the page's signature must verify: {e}"));
    assert_eq!(v.key_id.as_deref(), Some(KEY_ID));
    assert_eq!(v.header["alg"], "ES256");
}

async fn wait_head(feeds: &dyn FeedStore, sub: &str, head: i64) {
    let started = std::time::Instant::now();
    loop {
        let now = feeds.stats(sub).await.unwrap().head;
        assert!(now <= head, "{sub}: {now} entries, expected {head}");
        if now == head {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{sub}: {now} entries after 60 s, expected {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cursor_semantics_across_pages_and_a_restart(backend: Backend) {
    let sink = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("feedflow");
    let (sub, other) = (unique("tnmt"), unique("ioc"));
    let loaded = load(&feed_config(
        backend,
        dir.path(),
        &route,
        &sink.url(),
        &sub,
        &other,
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let inbound = running.inbound_addr;
    let feeds = running.engine.store.clone().feeds();
    let client = reqwest::Client::new();

    // D1 v1, D2 v1, an event of another procedure (not taken), D1 v2, D3 v1.
    post(&client, inbound, "D1", 1, "1.004001").await;
    post(&client, inbound, "D2", 1, "1.004002").await;
    post(&client, inbound, "X1", 1, "2.000001").await;
    post(&client, inbound, "D1", 2, "1.004001").await;
    post(&client, inbound, "D3", 1, "1.004003").await;
    wait_head(feeds.as_ref(), &sub, 4).await;
    wait_head(feeds.as_ref(), &other, 5).await;

    // Pages of at most 3 (max_limit): no gap, no duplicate, in order per dossier.
    let first = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0&limit=50").await;
    assert_eq!(first.status, 200);
    assert_signed(&first);
    assert_eq!(first.cursors(), vec![1, 2, 3]);
    let again = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0&limit=50").await;
    assert_eq!(
        again.body, first.body,
        "a page fetched twice is the same bytes"
    );
    assert_signed(&again);
    let header = |g: &Got| {
        g.signature
            .clone()
            .unwrap()
            .split_once("..")
            .unwrap()
            .0
            .to_string()
    };
    assert_eq!(header(&again), header(&first), "the same signing input");
    // Fetched twice so far: two links, each holding the page.
    one_link_per_page(&running, &sub, &first, 2, dir.path()).await;
    let second = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=3").await;
    assert_eq!(second.cursors(), vec![4]);
    let end = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=4").await;
    assert_eq!((end.status, end.cursors()), (200, vec![]));
    assert_eq!(end.json()["next"], 4);
    assert_signed(&end);
    let small = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=1&limit=2").await;
    assert_eq!(small.cursors(), vec![2, 3]);

    let entries: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|g| g.json()["entries"].as_array().unwrap().clone())
        .collect();
    let order: Vec<(String, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["dossier"].as_str().unwrap().to_string(),
                e["event"]["version"].as_i64().unwrap(),
            )
        })
        .collect();
    // In order per dossier (dossiers run in lanes of their own: no order between them).
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("D1".into(), 1),
            ("D1".into(), 2),
            ("D2".into(), 1),
            ("D3".into(), 1)
        ]
    );
    let d1: Vec<i64> = order
        .iter()
        .filter(|(d, _)| d == "D1")
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(d1, vec![1, 2], "D1's versions in order");
    for e in &entries {
        // Only the named fields (and the named personal one), nothing else of the payload.
        let data = e["event"]["data"].as_object().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["code", "owner", "procedure_code", "status"],
            "{e}"
        );
        assert_eq!(data["owner"], json!({"name": OWNER}));
        assert_eq!(
            e["fields"],
            json!(["code", "procedure", "status", "owner_name"])
        );
        let bytes = serde_json::to_vec(&e["event"]).unwrap();
        assert_eq!(e["digest"], gw_crypto::digest::sha256_hex(&bytes));
    }
    let text = String::from_utf8_lossy(&first.body);
    assert!(!text.contains(CITIZEN_ID) && !text.contains("internal note"));

    // One entry per event: the same envelope delivered twice appends once.
    let env = Envelope::new(
        "dossier.noted",
        "D9",
        "onestop",
        json!({"code": "D9", "procedure_code": "1.004009", "status": "received"}),
    );
    running.engine.publish(&env).await.unwrap();
    running.engine.publish(&env).await.unwrap();
    let shared = running.engine.feeds.clone().expect("feeds are wired");
    let started = std::time::Instant::now();
    while shared
        .metrics
        .count(&sub, gateway::agencies::feed::Counted::Duplicates)
        < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second copy was not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        feeds.stats(&sub).await.unwrap().head,
        5,
        "one entry for two copies"
    );
    let p = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=4").await;
    assert_eq!(p.cursors(), vec![5]);
    assert_eq!(p.json()["entries"][0]["event"]["id"], env.id.to_string());

    // Every page with entries is evidence: who received which dossier, which fields, why.
    let records = running
        .engine
        .store
        .evidence_by_dossier("D1")
        .await
        .unwrap();
    let served: Vec<_> = records
        .iter()
        .filter(|r| r.record.route == format!("feed.{sub}"))
        .collect();
    assert!(
        served.len() >= 2,
        "D1's two entries, served at least once each"
    );
    for r in &served {
        assert_eq!(
            r.record.operation,
            format!(
                "subscription={sub}; fields=code,procedure,status,owner_name; legal_basis={LEGAL_BASIS}"
            )
        );
        let rc: Value = serde_json::from_str(r.record.result_code.as_deref().unwrap()).unwrap();
        let cursor = rc["cursor"].as_i64().unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e["cursor"] == cursor && e["dossier"] == "D1"),
            "{rc}"
        );
        assert_eq!(r.record.adapter, sub);
        assert_eq!(r.record.http_status, Some(200));
    }
    let metrics = client
        .get(format!("http://{}/metrics", running.ops_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "gateway_feed_entries_appended_total{{subscription=\"{sub}\"}} 5"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "gateway_feed_lag_seconds{{subscription=\"{sub}\"}}"
    )));
    assert!(!metrics.contains(CITIZEN_ID) && !metrics.contains("D1\""));

    // A restart: the same pages, and numbering goes on without a gap.
    running.shutdown().await;
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts again");
    let _queues_running = Queues::of(&running);
    let inbound = running.inbound_addr;
    let feeds = running.engine.store.clone().feeds();
    let after = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0").await;
    assert_eq!(after.body, first.body, "the same page after a restart");
    assert_signed(&after);
    post(&client, inbound, "D4", 1, "1.004004").await;
    wait_head(feeds.as_ref(), &sub, 6).await;
    let next = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=5").await;
    assert_eq!(next.cursors(), vec![6]);
    running.shutdown().await;
}

/// The evidence records of the page `got` served, fetched `fetches` times: each fetch is one
/// chain link whose leaves are the page's entries and nothing else (one link per page); one
/// of its dossiers' export bundle verifies offline (`proof::verify_bundle`, what
/// `gateway evidence verify --bundle` runs, and `docs/examples/verify_evidence.py`).
async fn one_link_per_page(
    running: &app::Running,
    sub: &str,
    got: &Got,
    fetches: usize,
    dir: &Path,
) {
    let page = got.json();
    let entries = page["entries"].as_array().unwrap().clone();
    let range = json!([page["after"], page["next"]]);
    let store = running.engine.store.clone();
    let mut dossiers: Vec<String> = entries
        .iter()
        .map(|e| e["dossier"].as_str().unwrap().to_string())
        .collect();
    dossiers.sort();
    dossiers.dedup();
    let mut records = Vec::new();
    for d in &dossiers {
        for r in store.evidence_by_dossier(d).await.unwrap() {
            let placed: Option<Value> = r
                .record
                .result_code
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            if r.record.route == format!("feed.{sub}") && placed.is_some_and(|p| p["page"] == range)
            {
                records.push(r);
            }
        }
    }
    // Each fetch of the page is one link: the page's entries are its leaves, nothing else.
    let mut links: std::collections::BTreeMap<i64, Vec<&gw_store::StoredEvidence>> =
        Default::default();
    for r in &records {
        links.entry(r.seq).or_default().push(r);
    }
    assert_eq!(links.len(), fetches, "one link per fetch of the page");
    for (seq, leaves) in &links {
        assert_eq!(
            leaves.len(),
            entries.len(),
            "link {seq}: one leaf per entry"
        );
        let mut at: Vec<u32> = leaves
            .iter()
            .map(|r| {
                let b = r.batch.as_ref().expect("a batch link");
                assert_eq!(
                    b.leaves as usize,
                    entries.len(),
                    "link {seq} holds the page only"
                );
                b.leaf
            })
            .collect();
        at.sort();
        assert_eq!(at, (0..entries.len() as u32).collect::<Vec<_>>());
        for e in &entries {
            let cursor = e["cursor"].as_i64().unwrap();
            let leaf = leaves
                .iter()
                .find(|r| {
                    serde_json::from_str::<Value>(r.record.result_code.as_deref().unwrap()).unwrap()
                        ["cursor"]
                        == cursor
                })
                .unwrap_or_else(|| panic!("entry {cursor} has its leaf in link {seq}"));
            assert_eq!(leaf.record.request_digest, e["digest"].as_str().unwrap());
            assert_eq!(leaf.record.dossier, e["dossier"].as_str().unwrap());
        }
        let chain = store
            .evidence_chain(&leaves[0].record.chain, seq - 1, 100)
            .await
            .unwrap();
        assert_eq!(
            chain.iter().filter(|r| r.seq == *seq).count(),
            entries.len(),
            "no other exchange shares the page's link"
        );
    }
    let seq = *links.keys().next().unwrap();

    // One dossier's proof, exported and checked offline.
    let bundle = dir.join(format!("bundle-{}", uuid::Uuid::now_v7()));
    let dossier = &dossiers[0];
    gateway::evidence::export::export(store.as_ref(), dossier, &bundle, None, &[], None)
        .await
        .expect("the dossier exports");
    let report = gateway::evidence::proof::verify_bundle(&bundle, &|_, _| Ok(()))
        .expect("the bundle verifies");
    assert!(report.exchanges >= 1, "{report:?}");
    let proof: gateway::evidence::proof::Proof =
        serde_json::from_slice(&std::fs::read(bundle.join("proof.json")).unwrap()).unwrap();
    let leaf = proof
        .exchanges
        .iter()
        .find(|x| x.seq == seq)
        .and_then(|x| x.leaf.as_ref())
        .expect("the page's leaf of this dossier is in the proof");
    assert_eq!(leaf.size, entries.len() as u64);
    let python = std::process::Command::new("python3")
        .arg("docs/examples/verify_evidence.py")
        .arg(&bundle)
        .output();
    match python {
        Ok(out) => assert!(
            out.status.success(),
            "verify_evidence.py: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("python3 is required in CI: {e}")
        }
        Err(e) => eprintln!("SKIPPED verify_evidence.py: no python3 ({e})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_cursor_semantics_on_the_embedded_defaults() {
    cursor_semantics_across_pages_and_a_restart(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_cursor_semantics_on_rabbitmq_and_postgres() {
    if !services_available("feed_cursor_semantics_on_rabbitmq_and_postgres") {
        return;
    }
    cursor_semantics_across_pages_and_a_restart(Backend::RabbitPg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_refusals_retention_and_long_poll() {
    if !services_available("feed_refusals_retention_and_long_poll") {
        return;
    }
    let sink = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("feedrefuse");
    let (sub, other) = (unique("tnmt"), unique("ioc"));
    let loaded = load(&feed_config(
        Backend::RabbitPg,
        dir.path(),
        &route,
        &sink.url(),
        &sub,
        &other,
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let inbound = running.inbound_addr;
    let feeds = running.engine.store.clone().feeds();
    let client = reqwest::Client::new();

    // Who may read: a missing or wrong token is 401 whatever the name, a token of another
    // feed 404 whether the name exists or not.
    let unauthorized = get(&client, inbound, &sub, None, "").await;
    assert_eq!(unauthorized.status, 401);
    for (name, token) in [(&sub, "wrong"), (&"nosuch".to_string(), "wrong")] {
        let g = get(&client, inbound, name, Some(token), "").await;
        assert_eq!((g.status, &g.body), (401, &unauthorized.body));
        assert!(g.signature.is_none());
    }
    let not_yours = get(&client, inbound, &sub, Some(OTHER_TOKEN), "").await;
    assert_eq!(not_yours.status, 404);
    let unknown = get(&client, inbound, "nosuch", Some(OTHER_TOKEN), "").await;
    assert_eq!((unknown.status, &unknown.body), (404, &not_yours.body));
    for bad in [
        "after=-1",
        "limit=0",
        "wait=forever",
        "since=yesterday",
        "cursor=1",
        "since=2026-01-01T00:00:00Z&after=1",
    ] {
        let g = get(&client, inbound, &sub, Some(FEED_TOKEN), bad).await;
        assert_eq!(g.status, 400, "{bad}");
        assert_eq!(g.json()["error"]["code"], "bad_query", "{bad}");
    }

    post(&client, inbound, "L1", 1, "1.004001").await;
    wait_head(feeds.as_ref(), &sub, 1).await;
    let ahead = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=9").await;
    assert_eq!(ahead.status, 409);
    assert_eq!(ahead.json()["error"]["head"], 1);

    // A long-poll asked before the entry exists returns with it.
    let waiting = {
        let (client, sub) = (client.clone(), sub.clone());
        tokio::spawn(async move {
            get(&client, inbound, &sub, Some(FEED_TOKEN), "after=1&wait=20s").await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    post(&client, inbound, "L2", 1, "1.004002").await;
    let got = waiting.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.cursors(),
        vec![2],
        "the long-poll returned with the new entry"
    );
    assert_signed(&got);

    // Replay from a time: the cursor before the first entry since then.
    let since = get(
        &client,
        inbound,
        &sub,
        Some(FEED_TOKEN),
        "since=2020-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(
        (since.status, since.json()["cursor"].clone()),
        (200, json!(0))
    );
    assert_signed(&since);

    // Retention removed the first entry: a cursor behind it is told so, with the oldest
    // cursor still served; from there the feed goes on.
    post(&client, inbound, "L3", 1, "1.004003").await;
    wait_head(feeds.as_ref(), &sub, 3).await;
    let entries = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0")
        .await
        .json();
    let second_at = entries["entries"][1]["at_ms"].as_i64().unwrap();
    let purged = feeds.purge(&sub, second_at).await.unwrap();
    assert!(purged.through >= 1);
    let gone = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0").await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["error"]["code"], "cursor_gone");
    assert_eq!(gone.json()["error"]["oldest_cursor"], purged.through);
    let rest = get(
        &client,
        inbound,
        &sub,
        Some(FEED_TOKEN),
        &format!("after={}", purged.through),
    )
    .await;
    assert_eq!(rest.cursors().first(), Some(&(purged.through + 1)));
    let gone_since = get(
        &client,
        inbound,
        &sub,
        Some(FEED_TOKEN),
        "since=2020-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(gone_since.status, 410);
    running.shutdown().await;
}

fn python_with_jwcrypto() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let what = "python3 with jwcrypto (pip install jwcrypto)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true but is not available");
        }
        eprintln!("SKIPPED: {what} is not available");
    }
    ok
}

const CLIENT: &str = "docs/examples/agency_feed.py";

fn client_run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("python3")
        .arg(CLIENT)
        .args(args)
        .env("FEED_TOKEN", FEED_TOKEN)
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_documented_client_is_the_tested_one() {
    let doc = std::fs::read_to_string("docs/agencies.md").unwrap();
    let script = std::fs::read_to_string(CLIENT).unwrap();
    assert!(
        doc.contains(script.trim()),
        "docs/agencies.md must show {CLIENT} verbatim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_agency_client_pages_verifies_and_detects_tampering() {
    if !services_available("python_agency_client_pages_verifies_and_detects_tampering")
        || !python_with_jwcrypto()
    {
        return;
    }
    let sink = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("feedpy");
    let (sub, other) = (unique("tnmt"), unique("ioc"));
    let loaded = load(&feed_config(
        Backend::RabbitPg,
        dir.path(),
        &route,
        &sink.url(),
        &sub,
        &other,
    ));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let inbound = running.inbound_addr;
    let feeds = running.engine.store.clone().feeds();
    let client = reqwest::Client::new();
    for (i, key) in ["P1", "P2", "P3", "P4", "P5"].iter().enumerate() {
        post(&client, inbound, key, 1, &format!("1.00400{i}")).await;
    }
    wait_head(feeds.as_ref(), &sub, 5).await;
    // The agency knows the province's public key (from its certificate).
    let key = dir.path().join("province.pem");
    let cert = openssl::x509::X509::from_pem(&std::fs::read("certs-example/sign-ec.pem").unwrap())
        .unwrap();
    std::fs::write(
        &key,
        cert.public_key().unwrap().public_key_to_pem().unwrap(),
    )
    .unwrap();
    let key = key.to_str().unwrap();
    let base = format!("http://{inbound}");

    // Pages of 3 from the start: five entries in order, then the cursor to keep.
    let (code, out, err) = client_run(&["pull", &base, &sub, key, "0"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"NEXT 5"), "{out}");
    let cursors: Vec<i64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["cursor"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(cursors, vec![1, 2, 3, 4, 5]);
    let (code, out, _) = client_run(&["pull", &base, &sub, key, "3", "1"]);
    assert_eq!((code, out.lines().last()), (0, Some("NEXT 5")));
    let (code, out, err) = client_run(&["since", &base, &sub, key, "2020-01-01T00:00:00+07:00"]);
    assert_eq!((code, out.trim()), (0, "CURSOR 0"), "{err}");

    // A page kept on disk verifies; one byte changed does not.
    let page = get(&client, inbound, &sub, Some(FEED_TOKEN), "after=0").await;
    let sig = page.signature.clone().unwrap();
    let file = dir.path().join("page.json");
    std::fs::write(&file, &page.body).unwrap();
    let (code, out, err) = client_run(&["verify", key, file.to_str().unwrap(), &sig]);
    assert_eq!((code, out.trim()), (0, "OK 3 entries, next 3"), "{err}");
    // Change one character of a dossier code on the page. Which dossiers the first page holds
    // is not fixed: the fan-out and the feed's writer handle dossiers concurrently (lanes by
    // key), so only each dossier's own versions keep their order in the feed.
    let mut tampered = page.body.clone();
    let at = ["P1", "P2", "P3", "P4", "P5"]
        .iter()
        .find_map(|code| {
            let quoted = format!("\"{code}\"");
            tampered
                .windows(quoted.len())
                .position(|w| w == quoted.as_bytes())
        })
        .expect("a dossier code on the page");
    tampered[at + 2] = b'9';
    std::fs::write(&file, &tampered).unwrap();
    let (code, _, err) = client_run(&["verify", key, file.to_str().unwrap(), &sig]);
    assert_eq!(code, 1, "a tampered page is refused");
    assert!(err.contains("BAD PAGE"), "{err}");
    // Another key does not verify either.
    let stranger = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let other_key = dir.path().join("stranger.pem");
    std::fs::write(&other_key, stranger.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(&file, &page.body).unwrap();
    let (code, _, _) = client_run(&[
        "verify",
        other_key.to_str().unwrap(),
        file.to_str().unwrap(),
        &sig,
    ]);
    assert_eq!(code, 1, "a page verifies with the province's key only");

    // Operators read the same page from the store with the CLI (unsigned, nothing recorded).
    let cfg = dir.path().join("gateway.toml");
    let repo = std::env::current_dir().unwrap();
    let text = feed_config(
        Backend::RabbitPg,
        dir.path(),
        &route,
        &sink.url(),
        &sub,
        &other,
    )
    .replace(
        "\"certs-example/",
        &format!("\"{}/certs-example/", repo.display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("GW_TEST_AMQP_PASSWORD", "guest")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = cli(&["feed", &sub, "--after", "0", "--limit", "3"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.trim().as_bytes(),
        &page.body[..],
        "the agency's page, byte for byte"
    );
    let (code, out) = cli(&["feed", &sub, "--since", "2020-01-01T00:00:00Z"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("cursor 0"), "{out}");
    assert_eq!(cli(&["feed", "nosuch", "--after", "0"]).0, Some(2));

    // Retention: the client is told where to page from.
    let purged = feeds.purge(&sub, i64::MAX).await.unwrap();
    assert_eq!(purged.through, 5);
    let (code, out, err) = client_run(&["pull", &base, &sub, key, "0"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("cursor_gone"), "{err}");
    assert_eq!(out.trim(), "OLDEST 5");
    running.shutdown().await;
}
