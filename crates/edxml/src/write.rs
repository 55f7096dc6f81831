//! Building an envelope: [`Outgoing`] writes the envelope and its attachments, base64-encoded
//! in chunks straight from each attachment's reader into the output; signing is two passes
//! over the attachments (digest, then output), so memory does not grow with their size.
//!
//! Invariants:
//! - What is written is already in exclusive canonical form (C14N of it is itself, the XML
//!   declaration and the Signature aside), so the reference digest is the SHA-256 of the bytes
//!   written in the digest pass. Tests check it equals gw-crypto's tree C14N digest.
//! - The manifest and the attachments correspond one to one, by ContentId, checked before a
//!   byte is written ([`Outgoing::new`]); the envelope passes [`Envelope::check`].
//! - Signing can be split for a remote signer (issue 16): [`Outgoing::prepare`] gives a
//!   [`PendingSignature`] whose SignedInfo octets go out; the value that comes back is
//!   inserted with [`PendingSignature::insert_value`] (checked against the certificate), then
//!   [`Outgoing::write`] writes the signed envelope.

use std::io::{Read, Write};
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use gw_crypto::digest::Sha256Writer;
use gw_crypto::keys::SigningKey;
use gw_crypto::xmldsig::{DetachedSignature, SignOptions};
use openssl::x509::X509;

use crate::error::EdxmlError;
use crate::model::{Envelope, Header, ManifestEntry, Organ, ResponseFor, TraceHeader};
use crate::names::*;

/// Where an attachment's bytes come from; opened once per pass (twice when signing).
pub trait AttachmentSource {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>>;
}

impl AttachmentSource for PathBuf {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::fs::File::open(self)?))
    }
}

impl AttachmentSource for Vec<u8> {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.as_slice()))
    }
}

/// An envelope ready to be written: the model plus one source per manifest entry.
pub struct Outgoing<'a> {
    envelope: Envelope,
    /// In manifest order.
    sources: Vec<&'a dyn AttachmentSource>,
}

/// Base64 is written in lines of this many characters (a multiple of 4).
const LINE: usize = 76;
/// Bytes read from an attachment at a time (a multiple of 3 and of a line's 57 bytes).
const READ_CHUNK: usize = 57 * 1024;

