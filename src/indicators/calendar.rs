//! Vietnamese working days: Monday to Friday, less the configured public holidays, counted
//! on calendar dates in Vietnam's time zone ([`crate::model::time::VIETNAM`], the one place
//! it is defined).
//!
//! # Invariants
//! - A date is a working day iff it is not a Saturday, not a Sunday and not in the holiday
//!   list. Holidays falling on a weekend change nothing (no compensation day is invented:
//!   a substitute day off is configured as a holiday like any other).
//! - [`Calendar::add_working_days`]`(d, n)` is the `n`-th working day after `d` (`d` itself
//!   is never counted); `n = 0` is `d`.
//! - [`Calendar::working_days_between`]`(a, b)` counts the working days in `(a, b]`: the
//!   working days that must pass after `a` to reach `b`; 0 when `b <= a`. So
//!   `working_days_between(d, add_working_days(d, n)) == n` for every `d` and `n`.
//! - Every loop is bounded by the distance between its dates (at most [`MAX_SPAN_DAYS`]).

use std::collections::BTreeSet;

use time::{Date, OffsetDateTime, Weekday};

use crate::model::time::VIETNAM;

/// The farthest two dates are ever walked apart (about 27 years): beyond it a date is bad data.
pub const MAX_SPAN_DAYS: i64 = 10_000;

/// Why a holiday list is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("holiday `{value}` is not a date of the form YYYY-MM-DD")]
    BadHoliday { value: String },
}

/// Weekends plus the configured public holidays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<Date>,
}

/// `YYYY-MM-DD` as a date.
pub fn parse_date(s: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &fmt).ok()
}

/// The calendar date in Vietnam of a unix-millisecond instant.
pub fn vn_date(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(VIETNAM)
        .date()
}

/// The first instant (unix ms) of a date in Vietnam.
pub fn day_start_ms(d: Date) -> i64 {
    let t = d.midnight().assume_offset(VIETNAM);
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The last instant (unix ms) of a date in Vietnam.
pub fn day_end_ms(d: Date) -> i64 {
    day_start_ms(d) + 86_400_000 - 1
}

impl Calendar {
    /// A calendar of weekends and these holidays (`YYYY-MM-DD`).
    pub fn new<S: AsRef<str>>(holidays: &[S]) -> Result<Self, CalendarError> {
        let mut set = BTreeSet::new();
        for h in holidays {
            let d = parse_date(h.as_ref()).ok_or_else(|| CalendarError::BadHoliday {
                value: h.as_ref().to_string(),
            })?;
            set.insert(d);
        }
        Ok(Calendar { holidays: set })
    }

    /// Whether `d` is a working day.
    pub fn is_working_day(&self, d: Date) -> bool {
        !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.holidays.contains(&d)
    }

    /// The `n`-th working day after `d` (`d` itself not counted); `d` when `n = 0`.
    pub fn add_working_days(&self, d: Date, n: u32) -> Date {
        let mut left = n;
        let mut cur = d;
        let mut walked = 0;
        while left > 0 && walked < MAX_SPAN_DAYS {
            let Some(next) = cur.next_day() else { break };
            cur = next;
            walked += 1;
            if self.is_working_day(cur) {
                left -= 1;
            }
        }
        cur
    }

    /// Working days in `(a, b]`; 0 when `b <= a`.
    pub fn working_days_between(&self, a: Date, b: Date) -> u32 {
        if b <= a {
            return 0;
        }
        let span = (b - a).whole_days().min(MAX_SPAN_DAYS);
        let mut n = 0;
        let mut cur = a;
        for _ in 0..span {
            let Some(next) = cur.next_day() else { break };
            cur = next;
            if self.is_working_day(cur) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn cal() -> Calendar {
        // National Day 2026: Wednesday 2 September and Thursday 3 September (configured).
        Calendar::new(&["2026-09-02", "2026-09-03"]).unwrap()
    }

    #[test]
    fn weekends_and_holidays_are_not_working_days() {
        let c = cal();
        assert!(c.is_working_day(date!(2026 - 09 - 01)), "a Tuesday");
        assert!(!c.is_working_day(date!(2026 - 09 - 02)), "a holiday");
        assert!(!c.is_working_day(date!(2026 - 09 - 05)), "a Saturday");
        assert!(!c.is_working_day(date!(2026 - 09 - 06)), "a Sunday");
        assert!(c.is_working_day(date!(2026 - 09 - 04)), "the Friday after");
    }

    #[test]
    fn adding_working_days_skips_weekends_and_holidays() {
        let c = cal();
        // Tuesday 1 Sep + 3 working days: Fri 4, Mon 7, Tue 8.
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 01), 3),
            date!(2026 - 09 - 08)
        );
        // Without the holidays it would be Friday 4.
        assert_eq!(
            Calendar::default().add_working_days(date!(2026 - 09 - 01), 3),
            date!(2026 - 09 - 04)
        );
        // From a Saturday, the first working day is Monday.
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 05), 1),
            date!(2026 - 09 - 07)
        );
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 05), 0),
            date!(2026 - 09 - 05)
        );
    }

    #[test]
    fn counting_working_days_between() {
        let c = cal();
        assert_eq!(
            c.working_days_between(date!(2026 - 09 - 01), date!(2026 - 09 - 08)),
            3
        );
        assert_eq!(
            c.working_days_between(date!(2026 - 09 - 08), date!(2026 - 09 - 01)),
            0
        );
        assert_eq!(
            c.working_days_between(date!(2026 - 09 - 04), date!(2026 - 09 - 06)),
            0,
            "Friday to Sunday: nothing to work"
        );
        for n in 0..40 {
            let d = date!(2026 - 08 - 28);
            assert_eq!(c.working_days_between(d, c.add_working_days(d, n)), n);
        }
    }

    #[test]
    fn a_bad_holiday_is_refused_by_name() {
        let e = Calendar::new(&["2026-02-30"]).unwrap_err();
        assert_eq!(
            e,
            CalendarError::BadHoliday {
                value: "2026-02-30".into()
            }
        );
        assert!(e.to_string().contains("YYYY-MM-DD"));
    }

    #[test]
    fn dates_are_vietnam_dates() {
        // 2026-11-30T17:30:00Z is 1 December 00:30 in Vietnam.
        let ms = 1_796_059_800_000;
        assert_eq!(vn_date(ms), date!(2026 - 12 - 01));
        assert_eq!(day_start_ms(date!(2026 - 12 - 01)), 1_796_058_000_000);
        assert_eq!(day_end_ms(date!(2026 - 11 - 30)), 1_796_058_000_000 - 1);
    }
}
