//! Vendor date formats and the canonical date form.
//!
//! # Invariants
//! - A canonical date is RFC 3339 with an explicit offset, always expressed at the Vietnam
//!   offset: `2026-11-24T08:30:00+07:00` (fractional seconds only when not zero). Every
//!   canonical date compares and sorts as text for one instant.
//! - A vendor date without an offset is Vietnam time (+07:00, [`crate::model::time::VIETNAM`]).
//! - Calendar dates are checked: `31/02/2026` and `24/13/2026` are errors, not a silent roll.
//! - Numbers are fixed width: `dd` takes exactly two digits, `yyyy` four.
//!
//! # Format
//! A format is one of `rfc3339`, `epoch_millis`, `epoch_seconds`, or a pattern of
//! `yyyy` `MM` `dd` `HH` `mm` `ss` `SSS` (milliseconds), `XXX` (offset `+07:00`, `Z` accepted
//! on input) and `Z` (on input `Z`, `+07:00` or `+0700`; on output `Z`, the instant written in
//! UTC); any other character, or text in single quotes (`'T'`), is literal. Examples:
//! `dd/MM/yyyy HH:mm:ss`, `yyyy-MM-ddTHH:mm:ssZ`, `yyyyMMddHHmmss`.

use serde_json::Value;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::model::time::VIETNAM;

/// Why a date format could not be compiled, or a value could not be read by one. A read
/// error says what is wrong without repeating the value (it may be personal).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateError {
    /// Compiling: a `'` literal is not closed.
    #[error("`{format}`: a quote is not closed")]
    UnclosedQuote { format: String },
    /// Compiling: a run of field letters that is no field (`M`, `yy`).
    #[error("`{format}`: `{field}` is not a field: use yyyy, MM, dd, HH, mm, ss, SSS, XXX or Z")]
    UnknownField { format: String, field: String },
    /// Compiling: a pattern without year, month or day.
    #[error("`{format}` has no yyyy, MM or dd: a date needs all three")]
    NoDate { format: String },
    /// Reading an epoch format: the value is no whole number.
    #[error("expected a whole number ({format})")]
    NotWholeNumber { format: String },
    /// Reading an epoch format: outside what can be represented.
    #[error("is out of the supported date range")]
    OutOfRange,
    /// Reading a text format: the value is no string. `expected` names the format.
    #[error("expected a string ({expected})")]
    NotText { expected: String },
    /// Reading `rfc3339`: the text does not parse.
    #[error("does not match date format rfc3339 (with an offset)")]
    NotRfc3339,
    /// Reading a pattern: the text does not match it.
    #[error("does not match date format {format}{why}")]
    Mismatch { format: String, why: Mismatch },
    /// Reading a canonical date ([`parse_canonical`]).
    #[error("is not an RFC 3339 date with an offset")]
    NotCanonical,
}

/// How a text failed a date pattern; displayed as a suffix of [`DateError::Mismatch`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    /// A digit, sign or literal is not where the pattern has it.
    #[error("")]
    Shape,
    #[error(" (offset out of range)")]
    OffsetOutOfRange,
    #[error(" (text left over)")]
    TextLeftOver,
    #[error(" (no month {0})")]
    NoMonth(u8),
    #[error(" (not a real date: day {day} of month {month} of {year})")]
    NotRealDate { day: u8, month: u8, year: i32 },
    #[error(" (not a real time: {hour:02}:{minute:02}:{second:02})")]
    NotRealTime { hour: u8, minute: u8, second: u8 },
}

/// One element of a compiled date pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
    /// `XXX`: written `+07:00`.
    OffsetColon,
    /// `Z`: written as UTC `Z`.
    OffsetZulu,
    Lit(char),
}

/// A compiled date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    Rfc3339,
    EpochMillis,
    EpochSeconds,
    Pattern { text: String, toks: Vec<Tok> },
}

