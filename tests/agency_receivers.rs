//! What the receiving side gets, checked as a receiver would: the JSON Schemas under
//! `docs/schemas/` are exactly what the code generates (`gateway schema KIND`, `gateway agencies
//! schema NAME`); real pushes (recorded by the strict agency sandbox) validate against their
//! subscription's schema with an independent validator (PyPI `jsonschema`, through
//! `docs/examples/validate_delivery.py`), which refuses a field the subscription did not name;
//! and the Java example `docs/examples/VerifyAgency.java` (JDK only) verifies real pushes
//! (Standard Webhooks and RFC 9421 ECDSA P-256) and a real feed page (detached JWS ES256),
//! and refuses tampered copies.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway::agencies::{schema, Subscription};
use gateway::app;
use gw_contract_tests::agency::AgencySandbox;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FEED_TOKEN: &str = "feed-token-receivers";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every committed schema is what the code generates now, and nothing else is committed there.
/// `GATEWAY_WRITE_SCHEMAS=1` rewrites them (then review the diff).
#[test]
fn committed_schemas_are_what_the_code_generates() {
    let example = gateway::config::load(&repo().join("gateway.example.toml")).unwrap();
    let subs = Subscription::all(&example.config).unwrap();
    assert!(subs.len() >= 2, "the example configures subscriptions");
    let dir = repo().join("docs/schemas");
    let generated = schema::committed(&subs);
    if std::env::var("GATEWAY_WRITE_SCHEMAS").as_deref() == Ok("1") {
        for (path, text) in &generated {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }
    for (path, text) in &generated {
        let committed = std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| {
            panic!("docs/schemas/{path}: {e} (GATEWAY_WRITE_SCHEMAS=1 cargo nextest run -p gateway --test agency_receivers)")
        });
        assert!(
            committed == *text,
            "docs/schemas/{path} differs from what the code generates (GATEWAY_WRITE_SCHEMAS=1 to rewrite)"
        );
    }
    let mut on_disk = Vec::new();
    for sub in ["kinds", "subscriptions"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            on_disk.push(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    on_disk.sort();
    let mut expected: Vec<String> = generated.into_iter().map(|(p, _)| p).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "a committed schema the code no longer makes"
    );
}

/// The commands print the same bytes as the committed copies; an unknown kind or subscription
/// is refused with exit 2.
#[test]
fn the_schema_commands_print_the_committed_copies() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let committed = |p: &str| std::fs::read_to_string(repo().join("docs/schemas").join(p)).unwrap();
    let (code, out, err) = run(&["schema", "dossier.upserted"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, committed("kinds/dossier.upserted.json"));
    let (code, _, err) = run(&["schema", "dossier.archived"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not an event kind the gateway knows"), "{err}");
    let (code, out, err) = run(&[
        "agencies",
        "--config",
        "gateway.example.toml",
        "schema",
        "ioc",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, committed("subscriptions/ioc.json"));
    let (code, _, err) = run(&[
        "agencies",
        "--config",
        "gateway.example.toml",
        "schema",
        "nosuch",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no subscription named `nosuch`"), "{err}");
    // `--config` after the subcommand, as the README writes it, is the same command.
    let (code, after, err) = run(&[
        "agencies",
        "schema",
        "ioc",
        "--config",
        "gateway.example.toml",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(after, committed("subscriptions/ioc.json"));
    // Without `--config` (nor GATEWAY_CONFIG): a usage error, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["agencies", "list"])
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config FILE is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// python3 with `jsonschema`, and a JDK. In CI their absence fails loudly (`.ci/run` installs
/// them); elsewhere the test is skipped with the reason.
fn tools_ready() -> bool {
    let python = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    let java = Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(python && java) {
        let msg = format!(
            "agency_receivers: needs python3 with jsonschema ({python}) and a JDK's javac ({java})"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}: .ci/run installs them");
        }
        eprintln!("SKIPPED {msg}");
    }
    python && java
}

fn output(out: std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn validate(schema: &Path, bodies: &[PathBuf]) -> (i32, String) {
    output(
        Command::new("python3")
            .arg(repo().join("docs/examples/validate_delivery.py"))
            .arg(schema)
            .args(bodies)
            .output()
            .expect("python3 runs"),
    )
}

fn java(classes: &Path, args: &[&str]) -> (i32, String) {
    output(
        Command::new("java")
            .arg("-cp")
            .arg(classes)
            .arg("VerifyAgency")
            .args(args)
            .output()
            .expect("java runs"),
    )
}

fn ec_key(dir: &Path) -> (PathBuf, PathBuf) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let pkey =
        openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let private = dir.join("province-key.pem");
    std::fs::write(&private, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let public = dir.join("province-pub.pem");
    std::fs::write(&public, pkey.public_key_to_pem().unwrap()).unwrap();
    (private, public)
}

async fn post(client: &reqwest::Client, inbound: std::net::SocketAddr, body: Value) {
    let r = client
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("inbound answers");
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
}

fn dossier(code: &str, version: i64) -> Value {
    json!({"kind": "dossier.upserted", "key": code, "version": version, "payload": {
        "code": code, "version": version, "procedure_code": "1.004123",
        "summary": "Cấp giấy chứng nhận", "received_at": "2026-01-05T08:00:00+07:00",
        "due_at": "2026-01-20T17:00:00+07:00", "status": "received",
        "handling_unit": "000.00.01.H12", "fees": [], "attachments": [], "progress": [],
        "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567",
                  "phone": "0912345678"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_deliveries_validate_against_their_schema_and_verify_in_java() {
    if !services_available("real_deliveries_validate_against_their_schema_and_verify_in_java")
        || !tools_ready()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ec_key(dir.path());
    let sandbox = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
    let capture = Capture::start().await;
    let plain = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    std::env::set_var("GW_T_RECV_SECRET", SECRET);
    std::env::set_var("GW_T_RECV_FEED", FEED_TOKEN);
    let (n_push, n_java, n_feed) = (unique("recv"), unique("recvj"), unique("recvf"));
    let route = unique("recv");
    let mut text = config_text(Backend::RabbitPg, dir.path(), &route, &plain.url(), "");
    text.push_str(&format!(
        r#"
[signing.feeds]
scheme = "jws-detached"
key = "certs-example/sign-ec.key"
certificate = "certs-example/sign-ec.pem"
key_id = "province-feeds"

[subscriptions.{n_push}]
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = ["dossier.*"]
fields = ["code", "status", "procedure", "received_at", "step"]
personal = ["citizen_id"]
legal_basis = "Nghị định 107/2021/NĐ-CP, Điều 19"
[subscriptions.{n_push}.push]
url = "{sandbox}"
secret = {{ env = "GW_T_RECV_SECRET" }}
retry = ["100ms"]

[subscriptions.{n_java}]
agency = "Sở Xây dựng"
delivery = "push"
fields = ["code", "status"]
[subscriptions.{n_java}.push]
url = "{capture}"
secret = {{ env = "GW_T_RECV_SECRET" }}
rfc9421 = {{ key = {{ file = "{private}" }}, keyid = "province-2026" }}
retry = ["100ms"]

[subscriptions.{n_feed}]
agency = "Sở Tài nguyên và Môi trường"
delivery = "pull"
fields = ["code", "status"]
[subscriptions.{n_feed}.pull]
token = {{ env = "GW_T_RECV_FEED" }}
signing = "feeds"
"#,
        sandbox = sandbox.url(),
        capture = capture.url(),
        private = private.display(),
    ));
    let loaded = load(&text);
    let subs = Subscription::all(&loaded.config).unwrap();
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    for (code, v) in [("RC-1", 1), ("RC-2", 1), ("RC-1", 2)] {
        post(&client, running.inbound_addr, dossier(code, v)).await;
    }
    post(
        &client,
        running.inbound_addr,
        json!({"kind": "dossier.progress", "key": "RC-2", "payload": {"code": "RC-2", "step": {
            "handler": "Trần Thị B", "department": "Một cửa", "content": "Tiếp nhận",
            "at": "2026-01-05T08:10:00+07:00", "status": "in_processing"}}}),
    )
    .await;
    let start = std::time::Instant::now();
    let has_step = |r: &gw_contract_tests::agency::Records| {
        r.accepted
            .iter()
            .any(|a| a.body["type"] == "dossier.progress")
    };
    while !(has_step(&sandbox.records())
        && sandbox.records().accepted.len() >= 3
        && capture.len() >= 3)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sandbox has the dossiers and the step, the capture its pushes: {:?}; captured {}",
            sandbox.records(),
            capture.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = sandbox.records();
    assert!(records.refused.is_empty(), "{:?}", records.refused);

    // 1. Every real push validates against its subscription's schema with PyPI jsonschema.
    let sub = subs.iter().find(|s| s.name == n_push).unwrap();
    let schema_path = dir.path().join("schema.json");
    std::fs::write(
        &schema_path,
        schema::render(&schema::subscription_schema(sub)),
    )
    .unwrap();
    let mut bodies = Vec::new();
    for (i, a) in records.accepted.iter().enumerate() {
        let p = dir.path().join(format!("body-{i}.json"));
        std::fs::write(&p, serde_json::to_vec(&a.body).unwrap()).unwrap();
        bodies.push(p);
    }
    let (code, out) = validate(&schema_path, &bodies);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("VALID ").count(), bodies.len(), "{out}");
    // A field the subscription did not name (at the top, inside owner), a kind it does not take,
    // or a delivery for another subscription: refused.
    let upserted = records
        .accepted
        .iter()
        .find(|a| a.body["type"] == "dossier.upserted")
        .unwrap();
    let mut refused = Vec::new();
    for (i, change) in [
        json!({"data": {"summary": "Cấp giấy chứng nhận"}}),
        json!({"data": {"owner": {"phone": "0912345678"}}}),
        json!({"type": "payment.settled"}),
        json!({"subscription": "someone-else"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = upserted.body.clone();
        merge(&mut b, &change);
        let p = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&p, serde_json::to_vec(&b).unwrap()).unwrap();
        refused.push(p);
    }
    let (code, out) = validate(&schema_path, &refused);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("INVALID ").count(), refused.len(), "{out}");
    assert!(out.contains("'summary' was unexpected"), "{out}");
    assert!(out.contains("'phone' was unexpected"), "{out}");

    // 2. Java (JDK only) verifies the real pushes and a real feed page; tampered copies fail.
    let classes = dir.path().join("classes");
    let (code, out) = output(
        Command::new("javac")
            .arg("-d")
            .arg(&classes)
            .arg(repo().join("docs/examples/VerifyAgency.java"))
            .output()
            .expect("javac runs"),
    );
    assert_eq!(code, 0, "javac: {out}");
    let public = public.to_str().unwrap();
    let captured = std::mem::take(&mut *capture.got.lock().unwrap());
    for (i, c) in captured.iter().enumerate() {
        let headers = dir.path().join(format!("push-{i}.headers"));
        let body = dir.path().join(format!("push-{i}.body"));
        let lines: String = c
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        std::fs::write(&headers, lines).unwrap();
        std::fs::write(&body, &c.body).unwrap();
        let (h, b) = (headers.to_str().unwrap(), body.to_str().unwrap());
        let url = capture.url();
        let (code, out) = java(&classes, &["push", &url, h, b, SECRET, public]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("VERIFIED push msg_") && out.contains("keyid=province-2026"),
            "{out}"
        );
        // One byte of the body changed: both signatures refuse it.
        let mut tampered = c.body.clone();
        let at = tampered.iter().position(|b| *b == b'R').unwrap();
        tampered[at] = b'X';
        std::fs::write(&body, &tampered).unwrap();
        let (code, out) = java(&classes, &["push", &url, h, b, SECRET]);
        assert_eq!((code, out.contains("REFUSED")), (1, true), "{out}");
        // The HMAC alone passes on the genuine body; the RFC 9421 signature refuses another
        // URL and a foreign key.
        std::fs::write(&body, &c.body).unwrap();
        let (code, out) = java(&classes, &["push", &url, h, b, SECRET]);
        assert_eq!(code, 0, "{out}");
        let (code, out) = java(
            &classes,
            &[
                "push",
                "https://elsewhere.example/hook",
                h,
                b,
                SECRET,
                public,
            ],
        );
        assert_eq!((code, out.contains("REFUSED")), (1, true), "{out}");
        let (stranger, _) = {
            let d = dir.path().join(format!("stranger-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let (_, p) = ec_key(&d);
            (p, ())
        };
        let (code, out) = java(
            &classes,
            &["push", &url, h, b, SECRET, stranger.to_str().unwrap()],
        );
        assert_eq!((code, out.contains("REFUSED")), (1, true), "{out}");
        let other_secret = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u";
        let (code, out) = java(&classes, &["push", &url, h, b, other_secret]);
        assert_eq!((code, out.contains("REFUSED")), (1, true), "{out}");
    }

    // A feed page, as the agency fetches it.
    let feeds = running.engine.store.clone().feeds();
    let start = std::time::Instant::now();
    while feeds.stats(&n_feed).await.unwrap().head < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "the feed fills");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .get(format!(
            "http://{}/feeds/{n_feed}?after=0",
            running.inbound_addr
        ))
        .bearer_auth(FEED_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signature = r.headers()["feed-signature"].to_str().unwrap().to_string();
    let page = r.bytes().await.unwrap().to_vec();
    let feed_key = dir.path().join("feeds-pub.pem");
    let cert = openssl::x509::X509::from_pem(
        &std::fs::read(repo().join("certs-example/sign-ec.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &feed_key,
        cert.public_key().unwrap().public_key_to_pem().unwrap(),
    )
    .unwrap();
    let page_file = dir.path().join("page.json");
    std::fs::write(&page_file, &page).unwrap();
    let args = [
        "page",
        feed_key.to_str().unwrap(),
        page_file.to_str().unwrap(),
        signature.as_str(),
    ];
    let (code, out) = java(&classes, &args);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("VERIFIED page of {} bytes", page.len())),
        "{out}"
    );
    let mut tampered = page.clone();
    let at = tampered.windows(4).position(|w| w == b"RC-2").unwrap();
    tampered[at + 3] = b'9';
    std::fs::write(&page_file, &tampered).unwrap();
    let (code, out) = java(&classes, &args);
    assert_eq!((code, out.contains("REFUSED")), (1, true), "{out}");
    running.shutdown().await;
}

/// A receiver that keeps every request exactly as received (headers and body bytes) and
/// answers 200: what an agency's HTTP server hands to its verification code.
#[derive(Clone)]
struct Capture {
    got: Arc<Mutex<Vec<Captured>>>,
    addr: std::net::SocketAddr,
}

struct Captured {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Capture {
    async fn start() -> Capture {
        let got: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let keep = got.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    keep.lock().unwrap().push(Captured {
                        headers: headers
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: body.to_vec(),
                    });
                    axum::http::StatusCode::OK
                }
            },
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Capture { got, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/gateway?agency=xd", self.addr)
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// Merge `change` into `v` (objects recursively, other values replaced).
fn merge(v: &mut Value, change: &Value) {
    match (v, change) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, c) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), c);
            }
        }
        (v, c) => *v = c.clone(),
    }
}
