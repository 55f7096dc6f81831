//! The indicators over the store: one event applied live, the states rebuilt from the journal,
//! and the reports read back.
//!
//! # Invariants
//! - **What is replayed.** The ledger keeps no payloads (only outcomes, keys and versions), so
//!   the indicators keep their own history: each dossier event's [`Fact`] is journalled
//!   (`gw_store::indicators`, no personal data) in the same transaction as the state it
//!   changes. [`rebuild`] folds the journal again, dossier by dossier in journal order, and
//!   writes the states back, never over a state a live apply wrote meanwhile. Whether a
//!   dossier is synced is not folded: it is read from the ledger (`delivered_versions` of the
//!   portal adapter) when a report is made.
//! - [`apply_event`] (and [`apply_envelope`]) is idempotent per envelope id: a redelivered
//!   event is a [`Applied::Duplicate`] and changes nothing. [`apply_events`] (and
//!   [`apply_envelopes`]) does the same for a batch in one store transaction, folding in memory
//!   each dossier's events of the batch in batch order (the same fold, so a batch leaves exactly
//!   the states one-by-one would). An envelope becomes its event through
//!   [`FactEvent::of`] only, whether the engine made it (live) or it is applied here.
//! - A stored state that does not read back is an error naming the dossier, never a reset.

use gw_store::indicators::{Applied, BatchInput, IndicatorStore, JournalEntry, StateRow};
use serde::Serialize;

use super::aggregate::{self, AtRisk, Indicators, Level};
use super::formulas::{Period, Rules, Window};
use super::live::FactEvent;
use super::state::{DossierState, Fact, FactError};
use crate::model::envelope::Envelope;
use crate::model::time::now_ms;

/// The consumer name of the live path (its position row).
pub const CONSUMER: &str = "indicators";

/// Journal entries read per page while rebuilding.
const REBUILD_PAGE: u32 = 5_000;

/// Why applying, rebuilding or reporting failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    /// The event cannot be read (dead-lettered by the consumer).
    #[error("{0}")]
    Fact(#[from] FactError),
    /// The store failed (the consumer retries).
    #[error("the indicator store failed: {0}")]
    Store(#[from] gw_store::StoreError),
    /// A stored state or journalled fact does not read back.
    #[error("stored indicator data of {code} does not read back: {detail}")]
    Corrupt { code: String, detail: String },
}

/// What [`apply_envelope`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    Duplicate,
    /// A kind (or settlement status) the indicators do not read.
    Ignored,
}

/// The row a state is stored as.
pub fn row_of(s: &DossierState, seq: i64) -> StateRow {
    StateRow {
        code: s.code.clone(),
        unit: s.unit.clone(),
        procedure: s.procedure.clone(),
        received_ms: if s.was_received { s.received_ms } else { None },
        end_ms: s.end_ms(),
        state: serde_json::to_string(s).expect("a state serializes"),
        last_seq: seq,
        updated_ms: now_ms(),
    }
}

fn read_state(code: &str, json: &str) -> Result<DossierState, String> {
    serde_json::from_str(json).map_err(|e| format!("{code}: {e}"))
}

fn entry_of(ev: &FactEvent) -> JournalEntry {
    JournalEntry {
        event_id: ev.id.clone(),
        key: ev.key.clone(),
        kind: ev.kind.clone(),
        fact: serde_json::to_string(&ev.fact).expect("a fact serializes"),
        at_ms: ev.at_ms,
    }
}

fn outcome(a: Applied) -> ApplyOutcome {
    match a {
        Applied::Applied { .. } => ApplyOutcome::Applied,
        Applied::Duplicate => ApplyOutcome::Duplicate,
    }
}

/// Apply one event: journal its fact, fold it into the dossier's state (one transaction).
pub async fn apply_envelope(
    store: &dyn IndicatorStore,
    env: &Envelope,
) -> Result<ApplyOutcome, IndicatorError> {
    match FactEvent::of(env)? {
        Some(ev) => apply_event(store, ev).await,
        None => Ok(ApplyOutcome::Ignored),
    }
}

