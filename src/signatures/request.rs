//! The `signature.requested` payload as a source sends it, its checks, and the request id.
//!
//! # Invariants
//! - The payload's shape is strict: unknown fields are refused (a typo never drops a deadline).
//! - The request id is a pure function of the source and the event's key ([`request_id`]).
//! - Every refusal is one [`AcceptError`] variant with a stable code ([`AcceptError::code`])
//!   and a [`Refusal`] class the edge turns into an HTTP status; messages name the field and
//!   never quote an official's user id (personal data).

use serde::Deserialize;
use sha2::Digest;

/// The payload of a `signature.requested` event.
///
/// ```json
/// {"signer": "smartca", "official": "official-rsa", "format": "pdf",
///  "document": "<base64 of the bytes to sign>", "digest": "sha256",
///  "reason": "Ký kết quả hồ sơ", "deadline_ms": 1765000000000,
///  "dossier_code": "000.00.01.H22-261206-0001", "level": "B-T"}
/// ```
///
/// `document` may instead be a reference the gateway fetches:
/// `{"url": "https://docs.example.vn/files/kq-0001.pdf", "sha256": "<64 hex digits>"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequestBody {
    /// required: the `[signers.NAME]` the official signs through.
    pub signer: String,
    /// required: the official's user id at that service (`[[signers.NAME.officials]]`).
    pub official: String,
    /// required: `cms` (detached CMS), `xml` (enveloped XML-DSig) or `pdf` (PAdES B-B).
    pub format: String,
    /// required: the document's bytes (standard base64), or a [`DocumentReference`].
    pub document: DocumentField,
    /// The digest algorithm (`sha256`, `sha384`, `sha512`). Default: the first of the
    /// service's `digests`.
    #[serde(default)]
    pub digest: Option<String>,
    /// required: the reason shown to the official (and the PDF's `/Reason`).
    pub reason: String,
    /// When the official must have signed, Unix ms. Default: now + the service's
    /// `request_lifetime`.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    /// The dossier the document belongs to (shown in the dossier's trail).
    #[serde(default)]
    pub dossier_code: Option<String>,
    /// `B-B` (the default) or `B-T` (a time-stamp over the signature: PAdES B-T, CAdES-T;
    /// not for `xml`).
    #[serde(default)]
    pub level: Option<String>,
    /// PDF only: a visible signature (signer, time, reason) at `rect` of `page`.
    #[serde(default)]
    pub visible: Option<VisibleField>,
}

/// Where a visible signature goes: `{"page": 1, "rect": [x1, y1, x2, y2]}` (points, from the
/// page's bottom left).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VisibleField {
    /// 1-based. Default 1.
    #[serde(default = "first_page")]
    pub page: u32,
    pub rect: [f64; 4],
}

fn first_page() -> u32 {
    1
}

/// The `document` of a request: its bytes, or where to fetch them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DocumentField {
    /// Standard base64 of the bytes.
    Inline(String),
    Reference(DocumentReference),
}

/// A document the gateway fetches (`[signatures.documents]` lists the allowed bases).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentReference {
    pub url: String,
    /// SHA-256 of the bytes, 64 hex digits: the fetched document must have it.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl DocumentReference {
    /// The given SHA-256, lower-case, or `""` when none was given.
    pub fn sha256_hex(&self) -> Result<String, AcceptError> {
        match &self.sha256 {
            None => Ok(String::new()),
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(h.to_ascii_lowercase())
            }
            Some(_) => Err(AcceptError::DocumentSha256),
        }
    }
}

/// The signature level asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Basic: the signature alone.
    BB,
    /// With a signature time-stamp from `[signatures.tsa]`.
    BT,
}

impl Level {
    pub fn parse(s: Option<&str>) -> Result<Level, AcceptError> {
        match s.map(str::to_ascii_uppercase).as_deref() {
            None | Some("B-B") => Ok(Level::BB),
            Some("B-T") => Ok(Level::BT),
            Some(_) => Err(AcceptError::UnknownLevel {
                level: s.unwrap_or_default().chars().take(20).collect(),
            }),
        }
    }
}

