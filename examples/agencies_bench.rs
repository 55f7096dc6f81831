//! Twenty push subscriptions, one of them dead and one answering in 2 s: do the healthy ones
//! keep their rate? Runs the whole gateway (`app::start`) with N agency subscriptions, each to a
//! strict agency sandbox of its own (verifying every Standard Webhooks signature), twice with
//! the same events: first with only the healthy ones (the baseline), then with the dead one (a
//! port nothing listens on) and the slow one added. Publishes `--events` dossier events (one
//! version each, distinct dossiers) through the engine, as the inbound edge does.
//!
//! Prints (never asserts), per subscription and phase: delivered, throughput (events/s from the
//! first publish to its last delivery), the largest lag seen (age of the oldest event it had
//! not received yet, sampled every 100 ms), then the healthy ones' rate with the bad ones
//! present ÷ without (the issue's goal: ≥ 0.90), and what one event's fan-out costs: what the
//! edge publishes per event (one message, to the agencies' fan-out, however many subscriptions
//! take it), how many times the gateway reads the event (the fan-out reads and decodes it
//! once; goal: 1) and the copies the fan-out hands to the subscriptions' queues.
//!
//! ```sh
//! cargo run --release --example agencies_bench                       # RabbitMQ + PostgreSQL
//! cargo run --release --example agencies_bench -- --events 2000 --subscriptions 20 --backend embedded
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gateway::app;
use gateway::model::envelope::Envelope;
use gw_contract_tests::agency::{AgencySandbox, Faults};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// One subscription's receiver.
enum Receiver {
    Healthy(AgencySandbox),
    Slow(AgencySandbox),
    /// A port nothing listens on: every push is refused at connect.
    Dead(String),
}

impl Receiver {
    fn url(&self) -> String {
        match self {
            Receiver::Healthy(s) | Receiver::Slow(s) => s.url(),
            Receiver::Dead(u) => u.clone(),
        }
    }
    fn accepted(&self) -> usize {
        match self {
            Receiver::Healthy(s) | Receiver::Slow(s) => s.accepted_count(),
            Receiver::Dead(_) => 0,
        }
    }
    fn label(&self) -> &'static str {
        match self {
            Receiver::Healthy(_) => "healthy",
            Receiver::Slow(_) => "slow 2s",
            Receiver::Dead(_) => "dead",
        }
    }
}

/// What one subscription did in one phase.
#[derive(Debug, Clone, Default)]
struct Figures {
    delivered: usize,
    done_secs: Option<f64>,
    max_lag_secs: f64,
}

struct Phase {
    figures: BTreeMap<String, (&'static str, Figures)>,
    publish_secs: f64,
    /// Broker messages the edge published per event (`Engine::publish`'s routes).
    edge_per_event: f64,
    /// Reads of the event by the fan-out per event (retries included).
    reads_per_event: f64,
    /// Copies the fan-out handed to the subscriptions' queues per event.
    copies_per_event: f64,
    wall_secs: f64,
}

fn config(
    backend: &str,
    data_dir: &std::path::Path,
    run: &str,
    subs: &[(String, String)],
    slow_ms: u64,
) -> String {
    let (broker, store) = match backend {
        "embedded" => (String::new(), String::new()),
        _ => (
            "url = \"amqp://guest@127.0.0.1:5672/%2f\"\npassword = { env = \"GW_BENCH_AMQP_PASSWORD\" }\n".to_string(),
            format!("url = \"postgres://postgres@127.0.0.1:5432/test?schema={run}\"\n"),
        ),
    };
    let mut text = format!(
        r#"
[gateway]
instance = "bench"
data_dir = "{data}"
shutdown_grace = "2s"

[broker]
{broker}
prefetch = 256
agencies_fanout = "{run}"

[store]
{store}

[inbound]
listen = "127.0.0.1:0"

[ops]
listen = "127.0.0.1:0"

[sources.onestop]
token = {{ env = "GW_BENCH_SOURCE_TOKEN" }}
kinds = ["dossier.*"]
"#,
        data = data_dir.display()
    );
    for (name, url) in subs {
        // The slow agency answers in `slow_ms`: a timeout above it, so it is slow, not failing.
        text.push_str(&format!(
            r#"
[subscriptions.{name}]
agency = "Agency {name}"
delivery = "push"
kinds = ["dossier.upserted"]
fields = ["code", "status", "procedure", "received_at", "due_at"]
[subscriptions.{name}.push]
url = "{url}"
secret = {{ env = "GW_BENCH_AGENCY_SECRET" }}
timeout = "{timeout}ms"
"#,
            timeout = slow_ms * 3
        ));
    }
    text
}

fn event(i: usize, run: &str) -> Envelope {
    let code = format!("000.00.01.H12-{run}-{i:06}");
    let mut e = Envelope::new(
        "dossier.upserted",
        code.clone(),
        "onestop",
        serde_json::json!({
            "code": code, "version": 1, "procedure_code": "1.001234",
            "summary": "Cấp giấy phép xây dựng", "received_at": "2026-01-05T08:00:00+07:00",
            "due_at": "2026-01-20T17:00:00+07:00", "status": "received",
            "handling_unit": "000.00.01.H12", "fees": [], "attachments": [], "progress": [],
            "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567"}
        }),
    );
    e.version = Some(1);
    e
}

