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
    /// The evidence log's cost in metadata mode, percent, per backend.
    pub(super) evidence_costs: Vec<(Backend, f64)>,
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
    // A run at a fixed `--latency-rate` is not the goals' "half the peak".
    let p99 = find(main_backend, Sig::Ecdsa)
        .or_else(|| runs.first())
        .and_then(|r| r.lat.as_ref())
        .map(|l| l.p99)
        .filter(|_| args.latency_rate.is_none());
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
    issue_20_goals(args, f);
}

/// A row of issue 20's table: what, this run's figure, the floor, the goal; `lower` when a
/// smaller figure is better.
struct GoalRow {
    what: String,
    figure: Option<f64>,
    unit: &'static str,
    floor: f64,
    goal: f64,
    lower: bool,
}

/// Issue 20's table (catch up fast), a line per row: figure, floor, goal, whether each is met.
fn issue_20_goals(args: &BenchArgs, f: &Figures) {
    let find = |b: Backend| {
        f.runs
            .iter()
            .find(|r| r.backend == b && r.sig == Sig::Ecdsa)
    };
    let rabbit = find(Backend::RabbitPg);
    let embedded = find(Backend::Embedded);
    let ack_each = f.raw.as_ref().map(|r| r.ack_each);
    let ratio = |r: Option<&E2e>| r.zip(ack_each).map(|(r, raw)| r.rate / raw);
    let p99 = rabbit
        .or(embedded)
        .and_then(|r| r.lat.as_ref())
        .map(|l| l.p99)
        .filter(|_| args.latency_rate.is_none());
    let cost = |b: Backend| {
        f.evidence_costs
            .iter()
            .find(|(eb, _)| *eb == b)
            .map(|(_, c)| *c)
    };
    let rss = f
        .backlogs
        .iter()
        .map(|b| b.hwm_kib)
        .max()
        .map(|k| k as f64 / 1024.0);
    let rows = [
        GoalRow {
            what: "gateway CPU s per 1k events (RabbitMQ + PostgreSQL, ES256)".into(),
            figure: rabbit.map(|r| r.cpu_per_1k),
            unit: " s",
            floor: 0.060,
            goal: 0.030,
            lower: true,
        },
        GoalRow {
            what: "PostgreSQL CPU s per 1k events".into(),
            figure: rabbit.map(|r| r.pg_cpu_per_1k),
            unit: " s",
            floor: 0.040,
            goal: 0.020,
            lower: true,
        },
        GoalRow {
            what: "end to end ÷ raw ack-each consume, RabbitMQ + PostgreSQL".into(),
            figure: ratio(rabbit),
            unit: "",
            floor: 0.5,
            goal: 0.8,
            lower: false,
        },
        GoalRow {
            what: "embedded ÷ raw ack-each consume".into(),
            figure: ratio(embedded),
            unit: "",
            floor: 0.8,
            goal: 1.2,
            lower: false,
        },
        GoalRow {
            what: "p99 publish → outcome at half the peak, ms".into(),
            figure: p99,
            unit: " ms",
            floor: 10.0,
            goal: 2.0,
            lower: true,
        },
        GoalRow {
            what: "evidence cost (metadata), RabbitMQ + PostgreSQL, %".into(),
            figure: cost(Backend::RabbitPg),
            unit: " %",
            floor: 10.0,
            goal: 5.0,
            lower: true,
        },
        GoalRow {
            what: "evidence cost (metadata), embedded, %".into(),
            figure: cost(Backend::Embedded),
            unit: " %",
            floor: 10.0,
            goal: 5.0,
            lower: true,
        },
        GoalRow {
            what: format!(
                "peak RSS with {} waiting, MiB (the issue names 1,000,000: --backlog 1000000)",
                args.backlog
            ),
            figure: rss,
            unit: " MiB",
            floor: 64.0,
            goal: 32.0,
            lower: true,
        },
    ];
    println!();
    println!("== goals of issue 20, catch up fast (printed, not asserted) ==");
    println!(
        "  {:<72} {:>10} {:>9} {:>9} {:>8} {:>8}",
        "figure", "this run", "floor", "goal", "floor?", "goal?"
    );
    for r in rows {
        let met = |bound: f64| {
            r.figure
                .map(|x| if r.lower { x <= bound } else { x >= bound })
        };
        let cmp = if r.lower { "≤" } else { "≥" };
        println!(
            "  {:<72} {:>10} {:>9} {:>9} {:>8} {:>8}",
            r.what,
            r.figure
                .map_or("n/a".into(), |x| format!("{x:.3}{}", r.unit)),
            format!("{cmp} {}", r.floor),
            format!("{cmp} {}", r.goal),
            goal(met(r.floor)),
            goal(met(r.goal))
        );
    }
}
