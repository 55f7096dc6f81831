//! One delivery being handled: the [`Turn`] every step of it shares.
//!
//! # Invariants
//! - The ledger id, the first attempt's time, the deferrals and the failed attempts are read
//!   from the delivery's headers once, here; no step reads them again. The envelope's natural
//!   key is computed once, here, too (for a progress step it reads the payload).
//! - A deferral ([`Turn::defer`]) is not an attempt: it keeps the retry budget; a retry
//!   ([`Turn::retry_later`]) is, and names its reason for the trail.

use std::time::Duration;

use gw_broker::Delivery;
use gw_store::{ClaimRelease, Outcome};

use super::context::{Ctx, Settlement};
use super::records::{batch, Subject};
use super::route::{
    Route, HDR_DEFERRED, HDR_FIRST_MS, HDR_LAST_REASON, HDR_MAY_BE_DUPLICATE, HDR_REPLAY_OF,
};
use crate::model::envelope::Envelope;
use crate::model::outcome::Reason;
use crate::model::time::now_ms;

/// One delivery being handled: the lane's context, the delivery, its envelope and what its
/// headers say about earlier attempts.
pub(super) struct Turn<'a> {
    pub ctx: &'a Ctx,
    pub d: &'a Delivery,
    pub env: Envelope,
    /// The ledger's id: the envelope id, or `<id>/replay/<dead letter>` for a replay.
    pub ledger_id: String,
    /// [`Envelope::natural_key`] of `env`.
    pub natural_key: Option<String>,
    pub is_replay: bool,
    /// Published again by a job that may have published it before ([`HDR_MAY_BE_DUPLICATE`]).
    pub may_be_duplicate: bool,
    /// Unix ms of the first attempt (the elapsed retry budget counts from it).
    pub first_ms: i64,
    /// Redeliveries that were deferrals (circuit, busy claim, awaited snapshot), not attempts.
    pub deferred: u32,
    /// Failed attempts before this one.
    pub failed_before: u32,
    /// It acts on the destination's copy of its dossier (a progress step), unversioned.
    pub acts_on_snapshot: bool,
}

impl<'a> Turn<'a> {
    pub(super) fn new(ctx: &'a Ctx, d: &'a Delivery, env: Envelope) -> Self {
        let headers = &d.message.headers;
        let replay_of = headers.get(HDR_REPLAY_OF);
        let ledger_id = match replay_of {
            Some(dl) => format!("{}/replay/{dl}", env.id),
            None => env.id.to_string(),
        };
        let first_ms = headers
            .get(HDR_FIRST_MS)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(now_ms);
        let deferred: u32 = headers
            .get(HDR_DEFERRED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let acts_on_snapshot =
            env.version.is_none() && ctx.route.connector.acts_on_snapshot(&env.kind);
        Turn {
            ctx,
            d,
            ledger_id,
            natural_key: env.natural_key(),
            is_replay: replay_of.is_some(),
            may_be_duplicate: env.headers.contains_key(HDR_MAY_BE_DUPLICATE),
            first_ms,
            deferred,
            failed_before: d.message.attempt.saturating_sub(deferred),
            acts_on_snapshot,
            env,
        }
    }

    /// Whether this delivery may have been handled before (redelivered by the broker, a
    /// retry, a replay, or published again by a job that may have published it before): only
    /// then is the ledger asked whether it was settled.
    pub(super) fn may_have_been_seen(&self) -> bool {
        let d = self.d;
        d.redelivered
            || self.failed_before > 0
            || d.delivery_count > 1
            || self.is_replay
            || self.may_be_duplicate
    }

    pub(super) fn route(&self) -> &'a Route {
        &self.ctx.route
    }

    /// Who this delivery's records are about.
    pub(super) fn subject(&self) -> Subject<'_> {
        Subject::of_envelope(
            &self.ctx.route,
            (&self.d.queue, &self.d.message.body),
            &self.env,
            (&self.ledger_id, self.natural_key.clone()),
        )
    }

    /// Hand the delivery back to the broker's retry path without an attempt: a deferral (the
    /// broker counts it as a redelivery; `x-gw-deferred` keeps it out of the retry budget).
    pub(super) fn defer(&self, delay: Duration) -> Settlement {
        let mut headers = self.d.message.headers.clone();
        headers.insert(HDR_FIRST_MS.into(), self.first_ms.to_string());
        headers.insert(HDR_DEFERRED.into(), (self.deferred + 1).to_string());
        Settlement::Retry(headers, delay.max(Duration::from_millis(1)))
    }

    /// Try again after `delay`: a failed attempt, counted in the retry budget.
    pub(super) fn retry_later(&self, reason: Reason, delay: Duration) -> Settlement {
        let mut headers = self.d.message.headers.clone();
        headers.insert(HDR_FIRST_MS.into(), self.first_ms.to_string());
        headers.insert(HDR_LAST_REASON.into(), reason.as_str().into());
        self.ctx
            .metrics
            .inc_outcome(&self.route().name, "retried", reason.as_str());
        Settlement::Retry(headers, delay)
    }

    /// Record a delivery that was not sent because the destination has it or something newer.
    pub(super) async fn superseded_unsent(
        &self,
        detail: String,
        release: ClaimRelease,
    ) -> Settlement {
        let subject = self.subject();
        let out = subject.outcome(Outcome::Superseded, self.failed_before, None, detail);
        let att = subject.attempt(
            self.failed_before + 1,
            "superseded",
            (None, Reason::Superseded.as_str()),
            Duration::ZERO,
        );
        let mut b = batch(vec![out], vec![att], vec![]);
        b.releases = vec![release];
        self.ctx
            .settle(b, "superseded", Reason::Superseded.as_str())
            .await
    }
}
