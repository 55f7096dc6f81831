//! Reading an envelope: [`read`] streams it once ([`gw_crypto::xml::stream`]): the header,
//! trace and manifest become the typed model, each attachment is base64-decoded in pieces into
//! the caller's [`AttachmentSink`] (with its size and SHA-256), and the exclusive canonical
//! form without the Signature is digested on the way. [`Unverified::verify`] then checks the
//! signature against trust anchors; only a [`Received`] hands out the envelope.
//!
//! Invariants:
//! - Strict: every element outside the `ds:Signature` is in the edXML namespace
//!   ([`EdxmlError::UnknownNamespace`], refused at its start tag, before the rest is read); the
//!   structure and mandatory fields are those of [`crate::model`]; every attachment's
//!   ContentId is in the manifest and every manifest entry has its attachment; base64 is
//!   strict (alphabet, padding only at the end; whitespace between characters allowed).
//! - Memory: the base64 text is not copied: it is decoded in pieces of [`PIECE`] characters;
//!   the decoded bytes go to the sink as they come. What stays is the XML reader's buffer of
//!   the current text event (the one attachment being read) and the small tree.
//! - A sink receives bytes before the signature is checked (one pass over a non-seekable
//!   input): it must stage them, and the caller discards them unless [`Unverified::verify`]
//!   succeeds. The typed envelope is reachable unverified only through
//!   [`Unverified::inspect_unverified`], whose name says what it is.

use std::collections::BTreeMap;
use std::io::BufRead;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use gw_crypto::digest::Sha256Writer;
use gw_crypto::keys::TrustStore;
use gw_crypto::xml::c14n::Algorithm;
use gw_crypto::xml::stream::{parse_stream, StreamError, StreamHandler, Treatment};
use gw_crypto::xml::{Document, Element, NodePath, ParseLimits, DEFAULT_LIMITS};
use gw_crypto::xmldsig::{verify_streamed, SignerTrust, VerifyOptions, DSIG_NS};
use openssl::x509::X509;

use crate::error::EdxmlError;
use crate::model::*;
use crate::names::*;
use crate::status::Status;

/// Where decoded attachments go.
pub trait AttachmentSink {
    fn begin(&mut self, content_id: &str) -> std::io::Result<()>;
    fn write(&mut self, data: &[u8]) -> std::io::Result<()>;
    fn end(&mut self) -> std::io::Result<()>;
}

/// Keeps nothing (sizes and SHA-256 are computed anyway): for verify and inspect.
pub struct Discard;

