//! OpenTelemetry export of the per-message spans over OTLP/HTTP (JSON encoding), when
//! `[ops] otlp_endpoint` is set.
//!
//! Three spans follow each message, all in the W3C trace of its `traceparent`:
//! - `accept` (server): the inbound request that accepted and queued it; its parent is the
//!   sender's span when the request carried a `traceparent`. The envelope's `traceparent`
//!   names this span, and crosses the broker inside the envelope and as a broker header.
//! - `deliver` (consumer): one per delivery attempt, child of `accept`.
//! - `send` (client): the call to the destination, child of `deliver`; the `traceparent`
//!   sent downstream names this span, so the destination's own spans join the same trace.
//!
//! # Invariants
//! - **Only span fields are exported, never events or payloads.** A span's attributes are the
//!   fields the gateway declares on it: route, destination, dossier code (`key`, exported as
//!   `gateway.dossier_code`), envelope id, kind, attempt, HTTP status, outcome. Log events
//!   inside spans are not exported, so nothing from a payload (citizen ID, phone, bank
//!   account) can reach the collector (`tests/telemetry.rs` checks the wire).
//! - Only spans that carry `trace_id` and `span_id` fields are exported (ours); ids are the
//!   W3C ones, so a trace found in a log line is the same trace in the collector.
//! - **Export never blocks or slows delivery.** Finished spans go to a bounded queue; when it
//!   is full they are dropped and counted. One background thread sends batches every
//!   [`defaults::OTLP_EXPORT_INTERVAL`](crate::config::defaults::OTLP_EXPORT_INTERVAL) (or
//!   when [`MAX_BATCH`] spans wait) to `<endpoint>/v1/traces`; a failed send is logged and
//!   the batch dropped (telemetry is not the ledger).
//! - Off by default: with no endpoint the layer records nothing.
//!
//! Why a hand-written exporter: the OTLP/HTTP JSON encoding is a stable part of the OTLP
//! specification and a few dozen lines over the `reqwest` client already in the tree, while
//! the `opentelemetry` SDK crates would add a second tracing model, protobuf code and their
//! own runtime glue for three span kinds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::defaults;

/// Finished spans waiting for the exporter; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 8192;
/// Spans per export request.
pub const MAX_BATCH: usize = 512;
/// Timeout of one export request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SENDER: RwLock<Option<SyncSender<Msg>>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Msg {
    Span(Value),
    Flush(mpsc::SyncSender<()>),
}

/// A fresh random span id (16 lowercase hex digits).
pub fn new_span_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The span id part of a `traceparent` (empty when malformed).
pub fn span_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap_or("")
}

/// `traceparent` with its span id replaced: the same trace, naming span `span_id`.
pub fn with_span(traceparent: &str, span_id: &str) -> String {
    let parts: Vec<&str> = traceparent.split('-').collect();
    if parts.len() == 4 {
        format!("{}-{}-{span_id}-{}", parts[0], parts[1], parts[3])
    } else {
        traceparent.to_string()
    }
}

/// Spans dropped because the export queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The layer to install in the subscriber (inactive until [`start`]). Give it a per-layer
/// filter admitting the gateway's info spans, so it enables nothing else.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    OtlpLayer.with_filter(
        tracing_subscriber::filter::Targets::new().with_target("gateway", tracing::Level::INFO),
    )
}

/// Start exporting to `endpoint` (an OTLP/HTTP base URL). Replaces an earlier exporter,
/// which flushes what it holds and stops.
pub fn start(endpoint: &str, instance: &str) {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let resource = json!({"attributes": [
        attr("service.name", json!({"stringValue": "gateway"})),
        attr("service.instance.id", json!({"stringValue": instance})),
        attr("service.version", json!({"stringValue": env!("CARGO_PKG_VERSION")})),
    ]});
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let spawned = std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || export_loop(url, resource, rx));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the OTLP exporter thread; spans are not exported");
        return;
    }
    *SENDER.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    ACTIVE.store(true, Ordering::Release);
    tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
}

