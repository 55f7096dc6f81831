//! What each dossier needs for the indicators, folded from its events.
//!
//! # Invariants
//! - An event becomes a [`Fact`] first ([`Fact::from_envelope`]): the few things the
//!   indicators use (statuses and their times, unit and procedure codes, dates, channel, fee
//!   total, whether files exist). A fact holds **no personal data** (no owner, no summary, no
//!   file names or links), so facts may be journalled and replayed freely. Only those fields
//!   are decoded from the payload (borrowed views, typed as the canonical model types them;
//!   the dossier's other required fields must be present but are not read), so making a fact
//!   is cheap enough for the engine's publish path ([`super::live`]).
//! - [`DossierState::apply_fact`] is deterministic and depends only on the state and the fact:
//!   folding the same facts in the same order gives the same state, whether one at a time with
//!   the state stored and read back in between (live) or all at once (rebuild).
//! - Snapshots (`dossier.upserted`, `dossier.status`) are versioned: one not newer than the
//!   newest applied is ignored whole. Progress steps, `dossier.online` and `payment.settled`
//!   are unversioned and applied as they come (the indicator queue is one FIFO queue).
//! - Status times: a progress step's `at`; for a snapshot, `finished_at` (processed) or
//!   `returned_at` (result returned), else the newest step of that status in its `progress`,
//!   else the envelope's `created_ms` (stored in the envelope: stable across replays).
//! - Supplement intervals are status intervals: entering `supplement_requested` opens one,
//!   leaving it closes it. End times (processed, returned, stopped/refused/withdrawn) keep
//!   their first value.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::{Channel, DossierStatus};

/// Why an event cannot be read as a fact.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactError {
    #[error("the {kind} payload is not a canonical dossier: {detail}")]
    NotADossier { kind: String, detail: String },
    #[error("the {kind} payload's dossier code does not match the envelope's key")]
    KeyMismatch { kind: String },
    #[error("{field} `{value}` is not an RFC 3339 date-time with offset")]
    BadDate { field: &'static str, value: String },
    #[error("the dossier.progress payload is not {{code, step}}: {detail}")]
    NotAStep { detail: String },
}

/// A snapshot's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFact {
    pub version: i64,
    pub status: DossierStatus,
    /// When the snapshot's status began (unix ms; see the module's invariants).
    pub at_ms: i64,
    /// The handling unit (`DonViXuLy`).
    pub unit: String,
    pub procedure: String,
    pub received_ms: Option<i64>,
    /// `NgayHenTra`; `None` when the source gave none.
    pub due_ms: Option<i64>,
    pub online: bool,
    /// Sum of the fee items (VND).
    pub fee_total: i64,
    /// Whether some live attachment fulfils a dossier component.
    pub has_components: bool,
    /// Whether a live result file exists.
    pub has_result: bool,
    pub finished_ms: Option<i64>,
    pub returned_ms: Option<i64>,
}

/// What one event tells the indicators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    Snapshot(SnapshotFact),
    /// A processing step: the dossier reached `status` at `at_ms`.
    Step {
        status: DossierStatus,
        at_ms: i64,
    },
    /// Submitted online at the national portal (`dossier.online`).
    Online,
    /// A fee was paid through a payment provider (`payment.settled` with status `paid`).
    PaidOnline,
}

/// Unix ms of an RFC 3339 date-time.
pub fn parse_ms(field: &'static str, v: &str) -> Result<i64, FactError> {
    OffsetDateTime::parse(v.trim(), &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| FactError::BadDate {
            field,
            value: v.to_string(),
        })
}

fn opt_ms(field: &'static str, v: Option<&str>) -> Result<Option<i64>, FactError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_ms(field, s).map(Some),
    }
}

