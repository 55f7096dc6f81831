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
//! The dashboard: every run makes a fresh random operator token (`[ops] tokens`, by reference
//! to a variable of this process that is removed once the gateway has read it) and prints the
//! dashboard's URL with it in the fragment (`http://OPS/#token=…`): the browser never sends a
//! fragment to the server, so the token stays out of request lines and access logs; the page
//! keeps it in its session storage and clears the address bar. The banner is the one place the
//! token is printed. `--keep-running` keeps the gateway and the dashboard up after the
//! summary until Ctrl-C.
//!
//! Then the signing step (`demo_signing`): result documents of synced dossiers signed by a
//! SmartCA sandbox official and routed back as `signature.completed`; with `--faults` some
//! officials let their requests expire (counted and reported, not an error).
//!
//! Then the agencies step (`demo_agencies`): the province's operations centre is pushed its
//! share (a field allow-list without personal data; with `--faults` it answers 429 and slowly
//! part of the time) and a department pages its signed pull feed to the end; each share must
//! be complete, in order per dossier, with no field the agency did not name.
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
    /// Keep the gateway and the dashboard running after the summary until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

/// The variable the demo's ops token passes through (by reference, like any secret).
const OPS_TOKEN_VAR: &str = "GATEWAY_DEMO_OPS_TOKEN";

/// A fresh random ops token for one run: 256 bits, hex.
fn fresh_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{:032x}{:032x}", rng.random::<u128>(), rng.random::<u128>())
}