impl AttachmentSink for Discard {
    fn begin(&mut self, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn end(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps every attachment in memory, by ContentId (tests, small envelopes).
#[derive(Default)]
pub struct InMemory {
    pub attachments: BTreeMap<String, Vec<u8>>,
    current: Option<String>,
}

impl AttachmentSink for InMemory {
    fn begin(&mut self, content_id: &str) -> std::io::Result<()> {
        self.attachments.insert(content_id.to_owned(), Vec::new());
        self.current = Some(content_id.to_owned());
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Some(v) = self
            .current
            .as_ref()
            .and_then(|c| self.attachments.get_mut(c))
        {
            v.extend_from_slice(data);
        }
        Ok(())
    }
    fn end(&mut self) -> std::io::Result<()> {
        self.current = None;
        Ok(())
    }
}

/// One decoded attachment, as described by its `Attachment` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub content_id: String,
    pub attachment_name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Limits of [`read`]: the XML limits of gw-crypto, with room for large attachments.
pub const READ_LIMITS: ParseLimits = ParseLimits {
    max_bytes: 1024 * 1024 * 1024,
    ..DEFAULT_LIMITS
};

/// Base64 characters decoded at a time.
const PIECE: usize = 64 * 1024;

/// An envelope read, its signature not yet checked.
pub struct Unverified {
    envelope: Envelope,
    pub attachments: Vec<AttachmentInfo>,
    document: Document,
    excluded: Vec<NodePath>,
    digest: [u8; 32],
    /// Bytes read.
    pub size: u64,
}

/// A verified envelope.
#[derive(Debug)]
pub struct Received {
    pub envelope: Envelope,
    pub attachments: Vec<AttachmentInfo>,
    /// The signer certificate (chained to the trust anchors).
    pub signer: X509,
}

impl Unverified {
    /// The envelope before its signature is checked: for display (`gateway edxml inspect`),
    /// never to act on.
    pub fn inspect_unverified(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether a Signature is present.
    pub fn is_signed(&self) -> bool {
        !self.excluded.is_empty()
    }

    /// The certificates in the Signature's KeyInfo, as sent (unverified; for display).
    pub fn claimed_signer(&self) -> Option<X509> {
        let p = self
            .document
            .find_all(DSIG_NS, "X509Certificate")
            .into_iter()
            .next()?;
        let text: String = self
            .document
            .element_at(&p)?
            .text()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        X509::from_der(&B64.decode(text).ok()?).ok()
    }

    /// Checks the signature: the signer chains to `trust` (validity, usage, CRLs), SignedInfo
    /// verifies, and the digest of the streamed canonical form matches.
    pub fn verify(self, trust: &TrustStore) -> Result<Received, EdxmlError> {
        if self.excluded.is_empty() {
            return Err(EdxmlError::Unsigned);
        }
        let v = verify_streamed(
            self.document,
            &self.excluded,
            Algorithm::Exclusive,
            &self.digest,
            &VerifyOptions::new(SignerTrust::Chain(trust)),
        )?;
        Ok(Received {
            envelope: self.envelope,
            attachments: self.attachments,
            signer: v
                .signer
                .ok_or(gw_crypto::xmldsig::DsigError::MissingCertificate)?,
        })
    }
}

/// Reads one envelope from `input`, attachments into `sink`.
pub fn read(input: impl BufRead, sink: &mut dyn AttachmentSink) -> Result<Unverified, EdxmlError> {
    read_with_limits(input, sink, &READ_LIMITS)
}

/// [`read`] with explicit limits.
pub fn read_with_limits(
    input: impl BufRead,
    sink: &mut dyn AttachmentSink,
    limits: &ParseLimits,
) -> Result<Unverified, EdxmlError> {
    let mut h = Handler {
        sink,
        current: None,
        done: Vec::new(),
    };
    let mut digest = Sha256Writer::new();
    let streamed = match parse_stream(input, Algorithm::Exclusive, limits, &mut h, &mut digest) {
        Ok(s) => s,
        Err(StreamError::Xml(e)) => return Err(EdxmlError::Xml(e)),
        Err(StreamError::Read(e)) => return Err(EdxmlError::Read(e)),
        Err(StreamError::Write(e)) => return Err(EdxmlError::Read(e)),
        Err(StreamError::Handler(e)) => return Err(e),
    };
    let decoded = h.done;
    let doc = &streamed.document;
    let (envelope, attachment_els) = model_of(doc, &streamed.excluded)?;
    // Attachments against the manifest, both ways.
    let mut attachments = Vec::with_capacity(decoded.len());
    for (el, (content_id, size, sha256)) in attachment_els.iter().zip(decoded) {
        let m = envelope
            .manifest
            .iter()
            .find(|m| m.content_id == content_id)
            .ok_or_else(|| EdxmlError::NotInManifest(content_id.clone()))?;
        let name = text(el, ATTACHMENT_NAME, "AttachmentEncoded/Attachment")?;
        let ctype = text(el, CONTENT_TYPE, "AttachmentEncoded/Attachment")?;
        for (element, a, b) in [
            (ATTACHMENT_NAME, &name, &m.attachment_name),
            (CONTENT_TYPE, &ctype, &m.content_type),
        ] {
            if a != b {
                return Err(EdxmlError::ManifestMismatch {
                    content_id,
                    element,
                    attachment: a.clone(),
                    manifest: b.clone(),
                });
            }
        }
        attachments.push(AttachmentInfo {
            content_id,
            attachment_name: name,
            content_type: ctype,
            size,
            sha256,
        });
    }
    if attachment_els.len() != attachments.len() {
        return Err(EdxmlError::MissingField(
            "AttachmentEncoded/Attachment/ContentTransferEncoded".into(),
        ));
    }
    for m in &envelope.manifest {
        if !attachments.iter().any(|a| a.content_id == m.content_id) {
            return Err(EdxmlError::AttachmentMissing(m.content_id.clone()));
        }
    }
    Ok(Unverified {
        envelope,
        attachments,
        excluded: streamed.excluded,
        document: streamed.document,
        digest: digest.finish(),
        size: streamed.bytes_read,
    })
}

struct Decoding {
    content_id: String,
    pending: String,
    padded: bool,
    hash: Sha256Writer,
    size: u64,
    out: Vec<u8>,
}

struct Handler<'s> {
    sink: &'s mut dyn AttachmentSink,
    current: Option<Decoding>,
    /// (ContentId, size, SHA-256) in document order.
    done: Vec<(String, u64, [u8; 32])>,
}

impl Handler<'_> {
    fn decode_pending(&mut self, last: bool) -> Result<(), EdxmlError> {
        let d = self.current.as_mut().expect("decoding");
        let take = if last {
            d.pending.len()
        } else {
            d.pending.len() / 4 * 4
        };
        if take == 0 {
            return Ok(());
        }
        let bad = |why: String| EdxmlError::BadBase64 {
            content_id: d.content_id.clone(),
            why,
        };
        if d.padded {
            return Err(bad("data after the final padding".into()));
        }
        if take % 4 != 0 {
            return Err(bad(format!(
                "{} characters left over (not a multiple of 4)",
                take % 4
            )));
        }
        d.out.clear();
        B64.decode_vec(&d.pending.as_bytes()[..take], &mut d.out)
            .map_err(|e| bad(e.to_string()))?;
        d.padded = d.pending.as_bytes()[take - 1] == b'=';
        d.pending.drain(..take);
        use std::io::Write;
        d.hash.write_all(&d.out).expect("hashing does not fail");
        d.size += d.out.len() as u64;
        let content_id = d.content_id.clone();
        self.sink
            .write(&self.current.as_ref().expect("decoding").out)
            .map_err(|source| EdxmlError::Sink { content_id, source })
    }
}

impl StreamHandler for Handler<'_> {
    type Error = EdxmlError;

    fn start(
        &mut self,
        ancestors: &[&Element],
        el: &Element,
        ns: &str,
    ) -> Result<Treatment, EdxmlError> {
        if ns == DSIG_NS && el.local == SIGNATURE {
            return Ok(Treatment {
                exclude: true,
                divert_text: false,
            });
        }
        // A `Signature` is the XML-DSig one or nothing, so an ancestor named `Signature`
        // below is the excluded one.
        if el.local == SIGNATURE {
            return Err(EdxmlError::UnknownNamespace {
                element: el.qname(),
                namespace: ns.to_owned(),
            });
        }
        // Inside the signature: XML-DSig's own namespaces (verified by gw-crypto).
        if ancestors.iter().any(|a| a.local == SIGNATURE) {
            return Ok(Treatment::default());
        }
        if ns != EDXML_NS {
            return Err(EdxmlError::UnknownNamespace {
                element: el.qname(),
                namespace: ns.to_owned(),
            });
        }
        let parent_is_attachment = ancestors.last().is_some_and(|p| p.local == ATTACHMENT);
        if el.local == CONTENT_TRANSFER_ENCODED && parent_is_attachment {
            let parent = ancestors.last().expect("checked");
            let content_id = one(parent, CONTENT_ID, "AttachmentEncoded/Attachment")?.text();
            if content_id.trim().is_empty() {
                return Err(EdxmlError::MissingField(
                    "AttachmentEncoded/Attachment/ContentId".into(),
                ));
            }
            if self.done.iter().any(|(c, _, _)| *c == content_id) {
                return Err(EdxmlError::DuplicateContentId(content_id));
            }
            self.sink
                .begin(&content_id)
                .map_err(|source| EdxmlError::Sink {
                    content_id: content_id.clone(),
                    source,
                })?;
            self.current = Some(Decoding {
                content_id,
                pending: String::with_capacity(PIECE + 4),
                padded: false,
                hash: Sha256Writer::new(),
                size: 0,
                out: Vec::with_capacity(PIECE / 4 * 3 + 3),
            });
            return Ok(Treatment {
                divert_text: true,
                exclude: false,
            });
        }
        Ok(Treatment::default())
    }

    fn text(&mut self, chunk: &str) -> Result<(), EdxmlError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let d = self.current.as_mut().expect("diverted text has a decoder");
            let room = PIECE - d.pending.len().min(PIECE);
            let mut cut = rest.len().min(room.max(4));
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            d.pending
                .extend(rest[..cut].chars().filter(|c| !c.is_ascii_whitespace()));
            rest = &rest[cut..];
            self.decode_pending(false)?;
        }
        Ok(())
    }

    fn end(&mut self, _: &Element) -> Result<(), EdxmlError> {
        self.decode_pending(true)?;
        let d = self.current.take().expect("decoding");
        self.sink.end().map_err(|source| EdxmlError::Sink {
            content_id: d.content_id.clone(),
            source,
        })?;
        self.done.push((d.content_id, d.size, d.hash.finish()));
        Ok(())
    }
}