impl DateFormat {
    /// Compile a format text (see the module doc).
    pub fn parse(text: &str) -> Result<DateFormat, DateError> {
        match text {
            "rfc3339" => return Ok(DateFormat::Rfc3339),
            "epoch_millis" => return Ok(DateFormat::EpochMillis),
            "epoch_seconds" => return Ok(DateFormat::EpochSeconds),
            _ => {}
        }
        let mut toks = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let run = |i: usize, c: char| chars[i..].iter().take_while(|&&x| x == c).count();
        while i < chars.len() {
            let c = chars[i];
            let n = run(i, c);
            let (tok, used) = match (c, n) {
                ('y', 4) => (Tok::Year, 4),
                ('M', 2) => (Tok::Month, 2),
                ('d', 2) => (Tok::Day, 2),
                ('H', 2) => (Tok::Hour, 2),
                ('m', 2) => (Tok::Minute, 2),
                ('s', 2) => (Tok::Second, 2),
                ('S', 3) => (Tok::Millis, 3),
                ('X', 3) => (Tok::OffsetColon, 3),
                ('Z', 1) => (Tok::OffsetZulu, 1),
                ('\'', _) => {
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&x| x == '\'')
                        .ok_or_else(|| DateError::UnclosedQuote {
                            format: text.to_string(),
                        })?;
                    for &l in &chars[i + 1..i + 1 + end] {
                        toks.push(Tok::Lit(l));
                    }
                    i += end + 2;
                    continue;
                }
                ('y' | 'M' | 'd' | 'H' | 'm' | 's' | 'S' | 'X' | 'Z', _) => {
                    return Err(DateError::UnknownField {
                        format: text.to_string(),
                        field: c.to_string().repeat(n),
                    })
                }
                _ => (Tok::Lit(c), 1),
            };
            toks.push(tok);
            i += used;
        }
        for need in [Tok::Year, Tok::Month, Tok::Day] {
            if !toks.contains(&need) {
                return Err(DateError::NoDate {
                    format: text.to_string(),
                });
            }
        }
        Ok(DateFormat::Pattern {
            text: text.to_string(),
            toks,
        })
    }

    /// What to call this format in messages.
    pub fn describe(&self) -> &str {
        match self {
            DateFormat::Rfc3339 => "rfc3339",
            DateFormat::EpochMillis => "epoch_millis",
            DateFormat::EpochSeconds => "epoch_seconds",
            DateFormat::Pattern { text, .. } => text,
        }
    }

    /// Read a vendor value. The error says what is wrong without repeating the value.
    pub fn read(&self, v: &Value) -> Result<OffsetDateTime, DateError> {
        match self {
            DateFormat::EpochMillis | DateFormat::EpochSeconds => {
                let n = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| DateError::NotWholeNumber {
                        format: self.describe().to_string(),
                    })?;
                let nanos = if *self == DateFormat::EpochMillis {
                    i128::from(n) * 1_000_000
                } else {
                    i128::from(n) * 1_000_000_000
                };
                OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| DateError::OutOfRange)
            }
            DateFormat::Rfc3339 => {
                let s = v.as_str().ok_or_else(|| DateError::NotText {
                    expected: "rfc3339".into(),
                })?;
                OffsetDateTime::parse(s, &Rfc3339).map_err(|_| DateError::NotRfc3339)
            }
            DateFormat::Pattern { text, toks } => {
                let s = v.as_str().ok_or_else(|| DateError::NotText {
                    expected: format!("date format {text}"),
                })?;
                parse_pattern(s, toks).map_err(|why| DateError::Mismatch {
                    format: text.clone(),
                    why,
                })
            }
        }
    }

    /// Write an instant the vendor's way, at the Vietnam offset (`Z` writes UTC).
    pub fn write(&self, t: OffsetDateTime) -> Value {
        let t = t.to_offset(VIETNAM);
        match self {
            DateFormat::EpochMillis => Value::from((t.unix_timestamp_nanos() / 1_000_000) as i64),
            DateFormat::EpochSeconds => Value::from(t.unix_timestamp()),
            DateFormat::Rfc3339 => Value::from(canonical(t)),
            DateFormat::Pattern { toks, .. } => {
                let zulu = toks.contains(&Tok::OffsetZulu);
                let t = if zulu { t.to_offset(UtcOffset::UTC) } else { t };
                let mut s = String::new();
                for tok in toks {
                    match tok {
                        Tok::Year => s.push_str(&format!("{:04}", t.year())),
                        Tok::Month => s.push_str(&format!("{:02}", u8::from(t.month()))),
                        Tok::Day => s.push_str(&format!("{:02}", t.day())),
                        Tok::Hour => s.push_str(&format!("{:02}", t.hour())),
                        Tok::Minute => s.push_str(&format!("{:02}", t.minute())),
                        Tok::Second => s.push_str(&format!("{:02}", t.second())),
                        Tok::Millis => s.push_str(&format!("{:03}", t.millisecond())),
                        Tok::OffsetColon => s.push_str(&offset_text(t.offset())),
                        Tok::OffsetZulu => s.push('Z'),
                        Tok::Lit(c) => s.push(*c),
                    }
                }
                Value::from(s)
            }
        }
    }
}

