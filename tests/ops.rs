//! The ops listener end to end: the JSON API behind viewer and operator tokens, its OpenAPI
//! description against the real router, `/metrics` parsed strictly as OpenMetrics text while
//! messages flow, and the deploy/ alert rules and dashboard against the real metric names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use gateway::app::{self, Running};
use gw_contract_tests::sink::{Faults, Sink};
use gw_store::DeadLetterState;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef";
const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef";

/// The common test config with two ops tokens (alice operates, victor views).
fn ops_config(dir: &std::path::Path, route: &str, sink_url: &str, extra_retry: &str) -> String {
    std::env::set_var("GW_TEST_OPS_ALICE", OPERATOR_TOKEN);
    std::env::set_var("GW_TEST_OPS_VICTOR", VIEWER_TOKEN);
    let text = config_text(Backend::Embedded, dir, route, sink_url, extra_retry);
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    assert!(text.contains(ops));
    text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [\n  { name = \"alice\", role = \"operator\", token = { env = \"GW_TEST_OPS_ALICE\" } },\n  { name = \"victor\", role = \"viewer\", token = { env = \"GW_TEST_OPS_VICTOR\" } },\n]\n",
    ) + "\n[indicators]\nholidays = [\"2026-09-02\"]\n"
}

struct Gw {
    running: Running,
    sink: Sink,
    client: reqwest::Client,
    route: String,
    _dir: tempfile::TempDir,
}

impl Gw {
    async fn start(faults: Faults, extra_retry: &str) -> Gw {
        let sink = Sink::start(0, faults).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let route = unique("ops");
        let loaded = load(&ops_config(dir.path(), &route, &sink.url(), extra_retry));
        let running = app::start(&loaded, CancellationToken::new())
            .await
            .expect("gateway starts");
        Gw {
            running,
            sink,
            client: reqwest::Client::new(),
            route,
            _dir: dir,
        }
    }

    fn ops(&self) -> SocketAddr {
        self.running.ops_addr
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut rb = self
            .client
            .request(method, format!("http://{}{path}", self.ops()));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.expect("ops listener answers");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, Some(VIEWER_TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn metrics(&self) -> String {
        let r = self
            .client
            .get(format!("http://{}/metrics", self.ops()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        r.text().await.unwrap()
    }

    /// Dossiers OK-0..n delivered, POISON-500 (retries exhausted) and POISON-400 (refused)
    /// dead-lettered.
    async fn traffic(&self, n: usize) {
        for key in ["POISON-500", "POISON-400"] {
            assert_eq!(
                post_event(&self.client, self.running.inbound_addr, key, 1).await,
                202
            );
        }
        for d in 0..n {
            let key = format!("OK-{d}");
            assert_eq!(
                post_event(&self.client, self.running.inbound_addr, &key, 1).await,
                202
            );
        }
        let m = self.running.engine.metrics.clone();
        eventually(Duration::from_secs(60), "traffic settled", || {
            m.outcome_total("delivered") >= n as u64 && m.outcome_total("dead_lettered") >= 2
        })
        .await;
    }
}

fn poison_faults() -> Faults {
    Faults {
        poison_keys: ["POISON-400".to_string()].into(),
        failing_keys: ["POISON-500".to_string()].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_api_trail_dead_letters_and_replay_by_role() {
    let gw = Gw::start(poison_faults(), "max_attempts = 2").await;
    gw.traffic(10).await;

    // Authentication: health is open, the API is not.
    let (s, _) = gw.call(Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = gw.call(Method::GET, "/api/v1/status", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (s, _) = gw
        .call(
            Method::GET,
            "/api/v1/status",
            Some("operator-token-0123456789abcdeX"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a near miss is refused");
    // Readiness is a live probe (broker ping, store query, each with a short timeout): on a
    // machine loaded by other builds it can miss once, so give it a few seconds to answer.
    let mut status = gw.get("/api/v1/status").await;
    for _ in 0..20 {
        if status["ready"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        status = gw.get("/api/v1/status").await;
    }
    assert_eq!(status["caller"]["name"], "victor");
    assert_eq!(status["caller"]["role"], "viewer");
    assert_eq!(status["ready"], true);
    assert_eq!(status["dead_letters_open"], 2);

    // A delivered dossier's trail: an attempt then an outcome, with the request digest.
    let trail = gw.get("/api/v1/dossiers/OK-3/trail").await;
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{trail}");
    assert_eq!(events[0]["event"], "attempt");
    assert_eq!(events[0]["result"], "delivered");
    assert_eq!(events[0]["status"], 200);
    assert!(events[0]["latency_ms"].is_u64());
    assert_eq!(events[1]["event"], "outcome");
    assert_eq!(events[1]["result"], "delivered");
    let digest = events[1]["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 64,
        "{digest}"
    );
    assert_eq!(trail["routes"][&gw.route]["outcome"], "delivered");
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered by time");

    // The retried poison: two attempts (retry, dead_lettered) and the dead-letter outcome.
    let trail = gw.get("/api/v1/dossiers/POISON-500/trail").await;
    let results: Vec<(&str, &str)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [
            ("attempt", "retry"),
            ("attempt", "dead_lettered"),
            ("outcome", "dead_lettered")
        ],
        "{trail}"
    );
    assert_eq!(trail["dead_letters"].as_array().unwrap().len(), 1);

    // Messages by key.
    let msgs = gw.get("/api/v1/messages?key=OK-3").await;
    assert_eq!(msgs["messages"][0]["outcome"], "delivered");
    assert_eq!(msgs["messages"][0]["adapter"], "sink");
    let (s, v) = gw
        .call(Method::GET, "/api/v1/messages", Some(VIEWER_TOKEN))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_key"))
    );

    // Dead letters: list, filters, bad parameters.
    let dls = gw.get("/api/v1/dead-letters").await;
    assert_eq!(dls["dead_letters"].as_array().unwrap().len(), 2);
    let one = gw
        .get("/api/v1/dead-letters?key=POISON-500&state=open&limit=5")
        .await;
    let one = &one["dead_letters"].as_array().unwrap()[0];
    assert_eq!(one["route"], gw.route.as_str());
    assert!(one["reason"]
        .as_str()
        .unwrap()
        .starts_with("retries_exhausted"));
    let id500 = one["id"].as_str().unwrap().to_string();
    let id400 = gw.get("/api/v1/dead-letters?key=POISON-400").await["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for bad in [
        "/api/v1/dead-letters?limit=0",
        "/api/v1/dead-letters?state=lost",
    ] {
        let (s, _) = gw.call(Method::GET, bad, Some(VIEWER_TOKEN)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (s, _) = gw
        .call(Method::GET, "/api/v1/dead-letters/nope", Some(VIEWER_TOKEN))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // One dead letter: the payload for operators only.
    let path = format!("/api/v1/dead-letters/{id500}");
    let as_viewer = gw.get(&path).await;
    assert!(as_viewer["envelope"]["payload"].is_null(), "{as_viewer}");
    assert_eq!(as_viewer["envelope"]["key"], "POISON-500");
    let (s, as_operator) = gw.call(Method::GET, &path, Some(OPERATOR_TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(as_operator["envelope"]["payload"]["code"], "POISON-500");

    // Replay and drop: 401 without a token, 403 for a viewer, done and recorded for an operator.
    let replay = format!("/api/v1/dead-letters/{id500}/replay");
    let (s, _) = gw.call(Method::POST, &replay, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = gw.call(Method::POST, &replay, Some(VIEWER_TOKEN)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, _) = gw
        .call(
            Method::POST,
            &format!("/api/v1/dead-letters/{id400}/drop"),
            Some(VIEWER_TOKEN),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    gw.sink.set_faults(Faults::default());
    let (s, v) = gw.call(Method::POST, &replay, Some(OPERATOR_TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["by"], "alice");
    let (s, v) = gw.call(Method::POST, &replay, Some(OPERATOR_TOKEN)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_settled"))
    );
    let (s, v) = gw
        .call(
            Method::POST,
            &format!("/api/v1/dead-letters/{id400}/drop"),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let store = gw.running.engine.store.clone();
    let d500 = store.dead_letter(&id500).await.unwrap().unwrap();
    assert_eq!(
        (d500.state, d500.settled_by.as_deref()),
        (DeadLetterState::Replayed, Some("alice"))
    );
    let d400 = store.dead_letter(&id400).await.unwrap().unwrap();
    assert_eq!(
        (d400.state, d400.settled_by.as_deref()),
        (DeadLetterState::Dropped, Some("alice"))
    );

    // The replayed dossier is delivered, and its trail says so.
    let mut delivered = false;
    for _ in 0..200 {
        let t = gw.get("/api/v1/dossiers/POISON-500/trail").await;
        if t["routes"][&gw.route]["outcome"] == "delivered" {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the replay was delivered");
    let dls = gw.get("/api/v1/dead-letters?state=all").await;
    assert_eq!(dls["dead_letters"].as_array().unwrap().len(), 2);
    assert_eq!(
        gw.get("/api/v1/dead-letters").await["dead_letters"],
        serde_json::json!([])
    );

    // Routes: adapter, depth and counts.
    let routes = gw.get("/api/v1/routes").await;
    let r = &routes["routes"][0];
    assert_eq!(r["name"], gw.route.as_str());
    assert_eq!(r["adapter"], "sink");
    assert_eq!(r["queue"]["ready"], 0);
    assert!(
        r["counts"]["outcomes"]["delivered"].as_u64().unwrap() >= 11,
        "{r}"
    );
    assert_eq!(r["counts"]["messages_in"], 12);
    assert_eq!(r["dead_letters_open"], 0);
    gw.running.shutdown().await;
}

fn spec() -> Value {
    let text = include_str!("../src/ops/openapi.yaml");
    let v: Value = serde_norway::from_str(text).expect("openapi.yaml is valid YAML");
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_describes_exactly_the_real_router() {
    let gw = Gw::start(poison_faults(), "max_attempts = 1").await;
    gw.traffic(2).await;
    let id = gw.get("/api/v1/dead-letters?key=POISON-500").await["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spec = spec();
    let mut in_spec = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            in_spec.insert((method.clone(), path.clone()));
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            let mut concrete = path.replace("{code}", "OK-1").replace("{id}", &id);
            // Required query parameters get a real value (`key` is the only one).
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" && p["required"] == true {
                    let sep = if concrete.contains('?') { '&' } else { '?' };
                    concrete.push_str(&format!("{sep}{}=OK-1", p["name"].as_str().unwrap()));
                }
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if concrete.contains("{name}") {
                // This gateway has no agency subscription: the handler (not the router)
                // answers that the name is unknown.
                let concrete = concrete.replace("{name}", "nobody");
                let (s, v) = gw.call(m, &concrete, Some(OPERATOR_TOKEN)).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "{method} {concrete}: {v}");
                assert_eq!(v["error"]["code"], "not_found", "{method} {concrete}: {v}");
                continue;
            }
            let (s, v) = gw.call(m, &concrete, Some(OPERATOR_TOKEN)).await;
            assert!(
                s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} (as {concrete}) answered {s}: {v}"
            );
            assert!(
                s.is_success() || s == StatusCode::CONFLICT,
                "{method} {concrete}: {s} {v}"
            );
        }
    }
    let real: BTreeSet<(String, String)> = gateway::ops::api::endpoints().into_iter().collect();
    assert_eq!(
        real.difference(&in_spec).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "endpoints missing from openapi.yaml"
    );
    assert_eq!(
        in_spec.difference(&real).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "openapi.yaml describes endpoints the router does not have"
    );
    // And it is served.
    let served = gw
        .client
        .get(format!("http://{}/api/v1/openapi.yaml", gw.ops()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, include_str!("../src/ops/openapi.yaml"));
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_tokens_only_health_and_metrics_answer() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("noapi");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    let running = app::start(&loaded, CancellationToken::new()).await.unwrap();
    let c = reqwest::Client::new();
    for (path, want) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/metrics", 200),
        ("/api/v1/status", 404),
        ("/api/v1/openapi.yaml", 404),
        ("/", 404),
    ] {
        let s = c
            .get(format!("http://{}{path}", running.ops_addr))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s.as_u16(), want, "{path}");
    }
    running.shutdown().await;

    // check-config says so; with tokens it names the listener; a duplicate name is a problem.
    let f = dir.path().join("gw.toml");
    std::fs::write(
        &f,
        config_text(Backend::Embedded, dir.path(), "r1", &sink.url(), ""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no [ops] tokens: the ops API and dashboard are off"),
        "{text}"
    );
    let dup = ops_config(dir.path(), "r1", &sink.url(), "")
        .replace("name = \"victor\"", "name = \"alice\"");
    std::fs::write(&f, dup).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:ops.tokens[1].name: token `alice` is defined twice",
            f.display()
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// A strict parser of the OpenMetrics 1.0 text format (what the tests below need of it): a
// counter family `x` has samples `x_total`, and the text ends with `# EOF`.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// family → type
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
    /// Whether the family a query names as `name` (a sample name: `x_total` for counter `x`)
    /// is declared.
    fn declares(&self, name: &str) -> bool {
        self.types.contains_key(name)
            || name
                .strip_suffix("_total")
                .is_some_and(|f| self.types.get(f).map(String::as_str) == Some("counter"))
    }
    /// Every name a query can use: families, counters' `_total` names and sample names.
    fn names(&self) -> BTreeSet<String> {
        let mut n: BTreeSet<String> = self.types.keys().cloned().collect();
        n.extend(
            self.types
                .iter()
                .filter(|(_, t)| *t == "counter")
                .map(|(f, _)| format!("{f}_total")),
        );
        n.extend(self.samples.iter().map(|s| s.name.clone()));
        n
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut helped = BTreeSet::new();
    let Some(body) = text.strip_suffix("# EOF\n") else {
        return Err("no `# EOF` line at the end".into());
    };
    for (no, line) in body.lines().enumerate() {
        let no = no + 1;
        if line.is_empty() {
            return Err(format!("line {no}: empty line"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if !helped.insert(name.to_string()) => {
                    return Err(format!("line {no}: second HELP for {name}"));
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "summary",
                        "stateset",
                        "info",
                        "unknown",
                    ]
                    .contains(&kind)
                    {
                        return Err(format!("line {no}: unknown type {kind}"));
                    }
                    if e.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(format!("line {no}: second TYPE for {name}"));
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(format!("line {no}: no value: {line}")),
        };
        if !valid_metric_name(name) {
            return Err(format!("line {no}: bad metric name {name}"));
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let Some(&(i, c)) = chars.peek() else {
                    return Err(format!("line {no}: unterminated labels"));
                };
                if c == '}' {
                    end = i;
                    break;
                }
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if !valid_metric_name(&key) || key.contains(':') {
                    return Err(format!("line {no}: bad label name `{key}`"));
                }
                chars.next(); // '='
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(format!("line {no}: label {key} value not quoted"));
                }
                let mut val = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            other => return Err(format!("line {no}: bad escape {other:?}")),
                        },
                        Some('"') => break,
                        Some(c) => val.push(c),
                        None => return Err(format!("line {no}: unterminated label value")),
                    }
                }
                if labels.insert(key.clone(), val).is_some() {
                    return Err(format!("line {no}: label {key} twice"));
                }
                if let Some(&(_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            &body[end + 1..]
        } else {
            rest
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| format!("line {no}: no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| format!("line {no}: bad value {v}"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("line {no}: bad timestamp {ts}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("line {no}: trailing text"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| e.types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .or_else(|| {
                ["_total", "_created"].iter().find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| e.types.get(*f).map(String::as_str) == Some("counter"))
                })
            })
            .unwrap_or(name);
        if e.types.get(family).map(String::as_str) == Some("counter") && family == name {
            return Err(format!("line {no}: counter sample {name} without `_total`"));
        }
        match e.types.get(family).map(String::as_str) {
            None => return Err(format!("line {no}: sample {name} before its TYPE")),
            Some("histogram") if name.ends_with("_bucket") && !labels.contains_key("le") => {
                return Err(format!("line {no}: bucket without le"))
            }
            Some("counter") if value < 0.0 => return Err(format!("line {no}: negative counter")),
            _ => {}
        }
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(e)
}

#[test]
fn the_strict_parser_refuses_malformed_text() {
    for bad in [
        "gateway_x 1\n# EOF\n",
        "# TYPE gateway_x counter\ngateway_x_total{a=\"1} 1\n# EOF\n",
        "# TYPE gateway_x counter\ngateway_x_total{a=1} 1\n# EOF\n",
        "# TYPE gateway_x counter\ngateway_x_total one\n# EOF\n",
        "# TYPE gateway_x counter\n# TYPE gateway_x counter\n# EOF\n",
        "# TYPE gateway_x histogram\ngateway_x_bucket 1\n# EOF\n",
        "# TYPE gateway_x counter\ngateway_x 1\n# EOF\n",
        "# TYPE gateway_x gauge\ngateway_x 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad}");
    }
    let ok = parse_exposition(
        "# HELP a x\n# TYPE a counter\na_total{r=\"q\\\"\",s=\"2\"} 3 1700000000000\n# EOF\n",
    )
    .unwrap();
    assert_eq!(ok.value("a_total", &[("r", "q\"")]), Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_strictly_and_move_as_messages_flow() {
    let gw = Gw::start(poison_faults(), "max_attempts = 2").await;
    let before = parse_exposition(&gw.metrics().await).expect("valid exposition");
    let r = gw.route.as_str();
    assert_eq!(
        before.sum("gateway_messages_in_total", &[("route", r)]),
        0.0
    );
    assert_eq!(before.value("gateway_dead_letters_open", &[]), Some(0.0));
    assert_eq!(before.value("gateway_up", &[]), Some(1.0));
    assert_eq!(
        before.value("gateway_queue_ready", &[("route", r), ("adapter", "sink")]),
        Some(0.0)
    );
    assert_eq!(
        before.value(
            "gateway_queue_oldest_ready_age_seconds",
            &[("route", r), ("adapter", "sink")]
        ),
        Some(0.0),
        "nothing waits yet"
    );
    for family in [
        "gateway_messages_in_total",
        "gateway_messages_out_total",
        "gateway_outcomes_total",
        "gateway_delivery_seconds",
        "gateway_message_age_seconds",
        "gateway_queue_ready",
        "gateway_queue_unacked",
        "gateway_queue_delayed",
        "gateway_queue_oldest_ready_age_seconds",
        "gateway_circuit_state",
        "gateway_circuit_transitions_total",
        "gateway_dead_letters_open",
        "gateway_token_refresh_failures_total",
        "gateway_certificate_expiry_days",
        "gateway_inbound_requests_total",
        "gateway_ledger_writes_total",
        "gateway_ledger_write_requests_total",
        "gateway_ledger_write_seconds_total",
    ] {
        assert!(
            before.declares(family),
            "{family} declared before any traffic"
        );
    }

    gw.traffic(20).await;
    gw.running
        .engine
        .metrics
        .set_cert_days("sink-signing", "signer", 42.0);
    gw.running.engine.metrics.inc_token_refresh_failure("sink");
    let after = parse_exposition(&gw.metrics().await).expect("valid exposition");
    // Every settled message went through the recorder: at least one request per outcome (22:
    // 20 delivered, 2 dead-lettered), merged into no more transactions than requests.
    let writes = after.value("gateway_ledger_writes_total", &[]).unwrap();
    let requests = after
        .value("gateway_ledger_write_requests_total", &[])
        .unwrap();
    assert!(requests >= 22.0, "{requests} ledger requests");
    assert!(writes >= 1.0 && writes <= requests, "{writes} writes");
    assert!(
        after
            .value("gateway_ledger_write_seconds_total", &[])
            .unwrap()
            > 0.0
    );
    let lr = [("route", r), ("adapter", "sink")];
    assert_eq!(after.value("gateway_messages_in_total", &lr), Some(22.0));
    assert_eq!(after.value("gateway_messages_out_total", &lr), Some(20.0));
    assert_eq!(
        after.value(
            "gateway_outcomes_total",
            &[
                ("route", r),
                ("outcome", "delivered"),
                ("reason", "accepted")
            ]
        ),
        Some(20.0)
    );
    assert_eq!(
        after.sum(
            "gateway_outcomes_total",
            &[("route", r), ("outcome", "dead_lettered")]
        ),
        2.0
    );
    assert_eq!(
        after.sum(
            "gateway_outcomes_total",
            &[("route", r), ("outcome", "retried")]
        ),
        1.0,
        "POISON-500 retried once before its budget ran out"
    );
    // 20 delivered + 1 retry + 2 dead-lettering attempts were timed.
    assert_eq!(
        after.value("gateway_delivery_seconds_count", &lr),
        Some(23.0)
    );
    assert_eq!(
        after.value(
            "gateway_delivery_seconds_bucket",
            &[("route", r), ("le", "+Inf")]
        ),
        Some(23.0)
    );
    assert!(after.value("gateway_message_age_seconds", &lr).unwrap() >= 0.0);
    assert!(
        after
            .value("gateway_queue_oldest_ready_age_seconds", &lr)
            .is_some(),
        "the embedded queue always tells its head's age"
    );
    assert_eq!(after.value("gateway_dead_letters_open", &[]), Some(2.0));
    assert_eq!(
        after.value(
            "gateway_inbound_requests_total",
            &[("source", "onestop"), ("status", "202")]
        ),
        Some(22.0)
    );
    assert_eq!(
        after.value(
            "gateway_certificate_expiry_days",
            &[("profile", "sink-signing"), ("cert", "signer")]
        ),
        Some(42.0)
    );
    assert_eq!(
        after.value(
            "gateway_token_refresh_failures_total",
            &[("adapter", "sink")]
        ),
        Some(1.0)
    );
    // No dossier code in any label.
    for s in &after.samples {
        for v in s.labels.values() {
            assert!(!v.contains("OK-") && !v.contains("POISON"), "{s:?}");
        }
    }
    gw.running.shutdown().await;
}

/// Every `gateway_…` name a text uses.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("gateway_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_alerts_and_dashboard_use_real_metric_names() {
    let root = env!("CARGO_MANIFEST_DIR");
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    let grafana =
        std::fs::read_to_string(format!("{root}/deploy/grafana/gateway-dashboard.json")).unwrap();
    // Both are well-formed, and every alert has an expression, a severity and a summary.
    let rules: Value = serde_norway::from_str(&alerts).expect("alerts.yml is YAML");
    let mut alert_names = BTreeSet::new();
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().expect("alert name");
            assert!(r["expr"].is_string(), "{name}: expr");
            assert!(r["labels"]["severity"].is_string(), "{name}: severity");
            assert!(r["annotations"]["summary"].is_string(), "{name}: summary");
            alert_names.insert(name.to_string());
        }
    }
    for needed in [
        "GatewayBacklogOld",
        "GatewayBacklogLarge",
        "GatewayDeadLettersGrowing",
        "GatewayDeliveryErrorRate",
        "GatewayCertificateExpiresSoon",
        "GatewayOrphanedRetries",
        "GatewaySubscriptionDisabled",
    ] {
        assert!(alert_names.contains(needed), "alert {needed}");
    }
    let dash: Value = serde_json::from_str(&grafana).expect("the dashboard is JSON");
    assert!(!dash["panels"].as_array().unwrap().is_empty());

    let gw = Gw::start(poison_faults(), "max_attempts = 2").await;
    gw.traffic(5).await;
    let exposition = parse_exposition(&gw.metrics().await).unwrap();
    let real = exposition.names();
    for (file, text) in [
        ("alerts.yml", &alerts),
        ("gateway-dashboard.json", &grafana),
    ] {
        let used = metric_names_in(text);
        assert!(!used.is_empty(), "{file} uses gateway metrics");
        let unknown: Vec<_> = used.difference(&real).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics /metrics lacks: {unknown:?}"
        );
    }
    gw.running.shutdown().await;
}

/// Run the `gateway` binary; (exit code, stdout, stderr).
fn gateway_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_trace_status_and_interruptible_bulk_replay() {
    // 60 dossiers the destination refuses, 5 it takes.
    let poison: Vec<String> = (0..60).map(|i| format!("REFUSED-{i:03}")).collect();
    let sink = Sink::start(
        0,
        Faults {
            poison_keys: poison.iter().cloned().collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("cli");
    let text = ops_config(dir.path(), &route, &sink.url(), "");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for key in poison
        .iter()
        .map(String::as_str)
        .chain(["FINE-1", "FINE-2", "FINE-3", "FINE-4", "FINE-5"])
    {
        assert_eq!(post_event(&client, running.inbound_addr, key, 1).await, 202);
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(60), "all settled", || {
        m.outcome_total("delivered") >= 5 && m.outcome_total("dead_lettered") >= 60
    })
    .await;
    // The embedded queue belongs to one process: stop the gateway before the commands.
    running.shutdown().await;
    let config = file.to_str().unwrap();

    let (code, out, err) = gateway_cli(&["trace", "FINE-2", "--config", config]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("attempt") && out.contains("outcome"), "{out}");
    assert!(
        out.contains("delivered") && out.contains("sha256:"),
        "{out}"
    );
    assert!(
        out.contains("2 event(s), 1 outcome(s), 0 dead letter(s)"),
        "{out}"
    );
    let (code, out, _) = gateway_cli(&["trace", "NOBODY", "--config", config]);
    assert_eq!((code, out.trim()), (Some(1), "nothing recorded for NOBODY"));

    let (code, out, err) = gateway_cli(&["status", "--config", config]);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&route))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [route.as_str(), "onestop", "sink", "0", "0", "0", "60"],
        "{out}"
    );
    assert!(out.contains("open dead letters: 60"), "{out}");

    // Bulk replay, interrupted with SIGINT shortly after it starts: it stops between two
    // replays, and what it says it replayed is exactly what the store shows.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "dlq",
            "--config",
            config,
            "replay",
            "--all",
            "--route",
            &route,
            "--by",
            "night-shift",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for its first line (the interrupt handler is in place), then SIGINT, as Ctrl-C
    // sends it, to the child only (by its pid).
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    assert!(first.starts_with("replaying 60 dead letter(s)"), "{first}");
    std::thread::sleep(Duration::from_millis(20));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = rest;
    let replayed: usize = stdout
        .split("replayed ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "a count: {stdout} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("bulk replay said: {}", stdout.trim());
    match out.status.code() {
        Some(130) => assert!(
            stdout.contains("interrupted") && stdout.contains("of 60"),
            "{stdout}"
        ),
        Some(0) => {
            eprintln!("note: the bulk replay finished before the interrupt arrived");
            assert_eq!(replayed, 60, "{stdout}");
        }
        other => panic!(
            "exit {other:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let store = gw_store::open(&format!("sqlite:{}", dir.path().join("store.db").display()))
        .await
        .unwrap();
    let all = store
        .dead_letters(&gw_store::DeadLetterFilter::default())
        .await
        .unwrap();
    let by_night: Vec<_> = all
        .iter()
        .filter(|d| d.state == DeadLetterState::Replayed)
        .collect();
    assert_eq!(by_night.len(), replayed, "printed count = store");
    assert!(by_night
        .iter()
        .all(|d| d.settled_by.as_deref() == Some("night-shift")));
    assert_eq!(
        all.iter()
            .filter(|d| d.state == DeadLetterState::Open)
            .count(),
        60 - replayed
    );
    // Running it again finishes the rest.
    let (code, out, err) = gateway_cli(&[
        "dlq", "--config", config, "replay", "--all", "--route", &route,
    ]);
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(
        out.contains(&format!("replayed {} of {}", 60 - replayed, 60 - replayed)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_or_missing_ops_token_stops_the_start_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = ops_config(dir.path(), "short", "http://127.0.0.1:9/", "");
    std::env::set_var("GW_TEST_OPS_SHORT", "short");
    let short = text.replace("GW_TEST_OPS_VICTOR", "GW_TEST_OPS_SHORT");
    let err = app::start(&load(&short), CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("ops.tokens[1].token (victor): shorter than 16 characters"),
        "{err}"
    );
    let missing = text.replace("GW_TEST_OPS_VICTOR", "GW_TEST_OPS_NOT_SET_ANYWHERE");
    let err = app::start(&load(&missing), CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains(
            "ops.tokens[1].token (victor): environment variable GW_TEST_OPS_NOT_SET_ANYWHERE is not set"
        ),
        "{err}"
    );
}

/// An empty token is an error at start, not an open door: before, an empty ops token (or
/// source token) resolved to "" and a request without `Authorization` got through.
#[tokio::test]
async fn an_empty_token_stops_the_start_with_a_clear_error() {
    std::env::set_var("GW_TEST_OPS_EMPTY", "");
    std::env::set_var("GW_TEST_SOURCE_BLANK", "   ");
    let dir = tempfile::tempdir().unwrap();
    let route = unique("ops-empty");
    let text = config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        "http://127.0.0.1:9/",
        "",
    );
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    let with_ops = text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"alice\", role = \"operator\", token = { env = \"GW_TEST_OPS_EMPTY\" } }]\n",
    );
    let e = match app::start(&load(&with_ops), CancellationToken::new()).await {
        Ok(r) => {
            r.shutdown().await;
            panic!("started with an empty ops token")
        }
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("GW_TEST_OPS_EMPTY is empty: a secret must have a value"),
        "{e}"
    );

    let src = "token = { env = \"GW_TEST_SOURCE_TOKEN\" }";
    assert!(text.contains(src), "{text}");
    let with_source = text.replacen(src, "token = { env = \"GW_TEST_SOURCE_BLANK\" }", 1);
    let dir2 = tempfile::tempdir().unwrap();
    let with_source = with_source.replace(
        &dir.path().display().to_string(),
        &dir2.path().display().to_string(),
    );
    let e = match app::start(&load(&with_source), CancellationToken::new()).await {
        Ok(r) => {
            r.shutdown().await;
            panic!("started with a blank source token")
        }
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("sources.onestop.token: environment variable GW_TEST_SOURCE_BLANK is empty"),
        "{e}"
    );
}

/// The service-quality index's endpoints: any token reads them; a bad period, level or horizon
/// is a 400 naming it; no token is a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indicators_endpoints_answer_any_token_and_refuse_bad_parameters() {
    let gw = Gw::start(Faults::default(), "").await;
    let (s, v) = gw
        .call(
            Method::GET,
            "/api/v1/indicators?period=2026-11&level=unit",
            Some(VIEWER_TOKEN),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["period"], "2026-11");
    assert_eq!(v["level"], "unit");
    assert!(v["rows"].is_array(), "{v}");
    for (query, code) in [
        ("/api/v1/indicators?period=2026-13", "bad_period"),
        ("/api/v1/indicators?level=county", "bad_level"),
        ("/api/v1/indicators/at-risk?days=99", "bad_days"),
        ("/api/v1/indicators/at-risk?days=soon", "bad_days"),
    ] {
        let (s, v) = gw.call(Method::GET, query, Some(VIEWER_TOKEN)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
    let (s, v) = gw
        .call(
            Method::GET,
            "/api/v1/indicators/at-risk?days=3",
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["days"], 3);
    assert!(v["units"].is_object(), "{v}");
    let (s, _) = gw.call(Method::GET, "/api/v1/indicators", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    gw.running.shutdown().await;
}

/// The catalogue reload is operator-only, and without `[catalogue]` there is nothing to reload
/// (a 409 naming it, not a silent success).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalogue_reload_is_for_operators_and_needs_a_catalogue() {
    let gw = Gw::start(Faults::default(), "").await;
    let path = "/api/v1/indicators/catalogue/reload";
    let (s, v) = gw.call(Method::POST, path, Some(VIEWER_TOKEN)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = gw.call(Method::POST, path, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = gw.call(Method::POST, path, Some(OPERATOR_TOKEN)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "catalogue_not_configured", "{v}");
    gw.running.shutdown().await;
}
