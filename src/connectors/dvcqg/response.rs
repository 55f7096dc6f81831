//! Reading the portal's answers: `error_code`, the items a refusal names, and what an answer
//! means for the delivery.
//!
//! # Invariants
//! - `error_code` 0 / "0" / "00" (number or string) is success; HTTP 200 with any other code is
//!   an error: retryable if configured so (or a session expiry), otherwise a refusal of the
//!   content. An answer that is not JSON, or JSON without `error_code`, is retryable.
//! - Nothing here sends or decides retries by itself: [`body_decision`] is the connector's
//!   reading of a 2xx body, handed to [`crate::model::outcome::classify`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::translate::TranslateError;
use crate::connectors::connector::Attempted;
use crate::model::outcome::{Answer, Decision, Health, Reason, TransportFailure};

/// An attempt that never reached the portal.
pub(super) fn failed(decision: Decision, detail: &str) -> Attempted {
    Attempted {
        answer: Answer::Transport {
            failure: TransportFailure::Request,
            detail: detail.to_string(),
        },
        decision,
        latency: Duration::ZERO,
        request_digest: String::new(),
        health: Health::Silent,
    }
}

/// A delivery refused before sending (translation): retrying cannot fix it.
pub(super) fn refused(e: TranslateError) -> Attempted {
    failed(
        Decision::Permanent {
            reason: Reason::ClientError,
        },
        &e.to_string(),
    )
}

/// A retry that needs the request built again (signing failed, a batcher stopped).
pub(super) fn request_build() -> Decision {
    Decision::Retry {
        reason: Reason::RequestBuild,
        not_before: None,
    }
}

/// A progress step (or status) for a dossier the portal does not know yet: it waits for the
/// dossier's snapshot (retried, not refused).
pub(super) fn awaiting_dossier() -> Decision {
    Decision::Retry {
        reason: Reason::AwaitingDossier,
        not_before: None,
    }
}

/// What an answer's `error_code` says.
pub(super) fn error_code(body: &Value) -> Option<String> {
    match body.get("error_code")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

pub(super) fn is_success(code: &str) -> bool {
    matches!(code, "0" | "00")
}

/// The connector's reading of a 2xx body (`None`: success). `retryable` are the codes
/// configured as transient, session expiries included.
pub(super) fn body_decision(
    parsed: Option<&Value>,
    code: Option<&str>,
    retryable: impl Fn(&str) -> bool,
) -> Option<Decision> {
    let again = Some(Decision::Retry {
        reason: Reason::BodyErrorRetryable,
        not_before: None,
    });
    match (parsed, code) {
        (None, _) | (Some(_), None) => again,
        (Some(_), Some(c)) if is_success(c) => None,
        (Some(_), Some(c)) if retryable(c) => again,
        (Some(_), Some(_)) => Some(Decision::Permanent {
            reason: Reason::BodyErrorPermanent,
        }),
    }
}

/// The items a refusal names: `data[i]` at the start of each of `result.errors` (or, when the
/// answer lists none, anywhere in `message`), by index below `n`, with what was said of them.
pub(super) fn named_items(body: Option<&Value>, n: usize) -> BTreeMap<usize, Vec<String>> {
    let mut named: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let Some(body) = body else { return named };
    let index_at = |s: &str| -> Option<usize> {
        let rest = s.strip_prefix("data[")?;
        let end = rest.find(']')?;
        rest[..end].parse().ok().filter(|i| *i < n)
    };
    if let Some(errors) = body.pointer("/result/errors").and_then(Value::as_array) {
        for e in errors.iter().filter_map(Value::as_str) {
            if let Some(i) = index_at(e.trim()) {
                named.entry(i).or_default().push(e.trim().to_string());
            }
        }
    }
    if named.is_empty() {
        if let Some(m) = body.get("message").and_then(Value::as_str) {
            for (at, _) in m.match_indices("data[") {
                let part = &m[at..];
                let until = part.find(';').unwrap_or(part.len());
                if let Some(i) = index_at(part) {
                    named.entry(i).or_default().push(part[..until].to_string());
                }
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_codes_and_named_items() {
        assert_eq!(
            error_code(&serde_json::json!({"error_code": 0})).as_deref(),
            Some("0")
        );
        assert_eq!(
            error_code(&serde_json::json!({"error_code": " 00 "})).as_deref(),
            Some("00")
        );
        assert!(is_success("00") && !is_success("-1"));
        let body =
            serde_json::json!({"result": {"errors": ["data[1].MaHoSo: bad", "data[9]: out"]}});
        let named = named_items(Some(&body), 3);
        assert_eq!(named.keys().copied().collect::<Vec<_>>(), vec![1]);
        let body = serde_json::json!({"message": "data[0]: a; data[2]: b"});
        assert_eq!(named_items(Some(&body), 3).len(), 2);
        let ok = serde_json::json!({});
        assert!(body_decision(Some(&ok), Some("0"), |_| false).is_none());
        assert!(matches!(
            body_decision(Some(&ok), Some("5"), |_| false),
            Some(Decision::Permanent { .. })
        ));
        assert!(matches!(
            body_decision(Some(&ok), Some("5"), |c| c == "5"),
            Some(Decision::Retry { .. })
        ));
    }
}