fn offset_text(o: UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    let sign = if h < 0 || m < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.abs(), m.abs())
}

fn parse_pattern(s: &str, toks: &[Tok]) -> Result<OffsetDateTime, Mismatch> {
    let b = s.as_bytes();
    let mut i = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut se, mut ms) =
        (0i32, 0u8, 0u8, 0u8, 0u8, 0u8, 0u16);
    let mut offset: Option<UtcOffset> = None;
    let num = |i: &mut usize, w: usize| -> Result<u32, Mismatch> {
        let part = b.get(*i..*i + w).ok_or(Mismatch::Shape)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(Mismatch::Shape);
        }
        *i += w;
        Ok(part.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
    };
    for tok in toks {
        match tok {
            Tok::Year => y = num(&mut i, 4)? as i32,
            Tok::Month => mo = num(&mut i, 2)? as u8,
            Tok::Day => d = num(&mut i, 2)? as u8,
            Tok::Hour => h = num(&mut i, 2)? as u8,
            Tok::Minute => mi = num(&mut i, 2)? as u8,
            Tok::Second => se = num(&mut i, 2)? as u8,
            Tok::Millis => ms = num(&mut i, 3)? as u16,
            Tok::OffsetColon | Tok::OffsetZulu => {
                if b.get(i) == Some(&b'Z') {
                    i += 1;
                    offset = Some(UtcOffset::UTC);
                } else {
                    let sign: i8 = match b.get(i) {
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => return Err(Mismatch::Shape),
                    };
                    i += 1;
                    let oh = num(&mut i, 2)? as i8;
                    if b.get(i) == Some(&b':') {
                        i += 1;
                    }
                    let om = num(&mut i, 2)? as i8;
                    offset = Some(
                        UtcOffset::from_hms(sign * oh, sign * om, 0)
                            .map_err(|_| Mismatch::OffsetOutOfRange)?,
                    );
                }
            }
            Tok::Lit(c) => {
                let mut buf = [0u8; 4];
                let lit = c.encode_utf8(&mut buf).as_bytes();
                if b.get(i..i + lit.len()) != Some(lit) {
                    return Err(Mismatch::Shape);
                }
                i += lit.len();
            }
        }
    }
    if i != b.len() {
        return Err(Mismatch::TextLeftOver);
    }
    let month = Month::try_from(mo).map_err(|_| Mismatch::NoMonth(mo))?;
    let date = Date::from_calendar_date(y, month, d).map_err(|_| Mismatch::NotRealDate {
        day: d,
        month: mo,
        year: y,
    })?;
    let time = Time::from_hms_milli(h, mi, se, ms).map_err(|_| Mismatch::NotRealTime {
        hour: h,
        minute: mi,
        second: se,
    })?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset.unwrap_or(VIETNAM)))
}

