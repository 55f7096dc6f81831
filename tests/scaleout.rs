//! Several gateway instances (issue 13): two `app::start`s in this process on the real
//! RabbitMQ and one PostgreSQL schema, and the embedded backends' data-directory lock.
//!
//! 1. `two_instances_one_active_consumer_per_partition_and_take_over`: every partition queue
//!    has exactly one active consumer (RabbitMQ says so, `rabbitmqctl list_consumers`), each
//!    instance delivers to its own sink so the test sees who handled what: no dossier and no
//!    partition is handled by both; after the active instance stops, the other takes over and
//!    the rest arrives, nothing missing, no duplicate, no older version after a newer one.
//! 2. `a_singleton_job_runs_on_one_instance_and_moves_on_step_down`: the same job ticking on
//!    both instances runs on one only (the other counts `skipped_not_leader`), the leader gauge
//!    says which; when the leader stops the job the other takes it over.
//! 3. `a_second_start_on_one_data_directory_is_refused`: embedded backends, two starts on one
//!    directory: the second fails naming the directory and the holder; after the first stopped
//!    a start succeeds.
//!
//! RabbitMQ/PostgreSQL tests skip with a printed reason when the services are missing, and
//! fail under `CI=true`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gateway::app::{self, AppError};
use gateway::jobs::Singleton;
use gateway::runtime::stable_hash;
use gw_contract_tests::sink::{check_records, Faults, Sink};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u16 = 4;

/// The config of instance `instance` on RabbitMQ + PostgreSQL (schema = route), delivering
/// to `sink_url`, with [`PARTITIONS`] partitions.
fn instance_config(dir: &std::path::Path, route: &str, sink_url: &str, instance: &str) -> String {
    config_text(Backend::RabbitPg, dir, route, sink_url, "")
        .replace("instance = \"test\"", &format!("instance = \"{instance}\""))
        .replace(
            "prefetch = 64",
            &format!("prefetch = 64\npartitions = {PARTITIONS}"),
        )
}

/// `(queue, active)` of every consumer on the route's work queues, from `rabbitmqctl`;
/// `None` (with the reason printed, or a panic under `CI=true`) when it cannot be asked.
fn consumers(route: &str) -> Option<Vec<(String, bool)>> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_consumers", "-q", "queue_name", "active"])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("rabbitmqctl list_consumers is not usable and CI=true");
            }
            eprintln!("skipping the consumer census: rabbitmqctl is not usable here");
            return None;
        }
    };
    let prefix = format!("gw.route.{route}.p");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (q, active) = (f.next()?, f.next()?);
                (q.starts_with(&prefix) && !q.ends_with(".dlq"))
                    .then(|| (q.to_string(), active.trim() == "true"))
            })
            .collect(),
    )
}

/// Per partition queue: (active consumers, all consumers).
fn census(route: &str) -> Option<BTreeMap<String, (usize, usize)>> {
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (q, active) in consumers(route)? {
        let e = per.entry(q).or_default();
        e.0 += active as usize;
        e.1 += 1;
    }
    Some(per)
}

