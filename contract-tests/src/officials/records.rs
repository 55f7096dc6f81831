//! What a signing sandbox received and did: every body, every push to a phone, logins.

use serde::{Deserialize, Serialize};

use super::phone::Push;

/// One request body as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub path: String,
    pub bytes: usize,
    pub body: serde_json::Value,
}

/// The sandbox's records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignRecords {
    /// Every body of the service's endpoints, in arrival order.
    pub received: Vec<Received>,
    /// What reached the officials' phones, in order.
    pub pushes: Vec<Push>,
    /// Successful logins (MySign) or token grants (CSC).
    pub logins: u64,
    /// Refusals, with the reason.
    pub refused: Vec<String>,
}

impl SignRecords {
    /// Pushes of one request id.
    pub fn pushes_of(&self, id: &str) -> usize {
        self.pushes.iter().filter(|p| p.id == id).count()
    }

    /// The largest body received, in bytes.
    pub fn max_body(&self) -> usize {
        self.received.iter().map(|r| r.bytes).max().unwrap_or(0)
    }

    /// Calls to paths ending with `suffix`.
    pub fn calls(&self, suffix: &str) -> usize {
        self.received
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }
}
