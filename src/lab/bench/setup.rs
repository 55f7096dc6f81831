//! One measurement's set-up and tear-down: the portal sandbox, the backends' data
//! directories, queues and schemas, the preloaded messages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_broker::Message;
use gw_contract_tests::portal::{Portal, PortalConfig};

use super::args::*;
use super::error::BenchError;
use crate::model::envelope::Envelope;
use crate::runtime::{message_for, Engine};
use crate::telemetry::metrics::Metrics;

pub(super) async fn answers(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The portal sandbox on a thread of its own (a current-thread runtime), so that the CPU it
/// spends can be told apart from the gateway's: both run in this process. Returns the sandbox
/// and its thread id. The thread lives as long as the process.
pub(super) async fn start_portal() -> std::io::Result<(Portal, Option<String>)> {
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

/// A temporary directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) struct Setup {
    pub(super) backend: Backend,
    pub(super) sig: Sig,
    pub(super) route: String,
    pub(super) dir: TempDir,
    pub(super) text: String,
}

pub(super) fn setup(args: &BenchArgs, backend: Backend, sig: Sig, portal: &Portal) -> Setup {
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
    let certs = args.certs();
    let certs = certs.display();
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
pub(super) fn messages(
    engine: &Engine,
    unit: &str,
    first: usize,
    n: usize,
) -> BTreeMap<String, Vec<Message>> {
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

pub(super) async fn preload(
    engine: &Engine,
    msgs: BTreeMap<String, Vec<Message>>,
) -> Result<(), BenchError> {
    for (queue, mut all) in msgs {
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(CHUNK));
            engine
                .broker
                .publish_batch(&queue, std::mem::replace(&mut all, rest))
                .await
                .map_err(BenchError::Preload)?;
        }
    }
    Ok(())
}

pub(super) fn settled(m: &Metrics) -> u64 {
    m.outcome_total("delivered") + m.outcome_total("superseded") + m.outcome_total("dead_lettered")
}

pub(super) async fn open_engine(s: &Setup) -> Result<(Arc<Engine>, Arc<Metrics>), BenchError> {
    let loaded = crate::config::parse(&s.text, "<bench>", PathBuf::from("."))?;
    let (broker, store) = crate::app::open_backends(&loaded)
        .await
        .map_err(BenchError::Backends)?;
    let metrics = Arc::new(Metrics::new());
    let engine = crate::app::build_engine(&loaded, broker, store, metrics.clone())
        .map_err(BenchError::Engine)?;
    engine.declare().await.map_err(BenchError::Declare)?;
    Ok((Arc::new(engine), metrics))
}

/// Remove what a run created: its RabbitMQ queues (and their dead-letter queues) and its
/// PostgreSQL schema. The embedded data directory goes with `Setup::dir`.
pub(super) async fn cleanup(args: &BenchArgs, s: &Setup, queues: &[String]) {
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

pub(super) async fn wait_settled(
    m: &Metrics,
    target: u64,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    while settled(m) < target {
        if Instant::now() > deadline {
            return Err(BenchError::NotSettled {
                settled: settled(m),
                target,
                retried: m.outcome_total("retried"),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
