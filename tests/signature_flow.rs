//! The remote-signing flow end to end: `signature.requested` at the edge, the request stored
//! and prepared, the official's phone (a strict sandbox) asked once, the answer verified, the
//! document assembled, `signature.completed` / `signature.failed` published through the broker
//! to the routes that take them. Bad input refused with nothing sent; rejection, expiry, a
//! wrong signature; sends in doubt resolved by asking, never by sending twice; a restart at
//! every state; two instances sharing the work on PostgreSQL.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{config_text, eventually, load, unique, Backend, Queues, TOKEN};
use gateway::config::SignerSection;
use gateway::connectors::signer::{HashRequest, RemoteSigner, SignerId, Submitted};
use gateway::connectors::signers::{build, Signers};
use gateway::payments::BrokerSink;
use gateway::signatures::{ServiceSettings, SignatureService};
use gateway::signing::remote::{DigestAlgorithm, RemoteError};
use gw_broker::QueueSpec;
use gw_contract_tests::mysign::{MySign, MySignConfig};
use gw_contract_tests::officials::SignFaults;
use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};
use gw_store::signatures::{RequestState, SignatureRequest, SignatureStore, Step};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const CONFIRM: Duration = Duration::from_millis(150);
const LIFETIME: Duration = Duration::from_millis(1500);
const QUEUE: &str = "onestop.signatures";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with the secret files the sections refer to.
fn secrets() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gw-sigflow-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("sp"), "sandbox-sp-password").unwrap();
    std::fs::write(d.join("client"), "sandbox-client-secret").unwrap();
    d
}

const OFFICIALS: &[(&str, &str, &str)] = &[
    ("official-rsa", "cred-rsa", "5000"),
    ("official-ec", "cred-ec", "5001"),
    ("official-rejects", "cred-rejects", "5000"),
    ("official-away", "cred-away", "5001"),
    ("official-expired", "cred-expired", "5004"),
];

/// The body of a `[signers.NAME]` table (without its header), officials included.
fn section_text(service: &str, url: &str, table: &str) -> String {
    let s = secrets();
    let creds = match service {
        "smartca" => format!(
            "sp_id = \"sandbox-sp\"\nsp_password = {{ file = \"{}\" }}\n",
            s.join("sp").display()
        ),
        _ => format!(
            "client_id = \"sandbox-client\"\nclient_secret = {{ file = \"{}\" }}\nprofile_id = \"sandbox-profile\"\n",
            s.join("client").display()
        ),
    };
    let mut text = format!(
        "service = \"{service}\"\nurl = \"{url}\"\ntrust_anchors = \"{}\"\ntimeout = \"5s\"\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\nrequest_lifetime = \"20s\"\n{creds}",
        root().join("certs-example/chain.pem").display()
    );
    for (user, cred, serial) in OFFICIALS {
        text.push_str(&format!(
            "[[{table}officials]]\nuser_id = \"{user}\"\nserial = \"{serial}\"\n"
        ));
        if service != "smartca" {
            text.push_str(&format!("credential_id = \"{cred}\"\n"));
        }
    }
    text
}

fn section(service: &str, url: &str) -> SignerSection {
    toml::from_str(&section_text(service, url, "")).unwrap()
}

async fn smartca_sandbox() -> SmartCa {
    SmartCa::start(
        0,
        SmartCaConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..SmartCaConfig::default()
        },
    )
    .await
    .unwrap()
}

async fn mysign_sandbox() -> MySign {
    MySign::start(
        0,
        MySignConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..MySignConfig::default()
        },
    )
    .await
    .unwrap()
}

/// The connectors, built afresh (as a restarted gateway builds them).
fn signers(smartca: &SmartCa, mysign: Option<&MySign>) -> Signers {
    let mut s = Signers::default()
        .with(build("smartca", &section("smartca", &smartca.base_url()), &root()).unwrap());
    if let Some(m) = mysign {
        s = s.with(build("mysign", &section("mysign", &m.base_url()), &root()).unwrap());
    }
    s
}

fn settings(instance: &str) -> ServiceSettings {
    ServiceSettings {
        instance: instance.into(),
        batch: 50,
        work_lease: Duration::from_secs(10),
        send_lease: Duration::from_secs(10),
        ..ServiceSettings::default()
    }
}

/// An embedded broker queue the outcomes are published to (confirmed writes).
async fn queue(dir: &Path) -> (Arc<dyn gw_broker::Broker>, BrokerSink) {
    let broker = gw_broker::open(dir.join("q.db").to_str().unwrap(), "t")
        .await
        .unwrap();
    broker
        .declare(&[QueueSpec {
            name: QUEUE.into(),
            delivery_limit: 5,
        }])
        .await
        .unwrap();
    let sink = BrokerSink {
        broker: broker.clone(),
        queue: QUEUE.into(),
    };
    (broker, sink)
}