async fn phase(
    backend: &str,
    healthy: usize,
    with_bad: bool,
    events: usize,
    slow_ms: u64,
    timeout: Duration,
) -> Phase {
    let run = format!("agb{}", uuid::Uuid::now_v7().simple())
        .chars()
        .take(24)
        .collect::<String>();
    let mut receivers: Vec<(String, Receiver)> = Vec::new();
    for i in 0..healthy {
        let s = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
        receivers.push((format!("{run}h{i:02}"), Receiver::Healthy(s)));
    }
    if with_bad {
        let slow = AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap();
        slow.set_faults(Faults {
            mode: "slow".into(),
            delay_ms: slow_ms,
            retry_after_secs: 0,
        });
        receivers.push((format!("{run}slow"), Receiver::Slow(slow)));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        receivers.push((
            format!("{run}dead"),
            Receiver::Dead(format!("http://127.0.0.1:{port}/hooks/gateway")),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let subs: Vec<(String, String)> = receivers
        .iter()
        .map(|(n, r)| (n.clone(), r.url()))
        .collect();
    let text = config(backend, dir.path(), &run, &subs, slow_ms);
    let loaded = gateway::config::parse(&text, "<agencies bench>", std::path::PathBuf::from("."))
        .unwrap_or_else(|e| panic!("bench config:\n{e}"));
    let mut running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("gateway starts");
    assert!(
        running.consuming().await,
        "every subscription's queue has a consumer"
    );
    let engine = running.engine.clone();

    let start = Instant::now();
    let published_at: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; events]));
    let copies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publisher = {
        let (published_at, copies, run) = (published_at.clone(), copies.clone(), run.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..events)
                .map(|i| {
                    let (engine, published_at, copies) =
                        (engine.clone(), published_at.clone(), copies.clone());
                    let e = event(i, &run);
                    async move {
                        let routes = engine.publish(&e).await.expect("published and confirmed");
                        copies.fetch_add(routes.len(), std::sync::atomic::Ordering::Relaxed);
                        published_at.lock().unwrap()[i] = Some(Instant::now());
                    }
                })
                .buffered(64)
                .collect::<Vec<_>>()
                .await;
            Instant::now()
        })
    };
    let mut figures: BTreeMap<String, (&'static str, Figures)> = receivers
        .iter()
        .map(|(n, r)| (n.clone(), (r.label(), Figures::default())))
        .collect();
    let mut publish_done: Option<Instant> = None;
    let mut publisher = Some(publisher);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(p) = publisher.as_ref() {
            if p.is_finished() {
                publish_done = Some(publisher.take().unwrap().await.unwrap());
            }
        }
        let now = Instant::now();
        let times = published_at.lock().unwrap().clone();
        let mut healthy_done = true;
        for (name, r) in &receivers {
            let f = &mut figures.get_mut(name).unwrap().1;
            let got = r.accepted().min(events);
            f.delivered = got;
            if got >= events {
                if f.done_secs.is_none() {
                    f.done_secs = Some((now - start).as_secs_f64());
                }
                continue;
            }
            if matches!(r, Receiver::Healthy(_)) {
                healthy_done = false;
            }
            // Events are published in order of their index, each dossier once: roughly, the
            // oldest one not received is the `got`-th published.
            if let Some(Some(t)) = times.get(got) {
                f.max_lag_secs = f.max_lag_secs.max((now - *t).as_secs_f64());
            }
        }
        if (healthy_done && publish_done.is_some()) || start.elapsed() > timeout {
            break;
        }
    }
    let wall_secs = start.elapsed().as_secs_f64();
    let (reads, fanned) = running
        .engine
        .fanout
        .as_ref()
        .map(|f| {
            (
                f.stats.read.load(std::sync::atomic::Ordering::Relaxed),
                f.stats.copies_total(),
            )
        })
        .unwrap_or_default();
    let publish_secs = publish_done
        .map(|t| (t - start).as_secs_f64())
        .unwrap_or(f64::NAN);
    running.shutdown().await;
    Phase {
        figures,
        publish_secs,
        edge_per_event: copies.load(std::sync::atomic::Ordering::Relaxed) as f64 / events as f64,
        reads_per_event: reads as f64 / events as f64,
        copies_per_event: fanned as f64 / events as f64,
        wall_secs,
    }
}

