//! Logs carry the dossier code and the trace id of every message, and never personal data or a
//! token. Every log line of the process (tracing events, and `log` records through the bridge
//! `try_init` installs) is captured at debug level as JSON, the way `--log-json` writes them,
//! while messages whose payloads carry a citizen ID number, a phone number and a bank account
//! go through delivery, retry, dead-lettering, a refused inbound request and an ops-API replay.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway::app;
use gw_contract_tests::sink::{Faults, Sink};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const CITIZEN_ID: &str = "001203004567";
const PHONE: &str = "0912345678";
const BANK_ACCOUNT: &str = "0451000123456";
const OPERATOR_TOKEN: &str = "log-test-operator-token-5f2c9a";
const VIEWER_TOKEN: &str = "log-test-viewer-token-81d07e";
const WRONG_TOKEN: &str = "log-test-wrong-token-77aa11";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn payload(code: &str) -> Value {
    json!({
        "code": code,
        "applicant": {
            "name": "Nguyễn Văn An",
            "identity_number": CITIZEN_ID,
            "phone": PHONE,
            "bank_account": BANK_ACCOUNT,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_carry_dossier_and_trace_but_no_personal_data_or_tokens() {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = Buf(buf.clone());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let sink = Sink::start(
        0,
        Faults {
            poison_keys: ["PII-REFUSED".to_string()].into(),
            failing_keys: ["PII-RETRY".to_string()].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("GW_LOGTEST_OPERATOR", OPERATOR_TOKEN);
    std::env::set_var("GW_LOGTEST_VIEWER", VIEWER_TOKEN);
    let text = config_text(Backend::Embedded, dir.path(), "logs", &sink.url(), "max_attempts = 2")
        .replace(
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [\n  { name = \"alice\", role = \"operator\", token = { env = \"GW_LOGTEST_OPERATOR\" } },\n  { name = \"victor\", role = \"viewer\", token = { env = \"GW_LOGTEST_VIEWER\" } },\n]\n",
        );
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let inbound = format!("http://{}/in/onestop", running.inbound_addr);
    let ops = format!("http://{}", running.ops_addr);

    // Delivered, retried then dead-lettered, refused at once; one with our trace context.
    for (i, key) in ["PII-OK-1", "PII-OK-2", "PII-RETRY", "PII-REFUSED"]
        .iter()
        .enumerate()
    {
        let r = client
            .post(&inbound)
            .bearer_auth(TOKEN)
            .header(
                "traceparent",
                format!("00-{TRACE_ID}-00f067aa0ba902b{i}-01"),
            )
            .json(&json!({"kind": "dossier.upserted", "key": key, "version": 1, "payload": payload(key)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Refused inbound requests whose bodies carry the personal data in odd places.
    for body in [
        format!(
            r#"{{"kind":"dossier.upserted","key":"PII-BAD","version":"{CITIZEN_ID}","payload":{{}}}}"#
        ),
        format!(
            r#"{{"kind":"dossier.upserted","key":"PII-BAD","payload":{{"phone":"{PHONE}"}},"{BANK_ACCOUNT}":1}}"#
        ),
        format!(r#"{{"kind":"payment.{PHONE}","key":"PII-BAD","payload":{{}}}}"#),
    ] {
        let r = client
            .post(&inbound)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error() || r.status() == 202,
            "{}",
            r.status()
        );
    }
    let r = client
        .post(&inbound)
        .bearer_auth(WRONG_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(60), "settled", || {
        m.outcome_total("delivered") >= 2 && m.outcome_total("dead_lettered") >= 2
    })
    .await;

    // Ops API: a wrong token, a viewer refused, an operator replay after the fix.
    let dls: Value = client
        .get(format!("{ops}/api/v1/dead-letters?key=PII-RETRY"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = dls["dead_letters"][0]["id"].as_str().unwrap().to_string();
    let r = client
        .get(format!("{ops}/api/v1/status"))
        .bearer_auth(WRONG_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let replay = format!("{ops}/api/v1/dead-letters/{id}/replay");
    let r = client
        .post(&replay)
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .get(format!("{ops}/api/v1/dead-letters/{id}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sink.set_faults(Faults::default());
    let r = client
        .post(&replay)
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(30), "replay delivered", || {
        sink.records().iter().any(|r| r.key == "PII-RETRY")
    })
    .await;
    let _ = client
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await;
    running.shutdown().await;

    let captured = String::from_utf8(buf.lock().unwrap().clone()).expect("UTF-8 logs");
    let lines: Vec<&str> = captured.lines().collect();
    assert!(lines.len() > 10, "logs were captured: {captured}");
    let mut debug_lines = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("every line is JSON ({e}): {line}"));
        if v["level"] == "DEBUG" {
            debug_lines += 1;
        }
        for secret in [
            CITIZEN_ID,
            PHONE,
            BANK_ACCOUNT,
            TOKEN,
            OPERATOR_TOKEN,
            VIEWER_TOKEN,
            WRONG_TOKEN,
        ] {
            assert!(
                !line.contains(secret),
                "`{secret}` leaked into a log line: {line}"
            );
        }
    }
    assert!(debug_lines > 0, "debug level was captured");

    // Positive: the per-message spans name the dossier code and continue the inbound trace:
    // the `accept` span is the sender's span's child, each `deliver` span the accept span's.
    let spans: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["span"].clone())
        .collect();
    let in_span = |key: &str| {
        let accepts: Vec<&Value> = spans
            .iter()
            .filter(|s| {
                s["name"] == "accept"
                    && s["key"] == key
                    && s["trace_id"] == TRACE_ID
                    && s["parent_span_id"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("00f067aa0ba902b"))
            })
            .collect();
        spans.iter().any(|s| {
            s["name"] == "deliver"
                && s["key"] == key
                && s["trace_id"] == TRACE_ID
                && accepts
                    .iter()
                    .any(|a| a["span_id"] == s["parent_span_id"] && s["span_id"] != a["span_id"])
        })
    };
    assert!(
        in_span("PII-RETRY"),
        "the retry is logged in its message's span:\n{captured}"
    );
    assert!(
        in_span("PII-REFUSED"),
        "the dead-lettering is logged in its message's span"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("replayed through the ops API") && l.contains("\"by\":\"alice\"")),
        "the replay is logged with who did it"
    );
}
