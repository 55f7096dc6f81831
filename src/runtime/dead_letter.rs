//! The ways a delivery reaches the dead letters.
//!
//! # Invariants
//! - A dead letter is written in the same transaction as the delivery's outcome (and the
//!   release of its claim, when it held one): an operator never sees one without the other.
//! - Its reason names a bounded [`Reason`] first, then the detail (last HTTP status, the
//!   dossier whose snapshot is dead, …); the party's last answer is kept beside it.
//! - Messages the broker moved aside (past its delivery limit: a crash loop) are drained into
//!   the store's dead letters too, so there is one place to look and replay.

use std::sync::Arc;
use std::time::Duration;

use gw_broker::HDR_DEAD_REASON;
use gw_store::{ClaimRelease, EvidenceRecord, Outcome};
use tracing::warn;

use super::context::{Ctx, Settlement};
use super::records::{batch, Subject};
use super::turn::Turn;
use crate::connectors::Attempted;
use crate::model::envelope::Envelope;
use crate::model::outcome::Reason;
use crate::model::time::now_ms;

/// Why a sent delivery is dead-lettered, and what goes with it into the transaction.
pub(super) struct SentFailure<'a> {
    pub reason: Reason,
    pub attempted: &'a Attempted,
    /// The bounded label of the last failure (`permanent`, a retry reason, …).
    pub last_reason: &'a str,
    pub evidence: Vec<EvidenceRecord>,
    pub release: Option<ClaimRelease>,
}

impl Turn<'_> {
    /// Dead-letter a delivery that was never sent (decided before calling the destination).
    pub(super) async fn dead_letter_unsent(&self, reason: Reason, why: String) -> Settlement {
        let attempts = self.d.message.attempt + 1;
        let subject = self.subject();
        let dl = subject.dead_letter(why.clone(), attempts, self.first_ms, None);
        let out = subject.outcome(Outcome::DeadLettered, attempts, None, why);
        let s = self
            .ctx
            .settle(
                batch(vec![out], vec![], vec![dl]),
                "dead_lettered",
                reason.as_str(),
            )
            .await;
        if matches!(s, Settlement::Ack) {
            warn!(reason = reason.as_str(), "dead-lettered");
        }
        s
    }

    /// Dead-letter a delivery after its `attempts`-th attempt, the last of which was sent.
    pub(super) async fn dead_letter_sent(&self, attempts: u32, f: SentFailure<'_>) -> Settlement {
        let answer = &f.attempted.answer;
        let status = answer.status();
        let why = format!(
            "{}: last answer was {} ({})",
            f.reason.as_str(),
            status
                .map(|s| format!("HTTP {s}"))
                .unwrap_or_else(|| "no HTTP answer".into()),
            f.last_reason
        );
        let subject = self.subject();
        let dl = subject.dead_letter(why.clone(), attempts, self.first_ms, Some(answer));
        let out = subject.outcome(Outcome::DeadLettered, attempts, status, why);
        let att = subject.attempt(
            attempts,
            "dead_lettered",
            (status, f.reason.as_str()),
            f.attempted.latency,
        );
        let mut b = batch(vec![out], vec![att], vec![dl]);
        b.evidence = f.evidence;
        b.releases = f.release.into_iter().collect();
        let s = self.ctx.settle(b, "dead_lettered", f.reason.as_str()).await;
        if matches!(s, Settlement::Ack) {
            warn!(reason = f.reason.as_str(), attempts, "dead-lettered");
        }
        s
    }
}

/// A message whose envelope cannot be read: dead-lettered at once (no retry can help).
pub(super) async fn dead_letter_malformed(
    ctx: &Ctx,
    d: &gw_broker::Delivery,
    error: impl std::fmt::Display,
) -> Settlement {
    dead_letter_at_once(
        ctx,
        d,
        format!("malformed envelope: {error}"),
        Reason::MalformedEnvelope,
    )
    .await
}

/// A delivery dead-lettered without an attempt to send it (its envelope unread or its
/// handling failed): the dead letter keeps the raw message, the ledger says why.
pub(super) async fn dead_letter_at_once(
    ctx: &Ctx,
    d: &gw_broker::Delivery,
    why: String,
    reason: Reason,
) -> Settlement {
    let attempts = d.message.attempt + 1;
    let subject = Subject::of_message(
        &ctx.route,
        (&d.queue, &d.message.body),
        (&d.message.id, &d.message.key),
        "",
    );
    let dl = subject.dead_letter(why, attempts, now_ms(), None);
    let reason = reason.as_str();
    let out = subject.outcome(Outcome::DeadLettered, attempts, None, reason.into());
    ctx.settle(batch(vec![out], vec![], vec![dl]), "dead_lettered", reason)
        .await
}

/// Messages the broker moved aside (delivery limit, reject) become store dead letters.
pub(super) async fn drain_broker_dead_letters(
    ctx: Arc<Ctx>,
    mut consumer: Box<dyn gw_broker::Consumer>,
    queue: String,
) {
    loop {
        let next = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            n = consumer.next() => n,
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                warn!(queue = %queue, error = %e, "dead-letter queue consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            None => break,
        };
        let reason = d
            .message
            .headers
            .get(HDR_DEAD_REASON)
            .cloned()
            .unwrap_or_else(|| {
                format!(
                    "{}: redelivered past the broker's delivery limit (a crash loop?)",
                    Reason::BrokerDeliveryLimit.as_str()
                )
            });
        let (kind, first_ms) = match Envelope::decode(&d.message.body) {
            Ok(e) => (e.kind, e.created_ms),
            Err(_) => (String::new(), now_ms()),
        };
        let attempts = d.message.attempt + 1;
        let subject = Subject::of_message(
            &ctx.route,
            (&queue, &d.message.body),
            (&d.message.id, &d.message.key),
            &kind,
        );
        let dl = subject.dead_letter(reason.clone(), attempts, first_ms, None);
        let out = subject.outcome(Outcome::DeadLettered, attempts, None, reason);
        let settled = ctx
            .settle(
                batch(vec![out], vec![], vec![dl]),
                "dead_lettered",
                Reason::BrokerDeliveryLimit.as_str(),
            )
            .await;
        if matches!(settled, Settlement::Ack) {
            let _ = d.ack().await;
        }
    }
}