impl Fact {
    /// The fact an envelope carries; `None` for a kind the indicators do not read (or a
    /// settlement that is not a payment).
    pub fn from_envelope(env: &Envelope) -> Result<Option<Fact>, FactError> {
        let Some(kind) = EventKind::parse(&env.kind) else {
            return Ok(None);
        };
        match kind {
            EventKind::DossierUpserted | EventKind::DossierStatus => {
                let d =
                    serde_json::from_str::<SnapshotView<'_>>(env.payload.get()).map_err(|e| {
                        FactError::NotADossier {
                            kind: env.kind.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                if d.code != env.key {
                    return Err(FactError::KeyMismatch {
                        kind: env.kind.clone(),
                    });
                }
                Ok(Some(Fact::Snapshot(snapshot_fact(
                    &d,
                    env.version.unwrap_or(d.version),
                    env.created_ms,
                )?)))
            }
            EventKind::DossierProgress => {
                let p =
                    serde_json::from_str::<ProgressView<'_>>(env.payload.get()).map_err(|e| {
                        FactError::NotAStep {
                            detail: e.to_string(),
                        }
                    })?;
                let at_ms = opt_ms("step.at", Some(&p.step.at))?.unwrap_or(env.created_ms);
                Ok(Some(Fact::Step {
                    status: p.step.status,
                    at_ms,
                }))
            }
            EventKind::DossierOnline => Ok(Some(Fact::Online)),
            EventKind::PaymentSettled => {
                let paid =
                    env.payload_value().get("status").and_then(|s| s.as_str()) == Some("paid");
                Ok(paid.then_some(Fact::PaidOnline))
            }
            EventKind::SignatureRequested
            | EventKind::SignatureCompleted
            | EventKind::SignatureFailed
            | EventKind::DocumentSend
            | EventKind::DocumentReceived
            | EventKind::DocumentStatus
            | EventKind::SubscriptionDisabled
            | EventKind::SubscriptionEnabled => Ok(None),
        }
    }
}

// What the index reads of a payload, borrowed from the envelope's already-parsed JSON: only
// the fields it uses are decoded (no owner, summary, names or links are copied), each typed as
// the canonical model types it ([`crate::model::Dossier`], [`crate::model::progress::Progress`]); the
// dossier's other required fields must be present (`IgnoredAny`), so what is not a canonical
// dossier's shape is still refused by name. The edge validated the whole payload already.

/// The fields of a [`crate::model::Dossier`] the index reads.
#[derive(Deserialize)]
struct SnapshotView<'a> {
    #[serde(borrow)]
    code: std::borrow::Cow<'a, str>,
    version: i64,
    #[serde(borrow)]
    procedure_code: std::borrow::Cow<'a, str>,
    #[allow(dead_code)]
    owner: serde::de::IgnoredAny,
    #[allow(dead_code)]
    summary: serde::de::IgnoredAny,
    #[serde(borrow)]
    received_at: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    due_at: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    returned_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    finished_at: Option<std::borrow::Cow<'a, str>>,
    status: DossierStatus,
    #[serde(borrow)]
    handling_unit: std::borrow::Cow<'a, str>,
    #[serde(default)]
    fees: Vec<FeeView>,
    #[serde(default, borrow)]
    attachments: Vec<FileView<'a>>,
    #[serde(default, borrow)]
    progress: Vec<StepView<'a>>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default, borrow)]
    results: Vec<FileView<'a>>,
}

#[derive(Deserialize)]
struct FeeView {
    amount_vnd: i64,
}

/// An attachment or a result file: whether it is live and what component it fulfils.
#[derive(Deserialize)]
struct FileView<'a> {
    #[serde(default, borrow)]
    component_code: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
struct StepView<'a> {
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    status: DossierStatus,
}

/// The fields of a `dossier.progress` payload (`{code, step}`) the index reads.
#[derive(Deserialize)]
struct ProgressView<'a> {
    #[allow(dead_code)]
    code: serde::de::IgnoredAny,
    #[serde(borrow)]
    step: StepView<'a>,
}

fn snapshot_fact(
    d: &SnapshotView<'_>,
    version: i64,
    created_ms: i64,
) -> Result<SnapshotFact, FactError> {
    let finished_ms = opt_ms("finished_at", d.finished_at.as_deref())?;
    let returned_ms = opt_ms("returned_at", d.returned_at.as_deref())?;
    let step_ms = d
        .progress
        .iter()
        .rev()
        .find(|s| s.status == d.status)
        .map(|s| opt_ms("progress.at", Some(&s.at)))
        .transpose()?
        .flatten();
    let at_ms = match d.status {
        DossierStatus::Processed => finished_ms.or(step_ms),
        DossierStatus::ResultReturned => returned_ms.or(step_ms),
        _ => step_ms,
    }
    .unwrap_or(created_ms);
    Ok(SnapshotFact {
        version,
        status: d.status,
        at_ms,
        unit: d.handling_unit.to_string(),
        procedure: d.procedure_code.to_string(),
        received_ms: opt_ms("received_at", Some(&d.received_at))?,
        due_ms: opt_ms("due_at", Some(&d.due_at))?,
        online: d.channel == Some(Channel::Online),
        fee_total: d.fees.iter().map(|f| f.amount_vnd.max(0)).sum(),
        has_components: d.attachments.iter().any(|a| {
            !a.deleted
                && a.component_code
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty())
        }),
        has_result: d.results.iter().any(|r| !r.deleted),
        finished_ms,
        returned_ms,
    })
}

