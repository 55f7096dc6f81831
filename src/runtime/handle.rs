//! Handling one delivery: the steps between taking a message from its lane and settling it.
//!
//! # Invariants
//! - The steps run in this order, and each may settle the delivery early:
//!   1. [`Turn::skip_if_settled`]: a copy the ledger already settled is acked, not re-sent;
//!   2. [`Turn::supersede_or_coalesce`]: an older version than the destination has, or one a
//!      newer queued version makes redundant, is recorded *superseded*;
//!   3. [`Turn::snapshot_gate`]: what acts on the destination's copy of a dossier waits for
//!      the dossier's snapshot, or goes to the dead letters with it;
//!   4. [`Turn::await_circuit`]: an open circuit holds the delivery (not an attempt);
//!   5. [`Turn::claim`]: (destination, key) is claimed in the store, and the version and
//!      natural-key checks that count are made under the claim;
//!   6. [`Turn::resolve_in_doubt`]: an earlier unrecorded send is looked up before re-sending;
//!   7. [`Turn::send`] and [`Turn::settle_sent`]: the connector delivers, the answer is
//!      classified, recorded (with the exchange's evidence and the claim's release) and the
//!      delivery acked, retried or dead-lettered.
//! - A step that cannot read or write the store waits patiently; only a shutdown makes it
//!   leave the delivery unsettled ([`Settlement::Leave`]: the broker gives it back).
//! - Everything a step needs of the delivery is in one [`Turn`]; no step takes the pieces one
//!   by one.

use std::time::{Duration, Instant};

use gw_broker::Delivery;
use gw_store::{
    Claim, ClaimRelease, ClaimRequest, EvidenceRecord, InDoubt, Outcome, Versions, VersionsAsk,
};
use rand::Rng;
use tracing::{debug, warn, Instrument};
use uuid::Uuid;

use super::circuit::{Permit, MAX_HOLD};
use super::context::{Ctx, Settlement};
use super::dead_letter::{dead_letter_malformed, SentFailure};
use super::records::batch;
use super::turn::Turn;
use crate::connectors::{Attempted, InDoubtCheck};
use crate::model::envelope::{trace_id, Envelope};
use crate::model::outcome::{Decision, Reason};
use crate::model::time::now_ms;
use crate::telemetry::{new_span_id, span_id, with_span};

/// Decode a delivery and handle it inside its `deliver` span.
pub(super) async fn handle(ctx: &Ctx, d: &Delivery) -> Settlement {
    let route = &ctx.route;
    let mut env = match Envelope::decode(&d.message.body) {
        Ok(e) => e,
        Err(e) => return dead_letter_malformed(ctx, d, e).await,
    };
    // The span continues the envelope's W3C trace: its trace id, and the span that accepted
    // the message as parent. From here the envelope's traceparent names this span, so the
    // `send` span (and the `traceparent` sent downstream) are its children.
    // The span's fields are evaluated only when a subscriber wants the span: made before the
    // traceparent moves on, it borrows the parent's id instead of copying it.
    let deliver_span = new_span_id();
    let span = tracing::info_span!("deliver", route = %route.name, key = %env.key, envelope = %env.id, kind = %env.kind, trace_id = %trace_id(&env.traceparent), span_id = %deliver_span, parent_span_id = %span_id(&env.traceparent), attempt = d.message.attempt);
    env.traceparent = with_span(&env.traceparent, &deliver_span);
    let mut turn = Turn::new(ctx, d, env);
    async move {
        match turn.run().await {
            Ok(s) | Err(s) => s,
        }
    }
    .instrument(span)
    .await
}

/// A granted claim with the circuit's permit, held through the send.
struct Held<'a> {
    permit: Permit<'a>,
    holder: String,
    lease_ms: i64,
    in_doubt: Option<InDoubt>,
}

/// Early settlement of a step: `Err(settlement)` ends the turn.
type Step<T> = Result<T, Settlement>;

