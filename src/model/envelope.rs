//! The envelope: one message inside the gateway.
//!
//! # Invariants
//! - `id` is a UUIDv7 (time-ordered), assigned once at the edge and never changed; retries
//!   and replays carry the same id, so the ledger recognises them.
//! - `key` is the ordering key (usually the dossier code). Messages of one key are processed
//!   one at a time, in order, per route.
//! - `version`, when present, is the per-dossier version of the payload's state: a
//!   destination never receives a lower version after a higher one (the lower one is recorded
//!   as *superseded*).
//! - `traceparent` is a W3C trace context (`00-<trace>-<span>-<flags>`) that crosses the broker
//!   in a message header.
//! - The wire form is JSON ([`Envelope::encode`] / [`Envelope::decode`]); decoding a malformed
//!   body is an error, never a default.
//! - The payload is kept as the JSON text it came in ([`RawValue`]): decoding an envelope
//!   checks that it is JSON but builds nothing of it, encoding copies the text, and each stage
//!   reads it once into the type it needs ([`Envelope::payload_as`]) instead of going through
//!   a `serde_json::Value` tree and back. [`Envelope::new`] renders a `Value` payload once
//!   (compact, keys sorted: the same text the wire form had when the payload was a `Value`).

use std::collections::BTreeMap;

use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Digest;
use uuid::Uuid;

use super::time::now_ms;

/// One message inside the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    /// What happened, e.g. `dossier.upserted`, `dossier.progress`, `payment.settled`.
    pub kind: String,
    /// Ordering key, usually the dossier code.
    pub key: String,
    /// The source that accepted it (a source name from the config).
    pub source: String,
    /// Per-key version of the state carried, if the kind is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Free headers (not personal data).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// W3C `traceparent`.
    pub traceparent: String,
    /// Accepted at, unix milliseconds.
    pub created_ms: i64,
    /// The payload (canonical model JSON, or a source's event body), as JSON text.
    pub payload: Box<RawValue>,
}

impl PartialEq for Envelope {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.kind == o.kind
            && self.key == o.key
            && self.source == o.source
            && self.version == o.version
            && self.headers == o.headers
            && self.traceparent == o.traceparent
            && self.created_ms == o.created_ms
            && self.payload.get() == o.payload.get()
    }
}

/// A payload's JSON text.
pub fn raw_payload(payload: &serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("a JSON value always serializes")
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not valid JSON of the expected shape: {0}")]
    Malformed(String),
}

