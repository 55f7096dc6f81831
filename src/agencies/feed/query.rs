//! What an agency asks of its feed, read from the query string within the subscription's
//! bounds (invariants in [`super`]).

use std::time::Duration;

use crate::config::parse_duration;

/// Why an agency's query was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`{name}` is not a whole number of at least 0: `{value}`")]
    NotACursor { name: &'static str, value: String },
    #[error("`limit` must be a whole number from 1 (pages hold at most {max}): `{value}`")]
    Limit { value: String, max: u32 },
    #[error("`wait` {detail}")]
    Wait { detail: String },
    #[error("`since` must be an RFC 3339 time such as 2026-12-01T00:00:00Z: `{value}`")]
    Since { value: String },
    #[error("`since` asks for a cursor and cannot go with `after`, `limit` or `wait`")]
    SinceWithPage,
    #[error("unknown query parameter `{name}`: use after, limit, wait or since")]
    Unknown { name: String },
}

/// What an agency asks of its feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A page of entries after a cursor, waiting up to `wait` for one to arrive.
    Page {
        after: i64,
        limit: u32,
        wait: Duration,
    },
    /// The cursor from which everything since a time follows (`at_ms` unix ms, `text` as
    /// written).
    Since { at_ms: i64, text: String },
}

/// The bounds of one subscription's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The limit of a page asked without one, and the cap of any.
    pub max_limit: u32,
    /// The cap of `wait`.
    pub max_wait: Duration,
}

/// At most this much of a refused value is echoed back.
const ECHO: usize = 32;

fn echo(v: &str) -> String {
    v.chars().take(ECHO).collect()
}

/// Read an agency's query (`after=…&limit=…&wait=…`, or `since=…` alone), within `bounds`.
pub fn parse_query(pairs: &[(String, String)], bounds: Bounds) -> Result<Query, QueryError> {
    let (mut after, mut limit, mut wait, mut since) = (None, None, None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "after" => after = Some(v),
            "limit" => limit = Some(v),
            "wait" => wait = Some(v),
            "since" => since = Some(v),
            other => return Err(QueryError::Unknown { name: echo(other) }),
        }
    }
    if let Some(text) = since {
        if after.is_some() || limit.is_some() || wait.is_some() {
            return Err(QueryError::SinceWithPage);
        }
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| QueryError::Since { value: echo(text) })?;
        return Ok(Query::Since {
            at_ms: (t.unix_timestamp_nanos() / 1_000_000) as i64,
            text: text.clone(),
        });
    }
    let after = match after {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| QueryError::NotACursor {
                name: "after",
                value: echo(v),
            })?,
    };
    let limit = match limit {
        None => bounds.max_limit,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => n.min(bounds.max_limit),
            _ => {
                return Err(QueryError::Limit {
                    value: echo(v),
                    max: bounds.max_limit,
                })
            }
        },
    };
    let wait = match wait {
        None => Duration::ZERO,
        Some(v) if v == "0" => Duration::ZERO,
        Some(v) => parse_duration(v)
            .map_err(|e| QueryError::Wait {
                detail: e.to_string(),
            })?
            .min(bounds.max_wait),
    };
    Ok(Query::Page { after, limit, wait })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    const B: Bounds = Bounds {
        max_limit: 100,
        max_wait: Duration::from_secs(30),
    };

    #[test]
    fn queries_are_read_within_bounds_or_refused() {
        assert_eq!(
            parse_query(&pairs(""), B),
            Ok(Query::Page {
                after: 0,
                limit: 100,
                wait: Duration::ZERO
            })
        );
        assert_eq!(
            parse_query(&pairs("after=7&limit=5000&wait=5m"), B),
            Ok(Query::Page {
                after: 7,
                limit: 100,
                wait: Duration::from_secs(30)
            })
        );
        assert_eq!(
            parse_query(&pairs("after=7&limit=3&wait=250ms"), B),
            Ok(Query::Page {
                after: 7,
                limit: 3,
                wait: Duration::from_millis(250)
            })
        );
        assert_eq!(
            parse_query(&pairs("since=2026-12-01T07:00:00+07:00"), B),
            Ok(Query::Since {
                at_ms: 1_796_083_200_000,
                text: "2026-12-01T07:00:00+07:00".into()
            })
        );
        for (q, want) in [
            ("after=-1", "after"),
            ("after=x", "after"),
            ("after=99999999999999999999", "after"),
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("wait=forever", "wait"),
            ("since=yesterday", "since"),
            ("since=2026-12-01T00:00:00Z&after=3", "cannot go with"),
            ("cursor=3", "unknown query parameter `cursor`"),
        ] {
            let e = parse_query(&pairs(q), B).expect_err(q).to_string();
            assert!(e.contains(want), "{q}: {e}");
        }
    }
}
