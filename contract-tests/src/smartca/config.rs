//! The SmartCA sandbox's settings.

use std::time::Duration;

use crate::officials::{default_officials, OfficialSpec};

/// Settings of a [`super::SmartCa`].
#[derive(Debug, Clone)]
pub struct SmartCaConfig {
    pub sp_id: String,
    pub sp_password: String,
    pub officials: Vec<OfficialSpec>,
    /// How long an official takes to confirm or reject.
    pub confirm_after: Duration,
    /// How long a request waits for the official before it expires.
    pub lifetime: Duration,
    /// Seed of identifiers and random faults.
    pub seed: u64,
}

impl Default for SmartCaConfig {
    fn default() -> Self {
        SmartCaConfig {
            sp_id: "sandbox-sp".into(),
            sp_password: "sandbox-sp-password".into(),
            officials: default_officials(),
            confirm_after: Duration::from_millis(300),
            lifetime: Duration::from_secs(5),
            seed: 16,
        }
    }
}
