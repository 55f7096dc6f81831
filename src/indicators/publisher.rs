//! The index's facts, grouped on their way to its queue: what
//! [`crate::runtime::engine::Engine::publish`] sends for each accepted event it reads.
//!
//! # Invariants
//! - **Confirmed before the event is accepted.** [`FactPublisher::publish`] resolves `Ok`
//!   only once the broker confirmed the message that holds the event's fact. The engine awaits
//!   it beside the routes' copies, so an accepted event's fact is never missing from the queue.
//! - **Grouped by load, never by a timer.** One message is in flight at a time. A fact that
//!   finds none in flight is sent at once by its caller, alone ([`super::live::FACT_BODY`]);
//!   facts submitted while one is in flight wait for the publisher's task, which sends all
//!   that wait (at most [`MAX_GROUP`]) as one message ([`super::live::FACTS_BODY`]) when the
//!   flight ends. Under load one message and one confirm carry many, on both sides of the
//!   queue; alone, a fact pays no hand-off to another task.
//! - **In causal order.** A fact whose publish resolved is in the queue before any fact
//!   submitted after that: the consumer folds one caller's events in the order it published
//!   them. Facts waiting together keep their submission order within their message.
//! - **A failed publish fails every fact it carried.** Each caller gets the broker's error
//!   and its event is not accepted (the edge answers so and the sender retries it).
//! - **What cannot be grouped goes alone.** An envelope whose fact cannot be made is published
//!   whole in a message of its own ([`super::live::message`]), so that the consumer
//!   dead-letters it by itself; an event the index does not read is not published.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use gw_broker::{Broker, BrokerError};
use tokio::sync::{mpsc, oneshot};

use super::live::{self, FactEvent};
use crate::model::envelope::Envelope;

/// Most facts in one message (≈ 400 bytes each: about 100 KiB at most).
pub const MAX_GROUP: usize = 256;

/// A fact waiting to be sent, with the way to tell its caller.
struct Pending {
    fact: FactEvent,
    traceparent: String,
    done: oneshot::Sender<Result<(), BrokerError>>,
}

/// Publishes the index's facts to one queue, grouped (see the module's invariants).
pub struct FactPublisher {
    queue: String,
    broker: Arc<dyn Broker>,
    tx: mpsc::UnboundedSender<Pending>,
    /// Held while a message is in flight (by a caller sending its fact alone, or the task).
    flight: Arc<tokio::sync::Mutex<()>>,
    /// What was confirmed: facts, and the messages that carried them.
    pub counts: Arc<Counts>,
}

/// Facts and messages the broker confirmed (for `/metrics`: their ratio is how many facts
/// share a message).
#[derive(Debug, Default)]
pub struct Counts {
    pub facts: AtomicU64,
    pub messages: AtomicU64,
}

impl Counts {
    fn confirmed(&self, facts: usize) {
        self.facts.fetch_add(facts as u64, Relaxed);
        self.messages.fetch_add(1, Relaxed);
    }

    /// The two counters as OpenMetrics text.
    pub fn render(&self) -> String {
        use crate::telemetry::metrics::family;
        let mut out = String::new();
        family(
            &mut out,
            "gateway_indicator_facts_published_total",
            "counter",
            "Facts of accepted events published to the service-quality index's queue (confirmed).",
        );
        out.push_str(&format!(
            "gateway_indicator_facts_published_total {}\n",
            self.facts.load(Relaxed)
        ));
        family(
            &mut out,
            "gateway_indicator_fact_messages_total",
            "counter",
            "Messages that carried them: facts of events accepted at the same time share one.",
        );
        out.push_str(&format!(
            "gateway_indicator_fact_messages_total {}\n",
            self.messages.load(Relaxed)
        ));
        out
    }
}

impl std::fmt::Debug for FactPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactPublisher")
            .field("queue", &self.queue)
            .finish()
    }
}

impl FactPublisher {
    /// Start the sending task (it ends when the publisher is dropped, after what it holds).
    /// Must be called within a Tokio runtime.
    pub fn start(broker: Arc<dyn Broker>, queue: &str) -> FactPublisher {
        let (tx, rx) = mpsc::unbounded_channel();
        let flight = Arc::new(tokio::sync::Mutex::new(()));
        let counts = Arc::new(Counts::default());
        tokio::spawn(send_loop(
            broker.clone(),
            queue.to_string(),
            rx,
            flight.clone(),
            counts.clone(),
        ));
        FactPublisher {
            queue: queue.to_string(),
            broker,
            tx,
            flight,
            counts,
        }
    }

    /// The queue it publishes to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Publish `env`'s fact (or `env` whole, or nothing: see the invariants); resolves once
    /// the broker confirmed it.
    pub async fn publish(&self, env: &Envelope) -> Result<(), BrokerError> {
        let fact = match FactEvent::of(env) {
            Ok(None) => return Ok(()),
            Ok(Some(fact)) => fact,
            Err(_) => {
                let Some(whole) = live::message(env) else {
                    return Ok(());
                };
                return self.broker.publish(&self.queue, whole).await;
            }
        };
        // Nothing in flight: send it now, from here (a caller that goes away takes only its
        // own fact with it).
        if let Ok(_flight) = self.flight.try_lock() {
            let msg = live::group_message(&[&fact], &env.traceparent);
            self.broker.publish(&self.queue, msg).await?;
            self.counts.confirmed(1);
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            fact,
            traceparent: env.traceparent.clone(),
            done,
        };
        self.tx.send(pending).map_err(|_| BrokerError::Closed)?;
        answer.await.map_err(|_| BrokerError::Closed)?
    }
}