impl<'a> Turn<'a> {
    async fn run(&mut self) -> Step<Settlement> {
        let age = now_ms().saturating_sub(self.env.created_ms).max(0) as u64;
        self.ctx
            .metrics
            .observe_age(&self.route().name, Duration::from_millis(age));
        self.skip_if_settled().await?;
        let versions = self.versions().await?;
        self.supersede_or_coalesce(&versions).await?;
        self.snapshot_gate(&versions).await?;
        let permit = self.await_circuit().await?;
        let held = self.claim(permit).await?;
        let (held, resolution) = self.resolve_in_doubt(held).await?;
        Ok(self.send(versions.delivered, held, resolution).await)
    }

    /// 1. Already settled? Only a copy that may have been seen before needs the look-up.
    async fn skip_if_settled(&self) -> Step<()> {
        if !self.may_have_been_seen() {
            return Ok(());
        }
        let store = self.ctx.store.clone();
        let (r, id) = (self.route().name.clone(), self.ledger_id.clone());
        let done = self
            .ctx
            .store_read(|| {
                let (store, r, id) = (store.clone(), r.clone(), id.clone());
                Box::pin(async move { store.outcome(&r, &id).await })
            })
            .await
            .ok_or(Settlement::Leave)?;
        match done {
            Some(prev) => {
                debug!(
                    outcome = prev.outcome.as_str(),
                    "already settled; acking the duplicate"
                );
                self.ctx.metrics.inc_outcome(
                    &self.route().name,
                    "duplicate_skipped",
                    prev.outcome.as_str(),
                );
                Err(Settlement::Ack)
            }
            None => Ok(()),
        }
    }

    /// The versions of this key the ledger knows for the route (read only when they matter:
    /// a versioned envelope, or one that acts on the destination's snapshot).
    async fn versions(&self) -> Step<Versions> {
        let route = self.route();
        if (self.env.version.is_none() && !self.acts_on_snapshot)
            || !route.connector.reads_versions()
        {
            return Ok(Versions::default());
        }
        let ask = VersionsAsk {
            route: route.name.clone(),
            destination: route.destination.clone(),
            key: self.env.key.clone(),
        };
        let versions = &self.ctx.versions;
        self.ctx
            .store_read(|| {
                let (versions, ask) = (versions.clone(), ask.clone());
                Box::pin(async move { versions.ask(ask).await })
            })
            .await
            .ok_or(Settlement::Leave)
    }

    /// 2. Superseded (the destination has this version or newer), or coalesced (a newer
    ///    version of this key is already queued for this route: send that one instead)?
    async fn supersede_or_coalesce(&self, versions: &Versions) -> Step<()> {
        let Some(version) = self.env.version else {
            return Ok(());
        };
        let why = match (versions.delivered, versions.accepted) {
            (Some(cur), _) if cur >= version => format!("destination already has version {cur}"),
            // Coalesce only once the destination has the dossier: its first snapshot goes
            // through, so what depends on the dossier existing there (progress steps at the
            // portal) does not bounce while the newest snapshot waits its turn.
            (Some(_), Some(newer)) if newer > version => {
                format!("coalesced: version {newer} is queued")
            }
            _ => return Ok(()),
        };
        // An in-doubt note of this exchange (its earlier send died unrecorded) is settled: the
        // destination has something at least as new. Holds no claim: the release deletes
        // nothing.
        let release = self.subject().release("", Some("superseded"));
        Err(self.superseded_unsent(why, release).await)
    }