/// Apply one event of the index's queue (see [`apply_envelope`]).
pub async fn apply_event(
    store: &dyn IndicatorStore,
    ev: FactEvent,
) -> Result<ApplyOutcome, IndicatorError> {
    let entry = entry_of(&ev);
    let FactEvent {
        key: code, fact, ..
    } = ev;
    let fold = Box::new(move |stored: Option<String>, seq: i64| {
        let mut s = match stored {
            Some(json) => read_state(&code, &json)?,
            None => DossierState::new(&code),
        };
        s.apply_fact(&fact);
        Ok(row_of(&s, seq))
    });
    Ok(outcome(store.apply(CONSUMER, entry, fold).await?))
}

/// Apply a batch of envelopes in one store transaction: one answer per envelope, in order. An
/// envelope that cannot be read is its own `Err` (nothing of it written) and does not hold the
/// others back; a store failure fails the whole batch (nothing written).
pub async fn apply_envelopes(
    store: &dyn IndicatorStore,
    envs: &[Envelope],
) -> Result<Vec<Result<ApplyOutcome, FactError>>, IndicatorError> {
    let events: Vec<Result<Option<FactEvent>, FactError>> =
        envs.iter().map(FactEvent::of).collect();
    apply_read(store, events).await
}

/// [`apply_envelopes`] over events already read (the consumer's path): `Ok(None)` is an event
/// the index does not read ([`ApplyOutcome::Ignored`]), an `Err` is returned as it is.
pub async fn apply_read<E>(
    store: &dyn IndicatorStore,
    events: Vec<Result<Option<FactEvent>, E>>,
) -> Result<Vec<Result<ApplyOutcome, E>>, IndicatorError> {
    let mut out: Vec<Result<ApplyOutcome, E>> = Vec::with_capacity(events.len());
    let mut batch = Vec::new();
    let mut at = Vec::new();
    for (i, ev) in events.into_iter().enumerate() {
        match ev {
            Ok(Some(ev)) => {
                batch.push(ev);
                at.push(i);
                out.push(Ok(ApplyOutcome::Duplicate)); // set below
            }
            Ok(None) => out.push(Ok(ApplyOutcome::Ignored)),
            Err(e) => out.push(Err(e)),
        }
    }
    if batch.is_empty() {
        return Ok(out);
    }
    for (j, a) in apply_events(store, batch).await?.into_iter().enumerate() {
        out[at[j]] = Ok(a);
    }
    Ok(out)
}

/// Apply events in one store transaction (journal, states, position), folding in memory each
/// dossier's events of the batch in batch order; one outcome per event, in order.
pub async fn apply_events(
    store: &dyn IndicatorStore,
    events: Vec<FactEvent>,
) -> Result<Vec<ApplyOutcome>, IndicatorError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<JournalEntry> = events.iter().map(entry_of).collect();
    let fold = Box::new(move |input: BatchInput| {
        let mut states: std::collections::HashMap<&str, (DossierState, i64)> =
            std::collections::HashMap::new();
        for (i, seq) in input.applied {
            let code = events[i].key.as_str();
            let (s, last) = match states.entry(code) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let s = match input.stored.get(code) {
                        Some(json) => read_state(code, json)?,
                        None => DossierState::new(code),
                    };
                    v.insert((s, seq))
                }
            };
            s.apply_fact(&events[i].fact);
            *last = seq;
        }
        Ok(states.values().map(|(s, seq)| row_of(s, *seq)).collect())
    });
    Ok(store
        .apply_batch(CONSUMER, entries, fold)
        .await?
        .into_iter()
        .map(outcome)
        .collect())
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    pub entries: u64,
    pub dossiers: u64,
    /// States written (a state a live apply changed meanwhile is kept, not counted).
    pub written: u64,
}

