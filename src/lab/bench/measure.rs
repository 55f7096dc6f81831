//! The gateway's measurements: throughput end to end, latency at half the peak, peak RSS
//! with a backlog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_broker::Message;
use gw_contract_tests::portal::Portal;
use tokio_util::sync::CancellationToken;

use super::args::*;
use super::error::BenchError;
use super::setup::*;
use super::sys::*;
use crate::runtime::Engine;
use crate::telemetry::metrics::Metrics;

pub(super) struct E2e {
    pub(super) backend: Backend,
    pub(super) sig: Sig,
    pub(super) rate: f64,
    /// CPU seconds per 1,000 events of the gateway (the process minus the sandbox's thread).
    pub(super) cpu_per_1k: f64,
    /// …and of the portal sandbox, on its own thread in this process.
    pub(super) sandbox_cpu_per_1k: f64,
    /// …and of the local PostgreSQL and RabbitMQ servers (their processes on this machine;
    /// on the embedded backend, which uses neither, only their background work shows).
    pub(super) pg_cpu_per_1k: f64,
    pub(super) mq_cpu_per_1k: f64,
    /// Events per portal sync call (the dvcqg connector batches; one signature per call).
    pub(super) per_call: f64,
    pub(super) lat: Option<Latency>,
}

pub(super) struct Latency {
    pub(super) rate: f64,
    pub(super) n: usize,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
}

pub(super) struct Backlog {
    pub(super) backend: Backend,
    pub(super) hwm_kib: u64,
    pub(super) secs: f64,
}

pub(super) async fn e2e(
    args: &BenchArgs,
    s: &Setup,
    portal: &Portal,
    sandbox_tid: Option<&str>,
    first: &mut usize,
) -> Result<E2e, BenchError> {
    let (engine, metrics) = open_engine(s).await?;
    let unit = portal.config().units[0].clone();
    let queues = engine.routes[0].queues();
    let result = async {
        let msgs = messages(&engine, &unit, *first, args.events);
        *first += args.events;
        preload(&engine, msgs).await?;
        let cancel = CancellationToken::new();
        let e = engine.clone();
        let c = cancel.clone();
        let run = tokio::spawn(async move { e.run(c).await });
        let cpu0 = cpu_secs();
        let sandbox0 = thread_cpu_secs(sandbox_tid);
        let (pg0, mq0) = (processes_cpu("postgres"), processes_cpu("beam.smp"));
        let t0 = Instant::now();
        let timeout = Duration::from_secs(args.timeout_secs);
        let r = wait_settled(&metrics, args.events as u64, timeout).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let sandbox_cpu = thread_cpu_secs(sandbox_tid) - sandbox0;
        let (pg_cpu, mq_cpu) = (
            cpu_since(&pg0, &processes_cpu("postgres")),
            cpu_since(&mq0, &processes_cpu("beam.smp")),
        );
        if let Err(e) = r {
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
            return Err(e);
        }
        let rate = args.events as f64 / secs;
        let calls = portal.calls("DongBoHoSoMC").max(1);
        // Latency at half the peak: publish one at a time at that rate.
        let lat_rate = args.latency_rate(rate);
        let lat_n = ((lat_rate * args.latency_secs) as usize).max(10);
        let lat = latency(
            &engine,
            &metrics,
            LatencyRun {
                unit: &unit,
                first: *first,
                n: lat_n,
                rate: lat_rate,
                timeout,
            },
        )
        .await;
        *first += lat_n;
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
        Ok(E2e {
            backend: s.backend,
            sig: s.sig,

            rate,
            cpu_per_1k: (cpu - sandbox_cpu) / args.events as f64 * 1000.0,
            sandbox_cpu_per_1k: sandbox_cpu / args.events as f64 * 1000.0,
            pg_cpu_per_1k: pg_cpu / args.events as f64 * 1000.0,
            mq_cpu_per_1k: mq_cpu / args.events as f64 * 1000.0,
            per_call: args.events as f64 / calls as f64,
            lat: match lat {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("note: latency run failed: {e}");
                    None
                }
            },
        })
    }
    .await;
    engine.broker.close().await;
    drop(engine);
    cleanup(args, s, &queues).await;
    result
}

