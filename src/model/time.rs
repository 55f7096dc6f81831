//! The gateway's clock and its one time zone.
//!
//! # Invariants
//! - Instants inside the gateway are unix milliseconds in UTC ([`now_ms`]); a clock before 1970
//!   reads as 0, never a panic.
//! - Vietnam has one time zone, UTC+07:00, with no daylight saving: every party date without an
//!   offset is read at [`VIETNAM`], and dates written to Vietnamese parties are written at it.
//!   It is defined here and nowhere else.

use time::UtcOffset;

/// Hours of [`VIETNAM`] ahead of UTC.
pub const VIETNAM_OFFSET_HOURS: i8 = 7;

/// Vietnam's time zone (Indochina Time, UTC+07:00, no daylight saving).
pub const VIETNAM: UtcOffset = match UtcOffset::from_hms(VIETNAM_OFFSET_HOURS, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("+07:00 is a valid offset"),
};

/// Unix milliseconds now (UTC).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 UTC (`2026-12-06T01:00:00Z`); empty when out of range.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnam_is_utc_plus_seven() {
        assert_eq!(VIETNAM.whole_seconds(), 7 * 3600);
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(1_796_083_200_000), "2026-12-01T00:00:00Z");
    }
}
