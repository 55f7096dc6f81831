//! The ledger records of one delivery: its outcome, its attempts, its dead letter and the
//! release of its claim, all built from one [`Subject`].
//!
//! # Invariants
//! - Every record of a delivery names the same route, ledger id and key: they are taken from
//!   the one [`Subject`], never passed piecemeal.
//! - A dead letter keeps the message's body exactly as the broker gave it (a replay sends
//!   that), and the queue it came from.
//! - Times are stamped here, at building (unix ms, UTC).

use std::time::Duration;

use gw_store::{AttemptRecord, Batch, ClaimRelease, NewDeadLetter, Outcome, OutcomeRecord};
use uuid::Uuid;

use super::route::Route;
use crate::model::envelope::Envelope;
use crate::model::outcome::Answer;
use crate::model::time::now_ms;

/// Who and what a delivery's records are about.
pub(super) struct Subject<'a> {
    pub route: &'a Route,
    /// The queue the message came from (a dead letter is replayed there).
    pub queue: &'a str,
    /// The message body as the broker gave it.
    pub body: &'a [u8],
    /// The ledger's id of this delivery (the envelope id, or its replay id).
    pub ledger_id: &'a str,
    /// The envelope's own id (a replay keeps it).
    pub envelope_id: String,
    pub key: &'a str,
    pub kind: &'a str,
    pub natural_key: Option<String>,
    pub version: Option<i64>,
}

impl<'a> Subject<'a> {
    /// A delivery whose envelope was read; `natural_key` is the envelope's
    /// ([`Envelope::natural_key`], computed once per delivery by its turn).
    pub fn of_envelope(
        route: &'a Route,
        (queue, body): (&'a str, &'a [u8]),
        env: &'a Envelope,
        (ledger_id, natural_key): (&'a str, Option<String>),
    ) -> Self {
        Subject {
            route,
            queue,
            body,
            ledger_id,
            envelope_id: env.id.to_string(),
            key: &env.key,
            kind: &env.kind,
            natural_key,
            version: env.version,
        }
    }

    /// A message known only by its broker identity (its envelope unread or unreadable): the
    /// message id is both its ledger id and its envelope id.
    pub fn of_message(
        route: &'a Route,
        (queue, body): (&'a str, &'a [u8]),
        (id, key): (&'a str, &'a str),
        kind: &'a str,
    ) -> Self {
        Subject {
            route,
            queue,
            body,
            ledger_id: id,
            envelope_id: id.to_string(),
            key,
            kind,
            natural_key: None,
            version: None,
        }
    }

    /// The delivery's outcome after `attempts` attempts.
    pub fn outcome(
        &self,
        outcome: Outcome,
        attempts: u32,
        status: Option<u16>,
        detail: String,
    ) -> OutcomeRecord {
        OutcomeRecord {
            route: self.route.name.clone(),
            destination: self.route.destination.clone(),
            envelope_id: self.ledger_id.to_string(),
            key: self.key.to_string(),
            kind: self.kind.to_string(),
            natural_key: self.natural_key.clone(),
            version: self.version,
            outcome,
            attempts,
            status,
            detail,
            at_ms: now_ms(),
        }
    }

    /// One attempt: its number, what came of it (`delivered`, `retry`, …), the HTTP status,
    /// the bounded reason label and how long it took.
    pub fn attempt(
        &self,
        attempt: u32,
        result: &str,
        (status, reason): (Option<u16>, &str),
        latency: Duration,
    ) -> AttemptRecord {
        AttemptRecord {
            route: self.route.name.clone(),
            envelope_id: self.ledger_id.to_string(),
            key: self.key.to_string(),
            attempt,
            result: result.to_string(),
            status,
            reason: reason.to_string(),
            latency_ms: latency.as_millis().min(u32::MAX as u128) as u32,
            at_ms: now_ms(),
        }
    }

    /// The dead letter: why, after how many attempts, since when, and the party's last answer
    /// (`None`: it was never sent, or never answered).
    pub fn dead_letter(
        &self,
        reason: String,
        attempts: u32,
        first_ms: i64,
        last: Option<&Answer>,
    ) -> NewDeadLetter {
        NewDeadLetter {
            id: Uuid::now_v7().to_string(),
            route: self.route.name.clone(),
            queue: self.queue.to_string(),
            envelope_id: self.envelope_id.clone(),
            key: self.key.to_string(),
            kind: self.kind.to_string(),
            envelope: self.body.to_vec(),
            reason,
            attempts,
            last_status: last.and_then(Answer::status),
            last_answer: last.map(Answer::summary).unwrap_or_default(),
            first_attempt_ms: first_ms,
            dead_at_ms: now_ms(),
        }
    }

    /// The release of the claim `holder` took for this delivery, recorded with its outcome
    /// (same transaction); `resolution` settles the exchange's open in-doubt notes.
    pub fn release(&self, holder: &str, resolution: Option<&str>) -> ClaimRelease {
        ClaimRelease {
            destination: self.route.destination.clone(),
            key: self.key.to_string(),
            holder: holder.to_string(),
            ledger_id: self.ledger_id.to_string(),
            natural_key: self.natural_key.clone(),
            resolution: resolution.map(str::to_owned),
        }
    }
}

/// A ledger batch of these records.
pub(super) fn batch(
    outcomes: Vec<OutcomeRecord>,
    attempts: Vec<AttemptRecord>,
    dead_letters: Vec<NewDeadLetter>,
) -> Batch {
    Batch {
        outcomes,
        attempts,
        dead_letters,
        ..Default::default()
    }
}
