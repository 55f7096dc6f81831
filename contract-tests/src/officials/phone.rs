//! The officials' phones: requests pushed, and what each official did with them.
//!
//! # Invariants
//!
//! - A request id is pushed once ([`Phone::push`] answers whether it was new); the records'
//!   [`Push`] list is exactly what phones received.
//! - A request's fate is settled once, when it is first read after its time came (confirmed
//!   and signed, rejected, or expired), and never changes afterwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::keys::{Behaviour, DigestAlg};

/// What reached a phone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    /// The request id (SmartCA transaction id, MySign / CSC id the sandbox gave).
    pub id: String,
    pub official: String,
    /// The digests, hex.
    pub digests: Vec<String>,
    pub alg: DigestAlg,
}

/// A request on the phone.
#[derive(Debug, Clone)]
pub struct Entry {
    pub official: String,
    pub behaviour: Behaviour,
    pub digests: Vec<Vec<u8>>,
    pub alg: DigestAlg,
    pub pss: bool,
    pub at: Instant,
    settled: Option<PhoneState>,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneState {
    Waiting,
    /// Signed: one signature per digest.
    Signed(Vec<Vec<u8>>),
    Rejected,
    Expired,
}

/// Every phone of the sandbox.
#[derive(Debug)]
pub struct Phone {
    pub confirm_after: Duration,
    pub lifetime: Duration,
    entries: HashMap<String, Entry>,
}

impl Phone {
    pub fn new(confirm_after: Duration, lifetime: Duration) -> Phone {
        Phone {
            confirm_after,
            lifetime,
            entries: HashMap::new(),
        }
    }

    /// Push a request; false (and nothing pushed) when `id` was pushed before.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: &str,
        official: &str,
        behaviour: Behaviour,
        digests: Vec<Vec<u8>>,
        alg: DigestAlg,
        pss: bool,
    ) -> Option<Push> {
        if self.entries.contains_key(id) {
            return None;
        }
        let push = Push {
            id: id.into(),
            official: official.into(),
            digests: digests.iter().map(hex::encode).collect(),
            alg,
        };
        self.entries.insert(
            id.into(),
            Entry {
                official: official.into(),
                behaviour,
                digests,
                alg,
                pss,
                at: Instant::now(),
                settled: None,
            },
        );
        Some(push)
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// The request's state at `now`; `sign` makes the signatures when the official confirms
    /// (None: the sandbox cannot sign, read as still waiting).
    pub fn read(
        &mut self,
        id: &str,
        now: Instant,
        sign: impl FnOnce(&Entry) -> Option<Vec<Vec<u8>>>,
    ) -> Option<PhoneState> {
        let (confirm_after, lifetime) = (self.confirm_after, self.lifetime);
        let e = self.entries.get_mut(id)?;
        if let Some(s) = &e.settled {
            return Some(s.clone());
        }
        let age = now.saturating_duration_since(e.at);
        let acts = confirm_after < lifetime && age >= confirm_after;
        let state = match e.behaviour {
            Behaviour::Confirm if acts => match sign(e) {
                Some(sigs) => PhoneState::Signed(sigs),
                None => PhoneState::Waiting,
            },
            Behaviour::Reject if acts => PhoneState::Rejected,
            _ if age >= lifetime => PhoneState::Expired,
            _ => PhoneState::Waiting,
        };
        if state != PhoneState::Waiting {
            e.settled = Some(state.clone());
        }
        Some(state)
    }
}
