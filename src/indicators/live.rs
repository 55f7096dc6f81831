//! The index's message for one event: what the engine publishes to the index's queue
//! (`gw.indicators`) and what its consumer reads back.
//!
//! # Invariants
//! - **Only the fact travels.** The engine makes the event's [`Fact`] from the envelope it
//!   already parsed and publishes a [`FactEvent`] (envelope id, key, kind, acceptance time,
//!   fact: a few hundred bytes) instead of the whole envelope; the consumer decodes only that.
//!   A fact holds no personal data ([`super::state`]), so neither does the queue.
//! - **The same fact either way.** [`FactEvent::of`] is the one place an envelope becomes the
//!   index's event: the engine (live), [`super::history::apply_envelopes`] and the property test
//!   all go through it, so what is journalled and folded does not depend on the path.
//! - **Nothing accepted is missed, nothing unreadable is lost.** An event the index does not
//!   read (another kind, a settlement that is not paid) is not published at all. An envelope
//!   whose fact cannot be made is published **whole** ([`message`]), as before this format:
//!   the consumer then fails to read it again and dead-letters it with the reason, alone.
//! - **Facts travel in groups under load.** The engine's [`super::publisher`] puts the facts
//!   submitted together in one message ([`group_message`], [`FACTS_BODY`]: a JSON array, in
//!   submission order); [`read`] gives a message's facts in that order. Each fact keeps its
//!   envelope id, so applying a group twice applies each fact once.
//! - **Told apart by a header.** A fact message carries [`BODY_HEADER`] = [`FACT_BODY`] (one
//!   fact) or [`FACTS_BODY`] (a group); anything else on the queue is read as an envelope
//!   (messages queued by an older gateway are still applied after an upgrade).

use std::collections::BTreeMap;

use gw_broker::Message;
use serde::{Deserialize, Serialize};

use super::state::{Fact, FactError};
use crate::model::envelope::Envelope;

/// The header naming a message body's format on the index's queue.
pub const BODY_HEADER: &str = "gw-index-body";
/// [`BODY_HEADER`]'s value for a [`FactEvent`] (JSON), version 1.
pub const FACT_BODY: &str = "fact/1";
/// [`BODY_HEADER`]'s value for a group of [`FactEvent`]s (a JSON array), version 1.
pub const FACTS_BODY: &str = "facts/1";

/// One event as the index keeps it: its identity and its fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactEvent {
    /// The envelope's id (what makes an apply idempotent).
    pub id: String,
    /// The dossier code (the envelope's key).
    pub key: String,
    /// The envelope's kind (journalled beside the fact).
    pub kind: String,
    /// When the envelope was accepted (unix ms).
    pub at_ms: i64,
    pub fact: Fact,
}

/// Why a message on the index's queue cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the index's fact message is not valid: {0}")]
    FactMessage(String),
    #[error("{0}")]
    Envelope(#[from] crate::model::envelope::EnvelopeError),
    #[error("{0}")]
    Fact(#[from] FactError),
}

impl FactEvent {
    /// The index's event of an envelope; `None` for an event it does not read.
    pub fn of(env: &Envelope) -> Result<Option<FactEvent>, FactError> {
        Ok(Fact::from_envelope(env)?.map(|fact| FactEvent {
            id: env.id.to_string(),
            key: env.key.clone(),
            kind: env.kind.clone(),
            at_ms: env.created_ms,
            fact,
        }))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a fact event serializes")
    }
}

/// The message the engine publishes to the index's queue for `env`, or `None` when the index
/// does not read it (see the invariants: an envelope whose fact cannot be made goes whole).
pub fn message(env: &Envelope) -> Option<Message> {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), env.traceparent.clone());
    let body = match FactEvent::of(env) {
        Ok(None) => return None,
        Ok(Some(ev)) => {
            headers.insert(BODY_HEADER.to_string(), FACT_BODY.to_string());
            ev.encode()
        }
        Err(_) => env.encode(),
    };
    Some(Message {
        id: env.id.to_string(),
        key: env.key.clone(),
        headers,
        attempt: 0,
        body: body.into(),
    })
}

/// The message of a group of facts (at least one), in this order: a lone fact as
/// [`FACT_BODY`] under its envelope's id, several as [`FACTS_BODY`] under a fresh id (the
/// group's first traceparent goes with it).
pub fn group_message(facts: &[&FactEvent], traceparent: &str) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), traceparent.to_string());
    let (id, format, body) = match facts {
        [one] => (one.id.clone(), FACT_BODY, one.encode()),
        _ => (
            format!("facts-{}", uuid::Uuid::now_v7()),
            FACTS_BODY,
            serde_json::to_vec(facts).expect("fact events serialize"),
        ),
    };
    headers.insert(BODY_HEADER.to_string(), format.to_string());
    Message {
        id,
        key: facts.first().map(|f| f.key.clone()).unwrap_or_default(),
        headers,
        attempt: 0,
        body: body.into(),
    }
}