/// The canonical text of an instant: RFC 3339 at +07:00.
pub fn canonical(t: OffsetDateTime) -> String {
    let t = t.to_offset(VIETNAM);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        s.push_str(&format!(".{:03}", t.millisecond()));
    }
    s.push_str(&offset_text(t.offset()));
    s
}

/// Read a canonical date (RFC 3339 with an offset).
pub fn parse_canonical(s: &str) -> Result<OffsetDateTime, DateError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| DateError::NotCanonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(fmt: &str, v: Value) -> Result<String, DateError> {
        DateFormat::parse(fmt).unwrap().read(&v).map(canonical)
    }

    #[test]
    fn vendor_forms_become_canonical_at_plus_seven() {
        let c = conv("dd/MM/yyyy HH:mm:ss", json!("24/11/2026 08:30:00"));
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00+07:00");
        let c = conv("yyyy-MM-ddTHH:mm:ssZ", json!("2026-11-24T01:30:00Z"));
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00+07:00");
        let c = conv("yyyy-MM-ddTHH:mm:ssZ", json!("2026-11-24T08:30:00+07:00"));
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00+07:00");
        let c = conv("yyyyMMddHHmmss", json!("20261124083000"));
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00+07:00");
        let c = conv("epoch_millis", json!(1_795_483_800_000i64));
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00+07:00");
        let c = conv(
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            json!("2026-11-24T09:30:00.250+08:00"),
        );
        assert_eq!(c.unwrap(), "2026-11-24T08:30:00.250+07:00");
    }

    #[test]
    fn invalid_dates_are_errors() {
        let e = conv("dd/MM/yyyy", json!("31/02/2026")).unwrap_err();
        assert!(matches!(
            e,
            DateError::Mismatch {
                why: Mismatch::NotRealDate { .. },
                ..
            }
        ));
        assert!(e.to_string().contains("not a real date"), "{e}");
        assert!(conv("dd/MM/yyyy", json!("29/02/2026")).is_err());
        assert!(conv("dd/MM/yyyy", json!("29/02/2028")).is_ok());
        assert!(conv("dd/MM/yyyy", json!("01/13/2026")).is_err());
        assert!(conv("dd/MM/yyyy HH:mm:ss", json!("24/11/2026 24:00:00")).is_err());
        assert!(conv("dd/MM/yyyy HH:mm:ss", json!("2026-11-24T08:30:00")).is_err());
        assert!(conv("dd/MM/yyyy HH:mm:ss", json!("24/11/2026 8:30:00")).is_err());
        assert!(conv("dd/MM/yyyy", json!("24/11/2026x")).is_err());
        assert!(conv("dd/MM/yyyy", json!(20261124)).is_err());
        assert!(DateFormat::parse("dd/M/yyyy").is_err());
        assert!(DateFormat::parse("HH:mm").is_err());
    }

    #[test]
    fn writes_back_the_vendor_way() {
        let t = parse_canonical("2026-11-24T08:30:00+07:00").unwrap();
        let w = |f: &str| DateFormat::parse(f).unwrap().write(t);
        assert_eq!(w("dd/MM/yyyy HH:mm:ss"), json!("24/11/2026 08:30:00"));
        assert_eq!(w("yyyy-MM-ddTHH:mm:ssZ"), json!("2026-11-24T01:30:00Z"));
        assert_eq!(
            w("yyyy-MM-ddTHH:mm:ssXXX"),
            json!("2026-11-24T08:30:00+07:00")
        );
        assert_eq!(w("yyyyMMddHHmmss"), json!("20261124083000"));
        assert_eq!(w("epoch_millis"), json!(1_795_483_800_000i64));
        // A UTC instant is written at +07:00 in canonical form.
        let u = parse_canonical("2026-11-23T20:00:00Z").unwrap();
        assert_eq!(canonical(u), "2026-11-24T03:00:00+07:00");
    }
}
