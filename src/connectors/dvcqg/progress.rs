//! Progress steps: the canonical `dossier.progress` payload ([`crate::model::progress::Progress`])
//! as the portal's `CapNhatTienDoHoSoMC` item.
//!
//! # Invariants
//! - The payload type is the model's, defined once: this connector never reads the payload
//!   through a shape of its own.
//! - A payload that does not match the model is a refusal (retrying cannot fix it).

use serde_json::value::RawValue;
use serde_json::Value;

use super::translate::{self, TranslateError};
use crate::model::progress::Progress;

/// The portal item of a `dossier.progress` payload.
pub(super) fn item(payload: &RawValue) -> Result<Value, TranslateError> {
    let p: Progress = serde_json::from_str(payload.get())
        .map_err(|e| TranslateError::Canonical(e.to_string()))?;
    translate::progress_item(&p.code, &p.step)
}
