//! The service-quality index end to end on both backends: events published through the engine
//! reach the index's own queue, the consumer folds each once (a duplicate is recognised, an
//! unreadable event is dead-lettered with its reason), the stored states equal a batch fold of
//! the same events, and `rebuild` from the journal gives back exactly the same states and
//! report (repairing a state that was damaged).
//!
//! Scenarios run on the embedded queue + SQLite, and on RabbitMQ + PostgreSQL (a unique queue
//! and schema; skipped with a reason when they are not there, failing when `CI=true`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway::indicators::history::{self, ApplyOutcome};
use gateway::indicators::state::DossierState;
use gateway::indicators::{Level, Rules};
use gateway::jobs::indicators::{consume, Counts};
use gateway::model::envelope::Envelope;
use gateway::runtime::Engine;
use gateway::telemetry::metrics::Metrics;
use gw_store::indicators::IndicatorStore;
use tokio_util::sync::CancellationToken;

/// The events of `n` simulated dossiers, plus online submissions and payments for some.
fn events(n: usize) -> Vec<Envelope> {
    events_of("000.00.01.H22", n)
}

/// [`events`] of dossiers received by `unit`.
fn events_of(unit: &str, n: usize) -> Vec<Envelope> {
    let mut rng = rand::rng();
    let mut out = Vec::new();
    for seq in 0..n {
        for e in gateway::lab::simulator::dossier_events(&mut rng, unit, seq, 6) {
            let mut env = Envelope::new(e.kind, e.key.clone(), "onestop", e.payload);
            env.version = e.version;
            out.push(env);
        }
        let code = gateway::lab::simulator::dossier_code(unit, seq);
        if seq % 3 == 0 {
            out.push(Envelope::new(
                "payment.settled",
                code.clone(),
                "payments",
                serde_json::json!({"dossier_code": code, "status": "paid"}),
            ));
        }
        if seq % 4 == 0 {
            out.push(Envelope::new(
                "dossier.online",
                code.clone(),
                "online",
                serde_json::json!({"MaHoSo": code}),
            ));
        }
    }
    out
}

/// Each dossier's events folded at once, in publish order.
fn batch(events: &[Envelope]) -> BTreeMap<String, DossierState> {
    let mut out: BTreeMap<String, DossierState> = BTreeMap::new();
    for e in events {
        let s = out
            .entry(e.key.clone())
            .or_insert_with(|| DossierState::new(&e.key));
        s.apply(e).expect("the simulator's events are readable");
    }
    out
}

/// The stored state of one dossier.
async fn state_of(store: &dyn IndicatorStore, code: &str) -> DossierState {
    serde_json::from_str(&store.state(code).await.unwrap().unwrap().state).unwrap()
}

async fn stored(store: &dyn IndicatorStore) -> BTreeMap<String, DossierState> {
    store
        .states(i64::MAX, i64::MIN, "")
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.row.code.clone(),
                serde_json::from_str(&s.row.state).unwrap(),
            )
        })
        .collect()
}

