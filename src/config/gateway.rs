//! `[gateway]`: process-wide settings.

use std::path::PathBuf;

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySection {
    /// This instance's name (logs, the embedded queue's lease owner). Default `gw-1`.
    #[serde(default = "d_instance")]
    pub instance: String,
    /// Folder for the embedded queue and the SQLite store. Default `./data`.
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
    /// How long shutdown waits for in-flight work. Default 30s.
    #[serde(default = "d_shutdown")]
    pub shutdown_grace: Dur,
    /// How long a delivery claim (the store's hold on a dossier at one destination while an
    /// exchange is sent) lasts without a heartbeat. A claim found expired mid-send marks the
    /// exchange in doubt. Must be above zero; keep it above the destination's request timeout
    /// (the heartbeat extends it every third of the lease). Default 15s.
    #[serde(default = "d_claim_lease")]
    pub claim_lease: Dur,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            instance: d_instance(),
            data_dir: d_data_dir(),
            shutdown_grace: d_shutdown(),
            claim_lease: d_claim_lease(),
        }
    }
}

fn d_instance() -> String {
    defaults::INSTANCE.into()
}
fn d_data_dir() -> PathBuf {
    defaults::DATA_DIR.into()
}
fn d_shutdown() -> Dur {
    Dur(defaults::SHUTDOWN_GRACE)
}
fn d_claim_lease() -> Dur {
    Dur(defaults::CLAIM_LEASE)
}

/// Check `[gateway]`.
pub(super) fn validate(g: &GatewaySection, p: &mut impl FnMut(String, String, &str)) {
    if g.claim_lease.0.is_zero() {
        p(
            "gateway.claim_lease".into(),
            "the claim lease is zero: every claim would expire at once".into(),
            "write a duration above zero, e.g. claim_lease = \"15s\"",
        );
    }
}
