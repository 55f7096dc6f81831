//! The service-quality index at scale: a synthetic history of `--dossiers` dossiers spread over
//! `--communes` units and `--procedures` procedures (the issue's province: 148 × 1,490) loaded
//! into the index's store, then the live path measured on top of that history at each batch
//! size of `--batches`, then the history rebuilt from the journal, then reported.
//!
//! - **History**: every dossier's events applied through the live path's group commit
//!   (`history::apply_envelopes`, `--load-batch` events per transaction), without a broker.
//! - **Live path**, per batch size: `--live` events of new dossiers published by the engine
//!   (`Engine::with_indicators`, no routes: only the index's confirmed fact message, the one publish
//!   the index adds to each event), then consumed by the gateway's consumer
//!   (`jobs::indicators::consume_batched`, prefetch = batch size, 5 ms wait) until all are
//!   applied and acked. CPU is this process's (user + system, from `/proc/self/stat`); the
//!   PostgreSQL and RabbitMQ servers' CPU (their local processes; other load on them counts
//!   too) is printed beside it.
//! - **Rebuild** from the journal: time, rate, peak RSS (VmHWM).
//! - `--gateway-cpu-us X` (the gateway's own CPU per event, e.g. `gw CPU` of `gateway bench`
//!   ÷ 1,000 … the same machine, the same run if possible): the index's added CPU per event as
//!   a share of it, against the issue's goal of 5 %.
//!
//! Prints (never asserts).
//!
//! ```sh
//! cargo run --release --example indicators_bench -- --dossiers 20000
//! cargo run --release --example indicators_bench -- --dossiers 1000000 --procedures 1490 --communes 148
//! cargo run --release --example indicators_bench -- --dossiers 20000 \
//!     --store 'postgres://postgres@127.0.0.1:5432/test?schema=ixbench' \
//!     --broker amqp://guest:guest@127.0.0.1:5672/%2f
//! ```

use std::time::{Duration, Instant};

use gateway::indicators::history;
use gateway::indicators::{Level, Rules};
use gateway::jobs::indicators::{consume_batched, Batching, Counts};
use gateway::model::envelope::Envelope;
use gateway::model::{Channel, Dossier, DossierStatus, Fee, Owner, OwnerKind, Personal};
use gateway::runtime::Engine;
use gateway::telemetry::metrics::Metrics;
use tokio_util::sync::CancellationToken;

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

/// CPU seconds of this machine's processes named `comm` (PostgreSQL's, RabbitMQ's), summed.
fn processes_cpu(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(')')?;
            if head.split_once('(')?.1 != comm {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            Some((t(11) + t(12)) / 100.0)
        })
        .sum()
}

/// The servers' CPU now: (PostgreSQL, RabbitMQ).
fn servers_cpu() -> (f64, f64) {
    (processes_cpu("postgres"), processes_cpu("beam.smp"))
}

/// One batch size's live-path figures, per event.
struct Live {
    batch: u16,
    publish_cpu_us: f64,
    consume_cpu_us: f64,
    consume_wall_us: f64,
    pg_cpu_us: f64,
    mq_cpu_us: f64,
}