/// The HTTP class of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the payload is not what the contract says.
    BadRequest,
    /// 413: the document is over the cap.
    TooLarge,
    /// 409: the key was used for another request.
    Conflict,
    /// 422: well formed, but cannot be signed as asked.
    Unprocessable,
    /// 503: the gateway could not keep it; retry later.
    Unavailable,
}

/// Why a `signature.requested` event was refused, one variant per check.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("payload: {detail}")]
    Shape { detail: String },
    #[error("signer: no signer service `{name}` is configured ({known})")]
    UnknownService { name: String, known: String },
    #[error(
        "official: not an official of signer service `{service}` ([[signers.{service}.officials]])"
    )]
    UnknownOfficial { service: String },
    #[error("format: `{format}` is not one of cms, xml, pdf")]
    UnknownFormat { format: String },
    #[error(
        "digest: `{digest}` is not allowed for signer service `{service}` (it allows {allowed})"
    )]
    DigestNotAllowed {
        digest: String,
        service: String,
        allowed: String,
    },
    #[error("document: not base64: {detail}")]
    DocumentEncoding { detail: String },
    #[error("document: empty")]
    DocumentEmpty,
    #[error("document: {size} bytes, over the cap of {cap}")]
    DocumentTooLarge { size: usize, cap: usize },
    #[error("document: {detail}")]
    DocumentNotFormat { detail: String },
    #[error("document.sha256: not 64 hexadecimal digits")]
    DocumentSha256,
    #[error("document.url: not under an allowed base (signatures.documents.allow)")]
    DocumentUrlNotAllowed,
    #[error(
        "document: a reference, but this gateway fetches no documents ([signatures.documents])"
    )]
    DocumentsNotConfigured,
    #[error("level: `{level}` is not B-B or B-T")]
    UnknownLevel { level: String },
    #[error("level: {format} has no B-T here (XAdES-T is not built); ask for B-B, or cms/pdf")]
    LevelNotSupported { format: String },
    #[error(
        "level: B-T needs a time-stamp authority, and this gateway has none ([signatures.tsa])"
    )]
    TimeStampNotConfigured,
    #[error("visible: only a PDF has a visible signature")]
    VisibleNotSupported,
    #[error("visible: this gateway has no font for visible signatures ([signatures.appearance])")]
    VisibleNotConfigured,
    #[error("visible: {detail}")]
    Visible { detail: String },
    #[error("deadline_ms: {deadline_ms} is not in the future")]
    DeadlinePassed { deadline_ms: i64 },
    #[error("reason: {detail}")]
    Reason { detail: String },
    #[error("dossier_code: {detail}")]
    DossierCode { detail: String },
    #[error("the official's certificate is refused: {detail}")]
    Certificate { code: &'static str, detail: String },
    #[error("digest: {detail}")]
    AlgorithmMismatch { detail: String },
    #[error("key `{key}` was already used for request {request_id} with another {what}; use a new key for a new request")]
    KeyReused {
        key: String,
        request_id: String,
        what: &'static str,
    },
    #[error("the request could not be kept: {detail}; retry later")]
    Store { detail: String },
}