impl Envelope {
    /// A new envelope with a fresh UUIDv7 and a new trace.
    pub fn new(
        kind: impl Into<String>,
        key: impl Into<String>,
        source: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            kind: kind.into(),
            key: key.into(),
            source: source.into(),
            version: None,
            headers: BTreeMap::new(),
            traceparent: new_traceparent(),
            created_ms: now_ms(),
            payload: raw_payload(&payload),
        }
    }

    /// The payload read into `T` (one parse of its text).
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The payload as a JSON tree, for the paths that look into arbitrary payloads (filters,
    /// projections); `Null` if it cannot be read, which a decoded envelope's payload always
    /// can (the decode checked it).
    pub fn payload_value(&self) -> serde_json::Value {
        self.payload_as().unwrap_or(serde_json::Value::Null)
    }

    /// The payload's JSON text, as bytes.
    pub fn payload_bytes(&self) -> &[u8] {
        self.payload.get().as_bytes()
    }

    /// Replace the payload.
    pub fn set_payload(&mut self, payload: &serde_json::Value) {
        self.payload = raw_payload(payload);
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The natural key of this envelope's effect at a destination: `key@version` when
    /// versioned; for a progress step (`dossier.progress`, payload `{code, step}`) the stable
    /// identity `key#step-<at>-<hash>`: `<at>` the step's time with only its letters and digits
    /// kept, `<hash>` 12 hex digits of the SHA-256 of the step's JSON (keys sorted), so the
    /// same step carried by two envelopes is one effect; otherwise `None` (the envelope id is
    /// the idempotency key).
    pub fn natural_key(&self) -> Option<String> {
        if let Some(v) = self.version {
            return Some(gw_store::natural_keys::of_version(&self.key, v));
        }
        if super::events::EventKind::DossierProgress.is(&self.kind) {
            let payload = self
                .payload_as::<serde_json::Map<String, serde_json::Value>>()
                .ok()?;
            let step = payload.get("step")?;
            let at: String = step
                .get("at")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            // serde_json's maps are sorted by key (no `preserve_order`): a stable rendering.
            let bytes = serde_json::to_vec(step).ok()?;
            let digest = sha2::Sha256::digest(&bytes);
            return Some(format!(
                "{}#step-{at}-{}",
                self.key,
                &hex::encode(digest)[..12]
            ));
        }
        None
    }
}

/// A fresh W3C traceparent with random trace and span ids, sampled.
pub fn new_traceparent() -> String {
    let mut rng = rand::rng();
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    rng.fill_bytes(&mut trace);
    rng.fill_bytes(&mut span);
    format!("00-{}-{}-01", hex::encode(trace), hex::encode(span))
}

/// Accept an incoming traceparent if well-formed (version 00, non-zero ids), else `None`.
pub fn parse_traceparent(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    if parts.len() != 4 || parts[0] != "00" {
        return None;
    }
    let hexok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hexok(parts[1], 32) || !hexok(parts[2], 16) || !hexok(parts[3], 2) {
        return None;
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return None;
    }
    Some(s.trim().to_string())
}

/// The trace id part of a traceparent.
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

/// A child traceparent: same trace, new span id.
pub fn child_traceparent(parent: &str) -> String {
    let mut span = [0u8; 8];
    rand::rng().fill_bytes(&mut span);
    match parse_traceparent(parent) {
        Some(p) => {
            let parts: Vec<&str> = p.split('-').collect();
            format!("00-{}-{}-{}", parts[1], hex::encode(span), parts[3])
        }
        None => new_traceparent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_uuid_v7() {
        let mut e = Envelope::new(
            "dossier.upserted",
            "000.00.01.H22-241124-0001",
            "onestop",
            serde_json::json!({"a": "Nguyễn"}),
        );
        e.version = Some(3);
        let bytes = e.encode();
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.encode(), bytes, "the payload's text is kept as is");
        assert_eq!(back.payload_value(), serde_json::json!({"a": "Nguyễn"}));
        assert_eq!(e.id.get_version_num(), 7);
        assert_eq!(e.natural_key().unwrap(), "000.00.01.H22-241124-0001@3");
    }

    #[test]
    fn progress_steps_have_a_stable_identity() {
        let step = serde_json::json!({"code": "C-1", "step": {"at": "2024-11-24T09:30:00+07:00", "content": "Chuyển xử lý", "handler": "Cán bộ An"}});
        let a = Envelope::new("dossier.progress", "C-1", "onestop", step.clone());
        let b = Envelope::new("dossier.progress", "C-1", "onestop", step);
        let ka = a.natural_key().unwrap();
        assert_eq!(Some(ka.clone()), b.natural_key(), "two envelopes, one step");
        assert!(ka.starts_with("C-1#step-20241124T0930000700-"), "{ka}");
        assert_eq!(ka.rsplit('-').next().unwrap().len(), 12);
        let other = Envelope::new(
            "dossier.progress",
            "C-1",
            "onestop",
            serde_json::json!({"code": "C-1", "step": {"at": "2024-11-24T09:30:00+07:00", "content": "Trả kết quả", "handler": "Cán bộ An"}}),
        );
        assert_ne!(
            other.natural_key().unwrap(),
            ka,
            "another step at the same time"
        );
        let plain = Envelope::new("payment.settled", "C-1", "onestop", serde_json::Value::Null);
        assert_eq!(plain.natural_key(), None);
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = Envelope::new("k", "x", "s", serde_json::Value::Null);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Envelope::new("k", "x", "s", serde_json::Value::Null);
        assert!(a.id < b.id);
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(Envelope::decode(b"{\"id\": 1}").is_err());
        assert!(Envelope::decode(b"\xff\xfe").is_err());
    }

    #[test]
    fn traceparent_parsing() {
        let t = new_traceparent();
        assert_eq!(parse_traceparent(&t).as_deref(), Some(t.as_str()));
        let c = child_traceparent(&t);
        assert_eq!(trace_id(&c), trace_id(&t));
        assert_ne!(c, t);
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-0000000000000001-01").is_none()
        );
        assert!(parse_traceparent("01-abc").is_none());
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some()
        );
    }
}
