//! Connectors: Rust code for one protocol family each. A connector translates an envelope to
//! the party's format, signs it with the adapter's signing profile, sends it and reads the
//! answer; [`crate::model::outcome::classify`] decides what the answer means, with the connector's
//! reading of 2xx bodies for parties that answer "HTTP 200, but error".
//!
//! # Invariants
//! - A connector never acks, retries or records: it returns a [`Attempted`] and the route
//!   runtime does the rest (one place decides, one place records).
//! - Connectors are built once at start (clients, keys, mappings) and shared by every lane.

use std::path::Path;
use std::sync::Arc;

use crate::config::AdapterSection;
use crate::signing::SigningProfile;
use crate::telemetry::metrics::Metrics;

pub mod agency;
pub mod axis;
pub mod connector;
pub mod csc;
pub mod dvcqg;
pub mod error;
pub mod feed;
pub mod http;
pub mod mysign;
pub mod officials;
pub mod signer;
pub mod signers;
pub mod smartca;

// The paths callers have always used.
pub use connector::{Attempted, Connector, InDoubtCheck};
pub use error::ConnectorError;

/// Build the connector an adapter's configuration names, signing with `signing` (the
/// adapter's profile, loaded once by [`crate::signing::Profiles::load`]); failed logins and
/// token refreshes are counted in `metrics`.
pub fn build(
    name: &str,
    a: &AdapterSection,
    base: &Path,
    signing: Arc<dyn SigningProfile>,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    match a.connector.as_str() {
        "http" => Ok(Arc::new(http::HttpConnector::new(name, a, base, signing)?)),
        "dvcqg" => {
            let c = dvcqg::DvcqgConnector::new(name, a, base, signing)?;
            c.report_to(metrics.clone());
            Ok(Arc::new(c))
        }
        "axis" => Ok(Arc::new(axis::AxisConnector::new(name, a, base, signing)?)),
        other => Err(ConnectorError::UnknownKind(name.into(), other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(kind: &str) -> AdapterSection {
        toml::from_str(&format!(
            "connector = \"{kind}\"\nurl = \"http://127.0.0.1:9/x\"\n"
        ))
        .expect("a minimal adapter section")
    }

    /// Every kind the configuration accepts is built here (or refused for its own settings,
    /// never as unknown), and a kind it refuses is unknown here too: the list of
    /// `config::CONNECTORS` and this module cannot drift apart.
    #[test]
    fn every_configured_kind_is_built_and_no_other() {
        let metrics = Arc::new(Metrics::new());
        let base = Path::new(".");
        for kind in crate::config::CONNECTORS {
            let r = build(
                "a",
                &section(kind),
                base,
                Arc::new(crate::signing::Unsigned),
                &metrics,
            );
            assert!(
                !matches!(r, Err(ConnectorError::UnknownKind(..))),
                "`{kind}` is in config::CONNECTORS but connectors::build does not know it"
            );
        }
        let r = build(
            "a",
            &section("soap"),
            base,
            Arc::new(crate::signing::Unsigned),
            &metrics,
        );
        assert!(
            matches!(r, Err(ConnectorError::UnknownKind(ref n, ref k)) if n == "a" && k == "soap")
        );
    }
}