fn print(title: &str, p: &Phase, events: usize) {
    println!(
        "\n{title}: publish of {events} events took {:.2}s, phase {:.2}s",
        p.publish_secs, p.wall_secs
    );
    println!(
        "  {:<6} {:<8} {:>9} {:>12} {:>12}",
        "sub", "kind", "delivered", "events/s", "max lag s"
    );
    for (i, (_, (label, f))) in p.figures.iter().enumerate() {
        let rate = f
            .done_secs
            .map(|s| format!("{:.0}", events as f64 / s))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<6} {:<8} {:>9} {:>12} {:>12.2}",
            format!("#{i:02}"),
            label,
            f.delivered,
            rate,
            f.max_lag_secs
        );
    }
}

fn healthy_rates(p: &Phase, events: usize) -> Vec<f64> {
    p.figures
        .values()
        .filter(|(l, _)| *l == "healthy")
        .map(|(_, f)| f.done_secs.map(|s| events as f64 / s).unwrap_or(0.0))
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: usize = arg("--events", "1000").parse().expect("--events N");
    let subscriptions: usize = arg("--subscriptions", "20")
        .parse()
        .expect("--subscriptions N");
    let slow_ms: u64 = arg("--slow-ms", "2000").parse().expect("--slow-ms MS");
    let timeout = Duration::from_secs(
        arg("--timeout-secs", "600")
            .parse()
            .expect("--timeout-secs S"),
    );
    let backend = arg("--backend", "rabbit-pg");
    assert!(
        subscriptions >= 3,
        "--subscriptions: at least 3 (two bad ones and a healthy one)"
    );
    std::env::set_var(
        "GW_BENCH_AMQP_PASSWORD",
        std::env::var("GW_BENCH_AMQP_PASSWORD").unwrap_or_else(|_| "guest".into()),
    );
    std::env::set_var("GW_BENCH_SOURCE_TOKEN", "bench-source-token");
    std::env::set_var("GW_BENCH_AGENCY_SECRET", SECRET);
    let healthy = subscriptions - 2;
    println!(
        "agencies bench: {subscriptions} push subscriptions ({healthy} healthy, 1 answering in {slow_ms} ms, 1 dead), {events} events, backend {backend}"
    );
    let base = phase(&backend, healthy, false, events, slow_ms, timeout).await;
    print(
        &format!("baseline: the {healthy} healthy ones alone"),
        &base,
        events,
    );
    let full = phase(&backend, healthy, true, events, slow_ms, timeout).await;
    print(
        &format!("with the dead and the slow one: {subscriptions} subscriptions"),
        &full,
        events,
    );
    let (a, b) = (healthy_rates(&base, events), healthy_rates(&full, events));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("\nhealthy subscriptions, events/s per subscription:");
    println!(
        "  without the bad ones: mean {:.0}, slowest {:.0}",
        mean(&a),
        min(&a)
    );
    println!(
        "  with the bad ones:    mean {:.0}, slowest {:.0}",
        mean(&b),
        min(&b)
    );
    let ratio = mean(&b) / mean(&a);
    println!(
        "  ratio (with ÷ without): mean {:.3}, slowest {:.3}  goal ≥ 0.90: {}",
        ratio,
        min(&b) / min(&a),
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
    println!("\nfan-out of one event ({subscriptions} subscriptions; baseline {healthy}):");
    println!(
        "  published by the edge per event: {:.2} (baseline {:.2})",
        full.edge_per_event, base.edge_per_event
    );
    println!(
        "  reads of the event by the gateway (the fan-out) per event: {:.2} (baseline {:.2})  goal 1",
        full.reads_per_event, base.reads_per_event
    );
    println!(
        "  copies handed to subscription queues per event: {:.2} (baseline {:.2}); each is one subscription's delivery job",
        full.copies_per_event, base.copies_per_event
    );
}
