//! `[signatures]`: how the remote-signing flow (`crate::signatures`) handles formats and
//! documents: the time-stamp authority of PAdES B-T / CAdES-T requests (`[signatures.tsa]`)
//! and the servers a document may be fetched from by reference (`[signatures.documents]`).
//!
//! # Invariants
//! - Absent sections switch the feature off, and the edge refuses requests that need it
//!   (`level = "B-T"` without `[signatures.tsa]`, a `document.url` without an allow-list).
//! - An allowed base is an absolute `https://` (or, for tests and local servers, `http://`)
//!   URL ending in `/`; a document URL is allowed only when it starts with one of them, so a
//!   base never matches a sibling host or path (`https://a.vn/x/` does not admit
//!   `https://a.vn/xy`).
//! - The appearance font must exist here; that it is TrueType with every Vietnamese letter is
//!   checked when it is loaded (`crate::signatures::load_font`, at start).
//! - Retry counts and delays are checked here (at least one attempt; a non-zero first delay
//!   not above the largest).

use std::path::PathBuf;

use serde::Deserialize;

use super::duration::Dur;

/// `[signatures]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SignaturesSection {
    /// The RFC 3161 authority that time-stamps signature values (B-T). Absent = B-T refused.
    #[serde(default)]
    pub tsa: Option<SignatureTsaSection>,
    /// Documents by reference. Absent = only inline documents are accepted.
    #[serde(default)]
    pub documents: Option<DocumentsSection>,
    /// Visible signatures. Absent = requests with `visible` are refused.
    #[serde(default)]
    pub appearance: Option<AppearanceSection>,
}

/// `[signatures.appearance]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AppearanceSection {
    /// required: a TrueType font file (`.ttf`, glyf outlines) with every Vietnamese letter,
    /// e.g. `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf` (Debian `fonts-dejavu-core`).
    /// Only the glyphs an appearance uses are embedded.
    pub font: PathBuf,
}

/// `[signatures.tsa]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SignatureTsaSection {
    /// required: the authority's URL (`application/timestamp-query` is POSTed to it).
    pub url: String,
    /// required: PEM trust anchors of the authority's certificate (relative to the config file).
    pub ca_file: PathBuf,
    /// PEM intermediates, if the token does not carry them.
    #[serde(default)]
    pub intermediates_file: Option<PathBuf>,
    /// Request timeout. Default `10s`.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// Attempts before the request fails with `timestamp_failed`. Default 6.
    #[serde(default = "d_attempts")]
    pub attempts: u32,
    /// Delay before the second attempt, doubled after each. Default `2s`.
    #[serde(default = "d_retry_initial")]
    pub retry_initial: Dur,
    /// Largest delay between attempts. Default `5m`.
    #[serde(default = "d_retry_max")]
    pub retry_max_delay: Dur,
}

/// `[signatures.documents]`.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentsSection {
    /// required: the base URLs documents may be fetched from, each ending in `/`.
    pub allow: Vec<String>,
    /// The largest document fetched; a larger one fails the request (`document_too_large`).
    /// Default: `inbound.max_body_bytes`.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Whole fetch timeout. Default `30s`.
    #[serde(default = "d_fetch_timeout")]
    pub timeout: Dur,
    /// PEM CA certificates of the document servers (besides the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Attempts before the request fails with `document_fetch_failed`. Default 5.
    #[serde(default = "d_attempts_fetch")]
    pub attempts: u32,
    /// Delay before the second attempt, doubled after each. Default `2s`.
    #[serde(default = "d_retry_initial")]
    pub retry_initial: Dur,
    /// Largest delay between attempts. Default `5m`.
    #[serde(default = "d_retry_max")]
    pub retry_max_delay: Dur,
}

fn d_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn d_fetch_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn d_attempts() -> u32 {
    6
}
fn d_attempts_fetch() -> u32 {
    5
}
fn d_retry_initial() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}
fn d_retry_max() -> Dur {
    Dur(std::time::Duration::from_secs(5 * 60))
}

impl DocumentsSection {
    /// Whether `url` is under one of the allowed bases (see the invariants).
    pub fn allows(&self, url: &str) -> bool {
        self.allow.iter().any(|b| url.starts_with(b.as_str()))
            && !url.contains("/../")
            && !url.contains('\\')
    }
}

/// The retry delay before attempt `attempt + 1` (1-based `attempt` just failed): `initial`
/// doubled per failed attempt, at most `max`.
pub fn retry_delay(initial: Dur, max: Dur, attempt: u32) -> std::time::Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(20);
    initial.0.saturating_mul(factor).min(max.0)
}

fn validate_retry(
    at: &str,
    attempts: u32,
    initial: Dur,
    max: Dur,
    p: &mut impl FnMut(String, String, &str),
) {
    if attempts == 0 {
        p(
            format!("{at}.attempts"),
            "0 attempts".into(),
            "give at least 1",
        );
    }
    if initial.0.is_zero() || initial.0 > max.0 {
        p(
            format!("{at}.retry_initial"),
            "zero, or above retry_max_delay".into(),
            "give a first delay such as \"2s\", not above retry_max_delay",
        );
    }
}

