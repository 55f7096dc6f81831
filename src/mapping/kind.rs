//! [`InboundKind`]: why a vendor message was sent, and the envelope kind it is published as.
//!
//! # Invariants
//! - Every vendor message is a full dossier snapshot; the kind only says why it was sent.
//! - This file imports nothing else of `mapping` (only the model's event kinds): the compiled
//!   rules ([`super::compiled`]) and the compiler ([`super::rules`]) import it.

use crate::model::events::EventKind;

/// Why a vendor message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    DossierUpserted,
    Progress,
    Status,
}

impl InboundKind {
    /// The envelope kind it is published as.
    pub fn envelope_kind(self) -> &'static str {
        match self {
            InboundKind::DossierUpserted => EventKind::DossierUpserted.as_str(),
            InboundKind::Progress => EventKind::DossierProgress.as_str(),
            InboundKind::Status => EventKind::DossierStatus.as_str(),
        }
    }
}
