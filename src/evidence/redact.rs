//! Credentials out of captured bodies, before anything is digested or kept.
//!
//! # Invariants
//! - The value of every credential field ([`FIELDS`], case-insensitive) in a JSON body
//!   (`"field": "value"`) or a form body (`field=value`) is replaced by [`MASK`] before the
//!   evidence log digests or keeps the body: the password of a portal login, an OAuth2
//!   `client_secret`, a session or access token in a request or an answer never reaches the
//!   evidence store or an export, not even as an unsalted digest of a body of known shape.
//! - Only those values change, byte for byte everything else stays: a body without credentials
//!   is digested exactly as it was sent. A redacted body's digest is the digest of the redacted
//!   bytes, which is what a bundle holds, so bundles still verify.
//! - Redaction is a byte scan, no parse: a body that is not valid JSON is still redacted.

use std::borrow::Cow;

/// Field names whose values are credentials.
pub const FIELDS: &[&str] = &[
    "password",
    "passwd",
    "sp_password",
    "client_secret",
    "secret",
    "secret_key",
    "session",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
];

/// What a credential value becomes.
pub const MASK: &str = "***";

fn is_field(name: &[u8]) -> bool {
    FIELDS
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
}

/// `body` with every credential value masked; borrowed when there is none.
pub fn redact(body: &[u8]) -> Cow<'_, [u8]> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let out = match first {
        Some(b'{') | Some(b'[') => redact_json(body),
        Some(_) if body.contains(&b'=') => redact_form(body),
        _ => None,
    };
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(body),
    }
}

/// The end (exclusive, after the closing quote) of the JSON string starting at `at` (a `"`).
fn string_end(b: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn redact_json(b: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(end) = string_end(b, i) else { break };
        let name = &b[i + 1..end - 1];
        let colon = skip_ws(b, end);
        if colon < b.len() && b[colon] == b':' && is_field(name) {
            let v = skip_ws(b, colon + 1);
            let v_end = match b.get(v) {
                // An unterminated string is masked to the end of the body.
                Some(b'"') => string_end(b, v).or(Some(b.len())),
                // A number or a literal: up to the next delimiter.
                Some(c) if !matches!(c, b'{' | b'[') => Some(
                    (v..b.len())
                        .find(|&k| matches!(b[k], b',' | b'}' | b']') || b[k].is_ascii_whitespace())
                        .unwrap_or(b.len()),
                ),
                _ => None,
            };
            if let Some(v_end) = v_end {
                let o = out.get_or_insert_with(|| Vec::with_capacity(b.len()));
                o.extend_from_slice(&b[copied..v]);
                o.extend_from_slice(b"\"");
                o.extend_from_slice(MASK.as_bytes());
                o.extend_from_slice(b"\"");
                copied = v_end;
                i = v_end;
                continue;
            }
        }
        i = end;
    }
    out.map(|mut o| {
        o.extend_from_slice(&b[copied..]);
        o
    })
}

/// A form field's name without what may precede it when the form is quoted or indented.
fn form_name(n: &[u8]) -> &[u8] {
    let start = n
        .iter()
        .position(|c| *c != b'"' && !c.is_ascii_whitespace())
        .unwrap_or(n.len());
    &n[start..]
}

fn redact_form(b: &[u8]) -> Option<Vec<u8>> {
    let mut changed = false;
    let parts: Vec<Vec<u8>> = b
        .split(|c| *c == b'&')
        .map(|pair| match pair.iter().position(|c| *c == b'=') {
            Some(eq) if is_field(form_name(&pair[..eq])) => {
                changed = true;
                // A form value never holds a raw quote, backslash or blank (they are
                // percent-encoded): stopping there keeps a form quoted inside a JSON string
                // valid JSON (found by fuzzing).
                let end = (eq + 1..pair.len())
                    .find(|&k| matches!(pair[k], b'"' | b'\\') || pair[k].is_ascii_whitespace())
                    .unwrap_or(pair.len());
                [&pair[..=eq], MASK.as_bytes(), &pair[end..]].concat()
            }
            _ => pair.to_vec(),
        })
        .collect();
    changed.then(|| parts.join(&b'&'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn masks_credentials_and_nothing_else() {
        assert_eq!(
            r(r#"{"service":"LayPhienLamViec","username":"u","password":"p\"w","x":1}"#),
            r#"{"service":"LayPhienLamViec","username":"u","password":"***","x":1}"#
        );
        assert_eq!(
            r(r#"{ "Session" : "abc", "data": [{"token": 42}] }"#),
            r#"{ "Session" : "***", "data": [{"token": "***"}] }"#
        );
        assert_eq!(
            r("grant_type=client_credentials&client_id=c&client_secret=s%3D1"),
            "grant_type=client_credentials&client_id=c&client_secret=***"
        );
        // A value that merely contains a field name is not a field.
        let plain = r#"{"service":"DongBoHoSoMC","note":"password: none","data":[]}"#;
        assert!(matches!(redact(plain.as_bytes()), Cow::Borrowed(_)));
        assert_eq!(r(plain), plain);
        assert!(matches!(redact(b"<xml/>"), Cow::Borrowed(_)));
        // Malformed JSON is still redacted, never panics.
        assert_eq!(r(r#"{"password":"open"#), r#"{"password":"***""#);
        assert_eq!(r(r#"{"password": tru"#), r#"{"password": "***""#);
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/edge_input.rs`): a form inside a JSON string was
    /// masked through its closing quote, so the body was no longer JSON; and a credential at
    /// the string's start was not recognised behind the quote.
    #[test]
    fn a_form_quoted_in_a_json_string_stays_json() {
        let body = br#""_ntgrant_ntials&client_secret=abce=xials&client_secret=abcer3,2[s""#;
        let out = redact(body).into_owned();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v.as_str().unwrap(),
            "_ntgrant_ntials&client_secret=***&client_secret=***"
        );
        let out = redact(br#""client_secret=abc""#).into_owned();
        assert_eq!(out, br#""client_secret=***""#);
        let out = redact(br#""token=a\"b""#).into_owned();
        serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        assert_eq!(redact(&out).as_ref(), out.as_slice());
    }

    proptest::proptest! {
        /// The fuzz target's properties (`fuzz/fuzz_targets/edge_input.rs`) on generated JSON
        /// objects mixing credential and ordinary fields with hostile strings: redaction is
        /// idempotent, keeps JSON valid, masks every credential string and nothing else.
        #[test]
        fn json_bodies_stay_json_and_lose_every_credential(
            fields in proptest::collection::vec(
                (proptest::sample::select(vec!["password", "Client_Secret", "token", "name", "note", "sessionX"]),
                 "[ -~\\u{0}-\\u{1f}\"\\\\é]{0,12}"),
                0..6,
            )
        ) {
            let mut o = serde_json::Map::new();
            for (k, v) in &fields {
                o.insert(k.to_string(), serde_json::Value::String(v.clone()));
            }
            let body = serde_json::to_vec(&serde_json::Value::Object(o.clone())).unwrap();
            let once = redact(&body).into_owned();
            let twice = redact(&once).into_owned();
            proptest::prop_assert_eq!(&twice, &once);
            let v: serde_json::Value = serde_json::from_slice(&once).unwrap();
            for (k, original) in &o {
                let now = &v[k.as_str()];
                if is_field(k.as_bytes()) {
                    proptest::prop_assert_eq!(now.as_str(), Some(MASK));
                } else {
                    proptest::prop_assert_eq!(now, original);
                }
            }
        }
    }
}