/// The `[[ops.tokens]]` entry of the demo: one operator (it may replay dead letters).
fn ops_token_section() -> String {
    format!("\n[[ops.tokens]]\nname = \"demo\"\nrole = \"operator\"\ntoken = {{ env = \"{OPS_TOKEN_VAR}\" }}\n")
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

[indicators]
holidays = ["2026-01-01", "2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"]
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

/// Run the demo: start the world, send the plan, watch it settle, check the portal's records.
pub async fn run(args: DemoArgs) -> ExitCode {
    let world = match World::start(&args).await {
        Ok(w) => w,
        Err(code) => return code,
    };
    world.print_banner(&args);
    let plan = Plan::new(&args);
    let started = Instant::now();
    let sending = Sending::start(plan.events.clone(), &world);
    world.watch(&args, &plan, &sending, started).await;
    let summary = Summary::measure(&world, &plan, &sending, started.elapsed()).await;
    summary.print(&world, &plan);
    let codes: Vec<String> = plan
        .newest
        .keys()
        .filter(|c| !plan.is_poison(c))
        .cloned()
        .collect();
    let signing = world
        .signing
        .run(
            world.running.inbound_addr,
            &codes,
            args.faults,
            Duration::from_secs(60),
        )
        .await;
    signing.print();
    let axis_ok = match crate::lab::demo_axis::round_trip(
        &world.axis,
        &world.loaded,
        &world.running.engine,
        world.running.inbound_addr,
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            println!("  document axis FAILED: {e}");
            false
        }
    };
    let agencies_ok = world
        .agencies
        .check(world.running.inbound_addr, &plan.events)
        .await;
    print_indicators(&world, &plan).await;
    let failed: Vec<&str> = [
        ("portal", summary.ok()),
        ("signing", signing.ok()),
        ("document axis", axis_ok),
        ("agencies", agencies_ok),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(n, _)| *n)
    .collect();
    println!();
    if failed.is_empty() {
        println!("demo: OK (portal, signing, document axis, agencies)");
    } else {
        println!("demo: FAILED ({})", failed.join(", "));
    }
    if args.keep_running {
        println!(
            "running until Ctrl-C: the dashboard stays at the URL above, the gateway at http://{}/in/onestop",
            world.running.inbound_addr
        );
        crate::app::wait_for_signal().await;
    }
    world.running.shutdown().await;
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the demo runs in one process: the portal sandbox and the gateway.
struct World {
    portal: Portal,
    /// The document axis sandbox and the configuration the gateway runs (its poll is run by
    /// the demo's axis step).
    axis: gw_contract_tests::axis::Axis,
    loaded: crate::config::Loaded,
    running: crate::app::Running,
    data_dir: PathBuf,
    /// This run's ops token (printed once, in the dashboard's URL).
    ops_token: String,
    /// The signing step's SmartCA sandbox and return endpoint.
    signing: super::demo_signing::SigningDemo,
    /// The agencies step's push sandbox and feed token.
    agencies: super::demo_agencies::AgenciesDemo,
    /// Removes the fresh data directory when the demo ends (none with `--data-dir`).
    _tmp: Option<TempDir>,
    /// The store's URL and the `[indicators]` rules (the service-quality index's summary).
    store_url: String,
    rules: crate::indicators::Rules,
    /// `[indicators] lowest_min_dossiers`: who may be ranked among the lowest communes.
    lowest_min_dossiers: u64,
}

impl World {
    /// Start the portal sandbox (with its faults) and the gateway on the demo configuration.
    /// A failure is printed; the error is the exit code.
    async fn start(args: &DemoArgs) -> Result<World, ExitCode> {
        let portal = Portal::start(0, PortalConfig::default())
            .await
            .map_err(|e| {
                eprintln!("cannot start the portal sandbox: {e}");
                ExitCode::FAILURE
            })?;
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
        let (data_dir, tmp) = match &args.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let tmp = tempfile_dir();
                (tmp.0.clone(), Some(tmp))
            }
        };
        let ops_token = fresh_token();
        std::env::set_var(OPS_TOKEN_VAR, &ops_token);
        let mut text = demo_config(
            &portal,
            &data_dir.display().to_string(),
            &args.inbound,
            &args.ops,
        );
        text.push_str(&ops_token_section());
        let signing = super::demo_signing::SigningDemo::start()
            .await
            .map_err(|e| {
                eprintln!("cannot start the signing sandboxes: {e}");
                ExitCode::FAILURE
            })?;
        text.push_str(&signing.config());
        text = text.replacen(
            "[sources.onestop]\nkinds = [\"dossier.*\"]",
            "[sources.onestop]\nkinds = [\"dossier.*\", \"signature.requested\"]",
            1,
        );
        let agencies = super::demo_agencies::AgenciesDemo::start(args.faults)
            .await
            .map_err(|e| {
                eprintln!("{e}");
                ExitCode::FAILURE
            })?;
        text.push_str(&agencies.config());
        let axis = crate::lab::demo_axis::start_axis().await.map_err(|e| {
            eprintln!("{e}");
            ExitCode::FAILURE
        })?;
        text.push_str(
            &crate::lab::demo_axis::axis_section(&axis, &data_dir).map_err(|e| {
                eprintln!("{e}");
                ExitCode::FAILURE
            })?,
        );
        let loaded = config::parse(&text, "<demo>", PathBuf::from(".")).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
        let store_url = loaded.store_url().map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
        let lowest_min_dossiers = loaded.config.indicators.as_ref().map_or(
            crate::config::defaults::INDICATORS_LOWEST_MIN_DOSSIERS,
            |i| i.lowest_min_dossiers,
        );
        let rules = crate::indicators::rules_of(&loaded).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
        let started = crate::app::start(&loaded, CancellationToken::new()).await;
        // Read once at start: nothing else in this process (or a child) needs to see it.
        std::env::remove_var(OPS_TOKEN_VAR);
        let running = started.map_err(|e| {
            eprintln!("cannot start the gateway: {e}");
            ExitCode::FAILURE
        })?;
        Ok(World {
            portal,
            axis,
            loaded,
            running,
            data_dir,
            ops_token,
            signing,
            agencies,
            _tmp: tmp,
            store_url,
            rules,
            lowest_min_dossiers,
        })
    }

    fn print_banner(&self, args: &DemoArgs) {
        let (inbound, ops) = (self.running.inbound_addr, self.running.ops_addr);
        println!("gateway demo: one-stop simulator → gateway (embedded queue + SQLite) → national portal sandbox");
        println!("  data directory  {}", self.data_dir.display());
        println!("  inbound         POST http://{inbound}/in/onestop");
        println!(
            "  dashboard       http://{ops}/#token={}  (open it in a browser; operator token of this run only)",
            self.ops_token
        );
        println!(
            "  ops             http://{ops}/healthz  http://{ops}/readyz  http://{ops}/metrics  http://{ops}/api/v1/ (Authorization: Bearer <the token>)"
        );
        println!(
            "  portal sandbox  {}  (records: {}/_sandbox/records)",
            self.portal.integration_url(),
            self.portal.base_url()
        );
        println!(
            "  faults          {}",
            if args.faults {
                "on: 10% HTTP 500, 5% error_code, 5% 429, 2% resets, session expiry, one poison dossier"
            } else {
                "off"
            }
        );
    }

    /// Deliveries to the portal settled so far (delivered, superseded or dead-lettered): the
    /// portal's route only (the agencies' routes settle the same events too).
    fn settled(&self) -> u64 {
        let c = self.running.engine.metrics.route_counts("dossier-sync");
        ["delivered", "superseded", "dead_lettered"]
            .iter()
            .map(|o| c.outcomes.get(*o).copied().unwrap_or(0))
            .sum()
    }

    /// Print a progress line every second until everything accepted is settled (or the
    /// timeout); with faults, expire the portal's sessions every few seconds.
    async fn watch(&self, args: &DemoArgs, plan: &Plan, sending: &Sending, started: Instant) {
        let m = &self.running.engine.metrics;
        let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
        let mut last_expiry = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            if args.faults && last_expiry.elapsed() > Duration::from_secs(3) {
                // Every session ends now; the next call of each meets the expiry once.
                self.portal.expire_sessions();
                last_expiry = Instant::now();
            }
            let acc = sending.accepted();
            let s = self.settled();
            let total = plan.total_events;
            let pct = (s * 100).checked_div(total).unwrap_or(100);
            let circuit = self
                .running
                .engine
                .routes
                .iter()
                .map(|r| r.circuit.state().as_str())
                .collect::<Vec<_>>()
                .join(",");
            println!(
                "  [{:>5.1}s] {:>3}% accepted {acc}/{total}  delivered {}  superseded {}  retried {}  deferred {}  dead-lettered {}  circuit {circuit}",
                started.elapsed().as_secs_f64(),
                pct,
                m.outcome_total("delivered"),
                m.outcome_total("superseded"),
                m.outcome_total("retried"),
                m.outcome_total("deferred"),
                m.outcome_total("dead_lettered"),
            );
            if sending.done() && s >= acc {
                break;
            }
            if Instant::now() > deadline {
                println!("  timed out waiting for delivery");
                break;
            }
        }
    }
}

