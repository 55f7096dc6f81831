//! The catalogue sync and the online-dossier poll, end to end: the strict portal sandbox as
//! the national portal, a recording sink as the one-stop system's endpoint (an `http`
//! adapter), the gateway in between (embedded queue and store).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gateway::app;
use gateway::jobs::catalogue::CatalogueSync;
use gateway::jobs::online::OnlinePoll;
use gw_contract_tests::portal::{Portal, PortalConfig};
use gw_contract_tests::sink::{Faults as SinkFaults, Record, Sink};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn config(data: &Path, portal: &Portal, sink: &Sink) -> String {
    let cfg = portal.config();
    std::env::set_var("GW_TEST_PORTAL_PASSWORD", &cfg.password);
    format!(
        r#"
[gateway]
instance = "test"
data_dir = "{data}"
shutdown_grace = "5s"

[inbound]
listen = "127.0.0.1:0"

[ops]
listen = "127.0.0.1:0"

[retry]
initial = "50ms"
max_delay = "300ms"
max_elapsed = "1h"

[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "5s"

[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
auth = "session"
username = "{user}"
password = {{ env = "GW_TEST_PORTAL_PASSWORD" }}

[adapters.onestop]
connector = "http"
url = "{sink}"
timeout = "2s"

# Interval 0s: no periodic run, the tests run the jobs themselves.
[catalogue]
from = "dvcqg"
interval = "0s"
source_name = "catalogue"

[online]
from = "dvcqg"
service = "LayDanhSachHoSoTrucTuyen"
interval = "0s"
source_name = "online"

[[routes]]
name = "catalogue-to-onestop"
from = "catalogue"
kinds = ["catalogue.*"]
to = "onestop"

[[routes]]
name = "online-to-onestop"
from = "online"
kinds = ["dossier.online"]
to = "onestop"
"#,
        data = data.display(),
        integration = portal.integration_url(),
        sharing = portal.sharing_url(),
        unit = cfg.units[0],
        user = cfg.username,
        sink = sink.url(),
    )
}

/// Wait until the sink holds `n` records, then a little longer to catch extras.
async fn settle(sink: &Sink, n: usize) -> Vec<Record> {
    eventually(Duration::from_secs(20), &format!("{n} deliveries"), || {
        sink.records().len() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    sink.records()
}

fn kinds_of(records: &[Record], kind: &str) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.key.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_sync_delivers_only_changes_and_resends_after_a_crash() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let sink = Sink::start(0, SinkFaults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&config(dir.path(), &portal, &sink));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let job = CatalogueSync::from_config(&loaded).unwrap().unwrap();
    let cat = portal.catalogue();
    let (np, na, nf) = (cat.procedures.len(), cat.agencies.len(), cat.fields.len());

    // First sync: every record once, as added.
    let s = job.run_once(&running.engine).await.expect("first sync");
    assert_eq!(
        (s.added, s.changed, s.removed, s.unchanged),
        (np + na + nf, 0, 0, 0)
    );
    assert_eq!(s.unrouted, 0);
    let recs = settle(&sink, np + na + nf).await;
    assert_eq!(recs.len(), np + na + nf, "each record delivered once");
    let mut codes = cat.codes();
    codes.sort();
    assert_eq!(kinds_of(&recs, "catalogue.procedure.added"), codes);
    assert_eq!(kinds_of(&recs, "catalogue.agency.added").len(), na);
    assert_eq!(kinds_of(&recs, "catalogue.field.added").len(), nf);

    // Second sync, nothing changed: nothing delivered.
    let s = job.run_once(&running.engine).await.expect("second sync");
    assert_eq!((s.added, s.changed, s.removed), (0, 0, 0));
    assert_eq!(s.unchanged, np + na + nf);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.records().len(), np + na + nf, "no change, no delivery");

    // One procedure changes (a nested fee): exactly that change.
    let code = codes[3].clone();
    assert!(portal.update_procedure(&code, |p| {
        p["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0]["SOTIEN"] = json!(99000);
    }));
    let s = job.run_once(&running.engine).await.expect("third sync");
    assert_eq!((s.added, s.changed, s.removed), (0, 1, 0));
    let recs = settle(&sink, np + na + nf + 1).await;
    assert_eq!(recs.len(), np + na + nf + 1);
    assert_eq!(
        kinds_of(&recs, "catalogue.procedure.changed"),
        vec![code.clone()]
    );

    // A record removed: a `removed` event for it.
    let mut c = portal.catalogue();
    let gone = c.procedures.remove(0);
    let gone = gone["MATTHC"].as_str().unwrap().to_string();
    portal.set_catalogue(c);
    let s = job.run_once(&running.engine).await.expect("fourth sync");
    assert_eq!((s.added, s.changed, s.removed), (0, 0, 1));
    let recs = settle(&sink, np + na + nf + 2).await;
    assert_eq!(recs.len(), np + na + nf + 2);
    assert_eq!(kinds_of(&recs, "catalogue.procedure.removed"), vec![gone]);

    // A crash between publishing and saving the digests: the next run sends the change again.
    let code2 = codes[5].clone();
    assert!(portal.update_procedure(&code2, |p| p["TENTTHC"] = json!("Tên mới")));
    let before = sink.records().len();
    let (s, _unsaved) = job.publish_changes(&running.engine).await.expect("publish");
    assert_eq!(s.changed, 1);
    // (crash: the digests are not saved)
    let s = job
        .run_once(&running.engine)
        .await
        .expect("run after crash");
    assert_eq!(s.changed, 1, "the unsaved change is found again");
    let recs = settle(&sink, before + 2).await;
    let changed: Vec<&Record> = recs[before..]
        .iter()
        .filter(|r| r.kind == "catalogue.procedure.changed" && r.key == code2)
        .collect();
    assert_eq!(changed.len(), 2, "re-sent, not lost: {:?}", &recs[before..]);
    assert_eq!(recs.len(), before + 2);
    // Now saved: quiet again.
    let s = job.run_once(&running.engine).await.expect("quiet run");
    assert_eq!((s.added, s.changed, s.removed), (0, 0, 0));
    // What the service-quality index takes from it: every fetched procedure's terms, read back
    // as the rules (2.001255: 1 working day directly and online, 2 by post; a paper result).
    let rules = gateway::indicators::rules_of(&loaded).expect("the terms read back");
    assert_eq!(rules.catalogue.len(), portal.catalogue().procedures.len());
    let t = rules.catalogue["2.001255"];
    assert_eq!(
        (t.statutory_days, t.statutory_days_online, t.paper_result),
        (Some(1), Some(1), true)
    );
    assert_eq!(rules.statutory_days("2.001255", true), Some(1));
    running.shutdown().await;
}

/// The running gateway's index reads the catalogue's terms again when an operator asks: the
/// terms the sync wrote after the start are in force after `POST …/catalogue/reload`; a terms
/// file that does not read back is a 422 naming it, and the terms in force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_running_index_reloads_the_catalogue_terms_on_an_operator_call() {
    const OPERATOR: &str = "catalogue-operator-0123456789abcdef";
    std::env::set_var("GW_TEST_CATALOGUE_OPS", OPERATOR);
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let sink = Sink::start(0, SinkFaults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    let text = config(dir.path(), &portal, &sink);
    assert!(text.contains(ops));
    let text = text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"alice\", role = \"operator\", token = { env = \"GW_TEST_CATALOGUE_OPS\" } }]\n",
    ) + "\n[indicators]\n";
    let loaded = load(&text);
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let client = reqwest::Client::new();
    let reload = || async {
        let r = client
            .post(format!(
                "http://{}/api/v1/indicators/catalogue/reload",
                running.ops_addr
            ))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("ops answers");
        let status = r.status();
        (status, r.json::<Value>().await.expect("JSON"))
    };
    // Started before any sync: no terms in force. The sync writes them; the reload takes them.
    let (s, v) = reload().await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(
        (v["procedures"].as_u64(), v["changed"].as_u64()),
        (Some(0), Some(0))
    );
    let job = CatalogueSync::from_config(&loaded).unwrap().unwrap();
    job.run_once(&running.engine).await.expect("sync");
    let np = portal.catalogue().procedures.len() as u64;
    let (s, v) = reload().await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["result"], "reloaded");
    assert_eq!(
        (v["procedures"].as_u64(), v["changed"].as_u64()),
        (Some(np), Some(np))
    );
    assert_eq!(v["by"], "alice");
    // The portal changes one procedure's statutory time (2.001255: 1 working day → 7): in force
    // after the next sync and reload, exactly that one changed.
    assert!(portal.update_procedure("2.001255", |p| {
        for way in p["CACHTHUCTHUCHIEN"].as_array_mut().unwrap() {
            for t in way["THOIGIAN"].as_array_mut().unwrap() {
                t["THOIGIANGIAIQUYET"] = json!(7);
            }
        }
    }));
    job.run_once(&running.engine).await.expect("sync");
    let (s, v) = reload().await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["changed"].as_u64(), Some(1), "{v}");
    let path = gateway::indicators::catalogue::terms_path(&loaded.data_dir(), "catalogue");
    let terms = gateway::indicators::catalogue::read_terms(&path).unwrap();
    assert_eq!(terms["2.001255"].statutory_days, Some(7));
    // A broken terms file: 422 naming the file; the terms in force are kept (a good file
    // read afterwards differs from them in nothing).
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{\"2.001255\": ").unwrap();
    let (s, v) = reload().await;
    assert_eq!(s, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "terms_unreadable", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("terms in force are kept"),
        "{msg}"
    );
    std::fs::write(&path, good).unwrap();
    let (s, v) = reload().await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(
        (v["procedures"].as_u64(), v["changed"].as_u64()),
        (Some(np), Some(0)),
        "the broken file changed nothing in force: {v}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_fetch_failure_publishes_nothing_and_keeps_the_digests() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let sink = Sink::start(0, SinkFaults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&config(dir.path(), &portal, &sink));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let job = CatalogueSync::from_config(&loaded).unwrap().unwrap();
    job.run_once(&running.engine).await.expect("first sync");
    let saved = std::fs::read(job.state_path()).unwrap();
    portal.set_down(true);
    let err = job.run_once(&running.engine).await.unwrap_err().to_string();
    assert!(err.contains("LayDanhSachTTHC"), "{err}");
    assert_eq!(std::fs::read(job.state_path()).unwrap(), saved);
    portal.set_down(false);
    running.shutdown().await;
}

fn online_dossier(code: &str, at: &str) -> Value {
    json!({
        "MaHoSo": code, "MaTTHC": "1.001193", "TenTTHC": "Đăng ký khai sinh",
        "ChuHoSo": "Nguyễn Văn A", "LoaiDoiTuong": "1", "NgayTiepNhan": at,
        "TrichYeuHoSo": "Đăng ký khai sinh cho con", "TrangThaiHoSo": "1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_dossiers_are_delivered_once_and_the_cursor_advances() {
    let portal = Portal::start(0, PortalConfig::default()).await.unwrap();
    let sink = Sink::start(0, SinkFaults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&config(dir.path(), &portal, &sink));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let poll = OnlinePoll::from_config(&loaded).unwrap().unwrap();
    portal.add_online_dossier(online_dossier("G22.TT-0001", "20261124080000"));
    portal.add_online_dossier(online_dossier("G22.TT-0002", "20261124090000"));
    portal.add_online_dossier(online_dossier("G22.TT-0003", "20261124090000"));

    let s = poll.poll_once(&running.engine).await.expect("first poll");
    assert_eq!((s.published, s.unrouted), (3, 0));
    let recs = settle(&sink, 3).await;
    assert_eq!(
        kinds_of(&recs, "dossier.online"),
        vec!["G22.TT-0001", "G22.TT-0002", "G22.TT-0003"]
    );
    let c = poll.cursor().unwrap();
    assert_eq!(c.at.as_deref(), Some("20261124090000"));

    // Re-poll: the portal answers from the cursor inclusive; nothing is sent again.
    let s = poll.poll_once(&running.engine).await.expect("re-poll");
    assert_eq!((s.published, s.skipped), (0, 2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.records().len(), 3);

    // A new dossier in the same second as the cursor and a later one: both, once.
    portal.add_online_dossier(online_dossier("G22.TT-0004", "20261124090000"));
    portal.add_online_dossier(online_dossier("G22.TT-0005", "20261124100000"));
    let s = poll.poll_once(&running.engine).await.expect("third poll");
    assert_eq!(s.published, 2);
    let recs = settle(&sink, 5).await;
    assert_eq!(recs.len(), 5);
    assert_eq!(kinds_of(&recs, "dossier.online").len(), 5);
    assert_eq!(poll.cursor().unwrap().at.as_deref(), Some("20261124100000"));

    // A crash before the cursor is saved: the next poll re-sends (never loses).
    portal.add_online_dossier(online_dossier("G22.TT-0006", "20261124110000"));
    let (s, _unsaved) = poll.publish_new(&running.engine).await.expect("publish");
    assert_eq!(s.published, 1);
    let s = poll.poll_once(&running.engine).await.expect("after crash");
    assert_eq!(s.published, 1);
    let recs = settle(&sink, 7).await;
    assert_eq!(
        recs.iter().filter(|r| r.key == "G22.TT-0006").count(),
        2,
        "re-sent after the crash"
    );
    let s = poll.poll_once(&running.engine).await.expect("quiet");
    assert_eq!(s.published, 0);
    running.shutdown().await;
}

#[test]
fn job_sections_are_validated() {
    let text = r#"
[sources.catalogue]
[adapters.web]
connector = "http"
url = "http://127.0.0.1:1/x"
[catalogue]
from = "web"
[online]
from = "nope"
service = ""
source_name = "Online!"
[[routes]]
name = "r"
from = "online"
to = "web"
"#;
    let e =
        gateway::config::parse(text, "t.toml", std::path::PathBuf::from(".")).expect_err("invalid");
    let all = e.to_string();
    for needle in [
        "t.toml:catalogue.from: adapter `web` is a http adapter",
        "t.toml:catalogue.source_name: `catalogue` is also a [sources] name",
        "t.toml:online.from: no adapter named `nope`",
        "t.toml:online.service: must not be empty",
        "t.toml:online.source_name: `Online!` has characters",
        "t.toml:routes[0].from: no source named `online`",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // A route may come from a job's source name.
    let ok = r#"
[adapters.web]
connector = "http"
url = "http://127.0.0.1:1/x"
[adapters.p]
connector = "dvcqg"
url = "http://127.0.0.1:1/i"
[adapters.p.dvcqg]
unit_code = "000.00.01.H22"
username = "u"
password = { env = "X" }
[catalogue]
from = "p"
[[routes]]
name = "r"
from = "catalogue"
to = "web"
"#;
    let l = gateway::config::parse(ok, "ok.toml", std::path::PathBuf::from(".")).unwrap();
    let c = l.config.catalogue.unwrap();
    assert_eq!(c.interval.0, gateway::config::defaults::CATALOGUE_INTERVAL);
    assert_eq!(c.source_name, "catalogue");
}
