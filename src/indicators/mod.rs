//! The service-quality index of Decision 766, live: every dossier event the gateway carries is
//! folded into a per-dossier state, from which each commune's and procedure's standing is
//! computed now, and the dossiers about to turn late are listed.
//!
//! # Invariants
//! - **Formulas are pure.** Each indicator is a function of one dossier's state and a period
//!   window ([`formulas`]); aggregates are sums of those verdicts ([`aggregate`]). No clock is
//!   read inside them: "now" is an argument.
//! - **Incremental equals batch.** Folding a dossier's events one at a time with the state
//!   stored and read back in between gives exactly the state (and so the indicators) of
//!   folding them at once ([`state`]; a property test below checks it, and
//!   `tests/indicators.rs` checks it through the store and `gateway indicators rebuild`).
//! - **Each event once.** The live consumer (`crate::jobs::indicators`) acks an event only
//!   after its fact, the new state and the consumer's position are committed in one
//!   transaction, keyed by the envelope id ([`history`]).
//! - **No personal data.** The facts and states hold statuses, times, unit names, procedure
//!   codes, counts and flags; never an owner, an ID number, a phone or a file's name.
//! - **One time zone.** Calendar dates are Vietnam's ([`crate::model::time::VIETNAM`]);
//!   working days exclude weekends and the configured holidays ([`calendar`]).
//!
//! # Layout
//! Imports go down this list: `calendar.rs` (working days), `state.rs` (facts and the fold),
//! `catalogue.rs` (statutory times and paper results from the national catalogue),
//! `formulas.rs` (one indicator per function, periods and windows), `aggregate.rs` (levels,
//! the at-risk list), `history.rs` (the store: apply, rebuild, reports, series), `pdf.rs`
//! (the report as PDF).

pub mod aggregate;
pub mod calendar;
pub mod catalogue;
pub mod formulas;
pub mod history;
pub mod pdf;
pub mod state;

pub use aggregate::{AtRisk, Indicators, Level};
pub use formulas::{Period, Rules};
pub use history::{ApplyOutcome, IndicatorError, Report};

/// The rules of a configuration's `[indicators]` section (weekends only when absent).
pub fn rules(
    section: Option<&crate::config::IndicatorsSection>,
) -> Result<Rules, calendar::CalendarError> {
    let Some(s) = section else {
        return Ok(Rules::default());
    };
    Ok(Rules {
        calendar: calendar::Calendar::new(&s.holidays)?,
        statutory_days: s.statutory_days.clone(),
        catalogue: Default::default(),
    })
}

