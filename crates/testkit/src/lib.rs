//! Test infrastructure of the gateway workspace: what the fault-injection and chaos suites use
//! besides the fake parties (those live in `gw-contract-tests`).
//!
//! - [`services`]: private RabbitMQ nodes and `initdb` PostgreSQL clusters, started in a
//!   temporary directory and removed on drop;
//! - [`proxy`]: a fault-injecting TCP proxy on loopback (cut, reset, down, stall, slow);
//! - [`checker`]: a ledger checker comparing what was acked with what the party applied.
//!
//! Invariant: this crate is dev-only. It is only ever a `[dev-dependencies]` entry, so no
//! build of the `gateway` binary (with or without the `lab` feature) links it; it may start
//! processes and open ports freely because only tests call it.

pub mod checker;
pub mod proxy;
pub mod services;

/// A suite's size multiplier from the environment variable `var` (whole number ≥ 1; default 1).
pub fn scale_from(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// A scenario that cannot run here: in CI (`CI=true`) it fails with the reason; elsewhere it is
/// skipped, saying why.
pub fn skip(test: &str, why: &str) {
    let msg = format!("{test}: {why}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
}