    /// 3. The gate of an envelope that acts on the destination's copy of its dossier (a
    ///    progress step), when the ledger has no version of the dossier delivered there: it
    ///    is dead-lettered with its dossier when the dossier's snapshot is in the dead letters,
    ///    deferred (waiting, not an attempt) while a snapshot is queued for the route,
    ///    dead-lettered when the wait outlives the route's budget; and sent when no snapshot
    ///    is known on this route (the destination may have the dossier from elsewhere, and
    ///    decides).
    async fn snapshot_gate(&self, versions: &Versions) -> Step<()> {
        if !self.acts_on_snapshot || versions.delivered.is_some() {
            return Ok(());
        }
        let route = self.route();
        let store = self.ctx.store.clone();
        let (r, key) = (route.name.clone(), self.env.key.clone());
        let dead = self
            .ctx
            .store_read(|| {
                let (store, r, key) = (store.clone(), r.clone(), key.clone());
                Box::pin(async move {
                    store
                        .dead_letters(&gw_store::DeadLetterFilter {
                            route: Some(r),
                            key: Some(key),
                            state: Some(gw_store::DeadLetterState::Open),
                            limit: 100,
                        })
                        .await
                })
            })
            .await
            .ok_or(Settlement::Leave)?;
        if let Some(snapshot) = dead
            .iter()
            .find(|dl| !route.connector.acts_on_snapshot(&dl.letter.kind))
        {
            let why = format!(
                "{}: its dossier's snapshot is in the dead letters ({}); replay them together",
                Reason::DossierDeadLettered.as_str(),
                snapshot.letter.id
            );
            return Err(self
                .dead_letter_unsent(Reason::DossierDeadLettered, why)
                .await);
        }
        if versions.accepted.is_none() {
            return Ok(());
        }
        if route
            .policy
            .exhausted(self.failed_before, self.first_ms, now_ms())
        {
            let why = format!(
                "{}: its dossier's snapshot did not reach {} within the route's retry budget",
                Reason::RetriesExhausted.as_str(),
                route.destination
            );
            return Err(self.dead_letter_unsent(Reason::RetriesExhausted, why).await);
        }
        let delay = route
            .policy
            .delay(self.deferred.saturating_add(1), None, &mut rand::rng());
        debug!(
            delay_ms = delay.as_millis() as u64,
            "waiting for the dossier's snapshot"
        );
        self.ctx
            .metrics
            .inc_outcome(&route.name, "deferred", Reason::AwaitingDossier.as_str());
        Err(self.defer(delay))
    }

    /// 4. Wait while the destination's circuit is open (not an attempt: no ledger record, no
    ///    budget used); past [`MAX_HOLD`] hand the delivery back to the broker's durable
    ///    retry path.
    async fn await_circuit(&self) -> Step<Permit<'a>> {
        let route = self.route();
        let held = Instant::now();
        let mut waited = false;
        loop {
            match route.circuit.admit() {
                Ok(p) => return Ok(p),
                Err(wait) if held.elapsed() + wait <= MAX_HOLD => {
                    if !waited {
                        waited = true;
                        self.ctx.metrics.inc_outcome(
                            &route.name,
                            "deferred",
                            Reason::CircuitOpen.as_str(),
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = route.circuit.changed() => {}
                        _ = self.ctx.cancel.cancelled() => return Err(Settlement::Leave),
                    }
                }
                Err(wait) => {
                    debug!(
                        delay_ms = wait.as_millis() as u64,
                        "circuit open: delivery handed back to the retry path"
                    );
                    if !waited {
                        self.ctx.metrics.inc_outcome(
                            &route.name,
                            "deferred",
                            Reason::CircuitOpen.as_str(),
                        );
                    }
                    // Spread over a quarter of the cool-down, so the deferred ones do not all
                    // come back at the probes' moment.
                    let spread = rand::rng().random_range(0..=(wait.as_millis() as u64 / 4).max(1));
                    return Err(self.defer(wait + Duration::from_millis(spread)));
                }
            }
        }
    }

