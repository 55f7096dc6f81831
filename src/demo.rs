//! The demo: the gateway's main job on embedded defaults, on a fresh machine, with nothing
//! else running. In one process: the recording sandbox (the destination), the gateway (embedded
//! queue and SQLite store in a fresh data directory) and a traffic simulator that sends
//! dossier events (several versions per dossier, in order per dossier) to the inbound listener.
//! It shows progress, prints where the endpoints are and ends with a summary checked against
//! the sandbox's records: nothing missing, no duplicate effect, no older version after a newer.
//! With `--faults` the sandbox fails a share of requests, rate-limits some and refuses one
//! poison dossier; the summary must still show nothing missing (the poison one is
//! dead-lettered, and counted as such).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_contract_tests::sink::{Faults, Sink};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// How many dossiers to simulate.
    #[arg(long, default_value_t = 2000)]
    pub dossiers: usize,
    /// Most versions (status changes) per dossier.
    #[arg(long, default_value_t = 4)]
    pub max_versions: i64,
    /// Inject faults at the destination (errors, 429s, a poison dossier).
    #[arg(long)]
    pub faults: bool,
    /// Data directory (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Inbound listener address (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub inbound: String,
    /// Ops listener address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ops: String,
    /// Give up waiting for delivery after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Keep running after the summary (to look at the ops endpoints) until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

pub const POISON_KEY: &str = "000.00.01.H22-POISON-0001";

/// The demo's configuration, as TOML, so it goes through the same validation as any file.
pub fn demo_config(sink_url: &str, data_dir: &str, inbound: &str, ops: &str) -> String {
    format!(
        r#"
[gateway]
instance = "demo"
data_dir = "{data_dir}"
shutdown_grace = "10s"

[inbound]
listen = "{inbound}"

[ops]
listen = "{ops}"

[retry]
initial = "100ms"
max_delay = "2s"
max_elapsed = "10m"
max_attempts = 0

[sources.onestop]
kinds = ["dossier.*"]

[adapters.portal-sandbox]
connector = "http"
url = "{sink_url}"
timeout = "5s"

[[routes]]
name = "dossier-sync"
from = "onestop"
kinds = ["dossier.*"]
to = "portal-sandbox"
concurrency = 32
"#
    )
}

fn dossier_code(i: usize) -> String {
    // Province unit code + date + sequence, as one-stop systems number dossiers.
    format!("000.00.01.H22-241124-{i:05}")
}

fn payload(code: &str, version: i64, rng: &mut impl Rng) -> serde_json::Value {
    const STATUSES: [&str; 5] = [
        "received",
        "in_processing",
        "supplement_requested",
        "processed",
        "result_returned",
    ];
    let commune = rng.random_range(1..=148);
    serde_json::json!({
        "code": code,
        "version": version,
        "procedure_code": format!("1.00{}", rng.random_range(1000..9999)),
        "summary": "Đăng ký khai sinh",
        "handling_unit": format!("UBND xã {commune}"),
        "status": STATUSES[((version - 1) as usize).min(STATUSES.len() - 1)],
        "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567", "phone": "0912345678"},
        "fees": [{"code": "LP01", "name": "Lệ phí", "amount_vnd": 8000}],
    })
}