/// Child elements of `el` named `local` (namespaces were checked while streaming).
fn all<'e>(el: &'e Element, local: &str) -> Vec<&'e Element> {
    el.child_elements()
        .map(|(_, c)| c)
        .filter(|c| c.local == local)
        .collect()
}

fn one<'e>(el: &'e Element, local: &str, at: &str) -> Result<&'e Element, EdxmlError> {
    match all(el, local).as_slice() {
        [c] => Ok(c),
        [] => Err(EdxmlError::MissingField(format!("{at}/{local}"))),
        _ => Err(EdxmlError::Repeated {
            element: format!("{at}/{local}"),
        }),
    }
}

fn opt<'e>(el: &'e Element, local: &str, at: &str) -> Result<Option<&'e Element>, EdxmlError> {
    match all(el, local).as_slice() {
        [c] => Ok(Some(c)),
        [] => Ok(None),
        _ => Err(EdxmlError::Repeated {
            element: format!("{at}/{local}"),
        }),
    }
}

fn text(el: &Element, local: &str, at: &str) -> Result<String, EdxmlError> {
    Ok(one(el, local, at)?.text())
}

fn opt_text(el: &Element, local: &str, at: &str) -> Result<Option<String>, EdxmlError> {
    Ok(opt(el, local, at)?.map(Element::text))
}

