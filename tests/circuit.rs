//! The per-route circuit breaker against the recording sink: an outage opens it, while open
//! the destination is not called (deliveries wait for it, not attempted),
//! a probe after the cool-down finds the destination back and closes it, and every message
//! is delivered in the end, none dead-lettered, on both backends.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use gateway::app;
use gateway::runtime::circuit::State;
use gw_contract_tests::sink::{Faults, Sink};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 12;
const CONCURRENCY: u64 = 2;

/// `gateway_circuit_transitions_total` of a route into `to`, from the rendered metrics.
fn transitions(text: &str, route: &str, to: &str) -> u64 {
    let prefix = format!(
        "gateway_circuit_transitions_total{{route=\"{route}\",destination=\"sink\",to=\"{to}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn opens_defers_probes_and_closes(backend: Backend) {
    let sink = Sink::start(
        0,
        Faults {
            down: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = unique("circuit");
    let text = config_text(backend, dir.path(), &route, &sink.url(), "")
        .replace("concurrency = 8", &format!("concurrency = {CONCURRENCY}"))
        .replace(
            "[circuit]\nopen_for = \"500ms\"\n",
            "[circuit]\nmin_calls = 3\nprobes = 1\nopen_for = \"700ms\"\n",
        );
    assert!(text.contains("min_calls = 3"));
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let _queues_running = Queues::of(&running);
    let client = reqwest::Client::new();
    let keys: Vec<String> = (0..MESSAGES).map(|i| format!("CB-{i:02}")).collect();
    for k in &keys {
        assert_eq!(post_event(&client, running.inbound_addr, k, 1).await, 202);
    }
    let engine = running.engine.clone();
    let r = engine.routes[0].clone();
    eventually(Duration::from_secs(30), "the circuit opens", || {
        r.circuit.state() == State::Open
    })
    .await;
    let m = engine.metrics.clone();
    let metrics = m.render();
    assert!(
        metrics.contains(&format!(
            "gateway_circuit_state{{route=\"{route}\",destination=\"sink\"}} 2"
        )),
        "{metrics}"
    );

    // While open, only probes reach the destination: over several cool-downs the calls grow
    // by at most one per probe (half-open transition), plus the calls already in flight
    // (one per lane) when it opened. Without the breaker the 50–300 ms retries of 12 messages
    // would call it dozens of times.
    let calls_at_open = sink.refused();
    let probes_at_open = transitions(&metrics, &route, "half_open");
    let deferred_at_open = m.outcome_count(&route, "deferred");
    eventually(Duration::from_secs(30), "two probes failed", || {
        transitions(&m.render(), &route, "half_open") >= probes_at_open + 2
            && r.circuit.state() == State::Open
    })
    .await;
    let probes = transitions(&m.render(), &route, "half_open") - probes_at_open;
    let calls = sink.refused() - calls_at_open;
    eprintln!(
        "{backend:?}: while open, {calls} destination calls over {probes} probes; {} deliveries deferred",
        m.outcome_count(&route, "deferred") - deferred_at_open
    );
    assert!(
        calls <= probes + CONCURRENCY,
        "{calls} calls during {probes} probes: the open circuit must not call the destination"
    );
    assert!(
        m.outcome_count(&route, "deferred") > deferred_at_open,
        "deliveries were deferred while open"
    );
    assert_eq!(m.outcome_count(&route, "delivered"), 0);

    // The destination recovers: the next probe closes the circuit and everything arrives.
    sink.set_faults(Faults::default());
    eventually(Duration::from_secs(60), "every message delivered", || {
        let got: BTreeSet<String> = sink.records().into_iter().map(|r| r.key).collect();
        keys.iter().all(|k| got.contains(k))
    })
    .await;
    assert_eq!(r.circuit.state(), State::Closed);
    let metrics = m.render();
    assert!(transitions(&metrics, &route, "closed") >= 1, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "gateway_circuit_state{{route=\"{route}\",destination=\"sink\"}} 0"
        )),
        "{metrics}"
    );
    assert_eq!(m.outcome_count(&route, "dead_lettered"), 0, "nothing lost");
    // Deferrals are not attempts: the ledger holds no more failed attempts than the sink saw.
    let mut failed_attempts = 0;
    for k in &keys {
        failed_attempts += engine
            .store
            .attempts_by_key(k)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.result != "delivered")
            .count() as u64;
    }
    assert_eq!(
        failed_attempts,
        sink.refused(),
        "one attempt recorded per call the destination refused, none per deferral"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn circuit_opens_defers_probes_and_closes_embedded() {
    opens_defers_probes_and_closes(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn circuit_opens_defers_probes_and_closes_rabbitmq_postgres() {
    if services_available("circuit_opens_defers_probes_and_closes_rabbitmq_postgres") {
        opens_defers_probes_and_closes(Backend::RabbitPg).await;
    }
}
