//! Indicators per level (province, unit, procedure) over one window, and the at-risk list.
//!
//! # Invariants
//! - An aggregate is a sum of per-dossier verdicts ([`super::formulas`]); it depends only on
//!   the set of dossier states, never on the order they are given in.
//! - Keys are unit names or procedure codes as the source gives them (`DonViXuLy`,
//!   `MaTTHC`), or `province`: never citizen data.
//! - At risk: an open dossier, not waiting for the citizen, with `NgayHenTra` not yet passed
//!   and at most `days` working days away (0: due today).

use std::collections::BTreeMap;

use serde::Serialize;

use super::calendar::vn_date;
use super::formulas::{self, round2, OnTime, Ratio, Rules, Window};
use super::state::DossierState;

/// A level of aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    Unit,
    Procedure,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "province" => Some(Level::Province),
            "unit" | "commune" => Some(Level::Unit),
            "procedure" => Some(Level::Procedure),
            _ => None,
        }
    }

    fn key(self, d: &DossierState) -> &str {
        match self {
            Level::Province => "province",
            Level::Unit => &d.unit,
            Level::Procedure => &d.procedure,
        }
    }
}

/// Counts for one key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub on_time: Ratio,
    pub unjudged: u64,
    pub online: Ratio,
    pub online_payment: Ratio,
    pub electronic_result: Ratio,
    pub digitised: Ratio,
    pub synced: Ratio,
    pub processing_days_sum: f64,
    pub processed: u64,
}

impl Tally {
    /// Count one dossier.
    pub fn add(&mut self, d: &DossierState, synced: bool, w: Window, rules: &Rules) {
        match formulas::on_time(d, w, rules) {
            OnTime::OnTime => self.on_time.count(Some(true)),
            OnTime::Late => self.on_time.count(Some(false)),
            OnTime::Unjudged => self.unjudged += 1,
            OnTime::NotCounted => {}
        }
        self.online.count(formulas::online(d, w));
        self.online_payment.count(formulas::online_payment(d, w));
        self.electronic_result
            .count(formulas::electronic_result(d, w, rules));
        self.digitised.count(formulas::digitised(d, w));
        self.synced.count(formulas::synced(d, synced, w));
        if let Some(days) = formulas::processing_time(d, w, &rules.calendar) {
            self.processing_days_sum += days;
            self.processed += 1;
        }
    }

    /// The published figures.
    pub fn indicators(&self) -> Indicators {
        let pct = |r: &Ratio| Figure {
            percent: r.percent(),
            num: r.num,
            den: r.den,
        };
        Indicators {
            on_time: pct(&self.on_time),
            on_time_points: self.on_time.points(20.0),
            unjudged: self.unjudged,
            online: pct(&self.online),
            online_payment: pct(&self.online_payment),
            electronic_result: pct(&self.electronic_result),
            digitised: pct(&self.digitised),
            synced: pct(&self.synced),
            avg_processing_days: (self.processed > 0)
                .then(|| round2(self.processing_days_sum / self.processed as f64)),
            processed: self.processed,
        }
    }
}

/// One ratio as published: percent (N/A = `null`) with its counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figure {
    pub percent: Option<f64>,
    pub num: u64,
    pub den: u64,
}

/// Every indicator of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicators {
    /// 2.1
    pub on_time: Figure,
    /// 2.1 in points (20 × ratio).
    pub on_time_points: Option<f64>,
    /// Dossiers 2.1 could not judge (no due date, no statutory time).
    pub unjudged: u64,
    /// 3.3
    pub online: Figure,
    /// 3.6
    pub online_payment: Figure,
    /// 4.1
    pub electronic_result: Figure,
    /// 4.2
    pub digitised: Figure,
    /// 1.4
    pub synced: Figure,
    /// 2.2, working days.
    pub avg_processing_days: Option<f64>,
    pub processed: u64,
}

/// Indicators per key of `level`, sorted by key.
pub fn aggregate<'a>(
    records: impl IntoIterator<Item = (&'a DossierState, bool)>,
    level: Level,
    w: Window,
    rules: &Rules,
) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    for (d, synced) in records {
        let key = level.key(d);
        match out.get_mut(key) {
            Some(t) => t.add(d, synced, w, rules),
            None => {
                let mut t = Tally::default();
                t.add(d, synced, w, rules);
                out.insert(key.to_string(), t);
            }
        }
    }
    out
}

/// A dossier that will be late unless it moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtRisk {
    pub code: String,
    pub unit: String,
    pub procedure: String,
    /// `NgayHenTra`, `YYYY-MM-DD`.
    pub due: String,
    pub working_days_left: u32,
}