/// Publish `events` through the engine (the index's copy only), then consume them with the
/// gateway's consumer in batches of `batch` until all are settled.
async fn live_run(
    broker: &std::sync::Arc<dyn gw_broker::Broker>,
    engine: &Engine,
    store: &std::sync::Arc<dyn gw_store::indicators::IndicatorStore>,
    queue: &str,
    events: &[Envelope],
    batch: u16,
) -> Live {
    use std::sync::atomic::Ordering::Relaxed;
    let n = events.len().max(1) as f64;
    let (cpu0, _) = cpu_and_peak();
    for e in events {
        engine.publish(e).await.expect("published");
    }
    let (cpu1, _) = cpu_and_peak();
    let counts = std::sync::Arc::new(Counts::default());
    let cancel = CancellationToken::new();
    let (pg0, mq0) = servers_cpu();
    let started = Instant::now();
    let task = tokio::spawn(consume_batched(
        broker.clone(),
        queue.to_string(),
        store.clone(),
        counts.clone(),
        Batching {
            max: batch,
            ..Batching::default()
        },
        cancel.clone(),
    ));
    let settled = || {
        counts.applied.load(Relaxed)
            + counts.duplicate.load(Relaxed)
            + counts.ignored.load(Relaxed)
            + counts.dead_lettered.load(Relaxed)
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    while settled() < events.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu2, _) = cpu_and_peak();
    let (pg1, mq1) = servers_cpu();
    cancel.cancel();
    task.await.expect("joined").expect("the consumer ran");
    assert_eq!(
        settled(),
        events.len() as u64,
        "every live event settled in time"
    );
    assert_eq!(
        counts.applied.load(Relaxed),
        events.len() as u64,
        "every live event applied"
    );
    // The acks were queued when the count moved; the stats show them gone.
    Live {
        batch,
        publish_cpu_us: (cpu1 - cpu0) * 1e6 / n,
        consume_cpu_us: (cpu2 - cpu1) * 1e6 / n,
        consume_wall_us: wall * 1e6 / n,
        // A server process that ended meanwhile takes its CPU out of the sum: never below 0.
        pg_cpu_us: (pg1 - pg0).max(0.0) * 1e6 / n,
        mq_cpu_us: (mq1 - mq0).max(0.0) * 1e6 / n,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dossiers: usize = arg("--dossiers", "20000").parse().expect("--dossiers N");
    let communes: usize = arg("--communes", "148").parse().expect("--communes N");
    let procedures: usize = arg("--procedures", "1490").parse().expect("--procedures N");
    let live: usize = arg("--live", "10000").parse().expect("--live N (events)");
    let load_batch: usize = arg("--load-batch", "512").parse().expect("--load-batch N");
    let batches: Vec<u16> = arg("--batches", "1,16,64,256")
        .split(',')
        .map(|b| b.trim().parse().expect("--batches N,N,…"))
        .collect();
    let gateway_cpu_us: Option<f64> =
        std::env::args().any(|a| a == "--gateway-cpu-us").then(|| {
            arg("--gateway-cpu-us", "")
                .parse()
                .expect("--gateway-cpu-us X")
        });
    let dir = tempfile::tempdir().unwrap();
    let url = arg(
        "--store",
        &format!("sqlite:{}", dir.path().join("store.db").display()),
    );
    let broker_url = arg(
        "--broker",
        &format!("sqlite:{}", dir.path().join("queue.db").display()),
    );
    let store = gw_store::indicators::open(&url)
        .await
        .expect("the store opens");
    println!(
        "indicators bench: {dossiers} dossiers, {communes} communes, {procedures} procedures, store {}, broker {}",
        url.split('?').next().unwrap_or(""),
        broker_url.split('@').next_back().unwrap_or("")
    );

    let before = store.journal_len().await.expect("the journal counts");
    if before > 0 {
        println!(
            "  note: the store holds {before} journal entries already (they count in the rebuild)"
        );
    }

    // The history, through the group commit without a broker.
    let (cpu0, _) = cpu_and_peak();
    let started = Instant::now();
    let mut events = 0u64;
    let mut pending: Vec<Envelope> = Vec::with_capacity(load_batch + 4);
    for seq in 0..dossiers {
        pending.extend(history_of(seq, communes, procedures));
        if pending.len() >= load_batch || seq + 1 == dossiers {
            let out = history::apply_envelopes(store.as_ref(), &pending)
                .await
                .expect("applied");
            assert!(out.iter().all(|o| o.is_ok()), "the history reads");
            events += pending.len() as u64;
            pending.clear();
        }
    }
    let load = started.elapsed().as_secs_f64();
    let (cpu1, peak_load) = cpu_and_peak();
    println!(
        "  history     {events} events in {load:.1} s: {:.0} events/s, {:.1} µs wall and {:.1} µs CPU per event ({load_batch} events per transaction)",
        events as f64 / load.max(1e-9),
        load * 1e6 / events.max(1) as f64,
        (cpu1 - cpu0) * 1e6 / events.max(1) as f64
    );

    // The live path on top of that history, per batch size.
    let broker = gw_broker::open(&broker_url, "indicators-bench")
        .await
        .expect("the broker opens");
    let queue = format!("gw.indicators.bench{}", std::process::id());
    let engine = Engine::new(
        broker.clone(),
        gw_store::open(&url).await.expect("the ledger opens"),
        vec![],
        std::sync::Arc::new(Metrics::new()),
        64,
        20,
    )
    .with_indicators(&queue);
    engine.declare().await.expect("the queue is declared");
    println!(
        "  live path   {live} events of new dossiers per batch size, on top of the history: the engine's confirmed fact message to the index's queue (publish: making the fact, encoding, publish, confirm), then the consumer (consume: fetch, decode, one transaction per batch, acks)"
    );
    println!(
        "  {:>7} {:>14} {:>14} {:>14} {:>12} {:>11} {:>11}",
        "batch", "publish µs", "consume µs", "index µs", "wall µs", "pg µs", "mq µs"
    );
    let mut next_seq = dossiers;
    let mut results = Vec::new();
    for &b in &batches {
        let mut evs = Vec::with_capacity(live + 4);
        while evs.len() < live {
            evs.extend(history_of(next_seq, communes, procedures));
            next_seq += 1;
        }
        let r = live_run(&broker, &engine, &store, &queue, &evs, b).await;
        println!(
            "  {:>7} {:>14.1} {:>14.1} {:>14.1} {:>12.1} {:>11.1} {:>11.1}",
            r.batch,
            r.publish_cpu_us,
            r.consume_cpu_us,
            r.publish_cpu_us + r.consume_cpu_us,
            r.consume_wall_us,
            r.pg_cpu_us,
            r.mq_cpu_us
        );
        results.push(r);
    }
    println!("  (µs per event; CPU of this process unless pg/mq: the servers' processes; wall: consume only)");
    if let Some(gw) = gateway_cpu_us {
        for r in &results {
            let added = r.publish_cpu_us + r.consume_cpu_us;
            let share = added / gw * 100.0;
            println!(
                "  batch {:>4}: the index adds {added:.1} µs CPU per event = {share:.1} % of the gateway's {gw:.1} µs (goal: under 5 %: {})",
                r.batch,
                if share < 5.0 { "met" } else { "not met" }
            );
        }
    }
    if let Ok(gw_broker::QueueStats { ready, unacked, .. }) = broker.stats(&queue).await {
        println!("  queue after the live runs: {ready} ready, {unacked} unacked");
    }
    broker.close().await;
    if broker_url.starts_with("amqp") {
        use gw_broker::amqp::{AmqpBroker, AmqpOptions};
        use gw_broker::Broker;
        match AmqpBroker::connect(&broker_url, AmqpOptions::default()).await {
            Ok(b) => {
                if let Err(e) = b.delete_queue(&queue).await {
                    eprintln!("note: cannot delete queue {queue}: {e}");
                }
                b.close().await;
            }
            Err(e) => eprintln!("note: cannot connect to delete queue {queue}: {e}"),
        }
    }

    // The rebuild from the journal.
    let (cpu1, _) = cpu_and_peak();
    let started = Instant::now();
    let r = history::rebuild(store.as_ref(), |_, _| {})
        .await
        .expect("rebuilt");
    let rebuild = started.elapsed().as_secs_f64();
    let (cpu2, peak) = cpu_and_peak();
    println!(
        "  rebuild     {} entries, {} dossiers in {rebuild:.1} s ({:.0} entries/s, {:.1} s CPU); peak RSS {} MiB (after loading the history {} MiB)",
        r.entries,
        r.dossiers,
        r.entries as f64 / rebuild.max(1e-9),
        cpu2 - cpu1,
        peak / 1024,
        peak_load / 1024
    );

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
