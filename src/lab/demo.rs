//! The demo: the gateway's main job on embedded defaults, on a fresh machine, with nothing
//! else running. In one process: the strict sandbox of the national public service portal
//! (DVCQG), the gateway (embedded queue and SQLite store in a fresh data directory, the `dvcqg`
//! connector with session login and batching) and a one-stop traffic simulator that sends
//! realistic dossiers through their lifecycle (snapshots and progress steps, in order per
//! dossier) to the inbound listener. It shows progress, prints where the endpoints are and ends
//! with a summary checked against the portal sandbox's records: every dossier in its newest
//! version, every progress step present, no version older than one already accepted.
//! With `--faults` the portal fails a share of calls (5xx, HTTP 200 with an error code, 429
//! with Retry-After, connection resets), expires every session now and then (as a portal
//! does: an expiry does not pile up while nobody calls), and one poison dossier carries a
//! procedure code the portal does not know: the summary must still show nothing missing, with
//! the poison dossier dead-lettered and its progress steps dead-lettered with it.
//!
//! The progress line shows the circuit's state and what waits (deferred deliveries); the
//! summary the circuit's openings. The demo's timeout (`--timeout-secs`, 300 s) is well inside
//! the demo route's retry budget (1 h), so a timeout means a stall, never a budget running out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_contract_tests::portal::{Faults, Portal, PortalConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::lab::simulator::{self, Event};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// How many dossiers to simulate.
    #[arg(long, default_value_t = 2000)]
    pub dossiers: usize,
    /// Most snapshots (status changes) per dossier, 1 to 6.
    #[arg(long, default_value_t = 6)]
    pub max_snapshots: usize,
    /// Inject faults at the portal (errors, 429s, resets, session expiry, a poison dossier).
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
    /// Give up waiting for delivery after this many seconds (well inside the retry budget).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Keep running after the summary (to look at the ops endpoints) until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

/// The unit (province one-stop system) the demo speaks for.
pub const UNIT: &str = "000.00.01.H22";

