//! Faults a signing sandbox injects, switched on by tests (`set_faults`) or over HTTP
//! (`POST /_sandbox/faults`).
//!
//! # Invariants
//!
//! - Faults apply to the service's endpoints, never to `/_sandbox/*`.
//! - `fail_before` answers before anything happens (nothing reaches the phone); `fail_after`
//!   and `stall` answer after the effect (the phone has the request, the client does not know):
//!   the two halves of "did my request arrive?".

use serde::{Deserialize, Serialize};

/// The switchable faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignFaults {
    /// The next N calls answer HTTP 503 before any effect.
    pub fail_before: u32,
    /// The next N calls take effect, then answer HTTP 500 (the answer is lost).
    pub fail_after: u32,
    /// The next N calls take effect, then hold the answer `stall_ms` (a client times out).
    pub stall: u32,
    pub stall_ms: u64,
    /// Share of calls (0.0..=1.0) answered HTTP 503 before any effect (seeded).
    pub server_error_rate: f64,
    /// Signatures are damaged (bits flipped).
    pub wrong_signature: bool,
    /// The official signs another digest than the one sent.
    pub other_digest: bool,
    /// The certificate calls answer an expired certificate (`official-expired`).
    pub expired_certificate: bool,
    /// The certificate calls answer someone else's certificate (`official-other`).
    pub other_certificate: bool,
}

/// What a call does about the faults, decided once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStep {
    /// Proceed normally.
    None,
    /// Answer 503 now, no effect.
    FailBefore,
    /// Take effect, answer 500.
    FailAfter,
    /// Take effect, hold the answer this long.
    Stall(u64),
}

impl SignFaults {
    /// Consume this call's fault (scripted first, then the random 5xx `rolled`).
    pub fn take(&mut self, rolled: bool) -> FaultStep {
        if self.fail_before > 0 {
            self.fail_before -= 1;
            return FaultStep::FailBefore;
        }
        if self.fail_after > 0 {
            self.fail_after -= 1;
            return FaultStep::FailAfter;
        }
        if self.stall > 0 {
            self.stall -= 1;
            return FaultStep::Stall(self.stall_ms);
        }
        if rolled {
            return FaultStep::FailBefore;
        }
        FaultStep::None
    }
}
