//! Row builders shared by the store suites ([`crate::suite`] and [`crate::evidence_suite`]):
//! a delivered [`OutcomeRecord`] and an open [`NewDeadLetter`] with plausible defaults, which a
//! scenario adjusts.
//!
//! # Invariants
//! - Builders only: no scenario and no store call lives here, so both suites import this file
//!   and neither imports the other. `gw_store::suite::{outcome, dead_letter}` re-export them.
//! - Every value is fixed except the arguments and a dead letter's fresh UUIDv7 id; nothing
//!   personal.

use crate::records::{NewDeadLetter, Outcome, OutcomeRecord};

/// A delivered outcome with every optional field empty; tests adjust what they need.
pub fn outcome(route: &str, envelope_id: &str, key: &str, at_ms: i64) -> OutcomeRecord {
    OutcomeRecord {
        route: route.into(),
        destination: "national".into(),
        envelope_id: envelope_id.into(),
        key: key.into(),
        kind: "dossier.upserted".into(),
        natural_key: None,
        version: None,
        outcome: Outcome::Delivered,
        attempts: 1,
        status: Some(200),
        detail: "accepted".into(),
        at_ms,
    }
}

pub fn dead_letter(route: &str, envelope_id: &str, key: &str, dead_at_ms: i64) -> NewDeadLetter {
    NewDeadLetter {
        id: uuid::Uuid::now_v7().to_string(),
        route: route.into(),
        queue: format!("{route}.in"),
        envelope_id: envelope_id.into(),
        key: key.into(),
        kind: "dossier.upserted".into(),
        envelope: format!("{{\"id\":\"{envelope_id}\"}}").into_bytes(),
        reason: "permanent refusal".into(),
        attempts: 3,
        last_status: Some(422),
        last_answer: "{\"error\":\"invalid\"}".into(),
        first_attempt_ms: dead_at_ms - 1_000,
        dead_at_ms,
    }
}
