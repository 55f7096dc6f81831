//! The MySign sandbox's settings.

use std::time::Duration;

use crate::officials::{default_officials, OfficialSpec};

/// Settings of a [`super::MySign`].
#[derive(Debug, Clone)]
pub struct MySignConfig {
    pub client_id: String,
    pub client_secret: String,
    pub profile_id: String,
    /// How long a login token lives (about an hour at the real service).
    pub token_lifetime: Duration,
    pub officials: Vec<OfficialSpec>,
    pub confirm_after: Duration,
    pub lifetime: Duration,
    pub seed: u64,
}

impl Default for MySignConfig {
    fn default() -> Self {
        MySignConfig {
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-client-secret".into(),
            profile_id: "sandbox-profile".into(),
            token_lifetime: Duration::from_secs(3600),
            officials: default_officials(),
            confirm_after: Duration::from_millis(300),
            lifetime: Duration::from_secs(5),
            seed: 16,
        }
    }
}
