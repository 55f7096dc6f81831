//! The pull feed's writer: the destination of a pull subscription's route. Delivering an event
//! appends its projection for the subscription to the subscription's feed in the store
//! ([`gw_store::feeds`]); agencies page it through `GET /feeds/{subscription}`.
//!
//! # Invariants
//! - **Durable before delivered.** `deliver` answers delivered only after the store committed
//!   the append (or found the event already there); the route runtime then records and acks.
//!   A crash before that redelivers the event, and the store's one-entry-per-event rule makes
//!   the second append a no-op that names the first entry's cursor.
//! - **Only the projection is stored**: [`Subscription::project`] builds what the agency may
//!   receive (its fields, its personal fields with their legal basis); the envelope's payload
//!   itself never reaches the feed.
//! - A store failure is retried (the runtime's policy); an event whose projection is above the
//!   store's cap is refused (dead-lettered with the reason), never truncated.
//! - One "exchange" is one append: its health is what the store's answer says.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use gw_store::feeds::{Appended, NewEntry};
use gw_store::StoreError;

use super::connector::{Attempted, Connector};
use crate::agencies::feed::Feeds;
use crate::agencies::Subscription;
use crate::model::envelope::Envelope;
use crate::model::outcome::{Answer, Decision, Health, Reason, TransportFailure};
use crate::model::time::now_ms;

/// The name of a pull subscription's route and destination: `feed.<subscription>` (a
/// configured route cannot take it: route names have no `.`).
pub fn destination(subscription: &str) -> String {
    format!("feed.{subscription}")
}

/// Appends a pull subscription's events to its feed.
pub struct FeedWriter {
    name: String,
    subscription: Arc<Subscription>,
    feeds: Arc<Feeds>,
}

impl FeedWriter {
    pub fn new(subscription: Arc<Subscription>, feeds: Arc<Feeds>) -> Self {
        FeedWriter {
            name: destination(&subscription.name),
            subscription,
            feeds,
        }
    }
}

fn answered(status: u16, body: String, decision: Decision, started: Instant) -> Attempted {
    Attempted {
        answer: Answer::Http {
            status,
            retry_after: None,
            body,
        },
        decision,
        latency: started.elapsed(),
        request_digest: String::new(),
        health: Health::Up,
    }
}

#[async_trait]
impl Connector for FeedWriter {
    fn adapter(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, env: &Envelope, _prior: Option<i64>) -> Attempted {
        let started = Instant::now();
        let sub = &self.subscription.name;
        let Some(p) = self.subscription.project(env) else {
            // The route takes only what the subscription takes; nothing to append.
            return answered(
                204,
                "not taken by the subscription's filter".into(),
                Decision::Delivered,
                started,
            );
        };
        let digest = p.digest.clone();
        let entry = NewEntry {
            event_id: env.id.to_string(),
            dossier: env.key.clone(),
            kind: env.kind.clone(),
            fields: p.fields.iter().map(|f| f.to_string()).collect(),
            digest: p.digest,
            payload: p.body,
            at_ms: now_ms(),
        };
        let mut a = match self.feeds.store.append(sub, entry).await {
            Ok(Appended::New(seq)) => {
                self.feeds.hub.appended(sub, seq);
                self.feeds.metrics.appended(sub);
                answered(
                    201,
                    format!("appended at cursor {seq}"),
                    Decision::Delivered,
                    started,
                )
            }
            Ok(Appended::Existing(seq)) => {
                self.feeds.metrics.duplicate(sub);
                answered(
                    200,
                    format!("already in the feed at cursor {seq}"),
                    Decision::Delivered,
                    started,
                )
            }
            Err(e @ StoreError::TooLarge { .. }) => answered(
                413,
                e.to_string(),
                Decision::Permanent {
                    reason: Reason::ClientError,
                },
                started,
            ),
            Err(e) => Attempted {
                answer: Answer::Transport {
                    failure: TransportFailure::Broken,
                    detail: format!("feed store: {e}"),
                },
                decision: Decision::Retry {
                    reason: Reason::ConnectionError,
                    not_before: None,
                },
                latency: started.elapsed(),
                request_digest: String::new(),
                health: Health::Down,
            },
        };
        a.request_digest = digest;
        a
    }
}
