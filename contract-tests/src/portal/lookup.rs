//! `TraCuuHoSo`: the stored dossier with its status and progress steps.
//!
//! # Invariants
//!
//! - The answer is the last accepted version of the dossier; the progress list is named
//!   [`LOOKUP_PROGRESS`] (an assumption, not in the public contract).

use serde_json::Value;

use super::services::LOOKUP_PROGRESS;
use super::state::Inner;

pub(super) fn current_dossier(g: &Inner, code: &str) -> Option<Value> {
    let last = g.records.dossiers.get(code)?.last()?;
    let mut item = last.item.clone();
    let steps: Vec<Value> = g
        .records
        .progress
        .get(code)
        .map(|s| s.iter().map(|e| e.item.clone()).collect())
        .unwrap_or_default();
    if let Some(o) = item.as_object_mut() {
        o.insert(LOOKUP_PROGRESS.into(), Value::Array(steps));
    }
    if let Some(st) = g.records.statuses.get(code).and_then(|s| s.last()) {
        if (st.seq, st.index) > (last.seq, last.index) {
            if let (Some(o), Some(s)) = (item.as_object_mut(), st.item.get("TrangThaiHoSo")) {
                o.insert("TrangThaiHoSo".into(), s.clone());
            }
        }
    }
    Some(item)
}
