//! `gateway bench`: in one run on one machine, the raw limits beside the gateway end to end.
//!
//! - **Raw broker**: a lapin publisher with confirms (1,000 in flight), then a consumer with
//!   one awaited ack per message, then one with `multiple` acks every 100; persistent 1 KiB
//!   messages on a fresh quorum queue (the queue type the gateway declares). The approach of
//!   `crates/broker/examples/amqp_bench.rs`, reduced to the three raw figures.
//! - **Raw signing**: OpenSSL signatures per second on one core with the example keys
//!   (`certs-example/sign-rsa.key`, RSA-2048 PKCS#1 v1.5 SHA-256; `sign-ec.key`, ECDSA P-256),
//!   as `crates/crypto/examples/sign_bench.rs` measures them.
//! - **Gateway end to end**, in this process: dossier snapshots (from `src/simulator.rs`, one
//!   per dossier, so nothing coalesces) are published straight into the route's queue before
//!   the consumers start; then the route runtime consumes, translates to the portal's format,
//!   signs (`jws-detached`, ES256 or RS256), POSTs to the portal sandbox with the `dvcqg`
//!   connector (plain HTTP with keep-alive on loopback: the sandbox serves no TLS), records the
//!   ledger and acks. Throughput = events ÷ time to settle them all; CPU = this process's user +
//!   system time (the sandbox runs in it too, and shares the cores, as the issue says).
//! - **Latency** at half the measured peak: events are published one by one at that rate;
//!   the figure is from the publish being confirmed (the event waiting in the queue) to the
//!   outcome being recorded in the ledger (the ack follows at once). Completions are paired
//!   with publishes in order (k-th confirmed ↔ k-th settled), exact for a FIFO queue, and seen
//!   by a poller every 100 µs.
//! - **Peak RSS with a backlog**: the gateway runs as a child process (`gateway run`) with
//!   `--backlog` events waiting in its queue (default 100,000, not the issue's 1,000,000, so
//!   the run ends in minutes here); its VmHWM is read from `/proc/PID/status`.
//!
//! Everything is bounded in count and time, on loopback; the RabbitMQ queues and PostgreSQL
//! schemas it creates are deleted at the end, the embedded data directories removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gw_broker::Message;
use gw_contract_tests::portal::{Portal, PortalConfig};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use tokio_util::sync::CancellationToken;

mod drain;
mod scale;

use crate::metrics::Metrics;
use crate::model::envelope::Envelope;
use crate::runtime::{message_for, Engine};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Messages per raw broker phase (publish, consume with per-message acks, with batched acks).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Events per gateway end-to-end throughput run.
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Events waiting in the queue while the peak RSS of a `gateway run` child is measured
    /// (the issue's goal names 1,000,000; the default keeps the run to minutes).
    #[arg(long, default_value_t = 100_000)]
    pub backlog: usize,
    /// How long the child runs against the backlog, seconds.
    #[arg(long, default_value_t = 15)]
    pub backlog_secs: u64,
    /// Backends: all (RabbitMQ + PostgreSQL when they answer, and embedded), rabbit-pg, embedded.
    #[arg(long, default_value = "all")]
    pub backends: String,
    /// Signing on the dvcqg adapter: all, ecdsa, rsa.
    #[arg(long, default_value = "all")]
    pub signing: String,
    /// Seconds of each raw signing measurement.
    #[arg(long, default_value_t = 2.0)]
    pub sign_secs: f64,
    /// Seconds of publishing at half the peak rate for the latency figures.
    #[arg(long, default_value_t = 5.0)]
    pub latency_secs: f64,
    /// RabbitMQ URL (user, no password); the password from GW_BENCH_AMQP_PASSWORD, default guest.
    #[arg(long, default_value = "amqp://guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// PostgreSQL URL (a `?schema=` is added per run).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Directory of the example keys (sign-rsa.*, sign-ec.*).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/certs-example"))]
    pub certs: PathBuf,
    /// Give up on one end-to-end run after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run only the backlog-drain scenario (see `src/bench/drain.rs`).
    #[arg(long)]
    pub drain: bool,
    /// Drain: events queued during the portal outage.
    #[arg(long, default_value_t = 200_000)]
    pub drain_events: usize,
    /// Drain: the portal's call quota (calls a second), enforced by the sandbox and configured
    /// on the gateway's adapter.
    #[arg(long, default_value_t = 50.0)]
    pub drain_rate: f64,
    /// Drain: the sandbox's burst allowance.
    #[arg(long, default_value_t = 5)]
    pub drain_burst: u32,
    /// Drain: seconds the outage lasts after the last event was queued.
    #[arg(long, default_value_t = 10)]
    pub drain_outage_secs: u64,
    /// Tiny counts, embedded only (the smoke test).
    #[arg(long)]
    pub smoke: bool,
    /// Which parts to run, comma-separated: raw (broker), sign, e2e (with latency), backlog
    /// (peak RSS), evidence (the log's cost), scale (one and two `gateway run` instances on
    /// RabbitMQ + PostgreSQL; not in the default list). Ratios and goals are printed from what
    /// ran.
    #[arg(long, default_value = "raw,sign,e2e,backlog,evidence")]
    pub phases: String,
    /// Lanes of the benchmarked route (`routes.concurrency`): dossiers handled at once per
    /// queue. Batches to the portal and merged ledger writes grow with it.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Scale phase: partitions (queues) of the benchmarked route, shared by the instances.
    #[arg(long, default_value_t = 4)]
    pub scale_partitions: u16,
}

