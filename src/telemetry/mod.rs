//! Telemetry: what the gateway tells the people watching it. [`metrics`] holds every metric
//! family (OpenMetrics text at the ops listener's `/metrics`); [`logging`] is the binary's log
//! subscriber (text or JSON lines, unforgeable); this file exports the per-message spans.
//!
//! OpenTelemetry export of the per-message spans over OTLP, when `[ops] otlp_endpoint` is set;
//! `[ops] otlp_protocol` picks http/protobuf (the default), http/json or gRPC.
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
//!   `gateway.dossier_code`), envelope id, kind, attempt, HTTP status, outcome. The layer's
//!   filter admits spans only (no event reaches it), and every span leaves without events or
//!   links, so nothing from a payload (citizen ID, phone, bank account) can reach the
//!   collector (`tests/telemetry.rs` checks the wire).
//! - Only spans that carry `trace_id` and `span_id` fields are exported (ours), with those
//!   ids: the W3C ones of the `traceparent`, so a trace found in a log line or an envelope is
//!   the same trace in the collector, and the parent links are the `parent_span_id` fields.
//! - **Export never blocks or slows delivery.** Finished spans go to the SDK's batch span
//!   processor (its own thread) through a gate that holds at most [`QUEUE_CAPACITY`] spans
//!   not yet taken into an export; more are dropped and counted ([`dropped`]). Batches of at
//!   most [`MAX_BATCH`] leave every
//!   [`defaults::OTLP_EXPORT_INTERVAL`](crate::config::defaults::OTLP_EXPORT_INTERVAL); a
//!   failed export is logged and the batch dropped (telemetry is not the ledger).
//! - Off by default: with no endpoint the layer's filter admits nothing, so it records
//!   nothing.
//! - gRPC export runs on the Tokio runtime that called [`start`] (tonic); it needs a
//!   multi-threaded runtime, as the binary's is.
//!
//! Why these crates: `tracing-opentelemetry` turns the `tracing` spans the code already
//! declares into OpenTelemetry spans, and `opentelemetry_sdk` + `opentelemetry-otlp` are the
//! OpenTelemetry project's own batch processor and OTLP exporter: the three OTLP encodings and
//! transports, retries of the wire format's evolution and resource semantics are theirs to
//! keep, not ours. Version 0.31 is the newest line whose exporter uses the reqwest 0.12 and
//! hyper 1 already in the tree (its gRPC transport is tonic 0.14 on the same hyper and tower).

pub mod logging;
pub mod metrics;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use rand::RngCore;
use tracing::Subscriber;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{defaults, OtlpProtocol};

/// Finished spans waiting for the exporter; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 8192;
/// Spans per export request.
pub const MAX_BATCH: usize = 512;
/// Timeout of one export request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an exporter runs (the layer's filter admits spans only then).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The running exporter's batch processor.
static PIPE: RwLock<Option<Arc<BatchSpanProcessor>>> = RwLock::new(None);
/// Spans dropped because the export queue was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Spans handed to the batch processor and not yet taken into an export.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// What can stop [`start`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint, no HTTP client).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
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

/// The process's tracer provider: every span goes through [`Gate`] to the running exporter.
fn provider() -> &'static SdkTracerProvider {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(Gate)
            .build()
    })
}

/// The layer to install in the subscriber (inactive until [`start`]). Its filter admits the
/// gateway's info spans while an exporter runs, and never an event.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let scope = InstrumentationScope::builder("gateway")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    tracing_opentelemetry::layer()
        .with_tracer(provider().tracer_with_scope(scope))
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            ACTIVE.load(Ordering::Acquire)
                && m.is_span()
                && *m.level() <= tracing::Level::INFO
                && (m.target() == "gateway" || m.target().starts_with("gateway::"))
        }))
}

/// Start exporting to `endpoint` (the collector's base URL) over `protocol`. Replaces an
/// earlier exporter, which flushes what it holds and stops.
pub fn start(endpoint: &str, instance: &str, protocol: OtlpProtocol) -> Result<(), TelemetryError> {
    let base = endpoint.trim_end_matches('/');
    let mut exporter = match protocol {
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(if protocol == OtlpProtocol::HttpJson {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                })
                // Set in code, the endpoint is used as given: the signal's path is ours to add.
                .with_endpoint(format!("{base}/v1/traces"))
                .with_timeout(EXPORT_TIMEOUT)
                .build()?
        }
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(base)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
    };
    exporter.set_resource(
        &Resource::builder()
            .with_service_name("gateway")
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", instance.to_string()),
            ])
            .build(),
    );
    let batch = BatchSpanProcessor::builder(Counted(exporter))
        .with_batch_config(
            BatchConfigBuilder::default()
                // The gate keeps the queue under QUEUE_CAPACITY, so the processor never drops
                // uncounted.
                .with_max_queue_size(QUEUE_CAPACITY + MAX_BATCH)
                .with_max_export_batch_size(MAX_BATCH)
                .with_scheduled_delay(defaults::OTLP_EXPORT_INTERVAL)
                .build(),
        )
        .build();
    let old = PIPE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(Arc::new(batch));
    ACTIVE.store(true, Ordering::Release);
    if let Some(old) = old {
        let _ = old.shutdown_with_timeout(EXPORT_TIMEOUT);
    }
    tracing::info!(endpoint, protocol = ?protocol, "exporting spans over OTLP");
    Ok(())
}

