//! The indicators of Decision 766, each a pure function of one dossier's state and a period,
//! as the national portal computes them.
//!
//! # Invariants
//! - A period is a month (`2026-11`), a quarter (`2026-Q4`) or a year (`2026`) of Vietnam
//!   calendar dates; [`Window`] is the period seen at an instant: its end is the period's last
//!   instant, or *now* when the period is still running ("so far this period").
//! - **On time (2.1).** Counted: dossiers received (withdrawn or refused ones only if they were
//!   received first) by the window's end whose processing had not ended before its start.
//!   The end time is the first of processed, result returned, stopped/refused/withdrawn; a
//!   dossier still open at the window's end is judged at that instant (the period's last day).
//!   More than one supplement request (started by then) is late. One supplement request still
//!   open stops the clock at its start. Closed supplement time (the citizen's) is subtracted.
//!   With `NgayHenTra`: on time iff judged instant − supplement time ≤ `NgayHenTra`. Without:
//!   working days from reception to the judged day, less the supplements' working days, ≤ the
//!   procedure's statutory working days (the catalogue's for the dossier's channel, else
//!   `[indicators] statutory_days`: [`Rules::statutory_days`]); a procedure with no statutory
//!   time is *unjudged* (counted apart, never guessed).
//! - **Online (3.3)**, **synced (1.4)** and **digitised (4.2)**: over dossiers received in the
//!   window. Online: `KenhThucHien = 2` or arrived from the portal (`dossier.online`). Synced:
//!   the portal accepted a version of it. Digitised: a live component file and a result file.
//! - **Online payment (3.6)**: over dossiers received in the window whose fees total more than
//!   0 (fee-bearing, all-zero fees left out); paid online = a `payment.settled` (paid) arrived.
//! - **Electronic result (4.1)**: over dossiers of procedures that return a paper result
//!   (the catalogue's `KETQUATHUCHIEN`; an unknown procedure is taken to return one) whose
//!   result was produced (processed or returned) in the window; with a result file.
//! - **Average processing time (2.2)**: over dossiers processed or returned in the window,
//!   working days from reception to the end less supplement working days.
//! - A ratio is a percentage rounded to 2 decimals; a zero denominator is `None` (N/A), never
//!   0. Points of 2.1 = 20 × ratio, rounded to 2 decimals.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, Month};

use super::calendar::{day_end_ms, day_start_ms, vn_date, Calendar};
use super::catalogue::Terms;
use super::state::DossierState;

/// Why a period is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("period `{value}` is not YYYY-MM, YYYY-Qn or YYYY")]
    Malformed { value: String },
}

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub first: Date,
    pub last: Date,
}

fn month_last(year: i32, m: Month) -> Option<Date> {
    let next = if m == Month::December {
        Date::from_calendar_date(year + 1, Month::January, 1)
    } else {
        Date::from_calendar_date(year, m.next(), 1)
    };
    next.ok()?.previous_day()
}

impl Period {
    /// `2026-11`, `2026-Q4` or `2026`.
    pub fn parse(s: &str) -> Result<Period, PeriodError> {
        let bad = || PeriodError::Malformed {
            value: s.to_string(),
        };
        let s = s.trim();
        let year = |y: &str| -> Result<i32, PeriodError> {
            (y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
                .then(|| y.parse().ok())
                .flatten()
                .ok_or_else(bad)
        };
        let (first, last) = match s.split_once('-') {
            None => {
                let y = year(s)?;
                (
                    Date::from_calendar_date(y, Month::January, 1).map_err(|_| bad())?,
                    Date::from_calendar_date(y, Month::December, 31).map_err(|_| bad())?,
                )
            }
            Some((y, q)) if q.starts_with(['Q', 'q']) => {
                let y = year(y)?;
                let n: u8 = q[1..].parse().map_err(|_| bad())?;
                if !(1..=4).contains(&n) {
                    return Err(bad());
                }
                let m1 = Month::try_from(3 * n - 2).map_err(|_| bad())?;
                let m3 = Month::try_from(3 * n).map_err(|_| bad())?;
                (
                    Date::from_calendar_date(y, m1, 1).map_err(|_| bad())?,
                    month_last(y, m3).ok_or_else(bad)?,
                )
            }
            Some((y, m)) => {
                let y = year(y)?;
                if m.len() != 2 {
                    return Err(bad());
                }
                let m = Month::try_from(m.parse::<u8>().map_err(|_| bad())?).map_err(|_| bad())?;
                (
                    Date::from_calendar_date(y, m, 1).map_err(|_| bad())?,
                    month_last(y, m).ok_or_else(bad)?,
                )
            }
        };
        Ok(Period { first, last })
    }

    /// The period seen at `now_ms`: cut at now while it runs.
    pub fn window(&self, now_ms: i64) -> Window {
        let start_ms = day_start_ms(self.first);
        Window {
            start_ms,
            end_ms: day_end_ms(self.last).min(now_ms.max(start_ms - 1)),
        }
    }
}

/// `[start_ms, end_ms]`: a period as seen at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    fn contains(&self, ms: i64) -> bool {
        (self.start_ms..=self.end_ms).contains(&ms)
    }
}

