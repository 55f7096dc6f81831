//! Durations written as `250ms`, `5s`, `2m`, `1h` or `7d`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// No whole number before the unit (or none at all).
    #[error(
        "`{text}` is not a duration: write a whole number and a unit, like 500ms, 5s, 2m, 1h, 7d"
    )]
    NotANumber { text: String },
    /// A number followed by something other than ms, s, m, h or d.
    #[error("`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d, like 500ms or 5s")]
    UnknownUnit { text: String, unit: String },
}

/// A duration written as `250ms`, `5s`, `2m`, `1h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parse `250ms`, `5s`, `2m`, `1h`, `7d` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber { text: s.into() })?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: s.into(),
                unit: unit.into(),
            })
        }
    };
    Ok(Duration::from_millis(ms))
}