/// Fold the whole journal again and write the states; `progress(entries done, total)` after
/// each page.
pub async fn rebuild(
    store: &dyn IndicatorStore,
    mut progress: impl FnMut(u64, u64),
) -> Result<Rebuilt, IndicatorError> {
    let total = store.journal_len().await?.max(0) as u64;
    let mut done = Rebuilt::default();
    let mut after: Option<(String, i64)> = None;
    let mut current: Option<(DossierState, i64)> = None;
    let mut rows = Vec::new();
    loop {
        let page = store.journal_page(after.clone(), REBUILD_PAGE).await?;
        let Some((last_seq, last)) = page.last() else {
            break;
        };
        after = Some((last.key.clone(), *last_seq));
        for (seq, e) in page {
            let fact: Fact =
                serde_json::from_str(&e.fact).map_err(|err| IndicatorError::Corrupt {
                    code: e.key.clone(),
                    detail: format!("journal entry {seq}: {err}"),
                })?;
            match &mut current {
                Some((s, at)) if s.code == e.key => {
                    s.apply_fact(&fact);
                    *at = seq;
                }
                _ => {
                    if let Some((s, at)) = current.take() {
                        rows.push(row_of(&s, at));
                        done.dossiers += 1;
                    }
                    let mut s = DossierState::new(&e.key);
                    s.apply_fact(&fact);
                    current = Some((s, seq));
                }
            }
            done.entries += 1;
        }
        if rows.len() >= REBUILD_PAGE as usize {
            done.written += store.put_states(std::mem::take(&mut rows)).await?;
        }
        progress(done.entries, total.max(done.entries));
    }
    if let Some((s, at)) = current.take() {
        rows.push(row_of(&s, at));
        done.dossiers += 1;
    }
    if !rows.is_empty() {
        done.written += store.put_states(rows).await?;
    }
    progress(done.entries, total.max(done.entries));
    Ok(done)
}

/// The states that may count in `w`, each with whether `synced_to` accepted it.
pub async fn load(
    store: &dyn IndicatorStore,
    w: Window,
    synced_to: &str,
) -> Result<Vec<(DossierState, bool)>, IndicatorError> {
    store
        .states(w.end_ms, w.start_ms, synced_to)
        .await?
        .into_iter()
        .map(|s| {
            read_state(&s.row.code, &s.row.state)
                .map(|d| (d, s.synced))
                .map_err(|detail| IndicatorError::Corrupt {
                    code: s.row.code.clone(),
                    detail,
                })
        })
        .collect()
}

/// One key's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    pub key: String,
    #[serde(flatten)]
    pub indicators: Indicators,
}

/// The indicators of a period at a level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: String,
    pub level: Level,
    /// The instant the figures are as of (unix ms): the period's end, or now while it runs.
    pub as_of_ms: i64,
    pub rows: Vec<ReportRow>,
}

/// Compute a report from the stored states.
pub async fn report(
    store: &dyn IndicatorStore,
    rules: &Rules,
    period: &str,
    level: Level,
    now: i64,
    synced_to: &str,
) -> Result<Report, ReportError> {
    let p = Period::parse(period)?;
    let w = p.window(now);
    let states = load(store, w, synced_to).await?;
    let tallies = aggregate::aggregate(states.iter().map(|(d, s)| (d, *s)), level, w, rules);
    Ok(Report {
        period: period.trim().to_string(),
        level,
        as_of_ms: w.end_ms,
        rows: tallies
            .into_iter()
            .map(|(key, t)| ReportRow {
                key,
                indicators: t.indicators(),
            })
            .collect(),
    })
}

/// The longest series asked, in months.
pub const MAX_SERIES_MONTHS: u32 = 36;

/// Each key's figures month by month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub level: Level,
    /// `YYYY-MM`, oldest first; the last one is seen so far when it still runs.
    pub months: Vec<String>,
    pub as_of_ms: i64,
    pub rows: Vec<SeriesRow>,
}

/// One key's figures, one per month of [`Series::months`] (all N/A for a month without
/// dossiers of that key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    pub key: String,
    pub points: Vec<Indicators>,
}