/// The sending task: one message per group of waiting facts, once nothing is in flight.
async fn send_loop(
    broker: Arc<dyn Broker>,
    queue: String,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    flight: Arc<tokio::sync::Mutex<()>>,
    counts: Arc<Counts>,
) {
    let mut group: Vec<Pending> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, 1).await > 0 {
        let _flight = flight.lock().await;
        // Everything that came while the flight ended goes too.
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let msg = {
            let facts: Vec<&FactEvent> = group.iter().map(|p| &p.fact).collect();
            live::group_message(&facts, &group[0].traceparent)
        };
        let result = broker.publish(&queue, msg).await;
        if result.is_ok() {
            counts.confirmed(group.len());
        }
        for p in group.drain(..) {
            // A caller that gave up (its request was dropped) is not waiting any more.
            let _ = p.done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DossierStatus;
    use gw_broker::QueueSpec;

    fn snapshot(key: &str) -> Envelope {
        let mut d = crate::indicators::state::tests::dossier(DossierStatus::Received, 3);
        d.code = key.into();
        let mut e = Envelope::new(
            "dossier.upserted",
            key,
            "onestop",
            serde_json::to_value(&d).unwrap(),
        );
        e.version = Some(3);
        e
    }

    async fn embedded() -> (tempfile::TempDir, Arc<dyn Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let broker: Arc<dyn Broker> = Arc::new(
            gw_broker::embedded::EmbeddedBroker::open(
                dir.path().join("q.db"),
                gw_broker::embedded::EmbeddedOptions::default(),
            )
            .unwrap(),
        );
        broker
            .declare(&[QueueSpec {
                name: "gw.indicators".into(),
                delivery_limit: 5,
            }])
            .await
            .unwrap();
        (dir, broker)
    }

    /// Facts published at once travel in fewer messages than facts, every fact arrives
    /// exactly once and in submission order; one published alone travels alone, after them.
    #[tokio::test]
    async fn concurrent_facts_share_messages_in_order_and_a_lone_one_goes_alone() {
        let (_dir, broker) = embedded().await;
        let publisher = FactPublisher::start(broker.clone(), "gw.indicators");
        let envs: Vec<Envelope> = (0..300).map(|i| snapshot(&format!("H-{i:03}"))).collect();
        // Submitted in this order: the first finds nothing in flight and goes alone, the
        // others wait for it and go together, in order.
        let all = futures::future::join_all(envs.iter().map(|e| publisher.publish(e))).await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        let lone = snapshot("H-LONE");
        publisher.publish(&lone).await.unwrap();

        let mut consumer = broker.consume("gw.indicators", 1000).await.unwrap();
        let mut read = Vec::new();
        let mut messages = 0;
        while read.len() < 301 {
            let d = tokio::time::timeout(std::time::Duration::from_secs(5), consumer.next())
                .await
                .expect("every fact arrives")
                .unwrap()
                .unwrap();
            messages += 1;
            read.extend(live::read(&d.message).unwrap());
            d.ack().await.unwrap();
        }
        let keys: Vec<&str> = read.iter().map(|f| f.key.as_str()).collect();
        let want: Vec<String> = envs.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            &keys[..300],
            want.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(keys[300], "H-LONE");
        assert!(messages < 300 / 2, "{messages} messages for 301 facts");
        assert_eq!(publisher.counts.facts.load(Relaxed), 301);
        assert_eq!(publisher.counts.messages.load(Relaxed), messages);
        let text = publisher.counts.render();
        assert!(
            text.contains("gateway_indicator_facts_published_total 301\n")
                && text.contains(&format!(
                    "gateway_indicator_fact_messages_total {messages}\n"
                )),
            "{text}"
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), consumer.next())
                .await
                .is_err(),
            "nothing more than the facts"
        );
    }

    /// A publish the broker refuses fails every caller of its group, and a later one works
    /// once the queue exists.
    #[tokio::test]
    async fn a_refused_publish_fails_its_callers() {
        let (_dir, broker) = embedded().await;
        let publisher = FactPublisher::start(broker.clone(), "gw.nowhere");
        let envs: Vec<Envelope> = (0..5).map(|i| snapshot(&format!("H-{i}"))).collect();
        let all = futures::future::join_all(envs.iter().map(|e| publisher.publish(e))).await;
        assert!(all.iter().all(Result::is_err), "{all:?}");
        assert_eq!(publisher.counts.facts.load(Relaxed), 0, "nothing confirmed");
        broker
            .declare(&[QueueSpec {
                name: "gw.nowhere".into(),
                delivery_limit: 5,
            }])
            .await
            .unwrap();
        publisher.publish(&envs[0]).await.unwrap();
    }
}