impl<'a> Outgoing<'a> {
    /// Checks the envelope and pairs each manifest entry with its source by ContentId.
    pub fn new(
        envelope: Envelope,
        attachments: Vec<(String, &'a dyn AttachmentSource)>,
    ) -> Result<Self, EdxmlError> {
        envelope.check()?;
        let mut sources = Vec::with_capacity(envelope.manifest.len());
        for m in &envelope.manifest {
            let hits: Vec<_> = attachments
                .iter()
                .filter(|(id, _)| *id == m.content_id)
                .collect();
            match hits.as_slice() {
                [(_, s)] => sources.push(*s),
                [] => return Err(EdxmlError::AttachmentMissing(m.content_id.clone())),
                _ => return Err(EdxmlError::DuplicateContentId(m.content_id.clone())),
            }
        }
        if let Some((id, _)) = attachments
            .iter()
            .find(|(id, _)| !envelope.manifest.iter().any(|m| m.content_id == *id))
        {
            return Err(EdxmlError::NotInManifest(id.clone()));
        }
        Ok(Outgoing { envelope, sources })
    }

    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Writes the envelope: with `signature` (the `ds:Signature` text) as edXMLHeader's last
    /// child, or unsigned. Returns the bytes written.
    pub fn write(&self, signature: Option<&str>, out: &mut dyn Write) -> Result<u64, EdxmlError> {
        let mut w = Counting { inner: out, n: 0 };
        w.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .map_err(EdxmlError::Write)?;
        self.body(signature.unwrap_or(""), &mut w)?;
        w.flush().map_err(EdxmlError::Write)?;
        Ok(w.n)
    }

    /// SHA-256 of the canonical envelope without its Signature: the reference digest.
    pub fn reference_digest(&self) -> Result<[u8; 32], EdxmlError> {
        let mut h = Sha256Writer::new();
        self.body("", &mut h)?;
        Ok(h.finish())
    }

    /// First step of signing: the reference digest is computed (one pass over the
    /// attachments) and SignedInfo made for the signer whose certificates are `certs` (leaf
    /// first; all of them go into KeyInfo).
    pub fn prepare(&self, certs: Vec<X509>) -> Result<PendingSignature, EdxmlError> {
        let digest = self.reference_digest()?;
        let opts = SignOptions {
            include_chain: certs.len() > 1,
            ..SignOptions::default()
        };
        Ok(PendingSignature(DetachedSignature::new(
            &digest, certs, &opts,
        )?))
    }

    /// Signs with a local key (its certificate and chain in KeyInfo) and writes the signed
    /// envelope to `out`. Returns the bytes written.
    pub fn sign_to(&self, key: &SigningKey, out: &mut dyn Write) -> Result<u64, EdxmlError> {
        let cert = key
            .certificate()
            .ok_or(gw_crypto::xmldsig::DsigError::MissingCertificate)?;
        let mut certs = vec![cert.clone()];
        certs.extend(key.chain().iter().cloned());
        let sig = self.prepare(certs)?.sign(key)?;
        self.write(Some(&sig), out)
    }

    fn body(&self, signature: &str, w: &mut dyn Write) -> Result<(), EdxmlError> {
        let e = &self.envelope;
        let mut x = Xml::new();
        x.raw(&format!(
            "<{PREFIX}:{ROOT} xmlns:{PREFIX}=\"{EDXML_NS}\">\n"
        ));
        x.open(ENVELOPE);
        x.nl();
        x.open(HEADER);
        x.nl();
        match &e.header {
            Header::Document(h) => {
                x.open(MESSAGE_HEADER);
                organ(&mut x, FROM, &h.from);
                for t in &h.to {
                    organ(&mut x, TO, t);
                }
                x.leaf(DOCUMENT_ID, &h.document_id.to_string());
                x.open(CODE);
                x.leaf(CODE_NUMBER, &h.code.code_number);
                x.leaf(CODE_NOTATION, &h.code.code_notation);
                x.close(CODE);
                x.open(PROMULGATION_INFO);
                x.leaf(PLACE, &h.promulgation_info.place);
                x.leaf(PROMULGATION_DATE, &h.promulgation_info.promulgation_date);
                x.close(PROMULGATION_INFO);
                x.open(DOCUMENT_TYPE);
                x.leaf(TYPE, &h.document_type.kind);
                x.leaf(TYPE_NAME, &h.document_type.type_name);
                x.close(DOCUMENT_TYPE);
                x.leaf(SUBJECT, &h.subject);
                x.opt(CONTENT, h.content.as_deref());
                x.open(SIGNER_INFO);
                x.opt(COMPETENCE, h.signer_info.competence.as_deref());
                x.opt(POSITION, h.signer_info.position.as_deref());
                x.leaf(FULL_NAME, &h.signer_info.full_name);
                x.close(SIGNER_INFO);
                x.opt(DUE_DATE, h.due_date.as_deref());
                if !h.to_places.is_empty() {
                    x.open(TO_PLACES);
                    for p in &h.to_places {
                        x.leaf(PLACE, p);
                    }
                    x.close(TO_PLACES);
                }
                for r in &h.response_for {
                    response_for(&mut x, r);
                }
                x.close(MESSAGE_HEADER);
            }
            Header::Status(s) => {
                x.open(STATUS);
                organ(&mut x, FROM, &s.from);
                response_for(&mut x, &s.response_for);
                let code = s
                    .status
                    .code()
                    .ok_or(EdxmlError::StatusWithoutCode(s.status))?;
                x.leaf(STATUS_CODE, code);
                x.opt(DESCRIPTION, s.description.as_deref());
                x.leaf(TIMESTAMP, &s.timestamp);
                if let Some(st) = &s.staff_info {
                    x.open(STAFF_INFO);
                    x.opt(DEPARTMENT, st.department.as_deref());
                    x.opt(STAFF, st.staff.as_deref());
                    x.opt(EMAIL, st.email.as_deref());
                    x.close(STAFF_INFO);
                }
                x.close(STATUS);
            }
        }
        x.nl();
        x.open(TRACE_HEADER_LIST);
        for t in &e.trace {
            trace(&mut x, t);
        }
        x.close(TRACE_HEADER_LIST);
        x.nl();
        // The signature's slot: the text around it is the same signed or not, so the
        // digest computed without it is the one a verifier computes with it removed.
        x.raw(signature);
        x.close(HEADER);
        x.nl();
        x.open(BODY);
        x.open(MANIFEST);
        for m in &e.manifest {
            manifest_entry(&mut x, m);
        }
        x.close(MANIFEST);
        x.close(BODY);
        x.nl();
        x.close(ENVELOPE);
        x.nl();
        x.open(ATTACHMENT_ENCODED);
        w.write_all(x.take().as_bytes())
            .map_err(EdxmlError::Write)?;
        for (m, src) in e.manifest.iter().zip(&self.sources) {
            x.nl();
            x.open(ATTACHMENT);
            x.leaf(CONTENT_ID, &m.content_id);
            x.leaf(ATTACHMENT_NAME, &m.attachment_name);
            x.leaf(CONTENT_TYPE, &m.content_type);
            x.open(CONTENT_TRANSFER_ENCODED);
            w.write_all(x.take().as_bytes())
                .map_err(EdxmlError::Write)?;
            encode(&m.content_id, *src, w)?;
            x.close(CONTENT_TRANSFER_ENCODED);
            x.close(ATTACHMENT);
        }
        x.nl();
        x.close(ATTACHMENT_ENCODED);
        x.nl();
        x.raw(&format!("</{PREFIX}:{ROOT}>"));
        w.write_all(x.take().as_bytes())
            .map_err(EdxmlError::Write)?;
        Ok(())
    }
}

/// Base64 of the source in lines of [`LINE`], read [`READ_CHUNK`] bytes at a time.
fn encode(
    content_id: &str,
    src: &dyn AttachmentSource,
    w: &mut dyn Write,
) -> Result<(), EdxmlError> {
    let read_err = |source| EdxmlError::AttachmentRead {
        content_id: content_id.to_owned(),
        source,
    };
    let mut r = src.open().map_err(read_err)?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut text = String::with_capacity(READ_CHUNK * 4 / 3 + READ_CHUNK / 57 + 4);
    loop {
        // Fill the chunk completely (except at the end) so lines stay whole.
        let mut filled = 0;
        while filled < buf.len() {
            let n = r.read(&mut buf[filled..]).map_err(read_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        text.clear();
        for line in buf[..filled].chunks(LINE / 4 * 3) {
            text.push('\n');
            B64.encode_string(line, &mut text);
        }
        w.write_all(text.as_bytes()).map_err(EdxmlError::Write)?;
        if filled < buf.len() {
            break;
        }
    }
    w.write_all(b"\n").map_err(EdxmlError::Write)
}

fn organ(x: &mut Xml, name: &str, o: &Organ) {
    x.open(name);
    x.leaf(ORGAN_ID, &o.organ_id);
    x.leaf(ORGAN_NAME, &o.organ_name);
    x.opt(ORGAN_IN_CHARGE, o.organ_in_charge.as_deref());
    x.opt(ORGAN_ADD, o.organ_add.as_deref());
    x.opt(EMAIL, o.email.as_deref());
    x.opt(TELEPHONE, o.telephone.as_deref());
    x.opt(FAX, o.fax.as_deref());
    x.opt(WEBSITE, o.website.as_deref());
    x.close(name);
}

fn response_for(x: &mut Xml, r: &ResponseFor) {
    x.open(RESPONSE_FOR);
    x.leaf(ORGAN_ID, &r.organ_id);
    x.leaf(CODE, &r.code);
    x.leaf(PROMULGATION_DATE, &r.promulgation_date);
    x.leaf(DOCUMENT_ID, &r.document_id.to_string());
    x.close(RESPONSE_FOR);
}

fn trace(x: &mut Xml, t: &TraceHeader) {
    x.open(TRACE_HEADER);
    x.leaf(ORGAN_ID, &t.organ_id);
    x.leaf(TIMESTAMP, &t.timestamp);
    x.close(TRACE_HEADER);
}

fn manifest_entry(x: &mut Xml, m: &ManifestEntry) {
    x.open(REFERENCE);
    x.leaf(CONTENT_ID, &m.content_id);
    x.leaf(CONTENT_TYPE, &m.content_type);
    x.opt(DESCRIPTION, m.description.as_deref());
    x.leaf(ATTACHMENT_NAME, &m.attachment_name);
    x.close(REFERENCE);
}

/// A small writer of canonical-form elements in the edXML prefix (no attributes; text
/// escaped as C14N escapes it).
struct Xml(String);

impl Xml {
    fn new() -> Self {
        Xml(String::with_capacity(4096))
    }
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }
    fn nl(&mut self) {
        self.0.push('\n');
    }
    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(PREFIX);
        self.0.push(':');
        self.0.push_str(name);
        self.0.push('>');
    }
    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(PREFIX);
        self.0.push(':');
        self.0.push_str(name);
        self.0.push('>');
    }
    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '\r' => self.0.push_str("&#xD;"),
                c => self.0.push(c),
            }
        }
        self.close(name);
    }
    fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }
    fn take(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

struct Counting<'w> {
    inner: &'w mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A signature waiting for its value: SignedInfo made, reference digest inside.
pub struct PendingSignature(DetachedSignature);

impl PendingSignature {
    /// The canonical SignedInfo: what the signature value is computed over (a remote signing
    /// service is sent these octets, or their SHA-256 with `sign_type: hash`).
    pub fn signed_info(&self) -> Result<Vec<u8>, EdxmlError> {
        Ok(self.0.signed_info()?)
    }
    /// Signs with a local key; returns the `ds:Signature` text for [`Outgoing::write`].
    pub fn sign(self, key: &SigningKey) -> Result<String, EdxmlError> {
        Ok(self.0.sign(key)?)
    }
    /// Inserts a value made elsewhere (checked against the leaf certificate first).
    pub fn insert_value(self, value: &[u8]) -> Result<String, EdxmlError> {
        Ok(self.0.insert_value(value)?)
    }
}
