//! `gateway bench --phases scale`: the same route run by one and then by two `gateway run`
//! child processes on RabbitMQ + PostgreSQL, in one bench run, so the 2/1 ratio compares like
//! with like.
//!
//! For each instance count: a fresh route (`--scale-partitions` partitions, ES256 to the portal
//! sandbox) and PostgreSQL schema; the children are started and ready (consuming) first; then
//! `--events` dossier snapshots (one per dossier, nothing coalesces) are published with
//! confirms from this process and the run ends when the shared ledger holds every outcome:
//! throughput = events ÷ that time (publishing included). Latency: events published one at a
//! time at half that rate for `--latency-secs`; each is paired by envelope id with its ledger
//! row, latency = ledger `at_ms` − publish confirmed (one machine's wall clock, 1 ms
//! resolution). RSS: each child's VmHWM. Deliveries per instance: each child's
//! `gateway_outcomes_total`, from its `/metrics`.
//!
//! What the figures say about single active consumers: RabbitMQ gives each partition queue to
//! the first consumer registered, so the first child tends to take every partition and the
//! second waits as a hot standby; the 2/1 ratio then stays near 1 (printed, not asserted).

use crate::model::time::now_ms;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::args::{Backend, BenchArgs, Sig, CHUNK};
use super::error::BenchError;
use super::setup::{cleanup, messages, open_engine, setup, Setup};
use super::sys::{percentile, vm_hwm_kib};
use gw_contract_tests::portal::Portal;

pub(super) struct Scale {
    pub instances: usize,
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub lat_n: usize,
    /// VmHWM of each child, KiB.
    pub hwm_kib: Vec<u64>,
    /// Outcomes each child recorded (from its /metrics).
    pub handled: Vec<u64>,
}

/// A `gateway run` child and its ops address.
struct Child {
    proc: tokio::process::Child,
    ops: String,
}

/// Start `gateway run --config file`; ready once it printed its addresses.
async fn spawn(file: &Path) -> Result<Child, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::CurrentExe)?;
    let mut proc = tokio::process::Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BenchError::Child {
            what: "a gateway child",
            source,
        })?;
    let stdout = proc.stdout.take().ok_or(BenchError::NoStdout)?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| BenchError::StartTimeout)?
        .map_err(BenchError::ChildOutput)?
        .ok_or(BenchError::ExitedBeforeStart)?;
    // "gateway running: inbound http://A ops http://B"
    let ops = first
        .split_whitespace()
        .nth(5)
        .ok_or_else(|| BenchError::FirstLine(first.clone()))?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Child { proc, ops })
}

