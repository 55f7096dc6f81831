//! Contract tests of the shipped one-stop adapter against the strict portal sandbox: every
//! valid sample goes through the gateway (mapped at the edge, translated by the dvcqg connector)
//! and is accepted by the portal; every invalid sample is refused at the edge with its reason
//! and a status the sender can act on, and nothing of it is queued.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use gateway::app;
use gw_contract_tests::portal::{Portal, PortalConfig};
use tokio_util::sync::CancellationToken;

fn adapter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/onestop-example")
}

fn config(data: &Path, portal: &Portal) -> String {
    std::env::set_var("GW_TEST_PORTAL_PASSWORD", &portal.config().password);
    format!(
        r#"
[gateway]
data_dir = "{data}"
shutdown_grace = "5s"
[inbound]
listen = "127.0.0.1:0"
[ops]
listen = "127.0.0.1:0"
[retry]
initial = "50ms"
max_delay = "300ms"
[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
adapter = "{adapter}"
[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "2s"
[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
username = "{user}"
password = {{ env = "GW_TEST_PORTAL_PASSWORD" }}
[[routes]]
name = "sync"
from = "onestop"
to = "dvcqg"
"#,
        data = data.display(),
        adapter = adapter_dir().display(),
        integration = portal.integration_url(),
        sharing = portal.sharing_url(),
        unit = portal.config().units[0],
        user = portal.config().username,
    )
}

fn samples(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_samples_reach_the_portal_and_invalid_ones_are_refused_at_the_edge() {
    let portal = Portal::start(
        0,
        PortalConfig {
            strict_unknown_fields: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&config(dir.path(), &portal));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let client = reqwest::Client::new();
    let url = format!("http://{}/in/onestop", running.inbound_addr);

    let valid = samples(&adapter_dir().join("samples"));
    assert!(valid.len() >= 6, "the adapter ships its samples");
    let mut codes = Vec::new();
    for s in &valid {
        let body = std::fs::read(s).unwrap();
        let r = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 202, "{}: {text}", s.display());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        codes.push(v["maHoSo"].as_str().unwrap().to_string());
    }
    let start = Instant::now();
    loop {
        let r = portal.records();
        if codes
            .iter()
            .all(|c| r.dossiers.contains_key(c) || r.progress.contains_key(c))
        {
            break;
        }
        let refused: Vec<_> = r
            .refused
            .iter()
            .filter(|x| !x.injected && x.error_code != "-8")
            .collect();
        assert!(
            refused.is_empty(),
            "the portal refused a shipped sample: {refused:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "samples never reached the portal: {:?}",
            r.dossiers.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = portal.records();
    assert!(r.unknown_fields.is_empty(), "{:?}", r.unknown_fields);
    assert_eq!(running.engine.metrics.outcome_total("dead_lettered"), 0);

    let invalid = samples(&adapter_dir().join("samples/invalid"));
    assert!(invalid.len() >= 8);
    for s in &invalid {
        let body = std::fs::read(s).unwrap();
        let expect = std::fs::read_to_string(s.with_extension("expect")).unwrap_or_default();
        let r = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            matches!(status, 400 | 422),
            "{}: HTTP {status}: {text}",
            s.display()
        );
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        for line in expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(
                message.contains(line),
                "{}: the refusal must say `{line}`, said: {text}",
                s.display()
            );
        }
        assert!(
            !text.contains("001203004567"),
            "personal data in an error: {text}"
        );
    }
    // Nothing of the invalid ones was queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = running
        .engine
        .broker
        .stats(&gateway::runtime::route_queue("sync", 0))
        .await
        .unwrap();
    assert_eq!((stats.ready, stats.unacked), (0, 0));
    running.shutdown().await;
}

#[test]
fn map_command_shows_canonical_portal_payload_and_reverse() {
    let sample = adapter_dir().join("samples/01-tiep-nhan.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("map")
        .arg(adapter_dir())
        .arg(&sample)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"MaTTHC\": \"1.001193\""), "{text}");
    assert!(
        text.contains("\"NgayTiepNhan\": \"20261124083000\""),
        "{text}"
    );
    assert!(text.contains("national portal payload"), "{text}");
    let bad = adapter_dir().join("samples/invalid/unknown-status.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("map")
        .arg(adapter_dir())
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown-status.json") && err.contains("trangThai"),
        "{err}"
    );
}

/// A typo in an adapter folder stops the gateway at start, naming the file and the key (the
/// same problems `check-config` prints), before any listener opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_to_start_with_a_typo_key_in_an_adapter_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("onestop-example");
    copy_dir(&adapter_dir(), &folder);
    let def = folder.join("adapter.toml");
    let text = std::fs::read_to_string(&def).unwrap();
    std::fs::write(
        &def,
        text.replace("max_body_bytes = 1048576", "max_body_byts = 1048576"),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let loaded = load(&format!(
        r#"
[gateway]
data_dir = "{data}"
[inbound]
listen = "127.0.0.1:0"
[ops]
listen = "127.0.0.1:0"
[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
adapter = "{folder}"
"#,
        data = data.display(),
        folder = folder.display(),
    ));
    let e = match app::start(&loaded, CancellationToken::new()).await {
        Ok(_) => panic!("the gateway must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!(
            "{}:limits.max_body_byts: unknown key",
            def.display()
        )),
        "{e}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}
