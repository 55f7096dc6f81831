//! The evidence log end to end (embedded queue + SQLite store, recording sink, TSA sandbox):
//! a record per delivery with the right digests, time-stamped heads, `gateway evidence verify`
//! (clean, then a tampered record and a forged time-stamp), the export bundle checked by exactly
//! the `openssl` commands of its README (and refused after one byte changes), time-stamping
//! failures (warning metric, fail-closed after the grace period, recovery by itself), and a
//! SIGKILL between a delivery and its ack.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gateway::app;
use gw_contract_tests::sink::{Faults, Sink};
use gw_contract_tests::tsa::{certs_example, Tsa, TsaMode};
use gw_store::Store;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

fn evidence_section(tsa_url: &str, extra: &str) -> String {
    let ex = certs_example();
    format!(
        r#"
[evidence]
mode = "metadata"
{extra}

[evidence.tsa]
url = "{tsa_url}"
ca_file = "{ca}"
intermediates_file = "{inter}"
interval = "200ms"
max_records = 1000
timeout = "2s"
fail_closed = true
grace = "600ms"
"#,
        ca = ex.join("root-ca.pem").display(),
        inter = ex.join("intermediate-ca.pem").display(),
    )
}

fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the openssl command is required in CI");
        }
        eprintln!("SKIPPED: no openssl command");
    }
    ok
}

