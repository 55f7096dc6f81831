//! Signed documents assembled by the gateway around a signature value made elsewhere (a remote
//! signing service: SmartCA, MySign, a CSC service), in two phases:
//! [`prepare`] computes the digest the service must sign, [`finish`] (or
//! [`finish_timestamped`]) builds the signed document around the value it returns.
//!
//! # Invariants
//! - Only a digest leaves the gateway: [`Prepared::to_sign`] is the digest (algorithm
//!   [`Prepared::digest_algorithm`]) of what the signature covers: the DER signed attributes
//!   (CMS, PAdES) or the canonical `SignedInfo` (XML-DSig). The service signs it as a prehashed
//!   digest: RSA PKCS#1 v1.5 (over the DigestInfo) or ECDSA.
//! - Nothing is assembled around a value that is not a signature by the signer certificate's
//!   key over exactly [`Prepared::to_sign`]: [`finish`] checks it first, and a wrong, foreign or
//!   garbled value is [`AssembleError::SignatureRefused`].
//! - [`Prepared`] is plain data (serde): the flow stores it between the phases, across
//!   restarts, and [`finish`] needs nothing else but the document and the value. It holds the
//!   format, the digest algorithm and `to_sign`, the document's SHA-256 and length, the signer
//!   certificate and chain (DER), the signing time, whether a time-stamp is due, and what the
//!   format needs to finish: the signed attributes' DER (CMS, PAdES: about 300 bytes), the
//!   element reference (XML), the PDF incremental update around its `/Contents` gap (a few
//!   hundred bytes; the gap's zeros are not stored). It never holds the document: its JSON is a
//!   few kilobytes whatever the document's size (measured with an RSA signer and one
//!   intermediate: 3.1 KB for CMS, 4.1 KB for a PDF of 600 bytes or of 1 MB); a visible
//!   PDF signature adds its appearance and font subset (tens of KB at most).
//! - [`finish`] takes the document again (the flow already keeps it) and refuses any other
//!   document ([`AssembleError::DocumentChanged`]: SHA-256 and length are compared), so the
//!   output always is the prepared document plus the signature.
//! - Refusals at [`prepare`] name the step and happen before any digest leaves: a document that
//!   is not what its format says ([`AssembleError::NotFormat`]), a PDF shape not supported
//!   ([`AssembleError::Pdf`]), a certificate without a usable key or with the wrong key usage, a
//!   digest algorithm the key cannot use ([`AssembleError::Signer`]), a format option the
//!   format does not have ([`AssembleError::Unsupported`]).
//! - A time-stamp ([`Options::timestamp`]: CAdES-T for CMS, PAdES B-T) is over the signature
//!   value as the CMS carries it ([`signature_timestamp_request`]); [`finish_timestamped`]
//!   verifies the token (TSA chain, imprint) before adding it, and [`finish`] refuses to build a
//!   document without the time-stamp that was asked for.
//! - Not decided here: whether the signer certificate chains to the trust anchors, is valid at
//!   signing time and is the requested official. The flow checks that with its trust store
//!   before it calls [`finish`]; this module checks only what the formats need.
//!
//! # Formats
//! | format | output | to_sign is the digest of |
//! |---|---|---|
//! | `cms` | detached CMS SignedData (DER), CAdES-B attributes, optional CAdES-T | DER signed attributes |
//! | `xml` | the XML with an enveloped `ds:Signature` (exclusive C14N, SHA-256) | canonical `SignedInfo` |
//! | `pdf` | the PDF plus one incremental update: PAdES B-B, or B-T | DER signed attributes |
//!
//! # Files
//! Each file imports only the ones listed before it; this one declares them and holds the API.
//! - `signer.rs`: the signer certificate, its key type, digest pairing, checking a value.
//! - `cms.rs`: signed attributes and SignedData (typed ASN.1: `cms`, `x509-cert`, `der`).
//! - `xml.rs`: enveloped XML-DSig through `gw_crypto::xmldsig`'s split entry point.
//! - `appearance.rs`: a visible signature's appearance stream and embedded font subset.
//! - `pdf.rs`: the PDF reader (cross-reference tables and streams, object streams) and the
//!   incremental update writer.

use gw_crypto::keys::TrustStore;
use gw_crypto::tsp::{self, TimeStampRequest, TspError};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};

mod appearance;
mod cms;
mod pdf;
mod signer;
mod xml;

pub use appearance::{AppearanceError, AppearanceFont, Visible, VIETNAMESE};
pub use cms::CmsError;
pub use pdf::{sample as sample_pdf, PdfError};
pub use signer::{DigestAlgorithm, KeyType, Signer, SignerError};
pub use xml::XmlSignError;

