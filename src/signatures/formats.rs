//! What the signing flow needs beyond the signing services: the time-stamp authority of B-T
//! requests ([`TimeStamper`], `[signatures.tsa]`), the fetcher of documents given by
//! reference ([`DocumentFetcher`], `[signatures.documents]`) and the font of visible
//! signatures (`[signatures.appearance]`, checked for Vietnamese when loaded).
//!
//! # Invariants
//! - A time-stamp token is returned only once it verified: granted, our nonce, the imprint of
//!   exactly the signature value, a TSA certificate chaining to `ca_file` with the
//!   timeStamping usage. Anything else is a [`StampError`] (the flow retries it).
//! - A document is fetched only from a URL under an allowed base ([`DocumentFetcher::allows`];
//!   the edge refuses others before anything is stored), redirects are not followed (a
//!   redirect could leave the allowed bases), the body is read in chunks and abandoned as soon
//!   as it passes `max_bytes`, and its SHA-256 must match the one the request gave.
//! - [`FetchError::retryable`] says which failures are worth another attempt (no answer, a
//!   5xx, a 408/429); a 4xx, an oversize body or a hash mismatch end the request.
//! - Errors never quote the document URL (it may carry a dossier or citizen id).

use gw_crypto::keys::TrustStore;
use gw_crypto::tsp::{self, TimeStampRequest};
use sha2::Digest as _;

use crate::config::{DocumentsSection, Loaded, SignatureTsaSection};
use crate::signing::assemble::AppearanceFont;
use crate::transport::stack::{BuildError, Options, Outbound, TransportError};

/// Why a time-stamp was not obtained (or the authority not set up), by step.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error("signatures.tsa.{what}: {detail}")]
    Trust { what: &'static str, detail: String },
    #[error("signatures.tsa: {0}")]
    Client(#[from] BuildError),
    #[error("the time-stamp authority did not answer: {0}")]
    NoAnswer(String),
    #[error("the time-stamp authority answered HTTP {0}")]
    Status(u16),
    #[error("the time-stamp authority answered {0:?}, not a timestamp-reply")]
    ContentType(String),
    #[error("the time-stamp answer is refused: {0}")]
    Verify(String),
}

/// The time-stamp authority of the signing flow.
pub struct TimeStamper {
    pub section: SignatureTsaSection,
    trust: TrustStore,
    client: Outbound,
}

impl TimeStamper {
    pub fn new(section: &SignatureTsaSection, base: &std::path::Path) -> Result<Self, StampError> {
        let read = |what: &'static str, p: &std::path::Path| {
            std::fs::read(base.join(p)).map_err(|e| StampError::Trust {
                what,
                detail: format!("{}: {e}", p.display()),
            })
        };
        let mut trust = TrustStore::from_pem(&read("ca_file", &section.ca_file)?).map_err(|e| {
            StampError::Trust {
                what: "ca_file",
                detail: e.to_string(),
            }
        })?;
        if let Some(i) = &section.intermediates_file {
            trust
                .add_intermediates_pem(&read("intermediates_file", i)?)
                .map_err(|e| StampError::Trust {
                    what: "intermediates_file",
                    detail: e.to_string(),
                })?;
        }
        let client = Outbound::build(&Options::plain("signatures.tsa", section.timeout.0))?;
        Ok(TimeStamper {
            section: section.clone(),
            trust,
            client,
        })
    }

    /// The trust anchors tokens are checked against (also when the document is assembled).
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Ask for a time-stamp token answering `req`, verified.
    pub async fn stamp(&self, req: &TimeStampRequest) -> Result<Vec<u8>, StampError> {
        let reply = self
            .client
            .post_bytes(
                &self.section.url,
                "application/timestamp-query",
                req.der.clone(),
            )
            .send()
            .await
            .map_err(|e: TransportError| StampError::NoAnswer(e.detail()))?;
        if !(200..300).contains(&reply.status) {
            return Err(StampError::Status(reply.status));
        }
        let ctype = reply.content_type.clone().unwrap_or_default();
        if !ctype.starts_with("application/timestamp-reply") {
            return Err(StampError::ContentType(ctype));
        }
        let ts = tsp::verify_response(&reply.body, req, &self.trust)
            .map_err(|e| StampError::Verify(e.to_string()))?;
        Ok(ts.token_der)
    }
}

