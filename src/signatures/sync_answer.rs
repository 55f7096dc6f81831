//! The answer of a synchronous submit (CSC `operationMode: "S"`), kept in the store before
//! the request is recorded as sent, so that a crash between the record and applying the
//! answer loses nothing.
//!
//! # Invariants
//! - A request answered at once is recorded `sent` under a transaction of the gateway's own,
//!   [`PREFIX`] + the idempotency key: no service ever named it, so it is never polled at a
//!   service. The flow reads the kept answer instead ([`decode`]); when there is none (a store
//!   from before this blob existed) the request fails with `sync_answer_lost` and its reason,
//!   never by asking the service or signing again.
//! - The blob holds the signature bytes or the refusal's words; it is capped at [`CAP`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::connectors::signer::{SignStatus, Submitted};
use crate::signing::remote::{SignatureForm, SignatureValue};

/// The prefix of the gateway's own transaction id for a synchronous answer.
pub const PREFIX: &str = "sync:";
/// The largest kept answer (a signature, or a refusal's words).
pub const CAP: usize = 256 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum Kept {
    Signed { signature_base64: String },
    Rejected { why: String },
    Expired,
}

/// The bytes kept for an answer given at once (a `Waiting` answer is not synchronous and is
/// kept as nothing at all: it has a transaction of the service's).
pub fn encode(answer: &Submitted) -> Vec<u8> {
    let kept = match answer {
        Submitted::Signed(v) => Kept::Signed {
            signature_base64: base64::engine::general_purpose::STANDARD.encode(&v.bytes),
        },
        Submitted::Rejected(why) => Kept::Rejected { why: why.clone() },
        Submitted::Expired | Submitted::Waiting(_) => Kept::Expired,
    };
    serde_json::to_vec(&kept).expect("a kept answer serialises")
}

/// The status a kept answer stands for; `None` when the bytes are not one.
pub fn decode(bytes: &[u8]) -> Option<SignStatus> {
    Some(match serde_json::from_slice::<Kept>(bytes).ok()? {
        Kept::Signed { signature_base64 } => SignStatus::Signed(SignatureValue {
            bytes: base64::engine::general_purpose::STANDARD
                .decode(signature_base64)
                .ok()?,
            form: SignatureForm::Raw,
            certificate: None,
        }),
        Kept::Rejected { why } => SignStatus::Rejected(why),
        Kept::Expired => SignStatus::Expired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let signed = Submitted::Signed(SignatureValue {
            bytes: vec![1, 2, 3],
            form: SignatureForm::Raw,
            certificate: None,
        });
        match decode(&encode(&signed)) {
            Some(SignStatus::Signed(v)) => assert_eq!(v.bytes, vec![1, 2, 3]),
            other => panic!("{other:?}"),
        }
        match decode(&encode(&Submitted::Rejected("no".into()))) {
            Some(SignStatus::Rejected(w)) => assert_eq!(w, "no"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(&encode(&Submitted::Expired)),
            Some(SignStatus::Expired)
        ));
        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"answer":"signed","signature_base64":"%%"}"#).is_none());
    }
}
