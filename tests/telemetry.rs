//! OTLP export: an in-test OTLP/HTTP collector (axum on 127.0.0.1) receives the gateway's
//! spans as OTLP http/protobuf (the default; decoded with the `opentelemetry-proto` types) and
//! as OTLP http/json. For each message, the `accept`, `deliver` and `send` spans share the
//! trace id of the sender's W3C `traceparent` across the broker, form one parent chain
//! (sender → accept → deliver → send, and the destination receives the send span as its
//! parent), carry the dossier code, and nothing from the payload (citizen ID, phone, bank
//! account) reaches the collector. Runs on the embedded queue, and on RabbitMQ + PostgreSQL
//! when they answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use gateway::app;
use gw_contract_tests::sink::{Faults, Sink};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const CITIZEN_ID: &str = "079088001234";
const PHONE: &str = "0987654321";
const BANK_ACCOUNT: &str = "1903567890123";
const CALLER_SPAN: &str = "b7ad6b7169203331";

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector: keeps every `POST /v1/traces` (content type, body).
async fn collector() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                g.lock().unwrap().push((ct, body.to_vec()));
                Json(json!({}))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

/// Every exported span (decoded from OTLP protobuf or JSON into the JSON shape), with the
/// resource's service name checked.
fn spans(got: &Received) -> Vec<Value> {
    use prost::Message;
    let mut out = Vec::new();
    for (ct, body) in got.lock().unwrap().iter() {
        let v: Value = if ct.starts_with("application/x-protobuf") {
            let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                body.as_slice(),
            )
            .expect("an OTLP protobuf export request");
            serde_json::to_value(&req).unwrap()
        } else {
            assert!(ct.starts_with("application/json"), "OTLP/HTTP: {ct}");
            serde_json::from_slice(body).expect("an OTLP JSON export request")
        };
        for rs in v["resourceSpans"].as_array().expect("resourceSpans") {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some(json!("gateway")));
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

fn attr(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_string)
                .or(v["intValue"].as_str().map(str::to_string))
                .or(v["intValue"].as_i64().map(|i| i.to_string()))
        })
}

fn of<'a>(all: &'a [Value], name: &str, key: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|s| s["name"] == name && attr(s, "gateway.dossier_code").as_deref() == Some(key))
        .collect()
}

fn payload(code: &str) -> Value {
    json!({
        "code": code,
        "applicant": {"name": "Trần Thị Bình", "identity_number": CITIZEN_ID, "phone": PHONE, "bank_account": BANK_ACCOUNT},
    })
}

/// One message's spans: one accept (child of the sender's span), deliveries (children of the
/// accept), sends (children of a delivery), all in `trace`. Returns (deliver, send) spans.
fn chain<'a>(all: &'a [Value], key: &str, trace: &str) -> (Vec<&'a Value>, Vec<&'a Value>) {
    let accepts = of(all, "accept", key);
    assert_eq!(accepts.len(), 1, "{key}: one accept span: {all:#?}");
    let accept = accepts[0];
    assert_eq!(accept["traceId"], trace, "{key}: the sender's trace");
    assert_eq!(
        accept["parentSpanId"], CALLER_SPAN,
        "{key}: child of the sender's span"
    );
    assert_eq!(accept["kind"], 2, "server");
    let delivers = of(all, "deliver", key);
    assert!(!delivers.is_empty(), "{key}: deliver spans");
    for d in &delivers {
        assert_eq!(d["traceId"], trace, "{key}: one trace across the broker");
        assert_eq!(
            d["parentSpanId"], accept["spanId"],
            "{key}: deliver ← accept"
        );
        assert_eq!(d["kind"], 5, "consumer");
        assert!(attr(d, "gateway.route").is_some());
    }
    let sends = of(all, "send", key);
    assert!(!sends.is_empty(), "{key}: send spans");
    for s in &sends {
        assert_eq!(s["traceId"], trace, "{key}: one trace to the destination");
        assert!(
            delivers.iter().any(|d| d["spanId"] == s["parentSpanId"]),
            "{key}: send ← deliver"
        );
        assert_eq!(s["kind"], 3, "client");
        assert_eq!(attr(s, "gateway.destination").as_deref(), Some("sink"));
    }
    (delivers, sends)
}