/// Open dossiers due within `days` working days of `now_ms`, by unit then due date.
pub fn at_risk<'a>(
    records: impl IntoIterator<Item = &'a DossierState>,
    now_ms: i64,
    days: u32,
    rules: &Rules,
) -> BTreeMap<String, Vec<AtRisk>> {
    let today = vn_date(now_ms);
    let mut out: BTreeMap<String, Vec<AtRisk>> = BTreeMap::new();
    for d in records {
        let waiting_for_citizen = d.supplements.iter().any(|i| i.end_ms.is_none());
        let Some(due) = d.due_ms else { continue };
        if !d.was_received || d.end_ms().is_some() || waiting_for_citizen || due < now_ms {
            continue;
        }
        let left = rules.calendar.working_days_between(today, vn_date(due));
        if left <= days {
            out.entry(d.unit.clone()).or_default().push(AtRisk {
                code: d.code.clone(),
                unit: d.unit.clone(),
                procedure: d.procedure.clone(),
                due: vn_date(due).to_string(),
                working_days_left: left,
            });
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| (&a.due, &a.code).cmp(&(&b.due, &b.code)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::calendar::Calendar;
    use crate::indicators::formulas::Period;
    use crate::indicators::state::parse_ms;

    fn ms(s: &str) -> i64 {
        parse_ms("t", s).unwrap()
    }

    fn d(code: &str, unit: &str, done: Option<&str>, due: &str) -> DossierState {
        DossierState {
            code: code.into(),
            version: 1,
            unit: unit.into(),
            procedure: "1.001193".into(),
            received_ms: Some(ms("2026-11-02T08:00:00+07:00")),
            due_ms: Some(ms(due)),
            was_received: true,
            processed_ms: done.map(ms),
            online: code.ends_with('1'),
            ..Default::default()
        }
    }

    #[test]
    fn per_unit_and_province() {
        let rules = Rules {
            calendar: Calendar::default(),
            ..Default::default()
        };
        let all = [
            d(
                "A1",
                "xã A",
                Some("2026-11-03T08:00:00+07:00"),
                "2026-11-05T17:00:00+07:00",
            ),
            d(
                "A2",
                "xã A",
                Some("2026-11-09T08:00:00+07:00"),
                "2026-11-05T17:00:00+07:00",
            ),
            d("B1", "xã B", None, "2026-12-05T17:00:00+07:00"),
        ];
        let w = Period::parse("2026-11").unwrap().window(i64::MAX);
        let units = aggregate(all.iter().map(|x| (x, false)), Level::Unit, w, &rules);
        let a = units["xã A"].indicators();
        assert_eq!(
            (a.on_time.num, a.on_time.den, a.on_time.percent),
            (1, 2, Some(50.0))
        );
        assert_eq!(a.on_time_points, Some(10.0));
        assert_eq!(a.online.percent, Some(50.0));
        assert_eq!(
            a.online_payment.percent, None,
            "no fee-bearing dossier: N/A"
        );
        assert_eq!(units["xã B"].indicators().on_time.percent, Some(100.0));
        let p = aggregate(all.iter().map(|x| (x, true)), Level::Province, w, &rules);
        let p = p["province"].indicators();
        assert_eq!(p.on_time.percent, Some(66.67));
        assert_eq!(p.synced.percent, Some(100.0));
        assert_eq!(p.processed, 2);
    }

    #[test]
    fn at_risk_within_working_days() {
        // Now: Friday 6 Nov 2026, 10:00. Due Mon 9 Nov is 1 working day away.
        let now = ms("2026-11-06T10:00:00+07:00");
        let rules = Rules::default();
        let soon = d("S1", "xã A", None, "2026-11-09T17:00:00+07:00");
        let later = d("L1", "xã A", None, "2026-11-13T17:00:00+07:00");
        let late = d("P1", "xã A", None, "2026-11-05T17:00:00+07:00");
        let done = d(
            "D1",
            "xã B",
            Some("2026-11-05T08:00:00+07:00"),
            "2026-11-09T17:00:00+07:00",
        );
        let mut waiting = d("W1", "xã B", None, "2026-11-09T17:00:00+07:00");
        waiting
            .supplements
            .push(crate::indicators::state::Interval {
                start_ms: ms("2026-11-04T08:00:00+07:00"),
                end_ms: None,
            });
        let all = [soon, later, late, done, waiting];
        let r = at_risk(all.iter(), now, 2, &rules);
        assert_eq!(r.len(), 1);
        let a = &r["xã A"];
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].code, "S1");
        assert_eq!(a[0].working_days_left, 1);
        assert_eq!(a[0].due, "2026-11-09");
        assert_eq!(at_risk(all.iter(), now, 5, &rules)["xã A"].len(), 2);
    }
}