    /// 5. Claim (destination, key) in the store: the version check that counts is the one made
    ///    under the claim (see `gw_store::claims`).
    async fn claim(&self, permit: Permit<'a>) -> Step<Held<'a>> {
        let route = self.route();
        let holder = format!("{}/{}", self.ctx.instance, Uuid::now_v7().simple());
        let lease_ms = self.ctx.claim_lease.as_millis().max(1) as i64;
        let req = ClaimRequest {
            destination: route.destination.clone(),
            key: self.env.key.clone(),
            ledger_id: self.ledger_id.clone(),
            // A route whose connector reads no versions (the agencies' fan-out) claims the
            // key for order only: the checks that count are made by the routes it feeds.
            natural_key: self
                .natural_key
                .clone()
                .filter(|_| route.connector.reads_versions()),
            version: self
                .env
                .version
                .filter(|_| route.connector.reads_versions()),
            holder: holder.clone(),
            lease_ms,
            // Stamped with the grant: the send follows at once (after a look-up, when in
            // doubt: then the exchange is in doubt anyway until recorded).
            sending: true,
        };
        let claims = &self.ctx.claims;
        let claim = self
            .ctx
            .store_read(|| {
                let (claims, req) = (claims.clone(), req.clone());
                Box::pin(async move { claims.ask(req).await })
            })
            .await
            .ok_or(Settlement::Leave)?;
        match claim {
            Claim::Granted { in_doubt } => Ok(Held {
                permit,
                holder,
                lease_ms,
                in_doubt,
            }),
            Claim::Busy { expires_at_ms, .. } => {
                drop(permit);
                // Another lane or instance is sending for this dossier: wait for it (a
                // deferral, not an attempt; the circuit saw nothing). Until the lease would
                // run out, but at most 2 s: the holder usually releases long before (the claim
                // lasts one send).
                let wait = (expires_at_ms - now_ms()).clamp(50, lease_ms.clamp(50, 2_000)) as u64;
                let spread = rand::rng().random_range(0..=wait / 4);
                debug!(delay_ms = wait + spread, "claim busy: deferred");
                self.ctx
                    .metrics
                    .inc_outcome(&route.name, "deferred", Reason::ClaimBusy.as_str());
                Err(self.defer(Duration::from_millis(wait + spread)))
            }
            Claim::Older { newest, in_doubt } => {
                drop(permit);
                let detail = if in_doubt {
                    format!("version {newest} may already be at the destination (in doubt)")
                } else {
                    format!("destination already has version {newest}")
                };
                // This exchange's own in-doubt note (if any) is settled: something newer counts.
                let settle = self.subject().release(&holder, Some("superseded"));
                Err(self.superseded_unsent(detail, settle).await)
            }
            Claim::Done => {
                drop(permit);
                let detail =
                    "the destination already has this effect (natural key delivered)".into();
                let settle = self.subject().release(&holder, Some("already_delivered"));
                Err(self.superseded_unsent(detail, settle).await)
            }
        }
    }

    /// 6. An earlier send of this exchange was never recorded (in doubt): the party's look-up
    ///    decides before any re-send. Returns how the doubt was resolved (recorded with the
    ///    outcome), `None` when there was none.
    async fn resolve_in_doubt(&self, held: Held<'a>) -> Step<(Held<'a>, Option<&'static str>)> {
        let Some(doubt) = &held.in_doubt else {
            return Ok((held, None));
        };
        let route = self.route();
        let check = route.connector.resolve_in_doubt(&self.env).await;
        let how = check.resolution();
        warn!(
            resolution = how,
            sent_at_ms = doubt.sent_at_ms,
            "exchange in doubt (sent, never recorded)"
        );
        self.ctx.metrics.inc_outcome(&route.name, "in_doubt", how);
        let Held {
            permit,
            holder,
            lease_ms,
            in_doubt,
        } = held;
        match check {
            InDoubtCheck::AlreadyThere => {
                drop(permit);
                let subject = self.subject();
                let out = subject.outcome(
                    Outcome::Delivered,
                    self.failed_before + 1,
                    None,
                    "in doubt: already_there (the party's look-up shows it; not sent again)".into(),
                );
                let att = subject.attempt(
                    self.failed_before + 1,
                    "in_doubt_already_there",
                    (None, Reason::Accepted.as_str()),
                    Duration::ZERO,
                );
                let mut b = batch(vec![out], vec![att], vec![]);
                b.releases = vec![subject.release(&holder, Some(how))];
                Err(self
                    .ctx
                    .settle(b, "delivered", "in_doubt_already_there")
                    .await)
            }
            InDoubtCheck::LookupFailed(attempted) => {
                // Never send blindly: retry the look-up later. The in-doubt note stays open.
                permit.report(attempted.health);
                Err(self.lookup_failed(&holder, &attempted).await)
            }
            InDoubtCheck::NotThere | InDoubtCheck::Unverifiable(_) => Ok((
                Held {
                    permit,
                    holder,
                    lease_ms,
                    in_doubt,
                },
                Some(how),
            )),
        }
    }

    /// The look-up of an exchange in doubt failed: a failed attempt (retried, or dead-lettered
    /// past the budget); the in-doubt note stays open.
    async fn lookup_failed(&self, holder: &str, attempted: &Attempted) -> Settlement {
        let route = self.route();
        let this_attempt = self.failed_before + 1;
        let subject = self.subject();
        let release = subject.release(holder, None);
        if route
            .policy
            .exhausted(this_attempt, self.first_ms, now_ms())
        {
            let failure = SentFailure {
                reason: Reason::RetriesExhausted,
                attempted,
                last_reason: Reason::LookupFailed.as_str(),
                evidence: vec![],
                release: Some(release),
            };
            return self.dead_letter_sent(this_attempt, failure).await;
        }
        let delay = route.policy.delay(this_attempt, None, &mut rand::rng());
        let att = subject.attempt(
            this_attempt,
            "retry",
            (attempted.answer.status(), Reason::LookupFailed.as_str()),
            attempted.latency,
        );
        let mut b = batch(vec![], vec![att], vec![]);
        b.releases = vec![release];
        if !self.ctx.record_patiently(b).await {
            return Settlement::Leave;
        }
        self.retry_later(Reason::LookupFailed, delay)
    }

    /// 7. Send through the connector inside the `send` span, with the exchanges captured for
    ///    the evidence log and the claim kept alive by a heartbeat; then settle the answer.
    async fn send(
        &mut self,
        prior: Option<i64>,
        held: Held<'a>,
        resolution: Option<&'static str>,
    ) -> Settlement {
        let ctx = self.ctx;
        let route = self.route();
        let claim_release = self.subject().release(&held.holder, resolution);
        let send_span_id = new_span_id();
        let send_span = tracing::info_span!("send", route = %route.name, destination = %route.destination, key = %self.env.key, envelope = %self.env.id, trace_id = %trace_id(&self.env.traceparent), span_id = %send_span_id, parent_span_id = %span_id(&self.env.traceparent), http_status = tracing::field::Empty, outcome = tracing::field::Empty);
        self.env.traceparent = with_span(&self.env.traceparent, &send_span_id);
        let evidence_log = ctx.evidence.as_deref();
        let capture = evidence_log.and_then(|e| e.capture_for(&route.destination));
        let send = crate::evidence::capture::capture(
            capture,
            route
                .connector
                .deliver_seen(&self.env, prior, self.may_have_been_seen())
                .instrument(send_span.clone()),
        );
        // Heartbeat: keep the claim while the send lasts (a third of the lease at a time).
        let heartbeat = async {
            let every = Duration::from_millis((held.lease_ms as u64 / 3).max(1));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = ctx
                    .store
                    .extend_claim(
                        &route.destination,
                        &self.env.key,
                        &held.holder,
                        held.lease_ms,
                        false,
                    )
                    .await
                {
                    debug!(error = %e, "claim heartbeat failed");
                }
            }
        };
        let (attempted, exchanges): (Attempted, _) = tokio::select! {
            sent = send => sent,
            never = heartbeat => never,
        };
        if let Some(s) = attempted.answer.status() {
            send_span.record("http_status", s);
        }
        let outcome = match &attempted.decision {
            Decision::Delivered => "delivered",
            Decision::Superseded => "superseded",
            Decision::Permanent { .. } => "refused",
            Decision::Retry { .. } => "retry",
        };
        send_span.record("outcome", outcome);
        drop(send_span);
        held.permit.report(attempted.health);
        let evidence = evidence_log
            .map(|e| {
                let exchange = format!(
                    "{}/{}/{}",
                    route.name,
                    self.ledger_id,
                    self.failed_before + 1
                );
                let id = self.env.id.to_string();
                e.records(
                    &crate::evidence::RecordContext {
                        adapter: &route.destination,
                        direction: "out",
                        route: &route.name,
                        exchange_prefix: &exchange,
                        envelope_id: &id,
                        dossier: &self.env.key,
                        operation: &self.env.kind,
                    },
                    exchanges,
                )
            })
            .unwrap_or_default();
        ctx.metrics.observe_latency(&route.name, attempted.latency);
        self.settle_sent(&attempted, evidence, claim_release, resolution)
            .await
    }