/// Every envelope on the queue, acked.
async fn drain(broker: &Arc<dyn gw_broker::Broker>) -> Vec<Value> {
    let n = broker.stats(QUEUE).await.unwrap().ready;
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut c = broker.consume(QUEUE, 1000).await.unwrap();
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("a ready message is delivered")
            .expect("consumer open")
            .unwrap();
        out.push(serde_json::from_slice(&d.message.body).unwrap());
        d.ack().await.unwrap();
    }
    out
}

async fn sqlite(dir: &Path, name: &str) -> Arc<dyn SignatureStore> {
    gw_store::signatures::open(dir.join(format!("{name}.db")).to_str().unwrap())
        .await
        .unwrap()
}

fn payload(signer: &str, official: &str, format: &str, doc: &[u8]) -> Value {
    json!({
        "signer": signer,
        "official": official,
        "format": format,
        "document": base64::engine::general_purpose::STANDARD.encode(doc),
        "reason": "Ký kết quả giải quyết hồ sơ",
        "dossier_code": "000.00.01.H22-261206-0001",
    })
}

/// Rounds until the request is terminal (bounded: 300 rounds of at most 50 ms apart).
async fn until_terminal(svc: &SignatureService, sink: &BrokerSink, id: &str) -> SignatureRequest {
    for _ in 0..300 {
        svc.round(sink).await.unwrap();
        let r = svc.store.get(id).await.unwrap().unwrap();
        if r.state.is_terminal() {
            // One more round publishes its outcome.
            svc.round(sink).await.unwrap();
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = svc.store.get(id).await.unwrap().unwrap();
    panic!("request {id} still {} after 300 rounds", r.state.as_str());
}

fn outcome<'a>(events: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["payload"]["request_id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "one outcome event for {id}: {events:?}");
    found[0]
}

/// Bad input is refused at once with the flow's code and nothing stored or sent; a good
/// request is answered with its id, the same id when sent again, and refused (409) when its
/// key is reused for another document.
#[tokio::test]
async fn bad_input_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca_sandbox().await;
    let store = sqlite(dir.path(), "s").await;
    let svc = SignatureService::new(store.clone(), signers(&sb, None), settings("a"));
    let doc = b"KET QUA GIAI QUYET HO SO".to_vec();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown service",
            payload("vnpt", "official-rsa", "cms", &doc),
            "unknown_signer_service",
        ),
        (
            "unknown official",
            payload("smartca", "someone", "cms", &doc),
            "unknown_official",
        ),
        (
            "unknown format",
            payload("smartca", "official-rsa", "docx", &doc),
            "unknown_format",
        ),
        (
            "not a PDF",
            payload("smartca", "official-rsa", "pdf", &doc),
            "document_not_format",
        ),
        (
            "not XML",
            payload("smartca", "official-rsa", "xml", b"{\"json\": true}"),
            "document_not_format",
        ),
        (
            "digest not allowed",
            {
                let mut p = payload("smartca", "official-rsa", "cms", &doc);
                p["digest"] = json!("sha512");
                p
            },
            "digest_not_allowed",
        ),
        (
            "deadline passed",
            {
                let mut p = payload("smartca", "official-rsa", "cms", &doc);
                p["deadline_ms"] = json!(gateway::model::time::now_ms() - 1000);
                p
            },
            "deadline_passed",
        ),
        (
            "not base64",
            {
                let mut p = payload("smartca", "official-rsa", "cms", &doc);
                p["document"] = json!("%%%");
                p
            },
            "document_not_base64",
        ),
        (
            "unknown field",
            {
                let mut p = payload("smartca", "official-rsa", "cms", &doc);
                p["deadlin"] = json!(1);
                p
            },
            "bad_payload",
        ),
    ];
    for (what, p, code) in cases {
        let e = svc
            .accept("onestop", &format!("bad-{what}"), &p)
            .await
            .expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(
            !e.to_string().contains("official-rsa"),
            "{what}: names the official: {e}"
        );
    }
    // An official whose certificate has expired: refused with the verifier's code, and the
    // words name no official's user id.
    sb.set_faults(SignFaults {
        expired_certificate: true,
        ..Default::default()
    });
    let e = svc
        .accept(
            "onestop",
            "expired-cert",
            &payload("smartca", "official-expired", "cms", &doc),
        )
        .await
        .unwrap_err();
    sb.set_faults(SignFaults::default());
    assert_eq!(e.code(), "certificate_expired", "{e}");
    assert!(!e.to_string().contains("official-expired"), "{e}");
    assert!(e.to_string().contains("<official>"), "{e}");
    // A P-256 official cannot sign a SHA-512 digest even where the service allows it.
    let sb2 = smartca_sandbox().await;
    let mut text = section_text("smartca", &sb2.base_url(), "");
    text = text.replace(
        "request_lifetime",
        "digests = [\"sha256\", \"sha512\"]\nrequest_lifetime",
    );
    let wide: SignerSection = toml::from_str(&text).unwrap();
    let svc2 = SignatureService::new(
        sqlite(dir.path(), "s2").await,
        Signers::default().with(build("smartca", &wide, &root()).unwrap()),
        settings("a"),
    );
    let mut p = payload("smartca", "official-ec", "cms", &doc);
    p["digest"] = json!("sha512");
    let e = svc2.accept("onestop", "ec-512", &p).await.unwrap_err();
    assert_eq!(e.code(), "algorithm_mismatch", "{e}");
    assert!(e.to_string().contains("P-256"), "{e}");
    assert!(sb2.records().pushes.is_empty());

    let listed = store
        .list(gw_store::signatures::ListFilter::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "nothing stored: {listed:?}");
    assert!(sb.records().pushes.is_empty(), "nothing reached a phone");

    let good = payload("smartca", "official-rsa", "cms", &doc);
    let a = svc
        .accept("onestop", "H22-0001/result", &good)
        .await
        .unwrap();
    assert!(a.new);
    assert_eq!(
        a.state,
        RequestState::HashComputed,
        "prepared at accept time"
    );
    let again = svc
        .accept("onestop", "H22-0001/result", &good)
        .await
        .unwrap();
    assert_eq!(again.request_id, a.request_id);
    assert!(!again.new);
    let other = payload("smartca", "official-rsa", "cms", b"another document");
    let e = svc
        .accept("onestop", "H22-0001/result", &other)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "key_reused", "{e}");
    assert_eq!(
        store
            .list(gw_store::signatures::ListFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The happy path in the three formats, then the official who refuses, the one who lets the
/// request expire, and a service answering a wrong signature or one over another digest: each
/// ends in its event on the broker queue with the exact reason.
#[tokio::test]
async fn each_outcome_reaches_the_broker_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca_sandbox().await;
    let store = sqlite(dir.path(), "s").await;
    let (broker, sink) = queue(dir.path()).await;
    let svc = SignatureService::new(store.clone(), signers(&sb, None), settings("a"));
    let pdf = gateway::signing::assemble::sample_pdf("KET QUA");
    let xml = b"<KetQua Id=\"kq\"><SoHoSo>000.00.01.H22-261206-0001</SoHoSo></KetQua>".to_vec();
    let mut completed = Vec::new();
    for (format, doc) in [
        ("cms", b"any bytes".to_vec()),
        ("pdf", pdf.clone()),
        ("xml", xml.clone()),
    ] {
        let a = svc
            .accept(
                "onestop",
                &format!("ok-{format}"),
                &payload("smartca", "official-rsa", format, &doc),
            )
            .await
            .unwrap();
        let r = until_terminal(&svc, &sink, &a.request_id).await;
        assert_eq!(
            r.state,
            RequestState::Completed,
            "{format}: {:?}",
            r.failure_reason
        );
        assert_eq!(r.sends, 1);
        completed.push((format, a.request_id, doc));
    }
    let rej = svc
        .accept(
            "onestop",
            "rejects",
            &payload("smartca", "official-rejects", "cms", b"d"),
        )
        .await
        .unwrap();
    let r = until_terminal(&svc, &sink, &rej.request_id).await;
    assert_eq!(r.state, RequestState::Rejected);
    let away = svc
        .accept(
            "onestop",
            "away",
            &payload("smartca", "official-away", "cms", b"d"),
        )
        .await
        .unwrap();
    let r = until_terminal(&svc, &sink, &away.request_id).await;
    assert_eq!(r.state, RequestState::Expired);

    sb.set_faults(SignFaults {
        wrong_signature: true,
        ..Default::default()
    });
    let wrong = svc
        .accept(
            "onestop",
            "wrong",
            &payload("smartca", "official-rsa", "cms", b"d"),
        )
        .await
        .unwrap();
    let r = until_terminal(&svc, &sink, &wrong.request_id).await;
    assert_eq!(r.state, RequestState::Failed);
    assert_eq!(r.failure_kind.as_deref(), Some("bad_signature"));
    assert_eq!(
        r.failure_reason.as_deref(),
        Some(RemoteError::BadSignature.to_string().as_str())
    );
    sb.set_faults(SignFaults {
        other_digest: true,
        ..Default::default()
    });
    let other = svc
        .accept(
            "onestop",
            "other-digest",
            &payload("smartca", "official-rsa", "cms", b"d"),
        )
        .await
        .unwrap();
    let r = until_terminal(&svc, &sink, &other.request_id).await;
    assert_eq!(r.failure_kind.as_deref(), Some("wrong_digest"));
    sb.set_faults(SignFaults::default());

    let events = drain(&broker).await;
    assert_eq!(events.len(), 7, "one event per request: {events:#?}");
    for (format, id, doc) in &completed {
        let e = outcome(&events, id);
        assert_eq!(e["kind"], "signature.completed", "{format}");
        assert_eq!(e["source"], "signatures");
        assert_eq!(e["key"], "000.00.01.H22-261206-0001");
        let signed = base64::engine::general_purpose::STANDARD
            .decode(e["payload"]["document_base64"].as_str().unwrap())
            .unwrap();
        verify_independently(format, &signed, doc, dir.path());
    }
    let e = outcome(&events, &rej.request_id);
    assert_eq!(e["kind"], "signature.failed");
    assert_eq!(e["payload"]["reason_kind"], "rejected");
    let e = outcome(&events, &away.request_id);
    assert_eq!(e["payload"]["reason_kind"], "expired");
    let e = outcome(&events, &wrong.request_id);
    assert_eq!(e["payload"]["reason_kind"], "bad_signature");
    assert_eq!(
        e["payload"]["reason"],
        RemoteError::BadSignature.to_string()
    );
    for e in &events {
        let text = e.to_string();
        assert!(
            !text.contains("official-"),
            "no official's user id in an event: {text}"
        );
    }
    // Six requests reached a phone, each once (the refused signatures included).
    assert_eq!(sb.records().pushes.len(), 7);
}

/// The signed document checks out in OpenSSL (CMS, detached) or by its own structure.
fn verify_independently(format: &str, signed: &[u8], doc: &[u8], dir: &Path) {
    match format {
        "cms" => {
            let sig = dir.join("sig.p7s");
            let content = dir.join("content.bin");
            std::fs::write(&sig, signed).unwrap();
            std::fs::write(&content, doc).unwrap();
            let out = std::process::Command::new("openssl")
                .args([
                    "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
                ])
                .arg(&sig)
                .arg("-content")
                .arg(&content)
                .arg("-CAfile")
                .arg(root().join("certs-example/chain.pem"))
                .args(["-out", "/dev/null"])
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl cms -verify: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // A tampered copy of the content is refused.
            std::fs::write(&content, [doc, b"x"].concat()).unwrap();
            let out = std::process::Command::new("openssl")
                .args([
                    "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
                ])
                .arg(&sig)
                .arg("-content")
                .arg(&content)
                .arg("-CAfile")
                .arg(root().join("certs-example/chain.pem"))
                .args(["-out", "/dev/null"])
                .output()
                .expect("openssl runs");
            assert!(!out.status.success(), "a tampered document must not verify");
        }
        "pdf" => {
            assert!(
                signed.starts_with(doc),
                "an incremental update keeps the original"
            );
            let tail = String::from_utf8_lossy(&signed[doc.len()..]);
            assert!(tail.contains("/ETSI.CAdES.detached"), "{tail}");
        }
        "xml" => {
            let text = std::str::from_utf8(signed).unwrap();
            assert!(
                text.contains("<ds:Signature") || text.contains("<Signature"),
                "{text}"
            );
            assert!(text.contains("000.00.01.H22-261206-0001"));
        }
        other => panic!("format {other}"),
    }
}

/// A send whose answer was lost: SmartCA is asked about the transaction the gateway named
/// (never arrived → sent once; arrived → recorded, not sent again); MySign cannot be asked,
/// so the request fails with that reason and is not sent again.
#[tokio::test]
async fn a_send_in_doubt_is_resolved_by_asking_never_by_sending_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca_sandbox().await;
    let ms = mysign_sandbox().await;
    let store = sqlite(dir.path(), "s").await;
    let (_broker, sink) = queue(dir.path()).await;
    let built = signers(&sb, Some(&ms));
    let svc = SignatureService::new(store.clone(), built.clone(), settings("a"));
    let now = gateway::model::time::now_ms;

    // 1. Crashed after marking the send, before calling the service: nothing arrived.
    let a = svc
        .accept(
            "onestop",
            "doubt-1",
            &payload("smartca", "official-rsa", "cms", b"d1"),
        )
        .await
        .unwrap();
    store
        .begin_send(&a.request_id, "dead", now(), 0)
        .await
        .unwrap();
    let r = until_terminal(&svc, &sink, &a.request_id).await;
    assert_eq!(r.state, RequestState::Completed);
    assert_eq!(
        (r.sends, r.resends),
        (2, 1),
        "resent once, after the service said never arrived"
    );
    assert_eq!(sb.records().pushes.len(), 1, "one push");

    // 2. Crashed after the service took it, before recording: asked, recorded, not resent.
    let b = svc
        .accept(
            "onestop",
            "doubt-2",
            &payload("smartca", "official-rsa", "cms", b"d2"),
        )
        .await
        .unwrap();
    submit_and_crash(
        &store,
        built.get("smartca").unwrap().as_ref(),
        &b.request_id,
    )
    .await;
    assert_eq!(sb.records().pushes.len(), 2);
    let r = until_terminal(&svc, &sink, &b.request_id).await;
    assert_eq!(r.state, RequestState::Completed);
    assert_eq!((r.sends, r.resends), (1, 0));
    assert_eq!(sb.records().pushes.len(), 2, "not sent again");

    // 3. MySign names its own transactions: a lost answer cannot be asked about.
    let c = svc
        .accept(
            "onestop",
            "doubt-3",
            &payload("mysign", "official-rsa", "cms", b"d3"),
        )
        .await
        .unwrap();
    submit_and_crash(&store, built.get("mysign").unwrap().as_ref(), &c.request_id).await;
    assert_eq!(ms.records().pushes.len(), 1);
    let r = until_terminal(&svc, &sink, &c.request_id).await;
    assert_eq!(r.state, RequestState::Failed);
    assert_eq!(r.failure_kind.as_deref(), Some("in_doubt"));
    assert!(r.failure_reason.unwrap().contains("not sent again"));
    assert_eq!(ms.records().pushes.len(), 1, "not sent again");
}

