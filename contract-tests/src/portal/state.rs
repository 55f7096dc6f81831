//! The sandbox's mutable state behind one mutex ([`Inner`]), with the fault and
//! rate-limit decisions taken on it.
//!
//! # Invariants
//!
//! - One lock per request: a call's checks, its records and its effects happen under the same
//!   lock, so records never show half a batch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use rand::Rng;
use serde_json::Value;

use super::catalogue::Catalogue;
use super::config::PortalConfig;
use super::faults::{FaultKind, Faults, Scripted};
use super::records::Records;

pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

pub(super) struct Inner {
    pub(super) records: Records,
    pub(super) faults: Faults,
    pub(super) script: VecDeque<Scripted>,
    pub(super) bucket: Option<Bucket>,
    pub(super) sessions: HashMap<String, Instant>,
    /// LGSP mode: bearer tokens and their expiry.
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) catalogue: Catalogue,
    /// Online dossiers served by `LayDanhSachHoSoTrucTuyen` ([open], see `online.rs`).
    pub(super) online: Vec<Value>,
}

pub(super) struct Shared {
    pub(super) cfg: PortalConfig,
    pub(super) inner: Mutex<Inner>,
}

impl Inner {
    pub(super) fn set_faults(&mut self, f: Faults) {
        self.script = f.script.iter().copied().collect();
        self.bucket = f.rate_limit.map(|r| Bucket {
            tokens: f64::from(r.burst.max(1)),
            last: Instant::now(),
        });
        self.faults = f;
    }
}

pub(super) type St = State<Arc<Shared>>;

/// Which fault, if any, this call gets.
pub(super) fn pick_fault(g: &mut Inner) -> Option<FaultKind> {
    if let Some(front) = g.script.front_mut() {
        let kind = front.kind;
        front.count = front.count.saturating_sub(1);
        if front.count == 0 {
            g.script.pop_front();
        }
        // The visible script shows what is left.
        g.faults.script = g.script.iter().copied().collect();
        return Some(kind);
    }
    let f = &g.faults;
    let roll: f64 = rand::rng().random();
    let mut acc = 0.0;
    for (rate, kind) in [
        (f.reset_rate, FaultKind::Reset),
        (f.timeout_rate, FaultKind::Timeout),
        (f.server_error_rate, FaultKind::ServerError),
        (f.too_many_rate, FaultKind::TooManyRequests),
        (f.error_code_rate, FaultKind::ErrorCode),
    ] {
        acc += rate;
        if rate > 0.0 && roll < acc {
            return Some(kind);
        }
    }
    None
}

pub(super) fn fault_name(k: FaultKind) -> &'static str {
    match k {
        FaultKind::ServerError => "server_error",
        FaultKind::ErrorCode => "error_code",
        FaultKind::TooManyRequests => "too_many_requests",
        FaultKind::Timeout => "timeout",
        FaultKind::Reset => "reset",
        FaultKind::SessionExpired => "session_expired",
        FaultKind::Down => "down",
    }
}

/// Take a token; `Err(retry_after_secs)` when the bucket is empty.
pub(super) fn take_token(g: &mut Inner) -> Result<(), u64> {
    let Some(rl) = g.faults.rate_limit else {
        return Ok(());
    };
    let now = Instant::now();
    let b = g.bucket.get_or_insert(Bucket {
        tokens: f64::from(rl.burst.max(1)),
        last: now,
    });
    let rate = rl.per_sec.max(1e-9);
    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate)
        .min(f64::from(rl.burst.max(1)));
    b.last = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err((((1.0 - b.tokens) / rate).ceil() as u64).max(1))
    }
}
