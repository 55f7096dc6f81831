//! The `dossier.progress` payload: one processing step of one dossier.
//!
//! # Invariants
//! - The JSON is `{"code": "<dossier code>", "step": <ProgressStep>}`, exactly what the
//!   inbound edge has always published; the type is defined once, here, for the edge that
//!   builds it and the connectors that read it.
//! - A progress payload is unversioned: steps are never coalesced away.

use serde::{Deserialize, Serialize};

use super::ProgressStep;

/// A processing step of dossier `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The dossier code (`MaHoSo`): the envelope's key.
    pub code: String,
    pub step: ProgressStep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_payload_the_edge_publishes() {
        let v = serde_json::json!({"code": "H01", "step": {
            "handler": "A", "department": "D", "content": "C",
            "at": "2024-01-01T08:00:00+07:00", "status": "in_processing"}});
        let p: Progress = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(p.code, "H01");
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
    }
}