impl AcceptError {
    /// The stable code of the refusal (the error answer's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            AcceptError::Shape { .. } => "bad_payload",
            AcceptError::UnknownService { .. } => "unknown_signer_service",
            AcceptError::UnknownOfficial { .. } => "unknown_official",
            AcceptError::UnknownFormat { .. } => "unknown_format",
            AcceptError::DigestNotAllowed { .. } => "digest_not_allowed",
            AcceptError::DocumentEncoding { .. } => "document_not_base64",
            AcceptError::DocumentEmpty => "document_empty",
            AcceptError::DocumentTooLarge { .. } => "document_too_large",
            AcceptError::DocumentNotFormat { .. } => "document_not_format",
            AcceptError::DeadlinePassed { .. } => "deadline_passed",
            AcceptError::DocumentSha256 => "bad_document_sha256",
            AcceptError::DocumentUrlNotAllowed => "document_url_not_allowed",
            AcceptError::DocumentsNotConfigured => "documents_by_reference_not_configured",
            AcceptError::UnknownLevel { .. } => "unknown_level",
            AcceptError::LevelNotSupported { .. } => "level_not_supported",
            AcceptError::TimeStampNotConfigured => "timestamp_not_configured",
            AcceptError::VisibleNotSupported => "visible_not_supported",
            AcceptError::VisibleNotConfigured => "visible_not_configured",
            AcceptError::Visible { .. } => "bad_visible",
            AcceptError::Reason { .. } => "bad_reason",
            AcceptError::DossierCode { .. } => "bad_dossier_code",
            AcceptError::Certificate { code, .. } => code,
            AcceptError::AlgorithmMismatch { .. } => "algorithm_mismatch",
            AcceptError::KeyReused { .. } => "key_reused",
            AcceptError::Store { .. } => "not_stored",
        }
    }

    pub fn refusal(&self) -> Refusal {
        match self {
            AcceptError::Shape { .. }
            | AcceptError::DocumentEncoding { .. }
            | AcceptError::DocumentSha256 => Refusal::BadRequest,
            AcceptError::DocumentTooLarge { .. } => Refusal::TooLarge,
            AcceptError::KeyReused { .. } => Refusal::Conflict,
            AcceptError::Store { .. } => Refusal::Unavailable,
            _ => Refusal::Unprocessable,
        }
    }
}

/// The longest reason accepted (it is shown on a phone).
pub const MAX_REASON_CHARS: usize = 500;

impl SignatureRequestBody {
    /// The payload of an event, strictly.
    pub fn parse(payload: &serde_json::Value) -> Result<Self, AcceptError> {
        let body: SignatureRequestBody =
            serde_json::from_value(payload.clone()).map_err(|e| AcceptError::Shape {
                detail: e.to_string(),
            })?;
        if body.reason.trim().is_empty() || body.reason.chars().count() > MAX_REASON_CHARS {
            return Err(AcceptError::Reason {
                detail: format!("between 1 and {MAX_REASON_CHARS} characters"),
            });
        }
        if body.reason.chars().any(char::is_control) {
            return Err(AcceptError::Reason {
                detail: "control characters".into(),
            });
        }
        if let Some(c) = &body.dossier_code {
            if c.is_empty()
                || c.len() > crate::model::limits::MAX_DOSSIER_CODE_LEN
                || c.chars().any(char::is_control)
            {
                return Err(AcceptError::DossierCode {
                    detail: "empty, too long or with control characters".into(),
                });
            }
        }
        Ok(body)
    }