/// Read a message of the index's queue: its facts in order (one for a fact message, several
/// for a group), or a whole envelope's (its fact made here; none for an envelope the index
/// does not read).
pub fn read(msg: &Message) -> Result<Vec<FactEvent>, ReadError> {
    match msg.headers.get(BODY_HEADER).map(String::as_str) {
        Some(FACT_BODY) => serde_json::from_slice(&msg.body)
            .map(|f| vec![f])
            .map_err(|e| ReadError::FactMessage(e.to_string())),
        Some(FACTS_BODY) => match serde_json::from_slice::<Vec<FactEvent>>(&msg.body) {
            Ok(facts) if !facts.is_empty() => Ok(facts),
            Ok(_) => Err(ReadError::FactMessage("an empty group of facts".into())),
            Err(e) => Err(ReadError::FactMessage(e.to_string())),
        },
        _ => {
            let env = Envelope::decode(&msg.body)?;
            Ok(FactEvent::of(&env)?.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DossierStatus;

    fn snapshot() -> Envelope {
        let d = crate::indicators::state::tests::dossier(DossierStatus::Received, 3);
        let mut e = Envelope::new(
            "dossier.upserted",
            "H-1",
            "onestop",
            serde_json::to_value(&d).unwrap(),
        );
        e.version = Some(3);
        e
    }

    #[test]
    fn the_message_carries_the_fact_only_and_reads_back_as_the_envelope_would() {
        let env = snapshot();
        let msg = message(&env).unwrap();
        assert_eq!(msg.headers.get(BODY_HEADER).unwrap(), FACT_BODY);
        assert_eq!(msg.id, env.id.to_string());
        let text = String::from_utf8(msg.body.to_vec()).unwrap();
        for secret in ["Nguyễn", "001203004567", "Khai sinh"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(msg.body.len() < env.encode().len(), "{text}");
        let ev = read(&msg).unwrap().pop().unwrap();
        assert_eq!(Some(ev.clone()), FactEvent::of(&env).unwrap());
        assert_eq!((ev.id.as_str(), ev.key.as_str()), (msg.id.as_str(), "H-1"));
        // A whole envelope (queued by an older gateway) reads as the same event.
        let whole = Message {
            body: env.encode().into(),
            headers: BTreeMap::new(),
            ..msg
        };
        assert_eq!(read(&whole).unwrap(), vec![ev]);
    }

    #[test]
    fn unread_kinds_are_not_published_and_unreadable_facts_go_whole() {
        let failed = Envelope::new(
            "payment.settled",
            "H-1",
            "payments",
            serde_json::json!({"status": "failed"}),
        );
        assert!(message(&failed).is_none());
        let other = Envelope::new("document.send", "D-1", "edoc", serde_json::json!({}));
        assert!(message(&other).is_none());
        let mut bad = snapshot();
        let mut payload = bad.payload_value();
        payload["received_at"] = "yesterday".into();
        bad.set_payload(&payload);
        let msg = message(&bad).unwrap();
        assert!(!msg.headers.contains_key(BODY_HEADER));
        let e = read(&msg).unwrap_err();
        assert!(
            matches!(e, ReadError::Fact(FactError::BadDate { .. })),
            "{e}"
        );
        // A fact message that is not one is refused by name.
        let mut garbled = message(&snapshot()).unwrap();
        garbled.body = b"{\"id\":1}".to_vec().into();
        assert!(matches!(read(&garbled), Err(ReadError::FactMessage(_))));
    }

    #[test]
    fn a_group_reads_back_in_order_and_a_lone_fact_keeps_its_own_form() {
        let envs: Vec<Envelope> = (0..3)
            .map(|i| {
                let mut d = crate::indicators::state::tests::dossier(DossierStatus::Received, 3);
                d.code = format!("H-{i}");
                let mut e = Envelope::new(
                    "dossier.upserted",
                    &d.code,
                    "onestop",
                    serde_json::to_value(&d).unwrap(),
                );
                e.version = Some(3);
                e
            })
            .collect();
        let facts: Vec<FactEvent> = envs
            .iter()
            .map(|e| FactEvent::of(e).unwrap().unwrap())
            .collect();
        let refs: Vec<&FactEvent> = facts.iter().collect();
        let group = group_message(&refs, "00-abc-01");
        assert_eq!(group.headers.get(BODY_HEADER).unwrap(), FACTS_BODY);
        assert_eq!(group.headers.get("traceparent").unwrap(), "00-abc-01");
        assert_eq!(read(&group).unwrap(), facts);
        // One fact: the single form, under the envelope's id, the same as `message` makes.
        let lone = group_message(&refs[..1], &envs[0].traceparent);
        assert_eq!(lone.id, envs[0].id.to_string());
        assert_eq!(lone.body, message(&envs[0]).unwrap().body);
        assert_eq!(read(&lone).unwrap(), facts[..1]);
        // A group that is not one, or is empty, is refused by name.
        for body in [&b"[{\"id\":1}]"[..], b"[]", b"{}"] {
            let bad = Message {
                body: body.to_vec().into(),
                ..group.clone()
            };
            assert!(
                matches!(read(&bad), Err(ReadError::FactMessage(_))),
                "{body:?}"
            );
        }
    }
}
