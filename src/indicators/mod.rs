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
//! `live.rs` (the fact message the engine publishes and the consumer reads), `publisher.rs` (the
//! engine's facts grouped into messages under load), `catalogue.rs` (statutory times and paper results from the national catalogue),
//! `formulas.rs` (one indicator per function, periods and windows), `aggregate.rs` (levels,
//! the at-risk list), `history.rs` (the store: apply, rebuild, reports, series), `pdf.rs`
//! (the report as PDF).

pub mod aggregate;
pub mod calendar;
pub mod catalogue;
pub mod formulas;
pub mod history;
pub mod live;
pub mod pdf;
pub mod publisher;
pub mod state;

pub use aggregate::{AtRisk, Indicators, Level};
pub use formulas::{Period, Rules};
pub use history::{ApplyOutcome, IndicatorError, Report};
pub use live::FactEvent;

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
    Ok(live_rules_of(loaded)?.get().as_ref().clone())
}

/// [`rules_of`], swappable: the running gateway's rules, whose catalogue terms can be read
/// again without a restart ([`LiveRules::reload`]).
pub fn live_rules_of(loaded: &crate::config::Loaded) -> Result<LiveRules, RulesError> {
    let terms = loaded
        .config
        .catalogue
        .as_ref()
        .map(|c| catalogue::terms_path(&loaded.data_dir(), &c.source_name));
    let mut r = rules(loaded.config.indicators.as_ref())?;
    if let Some(path) = &terms {
        r.catalogue = catalogue::read_terms(path)?;
    }
    Ok(LiveRules::new(r, terms))
}

/// The rules in force, shared by the gauges' refresh, the ops API and the page. Readers take
/// the whole [`Rules`] at once ([`LiveRules::get`]): a reload swaps it whole, so one report
/// never mixes old and new terms.
#[derive(Debug, Clone, Default)]
pub struct LiveRules {
    current: std::sync::Arc<std::sync::RwLock<std::sync::Arc<Rules>>>,
    /// The catalogue's terms file (`None` without `[catalogue]`: nothing to reload).
    terms: Option<std::path::PathBuf>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Procedures the catalogue now gives terms for.
    pub procedures: usize,
    /// How many of them differ from the terms before (added, changed or gone).
    pub changed: usize,
}

/// Why the catalogue's terms were not reloaded (the terms in force are kept).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no [catalogue] section: the index has no catalogue terms to reload")]
    NoCatalogue,
    #[error("{0}; the terms in force are kept")]
    Terms(#[from] catalogue::TermsError),
}

impl LiveRules {
    /// `rules` in force; `terms` is where [`LiveRules::reload`] reads the catalogue again.
    pub fn new(rules: Rules, terms: Option<std::path::PathBuf>) -> Self {
        LiveRules {
            current: std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(rules))),
            terms,
        }
    }

    /// The rules in force now.
    pub fn get(&self) -> std::sync::Arc<Rules> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read the catalogue's terms file again and put its terms in force; on any error the
    /// terms in force stay (a file being rewritten or broken never empties the catalogue).
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let path = self.terms.as_ref().ok_or(ReloadError::NoCatalogue)?;
        let terms = catalogue::read_terms(path)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = &current.catalogue;
        let changed = terms.iter().filter(|(k, v)| old.get(*k) != Some(v)).count()
            + old.keys().filter(|k| !terms.contains_key(*k)).count();
        let mut next = Rules::clone(current.as_ref());
        next.catalogue = terms;
        let procedures = next.catalogue.len();
        *current = std::sync::Arc::new(next);
        Ok(Reloaded {
            procedures,
            changed,
        })
    }
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

    /// A dossier of 1.001193 received on Monday 2 November 2026, processed on Friday the 6th
    /// (4 working days later), without `NgayHenTra`: judged by the statutory time alone.
    fn undated_processed() -> DossierState {
        let ms = |s: &str| state::parse_ms("t", s).unwrap();
        let mut d = DossierState::new("H-9");
        d.apply_fact(&state::Fact::Snapshot(state::SnapshotFact {
            version: 1,
            status: DossierStatus::Processed,
            at_ms: ms("2026-11-06T10:00:00+07:00"),
            unit: "xã A".into(),
            procedure: "1.001193".into(),
            received_ms: Some(ms("2026-11-02T08:00:00+07:00")),
            due_ms: None,
            online: false,
            fee_total: 0,
            has_components: false,
            has_result: false,
            finished_ms: Some(ms("2026-11-06T10:00:00+07:00")),
            returned_ms: None,
        }));
        d
    }

    fn write_terms(path: &std::path::Path, days: u32) {
        let terms: catalogue::Terms = [(
            "1.001193".to_string(),
            catalogue::ProcedureTerms {
                statutory_days: Some(days),
                statutory_days_online: None,
                paper_result: true,
            },
        )]
        .into();
        std::fs::write(path, serde_json::to_vec(&terms).unwrap()).unwrap();
    }

    #[test]
    fn a_reload_puts_a_changed_statutory_time_in_force_and_a_bad_file_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue-catalogue-terms.json");
        write_terms(&path, 3);
        let live = LiveRules::new(
            Rules {
                catalogue: catalogue::read_terms(&path).unwrap(),
                ..Default::default()
            },
            Some(path.clone()),
        );
        let d = undated_processed();
        let w = Period::parse("2026-11").unwrap().window(i64::MAX);
        let verdict = |l: &LiveRules| formulas::on_time(&d, w, &l.get());
        assert_eq!(verdict(&live), formulas::OnTime::Late, "4 working days > 3");
        // The sync writes 5 days: in force after the reload, not before.
        write_terms(&path, 5);
        assert_eq!(
            verdict(&live),
            formulas::OnTime::Late,
            "read at reload only"
        );
        let r = live.reload().unwrap();
        assert_eq!((r.procedures, r.changed), (1, 1));
        assert_eq!(
            verdict(&live),
            formulas::OnTime::OnTime,
            "4 working days <= 5"
        );
        assert_eq!(live.get().statutory_days("1.001193", false), Some(5));
        // A file that does not read back: an error naming it, the 5 days stay.
        std::fs::write(&path, b"{\"1.001193\": {\"statutory_days\": \"soon\"").unwrap();
        let e = live.reload().unwrap_err();
        assert!(matches!(
            e,
            ReloadError::Terms(catalogue::TermsError::Malformed { .. })
        ));
        let text = e.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("terms in force are kept"),
            "{text}"
        );
        assert_eq!(verdict(&live), formulas::OnTime::OnTime);
        assert_eq!(live.get().statutory_days("1.001193", false), Some(5));
        // Reloading the same terms again changes nothing.
        write_terms(&path, 5);
        assert_eq!(live.reload().unwrap().changed, 0);
        // Without [catalogue] there is nothing to reload.
        let e = LiveRules::new(Rules::default(), None).reload().unwrap_err();
        assert!(matches!(e, ReloadError::NoCatalogue), "{e}");
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