fn settled(m: &gateway::telemetry::metrics::Metrics) -> u64 {
    m.outcome_total("delivered") + m.outcome_total("superseded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_one_active_consumer_per_partition_and_take_over() {
    if !services_available("scaleout") {
        return;
    }
    let route = unique("scale");
    let (sink_a, sink_b) = (
        Sink::start(0, Faults::default()).await.unwrap(),
        Sink::start(0, Faults::default()).await.unwrap(),
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = app::start(
        &load(&instance_config(
            dir_a.path(),
            &route,
            &sink_a.url(),
            "gw-a",
        )),
        CancellationToken::new(),
    )
    .await
    .expect("instance a starts");
    let _queues_a = Queues::of(&a);
    let b = app::start(
        &load(&instance_config(
            dir_b.path(),
            &route,
            &sink_b.url(),
            "gw-b",
        )),
        CancellationToken::new(),
    )
    .await
    .expect("instance b starts");
    let _queues_b = Queues::of(&b);

    // RabbitMQ: each partition queue has two consumers, exactly one of them active.
    if let Some(per) = census(&route) {
        assert_eq!(per.len(), PARTITIONS as usize, "{per:?}");
        for (q, (active, all)) in &per {
            assert_eq!((*active, *all), (1, 2), "{q}: (active, consumers)");
        }
    }

    // Phase 1: versions 1..=3 of 16 dossiers, posted to both instances alternately.
    let client = reqwest::Client::new();
    let keys: Vec<String> = (0..16).map(|d| format!("H13-{d:03}")).collect();
    let mut posted = 0u64;
    for v in 1..=3 {
        for (i, key) in keys.iter().enumerate() {
            let inbound = if i % 2 == 0 {
                a.inbound_addr
            } else {
                b.inbound_addr
            };
            assert_eq!(post_event(&client, inbound, key, v).await, 202);
            posted += 1;
        }
    }
    let (ma, mb) = (a.engine.metrics.clone(), b.engine.metrics.clone());
    eventually(Duration::from_secs(60), "phase 1 settled", || {
        settled(&ma) + settled(&mb) >= posted
    })
    .await;

    // Who handled what: a dossier, and a whole partition, by one instance only.
    let partition = |key: &str| (stable_hash(key) % PARTITIONS as u64) as u16;
    let owners = |records: &[gw_contract_tests::sink::Record]| -> BTreeSet<u16> {
        records.iter().map(|r| partition(&r.key)).collect()
    };
    let (ra, rb) = (sink_a.records(), sink_b.records());
    let (pa, pb) = (owners(&ra), owners(&rb));
    assert!(
        pa.is_disjoint(&pb),
        "partitions handled by both instances: a {pa:?}, b {pb:?}"
    );
    assert_eq!(
        pa.union(&pb).count(),
        keys.iter()
            .map(|k| partition(k))
            .collect::<BTreeSet<_>>()
            .len()
    );
    eprintln!(
        "SCALEOUT phase 1: instance a handled partitions {pa:?} ({} deliveries), b {pb:?} ({})",
        ra.len(),
        rb.len()
    );

    // Stop the instance that handled more; the other takes its partitions over.
    let (stopped, survivor, stopped_sink, survivor_sink) = if ra.len() >= rb.len() {
        (a, b, sink_a, sink_b)
    } else {
        (b, a, sink_b, sink_a)
    };
    stopped.shutdown().await;
    if let Some(per) = census(&route) {
        assert_eq!(per.len(), PARTITIONS as usize, "{per:?}");
        for (q, (active, all)) in &per {
            assert_eq!((*active, *all), (1, 1), "{q} after the stop");
        }
    }
    let ms = survivor.engine.metrics.clone();
    let before = settled(&ms);
    let mut more = 0u64;
    for v in 4..=5 {
        for key in &keys {
            assert_eq!(
                post_event(&client, survivor.inbound_addr, key, v).await,
                202
            );
            more += 1;
        }
    }
    eventually(
        Duration::from_secs(60),
        "phase 2 settled on the survivor",
        || settled(&ms) >= before + more,
    )
    .await;

    // Everything arrived, once, in order per dossier: the stopped instance's deliveries all
    // came before the survivor's for the dossiers it owned.
    let mut all = stopped_sink.records();
    all.extend(survivor_sink.records());
    let expected: BTreeMap<String, Vec<i64>> = keys
        .iter()
        .map(|k| (k.clone(), (1..=5).collect()))
        .collect();
    let check = check_records(&all, &expected);
    eprintln!("SCALEOUT check: {check:?}");
    assert!(check.missing.is_empty(), "missing: {:?}", check.missing);
    assert_eq!(
        check.older_after_newer, 0,
        "older version after a newer one"
    );
    assert_eq!(check.duplicates, 0, "duplicate effects");
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_singleton_job_runs_on_one_instance_and_moves_on_step_down() {
    if !services_available("scaleout singleton") {
        return;
    }
    let route = unique("single");
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = app::start(
        &load(&instance_config(dir_a.path(), &route, &sink.url(), "gw-a")),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let _queues_a = Queues::of(&a);
    let b = app::start(
        &load(&instance_config(dir_b.path(), &route, &sink.url(), "gw-b")),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let _queues_b = Queues::of(&b);
    let job = gateway::jobs::CATALOGUE_SYNC;
    let lease = Duration::from_secs(3);
    // The same job on both instances, ticking every 100 ms; each counts its own runs.
    let spawn_job = |engine: Arc<gateway::runtime::Engine>, holder: &str| {
        let lead = Singleton::for_engine(job, &engine, holder).with_lease(lease);
        let runs = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let (r, c) = (runs.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            while !c.is_cancelled() {
                lead.tick(|| async {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                })
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lead.step_down().await;
        });
        (runs, cancel, task)
    };
    let (runs_a, stop_a, task_a) = spawn_job(a.engine.clone(), "gw-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (runs_b, stop_b, task_b) = spawn_job(b.engine.clone(), "gw-b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ma, mb) = (a.engine.metrics.clone(), b.engine.metrics.clone());
    assert!(
        runs_a.load(Ordering::SeqCst) >= 5,
        "the first instance leads"
    );
    assert_eq!(runs_b.load(Ordering::SeqCst), 0, "the job ran on both");
    assert!(mb.job_runs(job, "skipped_not_leader") >= 5);
    assert_eq!(ma.job_leader(job), Some(true));
    assert_eq!(mb.job_leader(job), Some(false));
    let text = ma.render();
    assert!(
        text.contains(&format!("gateway_job_leader{{job=\"{job}\"}} 1")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "gateway_job_runs_total{{job=\"{job}\",outcome=\"ran\"}}"
    )));

    // The leader's job stops (its instance shuts down): the other takes over within a
    // third of the lease plus a tick.
    stop_a.cancel();
    task_a.await.unwrap();
    let ran_a = runs_a.load(Ordering::SeqCst);
    let rb = runs_b.clone();
    eventually(
        Duration::from_secs(5),
        "the standby takes the job over",
        || rb.load(Ordering::SeqCst) > 0,
    )
    .await;
    assert_eq!(ma.job_leader(job), Some(false));
    eventually(Duration::from_secs(2), "leader gauge of b", || {
        mb.job_leader(job) == Some(true)
    })
    .await;
    assert_eq!(runs_a.load(Ordering::SeqCst), ran_a);
    stop_b.cancel();
    task_b.await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_on_one_data_directory_is_refused() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("lock");
    let loaded = load(&config_text(
        Backend::Embedded,
        dir.path(),
        &route,
        &sink.url(),
        "",
    ));
    let first = app::start(&loaded, CancellationToken::new())
        .await
        .expect("the first start");
    let _queues_first = Queues::of(&first);
    let err = match app::start(&loaded, CancellationToken::new()).await {
        Err(e) => e,
        Ok(_) => panic!("a second gateway started on the same data directory"),
    };
    assert!(matches!(err, AppError::DataDirLock(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()),
        "names the directory: {text}"
    );
    assert!(
        text.contains(&format!("pid={} instance=test", std::process::id())),
        "names the holder: {text}"
    );
    first.shutdown().await;
    let again = app::start(&loaded, CancellationToken::new())
        .await
        .expect("a start after the first stopped");
    let _queues_again = Queues::of(&again);
    again.shutdown().await;
}
