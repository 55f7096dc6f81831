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
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::TsaSection;
use crate::config::Loaded;
use crate::envelope::now_ms;

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
pub fn trust(t: &TsaSection, base: &std::path::Path) -> Result<TrustStore, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(base.join(p)).map_err(|e| format!("evidence.tsa: {}: {e}", p.display()))
    };
    let mut trust = TrustStore::from_pem(&read(&t.ca_file)?)
        .map_err(|e| format!("evidence.tsa.ca_file: {e}"))?;
    if let Some(i) = &t.intermediates_file {
        trust
            .add_intermediates_pem(&read(i)?)
            .map_err(|e| format!("evidence.tsa.intermediates_file: {e}"))?;
    }
    Ok(trust)
}

/// Time-stamps one chain's head.
pub struct Stamper {
    store: Arc<dyn Store>,
    chain: String,
    section: TsaSection,
    trust: TrustStore,
    client: reqwest::Client,
    /// (seq, when) of the last time-stamp stored.
    last: Option<(i64, Instant)>,
}

impl Stamper {
    pub fn new(
        store: Arc<dyn Store>,
        chain: &str,
        section: &TsaSection,
        trust: TrustStore,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(section.timeout.0)
            .build()
            .map_err(|e| format!("evidence.tsa: {e}"))?;
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
    async fn request(&self, hash: &str) -> Result<Vec<u8>, String> {
        let digest = hex::decode(hash).map_err(|e| format!("head hash: {e}"))?;
        let req = tsp::request(&digest).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .post(&self.section.url)
            .header("content-type", "application/timestamp-query")
            .body(req.der.clone())
            .send()
            .await
            .map_err(|e| format!("the authority did not answer: {e}"))?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(format!("the authority answered HTTP {status}"));
        }
        if !ctype.starts_with("application/timestamp-reply") {
            return Err(format!(
                "the authority answered {ctype:?}, not a timestamp-reply"
            ));
        }
        let ts = tsp::verify_response(&body, &req, &self.trust).map_err(|e| e.to_string())?;
        Ok(ts.token_der)
    }

    /// One poll: time-stamp the head if it is due. Ok(true) when a token was stored.
    pub async fn poll(&mut self) -> Result<bool, String> {
        if self.last.is_none() {
            let stamped = self
                .store
                .timestamps(&self.chain)
                .await
                .map_err(|e| e.to_string())?;
            self.last = Some((stamped.last().map_or(0, |t| t.seq), Instant::now()));
        }
        let (last_seq, last_at) = self.last.expect("set above");
        let heads = self
            .store
            .evidence_heads()
            .await
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| e.to_string())?;
        self.last = Some((head.seq, Instant::now()));
        Ok(true)
    }

    /// Poll until cancelled, keeping the shared state (metrics, fail-closed gate) current.
    /// Only the instance leading the chain's time-stamping polls ([`crate::jobs`]).
    pub async fn run(mut self, lead: crate::jobs::Singleton, cancel: CancellationToken) {
        let tick = self.section.interval.0.min(Duration::from_secs(1));
        let mut streak = 0u64;
        loop {
            let Some(polled) = lead.tick(|| self.poll()).await else {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                continue;
            };
            match polled {
                Ok(stamped) => {
                    if stamped {
                        STATE.stamped.fetch_add(1, Ordering::Relaxed);
                    }
                    if streak > 0 {
                        info!(failures = streak, "time-stamping recovered");
                    }
                    streak = 0;
                    STATE.failing_since_ms.store(0, Ordering::Relaxed);
                    STATE.closed.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    streak += 1;
                    STATE.failures.fetch_add(1, Ordering::Relaxed);
                    let now = now_ms();
                    let _ = STATE.failing_since_ms.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if streak == 1 || streak.is_multiple_of(10) {
                        warn!(error = %e, failures = streak, "time-stamping the evidence chain failed");
                    }
                    let since = STATE.failing_since_ms.load(Ordering::Relaxed);
                    let over = now - since > self.section.grace.0.as_millis() as i64;
                    if self.section.fail_closed && over && !closed() {
                        error!("time-stamping failed for longer than the grace period: refusing new messages until it recovers");
                        STATE.closed.store(true, Ordering::Relaxed);
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}

/// Start the time-stamping task when `[evidence.tsa]` is configured.
pub fn spawn(
    loaded: &Loaded,
    engine: &crate::pipeline::Engine,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    let c = &loaded.config;
    let Some(t) = &c.evidence.tsa else {
        return Ok(());
    };
    let chain = c
        .evidence
        .chain
        .clone()
        .unwrap_or_else(|| c.gateway.instance.clone());
    let stamper = Stamper::new(engine.store.clone(), &chain, t, trust(t, &loaded.base)?)?;
    // One stamper per chain across instances (a chain shared by several instances is
    // stamped by its leader only).
    let lead = crate::jobs::Singleton::for_engine(
        crate::jobs::EVIDENCE_TIMESTAMP,
        engine,
        &c.gateway.instance,
    )
    .with_key(format!("{}/{chain}", crate::jobs::EVIDENCE_TIMESTAMP));
    tasks.spawn(stamper.run(lead, cancel.clone()));
    Ok(())
}