/// Why the rules of a configuration cannot be built, by step.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("indicators.holidays: {0}")]
    Calendar(#[from] calendar::CalendarError),
    #[error("{0}")]
    Catalogue(#[from] catalogue::TermsError),
}

/// The rules of a loaded configuration: its `[indicators]` section, and the national
/// catalogue's terms as the `[catalogue]` sync last wrote them (none without `[catalogue]`).
pub fn rules_of(loaded: &crate::config::Loaded) -> Result<Rules, RulesError> {
    let mut r = rules(loaded.config.indicators.as_ref())?;
    if let Some(c) = &loaded.config.catalogue {
        r.catalogue =
            catalogue::read_terms(&catalogue::terms_path(&loaded.data_dir(), &c.source_name))?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::aggregate::{aggregate, Level};
    use super::formulas::Period;
    use super::state::DossierState;
    use super::*;
    use crate::model::envelope::Envelope;
    use crate::model::{
        Attachment, Channel, Dossier, DossierStatus, Fee, Owner, OwnerKind, Personal,
    };

    const STATUSES: [DossierStatus; 10] = [
        DossierStatus::NewlyRegistered,
        DossierStatus::Received,
        DossierStatus::NotAccepted,
        DossierStatus::InProcessing,
        DossierStatus::SupplementRequested,
        DossierStatus::FinancialObligationRequested,
        DossierStatus::WithdrawnByCitizen,
        DossierStatus::ProcessingStopped,
        DossierStatus::Processed,
        DossierStatus::ResultReturned,
    ];

    fn at(day: u8, hour: u8) -> String {
        format!(
            "2026-11-{:02}T{:02}:00:00+07:00",
            day.clamp(1, 30),
            hour % 24
        )
    }

    /// One generated event: (dossier index, kind selector, status, day, hour, version bump, flags).
    type Gen = (usize, u8, usize, u8, u8, bool, u8);

    fn envelope(g: Gen, versions: &mut BTreeMap<usize, i64>) -> Envelope {
        let (i, kind, status, day, hour, bump, flags) = g;
        let code = format!("H-{i}");
        let status = STATUSES[status % STATUSES.len()];
        let mut env = match kind % 4 {
            0 | 1 => {
                let v = versions.entry(i).or_insert(0);
                if bump || *v == 0 {
                    *v += 1;
                }
                let d = Dossier {
                    code: code.clone(),
                    version: *v,
                    procedure_code: format!("1.00{}", 1000 + i % 3),
                    procedure_name: None,
                    field_code: None,
                    field_name: None,
                    receipt_number: None,
                    owner: Owner {
                        name: Personal("A".into()),
                        kind: OwnerKind::Citizen,
                        id_number: None,
                        phone: None,
                        email: None,
                        address: None,
                    },
                    summary: "s".into(),
                    received_at: at(1 + (i as u8 % 5), 8),
                    due_at: if flags & 1 == 0 {
                        at(day / 2 + 5, 17)
                    } else {
                        String::new()
                    },
                    returned_at: (status == DossierStatus::ResultReturned).then(|| at(day, hour)),
                    finished_at: (status == DossierStatus::Processed).then(|| at(day, hour)),
                    status,
                    handling_unit: format!("xã {}", i % 2),
                    note: None,
                    fees: vec![Fee {
                        code: "F".into(),
                        name: "F".into(),
                        amount_vnd: if flags & 2 == 0 { 0 } else { 8000 },
                        category: None,
                        paid: false,
                    }],
                    attachments: vec![],
                    progress: vec![],
                    channel: (flags & 4 != 0).then_some(Channel::Online),
                    results: if flags & 8 != 0 {
                        vec![Attachment {
                            id: "R".into(),
                            name: "R".into(),
                            component_code: None,
                            url: "u".into(),
                            deleted: false,
                        }]
                    } else {
                        vec![]
                    },
                };
                let mut e = Envelope::new(
                    "dossier.upserted",
                    &code,
                    "onestop",
                    serde_json::to_value(&d).unwrap(),
                );
                e.version = Some(*v);
                e
            }
            2 => Envelope::new(
                "dossier.progress",
                &code,
                "onestop",
                serde_json::json!({"code": code, "step": {"handler": "A", "department": "D",
                    "content": "C", "at": at(day, hour), "status": status}}),
            ),
            _ if flags & 16 != 0 => {
                Envelope::new("dossier.online", &code, "online", serde_json::json!({}))
            }
            _ => Envelope::new(
                "payment.settled",
                &code,
                "payments",
                serde_json::json!({"status": "paid"}),
            ),
        };
        env.created_ms = 1_793_000_000_000 + i64::from(day) * 3_600_000;
        env
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn incremental_and_batch_agree_exactly(
            gens in proptest::collection::vec(
                (0usize..6, 0u8..4, 0usize..10, 1u8..31, 0u8..24, any::<bool>(), 0u8..32), 0..60)
        ) {
            let mut versions = BTreeMap::new();
            let events: Vec<Envelope> = gens.into_iter().map(|g| envelope(g, &mut versions)).collect();
            // Live: each event folded into the stored (serialized) state, then stored again.
            let mut stored: BTreeMap<String, String> = BTreeMap::new();
            for e in &events {
                let mut s = match stored.get(&e.key) {
                    Some(json) => serde_json::from_str(json).unwrap(),
                    None => DossierState::new(&e.key),
                };
                s.apply(e).unwrap();
                stored.insert(e.key.clone(), serde_json::to_string(&s).unwrap());
            }
            let live: BTreeMap<String, DossierState> = stored
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap()))
                .collect();
            // Batch: the same events grouped by dossier, each group folded at once.
            let mut batch: BTreeMap<String, DossierState> = BTreeMap::new();
            for key in live.keys() {
                let mut s = DossierState::new(key);
                for e in events.iter().filter(|e| &e.key == key) {
                    s.apply(e).unwrap();
                }
                batch.insert(key.clone(), s);
            }
            prop_assert_eq!(&live, &batch);
            let rules = Rules {
                calendar: calendar::Calendar::new(&["2026-11-20"]).unwrap(),
                statutory_days: [("1.001000".to_string(), 3)].into(),
                ..Default::default()
            };
            for (period, now) in [("2026-11", i64::MAX), ("2026-11", 1_794_000_000_000), ("2026-Q4", i64::MAX)] {
                let w = Period::parse(period).unwrap().window(now);
                for level in [Level::Province, Level::Unit, Level::Procedure] {
                    let a = aggregate(live.values().map(|d| (d, false)), level, w, &rules);
                    let b = aggregate(batch.values().rev().map(|d| (d, false)), level, w, &rules);
                    prop_assert_eq!(
                        a.iter().map(|(k, t)| (k.clone(), t.indicators())).collect::<Vec<_>>(),
                        b.iter().map(|(k, t)| (k.clone(), t.indicators())).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
}