/// Send what waits now and wait until it was sent (at most the processor's export timeout,
/// which [`EXPORT_TIMEOUT`] bounds; `timeout` is kept for callers).
pub fn flush(_timeout: Duration) {
    let pipe = PIPE.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(p) = pipe {
        if let Err(e) = p.force_flush() {
            tracing::warn!(error = %e, "OTLP exporter: flush incomplete");
        }
    }
}

/// Stop exporting (after sending what waits, for at most `timeout`).
pub fn stop(timeout: Duration) {
    ACTIVE.store(false, Ordering::Release);
    let pipe = PIPE.write().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = pipe {
        if let Err(e) = p.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "OTLP exporter: shutdown incomplete");
        }
    }
}

/// The span processor installed in the provider: keeps our spans only, gives them the W3C
/// ids and gateway attribute names, and hands them to the running batch processor while the
/// export queue has room.
#[derive(Debug)]
struct Gate;

impl SpanProcessor for Gate {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let Some(span) = ours(span) else { return };
        let pipe = PIPE.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(pipe) = pipe else { return };
        if PENDING.fetch_add(1, Ordering::AcqRel) >= QUEUE_CAPACITY {
            PENDING.fetch_sub(1, Ordering::AcqRel);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pipe.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The batch processor is stopped by `stop` or replaced by `start`.
        Ok(())
    }
}

/// The OTLP exporter, counting the spans it takes off the queue and logging failed exports.
#[derive(Debug)]
struct Counted(opentelemetry_otlp::SpanExporter);

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let _ = PENDING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
            Some(p.saturating_sub(n))
        });
        let r = self.0.export(batch).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, spans = n, "OTLP export failed; spans dropped");
        }
        r
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource)
    }
}

/// Our span, as exported: `None` for a span without W3C ids of ours.
fn ours(mut s: SpanData) -> Option<SpanData> {
    let mut trace = None;
    let mut span = None;
    let mut parent = None;
    let mut attrs = Vec::with_capacity(s.attributes.len());
    for kv in std::mem::take(&mut s.attributes) {
        let name = kv.key.as_str();
        match name {
            "trace_id" => trace = Some(kv.value.as_str().into_owned()),
            "span_id" => span = Some(kv.value.as_str().into_owned()),
            "parent_span_id" => parent = Some(kv.value.as_str().into_owned()),
            _ => {
                let key = match name {
                    "key" => "gateway.dossier_code".to_string(),
                    "http_status" => "http.response.status_code".to_string(),
                    other => format!("gateway.{other}"),
                };
                attrs.retain(|a: &KeyValue| a.key.as_str() != key);
                attrs.push(KeyValue::new(key, kv.value));
            }
        }
    }
    let trace = trace.filter(|t| t.len() == 32)?;
    let span = span.filter(|t| t.len() == 16)?;
    let trace = TraceId::from_hex(&trace).ok()?;
    let span = SpanId::from_hex(&span).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let failed = attrs.iter().any(|a| {
        a.key.as_str() == "gateway.outcome"
            && matches!(&a.value, Value::String(v) if matches!(v.as_str(), "retry" | "refused" | "failed"))
    });
    s.span_context = SpanContext::new(
        trace,
        span,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    s.parent_span_id = parent
        .filter(|p| p.len() == 16)
        .and_then(|p| SpanId::from_hex(&p).ok())
        .unwrap_or(SpanId::INVALID);
    // `accept`'s parent is the sender's, `deliver`'s came through the broker.
    s.parent_span_is_remote = s.parent_span_id != SpanId::INVALID && s.name != "send";
    s.span_kind = kind(&s.name);
    s.status = if failed {
        Status::error("")
    } else {
        Status::Unset
    };
    s.attributes = attrs;
    s.dropped_attributes_count = 0;
    s.events = Default::default();
    s.links = Default::default();
    Some(s)
}

/// The kind of each of our spans.
fn kind(name: &str) -> SpanKind {
    match name {
        "accept" => SpanKind::Server,
        "send" => SpanKind::Client,
        "deliver" => SpanKind::Consumer,
        _ => SpanKind::Internal,
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
    }

    fn span(name: &'static str, attrs: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn our_spans_carry_the_w3c_ids_and_gateway_names() {
        let s = ours(span(
            "send",
            vec![
                KeyValue::new("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                KeyValue::new("span_id", "00f067aa0ba902b7"),
                KeyValue::new("parent_span_id", "b7ad6b7169203331"),
                KeyValue::new("key", "H22.99-1"),
                KeyValue::new("http_status", 500_i64),
                KeyValue::new("outcome", "retry"),
            ],
        ))
        .expect("ours");
        assert_eq!(
            s.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(s.span_context.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(s.parent_span_id.to_string(), "b7ad6b7169203331");
        assert!(!s.parent_span_is_remote, "send's parent is local");
        assert_eq!(s.span_kind, SpanKind::Client);
        assert!(matches!(s.status, Status::Error { .. }));
        let keys: Vec<&str> = s.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gateway.dossier_code",
                "http.response.status_code",
                "gateway.outcome"
            ]
        );
        // Not ours: no W3C ids.
        assert!(ours(span("other", vec![KeyValue::new("route", "r")])).is_none());
    }
}