pub async fn run(args: DemoArgs) -> ExitCode {
    let faults = if args.faults {
        Faults {
            error_rate: 0.2,
            rate_limit_rate: 0.05,
            retry_after_secs: 1,
            poison_keys: [POISON_KEY.to_string()].into(),
            ..Default::default()
        }
    } else {
        Faults::default()
    };
    let sink = match Sink::start(0, faults).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            _tmp = tempfile_dir();
            _tmp.0.clone()
        }
    };
    let text = demo_config(
        &sink.url(),
        &data_dir.display().to_string(),
        &args.inbound,
        &args.ops,
    );
    let loaded = match config::parse(&text, "<demo>", PathBuf::from(".")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cancel = CancellationToken::new();
    let running = match crate::app::start(&loaded, cancel.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("gateway demo");
    println!("  data directory  {}", data_dir.display());
    println!(
        "  inbound         POST http://{}/in/onestop",
        running.inbound_addr
    );
    println!(
        "  ops             http://{0}/healthz  http://{0}/readyz  http://{0}/metrics",
        running.ops_addr
    );
    println!(
        "  portal sandbox  {}  (records: http://{}/_sink/records)",
        sink.url(),
        sink.addr
    );
    println!(
        "  faults          {}",
        if args.faults {
            "on: 20% errors, 5% rate-limited, one poison dossier"
        } else {
            "off"
        }
    );

    // The simulator: every dossier's versions in order, many dossiers at once.
    let started = Instant::now();
    let accepted = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::new();
    let url = format!("http://{}/in/onestop", running.inbound_addr);
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut plan = Vec::new();
    {
        let mut rng = rand::rng();
        for i in 0..args.dossiers {
            let code = if args.faults && i == 0 {
                POISON_KEY.to_string()
            } else {
                dossier_code(i)
            };
            let n = rng.random_range(1..=args.max_versions.max(1));
            let versions: Vec<i64> = (1..=n).collect();
            expected.insert(code.clone(), versions.clone());
            plan.push((code, versions));
        }
    }
    let total_events: u64 = plan.iter().map(|(_, v)| v.len() as u64).sum();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut senders = tokio::task::JoinSet::new();
    for (code, versions) in plan {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        senders.spawn(async move {
            let _permit = permit;
            for v in versions {
                let body = {
                    let mut rng = rand::rng();
                    serde_json::json!({"kind": "dossier.upserted", "key": code, "version": v, "payload": payload(&code, v, &mut rng)})
                };
                // The sender's side of the contract: retry until 202.
                for _ in 0..50 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 202 => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(r) if r.status().is_client_error() => {
                            eprintln!("refused {code}@{v}: HTTP {}", r.status());
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
    }

    let m = running.engine.metrics.clone();
    let settled = || {
        m.outcome_total("delivered")
            + m.outcome_total("superseded")
            + m.outcome_total("dead_lettered")
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut senders_done = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        while let Some(r) = senders.try_join_next() {
            let _ = r;
        }
        if senders.is_empty() {
            senders_done = true;
        }
        let acc = accepted.load(Ordering::Relaxed);
        let s = settled();
        let pct = (s * 100).checked_div(total_events).unwrap_or(100);
        println!(
            "  [{:>5.1}s] {:>3}% accepted {acc}/{total_events}  delivered {}  superseded {}  retried {}  dead-lettered {}",
            started.elapsed().as_secs_f64(),
            pct,
            m.outcome_total("delivered"),
            m.outcome_total("superseded"),
            m.outcome_total("retried"),
            m.outcome_total("dead_lettered"),
        );
        if senders_done && s >= acc {
            break;
        }
        if Instant::now() > deadline {
            println!("  timed out waiting for delivery");
            break;
        }
    }
    let acc = accepted.load(Ordering::Relaxed);
    let mut check = sink.check(&expected);
    let dead = m.outcome_total("dead_lettered");
    if args.faults {
        check.missing.retain(|k| k != POISON_KEY);
    }
    let elapsed = started.elapsed();
    println!();
    println!(
        "summary ({:.1}s, {:.0} events/s)",
        elapsed.as_secs_f64(),
        acc as f64 / elapsed.as_secs_f64().max(0.001)
    );
    println!("  events sent       {total_events}");
    println!("  accepted          {acc}");
    println!("  delivered         {}", m.outcome_total("delivered"));
    println!("  superseded        {}", m.outcome_total("superseded"));
    println!("  retried           {}", m.outcome_total("retried"));
    println!(
        "  dead-lettered     {dead}{}",
        if args.faults {
            " (the poison dossier's versions)"
        } else {
            ""
        }
    );
    println!(
        "  sandbox records   {}  (refused {})",
        check.delivered,
        sink.refused()
    );
    println!("  missing           {}", check.missing.len());
    println!("  duplicate effects {}", check.duplicates);
    println!("  older-after-newer {}", check.older_after_newer);
    let ok = acc == total_events
        && check.missing.is_empty()
        && check.older_after_newer == 0
        && check.duplicates == 0;
    println!(
        "  result            {}",
        if ok {
            "OK: every dossier reached the sandbox in its newest version"
        } else {
            "FAILED"
        }
    );
    if !check.missing.is_empty() {
        println!(
            "  first missing: {:?}",
            check.missing.iter().take(5).collect::<Vec<_>>()
        );
    }
    if args.keep_running {
        println!("running until Ctrl-C");
        crate::cli::wait_for_signal().await;
    }
    running.shutdown().await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> TempDir {
    let p = std::env::temp_dir().join(format!("gateway-demo-{}", uuid::Uuid::now_v7()));
    let _ = std::fs::create_dir_all(&p);
    TempDir(p)
}
