//! The crash test: the gateway as a child process, delivering to a recording sink, killed with
//! SIGKILL several times mid-flow and restarted on the same data. Afterwards every accepted
//! envelope was delivered; duplicates at the sink are only those the ledger cannot prevent
//! (delivered, then killed before the outcome was recorded): counted, printed and bounded.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gw_contract_tests::sink::{Faults, Sink};
use rand::Rng;

struct Gateway {
    child: Child,
    inbound: String,
}

fn spawn(config: &std::path::Path) -> Gateway {
    let (child, inbound) = spawn_gateway(config, "warn");
    Gateway { child, inbound }
}

fn kill9(g: &mut Gateway) {
    // SIGKILL: no shutdown code runs.
    g.child.kill().expect("kill");
    g.child.wait().expect("reaped");
}

async fn crash_scenario(backend: Backend, kills: usize) {
    let sink = Sink::start(
        0,
        Faults {
            delay_ms: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("crash");
    let cfg = dir.path().join("gateway.toml");
    let text = config_text(backend, &dir.path().join("data"), &route, &sink.url(), "");
    std::fs::write(&cfg, &text).unwrap();
    // The gateways run as child processes: their queues are named from the configuration.
    let _queues = Queues::of_config(&load(&text));

    let accepted: Arc<Mutex<BTreeMap<String, Vec<i64>>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut next = 0usize;
    let started = Instant::now();
    for round in 0..kills {
        let mut g = spawn(&cfg);
        let inbound = g.inbound.clone();
        let stop_at = Instant::now() + Duration::from_millis(rand::rng().random_range(400..1200));
        // Send until the kill; only a 202 counts as accepted.
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let (client, inbound, accepted) = (client.clone(), inbound.clone(), accepted.clone());
            let base = next + w * 100_000;
            tasks.spawn(async move {
                let mut i = 0;
                while Instant::now() < stop_at {
                    let key = format!("C-{round}-{}", base + i);
                    let body = serde_json::json!({"kind": "dossier.upserted", "key": key, "version": 1, "payload": {"n": i}});
                    let r = client.post(format!("{inbound}/in/onestop")).bearer_auth(TOKEN).json(&body).send().await;
                    if matches!(r, Ok(ref r) if r.status().as_u16() == 202) {
                        accepted.lock().unwrap().insert(key, vec![1]);
                    }
                    i += 1;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        next += 1_000_000;
        kill9(&mut g);
        eprintln!(
            "round {round}: killed with {} accepted so far, {} delivered",
            accepted.lock().unwrap().len(),
            sink.records().len()
        );
    }
    // Final run: let it finish.
    let mut g = spawn(&cfg);
    let expected = accepted.lock().unwrap().clone();
    assert!(
        expected.len() > 50,
        "the scenario accepted too little to mean anything: {}",
        expected.len()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sink.check(&expected).missing.is_empty() {
        assert!(
            Instant::now() < deadline,
            "lost after {kills} SIGKILLs: {:?}",
            sink.check(&expected)
                .missing
                .iter()
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = sink.check(&expected);
    kill9(&mut g);
    println!(
        "crash test ({backend:?}): {kills} SIGKILLs, accepted {}, delivered records {}, lost {}, duplicate effects {} (delivered then killed before recording), older-after-newer {}, {:.1}s",
        expected.len(),
        check.delivered,
        check.missing.len(),
        check.duplicates,
        check.older_after_newer,
        started.elapsed().as_secs_f64()
    );
    assert!(check.missing.is_empty());
    // Each kill can catch at most the messages in flight (route concurrency 8) between delivery
    // and the ledger write.
    assert!(
        check.duplicates <= (kills * 8) as u64,
        "more duplicates than in-flight work can explain: {}",
        check.duplicates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_flow_loses_nothing_embedded() {
    crash_scenario(Backend::Embedded, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_flow_loses_nothing_rabbitmq_postgres() {
    if services_available("sigkill_mid_flow_loses_nothing_rabbitmq_postgres") {
        crash_scenario(Backend::RabbitPg, 4).await;
    }
}