/// Only these children, in this order (a child list of the schema's sequence).
fn only(el: &Element, allowed: &[&str], at: &str) -> Result<(), EdxmlError> {
    let mut pos = 0;
    for (_, c) in el.child_elements() {
        match allowed[pos..].iter().position(|a| *a == c.local) {
            Some(i) => pos += i,
            None => {
                return Err(EdxmlError::UnexpectedElement {
                    expected: format!("{at}: one of {}", allowed[pos..].join(", ")),
                    found: c.qname(),
                })
            }
        }
    }
    Ok(())
}

fn organ(el: &Element, at: &str) -> Result<Organ, EdxmlError> {
    Ok(Organ {
        organ_id: text(el, ORGAN_ID, at)?,
        organ_name: text(el, ORGAN_NAME, at)?,
        organ_in_charge: opt_text(el, ORGAN_IN_CHARGE, at)?,
        organ_add: opt_text(el, ORGAN_ADD, at)?,
        email: opt_text(el, EMAIL, at)?,
        telephone: opt_text(el, TELEPHONE, at)?,
        fax: opt_text(el, FAX, at)?,
        website: opt_text(el, WEBSITE, at)?,
    })
}

fn response_for(el: &Element, at: &str) -> Result<ResponseFor, EdxmlError> {
    Ok(ResponseFor {
        organ_id: text(el, ORGAN_ID, at)?,
        code: text(el, CODE, at)?,
        promulgation_date: text(el, PROMULGATION_DATE, at)?,
        document_id: DocumentId::parse(&text(el, DOCUMENT_ID, at)?)?,
    })
}