/// The demo's configuration, as TOML, so it goes through the same validation as any file.
pub fn demo_config(portal: &Portal, data_dir: &str, inbound: &str, ops: &str) -> String {
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
max_elapsed = "1h"

[sources.onestop]
kinds = ["dossier.*"]

[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "5s"

[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{UNIT}"
auth = "session"
username = "{user}"
password = {{ env = "GATEWAY_DEMO_PORTAL_PASSWORD" }}

[[routes]]
name = "dossier-sync"
from = "onestop"
kinds = ["dossier.*"]
to = "dvcqg"
concurrency = 32
"#,
        integration = portal.integration_url(),
        sharing = portal.sharing_url(),
        user = portal.config().username,
    )
}

pub(crate) fn version_marker(item: &Value) -> Option<i64> {
    item.get("GhiChu")?
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

pub async fn run(args: DemoArgs) -> ExitCode {
    let portal = match Portal::start(0, PortalConfig::default()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.faults {
        portal.set_faults(Faults {
            server_error_rate: 0.10,
            error_code_rate: 0.05,
            too_many_rate: 0.05,
            reset_rate: 0.02,
            retry_after_secs: 1,
            ..Default::default()
        });
    }
    // The sandbox's password reaches the gateway the way a real one would: by reference.
    std::env::set_var("GATEWAY_DEMO_PORTAL_PASSWORD", &portal.config().password);
    let _tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            _tmp = tempfile_dir();
            _tmp.0.clone()
        }
    };
    let text = demo_config(
        &portal,
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
    println!("gateway demo: one-stop simulator → gateway (embedded queue + SQLite) → national portal sandbox");
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
        "  portal sandbox  {}  (records: {}/_sandbox/records)",
        portal.integration_url(),
        portal.base_url()
    );
    println!(
        "  faults          {}",
        if args.faults {
            "on: 10% HTTP 500, 5% error_code, 5% 429, 2% resets, session expiry, one poison dossier"
        } else {
            "off"
        }
    );

    // The plan: every dossier's events, in order.
    let mut plan: Vec<Vec<Event>> = Vec::with_capacity(args.dossiers);
    {
        let mut rng = rand::rng();
        for seq in 0..args.dossiers {
            plan.push(simulator::dossier_events(
                &mut rng,
                UNIT,
                seq,
                args.max_snapshots,
            ));
        }
    }
    let poison = if args.faults && !plan.is_empty() {
        let key = plan[0][0].key.clone();
        for e in plan[0].iter_mut().filter(|e| e.kind == "dossier.upserted") {
            e.payload["procedure_code"] = "9.999999".into();
        }
        Some(key)
    } else {
        None
    };
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    for e in plan.iter().flatten() {
        match e.version {
            Some(v) => {
                newest.insert(e.key.clone(), v);
            }
            None => *steps.entry(e.key.clone()).or_default() += 1,
        }
    }
    let total_events: u64 = plan.iter().map(|p| p.len() as u64).sum();
    // The poison dossier's progress steps go to the dead letters with it (an operator fixes
    // the dossier and replays them together).
    let poison_steps = match &poison {
        Some(k) => steps.get(k).copied().unwrap_or(0) as u64,
        None => 0,
    };

    let started = Instant::now();
    let accepted = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::new();
    let url = format!("http://{}/in/onestop", running.inbound_addr);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut senders = tokio::task::JoinSet::new();
    for events in plan {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        senders.spawn(async move {
            let _permit = permit;
            for e in events {
                let mut body =
                    serde_json::json!({"kind": e.kind, "key": e.key, "payload": e.payload});
                if let Some(v) = e.version {
                    body["version"] = v.into();
                }
                // The sender's side of the contract: retry until 202.
                for _ in 0..100 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 202 => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(r) if r.status().is_client_error() => {
                            eprintln!("refused {}: HTTP {}", e.key, r.status());
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
    let mut last_expiry = Instant::now();
    let circuits = running.engine.routes.clone();
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        while senders.try_join_next().is_some() {}
        if args.faults && last_expiry.elapsed() > Duration::from_secs(3) {
            // Every session ends now; the next call of each meets the expiry once.
            portal.expire_sessions();
            last_expiry = Instant::now();
        }
        let acc = accepted.load(Ordering::Relaxed);
        let s = settled();
        let pct = (s * 100).checked_div(total_events).unwrap_or(100);
        let circuit = circuits
            .iter()
            .map(|r| r.circuit.state().as_str())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "  [{:>5.1}s] {:>3}% accepted {acc}/{total_events}  delivered {}  superseded {}  retried {}  deferred {}  dead-lettered {}  circuit {circuit}",
            started.elapsed().as_secs_f64(),
            pct,
            m.outcome_total("delivered"),
            m.outcome_total("superseded"),
            m.outcome_total("retried"),
            m.outcome_total("deferred"),
            m.outcome_total("dead_lettered"),
        );
        if senders.is_empty() && s >= acc {
            break;
        }
        if Instant::now() > deadline {
            println!("  timed out waiting for delivery");
            break;
        }
    }
    let acc = accepted.load(Ordering::Relaxed);
    let records = portal.records();
    let mut missing = Vec::new();
    for (code, v) in &newest {
        if Some(code) == poison.as_ref() {
            continue;
        }
        if records.latest(code).and_then(version_marker) != Some(*v) {
            missing.push(code.clone());
        }
    }
    let mut steps_missing = 0usize;
    for (code, n) in &steps {
        if Some(code) == poison.as_ref() {
            continue;
        }
        steps_missing += n.saturating_sub(records.progress.get(code).map(Vec::len).unwrap_or(0));
    }
    let violations = records.ordering_violations(|_, item| version_marker(item));
    let versions_at_portal: usize = records.dossiers.values().map(Vec::len).sum();
    let snapshots: i64 = newest.values().sum();
    let elapsed = started.elapsed();
    let poison_dead = match &poison {
        Some(k) => running
            .engine
            .store
            .dead_letters(&gw_store::DeadLetterFilter {
                key: Some(k.clone()),
                limit: 100,
                ..Default::default()
            })
            .await
            .map(|d| d.len())
            .unwrap_or(0),
        None => 0,
    };
    println!();
    println!(
        "summary ({:.1}s, {:.0} events/s)",
        elapsed.as_secs_f64(),
        acc as f64 / elapsed.as_secs_f64().max(0.001)
    );
    println!("  dossiers               {}", newest.len());
    println!(
        "  events sent            {total_events} ({snapshots} snapshots, {} progress steps)",
        steps.values().sum::<usize>()
    );
    println!("  accepted               {acc}");
    println!("  delivered              {}", m.outcome_total("delivered"));
    println!("  superseded / coalesced {}", m.outcome_total("superseded"));
    println!("  retried                {}", m.outcome_total("retried"));
    println!(
        "  dead-lettered          {}{}",
        m.outcome_total("dead_lettered"),
        if poison.is_some() {
            format!(" (the poison dossier: {poison_dead} dead letters, its snapshots and its {poison_steps} progress steps)")
        } else {
            String::new()
        }
    );
    println!(
        "  circuit                opened {} times, deferred {} deliveries",
        m.circuit_transitions_total("open"),
        m.outcome_total("deferred")
    );
    println!(
        "  portal                 {} sync calls, {} dossier versions accepted, {} logins, {} refused (injected {})",
        records.calls.get("DongBoHoSoMC").copied().unwrap_or(0) + records.calls.get("CapNhatTienDoHoSoMC").copied().unwrap_or(0),
        versions_at_portal,
        records.logins,
        records.refused.len(),
        records.refused.iter().filter(|r| r.injected).count()
    );
    println!("  dossiers not newest    {}", missing.len());
    println!("  progress steps missing {steps_missing}");
    println!("  older-after-newer      {}", violations.len());
    let ok = acc == total_events
        && missing.is_empty()
        && steps_missing == 0
        && violations.is_empty()
        && (poison.is_none() || poison_dead > 0);
    println!(
        "  result                 {}",
        if ok {
            "OK: every dossier reached the portal in its newest version"
        } else {
            "FAILED"
        }
    );
    if !missing.is_empty() {
        println!(
            "  first missing: {:?}",
            missing.iter().take(5).collect::<Vec<_>>()
        );
    }
    if args.keep_running {
        println!("running until Ctrl-C");
        crate::app::wait_for_signal().await;
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