/// The signed format to assemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Detached CMS SignedData (`.p7s`), for any document.
    Cms,
    /// Enveloped XML-DSig.
    Xml,
    /// PAdES (B-B, or B-T with [`Options::timestamp`]).
    Pdf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cms => "cms",
            Format::Xml => "xml",
            Format::Pdf => "pdf",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cms" => Ok(Format::Cms),
            "xml" => Ok(Format::Xml),
            "pdf" => Ok(Format::Pdf),
            other => Err(format!("unknown format `{other}` (cms, xml or pdf)")),
        }
    }
}

/// How to sign.
#[derive(Debug, Clone)]
pub struct Options {
    /// The digest the signer signs; also the content digest (CMS, PAdES). XML-DSig: SHA-256.
    pub digest: DigestAlgorithm,
    /// Signing time, Unix seconds (`None`: now): CMS signing-time attribute, PDF `/M`.
    pub signing_time: Option<i64>,
    /// PDF `/Reason` (any text; Vietnamese is kept, as UTF-16).
    pub reason: Option<String>,
    /// PDF `/Location`.
    pub location: Option<String>,
    /// Add a signature time-stamp: PAdES B-T, CAdES-T for CMS. Not for XML.
    pub timestamp: bool,
    /// XML only: sign the element with this `Id` instead of the whole document.
    pub xml_reference: Option<String>,
    /// PDF only: a visible signature (signer, time, reason) in a rectangle of a page.
    pub visible: Option<Visible>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            digest: DigestAlgorithm::Sha256,
            signing_time: None,
            reason: None,
            location: None,
            timestamp: false,
            xml_reference: None,
            visible: None,
        }
    }
}