/// What the formulas need besides a dossier.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub calendar: Calendar,
    /// Statutory processing time (working days) per procedure code, for dossiers without
    /// `NgayHenTra` whose procedure the catalogue gives no time for (`[indicators]`).
    pub statutory_days: BTreeMap<String, u32>,
    /// What the national catalogue says of each procedure (first in line).
    pub catalogue: Terms,
}

impl Rules {
    /// The statutory working days of a procedure for a dossier submitted online or not: the
    /// catalogue's time for that channel, else its other channel's, else the configuration's.
    pub fn statutory_days(&self, procedure: &str, online: bool) -> Option<u32> {
        let from_catalogue = self.catalogue.get(procedure).and_then(|t| {
            if online {
                t.statutory_days_online.or(t.statutory_days)
            } else {
                t.statutory_days.or(t.statutory_days_online)
            }
        });
        from_catalogue.or_else(|| self.statutory_days.get(procedure).copied())
    }

    /// Whether a procedure returns a paper result (an unknown one is taken to).
    pub fn paper_result(&self, procedure: &str) -> bool {
        self.catalogue.get(procedure).is_none_or(|t| t.paper_result)
    }
}

/// The verdict of 2.1 for one dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTime {
    /// Not in this window's denominator.
    NotCounted,
    OnTime,
    Late,
    /// No `NgayHenTra` and no statutory time for its procedure.
    Unjudged,
}

/// Indicator 2.1 for one dossier.
pub fn on_time(d: &DossierState, w: Window, rules: &Rules) -> OnTime {
    let Some(received) = d.received_ms else {
        return OnTime::NotCounted;
    };
    if !d.was_received || received > w.end_ms {
        return OnTime::NotCounted;
    }
    let end = d.end_ms();
    if end.is_some_and(|e| e < w.start_ms) {
        return OnTime::NotCounted;
    }
    let mut judged = match end {
        Some(e) if e <= w.end_ms => e,
        _ => w.end_ms,
    };
    let started: Vec<_> = d
        .supplements
        .iter()
        .filter(|i| i.start_ms <= judged)
        .collect();
    if started.len() > 1 {
        return OnTime::Late;
    }
    let mut closed = Vec::new();
    if let Some(i) = started.first() {
        match i.end_ms {
            Some(e) if e <= judged => closed.push((i.start_ms, e)),
            // Still waiting for the citizen at the judged instant: the clock stopped.
            _ => judged = i.start_ms,
        }
    }
    match d.due_ms {
        Some(due) => {
            let citizen: i64 = closed.iter().map(|(s, e)| e - s).sum();
            if judged - citizen <= due {
                OnTime::OnTime
            } else {
                OnTime::Late
            }
        }
        None => {
            let Some(allowed) = rules.statutory_days(&d.procedure, d.online) else {
                return OnTime::Unjudged;
            };
            if processing_days(d, judged, &closed, &rules.calendar) <= f64::from(allowed) {
                OnTime::OnTime
            } else {
                OnTime::Late
            }
        }
    }
}

/// Working days from reception to `until`, less the closed supplements' working days.
fn processing_days(d: &DossierState, until: i64, closed: &[(i64, i64)], cal: &Calendar) -> f64 {
    let received = d.received_ms.unwrap_or(until);
    let total = cal.working_days_between(vn_date(received), vn_date(until));
    let citizen: u32 = closed
        .iter()
        .map(|(s, e)| cal.working_days_between(vn_date(*s), vn_date(*e)))
        .sum();
    f64::from(total.saturating_sub(citizen))
}

fn received_in(d: &DossierState, w: Window) -> bool {
    d.was_received && d.received_ms.is_some_and(|r| w.contains(r))
}

/// 3.3: `Some(online)` when counted.
pub fn online(d: &DossierState, w: Window) -> Option<bool> {
    received_in(d, w).then_some(d.online)
}

