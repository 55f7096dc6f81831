//! The kinds of event the gateway knows, in one place.
//!
//! # Invariants
//! - An envelope's `kind` is a short dotted name. The kinds below are the ones the gateway
//!   itself produces or acts on; their spelling is written here and nowhere else (every other
//!   module compares through [`EventKind`]).
//! - A source may publish other kinds (routes select them by pattern, `dossier.*`); such a kind
//!   is carried as it is and parses to `None`: no connector acts on what it does not know.
//! - Snapshot kinds carry a versioned dossier; the other dossier kinds act on the destination's
//!   copy of it and wait for its snapshot (see [`EventKind::is_snapshot`]).

use std::fmt;

/// A kind of event the gateway produces or acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The whole dossier, as it now stands at its source (versioned).
    DossierUpserted,
    /// The dossier's status changed (versioned, carries the dossier).
    DossierStatus,
    /// One processing step of a dossier (`{code, step}`), identified by its natural key.
    DossierProgress,
    /// A dossier submitted online at the national portal, taken by the online poll.
    DossierOnline,
    /// A fee was paid (from a payment provider's callback).
    PaymentSettled,
    /// A source asks for a document to be signed by an official through a remote signing
    /// service (taken by the edge, answered with a request id; never routed).
    SignatureRequested,
    /// A signing request ended with a signed, verified, assembled document.
    SignatureCompleted,
    /// A signing request ended without one (rejected, expired, refused, cancelled).
    SignatureFailed,
    /// A document (an edXML description and its attachments) to send on the document axis.
    DocumentSend,
    /// A document received from the document axis, its signature verified.
    DocumentReceived,
    /// A document's status on the axis: from the one-stop system to the axis, or back.
    DocumentStatus,
    /// Operational: an agency push subscription was disabled (410, or failing longer than
    /// its `disable_after`); published by the gateway itself, source `config::OPS_SOURCE`.
    SubscriptionDisabled,
    /// Operational: a disabled agency push subscription was enabled again.
    SubscriptionEnabled,
}

impl EventKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [EventKind; 13] = [
        EventKind::DossierUpserted,
        EventKind::DossierStatus,
        EventKind::DossierProgress,
        EventKind::DossierOnline,
        EventKind::PaymentSettled,
        EventKind::SignatureRequested,
        EventKind::SignatureCompleted,
        EventKind::SignatureFailed,
        EventKind::DocumentSend,
        EventKind::DocumentReceived,
        EventKind::DocumentStatus,
        EventKind::SubscriptionDisabled,
        EventKind::SubscriptionEnabled,
    ];

    /// The wire name (an envelope's `kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::DossierUpserted => "dossier.upserted",
            EventKind::DossierStatus => "dossier.status",
            EventKind::DossierProgress => "dossier.progress",
            EventKind::DossierOnline => "dossier.online",
            EventKind::PaymentSettled => "payment.settled",
            EventKind::SignatureRequested => "signature.requested",
            EventKind::SignatureCompleted => "signature.completed",
            EventKind::SignatureFailed => "signature.failed",
            EventKind::DocumentSend => "document.send",
            EventKind::DocumentReceived => "document.received",
            EventKind::DocumentStatus => "document.status",
            EventKind::SubscriptionDisabled => "subscription.disabled",
            EventKind::SubscriptionEnabled => "subscription.enabled",
        }
    }

    /// The kind of a wire name; `None` for a kind the gateway does not act on.
    pub fn parse(kind: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Whether an event of this kind carries a whole versioned dossier.
    pub const fn is_snapshot(self) -> bool {
        matches!(self, EventKind::DossierUpserted | EventKind::DossierStatus)
    }

    /// Whether `kind` (a wire name) is this kind.
    pub fn is(self, kind: &str) -> bool {
        self.as_str() == kind
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_kinds_parse_to_none() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert!(k.is(&k.to_string()));
        }
        assert_eq!(EventKind::parse("dossier.archived"), None);
        assert_eq!(EventKind::parse(""), None);
        assert!(EventKind::DossierStatus.is_snapshot());
        assert!(!EventKind::DossierProgress.is_snapshot());
    }

    /// The signature store queues its outcome events under its own constants: they are these
    /// kinds, spelled once.
    #[test]
    fn the_signature_store_spells_its_events_as_these_kinds() {
        assert!(EventKind::SignatureCompleted.is(gw_store::signatures::EVENT_COMPLETED));
        assert!(EventKind::SignatureFailed.is(gw_store::signatures::EVENT_FAILED));
    }
}