/// Why a document was not fetched, by step.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("signatures.documents: the client: {0}")]
    Client(String),
    #[error("the document URL is not under an allowed base (signatures.documents.allow)")]
    NotAllowed,
    #[error("the document server did not answer: {0}")]
    NoAnswer(String),
    #[error("the document server answered HTTP {0}")]
    Status(u16),
    #[error("the document is over {cap} bytes")]
    TooLarge { cap: usize },
    #[error("the document is empty")]
    Empty,
    #[error("the document's SHA-256 is {got}, not the {want} the request gave")]
    HashMismatch { want: String, got: String },
}

impl FetchError {
    /// Worth another attempt later.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::NoAnswer(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            _ => false,
        }
    }

    /// The `reason_kind` of a request that ends on this error.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::TooLarge { .. } => "document_too_large",
            FetchError::HashMismatch { .. } => "document_hash_mismatch",
            FetchError::NotAllowed => "document_url_not_allowed",
            _ => "document_fetch_failed",
        }
    }
}

/// Fetches documents given by reference.
pub struct DocumentFetcher {
    pub section: DocumentsSection,
    /// The largest document accepted.
    pub max_bytes: usize,
    client: reqwest::Client,
}

impl DocumentFetcher {
    pub fn new(
        section: &DocumentsSection,
        default_max: usize,
        base: &std::path::Path,
    ) -> Result<Self, FetchError> {
        let mut b = reqwest::Client::builder()
            .timeout(section.timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &section.ca_file {
            let pem = std::fs::read(base.join(ca))
                .map_err(|e| FetchError::Client(format!("ca_file {}: {e}", ca.display())))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchError::Client(format!("ca_file: {e}")))?
            {
                b = b.add_root_certificate(c);
            }
        }
        let client = b
            .build()
            .map_err(|e| FetchError::Client(e.without_url().to_string()))?;
        Ok(DocumentFetcher {
            max_bytes: section.max_bytes.unwrap_or(default_max),
            section: section.clone(),
            client,
        })
    }

    pub fn allows(&self, url: &str) -> bool {
        self.section.allows(url)
    }

    /// GET the document at `url`, at most `max_bytes`, its SHA-256 (hex) equal to
    /// `sha256_hex` when that is not empty.
    pub async fn fetch(&self, url: &str, sha256_hex: &str) -> Result<Vec<u8>, FetchError> {
        if !self.allows(url) {
            return Err(FetchError::NotAllowed);
        }
        let cap = self.max_bytes;
        let no_answer = |e: reqwest::Error| FetchError::NoAnswer(e.without_url().to_string());
        let mut resp = self.client.get(url).send().await.map_err(no_answer)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status(status));
        }
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(FetchError::TooLarge { cap });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(no_answer)? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge { cap });
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Err(FetchError::Empty);
        }
        let got = hex::encode(sha2::Sha256::digest(&body));
        if !sha256_hex.is_empty() && !got.eq_ignore_ascii_case(sha256_hex) {
            return Err(FetchError::HashMismatch {
                want: sha256_hex.to_owned(),
                got,
            });
        }
        Ok(body)
    }
}

/// The flow's extras; each absent when its section is.
#[derive(Default)]
pub struct Formats {
    pub tsa: Option<TimeStamper>,
    pub documents: Option<DocumentFetcher>,
    pub font: Option<AppearanceFont>,
}

/// Why [`Formats::from_config`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FormatsError {
    #[error(transparent)]
    Tsa(#[from] StampError),
    #[error(transparent)]
    Documents(#[from] FetchError),
    #[error("signatures.appearance.font: {path}: {detail}")]
    Font { path: String, detail: String },
}

/// The font of `[signatures.appearance]`, read and checked.
pub fn load_font(path: &std::path::Path) -> Result<AppearanceFont, FormatsError> {
    let err = |detail: String| FormatsError::Font {
        path: path.display().to_string(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    AppearanceFont::from_bytes(bytes).map_err(|e| err(e.to_string()))
}

impl Formats {
    pub fn from_config(loaded: &Loaded) -> Result<Self, FormatsError> {
        let s = &loaded.config.signatures;
        let base = loaded.base.as_path();
        Ok(Formats {
            tsa: s
                .tsa
                .as_ref()
                .map(|t| TimeStamper::new(t, base))
                .transpose()?,
            documents: s
                .documents
                .as_ref()
                .map(|d| DocumentFetcher::new(d, loaded.config.inbound.max_body_bytes, base))
                .transpose()?,
            font: s
                .appearance
                .as_ref()
                .map(|a| load_font(&base.join(&a.font)))
                .transpose()?,
        })
    }
}
