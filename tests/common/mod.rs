//! Shared helpers of the gateway's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gateway::config::{self, Loaded};

/// Which broker and store a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite queue + SQLite store.
    Embedded,
    /// RabbitMQ + PostgreSQL on 127.0.0.1.
    RabbitPg,
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .is_ok()
}

/// Whether RabbitMQ and PostgreSQL answer. In CI (`CI=true`) their absence fails the test
/// loudly; elsewhere the test is skipped with a printed reason.
pub fn services_available(test: &str) -> bool {
    let rabbit = answers(5672);
    let pg = answers(5432);
    if rabbit && pg {
        return true;
    }
    let msg = format!("{test}: needs RabbitMQ on 127.0.0.1:5672 ({rabbit}) and PostgreSQL on 127.0.0.1:5432 ({pg})");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}: they must run in CI");
    }
    eprintln!("SKIPPED {msg}");
    false
}

/// A unique lowercase suffix for queue, route and schema names.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple()).to_lowercase()
}

/// The TOML of a one-route gateway that sends to `sink_url`.
pub fn config_text(
    backend: Backend,
    data_dir: &Path,
    route: &str,
    sink_url: &str,
    extra_retry: &str,
) -> String {
    let (broker, store) = match backend {
        Backend::Embedded => (String::new(), String::new()),
        Backend::RabbitPg => (
            "url = \"amqp://guest@127.0.0.1:5672/%2f\"\npassword = { env = \"GW_TEST_AMQP_PASSWORD\" }\n".to_string(),
            format!("url = \"postgres://postgres@127.0.0.1:5432/test?schema={route}\"\n"),
        ),
    };
    format!(
        r#"
[gateway]
instance = "test"
data_dir = "{data}"
shutdown_grace = "5s"

[broker]
{broker}
prefetch = 64
# The agencies' fan-out queues are per gateway: one per test.
agencies_fanout = "{route}"

[store]
{store}

[inbound]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[ops]
listen = "127.0.0.1:0"

# A cool-down on the scale of the quick test retries (the default is 30s).
[circuit]
open_for = "500ms"

[retry]
initial = "50ms"
max_delay = "300ms"
max_elapsed = "1h"
{extra_retry}

[sources.onestop]
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}
kinds = ["dossier.*"]

[adapters.sink]
connector = "http"
url = "{sink_url}"
timeout = "2s"

[[routes]]
name = "{route}"
from = "onestop"
kinds = ["dossier.*"]
to = "sink"
concurrency = 8
"#,
        data = data_dir.display()
    )
}

pub const TOKEN: &str = "test-source-token";

pub fn load(text: &str) -> Loaded {
    std::env::set_var("GW_TEST_AMQP_PASSWORD", "guest");
    std::env::set_var("GW_TEST_SOURCE_TOKEN", TOKEN);
    config::parse(text, "<test>", PathBuf::from("."))
        .unwrap_or_else(|e| panic!("test config must load:\n{e}"))
}

/// Poll `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POST an event to the inbound listener.
pub async fn post_event(
    client: &reqwest::Client,
    inbound: std::net::SocketAddr,
    key: &str,
    version: i64,
) -> reqwest::StatusCode {
    let body = serde_json::json!({"kind": "dossier.upserted", "key": key, "version": version, "payload": {"code": key, "version": version}});
    client
        .post(format!("http://{inbound}/in/onestop"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("inbound answers")
        .status()
}

/// Run the `gateway` binary (`run --config CONFIG`, the test's RabbitMQ password and source
/// token, `GATEWAY_LOG=log`); returns the child and the inbound base URL from its first line
/// ("gateway running: inbound http://127.0.0.1:PORT ops http://127.0.0.1:PORT"). The rest of
/// its stdout is drained on a thread.
pub fn spawn_gateway(config: &Path, log: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(config)
        .env("GW_TEST_AMQP_PASSWORD", "guest")
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .env("GATEWAY_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gateway binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .expect("the gateway prints its addresses")
        .expect("readable stdout");
    let inbound = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (child, inbound)
}

/// The RabbitMQ URL of the test configurations (`config_text`, `Backend::RabbitPg`).
pub const RABBIT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Deletes the RabbitMQ queues of a running gateway's routes (every partition and its
/// dead-letter queue) when dropped, pass or fail. Tests name their routes uniquely, so without
/// it every run leaves its queues behind (RabbitMQ here wedged under hundreds of leftover
/// quorum queues). On the embedded queue there is nothing to do (it lives in the test's
/// directory). Take it right after `app::start`: `let _queues = Queues::of(&running);`. When
/// dropped it first cancels that gateway (a no-op after its `shutdown`), so a gateway the test
/// left running does not declare the queues again once they are gone.
pub struct Queues {
    names: Vec<String>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Queues {
    pub fn of(running: &gateway::app::Running) -> Queues {
        let engine = &running.engine;
        let names = if engine.broker.kind() == "rabbitmq" {
            engine.routes.iter().flat_map(|r| r.queues()).collect()
        } else {
            Vec::new()
        };
        Queues {
            names,
            cancel: running.cancel.clone(),
        }
    }

    /// The queues (and their dead-letter queues) of the `[[routes]]` of `loaded`, for a
    /// gateway the test runs as a child process (`gateway run`): nothing to cancel here, the
    /// test stops its children before the guard drops.
    pub fn of_config(loaded: &gateway::config::Loaded) -> Queues {
        let broker = &loaded.config.broker;
        let names = match &broker.url {
            Some(url) if url.starts_with("amqp") => loaded
                .config
                .routes
                .iter()
                .flat_map(|r| {
                    (0..broker.partitions).map(|p| gateway::runtime::route::route_queue(&r.name, p))
                })
                .collect(),
            _ => Vec::new(),
        };
        Queues {
            names,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The queues it will delete.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.names);
        if queues.is_empty() {
            return;
        }
        self.cancel.cancel();
        // A fresh runtime on its own thread: the test's runtime may be shutting down, and a
        // drop inside it may not block on it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use gw_broker::amqp::{AmqpBroker, AmqpOptions};
                // The cancelled gateway's consumers stop first.
                tokio::time::sleep(Duration::from_millis(300)).await;
                use gw_broker::Broker as _;
                let Ok(Ok(b)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    AmqpBroker::connect(RABBIT_URL, AmqpOptions::default()),
                )
                .await
                else {
                    eprintln!("test queues not deleted: RabbitMQ does not answer");
                    return;
                };
                for q in queues {
                    if let Err(e) = b.delete_queue(&q).await {
                        eprintln!("test queue {q} not deleted: {e}");
                    }
                }
                b.close().await;
            });
        })
        .join();
    }
}