/// The `months` months ending with `to` (`YYYY-MM`), oldest first; `None` unless `to` is a
/// month and `months` is from 1 to [`MAX_SERIES_MONTHS`].
pub fn months_to(to: &str, months: u32) -> Option<Vec<(String, Period)>> {
    let p = Period::parse(to).ok()?;
    if p.first.month() != p.last.month() || p.first.year() != p.last.year() {
        return None;
    }
    if !(1..=MAX_SERIES_MONTHS).contains(&months) {
        return None;
    }
    let mut out = Vec::new();
    let (mut y, mut m) = (p.first.year(), u8::from(p.first.month()));
    for _ in 0..months {
        let name = format!("{y:04}-{m:02}");
        out.push((name.clone(), Period::parse(&name).ok()?));
        if m == 1 {
            (y, m) = (y - 1, 12);
        } else {
            m -= 1;
        }
    }
    out.reverse();
    Some(out)
}

/// Why a series cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("`to` must be a month (YYYY-MM) and `months` from 1 to {MAX_SERIES_MONTHS}")]
    Range,
    #[error("{0}")]
    Indicators(#[from] IndicatorError),
}

/// The indicators of `level` for each of the `months` months ending with `to`, read from the
/// stored states once (each month is its own window over them).
pub async fn series(
    store: &dyn IndicatorStore,
    rules: &Rules,
    to: &str,
    months: u32,
    level: Level,
    now: i64,
    synced_to: &str,
) -> Result<Series, SeriesError> {
    let list = months_to(to, months).ok_or(SeriesError::Range)?;
    let windows: Vec<Window> = list.iter().map(|(_, p)| p.window(now)).collect();
    let span = Window {
        start_ms: windows.first().map_or(0, |w| w.start_ms),
        end_ms: windows.last().map_or(0, |w| w.end_ms),
    };
    let states = load(store, span, synced_to).await?;
    let mut by_key: std::collections::BTreeMap<String, Vec<Indicators>> = Default::default();
    let empty = aggregate::Tally::default().indicators();
    for (i, w) in windows.iter().enumerate() {
        let tallies = aggregate::aggregate(states.iter().map(|(d, s)| (d, *s)), level, *w, rules);
        for (key, t) in tallies {
            let points = by_key
                .entry(key)
                .or_insert_with(|| vec![empty.clone(); windows.len()]);
            points[i] = t.indicators();
        }
    }
    Ok(Series {
        level,
        months: list.into_iter().map(|(m, _)| m).collect(),
        as_of_ms: span.end_ms,
        rows: by_key
            .into_iter()
            .map(|(key, points)| SeriesRow { key, points })
            .collect(),
    })
}

/// The units with the lowest on-time rate (2.1) of a unit-level report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lowest {
    pub period: String,
    /// The smallest 2.1 denominator a unit needs to be ranked.
    pub min_dossiers: u64,
    /// Lowest first; ties by unit name.
    pub units: Vec<ReportRow>,
    /// Units with a 2.1 denominator, but under `min_dossiers`: not ranked (too few to judge).
    pub too_few: Vec<String>,
}