/// Check `[signatures]`; `base` is the configuration's folder (for the TSA's files).
pub(super) fn validate(
    s: &SignaturesSection,
    base: &std::path::Path,
    p: &mut impl FnMut(String, String, &str),
) {
    if let Some(t) = &s.tsa {
        if !(t.url.starts_with("https://") || t.url.starts_with("http://")) {
            p(
                "signatures.tsa.url".into(),
                format!("`{}` is not an http(s) URL", t.url),
                "give the authority's URL, e.g. \"https://tsa.example.vn/tsa\"",
            );
        }
        for (key, f) in [
            ("ca_file", Some(&t.ca_file)),
            ("intermediates_file", t.intermediates_file.as_ref()),
        ] {
            if let Some(f) = f {
                if !base.join(f).is_file() {
                    p(
                        format!("signatures.tsa.{key}"),
                        format!("{} is not a readable file", f.display()),
                        "give the PEM file of the authority's CA certificates",
                    );
                }
            }
        }
        if t.timeout.0.is_zero() {
            p(
                "signatures.tsa.timeout".into(),
                "zero".into(),
                "give a timeout such as \"10s\"",
            );
        }
        validate_retry(
            "signatures.tsa",
            t.attempts,
            t.retry_initial,
            t.retry_max_delay,
            p,
        );
    }
    if let Some(a) = &s.appearance {
        if !base.join(&a.font).is_file() {
            p(
                "signatures.appearance.font".into(),
                format!("{} is not a readable file", a.font.display()),
                "give a TrueType font with Vietnamese letters, e.g. /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            );
        }
    }
    if let Some(d) = &s.documents {
        if d.allow.is_empty() {
            p(
                "signatures.documents.allow".into(),
                "empty".into(),
                "list the base URLs documents may be fetched from, or remove the section",
            );
        }
        for (i, b) in d.allow.iter().enumerate() {
            let scheme_ok = b.starts_with("https://") || b.starts_with("http://");
            let host = b.split_once("://").map(|(_, r)| r).unwrap_or("");
            if !scheme_ok || !b.ends_with('/') || host.len() < 2 || host.starts_with('/') {
                p(
                    format!("signatures.documents.allow[{i}]"),
                    format!("`{b}` is not an http(s) base URL ending in `/`"),
                    "write it as \"https://docs.example.vn/files/\"",
                );
            }
        }
        if d.max_bytes == Some(0) {
            p(
                "signatures.documents.max_bytes".into(),
                "zero".into(),
                "give a size in bytes, or remove it for inbound.max_body_bytes",
            );
        }
        if d.timeout.0.is_zero() {
            p(
                "signatures.documents.timeout".into(),
                "zero".into(),
                "give a timeout such as \"30s\"",
            );
        }
        if let Some(f) = &d.ca_file {
            if !base.join(f).is_file() {
                p(
                    "signatures.documents.ca_file".into(),
                    format!("{} is not a readable file", f.display()),
                    "give the PEM file of the document servers' CA certificates",
                );
            }
        }
        validate_retry(
            "signatures.documents",
            d.attempts,
            d.retry_initial,
            d.retry_max_delay,
            p,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(allow: &[&str]) -> DocumentsSection {
        toml::from_str(&format!(
            "allow = [{}]",
            allow
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .unwrap()
    }

    #[test]
    fn a_base_admits_only_what_is_under_it() {
        let d = docs(&["https://docs.example.vn/files/"]);
        assert!(d.allows("https://docs.example.vn/files/a.pdf"));
        assert!(!d.allows("https://docs.example.vn/filesx/a.pdf"));
        assert!(!d.allows("https://docs.example.vn.evil/files/a.pdf"));
        assert!(!d.allows("https://docs.example.vn/files/../secret"));
        assert!(!d.allows("http://docs.example.vn/files/a.pdf"));
    }

    #[test]
    fn bad_sections_are_named() {
        let mut problems = Vec::new();
        let s: SignaturesSection = toml::from_str(
            "[tsa]\nurl = \"ftp://x\"\nca_file = \"nope.pem\"\nattempts = 0\n[documents]\nallow = [\"https://x.vn\"]\nmax_bytes = 0\n",
        )
        .unwrap();
        validate(&s, std::path::Path::new("/nonexistent"), &mut |k, _, _| {
            problems.push(k)
        });
        for k in [
            "signatures.tsa.url",
            "signatures.tsa.ca_file",
            "signatures.tsa.attempts",
            "signatures.documents.allow[0]",
            "signatures.documents.max_bytes",
        ] {
            assert!(problems.iter().any(|p| p == k), "{k} in {problems:?}");
        }
        let mut none = Vec::new();
        validate(
            &SignaturesSection::default(),
            std::path::Path::new("."),
            &mut |k, _, _| none.push(k),
        );
        assert!(none.is_empty());
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let s = |n| Dur(std::time::Duration::from_secs(n));
        assert_eq!(retry_delay(s(2), s(300), 1).as_secs(), 2);
        assert_eq!(retry_delay(s(2), s(300), 2).as_secs(), 4);
        assert_eq!(retry_delay(s(2), s(300), 4).as_secs(), 16);
        assert_eq!(retry_delay(s(2), s(300), 30).as_secs(), 300);
    }
}