    /// Record what the destination's answer means: delivered, superseded, dead-lettered
    /// (refused, or out of retry budget) or retried later.
    async fn settle_sent(
        &self,
        attempted: &Attempted,
        evidence: Vec<EvidenceRecord>,
        claim_release: ClaimRelease,
        resolution: Option<&'static str>,
    ) -> Settlement {
        let route = self.route();
        let this_attempt = self.failed_before + 1;
        let status = attempted.answer.status();
        let subject = self.subject();
        let (outcome, result, reason, detail) = match &attempted.decision {
            Decision::Delivered => (
                Outcome::Delivered,
                "delivered",
                Reason::Accepted,
                match resolution {
                    Some(how) => format!(
                        "digest sha256:{} (in doubt before: {how})",
                        attempted.request_digest
                    ),
                    None => format!("digest sha256:{}", attempted.request_digest),
                },
            ),
            Decision::Superseded => (
                Outcome::Superseded,
                "superseded",
                Reason::Superseded,
                attempted.answer.summary(),
            ),
            Decision::Permanent { reason } => {
                let failure = SentFailure {
                    reason: *reason,
                    attempted,
                    last_reason: "permanent",
                    evidence,
                    release: Some(claim_release),
                };
                return self.dead_letter_sent(this_attempt, failure).await;
            }
            Decision::Retry { reason, not_before } => {
                if route
                    .policy
                    .exhausted(this_attempt, self.first_ms, now_ms())
                {
                    let failure = SentFailure {
                        reason: Reason::RetriesExhausted,
                        attempted,
                        last_reason: reason.as_str(),
                        evidence,
                        release: Some(claim_release),
                    };
                    return self.dead_letter_sent(this_attempt, failure).await;
                }
                let delay = route
                    .policy
                    .delay(this_attempt, *not_before, &mut rand::rng());
                let att = subject.attempt(
                    this_attempt,
                    "retry",
                    (status, reason.as_str()),
                    attempted.latency,
                );
                // A retry leaves the exchange unsettled: its in-doubt note (if any) stays open.
                let mut b = batch(vec![], vec![att], vec![]);
                b.evidence = evidence;
                b.releases = vec![ClaimRelease {
                    resolution: None,
                    ..claim_release
                }];
                if !self.ctx.record_patiently(b).await {
                    return Settlement::Leave;
                }
                debug!(reason = reason.as_str(), status = ?status, delay_ms = delay.as_millis() as u64, "retry scheduled");
                return self.retry_later(*reason, delay);
            }
        };
        let out = subject.outcome(outcome, this_attempt, status, detail);
        let att = subject.attempt(
            this_attempt,
            result,
            (status, reason.as_str()),
            attempted.latency,
        );
        let mut b = batch(vec![out], vec![att], vec![]);
        b.evidence = evidence;
        b.releases = vec![claim_release];
        self.ctx.settle(b, result, reason.as_str()).await
    }
}
