//! The document axis end to end through RabbitMQ and PostgreSQL: the strict axis sandbox as
//! the national axis, a recording sink as the one-stop system, the gateway in between.
//!
//! - Flow 1: a `document.send` posted by the one-stop system leaves as a signed edXML envelope
//!   the axis accepts (and that verifies against the trust anchors, Vietnamese text intact).
//! - Flow 2: documents addressed to the province are polled, verified, published as
//!   `document.received`, acknowledged with 01; a crash in the middle of the poll (after the
//!   publish, after the mark, at the acknowledgement) loses nothing and duplicates nothing.
//! - Flow 3: a `document.status` from the one-stop system becomes an `updateStatus`; a status
//!   message from the axis becomes a `document.status` event; both in the store's history.
//! - Refusals: the axis's (wrong organ, duplicate DocumentId) are dead-lettered with its code;
//!   received envelopes unsigned, tampered or signed by an untrusted key are refused and
//!   answered `rejection`, nothing published.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use gateway::app;
use gateway::jobs::axis::{AxisPoll, Stop};
use gw_contract_tests::axis::{Axis, AxisConfig, AxisFaults};
use gw_contract_tests::sink::{Faults as SinkFaults, Record, Sink};
use gw_crypto::keys::{load_pem, SigningKey, TrustStore};
use gw_edxml::model::{Envelope, Header};
use gw_edxml::write::{AttachmentSource, Outgoing};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const PROVINCE: &str = "000.00.00.H22";
const TNMT: &str = "000.00.01.H22";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn certs(name: &str) -> PathBuf {
    root().join("certs-example").join(name)
}

/// An example key with its certificate and the intermediate.
fn key(name: &str) -> SigningKey {
    let mut cert = std::fs::read(certs(&format!("{name}.pem"))).unwrap();
    cert.extend(std::fs::read(certs("intermediate-ca.pem")).unwrap());
    load_pem(
        name,
        &std::fs::read(certs(&format!("{name}.key"))).unwrap(),
        Some(&cert),
        None,
    )
    .unwrap()
}