/// Every dossier's events, in order, and what the portal must hold at the end.
struct Plan {
    events: Vec<Vec<Event>>,
    /// The dossier the portal refuses (`--faults`): a procedure code it does not know.
    poison: Option<String>,
    /// Each dossier's newest version.
    newest: BTreeMap<String, i64>,
    /// Each dossier's number of progress steps.
    steps: BTreeMap<String, usize>,
    total_events: u64,
}

impl Plan {
    fn new(args: &DemoArgs) -> Plan {
        let mut events: Vec<Vec<Event>> = Vec::with_capacity(args.dossiers);
        let mut rng = rand::rng();
        for seq in 0..args.dossiers {
            events.push(simulator::dossier_events(
                &mut rng,
                UNIT,
                seq,
                args.max_snapshots,
            ));
        }
        let poison = if args.faults && !events.is_empty() {
            let key = events[0][0].key.clone();
            for e in events[0]
                .iter_mut()
                .filter(|e| e.kind == "dossier.upserted")
            {
                e.payload["procedure_code"] = "9.999999".into();
            }
            Some(key)
        } else {
            None
        };
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        let mut steps: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.iter().flatten() {
            match e.version {
                Some(v) => {
                    newest.insert(e.key.clone(), v);
                }
                None => *steps.entry(e.key.clone()).or_default() += 1,
            }
        }
        let total_events = events.iter().map(|p| p.len() as u64).sum();
        Plan {
            events,
            poison,
            newest,
            steps,
            total_events,
        }
    }

    fn is_poison(&self, code: &str) -> bool {
        self.poison.as_deref() == Some(code)
    }

    /// The poison dossier's progress steps go to the dead letters with it (an operator fixes
    /// the dossier and replays them together).
    fn poison_steps(&self) -> usize {
        self.poison
            .as_ref()
            .and_then(|k| self.steps.get(k).copied())
            .unwrap_or(0)
    }
}