/// 3.6: `Some(paid online)` for a fee-bearing dossier received in the window.
pub fn online_payment(d: &DossierState, w: Window) -> Option<bool> {
    (received_in(d, w) && d.fee_total > 0).then_some(d.paid_online)
}

/// 4.1: `Some(has a result file)` for a dossier of a procedure returning a paper result,
/// whose result was produced in the window.
pub fn electronic_result(d: &DossierState, w: Window, rules: &Rules) -> Option<bool> {
    (rules.paper_result(&d.procedure) && d.finished_ms().is_some_and(|f| w.contains(f)))
        .then_some(d.has_result)
}

/// 4.2: `Some(digitised in components and result)` for a dossier received in the window.
pub fn digitised(d: &DossierState, w: Window) -> Option<bool> {
    received_in(d, w).then_some(d.has_components && d.has_result)
}

/// 1.4: `Some(synced)` for a dossier received in the window.
pub fn synced(d: &DossierState, synced: bool, w: Window) -> Option<bool> {
    received_in(d, w).then_some(synced)
}

/// 2.2: working days of processing, for a dossier processed or returned in the window.
pub fn processing_time(d: &DossierState, w: Window, cal: &Calendar) -> Option<f64> {
    let f = d.finished_ms().filter(|f| w.contains(*f))?;
    let closed: Vec<_> = d
        .supplements
        .iter()
        .filter_map(|i| i.end_ms.filter(|e| *e <= f).map(|e| (i.start_ms, e)))
        .collect();
    Some(processing_days(d, f, &closed, cal))
}

/// Round to 2 decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A counted ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ratio {
    pub num: u64,
    pub den: u64,
}

