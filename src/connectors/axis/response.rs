//! Reading the axis's answers: `{"status": "OK", …}` or `{"status": "FAIL", "errorCode",
//! "errorDesc"}` ([seen]: `status` and `errorDesc`; `errorCode` [open]), a list of received
//! items, an edXML file.
//!
//! # Invariants
//! - An answer that is neither `OK` nor `FAIL` JSON is malformed: never read as success.
//! - A `FAIL` is retried only when its `errorCode` is one the configuration lists.

use serde_json::{Map, Value};

use crate::model::outcome::{BodyVerdict, Decision, Reason};

/// What one JSON answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok(Map<String, Value>),
    Fail { code: String, desc: String },
    Malformed(String),
}

/// Read a JSON answer.
pub fn reply(body: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Reply::Malformed(format!("not JSON: {e}")),
    };
    let Value::Object(m) = v else {
        return Reply::Malformed("not a JSON object".into());
    };
    match m.get("status").and_then(Value::as_str) {
        Some("OK") => Reply::Ok(m),
        Some(_) | None if m.contains_key("errorDesc") || m.contains_key("errorCode") => {
            Reply::Fail {
                code: text(&m, "errorCode"),
                desc: text(&m, "errorDesc"),
            }
        }
        Some(other) => Reply::Malformed(format!("status {other:?}")),
        None => Reply::Malformed("no status".into()),
    }
}

fn text(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The connector's reading of a 2xx body for [`crate::model::outcome::classify`].
pub fn verdict(body: &[u8], retryable: &[String]) -> BodyVerdict {
    match reply(body) {
        Reply::Ok(_) => None,
        Reply::Fail { code, .. } if retryable.contains(&code) => Some(Decision::Retry {
            reason: Reason::BodyErrorRetryable,
            not_before: None,
        }),
        Reply::Fail { .. } | Reply::Malformed(_) => Some(Decision::Permanent {
            reason: Reason::BodyErrorPermanent,
        }),
    }
}

/// Whether a `getEdoc` answer is the file (XML) rather than a JSON refusal.
pub fn is_xml(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_fail_and_malformed_answers() {
        assert!(
            matches!(reply(br#"{"status":"OK","docID":"d1"}"#), Reply::Ok(m) if m["docID"] == "d1")
        );
        assert_eq!(
            reply(br#"{"status":"FAIL","errorCode":"UNSIGNED","errorDesc":"no signature"}"#),
            Reply::Fail {
                code: "UNSIGNED".into(),
                desc: "no signature".into()
            }
        );
        assert!(matches!(reply(b"<html/>"), Reply::Malformed(_)));
        assert!(matches!(
            reply(br#"{"status":"MAYBE"}"#),
            Reply::Malformed(_)
        ));
        let retry = vec!["BUSY".to_string()];
        assert_eq!(verdict(br#"{"status":"OK"}"#, &retry), None);
        assert!(matches!(
            verdict(br#"{"status":"FAIL","errorCode":"BUSY"}"#, &retry),
            Some(Decision::Retry { .. })
        ));
        assert!(matches!(
            verdict(br#"{"status":"FAIL","errorCode":"UNSIGNED"}"#, &retry),
            Some(Decision::Permanent { .. })
        ));
        assert!(is_xml(b"\n <?xml version=\"1.0\"?><a/>"));
        assert!(!is_xml(br#"{"status":"FAIL"}"#));
    }
}