/// The typed envelope and the `Attachment` elements (in order), from the streamed tree.
fn model_of<'d>(
    doc: &'d Document,
    excluded: &[NodePath],
) -> Result<(Envelope, Vec<&'d Element>), EdxmlError> {
    let root = &doc.root;
    if root.local != ROOT {
        return Err(EdxmlError::UnexpectedElement {
            expected: ROOT.into(),
            found: root.qname(),
        });
    }
    only(root, &[ENVELOPE, ATTACHMENT_ENCODED], ROOT)?;
    let env = one(root, ENVELOPE, ROOT)?;
    only(env, &[HEADER, BODY], ENVELOPE)?;
    let header_el = one(env, HEADER, ENVELOPE)?;
    only(
        header_el,
        &[MESSAGE_HEADER, STATUS, TRACE_HEADER_LIST, SIGNATURE],
        HEADER,
    )?;
    // The only Signature allowed is the header's last child.
    let env_idx = root
        .child_elements()
        .find(|(_, c)| c.local == ENVELOPE)
        .map(|(i, _)| i)
        .expect("found above");
    let header_idx = env
        .child_elements()
        .find(|(_, c)| c.local == HEADER)
        .map(|(i, _)| i)
        .expect("found above");
    let last_in_header = header_el.child_elements().last().map(|(i, _)| i);
    for p in excluded {
        if p.len() != 3 || p[0] != env_idx || p[1] != header_idx || Some(p[2]) != last_in_header {
            return Err(EdxmlError::SignatureMisplaced);
        }
    }
    let header = match (
        opt(header_el, MESSAGE_HEADER, HEADER)?,
        opt(header_el, STATUS, HEADER)?,
    ) {
        (Some(h), None) => {
            let at = "MessageHeader";
            only(
                h,
                &[
                    FROM,
                    TO,
                    DOCUMENT_ID,
                    CODE,
                    PROMULGATION_INFO,
                    DOCUMENT_TYPE,
                    SUBJECT,
                    CONTENT,
                    SIGNER_INFO,
                    DUE_DATE,
                    TO_PLACES,
                    RESPONSE_FOR,
                ],
                at,
            )?;
            let code = one(h, CODE, at)?;
            let pi = one(h, PROMULGATION_INFO, at)?;
            let dt = one(h, DOCUMENT_TYPE, at)?;
            let si = one(h, SIGNER_INFO, at)?;
            Header::Document(MessageHeader {
                from: organ(one(h, FROM, at)?, "MessageHeader/From")?,
                to: all(h, TO)
                    .into_iter()
                    .map(|t| organ(t, "MessageHeader/To"))
                    .collect::<Result<_, _>>()?,
                document_id: DocumentId::parse(&text(h, DOCUMENT_ID, at)?)?,
                code: Code {
                    code_number: text(code, CODE_NUMBER, "MessageHeader/Code")?,
                    code_notation: text(code, CODE_NOTATION, "MessageHeader/Code")?,
                },
                promulgation_info: PromulgationInfo {
                    place: text(pi, PLACE, "MessageHeader/PromulgationInfo")?,
                    promulgation_date: text(
                        pi,
                        PROMULGATION_DATE,
                        "MessageHeader/PromulgationInfo",
                    )?,
                },
                document_type: DocumentType {
                    kind: text(dt, TYPE, "MessageHeader/DocumentType")?,
                    type_name: text(dt, TYPE_NAME, "MessageHeader/DocumentType")?,
                },
                subject: text(h, SUBJECT, at)?,
                content: opt_text(h, CONTENT, at)?,
                signer_info: SignerInfo {
                    competence: opt_text(si, COMPETENCE, "MessageHeader/SignerInfo")?,
                    position: opt_text(si, POSITION, "MessageHeader/SignerInfo")?,
                    full_name: text(si, FULL_NAME, "MessageHeader/SignerInfo")?,
                },
                due_date: opt_text(h, DUE_DATE, at)?,
                to_places: match opt(h, TO_PLACES, at)? {
                    Some(tp) => all(tp, PLACE).into_iter().map(Element::text).collect(),
                    None => Vec::new(),
                },
                response_for: all(h, RESPONSE_FOR)
                    .into_iter()
                    .map(|r| response_for(r, "MessageHeader/ResponseFor"))
                    .collect::<Result<_, _>>()?,
            })
        }
        (None, Some(s)) => {
            let at = "Status";
            let code = text(s, STATUS_CODE, at)?;
            Header::Status(StatusHeader {
                from: organ(one(s, FROM, at)?, "Status/From")?,
                response_for: response_for(one(s, RESPONSE_FOR, at)?, "Status/ResponseFor")?,
                status: Status::from_code(&code).ok_or(EdxmlError::UnknownStatusCode(code))?,
                description: opt_text(s, DESCRIPTION, at)?,
                timestamp: text(s, TIMESTAMP, at)?,
                staff_info: match opt(s, STAFF_INFO, at)? {
                    Some(st) => Some(StaffInfo {
                        department: opt_text(st, DEPARTMENT, "Status/StaffInfo")?,
                        staff: opt_text(st, STAFF, "Status/StaffInfo")?,
                        email: opt_text(st, EMAIL, "Status/StaffInfo")?,
                    }),
                    None => None,
                },
            })
        }
        (None, None) => {
            return Err(EdxmlError::MissingField(
                "edXMLHeader/MessageHeader (or Status)".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(EdxmlError::UnexpectedElement {
                expected: "MessageHeader or Status, not both".into(),
                found: STATUS.into(),
            })
        }
    };
    let trace = match opt(header_el, TRACE_HEADER_LIST, HEADER)? {
        Some(l) => all(l, TRACE_HEADER)
            .into_iter()
            .map(|t| {
                Ok(TraceHeader {
                    organ_id: text(t, ORGAN_ID, "TraceHeaderList/TraceHeader")?,
                    timestamp: text(t, TIMESTAMP, "TraceHeaderList/TraceHeader")?,
                })
            })
            .collect::<Result<_, EdxmlError>>()?,
        None => Vec::new(),
    };
    let body = one(env, BODY, ENVELOPE)?;
    let manifest = match opt(body, MANIFEST, BODY)? {
        Some(m) => all(m, REFERENCE)
            .into_iter()
            .map(|r| {
                let at = "edXMLManifest/Reference";
                Ok(ManifestEntry {
                    content_id: text(r, CONTENT_ID, at)?,
                    content_type: text(r, CONTENT_TYPE, at)?,
                    description: opt_text(r, DESCRIPTION, at)?,
                    attachment_name: text(r, ATTACHMENT_NAME, at)?,
                })
            })
            .collect::<Result<_, EdxmlError>>()?,
        None => Vec::new(),
    };
    let attachments = match opt(root, ATTACHMENT_ENCODED, ROOT)? {
        Some(a) => {
            only(a, &[ATTACHMENT], ATTACHMENT_ENCODED)?;
            all(a, ATTACHMENT)
        }
        None => Vec::new(),
    };
    for a in &attachments {
        only(
            a,
            &[
                CONTENT_ID,
                ATTACHMENT_NAME,
                CONTENT_TYPE,
                CONTENT_TRANSFER_ENCODED,
            ],
            "AttachmentEncoded/Attachment",
        )?;
        one(a, CONTENT_TRANSFER_ENCODED, "AttachmentEncoded/Attachment")?;
    }
    let envelope = Envelope {
        header,
        trace,
        manifest,
    };
    envelope.check()?;
    Ok((envelope, attachments))
}
