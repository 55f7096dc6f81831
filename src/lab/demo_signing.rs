//! The demo's signing step: once the dossiers are synced, the result documents of the first
//! finished dossiers are signed by an official of the SmartCA sandbox from a (simulated)
//! phone, and each signed result's `signature.completed` is routed back to the one-stop
//! system (a recording sink). With `--faults` every fourth request goes to the official who
//! never answers: those requests expire at the service and come back as `signature.failed`
//! with reason `expired`: counted and reported, expected, not an error.
//!
//! # Invariants
//! - The step passes when every request was accepted at the edge and every one ended: signed,
//!   verified and assembled (`completed`), or expired where the plan said so; and each reached
//!   the phone once (the sandbox's pushes).
//! - Waiting is bounded (`timeout`); nothing here retries a request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gw_contract_tests::sink::{Faults as SinkFaults, Sink};
use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};
use serde_json::json;

/// The variable the SmartCA sandbox's password passes through (by reference, like any secret).
const SP_PASSWORD_VAR: &str = "GATEWAY_DEMO_SMARTCA_SP_PASSWORD";

/// Result documents signed per demo run (at most).
pub const SIGNED_RESULTS: usize = 12;

/// The SmartCA sandbox and the one-stop system's return endpoint.
pub struct SigningDemo {
    smartca: SmartCa,
    back: Sink,
}

/// What the signing step did.
#[derive(Debug, Default)]
pub struct SigningSummary {
    pub requested: usize,
    pub accepted: usize,
    pub completed: usize,
    pub expired: usize,
    pub expected_expired: usize,
    pub failed: usize,
    pub pushes: usize,
    pub elapsed: Duration,
}

impl SigningSummary {
    pub fn ok(&self) -> bool {
        self.accepted == self.requested
            && self.completed + self.expired == self.requested
            && self.expired == self.expected_expired
            && self.failed == 0
            && self.pushes == self.requested
    }

    pub fn print(&self) {
        println!(
            "  signed results         {} requested, {} completed, {} expired (officials who never answered: {}), {} failed, {} pushes to phones ({:.1}s)",
            self.requested,
            self.completed,
            self.expired,
            self.expected_expired,
            self.failed,
            self.pushes,
            self.elapsed.as_secs_f64()
        );
        println!(
            "  signing                {}",
            if self.ok() {
                "OK: every result signed by its official and routed back (expiries as planned)"
            } else {
                "FAILED"
            }
        );
    }
}

impl SigningDemo {
    pub async fn start() -> Result<SigningDemo, String> {
        let smartca = SmartCa::start(
            0,
            SmartCaConfig {
                confirm_after: Duration::from_millis(300),
                lifetime: Duration::from_secs(3),
                ..SmartCaConfig::default()
            },
        )
        .await
        .map_err(|e| format!("SmartCA sandbox: {e}"))?;
        std::env::set_var(SP_PASSWORD_VAR, "sandbox-sp-password");
        let back = Sink::start(0, SinkFaults::default())
            .await
            .map_err(|e| format!("return sink: {e}"))?;
        back.set_capture(true);
        Ok(SigningDemo { smartca, back })
    }

    /// The configuration this step adds: the signer, the return adapter and its route.
    pub fn config(&self) -> String {
        let anchors = gw_contract_tests::officials::certs_example().join("chain.pem");
        format!(
            r#"
[adapters.onestop-back]
connector = "http"
url = "{back}"
timeout = "5s"

[[routes]]
name = "signed-results"
from = "signatures"
kinds = ["signature.*"]
to = "onestop-back"

[signers.smartca]
service = "smartca"
url = "{smartca}"
trust_anchors = "{anchors}"
sp_id = "sandbox-sp"
sp_password = {{ env = "{SP_PASSWORD_VAR}" }}
poll_interval = "200ms"
poll_max_interval = "1s"
request_lifetime = "30s"

[[signers.smartca.officials]]
user_id = "official-rsa"
serial = "5000"

[[signers.smartca.officials]]
user_id = "official-away"
serial = "5001"
"#,
            back = self.back.url(),
            smartca = self.smartca.base_url(),
            anchors = anchors.display(),
        )
    }

    /// Sign the results of `codes` (the first [`SIGNED_RESULTS`]); with `faults`, every
    /// fourth goes to the official who never answers. Waits at most `timeout` for the outcomes.
    pub async fn run(
        &self,
        inbound: SocketAddr,
        codes: &[String],
        faults: bool,
        timeout: Duration,
    ) -> SigningSummary {
        let started = Instant::now();
        let client = reqwest::Client::new();
        let mut s = SigningSummary::default();
        for (i, code) in codes.iter().take(SIGNED_RESULTS).enumerate() {
            let away = faults && i % 4 == 3;
            let official = if away {
                "official-away"
            } else {
                "official-rsa"
            };
            let result =
                crate::signing::assemble::sample_pdf(&format!("KET QUA GIAI QUYET HO SO {code}"));
            let body = json!({
                "kind": "signature.requested",
                "key": format!("{code}/ket-qua"),
                "payload": {
                    "signer": "smartca",
                    "official": official,
                    "format": "pdf",
                    "document": base64::engine::general_purpose::STANDARD.encode(&result),
                    "reason": "Ký kết quả giải quyết hồ sơ",
                    "dossier_code": code,
                }
            });
            s.requested += 1;
            s.expected_expired += usize::from(away);
            match client
                .post(format!("http://{inbound}/in/onestop"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 202 => s.accepted += 1,
                Ok(r) => eprintln!(
                    "signature.requested for {code} refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) => eprintln!("signature.requested for {code} not sent: {e}"),
            }
        }
        while started.elapsed() < timeout {
            let records = self.back.records();
            let completed = records
                .iter()
                .filter(|r| r.kind == "signature.completed")
                .count();
            let failed = records
                .iter()
                .filter(|r| r.kind == "signature.failed")
                .count();
            if completed + failed >= s.accepted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Failed outcomes by reason: expiries are planned, anything else is a failure.
        for c in self.back.captured() {
            let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_default();
            let text = body.to_string();
            match c.header("x-gateway-kind") {
                Some("signature.completed") => s.completed += 1,
                Some("signature.failed") if text.contains("\"reason_kind\":\"expired\"") => {
                    s.expired += 1
                }
                Some("signature.failed") => s.failed += 1,
                _ => {}
            }
        }
        s.pushes = self.smartca.records().pushes.len();
        s.elapsed = started.elapsed();
        s
    }
}