/// Send what waits now and wait (at most `timeout`) until it was sent.
pub fn flush(timeout: Duration) {
    let tx = SENDER.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(tx) = tx {
        let (ack, done) = mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

/// Stop exporting (after a flush).
pub fn stop(timeout: Duration) {
    flush(timeout);
    ACTIVE.store(false, Ordering::Release);
    *SENDER.write().unwrap_or_else(|e| e.into_inner()) = None;
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn export_loop(url: String, resource: Value, rx: Receiver<Msg>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP exporter: no runtime; spans are not exported");
            return;
        }
    };
    // The client's connection pool and timers belong to this thread's runtime.
    let _entered = rt.enter();
    let client = match reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP exporter: no HTTP client; spans are not exported");
            return;
        }
    };
    let interval = defaults::OTLP_EXPORT_INTERVAL;
    let mut batch: Vec<Value> = Vec::new();
    let mut last_send = Instant::now();
    let send = |batch: &mut Vec<Value>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let n = spans.len();
        let body = json!({"resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{"scope": {"name": "gateway", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
        }]});
        let res = rt.block_on(
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send(),
        );
        match res {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    spans = n,
                    "OTLP export refused; spans dropped"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, spans = n, "OTLP export failed; spans dropped")
            }
        }
    };
    loop {
        match rx.recv_timeout(interval) {
            Ok(Msg::Span(s)) => {
                batch.push(s);
                if batch.len() >= MAX_BATCH || last_send.elapsed() >= interval {
                    send(&mut batch);
                    last_send = Instant::now();
                }
            }
            Ok(Msg::Flush(ack)) => {
                send(&mut batch);
                last_send = Instant::now();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut batch);
                last_send = Instant::now();
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                return;
            }
        }
    }
}

/// The fields of one exported span, collected while it is open.
struct Pending {
    start_ns: u128,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attrs: Vec<(String, Value)>,
}

impl Pending {
    fn set(&mut self, name: &str, v: Value) {
        match name {
            "trace_id" => self.trace_id = v.as_str().unwrap_or_default().to_string(),
            "span_id" => self.span_id = v.as_str().unwrap_or_default().to_string(),
            "parent_span_id" => self.parent_span_id = v.as_str().unwrap_or_default().to_string(),
            _ => {
                let key = match name {
                    "key" => "gateway.dossier_code".to_string(),
                    "http_status" => "http.response.status_code".to_string(),
                    other => format!("gateway.{other}"),
                };
                self.attrs.retain(|(k, _)| *k != key);
                self.attrs.push((key, v));
            }
        }
    }
}

impl Visit for Pending {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), json!(value));
    }
}

fn otlp_value(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!({"boolValue": b}),
        // OTLP/JSON writes 64-bit integers as strings.
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// OTLP span kinds (the proto enum's numbers).
fn kind(name: &str) -> u8 {
    match name {
        "accept" => 2,  // SERVER
        "send" => 3,    // CLIENT
        "deliver" => 5, // CONSUMER
        _ => 1,         // INTERNAL
    }
}

struct OtlpLayer;

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !ACTIVE.load(Ordering::Acquire) {
            return;
        }
        let fields = attrs.metadata().fields();
        if fields.field("trace_id").is_none() || fields.field("span_id").is_none() {
            return;
        }
        let mut p = Pending {
            start_ns: now_ns(),
            trace_id: String::new(),
            span_id: String::new(),
            parent_span_id: String::new(),
            attrs: Vec::new(),
        };
        attrs.record(&mut p);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(p);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(p) = span.extensions_mut().get_mut::<Pending>() {
                values.record(p);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(p) = span.extensions_mut().remove::<Pending>() else {
            return;
        };
        if p.trace_id.len() != 32 || p.span_id.len() != 16 {
            return;
        }
        let failed = p.attrs.iter().any(|(k, v)| {
            k == "gateway.outcome" && matches!(v.as_str(), Some("retry" | "refused" | "failed"))
        });
        let mut s = json!({
            "traceId": p.trace_id,
            "spanId": p.span_id,
            "name": span.name(),
            "kind": kind(span.name()),
            "startTimeUnixNano": p.start_ns.to_string(),
            "endTimeUnixNano": now_ns().to_string(),
            "attributes": p.attrs.iter().map(|(k, v)| attr(k, otlp_value(v))).collect::<Vec<_>>(),
            // STATUS_CODE_ERROR = 2, STATUS_CODE_UNSET = 0
            "status": if failed { json!({"code": 2}) } else { json!({}) },
        });
        if p.parent_span_id.len() == 16 {
            s["parentSpanId"] = json!(p.parent_span_id);
        }
        let tx = SENDER.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(tx) = tx {
            match tx.try_send(Msg::Span(s)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_helpers() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(span_id(tp), "00f067aa0ba902b7");
        let s = new_span_id();
        assert_eq!(s.len(), 16);
        assert_eq!(
            with_span(tp, &s),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{s}-01")
        );
        assert_eq!(otlp_value(&json!(7)), json!({"intValue": "7"}));
    }
}