fn gateway_cmd(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .output()
        .expect("gateway runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every file under `dir` is 0600 and every directory 0700 (before, exports were
/// world-readable).
fn assert_owner_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_owner_only(&p);
        } else {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}

/// Run each command of the bundle's README in the bundle; the failures.
fn run_readme(bundle: &Path) -> (usize, Vec<String>) {
    let readme = std::fs::read_to_string(bundle.join("README.md")).unwrap();
    let commands = gateway::evidence::export::readme_commands(&readme);
    let failed = commands
        .iter()
        .filter(|c| {
            !Command::new("sh")
                .arg("-c")
                .arg(c)
                .current_dir(bundle)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        })
        .cloned()
        .collect();
    (commands.len(), failed)
}

async fn head_stamped(store: &Arc<dyn Store>, chain: &str, seq: i64) -> bool {
    let stamps = store.timestamps(chain).await.unwrap();
    stamps.last().is_some_and(|t| t.seq >= seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_end_to_end() {
    if !openssl_available() {
        return;
    }
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    sink.set_capture(true);
    let tsa = Tsa::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("ev");
    let text = config_text(
        Backend::Embedded,
        &dir.path().join("data"),
        &route,
        &sink.url(),
        "",
    ) + &evidence_section(&tsa.url(), "");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let store = running.engine.store.clone();
    let client = reqwest::Client::new();
    for d in 0..5 {
        assert_eq!(
            post_event(&client, running.inbound_addr, &format!("HS-{d}"), 1).await,
            202
        );
    }
    eventually(Duration::from_secs(30), "5 deliveries", || {
        sink.records().len() >= 5
    })
    .await;
    // One record per delivery, on this instance's chain, with the digest of what arrived.
    let mut all = Vec::new();
    for _ in 0..200 {
        all = store.evidence_chain("test", 0, 100).await.unwrap();
        if all.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 5);
    // The records of one store batch are the leaves of one link: as many links as batches.
    let links = all.last().unwrap().seq;
    assert!((1..=5).contains(&links), "{links} links");
    assert!(
        all.iter().all(|r| r.batch.is_some()),
        "written as batch links"
    );
    // The dossier exported below is the chain's first record's.
    let exported = all
        .iter()
        .min_by_key(|r| r.seq)
        .map(|r| r.record.dossier.clone())
        .unwrap();
    let captured = sink.captured();
    for r in &all {
        let rec = &r.record;
        assert_eq!(
            (
                rec.direction.as_str(),
                rec.adapter.as_str(),
                rec.mode.as_str()
            ),
            ("out", "sink", "metadata")
        );
        assert_eq!(rec.http_status, Some(200));
        assert!(rec.request_body.is_none(), "metadata mode keeps no body");
        let arrived = captured
            .iter()
            .find(|c| hex::encode(Sha256::digest(&c.body)) == rec.request_digest);
        assert!(
            arrived.is_some(),
            "the request digest is that of the delivered bytes"
        );
        assert!(rec.response_digest.is_some());
    }
    // The head gets time-stamped in a batch.
    for _ in 0..200 {
        if head_stamped(&store, "test", links).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        head_stamped(&store, "test", links).await,
        "head time-stamped"
    );

    // Time-stamping fails: warned from the first failure, fail-closed after the grace, and
    // recovered by itself.
    tsa.set_mode(TsaMode::Down);
    assert_eq!(
        post_event(&client, running.inbound_addr, "HS-5", 1).await,
        202
    );
    let failures = || {
        let m = gateway::evidence::tsa::render_metrics();
        m.lines()
            .find_map(|l| l.strip_prefix("gateway_evidence_timestamp_failures_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(20),
        "a time-stamp failure counted",
        || failures() > 0,
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "fail-closed after the grace",
        gateway::evidence::tsa::closed,
    )
    .await;
    assert_eq!(
        post_event(&client, running.inbound_addr, "HS-6", 1).await,
        503
    );
    tsa.set_mode(TsaMode::Forge);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gateway::evidence::tsa::closed(),
        "a forged answer is a failure too"
    );
    tsa.set_mode(TsaMode::Ok);
    eventually(Duration::from_secs(20), "recovered", || {
        !gateway::evidence::tsa::closed()
    })
    .await;
    assert_eq!(
        post_event(&client, running.inbound_addr, "HS-6", 1).await,
        202
    );
    eventually(Duration::from_secs(30), "7 deliveries", || {
        sink.records().len() >= 7
    })
    .await;
    let mut head = 0;
    for _ in 0..200 {
        head = store.evidence_heads().await.unwrap()[0].seq;
        if head >= links + 2 && head_stamped(&store, "test", head).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        head,
        links + 2,
        "one link for each of the two later deliveries"
    );
    assert!(head_stamped(&store, "test", head).await);
    running.shutdown().await;
    drop(store);

    // verify: clean.
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(ok, "{out}");
    assert!(out.contains("7 record(s)"), "{out}");

    // export → the README's openssl commands pass, and fail after one byte changes.
    let bundle = dir.path().join("bundle");
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "export",
            &exported,
            "--out",
            bundle.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(ok, "{out}");
    let (n, failed) = run_readme(&bundle);
    assert!(n >= 3, "link checks, a time-stamp check, the proof check");
    assert!(failed.is_empty(), "failed: {failed:?}");
    let readme = std::fs::read_to_string(bundle.join("README.md")).unwrap();
    assert!(readme.contains("openssl ts -verify"), "{readme}");
    assert!(readme.contains("python3 verify_evidence.py"), "{readme}");
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--bundle", bundle.to_str().unwrap()],
        &cfg,
    );
    assert!(ok && out.contains("1 time-stamp(s) verify"), "{out}");
    let chain_dir = bundle.join("chains/test");
    let mut files: Vec<_> = std::fs::read_dir(&chain_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    for target in [files[0].clone(), files.last().unwrap().clone()] {
        let original = std::fs::read(&target).unwrap();
        let mut changed = original.clone();
        let at = changed.len() - 2;
        changed[at] ^= 0x01;
        std::fs::write(&target, &changed).unwrap();
        let (_, failed) = run_readme(&bundle);
        assert!(
            !failed.is_empty(),
            "one byte changed in {} must fail a check",
            target.display()
        );
        std::fs::write(&target, &original).unwrap();
    }

    // Tamper with the store: verify names the record; a forged time-stamp is caught too.
    let db = dir.path().join("data/store.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let at = links + 1;
    let (id, code): (String, Option<String>) = conn
        .query_row(
            "SELECT id, result_code FROM evidence_leaves WHERE chain = 'test' AND seq = ?1 \
             AND leaf = 0",
            [at],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.execute(
        "UPDATE evidence_leaves SET result_code = 'forged' WHERE chain = 'test' AND seq = ?1 \
         AND leaf = 0",
        [at],
    )
    .unwrap();
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&id) && out.contains(&format!("seq {at}")) && out.contains("Merkle root"),
        "{out}"
    );
    conn.execute(
        "UPDATE evidence_leaves SET result_code = ?2 WHERE chain = 'test' AND seq = ?1",
        rusqlite::params![at, code],
    )
    .unwrap();
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(ok, "restored: {out}");
    // A forged token over a real link (in place of its token, if it has one).
    let hash: String = conn
        .query_row(
            "SELECT hash FROM evidence_batches WHERE chain = 'test' AND seq = ?1",
            [at],
            |r| r.get(0),
        )
        .unwrap();
    let req = gw_crypto::tsp::request(&hex::decode(&hash).unwrap()).unwrap();
    let resp = tsa.forge(&req.der).unwrap();
    let forger = gw_crypto::keys::TrustStore::from_pem(&tsa.forged_cert_pem()).unwrap();
    let forged = gw_crypto::tsp::verify_response(&resp, &req, &forger).unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO evidence_timestamps (chain, seq, hash, token, at_ms) VALUES ('test', ?3, ?1, ?2, 0)",
        rusqlite::params![hash, forged.token_der, at],
    )
    .unwrap();
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(!ok, "{out}");
    assert!(out.contains("time-stamp"), "{out}");
}

/// A destination that notes each request's arrival and holds the answer while `hold` is set.
async fn holding_destination(
    arrived: Arc<AtomicU64>,
    hold: Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/deliver",
        post(move || {
            let (arrived, hold) = (arrived.clone(), hold.clone());
            async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                while hold.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (axum::http::StatusCode::OK, "{\"error_code\":\"0\"}")
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}/deliver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_between_delivery_and_ack_leaves_one_record() {
    let arrived = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let url = holding_destination(arrived.clone(), hold.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = unique("evk");
    let cfg = dir.path().join("gateway.toml");
    let text = config_text(
        Backend::Embedded,
        &dir.path().join("data"),
        &route,
        &url,
        "",
    ) + "\n[evidence]\nmode = \"metadata\"\n";
    std::fs::write(&cfg, text).unwrap();
    let spawn = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("GW_TEST_SOURCE_TOKEN", TOKEN)
            .env("GATEWAY_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().unwrap().unwrap();
        let inbound = line.split_whitespace().nth(3).unwrap().to_string();
        std::thread::spawn(move || for _ in lines {});
        (child, inbound)
    };
    let (mut child, inbound) = spawn();
    let client = reqwest::Client::new();
    let body =
        serde_json::json!({"kind": "dossier.upserted", "key": "HS-K", "version": 1, "payload": {}});
    let status = client
        .post(format!("{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    // The request reached the party; the gateway waits for the answer: kill it there.
    eventually(Duration::from_secs(20), "the delivery arrived", || {
        arrived.load(Ordering::SeqCst) >= 1
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    hold.store(false, Ordering::SeqCst);

    // Restart on the same data: the message is delivered again and recorded once.
    let (mut child, _) = spawn();
    eventually(Duration::from_secs(30), "redelivered", || {
        arrived.load(Ordering::SeqCst) >= 2
    })
    .await;
    let mut records = Vec::new();
    let store = gw_store::open(&format!(
        "sqlite:{}",
        dir.path().join("data/store.db").display()
    ))
    .await
    .unwrap();
    for _ in 0..200 {
        records = store.evidence_by_dossier("HS-K").await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once acked, a copy would be a duplicate skipped by the ledger: give it time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let records = store.evidence_by_dossier("HS-K").await.unwrap_or(records);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].record.http_status, Some(200));
    assert_eq!(records[0].record.result_code.as_deref(), Some("0"));
    let report = gateway::cli::evidence::verify(store.as_ref(), None)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_mode_bodies_export_and_retention() {
    if !openssl_available() {
        return;
    }
    std::env::set_var("GW_TEST_EVIDENCE_KEY", "5a".repeat(32));
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    sink.set_capture(true);
    let dir = tempfile::tempdir().unwrap();
    let route = unique("evf");
    let text = config_text(
        Backend::Embedded,
        &dir.path().join("data"),
        &route,
        &sink.url(),
        "",
    )
        + "\n[evidence]\nmode = \"metadata\"\nbody_key = { env = \"GW_TEST_EVIDENCE_KEY\" }\n\
         retention = \"1ms\"\n\n[evidence.adapters]\nsink = \"full\"\n";
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    for d in 0..3 {
        assert_eq!(
            post_event(&client, running.inbound_addr, &format!("HF-{d}"), 1).await,
            202
        );
    }
    let store = running.engine.store.clone();
    for _ in 0..200 {
        if store.evidence_chain("test", 0, 10).await.unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec = store.evidence_by_dossier("HF-1").await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].record.mode, "full");
    let sealed = rec[0].record.request_body.clone().expect("body kept");
    let delivered = sink
        .captured()
        .into_iter()
        .find(|c| hex::encode(Sha256::digest(&c.body)) == rec[0].record.request_digest)
        .expect("delivered");
    assert!(
        !sealed.windows(4).any(|w| w == b"HF-1"),
        "kept encrypted at rest"
    );
    running.shutdown().await;
    drop(store);

    // The export carries the decrypted bodies, checked by the README against the digests.
    let bundle = dir.path().join("bundle");
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "export",
            "HF-1",
            "--out",
            bundle.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(ok, "{out}");
    let id = &rec[0].record.id;
    assert_eq!(
        std::fs::read(bundle.join(format!("bodies/{id}.request"))).unwrap(),
        delivered.body
    );
    let (n, failed) = run_readme(&bundle);
    assert!(
        n >= 2 && failed.is_empty(),
        "{n} commands, failed: {failed:?}"
    );
    assert_owner_only(&bundle);
    let body = bundle.join(format!("bodies/{id}.request"));
    let mut changed = std::fs::read(&body).unwrap();
    changed[0] ^= 0x20;
    std::fs::write(&body, changed).unwrap();
    assert!(
        !run_readme(&bundle).1.is_empty(),
        "a changed body is refused"
    );

    // Retention: everything is older than 1ms; archived, removed, and the chain goes on.
    let (ok, out) = gateway_cmd(&["evidence", "prune"], &cfg);
    assert!(ok && out.contains("removed 3 record"), "{out}");
    let archive = std::fs::read_dir(dir.path().join("data/evidence-archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("an archive file");
    let lines = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert_owner_only(&dir.path().join("data/evidence-archive"));
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let archived_head = last["record"]["hash"].as_str().unwrap().to_string();
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(ok && out.contains("0 record(s)"), "{out}");
    // The archive the gateway wrote verifies with the live chain; the archived full-mode body
    // is exported from it, decrypted and checked against its digest.
    let archive_dir = dir.path().join("data/evidence-archive");
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "verify",
            "--archive",
            archive_dir.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(
        ok && out.contains("archive: 1 chain(s), 1 file(s), 3 record(s)"),
        "{out}"
    );
    let bundle = dir.path().join("bundle-archived");
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "export",
            "HF-1",
            "--archive",
            archive_dir.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(
        ok && out.contains("1 record(s) taken from the retention archive"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(bundle.join(format!("bodies/{id}.request"))).unwrap(),
        delivered.body
    );
    let (n, failed) = run_readme(&bundle);
    assert!(
        n >= 2 && failed.is_empty(),
        "{n} commands, failed: {failed:?}"
    );

    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway restarts");
    let _queues_running = Queues::of(&running);
    assert_eq!(
        post_event(&client, running.inbound_addr, "HF-9", 1).await,
        202
    );
    let store = running.engine.store.clone();
    let mut rest = Vec::new();
    for _ in 0..200 {
        rest = store.evidence_chain("test", 0, 10).await.unwrap();
        if !rest.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rest.len(), 1);
    assert_eq!(
        rest[0].seq,
        last["record"]["seq"].as_i64().unwrap() + 1,
        "the next link after the archived ones"
    );
    assert_eq!(
        rest[0].prev_hash, archived_head,
        "commits to the archived head"
    );
    running.shutdown().await;
    drop(store);
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "verify",
            "--archive",
            archive_dir.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(ok, "{out}");
}

// ---------------------------------------------------------------------------------------------
// The retention archive: `gateway evidence verify --archive DIR`.

/// The chain the archive scenarios write (a `-` in its name, as archive file names use `-`).
const ARCHIVE_CHAIN: &str = "gw-1";

fn tsa_section(tsa: &Tsa) -> gateway::evidence::TsaSection {
    let ex = certs_example();
    gateway::evidence::TsaSection {
        url: tsa.url(),
        ca_file: ex.join("root-ca.pem"),
        intermediates_file: Some(ex.join("intermediate-ca.pem")),
        interval: gateway::config::Dur(Duration::ZERO),
        max_records: 1,
        timeout: gateway::config::Dur(Duration::from_secs(5)),
        fail_closed: false,
        grace: gateway::config::Dur(Duration::from_secs(60)),
    }
}

/// Append records `from..=to` of [`ARCHIVE_CHAIN`] (exchange time 1000 + n ms; dossier HA-1
/// for records 1..3, HA-2 after), then have the head time-stamped by the sandbox authority.
async fn append_and_stamp(store: &Arc<dyn Store>, tsa: &Tsa, from: u32, to: u32) {
    for n in from..=to {
        let batch = gw_store::Batch {
            evidence: vec![gw_store::evidence_suite::record(
                ARCHIVE_CHAIN,
                n,
                if n <= 3 { "HA-1" } else { "HA-2" },
            )],
            ..Default::default()
        };
        store.record(batch).await.unwrap();
    }
    let section = tsa_section(tsa);
    let trust = gateway::evidence::tsa::trust(&section, Path::new("/")).unwrap();
    let mut stamper =
        gateway::evidence::tsa::Stamper::new(store.clone(), ARCHIVE_CHAIN, &section, trust)
            .unwrap();
    assert!(stamper.poll().await.unwrap(), "head {to} time-stamped");
}

fn archive_file(dir: &Path, from: i64, to: i64) -> std::path::PathBuf {
    dir.join(format!("{ARCHIVE_CHAIN}-{from}-{to}.jsonl"))
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A copy of the archive directory `src` to tamper with.
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
}

/// The archive line of a record re-sealed after `change`: its hash and canonical text
/// recomputed, so only the chain can tell.
fn reseal(line: &str, change: impl FnOnce(&mut gw_store::StoredEvidence)) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut r: gw_store::StoredEvidence = serde_json::from_value(v["record"].clone()).unwrap();
    change(&mut r);
    // A one-leaf batch link (what the scenario writes): its root is the leaf's hash.
    if let Some(b) = &mut r.batch {
        b.root = gw_store::evidence::hex_lower(&gw_store::evidence_merkle::leaf_hash(&r.record));
    }
    r.hash = gw_store::evidence::link_hash(&r);
    serde_json::json!({
        "record": r,
        "canonical": gw_store::evidence::link_text(&r),
    })
    .to_string()
}

fn rec_id(n: u32) -> String {
    format!("{ARCHIVE_CHAIN}-rec-{n:04}")
}

/// Prune twice, then check the archive: it verifies; each kind of tampering is refused with
/// the record and the file named; the gateway command says the same with its exit status.
async fn archive_scenario(store: Arc<dyn Store>, cfg: &Path, data: &Path) {
    let tsa = Tsa::start(0).await.unwrap();
    let section = tsa_section(&tsa);
    let trust = gateway::evidence::tsa::trust(&section, Path::new("/")).unwrap();
    let archive = data.join("archive");
    let check = |dir: std::path::PathBuf| {
        let (store, trust) = (store.clone(), trust.clone());
        async move {
            gateway::cli::evidence::verify_archive(store.as_ref(), &dir, Some(&trust))
                .await
                .unwrap()
        }
    };
    // Time-stamps at seq 5, 7 and 9.
    append_and_stamp(&store, &tsa, 1, 5).await;
    append_and_stamp(&store, &tsa, 6, 7).await;
    append_and_stamp(&store, &tsa, 8, 9).await;

    // A run stopped after writing its archive (records 1..3) but before removing them: the
    // checker says so, and the next run replaces that file.
    std::fs::create_dir_all(&archive).unwrap();
    let leftover: Vec<String> = store
        .evidence_chain(ARCHIVE_CHAIN, 0, 3)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::json!({
                "record": r,
                "canonical": gw_store::evidence::link_text(r),
            })
            .to_string()
        })
        .collect();
    write_lines(&archive_file(&archive, 1, 3), &leftover);
    let report = check(archive.clone()).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0]
            .to_string()
            .contains("past the live anchor"),
        "{}",
        report.problems[0]
    );

    // Retention, twice: records 1..5 (exchange times 1001..1005), then 6..8.
    let removed = gateway::evidence::retention::prune(store.as_ref(), &archive, 1_006)
        .await
        .unwrap();
    assert_eq!(removed, 5);
    assert!(
        !archive_file(&archive, 1, 3).exists(),
        "the interrupted run's file is replaced"
    );
    let removed = gateway::evidence::retention::prune(store.as_ref(), &archive, 1_009)
        .await
        .unwrap();
    assert_eq!(removed, 3);
    let (a, b) = (archive_file(&archive, 1, 5), archive_file(&archive, 6, 8));
    assert!(a.exists() && b.exists());

    // Clean: archive + live store are one chain; archived tokens verify.
    let live = gateway::cli::evidence::verify(store.as_ref(), Some(&trust))
        .await
        .unwrap();
    assert!(live.ok(), "{:?}", live.problems);
    let report = check(archive.clone()).await;
    assert!(report.ok(), "{:?}", report.problems);
    // 8 archived records; the tokens over 5 (in both files: it stayed live after the first
    // run) and 7.
    assert_eq!(
        (
            report.chains,
            report.files,
            report.records,
            report.timestamps
        ),
        (1, 2, 8, 3)
    );

    export_after_retention(&store, &archive, cfg, data).await;

    // Each tampering, on a copy of the archive: (what, the file changed, the change, what the
    // report must name).
    let a_lines = read_lines(&a);
    let b_lines = read_lines(&b);
    assert_eq!(
        (a_lines.len(), b_lines.len()),
        (6, 5),
        "records then tokens"
    );
    type Change = Box<dyn Fn(&Path)>;
    let set = |file: std::path::PathBuf, lines: Vec<String>| -> Change {
        Box::new(move |dir: &Path| write_lines(&dir.join(file.file_name().unwrap()), &lines))
    };
    let remove = |file: std::path::PathBuf| -> Change {
        Box::new(move |dir: &Path| {
            std::fs::remove_file(dir.join(file.file_name().unwrap())).unwrap()
        })
    };
    let edit = |i: usize, f: &dyn Fn(&str) -> String| {
        let mut l = a_lines.clone();
        l[i] = f(&l[i]);
        l
    };
    // A record of our own, well chained after record 2 and inserted before record 3.
    let forged = reseal(&a_lines[1], |r| {
        r.record.id = "forged-record".into();
        r.record.result_code = Some("0".into());
        r.record.exchange = "forged/1".into();
        r.prev_hash = r.hash.clone();
        r.seq = 3;
    });
    let mut inserted = a_lines.clone();
    inserted.insert(2, forged);
    let mut deleted = a_lines.clone();
    deleted.remove(2);
    let mut reordered = a_lines.clone();
    reordered.swap(2, 3);
    let mut truncated = a_lines.clone();
    truncated.remove(4);
    let mut forged_token = b_lines.clone();
    {
        let v: serde_json::Value = serde_json::from_str(&b_lines[4]).unwrap();
        let mut ts: gw_store::TimeStampRow =
            serde_json::from_value(v["timestamp"].clone()).unwrap();
        assert_eq!(ts.seq, 7);
        let req = gw_crypto::tsp::request(&hex::decode(&ts.hash).unwrap()).unwrap();
        let resp = tsa.forge(&req.der).unwrap();
        let forger = gw_crypto::keys::TrustStore::from_pem(&tsa.forged_cert_pem()).unwrap();
        ts.token = gw_crypto::tsp::verify_response(&resp, &req, &forger)
            .unwrap()
            .token_der;
        forged_token[4] = serde_json::json!({ "timestamp": ts }).to_string();
    }
    let cases: Vec<(&str, Change, Vec<String>)> = vec![
        (
            "a field of record 2 changed",
            set(
                a.clone(),
                edit(1, &|l| {
                    l.replace("\"result_code\":\"0\"", "\"result_code\":\"99\"")
                }),
            ),
            vec![rec_id(2), "Merkle root".into(), "line 2".into()],
        ),
        (
            "record 2 changed and its hash recomputed",
            set(
                a.clone(),
                edit(1, &|l| reseal(l, |r| r.record.http_status = Some(500))),
            ),
            vec![rec_id(3), "does not commit to the previous record".into()],
        ),
        (
            "the canonical text of link 2 changed",
            set(a.clone(), edit(1, &|l| l.replace("leaves: 1", "leaves: 7"))),
            vec![rec_id(2), "canonical text".into()],
        ),
        (
            "record 3 deleted",
            set(a.clone(), deleted),
            vec![rec_id(4), "expected seq 3 next, found 4".into()],
        ),
        (
            "a record inserted before record 3",
            set(a.clone(), inserted),
            vec![rec_id(3), "expected seq 4 next, found 3".into()],
        ),
        (
            "records 3 and 4 swapped",
            set(a.clone(), reordered),
            vec![rec_id(4), "expected seq 3 next, found 4".into()],
        ),
        (
            "the last record of a file deleted",
            set(a.clone(), truncated),
            vec![rec_id(4), "ends at seq 4".into()],
        ),
        (
            "the first archive file missing",
            remove(a.clone()),
            vec!["gw-1-6-8.jsonl".into(), "records 1..5 are missing".into()],
        ),
        (
            "the last archive file missing",
            remove(b.clone()),
            vec![
                "gw-1-1-5.jsonl".into(),
                "anchored at seq 8".into(),
                "records 6..8 are missing".into(),
            ],
        ),
        (
            "a forged time-stamp token",
            set(b.clone(), forged_token),
            vec!["gw-1-6-8.jsonl line 5".into(), "time-stamp".into()],
        ),
    ];
    let tamper = data.join("tampered");
    for (what, change, expect) in &cases {
        let _ = std::fs::remove_dir_all(&tamper);
        copy_dir(&archive, &tamper);
        change(&tamper);
        let report = check(tamper.clone()).await;
        assert_eq!(report.problems.len(), 1, "{what}: {:?}", report.problems);
        let text = report.problems[0].to_string();
        for e in expect {
            assert!(text.contains(e.as_str()), "{what}: {e:?} not in {text}");
        }
        if !what.contains("file missing") && !what.contains("time-stamp") {
            assert!(
                text.contains("gw-1-1-5.jsonl"),
                "{what}: names the file: {text}"
            );
        }
    }
    // No archive at all while the live chain is anchored at 8.
    let _ = std::fs::remove_dir_all(&tamper);
    std::fs::create_dir_all(&tamper).unwrap();
    let report = check(tamper.clone()).await;
    assert!(
        !report.ok()
            && report.problems[0]
                .to_string()
                .contains("records 1..8 are missing"),
        "{:?}",
        report.problems
    );

    // The command: exit 0 on the archive, 1 with the record named on a tampered copy.
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--archive", archive.to_str().unwrap()],
        cfg,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("archive: 1 chain(s), 2 file(s), 8 record(s), 3 time-stamp(s) checked"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&tamper);
    copy_dir(&archive, &tamper);
    write_lines(
        &tamper.join("gw-1-1-5.jsonl"),
        &edit(1, &|l| {
            l.replace("\"result_code\":\"0\"", "\"result_code\":\"99\"")
        }),
    );
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--archive", tamper.to_str().unwrap()],
        cfg,
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("BROKEN: archive")
            && out.contains(&rec_id(2))
            && out.contains("gw-1-1-5.jsonl"),
        "{out}"
    );
}

/// Flip one byte of a bundle's file: some README command must fail; then restore it.
fn refused_after_a_byte_changes(bundle: &Path, file: &str) {
    let path = bundle.join(file);
    let original = std::fs::read(&path).unwrap();
    let mut changed = original.clone();
    let at = changed.len() - 2;
    changed[at] ^= 0x01;
    std::fs::write(&path, &changed).unwrap();
    assert!(
        !run_readme(bundle).1.is_empty(),
        "{file} changed must fail a check"
    );
    std::fs::write(&path, &original).unwrap();
}

/// `evidence export` once records 1..8 of the chain are archived (time-stamps at 5 and 7 in
/// the archive, at 9 live): HA-1 (records 1..3) is only in the archive, HA-2 (4..9) in both.
async fn export_after_retention(store: &Arc<dyn Store>, archive: &Path, cfg: &Path, data: &Path) {
    use gateway::evidence::export::export;
    let ex = certs_example();
    let certs = vec![
        (
            "tsa-ca.pem".to_string(),
            std::fs::read(ex.join("root-ca.pem")).unwrap(),
        ),
        (
            "tsa-intermediates.pem".to_string(),
            std::fs::read(ex.join("intermediate-ca.pem")).unwrap(),
        ),
    ];
    let out = |name: &str| data.join("bundles").join(name);

    // Without the archive: HA-1 is not found, and the error says where to look.
    let e = export(store.as_ref(), "HA-1", &out("a"), None, &certs, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--archive") && e.contains("chain gw-1 (records 1..8)"),
        "{e}"
    );
    // HA-2 is found in part, and the bundle says it may be incomplete.
    let done = export(store.as_ref(), "HA-2", &out("b"), None, &certs, None)
        .await
        .unwrap();
    assert_eq!(done.records, 1);
    assert_eq!(done.not_searched, vec![(ARCHIVE_CHAIN.to_string(), 8)]);
    let readme = std::fs::read_to_string(out("b").join("README.md")).unwrap();
    assert!(readme.contains("Possibly incomplete"), "{readme}");

    // With the archive: HA-1 entirely from it, up to the archived time-stamp at 5.
    let done = export(
        store.as_ref(),
        "HA-1",
        &out("c"),
        None,
        &certs,
        Some(archive),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            done.records,
            done.from_archive,
            done.chain_files,
            done.tokens
        ),
        (3, 3, 5, 1)
    );
    assert!(done.not_searched.is_empty() && done.unstamped.is_empty());
    let (n, failed) = run_readme(&out("c"));
    assert_eq!(n, 6, "4 links, the time-stamp and the proof");
    assert!(failed.is_empty(), "failed: {failed:?}");
    assert!(out("c").join("chains/gw-1/000000000005.tsr").exists());
    refused_after_a_byte_changes(&out("c"), "chains/gw-1/000000000002.txt");
    refused_after_a_byte_changes(&out("c"), "chains/gw-1/000000000005.txt");

    // HA-2: records 4..8 from the archive (two files), 9 live, through the anchor to the live
    // time-stamp at 9.
    let done = export(
        store.as_ref(),
        "HA-2",
        &out("d"),
        None,
        &certs,
        Some(archive),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            done.records,
            done.from_archive,
            done.chain_files,
            done.tokens
        ),
        (6, 5, 6, 1)
    );
    let (n, failed) = run_readme(&out("d"));
    assert_eq!(n, 7, "5 links, the time-stamp and the proof");
    assert!(failed.is_empty(), "failed: {failed:?}");
    let readme = std::fs::read_to_string(out("d").join("README.md")).unwrap();
    assert!(
        readme.contains("taken from the retention archive"),
        "{readme}"
    );
    // The last archived record: its link to the first live one is checked.
    refused_after_a_byte_changes(&out("d"), "chains/gw-1/000000000008.txt");

    // A record missing from the archive: refused rather than a bundle with a hole.
    let holed = data.join("holed");
    copy_dir(archive, &holed);
    let b = archive_file(&holed, 6, 8);
    let mut lines = read_lines(&b);
    lines.remove(0);
    write_lines(&b, &lines);
    let e = export(
        store.as_ref(),
        "HA-2",
        &out("e"),
        None,
        &certs,
        Some(&holed),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("record seq 6 is missing from the archive"),
        "{e}"
    );

    // The command.
    let (ok, text) = gateway_cmd(
        &[
            "evidence",
            "export",
            "HA-2",
            "--archive",
            archive.to_str().unwrap(),
            "--out",
            out("f").to_str().unwrap(),
        ],
        cfg,
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("5 record(s) taken from the retention archive"),
        "{text}"
    );
    let (ok, text) = gateway_cmd(
        &[
            "evidence",
            "export",
            "HA-2",
            "--out",
            out("g").to_str().unwrap(),
        ],
        cfg,
    );
    assert!(ok, "{text}");
    assert!(text.contains("warning: retention archived"), "{text}");
}

/// A gateway configuration on `backend` whose store the scenario opens too (with the sandbox
/// authority's trust anchors for the archived tokens).
fn archive_config(backend: Backend, dir: &Path) -> (std::path::PathBuf, String) {
    let route = unique("eva");
    let text = config_text(
        backend,
        &dir.join("data"),
        &route,
        "http://127.0.0.1:9/",
        "",
    ) + &evidence_section("http://127.0.0.1:9/tsa", "");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();
    let url = load(&text).store_url().unwrap();
    (cfg, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_verifies_and_tampering_is_refused_sqlite() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cfg, url) = archive_config(Backend::Embedded, dir.path());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let store = gw_store::open(&url).await.unwrap();
    archive_scenario(store, &cfg, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_verifies_and_tampering_is_refused_postgres() {
    if !openssl_available() || !services_available("archive_postgres") {
        return;
    }
    std::env::set_var("GW_TEST_AMQP_PASSWORD", "guest");
    let dir = tempfile::tempdir().unwrap();
    let (cfg, url) = archive_config(Backend::RabbitPg, dir.path());
    let store = gw_store::open(&url).await.unwrap();
    archive_scenario(store, &cfg, dir.path()).await;
}

// ---------------------------------------------------------------------------------------------
// Evidence per batch: a dossier's proof (leaf, Merkle path, links) checked offline.

fn python_available() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 is required in CI");
        }
        eprintln!("SKIPPED: no python3");
    }
    ok
}

/// `docs/examples/verify_evidence.py BUNDLE`: (accepted, output).
fn python_verify(bundle: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/verify_evidence.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(bundle)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Write per-event records (the format before batch links) straight into an embedded store,
/// as an older gateway did.
fn write_old_records(db: &Path, records: Vec<gw_store::EvidenceRecord>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let chain = records[0].chain.clone();
    let (stored, (seq, hash)) =
        gw_store::evidence::chain_after((0, gw_store::evidence::GENESIS.into()), records);
    for s in stored {
        let r = &s.record;
        conn.execute(
            "INSERT INTO evidence (chain, seq, id, exchange, at_ms, adapter, direction, route, \
             envelope_id, dossier, operation, request_digest, response_digest, \
             signature_digest, cert_fingerprint, http_status, result_code, mode, prev_hash, \
             hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             ?16, ?17, ?18, ?19, ?20)",
            rusqlite::params![
                r.chain,
                s.seq,
                r.id,
                r.exchange,
                r.at_ms,
                r.adapter,
                r.direction,
                r.route,
                r.envelope_id,
                r.dossier,
                r.operation,
                r.request_digest,
                r.response_digest,
                r.signature_digest,
                r.cert_fingerprint,
                r.http_status,
                r.result_code,
                r.mode,
                s.prev_hash,
                s.hash
            ],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO evidence_heads (chain, seq, hash) VALUES (?1, ?2, ?3)",
        rusqlite::params![chain, seq, hash],
    )
    .unwrap();
}

/// Change `file` of the bundle with `change`, expect both checkers (the Python script and
/// `gateway evidence verify --bundle`) to refuse it saying `why`, then restore it.
fn refused_by_both(
    bundle: &Path,
    cfg: &Path,
    file: &str,
    change: &dyn Fn(&str) -> String,
    why: &str,
) {
    let path = bundle.join(file);
    let original = std::fs::read_to_string(&path).unwrap();
    let changed = change(&original);
    assert_ne!(changed, original, "{file}: the change changes something");
    std::fs::write(&path, &changed).unwrap();
    let (ok, out) = python_verify(bundle);
    assert!(
        !ok && out.contains("REFUSED") && out.contains(why),
        "python, {file}: {out}"
    );
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--bundle", bundle.to_str().unwrap()],
        cfg,
    );
    assert!(
        !ok && out.contains("REFUSED") && out.contains(why),
        "gateway, {file}: {out}"
    );
    std::fs::write(&path, &original).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_proof_exports_and_verifies_offline_on_a_mixed_chain() {
    if !openssl_available() || !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cfg, url) = archive_config(Backend::Embedded, dir.path());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let store = gw_store::open(&url).await.unwrap();
    let record = gw_store::evidence_suite::record;
    // Two per-event records from before batch links, then a batch of five (HB-1 at leaves 1
    // and 3) and a batch of one.
    write_old_records(
        &dir.path().join("data/store.db"),
        vec![record("mix", 1, "HB-1"), record("mix", 2, "HB-2")],
    );
    let dossier = |n: u32| if n == 4 || n == 6 { "HB-1" } else { "HB-2" };
    let batch = |ns: std::ops::RangeInclusive<u32>| gw_store::Batch {
        evidence: ns.map(|n| record("mix", n, dossier(n))).collect(),
        ..Default::default()
    };
    store.record(batch(3..=7)).await.unwrap();
    store.record(batch(8..=8)).await.unwrap();
    // Recorded twice (a retried batch): no new link.
    store.record(batch(3..=7)).await.unwrap();
    let head = &store.evidence_heads().await.unwrap()[0];
    assert_eq!(head.seq, 4, "2 per-event links, then one link per batch");
    let tsa = Tsa::start(0).await.unwrap();
    let section = tsa_section(&tsa);
    let trust = gateway::evidence::tsa::trust(&section, Path::new("/")).unwrap();
    let mut stamper =
        gateway::evidence::tsa::Stamper::new(store.clone(), "mix", &section, trust).unwrap();
    assert!(stamper.poll().await.unwrap(), "head time-stamped");
    let (ok, out) = gateway_cmd(&["evidence", "verify"], &cfg);
    assert!(
        ok && out.contains("8 record(s)"),
        "mixed chain verifies: {out}"
    );

    let bundle = dir.path().join("bundle");
    let (ok, out) = gateway_cmd(
        &[
            "evidence",
            "export",
            "HB-1",
            "--out",
            bundle.to_str().unwrap(),
        ],
        &cfg,
    );
    assert!(ok && out.contains("3 record(s)"), "{out}");
    let proof: gateway::evidence::proof::Proof =
        serde_json::from_slice(&std::fs::read(bundle.join("proof.json")).unwrap()).unwrap();
    // (seq, (leaf index, leaves, path length)) of each exchange.
    type Place = (i64, Option<(u64, u64, usize)>);
    let places: Vec<Place> = proof
        .exchanges
        .iter()
        .map(|x| {
            (
                x.seq,
                x.leaf.as_ref().map(|l| (l.index, l.size, l.path.len())),
            )
        })
        .collect();
    // The per-event record is its own link; each leaf has a path of ceil(log2 5) or less.
    assert_eq!(
        places,
        vec![(1, None), (3, Some((1, 5, 3))), (3, Some((3, 5, 3)))]
    );
    assert_eq!(
        proof.chains[0].links.len(),
        4,
        "links 1..4 up to the stamped head"
    );
    let leaf = std::fs::read_to_string(bundle.join("leaves/mix/000000000003-1.txt")).unwrap();
    assert!(leaf.contains("dossier: HB-1\n"), "{leaf}");
    assert!(
        !bundle.join("leaves/mix/000000000003-0.txt").exists(),
        "other dossiers' leaves stay out"
    );
    let (n, failed) = run_readme(&bundle);
    assert_eq!(n, 5, "3 link checks, the time-stamp and the proof");
    assert!(failed.is_empty(), "failed: {failed:?}");
    let (ok, out) = python_verify(&bundle);
    assert!(ok && out.contains("OK: 3 exchange(s)"), "{out}");
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--bundle", bundle.to_str().unwrap()],
        &cfg,
    );
    assert!(
        ok && out.contains("OK: 3 exchange(s)") && out.contains("1 time-stamp(s)"),
        "{out}"
    );

    // A tampered leaf, path, link or record: refused by both checkers, with the reason.
    let root = "do not lead to the root";
    refused_by_both(
        &bundle,
        &cfg,
        "leaves/mix/000000000003-1.txt",
        &|t| t.replace("http_status: 200", "http_status: 500"),
        root,
    );
    refused_by_both(
        &bundle,
        &cfg,
        "proof.json",
        &|t| {
            let p = &proof.exchanges[1].leaf.as_ref().unwrap().path[0];
            let forged: String = p.chars().rev().collect();
            t.replace(p.as_str(), &forged)
        },
        root,
    );
    refused_by_both(
        &bundle,
        &cfg,
        "proof.json",
        &|t| t.replacen("\"index\": 1", "\"index\": 2", 1),
        root,
    );
    refused_by_both(
        &bundle,
        &cfg,
        "leaves/mix/000000000003-3.txt",
        &|t| t.replace("dossier: HB-1", "dossier: HB-9"),
        "is not of dossier HB-1",
    );
    refused_by_both(
        &bundle,
        &cfg,
        "chains/mix/000000000003.txt",
        &|t| t.replace("leaves: 5", "leaves: 6"),
        "000000000003.txt is not committed to by the next link",
    );
    refused_by_both(
        &bundle,
        &cfg,
        "chains/mix/000000000001.txt",
        &|t| t.replace("result_code: 0", "result_code: 1"),
        "000000000001.txt is not committed to by the next link",
    );
    // The head itself: the time-stamp does not cover it any more (the gateway checks the
    // token; the script leaves that to the README's openssl command, which fails too).
    let head_file = bundle.join("chains/mix/000000000004.txt");
    let original = std::fs::read_to_string(&head_file).unwrap();
    std::fs::write(&head_file, original.replace("leaves: 1", "leaves: 2")).unwrap();
    let (ok, out) = gateway_cmd(
        &["evidence", "verify", "--bundle", bundle.to_str().unwrap()],
        &cfg,
    );
    assert!(!ok && out.contains("time-stamp"), "{out}");
    assert!(!run_readme(&bundle).1.is_empty());
    std::fs::write(&head_file, original).unwrap();
    let (ok, out) = python_verify(&bundle);
    assert!(ok, "restored: {out}");
}
