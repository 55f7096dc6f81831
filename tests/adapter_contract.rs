//! Contract tests of every shipped one-stop adapter folder (`adapters/*/mapping.toml`) against
//! the strict portal sandbox: every valid sample goes through the gateway (mapped at the edge, translated by the dvcqg connector)
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

/// Every one-stop vendor folder shipped under `adapters/` (those with a `mapping.toml`): a
/// folder added there is tested here without a line of test code.
fn vendor_folders() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("mapping.toml").is_file())
        .collect();
    v.sort();
    v
}

/// The source (and route) name of a vendor folder in the test's configuration.
fn source_of(folder: &Path) -> String {
    format!("in-{}", folder.file_name().unwrap().to_string_lossy())
}

fn route_of(i: usize) -> String {
    format!("sync{i}")
}

fn config(data: &Path, portal: &Portal, folders: &[PathBuf]) -> String {
    std::env::set_var("GW_TEST_PORTAL_PASSWORD", &portal.config().password);
    let mut sources = String::new();
    for (i, f) in folders.iter().enumerate() {
        sources.push_str(&format!(
            r#"
[sources.{source}]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
adapter = "{adapter}"
[[routes]]
name = "{route}"
from = "{source}"
to = "dvcqg"
"#,
            source = source_of(f),
            route = route_of(i),
            adapter = f.display(),
        ));
    }
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
[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "2s"
[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
username = "{user}"
password = {{ env = "GW_TEST_PORTAL_PASSWORD" }}
{sources}"#,
        data = data.display(),
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

/// String values of a JSON document that look like personal numbers (a citizen ID, a phone,
/// an account: nine digits or more), which no refusal may repeat.
fn personal_numbers(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            let digits = s.chars().filter(char::is_ascii_digit).count();
            if digits >= 9 && digits * 10 >= s.len() * 8 {
                out.push(s.clone());
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| personal_numbers(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| personal_numbers(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_samples_reach_the_portal_and_invalid_ones_are_refused_at_the_edge() {
    let folders = vendor_folders();
    assert!(
        folders.contains(&adapter_dir()),
        "the example vendor folder is found: {folders:?}"
    );
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
    let loaded = load(&config(dir.path(), &portal, &folders));
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    let client = reqwest::Client::new();

    for (i, folder) in folders.iter().enumerate() {
        let name = folder.display();
        let url = format!("http://{}/in/{}", running.inbound_addr, source_of(folder));
        let adapter = gateway::mapping::Adapter::load(folder)
            .unwrap_or_else(|e| panic!("{name} does not load: {e:?}"));
        let valid = samples(&folder.join("samples"));
        assert!(!valid.is_empty(), "{name} ships valid samples");
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
            let mapped = adapter
                .parse_inbound(&body, &s.display().to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", s.display()));
            codes.push(mapped.dossier.code);
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
                "the portal refused a shipped sample of {name}: {refused:?}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "samples of {name} never reached the portal: {:?}",
                r.dossiers.keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = portal.records();
        assert!(r.unknown_fields.is_empty(), "{:?}", r.unknown_fields);
        assert_eq!(running.engine.metrics.outcome_total("dead_lettered"), 0);

        let invalid = samples(&folder.join("samples/invalid"));
        assert!(!invalid.is_empty(), "{name} ships invalid samples");
        if folder == &adapter_dir() {
            assert!(invalid.len() >= 8 && valid.len() >= 6);
        }
        for s in &invalid {
            let body = std::fs::read(s).unwrap();
            let expect = std::fs::read_to_string(s.with_extension("expect")).unwrap_or_default();
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
            let mut personal = Vec::new();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                personal_numbers(&v, &mut personal);
            }
            for p in &personal {
                assert!(
                    !text.contains(p.as_str()),
                    "{}: personal data in an error: {text}",
                    s.display()
                );
            }
        }
        // Nothing of the invalid ones was queued.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = running
            .engine
            .broker
            .stats(&gateway::runtime::route_queue(&route_of(i), 0))
            .await
            .unwrap();
        assert_eq!((stats.ready, stats.unacked), (0, 0), "{name}");
    }
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