    /// The document's bytes, at most `cap` (an inline document; a reference has none yet).
    pub fn document_bytes(&self, cap: usize) -> Result<Vec<u8>, AcceptError> {
        use base64::Engine as _;
        let DocumentField::Inline(document) = &self.document else {
            return Err(AcceptError::Shape {
                detail: "document: a reference has no bytes before it is fetched".into(),
            });
        };
        // Base64 is 4/3 of the bytes: refuse before decoding what is surely over the cap.
        if document.len() / 4 * 3 > cap + 3 {
            return Err(AcceptError::DocumentTooLarge {
                size: document.len() / 4 * 3,
                cap,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(document.trim())
            .map_err(|e| AcceptError::DocumentEncoding {
                detail: e.to_string(),
            })?;
        if bytes.is_empty() {
            return Err(AcceptError::DocumentEmpty);
        }
        if bytes.len() > cap {
            return Err(AcceptError::DocumentTooLarge {
                size: bytes.len(),
                cap,
            });
        }
        Ok(bytes)
    }
}

/// The request id of the event `key` from `source`: `sig-` and 32 hex digits of a SHA-256 over
/// both. The same event sent again has the same id.
pub fn request_id(source: &str, key: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    format!("sig-{}", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_is_stable_and_separates_sources() {
        assert_eq!(request_id("onestop", "k1"), request_id("onestop", "k1"));
        assert_ne!(request_id("onestop", "k1"), request_id("onestop", "k2"));
        assert_ne!(request_id("a", "bk"), request_id("ab", "k"));
        assert_eq!(request_id("onestop", "k1").len(), 36);
    }

    #[test]
    fn unknown_fields_and_bad_reasons_are_refused() {
        let ok = serde_json::json!({"signer": "s", "official": "o", "format": "cms", "document": "AA==", "reason": "r"});
        assert!(SignatureRequestBody::parse(&ok).is_ok());
        let mut typo = ok.clone();
        typo["deadline"] = serde_json::json!(1);
        let e = SignatureRequestBody::parse(&typo).unwrap_err();
        assert_eq!(e.code(), "bad_payload");
        assert!(e.to_string().contains("deadline"), "{e}");
        let mut empty = ok.clone();
        empty["reason"] = serde_json::json!(" ");
        assert_eq!(
            SignatureRequestBody::parse(&empty).unwrap_err().code(),
            "bad_reason"
        );
    }

    #[test]
    fn the_document_is_capped_and_decoded() {
        let b = |d: &str| SignatureRequestBody {
            signer: "s".into(),
            official: "o".into(),
            format: "cms".into(),
            document: DocumentField::Inline(d.into()),
            digest: None,
            reason: "r".into(),
            deadline_ms: None,
            dossier_code: None,
            level: None,
            visible: None,
        };
        assert_eq!(b("aGVsbG8=").document_bytes(5).unwrap(), b"hello");
        assert!(matches!(
            b("aGVsbG8=").document_bytes(4),
            Err(AcceptError::DocumentTooLarge { size: 5, cap: 4 })
        ));
        assert!(matches!(
            b("not base64!").document_bytes(100),
            Err(AcceptError::DocumentEncoding { .. })
        ));
        assert!(matches!(
            b("").document_bytes(100),
            Err(AcceptError::DocumentEmpty)
        ));
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn a_document_by_reference_and_a_level_are_read_strictly() {
        let base =
            serde_json::json!({"signer": "s", "official": "o", "format": "pdf", "reason": "r"});
        let with = |doc: serde_json::Value, level: Option<&str>| {
            let mut v = base.clone();
            v["document"] = doc;
            if let Some(l) = level {
                v["level"] = serde_json::json!(l);
            }
            SignatureRequestBody::parse(&v)
        };
        let sha = "AB".repeat(32);
        let b = with(
            serde_json::json!({"url": "https://d.vn/f/a.pdf", "sha256": sha}),
            Some("b-t"),
        )
        .unwrap();
        let DocumentField::Reference(r) = &b.document else {
            panic!("{b:?}")
        };
        assert_eq!(r.sha256_hex().unwrap(), "ab".repeat(32));
        assert_eq!(Level::parse(b.level.as_deref()).unwrap(), Level::BT);
        assert!(b.document_bytes(100).is_err(), "no bytes before the fetch");
        // A typo in the reference is refused, not taken for inline bytes.
        assert_eq!(
            with(
                serde_json::json!({"url": "https://d.vn/f/a.pdf", "sha": "x"}),
                None
            )
            .unwrap_err()
            .code(),
            "bad_payload"
        );
        let short = with(
            serde_json::json!({"url": "https://d.vn/a", "sha256": "abc"}),
            None,
        )
        .unwrap();
        let DocumentField::Reference(r) = &short.document else {
            panic!()
        };
        assert_eq!(r.sha256_hex().unwrap_err().code(), "bad_document_sha256");
        assert_eq!(Level::parse(None).unwrap(), Level::BB);
        assert_eq!(
            Level::parse(Some("B-LT")).unwrap_err().code(),
            "unknown_level"
        );
    }
}