/// The one-stop simulator's senders: one task per dossier (64 at a time), each posting its
/// events in order and retrying until 202, as the sender's side of the contract says.
struct Sending {
    accepted: Arc<AtomicU64>,
    senders: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl Sending {
    fn start(plan: Vec<Vec<Event>>, world: &World) -> Sending {
        let accepted = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::new();
        let url = format!("http://{}/in/onestop", world.running.inbound_addr);
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut senders = tokio::task::JoinSet::new();
        for events in plan {
            let (client, url, accepted, sem) =
                (client.clone(), url.clone(), accepted.clone(), sem.clone());
            senders.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore");
                for e in events {
                    send_until_accepted(&client, &url, &e, &accepted).await;
                }
            });
        }
        Sending {
            accepted,
            senders: std::sync::Mutex::new(senders),
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Whether every sender finished (reaps the finished ones).
    fn done(&self) -> bool {
        let mut s = self.senders.lock().expect("senders");
        while s.try_join_next().is_some() {}
        s.is_empty()
    }
}

/// Post one event until it is accepted (202), refused (4xx: printed) or 100 tries failed.
async fn send_until_accepted(client: &reqwest::Client, url: &str, e: &Event, accepted: &AtomicU64) {
    let mut body = serde_json::json!({"kind": e.kind, "key": e.key, "payload": e.payload});
    if let Some(v) = e.version {
        body["version"] = v.into();
    }
    for _ in 0..100 {
        match client.post(url).json(&body).send().await {
            Ok(r) if r.status().as_u16() == 202 => {
                accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                eprintln!("refused {}: HTTP {}", e.key, r.status());
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The end state, checked against the portal sandbox's records.
struct Summary {
    elapsed: Duration,
    accepted: u64,
    /// Dossiers (but the poison one) whose newest version is not the portal's latest.
    missing: Vec<String>,
    steps_missing: usize,
    /// Versions the portal accepted after a newer one of the same dossier.
    older_after_newer: usize,
    poison_dead: usize,
    /// Whether a poison dossier was sent (then it must be in the dead letters).
    poison_sent: bool,
    total_events: u64,
    records: gw_contract_tests::portal::Records,
}

impl Summary {
    async fn measure(world: &World, plan: &Plan, sending: &Sending, elapsed: Duration) -> Summary {
        let records = world.portal.records();
        let missing = plan
            .newest
            .iter()
            .filter(|(code, _)| !plan.is_poison(code))
            .filter(|(code, v)| records.latest(code).and_then(version_marker) != Some(**v))
            .map(|(code, _)| code.clone())
            .collect();
        let steps_missing = plan
            .steps
            .iter()
            .filter(|(code, _)| !plan.is_poison(code))
            .map(|(code, n)| {
                n.saturating_sub(records.progress.get(code).map(Vec::len).unwrap_or(0))
            })
            .sum();
        let older_after_newer = records
            .ordering_violations(|_, item| version_marker(item))
            .len();
        let poison_dead = match &plan.poison {
            Some(k) => world
                .running
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
        Summary {
            elapsed,
            accepted: sending.accepted(),
            missing,
            steps_missing,
            older_after_newer,
            poison_dead,
            poison_sent: plan.poison.is_some(),
            total_events: plan.total_events,
            records,
        }
    }

    /// The demo's promise: every event accepted, every dossier in its newest version at the
    /// portal, every step there, nothing older after newer, the poison dossier dead-lettered.
    fn ok(&self) -> bool {
        self.accepted == self.total_events
            && self.missing.is_empty()
            && self.steps_missing == 0
            && self.older_after_newer == 0
            && (!self.poison_sent || self.poison_dead > 0)
    }

    fn print(&self, world: &World, plan: &Plan) {
        let m = &world.running.engine.metrics;
        let records = &self.records;
        let acc = self.accepted;
        println!();
        println!(
            "summary ({:.1}s, {:.0} events/s)",
            self.elapsed.as_secs_f64(),
            acc as f64 / self.elapsed.as_secs_f64().max(0.001)
        );
        println!("  dossiers               {}", plan.newest.len());
        println!(
            "  events sent            {} ({} snapshots, {} progress steps)",
            plan.total_events,
            plan.newest.values().sum::<i64>(),
            plan.steps.values().sum::<usize>()
        );
        println!("  accepted               {acc}");
        println!("  delivered              {}", m.outcome_total("delivered"));
        println!("  superseded / coalesced {}", m.outcome_total("superseded"));
        println!("  retried                {}", m.outcome_total("retried"));
        println!(
            "  dead-lettered          {}{}",
            m.outcome_total("dead_lettered"),
            if plan.poison.is_some() {
                format!(
                    " (the poison dossier: {} dead letter{}, its snapshots and its {} progress step{})",
                    self.poison_dead,
                    if self.poison_dead == 1 { "" } else { "s" },
                    plan.poison_steps(),
                    if plan.poison_steps() == 1 { "" } else { "s" },
                )
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
            records.dossiers.values().map(Vec::len).sum::<usize>(),
            records.logins,
            records.refused.len(),
            records.refused.iter().filter(|r| r.injected).count()
        );
        println!("  dossiers not newest    {}", self.missing.len());
        println!("  progress steps missing {}", self.steps_missing);
        println!("  older-after-newer      {}", self.older_after_newer);
        println!(
            "  result                 {}",
            if self.ok() {
                "OK: every dossier reached the portal in its newest version"
            } else {
                "FAILED"
            }
        );
        if !self.missing.is_empty() {
            println!(
                "  first missing: {:?}",
                self.missing.iter().take(5).collect::<Vec<_>>()
            );
        }
    }
}

/// The service-quality index after the run: the payment platform's notices for some
/// fee-bearing dossiers (the demo stands in for the payment platform: `payment.settled`
/// through the engine, as the payment service publishes it), then, once the index consumed
/// every event, the province's indicators this month so far and the three communes with the
/// lowest on-time rate.
async fn print_indicators(world: &World, plan: &Plan) {
    use crate::indicators::{history, Level};
    let engine = &world.running.engine;
    let mut paid = 0u64;
    for (i, dossier) in plan.events.iter().enumerate() {
        let fee_bearing = dossier
            .iter()
            .rev()
            .find(|e| e.version.is_some())
            .is_some_and(|e| {
                e.payload["fees"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x["amount_vnd"].as_i64() > Some(0)))
            });
        if !fee_bearing || i % 5 > 1 {
            continue;
        }
        let key = dossier[0].key.clone();
        let notice = crate::model::envelope::Envelope::new(
            crate::model::events::EventKind::PaymentSettled.as_str(),
            key.clone(),
            "payments",
            serde_json::json!({"dossier_code": key, "status": "paid"}),
        );
        if engine.publish(&notice).await.is_ok() {
            paid += 1;
        }
    }
    let store = match gw_store::indicators::open(&world.store_url).await {
        Ok(s) => s,
        Err(e) => {
            println!("service-quality index: the store cannot be read: {e}");
            return;
        }
    };
    let expected = plan.total_events + paid;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied = store
            .position(history::CONSUMER)
            .await
            .ok()
            .flatten()
            .map_or(0, |p| p.applied as u64);
        if applied >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = crate::model::time::now_ms();
    let month = crate::jobs::indicators::month_of(now);
    let pct = |v: Option<f64>| v.map_or_else(|| "N/A".to_string(), |x| format!("{x:.2} %"));
    println!();
    println!("service-quality index (Decision 766), {month} so far");
    match history::report(
        store.as_ref(),
        &world.rules,
        &month,
        Level::Province,
        now,
        "dvcqg",
    )
    .await
    {
        Ok(r) => {
            if let Some(p) = r.rows.first() {
                let i = &p.indicators;
                println!(
                    "  on time (2.1)            {} ({}/{}), {} points of 20",
                    pct(i.on_time.percent),
                    i.on_time.num,
                    i.on_time.den,
                    i.on_time_points
                        .map_or_else(|| "N/A".into(), |x| format!("{x:.2}"))
                );
                println!("  online (3.3)             {}", pct(i.online.percent));
                println!(
                    "  paid online (3.6)        {}",
                    pct(i.online_payment.percent)
                );
                println!(
                    "  electronic result (4.1)  {}",
                    pct(i.electronic_result.percent)
                );
                println!("  digitised (4.2)          {}", pct(i.digitised.percent));
                println!("  synced (1.4)             {}", pct(i.synced.percent));
                println!(
                    "  processing time (2.2)    {} working days on average",
                    i.avg_processing_days
                        .map_or_else(|| "N/A".into(), |x| format!("{x:.2}"))
                );
            } else {
                println!("  no dossier received this month yet");
            }
        }
        Err(e) => println!("  cannot compute: {e}"),
    }
    if let Ok(r) = history::report(
        store.as_ref(),
        &world.rules,
        &month,
        Level::Unit,
        now,
        "dvcqg",
    )
    .await
    {
        let lowest = history::lowest(&r, 3, world.lowest_min_dossiers);
        println!(
            "  lowest on-time rate (communes with at least {} dossiers):",
            lowest.min_dossiers
        );
        for row in &lowest.units {
            println!(
                "    {:<22} {:>7.2} % ({}/{})",
                row.key,
                row.indicators.on_time.percent.unwrap_or_default(),
                row.indicators.on_time.num,
                row.indicators.on_time.den
            );
        }
        if lowest.units.is_empty() {
            println!("    none has enough dossiers yet");
        }
        if !lowest.too_few.is_empty() {
            println!("    not ranked, too few dossiers: {}", lowest.too_few.len());
        }
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
