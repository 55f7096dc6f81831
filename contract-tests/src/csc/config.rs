//! The CSC sandbox's settings.

use std::time::Duration;

use crate::officials::{default_officials, OfficialSpec};

/// Settings of a [`super::Csc`].
#[derive(Debug, Clone)]
pub struct CscConfig {
    /// Where the API lives (`/csc/v2`).
    pub base_path: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime: Duration,
    /// How long a SAD lives.
    pub sad_lifetime: Duration,
    pub officials: Vec<OfficialSpec>,
    pub confirm_after: Duration,
    pub lifetime: Duration,
    pub seed: u64,
}

impl Default for CscConfig {
    fn default() -> Self {
        CscConfig {
            base_path: "/csc/v2".into(),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-client-secret".into(),
            token_lifetime: Duration::from_secs(3600),
            sad_lifetime: Duration::from_secs(300),
            officials: default_officials(),
            confirm_after: Duration::from_millis(300),
            lifetime: Duration::from_secs(5),
            seed: 16,
        }
    }
}
