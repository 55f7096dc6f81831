//! The agencies' fan-out, on RabbitMQ + PostgreSQL and on the embedded queue + SQLite: the
//! edge publishes an event taken by several subscriptions once (to the fan-out's queue), the
//! fan-out hands each taking subscription (push and pull) its copy and none to one whose filter
//! does not take it; per-dossier order holds while copies fail to publish and across a restart,
//! a copy published twice is recognised by the subscription's ledger (never pushed twice), a
//! dead and a disabled subscription do not stall the others, and a message waiting in a
//! subscription's queue from before the fan-out is still delivered.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use gateway::app;
use gateway::model::envelope::Envelope;
use gateway::runtime::{message_for, Engine};
use gw_broker::{Broker, BrokerError, Consumer, Message, QueueSpec, QueueStats};
use gw_contract_tests::agency::{AgencySandbox, Faults, Records};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PROCEDURE: &str = "1.001234";

/// A broker that counts the publishes to each queue and refuses the first `n` publishes to
/// the queues starting with a prefix (a copy that fails to publish).
struct Flaky {
    inner: Arc<dyn Broker>,
    published: Mutex<BTreeMap<String, u64>>,
    fail: Mutex<(String, u32)>,
}

impl Flaky {
    fn new(inner: Arc<dyn Broker>, prefix: &str, n: u32) -> Arc<Self> {
        Arc::new(Flaky {
            inner,
            published: Mutex::new(BTreeMap::new()),
            fail: Mutex::new((prefix.to_string(), n)),
        })
    }
    /// Confirmed publishes to the queues whose name starts with `prefix`.
    fn published(&self, prefix: &str) -> u64 {
        self.published
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| q.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
    fn failures_left(&self) -> u32 {
        self.fail.lock().unwrap().1
    }
}

#[async_trait]
impl Broker for Flaky {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn declare(&self, queues: &[QueueSpec]) -> gw_broker::Result<()> {
        self.inner.declare(queues).await
    }
    async fn publish(&self, queue: &str, msg: Message) -> gw_broker::Result<()> {
        {
            let mut f = self.fail.lock().unwrap();
            if f.1 > 0 && queue.starts_with(&f.0) {
                f.1 -= 1;
                return Err(BrokerError::Nack {
                    queue: queue.to_string(),
                });
            }
        }
        self.inner.publish(queue, msg).await?;
        *self
            .published
            .lock()
            .unwrap()
            .entry(queue.to_string())
            .or_default() += 1;
        Ok(())
    }
    async fn consume(&self, queue: &str, prefetch: u16) -> gw_broker::Result<Box<dyn Consumer>> {
        self.inner.consume(queue, prefetch).await
    }
    async fn stats(&self, queue: &str) -> gw_broker::Result<QueueStats> {
        self.inner.stats(queue).await
    }
    fn orphans_queue(&self) -> Option<&str> {
        self.inner.orphans_queue()
    }
    async fn ready(&self) -> bool {
        self.inner.ready().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

fn event(key: &str, version: i64, procedure: &str) -> Envelope {
    let mut e = Envelope::new(
        "dossier.upserted",
        key.to_string(),
        "onestop",
        serde_json::json!({
            "code": key, "version": version, "procedure_code": procedure,
            "summary": "Cấp giấy phép xây dựng", "received_at": "2026-01-05T08:00:00+07:00",
            "due_at": "2026-01-20T17:00:00+07:00", "status": "in_processing",
            "handling_unit": "000.00.01.H12",
            "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567"}
        }),
    );
    e.version = Some(version);
    e
}

fn versions_of(r: &Records, key: &str) -> Vec<i64> {
    r.accepted
        .iter()
        .filter(|a| a.body["key"] == key)
        .map(|a| a.body["version"].as_i64().unwrap())
        .collect()
}

fn push(name: &str, url: &str, procedure: &str, retry: &str) -> String {
    format!(
        r#"
[subscriptions.{name}]
agency = "Agency {name}"
delivery = "push"
kinds = ["dossier.upserted"]
procedures = ["{procedure}"]
fields = ["code", "version", "status"]
[subscriptions.{name}.push]
url = "{url}"
secret = {{ env = "GW_T_FANOUT_SECRET" }}
retry = {retry}
"#
    )
}

/// The subscriptions' names.
struct Names {
    a: String,
    b: String,
    not_taking: String,
    dead: String,
    off: String,
    pull: String,
}

/// Build and start an engine over freshly opened backends, its broker wrapped to refuse the
/// first `fail` publishes to subscription `a`'s queues.
async fn start(
    loaded: &gateway::config::Loaded,
    names: &Names,
    fail: u32,
) -> (
    Arc<Engine>,
    Arc<Flaky>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (broker, store) = app::open_backends(loaded).await.unwrap();
    let flaky = Flaky::new(broker, &format!("gw.route.agency.{}.", names.a), fail);
    let metrics = Arc::new(gateway::telemetry::metrics::Metrics::new());
    let engine = Arc::new(app::build_engine(loaded, flaky.clone(), store, metrics).unwrap());
    engine.declare().await.unwrap();
    let cancel = CancellationToken::new();
    let run = {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        tokio::spawn(async move { engine.run(cancel).await.unwrap() })
    };
    (engine, flaky, cancel, run)
}

async fn stop(engine: Arc<Engine>, cancel: CancellationToken, run: tokio::task::JoinHandle<()>) {
    cancel.cancel();
    run.await.unwrap();
    engine.broker.close().await;
}

/// Publish `env` as the edge does; the routes named must be the configured route and, when a
/// subscription takes it, the fan-out, never a subscription's own route.
async fn publish(engine: &Engine, env: &Envelope, plain: &str, taken: bool) {
    let mut routes = engine.publish(env).await.expect("published and confirmed");
    routes.sort();
    let mut want = vec![plain.to_string()];
    if taken {
        want.push(engine.fanout.as_ref().expect("a fan-out").name.clone());
        want.sort();
    }
    assert_eq!(routes, want, "{}@{:?}", env.key, env.version);
}

fn in_order(r: &Records, keys: &[String], what: &str) {
    for k in keys {
        let v = versions_of(r, k);
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "{what} {k}: never older after newer: {v:?}"
        );
    }
}

async fn fanout_scenario(backend: Backend, test: &str) {
    if backend == Backend::RabbitPg && !services_available(test) {
        return;
    }
    std::env::set_var("GW_T_FANOUT_SECRET", SECRET);
    std::env::set_var("GW_TEST_FEED_TOKEN_FANOUT", "feed-token-fanout");
    let dir = tempfile::tempdir().unwrap();
    let sandbox = || async { AgencySandbox::start(0, &[SECRET], vec![]).await.unwrap() };
    let (sa, sb, sn, sdead, soff) = (
        sandbox().await,
        sandbox().await,
        sandbox().await,
        sandbox().await,
        sandbox().await,
    );
    sdead.set_faults(Faults {
        mode: "fail".into(),
        ..Default::default()
    });
    let names = Names {
        a: unique("fa"),
        b: unique("fb"),
        not_taking: unique("fn"),
        dead: unique("fdead"),
        off: unique("foff"),
        pull: unique("fpull"),
    };
    let route = unique("fanout");
    let plain = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    let quick = r#"["100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]"#;
    let mut text = config_text(backend, dir.path(), &route, &plain.url(), "")
        .replace("prefetch = 64", "prefetch = 64\npartitions = 2");
    text.push_str(&format!(
        r#"
[signing.feeds]
scheme = "jws-detached"
key = "certs-example/sign-ec.key"
certificate = "certs-example/sign-ec.pem"
key_id = "province-feeds"

[subscriptions.{pull}]
agency = "Pull agency"
delivery = "pull"
kinds = ["dossier.upserted"]
procedures = ["{PROCEDURE}"]
fields = ["code", "version"]
[subscriptions.{pull}.pull]
token = {{ env = "GW_TEST_FEED_TOKEN_FANOUT" }}
signing = "feeds"
"#,
        pull = names.pull
    ));
    text.push_str(&push(&names.a, &sa.url(), PROCEDURE, quick));
    text.push_str(&push(&names.b, &sb.url(), PROCEDURE, quick));
    text.push_str(&push(&names.not_taking, &sn.url(), "9.999", quick));
    text.push_str(&push(&names.dead, &sdead.url(), PROCEDURE, r#"["1h"]"#));
    text.push_str(&push(&names.off, &soff.url(), PROCEDURE, quick));
    let loaded = load(&text);

    // Two failed copies to `a`: the fan-out message is retried, and `b`, `dead`, `off` and
    // the feed get their copies twice (the second marked as a possible duplicate).
    let (engine, flaky, cancel, run) = start(&loaded, &names, 2).await;
    let off = engine
        .subscriptions
        .iter()
        .find(|s| s.name == names.off)
        .unwrap()
        .clone();
    off.disable("switched off by the test").await.unwrap();
    // Upgrade: a message the edge published to a subscription's own queue before the fan-out.
    let old = event("FAN-OLD", 1, PROCEDURE);
    let a_route = engine
        .routes
        .iter()
        .find(|r| r.name == format!("agency.{}", names.a))
        .unwrap()
        .clone();
    flaky
        .inner
        .publish(&a_route.queue_for_key(&old.key), message_for(&old))
        .await
        .unwrap();

    let keys: Vec<String> = (0..3).map(|i| format!("FAN-{i}")).collect();
    for v in 1..=4 {
        for k in &keys {
            publish(&engine, &event(k, v, PROCEDURE), &route, true).await;
        }
    }
    // Taken by no subscription: the configured route only, nothing on the fan-out.
    publish(&engine, &event("FAN-NONE", 1, "2.000001"), &route, false).await;
    let fanout_queues = format!("gw.route.agencies.{route}.");
    assert_eq!(
        engine.fanout.as_ref().unwrap().name,
        format!("agencies.{route}")
    );
    assert_eq!(
        flaky.published(&fanout_queues),
        12,
        "one message on the fan-out's queues per event taken, for all subscriptions"
    );

    let last_is = |s: &AgencySandbox, v: i64, with_old: bool| {
        let r = s.records();
        keys.iter().all(|k| versions_of(&r, k).last() == Some(&v))
            && (!with_old || versions_of(&r, "FAN-OLD") == vec![1])
    };
    eventually(
        Duration::from_secs(60),
        "a and b have every dossier's version 4 (a: the waiting message too)",
        || last_is(&sa, 4, true) && last_is(&sb, 4, false),
    )
    .await;
    assert_eq!(flaky.failures_left(), 0, "both copies to `a` failed once");
    let fanout = engine.fanout.clone().expect("subscriptions: a fan-out");
    eventually(
        Duration::from_secs(30),
        "the feed has the 12 events",
        || fanout.stats.copies(&names.pull) == 12,
    )
    .await;
    // The feed: every dossier up to version 4, in order, each event at most once (its route
    // may coalesce a superseded version, like a push's).
    let feed = engine.store.clone().feeds();
    let feed_versions = || async {
        let page = match feed.page(&names.pull, 0, 100).await.unwrap() {
            gw_store::feeds::PageAnswer::Page(p) => p,
            other => panic!("feed page: {other:?}"),
        };
        let mut ids = std::collections::BTreeSet::new();
        let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for e in &page.entries {
            assert!(
                ids.insert(e.entry.event_id.clone()),
                "an event twice in the feed"
            );
            let body: serde_json::Value = serde_json::from_slice(&e.entry.payload).unwrap();
            by_key
                .entry(e.entry.dossier.clone())
                .or_default()
                .push(body["version"].as_i64().unwrap());
        }
        by_key
    };
    let mut fed = BTreeMap::new();
    for _ in 0..300 {
        fed = feed_versions().await;
        if keys
            .iter()
            .all(|k| fed.get(k).and_then(|v| v.last()) == Some(&4))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in &keys {
        let v = fed.get(k).cloned().unwrap_or_default();
        assert_eq!(v.last(), Some(&4), "the feed has {k}'s version 4: {fed:?}");
        assert!(v.windows(2).all(|w| w[0] < w[1]), "feed {k}: {v:?}");
    }
    // Every copy counted once per subscription that takes it; none for the one that does not.
    for s in [&names.a, &names.b, &names.dead, &names.off, &names.pull] {
        assert_eq!(fanout.stats.copies(s), 12, "copies handed to {s}");
    }
    assert_eq!(fanout.stats.copies(&names.not_taking), 0);
    assert_eq!(
        flaky.published(&format!("gw.route.agency.{}.", names.not_taking)),
        0,
        "nothing published for a subscription whose filter does not take the events"
    );
    let read = fanout.stats.read.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        read, 14,
        "each event read once, plus one read for each of the 2 failed attempts"
    );
    // `b`'s copies published again were recognised by its ledger, never pushed twice.
    let b_published = flaky.published(&format!("gw.route.agency.{}.", names.b));
    assert_eq!(b_published, 14, "b's copies, the 2 repeats included");
    let rb = sb.records();
    assert_eq!(rb.duplicates, 0, "no copy pushed twice to b");
    assert!(rb.refused.is_empty(), "{:?}", rb.refused);
    in_order(&sa.records(), &keys, "a");
    in_order(&rb, &keys, "b");
    assert!(sn.records().accepted.is_empty() && sn.records().faulted == 0);
    // The dead and the disabled one did not stall the others (a and b are done); the dead
    // one was called, the disabled one never: its copies are dead-lettered for a replay.
    assert!(sdead.records().faulted >= 1);
    assert!(soff.records().accepted.is_empty() && soff.records().faulted == 0);
    let off_route = format!("agency.{}", names.off);
    let store = engine.store.clone();
    let mut off_letters = 0;
    for _ in 0..300 {
        off_letters = gateway::jobs::agency_replay::missed_since(&*store, &names.off, 0)
            .await
            .unwrap()
            .len();
        if off_letters == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        off_letters, 12,
        "the disabled subscription's copies wait in its dead letters ({off_route})"
    );
    let text = engine.metrics.render();
    assert!(
        text.contains(&format!(
            "gateway_agency_fanout_copies_total{{subscription=\"{}\"}} 12",
            names.a
        )),
        "{text}"
    );
    assert!(text.contains("gateway_agency_fanout_read_total "));
    stop(engine, cancel, run).await;

    // A restart, with one more failed copy: new versions still come in order after the old.
    let (engine, flaky, cancel, run) = start(&loaded, &names, 1).await;
    for v in 5..=6 {
        for k in &keys {
            publish(&engine, &event(k, v, PROCEDURE), &route, true).await;
        }
    }
    assert_eq!(flaky.published(&fanout_queues), 6);
    eventually(
        Duration::from_secs(60),
        "a and b have every dossier's version 6 after the restart",
        || last_is(&sa, 6, true) && last_is(&sb, 6, false),
    )
    .await;
    assert_eq!(flaky.failures_left(), 0);
    in_order(&sa.records(), &keys, "a after a restart");
    let rb = sb.records();
    in_order(&rb, &keys, "b after a restart");
    assert_eq!(
        rb.duplicates, 0,
        "no copy pushed twice to b after a restart"
    );
    assert!(sa.records().refused.is_empty());
    let queues: Vec<String> = engine.routes.iter().flat_map(|r| r.queues()).collect();
    stop(engine, cancel, run).await;

    if backend == Backend::RabbitPg {
        let amqp = gw_broker::amqp::AmqpBroker::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            gw_broker::amqp::AmqpOptions::default(),
        )
        .await
        .unwrap();
        for q in queues {
            let _ = amqp.delete_queue(&q).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fanout_reads_once_keeps_order_and_isolation_rabbitmq_postgres() {
    fanout_scenario(
        Backend::RabbitPg,
        "fanout_reads_once_keeps_order_and_isolation_rabbitmq_postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fanout_reads_once_keeps_order_and_isolation_embedded_sqlite() {
    fanout_scenario(
        Backend::Embedded,
        "fanout_reads_once_keeps_order_and_isolation_embedded_sqlite",
    )
    .await;
}