/// Why a signed document could not be prepared or finished; each variant names its step.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("prepare: the document is not {format}: {reason}")]
    NotFormat { format: Format, reason: String },
    #[error("prepare: {format} does not support {what}")]
    Unsupported { format: Format, what: String },
    #[error("prepare: signer certificate: {0}")]
    Signer(#[source] SignerError),
    #[error("CMS: {0}")]
    Cms(#[from] CmsError),
    #[error("XML-DSig: {0}")]
    Xml(#[source] XmlSignError),
    #[error("PDF: {0}")]
    Pdf(#[source] PdfError),
    #[error("prepare: visible signature: {0}")]
    Appearance(#[source] AppearanceError),
    #[error("finish: the stored preparation is unusable: {0}")]
    Stored(String),
    #[error("finish: this is not the document that was prepared (SHA-256 or length differs)")]
    DocumentChanged,
    #[error("finish: signature value refused: {0}")]
    SignatureRefused(#[source] SignerError),
    #[error("finish: a time-stamp was asked for at prepare; use finish_timestamped")]
    TimeStampRequired,
    #[error("finish: no time-stamp was asked for at prepare")]
    TimeStampNotRequested,
    #[error("finish: time-stamp token: {0}")]
    TimeStamp(#[source] TspError),
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// Bytes as standard base64 in the stored form.
#[derive(Clone, PartialEq, Eq)]
struct B64(Vec<u8>);

impl std::fmt::Debug for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

/// What a format needs to finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
enum Parts {
    Cms {
        signed_attributes: B64,
    },
    Xml {
        reference: Option<String>,
    },
    Pdf {
        signed_attributes: B64,
        /// The incremental update up to and including the `<` of `/Contents`.
        head: B64,
        /// From the `>` of `/Contents` to `%%EOF`.
        tail: B64,
        /// Hex digits between `<` and `>`: the largest CMS is half of it.
        contents_hex: usize,
    },
}

/// Everything between the two phases: serialise it, store it, give it back to [`finish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// Layout version of this structure (1).
    version: u32,
    digest: DigestAlgorithm,
    to_sign: B64,
    document_sha256: B64,
    document_len: u64,
    /// Signer certificate then chain, DER.
    certificates: Vec<B64>,
    signing_time: i64,
    timestamp: bool,
    parts: Parts,
}

impl Prepared {
    /// The digest to send to the signing service.
    pub fn to_sign(&self) -> &[u8] {
        &self.to_sign.0
    }
    /// The algorithm of [`Self::to_sign`].
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest
    }
    pub fn format(&self) -> Format {
        match self.parts {
            Parts::Cms { .. } => Format::Cms,
            Parts::Xml { .. } => Format::Xml,
            Parts::Pdf { .. } => Format::Pdf,
        }
    }
    /// Whether [`finish_timestamped`] (not [`finish`]) completes it.
    pub fn wants_timestamp(&self) -> bool {
        self.timestamp
    }
    /// The signer certificate (leaf), DER.
    pub fn signer_certificate_der(&self) -> &[u8] {
        &self.certificates[0].0
    }
    /// Signing time, Unix seconds.
    pub fn signing_time(&self) -> i64 {
        self.signing_time
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Phase one: checks the document, the signer and the options, and computes what the signing
/// service must sign. `chain` is the signer's intermediates (the root may be left out).
pub fn prepare(
    format: Format,
    document: &[u8],
    certificate: &X509,
    chain: &[X509],
    options: &Options,
) -> Result<Prepared, AssembleError> {
    let signer = Signer::new(certificate.clone(), chain.to_vec()).map_err(AssembleError::Signer)?;
    signer
        .check_digest(options.digest)
        .map_err(AssembleError::Signer)?;
    if options.timestamp && format == Format::Xml {
        return Err(AssembleError::Unsupported {
            format,
            what: "a signature time-stamp (XAdES-T is not built)".into(),
        });
    }
    if (options.reason.is_some() || options.location.is_some()) && format != Format::Pdf {
        return Err(AssembleError::Unsupported {
            format,
            what: "a reason or location (they go into a PDF signature dictionary)".into(),
        });
    }
    if options.visible.is_some() && format != Format::Pdf {
        return Err(AssembleError::Unsupported {
            format,
            what: "a visible signature (it is a PDF widget)".into(),
        });
    }
    if options.xml_reference.is_some() && format != Format::Xml {
        return Err(AssembleError::Unsupported {
            format,
            what: "an element reference (xml_reference)".into(),
        });
    }
    let alg = options.digest;
    let signing_time = options.signing_time.unwrap_or_else(now);
    let (to_sign, parts) = match format {
        Format::Cms => {
            let content_digest = alg.digest(document)?;
            let attrs = cms::signed_attributes(alg, &content_digest, &signer, Some(signing_time))?;
            (
                alg.digest(&attrs)?,
                Parts::Cms {
                    signed_attributes: B64(attrs),
                },
            )
        }
        Format::Xml => {
            let reference = options.xml_reference.clone();
            let si = xml::signed_info(document, &signer, alg, reference.as_deref()).map_err(
                |e| match e {
                    XmlSignError::NotUtf8(_) | XmlSignError::NotWellFormed(_) => {
                        AssembleError::NotFormat {
                            format,
                            reason: e.to_string(),
                        }
                    }
                    XmlSignError::Digest(_) | XmlSignError::Key(_) => AssembleError::Unsupported {
                        format,
                        what: e.to_string(),
                    },
                    other => AssembleError::Xml(other),
                },
            )?;
            (alg.digest(&si)?, Parts::Xml { reference })
        }
        Format::Pdf => {
            let text = pdf::SignatureText {
                signing_time,
                reason: options.reason.as_deref(),
                location: options.location.as_deref(),
            };
            let estimate = cms_size_estimate(&signer, alg, options.timestamp)?;
            let lines = match &options.visible {
                Some(v) => {
                    v.checked_rect().map_err(AssembleError::Appearance)?;
                    appearance_lines(&signer, signing_time, options.reason.as_deref())?
                }
                None => Vec::new(),
            };
            let shown = options.visible.as_ref().map(|v| (v, lines.as_slice()));
            let update = pdf::prepare(document, &text, estimate, shown).map_err(|e| match e {
                PdfError::NotPdf(reason) => AssembleError::NotFormat { format, reason },
                PdfError::Appearance(a) => AssembleError::Appearance(a),
                other => AssembleError::Pdf(other),
            })?;
            let ranges_digest = update
                .ranges_digest(document, alg)
                .map_err(AssembleError::Pdf)?;
            let attrs = cms::signed_attributes(alg, &ranges_digest, &signer, None)?;
            (
                alg.digest(&attrs)?,
                Parts::Pdf {
                    signed_attributes: B64(attrs),
                    head: B64(update.head),
                    tail: B64(update.tail),
                    contents_hex: update.contents_hex,
                },
            )
        }
    };
    Ok(Prepared {
        version: 1,
        digest: alg,
        to_sign: B64(to_sign),
        document_sha256: B64(DigestAlgorithm::Sha256.digest(document)?),
        document_len: document.len() as u64,
        certificates: signer
            .to_der()
            .map_err(AssembleError::Signer)?
            .into_iter()
            .map(B64)
            .collect(),
        signing_time,
        timestamp: options.timestamp,
        parts,
    })
}

/// The lines a visible signature shows: the signer's name (the certificate's common name, else
/// its whole subject), the signing time in Vietnam's time zone (UTC+7), and the reason.
fn appearance_lines(
    signer: &Signer,
    signing_time: i64,
    reason: Option<&str>,
) -> Result<Vec<String>, AssembleError> {
    let subject = signer.leaf.subject_name();
    let name = subject
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_else(|| {
            subject
                .entries()
                .filter_map(|e| e.data().to_string().ok())
                .collect::<Vec<_>>()
                .join(", ")
        });
    let t = time::OffsetDateTime::from_unix_timestamp(signing_time)
        .map_err(|e| AssembleError::Stored(format!("signing time {signing_time}: {e}")))?
        .to_offset(time::macros::offset!(+7));
    let mut lines = vec![
        format!("Người ký: {name}"),
        format!(
            "Thời gian: {:02}/{:02}/{:04} {:02}:{:02}:{:02} (UTC+7)",
            t.day(),
            u8::from(t.month()),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        ),
    ];
    if let Some(r) = reason {
        lines.push(format!("Lý do: {r}"));
    }
    Ok(lines)
}

/// The largest CMS a PDF's `/Contents` must hold: certificates, signed attributes, the
/// signature, DER overhead and, for B-T, room for a time-stamp token (with its TSA chain).
fn cms_size_estimate(
    signer: &Signer,
    alg: DigestAlgorithm,
    timestamp: bool,
) -> Result<usize, AssembleError> {
    let certs: usize = signer
        .to_der()
        .map_err(AssembleError::Signer)?
        .iter()
        .map(Vec::len)
        .sum();
    let attrs = cms::signed_attributes(alg, &vec![0; alg.output_len()], signer, None)?.len();
    let signature = match signer.key_type {
        KeyType::Rsa { bits } => bits as usize / 8,
        KeyType::Ecdsa { field } => 2 * field + 9,
    };
    let token = if timestamp { 12 * 1024 } else { 0 };
    Ok(certs + attrs + signature + 1024 + token)
}

/// Phase two, without a time-stamp: checks the document and the value, then assembles.
pub fn finish(
    prepared: &Prepared,
    document: &[u8],
    signature: &[u8],
) -> Result<Vec<u8>, AssembleError> {
    if prepared.timestamp {
        return Err(AssembleError::TimeStampRequired);
    }
    let (signer, value) = checked(prepared, document, signature)?;
    assemble(prepared, document, &signer, &value, None)
}

/// The time-stamp request for a signature value (B-T, CAdES-T): its imprint is the SHA-256 of
/// the value as the CMS carries it. The value is checked first, like in [`finish`].
pub fn signature_timestamp_request(
    prepared: &Prepared,
    document: &[u8],
    signature: &[u8],
) -> Result<TimeStampRequest, AssembleError> {
    if !prepared.timestamp {
        return Err(AssembleError::TimeStampNotRequested);
    }
    let (_, value) = checked(prepared, document, signature)?;
    tsp::request_for_data(&value).map_err(AssembleError::TimeStamp)
}

/// Phase two with a time-stamp: `token` is the `TimeStampToken` (from the TSA's answer to
/// [`signature_timestamp_request`]); it is verified against `tsa_trust` and for exactly this
/// signature value before it is added.
pub fn finish_timestamped(
    prepared: &Prepared,
    document: &[u8],
    signature: &[u8],
    token: &[u8],
    tsa_trust: &TrustStore,
) -> Result<Vec<u8>, AssembleError> {
    if !prepared.timestamp {
        return Err(AssembleError::TimeStampNotRequested);
    }
    let (signer, value) = checked(prepared, document, signature)?;
    let imprint = DigestAlgorithm::Sha256.digest(&value)?;
    tsp::verify_token(token, &imprint, tsa_trust).map_err(AssembleError::TimeStamp)?;
    assemble(prepared, document, &signer, &value, Some(token))
}

/// The document is the prepared one and the value verifies over `to_sign`: the signer and the
/// value in the form CMS carries.
fn checked(
    prepared: &Prepared,
    document: &[u8],
    signature: &[u8],
) -> Result<(Signer, Vec<u8>), AssembleError> {
    if prepared.version != 1 {
        return Err(AssembleError::Stored(format!(
            "layout version {} (this gateway reads 1)",
            prepared.version
        )));
    }
    if document.len() as u64 != prepared.document_len
        || DigestAlgorithm::Sha256.digest(document)? != prepared.document_sha256.0
    {
        return Err(AssembleError::DocumentChanged);
    }
    let certs: Vec<Vec<u8>> = prepared.certificates.iter().map(|c| c.0.clone()).collect();
    let signer = Signer::from_der(&certs)
        .map_err(|e| AssembleError::Stored(format!("certificates: {e}")))?;
    let value = signer
        .verify_digest(prepared.digest, &prepared.to_sign.0, signature)
        .map_err(AssembleError::SignatureRefused)?;
    Ok((signer, value))
}

fn assemble(
    prepared: &Prepared,
    document: &[u8],
    signer: &Signer,
    value: &[u8],
    token: Option<&[u8]>,
) -> Result<Vec<u8>, AssembleError> {
    match &prepared.parts {
        Parts::Cms { signed_attributes } => Ok(cms::signed_data(
            prepared.digest,
            &signed_attributes.0,
            signer,
            value,
            token,
        )?),
        Parts::Xml { reference } => {
            xml::assemble(document, signer, reference.as_deref(), value).map_err(AssembleError::Xml)
        }
        Parts::Pdf {
            signed_attributes,
            head,
            tail,
            contents_hex,
        } => {
            let cms =
                cms::signed_data(prepared.digest, &signed_attributes.0, signer, value, token)?;
            pdf::assemble(document, &head.0, &tail.0, *contents_hex, &cms)
                .map_err(AssembleError::Pdf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::signer::tests::{example, remote_sign, signer};
    use super::*;
    use gw_crypto::xmldsig::{verify_enveloped, SignerTrust, VerifyOptions};
    use openssl::cms::{CMSOptions, CmsContentInfo};
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;

    fn cms_verifies(cms_der: &[u8], content: &[u8]) -> bool {
        let mut cms = CmsContentInfo::from_der(cms_der).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store
            .add_cert(X509::from_pem(&example("root-ca.pem")).unwrap())
            .unwrap();
        let store = store.build();
        let certs = Stack::new().unwrap();
        cms.verify(
            Some(&certs),
            Some(&store),
            Some(content),
            None,
            CMSOptions::BINARY,
        )
        .is_ok()
    }

    fn trust() -> TrustStore {
        let mut t = TrustStore::from_pem(&example("root-ca.pem")).unwrap();
        t.add_intermediates_pem(&example("intermediate-ca.pem"))
            .unwrap();
        t
    }

    /// Prepare, store as JSON, read back, have the "service" sign `to_sign`.
    fn prepare_and_sign(
        format: Format,
        name: &str,
        doc: &[u8],
        options: &Options,
    ) -> (Prepared, Vec<u8>) {
        let (s, key) = signer(name);
        let prepared = prepare(format, doc, &s.leaf, &s.chain, options).unwrap();
        let json = serde_json::to_string(&prepared).unwrap();
        let stored: Prepared = serde_json::from_str(&json).unwrap();
        assert_eq!(stored, prepared);
        let value = remote_sign(&key, stored.digest_algorithm(), stored.to_sign());
        (stored, value)
    }

    /// The byte ranges of a signed PDF and the CMS in its `/Contents`.
    pub(crate) fn pdf_parts(signed: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let find = |from: usize, needle: &[u8]| {
            from + signed[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let key = b"/ByteRange [";
        let at = signed.windows(key.len()).rposition(|w| w == key).unwrap() + key.len();
        let end = find(at, b"]");
        let r: Vec<usize> = std::str::from_utf8(&signed[at..end])
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(r[0], 0);
        assert_eq!(
            r[2] + r[3],
            signed.len(),
            "the ranges reach the end of the file"
        );
        let mut covered = signed[..r[1]].to_vec();
        covered.extend_from_slice(&signed[r[2]..r[2] + r[3]]);
        let hex = std::str::from_utf8(&signed[r[1] + 1..r[2] - 1]).unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        // DER: the CMS is followed by zero padding.
        let len = match bytes[1] {
            n if n < 0x80 => 2 + n as usize,
            0x81 => 3 + bytes[2] as usize,
            0x82 => 4 + ((bytes[2] as usize) << 8 | bytes[3] as usize),
            _ => panic!("CMS too long"),
        };
        (covered, bytes[..len].to_vec())
    }

    #[test]
    fn cms_round_trip_through_storage() {
        let doc = "Kết quả giải quyết hồ sơ 000.00.00.H00-260101-0001".as_bytes();
        for (name, digest) in [
            ("sign-rsa", DigestAlgorithm::Sha256),
            ("sign-rsa", DigestAlgorithm::Sha384),
            ("sign-ec", DigestAlgorithm::Sha256),
        ] {
            let opts = Options {
                digest,
                ..Options::default()
            };
            let (p, value) = prepare_and_sign(Format::Cms, name, doc, &opts);
            assert_eq!(p.format(), Format::Cms);
            assert_eq!(p.to_sign().len(), digest.output_len());
            let cms = finish(&p, doc, &value).unwrap();
            assert!(cms_verifies(&cms, doc), "{name} {digest}");
            assert!(!cms_verifies(&cms, b"Ket qua khac"), "{name} {digest}");
        }
    }

    #[test]
    fn finish_refuses_wrong_values_and_documents() {
        let doc = b"document";
        let (p, value) = prepare_and_sign(Format::Cms, "sign-rsa", doc, &Options::default());
        // Another document than the prepared one.
        assert!(matches!(
            finish(&p, b"documenT", &value),
            Err(AssembleError::DocumentChanged)
        ));
        // A signature over another digest, by the right key.
        let (_, key) = signer("sign-rsa");
        let other = remote_sign(&key, DigestAlgorithm::Sha256, &[7; 32]);
        assert!(matches!(
            finish(&p, doc, &other),
            Err(AssembleError::SignatureRefused(
                SignerError::SignatureMismatch
            ))
        ));
        // A signature by someone else's key over the right digest.
        let (_, ec_key) = signer("sign-ec");
        let foreign = remote_sign(&ec_key, DigestAlgorithm::Sha256, p.to_sign());
        assert!(matches!(
            finish(&p, doc, &foreign),
            Err(AssembleError::SignatureRefused(_))
        ));
        // A time-stamp that was not asked for, and one that was asked for but not given.
        assert!(matches!(
            signature_timestamp_request(&p, doc, &value),
            Err(AssembleError::TimeStampNotRequested)
        ));
        let opts = Options {
            timestamp: true,
            ..Options::default()
        };
        let (p, value) = prepare_and_sign(Format::Cms, "sign-rsa", doc, &opts);
        assert!(matches!(
            finish(&p, doc, &value),
            Err(AssembleError::TimeStampRequired)
        ));
        let req = signature_timestamp_request(&p, doc, &value).unwrap();
        assert_eq!(req.digest, DigestAlgorithm::Sha256.digest(&value).unwrap());
        // A token for something else is refused before anything is assembled.
        assert!(matches!(
            finish_timestamped(&p, doc, &value, b"\x30\x03\x02\x01\x00", &trust()),
            Err(AssembleError::TimeStamp(_))
        ));
    }

    #[test]
    fn prepare_refusals_name_the_step() {
        let (rsa, _) = signer("sign-rsa");
        let (ec, _) = signer("sign-ec");
        let ca = X509::from_pem(&example("intermediate-ca.pem")).unwrap();
        let e = prepare(Format::Cms, b"x", &ca, &[], &Options::default()).unwrap_err();
        assert!(
            matches!(e, AssembleError::Signer(SignerError::KeyUsage)),
            "{e}"
        );
        let sha512 = Options {
            digest: DigestAlgorithm::Sha512,
            ..Options::default()
        };
        let e = prepare(Format::Cms, b"x", &ec.leaf, &[], &sha512).unwrap_err();
        assert!(
            matches!(
                e,
                AssembleError::Signer(SignerError::DigestNotForKey { .. })
            ),
            "{e}"
        );
        let e = prepare(
            Format::Xml,
            b"<a><b></a>",
            &rsa.leaf,
            &[],
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                AssembleError::NotFormat {
                    format: Format::Xml,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("prepare: the document is not xml"),
            "{e}"
        );
        let e = prepare(Format::Xml, b"<a/>", &rsa.leaf, &[], &sha512).unwrap_err();
        assert!(matches!(e, AssembleError::Unsupported { .. }), "{e}");
        let e = prepare(Format::Pdf, b"<a/>", &rsa.leaf, &[], &Options::default()).unwrap_err();
        assert!(
            matches!(
                e,
                AssembleError::NotFormat {
                    format: Format::Pdf,
                    ..
                }
            ),
            "{e}"
        );
        let ts = Options {
            timestamp: true,
            ..Options::default()
        };
        let e = prepare(Format::Xml, b"<a/>", &rsa.leaf, &[], &ts).unwrap_err();
        assert!(matches!(e, AssembleError::Unsupported { .. }), "{e}");
        let reason = Options {
            reason: Some("x".into()),
            ..Options::default()
        };
        let e = prepare(Format::Cms, b"x", &rsa.leaf, &[], &reason).unwrap_err();
        assert!(matches!(e, AssembleError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn xml_round_trip() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<KetQua Id=\"kq\"><TrichYeu>Cấp giấy phép xây dựng</TrichYeu></KetQua>".as_bytes();
        let t = trust();
        for name in ["sign-rsa", "sign-ec"] {
            for reference in [None, Some("kq".to_owned())] {
                let opts = Options {
                    xml_reference: reference.clone(),
                    ..Options::default()
                };
                let (p, value) = prepare_and_sign(Format::Xml, name, doc, &opts);
                let signed = finish(&p, doc, &value).unwrap();
                let text = String::from_utf8(signed).unwrap();
                assert!(text.contains("Cấp giấy phép xây dựng"));
                let v = verify_enveloped(&text, &VerifyOptions::new(SignerTrust::Chain(&t)))
                    .unwrap_or_else(|e| panic!("{name} {reference:?}: {e}"));
                assert_eq!(v.signed_id, reference);
            }
        }
    }

    #[test]
    fn pdf_round_trip_and_ranges() {
        let doc = sample_pdf("Giay phep");
        for name in ["sign-rsa", "sign-ec"] {
            let opts = Options {
                reason: Some("Phê duyệt kết quả".into()),
                location: Some("Ha Noi".into()),
                ..Options::default()
            };
            let (p, value) = prepare_and_sign(Format::Pdf, name, &doc, &opts);
            let signed = finish(&p, &doc, &value).unwrap();
            assert_eq!(
                &signed[..doc.len()],
                &doc[..],
                "the original bytes are kept"
            );
            let (covered, cms) = pdf_parts(&signed);
            assert!(cms_verifies(&cms, &covered), "{name}");
            let mut tampered = covered.clone();
            let at = tampered.len() / 3;
            tampered[at] ^= 1;
            assert!(!cms_verifies(&cms, &tampered), "{name}");
            let text = String::from_utf8_lossy(&signed);
            assert!(text.contains("/SubFilter /ETSI.CAdES.detached"));
            assert!(text.contains("/Reason <FEFF"));
            // The update is readable by our own reader: a second signature can follow.
            let (p2, v2) = prepare_and_sign(Format::Pdf, name, &signed, &Options::default());
            let twice = finish(&p2, &signed, &v2).unwrap();
            let (covered2, cms2) = pdf_parts(&twice);
            assert!(cms_verifies(&cms2, &covered2));
        }
    }

    #[test]
    fn prepared_size_does_not_grow_with_the_document() {
        let small = sample_pdf("a");
        let mut big = small.clone();
        // A large comment before the trailer would move offsets; append a second revision
        // instead: the same PDF with 1 MB of padding in a comment before %PDF's first object.
        let pad = vec![b'%'; 1 << 20];
        let split = small.iter().position(|b| *b == b'\n').unwrap() + 1;
        big.splice(
            split..split,
            pad.iter().copied().chain(std::iter::once(b'\n')),
        );
        let big = sample_pdf_with_offset_fix(&big);
        let (ps, _) = prepare_and_sign(Format::Pdf, "sign-rsa", &small, &Options::default());
        let (pb, _) = prepare_and_sign(Format::Pdf, "sign-rsa", &big, &Options::default());
        let s = serde_json::to_vec(&ps).unwrap().len();
        let b = serde_json::to_vec(&pb).unwrap().len();
        println!("stored Prepared (PDF, RSA, chain of 2): {s} bytes for a {} byte PDF, {b} bytes for a {} byte PDF", small.len(), big.len());
        assert!(b < s + 64 && s < 16 * 1024, "{s} {b}");
        let (pc, _) = prepare_and_sign(Format::Cms, "sign-rsa", &big, &Options::default());
        let c = serde_json::to_vec(&pc).unwrap().len();
        println!("stored Prepared (CMS, RSA, chain of 2): {c} bytes");
        assert!(c < 8 * 1024, "{c}");
    }

    /// Rebuilds the sample's xref after padding was inserted (offsets shift).
    fn sample_pdf_with_offset_fix(padded: &[u8]) -> Vec<u8> {
        let text = padded.to_vec();
        let xref_at = text.windows(5).rposition(|w| w == b"xref\n").unwrap();
        let mut out = text[..xref_at].to_vec();
        let mut offsets = Vec::new();
        for n in 1..=5 {
            let needle = format!("\n{n} 0 obj");
            let at = out
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap();
            offsets.push(at + 1);
        }
        out.extend_from_slice(b"xref\n0 6\n0000000000 65535 f\r\n");
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n").as_bytes(),
        );
        out
    }

    /// The sample with its catalog, pages and page moved into a FlateDecode object stream and
    /// a PNG-predicted, compressed cross-reference stream (what PDF 1.5+ writers produce).
    fn sample_with_object_streams() -> Vec<u8> {
        use flate2::write::ZlibEncoder;
        use std::io::Write as _;
        let deflate = |data: &[u8]| {
            let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let content = b"BT /F1 18 Tf 72 720 Td (Objstm) Tj ET";
        let in_stream = [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        ];
        let mut header = String::new();
        let mut body = String::new();
        for (i, o) in in_stream.iter().enumerate() {
            header.push_str(&format!("{} {} ", i + 1, body.len()));
            body.push_str(o);
            body.push(' ');
        }
        let objstm = deflate(format!("{header}{body}").as_bytes());
        let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut loc: Vec<(u8, u32, u16)> = vec![(0, 0, 65535)];
        for i in 0..3 {
            loc.push((2, 6, i));
        }
        loc.push((1, out.len() as u32, 0));
        out.extend_from_slice(
            format!("4 0 obj\n<< /Length {} >>\nstream\n", content.len()).as_bytes(),
        );
        out.extend_from_slice(content);
        out.extend_from_slice(b"\nendstream\nendobj\n");
        loc.push((1, out.len() as u32, 0));
        out.extend_from_slice(
            b"5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n",
        );
        loc.push((1, out.len() as u32, 0));
        out.extend_from_slice(
            format!(
                "6 0 obj\n<< /Type /ObjStm /N 3 /First {} /Filter /FlateDecode /Length {} >>\nstream\n",
                header.len(),
                objstm.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&objstm);
        out.extend_from_slice(b"\nendstream\nendobj\n");
        let xref_at = out.len();
        loc.push((1, xref_at as u32, 0));
        // Rows of 1 + 4 + 2 bytes, PNG "Up" predictor (filter byte 2) on every row.
        let mut raw = Vec::new();
        let mut prev = [0u8; 7];
        for (t, f2, f3) in loc {
            let mut row = [0u8; 7];
            row[0] = t;
            row[1..5].copy_from_slice(&f2.to_be_bytes());
            row[5..7].copy_from_slice(&f3.to_be_bytes());
            raw.push(2);
            raw.extend(row.iter().zip(prev.iter()).map(|(a, b)| a.wrapping_sub(*b)));
            prev = row;
        }
        let xs = deflate(&raw);
        out.extend_from_slice(
            format!(
                "7 0 obj\n<< /Type /XRef /Size 8 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 7 >> /Length {} >>\nstream\n",
                xs.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&xs);
        out.extend_from_slice(
            format!("\nendstream\nendobj\nstartxref\n{xref_at}\n%%EOF\n").as_bytes(),
        );
        out
    }

    #[test]
    fn pdf_with_object_and_xref_streams() {
        let doc = sample_with_object_streams();
        for name in ["sign-rsa", "sign-ec"] {
            let (p, value) = prepare_and_sign(Format::Pdf, name, &doc, &Options::default());
            let signed = finish(&p, &doc, &value).unwrap();
            assert_eq!(&signed[..doc.len()], &doc[..]);
            let (covered, cms) = pdf_parts(&signed);
            assert!(cms_verifies(&cms, &covered), "{name}");
            let tail = String::from_utf8_lossy(&signed[signed.len() - 400..]).into_owned();
            assert!(
                tail.contains("/Type /XRef"),
                "the update keeps a cross-reference stream: {tail}"
            );
            // Our update reads back: a second signature on top.
            let (p2, v2) = prepare_and_sign(Format::Pdf, name, &signed, &Options::default());
            let twice = finish(&p2, &signed, &v2).unwrap();
            let (covered2, cms2) = pdf_parts(&twice);
            assert!(cms_verifies(&cms2, &covered2), "{name}");
        }
    }

    #[test]
    fn pdf_shapes_not_supported_are_refused() {
        let (rsa, _) = signer("sign-rsa");
        let doc = sample_pdf("x");
        // A cross-reference stream with a filter other than FlateDecode.
        let xref_at = doc.windows(8).rposition(|w| w == b"xref\n0 6").unwrap();
        let mut xs = doc[..xref_at].to_vec();
        let obj_at = xs.len();
        xs.extend_from_slice(b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 4 2] /Root 1 0 R /Filter /LZWDecode /Length 0 >>\nstream\n\nendstream\nendobj\n");
        xs.extend_from_slice(format!("startxref\n{obj_at}\n%%EOF\n").as_bytes());
        let e = prepare(Format::Pdf, &xs, &rsa.leaf, &[], &Options::default()).unwrap_err();
        assert!(
            e.to_string().contains("unsupported PDF: stream filter"),
            "{e}"
        );
        // Encrypted (the trailer is after every object: no offset moves).
        let key = b"/Root 1 0 R >>";
        let at = doc.windows(key.len()).rposition(|w| w == key).unwrap() + key.len() - 2;
        let mut enc = doc.clone();
        enc.splice(at..at, b"/Encrypt 9 0 R ".iter().copied());
        let e = prepare(Format::Pdf, &enc, &rsa.leaf, &[], &Options::default()).unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
        // Truncated (no %%EOF).
        let e = prepare(
            Format::Pdf,
            &doc[..doc.len() - 10],
            &rsa.leaf,
            &[],
            &Options::default(),
        )
        .unwrap_err();
        assert!(matches!(e, AssembleError::NotFormat { .. }), "{e}");
    }
}
