//! The bench's last tables: the gateway's figures as ratios of the raw limits measured in the
//! same run, and the goals.
//!
//! # Invariants
//! - Goals are printed, never asserted: a figure on a shared machine is a measurement, not a
//!   test (`met`, `not met` or `n/a` when a figure is missing).
//! - Every ratio divides figures of this run only, so a slower machine moves both sides.

use std::collections::BTreeMap;

use super::args::*;
use super::measure::*;
use super::raw::*;
use super::sys::*;

/// What the phases measured.
pub(super) struct Figures {
    pub(super) raw: Option<RawBroker>,
    pub(super) raw_sign: BTreeMap<&'static str, f64>,
    pub(super) runs: Vec<E2e>,
    pub(super) backlogs: Vec<Backlog>,
}

/// Prints the ratios and the goals.
pub(super) fn report(args: &BenchArgs, backends: &[Backend], sigs: &[Sig], f: &Figures) {
    let (raw, raw_sign, runs, backlogs) = (&f.raw, &f.raw_sign, &f.runs, &f.backlogs);
    let find = |b: Backend, s: Sig| runs.iter().find(|r| r.backend == b && r.sig == s);
    let main_backend = if backends.contains(&Backend::RabbitPg) {
        Backend::RabbitPg
    } else {
        Backend::Embedded
    };
    println!();
    println!("== ratios ==");
    let mut ecdsa_ratio = None;
    for &b in backends {
        for &sig in sigs {
            if let (Some(r), Some(raw)) = (find(b, sig), raw.as_ref()) {
                let x = r.rate / raw.ack_each;
                println!(
                    "  gateway {} {} ÷ raw per-message-ack consume: {x:.2}  (÷ batched-ack consume: {:.2})",
                    b.label(),
                    sig.label(),
                    r.rate / raw.ack_batched
                );
                if b == Backend::RabbitPg && sig == Sig::Ecdsa {
                    ecdsa_ratio = Some(x);
                }
            }
        }
    }
    if raw.is_none() {
        println!("  gateway ÷ raw broker: n/a (no raw broker figures)");
    }
    let mut rsa_ratio = None;
    for &b in backends {
        if let (Some(r), Some(raw)) = (find(b, Sig::Rsa), raw_sign.get("sign-rsa")) {
            let x = r.rate / raw;
            println!(
                "  gateway {} RSA ÷ raw one-core RSA sign: {x:.2}",
                b.label()
            );
            if b == main_backend {
                rsa_ratio = Some(x);
            }
        }
    }
    let p99 = find(main_backend, Sig::Ecdsa)
        .or_else(|| runs.first())
        .and_then(|r| r.lat.as_ref())
        .map(|l| l.p99);
    let rss = backlogs.iter().map(|b| b.hwm_kib).max();
    println!();
    println!("== goals (printed, not asserted) ==");
    println!(
        "  ECDSA end to end ≥ 0.8 × raw per-message-ack consume ({}):  {}",
        ecdsa_ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
        goal(ecdsa_ratio.map(|x| x >= 0.8))
    );
    println!(
        "  RSA-2048 end to end ≥ 0.7 × raw one-core sign ({}, {}):  {}",
        rsa_ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
        main_backend.label(),
        goal(rsa_ratio.map(|x| x >= 0.7))
    );
    println!(
        "  p99 added latency < 2 ms at half the peak ({}, {}):  {}",
        p99.map_or("n/a".into(), |x| format!("{x:.2} ms")),
        main_backend.label(),
        goal(p99.map(|x| x < 2.0))
    );
    println!(
        "  peak RSS < 64 MiB with a backlog of {} waiting ({}):  {}",
        args.backlog,
        rss.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        goal(rss.map(|k| k < 64 * 1024))
    );
}