impl BenchArgs {
    fn phase(&self, name: &str) -> bool {
        self.phases.split(',').any(|p| p.trim() == name)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    RabbitPg,
    Embedded,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::RabbitPg => "RabbitMQ+PostgreSQL",
            Backend::Embedded => "embedded (SQLite)",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sig {
    Ecdsa,
    Rsa,
}

impl Sig {
    fn label(self) -> &'static str {
        match self {
            Sig::Ecdsa => "ES256 jws-detached",
            Sig::Rsa => "RS256 jws-detached",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Sig::Ecdsa => "sign-ec",
            Sig::Rsa => "sign-rsa",
        }
    }
}

const WINDOW: usize = 1000;
const PREFETCH: u16 = 1000;
const ACK_EVERY: usize = 100;
const CHUNK: usize = 1000;

struct RawBroker {
    publish: f64,
    ack_each: f64,
    ack_batched: f64,
}

struct E2e {
    backend: Backend,
    sig: Sig,
    rate: f64,
    /// CPU seconds per 1,000 events of the gateway (the process minus the sandbox's thread).
    cpu_per_1k: f64,
    /// …and of the portal sandbox, on its own thread in this process.
    sandbox_cpu_per_1k: f64,
    /// …and of the local PostgreSQL and RabbitMQ servers (their processes on this machine;
    /// on the embedded backend, which uses neither, only their background work shows).
    pg_cpu_per_1k: f64,
    mq_cpu_per_1k: f64,
    /// Events per portal sync call (the dvcqg connector batches; one signature per call).
    per_call: f64,
    lat: Option<Latency>,
}

struct Latency {
    rate: f64,
    n: usize,
    p50: f64,
    p99: f64,
    p999: f64,
}

struct Backlog {
    backend: Backend,
    hwm_kib: u64,
    secs: f64,
}

/// Insert the password from GW_BENCH_AMQP_PASSWORD (default `guest`) into an `amqp://user@host` URL.
fn amqp_with_password(url: &str) -> String {
    let pw = std::env::var("GW_BENCH_AMQP_PASSWORD").unwrap_or_else(|_| "guest".into());
    match url.strip_prefix("amqp://").and_then(|r| r.split_once('@')) {
        Some((user, host)) if !user.contains(':') => format!("amqp://{user}:{pw}@{host}"),
        _ => url.to_string(),
    }
}

async fn answers(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// This process's user + system CPU seconds (`/proc/self/stat`, the figures getrusage sums).
fn cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat")
}

/// User + system CPU seconds of one thread of this process (`/proc/self/task/TID/stat`).
fn thread_cpu_secs(tid: Option<&str>) -> f64 {
    tid.map_or(0.0, |t| stat_cpu_secs(&format!("/proc/self/task/{t}/stat")))
}

/// The portal sandbox on a thread of its own (a current-thread runtime), so that the CPU it
/// spends can be told apart from the gateway's: both run in this process. Returns the sandbox
/// and its thread id. The thread lives as long as the process.
async fn start_portal() -> std::io::Result<(Portal, Option<String>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portal-sandbox".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let tid = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                let started = Portal::start(0, PortalConfig::default()).await;
                let ok = started.is_ok();
                let _ = tx.send(started.map(|p| (p, tid)));
                if ok {
                    std::future::pending::<()>().await;
                }
            });
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the sandbox thread ended"))?
}