/// Mark the send (lease already over), submit to the service, and record nothing: a crash
/// between the submit and its record.
async fn submit_and_crash(store: &Arc<dyn SignatureStore>, signer: &dyn RemoteSigner, id: &str) {
    let now = gateway::model::time::now_ms();
    let r = store.get(id).await.unwrap().unwrap();
    store.begin_send(id, "dead", now, 0).await.unwrap();
    let hr = hash_request(&r);
    assert!(matches!(
        signer.submit(&hr).await.unwrap(),
        Submitted::Waiting(_)
    ));
}

fn hash_request(r: &SignatureRequest) -> HashRequest {
    let digest = r.digest.clone().unwrap();
    HashRequest {
        request_id: r.request.idempotency_key.clone(),
        signer: SignerId(r.request.signer_user_id.clone()),
        algorithm: DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.len() == digest.len())
            .unwrap(),
        digest,
        description: r.request.reason.clone(),
    }
}

/// A crash at each state: the row is left where the crashed instance left it (driven there
/// through the store and the connector, as the flow does), then a new instance (new store
/// handle, new connectors) resumes it to completion. Every request reaches the phone once.
#[tokio::test]
async fn a_restart_at_each_state_resumes_and_sends_once() {
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca_sandbox().await;
    let (broker, sink) = queue(dir.path()).await;
    let targets = [
        RequestState::Received,
        RequestState::HashComputed,
        RequestState::Sending,
        RequestState::Sent,
        RequestState::Waiting,
        RequestState::Signed,
        RequestState::Verified,
        RequestState::Assembled,
    ];
    let mut ids = Vec::new();
    {
        let store = sqlite(dir.path(), "s").await;
        let built = signers(&sb, None);
        let svc = SignatureService::new(store.clone(), built.clone(), settings("first"));
        let signer = built.get("smartca").unwrap().clone();
        for (i, target) in targets.into_iter().enumerate() {
            let key = format!("crash-{}", target.as_str());
            let doc = format!("document {i}").into_bytes();
            let id = if target == RequestState::Received {
                // Crashed between storing the request and preparing it.
                let id = gateway::signatures::request_id("onestop", &key);
                store
                    .put_blob(
                        &id,
                        gw_store::signatures::BlobKind::Document,
                        &doc,
                        1 << 20,
                        0,
                    )
                    .await
                    .unwrap();
                let now = gateway::model::time::now_ms();
                store
                    .create(gw_store::signatures::NewRequest {
                        request_id: id.clone(),
                        idempotency_key: id.clone(),
                        source: "onestop".into(),
                        dossier_code: None,
                        dossier_key: Some(key.clone()),
                        service: "smartca".into(),
                        signer_user_id: "official-rsa".into(),
                        signer_credential: None,
                        format: "cms/sha256".into(),
                        reason: "r".into(),
                        document_ref: None,
                        document_sha256: hex::encode(DigestAlgorithm::Sha256.digest(&doc)),
                        created_ms: now,
                        deadline_ms: now + 60_000,
                    })
                    .await
                    .unwrap();
                id
            } else {
                svc.accept(
                    "onestop",
                    &key,
                    &payload("smartca", "official-rsa", "cms", &doc),
                )
                .await
                .unwrap()
                .request_id
            };
            drive_to(&svc, &store, signer.as_ref(), &id, target).await;
            let r = store.get(&id).await.unwrap().unwrap();
            assert_eq!(r.state, target, "driven to {}", target.as_str());
            ids.push(id);
        }
        // The first instance dies here: store and connectors dropped.
    }
    let pushes_before = sb.records().pushes.len();
    assert_eq!(
        pushes_before, 6,
        "sending (live lease), sent … assembled: pushed once each"
    );
    let store = sqlite(dir.path(), "s").await;
    let svc = SignatureService::new(store.clone(), signers(&sb, None), settings("second"));
    for id in &ids {
        let r = until_terminal(&svc, &sink, id).await;
        assert_eq!(
            r.state,
            RequestState::Completed,
            "{id}: {:?} {:?}",
            r.failure_kind,
            r.failure_reason
        );
    }
    assert_eq!(
        sb.records().pushes.len(),
        targets.len(),
        "each request reached the phone once"
    );
    let events = drain(&broker).await;
    for id in &ids {
        assert_eq!(outcome(&events, id)["kind"], "signature.completed");
    }
}