/// One message per outcome through `backend`, exported over `protocol` (an `otlp_protocol`
/// value, or the default when `None`).
async fn one_trace_in_broker_out(
    backend: Backend,
    tag: &str,
    url: &str,
    got: &Received,
    protocol: Option<&str>,
) {
    let ok_key = format!("OT-{tag}-OK");
    let retry_key = format!("OT-{tag}-RETRY");
    let sink = Sink::start(
        0,
        Faults {
            failing_keys: [retry_key.clone()].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sink.set_capture(true);
    let dir = tempfile::tempdir().unwrap();
    let route = unique("otlp");
    let text = config_text(backend, dir.path(), &route, &sink.url(), "").replace(
        "[ops]\nlisten = \"127.0.0.1:0\"\n",
        &format!(
            "[ops]\nlisten = \"127.0.0.1:0\"\notlp_endpoint = \"{url}\"\n{}",
            protocol
                .map(|p| format!("otlp_protocol = \"{p}\"\n"))
                .unwrap_or_default()
        ),
    );
    assert!(text.contains("otlp_endpoint"));
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let traces = [
        (ok_key.clone(), format!("{:032x}", rand_u128())),
        (retry_key.clone(), format!("{:032x}", rand_u128())),
    ];
    for (key, trace) in &traces {
        let r = client
            .post(format!("http://{}/in/onestop", running.inbound_addr))
            .bearer_auth(TOKEN)
            .header("traceparent", format!("00-{trace}-{CALLER_SPAN}-01"))
            .json(&json!({"kind": "dossier.upserted", "key": key, "version": 1, "payload": payload(key)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(30), "the failing key retried", || {
        m.outcome_count(&route, "retried") >= 1
    })
    .await;
    sink.set_faults(Faults::default());
    eventually(Duration::from_secs(30), "both delivered", || {
        let keys: Vec<String> = sink.records().into_iter().map(|r| r.key).collect();
        keys.contains(&ok_key) && keys.contains(&retry_key)
    })
    .await;
    let captured = sink.captured();
    running.shutdown().await; // flushes the exporter
    eventually(
        Duration::from_secs(15),
        "the delivered sends exported",
        || {
            let all = spans(got);
            [&ok_key, &retry_key].iter().all(|k| {
                of(&all, "send", k)
                    .iter()
                    .any(|s| attr(s, "gateway.outcome").as_deref() == Some("delivered"))
            })
        },
    )
    .await;

    let all = spans(got);
    eprintln!(
        "{backend:?}: {} spans in {} OTLP export requests so far",
        all.len(),
        got.lock().unwrap().len()
    );
    let (_, sends) = chain(&all, &ok_key, &traces[0].1);
    let (delivers, retry_sends) = chain(&all, &retry_key, &traces[1].1);
    assert!(
        delivers.len() >= 2,
        "the retry is a second delivery in the same trace"
    );
    let failed = retry_sends
        .iter()
        .find(|s| attr(s, "gateway.outcome").as_deref() == Some("retry"))
        .expect("the failed attempt is exported");
    assert_eq!(
        failed["status"]["code"], 2,
        "a failed send is an error span"
    );
    assert_eq!(
        attr(failed, "http.response.status_code").as_deref(),
        Some("500")
    );
    // The destination got the delivered send span as its parent.
    let delivered = sends
        .iter()
        .find(|s| attr(s, "gateway.outcome").as_deref() == Some("delivered"))
        .unwrap();
    let tp = captured
        .iter()
        .find(|c| c.header("x-gateway-key") == Some(ok_key.as_str()))
        .and_then(|c| c.header("traceparent"))
        .expect("the request downstream carries a traceparent")
        .to_string();
    assert_eq!(
        tp,
        format!(
            "00-{}-{}-01",
            traces[0].1,
            delivered["spanId"].as_str().unwrap()
        )
    );
    // No personal data on the wire to the collector.
    for (_, body) in got.lock().unwrap().iter() {
        for secret in [CITIZEN_ID, PHONE, BANK_ACCOUNT, TOKEN] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "`{secret}` reached the collector"
            );
        }
    }
    gateway::telemetry::stop(Duration::from_secs(5));
}

fn rand_u128() -> u128 {
    // Non-zero, distinct per call (a W3C trace id must not be all zeros).
    uuid::Uuid::now_v7().as_u128() | 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn otlp_export_one_trace_in_broker_out_without_personal_data() {
    tracing_subscriber::registry()
        .with(gateway::telemetry::layer())
        .try_init()
        .expect("the only subscriber of this test binary");
    let (url, got) = collector().await;
    // The default encoding (http/protobuf), then http/json.
    one_trace_in_broker_out(Backend::Embedded, "EMB", &url, &got, None).await;
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .all(|(ct, _)| ct.starts_with("application/x-protobuf")));
    one_trace_in_broker_out(Backend::Embedded, "EMBJ", &url, &got, Some("http/json")).await;
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .any(|(ct, _)| ct.starts_with("application/json")));
    if services_available("otlp_export_one_trace_in_broker_out_without_personal_data (RabbitMQ)") {
        one_trace_in_broker_out(Backend::RabbitPg, "RMQ", &url, &got, None).await;
    }
    assert_eq!(gateway::telemetry::dropped(), 0);
}