impl Ratio {
    pub fn count(&mut self, v: Option<bool>) {
        if let Some(yes) = v {
            self.den += 1;
            self.num += u64::from(yes);
        }
    }
    /// The percentage, 2 decimals; `None` (N/A) when nothing is counted.
    pub fn percent(&self) -> Option<f64> {
        (self.den > 0).then(|| round2(100.0 * self.num as f64 / self.den as f64))
    }
    /// `weight` × ratio, 2 decimals (2.1: 20 points).
    pub fn points(&self, weight: f64) -> Option<f64> {
        (self.den > 0).then(|| round2(weight * self.num as f64 / self.den as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Interval;
    use super::*;
    use crate::indicators::state::parse_ms;
    use time::macros::date;

    fn ms(s: &str) -> i64 {
        parse_ms("t", s).unwrap()
    }

    /// Received Monday 2 Nov 2026 08:00, due Thursday 5 Nov 17:00.
    fn base() -> DossierState {
        DossierState {
            code: "H".into(),
            version: 1,
            unit: "U".into(),
            procedure: "1.001193".into(),
            received_ms: Some(ms("2026-11-02T08:00:00+07:00")),
            due_ms: Some(ms("2026-11-05T17:00:00+07:00")),
            was_received: true,
            ..Default::default()
        }
    }

    fn nov() -> Window {
        Period::parse("2026-11").unwrap().window(i64::MAX)
    }

    fn rules() -> Rules {
        Rules {
            calendar: Calendar::new(&["2026-11-20"]).unwrap(),
            statutory_days: [("1.001193".to_string(), 3)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn periods_parse_and_refuse() {
        let q = Period::parse("2026-Q4").unwrap();
        assert_eq!(
            (q.first, q.last),
            (date!(2026 - 10 - 01), date!(2026 - 12 - 31))
        );
        let m = Period::parse("2026-02").unwrap();
        assert_eq!(m.last, date!(2026 - 02 - 28));
        let y = Period::parse("2026").unwrap();
        assert_eq!(
            (y.first, y.last),
            (date!(2026 - 01 - 01), date!(2026 - 12 - 31))
        );
        for bad in ["2026-13", "2026-Q5", "26-11", "2026-1", "nov", ""] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        // So far: a running period ends now.
        let now = ms("2026-11-10T12:00:00+07:00");
        assert_eq!(Period::parse("2026-11").unwrap().window(now).end_ms, now);
    }

    #[test]
    fn finished_before_due_is_on_time_after_is_late() {
        let mut d = base();
        d.processed_ms = Some(ms("2026-11-05T16:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        d.processed_ms = Some(ms("2026-11-06T08:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Late);
        // The first end counts: returned before, processed (recorded late) after.
        d.returned_ms = Some(ms("2026-11-05T10:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        // Stopped counts as an end.
        let mut s = base();
        s.stopped_ms = Some(ms("2026-11-04T10:00:00+07:00"));
        assert_eq!(on_time(&s, nov(), &rules()), OnTime::OnTime);
    }

    #[test]
    fn withdrawn_counts_only_if_received() {
        let mut d = base();
        d.withdrawn = true;
        d.stopped_ms = Some(ms("2026-11-03T08:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        d.was_received = false;
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::NotCounted);
    }

    #[test]
    fn open_at_period_end_is_judged_on_the_last_day() {
        let mut d = base();
        // Due 5 Nov; October's window does not contain it (received in November).
        let oct = Period::parse("2026-10").unwrap().window(i64::MAX);
        assert_eq!(on_time(&d, oct, &rules()), OnTime::NotCounted);
        // Open through November: judged on 30 Nov, past due.
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Late);
        // Seen on 4 Nov (so far): still within due.
        let so_far = Period::parse("2026-11")
            .unwrap()
            .window(ms("2026-11-04T12:00:00+07:00"));
        assert_eq!(on_time(&d, so_far, &rules()), OnTime::OnTime);
        // Due in December and open at November's end: on time in November.
        d.due_ms = Some(ms("2026-12-03T17:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        // Finished in October: not in November's denominator.
        let mut old = base();
        old.received_ms = Some(ms("2026-10-01T08:00:00+07:00"));
        old.processed_ms = Some(ms("2026-10-02T08:00:00+07:00"));
        assert_eq!(on_time(&old, nov(), &rules()), OnTime::NotCounted);
    }

    #[test]
    fn supplements_stop_the_clock_and_are_subtracted() {
        // Finished 6 Nov 16:00, a day after due, but the citizen took 2 days to supplement.
        let mut d = base();
        d.processed_ms = Some(ms("2026-11-06T16:00:00+07:00"));
        d.supplements = vec![Interval {
            start_ms: ms("2026-11-03T08:00:00+07:00"),
            end_ms: Some(ms("2026-11-05T08:00:00+07:00")),
        }];
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        // One open supplement request: the clock stopped at its start (before due).
        let mut open = base();
        open.supplements = vec![Interval {
            start_ms: ms("2026-11-04T08:00:00+07:00"),
            end_ms: None,
        }];
        assert_eq!(on_time(&open, nov(), &rules()), OnTime::OnTime);
        // Two supplement requests: late, whatever the times.
        let mut two = d.clone();
        two.processed_ms = Some(ms("2026-11-04T08:00:00+07:00"));
        two.supplements.push(Interval {
            start_ms: ms("2026-11-03T10:00:00+07:00"),
            end_ms: Some(ms("2026-11-03T11:00:00+07:00")),
        });
        assert_eq!(on_time(&two, nov(), &rules()), OnTime::Late);
    }

    #[test]
    fn without_due_date_the_statutory_time_is_used_in_working_days() {
        // Received Thu 19 Nov; 20 Nov is a configured holiday; 3 working days: 23, 24, 25.
        let mut d = base();
        d.due_ms = None;
        d.received_ms = Some(ms("2026-11-19T08:00:00+07:00"));
        d.processed_ms = Some(ms("2026-11-25T16:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        d.processed_ms = Some(ms("2026-11-26T09:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Late);
        // Without the holiday, 25 Nov was already the fourth working day.
        let plain = Rules {
            calendar: Calendar::default(),
            ..rules()
        };
        d.processed_ms = Some(ms("2026-11-25T16:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &plain), OnTime::Late);
        // A supplement of 2 working days (Mon 23 → Wed 25) is subtracted.
        d.processed_ms = Some(ms("2026-11-27T09:00:00+07:00"));
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Late);
        d.supplements = vec![Interval {
            start_ms: ms("2026-11-23T08:00:00+07:00"),
            end_ms: Some(ms("2026-11-25T08:00:00+07:00")),
        }];
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::OnTime);
        assert_eq!(processing_time(&d, nov(), &rules().calendar), Some(3.0));
        // No statutory time known: unjudged, never guessed.
        d.procedure = "9.999999".into();
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Unjudged);
    }

    #[test]
    fn the_catalogue_time_comes_first_per_channel_then_the_configuration() {
        use crate::indicators::catalogue::ProcedureTerms;
        // Received Mon 2 Nov 08:00, no NgayHenTra, processed Fri 6 Nov: 4 working days
        // after reception (3, 4, 5, 6 Nov).
        let mut d = base();
        d.due_ms = None;
        d.processed_ms = Some(ms("2026-11-06T16:00:00+07:00"));
        // The configuration alone says 3 days: late.
        assert_eq!(on_time(&d, nov(), &rules()), OnTime::Late);
        // The catalogue says 4 working days directly, 3 online: on time directly...
        let mut with = rules();
        with.catalogue.insert(
            "1.001193".into(),
            ProcedureTerms {
                statutory_days: Some(4),
                statutory_days_online: Some(3),
                paper_result: true,
            },
        );
        assert_eq!(with.statutory_days("1.001193", false), Some(4));
        assert_eq!(on_time(&d, nov(), &with), OnTime::OnTime);
        // ...and late online, where the catalogue allows 3.
        d.online = true;
        assert_eq!(on_time(&d, nov(), &with), OnTime::Late);
        // A channel the catalogue has no working-day time for takes the other channel's.
        let only_direct = ProcedureTerms {
            statutory_days: Some(4),
            statutory_days_online: None,
            paper_result: true,
        };
        with.catalogue.insert("1.001193".into(), only_direct);
        assert_eq!(on_time(&d, nov(), &with), OnTime::OnTime);
        // A catalogue entry without any working-day time falls back to the configuration (3).
        with.catalogue
            .insert("1.001193".into(), ProcedureTerms::default());
        assert_eq!(with.statutory_days("1.001193", true), Some(3));
        assert_eq!(on_time(&d, nov(), &with), OnTime::Late);
        // Known to neither: unjudged.
        d.procedure = "2.000001".into();
        assert_eq!(on_time(&d, nov(), &with), OnTime::Unjudged);
        // The catalogue alone is enough.
        with.catalogue.insert("2.000001".into(), only_direct);
        assert_eq!(on_time(&d, nov(), &with), OnTime::OnTime);
    }

    #[test]
    fn electronic_result_counts_only_procedures_with_a_paper_result() {
        use crate::indicators::catalogue::ProcedureTerms;
        let mut d = base();
        d.processed_ms = Some(ms("2026-11-04T08:00:00+07:00"));
        d.has_result = true;
        // Unknown to the catalogue: taken to return paper, counted.
        assert_eq!(electronic_result(&d, nov(), &rules()), Some(true));
        let mut with = rules();
        with.catalogue.insert(
            "1.001193".into(),
            ProcedureTerms {
                paper_result: false,
                ..Default::default()
            },
        );
        // No paper result: out of 4.1's denominator even with a result file.
        assert_eq!(electronic_result(&d, nov(), &with), None);
        with.catalogue.get_mut("1.001193").unwrap().paper_result = true;
        assert_eq!(electronic_result(&d, nov(), &with), Some(true));
        d.has_result = false;
        assert_eq!(electronic_result(&d, nov(), &with), Some(false));
    }

    #[test]
    fn the_other_ratios() {
        let mut d = base();
        d.online = true;
        d.fee_total = 8000;
        d.has_components = true;
        assert_eq!(online(&d, nov()), Some(true));
        assert_eq!(online_payment(&d, nov()), Some(false));
        d.paid_online = true;
        assert_eq!(online_payment(&d, nov()), Some(true));
        d.fee_total = 0;
        assert_eq!(
            online_payment(&d, nov()),
            None,
            "all-zero fees are left out"
        );
        assert_eq!(
            electronic_result(&d, nov(), &rules()),
            None,
            "no result yet"
        );
        d.processed_ms = Some(ms("2026-11-04T08:00:00+07:00"));
        assert_eq!(electronic_result(&d, nov(), &rules()), Some(false));
        assert_eq!(digitised(&d, nov()), Some(false));
        d.has_result = true;
        assert_eq!(electronic_result(&d, nov(), &rules()), Some(true));
        assert_eq!(digitised(&d, nov()), Some(true));
        assert_eq!(synced(&d, true, nov()), Some(true));
        let oct = Period::parse("2026-10").unwrap().window(i64::MAX);
        assert_eq!(online(&d, oct), None);
        assert_eq!(synced(&d, true, oct), None);
    }

    #[test]
    fn ratios_round_and_zero_is_not_applicable() {
        let r = Ratio { num: 373, den: 400 };
        assert_eq!(r.percent(), Some(93.25));
        assert_eq!(r.points(20.0), Some(18.65));
        let third = Ratio { num: 1, den: 3 };
        assert_eq!(third.percent(), Some(33.33));
        assert_eq!(Ratio::default().percent(), None);
        assert_eq!(Ratio::default().points(20.0), None);
    }
}
