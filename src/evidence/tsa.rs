//! Time-stamping the chain head through an RFC 3161 authority, in batches: when the head moved
//! and either `interval` passed or `max_records` were appended since the last time-stamp.
//!
//! - The answer is verified before it is stored (granted, our nonce, our digest, a TSA
//!   certificate chaining to `ca_file` with the timeStamping usage); a refused, forged or
//!   unreachable answer is a failure.
//! - From the first failure: `gateway_evidence_timestamp_failures_total` counts it,
//!   `gateway_evidence_timestamp_failing` is 1 and a warning is logged (once per failure streak,
//!   then every 10th). With `fail_closed`, after `grace` of continuous failure the inbound
//!   listener refuses new messages with 503 ([`closed`]); the next success reopens it and logs
//!   the recovery. The gateway keeps trying every poll, so it recovers by itself.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_crypto::keys::TrustStore;
use gw_crypto::tsp;
use gw_store::{Store, TimeStampRow};
use tracing::{error, info, warn};

use super::TsaSection;
use crate::model::time::now_ms;
use crate::transport::stack::{BuildError, Options, Outbound, TransportError};

/// Why time-stamping (or setting it up) failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error("evidence.tsa: {path}: {detail}")]
    ReadTrust { path: String, detail: String },
    /// `ca_file` or `intermediates_file` holds no usable certificate.
    #[error("evidence.tsa.{what}: {detail}")]
    Trust { what: &'static str, detail: String },
    #[error("evidence.tsa: {0}")]
    Client(#[from] BuildError),
    #[error("head hash: {0}")]
    HeadHash(String),
    #[error("{0}")]
    BuildRequest(String),
    /// Connect, timeout or a broken exchange.
    #[error("the authority did not answer: {0}")]
    NoAnswer(TransportError),
    #[error("reading the answer: {0}")]
    ReadAnswer(TransportError),
    #[error("the authority answered HTTP {0}")]
    Status(String),
    #[error("the authority answered {0:?}, not a timestamp-reply")]
    ContentType(String),
    /// The answer does not verify (refused, forged, another nonce or digest, untrusted).
    #[error("{0}")]
    Verify(String),
    #[error("{0}")]
    Store(String),
}

/// Process-wide time-stamping state (for `/metrics` and the inbound gate).
pub struct State {
    failures: AtomicU64,
    stamped: AtomicU64,
    /// Unix ms of the first failure of the current streak; 0 when healthy.
    failing_since_ms: AtomicI64,
    closed: AtomicBool,
}

static STATE: State = State {
    failures: AtomicU64::new(0),
    stamped: AtomicU64::new(0),
    failing_since_ms: AtomicI64::new(0),
    closed: AtomicBool::new(false),
};

/// Whether new inbound messages must be refused (fail-closed after the grace period).
pub fn closed() -> bool {
    STATE.closed.load(Ordering::Relaxed)
}

/// The families of the evidence log's time-stamping, encoded at each scrape; registered into
/// the engine's metrics where the engine is built.
#[derive(Debug)]
pub struct Collector;

impl prometheus_client::collector::Collector for Collector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        // Counters are named without `_total`: the samples carry it.
        for (name, help, v) in [
            (
                "gateway_evidence_timestamps",
                "Chain heads time-stamped.",
                STATE.stamped.load(Ordering::Relaxed),
            ),
            (
                "gateway_evidence_timestamp_failures",
                "Failed time-stamp requests (unreachable, refused or invalid answers).",
                STATE.failures.load(Ordering::Relaxed),
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, v) in [
            (
                "gateway_evidence_timestamp_failing",
                "1 while time-stamping is failing.",
                i64::from(STATE.failing_since_ms.load(Ordering::Relaxed) != 0),
            ),
            (
                "gateway_evidence_closed",
                "1 while new messages are refused (fail-closed).",
                i64::from(closed()),
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// The evidence log's families alone, as OpenMetrics text (without `# EOF`).
pub fn render_metrics() -> String {
    let mut r = prometheus_client::registry::Registry::default();
    r.register_collector(Box::new(Collector));
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &r);
    out
}

/// Load the authority's trust anchors (and intermediates) of `[evidence.tsa]`.
pub fn trust(t: &TsaSection, base: &std::path::Path) -> Result<TrustStore, TsaError> {
    let read = |p: &std::path::Path| {
        std::fs::read(base.join(p)).map_err(|e| TsaError::ReadTrust {
            path: p.display().to_string(),
            detail: e.to_string(),
        })
    };
    let mut trust = TrustStore::from_pem(&read(&t.ca_file)?).map_err(|e| TsaError::Trust {
        what: "ca_file",
        detail: e.to_string(),
    })?;
    if let Some(i) = &t.intermediates_file {
        trust
            .add_intermediates_pem(&read(i)?)
            .map_err(|e| TsaError::Trust {
                what: "intermediates_file",
                detail: e.to_string(),
            })?;
    }
    Ok(trust)
}

/// Time-stamps one chain's head.
pub struct Stamper {
    store: Arc<dyn Store>,
    chain: String,
    section: TsaSection,
    trust: TrustStore,
    client: Outbound,
    /// (seq, when) of the last time-stamp stored.
    last: Option<(i64, Instant)>,
}

impl Stamper {
    pub fn new(
        store: Arc<dyn Store>,
        chain: &str,
        section: &TsaSection,
        trust: TrustStore,
    ) -> Result<Self, TsaError> {
        let client = Outbound::build(&Options::plain("evidence.tsa", section.timeout.0))?;
        Ok(Stamper {
            store,
            chain: chain.to_string(),
            section: section.clone(),
            trust,
            client,
            last: None,
        })
    }

    /// Ask for a time-stamp of `hash` (hex) and verify the answer.
    async fn request(&self, hash: &str) -> Result<Vec<u8>, TsaError> {
        let digest = hex::decode(hash).map_err(|e| TsaError::HeadHash(e.to_string()))?;
        let req = tsp::request(&digest).map_err(|e| TsaError::BuildRequest(e.to_string()))?;
        let reply = self
            .client
            .post_bytes(
                &self.section.url,
                "application/timestamp-query",
                req.der.clone(),
            )
            .send()
            .await
            .map_err(|e| match e {
                TransportError::BodyRead { .. } => TsaError::ReadAnswer(e),
                e => TsaError::NoAnswer(e),
            })?;
        if !(200..300).contains(&reply.status) {
            let status = reqwest::StatusCode::from_u16(reply.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| reply.status.to_string());
            return Err(TsaError::Status(status));
        }
        let ctype = reply.content_type.clone().unwrap_or_default();
        if !ctype.starts_with("application/timestamp-reply") {
            return Err(TsaError::ContentType(ctype));
        }
        let ts = tsp::verify_response(&reply.body, &req, &self.trust)
            .map_err(|e| TsaError::Verify(e.to_string()))?;
        Ok(ts.token_der)
    }

    /// One poll: time-stamp the head if it is due. Ok(true) when a token was stored.
    pub async fn poll(&mut self) -> Result<bool, TsaError> {
        if self.last.is_none() {
            let stamped = self
                .store
                .timestamps(&self.chain)
                .await
                .map_err(|e| TsaError::Store(e.to_string()))?;
            self.last = Some((stamped.last().map_or(0, |t| t.seq), Instant::now()));
        }
        let (last_seq, last_at) = self.last.expect("set above");
        let heads = self
            .store
            .evidence_heads()
            .await
            .map_err(|e| TsaError::Store(e.to_string()))?;
        let Some(head) = heads.into_iter().find(|h| h.chain == self.chain) else {
            return Ok(false);
        };
        let pending = head.seq - last_seq;
        let due = pending > 0
            && (pending as u64 >= self.section.max_records
                || last_at.elapsed() >= self.section.interval.0);
        if !due {
            return Ok(false);
        }
        let token = self.request(&head.hash).await?;
        self.store
            .add_timestamp(TimeStampRow {
                chain: self.chain.clone(),
                seq: head.seq,
                hash: head.hash.clone(),
                token,
                at_ms: now_ms(),
            })
            .await
            .map_err(|e| TsaError::Store(e.to_string()))?;
        self.last = Some((head.seq, Instant::now()));
        Ok(true)
    }

    /// How often the time-stamping job ticks (at most once a second, sooner when the
    /// configured interval is shorter).
    pub fn tick(&self) -> Duration {
        self.section.interval.0.min(Duration::from_secs(1))
    }

    /// Keep the shared state (metrics, the fail-closed gate) current with one poll's result;
    /// `streak` counts the failures in a row.
    pub fn observe<E: std::fmt::Display>(&self, polled: &Result<bool, E>, streak: &mut u64) {
        match polled {
            Ok(stamped) => {
                if *stamped {
                    STATE.stamped.fetch_add(1, Ordering::Relaxed);
                }
                if *streak > 0 {
                    info!(failures = *streak, "time-stamping recovered");
                }
                *streak = 0;
                STATE.failing_since_ms.store(0, Ordering::Relaxed);
                STATE.closed.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                *streak += 1;
                STATE.failures.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                let _ = STATE.failing_since_ms.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if *streak == 1 || streak.is_multiple_of(10) {
                    warn!(error = %e, failures = *streak, "time-stamping the evidence chain failed");
                }
                let since = STATE.failing_since_ms.load(Ordering::Relaxed);
                let over = now - since > self.section.grace.0.as_millis() as i64;
                if self.section.fail_closed && over && !closed() {
                    error!("time-stamping failed for longer than the grace period: refusing new messages until it recovers");
                    STATE.closed.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}