/// One latency run: `n` snapshots of fresh dossiers of `unit` (sequence numbers from `first`),
/// published one at a time at `rate` a second, all settled within `timeout`.
pub(super) struct LatencyRun<'a> {
    pub(super) unit: &'a str,
    pub(super) first: usize,
    pub(super) n: usize,
    pub(super) rate: f64,
    pub(super) timeout: Duration,
}

pub(super) async fn latency(
    engine: &Arc<Engine>,
    metrics: &Arc<Metrics>,
    run: LatencyRun<'_>,
) -> Result<Latency, BenchError> {
    let LatencyRun {
        unit,
        first,
        n,
        rate,
        timeout,
    } = run;
    let base = settled(metrics);
    let msgs: Vec<(String, Message)> = messages(engine, unit, first, n)
        .into_iter()
        .flat_map(|(q, ms)| ms.into_iter().map(move |m| (q.clone(), m)))
        .collect();
    // Completion times, seen by a poller thread every 100 µs.
    let done: Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (m, done, stop) = (metrics.clone(), done.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = base;
            while !stop.load(Ordering::Relaxed) {
                let now = settled(&m);
                if now > seen {
                    let t = Instant::now();
                    let mut d = done.lock().unwrap();
                    for _ in seen..now {
                        d.push(t);
                    }
                    seen = now;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let confirmed: Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = None;
    for (i, (q, m)) in msgs.into_iter().enumerate() {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let (e, c) = (engine.clone(), confirmed.clone());
        tasks.spawn(async move {
            e.broker.publish(&q, m).await.map(|()| {
                c.lock().unwrap().push(Instant::now());
            })
        });
        while let Some(r) = tasks.try_join_next() {
            if let Ok(Err(e)) = r {
                failed = Some(e);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            failed = Some(e);
        }
    }
    let r = wait_settled(metrics, base + n as u64, timeout).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    if let Some(e) = failed {
        return Err(BenchError::Publish(e));
    }
    r?;
    let mut c = confirmed.lock().unwrap().clone();
    c.sort();
    let d = done.lock().unwrap().clone();
    let mut lat: Vec<f64> = c
        .iter()
        .zip(d.iter())
        .map(|(p, s)| s.saturating_duration_since(*p).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        rate,
        n,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        p999: percentile(&lat, 99.9),
    })
}

/// The gateway as a child (`gateway run`) with `backlog` events waiting; its peak RSS.
pub(super) async fn backlog_rss(
    args: &BenchArgs,
    s: &Setup,
    portal: &Portal,
    first: &mut usize,
) -> Result<Backlog, BenchError> {
    let unit = portal.config().units[0].clone();
    let (engine, _) = open_engine(s).await?;
    let queues = engine.routes[0].queues();
    let msgs = messages(&engine, &unit, *first, args.backlog);
    *first += args.backlog;
    let loaded = preload(&engine, msgs).await;
    engine.broker.close().await;
    drop(engine);
    let result = async {
        loaded?;
        let file = s.dir.0.join("gateway.toml");
        std::fs::write(&file, &s.text).map_err(BenchError::WriteConfig)?;
        let exe = std::env::current_exe().map_err(BenchError::CurrentExe)?;
        let mut child = tokio::process::Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Child {
                what: "the gateway child",
                source,
            })?;
        let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
        let t = Instant::now();
        let mut hwm = 0;
        while t.elapsed() < Duration::from_secs(args.backlog_secs) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(Some(st)) = child.try_wait() {
                return Err(BenchError::ChildExited(st));
            }
            hwm = hwm.max(vm_hwm_kib(&pid));
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = child.kill().await;
        Ok(Backlog {
            backend: s.backend,

            hwm_kib: hwm,
            secs,
        })
    }
    .await;
    cleanup(args, s, &queues).await;
    result
}