/// Drive one request to `target` the way the flow would, stopping there.
async fn drive_to(
    svc: &SignatureService,
    store: &Arc<dyn SignatureStore>,
    signer: &dyn RemoteSigner,
    id: &str,
    target: RequestState,
) {
    use RequestState::*;
    let get = || async { store.get(id).await.unwrap().unwrap() };
    let now = gateway::model::time::now_ms;
    if target == Received || target == HashComputed {
        return;
    }
    let r = get().await;
    if target == Sending {
        // The send was marked and made, its lease still live when the instance died: the
        // next instance waits for the lease, then asks the service.
        store.begin_send(id, "first", now(), 1500).await.unwrap();
        assert!(matches!(
            signer.submit(&hash_request(&r)).await.unwrap(),
            Submitted::Waiting(_)
        ));
        return;
    }
    store.begin_send(id, "first", now(), 10_000).await.unwrap();
    let tx = match signer.submit(&hash_request(&r)).await.unwrap() {
        Submitted::Waiting(tx) => tx,
        other => panic!("{other:?}"),
    };
    store
        .record_sent(id, &tx.0, now(), "first", now())
        .await
        .unwrap();
    if target == Sent {
        return;
    }
    let r = get().await;
    store
        .transition(gw_store::signatures::Change {
            request_id: id.into(),
            from: Sent,
            step: Step::Waiting {
                next_poll_ms: now(),
            },
            actor: "first".into(),
            detail: "pending".into(),
            at_ms: now(),
        })
        .await
        .unwrap();
    if target == Waiting {
        return;
    }
    // Poll until signed, as the poller would.
    let mut signed = None;
    for _ in 0..100 {
        match signer.status(&tx, &hash_request(&r)).await.unwrap() {
            gateway::connectors::signer::SignStatus::Signed(v) => {
                signed = Some(v);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let v = signed.expect("the official confirms");
    store
        .transition(gw_store::signatures::Change {
            request_id: id.into(),
            from: Waiting,
            step: Step::Signed { signature: v.bytes },
            actor: "first".into(),
            detail: "signed".into(),
            at_ms: now(),
        })
        .await
        .unwrap();
    for next in [Verified, Assembled] {
        if get().await.state == target {
            return;
        }
        svc.step(&get().await).await.unwrap();
        assert_eq!(get().await.state, next);
    }
}

/// The gateway itself: `signature.requested` posted to `/in/onestop`, the job under
/// leadership, `signature.completed` routed to the one-stop system's endpoint; bad input
/// answered 4xx at the edge; `gateway signing show|cancel|list` on the same store.
async fn through_the_gateway(backend: Backend) {
    use gw_contract_tests::sink::{Faults, Sink};
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    sink.set_capture(true);
    let sb = smartca_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let route = unique("sigflow");
    let mut text = config_text(backend, dir.path(), &route, &sink.url(), "");
    std::env::set_var("GW_TEST_SIGFLOW_OPS", "sigflow-ops-viewer-token");
    text = text
        .replace("max_body_bytes = 4096", "max_body_bytes = 65536")
        .replace(
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"v\", role = \"viewer\", token = { env = \"GW_TEST_SIGFLOW_OPS\" } }]\n",
        )
        .replace(
            "kinds = [\"dossier.*\"]\n\n[adapters.sink]",
            "kinds = [\"dossier.*\", \"signature.requested\"]\n\n[adapters.sink]",
        );
    text.push_str(&format!(
        "\n[[routes]]\nname = \"{route}-sig\"\nfrom = \"signatures\"\nkinds = [\"signature.*\"]\nto = \"sink\"\n\n[signers.smartca]\n{}",
        section_text("smartca", &sb.base_url(), "signers.smartca.")
    ));
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    let loaded = load(&text);
    let running = gateway::app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues = Queues::of(&running);
    let client = reqwest::Client::new();
    let post = |key: &str, p: Value| {
        let client = client.clone();
        let url = format!("http://{}/in/onestop", running.inbound_addr);
        let body = json!({"kind": "signature.requested", "key": key, "payload": p});
        async move {
            let r = client
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let doc = b"QUYET DINH 123/QD-UBND".to_vec();
    let (st, bad) = post("bad-1", payload("smartca", "official-rsa", "pdf", &doc)).await;
    assert_eq!(
        (st, bad["error"]["code"].as_str()),
        (422, Some("document_not_format")),
        "{bad}"
    );
    let (st, bad) = post("bad-2", payload("nobody", "official-rsa", "cms", &doc)).await;
    assert_eq!(
        (st, bad["error"]["code"].as_str()),
        (422, Some("unknown_signer_service"))
    );
    let (st, ok) = post(
        "H22-0001/kq",
        payload("smartca", "official-rsa", "cms", &doc),
    )
    .await;
    assert_eq!(st, 202, "{ok}");
    let id = ok["request_id"].as_str().unwrap().to_owned();
    let (st, again) = post(
        "H22-0001/kq",
        payload("smartca", "official-rsa", "cms", &doc),
    )
    .await;
    assert_eq!(
        (st, again["request_id"].as_str(), again["new"].as_bool()),
        (202, Some(id.as_str()), Some(false))
    );
    let (st, reused) = post(
        "H22-0001/kq",
        payload("smartca", "official-rsa", "cms", b"other"),
    )
    .await;
    assert_eq!(
        (st, reused["error"]["code"].as_str()),
        (409, Some("key_reused"))
    );

    eventually(
        Duration::from_secs(60),
        "signature.completed delivered",
        || {
            sink.records()
                .iter()
                .any(|r| r.kind == "signature.completed")
        },
    )
    .await;
    let captured = sink.captured();
    let body: Value = captured
        .iter()
        .filter_map(|c| serde_json::from_slice::<Value>(&c.body).ok())
        .find(|v| v.to_string().contains(&id))
        .expect("the outcome's body");
    let text = body.to_string();
    assert!(text.contains("document_base64"), "{text}");
    assert_eq!(sb.records().pushes.len(), 1, "one push, bad input none");

    // The dossier's trail shows the request and its states with times.
    let trail: Value = client
        .get(format!(
            "http://{}/api/v1/dossiers/000.00.01.H22-261206-0001/trail",
            running.ops_addr
        ))
        .bearer_auth("sigflow-ops-viewer-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sig = &trail["signatures"][0];
    assert_eq!(sig["request_id"], id.as_str(), "{trail}");
    let states: Vec<&str> = sig["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "received",
            "hash_computed",
            "sending",
            "sent",
            "waiting",
            "signed",
            "verified",
            "assembled",
            "completed"
        ]
        .iter()
        .filter(|s| **s != "waiting" || states.contains(&"waiting"))
        .copied()
        .collect::<Vec<_>>(),
        "{trail}"
    );
    assert!(sig["states"][0]["at"].as_str().unwrap().contains('T'));
    // The metrics count the outcome.
    let metrics = client
        .get(format!("http://{}/metrics", running.ops_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_signature_outcomes_total{service=\"smartca\",outcome=\"completed\",reason=\"none\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_signature_confirm_seconds_count{service=\"smartca\"} 1"));
    assert!(!metrics.contains("official-rsa"));
    let gw = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("signing")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("GW_TEST_AMQP_PASSWORD", "guest")
            .env("GW_TEST_SOURCE_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let shown = gw(&["show", &id]);
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    for st in [
        "hash_computed",
        "sending",
        "sent",
        "signed",
        "verified",
        "assembled",
        "completed",
    ] {
        assert!(out.contains(st), "show lists state {st}: {out}");
    }
    assert!(!out.contains("official-rsa"), "no user id in show: {out}");
    let cancel = gw(&["cancel", &id]);
    assert_eq!(
        cancel.status.code(),
        Some(1),
        "a finished request cannot be cancelled"
    );
    assert!(String::from_utf8_lossy(&cancel.stderr).contains("completed"));
    let listed = gw(&["list", "--state", "completed"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_gateway_on_the_embedded_backends() {
    through_the_gateway(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_gateway_on_rabbitmq_and_postgresql() {
    if !common::services_available("through_the_gateway_on_rabbitmq_and_postgresql") {
        return;
    }
    through_the_gateway(Backend::RabbitPg).await;
}

/// Two instances on one PostgreSQL schema run rounds at once over the same requests: the
/// store's leases and send guard keep every request to one push, all complete, and the outbox
/// lease publishes each outcome exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgresql_send_each_request_once() {
    if !common::services_available("two_instances_on_postgresql_send_each_request_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca_sandbox().await;
    let schema = unique("gwt_sigflow");
    let url = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    let (broker, sink) = queue(dir.path()).await;
    let a = Arc::new(SignatureService::new(
        gw_store::signatures::open(&url).await.unwrap(),
        signers(&sb, None),
        settings("instance-a"),
    ));
    let b = Arc::new(SignatureService::new(
        gw_store::signatures::open(&url).await.unwrap(),
        signers(&sb, None),
        settings("instance-b"),
    ));
    let mut ids = Vec::new();
    for i in 0..20 {
        let svc = if i % 2 == 0 { &a } else { &b };
        let acc = svc
            .accept(
                "onestop",
                &format!("pg-{i}"),
                &payload(
                    "smartca",
                    "official-rsa",
                    "cms",
                    format!("doc {i}").as_bytes(),
                ),
            )
            .await
            .unwrap();
        ids.push(acc.request_id);
    }
    let sink = Arc::new(sink);
    let run = |svc: Arc<SignatureService>, sink: Arc<BrokerSink>| async move {
        for _ in 0..200 {
            svc.round(sink.as_ref()).await.unwrap();
            let done = svc
                .store
                .list(gw_store::signatures::ListFilter::default())
                .await
                .unwrap()
                .iter()
                .all(|r| r.state.is_terminal());
            if done {
                svc.round(sink.as_ref()).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    tokio::join!(run(a.clone(), sink.clone()), run(b.clone(), sink.clone()));
    for id in &ids {
        let r = a.store.get(id).await.unwrap().unwrap();
        assert_eq!(r.state, RequestState::Completed, "{id}");
        assert_eq!(r.sends, 1, "{id}: one send permit");
    }
    assert_eq!(sb.records().pushes.len(), 20, "each request pushed once");
    // Both instances drain the outbox here at once (in a gateway only the job's leader
    // does): the outbox lease (migration 15) gives each event to one of them, so every
    // request's outcome is published exactly once, not merely under one envelope id.
    let events = drain(&broker).await;
    assert_eq!(
        events.len(),
        ids.len(),
        "one outcome event per request, no copy"
    );
    for id in &ids {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["payload"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{id}: its outcome published exactly once");
        assert_eq!(mine[0]["kind"], "signature.completed", "{id}");
    }
}

/// Figures, not assertions (ignored by default): requests per second through the whole flow
/// on SQLite with officials who confirm at once, and polls per completed request.
/// `cargo test --release --test signature_flow -- --ignored --nocapture signing_flow_figures`
/// (`GW_SIG_BENCH_N`, default 500 requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures"]
async fn signing_flow_figures() {
    let n: usize = std::env::var("GW_SIG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let sb = SmartCa::start(
        0,
        SmartCaConfig {
            confirm_after: Duration::ZERO,
            lifetime: Duration::from_secs(600),
            ..SmartCaConfig::default()
        },
    )
    .await
    .unwrap();
    let store = sqlite(dir.path(), "bench").await;
    let (_broker, sink) = queue(dir.path()).await;
    let mut s = settings("bench");
    s.batch = 200;
    let svc = SignatureService::new(store.clone(), signers(&sb, None), s);
    let started = std::time::Instant::now();
    for i in 0..n {
        svc.accept(
            "onestop",
            &format!("bench-{i}"),
            &payload(
                "smartca",
                "official-rsa",
                "cms",
                format!("doc {i}").as_bytes(),
            ),
        )
        .await
        .unwrap();
    }
    let accepted = started.elapsed();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let r = svc.round(&sink).await.unwrap();
        let done = store
            .counts_by_state()
            .await
            .unwrap()
            .iter()
            .filter(|c| c.state == RequestState::Completed)
            .map(|c| c.count)
            .sum::<i64>() as usize;
        if done == n && r.published == 0 {
            break;
        }
        assert!(rounds < 10_000, "the flow does not finish");
        if r.is_idle() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let total = started.elapsed();
    let polls: i64 = store
        .list(gw_store::signatures::ListFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.polls)
        .sum();
    let statuses = sb.records().calls("/status") as f64;
    println!(
        "signing flow, SQLite, SmartCA sandbox confirming at once: {n} requests accepted in {:.2}s ({:.0}/s), completed and published in {:.2}s ({:.0} requests/s end to end), {rounds} rounds; {:.2} polls noted and {:.2} status calls per completed request; pushes {}",
        accepted.as_secs_f64(),
        n as f64 / accepted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        polls as f64 / n as f64,
        statuses / n as f64,
        sb.records().pushes.len()
    );
}
