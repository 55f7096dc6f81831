//! `[indicators]`: the service-quality index of Decision 766 (`crate::indicators`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

/// `[indicators]`: the live service-quality index. Present = the gateway keeps it (a queue of
/// its own takes every dossier event); absent = off.
#[derive(Debug, Clone, Deserialize)]
pub struct IndicatorsSection {
    /// Public holidays, `YYYY-MM-DD` (Vietnam dates), besides Saturdays and Sundays: the
    /// working days the due dates and the at-risk list count. Default: none.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Statutory processing time in working days per national procedure code, for dossiers
    /// that carry no `NgayHenTra`, e.g. `{ "1.001193" = 3 }`. A procedure missing here makes
    /// such a dossier *unjudged* (counted apart). Default: none.
    #[serde(default)]
    pub statutory_days: BTreeMap<String, u32>,
    /// The adapter whose delivered versions mean "the portal accepted it" (indicator 1.4).
    /// Default `dvcqg`.
    #[serde(default = "d_synced_to")]
    pub synced_to: String,
    /// How often the `/metrics` gauges of the current month are recomputed. Default 1m.
    #[serde(default = "d_refresh")]
    pub refresh: Dur,
    /// The at-risk list's default horizon in working days. Default 2.
    #[serde(default = "d_at_risk_days")]
    pub at_risk_days: u32,
    /// The fewest dossiers in 2.1's denominator a unit needs to be ranked in the "lowest
    /// on-time rate" list (API, CLI, demo); fewer are listed apart as too few to judge.
    /// Default 10.
    #[serde(default = "d_lowest_min_dossiers")]
    pub lowest_min_dossiers: u64,
}

fn d_synced_to() -> String {
    defaults::INDICATORS_SYNCED_TO.into()
}
fn d_refresh() -> Dur {
    Dur(defaults::INDICATORS_REFRESH)
}
fn d_at_risk_days() -> u32 {
    defaults::INDICATORS_AT_RISK_DAYS
}
fn d_lowest_min_dossiers() -> u64 {
    defaults::INDICATORS_LOWEST_MIN_DOSSIERS
}

/// Check `[indicators]` on its own: dates are dates, statutory times are positive.
pub(super) fn validate(s: &IndicatorsSection, p: &mut impl FnMut(String, String, &str)) {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    for (i, h) in s.holidays.iter().enumerate() {
        if time::Date::parse(h.trim(), &fmt).is_err() {
            p(
                format!("indicators.holidays[{i}]"),
                format!("`{h}` is not a date"),
                "write it as YYYY-MM-DD, e.g. \"2026-09-02\"",
            );
        }
    }
    for (code, days) in &s.statutory_days {
        if *days == 0 {
            p(
                format!("indicators.statutory_days.{code}"),
                "must be at least 1 working day".into(),
                "give the procedure's processing time from the catalogue",
            );
        }
    }
    if s.synced_to.trim().is_empty() {
        p(
            "indicators.synced_to".into(),
            "must not be empty".into(),
            "name the portal's adapter, or remove the line for `dvcqg`",
        );
    }
}