/// User + system CPU seconds of every process of this machine whose command name is `comm`
/// (`postgres`, `beam.smp`: the servers the gateway uses, when they run locally), by pid.
fn processes_cpu(comm: &str) -> BTreeMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (name.trim_end() == comm)
                .then(|| (pid, stat_cpu_secs(&e.path().join("stat").to_string_lossy())))
        })
        .collect()
}

/// CPU seconds the processes of `now` spent since `before` (a process that ended in between,
/// such as a `rabbitmqctl` run, is left out rather than counted negative).
fn cpu_since(before: &BTreeMap<u32, f64>, now: &BTreeMap<u32, f64>) -> f64 {
    now.iter()
        .map(|(pid, secs)| (secs - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

fn stat_cpu_secs(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which ends with ')'): state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14 → index 11 after the state (field 3 → index 0).
    (tick(11) + tick(12)) / 100.0
}

fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---- raw broker ----

async fn raw_publish(ch: &Channel, queue: &str, n: usize, body: &[u8]) -> Result<Duration, String> {
    let t = Instant::now();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = Vec::with_capacity(WINDOW);
    for i in 0..n {
        let c = ch
            .basic_publish(
                "gw.work".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                props.clone(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        pending.push(c);
        if pending.len() == WINDOW || i + 1 == n {
            for c in pending.drain(..) {
                if !c.await.map_err(|e| format!("confirm: {e}"))?.is_ack() {
                    return Err("publish nacked".into());
                }
            }
        }
    }
    Ok(t.elapsed())
}

async fn raw_consume(
    conn: &Connection,
    queue: &str,
    n: usize,
    batched: bool,
) -> Result<Duration, String> {
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    for i in 1..=n {
        let d = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Ok(Some(Ok(d))) => d,
            _ => return Err(format!("consume: no delivery {i} of {n}")),
        };
        if !batched {
            d.ack(BasicAckOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        } else if i % ACK_EVERY == 0 || i == n {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let elapsed = t.elapsed();
    // On a quorum queue the cancel is ordered after the settles: once confirmed, every ack
    // was applied.
    let _ = ch
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    let _ = ch.close(200, "bench".into()).await;
    Ok(elapsed)
}

async fn raw_broker(url: &str, n: usize) -> Result<RawBroker, String> {
    use gw_broker::amqp::{AmqpBroker, AmqpOptions};
    use gw_broker::{Broker, QueueSpec};
    let queue = format!("gw.bench.raw.{}", uuid::Uuid::now_v7().simple());
    let broker = AmqpBroker::connect(url, AmqpOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    broker
        .declare(&[QueueSpec {
            name: queue.clone(),
            delivery_limit: 10,
        }])
        .await
        .map_err(|e| e.to_string())?;
    let body = vec![b'x'; 1024];
    let result = async {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
        let pch = conn.create_channel().await.map_err(|e| e.to_string())?;
        pch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let p = raw_publish(&pch, &queue, n, &body).await?;
        let c1 = raw_consume(&conn, &queue, n, false).await?;
        raw_publish(&pch, &queue, n, &body).await?;
        let c2 = raw_consume(&conn, &queue, n, true).await?;
        let _ = conn.close(200, "bench done".into()).await;
        let r = |d: Duration| n as f64 / d.as_secs_f64();
        Ok(RawBroker {
            publish: r(p),
            ack_each: r(c1),
            ack_batched: r(c2),
        })
    }
    .await;
    let _ = broker.delete_queue(&queue).await;
    broker.close().await;
    result
}

// ---- raw signing ----

fn load_key(certs: &Path, name: &str) -> Result<PKey<Private>, String> {
    let path = certs.join(format!("{name}.key"));
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    PKey::private_key_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Signatures per second on this thread (one core): SHA-256 over a 32-byte input.
fn raw_sign_rate(key: &PKey<Private>, secs: f64) -> f64 {
    let input = [0x5au8; 32];
    let sign = || {
        let mut s = Signer::new(MessageDigest::sha256(), key).expect("signer");
        s.update(&input).expect("update");
        std::hint::black_box(s.sign_to_vec().expect("sign"));
    };
    for _ in 0..3 {
        sign();
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        sign();
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

// ---- gateway end to end ----

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Setup {
    backend: Backend,
    sig: Sig,
    route: String,
    dir: TempDir,
    text: String,
}

fn setup(args: &BenchArgs, backend: Backend, sig: Sig, portal: &Portal) -> Setup {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let route = format!("bench_{}", &id[id.len() - 12..]);
    let dir = TempDir(std::env::temp_dir().join(format!("gateway-bench-{id}")));
    let _ = std::fs::create_dir_all(&dir.0);
    let (broker, store) = match backend {
        Backend::Embedded => (String::new(), String::new()),
        Backend::RabbitPg => (
            format!(
                "url = \"{}\"\npassword = {{ env = \"GW_BENCH_AMQP_PASSWORD\" }}\n",
                args.amqp_url
            ),
            format!("url = \"{}?schema={route}\"\n", args.pg_url),
        ),
    };
    let certs = args.certs.display();
    let cfg = portal.config();
    let text = format!(
        r#"
[gateway]
instance = "bench"
data_dir = "{data}"
shutdown_grace = "5s"

[broker]
{broker}
prefetch = {prefetch}

[store]
{store}

[inbound]
listen = "127.0.0.1:0"

[ops]
listen = "127.0.0.1:0"

[retry]
initial = "100ms"
max_delay = "2s"
max_elapsed = "10m"

[sources.onestop]
kinds = ["dossier.*"]

[signing.bench]
scheme = "jws-detached"
key = "{certs}/{key}.key"
certificate = "{certs}/{key}.pem"
key_id = "province-bench"

[adapters.dvcqg]
connector = "dvcqg"
url = "{integration}"
timeout = "5s"
signing = "bench"

[adapters.dvcqg.dvcqg]
sharing_url = "{sharing}"
unit_code = "{unit}"
auth = "session"
username = "{user}"
password = {{ env = "GATEWAY_BENCH_PORTAL_PASSWORD" }}

[[routes]]
name = "{route}"
from = "onestop"
kinds = ["dossier.*"]
to = "dvcqg"
concurrency = {concurrency}
"#,
        concurrency = args.concurrency,
        // Every lane can hold a delivery and the next one can be waiting.
        prefetch = (args.concurrency * 2).clamp(256, u16::MAX as usize),
        data = dir.0.display(),
        key = sig.key(),
        integration = portal.integration_url(),
        sharing = portal.sharing_url(),
        unit = cfg.units[0],
        user = cfg.username,
    );
    Setup {
        backend,
        sig,
        route,
        dir,
        text,
    }
}

/// `n` first snapshots of fresh dossiers (sequence numbers from `first`), as broker messages
/// grouped by the route queue they hash to.
fn messages(engine: &Engine, unit: &str, first: usize, n: usize) -> BTreeMap<String, Vec<Message>> {
    let mut rng = rand::rng();
    let route = &engine.routes[0];
    let mut out: BTreeMap<String, Vec<Message>> = BTreeMap::new();
    for seq in first..first + n {
        let e = crate::lab::simulator::dossier_events(&mut rng, unit, seq, 1)
            .into_iter()
            .next()
            .expect("a dossier has a snapshot");
        let mut env = Envelope::new(e.kind, e.key, "onestop", e.payload);
        env.version = e.version;
        out.entry(route.queue_for_key(&env.key))
            .or_default()
            .push(message_for(&env));
    }
    out
}

async fn preload(engine: &Engine, msgs: BTreeMap<String, Vec<Message>>) -> Result<(), String> {
    for (queue, mut all) in msgs {
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(CHUNK));
            engine
                .broker
                .publish_batch(&queue, std::mem::replace(&mut all, rest))
                .await
                .map_err(|e| format!("preload: {e}"))?;
        }
    }
    Ok(())
}

fn settled(m: &Metrics) -> u64 {
    m.outcome_total("delivered") + m.outcome_total("superseded") + m.outcome_total("dead_lettered")
}

async fn open_engine(s: &Setup) -> Result<(Arc<Engine>, Arc<Metrics>), String> {
    let loaded =
        crate::config::parse(&s.text, "<bench>", PathBuf::from(".")).map_err(|e| e.to_string())?;
    let (broker, store) = crate::app::open_backends(&loaded)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new());
    let engine = crate::app::build_engine(&loaded, broker, store, metrics.clone())
        .map_err(|e| e.to_string())?;
    engine.declare().await.map_err(|e| e.to_string())?;
    Ok((Arc::new(engine), metrics))
}

/// Remove what a run created: its RabbitMQ queues (and their dead-letter queues) and its
/// PostgreSQL schema. The embedded data directory goes with `Setup::dir`.
async fn cleanup(args: &BenchArgs, s: &Setup, queues: &[String]) {
    if s.backend != Backend::RabbitPg {
        return;
    }
    use gw_broker::amqp::{AmqpBroker, AmqpOptions};
    use gw_broker::Broker;
    match AmqpBroker::connect(&amqp_with_password(&args.amqp_url), AmqpOptions::default()).await {
        Ok(b) => {
            for q in queues {
                if let Err(e) = b.delete_queue(q).await {
                    eprintln!("note: cannot delete queue {q}: {e}");
                }
            }
            b.close().await;
        }
        Err(e) => eprintln!("note: cannot connect to delete queues {queues:?}: {e}"),
    }
    let conninfo = args.pg_url.clone();
    match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            let task = tokio::spawn(conn);
            if let Err(e) = client
                .batch_execute(&format!(
                    "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    s.route
                ))
                .await
            {
                eprintln!("note: cannot drop schema {}: {e}", s.route);
            }
            drop(client);
            let _ = task.await;
        }
        Err(e) => eprintln!("note: cannot connect to drop schema {}: {e}", s.route),
    }
}

async fn wait_settled(m: &Metrics, target: u64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while settled(m) < target {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out: {} of {target} settled ({} retried)",
                settled(m),
                m.outcome_total("retried")
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

async fn e2e(
    args: &BenchArgs,
    s: &Setup,
    portal: &Portal,
    sandbox_tid: Option<&str>,
    first: &mut usize,
) -> Result<E2e, String> {
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
        let lat_rate = (rate / 2.0).max(1.0);
        let lat_n = ((lat_rate * args.latency_secs) as usize).max(10);
        let lat = latency(&engine, &metrics, &unit, *first, lat_n, lat_rate, timeout).await;
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

#[allow(clippy::too_many_arguments)]
async fn latency(
    engine: &Arc<Engine>,
    metrics: &Arc<Metrics>,
    unit: &str,
    first: usize,
    n: usize,
    rate: f64,
    timeout: Duration,
) -> Result<Latency, String> {
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
                failed = Some(e.to_string());
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            failed = Some(e.to_string());
        }
    }
    let r = wait_settled(metrics, base + n as u64, timeout).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    if let Some(e) = failed {
        return Err(format!("publish: {e}"));
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
async fn backlog_rss(
    args: &BenchArgs,
    s: &Setup,
    portal: &Portal,
    first: &mut usize,
) -> Result<Backlog, String> {
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
        std::fs::write(&file, &s.text).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the gateway child: {e}"))?;
        let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
        let t = Instant::now();
        let mut hwm = 0;
        while t.elapsed() < Duration::from_secs(args.backlog_secs) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("the gateway child exited early: {st}"));
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

fn goal(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "n/a",
    }
}

pub async fn run(mut args: BenchArgs) -> ExitCode {
    if args.smoke {
        args.messages = 100;
        args.events = 100;
        args.backlog = 300;
        args.backlog_secs = 2;
        // The scale phase needs RabbitMQ + PostgreSQL: `--backends rabbit-pg` is kept.
        if args.backends != "rabbit-pg" {
            args.backends = "embedded".into();
        }
        args.sign_secs = 0.2;
        args.latency_secs = 0.5;
        // The drain's time varies with the breaker's cool-downs and retry timers, and a
        // delivery whose settle was lost comes back only when its 60 s lease expires: the smoke
        // drain gets room for that (it checks what arrives, not how fast).
        args.timeout_secs = if args.drain { 240 } else { 60 };
        args.drain_events = 2_000;
        args.drain_rate = 100.0;
        args.drain_outage_secs = 1;
    }
    const PHASES: [&str; 6] = ["raw", "sign", "e2e", "backlog", "evidence", "scale"];
    if let Some(bad) = args
        .phases
        .split(',')
        .map(str::trim)
        .find(|p| !PHASES.contains(p))
    {
        eprintln!(
            "--phases: a comma-separated list of {}, not {bad:?}",
            PHASES.join(", ")
        );
        return ExitCode::from(2);
    }
    if args.concurrency == 0 {
        eprintln!("--concurrency: 1 or more");
        return ExitCode::from(2);
    }
    if args.scale_partitions == 0 {
        eprintln!("--scale-partitions: 1 or more");
        return ExitCode::from(2);
    }
    if std::env::var("GW_BENCH_AMQP_PASSWORD").is_err() {
        std::env::set_var("GW_BENCH_AMQP_PASSWORD", "guest");
    }
    let sigs: Vec<Sig> = match args.signing.as_str() {
        "all" => vec![Sig::Ecdsa, Sig::Rsa],
        "ecdsa" => vec![Sig::Ecdsa],
        "rsa" => vec![Sig::Rsa],
        other => {
            eprintln!("--signing: all, ecdsa or rsa, not {other}");
            return ExitCode::from(2);
        }
    };
    let want_rabbit = match args.backends.as_str() {
        "all" | "rabbit-pg" => true,
        "embedded" => false,
        other => {
            eprintln!("--backends: all, rabbit-pg or embedded, not {other}");
            return ExitCode::from(2);
        }
    };
    let mut backends = Vec::new();
    if want_rabbit {
        let amqp = answers("127.0.0.1:5672").await;
        let pg = answers("127.0.0.1:5432").await;
        if amqp && pg {
            backends.push(Backend::RabbitPg);
        } else {
            println!(
                "note: RabbitMQ ({}) or PostgreSQL ({}) does not answer on loopback: embedded only, no raw broker figures",
                if amqp { "up" } else { "down" },
                if pg { "up" } else { "down" }
            );
        }
    }
    if args.backends != "rabbit-pg" {
        backends.push(Backend::Embedded);
    }
    let amqp_url = amqp_with_password(&args.amqp_url);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "gateway bench: {cores} core(s); broker, portal sandbox and gateway share them; loopback only"
    );

    if args.drain {
        return run_drain(&args, &backends).await;
    }

    // Raw broker.
    println!();
    println!(
        "== raw broker (lapin, quorum queue, {} persistent 1 KiB messages per phase) ==",
        args.messages
    );
    let raw = if !args.phase("raw") {
        println!("  skipped (--phases)");
        None
    } else if backends.contains(&Backend::RabbitPg) {
        match raw_broker(&amqp_url, args.messages).await {
            Ok(r) => {
                println!(
                    "  publish with confirms ({WINDOW} in flight)     {:>9.0} msg/s",
                    r.publish
                );
                println!(
                    "  consume, each ack awaited (prefetch {PREFETCH})  {:>9.0} msg/s",
                    r.ack_each
                );
                println!(
                    "  consume, multiple ack every {ACK_EVERY}          {:>9.0} msg/s",
                    r.ack_batched
                );
                Some(r)
            }
            Err(e) => {
                println!("  failed: {e}");
                None
            }
        }
    } else {
        println!("  skipped (no RabbitMQ)");
        None
    };

    // Raw signing.
    println!();
    println!(
        "== raw signing (OpenSSL, one core, SHA-256 over 32 B, {:.1} s each) ==",
        args.sign_secs
    );
    let mut raw_sign = BTreeMap::new();
    let sign_phase: &[(Sig, &str)] = if args.phase("sign") {
        &[
            (Sig::Rsa, "RSA-2048 PKCS#1 v1.5"),
            (Sig::Ecdsa, "ECDSA P-256"),
        ]
    } else {
        println!("  skipped (--phases)");
        &[]
    };
    for &(sig, label) in sign_phase {
        match load_key(&args.certs, sig.key()) {
            Ok(k) => {
                let secs = args.sign_secs;
                let r = tokio::task::spawn_blocking(move || raw_sign_rate(&k, secs))
                    .await
                    .unwrap_or(0.0);
                println!("  {label:<22} ({}.key)  {r:>9.0} sig/s", sig.key());
                raw_sign.insert(sig.key(), r);
            }
            Err(e) => println!("  {label}: cannot load the key: {e}"),
        }
    }

    // Gateway end to end.
    let (portal, sandbox_tid) = match start_portal().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::env::set_var("GATEWAY_BENCH_PORTAL_PASSWORD", &portal.config().password);
    println!();
    println!(
        "== gateway end to end ({} events preloaded per run; dvcqg connector → portal sandbox, plain HTTP keep-alive on loopback) ==",
        args.events
    );
    println!(
        "  latency: publish confirmed → outcome in the ledger (ack follows), at half the peak rate;"
    );
    println!(
        "  ev/call: events per portal sync call (the connector batches; one signature per call)"
    );
    println!(
        "  CPU s/1k: CPU seconds per 1,000 events of the gateway (this process without the sandbox's thread), \
         the sandbox, PostgreSQL and RabbitMQ (all their local processes; others' load counts too); the lanes: {} (--concurrency)",
        args.concurrency
    );
    println!(
        "  {:<20} {:<19} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "backend",
        "signing",
        "msg/s",
        "gw CPU",
        "sbx CPU",
        "pg CPU",
        "mq CPU",
        "ev/call",
        "lat rate",
        "p50 ms",
        "p99 ms",
        "p99.9 ms"
    );
    let mut runs = Vec::new();
    let mut failures = 0;
    let e2e_backends: &[Backend] = if args.phase("e2e") { &backends } else { &[] };
    for &b in e2e_backends {
        for &sig in &sigs {
            let s = setup(&args, b, sig, &portal);
            // The sandbox's records (and dossiers) are cleared after each run.
            let mut first = 0usize;
            match e2e(&args, &s, &portal, sandbox_tid.as_deref(), &mut first).await {
                Ok(r) => {
                    let (lr, p50, p99, p999) = match &r.lat {
                        Some(l) => (
                            format!("{:.0}/s", l.rate),
                            format!("{:.2}", l.p50),
                            format!("{:.2}", l.p99),
                            format!("{:.2}", l.p999),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    println!(
                        "  {:<20} {:<19} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.1} {:>8} {:>8} {:>8} {:>8}",
                        b.label(),
                        sig.label(),
                        r.rate,
                        r.cpu_per_1k,
                        r.sandbox_cpu_per_1k,
                        r.pg_cpu_per_1k,
                        r.mq_cpu_per_1k,
                        r.per_call,
                        lr,
                        p50,
                        p99,
                        p999
                    );
                    runs.push(r);
                }
                Err(e) => {
                    failures += 1;
                    println!("  {:<20} {:<19} failed: {e}", b.label(), sig.label());
                }
            }
            portal.clear_records();
        }
    }
    let samples: Vec<String> = runs
        .iter()
        .filter_map(|r| r.lat.as_ref().map(|l| l.n.to_string()))
        .collect();
    println!(
        "  latency samples per run (in table order): {}",
        samples.join(", ")
    );

    // Backlog RSS.
    println!();
    println!(
        "== peak RSS of a `gateway run` child with {} events waiting in its queue (ES256; the goal names 1,000,000) ==",
        args.backlog
    );
    let mut backlogs = Vec::new();
    let backlog_backends: &[Backend] = if args.phase("backlog") {
        &backends
    } else {
        &[]
    };
    for &b in backlog_backends {
        let s = setup(&args, b, Sig::Ecdsa, &portal);
        let mut first = 0usize;
        match backlog_rss(&args, &s, &portal, &mut first).await {
            Ok(r) => {
                println!(
                    "  {:<20} VmHWM {:>7.1} MiB over {:.1} s of draining",
                    r.backend.label(),
                    r.hwm_kib as f64 / 1024.0,
                    r.secs
                );
                backlogs.push(r);
            }
            Err(e) => {
                failures += 1;
                println!("  {:<20} failed: {e}", b.label());
            }
        }
        portal.clear_records();
    }

    // The evidence log's cost: the same run with the log off, then in metadata mode.
    println!();
    println!(
        "== evidence log cost (ES256; {} events per run; the table above ran in metadata mode, the default) ==",
        args.events
    );
    let evidence_backends: &[Backend] = if args.phase("evidence") {
        &backends
    } else {
        &[]
    };
    for &b in evidence_backends {
        let mut rates = Vec::new();
        for mode in ["off", "metadata"] {
            let mut s = setup(&args, b, Sig::Ecdsa, &portal);
            s.text
                .push_str(&format!("\n[evidence]\nmode = \"{mode}\"\n"));
            let mut first = 0usize;
            match e2e(&args, &s, &portal, sandbox_tid.as_deref(), &mut first).await {
                Ok(r) => {
                    println!(
                        "  {:<20} evidence {mode:<8} {:>8.0} msg/s   CPU s/1k: gateway {:.3}, PostgreSQL {:.3}, RabbitMQ {:.3}",
                        b.label(),
                        r.rate,
                        r.cpu_per_1k,
                        r.pg_cpu_per_1k,
                        r.mq_cpu_per_1k
                    );
                    rates.push(r.rate)
                }
                Err(e) => {
                    failures += 1;
                    println!("  {:<20} evidence {mode}: failed: {e}", b.label());
                }
            }
            portal.clear_records();
        }
        if let [off, meta] = rates[..] {
            let cost = (1.0 - meta / off) * 100.0;
            println!(
                "  {:<20} off {off:>8.0} msg/s   metadata {meta:>8.0} msg/s   cost {cost:>5.1} % (goal < 10 %: {})",
                b.label(),
                goal(Some(cost < 10.0))
            );
        }
    }

    // Several instances.
    if args.phase("scale") {
        println!();
        println!(
            "== scale-out: 1 and 2 `gateway run` instances on RabbitMQ + PostgreSQL ({} events, {} partitions, ES256; latency at half the rate, publish confirmed → ledger) ==",
            args.events, args.scale_partitions
        );
        if backends.contains(&Backend::RabbitPg) {
            let mut rates = Vec::new();
            for n in [1, 2] {
                match scale::run(&args, &portal, n).await {
                    Ok(r) => {
                        scale::print(&r);
                        rates.push(r.rate);
                    }
                    Err(e) => {
                        failures += 1;
                        println!("  {n} instance(s): failed: {e}");
                    }
                }
                portal.clear_records();
            }
            if let [one, two] = rates[..] {
                println!(
                    "  ratio 2 instances ÷ 1: {:.2}  (single active consumer per partition: a second instance is mostly a hot standby)",
                    two / one
                );
            }
        } else {
            println!("  skipped (needs RabbitMQ and PostgreSQL: --backends rabbit-pg or all)");
        }
    }

    // Ratios and goals.
    let find = |b: Backend, s: Sig| runs.iter().find(|r| r.backend == b && r.sig == s);
    let main_backend = if backends.contains(&Backend::RabbitPg) {
        Backend::RabbitPg
    } else {
        Backend::Embedded
    };
    println!();
    println!("== ratios ==");
    let mut ecdsa_ratio = None;
    for &b in &backends {
        for &sig in &sigs {
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
    for &b in &backends {
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
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--drain`: the backlog-drain scenario on each backend.
async fn run_drain(args: &BenchArgs, backends: &[Backend]) -> ExitCode {
    let portal = match Portal::start(0, PortalConfig::default()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the portal sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::env::set_var("GATEWAY_BENCH_PORTAL_PASSWORD", &portal.config().password);
    let mut failed = false;
    for &b in backends {
        println!();
        println!(
            "== backlog drain on {} ({} events queued during a portal outage, then drained at {:.0} calls/s) ==",
            b.label(),
            args.drain_events,
            args.drain_rate
        );
        match drain::run(args, b, &portal).await {
            Ok(d) => drain::print(&d, args),
            Err(e) => {
                println!("  failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