/// Rank a unit-level report by on-time rate, lowest first, `count` at most; units with fewer
/// than `min_dossiers` dossiers in 2.1's denominator are listed apart, never ranked (one late
/// dossier of two is not a commune's standing). Units with no denominator (N/A) are neither.
pub fn lowest(report: &Report, count: usize, min_dossiers: u64) -> Lowest {
    let mut ranked: Vec<&ReportRow> = Vec::new();
    let mut too_few = Vec::new();
    for row in &report.rows {
        let f = &row.indicators.on_time;
        if f.percent.is_none() {
            continue;
        }
        if f.den < min_dossiers {
            too_few.push(row.key.clone());
        } else {
            ranked.push(row);
        }
    }
    ranked.sort_by(|a, b| {
        let (pa, pb) = (
            a.indicators.on_time.percent.unwrap_or_default(),
            b.indicators.on_time.percent.unwrap_or_default(),
        );
        pa.total_cmp(&pb).then_with(|| a.key.cmp(&b.key))
    });
    Lowest {
        period: report.period.clone(),
        min_dossiers,
        units: ranked.into_iter().take(count).cloned().collect(),
        too_few,
    }
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Period(#[from] super::formulas::PeriodError),
    #[error("{0}")]
    Indicators(#[from] IndicatorError),
}

impl From<gw_store::StoreError> for ReportError {
    fn from(e: gw_store::StoreError) -> Self {
        ReportError::Indicators(e.into())
    }
}

/// Open dossiers due within `days` working days, per unit.
pub async fn at_risk(
    store: &dyn IndicatorStore,
    rules: &Rules,
    now: i64,
    days: u32,
) -> Result<std::collections::BTreeMap<String, Vec<AtRisk>>, IndicatorError> {
    let open = Window {
        start_ms: i64::MAX,
        end_ms: now,
    };
    let states = load(store, open, "").await?;
    Ok(aggregate::at_risk(
        states.iter().map(|(d, _)| d),
        now,
        days,
        rules,
    ))
}

/// A report as CSV: one line per key, percentages with 2 decimals, N/A for no denominator.
pub fn to_csv(r: &Report) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "N/A".to_string(), |x| format!("{x:.2}"));
    let mut out = String::from(
        "key,on_time_pct,on_time_points,on_time_num,on_time_den,unjudged,online_pct,\
         online_payment_pct,electronic_result_pct,digitised_pct,synced_pct,\
         avg_processing_days,processed\n",
    );
    for row in &r.rows {
        let i = &row.indicators;
        let key = if row.key.contains([',', '"', '\n']) {
            format!("\"{}\"", row.key.replace('"', "\"\""))
        } else {
            row.key.clone()
        };
        out.push_str(&format!(
            "{key},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            f(i.on_time.percent),
            f(i.on_time_points),
            i.on_time.num,
            i.on_time.den,
            i.unjudged,
            f(i.online.percent),
            f(i.online_payment.percent),
            f(i.electronic_result.percent),
            f(i.digitised.percent),
            f(i.synced.percent),
            f(i.avg_processing_days),
            i.processed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::aggregate::Tally;
    use crate::indicators::formulas::Ratio;

    fn row(key: &str, num: u64, den: u64) -> ReportRow {
        let t = Tally {
            on_time: Ratio { num, den },
            ..Default::default()
        };
        ReportRow {
            key: key.into(),
            indicators: t.indicators(),
        }
    }

    #[test]
    fn months_run_back_across_the_year() {
        let m = months_to("2026-02", 4).unwrap();
        let names: Vec<_> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert!(
            months_to("2026-Q1", 3).is_none(),
            "a quarter is not a month"
        );
        assert!(months_to("2026", 3).is_none());
        assert!(months_to("2026-02", 0).is_none());
        assert!(months_to("2026-02", MAX_SERIES_MONTHS + 1).is_none());
        assert_eq!(months_to("2026-02", 1).unwrap().len(), 1);
    }

    #[test]
    fn lowest_ranks_only_units_with_enough_dossiers() {
        let r = Report {
            period: "2026-11".into(),
            level: Level::Unit,
            as_of_ms: 0,
            rows: vec![
                row("xã A", 9, 10),  // 90 %
                row("xã B", 0, 2),   // 0 %, but two dossiers: not ranked
                row("xã C", 7, 10),  // 70 %
                row("xã D", 0, 0),   // N/A
                row("xã E", 11, 12), // 91.67 %
                row("xã F", 7, 10),  // 70 %, tie with C: by name
            ],
        };
        let l = lowest(&r, 3, 10);
        let keys: Vec<_> = l.units.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["xã C", "xã F", "xã A"]);
        assert_eq!(l.too_few, ["xã B"]);
        assert_eq!(l.min_dossiers, 10);
        // With no minimum, the commune with two late dossiers comes first.
        let l = lowest(&r, 1, 0);
        assert_eq!(l.units[0].key, "xã B");
        assert!(l.too_few.is_empty());
        // The minimum is inclusive: 12 dossiers with a minimum of 12 are ranked.
        let l = lowest(&r, 10, 12);
        let keys: Vec<_> = l.units.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["xã E"]);
        assert_eq!(l.too_few, ["xã A", "xã B", "xã C", "xã F"]);
    }
}