/// Sum of a child's `gateway_outcomes_total` samples.
async fn handled(client: &reqwest::Client, ops: &str) -> u64 {
    let Ok(r) = client.get(format!("{ops}/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("gateway_outcomes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn pg(args: &BenchArgs) -> Result<tokio_postgres::Client, BenchError> {
    let (client, conn) = tokio_postgres::connect(&args.pg_url, tokio_postgres::NoTls)
        .await
        .map_err(BenchError::Postgres)?;
    tokio::spawn(conn);
    Ok(client)
}

async fn ledger_rows(db: &tokio_postgres::Client, schema: &str) -> Result<i64, BenchError> {
    db.query_one(&format!("SELECT COUNT(*) FROM \"{schema}\".ledger"), &[])
        .await
        .map(|r| r.get(0))
        .map_err(BenchError::LedgerCount)
}

async fn wait_rows(
    db: &tokio_postgres::Client,
    schema: &str,
    target: i64,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = ledger_rows(db, schema).await?;
        if n >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::TimedOut { n, target });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One measurement with `instances` children.
pub(super) async fn run(
    args: &BenchArgs,
    portal: &Portal,
    instances: usize,
) -> Result<Scale, BenchError> {
    let mut s: Setup = setup(args, Backend::RabbitPg, Sig::Ecdsa, portal);
    s.text = s.text.replacen(
        "\n[store]\n",
        &format!("partitions = {}\n\n[store]\n", args.scale_partitions),
        1,
    );
    let (engine, _) = open_engine(&s).await?;
    let queues = engine.routes[0].queues();
    let result = measure(args, portal, &s, &engine, instances).await;
    engine.broker.close().await;
    drop(engine);
    cleanup(args, &s, &queues).await;
    result
}

async fn measure(
    args: &BenchArgs,
    portal: &Portal,
    s: &Setup,
    engine: &std::sync::Arc<crate::runtime::Engine>,
    instances: usize,
) -> Result<Scale, BenchError> {
    let db = pg(args).await?;
    let mut children = Vec::new();
    for i in 0..instances {
        let text = s
            .text
            .replace("instance = \"bench\"", &format!("instance = \"bench-{i}\""));
        let file = s.dir.0.join(format!("gateway-{i}.toml"));
        std::fs::write(&file, text).map_err(BenchError::WriteConfig)?;
        children.push(spawn(&file).await?);
    }
    let unit = portal.config().units[0].clone();
    let timeout = Duration::from_secs(args.timeout_secs);

    // Throughput: publish everything (confirmed, pipelined per queue), wait for the ledger.
    let msgs = messages(engine, &unit, 0, args.events);
    let t0 = Instant::now();
    for (queue, all) in msgs {
        for chunk in all.chunks(CHUNK) {
            engine
                .broker
                .publish_batch(&queue, chunk.to_vec())
                .await
                .map_err(BenchError::Publish)?;
        }
    }
    wait_rows(&db, &s.route, args.events as i64, timeout).await?;
    let rate = args.events as f64 / t0.elapsed().as_secs_f64();

    // Latency at half that rate, paired by envelope id with the ledger.
    let lat_rate = args.latency_rate(rate);
    let lat_n = ((lat_rate * args.latency_secs) as usize).max(10);
    let one_by_one: Vec<(String, gw_broker::Message)> = messages(engine, &unit, args.events, lat_n)
        .into_iter()
        .flat_map(|(q, ms)| ms.into_iter().map(move |m| (q.clone(), m)))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / lat_rate);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (q, m)) in one_by_one.into_iter().enumerate() {
        tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        let e = engine.clone();
        tasks.spawn(async move {
            let id = m.id.clone();
            e.broker.publish(&q, m).await.map(|()| (id, now_ms()))
        });
    }
    let mut confirmed = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (id, at) = r?.map_err(BenchError::Publish)?;
        confirmed.insert(id, at);
    }
    wait_rows(&db, &s.route, (args.events + lat_n) as i64, timeout).await?;
    let rows = db
        .query(
            &format!("SELECT envelope_id, at_ms FROM \"{}\".ledger", s.route),
            &[],
        )
        .await
        .map_err(BenchError::LedgerRows)?;
    let mut lat: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            let at: i64 = r.get(1);
            confirmed.get(&id).map(|c| (at - c).max(0) as f64)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));

    let client = reqwest::Client::new();
    let mut hwm_kib = Vec::new();
    let mut per = Vec::new();
    for c in &mut children {
        let pid = c.proc.id().map(|p| p.to_string()).unwrap_or_default();
        hwm_kib.push(vm_hwm_kib(&pid));
        per.push(handled(&client, &c.ops).await);
    }
    for mut c in children {
        let _ = c.proc.kill().await;
    }
    Ok(Scale {
        instances,
        rate,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        lat_n: lat.len(),
        hwm_kib,
        handled: per,
    })
}

pub(super) fn print(r: &Scale) {
    let rss: Vec<String> = r
        .hwm_kib
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    let handled: Vec<String> = r.handled.iter().map(u64::to_string).collect();
    println!(
        "  {} instance{:<2} {:>9.0} msg/s   p50 {:>6.1} ms   p99 {:>6.1} ms ({} samples)   RSS MiB [{}]   outcomes per instance [{}]",
        r.instances,
        if r.instances == 1 { "" } else { "s" },
        r.rate,
        r.p50,
        r.p99,
        r.lat_n,
        rss.join(", "),
        handled.join(", ")
    );
}
