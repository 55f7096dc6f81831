//! The service-quality index at scale: a synthetic history of `--dossiers` dossiers spread over
//! `--communes` units and `--procedures` procedures (the issue's province: 148 × 1,490), applied
//! event by event through the live path (journal + fold + state in one committed transaction
//! each, as the consumer does), then rebuilt from the journal, then reported.
//!
//! Prints (never asserts): events, live-path time and CPU per event, rebuild time and rate, peak
//! memory (VmHWM), and the time of a month's report per unit and per procedure.
//!
//! ```sh
//! cargo run --release --example indicators_bench -- --dossiers 20000
//! cargo run --release --example indicators_bench -- --dossiers 20000 --store postgres://postgres@127.0.0.1:5432/test?schema=ixbench
//! ```

use std::time::Instant;

use gateway::indicators::history;
use gateway::indicators::{Level, Rules};
use gateway::model::envelope::Envelope;
use gateway::model::{Channel, Dossier, DossierStatus, Fee, Owner, OwnerKind, Personal};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// (user + system CPU seconds, peak resident KiB) of this process, from /proc.
fn cpu_and_peak() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks of 1/100 s).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu, peak)
}

fn dossier(
    seq: usize,
    communes: usize,
    procedures: usize,
    status: DossierStatus,
    v: i64,
) -> Dossier {
    let day = 1 + seq % 28;
    let received = format!("2026-11-{day:02}T08:00:00+07:00");
    let due = format!("2026-11-{:02}T17:00:00+07:00", (day + 3).min(30));
    Dossier {
        code: format!("H22-{seq:08}"),
        version: v,
        procedure_code: format!("1.{:06}", seq % procedures),
        procedure_name: None,
        field_code: None,
        field_name: None,
        receipt_number: None,
        owner: Owner {
            name: Personal("Nguyễn Văn An".into()),
            kind: OwnerKind::Citizen,
            id_number: None,
            phone: None,
            email: None,
            address: None,
        },
        summary: "hồ sơ".into(),
        received_at: received,
        due_at: due,
        returned_at: None,
        finished_at: (status == DossierStatus::Processed)
            .then(|| format!("2026-11-{:02}T10:00:00+07:00", (day + 1 + seq % 5).min(30))),
        status,
        handling_unit: format!("UBND xã {:03}", seq % communes),
        note: None,
        fees: vec![Fee {
            code: "LP".into(),
            name: "Lệ phí".into(),
            amount_vnd: if seq.is_multiple_of(4) { 0 } else { 15_000 },
            category: None,
            paid: false,
        }],
        attachments: vec![],
        progress: vec![],
        channel: Some(if seq.is_multiple_of(3) {
            Channel::InPerson
        } else {
            Channel::Online
        }),
        results: vec![],
    }
}

/// A dossier's history: received, in processing (a step), processed, and for some a payment.
fn history_of(seq: usize, communes: usize, procedures: usize) -> Vec<Envelope> {
    let snap = |status, v| {
        let d = dossier(seq, communes, procedures, status, v);
        let mut e = Envelope::new(
            "dossier.upserted",
            d.code.clone(),
            "onestop",
            serde_json::to_value(&d).unwrap(),
        );
        e.version = Some(v);
        e
    };
    let code = format!("H22-{seq:08}");
    let mut out = vec![
        snap(DossierStatus::Received, 1),
        Envelope::new(
            "dossier.progress",
            code.clone(),
            "onestop",
            serde_json::json!({"code": code, "step": {"handler": "A", "department": "D",
                "content": "C", "at": "2026-11-02T09:00:00+07:00", "status": "in_processing"}}),
        ),
        snap(DossierStatus::Processed, 2),
    ];
    if seq % 3 == 1 {
        out.push(Envelope::new(
            "payment.settled",
            code,
            "payments",
            serde_json::json!({"status": "paid"}),
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dossiers: usize = arg("--dossiers", "20000").parse().expect("--dossiers N");
    let communes: usize = arg("--communes", "148").parse().expect("--communes N");
    let procedures: usize = arg("--procedures", "1490").parse().expect("--procedures N");
    let dir = tempfile::tempdir().unwrap();
    let url = arg(
        "--store",
        &format!("sqlite:{}", dir.path().join("store.db").display()),
    );
    let store = gw_store::indicators::open(&url)
        .await
        .expect("the store opens");
    println!("indicators bench: {dossiers} dossiers, {communes} communes, {procedures} procedures, store {}", url.split('?').next().unwrap_or(""));

    // The live path, one committed transaction per event (what the consumer does per delivery).
    let (cpu0, _) = cpu_and_peak();
    let started = Instant::now();
    let mut events = 0u64;
    for seq in 0..dossiers {
        for e in history_of(seq, communes, procedures) {
            history::apply_envelope(store.as_ref(), &e)
                .await
                .expect("applied");
            events += 1;
        }
    }
    let live = started.elapsed().as_secs_f64();
    let (cpu1, peak_live) = cpu_and_peak();
    println!(
        "  live path   {events} events in {live:.1} s: {:.0} events/s, {:.1} µs wall and {:.1} µs CPU per event (journal + fold + state + position, one commit each)",
        events as f64 / live,
        live * 1e6 / events as f64,
        (cpu1 - cpu0) * 1e6 / events as f64
    );

    // The rebuild from the journal.
    let started = Instant::now();
    let r = history::rebuild(store.as_ref(), |_, _| {})
        .await
        .expect("rebuilt");
    let rebuild = started.elapsed().as_secs_f64();
    let (cpu2, peak) = cpu_and_peak();
    println!(
        "  rebuild     {} entries, {} dossiers in {rebuild:.1} s ({:.0} entries/s, {:.1} s CPU); peak RSS {} MiB (after the live path {} MiB)",
        r.entries,
        r.dossiers,
        r.entries as f64 / rebuild,
        cpu2 - cpu1,
        peak / 1024,
        peak_live / 1024
    );
    if dossiers > 0 {
        let scale = 1_000_000.0 / dossiers as f64;
        println!(
            "  at 1,000,000 dossiers (linear): rebuild ≈ {:.0} s, live path ≈ {:.0} s of history",
            rebuild * scale,
            live * scale
        );
    }

    // A month's report per unit and per procedure.
    for level in [Level::Unit, Level::Procedure] {
        let started = Instant::now();
        let rep = history::report(
            store.as_ref(),
            &Rules::default(),
            "2026-11",
            level,
            i64::MAX,
            "dvcqg",
        )
        .await
        .expect("report");
        println!(
            "  report      2026-11 per {level:?}: {} rows in {:.2} s",
            rep.rows.len(),
            started.elapsed().as_secs_f64()
        );
    }
}