fn config(data: &Path, route: &str, axis: &Axis, sink: &Sink) -> String {
    // The province's certificate file: leaf, then the intermediate (KeyInfo carries both).
    let chain = data.join("province.pem");
    let mut pem = std::fs::read(certs("sign-rsa.pem")).unwrap();
    pem.extend(std::fs::read(certs("intermediate-ca.pem")).unwrap());
    std::fs::write(&chain, pem).unwrap();
    std::env::set_var("GW_TEST_AXIS_SECRET", &axis.config().systems[0].secret);
    format!(
        r#"
[gateway]
instance = "test"
data_dir = "{data}"
shutdown_grace = "5s"

[broker]
url = "amqp://guest@127.0.0.1:5672/%2f"
password = {{ env = "GW_TEST_AMQP_PASSWORD" }}

[store]
url = "postgres://postgres@127.0.0.1:5432/test?schema={route}"

[inbound]
listen = "127.0.0.1:0"
max_body_bytes = 1048576

[ops]
listen = "127.0.0.1:0"

[circuit]
open_for = "500ms"

[retry]
initial = "50ms"
max_delay = "300ms"
max_elapsed = "1h"

[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
kinds = ["document.*"]

[signing.province]
scheme = "xmldsig-enveloped"
key = "{key}"
certificate = "{chain}"
trust_anchors = "{anchors}"

[adapters.axis]
connector = "axis"
url = "{axis}"
timeout = "2s"
signing = "province"

[adapters.axis.axis]
system_id = "{PROVINCE}"
secret = {{ env = "GW_TEST_AXIS_SECRET" }}
organ_id = "{PROVINCE}"
poll_interval = "0s"
source_name = "axis"

[adapters.onestop]
connector = "http"
url = "{sink}"
timeout = "2s"

[[routes]]
name = "{route}_out"
from = "onestop"
kinds = ["document.send", "document.status"]
to = "axis"

[[routes]]
name = "{route}_in"
from = "axis"
kinds = ["document.*"]
to = "onestop"
"#,
        data = data.display(),
        key = certs("sign-rsa.key").display(),
        chain = chain.display(),
        anchors = certs("root-ca.pem").display(),
        axis = axis.base_url(),
        sink = sink.url(),
    )
}

fn sample() -> Envelope {
    let p = root().join("crates/edxml/samples/document.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The sample document from `from` to `to`, DocumentId code `code`, its first attachment.
/// (Codes are ASCII here: the `http` connector carries the key in `X-Gateway-Key`, which the
/// sink, like most HTTP stacks, reads as ASCII; a `QĐ` code is a known gap of that connector.)
fn document(from: &str, to: &str, code: &str) -> Envelope {
    let mut env = sample();
    if let Header::Document(h) = &mut env.header {
        h.from.organ_id = from.into();
        h.document_id.organ_id = from.into();
        h.document_id.code = code.into();
        h.to.retain(|t| t.organ_id == to);
        if h.to.is_empty() {
            h.to.push(gw_edxml::model::Organ {
                organ_id: to.into(),
                organ_name: "Ủy ban nhân dân tỉnh Quảng Ninh".into(),
                ..Default::default()
            });
        }
    }
    env.manifest.truncate(1);
    env
}

fn document_id(env: &Envelope) -> String {
    match &env.header {
        Header::Document(h) => h.document_id.to_string(),
        Header::Status(_) => unreachable!(),
    }
}

/// Build `env` with one text attachment, signed by `signer` (or unsigned).
fn edxml(env: &Envelope, signer: Option<&SigningKey>) -> Vec<u8> {
    let att = "Nội dung công văn: đề nghị giải quyết hồ sơ."
        .as_bytes()
        .to_vec();
    let id = env.manifest[0].content_id.clone();
    let out = Outgoing::new(env.clone(), vec![(id, &att as &dyn AttachmentSource)]).unwrap();
    let mut buf = Vec::new();
    match signer {
        Some(k) => out.sign_to(k, &mut buf).unwrap(),
        None => out.write(None, &mut buf).unwrap(),
    };
    buf
}

async fn post(inbound: std::net::SocketAddr, kind: &str, key: &str, payload: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": kind, "key": key, "payload": payload}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn send_payload(env: &Envelope) -> Value {
    let att = "Kết quả giải quyết hồ sơ: đã cấp giấy chứng nhận.".as_bytes();
    json!({"envelope": env, "attachments": [
        {"content_id": env.manifest[0].content_id,
         "base64": base64::engine::general_purpose::STANDARD.encode(att)}]})
}

fn of_kind(records: &[Record], kind: &str) -> Vec<Record> {
    records.iter().filter(|r| r.kind == kind).cloned().collect()
}

struct World {
    axis: Axis,
    sink: Sink,
    running: app::Running,
    loaded: gateway::config::Loaded,
    /// The configuration as a file (for the `gateway` binary).
    config: PathBuf,
    _dir: tempfile::TempDir,
    /// Deletes the gateway's RabbitMQ queues when the scenario ends.
    _queues: Queues,
}

async fn world(name: &str) -> World {
    let axis = Axis::start(0, AxisConfig::default()).await.unwrap();
    let sink = Sink::start(0, SinkFaults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &unique(name), &axis, &sink);
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let queues = Queues::of(&running);
    World {
        axis,
        sink,
        running,
        loaded,
        config: file,
        _dir: dir,
        _queues: queues,
    }
}

fn poll(w: &World) -> AxisPoll {
    AxisPoll::from_config(&w.loaded).unwrap().remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_goes_out_signed_and_its_status_comes_back() {
    if !services_available("a_document_goes_out_signed_and_its_status_comes_back") {
        return;
    }
    let w = world("axis_out").await;
    let env = document(PROVINCE, TNMT, "101/QD-UBND");
    let doc = document_id(&env);
    assert_eq!(
        post(
            w.running.inbound_addr,
            "document.send",
            &doc,
            send_payload(&env)
        )
        .await,
        202
    );
    eventually(Duration::from_secs(20), "the axis accepts it", || {
        w.axis.records().sent.len() == 1
    })
    .await;
    let sent = &w.axis.records().sent[0];
    assert_eq!(sent.document_id, doc);
    assert_eq!(sent.to_organs, [TNMT]);
    // What the axis holds verifies against the anchors; the Vietnamese text is intact.
    let xml = w.axis.sent_xml(&sent.doc_id).unwrap();
    let trust = TrustStore::from_pem(&std::fs::read(certs("root-ca.pem")).unwrap()).unwrap();
    let mut atts = gw_edxml::read::InMemory::default();
    let got = gw_edxml::read::read(&xml[..], &mut atts)
        .unwrap()
        .verify(&trust)
        .unwrap();
    assert_eq!(got.envelope, env);
    assert_eq!(
        atts.attachments.values().next().unwrap(),
        "Kết quả giải quyết hồ sơ: đã cấp giấy chứng nhận.".as_bytes()
    );

    // The organ answers "accepted"; the poll turns it into a document.status event.
    w.axis.respond(&sent.doc_id, "acceptance").unwrap();
    let p = poll(&w);
    let s = p.poll_once(&w.running.engine).await.unwrap();
    assert_eq!((s.published, s.acknowledged, s.refused), (1, 1, 0));
    eventually(
        Duration::from_secs(20),
        "the status reaches the one-stop system",
        || !of_kind(&w.sink.records(), "document.status").is_empty(),
    )
    .await;
    let st = of_kind(&w.sink.records(), "document.status");
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].key, doc);
    let history = p.store().await.unwrap().history(&doc).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].code.as_deref(), history[0].direction.as_str()),
        (Some("03"), "received")
    );
    // Polled again: nothing new.
    let s = p.poll_once(&w.running.engine).await.unwrap();
    assert_eq!(s.published + s.acknowledged, 0);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_received_document_is_published_acknowledged_and_its_statuses_follow() {
    if !services_available("a_received_document_is_published_acknowledged_and_its_statuses_follow")
    {
        return;
    }
    let w = world("axis_in").await;
    let env = document(TNMT, PROVINCE, "77/STNMT-QLDD");
    let doc = document_id(&env);
    let item = w
        .axis
        .hold(PROVINCE, TNMT, "edoc", edxml(&env, Some(&key("sign-ec"))));
    let p = poll(&w);
    let s = p.poll_once(&w.running.engine).await.unwrap();
    assert_eq!((s.published, s.acknowledged, s.refused), (1, 1, 0));
    assert_eq!(w.axis.records().statuses_of(&item), ["inbox"]);
    eventually(
        Duration::from_secs(20),
        "document.received delivered",
        || !of_kind(&w.sink.records(), "document.received").is_empty(),
    )
    .await;
    let r = &of_kind(&w.sink.records(), "document.received")[0];
    assert_eq!(r.key, doc);

    // The one-stop system processes it: its status goes to the axis as the axis word.
    let code = post(
        w.running.inbound_addr,
        "document.status",
        &doc,
        json!({"axis_id": item, "status": "05"}),
    )
    .await;
    assert_eq!(code, 202);
    eventually(Duration::from_secs(20), "updateStatus processing", || {
        w.axis.records().statuses_of(&item).len() == 2
    })
    .await;
    assert_eq!(w.axis.records().statuses_of(&item), ["inbox", "processing"]);
    // The history: the automatic 01; the route's trail has the status sent.
    let history = p.store().await.unwrap().history(&doc).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].code.as_deref(), history[0].word.as_deref()),
        (Some("01"), Some("inbox"))
    );
    let trail = w.running.engine.store.outcomes_by_key(&doc).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|o| o.kind == "document.status" && o.destination == "axis"),
        "{trail:?}"
    );
    // `gateway edxml history` shows both.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["edxml", "history", &doc, "--config"])
        .arg(&w.config)
        .env("GW_TEST_AMQP_PASSWORD", "guest")
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains("inbox"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("sent") && row.contains(" 01 ") && row.contains(&item),
        "{row}"
    );
    assert!(text.contains("route trail:"), "{text}");
    assert!(
        text.contains("_out"),
        "the status sent is in the trail: {text}"
    );
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_axis_refusals_are_dead_lettered_and_bad_envelopes_are_never_published() {
    if !services_available(
        "the_axis_refusals_are_dead_lettered_and_bad_envelopes_are_never_published",
    ) {
        return;
    }
    let w = world("axis_refuse").await;
    // A document that does not come from the province: refused before anything is sent.
    let theirs = document(TNMT, PROVINCE, "1/X");
    let theirs_id = document_id(&theirs);
    assert_eq!(
        post(
            w.running.inbound_addr,
            "document.send",
            &theirs_id,
            send_payload(&theirs)
        )
        .await,
        202
    );
    // A duplicate DocumentId: the first goes, the second (other content) is the axis's refusal.
    let first = document(PROVINCE, TNMT, "2/X");
    let dup_id = document_id(&first);
    assert_eq!(
        post(
            w.running.inbound_addr,
            "document.send",
            &dup_id,
            send_payload(&first)
        )
        .await,
        202
    );
    let mut second = first.clone();
    if let Header::Document(h) = &mut second.header {
        h.subject = "Một văn bản khác cùng số".into();
    }
    assert_eq!(
        post(
            w.running.inbound_addr,
            "document.send",
            &dup_id,
            send_payload(&second)
        )
        .await,
        202
    );
    let store = w.running.engine.store.clone();
    let dead = |key: String| {
        let store = store.clone();
        async move {
            for _ in 0..300 {
                let dls = store
                    .dead_letters(&gw_store::DeadLetterFilter {
                        key: Some(key.clone()),
                        limit: 5,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                if let Some(d) = dls.into_iter().next() {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{key} never reached the dead letters")
        }
    };
    let d = dead(theirs_id).await;
    assert!(
        d.letter
            .last_answer
            .contains("this adapter sends for organ 000.00.00.H22"),
        "{}",
        d.letter.last_answer
    );
    let d = dead(dup_id.clone()).await;
    assert!(
        d.letter.reason.contains("body_error_permanent"),
        "{}",
        d.letter.reason
    );
    assert!(
        d.letter.last_answer.contains("DUPLICATE_DOCUMENT"),
        "{}",
        d.letter.last_answer
    );
    let rec = w.axis.records();
    assert_eq!(rec.sent.len(), 1, "only the first of the duplicates");
    assert_eq!(rec.refusals("DUPLICATE_DOCUMENT"), 1);
    assert!(rec.sent.iter().all(|s| s.from_organ == PROVINCE));

    // Received: unsigned, tampered, signed by a key outside the anchors' tree (self-signed
    // certificate), not addressed to the province. Each refused, none published.
    let unsigned = w.axis.hold(
        PROVINCE,
        TNMT,
        "edoc",
        edxml(&document(TNMT, PROVINCE, "3/X"), None),
    );
    let good = edxml(&document(TNMT, PROVINCE, "4/X"), Some(&key("sign-ec")));
    let tampered = String::from_utf8(good)
        .unwrap()
        .replacen("cấp giấy", "thu hồi", 1)
        .into_bytes();
    let tampered = w.axis.hold(PROVINCE, TNMT, "edoc", tampered);
    let expired = w.axis.hold(
        PROVINCE,
        TNMT,
        "edoc",
        edxml(&document(TNMT, PROVINCE, "5/X"), Some(&key("sign-expired"))),
    );
    let elsewhere = w.axis.hold(
        PROVINCE,
        TNMT,
        "edoc",
        edxml(
            &document(TNMT, "000.00.02.H22", "6/X"),
            Some(&key("sign-ec")),
        ),
    );
    let s = poll(&w).poll_once(&w.running.engine).await.unwrap();
    assert_eq!((s.published, s.refused), (0, 4), "{s:?}");
    let rec = w.axis.records();
    for id in [&unsigned, &tampered, &expired, &elsewhere] {
        assert_eq!(rec.statuses_of(id), ["rejection"], "{id}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(of_kind(&w.sink.records(), "document.received").is_empty());
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_in_the_middle_of_the_poll_loses_nothing_and_duplicates_nothing() {
    if !services_available("a_crash_in_the_middle_of_the_poll_loses_nothing_and_duplicates_nothing")
    {
        return;
    }
    let w = world("axis_crash").await;
    let signer = key("sign-ec");
    let mut items = Vec::new();
    for i in 0..3 {
        let env = document(TNMT, PROVINCE, &format!("{}/CRASH", 10 + i));
        items.push((
            document_id(&env),
            w.axis
                .hold(PROVINCE, TNMT, "edoc", edxml(&env, Some(&signer))),
        ));
    }
    // Crash 1: after the confirmed publish of the first, before it is marked.
    let s = poll(&w)
        .poll_until(&w.running.engine, Stop::AfterPublish)
        .await
        .unwrap();
    assert_eq!(s.published, 1);
    // Crash 2 (a new instance of the job, as after a restart): after the mark of the first
    // (published again under the same envelope id), before the acknowledgement.
    let s = poll(&w)
        .poll_until(&w.running.engine, Stop::AfterMark)
        .await
        .unwrap();
    assert_eq!(s.published, 1);
    // Crash 3: the acknowledgement itself fails (the axis is unavailable for it).
    w.axis.set_faults(AxisFaults {
        fail_before: 1,
        only: "updateStatus".into(),
        ..Default::default()
    });
    let e = poll(&w).poll_once(&w.running.engine).await.unwrap_err();
    assert!(e.to_string().contains("updateStatus"), "{e}");
    // Restart: everything left is finished.
    let s = poll(&w).poll_once(&w.running.engine).await.unwrap();
    assert_eq!(s.refused, 0);
    let s2 = poll(&w).poll_once(&w.running.engine).await.unwrap();
    assert_eq!(
        (s2.published, s2.acknowledged),
        (0, 0),
        "nothing left: {s:?} then {s2:?}"
    );
    let rec = w.axis.records();
    for (_, item) in &items {
        assert_eq!(
            rec.statuses_of(item),
            ["inbox"],
            "acknowledged once: {item}"
        );
    }
    eventually(Duration::from_secs(20), "three documents delivered", || {
        of_kind(&w.sink.records(), "document.received").len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = of_kind(&w.sink.records(), "document.received");
    let mut keys: Vec<&str> = got.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    let mut want: Vec<&str> = items.iter().map(|(d, _)| d.as_str()).collect();
    want.sort();
    assert_eq!(keys, want, "each document delivered exactly once: {got:?}");
    // The store: each taken once, published, acknowledged; each with its one 01.
    let store = poll(&w).store().await.unwrap();
    for (doc, item) in &items {
        let t = store.taken(doc).await.unwrap().unwrap();
        assert_eq!(&t.axis_id, item);
        assert!(t.published_ms.is_some() && t.acked_ms.is_some());
        let h = store.history(doc).await.unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
    }
    w.running.shutdown().await;
}