async fn scenario(broker_url: &str, store_url: &str, queue: &str) {
    let broker = gw_broker::open(broker_url, "test").await.unwrap();
    let ledger = gw_store::open(store_url).await.unwrap();
    let ix = gw_store::indicators::open(store_url).await.unwrap();
    let engine = Engine::new(
        broker.clone(),
        ledger,
        vec![],
        Arc::new(Metrics::new()),
        64,
        20,
    )
    .with_indicators(queue);
    engine.declare().await.unwrap();

    let evs = events(40);
    for e in &evs {
        engine.publish(e).await.unwrap();
    }
    // The same event again (a redelivery or a re-send): applied once.
    engine.publish(&evs[0]).await.unwrap();
    // A snapshot that is not a dossier: dead-lettered with its reason, nothing lost.
    let mut bad = Envelope::new(
        "dossier.upserted",
        "BAD-1",
        "onestop",
        serde_json::json!({"code": "BAD-1"}),
    );
    bad.version = Some(1);
    engine.publish(&bad).await.unwrap();
    // A kind the index does not read never reaches its queue.
    let other = Envelope::new(
        "catalogue.procedure.added",
        "P",
        "catalogue",
        serde_json::json!({}),
    );
    engine.publish(&other).await.unwrap();

    let counts = Arc::new(Counts::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consume(
        broker.clone(),
        queue.to_string(),
        ix.clone(),
        counts.clone(),
        cancel.clone(),
    ));
    let applied = evs.len() as u64;
    let c = counts.clone();
    common::eventually(Duration::from_secs(60), "every event consumed", move || {
        use std::sync::atomic::Ordering::Relaxed;
        c.applied.load(Relaxed) + c.duplicate.load(Relaxed) + c.dead_lettered.load(Relaxed)
            >= applied + 2
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    {
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(counts.applied.load(Relaxed), applied);
        assert_eq!(counts.duplicate.load(Relaxed), 1);
        assert_eq!(counts.dead_lettered.load(Relaxed), 1);
        assert_eq!(counts.retried.load(Relaxed), 0);
    }
    let dlq = broker
        .stats(&gw_broker::dead_letter_queue(queue))
        .await
        .unwrap();
    assert_eq!(dlq.ready + dlq.unacked, 1, "the unreadable event is kept");
    let pos = ix.position(history::CONSUMER).await.unwrap().unwrap();
    assert_eq!(pos.applied as u64, applied);
    assert_eq!(ix.journal_len().await.unwrap() as u64, applied);

    // Live equals batch.
    let live = stored(ix.as_ref()).await;
    assert_eq!(live, batch(&evs));
    assert!(live.values().any(|s| s.paid_online) && live.values().any(|s| s.online));

    let rules = Rules::default();
    let now = gateway::model::time::now_ms();
    let month =
        gateway::jobs::indicators::month_of(live.values().find_map(|s| s.received_ms).unwrap());
    let report = |store: Arc<dyn IndicatorStore>, m: String| async move {
        history::report(
            store.as_ref(),
            &Rules::default(),
            &m,
            Level::Unit,
            now,
            "dvcqg",
        )
        .await
        .unwrap()
    };
    let before = report(ix.clone(), month.clone()).await;
    assert!(!before.rows.is_empty());

    // A damaged state is repaired by a rebuild; every other state is left as it was.
    let damaged_code = live.keys().next().unwrap().clone();
    let mut row = ix.state(&damaged_code).await.unwrap().unwrap();
    let mut wrong: DossierState = serde_json::from_str(&row.state).unwrap();
    wrong.online = !wrong.online;
    wrong.supplements.clear();
    wrong.version = 999;
    row.state = serde_json::to_string(&wrong).unwrap();
    assert_eq!(ix.put_states(vec![row]).await.unwrap(), 1);
    assert_ne!(stored(ix.as_ref()).await, live);
    let mut calls = 0;
    let done = history::rebuild(ix.as_ref(), |n, total| {
        calls += 1;
        assert!(n <= total);
    })
    .await
    .unwrap();
    assert!(calls >= 1);
    assert_eq!(done.entries, applied);
    assert_eq!(done.dossiers as usize, live.len());
    assert_eq!(stored(ix.as_ref()).await, live, "rebuild equals live");
    assert_eq!(report(ix.clone(), month.clone()).await, before);
    let _ = rules;

    // Applying a journalled event again is a duplicate, through the same path.
    assert_eq!(
        history::apply_envelope(ix.as_ref(), &evs[1]).await.unwrap(),
        ApplyOutcome::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_live_then_rebuilt_on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = format!("sqlite:{}", dir.path().join("queue.db").display());
    let store = format!("sqlite:{}", dir.path().join("store.db").display());
    scenario(&broker, &store, gateway::runtime::route::INDICATORS_QUEUE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_live_then_rebuilt_on_rabbitmq_and_postgres() {
    if !common::services_available("index_live_then_rebuilt_on_rabbitmq_and_postgres") {
        return;
    }
    let schema = common::unique("gwt_ix");
    let queue = format!("gw.indicators.{schema}");
    let store = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    scenario("amqp://guest:guest@127.0.0.1:5672/%2f", &store, &queue).await;
    delete_queue(&queue).await;
    let (client, conn) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// Take `n` deliveries from `queue` (each within 20 s), leaving them unsettled.
/// An engine without routes that publishes the index's facts to `queue`.
async fn index_engine(broker: &Arc<dyn gw_broker::Broker>, store_url: &str, queue: &str) -> Engine {
    Engine::new(
        broker.clone(),
        gw_store::open(store_url).await.unwrap(),
        vec![],
        Arc::new(Metrics::new()),
        64,
        20,
    )
    .with_indicators(queue)
}

/// Deliveries from `queue` until they carry `facts` facts in all.
async fn take_facts(
    broker: &Arc<dyn gw_broker::Broker>,
    queue: &str,
    facts: usize,
) -> (Box<dyn gw_broker::Consumer>, Vec<gw_broker::Delivery>) {
    let mut consumer = broker.consume(queue, 512).await.unwrap();
    let (mut out, mut n) = (Vec::new(), 0);
    while n < facts {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{n} of {facts} facts came"))
            .expect("the consumer is open")
            .unwrap();
        n += gateway::indicators::live::read(&d.message).unwrap().len();
        out.push(d);
    }
    (consumer, out)
}

async fn take(
    broker: &Arc<dyn gw_broker::Broker>,
    queue: &str,
    n: usize,
) -> (Box<dyn gw_broker::Consumer>, Vec<gw_broker::Delivery>) {
    let mut consumer = broker.consume(queue, n as u16).await.unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} deliveries came", out.len()))
            .expect("the consumer is open")
            .unwrap();
        out.push(d);
    }
    (consumer, out)
}

/// One batch of deliveries through `handle_batch`: a duplicate within the batch is applied
/// once, a poison event (not an envelope; a snapshot that is not a dossier) is dead-lettered
/// alone while the rest is applied; a crash between the commit and the acks re-delivers a
/// batch that changes nothing; a batch that meets an unreadable stored state falls back to
/// one by one, so only that dossier's event waits for a retry.
async fn batch_scenario(broker_url: &str, store_url: &str, queue: &str) {
    use gateway::jobs::indicators::{handle_batch, Handled};
    let broker = gw_broker::open(broker_url, "test").await.unwrap();
    let ledger = gw_store::open(store_url).await.unwrap();
    let ix = gw_store::indicators::open(store_url).await.unwrap();
    let engine = Engine::new(
        broker.clone(),
        ledger,
        vec![],
        Arc::new(Metrics::new()),
        64,
        20,
    )
    .with_indicators(queue);
    engine.declare().await.unwrap();

    // Batch 1: 8 dossiers' events, a poison snapshot in the middle, the third event twice in
    // a row, and a body that is not an envelope. Batch 2 is the next 6 dossiers'.
    let all = events(14);
    let cut = all
        .iter()
        .position(|e| e.key == gateway::lab::simulator::dossier_code("000.00.01.H22", 8))
        .unwrap();
    let (evs, more) = (all[..cut].to_vec(), all[cut..].to_vec());
    let mut bad = Envelope::new(
        "dossier.upserted",
        "BAD-1",
        "onestop",
        serde_json::json!({"code": "BAD-1"}),
    );
    bad.version = Some(1);
    let mid = evs.len() / 2;
    let mut sent: Vec<Envelope> = Vec::new();
    let mut expected = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        if i == mid {
            sent.push(bad.clone());
            expected.push(Handled::DeadLettered);
        }
        sent.push(e.clone());
        expected.push(Handled::Applied(ApplyOutcome::Applied));
        if i == 2 {
            sent.push(e.clone());
            expected.push(Handled::Applied(ApplyOutcome::Duplicate));
        }
    }
    expected.push(Handled::DeadLettered);
    for e in &sent {
        engine.publish(e).await.unwrap();
    }
    broker
        .publish(
            queue,
            gw_broker::Message {
                id: "not-an-envelope".into(),
                key: "X".into(),
                headers: Default::default(),
                attempt: 0,
                body: b"{not json".to_vec().into(),
            },
        )
        .await
        .unwrap();
    let total = sent.len() + 1;
    let counts = Counts::default();
    let (consumer, deliveries) = take(&broker, queue, total).await;
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(handled, expected);
    assert_eq!(
        stored(ix.as_ref()).await,
        batch(&evs),
        "the rest of the batch applied"
    );
    let pos = ix.position(history::CONSUMER).await.unwrap().unwrap();
    assert_eq!(pos.applied as usize, evs.len());
    assert_eq!(pos.last_event, evs.last().unwrap().id.to_string());
    drop(consumer);
    let dlq = broker
        .stats(&gw_broker::dead_letter_queue(queue))
        .await
        .unwrap();
    assert_eq!(dlq.ready + dlq.unacked, 2, "each poison event kept, alone");

    // Batch 2: committed, then the process dies before the acks.
    assert!(!more.is_empty() && mid > 2);
    for e in &more {
        engine.publish(e).await.unwrap();
    }
    let (consumer, deliveries) = take(&broker, queue, more.len()).await;
    // The engine queued each event's fact alone (not the envelope; published one at a time,
    // each goes in a message of its own), read back as the same event the envelope makes.
    use gateway::indicators::live;
    let facts: Vec<live::FactEvent> = deliveries
        .iter()
        .map(|d| {
            assert_eq!(
                d.message.headers.get(live::BODY_HEADER).map(String::as_str),
                Some(live::FACT_BODY)
            );
            let mut facts = live::read(&d.message).unwrap();
            assert_eq!(facts.len(), 1);
            facts.pop().unwrap()
        })
        .collect();
    let made: Vec<live::FactEvent> = more
        .iter()
        .map(|e| live::FactEvent::of(e).unwrap().unwrap())
        .collect();
    assert_eq!(facts, made);
    let applied = history::apply_events(ix.as_ref(), facts).await.unwrap();
    assert_eq!(applied, vec![ApplyOutcome::Applied; more.len()]);
    let (states, pos) = (
        stored(ix.as_ref()).await,
        ix.position(history::CONSUMER).await.unwrap().unwrap(),
    );
    drop(deliveries);
    drop(consumer);
    broker.close().await;
    drop(engine);

    let broker = gw_broker::open(broker_url, "test").await.unwrap();
    let (consumer, deliveries) = take(&broker, queue, more.len()).await;
    assert!(
        deliveries.iter().all(|d| d.redelivered),
        "the batch comes again"
    );
    let counts = Counts::default();
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(
        handled,
        vec![Handled::Applied(ApplyOutcome::Duplicate); more.len()]
    );
    assert_eq!(
        stored(ix.as_ref()).await,
        states,
        "the redelivered batch changed nothing"
    );
    assert_eq!(states, batch(&all));
    assert_eq!(ix.position(history::CONSUMER).await.unwrap().unwrap(), pos);
    drop(consumer);

    // Batch 4: events accepted at once (as concurrent requests are): their facts share
    // messages, in the order accepted, and are applied once each, in one transaction; the
    // same groups delivered again are recognised fact by fact and change nothing.
    use std::sync::atomic::Ordering::Relaxed;
    let fourth = events_of("000.00.02.H22", 12);
    let engine = index_engine(&broker, store_url, queue).await;
    futures::future::try_join_all(fourth.iter().map(|e| engine.publish(e)))
        .await
        .unwrap();
    let (consumer, deliveries) = take_facts(&broker, queue, fourth.len()).await;
    assert!(
        deliveries.len() * 4 <= fourth.len(),
        "{} messages for {} facts",
        deliveries.len(),
        fourth.len()
    );
    let read: Vec<String> = deliveries
        .iter()
        .flat_map(|d| live::read(&d.message).unwrap())
        .map(|f| f.id)
        .collect();
    let accepted: Vec<String> = fourth.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(read, accepted, "each fact once, in the order accepted");
    let again: Vec<gw_broker::Message> = deliveries.iter().map(|d| d.message.clone()).collect();
    let counts = Counts::default();
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert!(
        handled
            .iter()
            .all(|h| *h == Handled::Applied(ApplyOutcome::Applied)),
        "{handled:?}"
    );
    assert_eq!(counts.applied.load(Relaxed), fourth.len() as u64);
    let want = batch(&fourth);
    for (code, state) in &want {
        let got = state_of(ix.as_ref(), code).await;
        assert_eq!(&got, state, "{code}");
    }
    drop(consumer);
    for m in &again {
        broker.publish(queue, m.clone()).await.unwrap();
    }
    let (consumer, deliveries) = take(&broker, queue, again.len()).await;
    let counts = Counts::default();
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(
        handled,
        vec![Handled::Applied(ApplyOutcome::Duplicate); again.len()]
    );
    assert_eq!(
        (counts.applied.load(Relaxed), counts.duplicate.load(Relaxed)),
        (0, fourth.len() as u64)
    );
    drop(consumer);

    // Batch 3: one dossier's stored state no longer reads back. The batch fails as a whole,
    // then its events go one by one: that dossier's event is retried, the others applied.
    let known = batch(&all);
    let damaged = known.keys().next().unwrap().clone();
    let mut row = ix.state(&damaged).await.unwrap().unwrap();
    row.state = "{not a state".into();
    assert_eq!(ix.put_states(vec![row]).await.unwrap(), 1);
    let other = known.keys().nth(1).unwrap().clone();
    let note = |code: &str| {
        Envelope::new(
            "dossier.online",
            code.to_string(),
            "online",
            serde_json::json!({"MaHoSo": code}),
        )
    };
    let third = vec![note(&other), note(&damaged), note(&other)];
    let engine = index_engine(&broker, store_url, queue).await;
    for e in &third {
        engine.publish(e).await.unwrap();
    }
    let (consumer, deliveries) = take(&broker, queue, third.len()).await;
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(
        handled,
        [
            Handled::Applied(ApplyOutcome::Applied),
            Handled::Retried,
            Handled::Applied(ApplyOutcome::Applied)
        ]
    );
    let mut expect = known[&other].clone();
    expect.apply(&third[0]).unwrap();
    expect.apply(&third[2]).unwrap();
    let got = state_of(ix.as_ref(), &other).await;
    assert_eq!(got, expect);
    drop(consumer);

    // A group that meets the same damaged state: the batch fails, the group is applied alone,
    // its first fact goes in and the group is retried whole (beside the retried event above).
    // Once the state is repaired, the retried group applies only what had not gone in:
    // nothing lost, nothing applied twice.
    let grouped = [note(&other), note(&damaged)];
    let facts: Vec<live::FactEvent> = grouped
        .iter()
        .map(|e| live::FactEvent::of(e).unwrap().unwrap())
        .collect();
    let refs: Vec<&live::FactEvent> = facts.iter().collect();
    let group = live::group_message(&refs, &grouped[0].traceparent);
    let group_id = group.id.clone();
    broker.publish(queue, group).await.unwrap();
    // The group's two facts and the event retried above.
    let (consumer, deliveries) = take_facts(&broker, queue, 3).await;
    assert!(deliveries.iter().any(|d| d.message.id == group_id));
    let counts = Counts::default();
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(handled, [Handled::Retried, Handled::Retried]);
    expect.apply(&grouped[0]).unwrap();
    let got = state_of(ix.as_ref(), &other).await;
    assert_eq!(
        got, expect,
        "the group's first fact applied before the failure"
    );
    drop(consumer);
    let mut row = ix.state(&damaged).await.unwrap().unwrap();
    row.state = serde_json::to_string(&known[&damaged]).unwrap();
    assert_eq!(ix.put_states(vec![row]).await.unwrap(), 1);
    let (consumer, deliveries) = take_facts(&broker, queue, 3).await;
    let counts = Counts::default();
    let handled = handle_batch(ix.as_ref(), deliveries, &counts)
        .await
        .unwrap();
    assert_eq!(
        handled,
        [
            Handled::Applied(ApplyOutcome::Applied),
            Handled::Applied(ApplyOutcome::Applied)
        ]
    );
    assert_eq!(
        (counts.applied.load(Relaxed), counts.duplicate.load(Relaxed)),
        (2, 1),
        "the damaged dossier's two events applied, the group's first fact recognised"
    );
    let got = state_of(ix.as_ref(), &other).await;
    assert_eq!(got, expect, "nothing applied twice");
    let mut repaired = known[&damaged].clone();
    repaired.apply(&third[1]).unwrap();
    repaired.apply(&grouped[1]).unwrap();
    let got = state_of(ix.as_ref(), &damaged).await;
    assert_eq!(got, repaired, "nothing lost");
    drop(consumer);
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_batches_on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = format!("sqlite:{}", dir.path().join("queue.db").display());
    let store = format!("sqlite:{}", dir.path().join("store.db").display());
    batch_scenario(&broker, &store, gateway::runtime::route::INDICATORS_QUEUE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_batches_on_rabbitmq_and_postgres() {
    if !common::services_available("index_batches_on_rabbitmq_and_postgres") {
        return;
    }
    let schema = common::unique("gwt_ixb");
    let queue = format!("gw.indicators.{schema}");
    let store = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    batch_scenario("amqp://guest:guest@127.0.0.1:5672/%2f", &store, &queue).await;
    delete_queue(&queue).await;
    let (client, conn) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// Remove a RabbitMQ test queue and its dead-letter queue (leftover queues wedge the broker).
async fn delete_queue(queue: &str) {
    use gw_broker::amqp::{AmqpBroker, AmqpOptions};
    use gw_broker::Broker as _;
    let b = AmqpBroker::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        AmqpOptions::default(),
    )
    .await
    .expect("RabbitMQ answers");
    b.delete_queue(queue).await.expect("the test queue deleted");
    b.close().await;
}