/// A supplement request: from the request to the citizen's answer (`None`: still waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

/// One dossier as the indicators see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierState {
    pub code: String,
    /// The newest snapshot version applied (0: none yet).
    pub version: i64,
    pub unit: String,
    pub procedure: String,
    pub received_ms: Option<i64>,
    pub due_ms: Option<i64>,
    /// Reached `received` (or any later processing status) at some point.
    pub was_received: bool,
    pub status: Option<DossierStatus>,
    pub status_ms: i64,
    pub online: bool,
    pub fee_total: i64,
    pub paid_online: bool,
    pub has_components: bool,
    pub has_result: bool,
    pub processed_ms: Option<i64>,
    pub returned_ms: Option<i64>,
    /// Processing stopped, refused or withdrawn.
    pub stopped_ms: Option<i64>,
    pub withdrawn: bool,
    pub supplements: Vec<Interval>,
}

fn first(slot: &mut Option<i64>, at: i64) {
    *slot = Some(slot.map_or(at, |v| v.min(at)));
}

impl DossierState {
    pub fn new(code: &str) -> Self {
        DossierState {
            code: code.to_string(),
            ..Default::default()
        }
    }

    /// Fold one envelope (see [`Fact::from_envelope`]); `Ok(false)` when it tells nothing.
    pub fn apply(&mut self, env: &Envelope) -> Result<bool, FactError> {
        match Fact::from_envelope(env)? {
            Some(f) => {
                self.apply_fact(&f);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fold one fact.
    pub fn apply_fact(&mut self, f: &Fact) {
        match f {
            Fact::Snapshot(s) => {
                if s.version <= self.version {
                    return;
                }
                self.version = s.version;
                self.unit.clone_from(&s.unit);
                self.procedure.clone_from(&s.procedure);
                self.received_ms = s.received_ms;
                self.due_ms = s.due_ms;
                self.online |= s.online;
                self.fee_total = s.fee_total;
                self.has_components = s.has_components;
                self.has_result = s.has_result;
                if let Some(t) = s.finished_ms {
                    first(&mut self.processed_ms, t);
                }
                if let Some(t) = s.returned_ms {
                    first(&mut self.returned_ms, t);
                }
                self.transition(s.status, s.at_ms);
            }
            Fact::Step { status, at_ms } => self.transition(*status, *at_ms),
            Fact::Online => self.online = true,
            Fact::PaidOnline => self.paid_online = true,
        }
    }

    fn transition(&mut self, to: DossierStatus, at: i64) {
        use DossierStatus as S;
        if self.status == Some(to) {
            return;
        }
        if self.status == Some(S::SupplementRequested) {
            if let Some(open) = self
                .supplements
                .iter_mut()
                .rev()
                .find(|i| i.end_ms.is_none())
            {
                open.end_ms = Some(at.max(open.start_ms));
            }
        }
        match to {
            S::SupplementRequested => self.supplements.push(Interval {
                start_ms: at,
                end_ms: None,
            }),
            S::Processed => first(&mut self.processed_ms, at),
            S::ResultReturned => first(&mut self.returned_ms, at),
            S::ProcessingStopped | S::NotAccepted => first(&mut self.stopped_ms, at),
            S::WithdrawnByCitizen => {
                first(&mut self.stopped_ms, at);
                self.withdrawn = true;
            }
            S::NewlyRegistered
            | S::Received
            | S::InProcessing
            | S::FinancialObligationRequested => {}
        }
        if !matches!(
            to,
            S::NewlyRegistered | S::NotAccepted | S::WithdrawnByCitizen
        ) {
            self.was_received = true;
        }
        self.status = Some(to);
        self.status_ms = at;
    }

    /// When processing ended: the first of processed, result returned, stopped/refused/withdrawn.
    pub fn end_ms(&self) -> Option<i64> {
        [self.processed_ms, self.returned_ms, self.stopped_ms]
            .into_iter()
            .flatten()
            .min()
    }

    /// The end of a result (processed or returned), not a stop.
    pub fn finished_ms(&self) -> Option<i64> {
        [self.processed_ms, self.returned_ms]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Dossier, Fee, Owner, OwnerKind, Personal};

    pub(crate) fn dossier(status: DossierStatus, version: i64) -> Dossier {
        Dossier {
            code: "H-1".into(),
            version,
            procedure_code: "1.001193".into(),
            procedure_name: None,
            field_code: None,
            field_name: None,
            receipt_number: None,
            owner: Owner {
                name: Personal("Nguyễn Văn An".into()),
                kind: OwnerKind::Citizen,
                id_number: Some(Personal("001203004567".into())),
                phone: None,
                email: None,
                address: None,
            },
            summary: "Khai sinh".into(),
            received_at: "2026-11-02T08:00:00+07:00".into(),
            due_at: "2026-11-05T17:00:00+07:00".into(),
            returned_at: None,
            finished_at: None,
            status,
            handling_unit: "UBND xã A".into(),
            note: None,
            fees: vec![Fee {
                code: "LP".into(),
                name: "Lệ phí".into(),
                amount_vnd: 8000,
                category: None,
                paid: false,
            }],
            attachments: vec![],
            progress: vec![],
            channel: Some(Channel::Online),
            results: vec![],
        }
    }

    fn env(kind: &str, version: Option<i64>, payload: serde_json::Value) -> Envelope {
        let mut e = Envelope::new(kind, "H-1", "onestop", payload);
        e.version = version;
        e.created_ms = 1_000;
        e
    }

    #[test]
    fn a_fact_carries_no_personal_data() {
        let d = dossier(DossierStatus::Received, 1);
        let f = Fact::from_envelope(&env(
            "dossier.upserted",
            Some(1),
            serde_json::to_value(&d).unwrap(),
        ))
        .unwrap()
        .unwrap();
        let json = serde_json::to_string(&f).unwrap();
        for secret in ["Nguyễn", "001203004567", "Khai sinh"] {
            assert!(!json.contains(secret), "{json}");
        }
    }

    #[test]
    fn older_snapshots_are_ignored_and_supplements_become_intervals() {
        let mut s = DossierState::new("H-1");
        let snap = |st, v| {
            env(
                "dossier.upserted",
                Some(v),
                serde_json::to_value(dossier(st, v)).unwrap(),
            )
        };
        assert!(s.apply(&snap(DossierStatus::Received, 1)).unwrap());
        let step = |st: &str, at: &str| {
            env(
                "dossier.progress",
                None,
                serde_json::json!({"code": "H-1", "step": {"handler": "A", "department": "D",
                    "content": "C", "at": at, "status": st}}),
            )
        };
        s.apply(&step("supplement_requested", "2026-11-03T08:00:00+07:00"))
            .unwrap();
        s.apply(&step("in_processing", "2026-11-04T08:00:00+07:00"))
            .unwrap();
        assert_eq!(s.supplements.len(), 1);
        assert_eq!(
            s.supplements[0].end_ms.unwrap() - s.supplements[0].start_ms,
            86_400_000
        );
        // An older snapshot changes nothing, a newer one does.
        let before = s.clone();
        s.apply(&snap(DossierStatus::NewlyRegistered, 1)).unwrap();
        assert_eq!(s, before);
        let mut d = dossier(DossierStatus::Processed, 2);
        d.finished_at = Some("2026-11-05T09:00:00+07:00".into());
        s.apply(&env(
            "dossier.upserted",
            Some(2),
            serde_json::to_value(&d).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            s.end_ms(),
            Some(parse_ms("x", "2026-11-05T09:00:00+07:00").unwrap())
        );
        assert!(s.was_received && s.online);
        assert!(!s
            .apply(&env(
                "catalogue.procedure.added",
                None,
                serde_json::json!({})
            ))
            .unwrap());
    }

    #[test]
    fn bad_input_is_named() {
        let mut d = dossier(DossierStatus::Received, 1);
        d.received_at = "yesterday".into();
        let e = Fact::from_envelope(&env(
            "dossier.upserted",
            Some(1),
            serde_json::to_value(&d).unwrap(),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            FactError::BadDate {
                field: "received_at",
                value: "yesterday".into()
            }
        );
        let e = Fact::from_envelope(&env("dossier.status", Some(1), serde_json::json!({"a": 1})))
            .unwrap_err();
        assert!(matches!(e, FactError::NotADossier { .. }), "{e}");
        let mut other = dossier(DossierStatus::Received, 1);
        other.code = "H-2".into();
        let e = Fact::from_envelope(&env(
            "dossier.upserted",
            Some(1),
            serde_json::to_value(&other).unwrap(),
        ))
        .unwrap_err();
        assert!(matches!(e, FactError::KeyMismatch { .. }));
    }

    #[test]
    fn only_paid_settlements_count() {
        let paid = env(
            "payment.settled",
            None,
            serde_json::json!({"status": "paid"}),
        );
        let failed = env(
            "payment.settled",
            None,
            serde_json::json!({"status": "failed"}),
        );
        assert_eq!(Fact::from_envelope(&paid).unwrap(), Some(Fact::PaidOnline));
        assert_eq!(Fact::from_envelope(&failed).unwrap(), None);
    }
}
